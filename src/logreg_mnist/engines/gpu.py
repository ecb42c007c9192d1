"""The GPU engine: JAX, the uint8 dataset resident on the device, a chunk of minibatches per call.

As in the chapter's shared variables, the training images are copied to the device
once, as uint8 (four times less than float32), padded to a whole number of
minibatches. Minibatches are sliced on the device by index, scaled by exactly
``1/256`` and stepped through by one compiled ``lax.fori_loop``: every
``train(batches)`` call (all the minibatches between two validations) is a single
call into XLA, so Python is not in the inner loop. Validation and test errors are
counted on the device.

Out of core: when the data exceed the memory budget (see
:func:`logreg_mnist.data.stream.chunk_bytes_for`), the splits are read from their
files in chunks of whole minibatches (:class:`logreg_mnist.data.stream.Rows`); each
chunk is copied to the device and trained on by the same compiled loop, so the result
is the same as with the data resident.

Layout: uint8 pixels (n_pad, n_in) and int32 labels (n_pad,) on the device; ``W``
(n_in, n_out) and ``b`` (n_out,) in the run's dtype. Threading: XLA's.

Agreement with the NumPy reference (:class:`logreg_mnist.engines.numpy.NumpyEngine`): the
same formulas (log-softmax with the max shifted out, ``dW = x^T (P - Y) / n``), with
matrix products at full precision (``Precision.HIGHEST``: no TF32 on GPUs); XLA
orders the float32 sums of the matrix products differently, so the parameters differ
by float32 roundings: on MNIST's tutorial preset (JAX's CPU backend) ``max |W - W_ref|``
is 6e-8 after 83 minibatches and 9e-8 after 249 (W's entries reach 0.37); the tests
allow 1e-6 on small data. The validation and test counts agree, and the tutorial
preset gives the reference's run exactly (74 epochs, 7.489583 %) on the CPU backend. A
GPU's reductions may move a count by one where a score is tied to rounding;
``dtype=float64`` (JAX's x64 mode, scoped to this engine) agrees to about 1e-12.
Chunked and resident training give bit-identical parameters (the same compiled step).

The training NLL sums are per-minibatch float32 sums added in float64 on the host.

Choosing the platform: ``platform=None`` insists on a GPU; ``platform="cpu"`` (or the
environment variable ``LOGREG_MNIST_JAX_PLATFORM=cpu``) runs the same code on JAX's
CPU backend, which is how the tests run it on machines without a GPU.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from contextlib import nullcontext
from typing import cast

import numpy as np

from ..data import Dataset
from ..data.mnist import PIXEL_SCALE
from ..data.stream import MAX_CHUNK_BYTES, Rows, chunk_bytes_for
from ..errors import ConfigError
from .base import SGDSettings, Tolerance

ENV_PLATFORM = "LOGREG_MNIST_JAX_PLATFORM"  # "cpu" runs this engine on JAX's CPU backend (tests)
_GPU_PLATFORMS = ("cuda", "rocm", "gpu")


def jax_installed() -> bool:
    """Whether JAX can be imported (without importing it)."""
    return importlib.util.find_spec("jax") is not None


def gpu_available() -> bool:
    """Whether JAX is installed with a GPU plugin and sees a GPU.

    JAX finds GPUs through plugins (``jax[cuda12]`` installs ``jax_plugins.xla_cuda12``);
    without one, the answer is no and JAX is not even imported.
    """
    if not jax_installed() or importlib.util.find_spec("jax_plugins") is None:
        return False
    return _device(None, required=False) is not None


def _device(platform: str | None, *, required: bool = True):
    """The first device of ``platform`` (None: a GPU), or None / ConfigError when there is none."""
    import jax

    for name in (platform,) if platform else _GPU_PLATFORMS:
        try:
            devices = jax.devices(name)
        except RuntimeError:
            continue
        if devices:
            return devices[0]
    if not required:
        return None
    found = ", ".join(sorted({d.platform for d in jax.devices()})) or "none"
    wanted = f"a JAX {platform} device" if platform else "a GPU"
    raise ConfigError(
        f"--engine gpu: expected {wanted}, found JAX devices: {found}; install the CUDA build "
        "with pip install 'logreg-mnist[gpu]' (and an NVIDIA driver), or use --engine auto "
        "(the CPU engine)"
    )


def _x64_mode():
    """A context manager enabling JAX's 64-bit types (``jax.enable_x64`` in recent JAX)."""
    import jax

    if hasattr(jax, "enable_x64"):
        return jax.enable_x64(True)
    from jax.experimental import enable_x64

    return enable_x64()


@functools.cache
def _functions():
    """The jitted functions (jit compiles per shape, dtype and x64 mode, and caches)."""
    import jax
    import jax.numpy as jnp
    from jax import lax

    def dot(a, b):
        # full float32 (or float64) products: on recent NVIDIA GPUs JAX's default
        # precision rounds float32 matrix products through TF32 (10-bit mantissas)
        return jnp.matmul(a, b, precision=lax.Precision.HIGHEST)

    def minibatch_step(W, b, x, y, start, n_rows, batch_size, lr, l1, l2):
        """One SGD step on rows [start, start + batch_size) of the device arrays; rows at
        or past ``n_rows`` (the padding of a short last minibatch) have weight 0."""
        xb = lax.dynamic_slice_in_dim(x, start, batch_size).astype(W.dtype) * jnp.asarray(PIXEL_SCALE, W.dtype)
        yb = lax.dynamic_slice_in_dim(y, start, batch_size)  # (B,)
        valid = (start + jnp.arange(batch_size)) < n_rows  # (B,)
        count = jnp.clip(n_rows - start, 1, batch_size).astype(W.dtype)
        logp = jax.nn.log_softmax(dot(xb, W) + b, axis=1)  # (B, n_out)
        picked = jnp.take_along_axis(logp, yb[:, None], axis=1)[:, 0]
        nll_sum = -jnp.sum(jnp.where(valid, picked, 0))
        z = (jnp.exp(logp) - jax.nn.one_hot(yb, W.shape[1], dtype=W.dtype)) * valid[:, None] / count
        gW = dot(xb.T, z) + l1 * jnp.sign(W) + (2 * l2) * W
        gb = jnp.sum(z, axis=0)
        return W - lr * gW, b - lr * gb, nll_sum

    def train_steps(W, b, x, y, first, n_steps, n_rows, lr, l1, l2, *, batch_size):
        """``n_steps`` SGD steps from minibatch ``first`` of ``x`` (padded to whole minibatches).

        Returns (W, b, per-minibatch NLL sums (len(x) // batch_size,), zero past n_steps).
        """
        sums = jnp.zeros(x.shape[0] // batch_size, W.dtype)

        def body(i, carry):
            W, b, sums = carry
            W, b, s = minibatch_step(W, b, x, y, (first + i) * batch_size, n_rows, batch_size, lr, l1, l2)
            return W, b, sums.at[i].set(s)

        return lax.fori_loop(0, n_steps, body, (W, b, sums))

    def count_wrong(W, b, x, y, n_rows):
        """Misclassified rows among the first ``n_rows`` of ``x``."""
        scores = dot(x.astype(W.dtype) * jnp.asarray(PIXEL_SCALE, W.dtype), W) + b
        wrong = (jnp.argmax(scores, axis=1) != y) & (jnp.arange(x.shape[0]) < n_rows)
        return jnp.sum(wrong, dtype=jnp.int32)

    return {"train": jax.jit(train_steps, static_argnames="batch_size"), "count": jax.jit(count_wrong)}


class GpuEngine:
    """SGD and error counts on a JAX device (see the module docstring).

    Args:
        data: the dataset; its uint8 ``pixels`` are used.
        settings: as for the NumPy engine; dtype float32 (the chapter's floatX on a
            GPU) or float64 (x64 mode).
        threads: not used (the device's parallelism is XLA's).
        max_resident: memory budget in bytes for the uint8 splits (None: the
            default fraction of available memory); beyond it, splits are streamed.
        platform: None for a GPU (ConfigError when there is none), or a JAX platform
            name such as ``"cpu"``; default from ``$LOGREG_MNIST_JAX_PLATFORM``.

    Attributes:
        tolerance: float32 ``atol`` 1e-6, float64 1e-12 (see the module docstring).

    Raises:
        ConfigError: JAX is not installed, no device of the platform, float pixels.
    """

    name = "gpu"
    threads = 1  # host threads; the device's parallelism is XLA's
    tolerance = Tolerance(float32=(0.0, 1e-6), float64=(0.0, 1e-12))

    def __init__(
        self,
        data: Dataset,
        settings: SGDSettings,
        *,
        threads: int | None = None,
        max_resident: int | None = None,
        platform: str | None = None,
    ):
        if not jax_installed():
            raise ConfigError(
                "--engine gpu: expected JAX, found it is not installed; "
                "pip install 'logreg-mnist[gpu]' (or use --engine auto)"
            )
        import jax

        self._jax = jax
        self.settings = settings
        self.dtype = settings.dtype
        self._x64 = _x64_mode if self.dtype == np.float64 else nullcontext  # a fresh context per use
        self.device = _device(platform or os.environ.get(ENV_PLATFORM) or None)
        self.batch_size = settings.batch_size
        self._hyper = tuple(self.dtype.type(v) for v in (settings.learning_rate, settings.l1, settings.l2))
        self.n_classes = data.n_classes
        self.n_train_batches = settings.n_batches(len(data.train))
        self._n_train_rows = min(len(data.train), self.n_train_batches * self.batch_size)
        chunk = chunk_bytes_for(data, max_resident, 1)
        self._rows = {
            s: Rows.for_split(data.split(s), chunk, multiple=self.batch_size if s == "train" else 1)
            for s in ("train", "valid", "test")
        }
        self._labels = {s: data.split(s).labels for s in ("train", "valid", "test")}
        self._compiled = _functions()
        # (Rows.for_split above refused a split without uint8 pixels)
        self._resident = {
            s: self._to_device(s, cast(np.ndarray, data.split(s).pixels))
            for s in self._rows
            if not self._rows[s].chunked
        }
        self.W = self.b = None
        self.set_params(np.zeros((data.n_features, self.n_classes), self.dtype), np.zeros(self.n_classes, self.dtype))

    @property
    def chunked(self) -> bool:
        """Whether the training split goes to the device in chunks (read from its file when
        it is memory-mapped) rather than once."""
        return self._rows["train"].chunked

    def _put(self, pixels: np.ndarray, labels: np.ndarray, rows: int):
        """Copies of ``pixels`` (k, n_in) uint8 and ``labels`` (k,) on the device, zero-padded to ``rows``."""
        x = np.zeros((rows, pixels.shape[1]), np.uint8)
        x[: len(pixels)] = pixels
        y = np.zeros(rows, np.int32)
        y[: len(labels)] = labels
        with self._x64():
            return self._jax.device_put(x, self.device), self._jax.device_put(y, self.device)

    def _to_device(self, split: str, pixels: np.ndarray):
        """The whole split on the device (training rows padded to whole minibatches). A
        memory-mapped split is read by position into the padded host copy, so that its
        pages are not resident twice."""
        n = len(pixels)
        padded = -(-n // self.batch_size) * self.batch_size if split == "train" else n
        x = np.zeros((max(padded, 1), pixels.shape[1]), np.uint8)
        source = Rows(pixels, MAX_CHUNK_BYTES // max(1, pixels.shape[1]))
        for start, chunk in source.chunks(0, n):
            x[start : start + len(chunk)] = chunk
        source.close()
        y = np.zeros(len(x), np.int32)
        y[:n] = self._labels[split]
        with self._x64():
            return self._jax.device_put(x, self.device), self._jax.device_put(y, self.device)

    def set_params(self, W: np.ndarray, b: np.ndarray) -> None:
        with self._x64():
            self.W = self._jax.device_put(np.asarray(W, self.dtype), self.device)
            self.b = self._jax.device_put(np.asarray(b, self.dtype), self.device)

    def get_params(self) -> tuple[np.ndarray, np.ndarray]:
        return np.array(self.W), np.array(self.b)

    def train(self, batches: range) -> tuple[float, int]:
        if len(batches) == 0:
            return 0.0, 0
        B = self.batch_size
        total = 0.0
        with self._x64():
            if not self.chunked:
                x, y = self._resident["train"]
                total += self._steps(x, y, batches.start, len(batches), self._n_train_rows)
            else:
                rows = self._rows["train"]
                stop = min(batches.stop * B, self._n_train_rows)
                for start, pixels in rows.chunks(batches.start * B, stop):
                    x, y = self._put(pixels, self._labels["train"][start : start + len(pixels)], rows.chunk_rows)
                    total += self._steps(x, y, 0, -(-len(pixels) // B), len(pixels))
        return total, min(batches.stop * B, self._n_train_rows) - batches.start * B

    def _steps(self, x, y, first: int, n_steps: int, n_rows: int) -> float:
        self.W, self.b, sums = self._compiled["train"](
            self.W,
            self.b,
            x,
            y,
            np.int32(first),
            np.int32(n_steps),
            np.int32(n_rows),
            *self._hyper,
            batch_size=self.batch_size,
        )
        # float64 sum on the host; waiting here also frees a streamed chunk's buffer for reuse
        return float(np.asarray(sums)[:n_steps].sum(dtype=np.float64))

    def counted(self, split: str) -> int:
        """How many examples of ``split`` are scored."""
        return self.settings.counted(len(self._labels[split]))

    def count_errors(self, split: str) -> tuple[int, int]:
        n = self.counted(split)
        with self._x64():
            if split in self._resident:
                x, y = self._resident[split]
                return int(self._compiled["count"](self.W, self.b, x, y, np.int32(n))), n
            rows, wrong = self._rows[split], 0
            for start, pixels in rows.chunks(0, n):
                x, y = self._put(pixels, self._labels[split][start : start + len(pixels)], rows.chunk_rows)
                wrong += int(self._compiled["count"](self.W, self.b, x, y, np.int32(len(pixels))))
        return wrong, n
