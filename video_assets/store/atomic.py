"""Writes that a killed run can never leave half done: write a temporary file, then rename.

The temporary file sits beside the target under a hidden, shortened name (a 255-byte file name must
still have room for the temporary one) and gets the mode a plain `open()` would give, respecting the
umask, instead of mkstemp's 0600.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# Bytes of the target's name kept in the temporary name: enough to recognise it, short enough to fit.
_NAME_BYTES = 80


def _temporary(target: Path, suffix: str) -> tuple[int, str]:
    """A hidden temporary file beside `target`, with the mode a new file gets under the umask."""
    stem = target.name.encode("utf-8")[:_NAME_BYTES].decode("utf-8", "ignore")
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{stem}.", suffix=suffix)
    os.fchmod(fd, 0o666 & ~_umask())
    return fd, tmp


def _umask() -> int:
    try:  # Linux reports it without changing it; os.umask can only read it by setting it
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _temporary(path, ".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, payload: Any) -> None:
    atomic_write_bytes(path, json.dumps(payload, indent=2, ensure_ascii=False).encode("utf-8"))


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def atomic_copy(source: Path, target: Path) -> None:
    """Copy under a hidden temporary name, so a watcher never sees a partly copied file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _temporary(target, ".part")
    os.close(fd)
    try:
        shutil.copyfile(source, tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def replace_directory(staging: Path, final: Path) -> None:
    """Swap a finished staging directory into place: readers see the old one or the new one, never half."""
    final.parent.mkdir(parents=True, exist_ok=True)
    retired = final.with_name(final.name + ".retired")
    if retired.exists():
        shutil.rmtree(retired)
    if final.exists():
        final.replace(retired)
    staging.replace(final)
    shutil.rmtree(retired, ignore_errors=True)


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive flock on `path` (created if missing), between processes and threads alike.

    The kernel drops it when the holder dies, so a killed run never leaves a lock behind.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
