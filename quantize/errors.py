"""One error type for every failure a user can fix, and the one place that formats it."""

from __future__ import annotations


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
