"""The upload sensor on a real folder with a real Dagster instance."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import dagster as dg

from video_assets.defs.partitions import videos_partitions
from video_assets.defs.resources import VideoStoreResource
from video_assets.defs.sensors import upload_sensor
from video_assets.store import layout
from video_assets.store.layout import DataLayout, content_hash, partition_key
from video_assets.store.registry import VideoRegistry


class Ticker:
    """Evaluates the sensor like the daemon does: cursor carried over, partition requests applied."""

    def __init__(self, instance: dg.DagsterInstance, home: Path):
        self.instance = instance
        self.store = VideoStoreResource(home=str(home))
        self.cursor: str | None = None

    def tick(self) -> dg.SensorResult:
        context = dg.build_sensor_context(instance=self.instance, cursor=self.cursor, resources={"store": self.store})
        result = upload_sensor(context)
        for request in result.dynamic_partitions_requests:
            self.instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
        self.cursor = result.cursor
        return result


def upload(source: Path, home: Path, name: str, *, workspace: str = "team-a", age: float = 3600.0) -> Path:
    target = home / "uploads" / workspace / name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return backdate(target, age)


def backdate(path: Path, age: float) -> Path:
    """Stands in for waiting: the file was last written `age` seconds ago."""
    stamp = time.time() - age
    os.utime(path, (stamp, stamp), follow_symlinks=False)
    return path


def test_new_settled_video_adds_partition_and_one_run(media, data_home: Path, instance: dg.DagsterInstance) -> None:
    video = media.talk(47.0)
    upload(video, data_home, "talks/monday.mp4")
    ticker = Ticker(instance, data_home)

    result = ticker.tick()
    key = partition_key("team-a", content_hash(video))
    assert [(r.partition_key, r.run_key) for r in result.run_requests] == [(key, key)]
    assert instance.get_dynamic_partitions(videos_partitions.name) == [key]
    assert VideoRegistry(DataLayout(data_home)).get(key).names == ["talks/monday.mp4"]

    assert ticker.tick().run_requests == []  # never the same file twice


def test_file_still_being_written_waits_until_it_stops_changing(media, data_home: Path, instance) -> None:
    data = media.talk(47.0).read_bytes()
    target = data_home / "uploads" / "team-a" / "growing.mp4"
    target.parent.mkdir(parents=True)
    ticker = Ticker(instance, data_home)

    target.write_bytes(data[: len(data) // 3])
    assert ticker.tick().run_requests == []  # first sighting, fresh mtime
    with target.open("ab") as handle:
        handle.write(data[len(data) // 3 :])
    assert ticker.tick().run_requests == []  # it grew since the last tick
    result = ticker.tick()  # unchanged across two ticks: complete
    assert len(result.run_requests) == 1
    assert result.run_requests[0].partition_key == partition_key("team-a", content_hash(target))


def test_same_bytes_under_a_new_name_is_one_video_with_both_names(media, data_home: Path, instance) -> None:
    video = media.talk(47.0)
    ticker = Ticker(instance, data_home)
    upload(video, data_home, "first.mp4")
    assert len(ticker.tick().run_requests) == 1
    upload(video, data_home, "copy of first.mp4")
    assert ticker.tick().run_requests == []

    key = partition_key("team-a", content_hash(video))
    assert sorted(VideoRegistry(DataLayout(data_home)).get(key).names) == ["copy of first.mp4", "first.mp4"]
    assert instance.get_dynamic_partitions(videos_partitions.name) == [key]

    upload(video, data_home, "first.mp4", workspace="team-b")  # another workspace is another video
    result = ticker.tick()
    assert [r.partition_key for r in result.run_requests] == [partition_key("team-b", content_hash(video))]


def test_non_video_is_skipped_with_a_reason_and_never_crashes(media, data_home: Path, instance, caplog) -> None:
    upload(media.write("notes.mov", b"not a movie at all\n" * 100), data_home, "notes.mov")
    upload(media.write("empty.mp4", b""), data_home, "empty.mp4")
    upload(media.talk(47.0), data_home, "real.mp4")
    ticker = Ticker(instance, data_home)

    result = ticker.tick()
    assert len(result.run_requests) == 1 and result.run_requests[0].tags["video_assets/source"] == "real.mp4"
    assert "notes.mov" in caplog.text and "not a readable media file" in caplog.text
    assert "empty.mp4" in caplog.text and "empty file" in caplog.text
    caplog.clear()
    assert ticker.tick().run_requests == [] and "notes.mov" not in caplog.text  # not probed again


def test_an_unexpected_error_on_one_file_skips_it_and_the_tick_goes_on(
    media, data_home: Path, instance, caplog, monkeypatch
) -> None:
    broken = upload(media.talk(47.0), data_home, "broken.mp4", workspace="team-b")
    upload(media.portrait(), data_home, "fine.mp4")
    real_hash = layout.content_hash

    def failing_hash(path: Path, *args: object) -> str:
        if path == broken:
            raise PermissionError(13, "Permission denied", str(path))
        return real_hash(path, *args)

    monkeypatch.setattr(layout, "content_hash", failing_hash)
    ticker = Ticker(instance, data_home)
    result = ticker.tick()

    assert [r.tags["video_assets/source"] for r in result.run_requests] == ["fine.mp4"]
    assert "broken.mp4" in caplog.text and "unexpected PermissionError" in caplog.text
    caplog.clear()
    assert ticker.tick().run_requests == [] and "broken.mp4" not in caplog.text  # not retried every tick
    monkeypatch.setattr(layout, "content_hash", real_hash)
    backdate(broken, 1800.0)  # changed: looked at again
    assert [r.tags["video_assets/source"] for r in ticker.tick().run_requests] == ["broken.mp4"]


def test_hidden_partial_copies_are_ignored(media, data_home: Path, instance) -> None:
    upload(media.talk(47.0), data_home, ".upload.mp4.part")
    assert Ticker(instance, data_home).tick().run_requests == []


def test_links_out_of_the_bucket_are_never_followed(media, data_home: Path, instance, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    (outside / "deep").mkdir(parents=True)
    shutil.copyfile(media.talk(47.0), outside / "deep" / "private.mp4")
    settled = time.time() - 3600.0  # long settled: only the link rule can keep it out
    os.utime(outside / "deep" / "private.mp4", (settled, settled))
    kept = upload(media.portrait(), data_home, "kept.mp4")
    workspace = data_home / "uploads" / "team-a"
    (data_home / "uploads" / "docs").symlink_to(outside)  # a whole "workspace" elsewhere
    (workspace / "linked_folder").symlink_to(outside)
    (workspace / "linked_file.mp4").symlink_to(outside / "deep" / "private.mp4")
    (workspace / "alias.mp4").symlink_to(kept)  # a link inside the bucket is an ordinary upload

    result = Ticker(instance, data_home).tick()

    key = partition_key("team-a", content_hash(kept))
    assert [r.partition_key for r in result.run_requests] == [key]
    assert VideoRegistry(DataLayout(data_home)).get(key).names == ["alias.mp4", "kept.mp4"]
