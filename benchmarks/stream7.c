/* The memory roofline of an Adam step: read p, g, m, v and write p, m, v
   (7 streams of 4 bytes per parameter) with trivial arithmetic, one pass.

   usage: stream7 N REPS THREADS  ->  prints the best GB/s over REPS passes. */

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

typedef struct {
  float *p, *g, *m, *v;
  long lo, hi;
} Span;

static void* pass(void* arg) {
  Span* s = (Span*)arg;
  for (long i = s->lo; i < s->hi; ++i) {
    const float gi = s->g[i];
    const float mi = s->m[i] + gi, vi = s->v[i] + gi;
    s->m[i] = mi;
    s->v[i] = vi;
    s->p[i] += mi * vi;
  }
  return NULL;
}

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char** argv) {
  const long n = argc > 1 ? atol(argv[1]) : 1L << 24;
  const int reps = argc > 2 ? atoi(argv[2]) : 10;
  int threads = argc > 3 ? atoi(argv[3]) : 2;
  if (threads < 1) threads = 1;
  if (threads > 64) threads = 64;
  float* buf[4];
  for (int k = 0; k < 4; ++k) {
    buf[k] = (float*)aligned_alloc(64, ((n * sizeof(float) + 63) / 64) * 64);
    if (!buf[k]) return 1;
    for (long i = 0; i < n; ++i) buf[k][i] = k == 1 ? 1e-7f : 0.0f;
  }
  pthread_t tid[64];
  Span spans[64];
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    const double t0 = now();
    for (int t = 0; t < threads; ++t) {
      spans[t] = (Span){buf[0], buf[1], buf[2], buf[3], n * t / threads, n * (t + 1) / threads};
      pthread_create(&tid[t], NULL, pass, &spans[t]);
    }
    for (int t = 0; t < threads; ++t) pthread_join(tid[t], NULL);
    const double dt = now() - t0;
    if (dt < best) best = dt;
  }
  printf("%.3f\n", 7.0 * 4.0 * (double)n / best / 1e9);
  return 0;
}
