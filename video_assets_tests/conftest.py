"""Real media made inside the tests: speech from espeak-ng, pictures from PIL, encodes by ffmpeg."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from video_assets.media.ffmpeg import run_ffmpeg
from video_assets.samples import Scene, make_video
from video_assets_tests.speech import SPOKEN

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may download weights
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


class MediaFactory:
    """Builds each sample once per test session and hands out its path."""

    def __init__(self, root: Path):
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)

    def video(self, name: str, scenes: list[Scene], **options: object) -> Path:
        path = self.root / name
        if not path.exists():
            make_video(path, scenes, **options)  # type: ignore[arg-type]
        return path

    def talk(self, seconds: float = 62.0) -> Path:
        """Volcano words in the first 30 s, bicycle words after 30 s, silence to the end."""
        first = Scene(30.0, SPOKEN["volcano"], "VOLCANO", "#b22222")
        rest = seconds - 30.0
        scenes = [first, Scene(min(rest, 20.0), SPOKEN["bicycle"], "BICYCLE", "#2e7d32")]
        if rest > 20.0:
            scenes.append(Scene(rest - 20.0, "", "", "#333333", moving=True))
        return self.video(f"talk_{seconds:g}s.mp4", scenes, size=(320, 240))

    def silent_pattern(self, seconds: float, name: str | None = None, **options: object) -> Path:
        return self.video(
            name or f"pattern_{seconds:g}s.mp4", [Scene(seconds, moving=True)], size=(320, 240), **options
        )

    def no_audio(self) -> Path:
        return self.video("no_audio.mp4", [Scene(12.0, "", "QUIET", "#000080")], size=(320, 240), audio=False)

    def portrait(self) -> Path:
        return self.video("portrait.mp4", [Scene(8.0, SPOKEN["piano"], "UP", "#6a1b9a")], size=(240, 426))

    def vp9_mkv(self) -> Path:
        return self.video(
            "vp9_opus.mkv",
            [Scene(9.0, SPOKEN["piano"], "VP9", "#00695c")],
            size=(320, 240),
            video_codec="libvpx-vp9",
            audio_codec="libopus",
        )

    def sparse_keyframes(self) -> Path:
        """One keyframe only: no stream-copy cut can land near 30 s."""
        return self.silent_pattern(40.0, name="one_keyframe.mp4", keyframe_seconds=1000.0)

    def truncated(self) -> Path:
        """A complete header (faststart) whose media data stops halfway."""
        path = self.root / "truncated.mp4"
        if not path.exists():
            whole = self.root / "faststart.mp4"
            run_ffmpeg(
                ["-i", str(self.talk(62.0)), "-c", "copy", "-movflags", "+faststart", str(whole)],
                source=whole,
                what="remux",
            )
            data = whole.read_bytes()
            path.write_bytes(data[: len(data) // 2])
        return path

    def write(self, name: str, data: bytes) -> Path:
        path = self.root / name
        path.write_bytes(data)
        return path


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> MediaFactory:
    return MediaFactory(tmp_path_factory.mktemp("media"))


@pytest.fixture
def data_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh data root and Dagster home for one test, through the same env vars users set."""
    home = tmp_path / "data"
    monkeypatch.setenv("VIDEO_ASSETS_HOME", str(home))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    monkeypatch.delenv("VIDEO_ASSETS_UPLOADS", raising=False)
    return home


@pytest.fixture
def instance(data_home: Path) -> Iterator[dg.DagsterInstance]:
    """The project's own dagster.yaml (SQLite, pools, run monitoring) under a fresh DAGSTER_HOME."""
    from video_assets.defs.instance import dagster_instance

    test_instance = dagster_instance()
    yield test_instance
    test_instance.dispose()
