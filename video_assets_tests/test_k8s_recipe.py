"""The cluster recipe (deploy/), checked without a cluster.

What a step's pod looks like is built by dagster-k8s itself: the K8sRunLauncher made from the chart
values (a kubeconfig that points nowhere: nothing is contacted), the k8s_job_executor's own
`K8sStepHandler._get_container_context` (run launcher, code location, step tags merged as for a real
step) and `construct_dagster_k8s_job`, as `launch_step` calls it. The chart values are read with
PyYAML; the instance config they stand for is validated by Dagster's own instance schema. What is
not checked here: helm rendering the chart (no Helm, no chart repo), the API server accepting the
objects, images, GPUs, and the translation of chart keys to dagster.yaml keys, which is written
below after the chart's templates, not taken from them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import dagster as dg
import pytest
import yaml
from dagster._config import validate_config
from dagster._core.code_pointer import ModuleCodePointer
from dagster._core.instance.config import dagster_instance_config
from dagster._core.origin import JobPythonOrigin, RepositoryPythonOrigin
from dagster._core.storage.dagster_run import DagsterRun
from dagster_k8s import K8sRunLauncher, k8s_job_executor
from dagster_k8s.container_context import K8sContainerContext
from dagster_k8s.executor import K8sStepHandler
from dagster_k8s.job import USER_DEFINED_K8S_CONFIG_KEY, construct_dagster_k8s_job, get_user_defined_k8s_config

from video_assets.definitions import build_definitions
from video_assets.defs.k8s import gpu_k8s_config, gpu_steps, parse_node_selector, parse_tolerations, step_op_tags
from video_assets.settings import Settings

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
IMAGE = "registry.example.com/video-assets:0.1.0"
RELEASE = "dagster"  # `helm upgrade --install dagster ...`: the chart's fullname
GPU = "nvidia.com/gpu"


@pytest.fixture(scope="module")
def values() -> dict:
    return yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())


@pytest.fixture(scope="module")
def manifests() -> dict[str, dict]:
    docs = list(yaml.safe_load_all((DEPLOY / "k8s" / "video-assets.yaml").read_text()))
    return {f"{d['kind']}/{d['metadata']['name']}": d for d in docs}


@pytest.fixture(scope="module")
def cluster_env(manifests) -> dict[str, str]:
    """The environment of every video-assets pod: the ConfigMap, then the Secret."""
    return {**manifests["ConfigMap/video-assets-env"]["data"], **manifests["Secret/video-assets-secrets"]["stringData"]}


@pytest.fixture(scope="module")
def cluster_settings(cluster_env, tmp_path_factory) -> Settings:
    # The data root is /data on the cluster; here a temporary folder, the rest as the ConfigMap says.
    return Settings.from_env(cluster_env, home=tmp_path_factory.mktemp("k8s-home"))


@pytest.fixture(scope="module")
def kubeconfig(tmp_path_factory) -> str:
    """A kubeconfig naming a server that is never contacted: loading it is all dagster-k8s does at start."""
    path = tmp_path_factory.mktemp("kube") / "config"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "offline", "cluster": {"server": "https://127.0.0.1:1"}}],
                "users": [{"name": "offline", "user": {"token": "none"}}],
                "contexts": [{"name": "offline", "context": {"cluster": "offline", "user": "offline"}}],
                "current-context": "offline",
            }
        )
    )
    return str(path)


def run_launcher_instance_config(values: dict) -> dict:
    """`run_launcher` of the dagster.yaml the chart writes (templates/helpers/instance/_run-launcher.tpl)."""
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    config = {
        "load_incluster_config": launcher["loadInclusterConfig"],
        "job_namespace": launcher.get("jobNamespace") or "default",
        "image_pull_policy": launcher["imagePullPolicy"],
        "service_account_name": f"{RELEASE}",
        "dagster_home": "/opt/dagster/dagster_home",
        "instance_config_map": f"{RELEASE}-instance",
        "postgres_password_secret": f"{RELEASE}-postgresql-secret",
        "env_config_maps": [c["name"] for c in launcher.get("envConfigMaps", [])],
        "env_secrets": [s["name"] for s in launcher.get("envSecrets", [])],
        "volume_mounts": launcher.get("volumeMounts", []),
        "volumes": launcher.get("volumes", []),
    }
    if launcher.get("resources"):
        config["resources"] = launcher["resources"]
    if launcher.get("failPodOnRunFailure"):
        config["fail_pod_on_run_failure"] = True
    return {"module": "dagster_k8s", "class": "K8sRunLauncher", "config": config}


def instance_yaml(values: dict) -> dict:
    """The parts of the chart's dagster.yaml (templates/configmap-instance.yaml) that these values set."""
    pg = values["postgresql"]
    pg_config = {
        "postgres_db": {
            "username": pg["postgresqlUsername"],
            "password": {"env": "DAGSTER_PG_PASSWORD"},
            "hostname": pg["postgresqlHost"] or f"{RELEASE}-postgresql",
            "db_name": pg["postgresqlDatabase"],
            "port": pg["service"]["port"],
        }
    }
    storage = {
        "schedule_storage": ("dagster_postgres.schedule_storage", "PostgresScheduleStorage"),
        "run_storage": ("dagster_postgres.run_storage", "PostgresRunStorage"),
        "event_log_storage": ("dagster_postgres.event_log", "PostgresEventLogStorage"),
    }
    concurrency = values["concurrency"]
    monitoring = values["dagsterDaemon"]["runMonitoring"]
    return {
        "scheduler": {"module": "dagster.core.scheduler", "class": "DagsterDaemonScheduler"},
        **{key: {"module": m, "class": c, "config": pg_config} for key, (m, c) in storage.items()},
        "run_launcher": run_launcher_instance_config(values),
        "run_coordinator": {"module": "dagster.core.run_coordinator", "class": "QueuedRunCoordinator"},
        "concurrency": {
            "pools": {
                "default_limit": concurrency["pools"]["defaultLimit"],
                "granularity": concurrency["pools"]["granularity"],
            },
            "runs": {
                "max_concurrent_runs": concurrency["runs"]["maxConcurrentRuns"],
                "tag_concurrency_limits": concurrency["runs"]["tagConcurrencyLimits"],
            },
        },
        "run_monitoring": {
            "enabled": monitoring["enabled"],
            "start_timeout_seconds": monitoring["startTimeoutSeconds"],
            "poll_interval_seconds": monitoring["pollIntervalSeconds"],
            "free_slots_after_run_end_seconds": monitoring["freeSlotsAfterRunEndSeconds"],
        },
        "telemetry": {"enabled": values["telemetry"]["enabled"]},
    }


def code_location_container_context(values: dict) -> dict:
    """What includeConfigInLaunchedRuns hands from the user deployment to its runs."""
    deployment = values["dagster-user-deployments"]["deployments"][0]
    return {
        "k8s": {
            "env_config_maps": [c["name"] for c in deployment.get("envConfigMaps", [])],
            "env_secrets": [s["name"] for s in deployment.get("envSecrets", [])],
            "volumes": deployment.get("volumes", []),
            "volume_mounts": deployment.get("volumeMounts", []),
        }
    }


def test_default_definitions_stay_embedded(tmp_path):
    """Without VIDEO_ASSETS_EXECUTOR: the in-process executor and no Kubernetes tag on any step."""
    settings = Settings.from_env({}, home=tmp_path)
    assert settings.executor == "in_process"
    job = build_definitions(settings).resolve_job_def("process_video")
    assert job.executor_def is dg.in_process_executor
    for node in job.graph.node_defs:
        assert USER_DEFINED_K8S_CONFIG_KEY not in node.tags, node.name
        assert step_op_tags(settings, node.name) is None


def test_gpu_tag_construction():
    settings = Settings.from_env(
        {
            "VIDEO_ASSETS_EXECUTOR": "k8s",
            "VIDEO_K8S_GPUS_PER_STEP": "2",
            "VIDEO_K8S_GPU_NODE_SELECTOR": "nvidia.com/gpu.present=true, pool=gpu-a100",
            "VIDEO_K8S_GPU_TOLERATIONS": "nvidia.com/gpu:NoSchedule,dedicated=video:NoExecute",
        },
        home="/tmp/unused",
    )
    assert gpu_k8s_config(settings) == {
        "container_config": {"resources": {"limits": {GPU: "2"}}},
        "pod_spec_config": {
            "node_selector": {"nvidia.com/gpu.present": "true", "pool": "gpu-a100"},
            "tolerations": [
                {"key": GPU, "operator": "Exists", "effect": "NoSchedule"},
                {"key": "dedicated", "operator": "Equal", "value": "video", "effect": "NoExecute"},
            ],
        },
    }
    # dagster-k8s reads the tag back and validates it against its own schema.
    tag = step_op_tags(settings, "transcripts")
    parsed = get_user_defined_k8s_config(tag)
    assert parsed.container_config["resources"]["limits"] == {GPU: "2"}
    assert step_op_tags(settings, "segments") is None
    # The bundled embedder runs on numpy; a sentence-transformers one gets a GPU too.
    assert gpu_steps(settings) == {"transcripts", "captions"}
    assert gpu_steps(Settings.from_env({"VIDEO_EMBEDDING_MODEL": "all-MiniLM-L6-v2"}, home="/tmp/unused")) == {
        "transcripts",
        "captions",
        "embeddings",
    }
    assert gpu_steps(Settings.from_env({"VIDEO_K8S_GPU_STEPS": "transcripts"}, home="/tmp/unused")) == {"transcripts"}
    assert parse_node_selector("") == {} and parse_tolerations("") == []
    for bad in ("nvidia.com/gpu", "nvidia.com/gpu:Never"):
        with pytest.raises(ValueError, match="VIDEO_K8S_GPU_TOLERATIONS"):
            parse_tolerations(bad)
    with pytest.raises(ValueError, match="VIDEO_K8S_GPU_NODE_SELECTOR"):
        parse_node_selector("gpu")
    with pytest.raises(ValueError, match="VIDEO_ASSETS_EXECUTOR"):
        Settings.from_env({"VIDEO_ASSETS_EXECUTOR": "celery"}, home="/tmp/unused")


def test_step_pods_built_by_dagster_k8s(values, cluster_settings, kubeconfig):
    """GPU steps' Jobs ask for nvidia.com/gpu on GPU nodes; CPU steps' Jobs ask for nothing of the kind."""
    assert cluster_settings.executor == "k8s"
    job = build_definitions(cluster_settings).resolve_job_def("process_video")
    assert job.executor_def is k8s_job_executor

    # The run launcher the chart configures, made by dagster from that config (validated on the way).
    launcher_config = run_launcher_instance_config(values)["config"]
    checked = validate_config(K8sRunLauncher.config_type(), launcher_config)
    assert checked.success, checked.errors
    launcher = K8sRunLauncher.from_config_value(
        None, {**checked.value, "load_incluster_config": False, "kubeconfig_file": kubeconfig}
    )
    repository_origin = RepositoryPythonOrigin(
        executable_path=sys.executable,
        code_pointer=ModuleCodePointer("video_assets.definitions", "defs", working_directory=None),
        container_image=IMAGE,
        container_context=code_location_container_context(values),
    )
    run = DagsterRun(job_name="process_video", job_code_origin=JobPythonOrigin("process_video", repository_origin))
    # The executor's step handler as k8s_job_executor builds it with empty executor config.
    handler = K8sStepHandler(
        image=None,
        container_context=K8sContainerContext(),
        load_incluster_config=False,
        kubeconfig_file=kubeconfig,
        per_step_k8s_config={},
    )

    op_tags = {node.name: node.tags for node in job.graph.node_defs}

    def step_job(step: str):
        tags = dict(op_tags[step])
        context = SimpleNamespace(
            execute_step_args=SimpleNamespace(step_keys_to_execute=[step]),
            dagster_run=run,
            instance=SimpleNamespace(run_launcher=launcher),
            step_tags={step: tags},
            get_step_context=lambda key: SimpleNamespace(step=SimpleNamespace(op_name=key)),
        )
        container_context = handler._get_container_context(context)  # noqa: SLF001 - the executor's own merge
        job_config = container_context.get_k8s_job_config(None, launcher).with_image(IMAGE)
        return construct_dagster_k8s_job(
            job_config=job_config,
            args=["dagster", "api", "execute_step"],
            job_name=f"dagster-step-{step}",
            pod_name=f"dagster-step-{step}",
            component="step_worker",
            user_defined_k8s_config=container_context.run_k8s_config,
            labels={"dagster/job": "process_video", "dagster/op": step},
            env_vars=[{"name": "DAGSTER_RUN_STEP_KEY", "value": step}],
        )

    for step in ("transcripts", "captions"):
        pod = step_job(step).spec.template.spec
        container = pod.containers[0]
        assert container.resources.limits == {GPU: "1"}, step
        assert pod.node_selector == {"nvidia.com/gpu.present": "true"}, step
        assert [(t.key, t.operator, t.effect) for t in pod.tolerations] == [(GPU, "Exists", "NoSchedule")], step
    for step in ("segments", "embeddings", "description"):
        pod = step_job(step).spec.template.spec
        limits = (pod.containers[0].resources.limits or {}) if pod.containers[0].resources else {}
        assert GPU not in limits, step
        assert not pod.node_selector and not pod.tolerations, step

    # Every step pod: the project's image, its env from the ConfigMap and the Secret, the shared data
    # volume mounted once (the run launcher's and the code location's identical entries merged),
    # and the instance's PostgreSQL password from the chart's secret.
    for step in ("segments", "transcripts", "description"):
        pod = step_job(step).spec.template.spec
        container = pod.containers[0]
        assert container.image == IMAGE
        assert {e.config_map_ref.name for e in container.env_from if e.config_map_ref} == {"video-assets-env"}
        assert {e.secret_ref.name for e in container.env_from if e.secret_ref} == {"video-assets-secrets"}
        volume_names = [v.name for v in pod.volumes]
        assert len(volume_names) == len(set(volume_names)), volume_names
        data = next(v for v in pod.volumes if v.name == "video-assets-data")
        assert data.persistent_volume_claim.claim_name == "video-assets-data"
        mounts = {m.mount_path: m.name for m in container.volume_mounts}
        assert mounts["/data"] == "video-assets-data"
        env = {e.name: e for e in container.env}
        assert env["DAGSTER_HOME"].value == "/opt/dagster/dagster_home"
        assert env["DAGSTER_PG_PASSWORD"].value_from.secret_key_ref.name == f"{RELEASE}-postgresql-secret"


def test_chart_values_structure(values, manifests, cluster_settings):
    # The run launcher: Kubernetes Jobs, with the env and the data volume every pod of a video needs.
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    assert set(values["runLauncher"]["config"]) == {"k8sRunLauncher"}
    assert {c["name"] for c in launcher["envConfigMaps"]} == {"video-assets-env"}
    assert {s["name"] for s in launcher["envSecrets"]} == {"video-assets-secrets"}
    claims = {v["persistentVolumeClaim"]["claimName"] for v in launcher["volumes"]}
    assert claims == {"video-assets-data"}
    assert manifests["PersistentVolumeClaim/video-assets-data"]["spec"]["accessModes"] == ["ReadWriteMany"]
    assert {m["mountPath"] for m in launcher["volumeMounts"]} == {str(cluster_settings_home_on_cluster(manifests))}

    # The instance on PostgreSQL.
    assert values["postgresql"]["enabled"] is True
    assert values["postgresql"]["postgresqlDatabase"] and values["postgresql"]["service"]["port"] == 5432

    # The code location: this project's definitions, an image placeholder, env from ConfigMap/Secret.
    user = values["dagster-user-deployments"]
    assert user["enabled"] is True
    (deployment,) = user["deployments"]
    assert deployment["dagsterApiGrpcArgs"] == ["--module-name", "video_assets.definitions"]
    assert deployment["image"]["repository"] and deployment["image"]["tag"]
    assert [c["name"] for c in deployment["envConfigMaps"]] == ["video-assets-env"]
    assert [s["name"] for s in deployment["envSecrets"]] == ["video-assets-secrets"]

    # The k8s executor and Qdrant as a service: set in the ConfigMap that every pod reads.
    env = manifests["ConfigMap/video-assets-env"]["data"]
    assert env["VIDEO_ASSETS_EXECUTOR"] == "k8s" and cluster_settings.executor == "k8s"
    assert env["QDRANT_URL"] == "http://qdrant:6333" and cluster_settings.qdrant_url == "http://qdrant:6333"
    assert cluster_settings.uploads.startswith("s3://")
    # Every ConfigMap key is one of the project's settings (a typo would be silently ignored).
    known = {row[0] for row in cluster_settings.describe()}
    assert set(env) <= known, set(env) - known
    # Secrets stay out of the ConfigMap and out of the settings.
    secret = manifests["Secret/video-assets-secrets"]["stringData"]
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "QDRANT_API_KEY", "OPENAI_API_KEY"} <= set(secret)
    assert not set(secret) & set(env) and not set(secret) & known

    # Qdrant's chart: one replica with a volume; its release name gives the service QDRANT_URL names.
    qdrant = yaml.safe_load((DEPLOY / "qdrant" / "values.yaml").read_text())
    assert qdrant["replicaCount"] == 1 and qdrant["persistence"]["size"]


def cluster_settings_home_on_cluster(manifests) -> str:
    return manifests["ConfigMap/video-assets-env"]["data"]["VIDEO_ASSETS_HOME"]


def test_instance_config_from_values_is_valid(values, tmp_path, monkeypatch):
    """The dagster.yaml these values stand for passes Dagster's instance schema, with the run
    launcher's and the storages' own config schemas; the queue and pool rules match dagster.yaml's."""
    rendered = instance_yaml(values)
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(rendered))
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", "unused")
    config, custom_class = dagster_instance_config(str(tmp_path))
    assert custom_class is None
    assert config["run_launcher"]["class"] == "K8sRunLauncher"
    checked = validate_config(K8sRunLauncher.config_type(), rendered["run_launcher"]["config"])
    assert checked.success, checked.errors
    from dagster_postgres.run_storage import PostgresRunStorage

    pg = validate_config(PostgresRunStorage.config_type(), rendered["run_storage"]["config"])
    assert pg.success, pg.errors

    # The same queue and pool rules as the embedded dagster.yaml, except the number of runs at once.
    local = yaml.safe_load((Path(__file__).resolve().parents[1] / "dagster.yaml").read_text())
    assert rendered["concurrency"]["pools"] == local["concurrency"]["pools"]
    assert (
        rendered["concurrency"]["runs"]["tag_concurrency_limits"]
        == local["concurrency"]["runs"]["tag_concurrency_limits"]
    )
    for key in ("start_timeout_seconds", "poll_interval_seconds", "free_slots_after_run_end_seconds"):
        assert rendered["run_monitoring"][key] == local["run_monitoring"][key], key


def test_gpu_tag_is_json_dagster_k8s_reads(cluster_settings):
    for step in ("transcripts", "captions"):
        tag = step_op_tags(cluster_settings, step)
        assert json.loads(tag[USER_DEFINED_K8S_CONFIG_KEY]) == gpu_k8s_config(cluster_settings)
