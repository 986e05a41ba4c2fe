"""Atomic file output: every file csgaussian writes appears whole or not at all.

A file is written to a temporary ``.NAME.PID.RANDOM.tmp`` beside it, then renamed over it. A
writer killed before the rename leaves its temporary file; the next write of the same name
removes the ones whose writer process is gone.
"""

from __future__ import annotations

import errno
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

TEMP_SUFFIX = ".tmp"


def _read_umask() -> int:
    """The process umask, read once at import: from ``/proc`` where it shows, else by setting
    and restoring it (before any thread of ours runs)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o22)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_read_umask()
"""The mode ``open()`` would give a new file (``mkstemp`` makes 0600); the umask is never
changed after import, since a threaded caller (the viewer) may be creating files meanwhile."""


def atomic_write(path: str | os.PathLike[str], write: Callable[[BinaryIO], object]) -> None:
    """Call ``write(file)`` on a temporary file beside ``path``, fsync it, rename it over ``path``.

    Readers never see a partial file, and a failure (or interruption) leaves no temporary file.
    Raises OSError naming ``path`` (not the temporary file) when it cannot be written, e.g. when
    it is a folder.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_dir():
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR))
        _remove_stale_temps(path)
        fd, tmp = tempfile.mkstemp(
            prefix=f".{path.name}.{os.getpid()}.", suffix=TEMP_SUFFIX, dir=path.parent
        )
    except OSError as err:
        raise _naming(path, err) from None
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
            os.fchmod(handle.fileno(), FILE_MODE)
        os.replace(tmp, path)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        raise _naming(path, err) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _naming(path: Path, err: OSError) -> OSError:
    """``err`` as one line naming ``path`` (not the temporary file), its errno kept."""
    named = OSError(f"cannot write {path} ({err.strerror or err})")
    named.errno = err.errno
    return named


def _remove_stale_temps(path: Path) -> None:
    """Remove ``.NAME.PID.*.tmp`` files beside ``path`` whose writer process no longer runs."""
    pattern = re.compile(rf"\.{re.escape(path.name)}\.(\d+)\.[^.]+{re.escape(TEMP_SUFFIX)}")
    try:
        names = [entry.name for entry in os.scandir(path.parent)]
    except OSError:
        return
    for name in names:
        match = pattern.fullmatch(name)
        if match and not _alive(int(match.group(1))):
            (path.parent / name).unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs (this one counts: another of its threads may be writing)."""
    try:
        os.kill(pid, 0)  # signal 0: only checks that the process exists
    except ProcessLookupError:
        return pid == os.getpid()
    except (PermissionError, OverflowError):
        pass  # another user's process, or no such pid: leave its file alone
    return True


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    atomic_write(path, lambda handle: handle.write(data))
