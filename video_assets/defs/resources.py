"""One resource per external system: the video store, each model, the vector store, the chat endpoint.

Empty fields fall back to `Settings.from_env()` when a run starts, so one set of definitions serves
any data root; the launchpad or a test may set them explicitly.
"""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import dagster as dg
import numpy as np

from video_assets.defs.run_health import record_run_process
from video_assets.models import whisper
from video_assets.settings import Settings
from video_assets.store.documents import assemble_document, write_document
from video_assets.store.layout import DataLayout
from video_assets.store.registry import VideoRegistry
from video_assets.store.uploads import UploadBucket, open_bucket

if TYPE_CHECKING:
    from video_assets.models.captioners import Captioner
    from video_assets.models.embedder import TextEmbedder
    from video_assets.models.summarizer import Summary
    from video_assets.store.vector_index import VectorIndex


class VideoStoreResource(dg.ConfigurableResource):
    """The upload bucket and the data root where segments, frames, audio and transcripts live."""

    home: str = ""
    uploads: str = ""

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        # Every step of a run uses this resource, in the run worker's process (the job's executor is
        # in-process): the CLI, a daemon-launched run worker, or the pool process of the Celery worker
        # executing the run (`video-assets workers`; the CLI leaves the tag unset for those).
        # Recording that process lets a run whose worker was killed be detected.
        if context.run is not None and context.instance is not None:
            record_run_process(context.instance, context.run)

    def settings(self) -> Settings:
        return Settings.from_env(home=self.home or None, uploads=self.uploads or None)

    def layout(self) -> DataLayout:
        return DataLayout(self.settings().home_dir)

    def document(self, key: str) -> dict:
        """A video's document, assembled from each asset's own file (not read from the exported copy)."""
        return assemble_document(self.layout(), key)

    def write_document(self, key: str) -> dict:
        """Rebuild the exported `segments_metadata.json`, after an asset stored its own file."""
        return write_document(self.layout(), key)

    def registry(self) -> VideoRegistry:
        return VideoRegistry(self.layout(), self.bucket())  # URIs through the bucket as configured now

    def bucket(self) -> UploadBucket:
        """The configured bucket. An S3 one reads its credentials from the standard AWS environment
        (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL, AWS_DEFAULT_REGION) in boto3 itself:
        they are no field here, so they never show in the UI, a run's config or metadata."""
        settings = self.settings()
        return open_bucket(settings.uploads_location, settings.upload_cache_dir)


class WhisperResource(dg.ConfigurableResource):
    """faster-whisper, loaded once per process; device and compute type picked from the hardware."""

    model: str = ""
    device: str = ""
    compute_type: str = ""
    batch_size: int = 0
    language: str = ""

    def _settings(self) -> Settings:
        return Settings.from_env()

    def model_name(self) -> str:
        return self.model or self._settings().whisper_model

    def load(self) -> tuple[object, whisper.WhisperRuntime]:
        settings = self._settings()
        return whisper.load_whisper(
            self.model_name(),
            self.device or settings.whisper_device,
            self.compute_type or settings.whisper_compute_type,
            settings.model_cache_dir,
        )

    def transcribe(self, audio: np.ndarray) -> tuple[whisper.Transcription, whisper.WhisperRuntime]:
        settings = self._settings()
        pipeline, runtime = self.load()
        result = whisper.transcribe(
            pipeline,
            audio,
            batch_size=self.batch_size or settings.whisper_batch_size,
            language=self.language or settings.whisper_language or None,
        )
        return result, runtime


class CaptionerResource(dg.ConfigurableResource):
    """Frame captioner: the offline OCR + visual-statistics default, or a transformers VLM."""

    model: str = ""
    revision: str = ""
    prompt: str = ""
    dtype: str = ""
    batch_size: int = 0

    def resolved(self) -> dict[str, object]:
        settings = Settings.from_env()
        return {
            "name": self.model or settings.caption_model,
            "revision": self.revision or settings.caption_revision or None,
            "prompt": self.prompt or settings.caption_prompt or None,
            "dtype": self.dtype or settings.caption_dtype or None,
            "batch_size": self.batch_size or settings.captioning_batch_size or None,
        }

    def load(self) -> "Captioner":
        from video_assets.models.captioners import load_captioner

        return load_captioner(**self.resolved())  # type: ignore[arg-type]


class EmbedderResource(dg.ConfigurableResource):
    """sentence-transformers text embedder (dense) plus the keyword (sparse) vectors."""

    model: str = ""

    def load(self) -> "TextEmbedder":
        from video_assets.models.embedder import load_embedder

        return load_embedder(self.model or Settings.from_env().embedding_model)


class VectorStoreResource(dg.ConfigurableResource):
    """Qdrant: embedded local mode under <home>/vectors by default, a server when QDRANT_URL is set.

    Local mode allows one client per folder at a time, so it is opened per use and closed after;
    another process holding it is waited for. QDRANT_API_KEY is read from the environment only.
    """

    url: str = ""
    path: str = ""
    collection: str = ""
    lock_wait_seconds: float = 120.0

    @contextmanager
    def open(self) -> Iterator["VectorIndex"]:
        from video_assets.store.vector_access import configured_vector_index

        with configured_vector_index(
            Settings.from_env(),
            url=self.url,
            path=self.path,
            collection=self.collection,
            lock_wait_seconds=self.lock_wait_seconds,
        ) as index:
            yield index


class SummarizerResource(dg.ConfigurableResource):
    """An OpenAI-compatible chat endpoint (OPENAI_BASE_URL; Azure with AZURE_OPENAI_API_VERSION).

    The API key is read from OPENAI_API_KEY at call time: it is never part of the resource's config,
    so it never shows in the UI, the run config or metadata.
    """

    base_url: str = ""
    model: str = ""
    azure_api_version: str = ""
    retry_base_delay: float = 1.0
    max_retries: int = 5

    def endpoint(self) -> str | None:
        return self.base_url or Settings.from_env().openai_base_url or None

    def model_name(self) -> str:
        return self.model or Settings.from_env().summary_model

    def summarize(self, texts: list[str]) -> "Summary":
        from video_assets.models.summarizer import summarize_video

        settings = Settings.from_env()
        return summarize_video(
            texts,
            base_url=self.endpoint(),
            api_key=os.environ.get("OPENAI_API_KEY") or None,
            model=self.model_name(),
            azure_api_version=self.azure_api_version or settings.azure_api_version or None,
            retry_base_delay=self.retry_base_delay,
            max_retries=self.max_retries,
        )
