"""Damaged files a run or a sweep reads back: one line naming the file and what was expected, never a traceback;
a sweep's choice from its trials' run directories, not from an edited trials.csv."""

from __future__ import annotations

import csv
import io

import pytest

from logreg_mnist.cli import main
from logreg_mnist.serve import RunView

TRAIN = ["train", "--batch-size", "100", "--n-epochs", "2", "--no-progress"]


@pytest.fixture
def run(cli_data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*TRAIN, "--n-epochs", "3", "--patience", "1000000", "--data-dir", str(cli_data_dir),
                 "--out", str(out)]) == 0
    capsys.readouterr()
    return out


@pytest.mark.parametrize("content,expected", [
    (b'{"epoch": 1}\n[1, 2]\n', "expected a JSON object with an integer 'epoch'"),
    (b'{"epoch": 1}\n{"valid_error": 0.1}\n', "expected a JSON object with an integer 'epoch'"),
    (b'{"epoch": 1}\n"text"\n', "expected a JSON object"),
    (b'{"epoch": 1}\n{"e": "\xff\xfe"}\n', "not UTF-8"),
])
def test_a_damaged_history_is_one_line_in_resume_plot_and_serve(run, cli_data_dir, tmp_path, capsys, content,
                                                                  expected):
    (run / "history.jsonl").write_bytes(content)
    for argv in (["train", "--resume", str(run), "--data-dir", str(cli_data_dir), "--no-progress"],
                 ["plot", str(run), "--out", str(tmp_path / "plots")]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert "history.jsonl" in err and "expected" in err and "Traceback" not in err, err
        assert len(err.strip().splitlines()) == 1, err
    with pytest.raises(Exception, match="history.jsonl") as e:
        RunView(run)
    assert "expected" in str(e.value) or "not UTF-8" in str(e.value)


def test_a_non_utf8_config_in_resume_is_one_line(run, cli_data_dir, capsys):
    (run / "config.json").write_bytes(b'{"config": {"optimizer": "sgd\xff"}}')
    assert main(["train", "--resume", str(run), "--data-dir", str(cli_data_dir), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "config.json" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.fixture
def sweep(cli_data_dir, tmp_path, capsys):
    out = tmp_path / "sweep"
    assert main(["sweep", "--grid", "learning_rate=0.001,0.13", "--batch-size", "100", "--n-epochs", "2",
                 "--data-dir", str(cli_data_dir), "--out", str(out), "--workers", "1"]) == 0
    capsys.readouterr()
    return out


def test_an_edited_trials_csv_does_not_change_the_choice(sweep, capsys):
    path = sweep / "trials.csv"
    rows = list(csv.DictReader(io.StringIO(path.read_text())))
    best = (sweep / "best").resolve().name
    other = next(r for r in rows if r["trial"] != best)
    for r in rows:
        r["valid_error"] = "0.000000" if r is other else "99.000000"
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
    path.write_text(buf.getvalue())
    assert main(["sweep", "--resume", str(sweep)]) == 0
    out = capsys.readouterr().out
    chosen = out.split("chosen: ")[1].splitlines()[0]
    assert chosen.startswith(f"trial {int(best.split('-')[0])} ") and "99.000000" not in out, out  # the faked error, as a table prints it (a temporary path may hold "99")
    assert (sweep / "best").resolve().name == best


def test_a_non_utf8_trials_csv_is_one_line(sweep, capsys):
    (sweep / "trials.csv").write_bytes(b"trial,epochs\n\xff\xfe,1\n")
    assert main(["sweep", "--resume", str(sweep)]) == 2
    err = capsys.readouterr().err
    assert "trials.csv" in err and "UTF-8" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
