"""Files that bioplast writes: atomically (a temporary file in the target directory,
renamed on success), never over one of the command's inputs, and without leaving the
temporaries of killed writers behind.

A temporary is named ``.NAME.HOST-PID.RANDOM.tmp``: a later write of ``NAME`` (or
`remove_stale_temporaries` on its directory) deletes the temporaries whose writer, a
process on this host, no longer runs.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import tempfile
from pathlib import Path
from typing import Iterable, Mapping

from .errors import InputError

TEMPORARY_SUFFIX = ".tmp"


def _host() -> str:
    return socket.gethostname().replace(".", "_").replace("-", "_") or "host"


def _writer_is_gone(temporary: Path) -> bool:
    """Whether ``temporary`` (``.NAME.HOST-PID.RANDOM.tmp``) was left by a process of this
    host that no longer runs. Temporaries of other hosts and of unknown form are kept."""
    stem = temporary.name[:-len(TEMPORARY_SUFFIX)]
    writer = stem.rsplit(".", 2)
    if len(writer) != 3:
        return False
    host, _, pid = writer[1].rpartition("-")
    if host != _host() or not (pid.isascii() and pid.isdigit()):
        return False
    if int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError, OSError):
        return False
    return False


def remove_stale_temporaries(directory: Path, name: str = "*") -> list[Path]:
    """Delete the temporaries of writers of ``name`` (any file by default) in ``directory``
    that are no longer running; returns what was deleted."""
    removed = []
    try:
        candidates = list(Path(directory).glob(f".{name}.*{TEMPORARY_SUFFIX}"))
    except OSError:
        return removed
    for temporary in candidates:
        if _writer_is_gone(temporary):
            try:
                temporary.unlink()
                removed.append(temporary)
            except OSError:
                pass
    return removed


def check_path(text: str, what: str) -> None:
    """InputError naming ``what`` (a flag or argument) if ``text`` cannot be a path here:
    empty, a NUL byte, a name longer than the file system allows."""
    if not text:
        raise InputError("an empty path", key=what)
    if "\0" in text:
        raise InputError("a path with a NUL byte", file=text.replace("\0", "\\0"), key=what)
    encoded = os.fsencode(text)
    limit = _path_limits()
    if len(encoded) > limit[1]:
        raise InputError(f"a path longer than {limit[1]} bytes", file=text[:60] + "...",
                         key=what)
    for part in encoded.split(b"/"):
        if len(part) > limit[0]:
            raise InputError(f"a file name longer than {limit[0]} bytes",
                             file=text[:60] + "...", key=what)


def _path_limits() -> tuple[int, int]:
    """(longest file name, longest path) in bytes."""
    try:
        return os.pathconf("/", "PC_NAME_MAX"), os.pathconf("/", "PC_PATH_MAX")
    except (OSError, ValueError, AttributeError):
        return 255, 4096


def check_regular_file(path: str | os.PathLike, what: str = "file") -> Path:
    """``path`` if it names a regular file; else InputError (missing, a directory, or a
    pipe, socket or device, which could block a read forever or never end)."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise InputError(f"{what} not found", file=str(path)) from None
    except OSError as error:
        raise InputError(f"cannot read the {what} ({error.strerror})", file=str(path)) \
            from None
    if stat.S_ISDIR(mode):
        raise InputError(f"is a directory, not a {what}", file=str(path))
    if not stat.S_ISREG(mode):
        raise InputError(f"not a regular file (a pipe, socket or device): not read as a "
                         f"{what}", file=str(path))
    return path


def same_file(a: Path, b: Path) -> bool:
    """Whether two paths name the same file (other spellings, symlinks, hard links)."""
    try:
        if Path(a).resolve() == Path(b).resolve():
            return True
        return Path(a).exists() and Path(b).exists() and os.path.samefile(a, b)
    except (OSError, RuntimeError):
        return False


def refuse_overwrite(outputs: Mapping[str, str | os.PathLike],
                     inputs: Iterable[str | os.PathLike | None], *,
                     directories: Mapping[str, str | os.PathLike] | None = None) -> None:
    """InputError (before any work) if an output would replace one of the ``inputs``.

    ``outputs`` maps what each output is (``"-o"``, ``"the checkpoint"``) to its path;
    ``directories`` maps output directories (a sweep's shards) that must not hold an input.
    """
    inputs = [Path(p) for p in inputs if p is not None]
    for what, output in outputs.items():
        for source in inputs:
            if same_file(Path(output), source):
                detail = "" if what == "-o" else f" ({what} {output})"
                raise InputError(f"the output would overwrite the input {source}{detail}; "
                                 "choose another output", file=str(output), key="-o")
    for what, directory in (directories or {}).items():
        for source in inputs:
            try:
                inside = source.resolve().is_relative_to(Path(directory).resolve())
            except (OSError, RuntimeError):
                inside = False
            if inside:
                raise InputError(f"the input {source} lies in {what} {directory}, which the "
                                 "command writes; move it or choose another output",
                                 file=str(directory), key="-o")


def check_output_path(path: str | os.PathLike) -> Path:
    """``path`` if a file may be written there: nothing exists there yet, or a regular file
    (which the write replaces). InputError for a directory, a device, pipe or socket (which
    a rename would replace: ``-o /dev/null`` must not destroy ``/dev/null``), or a symbolic
    link that does not resolve."""
    path = Path(path)
    if not os.path.lexists(path):
        return path
    try:
        mode = path.stat().st_mode
    except OSError:
        raise InputError("a symbolic link that does not resolve (a loop, or a missing "
                         "target): not written", file=str(path)) from None
    if stat.S_ISDIR(mode):
        raise InputError("is a directory; give a file name", file=str(path))
    if not stat.S_ISREG(mode):
        raise InputError("not a regular file (a device, pipe or socket): bioplast writes "
                         "only regular files", file=str(path))
    return path


def _temporary_beside(path: Path) -> Path:
    """A new empty file in ``path``'s directory (created if needed); InputError if the
    place cannot be written. Stale temporaries of ``path`` are removed first."""
    check_output_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(path.parent, glob_escape(path.name))
        descriptor, temporary = tempfile.mkstemp(
            prefix=f".{path.name}.{_host()}-{os.getpid()}.", suffix=TEMPORARY_SUFFIX,
            dir=path.parent)
    except OSError as error:
        raise InputError(f"cannot write here ({error.strerror})", file=str(path)) from None
    os.close(descriptor)
    return Path(temporary)


def glob_escape(name: str) -> str:
    """``name`` as a glob pattern that matches only itself."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


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
