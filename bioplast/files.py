"""Atomic file writes: a temporary file in the target directory, renamed on success."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from .errors import InputError


def _temporary_beside(path: Path) -> Path:
    """A new empty file in ``path``'s directory (created if needed); InputError if the
    place cannot be written."""
    if path.is_dir():
        raise InputError("is a directory; give a file name", file=str(path))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp",
                                                 dir=path.parent)
    except OSError as error:
        raise InputError(f"cannot write here ({error.strerror})", file=str(path)) from None
    os.close(descriptor)
    return Path(temporary)


def check_writable(path: str | os.PathLike) -> None:
    """Fail early (InputError) if a file cannot be written at ``path``; an existing file
    there is left alone."""
    _temporary_beside(Path(path)).unlink()


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike):
    """Yield a temporary path next to ``path``; on success it replaces ``path``.

    A crash or an exception leaves either the old file or none, never a partial one.
    """
    path = Path(path)
    temporary = _temporary_beside(path)
    try:
        yield temporary
        with open(temporary, "rb") as handle:
            os.fsync(handle.fileno())
        os.chmod(temporary, _mode_for(path))
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _mode_for(path: Path) -> int:
    """The existing file's permissions, or the usual ones for a new file (0666 & ~umask)
    rather than mkstemp's private 0600."""
    if path.exists():
        return path.stat().st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask
