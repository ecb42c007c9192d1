"""Limits that hold before the work starts: sweep plans of bounded size, a scheduler that must answer
as Dask within its deadline, threads no more than the cores."""

from __future__ import annotations

import http.server
import os
import threading
import time

import pytest

from logreg_mnist import TrainConfig
from logreg_mnist.cli import main
from logreg_mnist.engines import default_threads, make_engine
from logreg_mnist.sweep.plan import MAX_TRIALS


@pytest.mark.parametrize("flags,message", [
    (["--grid", "l2=" + ",".join(str(i) for i in range(1000)), "--grid", "l1=" + ",".join(str(i) for i in range(1000)),
      "--grid", "seed=" + ",".join(str(i) for i in range(100))], "100,000,000 trials"),
    (["--random", "1000000000", "--range", "l2=0:1"], "1,000,000,000 trials"),
    (["--random", str(MAX_TRIALS + 1), "--range", "l2=0:1"], f"at most {MAX_TRIALS:,} trials"),
])
def test_a_huge_plan_is_refused_before_it_is_built(tmp_path, capsys, flags, message):
    t = time.monotonic()
    assert main(["sweep", "--scheduler", "tcp://127.0.0.1:1", "--data-dir", str(tmp_path / "missing"), *flags,
                 "--out", str(tmp_path / "s")]) == 2
    assert time.monotonic() - t < 5
    err = capsys.readouterr().err
    assert message in err and f"at most {MAX_TRIALS:,}" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "s").exists()


def test_a_scheduler_address_that_does_not_speak_dask_is_answered_within_its_deadline(cli_data_dir, tmp_path,
                                                                                         capsys):
    class Quiet(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    address = f"tcp://127.0.0.1:{httpd.server_address[1]}"
    try:
        t = time.monotonic()
        assert main(["sweep", "--scheduler", address, "--data-dir", str(cli_data_dir), "--grid", "l2=0,0.1",
                     "--batch-size", "100", "--out", str(tmp_path / "s")]) == 2
        assert time.monotonic() - t < 15
    finally:
        httpd.shutdown()
        httpd.server_close()
    err = capsys.readouterr().err
    assert f"--scheduler {address}:" in err and "Dask" in err and len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err


def test_threads_are_capped_at_the_cores_with_a_warning(tiny_data, capsys):
    cores = default_threads()
    for name in ("numpy", "fused"):
        engine = make_engine(name, tiny_data, TrainConfig(batch_size=20), threads=1000)
        assert engine.threads <= cores
        err = capsys.readouterr().err
        assert "warning" in err and "1,000 asked for" in err and f"{cores}" in err
    engine = make_engine("numpy", tiny_data, TrainConfig(batch_size=20), threads=1)
    assert engine.threads == 1 and capsys.readouterr().err == ""


def test_train_with_too_many_threads_runs_on_the_cores(cli_data_dir, tmp_path, capsys):
    assert main(["train", "--batch-size", "100", "--n-epochs", "1", "--no-progress", "--threads", str(10**6),
                 "--data-dir", str(cli_data_dir), "--out", str(tmp_path / "r")]) == 0
    assert f"capped at the {default_threads()} core" in capsys.readouterr().err
    assert os.cpu_count()
