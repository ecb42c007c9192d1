/* logreg_mnist.engines._fused: the compiled kernel of the fused CPU engine (see fused.py).
 *
 * Python's way in: Layout(pixels, dense_above) (a split's pixels, _fused_layout.c), sgd(...),
 * errors(...), info(), and the constants KP_MAX and MAX_THREADS. sgd and errors take keyword
 * arguments only and fill the struct their kernel takes (_fused.h). Every argument is checked
 * here (_fused_check.c) before any kernel runs: O(1) per array (dtype, shape, C-contiguity,
 * alignment, writability, no overlap) plus O(rows read) for the labels, so a minibatch call costs
 * no pass over the data; the sparse layout needs no check (see _fused_layout.c). A bad call raises
 * TypeError or ValueError naming the argument and changes nothing. The GIL is released while
 * the kernel runs.
 */
#include "_fused.h"

#include <stdlib.h>

/* W (n_in, kp) and b (kp,), both float32 or both float64, n_out <= kp <= KP_MAX and kp at least
 * one vector of the kernel that will run: that kernel, or NULL with an exception set. */
static const struct kernel *params(PyObject *oW, PyObject *ob, int writable, int n_in, int n_out, Arr *W, Arr *b,
                                   int *kp)
{
    Py_ssize_t sw[2] = {n_in, -1};
    if (arr_get(oW, "W", DTS(DT_F32) | DTS(DT_F64), writable, 2, sw, NULL, W)) return NULL;
    const struct kernel *k = fused_kernel(fused_simd_level(), W->dtype == DT_F64 ? DTYPE_F64 : DTYPE_F32);
    const Py_ssize_t lo = n_out > k->lanes ? n_out : k->lanes;
    if (sw[1] < lo || sw[1] > KP_MAX) {
        PyErr_Format(PyExc_ValueError, "W: expected shape (%d, KP) with max(n_out, %d) = %zd <= KP <= %d (KP: "
                     "at least the classes and one vector), found (%d, %zd)", n_in, k->lanes, lo, KP_MAX, n_in, sw[1]);
        return NULL;
    }
    Py_ssize_t sb[1] = {sw[1]};
    if (arr_get(ob, "b", DTS(W->dtype), writable, 1, sb, "W", b)) return NULL;
    *kp = (int)sw[1];
    return k;
}

/* A call in progress: the arrays it holds (labels, W, b, then sgd's D, G, nll), the checked copy
 * of the labels it reads, the kernel it runs, and what that returned. */
struct call {
    PyObject *o[20];  /* the arguments, in the order of their names (SGD_ARGS, ERRORS_ARGS) */
    Arr a[6];
    int64_t *labels;
    const struct kernel *k;
    double total;
    int64_t wrong;
};

/* Keyword arguments only, names[0..n) all required: o[i] (borrowed). */
static int keywords(const char *fn, PyObject *args, PyObject *kwargs, const char *const *names, int n, PyObject **o)
{
    if (PyTuple_GET_SIZE(args)) {
        PyErr_Format(PyExc_TypeError, "%s(): expected keyword arguments only, found %zd positional", fn,
                     PyTuple_GET_SIZE(args));
        return -1;
    }
    for (int i = 0; i < n; i++)
        if (!(o[i] = kwargs ? PyDict_GetItemString(kwargs, names[i]) : NULL)) {
            PyErr_Format(PyExc_TypeError, "%s(): missing argument '%s'", fn, names[i]);
            return -1;
        }
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    while (kwargs && PyDict_Next(kwargs, &pos, &key, &value)) {
        int known = 0;
        for (int i = 0; !known && i < n; i++)
            known = PyUnicode_Check(key) && PyUnicode_CompareWithASCIIString(key, names[i]) == 0;
        if (!known) {
            PyErr_Format(PyExc_TypeError, "%s(): unexpected argument %R", fn, key);
            return -1;
        }
    }
    return 0;
}

/* The keyword arguments of entry point fn, names[0..n) (COMMON_ARGS first), into c->o, and the
 * arguments both entry points take, checked, into c and s. */
#define COMMON_ARGS "layout", "labels", "W", "b", "n_rows", "n_out", "threads"
static int common(const char *fn, PyObject *args, PyObject *kwargs, const char *const *names, int n, int writable,
                  struct call *c, struct kernel_args *s)
{
    PyObject **o = c->o;
    const struct rows *rows;
    int64_t n_out, threads;
    if (keywords(fn, args, kwargs, names, n, o) || !(rows = layout_rows(o[0]))) return -1;
    s->rows = *rows;
    if (int_arg(o[4], "n_rows", 0, rows->n, &s->n_rows) || int_arg(o[5], "n_out", 2, KP_MAX, &n_out)
        || int_arg(o[6], "threads", 1, MAX_THREADS, &threads))
        return -1;
    s->n_out = (int)n_out;
    s->threads = (int)threads;
    Py_ssize_t shape_labels[1] = {rows->n};
    if (arr_get(o[1], "labels", DTS(DT_I64), 0, 1, shape_labels, NULL, &c->a[0])
        || !(c->k = params(o[2], o[3], writable, rows->n_in, s->n_out, &c->a[1], &c->a[2], &s->kp)))
        return -1;
    s->W = c->a[1].view.buf;
    s->b = c->a[2].view.buf;
    return 0;
}

/* The last check, the labels of the `count` rows read from row `first`, then the kernel (sgd's when
 * given, else errors), with the GIL released. */
static int run(struct call *c, struct kernel_args *s, const struct sgd_args *sgd_args, int64_t first, int64_t count)
{
    if (labels_copy(&c->a[0], first, count, s->n_out, &c->labels)) return -1;
    s->labels = c->labels;
    Py_BEGIN_ALLOW_THREADS
    if (sgd_args) c->total = c->k->sgd(sgd_args);
    else c->wrong = c->k->errors(s);
    Py_END_ALLOW_THREADS
    return 0;
}

static PyObject *finish(struct call *c, PyObject *result)
{
    free(c->labels);
    arr_release(c->a, 6);
    return result;
}

/* With the layout's minibatch columns, the call's minibatches must be theirs. */
static int columns_fit(const struct sgd_args *s)
{
    const struct rows *rows = &s->base.rows;
    if (!rows->colptr) return 0;
    if (s->batch != rows->csc_batch)
        PyErr_Format(PyExc_ValueError, "batch_size: expected %lld (the layout's minibatch columns), found %lld",
                     (long long)rows->csc_batch, (long long)s->batch);
    else if (s->base.n_rows != rows->csc_rows)
        PyErr_Format(PyExc_ValueError, "n_rows: expected %lld (the layout's minibatch columns), found %lld",
                     (long long)rows->csc_rows, (long long)s->base.n_rows);
    else if (s->row0 % s->batch)
        PyErr_Format(PyExc_ValueError, "row0: expected a multiple of batch_size %lld, found %lld",
                     (long long)s->batch, (long long)s->row0);
    else
        return 0;
    return -1;
}

static const char *const SGD_ARGS[] = {COMMON_ARGS, "D", "G", "nll", "row0", "batch_size", "n_batches", "lr", "l1",
                                       "l2x2", "total"};
enum { SGD_NARGS = sizeof SGD_ARGS / sizeof SGD_ARGS[0] };
_Static_assert(SGD_NARGS <= sizeof ((struct call *)0)->o / sizeof(PyObject *), "struct call: room for sgd's arguments");

static PyObject *sgd(PyObject *self, PyObject *args, PyObject *kwargs)
{
    struct call c = {0};
    struct sgd_args s = {0};
    PyObject **o = c.o;
    if (common("sgd", args, kwargs, SGD_ARGS, SGD_NARGS, 1, &c, &s.base)) return finish(&c, NULL);
    const int64_t n_rows = s.base.n_rows;
    if (int_arg(o[11], "batch_size", 1, INT32_MAX, &s.batch) || int_arg(o[10], "row0", 0, n_rows, &s.row0)
        || int_arg(o[12], "n_batches", 0, (n_rows - s.row0 + s.batch - 1) / s.batch, &s.n_batches)
        || real_arg(o[13], "lr", &s.lr) || real_arg(o[14], "l1", &s.l1) || real_arg(o[15], "l2x2", &s.l2x2)
        || real_arg(o[16], "total", &s.total) || columns_fit(&s))
        return finish(&c, NULL);
    Py_ssize_t shape_D[2] = {s.batch, s.base.kp}, shape_G[2] = {s.base.rows.n_in, s.base.kp}, shape_nll[1] = {s.batch};
    const enum dtype real = c.a[1].dtype;
    const int64_t read = s.n_batches * s.batch < n_rows - s.row0 ? s.n_batches * s.batch : n_rows - s.row0;
    if (arr_get(o[7], "D", DTS(real), 1, 2, shape_D, "W", &c.a[3])
        || arr_get(o[8], "G", DTS(real), 1, 2, shape_G, "W", &c.a[4])
        || arr_get(o[9], "nll", DTS(DT_F64), 1, 1, shape_nll, NULL, &c.a[5]) || arrs_disjoint(c.a + 1, 5))
        return finish(&c, NULL);
    s.D = c.a[3].view.buf;
    s.G = c.a[4].view.buf;
    s.nll = c.a[5].view.buf;
    if (run(&c, &s.base, &s, s.row0, read)) return finish(&c, NULL);
    return finish(&c, PyFloat_FromDouble(c.total));
}

static const char *const ERRORS_ARGS[] = {COMMON_ARGS};
enum { ERRORS_NARGS = sizeof ERRORS_ARGS / sizeof ERRORS_ARGS[0] };

static PyObject *errors(PyObject *self, PyObject *args, PyObject *kwargs)
{
    struct kernel_args s = {0};
    struct call c = {0};
    if (common("errors", args, kwargs, ERRORS_ARGS, ERRORS_NARGS, 0, &c, &s) || run(&c, &s, NULL, 0, s.n_rows))
        return finish(&c, NULL);
    return finish(&c, PyLong_FromLongLong(c.wrong));
}

static PyObject *info(PyObject *self, PyObject *noargs)
{
#ifdef _OPENMP
    PyObject *openmp = Py_True;
#else
    PyObject *openmp = Py_False;
#endif
    return Py_BuildValue("{s:O,s:s}", "openmp", openmp, "simd", fused_simd_name(fused_simd_level()));
}

static PyMethodDef methods[] = {
    {"sgd", (PyCFunction)(void (*)(void))sgd, METH_VARARGS | METH_KEYWORDS,
     "sgd($module, /, *, layout, labels, W, b, n_rows, n_out, threads, D, G, nll, row0, batch_size, n_batches, lr, "
     "l1, l2x2, total)\n--\n\n"
     "n_batches SGD steps on the minibatches of batch_size rows starting at row row0 (rows < n_rows) of the "
     "layout; returns total plus their summed NLL.\n\n"
     "labels: int64 (layout.n,), each < n_out. W: float32 or float64 (layout.n_in, KP), n_out <= KP <= KP_MAX, "
     "its columns >= n_out zero; b: (KP,). W and b are updated in place. Scratch: D (batch_size, KP) and "
     "G (layout.n_in, KP) of W's dtype, nll float64 (batch_size,). lr, l1, l2x2: the step, the L1 coefficient "
     "and twice the L2 coefficient. threads: at most MAX_THREADS."},
    {"errors", (PyCFunction)(void (*)(void))errors, METH_VARARGS | METH_KEYWORDS,
     "errors($module, /, *, layout, labels, W, b, n_rows, n_out, threads)\n--\n\n"
     "The misclassified rows among the first n_rows of the layout (arg-max of x W + b, first maximum wins); "
     "arrays as for sgd."},
    {"info", info, METH_NOARGS, "info($module, /)\n--\n\n{'openmp': bool, 'simd': str}: how the kernel was built."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_fused", "The fused CPU engine's kernel.", -1, methods};

PyMODINIT_FUNC PyInit__fused(void)
{
    for (int simd = 0; simd < N_SIMD; simd++)
        for (int real = 0; real < N_REAL; real++)
            if (fused_kernel(simd, real)) fused_kernel(simd, real)->init();
    fused_simd_level();  /* chosen once, now */
    if (PyType_Ready(&FusedLayoutType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    Py_INCREF(&FusedLayoutType);
    if (PyModule_AddObject(m, "Layout", (PyObject *)&FusedLayoutType) < 0) {
        Py_DECREF(&FusedLayoutType);
        Py_DECREF(m);
        return NULL;
    }
    if (PyModule_AddIntConstant(m, "KP_MAX", KP_MAX) < 0
        || PyModule_AddIntConstant(m, "MAX_THREADS", MAX_THREADS) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
