"""Every engine against the plain NumPy loop, measured in one run; the whole process too.

Prints, for the tutorial preset on MNIST:

1. training throughput: each engine's whole tutorial run (74 epochs, validation and
   test included) and the plain NumPy loop of ``plain_numpy_peer.py`` on the same
   float32 arrays, alternated, repeated; medians, and each engine's ratio to the plain
   loop of the same run; where the fused engine's time goes;
2. the whole process: ``logreg-mnist train --preset tutorial`` against the plain NumPy
   peer script (``python plain_numpy_peer.py DATA_DIR``: gzip read, float32), alternated,
   with the data cache warm; median wall time and peak RSS of each process;
3. start-up: ``python -c "import numpy"``, ``import logreg_mnist.cli``, ``logreg-mnist
   --help`` and ``logreg-mnist predict MODEL digit.png``, with ratios to ``import numpy``.

Timings on a machine busy with other work are noisy: compare the ratios, which are
measured in the same run, and rerun on an idle machine for figures to publish.

    python benchmarks/bench_engines.py [--data-dir DIR] [--repeat 5] [--quick]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from plain_numpy_peer import plain_numpy_loop  # noqa: E402

from logreg_mnist.config import preset  # noqa: E402
from logreg_mnist.data import load_mnist, resolve_data_dir  # noqa: E402
from logreg_mnist.engines import available_engines, make_engine  # noqa: E402
from logreg_mnist.train import train  # noqa: E402


def cpu_model() -> str:
    """``lscpu``'s model name (else what ``platform`` says)."""
    model = platform.processor() or platform.machine()
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return model


def machine() -> str:
    model = cpu_model()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{model}, {cores} cores usable, load average {os.getloadavg()[0]:.1f} at start"


class TimedEngine:
    """Wraps an engine, adding up the seconds spent in train and count_errors, and the examples trained."""

    def __init__(self, engine):
        self._engine = engine
        self.train_s = self.eval_s = 0.0
        self.examples = 0

    def __getattr__(self, name):
        return getattr(self._engine, name)

    def train(self, batches):
        t = time.perf_counter()
        try:
            result = self._engine.train(batches)
            self.examples += result[1]
            return result
        finally:
            self.train_s += time.perf_counter() - t

    def count_errors(self, split):
        t = time.perf_counter()
        try:
            return self._engine.count_errors(split)
        finally:
            self.eval_s += time.perf_counter() - t


def throughput(data, engines: list[tuple[str, int | None]], repeat: int) -> None:
    arrays = []
    for name in ("train", "valid", "test"):
        s = data.split(name)
        arrays += [s.pixels.astype(np.float32) / np.float32(256), s.labels]
    config = preset("tutorial")
    runs: dict[str, list[tuple[float, int, float]]] = {}
    breakdown = None
    from threadpoolctl import threadpool_limits

    for _ in range(repeat):
        t = time.perf_counter()
        epochs, _, test = plain_numpy_loop(*arrays)
        runs.setdefault("plain NumPy loop", []).append((time.perf_counter() - t, epochs, test))
        with threadpool_limits(1):  # the same loop without BLAS threads (what a busy machine favours)
            t = time.perf_counter()
            epochs, _, test = plain_numpy_loop(*arrays)
        runs.setdefault("plain NumPy loop, 1 BLAS thread", []).append((time.perf_counter() - t, epochs, test))
        for name, threads in engines:
            engine = TimedEngine(make_engine(name, data, config, threads=threads))
            label = f"{engine.name} engine" + (f", {threads} thread{'s' if threads > 1 else ''}" if threads else "")
            t = time.perf_counter()
            _, history = train(data, config, None, engine=engine)
            seconds = time.perf_counter() - t
            runs.setdefault(label, []).append((seconds, history.epochs, history.test_error))
            if name == "fused" and threads is None:
                breakdown = (seconds, engine.train_s, engine.eval_s)
    base = statistics.median(s for s, _, _ in runs["plain NumPy loop"])
    base_epochs = runs["plain NumPy loop"][0][1]
    print(f"\nTraining, tutorial preset in one process (median of {repeat}, alternated):")
    print("| what | epochs | test error | seconds | epochs/s | vs plain NumPy loop |")
    print("|---|---|---|---|---|---|")
    for label, rows in runs.items():
        seconds = statistics.median(s for s, _, _ in rows)
        epochs, test = rows[0][1], rows[0][2]
        ratio = (epochs / seconds) / (base_epochs / base)
        print(f"| {label} | {epochs} | {test * 100:f} % | {seconds:.3f} | {epochs / seconds:.1f} | {ratio:.2f}x |")
    if breakdown:
        total, train_s, eval_s = breakdown
        print(f"fused engine, last run: {train_s / total:.0%} in the SGD kernel, {eval_s / total:.0%} counting "
              f"validation/test errors, {(total - train_s - eval_s) / total:.0%} in the Python driver")


# Runs a command and writes "seconds peak_rss_kib" of it to a file. A child's ru_maxrss also counts
# the memory of the process that forked it (until exec), so children are started from this small
# launcher rather than from the benchmark, which holds the dataset.
_LAUNCHER = """
import os, subprocess, sys, time
t = time.perf_counter()
p = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(p.pid, 0)
p.returncode = os.waitstatus_to_exitcode(status)
with open(sys.argv[1], "w") as f:
    f.write(f"{time.perf_counter() - t} {usage.ru_maxrss}")
sys.exit(p.returncode)
"""


def _run(cmd: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """(wall seconds, peak RSS in MiB, stdout) of one child process."""
    with tempfile.TemporaryDirectory(prefix="bench-run-") as tmp:
        report = Path(tmp) / "report"
        proc = subprocess.run([sys.executable, "-c", _LAUNCHER, str(report), *cmd], capture_output=True,
                              text=True, env=env)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr[-2000:]}")
        seconds, rss_kib = report.read_text().split()
    return float(seconds), float(rss_kib) / 1024, proc.stdout


def whole_process(data_dir: Path, repeat: int) -> None:
    cli = shutil.which("logreg-mnist", path=str(Path(sys.executable).parent)) or "logreg-mnist"
    env = dict(os.environ, LOGREG_MNIST_DATA_DIR=str(data_dir))
    peer = [sys.executable, str(HERE / "plain_numpy_peer.py"), str(data_dir)]
    with tempfile.TemporaryDirectory(prefix="bench-engines-") as tmp:
        ours_runs, peer_runs, n = [], [], 0

        def ours():
            nonlocal n
            n += 1
            return _run([cli, "train", "--preset", "tutorial", "--out", f"{tmp}/run{n}"], env)

        ours()  # warm: builds the decoded data cache if needed
        for _ in range(repeat):
            peer_runs.append(_run(peer, env))
            ours_runs.append(ours())
    o_s, o_rss = statistics.median(r[0] for r in ours_runs), statistics.median(r[1] for r in ours_runs)
    p_s, p_rss = statistics.median(r[0] for r in peer_runs), statistics.median(r[1] for r in peer_runs)
    last = ours_runs[-1][2].strip().splitlines()
    result = next((line for line in last if line.startswith("The code run for")), "?")
    print(f"\nWhole process, tutorial preset, data cache warm (median of {repeat}, alternated):")
    print("| process | wall seconds | peak RSS MiB |")
    print("|---|---|---|")
    print(f"| `logreg-mnist train --preset tutorial` | {o_s:.2f} | {o_rss:.0f} |")
    print(f"| `python benchmarks/plain_numpy_peer.py` | {p_s:.2f} | {p_rss:.0f} |")
    print(f"peer / logreg-mnist wall time: {p_s / o_s:.2f}x; logreg-mnist's last run: {result}; "
          f"peer: {peer_runs[-1][2].strip()} (epochs, test error %)")


def startup(data, repeat: int) -> None:
    cli = shutil.which("logreg-mnist", path=str(Path(sys.executable).parent)) or "logreg-mnist"
    from logreg_mnist.persistence import save_model
    from PIL import Image

    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        model = Path(tmp) / "model.safetensors"
        save_model(model, np.zeros((784, 10), np.float32), np.zeros(10, np.float32))
        digit = Path(tmp) / "digit.png"
        Image.fromarray(np.asarray(data.test.pixels[0]).reshape(28, 28)).save(digit)
        commands = {
            'python -c "import numpy"': [sys.executable, "-c", "import numpy"],
            'python -c "import logreg_mnist.cli"': [sys.executable, "-c", "import logreg_mnist.cli"],
            "logreg-mnist --help": [cli, "--help"],
            "logreg-mnist predict MODEL digit.png": [cli, "predict", str(model), str(digit)],
        }
        times: dict[str, list[float]] = {k: [] for k in commands}
        for _ in range(repeat):
            for label, cmd in commands.items():
                t = time.perf_counter()
                subprocess.run(cmd, capture_output=True, check=True)
                times[label].append(time.perf_counter() - t)
    base = statistics.median(times['python -c "import numpy"'])
    print(f"\nStart-up (median of {repeat}, alternated):")
    print("| command | seconds | vs import numpy |")
    print("|---|---|---|")
    for label, ts in times.items():
        s = statistics.median(ts)
        print(f"| `{label}` | {s:.3f} | {s / base:.2f}x |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None, help="MNIST directory with the gzip IDX files "
                        "(default: as load_mnist finds it)")
    parser.add_argument("--repeat", type=int, default=5, help="runs of each, alternated; medians (default: 5)")
    parser.add_argument("--quick", action="store_true", help="one run of each: checks the benchmark works")
    args = parser.parse_args()
    repeat = 1 if args.quick else args.repeat
    data_dir, _ = resolve_data_dir(args.data_dir)
    data = load_mnist(data_dir)
    engines = available_engines()
    print(f"bench_engines on {machine()}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    if "fused" in engines:
        from logreg_mnist.engines.fused import kernel_info

        info = kernel_info()
        print(f"fused kernel: {info['simd']}, OpenMP {'on' if info['openmp'] else 'off'}")
    runs = [(name, None) for name in engines]
    if "fused" in engines:
        runs.append(("fused", 1))
    throughput(data, runs, repeat)
    whole_process(data_dir, repeat)
    startup(data, max(repeat, 3))


if __name__ == "__main__":
    main()
