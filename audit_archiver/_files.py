"""Durable whole-file writes: a file is either absent, the old version or the new one.

Every file this package writes for later (spool segments, head and state
files, a local copy's objects) goes through :func:`write_atomically`:

1. a temporary file is created next to the target (same directory, so the
   final step is a rename or link within one file system), exclusively and
   without following links, with exactly ``mode`` (the umask does not apply);
2. the bytes are written and fsync'd;
3. the temporary file is moved over the target (``os.replace``) or, with
   ``replace=False``, hard-linked to it, which fails if the target exists;
4. the directory is fsync'd, so the new name survives a crash.

On any failure the temporary file is removed; the target is untouched.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

__all__ = ["fsync_directory", "write_atomically", "write_new"]


def write_atomically(path: Path, data: bytes, *, mode: int = 0o644, replace: bool = True) -> None:
    """Write ``data`` to ``path`` atomically and durably.

    Args:
        path: the target file; its directory must exist.
        data: the complete new contents.
        mode: permission bits of the new file, exactly (not reduced by the umask).
        replace: True replaces an existing file; False refuses to (the file is
            linked into place, so two writers cannot both succeed).

    Raises:
        FileExistsError: ``replace`` is False and ``path`` exists.
        OSError: the write, fsync, rename or link failed.
    """
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    descriptor = os.open(temporary, flags, mode)
    try:
        try:
            os.fchmod(descriptor, mode)
            view = memoryview(data)
            while view:
                written = os.write(descriptor, view)
                view = view[written:]
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        if replace:
            os.replace(temporary, path)
        else:
            os.link(temporary, path, follow_symlinks=False)
    finally:
        # After os.replace the temporary name is gone; after os.link (or a
        # failure) it is still there and must not be left behind.
        temporary.unlink(missing_ok=True)
    fsync_directory(path.parent)


def write_new(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` atomically and durably unless ``path`` exists.

    The same as ``write_atomically(path, data, mode=mode, replace=False)``.

    Raises:
        FileExistsError: ``path`` exists (it is left as it was).
        OSError: the write, fsync or link failed.
    """
    write_atomically(path, data, mode=mode, replace=False)


def fsync_directory(path: Path) -> None:
    """fsync a directory, so that names created or renamed in it are durable.

    Raises:
        OSError: the directory cannot be opened or synced.
    """
    descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
