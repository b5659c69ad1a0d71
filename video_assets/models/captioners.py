"""Frame captions for a segment: one interface, an OCR + measurement default and a vision-language model.

- ``ocr-visual-stats`` (default, CPU, nothing downloaded): on-screen text read by RapidOCR (its ONNX
  models ship in the wheel) plus measured facts: dominant colours in words, brightness, motion and
  scene changes. It describes what it can measure and labels itself as such; it does not "see" scenes.
- any other name (a Hugging Face model id or a local folder): a vision-language model through
  transformers, e.g. ``openbmb/MiniCPM-V-2_6-int4`` on CUDA in 4 bit, the original worker's model.
"""

from __future__ import annotations

import functools
import gc
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from PIL import Image

logger = logging.getLogger(__name__)

OCR_VISUAL_STATS = "ocr-visual-stats"
KIND_OCR = "ocr+visual-statistics"
KIND_VLM = "vision-language-model"

Frames = Sequence[tuple[float, Image.Image]]


@dataclass(frozen=True)
class FrameCaption:
    time: float  # seconds in the video
    text: str  # searchable text for this frame
    reused_from: float | None = None  # time of the near-identical earlier frame whose caption was reused


@dataclass(frozen=True)
class SegmentCaption:
    text: str  # the segment's caption, used for search
    frames: list[FrameCaption]
    facts: dict[str, Any] = field(default_factory=dict)  # JSON-ready measurements behind the text


class Captioner(Protocol):
    name: str  # "ocr-visual-stats" or the model id / folder
    kind: str  # KIND_OCR or KIND_VLM: what produced the captions, for honest metadata

    def caption_segment(self, frames: Frames, transcript: str) -> SegmentCaption: ...

    def release(self) -> None:
        """Free what the model holds (GPU memory); the next caption call loads it again."""


def load_captioner(
    name: str = OCR_VISUAL_STATS,
    *,
    revision: str | None = None,
    prompt: str | None = None,
    dtype: str | None = None,
    device: str | None = None,
    batch_size: int | None = None,
) -> Captioner:
    """The captioner `name` names, built once per process for the same arguments."""
    return _load_captioner(name or OCR_VISUAL_STATS, revision, prompt, dtype, device, batch_size)


@functools.lru_cache(maxsize=4)
def _load_captioner(
    name: str,
    revision: str | None,
    prompt: str | None,
    dtype: str | None,
    device: str | None,
    batch_size: int | None,
) -> Captioner:
    if name == OCR_VISUAL_STATS:
        return OcrVisualCaptioner()
    return TransformersVLMCaptioner(
        name, revision=revision, prompt=prompt, dtype=dtype, device=device, batch_size=batch_size
    )


def unique_in_order(texts: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(t for t in texts if t))


# ---------------------------------------------------------------------------------------------------
# OCR + visual statistics

# Frames are compared on a 320x180 grayscale thumbnail: 4x4 box averaging hides sensor and
# compression noise, yet one changed character of 20 px text still moves ~9 of its pixels by more
# than PIXEL_CHANGE_LEVEL (measured; noise at sigma 4 + JPEG q70 moved none). A frame is a
# near-duplicate of the last OCR'd one, and reuses its text, when at most DUPLICATE_MAX_CHANGED_PIXELS
# moved: in static slides and screencasts OCR runs only when something on screen changed.
GRAY_SIZE = (320, 180)
PIXEL_CHANGE_LEVEL = 0.06
DUPLICATE_MAX_CHANGED_PIXELS = 3
# Colours are counted on a smaller thumbnail: shares of a few percent don't need more pixels.
COLOUR_SIZE = (80, 45)
# Mean absolute gray difference (0..1) between consecutive sampled frames above which we call a cut.
SCENE_CHANGE_DIFF = 0.2
STATIC_DIFF = 0.02
# Text is found on the frame scaled to OCR_DETECT_SIDE px (longer side) and read from crops of the frame
# at up to OCR_MAX_SIDE. Measured on 50 moving 1280x720 frames (testsrc2 under a title and a 30 px
# subtitle): detection at full size took 3/4 of the time in ~25 false boxes per frame on the pattern's
# noisy checkerboard, each then recognised. At 640 px those vanish, detection costs 1/4 and every
# title and subtitle word is still read (subtitle spacing better, as the boxes come out looser),
# as is text of 15-30 px height on plain and busy backgrounds; only testsrc2's ~10 px frame counter
# is lost. 512 px misread 14-18 px text; 704-768 px split or merged words more often than 640.
OCR_DETECT_SIDE = 640
OCR_MAX_SIDE = 1280
MIN_OCR_CONFIDENCE = 0.5
# A colour is named when it covers this share of the frame; at most this many are named.
MIN_COLOUR_SHARE = 0.1
MAX_COLOURS = 3


@dataclass(frozen=True)
class OcrLine:
    text: str
    confidence: float


@dataclass(frozen=True)
class FrameFacts:
    time: float
    ocr: list[OcrLine]
    colours: list[tuple[str, float]]  # (name, share of the frame), largest first
    brightness: float  # mean HSV value, 0..1
    motion: float | None  # mean absolute gray difference to the previous sampled frame
    reused_from: float | None


def brightness_word(value: float) -> str:
    if value < 0.25:
        return "dark"
    if value < 0.5:
        return "dim"
    return "bright"


PALETTE = tuple(
    ["black", "white", "gray", "red", "orange", "yellow", "green", "cyan", "blue", "purple", "pink", "brown"]
)
# Upper hue bound (degrees) of each band, from 0; red wraps around 360.
HUE_BANDS = (
    (15, "red"),
    (40, "orange"),
    (70, "yellow"),
    (165, "green"),
    (195, "cyan"),
    (255, "blue"),
    (315, "purple"),
    (345, "pink"),
    (361, "red"),
)


def colour_names(hsv: np.ndarray) -> np.ndarray:
    """Palette index of each pixel of an HSV image (PIL's 0..255 channels), by hue-band rules.

    Achromatic pixels first (too dark, or too little saturation), then hue bands; dark or greyish
    oranges and dark reds are brown and pale reds are pink, which is how people name them.
    """
    h = hsv[..., 0].astype(np.float32) * (360.0 / 256.0)
    s = hsv[..., 1].astype(np.float32) / 255.0
    v = hsv[..., 2].astype(np.float32) / 255.0
    reddish = (h < 15) | (h >= 345)
    orangish = (h >= 15) & (h < 40)
    # np.select takes the first rule that holds, so the order below is the precedence.
    rules = [
        (v < 0.2, "black"),
        ((s < 0.15) & (v >= 0.85), "white"),
        (s < 0.15, "gray"),
        (orangish & (v < 0.7), "brown"),
        (reddish & (v < 0.4), "brown"),
        (orangish & (s < 0.45), "brown"),
        (reddish & (s < 0.5) & (v >= 0.7), "pink"),
    ]
    lower = 0.0
    for upper, name in HUE_BANDS:
        rules.append(((h >= lower) & (h < upper), name))
        lower = upper
    return np.select([cond for cond, _ in rules], [PALETTE.index(name) for _, name in rules], default=0)


def dominant_colours(image: Image.Image) -> list[tuple[str, float]]:
    hsv = np.asarray(image.convert("RGB").resize(COLOUR_SIZE, Image.Resampling.BOX).convert("HSV"))
    shares = np.bincount(colour_names(hsv).ravel(), minlength=len(PALETTE)) / (COLOUR_SIZE[0] * COLOUR_SIZE[1])
    ranked = sorted(((PALETTE[i], round(float(share), 3)) for i, share in enumerate(shares)), key=lambda c: -c[1])
    return [(name, share) for name, share in ranked if share >= MIN_COLOUR_SHARE][:MAX_COLOURS]


def brightness(image: Image.Image) -> float:
    """Mean HSV value (the brightest channel), 0..1: saturated red counts as bright, as people see it."""
    small = image.convert("RGB").resize(COLOUR_SIZE, Image.Resampling.BOX)
    return float(np.asarray(small, dtype=np.float32).max(axis=2).mean() / 255.0)


def gray_thumbnail(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("L").resize(GRAY_SIZE, Image.Resampling.BOX), dtype=np.float32) / 255.0


def changed_pixels(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.count_nonzero(np.abs(a - b) > PIXEL_CHANGE_LEVEL))


def frame_text(lines: Sequence[str], colours: Sequence[tuple[str, float]], brightness: float) -> str:
    parts = []
    if lines:
        parts.append("On-screen text: " + ", ".join(f'"{line}"' for line in lines) + ".")
    if colours:
        parts.append("Colours: " + ", ".join(name for name, _ in colours) + ".")
    parts.append(brightness_word(brightness).capitalize() + ".")
    return " ".join(parts)


def segment_caption_text(facts: Sequence[FrameFacts]) -> str:
    """One compact caption from all frames: text seen, colours by total share, brightness, cuts.

    Merged rather than concatenated per frame so the caption stays short: the embedder reads at most
    256 tokens, and the transcript that follows the caption must still fit.
    """
    lines = unique_in_order([line.text for f in facts for line in f.ocr])
    shares: Counter[str] = Counter()
    for f in facts:
        shares.update(dict(f.colours))
    colours = [(name, share / len(facts)) for name, share in shares.most_common(MAX_COLOURS)]
    text = frame_text(lines, colours, float(np.mean([f.brightness for f in facts])))
    motions = [f.motion for f in facts if f.motion is not None]
    cuts = sum(m > SCENE_CHANGE_DIFF for m in motions)
    if cuts:
        text += f" {cuts} scene change{'s' if cuts > 1 else ''}."
    elif motions and max(motions) < STATIC_DIFF:
        text += " Static shot."
    return text


def facts_as_dict(facts: Sequence[FrameFacts]) -> dict[str, Any]:
    motions = [f.motion for f in facts if f.motion is not None]
    return {
        "frames": [
            {
                "time": f.time,
                "ocr": [{"text": line.text, "confidence": line.confidence} for line in f.ocr],
                "colours": [{"name": name, "share": share} for name, share in f.colours],
                "brightness": brightness_word(f.brightness),
                "brightness_value": round(f.brightness, 3),
                "motion": None if f.motion is None else round(f.motion, 4),
                "reused_from": f.reused_from,
            }
            for f in facts
        ],
        "scene_changes": sum(m > SCENE_CHANGE_DIFF for m in motions),
        "mean_motion": round(float(np.mean(motions)), 4) if motions else None,
        "ocr_runs": sum(f.reused_from is None for f in facts),
    }


# Detection boxes on one line closer than this share of their height are one text line: at 640 px the
# detector sometimes splits a word of large type ("VOLCAN" + "O"), and the pieces misread alone.
LINE_GAP = 0.5
LINE_OVERLAP = 0.6
# Frames of a segment are read in parallel, one ONNX thread each. Measured on this 2-core machine, 50
# moving 720p frames: two workers took 0.095 s/frame against 0.148 for one while the cores were free
# (load 0.2); with other processes loading them (load 4-6) the two were no faster (0.16 vs 0.14), yet
# two intra-op threads per frame then made a frame 1.3-2x slower than one, as the threads wait on each other.
OCR_WORKERS = max(1, min(2, os.cpu_count() or 1))


def merge_line_fragments(boxes: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Detection quadrilaterals, each group of pieces of one line replaced by the group's bounding rectangle.

    Pieces are linked pairwise (overlapping vertically, nearly touching horizontally) and joined by
    connected group, in whole-array steps: a screen of text yields hundreds of boxes.
    """
    if len(boxes) < 2:
        return [np.asarray(box, dtype=np.float32) for box in boxes]
    quads = np.asarray(boxes, dtype=np.float32)
    x0, y0 = quads[..., 0].min(axis=1), quads[..., 1].min(axis=1)
    x1, y1 = quads[..., 0].max(axis=1), quads[..., 1].max(axis=1)
    height = np.minimum.outer(y1 - y0, y1 - y0)
    overlap = np.minimum.outer(y1, y1) - np.maximum.outer(y0, y0)
    gap = np.maximum.outer(x0, x0) - np.minimum.outer(x1, x1)
    linked = (height > 0) & (overlap >= LINE_OVERLAP * height) & (gap <= LINE_GAP * height)
    group = list(range(len(quads)))  # union-find parents

    def root(i: int) -> int:
        while group[i] != i:
            group[i] = group[group[i]]
            i = group[i]
        return i

    for i, j in zip(*np.nonzero(np.triu(linked, 1))):
        group[root(int(j))] = root(int(i))
    members: dict[int, list[int]] = {}
    for i in range(len(quads)):
        members.setdefault(root(i), []).append(i)
    merged = []
    for ids in members.values():
        if len(ids) == 1:
            merged.append(quads[ids[0]])
            continue
        left, top, right, bottom = x0[ids].min(), y0[ids].min(), x1[ids].max(), y1[ids].max()
        merged.append(np.array([[left, top], [right, top], [right, bottom], [left, bottom]], dtype=np.float32))
    return merged


class OcrVisualCaptioner:
    name = OCR_VISUAL_STATS
    kind = KIND_OCR

    def __init__(self, min_confidence: float = MIN_OCR_CONFIDENCE) -> None:
        from rapidocr_onnxruntime import RapidOCR
        from rapidocr_onnxruntime.ch_ppocr_det.utils import DetPreProcess

        self.min_confidence = min_confidence
        # RapidOCR's pieces are called one by one: its __call__ can only detect on the image it reads,
        # and detection wants the small frame, recognition the large one. Recognition costs time in
        # proportion to the input's width (measured: 20 ms at 320 px, 64 ms at 960 px), so each crop is
        # recognised alone (a batch is padded to its widest crop: a title beside a long subtitle cost as
        # much as a second subtitle) and padded to 160 px, not 320: -15% recognition time, same words.
        self.ocr = RapidOCR(
            text_score=min_confidence, intra_op_num_threads=1, rec_batch_num=1, rec_img_shape=[3, 48, 160]
        )
        det = self.ocr.text_det
        # "max" never resizes a frame up to OCR_DETECT_SIDE; sizes round to the network's multiple of 32.
        self._det_preprocess = DetPreProcess(OCR_DETECT_SIDE, "max", det.mean, det.std)
        self.ocr_calls = 0  # OCR passes run, for tests and timing
        self.stage_seconds = {"detect": 0.0, "recognise": 0.0}  # summed over frames (and workers), for timing
        self._lock = threading.Lock()

    def read_text(self, image: Image.Image) -> list[OcrLine]:
        with self._lock:
            self.ocr_calls += 1
        return self._read_text(image)

    def _read_text(self, image: Image.Image) -> list[OcrLine]:
        import cv2

        started = time.perf_counter()
        image = image.convert("RGB")
        if max(image.size) > OCR_MAX_SIDE:
            image = image.copy()
            image.thumbnail((OCR_MAX_SIDE, OCR_MAX_SIDE), Image.Resampling.BILINEAR)
        frame = cv2.cvtColor(np.asarray(image), cv2.COLOR_RGB2BGR)
        height, width = frame.shape[:2]
        scale = min(1.0, OCR_DETECT_SIDE / max(height, width))
        small = frame
        if scale < 1.0:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            small = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
        det = self.ocr.text_det
        scores = det.infer(self._det_preprocess(small))[0]
        boxes, _ = det.postprocess_op(scores, small.shape[:2])
        boxes = det.filter_tag_det_res(boxes, small.shape[:2])
        detected = time.perf_counter()
        lines: list[OcrLine] = []
        if len(boxes):  # nothing to recognise in a frame without text
            boxes = self.ocr.sorted_boxes(np.array(merge_line_fragments([box / scale for box in boxes])))
            texts, _ = self.ocr.text_rec(self.ocr.get_crop_img_list(frame, boxes))
            lines = [OcrLine(str(text).strip(), round(float(score), 3)) for text, score, *_ in texts]
        with self._lock:
            self.stage_seconds["detect"] += detected - started
            self.stage_seconds["recognise"] += time.perf_counter() - detected
        return [line for line in lines if line.text and line.confidence >= self.min_confidence]

    def caption_segment(self, frames: Frames, transcript: str = "") -> SegmentCaption:
        # The transcript is not needed: this captioner reports only what the frames show.
        grays = [gray_thumbnail(image) for _, image in frames]
        # Which frames to read depends only on pixels, so it is settled before any OCR runs.
        source: list[int] = []  # index of the frame whose text each frame shows
        for i, gray in enumerate(grays):
            near = bool(source) and changed_pixels(gray, grays[source[-1]]) <= DUPLICATE_MAX_CHANGED_PIXELS
            source.append(source[-1] if near else i)
        to_read = sorted(set(source))
        with self._lock:
            self.ocr_calls += len(to_read)
        images = [frames[i][1] for i in to_read]
        if len(images) > 1 and OCR_WORKERS > 1:
            with ThreadPoolExecutor(OCR_WORKERS, thread_name_prefix="ocr") as pool:
                read = dict(zip(to_read, pool.map(self._read_text, images)))
        else:
            read = dict(zip(to_read, map(self._read_text, images)))
        facts: list[FrameFacts] = []
        for i, ((at, image), gray) in enumerate(zip(frames, grays)):
            motion = None if i == 0 else float(np.mean(np.abs(gray - grays[i - 1])))
            reused_from = None if source[i] == i else frames[source[i]][0]
            facts.append(
                FrameFacts(at, read[source[i]], dominant_colours(image), brightness(image), motion, reused_from)
            )
        if not facts:
            return SegmentCaption("", [], {"frames": [], "ocr_runs": 0})
        captions = [
            FrameCaption(f.time, frame_text([line.text for line in f.ocr], f.colours, f.brightness), f.reused_from)
            for f in facts
        ]
        return SegmentCaption(segment_caption_text(facts), captions, facts_as_dict(facts))

    def release(self) -> None:
        """Nothing to free: the ONNX sessions are small and stay loaded."""


# ---------------------------------------------------------------------------------------------------
# Vision-language model through transformers

DEFAULT_VLM_PROMPT = (
    "Describe this video frame in one or two sentences for a video search index: the people, objects, "
    'actions, setting and any text shown on screen. What is said around this moment: "{transcript}"'
)
MAX_TRANSCRIPT_CHARS = 1500  # keeps the prompt well inside any model's context
DEFAULT_MAX_NEW_TOKENS = 96
CPU_BATCH_SIZE = 2
MAX_GPU_BATCH_SIZE = 16
# Free GPU memory per frame of a batch, and headroom left for the allocator. An estimate, not a
# measurement (no GPU where this was written): for an 8B 4-bit VLM at up to 1344 px, vision tokens,
# activations and the KV cache of ~100 new tokens stay under 1 GiB per frame. Free memory is read
# after the weights are loaded. VIDEO_CAPTIONING_BATCH_SIZE overrides the whole heuristic.
GPU_BYTES_PER_FRAME = 1.0 * 2**30
GPU_HEADROOM_BYTES = 2.0 * 2**30


def gpu_batch_size(free_bytes: int) -> int:
    """Frames per generate call from free GPU memory: (free - headroom) / per-frame, in 1..16."""
    fitting = int((free_bytes - GPU_HEADROOM_BYTES) // GPU_BYTES_PER_FRAME)
    return max(1, min(MAX_GPU_BATCH_SIZE, fitting))


def build_prompt(template: str, transcript: str) -> str:
    # str.replace, not str.format: a configured prompt may contain other braces.
    return template.replace("{transcript}", " ".join(transcript.split())[:MAX_TRANSCRIPT_CHARS])


def without_prompt(generated: str, prompt: str) -> str:
    """The generated text minus an echoed prompt, the way transformers' image-text-to-text pipeline does it.

    Decoder-only models return the prompt before the answer, BLIP-style decoders most of it, and
    encoder-decoders none; comparing decoded text handles all three.
    """
    start = generated.find(prompt)
    return generated[start + len(prompt) :] if prompt and 0 <= start <= 2 else generated


class TransformersVLMCaptioner:
    kind = KIND_VLM

    def __init__(
        self,
        name: str,
        *,
        revision: str | None = None,
        prompt: str | None = None,
        dtype: str | None = None,
        device: str | None = None,
        batch_size: int | None = None,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    ) -> None:
        import torch

        self.name = name
        self.revision = revision
        self.prompt_template = prompt or DEFAULT_VLM_PROMPT
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.dtype = dtype
        self.batch_size_override = batch_size
        self.max_new_tokens = max_new_tokens
        self.batch_sizes: list[int] = []  # frames per model call, in call order
        self.last_prompts: list[str] = []  # the prompts of the latest model call, as the model saw them
        self.model: Any = None
        self.processor: Any = None
        self.uses_remote_chat = False  # True for remote-code models captioned through their `chat` method
        self._load()

    def _torch_dtype(self) -> Any:
        import torch

        if self.dtype in (None, ""):
            return torch.float16 if self.device.startswith("cuda") else torch.float32
        return self.dtype if self.dtype == "auto" else getattr(torch, self.dtype)

    def _load(self) -> None:
        from transformers import AutoModel, AutoModelForImageTextToText, AutoProcessor

        # A hub id resolves only from the local cache: weights are never fetched at run time.
        common: dict[str, Any] = {
            "revision": self.revision,
            "trust_remote_code": True,
            "local_files_only": True,
        }
        options: dict[str, Any] = {**common, "dtype": self._torch_dtype()}
        if self.device.startswith("cuda"):
            # Only on CUDA: 4-bit loading imports bitsandbytes, which takes seconds and warns without CUDA.
            import torch
            from transformers import BitsAndBytesConfig

            options["quantization_config"] = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=torch.float16)
            options["device_map"] = self.device
        self.processor = AutoProcessor.from_pretrained(self.name, **common)
        try:
            self.model = AutoModelForImageTextToText.from_pretrained(self.name, **options)
        except ValueError:
            # Remote-code models outside the image-text-to-text mapping (MiniCPM-V 2.6) register
            # under AutoModel and bring their own `chat` method.
            self.model = AutoModel.from_pretrained(self.name, **options)
            if not hasattr(self.model, "chat"):
                raise
            self.uses_remote_chat = True
        if not self.device.startswith("cuda"):
            self.model.to(self.device)
        self.model.eval()
        logger.info("loaded captioning model %s on %s", self.name, self.device)

    def batch_size(self) -> int:
        if self.batch_size_override:
            return self.batch_size_override
        if self.device.startswith("cuda"):
            import torch

            free, _total = torch.cuda.mem_get_info(torch.device(self.device))
            return gpu_batch_size(free)
        return CPU_BATCH_SIZE

    def caption_segment(self, frames: Frames, transcript: str = "") -> SegmentCaption:
        if self.model is None:
            self._load()
        prompt = build_prompt(self.prompt_template, transcript)
        captions: list[FrameCaption] = []
        size = self.batch_size()
        for start in range(0, len(frames), size):
            batch = frames[start : start + size]
            texts = self.caption_batch([image.convert("RGB") for _, image in batch], prompt)
            captions.extend(FrameCaption(time, text) for (time, _), text in zip(batch, texts, strict=True))
        text = " ".join(unique_in_order([c.text for c in captions]))
        return SegmentCaption(text, captions, {"model": self.name, "revision": self.revision, "prompt": prompt})

    def caption_batch(self, images: list[Image.Image], prompt: str) -> list[str]:
        import torch

        self.batch_sizes.append(len(images))
        with torch.inference_mode():
            if self.uses_remote_chat:
                return self._remote_chat(images, prompt)
            return self._generate(images, prompt)

    def _prompt_text(self, prompt: str) -> str:
        """The processor's chat template around one image and the prompt, or the bare prompt without one."""
        if getattr(self.processor, "chat_template", None):
            conversation = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
            return self.processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
        return prompt

    def _generate(self, images: list[Image.Image], prompt: str) -> list[str]:
        self.last_prompts = [self._prompt_text(prompt)] * len(images)
        inputs = self.processor(images=images, text=self.last_prompts, padding=True, return_tensors="pt")
        inputs = inputs.to(self.model.device, dtype=self.model.dtype)
        output = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False, num_beams=1)
        texts = self.processor.post_process_image_text_to_text(output, skip_special_tokens=True)
        prompts = self.processor.post_process_image_text_to_text(inputs["input_ids"], skip_special_tokens=True)
        return [without_prompt(text, prompt).strip() for text, prompt in zip(texts, prompts, strict=True)]

    def _remote_chat(self, images: list[Image.Image], prompt: str) -> list[str]:
        # MiniCPM-V's remote code: a list of conversations is one batched call, images inside messages.
        self.last_prompts = [prompt] * len(images)
        conversations = [[{"role": "user", "content": [image, prompt]}] for image in images]
        answers = self.model.chat(
            image=None,
            msgs=conversations,
            tokenizer=getattr(self.processor, "tokenizer", self.processor),
            processor=self.processor,
            sampling=False,
            num_beams=1,  # greedy: the remote default for sampling=False is a 3-beam search
            max_new_tokens=self.max_new_tokens,
        )
        return [str(answer).strip() for answer in answers]

    def release(self) -> None:
        import torch

        self.model = None
        gc.collect()
        if self.device.startswith("cuda") and torch.cuda.is_available():
            torch.cuda.empty_cache()
