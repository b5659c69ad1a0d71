"""Captioners on real images: RapidOCR's bundled models, and a tiny random LLaVA built and saved here.

The LLaVA stands in for MiniCPM-V (CUDA only, gigabytes): it is loaded through the very same
`load_captioner(path)` code, so loading, batching and prompt assembly are exercised for real.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from video_assets.models.captioners import (
    CPU_BATCH_SIZE,
    KIND_OCR,
    KIND_VLM,
    OcrVisualCaptioner,
    TransformersVLMCaptioner,
    gpu_batch_size,
    load_captioner,
    merge_line_fragments,
)
from video_assets_tests.tiny_models import save_tiny_blip, save_tiny_llava

os.environ.setdefault("HF_HUB_OFFLINE", "1")

FONT_PATH = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"
RED = (200, 30, 30)


def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    if Path(FONT_PATH).exists():
        return ImageFont.truetype(FONT_PATH, size)
    return ImageFont.load_default(size=size)


def card(background: tuple[int, int, int], title: str = "", subtitle: str = "") -> Image.Image:
    """A 1280x720 frame with a big white title and an optional subtitle line, as in a news video."""
    image = Image.new("RGB", (1280, 720), background)
    draw = ImageDraw.Draw(image)
    if title:
        draw.text((330, 260), title, font=font(110), fill="white")
    if subtitle:
        draw.text((120, 610), subtitle, font=font(30), fill="white")
    return image


@pytest.fixture(scope="module")
def ocr_captioner() -> OcrVisualCaptioner:
    captioner = load_captioner()
    assert isinstance(captioner, OcrVisualCaptioner)
    return captioner


def test_default_is_the_ocr_captioner_loaded_once(ocr_captioner: OcrVisualCaptioner) -> None:
    assert load_captioner("ocr-visual-stats") is ocr_captioner
    assert ocr_captioner.kind == KIND_OCR


def test_reads_on_screen_text_and_names_the_colours(ocr_captioner: OcrVisualCaptioner) -> None:
    caption = ocr_captioner.caption_segment([(0.0, card(RED, "VOLCANO"))], "")

    frame = caption.frames[0]
    assert "VOLCANO" in frame.text
    assert "red" in frame.text and "white" not in frame.text.split("Colours:")[1]  # text is under 10%
    assert "Bright" in frame.text
    words = caption.facts["frames"][0]["ocr"]
    assert [w["text"] for w in words] == ["VOLCANO"] and words[0]["confidence"] > 0.9
    assert caption.text.startswith('On-screen text: "VOLCANO". Colours: red.')


def test_black_frame_is_dark_with_no_text(ocr_captioner: OcrVisualCaptioner) -> None:
    caption = ocr_captioner.caption_segment([(3.0, Image.new("RGB", (1280, 720), "black"))], "")

    assert caption.frames[0].text == "Colours: black. Dark."
    assert caption.facts["frames"][0]["ocr"] == []


def test_identical_frames_are_read_once_and_reuse_the_caption(ocr_captioner: OcrVisualCaptioner) -> None:
    frame = card(RED, "VOLCANO")
    before = ocr_captioner.ocr_calls

    caption = ocr_captioner.caption_segment([(0.0, frame), (6.0, frame.copy()), (12.0, frame.copy())], "")

    assert ocr_captioner.ocr_calls - before == 1
    assert caption.facts["ocr_runs"] == 1
    assert [f.reused_from for f in caption.frames] == [None, 0.0, 0.0]
    assert len({f.text for f in caption.frames}) == 1
    assert "Static shot." in caption.text


def test_a_new_subtitle_line_is_read_again(ocr_captioner: OcrVisualCaptioner) -> None:
    frames = [
        (0.0, card(RED, "VOLCANO", "Lava flows toward the village")),
        (6.0, card(RED, "VOLCANO", "The village is evacuated")),
    ]

    caption = ocr_captioner.caption_segment(frames, "")

    assert caption.facts["ocr_runs"] == 2
    assert caption.frames[1].reused_from is None
    assert "Lava flows toward the village" in caption.text
    assert "The village is evacuated" in caption.text


def test_segment_caption_merges_frames_and_counts_scene_changes(ocr_captioner: OcrVisualCaptioner) -> None:
    frames = [
        (0.0, card(RED, "VOLCANO")),
        (6.0, Image.new("RGB", (1280, 720), "black")),
        (12.0, card((20, 60, 200), "OCEAN")),
    ]

    caption = ocr_captioner.caption_segment(frames, "")

    assert [f.time for f in caption.frames] == [0.0, 6.0, 12.0]
    assert '"VOLCANO", "OCEAN"' in caption.text
    assert {"red", "black", "blue"} <= set(caption.text.split("Colours: ")[1].split(".")[0].split(", "))
    assert "2 scene changes." in caption.text
    assert caption.facts["scene_changes"] == 2


def test_reads_a_title_and_a_subtitle_line_on_a_720p_frame(ocr_captioner: OcrVisualCaptioner) -> None:
    # Speed lives in benchmarks/bench_graph.py; this checks what is read.
    lines = ocr_captioner.read_text(card(RED, "VOLCANO", "Lava flows toward the village at night"))
    assert [line.text for line in lines] == ["VOLCANO", "Lava flows toward the village at night"]


def test_a_4k_frame_is_downscaled_for_ocr_and_still_read(ocr_captioner: OcrVisualCaptioner) -> None:
    frame = card(RED, "VOLCANO", "Lava flows toward the village").resize((3840, 2160))

    lines = ocr_captioner.read_text(frame)

    assert [line.text for line in lines] == ["VOLCANO", "Lava flows toward the village"]
    assert frame.size == (3840, 2160)  # the caller's image is left alone


def busy_background() -> Image.Image:
    """Colour bars with a noisy checkerboard, like ffmpeg's testsrc2: bait for false text boxes."""
    bars = [(255, 0, 0), (0, 255, 0), (255, 255, 0), (0, 0, 255), (255, 0, 255), (0, 255, 255)]
    pixels = np.repeat(np.array(bars, dtype=np.uint8), 1280 // len(bars) + 1, axis=0)[:1280]
    pixels = np.repeat(pixels[None], 720, axis=0)
    rng = np.random.default_rng(3)
    checker = (np.add.outer(np.arange(180) // 16, np.arange(320) // 16) % 2).astype(bool)
    noise = rng.integers(0, 255, (180, 320, 3), dtype=np.uint8)
    pixels[450:630, 800:1120][checker] = noise[checker]
    return Image.fromarray(pixels)


def with_text(background: Image.Image, text: str, size: int, y: int) -> Image.Image:
    """`text` at font `size` on a dark plate, as captions are laid over moving video."""
    image = background.copy()
    draw = ImageDraw.Draw(image)
    box = draw.textbbox((100, y), text, font=font(size))
    draw.rectangle((box[0] - 8, box[1] - 8, box[2] + 8, box[3] + 8), fill=(0, 0, 0))
    draw.text((100, y), text, font=font(size), fill="white")
    return image


@pytest.mark.parametrize("background", ["plain", "busy"])
def test_large_and_24px_text_on_a_720p_frame_survive_the_downscaled_detection(
    ocr_captioner: OcrVisualCaptioner, background: str
) -> None:
    # Detection sees the frame at 640 px, where 24 px text is 12 px high; recognition reads full-size crops.
    plain = Image.new("RGB", (1280, 720), (30, 60, 120))
    base = plain if background == "plain" else busy_background()
    large = with_text(base, "HARBOUR", 160, 200)
    small = with_text(base, "Lava flows toward the village at night", 24, 600)
    assert ImageDraw.Draw(small).textbbox((0, 0), "Lava flows toward the village at night", font=font(24))[3] >= 22

    assert [line.text for line in ocr_captioner.read_text(large)] == ["HARBOUR"]
    assert [line.text for line in ocr_captioner.read_text(small)] == ["Lava flows toward the village at night"]


def test_detection_runs_on_the_frame_scaled_to_640_px(
    ocr_captioner: OcrVisualCaptioner, monkeypatch: pytest.MonkeyPatch
) -> None:
    shapes = []
    detect = ocr_captioner.ocr.text_det.infer
    monkeypatch.setattr(ocr_captioner.ocr.text_det, "infer", lambda x: shapes.append(x.shape) or detect(x))

    lines = ocr_captioner.read_text(card(RED, "VOLCANO", "Lava flows toward the village"))

    assert shapes == [(1, 3, 352, 640)]  # 640x360, rounded to the network's multiple of 32
    assert [line.text for line in lines] == ["VOLCANO", "Lava flows toward the village"]


def test_pieces_of_one_line_are_merged_and_other_lines_kept() -> None:
    def quad(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
        return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float32)

    title, last_letter, subtitle = quad(316, 318, 872, 408), quad(840, 328, 954, 394), quad(236, 590, 1044, 634)

    merged = merge_line_fragments([title, last_letter, subtitle])

    assert [m.tolist() for m in merged] == [quad(316, 318, 954, 408).tolist(), subtitle.tolist()]
    assert len(merge_line_fragments([quad(0, 0, 100, 30), quad(130, 0, 200, 30)])) == 2  # a gap of a full height


def test_gpu_batch_size_follows_free_memory() -> None:
    gib = 2**30
    assert gpu_batch_size(1 * gib) == 1
    assert gpu_batch_size(10 * gib) == 8
    assert gpu_batch_size(80 * gib) == 16


# --- the vision-language model path, on a tiny randomly initialised LLaVA -------------------------


@pytest.fixture(scope="module")
def tiny_vlm_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    folder = tmp_path_factory.mktemp("tiny-llava")
    save_tiny_llava(folder)
    return str(folder)


def frames_of(count: int) -> list[tuple[float, Image.Image]]:
    return [(6.0 * i, card((40 * i, 90, 160), f"FRAME {i}")) for i in range(count)]


def test_vlm_captions_every_frame_in_batches_with_the_transcript_in_the_prompt(tiny_vlm_path: str) -> None:
    captioner = load_captioner(tiny_vlm_path, batch_size=2)
    assert isinstance(captioner, TransformersVLMCaptioner)
    assert captioner.kind == KIND_VLM and captioner.name == tiny_vlm_path
    assert type(captioner.model).__name__ == "LlavaForConditionalGeneration"
    assert load_captioner(tiny_vlm_path, batch_size=2) is captioner  # loaded once per process
    captioner.max_new_tokens = 8  # random weights: the length of the output is all that can be checked

    caption = captioner.caption_segment(frames_of(5), "The XQ7 volcano erupted near the village.")

    assert captioner.batch_sizes == [2, 2, 1]
    assert [f.time for f in caption.frames] == [0.0, 6.0, 12.0, 18.0, 24.0]
    assert all(isinstance(f.text, str) and f.text for f in caption.frames)
    assert caption.text  # the unique frame captions joined
    prompt = captioner.last_prompts[0]
    assert len(captioner.last_prompts) == 1  # the last batch held one frame
    assert "The XQ7 volcano erupted near the village." in prompt
    assert prompt.startswith("USER: <image>\n") and prompt.endswith("ASSISTANT:")  # the chat template
    assert caption.facts["model"] == tiny_vlm_path
    assert not any("video search index" in f.text for f in caption.frames)  # the echoed prompt is cut off


def test_vlm_default_cpu_batch_and_reload_after_release(tiny_vlm_path: str) -> None:
    captioner = load_captioner(tiny_vlm_path, prompt="Caption this. Context: {transcript}")
    assert isinstance(captioner, TransformersVLMCaptioner)
    captioner.max_new_tokens = 4

    captioner.release()
    assert captioner.model is None
    caption = captioner.caption_segment(frames_of(3), "  lava\n flows  ")

    assert captioner.model is not None
    assert captioner.batch_sizes == [CPU_BATCH_SIZE, 3 - CPU_BATCH_SIZE]
    assert len(caption.frames) == 3
    assert "Caption this. Context: lava flows" in captioner.last_prompts[0]


def test_vlm_without_a_chat_template_gets_the_plain_prompt(tmp_path: Path) -> None:
    save_tiny_blip(tmp_path)
    captioner = load_captioner(str(tmp_path), batch_size=3, prompt="a video frame showing")
    assert isinstance(captioner, TransformersVLMCaptioner)
    captioner.max_new_tokens = 6

    caption = captioner.caption_segment(frames_of(3), "ignored by this prompt")

    assert type(captioner.model).__name__ == "BlipForConditionalGeneration"
    assert captioner.batch_sizes == [3]
    assert captioner.last_prompts == ["a video frame showing"] * 3
    assert len(caption.frames) == 3
    assert all(f.text and not f.text.startswith("a video frame showing") for f in caption.frames)
