"""The command line's argument parser: no abbreviations, and every error one line.

argparse's own errors print the usage and the message on several lines and accept
any unambiguous prefix of a flag (``--learning-rat 0.1`` is taken as
``--learning-rate``). Here a flag must be spelt out, and a mistake is one line on
stderr, exit code 2, with a "did you mean" suggestion when a flag or choice is close.
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys

from ..errors import EXIT_USER_ERROR


class OneLineParser(argparse.ArgumentParser):
    """argparse without abbreviations, whose errors are one line with a "did you mean" hint."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)
        self._argv: list[str] = []

    def parse_known_args(self, args=None, namespace=None):
        self._argv = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(args, namespace)

    def _command_parser(self) -> argparse.ArgumentParser:
        """The subcommand's parser named in the arguments being parsed, else this one."""
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                for token in self._argv:
                    if token in action.choices:
                        return action.choices[token]
        return self

    def _suggest(self, message: str) -> str:
        if message.startswith("unrecognized arguments:"):
            parsers = {self, self._command_parser()}
            options = [o for p in parsers for a in p._actions for o in a.option_strings]
            for token in message.split(":", 1)[1].split():
                if token.startswith("-"):
                    close = difflib.get_close_matches(token.split("=", 1)[0], options, n=1, cutoff=0.6)
                    if close:
                        return f" (did you mean {close[0]}?)"
        m = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if m:
            choices = re.findall(r"'([^']*)'", m.group(2)) or [c.strip() for c in m.group(2).split(",")]
            close = difflib.get_close_matches(m.group(1), choices, n=1, cutoff=0.6)
            if close:
                return f" (did you mean {close[0]}?)"
        return ""

    def error(self, message: str):
        """One line on stderr and exit 2 (argparse's own code for bad flags)."""
        message = " ".join(message.split())
        parser = self._command_parser()
        self.exit(
            EXIT_USER_ERROR, f"{parser.prog}: error: {message}{self._suggest(message)} (see {parser.prog} --help)\n"
        )
