"""The registry in one SQLite database: names moving between videos, rejections, the old JSON files,
several processes at once, a data root that moves."""

from __future__ import annotations

import json
import multiprocessing
import multiprocessing.synchronize
import shutil
from pathlib import Path

from video_assets.store.layout import DataLayout, partition_key
from video_assets.store.registry import SourceFile, VideoRegistry, register_upload
from video_assets.store.uploads import LocalFolderBucket

SHA_A, SHA_B = "a" * 64, "b" * 64
KEY_A, KEY_B = partition_key("team-a", SHA_A), partition_key("team-a", SHA_B)


def source(name: str, size: int = 10, mtime: float = 1000.0) -> SourceFile:
    return SourceFile(f"/bucket/team-a/{name}", name, size, mtime)


def test_a_name_holds_one_video_and_moves_when_its_bytes_change(tmp_path: Path) -> None:
    registry = VideoRegistry(DataLayout(tmp_path))
    registry.record(KEY_A, SHA_A, source("talk.mp4"))
    registry.record(KEY_A, SHA_A, source("copy.mp4"))
    assert registry.get(KEY_A).names == ["talk.mp4", "copy.mp4"]
    assert registry.get(KEY_A).sources[0] == source("talk.mp4")  # no bucket: the URI as recorded

    record = registry.record(KEY_B, SHA_B, source("talk.mp4", size=20, mtime=2000.0))  # overwritten

    assert record.names == ["talk.mp4"] and registry.owner("team-a", "talk.mp4") == KEY_B
    assert registry.get(KEY_A).names == ["copy.mp4"] and registry.orphaned_partitions() == []
    assert registry.record_rejected("team-a", "copy.mp4", 5, 3000.0, "not a video") == KEY_A
    assert registry.get(KEY_A).names == [] and registry.orphaned_partitions() == [KEY_A]
    assert registry.partition_keys() == [KEY_A, KEY_B]  # an orphaned video is still a partition
    assert registry.known_signatures() == {("team-a", "talk.mp4"): (20, 2000.0), ("team-a", "copy.mp4"): (5, 3000.0)}
    assert registry.rejection("team-a", "copy.mp4") == "not a video"

    registry.record(KEY_A, SHA_A, source("copy.mp4", mtime=4000.0))  # a video again: no longer rejected
    assert registry.rejection("team-a", "copy.mp4") is None and registry.orphaned_partitions() == []
    assert registry.known_signatures("team-b") == {}


def test_uris_follow_the_bucket_so_the_data_root_can_move(media, tmp_path: Path) -> None:
    home = tmp_path / "old"
    bucket = LocalFolderBucket(home / "uploads")
    key = register_upload(
        VideoRegistry(DataLayout(home), bucket), bucket, bucket.put(media.portrait(), "team-a", "x.mp4")
    )
    moved = tmp_path / "new"
    shutil.move(home, moved)

    new_bucket = LocalFolderBucket(moved / "uploads")
    record = VideoRegistry(DataLayout(moved), new_bucket).get(key.partition_key)
    assert record.sources[0].uri == str(moved / "uploads" / "team-a" / "x.mp4")
    assert new_bucket.local_path(record.sources[0].uri).is_file()


def _write_legacy(home: Path, key: str, sha: str, sources: list[SourceFile], updated: float) -> Path:
    """A registry file exactly as the JSON registry wrote it."""
    workspace, video_id = key.rsplit("--", 1)
    path = home / "registry" / workspace / f"{video_id}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"partition_key": key, "sha256": sha, "sources": [vars(s) for s in sources], "updated": updated}
    path.write_text(json.dumps(payload, indent=2))
    (path.with_suffix(".lock")).touch()
    return path


def test_an_old_json_registry_is_imported_once(tmp_path: Path) -> None:
    # talk.mp4 was overwritten: the old files list it under both videos, the newer bytes win.
    _write_legacy(tmp_path, KEY_A, SHA_A, [source("talk.mp4", mtime=100.0), source("a copy.mp4")], 150.0)
    _write_legacy(tmp_path, KEY_B, SHA_B, [source("talk.mp4", size=20, mtime=200.0)], 250.0)
    (tmp_path / "registry" / "team-a" / "broken.json").write_text("{not json")

    registry = VideoRegistry(DataLayout(tmp_path))

    assert registry.partition_keys() == [KEY_A, KEY_B]
    assert registry.get(KEY_A).names == ["a copy.mp4"] and registry.get(KEY_A).sha256 == SHA_A
    assert registry.get(KEY_B).sources == [source("talk.mp4", size=20, mtime=200.0)]
    assert registry.unpartitioned(registered_before=1e12) == []  # the old version added their partitions
    assert (tmp_path / "registry.sqlite").is_file() and (tmp_path / "registry" / "team-a").is_dir()  # kept

    # Once: a file appearing later, or a name moved since, is not imported again.
    registry.record_rejected("team-a", "a copy.mp4", 1, 1.0, "not a video")
    _write_legacy(tmp_path, partition_key("team-a", "c" * 64), "c" * 64, [source("late.mp4")], 300.0)
    reopened = VideoRegistry(DataLayout(tmp_path))
    assert reopened.partition_keys() == [KEY_A, KEY_B] and reopened.get(KEY_A).names == []


def _record_many(home: str, worker: int, count: int, start: multiprocessing.synchronize.Barrier) -> None:
    registry = VideoRegistry(DataLayout(Path(home)))
    start.wait(60)  # both set up the database and write at the same moment
    for i in range(count):
        sha = f"{i % 5:x}" * 64  # five videos, each named by both workers
        registry.record(partition_key("team-a", sha), sha, source(f"w{worker}-{i}.mp4"))


def test_two_processes_recording_at_once_lose_nothing(tmp_path: Path) -> None:
    spawn = multiprocessing.get_context("spawn")  # fresh interpreters, as two CLI processes would be
    start = spawn.Barrier(2)
    workers = [spawn.Process(target=_record_many, args=(str(tmp_path), w, 400, start)) for w in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    assert [w.exitcode for w in workers] == [0, 0]

    registry = VideoRegistry(DataLayout(tmp_path))
    names = [name for key in registry.partition_keys() for name in registry.get(key).names]
    assert len(registry.partition_keys()) == 5
    assert sorted(names) == sorted(f"w{w}-{i}.mp4" for w in range(2) for i in range(400))
