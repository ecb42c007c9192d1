/* logreg_mnist.engines._fused: the compiled kernel of the fused CPU engine.
 *
 * Arrays come in through the buffer protocol (C-contiguous); shapes and dtypes are checked
 * by the Python side (fused.py), lengths again here. The GIL is released while computing.
 * The kernel is compiled twice per element type: for the x86-64 baseline and, where the
 * compiler can, for AVX2 + FMA, chosen at run time by what the CPU supports.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define KP_MAX 264 /* n_out <= 256, rounded up to a multiple of 8 */

#define VBYTES 16

#define REAL float
#define EXP expf
#define LOG logf
#define SFX f32
#define VEXP 1
#include "_fused_kernel.h"
#undef VEXP
#undef SFX
#undef REAL
#undef EXP
#undef LOG
#define REAL double
#define EXP exp
#define LOG log
#define SFX f64
#include "_fused_kernel.h"
#undef SFX
#undef REAL
#undef EXP
#undef LOG

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define HAVE_AVX2_CLONE 1
#include <immintrin.h>
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#undef VBYTES
#define VBYTES 32
#define REAL float
#define EXP expf
#define LOG logf
#define SFX f32_avx2
#define VEXP 1
#define BCAST(p) ((vec_f32_avx2)_mm256_broadcast_ss(p))
#include "_fused_kernel.h"
#undef BCAST
#undef VEXP
#undef SFX
#undef REAL
#undef EXP
#undef LOG
#define REAL double
#define EXP exp
#define LOG log
#define SFX f64_avx2
#define BCAST(p) ((vec_f64_avx2)_mm256_broadcast_sd(p))
#include "_fused_kernel.h"
#undef BCAST
#undef SFX
#undef REAL
#undef EXP
#undef LOG
#pragma GCC pop_options
#else
#define HAVE_AVX2_CLONE 0
#endif

static void init_tables(void)
{
    init_table_f32();
    init_table_f64();
#if HAVE_AVX2_CLONE
    init_table_f32_avx2();
    init_table_f64_avx2();
#endif
}

static int use_avx2(void)
{
#if HAVE_AVX2_CLONE
    static int cached = -1;
    if (cached < 0) {  /* LOGREG_MNIST_FUSED_SIMD=baseline: the baseline kernel even so (tests) */
        const char *want = getenv("LOGREG_MNIST_FUSED_SIMD");
        __builtin_cpu_init();
        cached = !(want && strcmp(want, "baseline") == 0)
                 && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    }
    return cached;
#else
    return 0;
#endif
}

/* ---- buffers ---------------------------------------------------------------------------- */

typedef struct { Py_buffer view; int held; } Buf;

static int get_buf(PyObject *obj, Buf *b, int writable, int allow_none, const char *name)
{
    b->held = 0;
    if (obj == Py_None && allow_none) { b->view.buf = NULL; b->view.len = 0; return 0; }
    if (PyObject_GetBuffer(obj, &b->view, writable ? PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS : PyBUF_C_CONTIGUOUS) < 0) {
        PyErr_Format(PyExc_TypeError, "%s: expected a C-contiguous%s buffer", name, writable ? " writable" : "");
        return -1;
    }
    b->held = 1;
    return 0;
}

static void release(Buf *b, int n)
{
    for (int i = 0; i < n; i++) if (b[i].held) PyBuffer_Release(&b[i].view);
}

static int need(Buf *b, Py_ssize_t bytes, const char *name)
{
    if (b->held && b->view.len < bytes) {
        PyErr_Format(PyExc_ValueError, "%s: expected at least %zd bytes, found %zd", name, bytes, b->view.len);
        return -1;
    }
    return 0;
}

/* ---- CSR construction ------------------------------------------------------------------- */

static PyObject *csr_indptr(PyObject *self, PyObject *args)
{
    PyObject *o_pix, *o_ptr;
    Py_ssize_t n, d;
    if (!PyArg_ParseTuple(args, "OnnO", &o_pix, &n, &d, &o_ptr)) return NULL;
    Buf b[2];
    if (get_buf(o_pix, &b[0], 0, 0, "pixels") || get_buf(o_ptr, &b[1], 1, 0, "indptr")
        || need(&b[0], n * d, "pixels") || need(&b[1], (n + 1) * 8, "indptr")) { release(b, 2); return NULL; }
    const uint8_t *pix = b[0].view.buf;
    int64_t *ptr = b[1].view.buf;
    Py_BEGIN_ALLOW_THREADS
    ptr[0] = 0;
    for (Py_ssize_t r = 0; r < n; r++) {
        const uint8_t *row = pix + r * d;
        int64_t c = 0;
        for (Py_ssize_t j = 0; j < d; j++) c += row[j] != 0;
        ptr[r + 1] = ptr[r] + c;
    }
    Py_END_ALLOW_THREADS
    release(b, 2);
    Py_RETURN_NONE;
}

static PyObject *csr_fill(PyObject *self, PyObject *args)
{
    PyObject *o_pix, *o_ptr, *o_idx, *o_val, *o_col;
    Py_ssize_t n, d;
    if (!PyArg_ParseTuple(args, "OnnOOOO", &o_pix, &n, &d, &o_ptr, &o_idx, &o_val, &o_col)) return NULL;
    Buf b[5];
    memset(b, 0, sizeof b);
    if (get_buf(o_pix, &b[0], 0, 0, "pixels") || get_buf(o_ptr, &b[1], 0, 0, "indptr")
        || get_buf(o_idx, &b[2], 1, 0, "indices") || get_buf(o_val, &b[3], 1, 0, "values")
        || get_buf(o_col, &b[4], 1, 0, "column counts")
        || need(&b[0], n * d, "pixels") || need(&b[1], (n + 1) * 8, "indptr")
        || need(&b[4], d * 8, "column counts")) { release(b, 5); return NULL; }
    const int64_t *ptr = b[1].view.buf;
    if (need(&b[2], ptr[n] * 2, "indices") || need(&b[3], ptr[n], "values")) { release(b, 5); return NULL; }
    const uint8_t *pix = b[0].view.buf;
    uint16_t *idx = b[2].view.buf;
    uint8_t *val = b[3].view.buf;
    int64_t *col = b[4].view.buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t r = 0; r < n; r++) {
        const uint8_t *row = pix + r * d;
        int64_t p = ptr[r];
        Py_ssize_t j = 0;
        for (; j + 8 <= d; j += 8) {  /* MNIST rows are mostly zero: skip 8 zero bytes at a time */
            uint64_t word;
            memcpy(&word, row + j, 8);
            if (!word) continue;
            for (Py_ssize_t q = j; q < j + 8; q++)
                if (row[q]) { idx[p] = (uint16_t)q; val[p] = row[q]; col[q]++; p++; }
        }
        for (; j < d; j++)
            if (row[j]) { idx[p] = (uint16_t)j; val[p] = row[j]; col[j]++; p++; }
    }
    Py_END_ALLOW_THREADS
    release(b, 5);
    Py_RETURN_NONE;
}

static PyObject *csc_batches(PyObject *self, PyObject *args)
{
    /* (indptr, indices, values, n_rows, B, n_in, colptr (n_batches, n_in + 1) int64, rows uint16, cvals uint8):
       each minibatch's non-zeros by column, rows within a column in increasing order */
    PyObject *o[6];
    Py_ssize_t n, B, d;
    if (!PyArg_ParseTuple(args, "OOOnnnOOO", &o[0], &o[1], &o[2], &n, &B, &d, &o[3], &o[4], &o[5])) return NULL;
    Buf b[6];
    memset(b, 0, sizeof b);
    static const char *names[6] = {"indptr", "indices", "values", "colptr", "rows", "cvalues"};
    for (int i = 0; i < 6; i++)
        if (get_buf(o[i], &b[i], i >= 3, 0, names[i])) { release(b, 6); return NULL; }
    if (B < 1 || B > 65536 || n < 0) { release(b, 6); PyErr_SetString(PyExc_ValueError, "csc_batches: sizes"); return NULL; }
    const Py_ssize_t nb = (n + B - 1) / B;
    const int64_t *ptr = b[0].view.buf;
    if (need(&b[0], (n + 1) * 8, "indptr") || need(&b[1], ptr[n] * 2, "indices") || need(&b[2], ptr[n], "values")
        || need(&b[3], nb * (d + 1) * 8, "colptr") || need(&b[4], ptr[n] * 2, "rows")
        || need(&b[5], ptr[n], "cvalues")) { release(b, 6); return NULL; }
    const uint16_t *idx = b[1].view.buf;
    const uint8_t *val = b[2].view.buf;
    int64_t *cp = b[3].view.buf;
    uint16_t *rows = b[4].view.buf;
    uint8_t *cv = b[5].view.buf;
    int ok = 1;
    Py_BEGIN_ALLOW_THREADS
    int64_t *next = malloc(sizeof(int64_t) * (size_t)(d > 0 ? d : 1));
    if (!next) ok = 0;
    for (Py_ssize_t ib = 0; ok && ib < nb; ib++) {
        const Py_ssize_t r0 = ib * B, r1 = r0 + B < n ? r0 + B : n;
        int64_t *c = cp + ib * (d + 1);
        for (Py_ssize_t j = 0; j <= d; j++) c[j] = 0;
        for (int64_t p = ptr[r0]; p < ptr[r1]; p++) c[idx[p] + 1]++;
        c[0] = ptr[r0];
        for (Py_ssize_t j = 0; j < d; j++) c[j + 1] += c[j];
        for (Py_ssize_t j = 0; j < d; j++) next[j] = c[j];
        for (Py_ssize_t r = r0; r < r1; r++)
            for (int64_t p = ptr[r]; p < ptr[r + 1]; p++) {
                const int64_t q = next[idx[p]]++;
                rows[q] = (uint16_t)(r - r0);
                cv[q] = val[p];
            }
    }
    free(next);
    Py_END_ALLOW_THREADS
    release(b, 6);
    if (!ok) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

/* ---- training and scoring --------------------------------------------------------------- */

static PyObject *sgd(PyObject *self, PyObject *args)
{
    /* (val, idx|None, indptr|None, colptr|None, crow|None, cval|None, n_in, labels, W, b, colcum,
        row0, n_rows, B, n_batches, lr, l1, l2x2, n_out, KP, threads, D, G, nll, nll0) */
    PyObject *o[13];
    Py_ssize_t n_in, row0, n_rows, B, nb, n_out, KP, threads;
    double lr, l1, l2x2, nll0;
    if (!PyArg_ParseTuple(args, "OOOOOOnOOOOnnnndddnnnOOOd", &o[0], &o[1], &o[2], &o[10], &o[11], &o[12], &n_in,
                          &o[3], &o[4], &o[5], &o[6], &row0, &n_rows, &B, &nb, &lr, &l1, &l2x2, &n_out, &KP,
                          &threads, &o[7], &o[8], &o[9], &nll0))
        return NULL;
    Buf b[13];
    memset(b, 0, sizeof b);
    static const char *names[13] = {"values", "indices", "indptr", "labels", "W", "b", "colcum", "D", "G", "nll",
                                    "colptr", "crow", "cval"};
    static const int writable[13] = {0, 0, 0, 0, 1, 1, 0, 1, 1, 1, 0, 0, 0};
    static const int nullable[13] = {0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1};
    for (int i = 0; i < 13; i++)
        if (get_buf(o[i], &b[i], writable[i], nullable[i], names[i])) { release(b, 13); return NULL; }
    if (b[10].held && (!b[1].held || B > 65536 || row0 % B != 0 || !b[11].held || !b[12].held
                       || b[10].view.len < ((row0 / B + nb) * (n_in + 1)) * 8)) {
        release(b, 13);
        PyErr_SetString(PyExc_ValueError, "sgd: inconsistent column (CSC) arrays");
        return NULL;
    }
    if (KP > KP_MAX || KP < n_out || n_out < 2 || threads < 1 || row0 < 0 || B < 1 || nb < 0
        || (nb > 0 && row0 + (nb - 1) * B >= n_rows)) {
        release(b, 13);
        PyErr_SetString(PyExc_ValueError, "sgd: inconsistent sizes");
        return NULL;
    }
    const Py_ssize_t item = b[4].view.itemsize;
    if ((item != 4 && item != 8) || b[5].view.itemsize != item || b[7].view.itemsize != item || b[8].view.itemsize != item) {
        release(b, 13);
        PyErr_SetString(PyExc_TypeError, "sgd: W, b, D and G must all be float32 or all float64");
        return NULL;
    }
    if (need(&b[3], n_rows * 8, "labels") || need(&b[4], n_in * KP * item, "W") || need(&b[5], KP * item, "b")
        || need(&b[6], (n_in + 1) * 8, "colcum") || need(&b[7], B * KP * item, "D")
        || need(&b[8], n_in * KP * item, "G") || need(&b[9], B * 8, "nll")
        || need(&b[2], (n_rows + 1) * 8, "indptr")
        || (b[1].held ? 0 : need(&b[0], n_rows * n_in, "values"))) { release(b, 13); return NULL; }
    const uint8_t *val = b[0].view.buf;
    const uint16_t *idx = b[1].view.buf;
    const int64_t *ptr = b[2].view.buf;
    const int64_t *colptr = b[10].held ? (const int64_t *)b[10].view.buf + (row0 / B) * (n_in + 1) : NULL;
    const uint16_t *crow = b[11].view.buf;
    const uint8_t *cval = b[12].view.buf;
    double total;
    const int avx = use_avx2();
    Py_BEGIN_ALLOW_THREADS
    if (item == 4) {
#if HAVE_AVX2_CLONE
        if (avx)
            total = sgd_f32_avx2(val, idx, ptr, n_in, colptr, crow, cval, b[3].view.buf, b[4].view.buf, b[5].view.buf, b[6].view.buf,
                                 row0, n_rows, B, nb, (float)lr, (float)l1, (float)l2x2, n_out, KP, threads,
                                 b[7].view.buf, b[8].view.buf, b[9].view.buf, nll0);
        else
#endif
            total = sgd_f32(val, idx, ptr, n_in, colptr, crow, cval, b[3].view.buf, b[4].view.buf, b[5].view.buf, b[6].view.buf,
                            row0, n_rows, B, nb, (float)lr, (float)l1, (float)l2x2, n_out, KP, threads,
                            b[7].view.buf, b[8].view.buf, b[9].view.buf, nll0);
    } else {
#if HAVE_AVX2_CLONE
        if (avx)
            total = sgd_f64_avx2(val, idx, ptr, n_in, colptr, crow, cval, b[3].view.buf, b[4].view.buf, b[5].view.buf, b[6].view.buf,
                                 row0, n_rows, B, nb, lr, l1, l2x2, n_out, KP, threads,
                                 b[7].view.buf, b[8].view.buf, b[9].view.buf, nll0);
        else
#endif
            total = sgd_f64(val, idx, ptr, n_in, colptr, crow, cval, b[3].view.buf, b[4].view.buf, b[5].view.buf, b[6].view.buf,
                            row0, n_rows, B, nb, lr, l1, l2x2, n_out, KP, threads,
                            b[7].view.buf, b[8].view.buf, b[9].view.buf, nll0);
    }
    Py_END_ALLOW_THREADS
    release(b, 13);
    return PyFloat_FromDouble(total);
}

static PyObject *errors(PyObject *self, PyObject *args)
{
    /* (val, idx|None, indptr|None, n_in, labels, W, b, n_rows, n_out, KP, threads) */
    PyObject *o[6];
    Py_ssize_t n_in, n_rows, n_out, KP, threads;
    if (!PyArg_ParseTuple(args, "OOOnOOOnnnn", &o[0], &o[1], &o[2], &n_in, &o[3], &o[4], &o[5],
                          &n_rows, &n_out, &KP, &threads))
        return NULL;
    Buf b[6];
    memset(b, 0, sizeof b);
    static const char *names[6] = {"values", "indices", "indptr", "labels", "W", "b"};
    static const int nullable[6] = {0, 1, 1, 0, 0, 0};
    for (int i = 0; i < 6; i++)
        if (get_buf(o[i], &b[i], 0, nullable[i], names[i])) { release(b, 6); return NULL; }
    if (KP > KP_MAX || KP < n_out || n_out < 2 || threads < 1 || n_rows < 0) {
        release(b, 6);
        PyErr_SetString(PyExc_ValueError, "errors: inconsistent sizes");
        return NULL;
    }
    const Py_ssize_t item = b[4].view.itemsize;
    if ((item != 4 && item != 8) || b[5].view.itemsize != item) {
        release(b, 6);
        PyErr_SetString(PyExc_TypeError, "errors: W and b must both be float32 or float64");
        return NULL;
    }
    if (need(&b[3], n_rows * 8, "labels") || need(&b[4], n_in * KP * item, "W") || need(&b[5], KP * item, "b")
        || need(&b[2], (n_rows + 1) * 8, "indptr")
        || (b[1].held ? 0 : need(&b[0], n_rows * n_in, "values"))) { release(b, 6); return NULL; }
    int64_t wrong;
    const int avx = use_avx2();
    Py_BEGIN_ALLOW_THREADS
    if (item == 4) {
#if HAVE_AVX2_CLONE
        if (avx)
            wrong = errors_f32_avx2(b[0].view.buf, b[1].view.buf, b[2].view.buf, n_in, b[3].view.buf,
                                    b[4].view.buf, b[5].view.buf, n_rows, n_out, KP, threads);
        else
#endif
            wrong = errors_f32(b[0].view.buf, b[1].view.buf, b[2].view.buf, n_in, b[3].view.buf,
                               b[4].view.buf, b[5].view.buf, n_rows, n_out, KP, threads);
    } else {
#if HAVE_AVX2_CLONE
        if (avx)
            wrong = errors_f64_avx2(b[0].view.buf, b[1].view.buf, b[2].view.buf, n_in, b[3].view.buf,
                                    b[4].view.buf, b[5].view.buf, n_rows, n_out, KP, threads);
        else
#endif
            wrong = errors_f64(b[0].view.buf, b[1].view.buf, b[2].view.buf, n_in, b[3].view.buf,
                               b[4].view.buf, b[5].view.buf, n_rows, n_out, KP, threads);
    }
    Py_END_ALLOW_THREADS
    release(b, 6);
    return PyLong_FromLongLong(wrong);
}

static PyObject *info(PyObject *self, PyObject *noargs)
{
#ifdef _OPENMP
    const int openmp = 1;
#else
    const int openmp = 0;
#endif
    return Py_BuildValue("{s:O,s:s}", "openmp", openmp ? Py_True : Py_False,
                         "simd", use_avx2() ? "avx2+fma" : "baseline");
}

static PyMethodDef methods[] = {
    {"csr_indptr", csr_indptr, METH_VARARGS, "csr_indptr(pixels, n, d, indptr): row offsets of the non-zeros"},
    {"csr_fill", csr_fill, METH_VARARGS,
     "csr_fill(pixels, n, d, indptr, indices, values, column_counts): the non-zeros, and counts per column"},
    {"csc_batches", csc_batches, METH_VARARGS, "csc_batches(...): each minibatch's non-zeros by column"},
    {"sgd", sgd, METH_VARARGS, "sgd(...): SGD steps on consecutive minibatches; returns the summed NLL"},
    {"errors", errors, METH_VARARGS, "errors(...): misclassified rows"},
    {"info", info, METH_NOARGS, "info(): {'openmp': bool, 'simd': str}"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_fused", "The fused CPU engine's kernel.", -1, methods};

PyMODINIT_FUNC PyInit__fused(void)
{
    init_tables();
    return PyModule_Create(&module);
}
