"""Writes that a killed run can never leave half done: write a temporary file, then rename."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
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
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
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
