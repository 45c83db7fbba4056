"""Files written all-or-nothing, and the errors a user can act on when the disk says no."""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

_UMASK = os.umask(0)
os.umask(_UMASK)


class StorageError(RuntimeError):
    """Writing or reading the pipeline's storage failed for a reason outside the data (a full
    disk, a permission, a tampered file): the message names the path and the reason."""


def explain(err: OSError, action: str, path: Path | str) -> StorageError:
    """``err`` as a message a user can act on: what was being done, where, and why it failed."""
    reason = {
        errno.ENOSPC: "no space left on the device",
        errno.EDQUOT: "the disk quota is exceeded",
        errno.EACCES: "permission denied",
        errno.EPERM: "operation not permitted",
        errno.EROFS: "the file system is read-only",
    }.get(err.errno, err.strerror or str(err))
    return StorageError(f"could not {action} {path}: {reason} ({type(err).__name__} {err.errno})")


def atomic_write(path: Path, write: Callable) -> Path:
    """``write(file)`` into a temporary file beside ``path``, then rename it over ``path``: a
    reader sees the old file or the whole new one. Streams: nothing is held in memory."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a killed write
            stale.unlink(missing_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise explain(err, "create", path.parent) from err
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        raise explain(err, "write", path) from err
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temporary file in the same folder and an atomic rename."""
    return atomic_write(path, lambda fh: fh.write(data))


def atomic_folder(path: Path, fill: Callable[[Path], object]) -> object:
    """``fill(folder)`` into a temporary folder beside ``path``, then rename it to ``path``
    (replacing what was there): a reader sees no folder or the whole one."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    except OSError as err:
        raise explain(err, "create", path.parent) from err
    try:
        result = fill(tmp)
        os.chmod(tmp, 0o777 & ~_UMASK)
        if path.exists():  # a step retried within its run: the run's folder is not published yet
            shutil.rmtree(path)
        os.replace(tmp, path)
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise explain(err, "write", path) from err
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return result


def link_or_copy(source: Path, target: Path) -> None:
    """``target`` as a hard link of ``source`` (a file or a folder of files): no bytes copied
    on one file system; copied where links are not possible."""
    try:
        if source.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            for child in source.iterdir():
                link_or_copy(child, target / child.name)
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        target.unlink(missing_ok=True)
        try:
            os.link(source, target)
        except OSError as err:
            if err.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
                raise
            shutil.copy2(source, target)
    except OSError as err:
        raise explain(err, "link", target) from err
