"""`serve --workers N`: N processes answer on one socket, each with the guard's limits, and all stop
together (Ctrl-C, SIGTERM to the parent, or the parent killed)."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from logreg_mnist.cli import main
from logreg_mnist.serve.workers import GRACE_SECONDS, can_fork, default_workers

from .serve_run import drawing, png_bytes

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts processes through /proc")


def children(pid: int) -> set[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return {int(p) for p in path.read_text().split()} if path.exists() else set()


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def start(run_dir: Path, workers: int) -> tuple[subprocess.Popen, int, set[int]]:
    """``serve --workers N`` on a free port: the process, its port and its N worker processes."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "logreg_mnist", "serve", str(run_dir), "--port", "0",
                             "--workers", str(workers)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    line = proc.stdout.readline()
    port = int(line.split("http://127.0.0.1:")[1].split("/")[0])
    assert proc.stdout.readline() == f"{workers} server processes answer there\n"
    deadline = time.monotonic() + 15
    while len(children(proc.pid)) < workers and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(children(proc.pid)) == workers
    return proc, port, children(proc.pid)


def post(port: int, path: str, body: bytes) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": "image/png"})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def wait_gone(pids: set[int], seconds: float = 15) -> bool:
    deadline = time.monotonic() + seconds
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not any(alive(p) for p in pids)


def test_workers_answer_with_their_limits_and_stop_together_on_ctrl_c(run_dir):
    proc, port, workers = start(run_dir, 2)
    try:
        for _ in range(6):  # a new connection each: the kernel hands them to either worker
            status, answer = post(port, "/api/predict?explain=0", png_bytes(drawing("1")))
            assert status == 200 and answer["label"] == 1
        status, answer = post(port, "/api/predict", b"x" * 5_000_001)
        assert status == 413 and "at most 5,000,000 bytes" in answer["error"]
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode in (0, 130) and "Traceback" not in err
    assert wait_gone(workers)


@pytest.mark.parametrize("wait", [0.0, 0.3])
def test_sigterm_to_the_parent_stops_the_workers_even_while_they_start(run_dir, wait):
    proc, _, workers = start(run_dir, 2)
    try:
        time.sleep(wait)
        began = time.monotonic()
        proc.terminate()
        proc.communicate(timeout=30)
        took = time.monotonic() - began
    finally:
        proc.kill()
    assert wait_gone(workers)
    assert took < GRACE_SECONDS - 2  # they stopped when told, not killed at the end of the grace


def test_workers_outlive_no_killed_parent(run_dir):
    proc, _, workers = start(run_dir, 2)
    try:
        proc.kill()
        proc.wait(30)  # (the workers hold its pipes until they stop)
    finally:
        proc.kill()
    assert wait_gone(workers)


def test_a_bad_number_of_workers_is_a_user_error(run_dir, capsys):
    assert main(["serve", str(run_dir), "--port", "0", "--workers", "0"]) == 2
    assert "--workers: expected at least 1, found 0" in capsys.readouterr().err


def test_the_default_is_one_worker_per_core_up_to_8():
    cores = len(os.sched_getaffinity(0))
    assert can_fork() and default_workers() == max(1, min(8, cores))


def test_the_server_loads_what_requests_need_before_it_forks_its_workers(run_dir):
    code = ("import sys; from logreg_mnist.serve import RunView; view = RunView(sys.argv[1]); "
            "before = {m for m in ('scipy.ndimage', 'matplotlib') if m in sys.modules}; view.warm_up(); "
            "after = {m for m in ('scipy.ndimage', 'matplotlib') if m in sys.modules}; print(sorted(before), sorted(after))")
    out = subprocess.run([sys.executable, "-c", code, str(run_dir)], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[] ['matplotlib', 'scipy.ndimage']", out.stderr


def test_a_worker_that_dies_stops_the_others_and_the_command_fails(run_dir):
    proc, port, workers = start(run_dir, 2)
    try:
        victim = min(workers)
        os.kill(victim, signal.SIGKILL)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 1 and "Traceback" not in err
    assert "a server process stopped on its own (killed by SIGKILL); the other was stopped too" in err
    assert wait_gone(workers)


def test_one_process_serves_a_loopback_address_and_a_classroom_gets_one_per_core():
    from logreg_mnist.serve.app import workers_for

    assert workers_for("127.0.0.1") == workers_for("::1") == workers_for("localhost") == 1
    assert workers_for("0.0.0.0") == default_workers()  # named only, nothing listens
    assert workers_for("0.0.0.0", 3) == workers_for("127.0.0.1", 3) == 3
