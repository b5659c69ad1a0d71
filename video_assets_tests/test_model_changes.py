"""The description through a real chat-completions server, and what a model change reruns."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.definitions.data_version import StaleStatus
from dagster._utils.test.data_versions import get_stale_status_resolver  # what the UI's "unsynced" uses

from video_assets.definitions import build_definitions
from video_assets.defs.resources import CaptionerResource, SummarizerResource
from video_assets.settings import Settings
from video_assets.store.layout import DataLayout
from video_assets.store.vector_access import vector_index
from video_assets_tests.chat_server import ChatServer
from video_assets_tests.test_pipeline import add_upload
from video_assets_tests.tiny_models import save_tiny_llava

SECRET = "sk-test-DO-NOT-LEAK-4242"
ALL = ["segments", "transcripts", "captions", "embeddings", "description"]


def assets_of(defs: dg.Definitions, names: list[str]) -> list[dg.AssetsDefinition]:
    return [a for a in defs.assets if a.key.to_user_string() in names]


def materialize(defs: dg.Definitions, names: list[str], key: str, instance, resources=None, **kwargs):  # noqa: ANN001, ANN003
    return dg.materialize(
        assets_of(defs, names),
        partition_key=key,
        instance=instance,
        resources={**defs.resources, **(resources or {})},
        **kwargs,
    )


def stored_description(home: Path, key: str) -> str:
    return json.loads(DataLayout(home).segments_metadata(key).read_text())["document_data"]["description"]


def test_description_from_the_endpoint_with_retries_and_no_half_writes(
    media, data_home: Path, instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    key = add_upload(media.talk(47.0), data_home, instance)
    defs = build_definitions(Settings.from_env())

    with ChatServer(statuses=[429], reply="A volcano erupts, then a bicycle is repaired.") as server:
        summarizer = SummarizerResource(base_url=server.base_url, model="test-model", retry_base_delay=0.01)
        assert materialize(defs, ALL, key, instance, {"summarizer": summarizer}).success
        assert len(server.requests) == 2  # 429, then success
        body = server.requests[-1].body
        assert (body["temperature"], body["max_tokens"], body["model"]) == (0.3, 1000, "test-model")
        assert "volcano" in server.requests[-1].prompt.lower()
        assert server.requests[-1].headers["authorization"] == f"Bearer {SECRET}"
    assert stored_description(data_home, key) == "A volcano erupts, then a bicycle is repaired."
    meta = instance.get_latest_materialization_event(dg.AssetKey("description")).asset_materialization.metadata
    assert meta["method"].value == "llm" and meta["endpoint"].value == server.base_url

    # An endpoint down for longer than the client's retries: the step's RetryPolicy tries again later.
    monkeypatch.setenv("VIDEO_STEP_RETRIES", "1")
    monkeypatch.setenv("VIDEO_STEP_RETRY_DELAY_SECONDS", "0.05")
    defs = build_definitions(Settings.from_env())
    with ChatServer(then=500) as failing:
        summarizer = SummarizerResource(
            base_url=failing.base_url, model="test-model", retry_base_delay=0.01, max_retries=2
        )
        result = materialize(
            defs,
            ["description"],
            key,
            instance,
            {"summarizer": summarizer},
            raise_on_error=False,
            run_config={"ops": {"description": {"config": {"force": True}}}},
        )
        assert len(failing.requests) == 6  # two step attempts, each one try and two client retries
    assert [e.event_type_value for e in result.all_events].count("STEP_UP_FOR_RETRY") == 1
    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data.user_failure_data.description
    assert failing.base_url in failure and "500" in failure
    # Nothing stored half: the earlier description stays, in the document and in the index.
    assert stored_description(data_home, key) == "A volcano erupts, then a bicycle is repaired."
    settings = Settings.from_env()
    with vector_index(url=None, path=settings.vectors_path, collection=settings.qdrant_collection) as index:
        assert index.count(partition_key=key, kind="description") == 1
    logged = " ".join(str(e) for run in instance.get_runs() for e in instance.all_logs(run.run_id))
    assert SECRET not in logged and failing.base_url in logged


def test_new_caption_model_reruns_captions_and_only_what_changed(
    media, data_home: Path, instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    key = add_upload(media.talk(47.0), data_home, instance)
    before = build_definitions(Settings.from_env())
    cursor = dg.evaluate_automation_conditions(defs=before, instance=instance).cursor
    assert materialize(before, ALL, key, instance).success

    def statuses(defs: dg.Definitions) -> dict[str, StaleStatus]:
        resolver = get_stale_status_resolver(instance, list(defs.assets))
        return {name: resolver.get_status(dg.AssetKey(name), key) for name in ALL}

    def materializations(name: str) -> int:
        return len(instance.fetch_materializations(dg.AssetKey(name), limit=100).records)

    assert set(statuses(before).values()) == {StaleStatus.FRESH}
    evaluation = dg.evaluate_automation_conditions(defs=before, instance=instance, cursor=cursor)
    assert evaluation.total_requested == 0  # the job already ran everything in order
    cursor = evaluation.cursor

    # Same model, another prompt: the OCR captioner ignores prompts, so captions come out identical.
    reprompted = build_definitions(Settings.from_env(caption_prompt="Describe the scene. {transcript}"))
    assert statuses(reprompted)["captions"] == StaleStatus.STALE
    assert materialize(reprompted, ["captions"], key, instance).success
    assert set(statuses(reprompted).values()) == {StaleStatus.FRESH}  # same data version: nothing downstream to do
    evaluation = dg.evaluate_automation_conditions(defs=reprompted, instance=instance, cursor=cursor)
    assert evaluation.total_requested == 0
    cursor = evaluation.cursor

    # A real new caption model: its captions differ, so embeddings and description follow.
    model = tmp_path / "tiny-llava"
    save_tiny_llava(model)
    changed = build_definitions(Settings.from_env(caption_model=str(model)))
    unsynced = statuses(changed)
    assert unsynced["captions"] == StaleStatus.STALE
    assert unsynced["segments"] == unsynced["transcripts"] == StaleStatus.FRESH
    old_caption = json.loads(DataLayout(data_home).segments_metadata(key).read_text())["segments_info"]["0"]["caption"]

    assert unsynced["embeddings"] == unsynced["description"] == StaleStatus.FRESH  # until captions really change

    # "Materialize unsynced": captions with the new model; their text changed, so what reads them is next.
    assert materialize(changed, ["captions"], key, instance, {"captioner": CaptionerResource(model=str(model))}).success
    followed = statuses(changed)
    assert followed["embeddings"] == StaleStatus.STALE and followed["captions"] == StaleStatus.FRESH
    assert followed["segments"] == followed["transcripts"] == StaleStatus.FRESH

    # The follow_changed_content sensor's conditions request embeddings, then description, for this video.
    for name in ("embeddings", "description"):
        evaluation = dg.evaluate_automation_conditions(defs=changed, instance=instance, cursor=cursor)
        cursor = evaluation.cursor
        assert evaluation.get_requested_partitions(dg.AssetKey(name)) == {key}, name
        assert evaluation.total_requested == 1
        assert materialize(changed, [name], key, instance).success
    assert dg.evaluate_automation_conditions(defs=changed, instance=instance, cursor=cursor).total_requested == 0
    assert set(statuses(changed).values()) == {StaleStatus.FRESH}

    document = json.loads(DataLayout(data_home).segments_metadata(key).read_text())
    assert document["segments_info"]["0"]["caption"] != old_caption
    embedded = instance.get_latest_materialization_event(dg.AssetKey("embeddings")).asset_materialization.metadata
    assert embedded["reused_unchanged"].value is False
    captions = instance.get_latest_materialization_event(dg.AssetKey("captions")).asset_materialization.metadata
    assert captions["captions_are"].value == "vision-language-model" and captions["model"].value == str(model)
    assert materializations("segments") == materializations("transcripts") == 1  # nothing upstream reran


def test_rerunning_segments_keeps_what_later_assets_stored(media, data_home: Path, instance) -> None:
    """Same bytes, same segments, same data version: Dagster keeps everything downstream synced,
    so their stored results must survive the rebuild of the segments folder."""
    key = add_upload(media.talk(47.0), data_home, instance)
    defs = build_definitions(Settings.from_env())
    assert materialize(defs, ALL, key, instance).success
    layout = DataLayout(data_home)
    before = json.loads(layout.segments_metadata(key).read_text())

    assert materialize(defs, ["segments"], key, instance).success
    after = json.loads(layout.segments_metadata(key).read_text())
    assert after["segments_info"] == before["segments_info"] and after["document_data"] == before["document_data"]
    assert layout.transcripts_file(key).exists() and (layout.video_dir(key) / "captions.json").exists()
    resolver = get_stale_status_resolver(instance, list(defs.assets))
    assert {resolver.get_status(dg.AssetKey(name), key) for name in ALL} == {StaleStatus.FRESH}
    assert not list((data_home / "staging").glob("*"))  # no staging folder left behind
