"""Pure media functions (probe, cut, frames, audio): no Dagster inside."""

from video_assets.media.errors import MediaError
from video_assets.media.probe import MediaInfo, probe

__all__ = ["MediaError", "MediaInfo", "probe"]
