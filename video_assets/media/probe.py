"""What a file holds, decided by opening it and decoding its first frame, never by its extension.

Only known video containers and video codecs are admitted. FFmpeg opens far more than videos: a
text file named `.txt` is a 0.6 s "video" to its tty demuxer, a gzip archive probes as raw H.263, a
GIF or a PNG has a "video stream" of one picture. An allow-list refuses them all with the reason.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import av

from video_assets.media.errors import MediaError

# FFmpeg demuxer names of the containers videos arrive in, and what people call them.
VIDEO_CONTAINERS = {
    "mov,mp4,m4a,3gp,3g2,mj2": "MP4/MOV",
    "matroska,webm": "MKV/WebM",
    "avi": "AVI",
    "mpegts": "MPEG-TS",
    "mpeg": "MPEG-PS",
    "flv": "FLV",
    "asf": "WMV/ASF",
    "ogg": "Ogg",
    "mxf": "MXF",
}
VIDEO_CODECS = {
    "h264", "hevc", "vvc", "av1", "vp8", "vp9", "mpeg4", "mpeg2video", "mpeg1video", "h263", "msmpeg4v2",
    "msmpeg4v3", "wmv1", "wmv2", "wmv3", "vc1", "theora", "flv1", "prores", "dnxhd", "mjpeg", "ffv1",
}  # fmt: skip
_ACCEPTED = ", ".join(VIDEO_CONTAINERS.values())


@dataclass(frozen=True)
class MediaInfo:
    path: str
    size: int
    duration: float
    container: str
    video_codec: str
    width: int  # as displayed, after rotation
    height: int
    fps: float
    rotation: int
    audio_codec: str | None
    audio_sample_rate: int | None
    audio_channels: int | None
    audio_track: int | None = None  # which audio stream is transcribed (0-based among audio streams)
    audio_tracks: int = 0
    audio_language: str | None = None  # the track's language tag, when the file has one

    @property
    def has_audio(self) -> bool:
        return self.audio_codec is not None

    def as_dict(self) -> dict:
        return asdict(self) | {"has_audio": self.has_audio}


def probe(path: str | Path) -> MediaInfo:
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise MediaError(path, f"cannot read file ({exc.strerror})") from exc
    if size == 0:
        raise MediaError(path, "empty file (0 bytes)")
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except av.FFmpegError as exc:
        raise MediaError(path, f"not a readable media file ({_ffmpeg_reason(exc)})") from exc
    with container:
        fmt = container.format.name
        if fmt not in VIDEO_CONTAINERS:
            raise MediaError(
                path,
                f"not a video: FFmpeg reads it as {container.format.long_name} ({fmt}), not a video container "
                f"(accepted: {_ACCEPTED})",
            )
        videos = [s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic]
        if not videos:
            kind = "audio only" if container.streams.audio else "no video stream"
            raise MediaError(path, f"not a video ({kind}; container {VIDEO_CONTAINERS[fmt]})")
        video = videos[0]
        if video.codec_context.name not in VIDEO_CODECS:
            raise MediaError(path, f"not a video: its stream is {video.codec_context.name}, not a video codec")
        audio_track = _main_audio_track(container)
        audio = container.streams.audio[audio_track] if audio_track is not None else None
        rotation = _first_frame_rotation(path, container, video)
        duration = _duration(container, video)
        if duration <= 0:
            raise MediaError(path, "video has no duration (no decodable frames)")
        width, height = video.codec_context.width, video.codec_context.height
        if rotation % 180:
            width, height = height, width
        rate = video.average_rate or video.guessed_rate or video.base_rate
        return MediaInfo(
            path=str(path),
            size=size,
            duration=duration,
            container=fmt,
            video_codec=video.codec_context.name,
            width=width,
            height=height,
            fps=round(float(rate), 3) if rate else 0.0,
            rotation=rotation,
            audio_codec=audio.codec_context.name if audio else None,
            audio_sample_rate=audio.codec_context.sample_rate if audio else None,
            audio_channels=audio.codec_context.channels if audio else None,
            audio_track=audio_track,
            audio_tracks=len(container.streams.audio),
            audio_language=_language_tag(audio) if audio else None,
        )


def _language_tag(stream: av.AudioStream) -> str | None:
    """The track's language, None for the "undetermined" tag muxers write by default."""
    language = stream.metadata.get("language")
    return None if not language or language == "und" else language


def _main_audio_track(container: av.container.InputContainer) -> int | None:
    """The track a player plays: the one marked default, else the first (a dub or commentary track
    is usually second and not the default)."""
    tracks = container.streams.audio
    if not tracks:
        return None
    marked = [i for i, track in enumerate(tracks) if track.disposition & av.stream.Disposition.default]
    return marked[0] if marked else 0


def _first_frame_rotation(path: Path, container: av.container.InputContainer, video: av.VideoStream) -> int:
    """Decoding one frame proves the stream is real video, and carries the display rotation."""
    try:
        for frame in container.decode(video):
            return int(frame.rotation or 0) % 360
    except av.FFmpegError as exc:
        raise MediaError(path, f"video stream cannot be decoded ({_ffmpeg_reason(exc)})") from exc
    raise MediaError(path, "video stream has no decodable frames")


def _duration(container: av.container.InputContainer, video: av.VideoStream) -> float:
    if video.duration is not None and video.time_base is not None:
        return float(video.duration * video.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    # Some streamed files (e.g. Matroska without a duration) only say by their last packet.
    container.seek(0)
    last = 0.0
    for packet in container.demux(video):
        if packet.pts is not None and packet.time_base is not None:
            last = max(last, float((packet.pts + (packet.duration or 0)) * packet.time_base))
    return last


def _ffmpeg_reason(exc: av.FFmpegError) -> str:
    return exc.strerror or str(exc)
