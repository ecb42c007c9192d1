/* The checks of every argument that comes into the extension from Python.
 *
 * Each check raises an exception that names the argument, what was expected and what was found:
 * TypeError for something that is not an array or number of the right kind (not a buffer, another
 * dtype, None), ValueError for one of the right kind that does not fit (its shape, contiguity,
 * alignment, writability, an integer out of range, a label out of range, arrays that overlap).
 * Sizes are computed with checked arithmetic. A failed check leaves every argument unchanged.
 */
#include "_fused.h"

#include <stdlib.h>
#include <string.h>

static const char *const DTYPE_NAMES[N_DTYPE] = {"uint8", "uint16", "int64", "float32", "float64"};

const char *dtype_name(enum dtype t) { return (unsigned)t < N_DTYPE ? DTYPE_NAMES[t] : "?"; }

/* The buffer's element type: one of ours (return 0), or (-1) a description of another in `found`. */
static int buffer_dtype(const Py_buffer *v, enum dtype *t, char *found, size_t size)
{
    const char *f = v->format ? v->format : "B";
    if (*f == '@' || *f == '=' || *f == (PY_LITTLE_ENDIAN ? '<' : '>')) f++;  /* native byte order */
    static const struct { char code; Py_ssize_t size; const char *name; } known[] = {
        {'B', 1, "uint8"}, {'H', 2, "uint16"}, {'q', 8, "int64"}, {'l', 8, "int64"}, {'f', 4, "float32"},
        {'d', 8, "float64"}, {'b', 1, "int8"}, {'h', 2, "int16"}, {'i', 4, "int32"}, {'l', 4, "int32"},
        {'I', 4, "uint32"}, {'L', 8, "uint64"}, {'Q', 8, "uint64"}, {'e', 2, "float16"}, {'?', 1, "bool"},
        {'g', 16, "longdouble"}, {'g', 12, "longdouble"},
    };
    for (size_t k = 0; f[0] && !f[1] && k < sizeof known / sizeof known[0]; k++) {
        if (known[k].code != f[0] || known[k].size != v->itemsize) continue;
        for (int d = 0; d < N_DTYPE; d++)
            if (strcmp(known[k].name, DTYPE_NAMES[d]) == 0) { *t = (enum dtype)d; return 0; }
        snprintf(found, size, "%s", known[k].name);
        return -1;
    }
    snprintf(found, size, "elements of format '%.20s'", v->format ? v->format : "B");
    return -1;
}

static void dtypes_text(unsigned dtypes, char *out, size_t size)
{
    out[0] = 0;
    for (int d = 0, first = 1; d < N_DTYPE; d++)
        if (dtypes & DTS(d)) {
            size_t len = strlen(out);
            snprintf(out + len, size - len, "%s%s", first ? "" : " or ", DTYPE_NAMES[d]);
            first = 0;
        }
}

/* "(784, 16)"; with `any`, a negative extent is written "any". */
static void shape_text(int ndim, const Py_ssize_t *shape, int any, char *out, size_t size)
{
    size_t len = (size_t)snprintf(out, size, "(");
    for (int k = 0; k < ndim && len < size; k++) {
        if (any && shape[k] < 0) len += (size_t)snprintf(out + len, size - len, "%sany", k ? ", " : "");
        else len += (size_t)snprintf(out + len, size - len, "%s%zd", k ? ", " : "", shape[k]);
    }
    if (len < size) snprintf(out + len, size - len, ndim == 1 ? ",)" : ")");
}

int arr_get(PyObject *obj, const char *name, unsigned dtypes, int writable, int ndim, Py_ssize_t *shape,
            const char *like, Arr *a)
{
    char want[64], found[64], text[96], as_dtype[48] = "", as_kp[48] = "";
    memset(a, 0, sizeof *a);
    a->name = name;
    dtypes_text(dtypes, want, sizeof want);
    if (like) {
        snprintf(as_dtype, sizeof as_dtype, " (as %s)", like);
        snprintf(as_kp, sizeof as_kp, " (KP from %s)", like);
    }
    if (!obj || !PyObject_CheckBuffer(obj)) {
        PyErr_Format(PyExc_TypeError, "%s: expected an array of %s%s, found %s", name, want, as_dtype,
                     obj ? Py_TYPE(obj)->tp_name : "nothing");
        return -1;
    }
    if (PyObject_GetBuffer(obj, &a->view, PyBUF_RECORDS_RO) < 0) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "%s: expected an array of %s%s, found a %s whose memory cannot be read "
                     "directly", name, want, as_dtype, Py_TYPE(obj)->tp_name);
        return -1;
    }
    a->held = 1;
    const Py_buffer *v = &a->view;
    const int ours = buffer_dtype(v, &a->dtype, found, sizeof found) == 0;
    if (!ours || !(dtypes & DTS(a->dtype))) {
        PyErr_Format(PyExc_TypeError, "%s: expected an array of %s%s, found %s", name, want, as_dtype,
                     ours ? dtype_name(a->dtype) : found);
        return -1;
    }
    if (writable && v->readonly) {
        PyErr_Format(PyExc_ValueError, "%s: expected a writable array, found a read-only one", name);
        return -1;
    }
    if (!PyBuffer_IsContiguous(v, 'C')) {
        shape_text(v->ndim, v->strides, 0, text, sizeof text);
        PyErr_Format(PyExc_ValueError, "%s: expected a C-contiguous array, found one with strides %s (bytes)",
                     name, text);
        return -1;
    }
    if ((uintptr_t)v->buf % (uintptr_t)v->itemsize) {
        PyErr_Format(PyExc_ValueError, "%s: expected its data aligned to its %zd-byte elements, found it "
                     "starting %zd byte(s) past such a boundary", name, v->itemsize,
                     (Py_ssize_t)((uintptr_t)v->buf % (uintptr_t)v->itemsize));
        return -1;
    }
    int fits = v->ndim == ndim;
    for (int k = 0; fits && k < ndim; k++) fits = shape[k] < 0 || shape[k] == v->shape[k];
    if (!fits) {
        shape_text(ndim, shape, 1, want, sizeof want);
        shape_text(v->ndim, v->shape, 0, text, sizeof text);
        PyErr_Format(PyExc_ValueError, "%s: expected shape %s%s, found %s", name, want, as_kp, text);
        return -1;
    }
    for (int k = 0; k < ndim; k++) shape[k] = v->shape[k];
    return 0;
}

void arr_release(Arr *a, int n)
{
    for (int i = 0; i < n; i++)
        if (a[i].held) { PyBuffer_Release(&a[i].view); a[i].held = 0; }
}

int arrs_disjoint(const Arr *a, int n)
{
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++) {
            const char *p = a[i].view.buf, *q = a[j].view.buf;
            if (a[i].view.len && a[j].view.len && p < q + a[j].view.len && q < p + a[i].view.len) {
                PyErr_Format(PyExc_ValueError, "%s and %s: expected separate arrays, found them sharing memory",
                             a[i].name, a[j].name);
                return -1;
            }
        }
    return 0;
}

int int_arg(PyObject *obj, const char *name, int64_t lo, int64_t hi, int64_t *out)
{
    if (!obj || PyFloat_Check(obj) || !PyIndex_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s: expected an integer in [%lld, %lld], found %s", name, (long long)lo,
                     (long long)hi, obj ? Py_TYPE(obj)->tp_name : "nothing");
        return -1;
    }
    PyObject *index = PyNumber_Index(obj);
    if (!index) return -1;
    int overflow = 0;
    const long long x = PyLong_AsLongLongAndOverflow(index, &overflow);
    if (x == -1 && PyErr_Occurred()) { Py_DECREF(index); return -1; }
    if (overflow || x < lo || x > hi) {
        PyErr_Format(PyExc_ValueError, "%s: expected an integer in [%lld, %lld], found %R", name, (long long)lo,
                     (long long)hi, index);
        Py_DECREF(index);
        return -1;
    }
    Py_DECREF(index);
    *out = x;
    return 0;
}

int real_arg(PyObject *obj, const char *name, double *out)
{
    const double x = obj ? PyFloat_AsDouble(obj) : -1.0;
    if (!obj || (x == -1.0 && PyErr_Occurred())) {
        const int too_big = obj && PyErr_ExceptionMatches(PyExc_OverflowError);
        PyErr_Clear();
        if (too_big)
            PyErr_Format(PyExc_ValueError, "%s: expected a real number within a double's range, found %R", name, obj);
        else
            PyErr_Format(PyExc_TypeError, "%s: expected a real number, found %s", name,
                         obj ? Py_TYPE(obj)->tp_name : "nothing");
        return -1;
    }
    *out = x;
    return 0;
}

/* A copy of labels[first : first + count] (int64, checked by arr_get), each checked to be in
 * [0, n_out): the kernels index with them, and read the copy, which no other thread can change. */
int labels_copy(const Arr *labels, int64_t first, int64_t count, int n_out, int64_t **out)
{
    int64_t *copy = alloc_array(count, sizeof(int64_t), "labels");
    if (!copy) return -1;
    const int64_t *src = (const int64_t *)labels->view.buf + first;
    for (int64_t i = 0; i < count; i++) {
        copy[i] = src[i];
        if (copy[i] < 0 || copy[i] >= n_out) {
            PyErr_Format(PyExc_ValueError, "labels: expected classes in [0, %d], found %lld (row %lld)",
                         n_out - 1, (long long)copy[i], (long long)(first + i));
            free(copy);
            return -1;
        }
    }
    *out = copy;
    return 0;
}

void *alloc_array(int64_t count, size_t item, const char *what)
{
    size_t bytes;
    if (count < 0 || __builtin_mul_overflow((size_t)count, item, &bytes) || bytes > (size_t)PY_SSIZE_T_MAX) {
        PyErr_Format(PyExc_MemoryError, "%s: %lld elements of %zu bytes do not fit in memory", what,
                     (long long)count, item);
        return NULL;
    }
    void *p = malloc(bytes ? bytes : 1);
    if (!p) PyErr_NoMemory();
    return p;
}
