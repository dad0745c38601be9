/* The integer llama's attention (IntLlama.attend, integer/llama.py) for one row and one KV head, as llama_step.c's
   layers call it: the portable version and an AVX2 one with the very same numbers. The contract of
   llama_step.c's header holds here too: the operations of integer/llama.py's numpy code, in its order and
   precision, integer sums where numpy's float sums are exact anyway. Heads are at most
   LMZ_MAX_HEAD_DIM wide (lmz_llama_hidden checks it before any row gets here). */

#include <math.h>
#include <stdint.h>

#include "lmzip_native.h"

/* attend's three per-position operations, shared by the portable and AVX2 versions (their tails) */
static inline float score_of(const int8_t *q, const int8_t *k, int64_t D, float factor_q, float key_scale) {
    int32_t dot = 0;
    for (int64_t d = 0; d < D; d++) dot += (int32_t)q[d] * (int32_t)k[d];
    float score = (float)dot * factor_q;
    return score * key_scale;
}

static inline float table_weight(const Model *m, float top, float score) {
    float index = rintf(top - score);
    index = index < 0.0f ? 0.0f : (index > (float)m->attention_last ? (float)m->attention_last : index);
    return m->attention_exp[(int64_t)index];
}

static inline int32_t probability(float weight, float ratio, float factor) {
    float w = weight * ratio;
    w *= factor;
    return (int32_t)floorf(w);
}

/* The first position a row at `pos` sees: 0, or the start of a windowed layer's window (the
   positions before it would weigh 0 in numpy's masked attention: leaving them out is the same) */
static inline int64_t window_start(const Layer *L, int64_t pos) {
    return L->window && pos + 1 > L->window ? pos + 1 - L->window : 0;
}

/* IntLlama.attend for one row (a stream at a position) and one KV head: its G query heads over the
   S = position + 1 cached positions. Scratch: ratio (S), weights (S), probs (S). The portable version;
   attend_head_avx2 below computes the same numbers with AVX2. */
static void attend_head(const Model *m, const Layer *L, int64_t stream, int64_t pos, int64_t kv, const int8_t *q,
                        const float *qs, float *ratio, float *weights, int32_t *probs, float *out) {
    int64_t D = m->D, G = m->H / m->KV, first = window_start(L, pos), S = pos + 1 - first;
    int64_t at = (stream * m->KV + kv) * m->length;
    const int8_t *k = L->k + (at + first) * D, *v = L->v + (at + first) * D;
    const float *ks = L->ks + at + first, *vs = L->vs + at + first;
    float vmax = L->vmax[at + pos];
    for (int64_t s = 0; s < S; s++) ratio[s] = vs[s] / vmax; /* numpy's vs_t / vmax, once for all heads */
    for (int64_t g = 0; g < G; g++) {
        int64_t h = kv * G + g;
        const int8_t *qh = q + h * D;
        float factor_q = qs[h] * (float)m->score_factor, top = -INFINITY;
        for (int64_t s = 0; s < S; s++) {
            weights[s] = score_of(qh, k + s * D, D, factor_q, ks[s]);
            if (weights[s] > top) top = weights[s];
        }
        int64_t total = 0;
        for (int64_t s = 0; s < S; s++) {
            weights[s] = table_weight(m, top, weights[s]);
            total += (int64_t)weights[s]; /* integers <= 2^20: the float32 pieces numpy sums are exact */
        }
        float factor = (float)((double)m->attention_one / (double)total);
        for (int64_t s = 0; s < S; s++) probs[s] = probability(weights[s], ratio[s], factor);
        int32_t acc[LMZ_MAX_HEAD_DIM];
        for (int64_t d = 0; d < D; d++) acc[d] = 0;
        for (int64_t s = 0; s < S; s++) /* |sum| <= 127 * 2^17 < 2^24: exact in numpy's float32 too */
            for (int64_t d = 0; d < D; d++) acc[d] += probs[s] * (int32_t)v[s * D + d];
        float unit = vmax * (float)(1.0 / (double)m->attention_one);
        for (int64_t d = 0; d < D; d++) out[h * D + d] = (float)acc[d] * unit;
    }
}

#ifdef __x86_64__

/* eight int32 vectors -> one vector of their eight horizontal sums (integer adds: exact) */
AVX2 static inline __m256i sums_of_eight(__m256i a[8]) {
    __m256i u0 = _mm256_hadd_epi32(_mm256_hadd_epi32(a[0], a[1]), _mm256_hadd_epi32(a[2], a[3]));
    __m256i u1 = _mm256_hadd_epi32(_mm256_hadd_epi32(a[4], a[5]), _mm256_hadd_epi32(a[6], a[7]));
    return _mm256_add_epi32(_mm256_permute2x128_si256(u0, u1, 0x20), _mm256_permute2x128_si256(u0, u1, 0x31));
}

/* q . k for eight keys (D a multiple of 32): |q| times k with q's sign, vpmaddubsw, vpmaddwd (the
   int8 GEMM's trick: values in [-127, 127] never saturate) */
AVX2 static inline __m256i eight_dots(const int8_t *q, const int8_t *k, int64_t D) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i acc[8];
    for (int j = 0; j < 8; j++) acc[j] = _mm256_setzero_si256();
    for (int64_t d = 0; d < D; d += 32) {
        __m256i qv = _mm256_loadu_si256((const __m256i *)(q + d)), qabs = _mm256_abs_epi8(qv);
        for (int j = 0; j < 8; j++) {
            __m256i kv = _mm256_loadu_si256((const __m256i *)(k + j * D + d));
            __m256i pairs = _mm256_maddubs_epi16(qabs, _mm256_sign_epi8(kv, qv));
            acc[j] = _mm256_add_epi32(acc[j], _mm256_madd_epi16(pairs, ones));
        }
    }
    return sums_of_eight(acc);
}

/* values_times_probs (below) for up to three heads: each load of the values serves all of them,
   32 dims at a time (12 accumulators of 8 lanes) */
AVX2 static void heads_times_values(const Model *m, const int8_t *v, int64_t S, int64_t heads, const int32_t *probs,
                                    const int32_t *pairs, float unit, float *out) {
    int64_t D = m->D, P = (S + 1) / 2;
    int32_t acc[3][LMZ_MAX_HEAD_DIM];
    const __m256i zeros = _mm256_setzero_si256();
    for (int64_t d0 = 0; d0 < D; d0 += 32) {
        __m256i sums[3][4]; /* each head's dims d0 + 0..7, 8..15, 16..23, 24..31 */
        for (int64_t g = 0; g < 3; g++)
            for (int j = 0; j < 4; j++) sums[g][j] = zeros;
        for (int64_t i = 0; i < P; i++) {
            __m256i first = _mm256_loadu_si256((const __m256i *)(v + 2 * i * D + d0));
            __m256i second = 2 * i + 1 < S ? _mm256_loadu_si256((const __m256i *)(v + (2 * i + 1) * D + d0)) : zeros;
            __m256i low = _mm256_unpacklo_epi8(first, second), high = _mm256_unpackhi_epi8(first, second);
            /* in-lane interleaving: low holds dims 0..7 and 16..23, high 8..15 and 24..31 */
            __m256i x[4] = {_mm256_cvtepi8_epi16(_mm256_castsi256_si128(low)),
                            _mm256_cvtepi8_epi16(_mm256_castsi256_si128(high)),
                            _mm256_cvtepi8_epi16(_mm256_extracti128_si256(low, 1)),
                            _mm256_cvtepi8_epi16(_mm256_extracti128_si256(high, 1))};
            for (int64_t g = 0; g < heads; g++) {
                __m256i pair = _mm256_set1_epi32(pairs[g * P + i]);
                for (int j = 0; j < 4; j++) sums[g][j] = _mm256_add_epi32(sums[g][j], _mm256_madd_epi16(x[j], pair));
            }
        }
        for (int64_t g = 0; g < heads; g++)
            for (int j = 0; j < 4; j++) _mm256_storeu_si256((__m256i *)(acc[g] + d0 + 8 * j), sums[g][j]);
    }
    const __m256i high_bits = _mm256_set1_epi32(~0x7FFF);
    for (int64_t g = 0; g < heads; g++) {
        const int32_t *p = probs + g * S;
        for (int64_t s0 = 0; s0 < S; s0 += 8) { /* eight at a time: most have no bits from 2^15 up */
            int64_t s1 = s0 + 8 < S ? s0 + 8 : S;
            if (s1 - s0 == 8 && _mm256_testz_si256(_mm256_loadu_si256((const __m256i *)(p + s0)), high_bits))
                continue;
            for (int64_t s = s0; s < s1; s++) {
                int32_t rest = p[s] & ~0x7FFF;
                if (rest)
                    for (int64_t d = 0; d < D; d++) acc[g][d] += rest * (int32_t)v[s * D + d];
            }
        }
        for (int64_t d = 0; d < D; d++) out[g * D + d] = (float)acc[g][d] * unit;
    }
}

/* out (G heads, D) = for each head, the sum over S positions of probs * values (int8), in int32, times
   vmax / LLAMA_ATTENTION_ONE. The values' rows are read two positions at a time and shared by the G heads:
   each pair of positions' values interleaved to int16 (v[s][d], v[s+1][d]) meets the pair of the two
   positions' probabilities (p[s], p[s+1]) in one vpmaddwd. A probability may exceed int16 (it reaches
   LLAMA_ATTENTION_ONE = 2^17 where one position takes all the weight): its low 15 bits go into the pairs,
   and the rest, a multiple of 2^15, is added afterwards for the few positions that have it (no
   more than 4 a head: the probabilities sum to at most 2^17). Every partial sum is an integer below
   127 * 2^17 in magnitude, and integer sums do not depend on their order: the numbers are
   attend_head's. Scratch: pairs, G * ((S + 1) / 2) int32. */
AVX2 static void values_times_probs(const Model *m, const int8_t *v, int64_t S, int64_t G, const int32_t *probs,
                                    int32_t *pairs, float vmax, float *out) {
    int64_t D = m->D, P = (S + 1) / 2;
    for (int64_t g = 0; g < G; g++)
        for (int64_t i = 0; i < P; i++) {
            int32_t low = probs[g * S + 2 * i] & 0x7FFF, high = 2 * i + 1 < S ? probs[g * S + 2 * i + 1] & 0x7FFF : 0;
            pairs[g * P + i] = (int32_t)((uint32_t)high << 16 | (uint32_t)low);
        }
    float unit = vmax * (float)(1.0 / (double)m->attention_one);
    for (int64_t g0 = 0; g0 < G; g0 += 3) /* three heads at a time */
        heads_times_values(m, v, S, G - g0 < 3 ? G - g0 : 3, probs + g0 * S, pairs + g0 * P, unit, out + g0 * D);
}

/* attend_head's numbers with AVX2 (D a multiple of 32): the same IEEE operations on eight
   positions at a time, the same integer sums. Scratch: ratio and weights (S), probs (G * S), pairs. */
AVX2 static void attend_head_avx2(const Model *m, const Layer *L, int64_t stream, int64_t pos, int64_t kv,
                                  const int8_t *q, const float *qs, float *ratio, float *weights, int32_t *probs,
                                  int32_t *pairs, float *out) {
    int64_t D = m->D, G = m->H / m->KV, first = window_start(L, pos), S = pos + 1 - first, S8 = S / 8 * 8;
    int64_t at = (stream * m->KV + kv) * m->length;
    const int8_t *k = L->k + (at + first) * D, *v = L->v + (at + first) * D;
    const float *ks = L->ks + at + first, *vs = L->vs + at + first;
    float vmax = L->vmax[at + pos];
    const __m256 last = _mm256_set1_ps((float)m->attention_last), zero = _mm256_setzero_ps();
    int64_t s;
    for (s = 0; s < S8; s += 8)
        _mm256_storeu_ps(ratio + s, _mm256_div_ps(_mm256_loadu_ps(vs + s), _mm256_set1_ps(vmax)));
    for (; s < S; s++) ratio[s] = vs[s] / vmax;
    for (int64_t g = 0; g < G; g++) {
        int64_t h = kv * G + g;
        const int8_t *qh = q + h * D;
        float factor_q = qs[h] * (float)m->score_factor, top = -INFINITY;
        __m256 tops = _mm256_set1_ps(-INFINITY);
        for (s = 0; s < S8; s += 8) {
            __m256 score = _mm256_mul_ps(_mm256_cvtepi32_ps(eight_dots(qh, k + s * D, D)), _mm256_set1_ps(factor_q));
            score = _mm256_mul_ps(score, _mm256_loadu_ps(ks + s));
            _mm256_storeu_ps(weights + s, score);
            tops = _mm256_max_ps(tops, score);
        }
        float lanes[8];
        _mm256_storeu_ps(lanes, tops);
        for (int j = 0; j < 8; j++) top = lanes[j] > top ? lanes[j] : top;
        for (; s < S; s++) {
            weights[s] = score_of(qh, k + s * D, D, factor_q, ks[s]);
            if (weights[s] > top) top = weights[s];
        }
        /* table steps below the maximum, rounded as rintf rounds (the current mode: half to even),
           clipped; the table's integers summed per lane (<= 1,024 * 2^20 < 2^31 for 8,192
           positions), then in 64 bits */
        __m256i lane_totals = _mm256_setzero_si256();
        __m256 top8 = _mm256_set1_ps(top);
        for (s = 0; s < S8; s += 8) {
            __m256 index = _mm256_round_ps(_mm256_sub_ps(top8, _mm256_loadu_ps(weights + s)),
                                           _MM_FROUND_CUR_DIRECTION);
            index = _mm256_min_ps(_mm256_max_ps(index, zero), last);
            __m256 w = _mm256_i32gather_ps(m->attention_exp, _mm256_cvttps_epi32(index), 4);
            _mm256_storeu_ps(weights + s, w);
            lane_totals = _mm256_add_epi32(lane_totals, _mm256_cvttps_epi32(w));
        }
        int32_t totals[8];
        _mm256_storeu_si256((__m256i *)totals, lane_totals);
        int64_t total = 0;
        for (int j = 0; j < 8; j++) total += totals[j];
        for (; s < S; s++) {
            weights[s] = table_weight(m, top, weights[s]);
            total += (int64_t)weights[s];
        }
        float factor = (float)((double)m->attention_one / (double)total);
        for (s = 0; s < S8; s += 8) {
            __m256 w = _mm256_mul_ps(_mm256_loadu_ps(weights + s), _mm256_loadu_ps(ratio + s));
            w = _mm256_mul_ps(w, _mm256_set1_ps(factor));
            _mm256_storeu_si256((__m256i *)(probs + g * S + s), _mm256_cvttps_epi32(_mm256_floor_ps(w)));
        }
        for (; s < S; s++) probs[g * S + s] = probability(weights[s], ratio[s], factor);
    }
    values_times_probs(m, v, S, G, probs, pairs, vmax, out + kv * G * D);
}
#endif

void lmz_attend(const Model *m, const Layer *L, int64_t stream, int64_t pos, int64_t kv, const int8_t *q,
                const float *qs, float *ratio, float *weights, int32_t *probs, int32_t *pairs, float *out) {
#ifdef __x86_64__
    if (avx2_here(m) && m->D % 32 == 0) {
        attend_head_avx2(m, L, stream, pos, kv, q, qs, ratio, weights, probs, pairs, out);
        return;
    }
#else
    (void)pairs;
#endif
    attend_head(m, L, stream, pos, kv, q, qs, ratio, weights, probs, out);
}
