"""The installed package's version, without importing the package's modules."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("logreg-mnist")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"
