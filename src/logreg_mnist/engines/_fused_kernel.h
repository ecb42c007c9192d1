/* The fused engine's arithmetic, instantiated once per element type and instruction set by
 * _fused_kernels.c, which defines before each inclusion KERNEL_F64 (0: float, 1: double),
 * KERNEL_SIMD (the name suffix), KERNEL_AVX2 (0 or 1) and VBYTES (the vector width in bytes).
 * Each inclusion defines the static kernel_<f32|f64>_<KERNEL_SIMD> (a struct kernel, _fused.h).
 *
 * The arguments come checked (_fused.c): every array of the stated length, labels < n_out,
 * n_out <= kp <= KP_MAX, kp >= the vector's lanes, the layout built by _fused_layout.c.
 *
 * Rows are uint8 pixels u (the value is u / 256). A row is either sparse (CSR: its non-zero
 * pixels' column indices `idx` (uint16) and values `val`) or dense (all n_in values, idx NULL).
 * W is (n_in, KP) row-major, KP = n_out rounded up to a whole number of 64-byte cache lines
 * (16 for MNIST's 10 classes), the arrays 64-byte aligned (fused.py), so that a row is one cache
 * line and no load splits across two; columns >= n_out are 0. (Unpadded rows of 10, a smaller
 * footprint, measured about 8 % slower: their loads straddle lines.) The code also takes a KP
 * that is not a multiple of the vector width: the last vector then overlaps the one before it
 * (vector v starts at OFF(v)), and overlapping lanes compute the same sums in the same order.
 * Sums over pixels are kept unscaled and multiplied by 1/256 once (exact: a power of two).
 */

#if KERNEL_F64
#define REAL double
#define EXP exp
#define LOG log
#define SFX CAT(f64, KERNEL_SIMD)
#else
#define REAL float
#define EXP expf
#define LOG logf
#define SFX CAT(f32, KERNEL_SIMD)
#define VEXP 1 /* float: a vectorised exp (below) */
#endif

#define CAT_(a, b) a##_##b
#define CAT(a, b) CAT_(a, b)
#define FN(name) CAT(name, SFX)

/* SIMD vectors of VBYTES bytes (_fused_kernels.c: 32 for the AVX2 clones, 16, SSE2's or NEON's width,
 * for the baseline, where wider generic vectors are split by the compiler and run many times
 * slower), loaded and stored unaligned. Each lane's sums are the same for any width. */
typedef REAL FN(vec) __attribute__((vector_size(VBYTES), aligned(sizeof(REAL))));
#define V FN(vec)
#define LANES ((int)(VBYTES / sizeof(REAL)))
#define NVEC_MAX (KP_MAX / LANES)
#define NVEC(KP) (((KP) + LANES - 1) / LANES)
#define OFF(v, KP) ((v) * LANES < (KP) - LANES ? (v) * LANES : (KP) - LANES)

/* The uint8 -> REAL conversion as a table: one broadcast load instead of a convert and a shuffle. */
static REAL FN(u8)[256];
static void FN(init_table)(void) { for (int i = 0; i < 256; i++) FN(u8)[i] = (REAL)i; }

/* The table entry *p in every lane: for AVX2, one vbroadcastss/sd from memory, a pure load;
 * otherwise a scalar load the compiler spreads. */
#if KERNEL_AVX2 && KERNEL_F64
#define SPLAT(p) ((V)_mm256_broadcast_sd(p))
#elif KERNEL_AVX2
#define SPLAT(p) ((V)_mm256_broadcast_ss(p))
#else
#define SPLAT(p) ((V){0} + *(p))
#endif

#ifndef LOAD4
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
/* out[0:4] = a[t:t+4] (elements of `bits` bits) with one load of a `wide` word, split by shifts:
 * the gathers keep the load ports busy, and shifts run on other ports. */
#define LOAD4(a, t, type, wide, bits, out)                                                          \
    do {                                                                                            \
        wide w_;                                                                                    \
        memcpy(&w_, (a) + (t), sizeof w_);                                                          \
        (out)[0] = (type)w_; (out)[1] = (type)(w_ >> (bits));                                       \
        (out)[2] = (type)(w_ >> 2 * (bits)); (out)[3] = (type)(w_ >> 3 * (bits));                   \
    } while (0)
#else
#define LOAD4(a, t, type, wide, bits, out)                                                          \
    do { for (int k_ = 0; k_ < 4; k_++) (out)[k_] = (a)[(t) + k_]; } while (0)
#endif
#endif

/* acc[v] (the columns from OFF(v)) = sum_t val[t] * M[row(t), :] (unscaled), row(t) = idx[t], or t for dense
 * rows (idx NULL).
 * Four interleaved accumulators per vector hide the FMA latency; they are added in a fixed order.
 * The sparse and dense loops are separate copies (ROW), so the inner loop has no test of idx. */
static inline __attribute__((always_inline)) void FN(gather_sum)(
    const uint8_t *restrict val, const uint16_t *restrict idx, int64_t cnt,
    const REAL *restrict M, const int KP, V *restrict out)
{
    const int NV = NVEC(KP);
    V a0[NVEC_MAX], a1[NVEC_MAX], a2[NVEC_MAX], a3[NVEC_MAX];
    for (int v = 0; v < NV; v++) { a0[v] = (V){0}; a1[v] = (V){0}; a2[v] = (V){0}; a3[v] = (V){0}; }
#define AT(row, v) (*(const V *)((row) + OFF(v, KP)))
    /* PRE loads the group's indices (sparse rows only); ROW(q, k) is the row of M for t = q, the
       k-th of its group of four. */
#define GATHER_LOOP(PRE, ROW)                                                                                \
    do {                                                                                                     \
        int64_t t = 0;                                                                                       \
        for (; t + 3 < cnt; t += 4) {                                                                        \
            uint8_t u4[4];                                                                                   \
            uint16_t i4[4];                                                                                  \
            LOAD4(val, t, uint8_t, uint32_t, 8, u4);                                                         \
            PRE;                                                                                             \
            const V u0 = SPLAT(&FN(u8)[u4[0]]), u1 = SPLAT(&FN(u8)[u4[1]]);                                  \
            const V u2 = SPLAT(&FN(u8)[u4[2]]), u3 = SPLAT(&FN(u8)[u4[3]]);                                  \
            const REAL *w0 = ROW(t, 0), *w1 = ROW(t + 1, 1), *w2 = ROW(t + 2, 2), *w3 = ROW(t + 3, 3);       \
            (void)i4;                                                                                        \
            for (int v = 0; v < NV; v++) {                                                                   \
                a0[v] += u0 * AT(w0, v); a1[v] += u1 * AT(w1, v); a2[v] += u2 * AT(w2, v); a3[v] += u3 * AT(w3, v); \
            }                                                                                                \
        }                                                                                                    \
        for (; t < cnt; t++) {                                                                               \
            const V u0 = SPLAT(&FN(u8)[val[t]]);                                                             \
            const REAL *w0 = M + (size_t)(idx ? idx[t] : t) * KP;                                            \
            for (int v = 0; v < NV; v++) a0[v] += u0 * AT(w0, v);                                            \
        }                                                                                                    \
    } while (0)
#define SPARSE_ROW(q, k) (M + (size_t)i4[k] * KP)
#define DENSE_ROW(q, k) (M + (size_t)(q) * KP)
    if (idx) GATHER_LOOP(LOAD4(idx, t, uint16_t, uint64_t, 16, i4), SPARSE_ROW);
    else GATHER_LOOP((void)0, DENSE_ROW);
#undef DENSE_ROW
#undef SPARSE_ROW
#undef GATHER_LOOP
#undef AT
    for (int v = 0; v < NV; v++) out[v] = (a0[v] + a1[v]) + (a2[v] + a3[v]);
}

/* z[0:KP] = sum_t val[t] * W[idx[t], :] (unscaled); dense rows when idx is NULL. */
static inline __attribute__((always_inline)) void FN(fwd)(
    const uint8_t *restrict val, const uint16_t *restrict idx, int64_t cnt,
    const REAL *restrict W, const int KP, REAL *restrict z)
{
    V acc[NVEC_MAX];
    FN(gather_sum)(val, idx, cnt, W, KP, acc);
    for (int v = 0; v < NVEC(KP); v++) *(V *)(z + OFF(v, KP)) = acc[v];
}

/* g[0:KP] += u * d[0:KP] */
static inline __attribute__((always_inline)) void FN(axpy)(
    REAL u, const REAL *restrict d, REAL *restrict g, const int KP)
{
    const int NV = NVEC(KP);
    V out[NVEC_MAX];  /* all read before any is written: overlapping lanes get the same value */
    for (int v = 0; v < NV; v++) out[v] = *(V *)(g + OFF(v, KP)) + u * *(const V *)(d + OFF(v, KP));
    for (int v = 0; v < NV; v++) *(V *)(g + OFF(v, KP)) = out[v];
}

#ifdef VEXP
/* exp of a vector of floats at most 0 (the logits less their maximum), Cephes' expf: x = n ln2 + r,
 * a degree-5 polynomial for exp(r), scaled by 2^n through the exponent bits; within 2 ulp. */
typedef int32_t FN(ivec) __attribute__((vector_size(VBYTES)));
static inline __attribute__((always_inline)) V FN(vexp)(V x)
{
    typedef FN(ivec) VI;
    const V lo = (V){0} - 87.0f;
    const VI low = x < lo;
    x = (V)(((VI)x & ~low) | ((VI)lo & low));
    const VI n = __builtin_convertvector(x * 1.44269504088896341f - 0.5f, VI);  /* round(x / ln2), x <= 0 */
    const V nf = __builtin_convertvector(n, V);
    const V r = (x - nf * 0.693359375f) - nf * -2.12194440e-4f;
    V p = (V){0} + 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    const V y = p * (r * r) + r + 1.0f;
    return y * (V)((n + 127) << 23);
}
#endif

/* Softmax of one row's logits and its NLL; d = (P - onehot(y)) / n, the reference's formulas
 * (max shifted out) with P = exp(z - m) / sum exp(z - m): one exponential per class. */
static inline __attribute__((always_inline)) double FN(softmax_delta)(
    REAL *restrict z, const REAL *restrict b, int64_t y, int n_out, const int KP, REAL n, REAL *restrict d)
{
    const REAL scale = (REAL)(1.0 / 256.0);
    REAL m;
    for (int k = 0; k < n_out; k++) z[k] = z[k] * scale + b[k];
    m = z[0];
    for (int k = 1; k < n_out; k++) m = z[k] > m ? z[k] : m;
    REAL s = 0;
#ifdef VEXP
    for (int v = 0; v < NVEC(KP); v++) *(V *)(d + OFF(v, KP)) = FN(vexp)(*(V *)(z + OFF(v, KP)) - m);
    for (int k = 0; k < n_out; k++) s += d[k];
#else
    for (int k = 0; k < n_out; k++) { d[k] = EXP(z[k] - m); s += d[k]; }
#endif
    const REAL inv = (REAL)1 / s;
    for (int k = 0; k < n_out; k++) d[k] = (d[k] * inv - (k == y)) / n;
    for (int k = n_out; k < KP; k++) d[k] = 0;
    return -(double)((z[y] - m) - LOG(s));
}

/* W[j] -= lr * (scale * sum_p cval[p] * D[crow[p]] + l1 sign(W[j]) + 2 l2 W[j]) for j in [j0, j1). */
static inline __attribute__((always_inline)) void FN(update_csc)(
    const int64_t *restrict cp, const uint16_t *restrict crow, const uint8_t *restrict cval,
    const REAL *restrict D, REAL *restrict W, int j0, int j1, REAL lr, REAL l1, REAL l2x2, const int KP)
{
    const int NV = NVEC(KP);
    const REAL scale = (REAL)(1.0 / 256.0);
    for (int j = j0; j < j1; j++) {
        V acc[NVEC_MAX];
        FN(gather_sum)(cval + cp[j], crow + cp[j], cp[j + 1] - cp[j], D, KP, acc);
        REAL *w = W + (size_t)j * KP;
        V next[NVEC_MAX];  /* all read before any is written: overlapping lanes get the same value */
        for (int v = 0; v < NV; v++) {
            const V wv = *(V *)(w + OFF(v, KP));
            V g = acc[v] * scale;
            if (l1 != 0 || l2x2 != 0) {  /* penalties: + l1 sign(W) + 2 l2 W, as the reference adds them */
                REAL *gs = (REAL *)&g;
                const REAL *ws = (const REAL *)&wv;
                for (int k = 0; k < LANES; k++) {
                    if (l1 != 0) gs[k] += l1 * (REAL)((ws[k] > 0) - (ws[k] < 0));
                    if (l2x2 != 0) gs[k] += l2x2 * ws[k];
                }
            }
            next[v] = wv - lr * g;
        }
        for (int v = 0; v < NV; v++) *(V *)(w + OFF(v, KP)) = next[v];
    }
}

/* Index of the first t in [lo, hi) with idx[t] >= j (hi when none). */
static inline int64_t FN(lower_bound)(const uint16_t *idx, int64_t lo, int64_t hi, int j)
{
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (idx[mid] < j) lo = mid + 1; else hi = mid;
    }
    return lo;
}

/* Thread t's columns [j0, j1): boundaries balance the non-zero count (colcum: cumulative
 * non-zeros per column, n_in + 1 entries). */
static void FN(columns)(const int64_t *colcum, int n_in, int t, int nt, int *j0, int *j1)
{
    const int64_t total = colcum[n_in];
    int bounds[2];
    for (int e = 0; e < 2; e++) {
        int q = t + e;
        if (q <= 0) { bounds[e] = 0; continue; }
        if (q >= nt) { bounds[e] = n_in; continue; }
        const int64_t want = total * q / nt;
        int lo = 0, hi = n_in;  /* first j with colcum[j] >= want */
        while (lo < hi) { int mid = (lo + hi) / 2; if (colcum[mid] < want) lo = mid + 1; else hi = mid; }
        bounds[e] = lo;
    }
    *j0 = bounds[0]; *j1 = bounds[1];
}

/* s->n_batches SGD steps on consecutive minibatches starting at row s->row0.
 *   Phase 1, rows split across threads: logits, softmax, d (B, KP), per-row NLL.
 *   Phase 2, columns split across threads: each thread sums val * d over the rows, in row
 *   order, for the pixels in its columns, and updates those rows of W; thread 0 updates b.
 * Every sum is taken in an order that does not depend on the number of threads, so the
 * result is bit-identical for any thread count. The phases meet at barrier_wait (_fused_kernels.c).
 * Scratch: D (B * KP), G (n_in * KP), nll (B). Returns s->total plus the NLL of each row, added
 * in row order (so a run split into several calls sums exactly as one call). */
static double FN(sgd)(const struct sgd_args *s)
{
    const struct kernel_args *a = &s->base;
    const uint8_t *val = a->rows.val;
    const uint16_t *idx = a->rows.idx, *crow = a->rows.crow;
    const int64_t *indptr = a->rows.indptr, *colcum = a->rows.colcum, *labels = a->labels;
    const uint8_t *cval = a->rows.cval;
    const int n_in = a->rows.n_in, n_out = a->n_out, KP = a->kp, threads = a->threads;
    const int64_t row0 = s->row0, n_rows = a->n_rows, B = s->batch, n_batches = s->n_batches;
    const int64_t *colptr = a->rows.colptr ? a->rows.colptr + (row0 / B) * (int64_t)(n_in + 1) : NULL;
    const REAL lr = (REAL)s->lr, l1 = (REAL)s->l1, l2x2 = (REAL)s->l2x2;
    REAL *W = a->W, *b = a->b, *D = s->D, *G = s->G;
    double *nll = s->nll;
    double total = s->total;
    struct barrier bar = {0, 0, 0};
#ifdef _OPENMP
#pragma omp parallel num_threads(threads)
#endif
    {
        int t = 0, nt = 1, sense = 0;
#ifdef _OPENMP
        t = omp_get_thread_num(); nt = omp_get_num_threads();
#endif
        int j0, j1;
        FN(columns)(colcum, n_in, t, nt, &j0, &j1);
        for (int64_t ib = 0; ib < n_batches; ib++) {
            const int64_t start = row0 + ib * B;
            const int64_t end = start + B < n_rows ? start + B : n_rows;
            const int64_t n = end - start;
            const REAL rn = (REAL)n;
#ifdef _OPENMP
#pragma omp for schedule(static) nowait
#endif
            for (int64_t r = start; r < end; r++) {
                REAL z[KP_MAX];
                const uint8_t *v; const uint16_t *ix; int64_t cnt;
                if (idx) { v = val + indptr[r]; ix = idx + indptr[r]; cnt = indptr[r + 1] - indptr[r]; }
                else { v = val + (size_t)r * n_in; ix = NULL; cnt = n_in; }
                REAL *d = D + (r - start) * KP;
                if (KP == 16) {
                    FN(fwd)(v, ix, cnt, W, 16, z);
                    nll[r - start] = FN(softmax_delta)(z, b, labels[r - row0], n_out, 16, rn, d);
                } else {
                    FN(fwd)(v, ix, cnt, W, KP, z);
                    nll[r - start] = FN(softmax_delta)(z, b, labels[r - row0], n_out, KP, rn, d);
                }
            }
            barrier_wait(&bar, nt, &sense);  /* D complete, W and b no longer read */
            if (colptr) {
                /* this minibatch's columns (CSC): g_j = sum over its rows, in row order within
                   each of four interleaved accumulators, then the update of W's row j */
                const int64_t *cp = colptr + ib * (int64_t)(n_in + 1);
                if (KP == 16) FN(update_csc)(cp, crow, cval, D, W, j0, j1, lr, l1, l2x2, 16);
                else FN(update_csc)(cp, crow, cval, D, W, j0, j1, lr, l1, l2x2, KP);
            } else {
            for (size_t q = (size_t)j0 * KP; q < (size_t)j1 * KP; q++) G[q] = 0;
            for (int64_t r = start; r < end; r++) {
                const REAL *restrict d = D + (r - start) * KP;
                if (idx) {
                    const int64_t lo = indptr[r], hi = indptr[r + 1];
                    int64_t p = (j0 == 0) ? lo : FN(lower_bound)(idx, lo, hi, j0);
                    for (; p < hi && idx[p] < j1; p++) {
                        REAL *g = G + (size_t)idx[p] * KP;
                        if (KP == 16) FN(axpy)((REAL)val[p], d, g, 16); else FN(axpy)((REAL)val[p], d, g, KP);
                    }
                } else {
                    const uint8_t *v = val + (size_t)r * n_in;
                    for (int j = j0; j < j1; j++) FN(axpy)((REAL)v[j], d, G + (size_t)j * KP, KP);
                }
            }
            {
                const REAL scale = (REAL)(1.0 / 256.0);
                for (size_t q = (size_t)j0 * KP; q < (size_t)j1 * KP; q++) {
                    REAL g = G[q] * scale;
                    if (l1 != 0) g += l1 * (REAL)((W[q] > 0) - (W[q] < 0));
                    if (l2x2 != 0) g += l2x2 * W[q];
                    W[q] -= lr * g;
                }
            }
            }
            if (t == 0) {  /* b's gradient: the rows of d summed in row order, a vector at a time */
                V gb[NVEC_MAX];
                const int NV = NVEC(KP);
                for (int v = 0; v < NV; v++) gb[v] = (V){0};
                for (int64_t r = 0; r < n; r++)
                    for (int v = 0; v < NV; v++) gb[v] += *(const V *)(D + r * KP + OFF(v, KP));
                REAL g[KP_MAX];
                for (int v = 0; v < NV; v++) *(V *)(g + OFF(v, KP)) = gb[v];
                for (int k = 0; k < n_out; k++) b[k] -= lr * g[k];
                for (int64_t r = 0; r < n; r++) total += nll[r];
            }
            barrier_wait(&bar, nt, &sense);
        }
    }
    return total;
}

/* Misclassified rows among the first a->n_rows (arg-max, first maximum wins, as np.argmax). */
static int64_t FN(errors)(const struct kernel_args *a)
{
    const uint8_t *val = a->rows.val;
    const uint16_t *idx = a->rows.idx;
    const int64_t *indptr = a->rows.indptr, *labels = a->labels;
    const int n_in = a->rows.n_in, n_out = a->n_out, KP = a->kp, threads = a->threads;
    const int64_t n_rows = a->n_rows;
    const REAL *W = a->W, *b = a->b;
    int64_t wrong = 0;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(threads) reduction(+:wrong)
#endif
    for (int64_t r = 0; r < n_rows; r++) {
        REAL z[KP_MAX];
        const uint8_t *v; const uint16_t *ix; int64_t cnt;
        if (idx) { v = val + indptr[r]; ix = idx + indptr[r]; cnt = indptr[r + 1] - indptr[r]; }
        else { v = val + (size_t)r * n_in; ix = NULL; cnt = n_in; }
        if (KP == 16) FN(fwd)(v, ix, cnt, W, 16, z); else FN(fwd)(v, ix, cnt, W, KP, z);
        const REAL scale = (REAL)(1.0 / 256.0);
        int best = 0;
        REAL top = z[0] * scale + b[0];
        for (int k = 1; k < n_out; k++) {
            const REAL zk = z[k] * scale + b[k];
            if (zk > top) { top = zk; best = k; }
        }
        wrong += (best != labels[r]);
    }
    return wrong;
}

static const struct kernel FN(kernel) = {FN(sgd), FN(errors), FN(init_table), LANES};

#undef SPLAT
#undef V
#undef LANES
#undef NVEC_MAX
#undef NVEC
#undef OFF
#undef FN
#undef CAT
#undef CAT_
#undef SFX
#undef REAL
#undef EXP
#undef LOG
#undef VEXP
#undef KERNEL_F64
