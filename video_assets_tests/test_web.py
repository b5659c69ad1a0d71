"""The search page and its API on a really ingested video: search, list, play (Range requests), the
token, paths that try to leave the data root, workspace scoping, and text from a video as text.
The browser test drives Debian's Chromium through Playwright: type a paraphrase, click, and the
player stands at the segment's start."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from fastapi.testclient import TestClient

from video_assets.defs.runner import ingest_files
from video_assets.indexing import reindex
from video_assets.models.embedder import load_embedder
from video_assets.search import hit_as_json, search
from video_assets.settings import Settings
from video_assets.store.atomic import atomic_write_json, read_json
from video_assets.store.documents import write_document
from video_assets.store.layout import DataLayout
from video_assets.store.vector_access import configured_vector_index
from video_assets.web.app import create_app
from video_assets_tests.browser import BROWSER_ARGS, CHROMIUM

XSS_NAME = "<img src=x onerror=alert(1)> talk.mp4"
XSS_TRANSCRIPT = "<script>window.pwned=1</script> zeppelin"


@pytest.fixture(scope="module")
def site(media, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """A talk (volcano words 0-30 s, bicycle words 30-50 s) in team-a under a hostile file name, a quiet
    video in team-b, and the first transcript given a script tag, re-indexed."""
    from video_assets.defs.instance import dagster_instance

    root = tmp_path_factory.mktemp("web")
    talk = root / "in" / XSS_NAME
    talk.parent.mkdir()
    shutil.copy(media.talk(62.0), talk)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("VIDEO_ASSETS_HOME", str(root / "data"))
        env.setenv("DAGSTER_HOME", str(root / "dagster_home"))
        env.setenv("VIDEO_ASSETS_WEB_URL", "http://127.0.0.1:8123")
        env.delenv("VIDEO_ASSETS_UPLOADS", raising=False)
        env.delenv("VIDEO_ASSETS_API_TOKEN", raising=False)
        instance = dagster_instance()
        settings = Settings.from_env()
        (a,) = ingest_files([talk], workspace="team-a", settings=settings, instance=instance)
        (b,) = ingest_files([media.no_audio()], workspace="team-b", settings=settings, instance=instance)
        assert a.status == b.status == "processed", (a.message, b.message)
        layout = DataLayout(settings.home_dir)
        transcripts = read_json(layout.transcripts_file(a.partition_key))
        transcripts["segments"][0]["text"] += " " + XSS_TRANSCRIPT
        atomic_write_json(layout.transcripts_file(a.partition_key), transcripts)
        write_document(layout, a.partition_key)
        with configured_vector_index(settings) as index:
            reindex(layout, index, load_embedder(settings.embedding_model))
        app = create_app(settings, token="")
        with TestClient(app) as client:
            yield {
                "settings": settings,
                "a": a.partition_key,
                "b": b.partition_key,
                "client": client,
                "app": app,
                "instance": instance,
                "root": root,
                "upload": talk,
            }
        instance.dispose()


def test_api_search_returns_the_cli_objects_and_finds_the_paraphrase(site: dict) -> None:
    response = site["client"].get("/api/search", params={"q": "fixing a bike", "workspace": "team-a"})
    assert response.status_code == 200, response.text
    hits = response.json()
    segments = [h for h in hits if h["segment"] is not None]
    assert segments and segments[0]["segment"] == 1 and segments[0]["start"] == 30.0, hits
    assert set(hits[0]) == {
        "file",
        "partition",
        "segment",
        "start",
        "end",
        "score",
        "keyword_match",
        "language",
        "text",
    }
    cli = search("fixing a bike", workspace="team-a", settings=site["settings"], held=site["app"].state.held)
    assert hits == [hit_as_json(h) for h in cli]  # what `video-assets search --json` prints
    assert segments[0]["file"] == XSS_NAME and segments[0]["partition"] == site["a"]
    other = site["client"].get("/api/search", params={"q": "fixing a bike", "workspace": "team-b"})
    assert other.status_code == 200 and all(h["partition"] == site["b"] for h in other.json())


def test_api_lists_and_shows_videos_of_one_workspace_only(site: dict) -> None:
    client = site["client"]
    team_a = client.get("/api/videos", params={"workspace": "team-a"}).json()
    team_b = client.get("/api/videos", params={"workspace": "team-b"}).json()
    assert [v["partition"] for v in team_a] == [site["a"]] and [v["partition"] for v in team_b] == [site["b"]]
    assert team_a[0]["file"] == XSS_NAME and team_a[0]["segment_count"] == 2 and team_a[0]["thumbnail"]
    video = client.get(f"/api/videos/{site['a']}", params={"workspace": "team-a"}).json()
    assert [s["start"] for s in video["segments"]] == [0.0, 30.0] and video["segments"][1]["end"] > 50
    assert "bicycle" in video["segments"][1]["transcript"].lower() and video["original"] is True
    assert video["segments"][0]["transcript"].endswith(XSS_TRANSCRIPT)
    # Another workspace's video does not exist here, in the API, the pages and the media alike.
    for path in (f"/api/videos/{site['a']}", f"/videos/{site['a']}", f"/media/{site['a']}/original"):
        assert client.get(path, params={"workspace": "team-b"}).status_code == 404, path
    assert client.get(f"/media/{site['a']}/original").status_code == 404  # default workspace: not team-a


def test_range_request_returns_206_with_the_right_bytes(site: dict) -> None:
    client = site["client"]
    data = site["upload"].read_bytes()
    url = f"/media/{site['a']}/original"
    response = client.get(url, params={"workspace": "team-a"}, headers={"Range": "bytes=1000-1999"})
    assert response.status_code == 206, response.text
    assert response.headers["content-range"] == f"bytes 1000-1999/{len(data)}"
    assert response.content == data[1000:2000] and response.headers["content-type"] == "video/mp4"
    tail = client.get(url, params={"workspace": "team-a"}, headers={"Range": "bytes=-100"})
    assert tail.status_code == 206 and tail.content == data[-100:]
    whole = client.get(url, params={"workspace": "team-a"})
    assert whole.status_code == 200 and whole.headers["accept-ranges"] == "bytes" and whole.content == data
    video = client.get(f"/api/videos/{site['a']}", params={"workspace": "team-a"}).json()
    thumb = client.get(f"/media/{site['a']}/file/{video['segments'][0]['thumbnail']}", params={"workspace": "team-a"})
    assert (
        thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg" and thumb.content[:2] == b"\xff\xd8"
    )
    clip = client.get(
        f"/media/{site['a']}/file/{video['segments'][1]['clip']}",
        params={"workspace": "team-a"},
        headers={"Range": "bytes=0-99"},
    )
    assert clip.status_code == 206 and len(clip.content) == 100


def test_paths_out_of_the_video_folder_are_not_found(site: dict) -> None:
    client = site["client"]
    layout = DataLayout(site["settings"].home_dir)
    folder = layout.video_dir(site["a"])
    (folder / "leak.txt").symlink_to("/etc/passwd")
    (folder / "registry.sqlite").symlink_to(layout.registry_db)
    (folder / "frames-out").symlink_to(layout.home, target_is_directory=True)
    try:
        base = f"/media/{site['a']}/file/"
        attempts = [
            "../../../registry.sqlite",
            "%2e%2e/%2e%2e/%2e%2e/registry.sqlite",
            "..%2f..%2f..%2fregistry.sqlite",
            "%2Fetc%2Fpasswd",
            "/etc/passwd",
            "leak.txt",
            "registry.sqlite",
            "frames-out/registry.sqlite",
            "..\\..\\registry.sqlite",
            "",
        ]
        for attempt in attempts:
            response = client.get(base + attempt, params={"workspace": "team-a"})
            assert response.status_code == 404, (attempt, response.status_code)
            assert b"SQLite" not in response.content and b"root:" not in response.content
        for key in ("..%2F..%2Fetc", "team-a--..%2F..%2F..%2Fxx", "team-a--zzzzzzzzzzzzzzzz", "%2Fetc%2Fpasswd"):
            assert client.get(f"/media/{key}/original", params={"workspace": "team-a"}).status_code == 404, key
            assert client.get(f"/api/videos/{key}", params={"workspace": "team-a"}).status_code == 404, key
    finally:
        for name in ("leak.txt", "registry.sqlite", "frames-out"):
            (folder / name).unlink()


def test_bad_parameters_are_422_with_a_clear_message(site: dict) -> None:
    client = site["client"]
    cases = [
        ("/api/search", {"q": "bike", "limit": "0"}, "limit"),
        ("/api/search", {"q": "bike", "limit": "ten"}, "limit"),
        ("/api/search", {"q": "bike", "limit": "100000"}, "limit"),
        ("/api/search", {"q": "bike", "workspace": "Team A!"}, "workspace"),
        ("/api/search", {}, "q"),
        ("/api/search", {"q": ""}, "q"),
        ("/api/search", {"q": "   ", "workspace": "team-a"}, "empty"),
        ("/api/videos", {"workspace": "../etc"}, "workspace"),
    ]
    for path, params, named in cases:
        response = client.get(path, params=params)
        assert response.status_code == 422, (path, params, response.text)
        assert named in response.text, (params, response.text)
    page = client.get("/", params={"q": "bike", "limit": "-3", "workspace": "team-a"})
    assert page.status_code == 422 and "limit must be a whole number" in page.text
    page = client.get("/", params={"q": "bike", "workspace": "<b>x</b>"})
    assert page.status_code == 422 and "<b>x</b>" not in page.text and "&lt;b&gt;x&lt;/b&gt;" in page.text


def test_text_from_a_video_is_shown_as_text(site: dict) -> None:
    client = site["client"]
    page = client.get("/", params={"q": "zeppelin", "workspace": "team-a"})
    assert page.status_code == 200
    assert "<script>window.pwned" not in page.text and "&lt;script&gt;window.pwned=1&lt;/script&gt;" in page.text
    assert "<mark>zeppelin</mark>" in page.text  # the query's word, highlighted
    assert "<img src=x onerror" not in page.text and "&lt;img src=x onerror=alert(1)&gt; talk.mp4" in page.text
    video = client.get(f"/videos/{site['a']}", params={"workspace": "team-a"})
    assert video.status_code == 200 and "<script>window.pwned" not in video.text
    assert "&lt;script&gt;window.pwned=1&lt;/script&gt;" in video.text and "<img src=x" not in video.text


def test_without_the_upload_each_segment_plays_its_own_clip(site: dict) -> None:
    client, upload = site["client"], site["upload"]
    record = site["app"].state.catalog.registry.get(site["a"])
    stored = Path(record.sources[0].uri)
    aside = stored.with_name("aside.bin")
    stored.rename(aside)
    try:
        video = client.get(f"/api/videos/{site['a']}", params={"workspace": "team-a"}).json()
        assert video["original"] is False
        assert client.get(f"/media/{site['a']}/original", params={"workspace": "team-a"}).status_code == 404
        page = client.get(f"/videos/{site['a']}", params={"workspace": "team-a"}).text
        clip = video["segments"][1]["clip"]
        assert f'data-src="/media/{site["a"]}/file/{clip}?workspace=team-a" data-seek="0.0"' in page
        hits = client.get("/", params={"q": "fixing a bike", "workspace": "team-a"}).text
        assert f"/file/{clip}?workspace=team-a" in hits
    finally:
        aside.rename(stored)
    assert upload.exists()


def test_video_page_links_to_dagster_and_dagster_links_back(site: dict) -> None:
    video = site["client"].get(f"/videos/{site['a']}", params={"workspace": "team-a"})
    assert f"http://127.0.0.1:3000/assets/segments?view=partitions&amp;partition={site['a']}" in video.text
    event = site["instance"].get_latest_materialization_event(dg.AssetKey("segments"))
    records = (
        site["instance"]
        .fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey("segments"), asset_partitions=[site["a"]]), limit=1
        )
        .records
    )
    assert event is not None and records
    link = records[0].asset_materialization.metadata["video_page"]
    assert isinstance(link, dg.UrlMetadataValue)
    assert link.url == f"http://127.0.0.1:8123/videos/{site['a']}?workspace=team-a"


def test_token_is_required_on_every_route_when_set(site: dict) -> None:
    app = create_app(site["settings"], token="s3cret-token")
    with TestClient(app) as client:
        key = site["a"]
        routes = [
            "/",
            "/docs",
            "/openapi.json",
            "/api/search?q=bike",
            "/api/videos",
            f"/api/videos/{key}",
            f"/media/{key}/original?workspace=team-a",
            "/static/style.css",
        ]
        for route in routes:
            assert client.get(route).status_code == 401, route
            assert client.get(route, headers={"Authorization": "Bearer wrong"}).status_code == 401, route
        ok = client.get("/api/videos?workspace=team-a", headers={"Authorization": "Bearer s3cret-token"})
        assert ok.status_code == 200 and ok.json()[0]["partition"] == key
        once = client.get("/?workspace=team-a&token=s3cret-token", follow_redirects=False)
        assert once.status_code == 303 and once.headers["location"] == "/?workspace=team-a"
        assert "httponly" in once.headers["set-cookie"].lower()
        assert client.get("/?workspace=team-a").status_code == 200  # the cookie, from now on
    app.state.held.close()


def test_the_server_lets_a_writer_have_the_shard_while_searches_keep_coming(site: dict) -> None:
    """The server holds the shard between searches, and lets go as soon as another process waits for it."""
    client, held = site["client"], site["app"].state.held
    assert client.get("/api/search", params={"q": "volcano", "workspace": "team-a"}).status_code == 200
    assert held.is_open
    stop, answers = threading.Event(), []

    def searches() -> None:
        while not stop.is_set():
            answers.append(client.get("/api/search", params={"q": "bicycle", "workspace": "team-a"}).status_code)

    stream = threading.Thread(target=searches)
    stream.start()
    try:
        time.sleep(0.5)
        opens = held.opens
        started = time.monotonic()
        with configured_vector_index(site["settings"]):  # a writer, in another process or not
            waited = time.monotonic() - started
            time.sleep(0.3)
        time.sleep(0.5)
    finally:
        stop.set()
        stream.join()
    assert waited < min(held.idle_seconds, 1.0), waited  # not the idle release: searches never stopped
    assert held.opens > opens and answers and set(answers) == {200}  # searches waited, then went on


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(site: dict) -> Iterator[str]:
    site["app"].state.held.release()
    port = free_port()
    env = os.environ | {
        "VIDEO_ASSETS_HOME": str(site["settings"].home_dir),
        "DAGSTER_HOME": str(site["root"] / "dagster_home"),
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
    }
    env.pop("VIDEO_ASSETS_API_TOKEN", None)
    command = [sys.executable, "-m", "video_assets.cli", "serve", "--port", str(port)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output: list[bytes] = []
    threading.Thread(target=lambda: output.extend(process.stdout), daemon=True).start()  # type: ignore[arg-type]
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert process.poll() is None, b"".join(output).decode()
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        os.kill(process.pid, 15)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, 9)
            process.wait()


def test_browser_finds_the_moment_and_plays_it_from_its_start(site: dict, server: str, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(f"{server}/?workspace=team-a")
            page.fill("#q", "repairing a bike")
            page.press("#q", "Enter")
            page.wait_for_selector("a.hit")
            first = page.locator("a.hit").first
            assert "0:30" in first.inner_text() and "segment 1" in first.inner_text(), first.inner_text()
            assert page.locator("a.hit img.thumb").first.evaluate("img => img.complete && img.naturalWidth > 0")
            first.click()
            page.wait_for_function(
                "() => { const v = document.getElementById('player'); return v.readyState >= 1 && v.currentTime > 1; }",
                timeout=20000,
            )
            current = page.evaluate("document.getElementById('player').currentTime")
            assert abs(current - 30.0) < 1.0, current
            page.screenshot(path=str(tmp_path / "search-page.png"))
            if os.environ.get("VIDEO_ASSETS_SCREENSHOT"):  # how docs/search-page.png is made
                shutil.copy(tmp_path / "search-page.png", os.environ["VIDEO_ASSETS_SCREENSHOT"])
            assert page.evaluate("window.pwned === undefined")

            # The video page: its timeline seeks the player to a segment.
            page.locator("a.hit").first.evaluate("a => a.closest('article').querySelector('h2 a').click()")
            page.wait_for_selector("a.segment")
            assert "in Dagster" in page.inner_text(".meta")
            page.locator("a.segment").nth(1).click()
            page.wait_for_function(
                "() => { const v = document.getElementById('player'); return v.readyState >= 1 && v.currentTime > 1; }",
                timeout=20000,
            )
            assert abs(page.evaluate("document.getElementById('player').currentTime") - 30.0) < 1.0
            assert page.evaluate("window.pwned === undefined")  # the transcript's script tag stayed text
        finally:
            browser.close()
