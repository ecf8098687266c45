/* Single-pass CPU kernels of adaptx.fused (XLA FFI, C API).

   One loop per algorithm, Adam (with AdamW's decoupled weight decay) and SGD
   with heavy-ball or Nesterov momentum. Each call walks N parameter leaves and
   the matching stretch of the flat float32 state buffers in one pass, so a step
   over thousands of leaves is one XLA operation. Every operation is rounded as
   written (built with -ffp-contract=off: no fused multiply-add), in the same
   order as adaptx/fused/_maths.py, the pure-JAX version of the same maths; the
   results are identical on every instruction set (sqrt and division are
   correctly rounded in SSE, AVX2 and AVX-512 alike) and within a few ulps of
   the per-leaf chains (adaptx.adam, ...), which XLA may contract and reorder.

   Instruction set: the loops are compiled for AVX-512F, AVX2 and baseline
   x86-64 (GCC target_clones; the loader picks the best the CPU has at run
   time), so a generic build is vectorised on every x86-64 CPU.
   `adaptx_isa()` reports the choice.

   Scalars: operand 0 is a float32 vector laid out as `AdamScalars` or
   `SgdScalars` below (computed per step in JAX: they may be traced). Static
   settings are named FFI attributes (int32 `apply`, `decay`, `nesterov`,
   `has_trace`; int64 `offset`).

   Work is split into chunks that the caller and XLA's intra-op thread pool
   claim from an atomic counter; the caller waits only for chunks already
   claimed, so it never waits on a task the pool has not started.

   The XLA FFI C API header (xla_ffi_c_api.h) is vendored from OpenXLA under
   the Apache License 2.0 (see that file). */

#include <math.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "xla_ffi_c_api.h"

#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__)
#define ADAPTX_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#define ADAPTX_X86 1
#else
#define ADAPTX_CLONES
#define ADAPTX_X86 0
#endif

#define EXPORT __attribute__((visibility("default")))

/* Operand 0 of adaptx_adam: one step's scalars, in this order (float32[11]). */
typedef struct {
  float b1, one_minus_b1;    /* first-moment decay, and 1 - b1 */
  float b2, one_minus_b2;    /* second-moment decay, and 1 - b2 */
  float inv_c1, inv_c2;      /* 1 / (1 - b1^t), 1 / (1 - b2^t) */
  float eps, eps_root;
  float weight_decay;        /* read with attribute decay = 1 */
  float neg_lr;              /* -learning rate at this step */
  float gscale;              /* the gradients are multiplied by this first (clipping; else 1) */
} AdamScalars;

/* Operand 0 of adaptx_sgd (float32[3]). */
typedef struct {
  float momentum, neg_lr, gscale;
} SgdScalars;

/* ------------------------------------------------------------------------ */
/* The maths, one element at a time. A zero denominator (eps = 0 and a zero
   second moment) gives a zero direction; a NaN stays NaN. */

static inline float adam_elem(float* restrict m, float* restrict v, float g, float p,
                              const AdamScalars* s, int decay) {
  const float gj = g * s->gscale;
  const float mj = s->b1 * *m + s->one_minus_b1 * gj;
  const float vj = s->b2 * *v + s->one_minus_b2 * (gj * gj);
  *m = mj;
  *v = vj;
  const float den = sqrtf(vj * s->inv_c2 + s->eps_root) + s->eps;
  const float q = (mj * s->inv_c1) / (den != 0.0f ? den : 1.0f);
  float u = den != 0.0f ? q : 0.0f;
  if (decay) u = u + s->weight_decay * p;
  return s->neg_lr * u;
}

static inline float sgd_elem(float* restrict b, float g, const SgdScalars* s, int has_trace,
                             int nesterov) {
  const float gj = g * s->gscale;
  float d = gj;
  if (has_trace) {
    const float bj = s->momentum * *b + gj;
    *b = bj;
    d = nesterov ? gj + s->momentum * bj : bj;
  }
  return s->neg_lr * d;
}

/* ------------------------------------------------------------------------ */
/* The loops: `out` gets the update u, or (apply) p + u with out == p in place. */

ADAPTX_CLONES
static void adam_loop(float* restrict m, float* restrict v, const float* restrict g,
                      float* p, float* out, int64_t n, const AdamScalars* s, int decay,
                      int apply) {
  if (apply) {
    for (int64_t j = 0; j < n; ++j) {
      const float pj = p[j];
      out[j] = pj + adam_elem(m + j, v + j, g[j], pj, s, decay);
    }
  } else if (decay) {
    for (int64_t j = 0; j < n; ++j) out[j] = adam_elem(m + j, v + j, g[j], p[j], s, 1);
  } else {
    for (int64_t j = 0; j < n; ++j) out[j] = adam_elem(m + j, v + j, g[j], 0.0f, s, 0);
  }
}

ADAPTX_CLONES
static void sgd_loop(float* restrict b, const float* restrict g, float* p, float* out, int64_t n,
                     const SgdScalars* s, int has_trace, int nesterov, int apply) {
  if (apply) {
    for (int64_t j = 0; j < n; ++j) out[j] = p[j] + sgd_elem(b + j, g[j], s, has_trace, nesterov);
  } else {
    for (int64_t j = 0; j < n; ++j) out[j] = sgd_elem(b + j, g[j], s, has_trace, nesterov);
  }
}

/* The clone the target_clones resolver picks on this CPU: the same priority order. */
static int isa_level(void) {
#if ADAPTX_X86
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return 3;
  if (__builtin_cpu_supports("avx2")) return 2;
#endif
  return 1;
}

EXPORT const char* adaptx_isa(void) {
#if ADAPTX_X86
  switch (isa_level()) {
    case 3: return "avx512f";
    case 2: return "avx2";
    default: return "x86-64";
  }
#else
  return "generic";
#endif
}

/* ------------------------------------------------------------------------ */
/* A job: N leaves laid end to end over the flat state buffers. */

enum { KIND_ADAM, KIND_SGD };
enum { CHUNK = 1 << 15, SERIAL_BELOW = 1 << 16 };

typedef struct {
  int kind, apply, decay, nesterov, has_trace;
  const void* s;
  float* flat[2];          /* state buffers, from the call's offset */
  int64_t n_leaves, total, n_chunks;
  const int64_t* off;      /* n_leaves + 1 offsets into the flat buffers */
  float* const* out;       /* per-leaf results */
  const float* const* g;   /* per-leaf gradients */
  float* const* p;         /* per-leaf params (or NULL) */
  int64_t next, done, refs; /* atomics */
} Job;

static void run_span(const Job* J, int64_t i, int64_t a, int64_t b) {
  const int64_t k = a - J->off[i], n = b - a;
  const float* g = J->g[i] + k;
  float* p = J->p ? J->p[i] + k : NULL;
  float* out = J->out[i] + k;
  if (J->kind == KIND_ADAM)
    adam_loop(J->flat[0] + a, J->flat[1] + a, g, p, out, n, (const AdamScalars*)J->s, J->decay,
              J->apply);
  else
    sgd_loop(J->has_trace ? J->flat[0] + a : NULL, g, p, out, n, (const SgdScalars*)J->s,
             J->has_trace, J->nesterov, J->apply);
}

static void run_chunk(const Job* J, int64_t c) {
  const int64_t a = c * CHUNK;
  const int64_t b = a + CHUNK < J->total ? a + CHUNK : J->total;
  int64_t lo = 0, hi = J->n_leaves; /* the last leaf with off[lo] <= a */
  while (hi - lo > 1) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (J->off[mid] <= a) lo = mid; else hi = mid;
  }
  for (int64_t i = lo; i < J->n_leaves && J->off[i] < b; ++i) {
    const int64_t s = J->off[i] > a ? J->off[i] : a;
    const int64_t e = J->off[i + 1] < b ? J->off[i + 1] : b;
    if (e > s) run_span(J, i, s, e);
  }
}

static void work(Job* J) {
  for (;;) {
    const int64_t c = __atomic_fetch_add(&J->next, 1, __ATOMIC_RELAXED);
    if (c >= J->n_chunks) return;
    run_chunk(J, c);
    __atomic_fetch_add(&J->done, 1, __ATOMIC_RELEASE);
  }
}

static void release(Job* J) {
  if (__atomic_sub_fetch(&J->refs, 1, __ATOMIC_ACQ_REL) == 0) free(J);
}

static void task(void* data) {
  work((Job*)data);
  release((Job*)data);
}

/* ------------------------------------------------------------------------ */
/* FFI plumbing. */

static XLA_FFI_Error* error(const XLA_FFI_Api* api, const char* msg) {
  XLA_FFI_Error_Create_Args a;
  memset(&a, 0, sizeof a);
  a.struct_size = XLA_FFI_Error_Create_Args_STRUCT_SIZE;
  a.message = msg;
  a.errc = XLA_FFI_Error_Code_INVALID_ARGUMENT;
  return api->XLA_FFI_Error_Create(&a);
}

static void drop(const XLA_FFI_Api* api, XLA_FFI_Error* err) {
  XLA_FFI_Error_Destroy_Args d;
  memset(&d, 0, sizeof d);
  d.struct_size = XLA_FFI_Error_Destroy_Args_STRUCT_SIZE;
  d.error = err;
  api->XLA_FFI_Error_Destroy(&d);
}

/* XLA first calls a handler with a metadata extension to learn its API version. */
static int is_metadata_query(XLA_FFI_CallFrame* cf) {
  XLA_FFI_Extension_Base* ext = cf->extension_start;
  if (ext == NULL || ext->type != XLA_FFI_Extension_Metadata) return 0;
  XLA_FFI_Metadata* md = ((XLA_FFI_Metadata_Extension*)ext)->metadata;
  md->api_version.struct_size = XLA_FFI_Api_Version_STRUCT_SIZE;
  md->api_version.extension_start = NULL;
  md->api_version.major_version = XLA_FFI_API_MAJOR;
  md->api_version.minor_version = XLA_FFI_API_MINOR;
  md->traits = 0;
  return 1;
}

/* An integer attribute by name (int32 or int64 scalar); 0 if absent, -1 if of another type. */
static int int_attr(XLA_FFI_CallFrame* cf, const char* name, int64_t* value) {
  const size_t len = strlen(name);
  for (int64_t i = 0; i < cf->attrs.size; ++i) {
    const XLA_FFI_ByteSpan* n = cf->attrs.names[i];
    if (n->len != len || memcmp(n->ptr, name, len) != 0) continue;
    if (cf->attrs.types[i] != XLA_FFI_AttrType_SCALAR) return -1;
    const XLA_FFI_Scalar* sc = (const XLA_FFI_Scalar*)cf->attrs.attrs[i];
    if (sc->dtype == XLA_FFI_DataType_S32) *value = *(const int32_t*)sc->value;
    else if (sc->dtype == XLA_FFI_DataType_S64) *value = *(const int64_t*)sc->value;
    else return -1;
    return 1;
  }
  return 0;
}

static int64_t num_elements(const XLA_FFI_Buffer* b) {
  int64_t n = 1;
  for (int64_t d = 0; d < b->rank; ++d) n *= b->dims[d];
  return n;
}

static int all_f32(XLA_FFI_Buffer* const* bufs, int64_t n) {
  for (int64_t i = 0; i < n; ++i)
    if (bufs[i]->dtype != XLA_FFI_DataType_F32) return 0;
  return 1;
}

/* Runs J over the chunks with the caller and up to (threads - 1) pool tasks. */
static void run(XLA_FFI_CallFrame* cf, Job* J) {
  const XLA_FFI_Api* api = cf->api;
  J->n_chunks = (J->total + CHUNK - 1) / CHUNK;
  J->refs = 1;
  int64_t threads = 1;
  if (J->total >= SERIAL_BELOW) {
    XLA_FFI_ThreadPool_NumThreads_Args na;
    memset(&na, 0, sizeof na);
    na.struct_size = XLA_FFI_ThreadPool_NumThreads_Args_STRUCT_SIZE;
    na.ctx = cf->ctx;
    na.num_threads = &threads;
    XLA_FFI_Error* err = api->XLA_FFI_ThreadPool_NumThreads(&na);
    if (err) {
      drop(api, err);
      threads = 1;
    }
  }
  int64_t helpers = threads - 1;
  if (helpers > J->n_chunks - 1) helpers = J->n_chunks - 1;
  for (int64_t t = 0; t < helpers; ++t) {
    __atomic_add_fetch(&J->refs, 1, __ATOMIC_RELAXED);
    XLA_FFI_ThreadPool_Schedule_Args sa;
    memset(&sa, 0, sizeof sa);
    sa.struct_size = XLA_FFI_ThreadPool_Schedule_Args_STRUCT_SIZE;
    sa.ctx = cf->ctx;
    sa.task = task;
    sa.data = J;
    XLA_FFI_Error* err = api->XLA_FFI_ThreadPool_Schedule(&sa);
    if (err) {
      drop(api, err);
      __atomic_sub_fetch(&J->refs, 1, __ATOMIC_RELAXED);
      break;
    }
  }
  work(J);
  while (__atomic_load_n(&J->done, __ATOMIC_ACQUIRE) < J->n_chunks) sched_yield();
  release(J);
}


/* An integer attribute by name, or `fallback` when absent; -1 for a wrong type. */
static int attr_or(XLA_FFI_CallFrame* cf, const char* name, int64_t fallback, int64_t* value) {
  const int found = int_attr(cf, name, value);
  if (found == 0) *value = fallback;
  return found < 0 ? -1 : 1;
}

/* Operands: scalars, `n_flat` flat state buffers, N gradient leaves, then N
   parameter leaves when `take_p`. Results: the state buffers (aliased to their
   operands, updated in place), then N per-leaf results (aliased to the
   parameter operands with apply = 1). Attribute `offset`: where in the flat
   buffers the leaves start. */
static XLA_FFI_Error* dispatch(XLA_FFI_CallFrame* cf, int kind) {
  if (is_metadata_query(cf)) return NULL;
  const XLA_FFI_Api* api = cf->api;
  int64_t apply, decay, nesterov, has_trace, offset;
  if (attr_or(cf, "apply", 0, &apply) < 0 || attr_or(cf, "decay", 0, &decay) < 0 ||
      attr_or(cf, "nesterov", 0, &nesterov) < 0 || attr_or(cf, "has_trace", 1, &has_trace) < 0 ||
      attr_or(cf, "offset", 0, &offset) < 0 || offset < 0)
    return error(api, "adaptx kernel: integer attributes apply, decay, nesterov, has_trace, offset");
  const int n_flat = kind == KIND_ADAM ? 2 : 1;
  const int64_t n_scalars = kind == KIND_ADAM ? (int64_t)(sizeof(AdamScalars) / sizeof(float))
                                              : (int64_t)(sizeof(SgdScalars) / sizeof(float));
  const int take_p = apply || (kind == KIND_ADAM && decay);
  const int n_groups = 1 + take_p;
  XLA_FFI_Buffer* const* A = (XLA_FFI_Buffer* const*)cf->args.args;
  XLA_FFI_Buffer* const* R = (XLA_FFI_Buffer* const*)cf->rets.rets;
  const int64_t head = 1 + n_flat, nargs = cf->args.size;
  if (nargs < head || (nargs - head) % n_groups != 0)
    return error(api, "adaptx kernel: wrong number of operands");
  const int64_t N = (nargs - head) / n_groups;
  if (cf->rets.size != n_flat + N) return error(api, "adaptx kernel: wrong number of results");
  if (!all_f32(A, nargs) || !all_f32(R, cf->rets.size))
    return error(api, "adaptx kernel: float32 only");
  if (num_elements(A[0]) != n_scalars) return error(api, "adaptx kernel: wrong scalar count");

  Job* J = (Job*)calloc(1, sizeof(Job) + (size_t)(N + 1) * sizeof(int64_t) +
                               (size_t)N * 3 * sizeof(void*));
  if (J == NULL) return error(api, "adaptx kernel: out of memory");
  int64_t* off = (int64_t*)(J + 1);
  float** out = (float**)(off + N + 1);
  const float** g = (const float**)(out + N);
  float** p = (float**)(g + N);
  J->kind = kind;
  J->apply = (int)apply;
  J->decay = (int)decay;
  J->nesterov = (int)nesterov;
  J->has_trace = (int)has_trace;
  J->s = A[0]->data;
  J->n_leaves = N;
  J->off = off;
  J->out = out;
  J->g = g;
  J->p = take_p ? p : NULL;
  off[0] = 0;
  for (int64_t i = 0; i < N; ++i) {
    const XLA_FFI_Buffer* gb = A[head + i];
    const int64_t n = num_elements(gb);
    g[i] = (const float*)gb->data;
    if (take_p) {
      const XLA_FFI_Buffer* pb = A[head + N + i];
      if (num_elements(pb) != n) {
        free(J);
        return error(api, "adaptx kernel: a parameter's size differs from its gradient's");
      }
      p[i] = (float*)pb->data;
    }
    if (num_elements(R[n_flat + i]) != n) {
      free(J);
      return error(api, "adaptx kernel: a result's size differs from its gradient's");
    }
    out[i] = (float*)R[n_flat + i]->data;
    /* In place: the result aliases the parameter; if XLA did not alias them,
       start from a copy and update that in place. */
    if (apply && out[i] != p[i]) {
      memcpy(out[i], p[i], (size_t)n * sizeof(float));
      p[i] = out[i];
    }
    off[i + 1] = off[i] + n;
  }
  J->total = off[N];
  for (int k = 0; k < n_flat; ++k) {
    const int64_t size = num_elements(A[1 + k]);
    if (kind == KIND_SGD && !has_trace) {
      J->flat[k] = NULL;
      continue;
    }
    if (offset + J->total > size) {
      free(J);
      return error(api, "adaptx kernel: the leaves do not fit the flat state buffers");
    }
    if (R[k]->data != A[1 + k]->data)
      memcpy(R[k]->data, A[1 + k]->data, (size_t)size * sizeof(float));
    J->flat[k] = (float*)R[k]->data + offset;
  }
  run(cf, J);
  return NULL;
}

/* adam: (AdamScalars, m, v, g_0..g_{N-1}, [p_0..p_{N-1}]) -> (m', v', out_0..out_{N-1}).
   out: the update, or p + update in place (apply = 1). decay = 1 adds
   weight_decay * p to the Adam direction (AdamW). */
EXPORT XLA_FFI_Error* adaptx_adam(XLA_FFI_CallFrame* cf) { return dispatch(cf, KIND_ADAM); }

/* sgd: (SgdScalars, b, g_0..g_{N-1}, [p_0..p_{N-1}]) -> (b', out_0..out_{N-1}).
   has_trace = 0: plain SGD, b is not read (it may be empty); nesterov = 1:
   the direction is g + momentum * b'. */
EXPORT XLA_FFI_Error* adaptx_sgd(XLA_FFI_CallFrame* cf) { return dispatch(cf, KIND_SGD); }
