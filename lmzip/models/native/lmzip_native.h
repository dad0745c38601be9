/* What the native library's C files share: the integer llama's structs (native/binding.py mirrors
   them, and checks its copy against lmz_layout at load), the int8 products of int8_gemm.c, the
   attention of attention.c, and the AVX2 switch.

   Bounds: LMZ_MAX_HEAD_DIM is the widest head the attention's stack buffers hold; lmz_llama_hidden
   refuses wider heads, and rows outside the cache, itself (the binding checks them first, so that a
   Python caller gets a sentence rather than a status). */

#ifndef LMZIP_NATIVE_H
#define LMZIP_NATIVE_H

#include <stdint.h>

#define LMZ_MAX_HEAD_DIM 512
/* statuses of lmz_llama_hidden and lmz_llama_frequencies */
#define LMZ_OK 0
#define LMZ_OUT_OF_RANGE -1 /* a row outside the vocabulary, the streams or the cache */
#define LMZ_NO_MEMORY -2
#define LMZ_HEAD_TOO_WIDE -3 /* heads wider than LMZ_MAX_HEAD_DIM */
#define LMZ_STEP_LIMIT (1 << 20) /* integer/adapt.py's STEP_LIMIT */

void lmz_gemm_i8(const int8_t *a, int64_t M, int64_t K, const int8_t *w, int64_t N, const int32_t *colsum,
                 float *out, int kernel, int threads);
void lmz_gemm_i8_sums(const int8_t *a, int64_t M, int64_t K, const int8_t *w, int64_t N, const int32_t *colsum,
                      int32_t *sums, int kernel, int threads);
int lmz_gemm_wide(const int16_t *a, int64_t M, int64_t K, const int8_t *w, int64_t N, float *out, int kernel,
                  int threads);

typedef struct {
    const int8_t *w;     /* (out, in) int8 in int8_gemm.c's panels */
    const int32_t *sums; /* (out) */
    const float *scale;  /* (out) column scales: .s, or .sr for the layers added to the residual */
} Linear;

typedef struct {
    const double *norm1, *norm2; /* (C) integer gains */
    Linear qkv, o, gate_up, down;
    const float *qkv_bias;        /* (NQKV) qwen2's q/k/v biases, or NULL */
    const float *q_norm, *k_norm; /* (D) qwen3's and gemma3's head gains, or NULL */
    const float *post_attention, *post_ffw; /* (C) gemma3's gains on each sublayer's output, or NULL */
    const float *rope_cos, *rope_sin; /* (positions, D) this layer's tables */
    int64_t window;  /* gemma3's windowed layers: a row sees the last `window` positions; 0: all */
    int8_t *k, *v;   /* (streams, KV, length, D) */
    float *ks, *vs;  /* (streams, KV, length) */
    float *vmax;     /* (streams, KV, length) the largest value scale up to each position */
} Layer;

typedef struct {
    int64_t C, H, KV, D, F, V, n_layer, length, streams;
    double norm_eps;         /* RMSNorm epsilon in residual units squared */
    double float_norm_eps;   /* the same epsilon in real units: the norms of float32 rows */
    double score_factor;     /* EXP_STEPS_PER_NAT * attention scale (a Python float) */
    double residual_limit;   /* the residual is clipped to +-this */
    int64_t residual_bits;   /* its fraction bits */
    int64_t square_shift;    /* squares floored to multiples of 2^this */
    int64_t gain_bits;
    int64_t attention_one;   /* attention weights sum to at most this */
    int64_t sigmoid_steps, sigmoid_range;
    const int16_t *embed16;  /* (vocab, C) fixed-point: int16 where it fits, */
    const int32_t *embed32;  /* else int32 (the other pointer is NULL) */
    const float *gate;       /* (2 * range * steps + 1) sigmoid, or gemma3's GELU gate */
    const float *attention_exp;
    double attention_last;
    const double *norm_f;
    Linear head;
    const int32_t *table_plus_one; /* exp table + 1: the output frequencies */
    double table_last;
    double exp_steps;        /* EXP_STEPS_PER_NAT: table steps per nat */
    const Layer *layers;
    int kernel, threads;
    double wide_levels; /* recipe 2: the rows before q/k/v, gate/up, down and the head reach +-this
                           (arithmetic.WIDE_ROWS); 0: int8 rows (recipe 1) */
    const int32_t *head_bias; /* (V) steps the head subtracts while it learns (integer/adapt.py), or NULL */
} Model;

/* the attention of one row (a stream at a position) and one KV head: its G query heads over the
   cached positions it sees (attention.c). Scratch: ratio and weights (S), probs (G * S), pairs. */
void lmz_attend(const Model *m, const Layer *L, int64_t stream, int64_t pos, int64_t kv, const int8_t *q,
                const float *qs, float *ratio, float *weights, int32_t *probs, int32_t *pairs, float *out);

#ifdef __x86_64__
#include <immintrin.h>

#define AVX2 __attribute__((target("avx2")))

/* the int8 GEMM's load-time check passed an AVX2 kernel (or a VNNI one): AVX2 is here */
static inline int avx2_here(const Model *m) { return m->kernel >= 1; }
#endif

#endif
