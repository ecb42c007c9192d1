/* logreg_mnist.engines._fused: what the extension's parts share.
 *
 *   _fused.c          the module: its Python entry points (sgd, errors, info) and constants
 *   _fused_layout.c   Layout, a split's pixels in the form the kernel reads, built and owned here
 *   _fused_check.c    the checks of every argument that comes in from Python
 *   _fused_kernels.c  the kernel instantiated per element type and instruction set; the dispatch table
 *   _fused_kernel.h   the kernel's arithmetic (included once per instantiation)
 */
#ifndef LOGREG_MNIST_FUSED_H
#define LOGREG_MNIST_FUSED_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

#define KP_MAX 264          /* W's row stride at most: n_out <= 256, rounded up to a multiple of 8 */
#define MAX_THREADS 1024    /* OpenMP threads a call may ask for */
#define CSC_MAX_BATCH 65536 /* a minibatch's rows are numbered in uint16 in its by-column copy */
#define SPARSE_MAX_IN 65536 /* column indices are uint16 */

/* ---- a split's rows, as the kernel reads them (filled by _fused_layout.c, read-only after) ------ */

struct rows {
    int64_t n;              /* rows */
    int n_in;               /* columns (pixels per row) */
    const uint8_t *val;     /* sparse: (nnz,) the non-zero pixels, row by row; dense: the (n, n_in) pixels */
    const uint16_t *idx;    /* sparse: (nnz,) the column of each value; NULL when dense */
    const int64_t *indptr;  /* sparse: (n + 1,) row r's values are [indptr[r], indptr[r + 1]); NULL when dense */
    const int64_t *colcum;  /* (n_in + 1,) non-zeros in columns < j (balances the threads' columns) */
    /* Each minibatch's non-zeros by column (CSC), or colptr NULL: for minibatch k of csc_batch rows
       (of the first csc_rows), column j's entries are [colptr[k (n_in + 1) + j], ... + j + 1) of
       crow (row within the minibatch, increasing) and cval. */
    const int64_t *colptr;
    const uint16_t *crow;
    const uint8_t *cval;
    int64_t csc_rows, csc_batch;
};

/* ---- the kernels' arguments, checked by _fused.c before any kernel runs ------------------------ */

/* What both kernels take (errors: this alone). */
struct kernel_args {
    struct rows rows;       /* a copy, taken with the GIL held: what was checked is what is read */
    const int64_t *labels;  /* the label of each row read (sgd: from row0; errors: from 0), each < n_out */
    void *W, *b;            /* REAL (n_in, kp) and (kp,), columns >= n_out 0; sgd updates them in place */
    int64_t n_rows;         /* the rows used: the first n_rows of the layout */
    int n_out, kp, threads;
};

struct sgd_args {
    struct kernel_args base;
    void *D, *G;            /* REAL scratch (batch, kp) and (n_in, kp) */
    double *nll;            /* scratch (batch,) */
    int64_t row0, batch, n_batches;  /* minibatches start at row0, row0 + batch, ... (rows < n_rows) */
    double lr, l1, l2x2;    /* step, the L1 coefficient, twice the L2 coefficient */
    double total;           /* the NLL to add this call's to */
};

/* One instantiation of the kernel: its entry points, and the smallest kp it takes (one vector). */
struct kernel {
    double (*sgd)(const struct sgd_args *);      /* total + the NLL of the rows, before each step */
    int64_t (*errors)(const struct kernel_args *);  /* misclassified rows */
    void (*init)(void);
    int lanes;
};

enum { DTYPE_F32, DTYPE_F64, N_REAL };
enum { SIMD_BASELINE, SIMD_AVX2, N_SIMD };

/* _fused_kernels.c */
const struct kernel *fused_kernel(int simd, int real);  /* NULL: that instruction set is not built */
int fused_simd_level(void);                            /* the best level this CPU runs (chosen once) */
const char *fused_simd_name(int simd);

/* ---- argument checks (_fused_check.c): each raises ValueError/TypeError naming the argument ---- */

enum dtype { DT_U8, DT_U16, DT_I64, DT_F32, DT_F64, N_DTYPE };
#define DTS(t) (1u << (t))

/* A held buffer of one array argument (held == 0: nothing to release). */
typedef struct { Py_buffer view; int held; enum dtype dtype; const char *name; } Arr;

/* shape[k] < 0: any extent, filled in with the one found. like: NULL, or the argument whose dtype
 * and KP this one must share (named in the messages). */
int arr_get(PyObject *obj, const char *name, unsigned dtypes, int writable, int ndim, Py_ssize_t *shape,
            const char *like, Arr *a);
void arr_release(Arr *a, int n);
int arrs_disjoint(const Arr *a, int n);
int int_arg(PyObject *obj, const char *name, int64_t lo, int64_t hi, int64_t *out);
int real_arg(PyObject *obj, const char *name, double *out);
int labels_copy(const Arr *labels, int64_t first, int64_t count, int n_out, int64_t **out);
void *alloc_array(int64_t count, size_t item, const char *what);
const char *dtype_name(enum dtype t);

/* ---- the Layout type (_fused_layout.c) ------------------------------------------------------- */

extern PyTypeObject FusedLayoutType;
const struct rows *layout_rows(PyObject *obj);  /* NULL (TypeError set): not a Layout */

#endif
