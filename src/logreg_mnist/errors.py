"""The errors a user can cause and fix.

Every class here derives from :class:`LogregMnistError`. The command line prints
such an error as one message, without a traceback, and exits with
:data:`EXIT_USER_ERROR` (or the code the class names). Anything else that escapes
is a bug and keeps its traceback.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1  # the run failed (diverged) or its environment did (disk full), not the user's input
EXIT_USER_ERROR = 2  # bad input: the same code argparse uses for bad flags
EXIT_INTERRUPTED = 130  # Ctrl-C, as a shell reports SIGINT

TEXT_LIMIT = 200  # characters of untrusted text (a name read from a file, a server's words) in a message
MESSAGE_LIMIT = 8000  # characters of a whole message; enough for every source's reason when all fail


def safe_text(value: object, limit: int = TEXT_LIMIT) -> str:
    """Untrusted text made safe to put in a message: quoted, escaped, cut short.

    Text read from a file, a directory or a server is shown as a Python literal
    (``repr``), so a terminal escape code or a newline in it appears as ``\\x1b`` or
    ``\\n`` instead of acting on the terminal, and it is cut to ``limit`` characters
    (bytes), with the full length said.

    Example:
        >>> safe_text("numpy" + "x" * 300, limit=8)
        "'numpyxxx'... (305 characters)"
    """
    if not isinstance(value, (str, bytes)):
        value = str(value)
    if len(value) > limit:
        unit = "characters" if isinstance(value, str) else "bytes"
        return f"{value[:limit]!r}... ({len(value):,} {unit})"
    return repr(value)


def show_path(path: object, limit: int = TEXT_LIMIT) -> str:
    """A path for a message: as it is when short and printable, else :func:`safe_text` of it."""
    text = str(path)
    return text if len(text) <= limit and text.isprintable() else safe_text(text, limit)


def _clean_message(text: str) -> str:
    """Escape control characters (newlines excepted) and cap the length of a whole message."""
    full = len(text)
    text = text[:MESSAGE_LIMIT]  # bounds the work below
    if not text.replace("\n", "").isprintable():
        text = "".join(c if c.isprintable() or c == "\n" else repr(c)[1:-1] for c in text)
    if full > MESSAGE_LIMIT or len(text) > MESSAGE_LIMIT:
        text = text[: MESSAGE_LIMIT - 50] + f"... (message cut, {full:,} characters)"
    return text


class LogregMnistError(Exception):
    """Base class of the errors caused by input, files or the environment.

    Every message passes through :func:`_clean_message`: whatever a message quotes
    (a path, a name read from a file), it reaches a terminal without control codes and
    at most :data:`MESSAGE_LIMIT` characters long.
    """

    exit_code = EXIT_USER_ERROR

    def __init__(self, *args: object):
        if args and isinstance(args[0], str):
            args = (_clean_message(args[0]), *args[1:])
        super().__init__(*args)


class DataError(LogregMnistError):
    """A data file or directory is missing, malformed or fails verification."""


class NotAnImageError(DataError):
    """A file handed in as an image is not in any image format that is read."""


class IDXFormatError(DataError):
    """A file is not the IDX file it was expected to be."""


class UnsafePickleError(DataError):
    """A pickle asked for something outside the allowlist; nothing in it ran."""


class DownloadError(DataError):
    """Every source failed to deliver a verified file."""


class ModelFileError(LogregMnistError):
    """A model file is missing, malformed, or holds arrays of the wrong kind."""


class ConfigError(LogregMnistError, ValueError):
    """A configuration value is out of its range.

    ``field`` names the configuration field at fault (``"learning_rate"``), if one
    is, so that the command line can name its flag (``--learning-rate``) instead.
    """

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.field = field


class RunBusyError(LogregMnistError):
    """Another process holds the run directory's lock (a run or a resume is under way there)."""


class StorageError(LogregMnistError):
    """A file could not be written (disk full, quota, read-only); what was written before is intact."""

    exit_code = EXIT_FAILURE


class ServerError(LogregMnistError):
    """A server process of ``serve --workers`` stopped on its own (the others are then stopped)."""

    exit_code = EXIT_FAILURE


class TrainingDivergedError(LogregMnistError):
    """The loss or the parameters became non-finite during training."""

    exit_code = EXIT_FAILURE


class ClusterError(LogregMnistError):
    """A Dask scheduler cannot be reached, or the cluster cannot run the work."""
