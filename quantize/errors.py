"""One error type for every failure a user can fix, and the one place that formats it (and warnings).

Progress and warnings go through `logging` (to stderr, set up by the CLI); stdout carries a command's result only.
"""

from __future__ import annotations

import errno
import logging
import os


class QuantizeError(Exception):
    """A failure with a one-line message and a hint that names the fix.

    The CLI prints it as one line, ``error: <message> (fix: <hint>)``, and exits with ``exit_code``;
    no traceback unless ``--debug`` is given. Tests assert these strings, so keep them stable.
    """

    def __init__(self, message: str, hint: str = "", exit_code: int = 2) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.exit_code = exit_code

    def format(self) -> str:
        return f"error: {self.message} (fix: {self.hint})" if self.hint else f"error: {self.message}"


class SourceError(QuantizeError):
    """The source model's data is bad (a NaN in a weight): nothing written from it is worth keeping, so even a
    resumable run's partial directory is removed."""


def warn(message: str, hint: str) -> None:
    """A problem that does not stop the run, as one line on stderr: ``warning: <message> (fix: <hint>)``."""
    logging.getLogger(__name__).warning("warning: %s (fix: %s)", message, hint)


_FULL = (errno.ENOSPC, errno.EDQUOT)


def disk_full(exc: BaseException | None) -> bool:
    """Whether `exc`, or an exception it was raised from, is a full disk (or quota). safetensors raises its own
    SafetensorError, not an OSError, so the operating system's text for the errno is matched too."""
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno in _FULL:
            return True
        if any(os.strerror(code) in str(exc) for code in _FULL):
            return True
        exc = exc.__cause__ or exc.__context__
    return False
