/* Layout: one split's pixels in the form the kernel reads, built here and owned here.
 *
 * Why built and owned by C: the kernel indexes memory with the sparse form's offsets (indptr)
 * and column indices. Handed over from Python, all of them would have to be checked (offsets
 * from 0, non-decreasing, within bounds, every index < n_in: O(nnz)) on every minibatch call, or
 * checked once and trusted while Python could still write into them. Built here from the uint8
 * pixels (whose values index nothing), the sparse form is valid by construction and no Python
 * code can reach it afterwards: a Layout exposes its sizes only, and its by-minibatch columns can
 * be added once, never replaced. So the entry points that take a Layout check only O(1) things
 * about it (and the labels of the rows they read).
 *
 * A dense layout (a split denser than dense_above, or wider than uint16 indices) reads the caller's
 * uint8 rows in place: it holds their buffer, so they stay alive; their values index nothing.
 */
#include "_fused.h"

#include <stdlib.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

typedef struct {
    PyObject_HEAD
    struct rows rows;
    Py_buffer pixels;  /* held (dense layouts only): the rows read in place */
    int held;
    int building;      /* add_minibatch_columns is running (with the GIL released) */
    int64_t nnz;       /* -1 until counted (a dense layout made without counting: counted when asked) */
    double density;
    uint8_t *val, *cval;  /* owned, or NULL */
    uint16_t *idx, *crow;
    int64_t *indptr, *colcum, *colptr;
} Layout;

typedef uint8_t u8x16 __attribute__((vector_size(16)));

/* The non-zero bytes of p[0:16], one bit each (bit k: p[k] != 0). */
static inline uint32_t nonzero16(const uint8_t *p)
{
#if defined(__SSE2__)
    const __m128i v = _mm_loadu_si128((const __m128i *)p);
    return ~(uint32_t)_mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_setzero_si128())) & 0xffffu;
#else
    uint32_t m = 0;
    for (int k = 0; k < 16; k++) m |= (uint32_t)(p[k] != 0) << k;
    return m;
#endif
}

/* The non-zero bytes of row[0:d], 16 at a time in byte counters (at most 255 blocks each). */
static int64_t count_row(const uint8_t *row, int64_t d)
{
    int64_t c = 0, j = 0;
    while (j + 16 <= d) {
        u8x16 acc = {0};
        const int64_t end = d - j > 16 * 255 ? j + 16 * 255 : d;
        for (; j + 16 <= end; j += 16) {
            u8x16 v;
            memcpy(&v, row + j, 16);
            acc -= (u8x16)(v != 0);  /* -1 where non-zero */
        }
        for (int k = 0; k < 16; k++) c += acc[k];
    }
    for (; j < d; j++) c += row[j] != 0;
    return c;
}

/* Whether any of p[0:count] is non-zero (stops at the first 64 bytes that hold one). */
static int any_nonzero(const uint8_t *p, int64_t count)
{
    int64_t i = 0;
    for (; i + 64 <= count; i += 64) {
        uint64_t w[8], any = 0;
        memcpy(w, p + i, 64);
        for (int k = 0; k < 8; k++) any |= w[k];
        if (any) return 1;
    }
    for (; i < count; i++)
        if (p[i]) return 1;
    return 0;
}

/* indptr[r + 1] = indptr[r] + the non-zeros of row r. */
static void count_rows(const uint8_t *pix, int64_t n, int64_t d, int64_t *indptr)
{
    indptr[0] = 0;
    for (int64_t r = 0; r < n; r++) indptr[r + 1] = indptr[r] + count_row(pix + r * d, d);
}

/* The non-zeros of each row (columns increasing), and col[j] += the non-zeros of column j. A block of
 * 32 pixels is one bit mask; its set bits are walked (MNIST rows are mostly zero). */
static void fill_rows(const uint8_t *pix, int64_t n, int64_t d, const int64_t *indptr, uint16_t *idx,
                      uint8_t *val, int64_t *col)
{
    for (int64_t r = 0; r < n; r++) {
        const uint8_t *row = pix + r * d;
        int64_t p = indptr[r], j = 0;
        for (; j + 32 <= d; j += 32) {
            uint32_t m = nonzero16(row + j) | nonzero16(row + j + 16) << 16;
            while (m) {
                const int64_t q = j + __builtin_ctz(m);
                idx[p] = (uint16_t)q; val[p] = row[q]; col[q]++; p++;
                m &= m - 1;
            }
        }
        for (; j < d; j++)
            if (row[j]) { idx[p] = (uint16_t)j; val[p] = row[j]; col[j]++; p++; }
    }
}

/* Each minibatch of B rows (of the first n): its non-zeros by column. cp (nb, d + 1): offsets into
 * crow/cval (positions in the CSR arrays); rows within a column in increasing order. next: (d,). */
static void fill_columns(const struct rows *s, int64_t n, int64_t B, int64_t *cp, uint16_t *crow, uint8_t *cval,
                         int64_t *next)
{
    const int64_t d = s->n_in, nb = (n + B - 1) / B, *ptr = s->indptr;
    for (int64_t ib = 0; ib < nb; ib++) {
        const int64_t r0 = ib * B, r1 = r0 + B < n ? r0 + B : n;
        int64_t *c = cp + ib * (d + 1);
        for (int64_t j = 0; j <= d; j++) c[j] = 0;
        for (int64_t p = ptr[r0]; p < ptr[r1]; p++) c[s->idx[p] + 1]++;
        c[0] = ptr[r0];
        for (int64_t j = 0; j < d; j++) c[j + 1] += c[j];
        for (int64_t j = 0; j < d; j++) next[j] = c[j];
        for (int64_t r = r0; r < r1; r++)
            for (int64_t p = ptr[r]; p < ptr[r + 1]; p++) {
                const int64_t q = next[s->idx[p]]++;
                crow[q] = (uint16_t)(r - r0);
                cval[q] = s->val[p];
            }
    }
}

static void layout_dealloc(Layout *self)
{
    if (self->held) PyBuffer_Release(&self->pixels);
    free(self->val); free(self->idx); free(self->indptr); free(self->colcum);
    free(self->colptr); free(self->crow); free(self->cval);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *layout_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *kw[] = {"pixels", "dense_above", NULL};
    PyObject *o_pix, *o_dense;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO:Layout", kw, &o_pix, &o_dense)) return NULL;
    Arr pix;
    Py_ssize_t shape[2] = {-1, -1};
    double dense_above;
    if (real_arg(o_dense, "dense_above", &dense_above)) return NULL;
    if (!(dense_above >= 0 && dense_above <= 1)) {
        PyErr_Format(PyExc_ValueError, "dense_above: expected a fraction in [0, 1], found %R", o_dense);
        return NULL;
    }
    if (arr_get(o_pix, "pixels", DTS(DT_U8), 0, 2, shape, NULL, &pix)) { arr_release(&pix, 1); return NULL; }
    const int64_t n = shape[0], d = shape[1];
    if (d > INT32_MAX - 1) {
        PyErr_Format(PyExc_ValueError, "pixels: expected at most %d columns, found %lld", INT32_MAX - 1, (long long)d);
        arr_release(&pix, 1);
        return NULL;
    }
    Layout *self = (Layout *)type->tp_alloc(type, 0);
    if (!self) { arr_release(&pix, 1); return NULL; }
    self->pixels = pix.view;  /* the Layout now holds the buffer */
    self->held = 1;
    const uint8_t *pixels = pix.view.buf;
    if (!(self->colcum = alloc_array(d + 1, sizeof(int64_t), "colcum"))) goto fail;
    /* Dense without counting: rows too wide for uint16 column indices, or any non-zero pixel when
       dense_above is 0 (what a caller that has chosen the dense form asks: the first non-zero ends
       the scan). Otherwise the non-zeros are counted, row by row, and the density decides. */
    int count = d <= SPARSE_MAX_IN;
    if (count && dense_above == 0) {
        Py_BEGIN_ALLOW_THREADS
        count = !any_nonzero(pixels, n * d);
        Py_END_ALLOW_THREADS
    }
    self->nnz = -1;
    if (count) {
        if (!(self->indptr = alloc_array(n + 1, sizeof(int64_t), "indptr"))) goto fail;
        Py_BEGIN_ALLOW_THREADS
        count_rows(pixels, n, d, self->indptr);
        Py_END_ALLOW_THREADS
        self->nnz = self->indptr[n];
        self->density = (double)self->nnz / (double)(n * d > 1 ? n * d : 1);
    }
    int64_t *col = self->colcum + 1;
    memset(self->colcum, 0, sizeof(int64_t) * (size_t)(d + 1));
    if (count && self->density <= dense_above) {
        if (!(self->idx = alloc_array(self->nnz, sizeof(uint16_t), "indices"))
            || !(self->val = alloc_array(self->nnz, sizeof(uint8_t), "values"))) goto fail;
        Py_BEGIN_ALLOW_THREADS
        fill_rows(pixels, n, d, self->indptr, self->idx, self->val, col);
        Py_END_ALLOW_THREADS
        PyBuffer_Release(&self->pixels);  /* the copy is what is read from now on */
        self->held = 0;
    } else {  /* dense: every pixel is read; the threads split the columns evenly */
        free(self->indptr);
        self->indptr = NULL;
        for (int64_t j = 0; j < d; j++) col[j] = n;
    }
    for (int64_t j = 0; j < d; j++) col[j] += col[j - 1];
    self->rows = (struct rows){
        .n = n, .n_in = (int)d, .val = self->held ? pixels : self->val, .idx = self->idx,
        .indptr = self->indptr, .colcum = self->colcum,
    };
    return (PyObject *)self;
fail:
    Py_DECREF(self);
    return NULL;
}

static PyObject *add_minibatch_columns(Layout *self, PyObject *args, PyObject *kwargs)
{
    static char *kw[] = {"n_rows", "batch_size", NULL};
    PyObject *o_rows, *o_batch;
    int64_t n, B;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO:add_minibatch_columns", kw, &o_rows, &o_batch)
        || int_arg(o_rows, "n_rows", 0, self->rows.n, &n) || int_arg(o_batch, "batch_size", 1, INT64_MAX, &B))
        return NULL;
    if (!self->rows.idx || B > CSC_MAX_BATCH) Py_RETURN_FALSE;
    if (self->building) {
        PyErr_SetString(PyExc_ValueError, "minibatch columns: already being made by another thread");
        return NULL;
    }
    if (self->colptr) {
        if (n == self->rows.csc_rows && B == self->rows.csc_batch) Py_RETURN_TRUE;
        PyErr_Format(PyExc_ValueError, "minibatch columns: already made for minibatches of %lld of the first %lld "
                     "rows, found a call for %lld of %lld (they are made once)", (long long)self->rows.csc_batch,
                     (long long)self->rows.csc_rows, (long long)B, (long long)n);
        return NULL;
    }
    const int64_t nb = (n + B - 1) / B, d = self->rows.n_in, nnz = self->indptr[n];
    int64_t cells, *next;
    if (__builtin_mul_overflow(nb, d + 1, &cells)) cells = -1;
    int64_t *cp = alloc_array(cells, sizeof(int64_t), "colptr");
    uint16_t *crow = cp ? alloc_array(nnz, sizeof(uint16_t), "crow") : NULL;
    uint8_t *cval = crow ? alloc_array(nnz, sizeof(uint8_t), "cval") : NULL;
    next = cval ? alloc_array(d, sizeof(int64_t), "next") : NULL;
    if (!next) { free(cp); free(crow); free(cval); return NULL; }
    self->building = 1;
    Py_BEGIN_ALLOW_THREADS
    fill_columns(&self->rows, n, B, cp, crow, cval, next);
    Py_END_ALLOW_THREADS
    self->building = 0;
    free(next);
    self->colptr = cp; self->crow = crow; self->cval = cval;
    self->rows.colptr = cp; self->rows.crow = crow; self->rows.cval = cval;
    self->rows.csc_rows = n; self->rows.csc_batch = B;
    Py_RETURN_TRUE;
}

static PyObject *get_sparse(Layout *self, void *c) { return PyBool_FromLong(self->rows.idx != NULL); }
/* A dense layout made without counting counts its (held) pixels when first asked. */
static void counted(Layout *self)
{
    if (self->nnz >= 0) return;
    const int64_t n = self->rows.n, d = self->rows.n_in;
    int64_t nnz = 0;
    for (int64_t r = 0; r < n; r++) nnz += count_row(self->rows.val + r * d, d);
    self->nnz = nnz;
    self->density = (double)nnz / (double)(n * d > 1 ? n * d : 1);
}

static PyObject *get_density(Layout *self, void *c) { counted(self); return PyFloat_FromDouble(self->density); }
static PyObject *get_n(Layout *self, void *c) { return PyLong_FromLongLong(self->rows.n); }
static PyObject *get_n_in(Layout *self, void *c) { return PyLong_FromLong(self->rows.n_in); }
static PyObject *get_nnz(Layout *self, void *c) { counted(self); return PyLong_FromLongLong(self->nnz); }

static PyObject *get_batch(Layout *self, void *c)
{
    if (!self->colptr) Py_RETURN_NONE;
    return PyLong_FromLongLong(self->rows.csc_batch);
}

static PyGetSetDef layout_getset[] = {
    {"sparse", (getter)get_sparse, NULL, "Whether the rows are kept as their non-zeros (else read dense).", NULL},
    {"density", (getter)get_density, NULL, "The fraction of non-zero pixels.", NULL},
    {"n", (getter)get_n, NULL, "Rows.", NULL},
    {"n_in", (getter)get_n_in, NULL, "Pixels per row.", NULL},
    {"nnz", (getter)get_nnz, NULL, "Non-zero pixels.", NULL},
    {"minibatch_size", (getter)get_batch, NULL,
     "The minibatch size of the by-column copy (add_minibatch_columns), or None.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMethodDef layout_methods[] = {
    {"add_minibatch_columns", (PyCFunction)(void (*)(void))add_minibatch_columns, METH_VARARGS | METH_KEYWORDS,
     "add_minibatch_columns(n_rows, batch_size) -> bool\n\nAlso keep each minibatch's non-zeros by column (the "
     "first n_rows rows, in minibatches of batch_size), for the gradient pass. False, and nothing kept, for a "
     "dense layout or minibatches over 65,536 rows (sgd then sums the gradient by rows). Made once: a second "
     "call must ask for the same."},
    {NULL, NULL, 0, NULL},
};

PyTypeObject FusedLayoutType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "logreg_mnist.engines._fused.Layout",
    .tp_basicsize = sizeof(Layout),
    .tp_dealloc = (destructor)layout_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Layout(pixels, dense_above)\n\nOne split's pixels as the kernel reads them. pixels: uint8 (n, n_in), "
              "C-contiguous. Kept as each row's non-zeros (CSR: uint16 columns, uint8 values; copied, owned by the "
              "Layout) when at most dense_above of the pixels are non-zero and n_in <= 65,536, else read dense in "
              "place (the Layout holds the array's buffer).",
    .tp_methods = layout_methods,
    .tp_getset = layout_getset,
    .tp_new = layout_new,
};

const struct rows *layout_rows(PyObject *obj)
{
    if (!obj || !PyObject_TypeCheck(obj, &FusedLayoutType)) {
        PyErr_Format(PyExc_TypeError, "layout: expected a Layout (_fused.Layout(pixels, dense_above)), found %s",
                     obj ? Py_TYPE(obj)->tp_name : "nothing");
        return NULL;
    }
    return &((Layout *)obj)->rows;
}
