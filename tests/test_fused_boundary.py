"""The fused kernel's boundary: hostile arguments raise, they never crash the process.

Every entry point of ``logreg_mnist.engines._fused`` is called with the arguments of a small
training, each argument in turn replaced by a wrong one (None, another type, an empty,
shorter, longer or reshaped array, another dtype, byte-swapped, non-contiguous, misaligned,
read-only, overlapping another, a label past the classes, a huge or negative integer, ...).
Every such call must raise ValueError, TypeError or OverflowError whose message names the
argument, leave the arrays as they were, and the valid call must still give the reference
result. The calls run in a subprocess per batch (this file run as a script), so that a crash
is a failed test that names the call, not a dead pytest.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ALLOWED = ("ValueError", "TypeError", "OverflowError")
OTHER_DTYPES = ("uint8", "uint16", "int32", "int64", "float32", "float64", "bool", "complex64")
N, N_IN, N_OUT, KP, BATCH = 230, 64, 10, 16, 50


# ---- what the child process runs ---------------------------------------------------------------

def _valid(dense: bool = False) -> dict:
    """The pieces of a small training: pixels, labels, parameters and scratch."""
    rng = np.random.default_rng(0)
    mask = rng.random((N, N_IN)) < (0.8 if dense else 0.2)
    pixels = np.where(mask, rng.integers(1, 256, (N, N_IN)), 0).astype(np.uint8)
    W = np.zeros((N_IN, KP), np.float32)
    W[:, :N_OUT] = 0.01 * rng.standard_normal((N_IN, N_OUT))
    return {"pixels": pixels, "labels": rng.integers(0, N_OUT, N).astype(np.int64), "W": W,
            "b": np.zeros(KP, np.float32), "D": np.zeros((BATCH, KP), np.float32),
            "G": np.zeros((N_IN, KP), np.float32), "nll": np.zeros(BATCH, np.float64)}


def _array_mutations(x: np.ndarray, *, writable: bool, lengths: bool = True) -> list[tuple[str, object]]:
    """``x`` made wrong in one way each: (label, value)."""
    out: list[tuple[str, object]] = [
        ("None", None), ("list", x.tolist()), ("int", 3), ("str", "x"), ("bytes", bytes(x.nbytes)),
        ("empty", np.empty(0, x.dtype)), ("0-d", np.asarray(x.reshape(-1)[0])),
        ("reshaped", x.reshape(-1) if x.ndim == 2 else x.reshape(1, -1)), ("3-d", x.reshape(1, *x.shape)),
    ]
    if lengths:
        out += [("shorter", x[:-1].copy()), ("longer", np.concatenate([x, x[:1]])),
                ("empty rows", x[:0].copy())]
        if x.ndim == 2:
            out += [("narrower", np.ascontiguousarray(x[:, :-1])), ("transposed", np.ascontiguousarray(x.T))]
    out += [(dtype, x.astype(dtype)) for dtype in OTHER_DTYPES if np.dtype(dtype) != x.dtype]
    if x.dtype.itemsize > 1:
        out.append(("byte-swapped", x.astype(x.dtype.newbyteorder())))
        raw = np.zeros(x.nbytes + x.dtype.itemsize, np.uint8)
        misaligned = raw[1 : 1 + x.nbytes].view(x.dtype).reshape(x.shape)
        misaligned[...] = x
        out.append(("misaligned", misaligned))
    out.append(("strided", np.repeat(x, 2, axis=-1)[..., ::2]))
    if x.ndim == 2:
        out.append(("fortran", np.asfortranarray(x)))
    if writable:
        readonly = x.copy()
        readonly.flags.writeable = False
        out.append(("read-only", readonly))
    return out


def _int_mutations(too_big: list[int]) -> list[tuple[str, object]]:
    return [("None", None), ("float", 1.5), ("str", "1"), ("-1", -1), ("-2**70", -2 ** 70), ("2**63", 2 ** 63),
            ("2**70", 2 ** 70), *((str(v), v) for v in too_big)]


REAL_MUTATIONS: list[tuple[str, object]] = [("None", None), ("str", "0.1"), ("list", [0.1]), ("10**400", 10 ** 400),
                                            ("object", object())]


def _call(label: str, fn, kwargs: dict, names: tuple[str, ...]) -> None:
    """One call, reported as a JSON line (``start`` first, so that a crash shows which call)."""
    print(json.dumps({"start": label}), flush=True)
    record: dict[str, object]
    try:
        fn(**kwargs)
    except Exception as e:  # noqa: BLE001 -- the type is what is checked
        record = {"call": label, "type": type(e).__name__, "message": str(e), "names": list(names)}
    else:
        record = {"call": label, "type": None, "message": "", "names": list(names)}
    print(json.dumps(record), flush=True)


def _layout(_fused, v: dict, kind: str):
    """A Layout of the valid pixels: 'csc' (sparse, with minibatch columns), 'sparse' or 'dense'."""
    layout = _fused.Layout(v["pixels"], dense_above=0.5)
    assert layout.sparse == (kind != "dense")
    if kind == "csc":
        assert layout.add_minibatch_columns(200, BATCH) is True
    return layout


def _kernel_calls(_fused, entry: str, kind: str) -> None:
    """sgd or errors with a layout of ``kind``: the valid call, each mutation, the valid call again."""
    v = _valid(dense=kind == "dense")
    layout = _layout(_fused, v, kind)
    if entry == "sgd":
        fn = _fused.sgd
        arrays = {"labels": False, "W": True, "b": True, "D": True, "G": True, "nll": True}
        ints = {"row0": (50, [201, 1000]), "n_rows": (200, [N + 1]), "batch_size": (BATCH, [0, 2 ** 31]),
                "n_batches": (3, [4, 5]), "n_out": (N_OUT, [0, 1, KP + 1, 265]), "threads": (2, [0, 1025])}
        reals = {"lr": 0.1, "l1": 1e-4, "l2x2": 2e-3, "total": 1.5}
        if kind == "csc":  # the minibatches must be those of the layout's columns
            ints["row0"][1].append(25)
            ints["batch_size"][1].append(40)
            ints["n_rows"][1].append(199)
    else:
        fn = _fused.errors
        arrays = {"labels": False, "W": False, "b": False}
        ints = {"n_rows": (N - 10, [N + 1]), "n_out": (N_OUT, [0, 1, KP + 1, 265]), "threads": (2, [0, 1025])}
        reals = {}
    valid = {"layout": layout, **{k: v[k] for k in arrays}, **{k: val for k, (val, _) in ints.items()}, **reals}
    label = f"{entry}[{kind}]"

    def snapshot():
        return {k: v[k].copy() for k in arrays}

    reference_args = {**valid, **snapshot()}
    reference = fn(**reference_args)
    before = snapshot()
    cases: list[tuple[str, dict, tuple[str, ...]]] = []
    other = _fused.Layout(v["pixels"][:, : N_IN // 2].copy(), dense_above=0.5)
    for bad, what in [(None, "None"), (v["pixels"], "an array"), (3, "int"), (other, "a narrower layout")]:
        cases.append((f"layout={what}", {"layout": bad}, ("layout",) if what != "a narrower layout" else ("W",)))
    for name, writable in arrays.items():
        for what, bad in _array_mutations(v[name], writable=writable):
            cases.append((f"{name}={what}", {name: bad}, (name,)))
    for row, value in [(60, N_OUT), (60, -1), (199, 2 ** 62), (150, N_OUT + 100)]:  # rows that the call reads
        labels = v["labels"].copy()
        labels[row] = value
        cases.append((f"labels[{row}]={value}", {"labels": labels}, ("labels",)))
    names: tuple[str, ...]
    if entry == "sgd":  # writable arrays that share memory
        flat64 = v["W"].reshape(-1).view(np.float64)
        for what, bad, names in [("G=W", {"G": v["W"]}, ("G", "W")), ("D=W[:50]", {"D": v["W"][:BATCH]}, ("D", "W")),
                                 ("b=W[0]", {"b": v["W"][0]}, ("b", "W")),
                                 ("nll=W's memory", {"nll": flat64[:BATCH]}, ("nll", "W")),
                                 ("b=D[1]", {"b": v["D"][1]}, ("b", "D"))]:
            cases.append((what, bad, names))
    for name, (_, too_big) in ints.items():
        for what, bad in _int_mutations(too_big):
            cases.append((f"{name}={what}", {name: bad}, (name,)))
    for name in reals:
        for what, bad in REAL_MUTATIONS:
            cases.append((f"{name}={what}", {name: bad}, (name,)))
    for name in valid:
        cases.append((f"without {name}", {name: KeyError}, (name,)))
    cases.append(("unknown keyword", {"bogus": 1}, ("bogus",)))
    for what, changes, names in cases:
        kwargs = {k: val for k, val in {**valid, **changes}.items() if val is not KeyError}
        _call(f"{label} {what}", fn, kwargs, names)
    _call(f"{label} positional", lambda **kw: fn(layout, **{k: x for k, x in kw.items() if k != "layout"}), valid,
          ("keyword",))
    unchanged = all(np.array_equal(v[k], before[k]) for k in arrays)
    again = fn(**valid)
    same = again == reference and all(np.array_equal(v[k], reference_args[k]) for k in arrays)
    print(json.dumps({"valid": label, "unchanged": unchanged, "same_as_reference": bool(same)}), flush=True)


def _layout_calls(_fused) -> None:
    v = _valid()
    for what, bad in _array_mutations(v["pixels"], writable=False, lengths=False):
        _call(f"Layout pixels={what}", _fused.Layout, {"pixels": bad, "dense_above": 0.5}, ("pixels",))
    for what, bad in [*REAL_MUTATIONS, ("-0.1", -0.1), ("1.5", 1.5), ("nan", math.nan), ("2**70", 2 ** 70)]:
        _call(f"Layout dense_above={what}", _fused.Layout, {"pixels": v["pixels"], "dense_above": bad},
              ("dense_above",))
    _call("Layout without dense_above", _fused.Layout, {"pixels": v["pixels"]}, ("dense_above",))

    def columns(**kwargs):
        return _layout(_fused, v, "sparse").add_minibatch_columns(**kwargs)

    for name, valid, too_big in [("n_rows", 200, [N + 1]), ("batch_size", BATCH, [0])]:
        for what, bad in _int_mutations(too_big):
            _call(f"add_minibatch_columns {name}={what}", columns,
                  {"n_rows": 200, "batch_size": BATCH, name: bad}, (name,))
    layout = _layout(_fused, v, "csc")
    for n_rows, batch in [(200, 40), (N, BATCH)]:  # made once: another request is refused
        _call(f"add_minibatch_columns again ({n_rows}, {batch})", layout.add_minibatch_columns,
              {"n_rows": n_rows, "batch_size": batch}, ("minibatch columns",))


def _fuzz_calls(_fused) -> None:
    """Several arguments wrong at once, drawn by Hypothesis (derandomised): no call may crash."""
    for entry, kind in [("sgd", "csc"), ("sgd", "dense"), ("errors", "sparse")]:
        _fuzz_entry(_fused, entry, kind)


def _fuzz_entry(_fused, entry: str, kind: str) -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    v = _valid(dense=kind == "dense")
    fn = _fused.sgd if entry == "sgd" else _fused.errors
    valid = {"layout": _layout(_fused, v, kind), "labels": v["labels"], "W": v["W"], "b": v["b"], "n_rows": 200,
             "n_out": N_OUT, "threads": 2}
    if entry == "sgd":
        valid.update(D=v["D"], G=v["G"], nll=v["nll"], row0=50, batch_size=BATCH, n_batches=3, lr=0.1, l1=0.0,
                     l2x2=0.0, total=0.0)
    choices: list[tuple[str, str, object]] = [(name, what, bad) for name in ("labels", "W", "b", "D", "G", "nll") if name in valid
               for what, bad in _array_mutations(v[name], writable=name != "labels")]
    choices += [(name, what, bad) for name in ("row0", "n_rows", "batch_size", "n_batches", "n_out", "threads")
                if name in valid for what, bad in _int_mutations([0, 7, 10 ** 6])]

    @settings(max_examples=150, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(st.lists(st.sampled_from(range(len(choices))), min_size=2, max_size=4, unique=True))
    def run(picked):
        changes = {choices[i][0]: choices[i][2] for i in picked}
        what = ", ".join(f"{choices[i][0]}={choices[i][1]}" for i in picked)
        _call(f"{entry}[{kind}] {what}", fn, {**valid, **changes}, ())

    run()


def _child(batch: str) -> None:
    from logreg_mnist.engines import _fused

    if batch == "layout":
        _layout_calls(_fused)
    elif batch == "fuzz":
        _fuzz_calls(_fused)
    else:
        entry, kind = batch.split("-")
        _kernel_calls(_fused, entry, kind)


# ---- the tests -------------------------------------------------------------------------------------



def _run_batch(batch: str) -> list[dict]:
    proc = subprocess.run([sys.executable, __file__, batch], check=False, capture_output=True, text=True, timeout=600,
                          cwd=Path(__file__).parent.parent)
    records = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    started = [r["start"] for r in records if "start" in r]
    how = f"killed by signal {-proc.returncode}" if proc.returncode < 0 else f"exit status {proc.returncode}"
    assert proc.returncode == 0, (f"the batch {batch!r} ended ({how}) in the call "
                                  f"{started[-1] if started else None!r}\n{proc.stderr[-3000:]}")
    assert records and len(started) == sum("call" in r for r in records)
    return records


def _assert_refused(records: list[dict]) -> None:
    calls = [r for r in records if "call" in r]
    assert len(calls) > 20
    for r in calls:
        assert r["type"] in ALLOWED, f"{r['call']}: expected ValueError/TypeError/OverflowError, found {r['type']}"
        for name in r["names"]:
            assert name in r["message"], f"{r['call']}: the message does not name {name!r}: {r['message']!r}"


@pytest.mark.parametrize("batch", ["sgd-csc", "sgd-sparse", "sgd-dense", "errors-sparse", "errors-dense"])
def test_kernel_calls_refuse_every_hostile_argument(need_fused, batch):
    records = _run_batch(batch)
    _assert_refused(records)
    (valid,) = [r for r in records if "valid" in r]
    assert valid["unchanged"], "a refused call changed an argument"
    assert valid["same_as_reference"], "after the refused calls, the valid call gave another result"


def test_layout_refuses_every_hostile_argument(need_fused):
    _assert_refused(_run_batch("layout"))


def test_several_wrong_arguments_at_once_never_crash(need_fused):
    records = _run_batch("fuzz")
    calls = [r for r in records if "call" in r]
    assert len(calls) >= 3 * 100
    assert all(r["type"] in (None, *ALLOWED) for r in calls), [r for r in calls if r["type"] not in (None, *ALLOWED)]
    assert sum(r["type"] is not None for r in calls) > 0.9 * len(calls)


def test_messages_say_what_was_expected_and_what_was_found(need_fused):
    from logreg_mnist.engines import _fused

    v = _valid()
    layout = _layout(_fused, v, "csc")
    valid = {"layout": layout, "labels": v["labels"], "W": v["W"], "b": v["b"], "D": v["D"], "G": v["G"],
             "nll": v["nll"], "row0": 0, "n_rows": 200, "batch_size": BATCH, "n_batches": 4, "lr": 0.1, "l1": 0.0,
             "l2x2": 0.0, "n_out": N_OUT, "threads": 1, "total": 0.0}
    expected = {
        "labels": (v["labels"].astype(np.float64), TypeError, r"labels: expected an array of int64, found float64"),
        "W": (v["W"][:, :8].copy(), ValueError,
              r"W: expected shape \(64, KP\) with max\(n_out, \d+\) = 10 <= KP <= 264 .*, found \(64, 8\)"),
        "b": (v["b"].astype(np.float64), TypeError, r"b: expected an array of float32 \(as W\), found float64"),
        "D": (np.asfortranarray(v["D"]), ValueError,
              r"D: expected a C-contiguous array, found one with strides \(4, 200\) \(bytes\)"),
        "nll": (np.zeros(BATCH - 1), ValueError, r"nll: expected shape \(50,\), found \(49,\)"),
        "G": (v["G"][:, :10].copy(), ValueError, r"G: expected shape \(64, 16\) \(KP from W\), found \(64, 10\)"),
        "row0": (2 ** 70, ValueError, r"row0: expected an integer in \[0, 200\], found 1180591620717411303424"),
        "threads": (None, TypeError, r"threads: expected an integer in \[1, 1024\], found NoneType"),
        "batch_size": (40, ValueError, r"batch_size: expected 50 \(the layout's minibatch columns\), found 40"),
    }
    for name, (bad, error, message) in expected.items():
        with pytest.raises(error, match=message):
            _fused.sgd(**{**valid, name: bad})
    with pytest.raises(ValueError, match=r"W and G: expected separate arrays, found them sharing memory"):
        _fused.sgd(**{**valid, "G": v["W"]})
    labels = v["labels"].copy()
    labels[77] = 12
    with pytest.raises(ValueError, match=r"labels: expected classes in \[0, 9\], found 12 \(row 77\)"):
        _fused.sgd(**{**valid, "labels": labels})
    _fused.sgd(**{**valid, "labels": labels, "n_batches": 1})  # row 77 is not read: accepted
    with pytest.raises(TypeError, match=r"pixels: expected an array of uint8, found float32"):
        _fused.Layout(v["pixels"].astype(np.float32), dense_above=0.5)
    with pytest.raises(TypeError, match=r"sgd\(\): missing argument 'total'"):
        _fused.sgd(**{k: x for k, x in valid.items() if k != "total"})


def test_the_layout_is_out_of_pythons_reach(need_fused):
    from logreg_mnist.engines import _fused

    v = _valid()
    layout = _fused.Layout(v["pixels"], dense_above=0.5)
    nnz = int(np.count_nonzero(v["pixels"]))
    assert (layout.n, layout.n_in, layout.nnz, layout.sparse) == (N, N_IN, nnz, True)
    assert layout.density == nnz / (N * N_IN) and layout.minibatch_size is None
    with pytest.raises(TypeError):
        memoryview(layout)
    with pytest.raises(AttributeError):
        layout.sparse = False
    with pytest.raises(AttributeError):
        layout.indices = np.zeros(3, np.uint16)
    with pytest.raises(TypeError):
        type("Sub", (_fused.Layout,), {})
    v["pixels"][:] = 255  # the sparse layout is a copy: changing the pixels changes nothing
    assert layout.nnz == nnz
    assert layout.add_minibatch_columns(n_rows=200, batch_size=BATCH) is True and layout.minibatch_size == BATCH
    assert layout.add_minibatch_columns(200, BATCH) is True  # the same request again: nothing to do
    big = _fused.Layout(v["pixels"][:, :8].copy() * 0, dense_above=0.5)
    assert big.add_minibatch_columns(200, 65537) is False and big.minibatch_size is None  # uint16 rows in a batch
    dense = _fused.Layout(v["pixels"], dense_above=0.5)
    assert not dense.sparse and dense.density == 1.0
    assert dense.add_minibatch_columns(200, BATCH) is False and dense.minibatch_size is None
    assert _fused.Layout(v["pixels"][:, :0].copy(), dense_above=0.5).nnz == 0
    wide = np.zeros((2, 65537), np.uint8)
    assert not _fused.Layout(wide, dense_above=0.5).sparse  # column indices are uint16


def test_kp_max_is_the_kernels_and_importing_the_engine_leaves_the_environment_alone(need_fused):
    from logreg_mnist.engines import _fused, fused

    assert _fused.KP_MAX == 264 and not hasattr(fused, "_KP_MAX")
    probe = ("import os, json; before = dict(os.environ); import logreg_mnist.engines.fused as f; "
             "f.kernel_info(); print(json.dumps(before == dict(os.environ)))")
    env = {k: x for k, x in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) is True


if __name__ == "__main__":
    _child(sys.argv[1])
