"""User-facing errors.

Anything a user can cause (a bad file, a bad flag, a missing model) raises
:class:`BabelirError` with a one-line message naming the file, line or field. The CLI
prints that line and exits non-zero instead of showing a traceback.
"""


class BabelirError(Exception):
    """An error caused by input, configuration or environment, explained in one line."""


class DataError(BabelirError):
    """A dataset file is missing, malformed or inconsistent."""


class ConfigError(BabelirError):
    """A configuration value or command-line option is invalid."""


class ModelError(BabelirError):
    """A model cannot be found, built or loaded."""


class NetworkError(BabelirError):
    """A download failed (closed network, HTTP error, checksum mismatch)."""
