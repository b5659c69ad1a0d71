"""One resource per external system: the video store (upload bucket + data root) and the speech model.

Empty fields fall back to `Settings.from_env()` when a run starts, so one set of definitions serves
any data root; the launchpad or a test may set them explicitly.
"""


import numpy as np
import dagster as dg

from video_assets.models import whisper
from video_assets.settings import Settings
from video_assets.store.layout import DataLayout
from video_assets.store.registry import VideoRegistry
from video_assets.store.uploads import UploadBucket, open_bucket


class VideoStoreResource(dg.ConfigurableResource):
    """The upload bucket and the data root where segments, frames, audio and transcripts live."""

    home: str = ""
    uploads: str = ""

    def settings(self) -> Settings:
        return Settings.from_env(home=self.home or None, uploads=self.uploads or None)

    def layout(self) -> DataLayout:
        return DataLayout(self.settings().home_dir)

    def registry(self) -> VideoRegistry:
        return VideoRegistry(self.layout())

    def bucket(self) -> UploadBucket:
        return open_bucket(self.settings().uploads_location)


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
