"""Files the pipeline writes: whole or not at all, with the mode the umask gives, under any legal name."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from video_assets.store.atomic import atomic_copy, atomic_write_json, read_json
from video_assets.store.uploads import LocalFolderBucket


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_written_files_respect_the_umask(tmp_path: Path) -> None:
    previous = os.umask(0o022)
    try:
        atomic_write_json(tmp_path / "doc.json", {"a": 1})
        atomic_copy(tmp_path / "doc.json", tmp_path / "copy.json")
        os.umask(0o077)
        atomic_write_json(tmp_path / "private.json", {"b": 2})
    finally:
        os.umask(previous)
    assert mode(tmp_path / "doc.json") == mode(tmp_path / "copy.json") == 0o644
    assert mode(tmp_path / "private.json") == 0o600
    assert read_json(tmp_path / "copy.json") == {"a": 1}


def test_a_255_byte_name_is_uploaded_and_written(tmp_path: Path) -> None:
    name = "é" * 120 + "x" * 11 + ".mp4"  # 255 bytes in UTF-8: the longest name a Linux folder takes
    assert len(name.encode()) == 255
    source = tmp_path / "source.mp4"
    source.write_bytes(b"\x00" * 1024)

    uploaded = LocalFolderBucket(tmp_path / "bucket").put(source, "team-a", name)
    document = tmp_path / "docs" / (name[:-5] + ".json")  # 255 bytes too
    atomic_write_json(document, {"name": name})

    assert Path(uploaded.uri).name == name and uploaded.size == 1024
    assert [p.name for p in (tmp_path / "bucket" / "team-a").iterdir()] == [name]  # no temporary left
    assert read_json(document) == {"name": name} and len(document.name.encode()) == 255
