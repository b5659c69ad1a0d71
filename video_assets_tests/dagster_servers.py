"""Real `dagster-webserver` and `dagster-daemon` processes on loopback, and helpers that drive them
through Dagster's GraphQL API (what the UI and `DagsterGraphQLClient` use).

Both processes run from the repository root with `workspace.yaml`, a DAGSTER_HOME of their own holding
the repo's `dagster.yaml`, a data root of their own and an environment given explicitly: nothing of the
caller's Dagster, data, vector store or chat endpoint leaks in, and nothing is sent anywhere but
127.0.0.1. They are stopped by process group (each starts its code server, which starts run workers).

`launch_job` and `wait_for_run` work for any job of the code location, e.g.
`wait_for_run(client, launch_job(client, "cleanup", {"ops": {"cleanup_orphans": {"config": {"dry_run": True}}}}))`.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dagster_graphql import DagsterGraphQLClient
from gql.transport.requests import RequestsHTTPTransport

REPO = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
# workspace.yaml loads a python_module without a location name: the location is named after the module.
LOCATION = "video_assets.definitions"
REPOSITORY = "__repository__"
# What these tests need of the daemon: sensors tick, queued runs start, backfills proceed.
NEEDED_DAEMONS = {"SENSOR", "QUEUED_RUN_COORDINATOR", "BACKFILL"}
TERMINAL_RUN_STATUSES = {"SUCCESS", "FAILURE", "CANCELED"}
# `COMPLETED` for job backfills; asset backfills end in `COMPLETED_SUCCESS` or `COMPLETED_FAILED`.
TERMINAL_BACKFILL_STATUSES = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}
# Settings of the caller's shell that would point the servers at other data or other machines.
_FOREIGN_PREFIXES = ("DAGSTER_", "VIDEO_", "QDRANT_", "OPENAI_", "AZURE_OPENAI_")
_NO_PROXY = {"http": None, "https": None}  # loopback only, whatever proxy the environment names


@dataclass
class DagsterServers:
    port: int
    dagster_home: Path
    data_home: Path
    env: dict[str, str]
    logs: dict[str, Path]
    processes: dict[str, subprocess.Popen[bytes]]

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def client(self) -> DagsterGraphQLClient:
        return graphql_client(self.port)

    def query(self, query: str, variables: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return self.client._execute(query, dict(variables) if variables else None)

    def log_tail(self, lines: int = 40) -> str:
        """The last lines each process wrote, for an assertion message."""
        parts = []
        for name, path in self.logs.items():
            text = path.read_text(errors="replace").splitlines() if path.exists() else []
            parts.append(f"--- {name} ({path}) ---\n" + "\n".join(text[-lines:]))
        return "\n".join(parts)

    def check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise AssertionError(f"{name} exited with {process.returncode}\n{self.log_tail()}")


def graphql_client(port: int, timeout: int = 120) -> DagsterGraphQLClient:
    transport = RequestsHTTPTransport(
        url=f"http://{HOST}:{port}/graphql", use_json=True, timeout=timeout, proxies=_NO_PROXY
    )
    return DagsterGraphQLClient(HOST, port_number=port, transport=transport)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def server_env(dagster_home: Path, data_home: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The caller's environment minus its Dagster/project/endpoint settings, plus these roots; this
    checkout first on the path, so the servers and their run workers import the code under test."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_FOREIGN_PREFIXES)}
    path = [str(REPO), *(p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p)]
    env |= {
        "DAGSTER_HOME": str(dagster_home),
        "VIDEO_ASSETS_HOME": str(data_home),
        "PYTHONPATH": os.pathsep.join(path),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "NO_PROXY": f"{HOST},localhost",
        "no_proxy": f"{HOST},localhost",
    }
    return env | dict(extra or {})


@contextmanager
def running_dagster(
    root: Path, *, env: Mapping[str, str] | None = None, timeout: float = 420.0
) -> Iterator[DagsterServers]:
    """A webserver and a daemon on a fresh DAGSTER_HOME (`root/dagster_home`) and data root
    (`root/data`); yields once the code location is loaded and the daemon beats. Both are stopped on
    the way out, whatever happened inside."""
    dagster_home, data_home, log_dir = root / "dagster_home", root / "data", root / "logs"
    for folder in (dagster_home, data_home, log_dir):
        folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(REPO / "dagster.yaml", dagster_home / "dagster.yaml")
    port = free_port()
    environment = server_env(dagster_home, data_home, env)
    python = sys.executable
    commands = {
        "dagster-webserver": [
            python, "-m", "dagster_webserver", "-h", HOST, "-p", str(port), "-w", "workspace.yaml",
        ],
        "dagster-daemon": [python, "-m", "dagster._daemon", "run", "-w", "workspace.yaml"],
    }  # fmt: skip
    servers = DagsterServers(port, dagster_home, data_home, environment, {}, {})
    with ExitStack() as stack:
        for name, command in commands.items():
            log = stack.enter_context(open(log_dir / f"{name}.log", "wb"))
            servers.logs[name] = log_dir / f"{name}.log"
            process = subprocess.Popen(
                command,
                cwd=REPO,
                env=environment,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a process group: the server, its code server, its run workers
            )
            servers.processes[name] = process
            stack.callback(stop_process_group, process)
        wait_until_ready(servers, timeout)
        yield servers


def stop_process_group(process: subprocess.Popen[bytes], grace: float = 20.0) -> None:
    """SIGTERM to the process group started with `process`, then SIGKILL to what is left of it."""
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace)
    with suppress(ProcessLookupError):  # children (code server, run workers) that outlived their parent
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=grace)


def wait_until_ready(servers: DagsterServers, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    while True:
        servers.check_alive()
        try:
            with opener.open(f"{servers.url}/server_info", timeout=5) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        _before(deadline, "the webserver to answer /server_info", servers)
    while not _location_loaded(servers):
        _before(deadline, f"code location {LOCATION} to load", servers)
    while not healthy_daemons(servers) >= NEEDED_DAEMONS:
        _before(deadline, f"daemons {sorted(NEEDED_DAEMONS)} to report healthy", servers)


def _before(deadline: float, what: str, servers: DagsterServers, interval: float = 0.5) -> None:
    servers.check_alive()
    if time.monotonic() > deadline:
        raise AssertionError(f"timed out waiting for {what}\n{servers.log_tail()}")
    time.sleep(interval)


def _location_loaded(servers: DagsterServers) -> bool:
    data = servers.query(
        """{ workspaceOrError { __typename ... on Workspace { locationEntries {
             name loadStatus locationOrLoadError { __typename ... on PythonError { message } } } } } }"""
    )["workspaceOrError"]
    for entry in data.get("locationEntries", []):
        if entry["name"] != LOCATION or entry["loadStatus"] != "LOADED":
            continue
        loaded = entry["locationOrLoadError"] or {}
        if loaded.get("__typename") == "PythonError":
            raise AssertionError(f"code location {LOCATION} failed to load: {loaded['message']}")
        return loaded.get("__typename") == "RepositoryLocation"
    return False


def healthy_daemons(servers: DagsterServers) -> set[str]:
    statuses = servers.query("{ instance { daemonHealth { allDaemonStatuses { daemonType healthy } } } }")
    return {s["daemonType"] for s in statuses["instance"]["daemonHealth"]["allDaemonStatuses"] if s["healthy"]}


def repository_selector() -> dict[str, str]:
    return {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY}


def asset_key(name: str) -> dict[str, list[str]]:
    return {"path": [name]}


LAUNCH_RUN = """
mutation ($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on Error { message }
  }
}"""


def launch_job(
    client: DagsterGraphQLClient,
    job_name: str,
    run_config: Mapping[str, Any] | None = None,
    *,
    tags: Mapping[str, str] | None = None,
    asset_selection: Sequence[str] | None = None,
) -> str:
    """Launch a run of `job_name` through the `launchRun` mutation; the run id. The run goes through the
    instance's run queue like a launch from the UI. `asset_selection`: asset names, a subset of the job."""
    selector: dict[str, Any] = {**repository_selector(), "jobName": job_name}
    if asset_selection is not None:
        selector["assetSelection"] = [asset_key(name) for name in asset_selection]
    params = {
        "selector": selector,
        "runConfigData": dict(run_config or {}),
        "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in (tags or {}).items()]},
    }
    result = client._execute(LAUNCH_RUN, {"params": params})["launchRun"]
    if result["__typename"] != "LaunchRunSuccess":
        raise AssertionError(f"launching {job_name} failed: {result}")
    return result["run"]["runId"]


def wait_for_run(client: DagsterGraphQLClient, run_id: str, timeout: float = 240.0, interval: float = 0.5) -> str:
    """Poll the run's status until it ends; its final status (SUCCESS, FAILURE, CANCELED)."""
    deadline = time.monotonic() + timeout
    while (status := client.get_run_status(run_id).value) not in TERMINAL_RUN_STATUSES:
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run_id} still {status} after {timeout:g} s")
        time.sleep(interval)
    return status


LAUNCH_BACKFILL = """
mutation ($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PartitionKeysNotFoundError { partitionKeys }
    ... on Error { message }
  }
}"""


def launch_asset_backfill(
    client: DagsterGraphQLClient, assets: Sequence[str], partitions: Sequence[str], title: str | None = None
) -> str:
    """An asset backfill of `assets` over `partitions` (what the UI's Materialize -> partitions launches);
    the daemon's backfill loop turns it into runs. The backfill id."""
    params = {
        "assetSelection": [asset_key(name) for name in assets],
        "partitionNames": list(partitions),
        "title": title,
    }
    result = client._execute(LAUNCH_BACKFILL, {"params": params})["launchPartitionBackfill"]
    if result["__typename"] != "LaunchBackfillSuccess":
        raise AssertionError(f"launching a backfill of {assets} failed: {result}")
    return result["backfillId"]


def wait_for_backfill(
    client: DagsterGraphQLClient, backfill_id: str, timeout: float = 300.0, interval: float = 1.0
) -> dict[str, Any]:
    """Poll until the backfill ends; its `status`, `partitionNames` and `runs` (id, status, tags)."""
    query = """
    query ($id: String!) {
      partitionBackfillOrError(backfillId: $id) {
        __typename
        ... on PartitionBackfill {
          id status partitionNames isAssetBackfill
          error { message }
          runs { runId status tags { key value } }
        }
        ... on Error { message }
      }
    }"""
    deadline = time.monotonic() + timeout
    while True:
        backfill = client._execute(query, {"id": backfill_id})["partitionBackfillOrError"]
        if backfill["__typename"] != "PartitionBackfill":
            raise AssertionError(f"backfill {backfill_id}: {backfill}")
        if backfill["status"] in TERMINAL_BACKFILL_STATUSES:
            return backfill
        if time.monotonic() > deadline:
            raise AssertionError(f"backfill {backfill_id} still {backfill['status']} after {timeout:g} s")
        time.sleep(interval)


def stop_sensor(client: DagsterGraphQLClient, name: str) -> str:
    """Stop a sensor through the `stopSensor` mutation (the UI's toggle); its status after."""
    sensor = client._execute(
        """query ($selector: SensorSelector!) {
             sensorOrError(sensorSelector: $selector) { __typename ... on Sensor { id } ... on Error { message } } }""",
        {"selector": {**repository_selector(), "sensorName": name}},
    )["sensorOrError"]
    if sensor["__typename"] != "Sensor":
        raise AssertionError(f"sensor {name}: {sensor}")
    result = client._execute(
        """mutation ($id: String!) { stopSensor(id: $id) {
             __typename ... on StopSensorMutationResult { instigationState { status } } ... on Error { message } } }""",
        {"id": sensor["id"]},
    )["stopSensor"]
    if result["__typename"] != "StopSensorMutationResult":
        raise AssertionError(f"stopping sensor {name} failed: {result}")
    return result["instigationState"]["status"]
