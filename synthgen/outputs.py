"""Single output files (a PNG, an .npy) that are whole or absent, never half-written.

Stores have their own protocol (synthgen.data.writer); this is the same idea for one file:
write `.<name>.<random>.partial<suffix>` next to the target and rename it over the target only
once it is complete, so a full disk or a kill leaves the old file (or nothing), and an
existing file is never replaced without `overwrite`.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from synthgen.errors import InputError, SynthgenError


def check_output_file(path: Path, overwrite: bool, option: str = "--out") -> None:
    """Refuse an output before any work: an existing file (without overwrite), a missing directory."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{option} {path} is a directory; name a file")
    if path.exists() and not overwrite:
        raise InputError(f"{path} already exists; pass --overwrite to replace it")
    if not path.parent.is_dir():
        raise InputError(f"{option}: directory {path.parent} does not exist")
    if not os.access(path.parent, os.W_OK):
        raise InputError(f"{option}: directory {path.parent} is not writable")


@contextmanager
def atomic_output(path: Path, overwrite: bool = False, option: str = "--out") -> Iterator[Path]:
    """Yield a temporary path (same directory and suffix) to write; it becomes `path` on success."""
    path = Path(path)
    check_output_file(path, overwrite, option)
    temp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.partial{path.suffix}")
    try:
        yield temp
        os.replace(temp, path)
    except OSError as error:
        temp.unlink(missing_ok=True)
        raise SynthgenError(f"cannot write {path}: {error.strerror or error}") from None
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
