"""Storage a person can trust: each asset writes only its own file, `segments_metadata.json` is
assembled from those files, and a data root keeps working after it is moved or restored elsewhere."""

from __future__ import annotations

import threading
from pathlib import Path

import dagster as dg
import pytest

from video_assets.definitions import build_definitions
from video_assets.defs.resources import SummarizerResource
from video_assets.indexing import reindex
from video_assets.models.embedder import load_embedder
from video_assets.search import search
from video_assets.settings import Settings
from video_assets.store.atomic import atomic_write_json, locked, read_json
from video_assets.store.documents import assemble, assemble_document, new_document, new_segments_record, write_document
from video_assets.store.layout import DataLayout
from video_assets.store.vector_access import configured_vector_index
from video_assets_tests.chat_server import ChatServer
from video_assets_tests.test_model_changes import ALL, materialize
from video_assets_tests.test_pipeline import add_upload

KEY = "team-a--0123456789abcdef"
OWN_FILE = {
    "segments": "segments.json",
    "transcripts": "transcripts.json",
    "captions": "captions.json",
    "embeddings": "embeddings.json",
    "description": "description.json",
}
EXTRA_KEYS = {"partition_key", "files", "sha256", "media", "cut_method", "audio_path"}
SEGMENT_KEYS = {
    "segment_name",
    "start_time",
    "end_time",
    "frame_times",
    "frame_paths",
    "video_segment_path",
    "transcript",
    "caption",
}


def one_segment_record(layout: DataLayout, key: str) -> dict:
    folder = layout.video_dir(key)
    return new_segments_record(
        partition_key=key,
        video_name="talk.mp4",
        files=["talk.mp4"],
        sha256="0123456789abcdef" * 4,
        file_size=1000,
        duration=12.0,
        media={},
        cut_method="stream-copy",
        audio_path=layout.relative(folder / "audio_16k.wav"),
        segments=[
            {
                "index": 0,
                "name": "segment_timestamp-0-0.00-12.00.mp4",
                "start": 0.0,
                "end": 12.0,
                "frame_times": [0.0, 6.0],
                "frame_paths": [layout.relative(folder / "frames" / f"frame-0-{k}.jpg") for k in range(2)],
                "path": layout.relative(folder / "segment_timestamp-0-0.00-12.00.mp4"),
            }
        ],
    )


def json_mentioning(root: Path, text: str) -> list[Path]:
    return [p for p in root.rglob("*.json") if text in p.read_text(encoding="utf-8", errors="replace")]


def run_checks(defs: dg.Definitions, names: list[str], key: str, instance: dg.DagsterInstance) -> dict[str, bool]:
    """Materialize `names` with their asset checks; the checks' outcomes by name."""
    assets = [a for a in defs.assets if a.key.to_user_string() in names]
    checks = [c for c in defs.asset_checks if c.check_key.asset_key.to_user_string() in names]
    result = dg.materialize([*assets, *checks], partition_key=key, instance=instance, resources=defs.resources)
    assert result.success
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


def test_stored_paths_are_relative_to_the_data_root_and_old_absolute_ones_resolve_as_they_are(tmp_path: Path) -> None:
    layout = DataLayout(tmp_path / "data")
    frame = layout.video_dir(KEY) / "frames" / "frame-0-0.jpg"
    assert layout.relative(frame) == "segments/team-a/0123456789abcdef/frames/frame-0-0.jpg"
    assert layout.resolve(layout.relative(frame)) == frame
    moved = DataLayout(tmp_path / "elsewhere")
    assert moved.resolve(layout.relative(frame)) == tmp_path / "elsewhere" / layout.relative(frame)
    assert moved.resolve(str(frame)) == frame  # written by an older version: taken as it is
    outside = tmp_path / "bucket" / "talk.mp4"  # an upload bucket beside the data root
    assert layout.relative(outside) == str(outside) and layout.resolve(layout.relative(outside)) == outside


def test_the_document_is_assembled_from_each_assets_file(tmp_path: Path) -> None:
    layout = DataLayout(tmp_path)
    folder = layout.video_dir(KEY)
    atomic_write_json(folder / "segments.json", one_segment_record(layout, KEY))
    document = assemble(folder)
    assert document["segments_info"]["0"]["transcript"] == "" and document["document_data"]["description"] == ""

    atomic_write_json(folder / "transcripts.json", {"segments": [{"index": 0, "text": "lava"}]})
    atomic_write_json(folder / "captions.json", {"segments": [{"index": 0, "text": "MAGMA"}]})
    atomic_write_json(folder / "description.json", {"text": "A volcano."})
    document = assemble(folder)
    assert (document["segments_info"]["0"]["transcript"], document["segments_info"]["0"]["caption"]) == (
        "lava",
        "MAGMA",
    )
    assert document["document_data"]["description"] == "A volcano."
    assert document["segments_info"]["0"]["frame_paths"][0] == f"segments/team-a/{KEY[-16:]}/frames/frame-0-0.jpg"

    # Captions made for other segments (a run that overlapped a segments rerun) are not these segments'.
    atomic_write_json(folder / "captions.json", {"segments": [{"index": 0, "text": "a"}, {"index": 1, "text": "b"}]})
    assert assemble(folder)["segments_info"]["0"]["caption"] == ""


def test_a_folder_written_before_segments_json_is_read_from_its_document(tmp_path: Path) -> None:
    """Data roots of the previous version: only the document holds the segments, with absolute paths."""
    layout = DataLayout(tmp_path)
    folder = layout.video_dir(KEY)
    atomic_write_json(folder / "segments.json", one_segment_record(layout, KEY))
    legacy = assemble(folder)
    (folder / "segments.json").unlink()
    for info in legacy["segments_info"].values():
        info["frame_paths"] = [str(layout.resolve(p)) for p in info["frame_paths"]]
        info["video_segment_path"] = str(layout.resolve(info["video_segment_path"]))
        info["transcript"] = "text the old version wrote into the document"
    legacy["audio_path"] = str(layout.resolve(legacy["audio_path"]))
    atomic_write_json(folder / "segments_metadata.json", legacy)
    atomic_write_json(folder / "transcripts.json", {"segments": [{"index": 0, "text": "lava"}]})

    document = assemble(folder)
    assert document["segments_info"]["0"].pop("transcript") == "lava"  # from transcripts.json, as always
    assert legacy["segments_info"]["0"].pop("transcript") and document == legacy


def test_an_assembly_waits_for_the_one_in_progress(tmp_path: Path) -> None:
    """Two processes finishing at once: the later assembly is written after the earlier one, never before."""
    layout = DataLayout(tmp_path)
    atomic_write_json(layout.segments_file(KEY), one_segment_record(layout, KEY))
    written = threading.Event()

    def assemble_and_write() -> None:
        write_document(layout, KEY)
        written.set()

    with locked(layout.document_lock(KEY)):  # another process is assembling
        thread = threading.Thread(target=assemble_and_write)
        thread.start()
        assert not written.wait(0.5) and not layout.segments_metadata(KEY).exists()
    thread.join(10)
    assert written.is_set() and read_json(layout.segments_metadata(KEY)) == assemble_document(layout, KEY)


def test_each_asset_writes_only_its_own_file_and_the_document_follows(
    media, data_home: Path, instance: dg.DagsterInstance
) -> None:
    key = add_upload(media.talk(47.0), data_home, instance)
    defs = build_definitions(Settings.from_env())
    layout = DataLayout(data_home)
    folder = layout.video_dir(key)

    def written() -> dict[str, tuple[int, int]]:
        return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in folder.glob("*.json")}

    before: dict[str, tuple[int, int]] = {}
    for name in ALL:
        assert materialize(defs, [name], key, instance).success
        after = written()
        changed = {file for file, signature in after.items() if before.get(file) != signature}
        # embeddings.json holds only fingerprints: nothing of it goes into the document.
        assert changed == {OWN_FILE[name]} | ({"segments_metadata.json"} if name != "embeddings" else set()), name
        before = after

    document = read_json(layout.segments_metadata(key))
    assert document == assemble_document(layout, key)
    original = new_document(video_name="", file_size=0, duration=0.0, segments=[], extra={})
    assert set(document) == set(original) | EXTRA_KEYS
    assert set(document["document_data"]) == set(original["document_data"])
    assert set(document["document_data"]["document_metadata"]) == set(original["document_data"]["document_metadata"])
    infos = [document["segments_info"][str(i)] for i in range(document["segment_count"])]
    assert len(infos) == 2 and all(set(info) == SEGMENT_KEYS for info in infos)
    transcripts = [s["text"] for s in read_json(layout.transcripts_file(key))["segments"]]
    captions = [s["text"] for s in read_json(layout.captions_file(key))["segments"]]
    assert [info["transcript"] for info in infos] == transcripts and "volcano" in transcripts[0].lower()
    assert [info["caption"] for info in infos] == captions and all(captions)
    description = read_json(layout.description_file(key))["text"]
    assert description and document["document_data"]["description"] == description
    paths = [document["audio_path"], *(p for info in infos for p in [*info["frame_paths"], info["video_segment_path"]])]
    assert all(not Path(p).is_absolute() and layout.resolve(p).is_file() for p in paths)

    # A downstream rerun rebuilds the document: a new description shows in it, the rest stays.
    with ChatServer(reply="A volcano erupts; then a bicycle is repaired.") as server:
        summarizer = SummarizerResource(base_url=server.base_url, model="test-model")
        assert materialize(
            defs,
            ["description"],
            key,
            instance,
            {"summarizer": summarizer},
            run_config={"ops": {"description": {"config": {"force": True}}}},
        ).success
    rebuilt = read_json(layout.segments_metadata(key))
    assert rebuilt["document_data"]["description"] == "A volcano erupts; then a bicycle is repaired."
    assert rebuilt["segments_info"] == document["segments_info"]

    # The pipeline never reads the exported document: a damaged one is simply rebuilt.
    layout.segments_metadata(key).write_text("{}")
    assert materialize(defs, ["captions"], key, instance).success
    assert read_json(layout.segments_metadata(key)) == rebuilt


def test_a_data_root_of_the_previous_version_is_read_and_migrated(
    media, data_home: Path, instance: dg.DagsterInstance
) -> None:
    """Absolute paths and no segments.json: captions still find the frames; a segments rerun with the
    same boundaries rewrites the folder with relative paths and keeps the captions."""
    key = add_upload(media.talk(47.0), data_home, instance)
    defs = build_definitions(Settings.from_env())
    layout = DataLayout(data_home)
    assert materialize(defs, ["segments"], key, instance).success
    old = read_json(layout.segments_metadata(key))
    for info in old["segments_info"].values():
        info["frame_paths"] = [str(layout.resolve(p)) for p in info["frame_paths"]]
        info["video_segment_path"] = str(layout.resolve(info["video_segment_path"]))
    old["audio_path"] = str(layout.resolve(old["audio_path"]))
    atomic_write_json(layout.segments_metadata(key), old)
    layout.segments_file(key).unlink()

    assert materialize(defs, ["captions"], key, instance).success
    document = read_json(layout.segments_metadata(key))
    assert document["segments_info"]["0"]["frame_paths"] == old["segments_info"]["0"]["frame_paths"]
    assert all(info["caption"] for info in document["segments_info"].values())

    assert run_checks(defs, ["segments"], key, instance) == {"segments_cover_duration": True, "frames_exist": True}
    migrated = read_json(layout.segments_metadata(key))
    assert layout.segments_file(key).exists() and not json_mentioning(layout.video_dir(key), str(data_home))
    assert [i["caption"] for i in migrated["segments_info"].values()] == [
        i["caption"] for i in document["segments_info"].values()
    ]

    # Other boundaries: the captions were of other segments, so they are left behind.
    shorter = {"ops": {"segments": {"config": {"segment_length": 20.0}}}}
    assert materialize(defs, ["segments"], key, instance, run_config=shorter).success
    resegmented = read_json(layout.segments_metadata(key))
    assert resegmented["segment_count"] == 3 and not layout.captions_file(key).exists()
    assert not any(info["caption"] for info in resegmented["segments_info"].values())


def test_a_moved_data_root_keeps_working(
    media, data_home: Path, instance: dg.DagsterInstance, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ingest into root A, rename A to B, point the settings at B: everything resolves, is found and
    reruns there, and nothing stored under B names A."""
    from video_assets.defs.runner import ingest_files

    # The bucket lives beside the data root (as an S3 bucket would): the registry records upload
    # locations as they are, and that is another file's business than this test's.
    monkeypatch.setenv("VIDEO_ASSETS_UPLOADS", str(tmp_path / "bucket"))
    (outcome,) = ingest_files([media.talk(47.0)], workspace="team-a", settings=Settings.from_env(), instance=instance)
    assert outcome.status == "processed", outcome.message
    key, query = outcome.partition_key, "an erupting volcano"

    def found(settings: Settings) -> list[tuple]:
        return [(h.partition, h.segment, h.start, h.end) for h in search(query, workspace="team-a", settings=settings)]

    hits = found(Settings.from_env())
    assert (key, 0, 0.0, 30.0) in hits

    moved = tmp_path / "moved" / "data"
    moved.parent.mkdir()
    data_home.rename(moved)
    monkeypatch.setenv("VIDEO_ASSETS_HOME", str(moved))
    settings = Settings.from_env()
    layout = DataLayout(settings.home_dir)
    assert not json_mentioning(moved, str(data_home))

    assert found(settings) == hits
    document = assemble_document(layout, key)
    frames = [layout.resolve(p) for info in document["segments_info"].values() for p in info["frame_paths"]]
    assert frames and all(f.is_file() and f.is_relative_to(moved) for f in frames)

    defs = build_definitions(settings)
    checks = run_checks(defs, ["segments", "captions", "embeddings", "description"], key, instance)
    assert checks == dict.fromkeys(
        [
            "segments_cover_duration",
            "frames_exist",
            "captions_complete",
            "one_point_per_segment",
            "description_non_empty",
        ],
        True,
    )
    assert layout.transcripts_file(key).exists()  # same segments as before: kept by the rerun

    with configured_vector_index(settings) as index:
        report = reindex(layout, index, load_embedder(settings.embedding_model))
    assert (report.videos, report.skipped) == (1, [])
    assert found(settings) == hits
    assert not json_mentioning(moved, str(data_home))
    assert read_json(layout.segments_metadata(key))["segments_info"] == document["segments_info"]
