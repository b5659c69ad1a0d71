"""The Kubernetes side of the definitions: which executor runs the steps, and what a GPU step's pod asks for.

Only used with ``VIDEO_ASSETS_EXECUTOR=k8s`` (deploy/helm/values.yaml sets it); the default stays the
in-process executor with no such tags. A GPU step carries the ``dagster-k8s/config`` op tag that the
``k8s_job_executor`` merges into that step's Kubernetes Job: an ``nvidia.com/gpu`` limit, a node
selector and tolerations. CPU steps carry none and land wherever the cluster puts them.
"""

from __future__ import annotations

import json
from typing import Any

import dagster as dg

from video_assets.settings import BUNDLED, Settings

K8S_CONFIG_TAG = "dagster-k8s/config"  # dagster_k8s.job.USER_DEFINED_K8S_CONFIG_KEY
GPU_RESOURCE = "nvidia.com/gpu"
ALWAYS_GPU_STEPS = ("transcripts", "captions")


def gpu_steps(settings: Settings) -> frozenset[str]:
    """Steps whose pods get a GPU: VIDEO_K8S_GPU_STEPS, or transcripts, captions and embeddings when
    the embedder is a sentence-transformers model (the bundled e5 runs on numpy, on any CPU)."""
    if settings.k8s_gpu_steps.strip():
        return frozenset(s.strip() for s in settings.k8s_gpu_steps.split(",") if s.strip())
    steps = set(ALWAYS_GPU_STEPS)
    if settings.embedding_model != BUNDLED:
        steps.add("embeddings")
    return frozenset(steps)


def parse_node_selector(text: str) -> dict[str, str]:
    """``key=value[,key=value]`` -> a pod's nodeSelector."""
    selector = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"VIDEO_K8S_GPU_NODE_SELECTOR: {item!r} is not key=value")
        selector[key.strip()] = value.strip()
    return selector


def parse_tolerations(text: str) -> list[dict[str, str]]:
    """``key[=value]:Effect[,...]`` -> a pod's tolerations (no value: operator Exists)."""
    tolerations = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        taint, sep, effect = item.rpartition(":")
        if not sep or not taint or effect not in {"NoSchedule", "PreferNoSchedule", "NoExecute"}:
            raise ValueError(
                f"VIDEO_K8S_GPU_TOLERATIONS: {item!r} is not key[=value]:NoSchedule|PreferNoSchedule|NoExecute"
            )
        key, has_value, value = taint.partition("=")
        toleration = {"key": key, "operator": "Equal" if has_value else "Exists", "effect": effect}
        if has_value:
            toleration["value"] = value
        tolerations.append(toleration)
    return tolerations


def gpu_k8s_config(settings: Settings) -> dict[str, Any]:
    """The ``dagster-k8s/config`` of a GPU step: container limits, node selector, tolerations."""
    count = str(settings.k8s_gpus_per_step)
    pod_spec: dict[str, Any] = {}
    node_selector = parse_node_selector(settings.k8s_gpu_node_selector)
    tolerations = parse_tolerations(settings.k8s_gpu_tolerations)
    if node_selector:
        pod_spec["node_selector"] = node_selector
    if tolerations:
        pod_spec["tolerations"] = tolerations
    config: dict[str, Any] = {"container_config": {"resources": {"limits": {GPU_RESOURCE: count}}}}
    if pod_spec:
        config["pod_spec_config"] = pod_spec
    return config


def step_op_tags(settings: Settings, step: str) -> dict[str, str] | None:
    """op_tags of one step: the GPU request with the k8s executor, None otherwise (no tags at all)."""
    if settings.executor != "k8s" or step not in gpu_steps(settings):
        return None
    # A JSON string, as dagster-k8s reads it back (get_user_defined_k8s_config); Dagster would
    # otherwise serialize a dict itself, with a warning.
    return {K8S_CONFIG_TAG: json.dumps(gpu_k8s_config(settings), sort_keys=True)}


def executor_for(settings: Settings) -> dg.ExecutorDefinition:
    """in_process_executor by default: steps of one video in one process, each model loaded once per
    run. With VIDEO_ASSETS_EXECUTOR=k8s, dagster-k8s's k8s_job_executor: one Kubernetes Job per step,
    configured from the K8sRunLauncher of the instance (image, env, volumes) and the steps' tags."""
    if settings.executor == "k8s":
        from dagster_k8s import k8s_job_executor  # the `k8s` extra; not needed for the default

        return k8s_job_executor
    return dg.in_process_executor
