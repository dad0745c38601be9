/* The integer llama (integer/llama.py) over any set of (stream, position, token) rows in one call:
   a lockstep step (one row per stream), a whole-chunk pass (one stream, every position), or
   several positions of each stream (a decoder checking drafted tokens). The numbers are those of
   IntLlamaStepper.step and IntLlama.hidden on numpy, bit for bit, without ~30 numpy operations a
   layer: a row at position p sees the cached keys and values of its stream's positions 0..p,
   exactly as a step at p does (the integers do not depend on how positions are grouped).

   Every operation below is the one integer/llama.py and arithmetic.py apply, in the same order and
   the same precision: float32 where numpy computes in float32 (a Python float meeting a
   float32 array is first rounded to float32), float64 where it computes in float64, each
   +, -, *, / and sqrt rounded once by IEEE 754 (no FMA: built with -ffp-contract=off and
   without -ffast-math), rint for numpy's round (half to even), integer sums where numpy's
   float sums are exact anyway. The int8 products go through int8_gemm.c, the attention through attention.c. A change
   here without the same change in integer/llama.py (or the reverse) breaks the tests that compare
   the two on every step. */

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lmzip_native.h"

#define INT8 127.0
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#define FLOAT_NORM_ONE 32768.0 /* integer/llama.py's FLOAT_NORM_ONE */

/* ROW_BY_ROW(m, n, r, statement): the statement for each row r in [0, n). Rows are independent in
   every elementwise step, so threads over rows never change a number; they pay from 4 rows (four
   streams step 1.14x faster than with 8 as the threshold, AVX2 EPYC). Fewer rows run plainly: even
   an OpenMP region that its `if` turns off sets up a team, and a one-stream step has ~400 such
   loops. */
#define ROW_BY_ROW(m, n, r, statement)                                                                   \
    do {                                                                                               \
        if ((m)->threads > 1 && (n) >= 4) {                                                            \
            _Pragma("omp parallel for schedule(static) num_threads((m)->threads)")                    \
            for (int64_t r = 0; r < (n); r++) statement;                                               \
        } else {                                                                                       \
            for (int64_t r = 0; r < (n); r++) statement;                                               \
        }                                                                                              \
    } while (0)

/* -- the pieces, each as arithmetic.py / integer/llama.py compute them ----------------------------- */

/* IntLlama.mean_square and IntegerArithmetic.norm_quantized's gains, one row: the scaled row, its
   RMS, and its largest magnitude (at least 1) */
static double norm_parts(const Model *m, const double *x, const double *gain, double *scaled, double *rms) {
    int64_t C = m->C;
    double unit = 1.0 / (double)(1 << m->square_shift), sum = 0.0, amax = 0.0;
    for (int64_t c = 0; c < C; c++) sum += floor(x[c] * x[c] * unit); /* integers below 2^53: exact */
    double ms = sum * (double)(1 << m->square_shift) / (double)C;
    *rms = sqrt(ms + m->norm_eps);
    for (int64_t c = 0; c < C; c++) {
        scaled[c] = x[c] * gain[c];
        double a = fabs(scaled[c]);
        if (a > amax) amax = a;
    }
    return amax < 1.0 ? 1.0 : amax;
}

/* IntegerArithmetic.norm_quantized, one row: int8 values and the scale */
static float norm_quantized(const Model *m, const double *x, const double *gain, double *scaled, int8_t *values) {
    double rms, amax = norm_parts(m, x, gain, scaled, &rms);
    double r = INT8 / amax;
    for (int64_t c = 0; c < m->C; c++) values[c] = (int8_t)rint(scaled[c] * r);
    return (float)(amax / (rms * (INT8 * (double)(1 << m->gain_bits))));
}

/* the same with wide rows (recipe 2): integers to +-wide_levels */
static float norm_quantized_wide(const Model *m, const double *x, const double *gain, double *scaled,
                                 int16_t *values) {
    double rms, amax = norm_parts(m, x, gain, scaled, &rms), levels = m->wide_levels;
    double r = levels / amax;
    for (int64_t c = 0; c < m->C; c++) values[c] = (int16_t)rint(scaled[c] * r);
    return (float)(amax / (rms * (levels * (double)(1 << m->gain_bits))));
}

/* a float32 row's largest magnitude, at least 1e-30 (numpy's clip(amax(abs(x)), 1e-30, None)) */
static float row_amax(const float *x, int64_t n) {
    float amax = 0.0f;
    for (int64_t i = 0; i < n; i++) {
        float a = fabsf(x[i]);
        if (a > amax) amax = a;
    }
    return amax < (float)1e-30 ? (float)1e-30 : amax;
}

/* IntegerArithmetic.quantize_rows, one row of float32: int8 values and the float32 scale */
static float quantize_row(const float *x, int64_t n, int8_t *values) {
    float amax = row_amax(x, n);
    float r = (float)INT8 / amax;
    for (int64_t i = 0; i < n; i++) values[i] = (int8_t)rintf(x[i] * r);
    return amax * (float)(1.0 / INT8);
}

/* the same with wide rows (recipe 2): integers to +-levels */
static float quantize_row_wide(const float *x, int64_t n, int16_t *values, double levels) {
    float amax = row_amax(x, n);
    float r = (float)levels / amax;
    for (int64_t i = 0; i < n; i++) values[i] = (int16_t)rintf(x[i] * r);
    return amax * (float)(1.0 / levels);
}

static void scale_row(float *out, float row_scale, const float *column_scale, int64_t N) {
    for (int64_t j = 0; j < N; j++) {
        float v = out[j] * row_scale;
        out[j] = v * column_scale[j];
    }
}

/* IntegerArithmetic.linear: exact int8 product, times the row's scale, times the column scales */
static void linear(const Model *m, const int8_t *values, const float *row_scale, int64_t n, int64_t K,
                   const Linear *layer, int64_t N, float *out) {
    lmz_gemm_i8(values, n, K, layer->w, N, layer->sums, out, m->kernel, m->threads);
    ROW_BY_ROW(m, n, b, scale_row(out + b * N, row_scale[b], layer->scale, N));
}

/* floor(v / 128) of v + 64: the high int8 part of a wide integer (the low one is v - 128 * it) */
static inline int8_t high_part(int32_t v) {
    int32_t t = v + 64;
    return (int8_t)(t >= 0 ? t / 128 : -((-t + 127) / 128));
}

/* IntegerArithmetic.wide_products then linear's scales: n wide rows as n high int8 rows and n low
   ones, one int8 GEMM of 2n rows, each output's exact 128 * high + low sum rounded once to float32.
   Returns 0, or -2 without memory. */
static int linear_wide(const Model *m, const int16_t *values, const float *row_scale, int64_t n, int64_t K,
                       const Linear *layer, int64_t N, float *out) {
    if (lmz_gemm_wide(values, n, K, layer->w, N, out, m->kernel, m->threads) == 0) { /* AVX2: int16 x int8 */
        ROW_BY_ROW(m, n, b, scale_row(out + b * N, row_scale[b], layer->scale, N));
        return 0;
    }
    int8_t *parts = malloc((size_t)(2 * n * K));
    int32_t *sums = malloc(sizeof(int32_t) * (size_t)(2 * n * N));
    if (!parts || !sums) return free(parts), free(sums), -2;
    for (int64_t i = 0; i < n * K; i++) {
        int8_t high = high_part(values[i]);
        parts[i] = high;
        parts[n * K + i] = (int8_t)(values[i] - 128 * high);
    }
    lmz_gemm_i8_sums(parts, 2 * n, K, layer->w, N, layer->sums, sums, m->kernel, m->threads);
    for (int64_t i = 0; i < n * N; i++) out[i] = (float)((double)sums[i] * 128.0 + (double)sums[n * N + i]);
    ROW_BY_ROW(m, n, b, scale_row(out + b * N, row_scale[b], layer->scale, N));
    free(parts), free(sums);
    return 0;
}

/* linear of the rows after a norm: int8 values, or wide ones where the recipe has them */
static int linear_of(const Model *m, const int8_t *values, const int16_t *wide, const float *row_scale, int64_t n,
                     int64_t K, const Linear *layer, int64_t N, float *out) {
    if (m->wide_levels > 0) return linear_wide(m, wide, row_scale, n, K, layer, N, out);
    linear(m, values, row_scale, n, K, layer, N, out);
    return 0;
}

/* norm_quantized into int8 values, or wide ones where the recipe has them */
static float norm_row(const Model *m, const double *x, const double *gain, double *scaled, int8_t *values,
                      int16_t *wide) {
    if (m->wide_levels > 0) return norm_quantized_wide(m, x, gain, scaled, wide);
    return norm_quantized(m, x, gain, scaled, values);
}

/* quantize_row of the MLP's hidden row into int8 values, or wide ones where the recipe has them */
static float hidden_row(const Model *m, const float *x, int8_t *values, int16_t *wide) {
    if (m->wide_levels > 0) return quantize_row_wide(x, m->F, wide, m->wide_levels);
    return quantize_row(x, m->F, values);
}

/* IntLlama.qkv's bias: one float32 addition an output */
static void add_bias(float *out, const float *bias, int64_t N) {
    for (int64_t j = 0; j < N; j++) out[j] += bias[j];
}

/* IntLlama.add_clipped: x + round(the layer's output in residual units), clipped */
static void add_clipped_row(double *x, const float *out, int64_t C, double limit) {
    for (int64_t i = 0; i < C; i++) {
        double v = x[i] + (double)rintf(out[i]);
        x[i] = v < -limit ? -limit : (v > limit ? limit : v);
    }
}

static void add_clipped(const Model *m, double *x, const float *out, int64_t n) {
    int64_t C = m->C;
    ROW_BY_ROW(m, n, r, add_clipped_row(x + r * C, out + r * C, C, m->residual_limit));
}

/* IntLlama.float_norm on one row of D float32 values: the mean square from a fixed-point copy
   (|values| <= 2^15, so the float64 sum of squares is an exact integer), one float32 factor */
static void float_norm(float *x, const float *gain, int64_t D, double eps) {
    float amax = row_amax(x, D);
    float r = (float)FLOAT_NORM_ONE / amax;
    double sum = 0.0;
    for (int64_t d = 0; d < D; d++) {
        double fixed = (double)rintf(x[d] * r);
        sum += fixed * fixed;
    }
    double unit = (double)amax * (1.0 / FLOAT_NORM_ONE);
    double mean_square = sum * (unit * unit) / (double)D;
    float factor = (float)(1.0 / sqrt(mean_square + eps));
    for (int64_t d = 0; d < D; d++) {
        float v = x[d] * factor;
        x[d] = v * gain[d];
    }
}

/* IntLlama.add_output's norm (gemma3): a sublayer's real-valued row normed, in residual units */
static void post_norm(const Model *m, float *row, const float *gain) {
    float_norm(row, gain, m->C, m->float_norm_eps);
    float unit = (float)(1 << m->residual_bits); /* a power of two: exact */
    for (int64_t c = 0; c < m->C; c++) row[c] *= unit;
}

/* IntLlama.rope on one head: x cos + rotate_half(x) sin, float32, one rounding each */
static void rope(float *x, const float *cos, const float *sin, int64_t D) {
    int64_t half = D / 2;
    float rotated[LMZ_MAX_HEAD_DIM];
    for (int64_t d = 0; d < D; d++) rotated[d] = d < half ? -x[d + half] : x[d - half];
    for (int64_t d = 0; d < D; d++) {
        float out = x[d] * cos[d];
        float r = rotated[d] * sin[d];
        x[d] = out + r;
    }
}

/* One row's RoPE, its queries quantized, its key and value quantized into its stream's cache. */
static void rotate_and_cache(const Model *m, const Layer *L, int64_t stream, int64_t pos, float *row, int8_t *q,
                             float *qs) {
    int64_t H = m->H, KV = m->KV, D = m->D;
    if (L->q_norm)
        for (int64_t h = 0; h < H + KV; h++)
            float_norm(row + h * D, h < H ? L->q_norm : L->k_norm, D, m->float_norm_eps);
    for (int64_t h = 0; h < H + KV; h++) rope(row + h * D, L->rope_cos + pos * D, L->rope_sin + pos * D, D);
    for (int64_t h = 0; h < H; h++) qs[h] = quantize_row(row + h * D, D, q + h * D);
    for (int64_t kv = 0; kv < KV; kv++) {
        int64_t at = (stream * KV + kv) * m->length + pos;
        L->ks[at] = quantize_row(row + (H + kv) * D, D, L->k + at * D);
        L->vs[at] = quantize_row(row + (H + KV + kv) * D, D, L->v + at * D);
    }
}

/* RoPE, the queries quantized, each row's key and value into its stream's cache at its position
   (rows of a stream in increasing positions: a row sees those before it), then the attention. */
static int attention(const Model *m, const Layer *L, int64_t n, const int64_t *streams, const int64_t *positions,
                     float *qkv, float *attn) {
    int64_t H = m->H, KV = m->KV, G = H / KV, D = m->D, A = H * D, NQKV = (H + 2 * KV) * D, longest = 0;
    int8_t *q = malloc((size_t)(n * H * D));
    float *qs = malloc(sizeof(float) * (size_t)(n * H));
    if (!q || !qs) return free(q), free(qs), -2;
    /* each row writes its own cache position */
    ROW_BY_ROW(m, n, r, rotate_and_cache(m, L, streams[r], positions[r], qkv + r * NQKV, q + r * H * D, qs + r * H));
    for (int64_t r = 0; r < n; r++) { /* in row order: a stream's rows come in increasing positions */
        int64_t pos = positions[r];
        for (int64_t kv = 0; kv < KV; kv++) {
            int64_t at = (streams[r] * KV + kv) * m->length + pos;
            float before = pos ? L->vmax[at - 1] : 0.0f; /* the running maximum (exact) */
            L->vmax[at] = L->vs[at] > before ? L->vs[at] : before;
        }
        if (pos + 1 > longest) longest = pos + 1;
    }
    int failed = 0;
    /* each (row, KV head) is independent: threads never change a number */
#pragma omp parallel num_threads(m->threads) if (m->threads > 1 && n * KV * longest * D > (1 << 16))
    {
        float *ratio = malloc(sizeof(float) * (size_t)longest), *weights = malloc(sizeof(float) * (size_t)longest);
        int32_t *probs = malloc(sizeof(int32_t) * (size_t)(G * longest));
        int32_t *pairs = malloc(sizeof(int32_t) * (size_t)(G * ((longest + 1) / 2)));
        if (!ratio || !weights || !probs || !pairs) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(static, 1)
        for (int64_t i = 0; i < n * KV; i++)
            if (ratio && weights && probs && pairs)
                lmz_attend(m, L, streams[i / KV], positions[i / KV], i % KV, q + (i / KV) * H * D, qs + (i / KV) * H,
                       ratio, weights, probs, pairs, attn + (i / KV) * A);
        free(ratio), free(weights), free(probs), free(pairs);
    }
    free(q);
    free(qs);
    return failed ? -2 : 0;
}

/* the gated MLP's hidden row: gate * table(gate) * up (SwiGLU's sigmoid, gemma3's GELU gate) */
static void gated_row(const Model *m, const float *gate_up, float *hidden) {
    int64_t F = m->F;
    float steps = (float)m->sigmoid_steps, range = (float)(m->sigmoid_range * m->sigmoid_steps);
    for (int64_t j = 0; j < F; j++) {
        float gate = gate_up[j], up = gate_up[F + j];
        float index = rintf(gate * steps);
        index = (index < -range ? -range : (index > range ? range : index)) + range;
        float h = gate * m->gate[(int64_t)index];
        hidden[j] = h * up;
    }
}

static void gated(const Model *m, const float *gate_up, int64_t n, float *hidden) {
    ROW_BY_ROW(m, n, b, gated_row(m, gate_up + b * 2 * m->F, hidden + b * m->F));
}

/* The final residual stream x (n, C) of n rows: row r is token tokens[r] of stream streams[r] at
   position positions[r]. Rows of one stream come in increasing positions, each following the
   positions already cached (the binding checks that order; this checks what would read or write
   out of bounds). Returns LMZ_OK, or LMZ_OUT_OF_RANGE, LMZ_HEAD_TOO_WIDE, LMZ_NO_MEMORY. */
int lmz_llama_hidden(const Model *m, int64_t n, const int64_t *streams, const int64_t *positions,
                     const int64_t *tokens, double *x) {
    int64_t C = m->C, F = m->F, A = m->H * m->D, NQKV = (m->H + 2 * m->KV) * m->D;
    int64_t wide = MAX(2 * F, NQKV), narrow = MAX(MAX(F, C), A);
    if (n <= 0) return LMZ_OK;
    if (m->D > LMZ_MAX_HEAD_DIM) return LMZ_HEAD_TOO_WIDE;
    for (int64_t r = 0; r < n; r++)
        if (tokens[r] < 0 || tokens[r] >= m->V || streams[r] < 0 || streams[r] >= m->streams || positions[r] < 0 ||
            positions[r] >= m->length)
            return LMZ_OUT_OF_RANGE;
    double *scaled = malloc(sizeof(double) * (size_t)(n * C));
    int8_t *values = malloc((size_t)(n * narrow));
    int16_t *wide_values = malloc(sizeof(int16_t) * (size_t)(n * MAX(F, C)));
    float *row_scale = malloc(sizeof(float) * (size_t)n), *out = malloc(sizeof(float) * (size_t)(n * wide));
    float *attn = malloc(sizeof(float) * (size_t)(n * A)), *hidden = malloc(sizeof(float) * (size_t)(n * F));
    int status = scaled && values && wide_values && row_scale && out && attn && hidden ? 0 : -2;
    for (int64_t r = 0; r < n && !status; r++)
        for (int64_t c = 0; c < C; c++)
            x[r * C + c] = m->embed16 ? (double)m->embed16[tokens[r] * C + c] : (double)m->embed32[tokens[r] * C + c];
    for (int64_t l = 0; l < m->n_layer && !status; l++) {
        const Layer *L = &m->layers[l];
        ROW_BY_ROW(m, n, r, row_scale[r] = norm_row(m, x + r * C, L->norm1, scaled + r * C, values + r * C,
                                                    wide_values + r * C));
        if ((status = linear_of(m, values, wide_values, row_scale, n, C, &L->qkv, NQKV, out))) break;
        if (L->qkv_bias) ROW_BY_ROW(m, n, r, add_bias(out + r * NQKV, L->qkv_bias, NQKV));
        if ((status = attention(m, L, n, streams, positions, out, attn))) break;
        ROW_BY_ROW(m, n, r, row_scale[r] = quantize_row(attn + r * A, A, values + r * A));
        linear(m, values, row_scale, n, A, &L->o, C, out);
        if (L->post_attention) ROW_BY_ROW(m, n, r, post_norm(m, out + r * C, L->post_attention));
        add_clipped(m, x, out, n);
        ROW_BY_ROW(m, n, r, row_scale[r] = norm_row(m, x + r * C, L->norm2, scaled + r * C, values + r * C,
                                                    wide_values + r * C));
        if ((status = linear_of(m, values, wide_values, row_scale, n, C, &L->gate_up, 2 * F, out))) break;
        gated(m, out, n, hidden);
        ROW_BY_ROW(m, n, r, row_scale[r] = hidden_row(m, hidden + r * F, values + r * F, wide_values + r * F));
        if ((status = linear_of(m, values, wide_values, row_scale, n, F, &L->down, C, out))) break;
        if (L->post_ffw) ROW_BY_ROW(m, n, r, post_norm(m, out + r * C, L->post_ffw));
        add_clipped(m, x, out, n);
    }
    free(scaled), free(values), free(wide_values), free(row_scale), free(out), free(attn), free(hidden);
    return status;
}

/* A logit's frequency: the exp table indexed in steps below its row's maximum. */
static inline int32_t frequency(const Model *m, float logit, float top) {
    float index = rintf((logit - top) * -(float)m->exp_steps);
    index = index < 0.0f ? 0.0f : (index > (float)m->table_last ? (float)m->table_last : index);
    return m->table_plus_one[(int64_t)index];
}

/* One row of logits -> its frequencies. */
static void frequencies_row(const Model *m, const float *row, int32_t *freqs) {
    float top = -INFINITY;
    for (int64_t j = 0; j < m->V; j++)
        if (row[j] > top) top = row[j];
    for (int64_t j = 0; j < m->V; j++) freqs[j] = frequency(m, row[j], top);
}

#ifdef __x86_64__
/* frequencies_row's numbers with AVX2, eight logits at a time: the same maximum (logits are finite,
   int32 sums times finite scales, and the maximum of finite numbers does not depend on the order it
   is taken in; where +0 and -0 tie, every difference from it is the same but a zero's sign, which
   the clip to [0, last] erases), the same float32 subtraction and product rounded once each, rint's
   rounding (the current mode, as rintf), the same clip and table entry. */
AVX2 static void frequencies_row_avx2(const Model *m, const float *row, int32_t *freqs) {
    int64_t V = m->V, V8 = V / 8 * 8, j;
    __m256 tops = _mm256_set1_ps(-INFINITY);
    for (j = 0; j < V8; j += 8) tops = _mm256_max_ps(tops, _mm256_loadu_ps(row + j));
    float lanes[8], top = -INFINITY;
    _mm256_storeu_ps(lanes, tops);
    for (int i = 0; i < 8; i++) top = lanes[i] > top ? lanes[i] : top;
    for (; j < V; j++) top = row[j] > top ? row[j] : top;
    const __m256 top8 = _mm256_set1_ps(top), steps = _mm256_set1_ps(-(float)m->exp_steps);
    const __m256 zero = _mm256_setzero_ps(), last = _mm256_set1_ps((float)m->table_last);
    for (j = 0; j < V8; j += 8) {
        __m256 index = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(row + j), top8), steps);
        index = _mm256_round_ps(index, _MM_FROUND_CUR_DIRECTION);
        index = _mm256_min_ps(_mm256_max_ps(index, zero), last);
        __m256i entry = _mm256_i32gather_epi32((const int *)m->table_plus_one, _mm256_cvttps_epi32(index), 4);
        _mm256_storeu_si256((__m256i *)(freqs + j), entry);
    }
    for (; j < V; j++) freqs[j] = frequency(m, row[j], top);
}
#endif

/* integer/adapt.py's biased_index, then the table: each logit's steps below the row's maximum (as
   `frequency` computes them, clamped above at LMZ_STEP_LIMIT instead of clipped), less the bias,
   from the smallest of them, clipped to the table. */
static void biased_frequencies_row(const Model *m, const float *row, int32_t *freqs) {
    float top = -INFINITY;
    for (int64_t j = 0; j < m->V; j++)
        if (row[j] > top) top = row[j];
    int32_t low = INT32_MAX, last = (int32_t)m->table_last;
    for (int64_t j = 0; j < m->V; j++) {
        float steps = rintf((row[j] - top) * -(float)m->exp_steps);
        steps = steps > (float)LMZ_STEP_LIMIT ? (float)LMZ_STEP_LIMIT : steps;
        freqs[j] = (int32_t)steps - m->head_bias[j];
        low = freqs[j] < low ? freqs[j] : low;
    }
    for (int64_t j = 0; j < m->V; j++) {
        int32_t index = freqs[j] - low;
        freqs[j] = m->table_plus_one[index > last ? last : index];
    }
}

static void frequencies_of(const Model *m, const float *row, int32_t *freqs) {
    if (m->head_bias) {
        biased_frequencies_row(m, row, freqs);
        return;
    }
#ifdef __x86_64__
    if (avx2_here(m)) {
        frequencies_row_avx2(m, row, freqs);
        return;
    }
#endif
    frequencies_row(m, row, freqs);
}

/* IntegerArithmetic.frequencies of n rows of the final residual: the head, then the exp table
   indexed below each row's maximum -> (n, V) int32. Returns LMZ_OK, or LMZ_NO_MEMORY. */
int lmz_llama_frequencies(const Model *m, int64_t n, const double *x, int32_t *freqs) {
    int64_t C = m->C, V = m->V;
    if (n <= 0) return LMZ_OK;
    double *scaled = malloc(sizeof(double) * (size_t)(n * C));
    int8_t *values = malloc((size_t)(n * C));
    int16_t *wide_values = malloc(sizeof(int16_t) * (size_t)(n * C));
    float *row_scale = malloc(sizeof(float) * (size_t)n), *logits = malloc(sizeof(float) * (size_t)(n * V));
    int status = scaled && values && wide_values && row_scale && logits ? 0 : -2;
    if (!status) {
        ROW_BY_ROW(m, n, r, row_scale[r] = norm_row(m, x + r * C, m->norm_f, scaled + r * C, values + r * C,
                                                    wide_values + r * C));
        status = linear_of(m, values, wide_values, row_scale, n, C, &m->head, V, logits);
    }
    if (!status) ROW_BY_ROW(m, n, r, frequencies_of(m, logits + r * V, freqs + r * V));
    free(scaled), free(values), free(wide_values), free(row_scale), free(logits);
    return status;
}

/* What the binding (native/binding.py) copies by hand, for it to check at load: sizeof(Linear),
   then offsetof each of its fields in declaration order, then Layer's, then Model's; then the
   limits and statuses of lmzip_native.h. Writes at most `capacity` numbers; returns how many. */
#define AT(type, field) (int64_t) offsetof(type, field)
int64_t lmz_layout(int64_t *out, int64_t capacity) {
    const int64_t layout[] = {
        sizeof(Linear), AT(Linear, w), AT(Linear, sums), AT(Linear, scale),
        sizeof(Layer), AT(Layer, norm1), AT(Layer, norm2), AT(Layer, qkv), AT(Layer, o), AT(Layer, gate_up),
        AT(Layer, down), AT(Layer, qkv_bias), AT(Layer, q_norm), AT(Layer, k_norm), AT(Layer, post_attention),
        AT(Layer, post_ffw), AT(Layer, rope_cos), AT(Layer, rope_sin), AT(Layer, window), AT(Layer, k), AT(Layer, v),
        AT(Layer, ks), AT(Layer, vs), AT(Layer, vmax),
        sizeof(Model), AT(Model, C), AT(Model, H), AT(Model, KV), AT(Model, D), AT(Model, F), AT(Model, V),
        AT(Model, n_layer), AT(Model, length), AT(Model, streams), AT(Model, norm_eps), AT(Model, float_norm_eps),
        AT(Model, score_factor), AT(Model, residual_limit), AT(Model, residual_bits), AT(Model, square_shift),
        AT(Model, gain_bits), AT(Model, attention_one), AT(Model, sigmoid_steps), AT(Model, sigmoid_range),
        AT(Model, embed16), AT(Model, embed32), AT(Model, gate), AT(Model, attention_exp), AT(Model, attention_last),
        AT(Model, norm_f), AT(Model, head), AT(Model, table_plus_one), AT(Model, table_last), AT(Model, exp_steps),
        AT(Model, layers), AT(Model, kernel), AT(Model, threads), AT(Model, wide_levels), AT(Model, head_bias),
        LMZ_MAX_HEAD_DIM, LMZ_OUT_OF_RANGE, LMZ_NO_MEMORY, LMZ_HEAD_TOO_WIDE, LMZ_STEP_LIMIT};
    int64_t count = (int64_t)(sizeof(layout) / sizeof(layout[0]));
    for (int64_t i = 0; i < count && i < capacity; i++) out[i] = layout[i];
    return count;
}
