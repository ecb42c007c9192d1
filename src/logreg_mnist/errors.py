"""The errors a user can cause and fix.

Every class here derives from :class:`LogregMnistError`. The command line prints
such an error as one message, without a traceback, and exits with
:data:`EXIT_USER_ERROR` (or the code the class names). Anything else that escapes
is a bug and keeps its traceback.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1  # the run itself failed (diverged), not the user's input
EXIT_USER_ERROR = 2  # bad input: the same code argparse uses for bad flags
EXIT_INTERRUPTED = 130  # Ctrl-C, as a shell reports SIGINT


class LogregMnistError(Exception):
    """Base class of the errors caused by input, files or the environment."""

    exit_code = EXIT_USER_ERROR


class DataError(LogregMnistError):
    """A data file or directory is missing, malformed or fails verification."""


class IDXFormatError(DataError):
    """A file is not the IDX file it was expected to be."""


class UnsafePickleError(DataError):
    """A pickle asked for something outside the allowlist; nothing in it ran."""


class DownloadError(DataError):
    """Every source failed to deliver a verified file."""


class ModelFileError(LogregMnistError):
    """A model file is missing, malformed, or holds arrays of the wrong kind."""


class ConfigError(LogregMnistError, ValueError):
    """A configuration value is out of its range."""


class TrainingDivergedError(LogregMnistError):
    """The loss or the parameters became non-finite during training."""

    exit_code = EXIT_FAILURE


class ClusterError(LogregMnistError):
    """A Dask scheduler cannot be reached, or the cluster cannot run the work."""
