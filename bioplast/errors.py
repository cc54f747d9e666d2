"""Errors that bioplast reports to users.

`InputError` is for bad input (a model, protocol, inputs or result file, or a bad argument):
the CLI prints it as one line and exits with code 2. Its message names the file and, where
known, the line and the key path, in the form ``FILE:LINE: KEY: message``.
"""

from __future__ import annotations


#: the longest message an InputError shows (what it quotes is cut, not the line flooded)
MAX_MESSAGE = 400


class BioplastError(Exception):
    """Base class of every error bioplast raises on purpose."""


class InputError(BioplastError, ValueError):
    """Bad input, located by file, line (1-based) and key path where known.

    Parameters
    ----------
    message : str
        What is wrong, in one sentence.
    file : str, optional
        The file (or a name for the source, such as ``<string>``) the input came from.
    line : int, optional
        1-based line number in ``file``.
    key : str, optional
        Dotted key path inside the file, e.g. ``couplings.W_rec.source``.
    """

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 key: str | None = None):
        self.message = _printable(" ".join(str(message).split()))  # one line, always
        if len(self.message) > MAX_MESSAGE:
            self.message = self.message[:MAX_MESSAGE - 3] + "..."
        self.file = file
        self.line = line
        self.key = key
        super().__init__(str(self))

    def __str__(self) -> str:
        location = ""
        if self.file is not None:
            location = _printable(self.file) + (f":{self.line}" if self.line is not None
                                                else "") + ": "
        elif self.line is not None:
            location = f"line {self.line}: "
        key = f"{_printable(self.key)}: " if self.key else ""
        return f"{location}{key}{self.message}"


def _printable(text) -> str:
    """``text`` with control characters (a newline in a file name) escaped, so that an
    error stays one line."""
    text = str(text)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class BackendError(BioplastError, RuntimeError):
    """A backend failed to run (e.g. Brian2 code failed to compile): exit code 1."""


class SweepError(BioplastError, RuntimeError):
    """A grid point of a sweep failed: exit code 1; the finished points' shards are kept."""


class CapabilityError(BioplastError, ValueError):
    """A backend asked to do what it cannot (e.g. gradients on Brian2)."""


class BioplastWarning(UserWarning):
    """A notice for the user from bioplast itself (e.g. samples dropped from an analysis):
    the CLI prints it as one line ``bioplast: warning: ...`` after the work."""
