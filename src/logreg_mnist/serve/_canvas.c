/* logreg_mnist.serve._canvas: a drawing's gray levels read straight from the rows of its PNG (see canvas.py).
 *
 * opaque_gray(rows, width, height, out): the rows inflated from an 8-bit RGBA PNG, as Chromium's canvas
 * encodes the page's pad (every row filtered "Up": each byte the difference from the one above). When
 * every pixel is opaque and gray (R = G = B), the gray level is the red byte, summed down the columns; the
 * other bytes are only checked. One pass, a quarter of the time of the same with NumPy (canvas.py keeps
 * that as the fallback when this module is not built).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>

#define MAX_SIDE 65536

/* One row of pixel differences (RGBA, 4 bytes a pixel) onto the row above (all zeros for the
 * first row, whose expected alpha is then 255, else 0): out[x] = above[x] + red; nonzero when
 * some pixel is not (d, d, d, alpha). Byte by byte (the same on any machine) and branch-free, so
 * that the compiler vectorises it. */
static unsigned add_row(const uint8_t *px, const uint8_t *above, uint8_t *out, Py_ssize_t width, uint8_t alpha)
{
    unsigned bad = 0;
    for (Py_ssize_t x = 0; x < width; x++) {
        const uint8_t r = px[4 * x];
        bad |= (unsigned)(px[4 * x + 1] ^ r) | (unsigned)(px[4 * x + 2] ^ r) | (unsigned)(px[4 * x + 3] ^ alpha);
        out[x] = (uint8_t)(above[x] + r);
    }
    return bad;
}

static PyObject *opaque_gray(PyObject *self, PyObject *args)
{
    Py_buffer rows, out;
    Py_ssize_t width, height;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*nnw*", &rows, &width, &height, &out)) return NULL;
    PyObject *result = NULL;
    if (width < 1 || height < 1 || width > MAX_SIDE || height > MAX_SIDE) {
        PyErr_Format(PyExc_ValueError, "width, height: expected 1-%d each, found %zd, %zd", MAX_SIDE, width, height);
        goto done;
    }
    const Py_ssize_t stride = 4 * width + 1;
    if (rows.len != stride * height || out.len != width * height) {
        PyErr_Format(PyExc_ValueError, "rows, out: expected %zd and %zd bytes, found %zd and %zd", stride * height,
                     width * height, rows.len, out.len);
        goto done;
    }
    const uint8_t *p = rows.buf;
    uint8_t *o = out.buf;
    unsigned bad = 0;
    static const uint8_t zeros[MAX_SIDE];  /* above the first row */
    for (Py_ssize_t y = 0; y < height && !bad; y++, p += stride, o += width) {
        const uint8_t filter = p[0];
        if (filter != 2 && !(y == 0 && filter == 0)) bad = 1;  /* "Up" (the first row: "None" too) */
        else bad = add_row(p + 1, y ? o - width : zeros, o, width, y ? 0 : 255);
    }
    result = PyBool_FromLong(!bad);
done:
    PyBuffer_Release(&rows);
    PyBuffer_Release(&out);
    return result;
}

static PyMethodDef methods[] = {
    {"opaque_gray", opaque_gray, METH_VARARGS,
     "opaque_gray(rows, width, height, out) -> bool: the gray levels of an 8-bit RGBA PNG's inflated rows\n"
     "(height * (1 + 4 * width) bytes, each row's filter byte first) into out (width * height bytes), when every\n"
     "row is filtered \"Up\" (the first \"None\" or \"Up\") and every pixel is opaque and gray (R = G = B); else False."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_canvas", "A drawing's gray levels from the rows of its PNG.", -1, methods, NULL, NULL, NULL,
    NULL};

PyMODINIT_FUNC PyInit__canvas(void) { return PyModule_Create(&module); }
