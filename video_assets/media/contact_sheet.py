"""A contact sheet of a video's sampled frames: one row per segment, for the asset's page in the UI."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

from PIL import Image, ImageDraw


def contact_sheet(
    rows: Sequence[Sequence[tuple[float, Image.Image]]], thumb_width: int = 128, max_rows: int = 12
) -> Image.Image:
    """`rows` of (time, frame); each thumbnail labelled with its time in seconds."""
    rows = list(rows)[:max_rows]
    columns = max((len(r) for r in rows), default=1)
    thumb_height = None
    thumbs: list[list[Image.Image]] = []
    for row in rows:
        images = []
        for seconds, frame in row:
            image = frame.convert("RGB")
            image.thumbnail((thumb_width, thumb_width * 4))
            thumb_height = thumb_height or image.height
            image = image.resize((thumb_width, thumb_height))
            ImageDraw.Draw(image).text((3, 2), f"{seconds:.1f}s", fill="yellow")
            images.append(image)
        thumbs.append(images)
    sheet = Image.new("RGB", (columns * (thumb_width + 2), len(rows) * ((thumb_height or 1) + 2)), "black")
    for r, images in enumerate(thumbs):
        for c, image in enumerate(images):
            sheet.paste(image, (c * (thumb_width + 2), r * ((thumb_height or 1) + 2)))
    return sheet


def as_markdown_image(image: Image.Image, alt: str, quality: int = 70) -> str:
    """Inline JPEG (data URI): the UI shows it without serving files from the data root."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return f"![{alt}](data:image/jpeg;base64,{base64.b64encode(buffer.getvalue()).decode()})"
