"""Files that are whole or absent, never half-written.

Every file synthgen writes (a CLI output, a store's shard or chunk marker, a checkpoint) is
written as `.<name>.<random>.partial<suffix>` next to the target and renamed over it only once
complete (`replacing`), so a full disk or a kill leaves the old file (or nothing) and at worst a
stray `*.partial`. CLI outputs (`atomic_output`) are also never replaced without `overwrite`.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from synthgen.errors import InputError, OutputExistsError, SynthgenError


def check_output_file(path: Path, overwrite: bool, option: str = "--out") -> None:
    """Refuse an output before any work: an existing file (without overwrite), a missing directory."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{option} {path} is a directory; name a file")
    if path.exists() and not overwrite:
        raise OutputExistsError(path)
    if not path.parent.is_dir():
        raise InputError(f"{option}: directory {path.parent} does not exist")
    if not os.access(path.parent, os.W_OK):
        raise InputError(f"{option}: directory {path.parent} is not writable")


@contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """Yield a temporary path (same directory and suffix) to write; it replaces `path` when the
    block completes and is removed when it raises."""
    path = Path(path)
    temp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.partial{path.suffix}")
    try:
        yield temp
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


_SYNC_DATA = getattr(os, "fdatasync", os.fsync)  # fdatasync: Linux; macOS has only fsync


def write_bytes_atomically(path: Path, data: bytes, *, sync: bool = False, drop_from_cache: bool = False) -> None:
    """Write `data` as the file `path`, whole or not at all (`replacing`).

    sync: on disk before it gets its name, so that what is written after it (a store's chunk
    marker) also means it survives a power loss. drop_from_cache: out of the page cache once
    clean (POSIX_FADV_DONTNEED), for files nobody reads back soon: the next write reuses the
    freed pages, far cheaper than fresh ones on a VM (docs/performance.md, "Page cache", has the
    measurements).
    """
    with replacing(path) as temp, temp.open("wb") as file:
        file.write(data)
        if sync or drop_from_cache:
            file.flush()
        if sync:
            _SYNC_DATA(file.fileno())
        if drop_from_cache and hasattr(os, "posix_fadvise"):
            os.posix_fadvise(file.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


@contextmanager
def atomic_output(path: Path, overwrite: bool = False, option: str = "--out") -> Iterator[Path]:
    """Yield a temporary path (same directory and suffix) to write; it becomes `path` on success."""
    path = Path(path)
    check_output_file(path, overwrite, option)
    try:
        with replacing(path) as temp:
            yield temp
    except OSError as error:
        raise SynthgenError(f"cannot write {path}: {error.strerror or error}") from None
