"""Messages quote untrusted text: no control codes reach a terminal, nothing grows without bound."""

from __future__ import annotations

import pickle

from logreg_mnist.errors import MESSAGE_LIMIT, DataError, safe_text, show_path


def test_safe_text_quotes_escapes_and_cuts():
    assert safe_text("numpy.core") == "'numpy.core'"
    assert safe_text("a\x1b[2Jb\n") == r"'a\x1b[2Jb\n'"
    assert safe_text("x" * 1000, limit=5) == "'xxxxx'... (1,000 characters)"
    assert safe_text(b"\x00" * 300, limit=2) == r"b'\x00\x00'... (300 bytes)"
    assert safe_text("\u202egnp.exe") == r"'\u202egnp.exe'"  # a right-to-left override shows as an escape


def test_show_path_leaves_ordinary_paths_alone():
    assert show_path("runs/t/best.safetensors") == "runs/t/best.safetensors"
    assert show_path("runs/\x1b[31mred") == r"'runs/\x1b[31mred'"
    assert show_path("d/" + "x" * 500).endswith("... (502 characters)")


def test_every_error_message_is_cleaned_and_capped():
    e = DataError("bad \x1b]0;title\x07 file\nsecond line " + "y" * 100_000)
    text = str(e)
    assert "\x1b" not in text and "\x07" not in text and r"\x1b]0;title\x07" in text
    assert "\nsecond line" in text, "newlines of a multi-line report stay"
    assert len(text) <= MESSAGE_LIMIT and text.endswith("(message cut, 100,032 characters)")
    assert str(pickle.loads(pickle.dumps(e))) == text, "cleaning twice changes nothing"
