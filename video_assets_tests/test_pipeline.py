"""`segments` and `transcripts` materialized for one partition through a real Dagster instance."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import dagster as dg
import pytest

from video_assets.definitions import defs
from video_assets.defs.partitions import videos_partitions
from video_assets.defs.run_health import PROCESS_TAG, this_process
from video_assets.store.layout import DataLayout
from video_assets.store.registry import VideoRegistry, register_upload
from video_assets.store.uploads import LocalFolderBucket
from video_assets_tests.speech import SPOKEN, keywords_heard, word_error_rate

ASSETS = {a.key.to_user_string(): a for a in defs.assets}
segments, transcripts = ASSETS["segments"], ASSETS["transcripts"]
RESOURCES = defs.resources


def add_upload(video: Path, home: Path, instance: dg.DagsterInstance, name: str = "talk.mp4") -> str:
    bucket = LocalFolderBucket(home / "uploads")
    obj = bucket.put(video, "team-a", name)
    key = register_upload(VideoRegistry(DataLayout(home)), bucket, obj).partition_key
    instance.add_dynamic_partitions(videos_partitions.name, [key])
    return key


def latest_metadata(instance: dg.DagsterInstance, asset: dg.AssetsDefinition) -> dict:
    event = instance.get_latest_materialization_event(asset.key)
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}


def test_materialize_segments_and_transcripts(media, data_home: Path, instance: dg.DagsterInstance) -> None:
    key = add_upload(media.talk(62.0), data_home, instance)
    result = dg.materialize([segments, transcripts], partition_key=key, instance=instance, resources=RESOURCES)
    assert result.success
    # A run launched by anyone but the CLI records its process itself, so a kill -9 of it is found.
    assert instance.get_run_by_id(result.run_id).tags[PROCESS_TAG] == this_process()

    layout = DataLayout(data_home)
    video_dir = layout.video_dir(key)
    document = json.loads((video_dir / "segments_metadata.json").read_text())
    assert document["processing_completed"] is True
    assert document["segment_count"] == 2 and document["total_duration"] == pytest.approx(62.0, abs=0.1)
    assert document["document_data"]["document_metadata"] == {
        "video_name": "talk.mp4",
        "file_size": media.talk(62.0).stat().st_size,
        "video_duration": document["total_duration"],
        "total_segments": 2,
    }
    first, second = document["segments_info"]["0"], document["segments_info"]["1"]
    assert (first["start_time"], first["end_time"], second["start_time"], second["end_time"]) == (0.0, 30.0, 30.0, 62.0)
    assert first["frame_times"] == [0.0, 6.0, 12.0, 18.0, 24.0]
    assert second["video_segment_path"] == layout.relative(video_dir / "segment_timestamp-1-30.00-62.00.mp4")
    stored = [p for s in (first, second) for p in s["frame_paths"] + [s["video_segment_path"]]]
    assert not any(Path(p).is_absolute() for p in stored) and all(layout.resolve(p).is_file() for p in stored)

    # The spoken words land in the segment where they were said. Synthetic speech is heard with a
    # margin that differs by CPU and model version: a word-error-rate bound and most keywords, never one word.
    assert word_error_rate(SPOKEN["volcano"], first["transcript"]) <= 0.35, first["transcript"]
    assert word_error_rate(SPOKEN["bicycle"], second["transcript"]) <= 0.35, second["transcript"]
    assert len(keywords_heard(first["transcript"], {"volcano", "erupted", "orange", "lava", "village"})) >= 3
    assert len(keywords_heard(second["transcript"], {"bicycle", "broken", "chain", "flat", "tire"})) >= 3
    assert not keywords_heard(second["transcript"], {"volcano", "lava", "village"})
    words = json.loads((video_dir / "transcripts.json").read_text())["segments"][1]["words"]
    assert all(30.0 <= (w["start"] + w["end"]) / 2 < 62.0 for w in words)

    meta = latest_metadata(instance, segments)
    assert meta["segment_count"] == 2 and meta["resolution"] == "320x240" and meta["cut_method"] == "stream-copy"
    assert meta["files"] == ["talk.mp4"] and meta["video_codec"] == "h264" and meta["audio_codec"] == "aac"
    meta = latest_metadata(instance, transcripts)
    assert meta["device"] == "cpu" and meta["word_count"] >= 15 and meta["language"] == "en"
    assert keywords_heard(meta["excerpt"], {"volcano", "lava", "village"})


def test_video_without_audio_gets_empty_transcripts_and_a_note(media, data_home: Path, instance) -> None:
    key = add_upload(media.no_audio(), data_home, instance, "quiet.mp4")
    assert dg.materialize([segments, transcripts], partition_key=key, instance=instance, resources=RESOURCES).success
    meta = latest_metadata(instance, transcripts)
    assert meta["word_count"] == 0 and "no audio" in meta["note"]


def test_failed_rerun_keeps_what_was_stored(media, data_home: Path, instance) -> None:
    key = add_upload(media.talk(47.0), data_home, instance)
    assert dg.materialize([segments], partition_key=key, instance=instance, resources=RESOURCES).success
    stored = DataLayout(data_home).segments_metadata(key)
    before = stored.read_bytes()

    shutil.rmtree(data_home / "uploads")  # the upload is gone: the rerun must fail, not wipe the segments
    result = dg.materialize([segments], partition_key=key, instance=instance, resources=RESOURCES, raise_on_error=False)
    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data.user_failure_data.description
    assert "talk.mp4" in failure and "no longer" not in failure and "exists" in failure
    assert stored.read_bytes() == before and len(list(stored.parent.glob("*.mp4"))) == 2


def test_a_run_processes_only_the_bytes_its_partition_is_named_after(media, data_home: Path, instance) -> None:
    key = add_upload(media.talk(47.0), data_home, instance)
    upload = data_home / "uploads" / "team-a" / "talk.mp4"
    shutil.copyfile(media.portrait(), upload)  # overwritten under the same name before the run

    result = dg.materialize([segments], partition_key=key, instance=instance, resources=RESOURCES, raise_on_error=False)

    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data.user_failure_data.description
    assert "talk.mp4" in failure and "changed since it was registered" in failure
    assert not DataLayout(data_home).video_dir(key).exists()  # nothing of the other bytes stored under this key


def test_staging_left_by_a_dead_run_is_removed_by_the_next(media, data_home: Path, instance) -> None:
    key = add_upload(media.talk(47.0), data_home, instance)
    staging = data_home / "staging"
    dead = staging / f"{key}.0b5f3c1e-0000-4000-8000-000000000000"  # a run the instance never finished
    other_video = staging / "team-a--0123456789abcdef.0b5f3c1e-0000-4000-8000-000000000000"
    for folder in (dead, other_video):
        folder.mkdir(parents=True)
        (folder / "segment_timestamp-0-0.00-30.00.mp4").write_bytes(b"\0" * 4096)

    assert dg.materialize([segments], partition_key=key, instance=instance, resources=RESOURCES).success

    assert not dead.exists() and other_video.exists()  # another video's staging is its own run's business
    assert [p.name for p in staging.iterdir()] == [other_video.name]
