/* Single-pass CPU kernels for adaptx's fused optimizer path (XLA FFI, C API).

   Each kernel walks every leaf of a pytree and the matching stretch of one
   flat float32 state buffer in one loop, so an optimizer step over thousands
   of leaves is one XLA operation instead of thousands. The arithmetic is the
   per-leaf JAX path's, operation by operation, so both give the same bits:

   - flag EXACT_JIT set: the operations XLA's CPU backend emits for the
     jitted per-leaf path (division by a scalar becomes multiplication by its
     reciprocal, and `a * b + c` inside one fusion becomes fma(a, b, c));
   - flag clear: the operations of op-by-op (eager) execution, each rounded.

   The Python side (adaptx/_native.py) chooses the flag and checks the
   equality in tests/test_flat.py.

   Work is split into chunks that the caller and XLA's intra-op thread pool
   claim from an atomic counter; the caller waits only for chunks already
   claimed, so it never waits on a task the pool has not started. */

#include <math.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "xla_ffi_c_api.h"

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__)) && !defined(__clang__)
#define ADAPTX_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define ADAPTX_CLONES
#endif

#define EXPORT __attribute__((visibility("default")))

enum {
  F_APPLY = 1,     /* write p + u into the (aliased) params instead of u */
  F_EXACT_JIT = 2, /* XLA-fused rounding (see above) instead of op-by-op */
  F_DECAY = 4,     /* AdamW: add weight_decay * p to the direction */
  F_NESTEROV = 8,  /* momentum: g + mu * b instead of b */
};

/* ------------------------------------------------------------------------ */
/* Per-element loops. `restrict` is honest: XLA gives distinct buffers, and an
   aliased output is the same pointer as its input only in the in-place
   kernels, which read and write through one pointer. */

ADAPTX_CLONES
static void adam_moments(float* restrict m, float* restrict v, const float* restrict g,
                         int64_t n, const float* s, int exact) {
  const float d1 = s[0], c1 = s[1], d2 = s[2], c2 = s[3], gs = s[10];
  if (exact) {
    for (int64_t j = 0; j < n; ++j) {
      const float gj = g[j] * gs;
      m[j] = fmaf(d1, m[j], c1 * gj);
      v[j] = fmaf(d2, v[j], c2 * (gj * gj));
    }
  } else {
    for (int64_t j = 0; j < n; ++j) {
      const float gj = g[j] * gs;
      m[j] = d1 * m[j] + c1 * gj;
      v[j] = d2 * v[j] + c2 * (gj * gj);
    }
  }
}

/* The Adam direction, then * lr (update) or p + direction * lr (apply, in place).
   s: 4 1/(1-b1^t), 5 1/(1-b2^t), 6 eps, 7 eps_root, 8 lr (signed), 9 weight_decay,
   10 a factor the gradients are multiplied by first (clip_by_global_norm's, else 1).
   XLA divides by a scalar as a multiplication by its reciprocal, jitted or not.
   A zero (or NaN) denominator gives a zero direction, as divide_or_zero in _adam.py:
   the quotient is computed with a safe denominator, then selected (a blend once
   vectorised; -fno-trapping-math lets the compiler compute both sides). */
static inline float divide_or_zero(float x, float d) {
  const float q = x / (d > 0.0f ? d : 1.0f);
  return d > 0.0f ? q : 0.0f;
}
#define ADAM_DIRECTION_JIT(j) divide_or_zero(m[j] * s[4], sqrtf(fmaf(v[j], s[5], s[7])) + s[6])
#define ADAM_DIRECTION_EAGER(j) divide_or_zero(m[j] * s[4], sqrtf(v[j] * s[5] + s[7]) + s[6])

ADAPTX_CLONES
static void adam_update(float* restrict out, const float* restrict m, const float* restrict v,
                        const float* restrict p, int64_t n, const float* s, int flags) {
  const float lr = s[8], wd = s[9];
  const int decay = flags & F_DECAY;
  if (flags & F_EXACT_JIT) {
    for (int64_t j = 0; j < n; ++j) {
      float d = ADAM_DIRECTION_JIT(j);
      if (decay) d = fmaf(wd, p[j], d);
      out[j] = d * lr;
    }
  } else {
    for (int64_t j = 0; j < n; ++j) {
      float d = ADAM_DIRECTION_EAGER(j);
      if (decay) d = d + wd * p[j];
      out[j] = lr * d;
    }
  }
}

ADAPTX_CLONES
static void adam_apply(float* restrict p, const float* restrict m, const float* restrict v,
                       int64_t n, const float* s, int flags) {
  const float lr = s[8], wd = s[9];
  const int decay = flags & F_DECAY;
  if (flags & F_EXACT_JIT) {
    for (int64_t j = 0; j < n; ++j) {
      const float pj = p[j];
      float d = ADAM_DIRECTION_JIT(j);
      if (decay) d = fmaf(wd, pj, d);
      p[j] = fmaf(d, lr, pj);
    }
  } else {
    for (int64_t j = 0; j < n; ++j) {
      const float pj = p[j];
      float d = ADAM_DIRECTION_EAGER(j);
      if (decay) d = d + wd * pj;
      p[j] = pj + lr * d;
    }
  }
}

ADAPTX_CLONES
static void momentum_buffer(float* restrict b, const float* restrict g, int64_t n, const float* s,
                            int exact) {
  const float mu = s[0], gs = s[2];
  if (exact) {
    for (int64_t j = 0; j < n; ++j) b[j] = fmaf(mu, b[j], g[j] * gs);
  } else {
    for (int64_t j = 0; j < n; ++j) b[j] = mu * b[j] + g[j] * gs;
  }
}

/* The momentum direction (b, or g + mu b for Nesterov), then * lr or p + ... in place.
   s: 0 mu, 1 lr (signed), 2 a factor the gradients are multiplied by first (else 1) */
ADAPTX_CLONES
static void momentum_update(float* restrict out, const float* restrict b, const float* restrict g,
                            int64_t n, const float* s, int flags) {
  const float mu = s[0], lr = s[1], gs = s[2];
  const int nesterov = flags & F_NESTEROV;
  if (flags & F_EXACT_JIT) {
    for (int64_t j = 0; j < n; ++j) out[j] = (nesterov ? fmaf(mu, b[j], g[j] * gs) : b[j]) * lr;
  } else {
    for (int64_t j = 0; j < n; ++j) out[j] = lr * (nesterov ? g[j] * gs + mu * b[j] : b[j]);
  }
}

ADAPTX_CLONES
static void momentum_apply(float* restrict p, const float* restrict b, const float* restrict g,
                           int64_t n, const float* s, int flags) {
  const float mu = s[0], lr = s[1], gs = s[2];
  const int nesterov = flags & F_NESTEROV;
  if (flags & F_EXACT_JIT) {
    for (int64_t j = 0; j < n; ++j)
      p[j] = fmaf(nesterov ? fmaf(mu, b[j], g[j] * gs) : b[j], lr, p[j]);
  } else {
    for (int64_t j = 0; j < n; ++j) p[j] = p[j] + lr * (nesterov ? g[j] * gs + mu * b[j] : b[j]);
  }
}

/* One pass for the whole step: moments, direction and p += lr * direction, in place. */
ADAPTX_CLONES
static void adam_step(float* restrict p, float* restrict m, float* restrict v,
                      const float* restrict g, int64_t n, const float* s, int flags) {
  const float d1 = s[0], c1 = s[1], d2 = s[2], c2 = s[3], lr = s[8], wd = s[9], gs = s[10];
  const int decay = flags & F_DECAY;
  if (flags & F_EXACT_JIT) {
    for (int64_t j = 0; j < n; ++j) {
      const float gj = g[j] * gs, pj = p[j];
      m[j] = fmaf(d1, m[j], c1 * gj);
      v[j] = fmaf(d2, v[j], c2 * (gj * gj));
      float d = ADAM_DIRECTION_JIT(j);
      if (decay) d = fmaf(wd, pj, d);
      p[j] = fmaf(d, lr, pj);
    }
  } else {
    for (int64_t j = 0; j < n; ++j) {
      const float gj = g[j] * gs, pj = p[j];
      m[j] = d1 * m[j] + c1 * gj;
      v[j] = d2 * v[j] + c2 * (gj * gj);
      float d = ADAM_DIRECTION_EAGER(j);
      if (decay) d = d + wd * pj;
      p[j] = pj + lr * d;
    }
  }
}

ADAPTX_CLONES
static void momentum_step(float* restrict p, float* restrict b, const float* restrict g, int64_t n,
                          const float* s, int flags) {
  const float mu = s[0], lr = s[1], gs = s[2];
  const int nesterov = flags & F_NESTEROV;
  if (flags & F_EXACT_JIT) {
    for (int64_t j = 0; j < n; ++j) {
      const float gj = g[j] * gs;
      b[j] = fmaf(mu, b[j], gj);
      p[j] = fmaf(nesterov ? fmaf(mu, b[j], gj) : b[j], lr, p[j]);
    }
  } else {
    for (int64_t j = 0; j < n; ++j) {
      const float gj = g[j] * gs;
      b[j] = mu * b[j] + gj;
      p[j] = p[j] + lr * (nesterov ? gj + mu * b[j] : b[j]);
    }
  }
}

/* ------------------------------------------------------------------------ */
/* A job: N leaves laid end to end over the flat state buffers. */

enum {
  KIND_ADAM_MOMENTS,
  KIND_ADAM_OUT,
  KIND_ADAM_STEP,
  KIND_MOMENTUM_BUFFER,
  KIND_MOMENTUM_OUT,
  KIND_MOMENTUM_STEP
};
enum { CHUNK = 1 << 15, SERIAL_BELOW = 1 << 16, MAX_LEAF_ARRAYS = 3 };

typedef struct {
  int kind, flags;
  const float* s;
  float* flat[2];                          /* state buffers, T elements each */
  int64_t n_leaves, total, n_chunks;
  const int64_t* off;                      /* n_leaves + 1 offsets into the flat buffers */
  float* const* out;                       /* per-leaf outputs (or NULL) */
  const float* const* in[MAX_LEAF_ARRAYS]; /* per-leaf inputs: g, p (or NULL) */
  int64_t next, done, refs;                /* atomics */
} Job;

static void run_span(const Job* J, int64_t i, int64_t a, int64_t b) {
  const int64_t k = a - J->off[i], n = b - a;
  const float* g = J->in[0] ? J->in[0][i] + k : NULL;
  const float* p = J->in[1] ? J->in[1][i] + k : NULL;
  float* out = J->out ? J->out[i] + k : NULL;
  switch (J->kind) {
    case KIND_ADAM_MOMENTS:
      adam_moments(J->flat[0] + a, J->flat[1] + a, g, n, J->s, J->flags & F_EXACT_JIT);
      break;
    case KIND_ADAM_OUT:
      if (J->flags & F_APPLY)
        adam_apply(out, J->flat[0] + a, J->flat[1] + a, n, J->s, J->flags);
      else
        adam_update(out, J->flat[0] + a, J->flat[1] + a, p, n, J->s, J->flags);
      break;
    case KIND_ADAM_STEP:
      adam_step(out, J->flat[0] + a, J->flat[1] + a, g, n, J->s, J->flags);
      break;
    case KIND_MOMENTUM_STEP:
      momentum_step(out, J->flat[0] + a, g, n, J->s, J->flags);
      break;
    case KIND_MOMENTUM_BUFFER:
      momentum_buffer(J->flat[0] + a, g, n, J->s, J->flags & F_EXACT_JIT);
      break;
    case KIND_MOMENTUM_OUT:
      if (J->flags & F_APPLY)
        momentum_apply(out, J->flat[0] + a, g, n, J->s, J->flags);
      else
        momentum_update(out, J->flat[0] + a, g, n, J->s, J->flags);
      break;
  }
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

static int flags_attr(XLA_FFI_CallFrame* cf, int* flags) {
  int64_t v = 0;
  if (int_attr(cf, "flags", &v) != 1) return 0;
  *flags = (int)v;
  return 1;
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

/* Operands: scalars f32[k], `n_flat` flat state buffers, then groups of N leaves
   each (gradients g, then params p, as the kind and flags say). Results: the
   updated state buffers (in place, aliased to their operands) for the moment and
   step kernels, then N per-leaf results (updates, or params in place for apply
   and step kernels, aliased to the p operands). The attribute `offset` says
   where in the flat buffers the leaves start. */
static XLA_FFI_Error* dispatch(XLA_FFI_CallFrame* cf, int kind, int n_flat, int n_scalars) {
  if (is_metadata_query(cf)) return NULL;
  const XLA_FFI_Api* api = cf->api;
  int flags = 0;
  if (!flags_attr(cf, &flags)) return error(api, "adaptx kernel: missing int32 attribute 'flags'");
  const int step = kind == KIND_ADAM_STEP || kind == KIND_MOMENTUM_STEP;
  const int flat_out = step || kind == KIND_ADAM_MOMENTS || kind == KIND_MOMENTUM_BUFFER;
  const int leaf_out = !(kind == KIND_ADAM_MOMENTS || kind == KIND_MOMENTUM_BUFFER);
  const int in_place = step || (flags & F_APPLY);
  int take_g = flat_out, take_p = step;
  if (kind == KIND_ADAM_OUT) take_p = (flags & (F_APPLY | F_DECAY)) != 0;
  if (kind == KIND_MOMENTUM_OUT) {
    take_g = (flags & F_NESTEROV) != 0;
    take_p = (flags & F_APPLY) != 0;
  }
  const int n_groups = take_g + take_p;
  XLA_FFI_Buffer* const* A = (XLA_FFI_Buffer* const*)cf->args.args;
  XLA_FFI_Buffer* const* R = (XLA_FFI_Buffer* const*)cf->rets.rets;
  const int64_t head = 1 + n_flat, nargs = cf->args.size, r0 = flat_out ? n_flat : 0;
  if (nargs < head || (n_groups > 0 && (nargs - head) % n_groups != 0) ||
      (n_groups == 0 && nargs != head))
    return error(api, "adaptx kernel: wrong number of operands");
  const int64_t N = n_groups > 0 ? (nargs - head) / n_groups : cf->rets.size - r0;
  if (cf->rets.size != r0 + (leaf_out ? N : 0))
    return error(api, "adaptx kernel: wrong number of results");
  if (!all_f32(A, nargs) || !all_f32(R, cf->rets.size))
    return error(api, "adaptx kernel: float32 only");
  if (num_elements(A[0]) < n_scalars) return error(api, "adaptx kernel: too few scalars");

  Job* J = (Job*)calloc(1, sizeof(Job) + (size_t)(N + 1) * sizeof(int64_t) +
                               (size_t)N * (1 + MAX_LEAF_ARRAYS) * sizeof(void*));
  if (J == NULL) return error(api, "adaptx kernel: out of memory");
  int64_t* off = (int64_t*)(J + 1);
  float** out = (float**)(off + N + 1);
  const float** leaves = (const float**)(out + N);
  J->kind = kind;
  J->flags = flags;
  J->s = (const float*)A[0]->data;
  J->n_leaves = N;
  J->off = off;
  int group = 0;
  if (take_g) J->in[0] = leaves + (group++) * N;
  if (take_p) J->in[1] = leaves + (group++) * N;
  off[0] = 0;
  for (int64_t i = 0; i < N; ++i) {
    int64_t n = -1;
    for (int gi = 0; gi < n_groups; ++gi) {
      const XLA_FFI_Buffer* b = A[head + gi * N + i];
      leaves[gi * N + i] = (const float*)b->data;
      const int64_t nb = num_elements(b);
      if (n >= 0 && nb != n) {
        free(J);
        return error(api, "adaptx kernel: leaf sizes differ between operand groups");
      }
      n = nb;
    }
    if (leaf_out) {
      const int64_t nr = num_elements(R[r0 + i]);
      if (n >= 0 && nr != n) {
        free(J);
        return error(api, "adaptx kernel: result size differs from its leaf");
      }
      n = nr;
      out[i] = (float*)R[r0 + i]->data;
      /* In-place results alias the p operands; copy if XLA did not alias them. */
      if (in_place && J->in[1] && out[i] != J->in[1][i])
        memcpy(out[i], J->in[1][i], (size_t)n * sizeof(float));
    }
    off[i + 1] = off[i] + n;
  }
  J->out = leaf_out ? out : NULL;
  J->total = off[N];
  /* The leaves cover elements [offset, offset + total) of the flat state buffers. */
  int64_t offset = 0;
  if (int_attr(cf, "offset", &offset) < 0 || offset < 0) {
    free(J);
    return error(api, "adaptx kernel: attribute 'offset' must be a non-negative integer");
  }
  for (int k = 0; k < n_flat; ++k) {
    const int64_t size = num_elements(A[1 + k]);
    if (offset + J->total > size) {
      free(J);
      return error(api, "adaptx kernel: the leaves do not fit the flat state buffers");
    }
    float* base = flat_out ? (float*)R[k]->data : (float*)A[1 + k]->data;
    if (flat_out && R[k]->data != A[1 + k]->data)
      memcpy(R[k]->data, A[1 + k]->data, (size_t)size * sizeof(float));
    J->flat[k] = base + offset;
  }
  run(cf, J);
  return NULL;
}

/* adam moments: (s[11], m, v, g_0..g_{N-1}) -> (m', v') in place. */
EXPORT XLA_FFI_Error* adaptx_adam_moments(XLA_FFI_CallFrame* cf) {
  return dispatch(cf, KIND_ADAM_MOMENTS, 2, 11);
}

/* adam output: (s[11], m', v', [p_i]) -> u_i, or p_i + u_i in place with F_APPLY. */
EXPORT XLA_FFI_Error* adaptx_adam_out(XLA_FFI_CallFrame* cf) {
  return dispatch(cf, KIND_ADAM_OUT, 2, 11);
}

/* adam step: (s[11], m, v, g_i, p_i) -> (m', v', p_i + u_i), all in place. */
EXPORT XLA_FFI_Error* adaptx_adam_step(XLA_FFI_CallFrame* cf) {
  return dispatch(cf, KIND_ADAM_STEP, 2, 11);
}

/* momentum buffer: (s[3], b, g_i) -> b' in place. */
EXPORT XLA_FFI_Error* adaptx_momentum_buffer(XLA_FFI_CallFrame* cf) {
  return dispatch(cf, KIND_MOMENTUM_BUFFER, 1, 3);
}

/* momentum output: (s[3], b', [g_i], [p_i]) -> u_i, or p_i + u_i in place with F_APPLY. */
EXPORT XLA_FFI_Error* adaptx_momentum_out(XLA_FFI_CallFrame* cf) {
  return dispatch(cf, KIND_MOMENTUM_OUT, 1, 3);
}

/* momentum step: (s[3], b, g_i, p_i) -> (b', p_i + u_i), all in place. */
EXPORT XLA_FFI_Error* adaptx_momentum_step(XLA_FFI_CallFrame* cf) {
  return dispatch(cf, KIND_MOMENTUM_STEP, 1, 3);
}
