"""Sampled frames: evenly spaced times, decoded by seeking instead of decoding the whole video."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import av
from PIL import Image

from video_assets.media.errors import MediaError

# Past this gap it is cheaper to seek to the keyframe before the next target than to decode forward.
_SEEK_GAP_SECONDS = 2.0


THUMB_WIDTH = 160


@dataclass(frozen=True)
class SampledFrame:
    target: float  # the time asked for, seconds from the start of the video
    time: float  # the time of the frame actually decoded
    path: Path  # the frame as JPEG
    thumbnail: Image.Image  # small copy for contact sheets; full frames never pile up in memory


def frame_times(start: float, end: float, count: int) -> list[float]:
    """`count` evenly spaced times from `start`: 0, 6, 12, 18, 24 for a 30 s segment and 5 frames."""
    step = (end - start) / count
    return [round(start + k * step, 3) for k in range(count)]


def sample_frames(
    path: str | Path, times: Sequence[float], out_dir: Path, prefixes: Sequence[str], quality: int = 85
) -> list[SampledFrame]:
    """One frame per requested time (the nearest decodable one), in one pass over the file's keyframes.

    Each is written as `<out_dir>/<prefix>-<time>.jpg` as soon as it is decoded, so memory stays
    flat however long the video is.
    """
    order = sorted(range(len(times)), key=lambda i: times[i])
    out_dir.mkdir(parents=True, exist_ok=True)
    sampled: list[SampledFrame | None] = [None] * len(times)
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "FRAME"  # no slice threading to gain from; frame threads help long GOPs
            offset = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
            for i, (actual, image) in zip(order, _sample(container, stream, [times[i] for i in order], offset)):
                target = out_dir / f"{prefixes[i]}-{actual:.2f}.jpg"
                image.save(target, quality=quality)
                image.thumbnail((THUMB_WIDTH, THUMB_WIDTH * 4))
                sampled[i] = SampledFrame(times[i], actual, target, image)
    except av.FFmpegError as exc:
        raise MediaError(path, f"decoding frames failed ({exc.strerror or exc})") from exc
    except LookupError as exc:
        raise MediaError(path, str(exc)) from exc
    return [frame for frame in sampled if frame is not None]


def _sample(
    container: av.container.InputContainer, stream: av.VideoStream, targets: list[float], offset: float
) -> Iterator[tuple[float, Image.Image]]:
    frames: Iterator[av.VideoFrame] | None = None
    previous: tuple[float, av.VideoFrame] | None = None
    current: tuple[float, av.VideoFrame] | None = None
    for target in targets:
        if current is None or target - current[0] > _SEEK_GAP_SECONDS:
            container.seek(int((target + offset) / stream.time_base), stream=stream, backward=True)
            frames = container.decode(stream)
            previous = current = None
        assert frames is not None
        while current is None or current[0] < target:
            frame = next(frames, None)
            if frame is None:
                break
            previous, current = current, (_frame_time(frame, offset), frame)
        if current is None:
            raise LookupError(f"no frame decodable near {target:.2f} s")
        chosen = current
        if previous is not None and abs(previous[0] - target) < abs(current[0] - target):
            chosen = previous
        yield round(chosen[0], 3), _display_image(chosen[1])


def _frame_time(frame: av.VideoFrame, offset: float) -> float:
    return float(frame.pts * frame.time_base) - offset if frame.pts is not None else 0.0


def _display_image(frame: av.VideoFrame) -> Image.Image:
    image = frame.to_image()  # RGB
    rotation = int(frame.rotation or 0) % 360
    return image.rotate(rotation, expand=True) if rotation else image
