"""Probing, cutting, frames and audio on real generated media."""

from __future__ import annotations

from pathlib import Path

import av
import pytest
from PIL import Image

from video_assets.media.audio import SAMPLE_RATE, read_wav_16k
from video_assets.media.errors import MediaError
from video_assets.media.frames import frame_times
from video_assets.media.probe import probe
from video_assets.media.segmenter import plan_segments, split_video


def split(path: Path, out: Path, **options: float):
    params = {"segment_length": 30.0, "min_segment_length": 5.0, "frames_per_segment": 5} | options
    return split_video(probe(path), out, **params)


@pytest.mark.parametrize(
    ("duration", "expected"),
    [
        (62.0, [(0.0, 30.0), (30.0, 62.0)]),  # 2 s tail merged
        (47.0, [(0.0, 30.0), (30.0, 47.0)]),  # 17 s tail kept
        (0.4, [(0.0, 0.4)]),
        (90.0, [(0.0, 30.0), (30.0, 60.0), (60.0, 90.0)]),
        (64.9, [(0.0, 30.0), (30.0, 64.9)]),
        (65.0, [(0.0, 30.0), (30.0, 60.0), (60.0, 65.0)]),
    ],
)
def test_plan_merges_short_tail(duration: float, expected: list[tuple[float, float]]) -> None:
    assert plan_segments(duration, 30.0, 5.0) == expected


def test_frame_times_are_evenly_spaced() -> None:
    assert frame_times(0.0, 30.0, 5) == [0.0, 6.0, 12.0, 18.0, 24.0]
    assert frame_times(30.0, 62.0, 4) == [30.0, 38.0, 46.0, 54.0]


def test_probe_reports_streams(media) -> None:
    info = probe(media.talk(62.0))
    assert info.container.startswith("mov,mp4")
    assert (info.video_codec, info.audio_codec) == ("h264", "aac")
    assert (info.width, info.height, info.fps) == (320, 240, 25.0)
    assert info.duration == pytest.approx(62.0, abs=0.1)


def test_62s_cut_by_stream_copy_with_tail_merged(media, tmp_path: Path) -> None:
    result = split(media.talk(62.0), tmp_path)
    assert result.method == "stream-copy"
    assert [(s.start, s.end) for s in result.segments] == [(0.0, 30.0), (30.0, 62.0)]
    assert [s.path.name for s in result.segments] == [
        "segment_timestamp-0-0.00-30.00.mp4",
        "segment_timestamp-1-30.00-62.00.mp4",
    ]
    for seg in result.segments:
        with av.open(str(seg.path)) as clip:  # each file plays on its own, from 0
            assert clip.duration / av.time_base == pytest.approx(seg.duration, abs=0.1)
            assert [s.type for s in clip.streams] == ["video", "audio"]


def test_47s_keeps_a_17s_tail_and_frames_land_on_their_times(media, tmp_path: Path) -> None:
    result = split(media.talk(47.0), tmp_path)
    assert [(s.start, s.end) for s in result.segments] == [(0.0, 30.0), (30.0, 47.0)]
    assert result.frames_during_cut  # keyframes every 2 s: the cuts land on the plan
    first, second = result.segments
    assert [f.time for f in first.frames] == pytest.approx([0, 6, 12, 18, 24], abs=0.041)  # one frame at 25 fps
    assert [f.time for f in second.frames] == pytest.approx([30, 33.4, 36.8, 40.2, 43.6], abs=0.041)
    # The picture sampled at 30 s is the green BICYCLE card, the one at 24 s the red VOLCANO card.
    assert _dominant(first.frames[-1].path) == "red"
    assert _dominant(second.frames[0].path) == "green"
    assert first.frames[0].path.name == "frame-0-0-0.00.jpg" and second.frames[1].path.name == "frame-1-1-33.40.jpg"


def test_stream_copy_cut_at_the_next_keyframe_records_true_times(media, tmp_path: Path) -> None:
    result = split(media.silent_pattern(47.0, name="gop_4s.mp4", keyframe_seconds=4.0), tmp_path)
    assert result.method == "stream-copy"  # 2 s late is within tolerance: no re-encode
    assert [t for s in result.segments for t in (s.start, s.end)] == [0.0, 32.0, 32.0, 47.0]
    assert not result.frames_during_cut  # frames sampled again at the true segment times
    assert [f.time for f in result.segments[0].frames] == pytest.approx([0, 6.4, 12.8, 19.2, 25.6], abs=0.041)
    assert result.segments[1].frames[0].time == pytest.approx(32.0, abs=0.041)
    assert len(list((tmp_path / "frames").glob("*.jpg"))) == 10


def test_tiny_clip_is_one_segment(media, tmp_path: Path) -> None:
    result = split(media.silent_pattern(0.4), tmp_path)
    assert len(result.segments) == 1
    seg = result.segments[0]
    assert [seg.start, seg.end] == pytest.approx([0.0, 0.4], abs=0.05)
    assert len(seg.frames) == 5 and all(f.time <= 0.4 for f in seg.frames)


def test_sparse_keyframes_fall_back_to_one_reencode(media, tmp_path: Path) -> None:
    result = split(media.sparse_keyframes(), tmp_path)
    assert result.method == "re-encode"
    assert [t for s in result.segments for t in (s.start, s.end)] == pytest.approx([0.0, 30.0, 30.0, 40.0], abs=0.05)


def test_audio_is_decoded_once_to_16k_mono(media, tmp_path: Path) -> None:
    result = split(media.talk(47.0), tmp_path)
    samples = read_wav_16k(result.audio_path)
    assert len(samples) / SAMPLE_RATE == pytest.approx(47.0, abs=0.1)
    speech, silence = samples[SAMPLE_RATE : 3 * SAMPLE_RATE], samples[-SAMPLE_RATE:]
    assert abs(speech).max() > 0.05 and abs(silence).max() < 0.01


def test_video_without_audio_has_no_audio_file(media, tmp_path: Path) -> None:
    result = split(media.no_audio(), tmp_path)
    assert result.audio_path is None and len(result.segments) == 1


def test_portrait_and_vp9_mkv(media, tmp_path: Path) -> None:
    portrait = probe(media.portrait())
    assert (portrait.width, portrait.height) == (240, 426)
    result = split(media.portrait(), tmp_path / "p")
    assert Image.open(result.segments[0].frames[0].path).size == (240, 426)

    mkv = probe(media.vp9_mkv())
    assert (mkv.container, mkv.video_codec, mkv.audio_codec) == ("matroska,webm", "vp9", "opus")
    result = split(media.vp9_mkv(), tmp_path / "m")
    assert len(result.segments) == 1 and result.audio_path is not None
    with av.open(str(result.segments[0].path)) as clip:
        assert clip.streams.video[0].codec_context.name in {"vp9", "h264"}


@pytest.mark.parametrize(
    ("name", "data", "cause"),
    [
        ("empty.mp4", b"", "empty file"),
        ("random.mp4", bytes(range(256)) * 64, "not a readable media file"),
        ("notes.mov", b"meeting notes, not a movie\n" * 50, "not a readable media file"),
    ],
)
def test_probe_rejects_non_video_with_file_and_cause(media, name: str, data: bytes, cause: str) -> None:
    path = media.write(name, data)
    with pytest.raises(MediaError) as raised:
        probe(path)
    assert str(path) in str(raised.value) and cause in str(raised.value)


def test_text_and_archives_are_refused_whatever_ffmpeg_makes_of_them(media) -> None:
    import gzip

    text = b"Meeting notes\n" + b"- revenue grew in every region this spring\n" * 40
    readme = media.write("readme.txt", text)  # FFmpeg's tty demuxer would make it a 0.6 s "video"
    archive = media.write("archive.gz", gzip.compress(text * 20))  # probes as raw H.263 by its bytes
    for path in (readme, archive):
        with pytest.raises(MediaError, match="not a (video|readable media file)") as raised:
            probe(path)
        assert str(path) in str(raised.value)
    with pytest.raises(MediaError, match=r"reads it as .*\(tty\), not a video container"):
        probe(readme)


def test_audio_only_and_animated_gif_are_not_videos(media, tmp_path: Path) -> None:
    from video_assets.media.ffmpeg import run_ffmpeg
    from video_assets.samples import draw_card

    song = tmp_path / "song.m4a"
    run_ffmpeg(
        ["-f", "lavfi", "-i", "sine=frequency=440:duration=3", "-c:a", "aac", str(song)], source=song, what="encode"
    )
    with pytest.raises(MediaError, match=r"not a video \(audio only; container MP4/MOV\)"):
        probe(song)

    gif = tmp_path / "moving.gif"
    frames = [draw_card(word, colour, (64, 48)) for word, colour in (("A", "#aa0000"), ("B", "#00aa00"))]
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=200, loop=0)
    with pytest.raises(MediaError, match="not a video container"):
        probe(gif)


def test_still_image_is_not_a_video(media, tmp_path: Path) -> None:
    from video_assets.samples import draw_card

    picture = tmp_path / "card.png"
    draw_card("HELLO", "#123456", (64, 48)).save(picture)
    with pytest.raises(MediaError, match="not a video"):
        probe(picture)


def test_truncated_upload_is_reported_not_shortened(media, tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="truncated"):
        split(media.truncated(), tmp_path)


def _dominant(path: Path) -> str:
    r, g, b = Image.open(path).convert("RGB").resize((1, 1)).getpixel((0, 0))
    return "red" if r > max(g, b) else "green" if g > max(r, b) else "blue"


def test_the_default_audio_track_is_the_one_transcribed(media, tmp_path: Path) -> None:
    """A tone on track 1 and speech on track 2, marked default (a dub or commentary layout)."""
    from video_assets.media.ffmpeg import run_ffmpeg
    from video_assets.samples import AUDIO_RATE, speak, write_wav

    speech = tmp_path / "speech.wav"
    write_wav(speech, speak("The volcano erupted near the village."), AUDIO_RATE)
    video = tmp_path / "two_tracks.mkv"
    run_ffmpeg(
        [
            *("-f", "lavfi", "-i", "color=c=navy:s=160x120:r=10:d=6"),
            *("-f", "lavfi", "-i", "sine=frequency=440:duration=6"),
            *("-i", str(speech)),
            *("-map", "0:v", "-map", "1:a", "-map", "2:a", "-c:v", "libx264", "-c:a", "aac"),
            *("-metadata:s:a:0", "language=eng", "-metadata:s:a:1", "language=ita"),
            *("-disposition:a:0", "0", "-disposition:a:1", "default", "-t", "6", str(video)),
        ],
        source=video,
        what="encode",
    )
    info = probe(video)
    assert (info.audio_track, info.audio_tracks, info.audio_language) == (1, 2, "ita")

    result = split(video, tmp_path / "out")
    audio = read_wav_16k(result.audio_path)
    spoken = audio.size / SAMPLE_RATE
    # The speech track lasts as long as its sentence (about 2.5 s); the tone track would last 6 s.
    assert 1.5 < spoken < 4.0 and float(abs(audio).max()) > 0.05


def test_ffmpeg_dies_with_the_process_that_started_it(tmp_path: Path) -> None:
    """`kill -9` of a run half-way must not leave ffmpeg writing under PID 1."""
    import contextlib
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "endless.mp4"
    script = (
        "from video_assets.media.ffmpeg import run_ffmpeg;"
        f"run_ffmpeg(['-re', '-f', 'lavfi', '-i', 'testsrc2=size=160x120:rate=10:d=600', {str(out)!r}],"
        f" source={str(out)!r}, what='encode')"
    )
    runner = subprocess.Popen([sys.executable, "-c", script])
    children: list[int] = []
    try:
        deadline = time.monotonic() + 30
        while not children and time.monotonic() < deadline:
            time.sleep(0.2)
            listing = Path(f"/proc/{runner.pid}/task/{runner.pid}/children")
            children = [int(pid) for pid in listing.read_text().split()] if listing.exists() else []
        assert children, "ffmpeg never started"
        os.kill(runner.pid, signal.SIGKILL)
        runner.wait(timeout=10)
        deadline = time.monotonic() + 10
        while Path(f"/proc/{children[0]}").exists() and time.monotonic() < deadline:
            status = Path(f"/proc/{children[0]}/status").read_text() if Path(f"/proc/{children[0]}").exists() else ""
            if "State:\tZ" in status:
                break
            time.sleep(0.1)
        status = Path(f"/proc/{children[0]}/status")
        assert not status.exists() or "State:\tZ" in status.read_text(), "ffmpeg outlived the process that ran it"
    finally:
        if runner.poll() is None:
            runner.kill()
        for pid in children:  # stopped by PID whatever happened above
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
