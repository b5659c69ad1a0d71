"""Fixed-length segments cut in one ffmpeg pass that also decodes the audio, then sampled frames.

The cut is a stream copy whenever the video's keyframes fall near the planned boundaries: the
segment muxer then splits at the first keyframe at or after each boundary, and the segment times
recorded are the true cut times, measured from the files written. Only when keyframes are too
sparse (or the codecs cannot go into MP4) is the video re-encoded, still in a single pass, with
keyframes forced at the planned boundaries.
"""

from __future__ import annotations

import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import av

from video_assets.media.audio import ffmpeg_audio_output_args
from video_assets.media.errors import MediaError
from video_assets.media.ffmpeg import run_ffmpeg
from video_assets.media.frames import SampledFrame, frame_times, sample_frames
from video_assets.media.probe import MediaInfo

AUDIO_FILE = "audio_16k.wav"
FRAMES_DIR = "frames"
_PIECE_PATTERN = "piece_%05d.mp4"


@dataclass(frozen=True)
class Segment:
    index: int
    start: float
    end: float
    path: Path
    frames: list[SampledFrame] = field(default_factory=list)

    @property
    def duration(self) -> float:
        return self.end - self.start

    @property
    def file_name(self) -> str:
        return segment_file_name(self.index, self.start, self.end)


@dataclass(frozen=True)
class SplitResult:
    segments: list[Segment]
    audio_path: Path | None
    method: str  # "stream-copy" or "re-encode"
    planned: list[tuple[float, float]]
    timings: dict[str, float]
    frames_during_cut: bool  # frames were sampled while ffmpeg cut (the cuts landed on the plan)


def segment_file_name(index: int, start: float, end: float) -> str:
    return f"segment_timestamp-{index}-{start:.2f}-{end:.2f}.mp4"


def plan_segments(duration: float, length: float, min_length: float) -> list[tuple[float, float]]:
    """Boundaries every `length` seconds; a tail shorter than `min_length` joins the segment before it."""
    if duration <= 0:
        return []
    starts = [i * length for i in range(int(duration // length) + 1) if i * length < duration]
    bounds = [(s, min(s + length, duration)) for s in starts]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] < min_length:
        tail = bounds.pop()
        bounds[-1] = (bounds[-1][0], tail[1])
    return [(round(s, 3), round(e, 3)) for s, e in bounds]


def split_video(
    info: MediaInfo,
    out_dir: Path,
    *,
    segment_length: float,
    min_segment_length: float,
    frames_per_segment: int,
) -> SplitResult:
    """Write segment files, the 16 kHz audio and per-segment JPEG frames for `info.path` into `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    planned = plan_segments(info.duration, segment_length, min_segment_length)
    audio_path = out_dir / AUDIO_FILE if info.has_audio else None
    timings: dict[str, float] = {}

    clock = time.perf_counter()
    frames_dir = out_dir / FRAMES_DIR
    with ThreadPoolExecutor(max_workers=1) as pool:
        # Frames for the planned boundaries decode on one core while ffmpeg cuts on the other: a
        # stream copy lands exactly on them whenever the keyframe interval divides the segment length.
        early = pool.submit(_sample_timed, info.path, planned, frames_per_segment, frames_dir)
        method, cuts = _cut_segments(info, out_dir, planned, segment_length, audio_path)
        timings["cut_seconds"] = time.perf_counter() - clock
        frames, timings["frames_seconds"] = early.result()

    segments = _name_segments(out_dir, cuts)
    bounds = [(seg.start, seg.end) for seg in segments]
    on_plan = _same_bounds(bounds, planned, tolerance=0.5 / info.fps if info.fps else 0.02)
    if not on_plan:  # the cuts moved to later keyframes: sample again at the true segment times
        shutil.rmtree(frames_dir)
        frames, timings["frames_seconds"] = _sample_timed(info.path, bounds, frames_per_segment, frames_dir)
    segments = [
        Segment(s.index, s.start, s.end, s.path, frames[i * frames_per_segment : (i + 1) * frames_per_segment])
        for i, s in enumerate(segments)
    ]
    return SplitResult(segments, audio_path if _has(audio_path) else None, method, planned, timings, on_plan)


def _cut_segments(
    info: MediaInfo, out_dir: Path, planned: list[tuple[float, float]], segment_length: float, audio_path: Path | None
) -> tuple[str, list[tuple[float, float, Path]]]:
    """Stream copy when the resulting cuts stay near the plan, else one re-encode with forced keyframes."""
    method, audio_done = "stream-copy", False
    try:
        _cut(info, out_dir, planned, reencode=False, audio_path=audio_path)
        audio_done = True
        cuts = _measured_cuts(out_dir, info)
    except MediaError:
        method = "re-encode"  # e.g. codecs MP4 cannot hold
    else:
        _check_complete(info, cuts)
        if not _close_to_plan(cuts, planned, segment_length):
            method = "re-encode"  # keyframes too sparse for the planned boundaries
    if method == "re-encode":
        _remove_pieces(out_dir)
        _cut(info, out_dir, planned, reencode=True, audio_path=None if audio_done else audio_path)
        cuts = _measured_cuts(out_dir, info)
        _check_complete(info, cuts)
    return method, cuts


def _sample_timed(
    source: str, bounds: list[tuple[float, float]], per_segment: int, frames_dir: Path
) -> tuple[list[SampledFrame], float]:
    clock = time.perf_counter()
    targets = [t for start, end in bounds for t in frame_times(start, end, per_segment)]
    prefixes = [f"frame-{i}-{k}" for i in range(len(bounds)) for k in range(per_segment)]
    return sample_frames(source, targets, frames_dir, prefixes), time.perf_counter() - clock


def _same_bounds(a: list[tuple[float, float]], b: list[tuple[float, float]], tolerance: float) -> bool:
    return len(a) == len(b) and all(abs(x - y) <= tolerance for pa, pb in zip(a, b) for x, y in zip(pa, pb))


def _cut(
    info: MediaInfo, out_dir: Path, planned: list[tuple[float, float]], *, reencode: bool, audio_path: Path | None
) -> None:
    boundaries = ",".join(f"{start:.3f}" for start, _ in planned[1:])
    args = ["-i", info.path, "-map", "0:v:0"]
    if info.has_audio:
        args += ["-map", f"0:a:{info.audio_track or 0}"]
    if reencode:
        args += ["-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-pix_fmt", "yuv420p"]
        args += ["-force_key_frames", boundaries or "0"]
        args += ["-c:a", "aac", "-b:a", "128k"] if info.has_audio else []
    else:
        args += ["-c", "copy"]
    args += ["-f", "segment", "-reset_timestamps", "1", "-segment_format", "mp4"]
    if boundaries:
        args += ["-segment_times", boundaries]
    else:
        args += ["-segment_time", str(10 * max(info.duration, 1.0))]
    args.append(str(out_dir / _PIECE_PATTERN))
    if audio_path is not None:
        args += ffmpeg_audio_output_args(audio_path, info.audio_track or 0)
    run_ffmpeg(args, source=info.path, what="re-encoding cut" if reencode else "stream-copy cut")


def _measured_cuts(out_dir: Path, info: MediaInfo) -> list[tuple[float, float, Path]]:
    """True cut times: each piece's video duration, accumulated from 0."""
    cuts, start = [], 0.0
    for piece in sorted(out_dir.glob("piece_*.mp4")):
        try:
            with av.open(str(piece)) as container:
                stream = container.streams.video[0]
                if stream.duration is not None:
                    length = float(stream.duration * stream.time_base)
                else:
                    length = (container.duration or 0) / av.time_base
        except (av.FFmpegError, IndexError) as exc:
            raise MediaError(info.path, f"cut produced an unreadable segment {piece.name}") from exc
        cuts.append((round(start, 3), round(start + length, 3), piece))
        start += length
    if not cuts:
        raise MediaError(info.path, "cut produced no segments")
    return cuts


def _close_to_plan(cuts: list[tuple[float, float, Path]], planned: list[tuple[float, float]], length: float) -> bool:
    tolerance = max(1.0, 0.1 * length)
    if len(cuts) != len(planned):
        return False
    return all(abs(cut[0] - plan[0]) <= tolerance for cut, plan in zip(cuts, planned))


def _check_complete(info: MediaInfo, cuts: list[tuple[float, float, Path]]) -> None:
    """A header that promises more than the data holds is a truncated upload, not a shorter video."""
    covered = cuts[-1][1]
    if covered < info.duration - max(1.0, 0.05 * info.duration):
        raise MediaError(
            info.path, f"truncated or damaged: media data ends at {covered:.1f} s of {info.duration:.1f} s"
        )


def _name_segments(out_dir: Path, cuts: list[tuple[float, float, Path]]) -> list[Segment]:
    segments = []
    for index, (start, end, piece) in enumerate(cuts):
        target = out_dir / segment_file_name(index, start, end)
        piece.replace(target)
        segments.append(Segment(index, start, end, target))
    return segments


def _remove_pieces(out_dir: Path) -> None:
    for piece in out_dir.glob("piece_*.mp4"):
        piece.unlink()


def _has(path: Path | None) -> bool:
    return path is not None and path.exists() and path.stat().st_size > 44  # more than a bare WAV header
