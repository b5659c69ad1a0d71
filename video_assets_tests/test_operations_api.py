"""Reruns and backfills as an operator does them, through Dagster's GraphQL API.

A real `dagster-webserver` and `dagster-daemon` (video_assets_tests/dagster_servers.py) serve a fresh
instance with the repo's dagster.yaml. Two short videos are dropped into `uploads/team-a/` before the
daemon starts: the upload sensor (on by default) makes them partitions and runs. Then, through the API
the UI uses: one asset rerun for one video, a backfill of every asset over the workspace, metadata and
lineage read back, and the run queue's rule of one run per video.

The daemon's backfill loop wakes every 30 s, so the backfill is launched as soon as the videos are
processed (fixture `workspace_backfill`) and the rerun and queue checks run while it waits; its runs
share the queue with theirs, which the last test's check over every run covers.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from video_assets.models.captioners import KIND_OCR
from video_assets.store.layout import content_hash, partition_key
from video_assets_tests.dagster_servers import (
    TERMINAL_RUN_STATUSES,
    DagsterServers,
    asset_key,
    launch_asset_backfill,
    launch_job,
    repository_selector,
    running_dagster,
    wait_for_backfill,
    wait_for_run,
)

WORKSPACE = "team-a"
ASSETS = ["segments", "transcripts", "captions", "embeddings", "description"]  # in dependency order
JOB = "process_video"
TIMEOUT = 240.0
# dagster-graphql's own client passes variables to gql 4 the deprecated way.
pytestmark = pytest.mark.filterwarnings("ignore:Using variable_values and operation_name:DeprecationWarning")


@pytest.fixture(scope="module")
def uploads(media) -> dict[str, Path]:
    # A talk with speech in two segments, and a silent moving pattern in one.
    return {"talk.mp4": media.talk(47.0), "pattern.mp4": media.silent_pattern(6.0)}


@pytest.fixture(scope="module")
def servers(uploads: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[DagsterServers]:
    root = tmp_path_factory.mktemp("operations")
    for name, video in uploads.items():
        target = root / "data" / "uploads" / WORKSPACE / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(video, target)
        written = time.time() - 3600  # a finished upload: settled at the sensor's first tick
        os.utime(target, (written, written))
    with running_dagster(root, env={"VIDEO_UPLOAD_SETTLE_SECONDS": "1"}) as running:
        yield running


@pytest.fixture(scope="module")
def videos(servers: DagsterServers, uploads: dict[str, Path]) -> dict[str, str]:
    """Upload name -> partition key, once the upload sensor has added both partitions and its runs ended."""
    expected = {name: partition_key(WORKSPACE, content_hash(path)) for name, path in uploads.items()}
    poll(lambda: set(expected.values()) <= set(partition_keys(servers)), "the upload sensor's partitions", servers)
    poll(lambda: finished(sensor_runs(servers), count=len(expected)), "the upload sensor's runs", servers)
    return expected


@pytest.fixture(scope="module")
def workspace_backfill(servers: DagsterServers, videos: dict[str, str]) -> tuple[str, list[str]]:
    """A backfill of every asset over every video of the workspace, as the API lists them; launched now."""
    keys = sorted(k for k in partition_keys(servers) if k.startswith(f"{WORKSPACE}--"))
    return launch_asset_backfill(servers.client, ASSETS, keys, title=f"all assets of {WORKSPACE}"), keys


def test_uploads_dropped_in_the_bucket_are_processed_through_the_daemon(
    servers: DagsterServers,
    videos: dict[str, str],
    workspace_backfill: tuple[str, list[str]],  # launched here: the next tests run while the daemon takes it
) -> None:
    found = sensor_runs(servers)
    assert sorted(run["tags"]["dagster/partition"] for run in found) == sorted(videos.values())
    for run in found:
        assert run["status"] == "SUCCESS", servers.log_tail()
        assert run["jobName"] == JOB and run["tags"]["dagster/run_key"] == run["tags"]["dagster/partition"]
        assert materialized(run) == {(name, run["tags"]["dagster/partition"]) for name in ASSETS}


def test_rerun_one_asset_for_one_video(servers: DagsterServers, videos: dict[str, str]) -> None:
    key = videos["talk.mp4"]
    run_id = launch_job(servers.client, JOB, {}, tags={"dagster/partition": key}, asset_selection=["captions"])
    assert wait_for_run(servers.client, run_id, TIMEOUT) == "SUCCESS", servers.log_tail()

    (run,) = runs(servers, run_ids=[run_id])
    assert run["assetSelection"] == ["captions"] and run["tags"]["dagster/partition"] == key
    assert materialized(run) == {("captions", key)}  # nothing else was materialized again
    by_asset = materializations(servers, ASSETS, key)
    assert run_id in {event["runId"] for event in by_asset["captions"]}
    for name in ASSETS:
        if name != "captions":
            assert run_id not in {event["runId"] for event in by_asset[name]}, name
    other = videos["pattern.mp4"]
    assert all(
        run_id not in {e["runId"] for e in events} for events in materializations(servers, ASSETS, other).values()
    )


def test_the_run_queue_keeps_one_run_per_video(servers: DagsterServers, videos: dict[str, str]) -> None:
    key = videos["pattern.mp4"]
    params = {
        "selector": {**repository_selector(), "jobName": JOB, "assetSelection": [asset_key("captions")]},
        "runConfigData": {},
        "executionMetadata": {"tags": [{"key": "dagster/partition", "value": key}]},
    }
    launched = servers.query(
        """mutation ($list: [ExecutionParams!]!) { launchMultipleRuns(executionParamsList: $list) {
             __typename ... on LaunchMultipleRunsResult { launchMultipleRunsResult {
               __typename ... on LaunchRunSuccess { run { runId } } ... on Error { message } } }
             ... on Error { message } } }""",
        {"list": [params, params]},  # two runs of one video at once
    )["launchMultipleRuns"]
    results = launched["launchMultipleRunsResult"]
    assert [result["__typename"] for result in results] == ["LaunchRunSuccess", "LaunchRunSuccess"], launched
    run_ids = [result["run"]["runId"] for result in results]
    assert [wait_for_run(servers.client, run_id, TIMEOUT) for run_id in run_ids] == ["SUCCESS", "SUCCESS"]
    first, second = sorted(runs(servers, run_ids=run_ids), key=lambda run: run["startTime"])
    assert first["endTime"] <= second["startTime"], (first, second)


def test_backfill_every_asset_over_a_workspace(
    servers: DagsterServers, videos: dict[str, str], workspace_backfill: tuple[str, list[str]]
) -> None:
    backfill_id, keys = workspace_backfill
    assert keys == sorted(videos.values())
    backfill = wait_for_backfill(servers.client, backfill_id, timeout=300)
    assert backfill["status"] in {"COMPLETED", "COMPLETED_SUCCESS"}, (backfill, servers.log_tail())
    assert backfill["isAssetBackfill"] and sorted(backfill["partitionNames"]) == keys

    backfill_runs = runs(servers, {"dagster/backfill": backfill_id})
    assert backfill_runs and all(run["status"] == "SUCCESS" for run in backfill_runs)
    assert {run["runId"] for run in backfill_runs} == {run["runId"] for run in backfill["runs"]}
    done = set().union(*(materialized(run) for run in backfill_runs))
    assert done == {(name, key) for name in ASSETS for key in keys}
    run_ids = {run["runId"] for run in backfill_runs}
    for key in keys:  # and each asset's own history shows it
        for name, events in materializations(servers, ASSETS, key).items():
            assert run_ids & {event["runId"] for event in events}, (name, key)


def test_metadata_and_lineage_read_back(servers: DagsterServers, videos: dict[str, str]) -> None:
    nodes = servers.query(
        """query ($group: AssetGroupSelector!) { assetNodes(group: $group) {
             assetKey { path } dependencyKeys { path } dependedByKeys { path } } }""",
        {"group": {**repository_selector(), "groupName": "video"}},
    )["assetNodes"]
    lineage = {
        node["assetKey"]["path"][0]: (
            [key["path"][0] for key in node["dependencyKeys"]],
            [key["path"][0] for key in node["dependedByKeys"]],
        )
        for node in nodes
    }
    assert lineage == {
        name: (ASSETS[i - 1 : i] if i else [], ASSETS[i + 1 : i + 2]) for i, name in enumerate(ASSETS)
    }  # segments -> transcripts -> captions -> embeddings -> description

    for name, segment_count in (("talk.mp4", 2), ("pattern.mp4", 1)):  # 30 s segments; a short tail joins
        key = videos[name]
        latest = {asset: events[0] for asset, events in materializations(servers, ASSETS, key).items()}
        segments = latest["segments"]["metadata"]
        assert segments["segment_count"] == segment_count and json.loads(segments["files"]) == [name]
        assert segments["resolution"] == "320x240" and segments["path"].endswith(key.split("--")[1])
        captions = latest["captions"]["metadata"]
        assert captions["captions_are"] == KIND_OCR and captions["model"]
        assert captions["frames"] == 5 * segment_count and isinstance(captions["excerpt"], str)
        assert latest["transcripts"]["metadata"]["excerpt"]
        assert latest["embeddings"]["metadata"]["points"] == segment_count
        assert latest["description"]["metadata"]["method"] == "extractive"  # no endpoint configured
        for asset, event in latest.items():
            assert event["partition"] == key and event["assetKey"]["path"] == [asset]


def test_no_video_ever_had_two_runs_at_once(servers: DagsterServers, videos: dict[str, str]) -> None:
    """Over every run this instance made (the sensor's, the rerun, the pair, the backfill's, launched while
    the others were queued or running): per video, no two were ever started at the same time."""
    by_video: dict[str, list[tuple[float, float]]] = {}
    for run in runs(servers, {}):
        if run["startTime"] is not None and "dagster/partition" in run["tags"]:  # cleanup runs have none
            end = run["endTime"] if run["endTime"] is not None else float("inf")
            by_video.setdefault(run["tags"]["dagster/partition"], []).append((run["startTime"], end))
    assert set(by_video) == set(videos.values())
    for video, spans in by_video.items():
        spans.sort()
        assert all(end <= start for (_, end), (start, _) in zip(spans, spans[1:])), (video, spans)


def test_the_cleanup_job_through_the_api_reports_then_removes_a_partition_added_by_hand(
    servers: DagsterServers, videos: dict[str, str]
) -> None:
    """What an operator does in the UI: add a partition by hand (a typo), launch `cleanup` as a dry run,
    read its report, launch it for real. The processed videos are untouched."""
    bogus = "team-a--0123456789abcdef"
    added = servers.query(
        """mutation ($selector: RepositorySelector!, $key: String!) {
             addDynamicPartition(repositorySelector: $selector, partitionsDefName: "videos", partitionKey: $key) {
               __typename } }""",
        {"selector": repository_selector(), "key": bogus},
    )["addDynamicPartition"]
    assert added["__typename"] == "AddDynamicPartitionSuccess", added
    assert bogus in partition_keys(servers)

    config = {"ops": {"cleanup_orphans": {"config": {"dry_run": True}}}}
    dry_run = launch_job(servers.client, "cleanup", config)
    assert wait_for_run(servers.client, dry_run) == "SUCCESS"
    report = cleanup_report(servers, dry_run)
    assert report["dry_run"] and report["deleted"] == [bogus] and report["folders_scanned"] == len(videos)
    assert bogus in partition_keys(servers)  # a dry run changes nothing

    real = launch_job(servers.client, "cleanup", {"ops": {"cleanup_orphans": {"config": {"dry_run": False}}}})
    assert wait_for_run(servers.client, real) == "SUCCESS"
    assert cleanup_report(servers, real)["partitions_removed"] == [bogus]
    assert sorted(partition_keys(servers)) == sorted(videos.values())


def cleanup_report(servers: DagsterServers, run_id: str) -> dict:
    """The cleanup's `report`, as the UI shows it in the run's step output metadata."""
    logs = servers.query(
        """query ($runId: ID!) { logsForRun(runId: $runId) { __typename
             ... on EventConnection { events { __typename
               ... on ExecutionStepOutputEvent { metadataEntries { label ... on JsonMetadataEntry { jsonString } } }
             } } } }""",
        {"runId": run_id},
    )["logsForRun"]
    assert logs["__typename"] == "EventConnection", logs
    for event in logs["events"]:
        for entry in event.get("metadataEntries") or []:
            if entry["label"] == "report":
                return json.loads(entry["jsonString"])
    raise AssertionError(f"run {run_id} reported no cleanup metadata")


# --- reading through the API -------------------------------------------------------------------------

RUN_FIELDS = """runId status jobName startTime endTime tags { key value } assetSelection { path }
                assetMaterializations { assetKey { path } partition }"""


def runs(
    servers: DagsterServers, tags: dict[str, str] | None = None, *, run_ids: list[str] | None = None
) -> list[dict]:
    """Runs of any job, filtered by tags or ids, with tags as a dict and asset selection as names."""
    filter_: dict = {"tags": [{"key": k, "value": v} for k, v in (tags or {}).items()]}
    if run_ids:
        filter_["runIds"] = run_ids
    result = servers.query(
        f"""query ($filter: RunsFilter) {{ runsOrError(filter: $filter) {{
              __typename ... on Runs {{ results {{ {RUN_FIELDS} }} }} ... on Error {{ message }} }} }}""",
        {"filter": filter_},
    )["runsOrError"]
    assert result["__typename"] == "Runs", result
    return [
        run
        | {
            "tags": {tag["key"]: tag["value"] for tag in run["tags"]},
            "assetSelection": [key["path"][0] for key in run["assetSelection"] or []],
        }
        for run in result["results"]
    ]


def sensor_runs(servers: DagsterServers) -> list[dict]:
    return runs(servers, {"dagster/sensor_name": "upload_sensor"})


def materialized(run: dict) -> set[tuple[str, str]]:
    return {(event["assetKey"]["path"][0], event["partition"]) for event in run["assetMaterializations"]}


def materializations(servers: DagsterServers, assets: list[str], key: str) -> dict[str, list[dict]]:
    """Per asset, its materializations of one partition, newest first, with metadata as a dict."""
    nodes = servers.query(
        """query ($keys: [AssetKeyInput!], $partition: String!) { assetNodes(assetKeys: $keys) {
             assetKey { path }
             assetMaterializations(partitions: [$partition]) {
               runId partition timestamp assetKey { path }
               metadataEntries { label
                 ... on IntMetadataEntry { intValue } ... on FloatMetadataEntry { floatValue }
                 ... on TextMetadataEntry { text } ... on MarkdownMetadataEntry { mdStr }
                 ... on JsonMetadataEntry { jsonString } ... on PathMetadataEntry { path } } } } }""",
        {"keys": [asset_key(name) for name in assets], "partition": key},
    )["assetNodes"]
    found = {}
    for node in nodes:
        events = sorted(node["assetMaterializations"], key=lambda event: int(event["timestamp"]), reverse=True)
        found[node["assetKey"]["path"][0]] = [
            event | {"metadata": _values(event["metadataEntries"])} for event in events
        ]
    assert set(found) == set(assets), found
    return found


def _values(entries: list[dict]) -> dict[str, object]:
    return {entry["label"]: next((v for k, v in entry.items() if k != "label"), None) for entry in entries}


def partition_keys(servers: DagsterServers) -> list[str]:
    node = servers.query(
        """query ($key: AssetKeyInput!) { assetNodeOrError(assetKey: $key) {
             __typename ... on AssetNode { partitionKeys } ... on Error { message } } }""",
        {"key": asset_key("segments")},
    )["assetNodeOrError"]
    assert node["__typename"] == "AssetNode", node
    return node["partitionKeys"]


def finished(found: list[dict], count: int) -> list[dict] | None:
    return found if len(found) >= count and all(run["status"] in TERMINAL_RUN_STATUSES for run in found) else None


def poll(check, what: str, servers: DagsterServers, timeout: float = TIMEOUT):
    """`check()` until it returns something truthy; that value."""
    deadline = time.monotonic() + timeout
    while not (value := check()):
        servers.check_alive()
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}\n{servers.log_tail()}")
        time.sleep(0.5)
    return value
