"""The whole graph on generated videos: find a scene by what was said or shown, in any language, and
get nothing when nothing matches."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from video_assets.defs.runner import ingest_files
from video_assets.models.embedder import load_embedder
from video_assets.samples import Scene
from video_assets.search import search
from video_assets.settings import Settings
from video_assets.store.vector_access import vector_index

SCENES = [
    Scene(30.0, "The volcano erupted and bright orange lava flowed down toward the village.", "MAGMA", "#b22222"),
    Scene(30.0, "My bicycle has a broken chain, so I repaired the gears and pumped the flat tire.", "PEDAL", "#2e7d32"),
    Scene(30.0, "She practised the piano every morning and played a sonata at the concert.", "QUARTZ", "#1f3a93"),
    Scene(
        30.0, "Whisk the eggs with flour and sugar, then bake the sponge cake for twenty minutes.", "OVEN", "#6d4c41"
    ),
]


@pytest.fixture(scope="module")
def four_scenes(media) -> Path:
    return media.video("four_scenes.mp4", SCENES, size=(480, 270))


def ingest_once(video: Path, root: Path, workspace: str, **env_vars: str) -> Iterator[dict]:
    """`video` through the whole graph in a fresh data root and instance; yields what the tests read."""
    from video_assets.defs.instance import dagster_instance

    with pytest.MonkeyPatch.context() as env:
        env.setenv("VIDEO_ASSETS_HOME", str(root / "data"))
        env.setenv("DAGSTER_HOME", str(root / "dagster_home"))
        env.delenv("VIDEO_ASSETS_UPLOADS", raising=False)
        for name, value in env_vars.items():
            env.setenv(name, value)
        instance = dagster_instance()
        settings = Settings.from_env()
        (outcome,) = ingest_files([video], workspace=workspace, settings=settings, instance=instance)
        assert outcome.status == "processed", outcome.message
        yield {"settings": settings, "key": outcome.partition_key, "instance": instance}
        instance.dispose()


@pytest.fixture(scope="module")
def ingested(four_scenes: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """Ingested once for the module: the whole graph is the expensive part."""
    yield from ingest_once(four_scenes, tmp_path_factory.mktemp("search"), "team-a")


@pytest.mark.parametrize(
    ("query", "scene"),
    [
        ("a volcanic eruption", 0),
        ("fixing a bike", 1),
        ("a pianist rehearsing", 2),
        ("baking dessert in the kitchen", 3),
    ],
)
def test_paraphrase_of_speech_finds_its_scene(ingested: dict, query: str, scene: int) -> None:
    hits = [h for h in search(query, workspace="team-a", settings=ingested["settings"]) if h.segment is not None]
    assert hits and hits[0].segment == scene, [(h.segment, round(h.score, 3)) for h in hits]
    floor = load_embedder(ingested["settings"].embedding_model).relevance_floor
    assert hits[0].score >= floor and not hits[0].keyword_match  # found by meaning: no word in common
    assert (hits[0].start, hits[0].end) == (30.0 * scene, 30.0 * (scene + 1))
    assert hits[0].file == "four_scenes.mp4" and hits[0].partition == ingested["key"]


@pytest.mark.parametrize(("word", "scene"), [("QUARTZ", 2), ("pedal", 1), ("MAGMA", 0)])
def test_on_screen_word_finds_its_scene(ingested: dict, word: str, scene: int) -> None:
    hits = [h for h in search(word, workspace="team-a", settings=ingested["settings"]) if h.segment is not None]
    assert hits[0].segment == scene and hits[0].keyword_match
    assert word.upper() in hits[0].text  # found through the captions' OCR, never spoken


@pytest.mark.parametrize(
    "query",
    ["zorblax quintessence flimflam", "how to train a puppy to sit", "the stock market crashed in Tokyo"],
)
def test_a_query_nothing_matches_returns_nothing(ingested: dict, query: str) -> None:
    assert search(query, workspace="team-a", settings=ingested["settings"]) == []
    # Without the floor the same query ranks every segment: the floor is what keeps them out.
    unfloored = search(query, workspace="team-a", min_score=0.0, settings=ingested["settings"])
    assert len([h for h in unfloored if h.segment is not None]) == len(SCENES)


def test_blank_query_is_refused(ingested: dict) -> None:
    for query in ("", "   "):
        with pytest.raises(ValueError, match="empty"):
            search(query, workspace="team-a", settings=ingested["settings"])


def test_rerun_keeps_one_point_per_segment_and_description(ingested: dict) -> None:
    from video_assets.definitions import defs

    key, instance, settings = ingested["key"], ingested["instance"], ingested["settings"]
    assets = [a for a in defs.assets if a.key.to_user_string() in {"captions", "embeddings", "description"}]
    checks = [c for c in defs.asset_checks if c.check_key.asset_key.to_user_string() in {"embeddings", "description"}]

    def counts() -> dict[str, int]:
        with vector_index(url=None, path=settings.vectors_path, collection=settings.qdrant_collection) as index:
            return {kind: index.count(partition_key=key, kind=kind) for kind in ("segment", "description")}

    assert counts() == {"segment": 4, "description": 1}
    result = dg.materialize([*assets, *checks], partition_key=key, instance=instance, resources=defs.resources)
    assert result.success
    assert counts() == {"segment": 4, "description": 1}
    document = json.loads(
        (settings.home_dir / "segments" / "team-a" / key.split("--")[1] / "segments_metadata.json").read_text()
    )
    assert "volcano" in document["document_data"]["description"].lower()
    assert "MAGMA" in document["segments_info"]["0"]["caption"]

    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {"one_point_per_segment": True, "description_non_empty": True}


def test_workspaces_never_see_each_other(ingested: dict, four_scenes: Path) -> None:
    settings, instance = ingested["settings"], ingested["instance"]
    (other,) = ingest_files([four_scenes], workspace="team-b", settings=settings, instance=instance)
    assert other.status == "processed" and other.partition_key != ingested["key"]

    for workspace, key in (("team-a", ingested["key"]), ("team-b", other.partition_key)):
        hits = search("lava from the volcano", workspace=workspace, limit=50, settings=settings)
        assert hits and {h.partition for h in hits} == {key}
    assert search("lava from the volcano", workspace="team-c", settings=settings) == []


def cli(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """`video-assets ARGS` in a fresh process on the data root `home`, as a person runs it."""
    command = [sys.executable, "-m", "video_assets.cli", *args]
    environment = {**os.environ, "VIDEO_ASSETS_HOME": str(home), **env}
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=environment)


def test_cli_search_json(ingested: dict) -> None:
    run = cli(
        ingested["settings"].home_dir, "search", "repairing the gears of a bike", "-w", "team-a", "--json", "-n", "3"
    )
    assert run.returncode == 0, run.stderr
    hits = json.loads(run.stdout)
    fields = {"file", "partition", "segment", "start", "end", "score", "keyword_match", "language", "text"}
    assert set(hits[0]) == fields
    assert hits[0]["segment"] == 1 and hits[0]["start"] == 30.0 and hits[0]["end"] == 60.0
    assert hits[0]["language"] == "en" and 0.0 < hits[0]["score"] <= 1.0


def test_cli_blank_query_exits_2_naming_it(ingested: dict) -> None:
    home = ingested["settings"].home_dir
    run = cli(home, "search", " ", "-w", "team-a")
    assert run.returncode == 2 and "query ' ' is empty" in run.stderr and not run.stdout
    run = cli(home, "search", "zorblax quintessence flimflam", "-w", "team-a")
    assert run.returncode == 0 and "nothing in workspace 'team-a' matches" in run.stdout


ITALIAN = [
    Scene(20.0, "Buongiorno a tutti, oggi parliamo del vulcano e della lava calda.", "", "#b22222", voice="it"),
    Scene(20.0, "Oggi cuciniamo la pasta con il pomodoro e il basilico.", "", "#2e7d32", voice="it"),
]


@pytest.fixture(scope="module")
def italian(media, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """An Italian talk, ingested with 20 s segments: one scene a segment."""
    video = media.video("italian_talk.mp4", ITALIAN, size=(320, 240))
    yield from ingest_once(video, tmp_path_factory.mktemp("italian"), "team-it", VIDEO_SEGMENT_LENGTH="20")


def test_italian_speech_is_transcribed_in_italian_and_found_in_english(italian: dict) -> None:
    settings, key = italian["settings"], italian["key"]
    event = italian["instance"].get_latest_materialization_event(dg.AssetKey("transcripts"))
    assert event.asset_materialization.metadata["language"].value == "it"
    transcripts = json.loads(
        (settings.home_dir / "segments" / "team-it" / key.split("--")[1] / "transcripts.json").read_text()
    )
    assert transcripts["language"] == "it" and transcripts["language_probability"] > 0.5
    heard = " ".join(s["text"] for s in transcripts["segments"]).lower()
    assert sum(word in heard for word in ("vulcano", "parliamo", "pasta", "pomodoro", "basilico")) >= 3, heard

    for query, scene in (("a talk about a volcano eruption", 0), ("cooking spaghetti with tomato and basil", 1)):
        hits = [h for h in search(query, workspace="team-it", settings=settings) if h.segment is not None]
        assert hits and hits[0].segment == scene, (query, [(h.segment, round(h.score, 3)) for h in hits])
        assert hits[0].language == "it" and not hits[0].keyword_match  # across languages, by meaning alone


def test_reindex_rebuilds_the_index_from_stored_texts_for_another_model(ingested: dict, tmp_path: Path) -> None:
    import functools
    import shutil

    home = tmp_path / "data"
    shutil.copytree(ingested["settings"].home_dir, home)
    cli_here = functools.partial(cli, home)

    before = json.loads(cli_here("search", "fixing a bike", "-w", "team-a", "--json").stdout)
    videos = len(list(home.glob("segments/*/*/segments_metadata.json")))  # team-b's too, once that test ran
    minilm = cli_here("reindex", VIDEO_EMBEDDING_MODEL="all-MiniLM-L6-v2")
    assert minilm.returncode == 0, minilm.stderr
    assert f"{videos} video(s)" in minilm.stdout and f"{4 * videos} segment and {videos} description" in minilm.stdout

    # The index now holds another model's vectors: search says so instead of quietly finding nothing.
    refused = cli_here("search", "fixing a bike", "-w", "team-a")
    assert refused.returncode == 1 and "all-MiniLM-L6-v2" in refused.stderr and "video-assets reindex" in refused.stderr
    with_minilm = cli_here(
        "search", "fixing a bike", "-w", "team-a", "--json", VIDEO_EMBEDDING_MODEL="all-MiniLM-L6-v2"
    )
    assert json.loads(with_minilm.stdout)[0]["segment"] == 1

    assert cli_here("reindex").returncode == 0
    after = json.loads(cli_here("search", "fixing a bike", "-w", "team-a", "--json").stdout)
    assert after == before  # the stored texts give back exactly the points the assets wrote
