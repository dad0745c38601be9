/* Exact int8 GEMMs for lmzip's integer models (loaded by native/binding.py through ctypes).

   out (M, N) float32 = a (M, K) @ w^T, where a holds int8 values stored as float32
   (the quantized activations) and w holds N output columns of K int8 weights, stored in
   panels (below): every output is one dot product.

   Every sum is an exact int32 (|a|, |w| <= 127 and K <= 2^16 keep it below 2^31),
   converted to float32 once with round-to-nearest-even: the same float32 that a
   float32 GEMM of the same integers gives (its partial sums stay exact below 2^24)
   and that torch's int8 GEMM followed by .float() gives. So the variants below --
   a portable C loop, AVX2, AVX-512 VNNI -- and any split of the columns over
   threads give identical numbers; which one runs changes only the speed.

   AVX2 has no unsigned-by-signed byte product without 16-bit saturation in
   general, but with values in [-127, 127] it is exact: |a| (unsigned) times
   w with a's sign moved onto it (vpsignb) by vpmaddubsw gives pairs whose sum
   is at most 2 * 127 * 127 = 32,258 < 2^15, then vpmaddwd with ones widens
   them to int32. AVX-512 VNNI's vpdpbusd multiplies unsigned by signed bytes
   and adds four products straight into int32: a + 128 is unsigned, and the
   extra 128 * sum(w) of each column is subtracted at the end.

   The same products can come out as the int32 sums themselves (``lmz_gemm_i8_sums``): wide
   rows are two int8 products whose sums are combined exactly before one rounding (llama_step.c).

   Weights are stored in panels (lmz_pack_panels below packs them): the output columns in groups of
   four, and each group's inner dimension in steps of 32 -- column 0's 32 weights at k..k+31, then
   columns 1, 2 and 3's, then the next 32 k. A one-row product (a decoder's step, bound by memory)
   then reads each group of columns as one sequential stream, which the prefetchers follow at
   ~1.5x the speed of four streams 576 bytes apart. Rows are padded with zero weights to a multiple
   of 32 and the columns to a multiple of 4: zeros add nothing to a sum.

   Built without -ffast-math and with -ffp-contract=off (native/toolchain.py); the only
   floating-point operation here is the int32 -> float32 conversion. */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lmzip_native.h"

#ifdef _OPENMP
#include <omp.h>
#else
static int omp_get_thread_num(void) { return 0; }
static int omp_get_num_threads(void) { return 1; }
#endif

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define LMZ_X86 1
#endif

#define COLUMN_BLOCK 64 /* output columns a thread takes at a time: 64 * K bytes of weights stay in L2 */
#define ROW_TILE 4
#define GROUP 4      /* columns a panel interleaves */
#define STEP 32      /* the inner dimension's step in a panel */
#define PREFETCH 1024 /* bytes ahead a tile asks for, two lines a step of 32 (AVX2 EPYC: 512-3072 all pay) */

/* Ask for the two lines of a panel step PREFETCH bytes ahead. Where a product has at most four
   rows (a decoder's step of 1-4 streams), each weight is used once: asked for as non-temporal
   (NTA), the lines skip the outer caches and a one-row step's GEMMs ran 1.15x faster (AVX2 EPYC).
   With more rows the weights are read again for each band of rows, and must stay in the caches. */
#define ASK_AHEAD(p, once)                                                                             \
    do {                                                                                               \
        if (once) {                                                                                    \
            _mm_prefetch((const char *)(p) + PREFETCH, _MM_HINT_NTA);                                  \
            _mm_prefetch((const char *)(p) + PREFETCH + 64, _MM_HINT_NTA);                             \
        } else {                                                                                       \
            _mm_prefetch((const char *)(p) + PREFETCH, _MM_HINT_T0);                                   \
            _mm_prefetch((const char *)(p) + PREFETCH + 64, _MM_HINT_T0);                              \
        }                                                                                              \
    } while (0)

/* K padded to the panels' step */
static inline int64_t padded(int64_t K) { return (K + STEP - 1) / STEP * STEP; }

/* column n's first STEP weights in the panels of an (N, K) weight; its weights at k..k+31 (k a
   multiple of STEP) lie GROUP * k bytes further */
static inline const int8_t *column(const int8_t *w, int64_t K, int64_t n) {
    return w + (n / GROUP) * GROUP * padded(K) + (n % GROUP) * STEP;
}

/* weight k of a column */
static inline int32_t weight_at(const int8_t *col, int64_t k) { return col[GROUP * (k / STEP * STEP) + k % STEP]; }

/* Where the sums go: float32 (rounded once) or, where `sums` is set, the int32 sums themselves. */
typedef struct {
    float *out;
    int32_t *sums;
} Sink;

static inline void put(Sink sink, int64_t at, int32_t s) {
    if (sink.sums)
        sink.sums[at] = s;
    else
        sink.out[at] = (float)s;
}

static inline Sink shifted(Sink sink, int64_t by) {
    return (Sink){sink.out ? sink.out + by : NULL, sink.sums ? sink.sums + by : NULL};
}

/* -- the portable reference ------------------------------------------------------- */

/* rows x cols outputs: columns n0.. of w, into out's columns 0.. (colsum likewise from n0) */
static void tile_scalar(const int8_t *a, int64_t rows, const int8_t *w, int64_t n0, int64_t cols, int64_t K,
                        const int32_t *colsum, Sink out, int64_t N) {
    (void)colsum;
    for (int64_t m = 0; m < rows; m++)
        for (int64_t n = 0; n < cols; n++) {
            const int8_t *col = column(w, K, n0 + n);
            int32_t s = 0;
            for (int64_t k = 0; k < K; k++) s += (int32_t)a[m * K + k] * weight_at(col, k);
            put(out, m * N + n, s);
        }
}

#ifdef LMZ_X86

/* -- AVX2: the sign trick ------------------------------------------------------------ */

__attribute__((target("avx2"))) static inline int32_t hsum_avx2(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    return _mm_cvtsi128_si32(s);
}

/* rows x cols outputs (rows <= 4, cols <= 2, or rows <= 2 and cols <= 4) from column n: each
   weight vector is loaded once for all rows, each activation vector once for all columns */
#define AVX2_TILE(NAME, MR, NR)                                                                        \
    __attribute__((target("avx2"))) static void NAME(const int8_t *a, const int8_t *w, int64_t n,      \
                                                     int64_t K, int64_t K32, int once, int32_t *sums) { \
        const __m256i ones = _mm256_set1_epi16(1);                                                     \
        const int8_t *col[NR];                                                                         \
        __m256i acc[MR][NR];                                                                           \
        for (int j = 0; j < NR; j++) col[j] = column(w, K, n + j);                                     \
        for (int i = 0; i < MR; i++)                                                                   \
            for (int j = 0; j < NR; j++) acc[i][j] = _mm256_setzero_si256();                           \
        for (int64_t k = 0; k < K32; k += 32) {                                                        \
            __m256i wv[NR];                                                                            \
            ASK_AHEAD(col[0] + GROUP * k, once);                                                       \
            for (int j = 0; j < NR; j++) wv[j] = _mm256_loadu_si256((const __m256i *)(col[j] + GROUP * k)); \
            for (int i = 0; i < MR; i++) {                                                             \
                __m256i av = _mm256_loadu_si256((const __m256i *)(a + i * K + k));                     \
                __m256i aabs = _mm256_abs_epi8(av);                                                    \
                for (int j = 0; j < NR; j++) {                                                         \
                    __m256i pairs = _mm256_maddubs_epi16(aabs, _mm256_sign_epi8(wv[j], av));           \
                    acc[i][j] = _mm256_add_epi32(acc[i][j], _mm256_madd_epi16(pairs, ones));           \
                }                                                                                      \
            }                                                                                          \
        }                                                                                              \
        for (int i = 0; i < MR; i++)                                                                   \
            for (int j = 0; j < NR; j++) {                                                             \
                int32_t s = hsum_avx2(acc[i][j]);                                                      \
                for (int64_t k = K32; k < K; k++) s += (int32_t)a[i * K + k] * weight_at(col[j], k);   \
                sums[i * NR + j] = s;                                                                  \
            }                                                                                          \
    }

AVX2_TILE(avx2_4x2, 4, 2)
AVX2_TILE(avx2_3x2, 3, 2)
AVX2_TILE(avx2_2x4, 2, 4)
AVX2_TILE(avx2_1x4, 1, 4)
AVX2_TILE(avx2_1x1, 1, 1)

typedef void (*avx2_kernel)(const int8_t *, const int8_t *, int64_t, int64_t, int64_t, int, int32_t *);

/* A product's rows go in bands of four, then one band of what is left (3, 2 or 1 rows: one band
   reads each weight once, two would read it twice). */
static inline int64_t band_rows(int64_t left) { return left >= ROW_TILE ? ROW_TILE : left; }

/* MR rows x cols outputs from column n0: tiles of MR x NR, then the last columns one at a time
   (once: the weights are used by these rows alone, ASK_AHEAD) */
__attribute__((target("avx2"))) static void avx2_band(avx2_kernel kernel, int MR, int NR, const int8_t *a,
                                                      const int8_t *w, int64_t n0, int64_t cols, int64_t K,
                                                      int once, Sink out, int64_t N) {
    int64_t K32 = K / 32 * 32, n = 0;
    int32_t sums[8];
    for (; n + NR <= cols; n += NR) {
        kernel(a, w, n0 + n, K, K32, once, sums);
        for (int i = 0; i < MR; i++)
            for (int j = 0; j < NR; j++) put(out, i * N + n + j, sums[i * NR + j]);
    }
    for (; n < cols; n++)
        for (int i = 0; i < MR; i++) {
            avx2_1x1(a + i * K, w, n0 + n, K, K32, once, sums);
            put(out, i * N + n, sums[0]);
        }
}

__attribute__((target("avx2"))) static void tile_avx2(const int8_t *a, int64_t rows, const int8_t *w, int64_t n0,
                                                      int64_t cols, int64_t K, const int32_t *colsum, Sink out,
                                                      int64_t N) {
    (void)colsum;
    int once = rows <= ROW_TILE;
    for (int64_t m = 0, h; m < rows; m += h) {
        const int8_t *band = a + m * K;
        Sink to = shifted(out, m * N);
        switch (h = band_rows(rows - m)) { /* each tile named: through a table of them, 3 rows ran ~5 % slower */
        case 4: avx2_band(avx2_4x2, 4, 2, band, w, n0, cols, K, once, to, N); break;
        case 3: avx2_band(avx2_3x2, 3, 2, band, w, n0, cols, K, once, to, N); break;
        case 2: avx2_band(avx2_2x4, 2, 4, band, w, n0, cols, K, once, to, N); break;
        default: avx2_band(avx2_1x4, 1, 4, band, w, n0, cols, K, once, to, N);
        }
    }
}

/* -- AVX-512 VNNI: unsigned a + 128, then subtract 128 * column sums -------------------- */

#define VNNI_TARGET __attribute__((target("avx512f,avx512bw,avx512vnni")))

/* rows x cols outputs from column n, rows <= 4, cols <= 4; the activations' K tail is read with
   masked loads and the weights' is padded with zeros (zeros add 0) */
VNNI_TARGET static void vnni_tile(const int8_t *a, int rows, const int8_t *w, int64_t n, int cols, int64_t K,
                                  int32_t *sums) {
    const __m512i bias = _mm512_set1_epi8((char)0x80);
    int64_t Kp = padded(K);
    __m512i acc[4][4];
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) acc[i][j] = _mm512_setzero_si512();
    for (int64_t k = 0; k < K; k += 64) {
        __mmask64 mask = K - k >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << (K - k)) - 1);
        __m512i wv[4];
        for (int j = 0; j < 4; j++) { /* the column's weights at k..k+31 and k+32..k+63 (none past Kp) */
            if (j >= cols) {
                wv[j] = _mm512_setzero_si512();
                continue;
            }
            const int8_t *at = column(w, K, n + j) + GROUP * k;
            __m256i low = _mm256_loadu_si256((const __m256i *)at);
            __m256i high = k + 32 < Kp ? _mm256_loadu_si256((const __m256i *)(at + GROUP * 32)) : _mm256_setzero_si256();
            wv[j] = _mm512_inserti64x4(_mm512_castsi256_si512(low), high, 1);
        }
        for (int i = 0; i < rows; i++) {
            /* a XOR 0x80 = a + 128 as an unsigned byte; masked lanes stay 0 (contribute nothing) */
            __m512i au = _mm512_maskz_mov_epi8(mask, _mm512_xor_si512(_mm512_maskz_loadu_epi8(mask, a + i * K + k), bias));
            for (int j = 0; j < 4; j++) acc[i][j] = _mm512_dpbusd_epi32(acc[i][j], au, wv[j]);
        }
    }
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++) sums[i * 4 + j] = _mm512_reduce_add_epi32(acc[i][j]);
}

VNNI_TARGET static void tile_vnni(const int8_t *a, int64_t rows, const int8_t *w, int64_t n0, int64_t cols,
                                  int64_t K, const int32_t *colsum, Sink out, int64_t N) {
    int32_t sums[16];
    for (int64_t m = 0; m < rows; m += 4) {
        int mr = rows - m < 4 ? (int)(rows - m) : 4;
        for (int64_t n = 0; n < cols; n += 4) {
            int nr = cols - n < 4 ? (int)(cols - n) : 4;
            vnni_tile(a + m * K, mr, w, n0 + n, nr, K, sums);
            for (int i = 0; i < mr; i++)
                for (int j = 0; j < nr; j++)
                    put(out, (m + i) * N + n + j, sums[i * 4 + j] - 128 * colsum[n + j]);
        }
    }
}

/* -- wide rows on AVX2: int16 activations times int8 weights ---------------------------- */

/* Recipe 2's rows (arithmetic.WIDE_ROWS: |a| <= 127 * 128) times int8 weights, exact. vpmaddwd
   multiplies 16-bit pairs and adds each pair into an int32 lane; a lane takes K/8 products of at
   most 16,256 * 127, so the inner dimension goes in blocks of WIDE_BLOCK (8,192: a lane stays
   below 2^31) and each block's lanes are summed in 64 bits. Each weight vector is widened to 16
   bits once for all the rows of a tile. */
#define WIDE_BLOCK 8192

/* rows x cols outputs from column n (rows <= 4, cols <= 2, or rows <= 2 and cols <= 4): 64-bit
   sums. A panel's 32 weights of a column go in two halves of 16 (one vector of int16 each). */
#define WIDE_TILE(NAME, MR, NR)                                                                        \
    __attribute__((target("avx2"))) static void NAME(const int16_t *a, const int8_t *w, int64_t n,     \
                                                     int64_t K, int once, int64_t *sums) {             \
        const int8_t *col[NR];                                                                         \
        for (int j = 0; j < NR; j++) col[j] = column(w, K, n + j);                                     \
        for (int i = 0; i < MR * NR; i++) sums[i] = 0;                                                 \
        int64_t K32 = K / 32 * 32;                                                                     \
        for (int64_t k0 = 0; k0 < K32; k0 += WIDE_BLOCK) {                                             \
            int64_t k1 = K32 - k0 < WIDE_BLOCK ? K32 : k0 + WIDE_BLOCK;                                \
            __m256i acc[MR][NR];                                                                       \
            for (int i = 0; i < MR; i++)                                                               \
                for (int j = 0; j < NR; j++) acc[i][j] = _mm256_setzero_si256();                       \
            for (int64_t k = k0; k < k1; k += 32) {                                                    \
                ASK_AHEAD(col[0] + GROUP * k, once);                                                   \
                for (int half = 0; half < 32; half += 16) {                                            \
                    __m256i wv[NR];                                                                    \
                    for (int j = 0; j < NR; j++)                                                       \
                        wv[j] = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(col[j] + GROUP * k + half))); \
                    for (int i = 0; i < MR; i++) {                                                     \
                        __m256i av = _mm256_loadu_si256((const __m256i *)(a + i * K + k + half));      \
                        for (int j = 0; j < NR; j++)                                                   \
                            acc[i][j] = _mm256_add_epi32(acc[i][j], _mm256_madd_epi16(av, wv[j]));     \
                    }                                                                                  \
                }                                                                                      \
            }                                                                                          \
            for (int i = 0; i < MR; i++)                                                               \
                for (int j = 0; j < NR; j++) sums[i * NR + j] += lanes_sum64(acc[i][j]);               \
        }                                                                                              \
        for (int i = 0; i < MR; i++)                                                                   \
            for (int j = 0; j < NR; j++)                                                               \
                for (int64_t k = K32; k < K; k++) sums[i * NR + j] += (int64_t)a[i * K + k] * weight_at(col[j], k); \
    }

/* an int32 vector's eight lanes summed in 64 bits (each lane below 2^31; the sum may not be) */
__attribute__((target("avx2"))) static inline int64_t lanes_sum64(__m256i v) {
    int32_t lanes[8];
    _mm256_storeu_si256((__m256i *)lanes, v);
    int64_t s = 0;
    for (int i = 0; i < 8; i++) s += lanes[i];
    return s;
}

WIDE_TILE(wide_4x2, 4, 2)
WIDE_TILE(wide_3x2, 3, 2)
WIDE_TILE(wide_2x4, 2, 4)
WIDE_TILE(wide_1x4, 1, 4)
WIDE_TILE(wide_1x1, 1, 1)

typedef void (*wide_kernel)(const int16_t *, const int8_t *, int64_t, int64_t, int, int64_t *);


/* MR rows x columns [n0, n1): tiles of MR x NR, then the last columns one at a time; each exact
   sum (below 2^53) rounded once to float32 (once: the weights are used by these rows alone) */
__attribute__((target("avx2"))) static void wide_band(wide_kernel kernel, int MR, int NR, const int16_t *a,
                                                      const int8_t *w, int64_t n0, int64_t n1, int64_t K,
                                                      int once, float *out, int64_t N) {
    int64_t sums[8], n = n0;
    for (; n + NR <= n1; n += NR) {
        kernel(a, w, n, K, once, sums);
        for (int i = 0; i < MR; i++)
            for (int j = 0; j < NR; j++) out[i * N + n + j] = (float)(double)sums[i * NR + j];
    }
    for (; n < n1; n++)
        for (int i = 0; i < MR; i++) {
            wide_1x1(a + i * K, w, n, K, once, sums);
            out[i * N + n] = (float)(double)sums[0];
        }
}

/* all M rows for columns [n0, n1), in column blocks that stay in L2 across the rows */
__attribute__((target("avx2"))) static void wide_columns(const int16_t *a, int64_t M, int64_t K, const int8_t *w,
                                                         int64_t N, float *out, int64_t n0, int64_t n1) {
    for (int64_t b = n0; b < n1; b += COLUMN_BLOCK) {
        int64_t e = n1 - b < COLUMN_BLOCK ? n1 : b + COLUMN_BLOCK;
        for (int64_t m = 0, h; m < M; m += h) { /* bands as tile_avx2's */
            const int16_t *band = a + m * K;
            int once = M <= ROW_TILE;
            switch (h = band_rows(M - m)) {
            case 4: wide_band(wide_4x2, 4, 2, band, w, b, e, K, once, out + m * N, N); break;
            case 3: wide_band(wide_3x2, 3, 2, band, w, b, e, K, once, out + m * N, N); break;
            case 2: wide_band(wide_2x4, 2, 4, band, w, b, e, K, once, out + m * N, N); break;
            default: wide_band(wide_1x4, 1, 4, band, w, b, e, K, once, out + m * N, N);
            }
        }
    }
}

#endif /* LMZ_X86 */

/* -- packing ------------------------------------------------------------------------- */

/* w (K, N): the inner dimension first, as the models store their weights -> the panels (zeros
   where the shape does not fill a step or a group: the caller's buffer of padded(K) times N
   rounded up to GROUP bytes) and each column's weight sum. For each step of 32 rows and each group
   of four columns, the group's 128 bytes are written in one place (numpy's two strided copies took
   0.54 s for SmolLM2's head, this 0.04 s on the AVX2 EPYC). */
void lmz_pack_panels(const int8_t *w, int64_t K, int64_t N, int8_t *panels, int32_t *sums) {
    int64_t Kp = padded(K), groups = (N + GROUP - 1) / GROUP;
    memset(panels, 0, (size_t)(groups * GROUP * Kp));
    for (int64_t n = 0; n < N; n++) sums[n] = 0;
    for (int64_t g = 0; g < groups; g++) {
        int64_t cols = N - g * GROUP < GROUP ? N - g * GROUP : GROUP;
        int32_t sum[GROUP] = {0};
        for (int64_t k0 = 0; k0 < K; k0 += STEP) {
            int8_t *out = panels + g * GROUP * Kp + GROUP * k0; /* column j's weights k0.. at out + j * STEP */
            const int8_t *in = w + k0 * N + g * GROUP;
            int64_t steps = K - k0 < STEP ? K - k0 : STEP;
            for (int64_t t = 0; t < steps; t++)
                for (int64_t j = 0; j < cols; j++) {
                    int8_t v = in[t * N + j];
                    out[j * STEP + t] = v;
                    sum[j] += v;
                }
        }
        for (int64_t j = 0; j < cols; j++) sums[g * GROUP + j] = sum[j];
    }
}

/* -- dispatch ------------------------------------------------------------------------ */

typedef void (*tile_fn)(const int8_t *, int64_t, const int8_t *, int64_t, int64_t, int64_t, const int32_t *,
                        Sink, int64_t);

enum { KERNEL_SCALAR = 0, KERNEL_AVX2 = 1, KERNEL_VNNI = 2 };

/* The best kernel this CPU runs (0 scalar, 1 AVX2, 2 AVX-512 VNNI). */
int lmz_best_kernel(void) {
#ifdef LMZ_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vnni"))
        return KERNEL_VNNI;
    if (__builtin_cpu_supports("avx2")) return KERNEL_AVX2;
#endif
    return KERNEL_SCALAR;
}

static tile_fn kernel_fn(int kernel) {
#ifdef LMZ_X86
    if (kernel == KERNEL_VNNI) return tile_vnni;
    if (kernel == KERNEL_AVX2) return tile_avx2;
#endif
    (void)kernel;
    return tile_scalar;
}

/* float32 activations holding integers in [-127, 127] -> int8; returns 0, or -1 if a value is not
   such an integer (the caller then computes without this library) */
static int to_int8(const float *x, int64_t count, int8_t *out) {
    for (int64_t i = 0; i < count; i++) {
        float v = x[i];
        if (!(v >= -127.0f && v <= 127.0f) || (float)(int32_t)v != v) return -1;
        out[i] = (int8_t)(int32_t)v;
    }
    return 0;
}

/* Columns [n0, n1) in blocks of COLUMN_BLOCK, each block's rows ROW_TILE * 16 at a time (64 rows of
   a stay in L1/L2 across the block's columns). */
static void column_range(tile_fn tile, const int8_t *a, int64_t M, int64_t K, const int8_t *w, int64_t N,
                         const int32_t *colsum, Sink out, int64_t n0, int64_t n1) {
    for (int64_t b = n0; b < n1; b += COLUMN_BLOCK) {
        int64_t cols = n1 - b < COLUMN_BLOCK ? n1 - b : COLUMN_BLOCK;
        for (int64_t m = 0; m < M; m += ROW_TILE * 16) {
            int64_t rows = M - m < ROW_TILE * 16 ? M - m : ROW_TILE * 16;
            tile(a + m * K, rows, w, b, cols, K, colsum + b, shifted(out, m * N + b), N);
        }
    }
}

/* out (M, N) = a (M, K) @ w (N, K)^T, a already int8, into a Sink; colsum (N) = each column's weights summed
   (used by the VNNI kernel). K <= 65536 (127 * 127 * 65536 < 2^31). */
static void gemm_into(const int8_t *a, int64_t M, int64_t K, const int8_t *w, int64_t N, const int32_t *colsum,
                      Sink out, int kernel, int threads) {
    tile_fn tile = kernel_fn(kernel);
    if (threads <= 1 || M * N * K <= (1 << 18)) {
        column_range(tile, a, M, K, w, N, colsum, out, 0, N);
        return;
    }
    /* threads over output columns, an equal share each (multiples of 4, the tiles' width): blocks of
       64 handed out in turn left one thread a whole block more on SmolLM2's 576 and 960 columns.
       Every output is one whole dot product, whoever computes it. */
#pragma omp parallel num_threads(threads)
    {
        int64_t t = omp_get_thread_num(), T = omp_get_num_threads();
        int64_t n0 = (N * t / T) / 4 * 4, n1 = t == T - 1 ? N : (N * (t + 1) / T) / 4 * 4;
        column_range(tile, a, M, K, w, N, colsum, out, n0, n1);
    }
}

/* gemm_into as float32 (each int32 sum rounded once) */
void lmz_gemm_i8(const int8_t *a, int64_t M, int64_t K, const int8_t *w, int64_t N, const int32_t *colsum,
                 float *out, int kernel, int threads) {
    gemm_into(a, M, K, w, N, colsum, (Sink){out, NULL}, kernel, threads);
}

/* gemm_into as the int32 sums themselves */
void lmz_gemm_i8_sums(const int8_t *a, int64_t M, int64_t K, const int8_t *w, int64_t N, const int32_t *colsum,
                      int32_t *sums, int kernel, int threads) {
    gemm_into(a, M, K, w, N, colsum, (Sink){NULL, sums}, kernel, threads);
}

/* The same with float32 activations holding int8 integers, as float32 (`sums` NULL) or as the int32
   sums (`out` NULL). Returns 0, -1 for activations that are not integers in [-127, 127], -2 for K
   too wide or no memory. */
int lmz_int8_gemm(const float *a_f32, int64_t M, int64_t K, const int8_t *w, int64_t N, const int32_t *colsum,
                  float *out, int32_t *sums, int kernel, int threads) {
    if (K > 65536) return -2;
    int8_t *a = malloc((size_t)(M * K > 0 ? M * K : 1));
    if (!a) return -2;
    if (to_int8(a_f32, M * K, a)) {
        free(a);
        return -1;
    }
    gemm_into(a, M, K, w, N, colsum, (Sink){out, sums}, kernel, threads);
    free(a);
    return 0;
}

/* out (M, N) float32 = wide rows a (M, K) int16, |a| <= 127 * 128, @ w (N, K)^T: each exact sum
   rounded once. Returns 0, or -1 where this kernel has no wide GEMM (the caller splits each row
   into two int8 rows for lmz_gemm_i8_sums instead: the same sums). */
int lmz_gemm_wide(const int16_t *a, int64_t M, int64_t K, const int8_t *w, int64_t N, float *out, int kernel,
                  int threads) {
#ifdef LMZ_X86
    if (kernel != KERNEL_AVX2) return -1; /* VNNI: two int8 products run faster than one of int16s */
    if (threads <= 1 || M * N * K <= (1 << 18)) {
        wide_columns(a, M, K, w, N, out, 0, N);
        return 0;
    }
#pragma omp parallel num_threads(threads)
    {
        int64_t t = omp_get_thread_num(), T = omp_get_num_threads();
        int64_t n0 = (N * t / T) / 4 * 4, n1 = t == T - 1 ? N : (N * (t + 1) / T) / 4 * 4;
        wide_columns(a, M, K, w, N, out, n0, n1);
    }
    return 0;
#else
    (void)a, (void)M, (void)K, (void)w, (void)N, (void)out, (void)kernel, (void)threads;
    return -1;
#endif
}
