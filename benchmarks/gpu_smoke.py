"""GPU smoke test: the CUDA paths of the pipeline, run once on a real GPU (figures, not a test).

    .venv/bin/python benchmarks/gpu_smoke.py

On a CUDA machine it prints the device and its memory, then
- transcribes a generated speech clip (espeak-ng) with the bundled Whisper base in float16 through the
  project's own `load_whisper`/`transcribe`, and prints the real-time factor and word error rate;
- builds the tiny randomly initialised VLM (`video_assets.models.tiny_vlm`) in a temporary folder,
  loads it 4-bit through bitsandbytes (`BitsAndBytesConfig`, the production captioner's code path)
  and captions one frame (the caption is noise: the weights are random);
- prints the caption batch size the project's `gpu_batch_size` picks from the free GPU memory.
Without a CUDA device it prints "no CUDA device: nothing to measure" and exits 0. Exit 1 if a step failed.
Nothing is downloaded: every weight is bundled or built here.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is downloaded
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

SPEECH = (
    "The volcano erupted with bright orange lava near the village. "
    "My bicycle has a broken chain and a flat tire. "
    "She practised the piano every morning before school."
)


def cuda_ready() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def gib(size: float) -> str:
    return f"{size / 2**30:.2f} GiB"


def device_report() -> None:
    import torch

    print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.device_count()} device(s)")
    for index in range(torch.cuda.device_count()):
        free, total = torch.cuda.mem_get_info(index)
        props = torch.cuda.get_device_properties(index)
        print(
            f"cuda:{index}  {props.name}  compute capability {props.major}.{props.minor}  "
            f"{gib(free)} free of {gib(total)}"
        )


def whisper_float16() -> None:
    import ctranslate2

    from video_assets.media.audio import SAMPLE_RATE
    from video_assets.models.whisper import BUNDLED, load_whisper, transcribe
    from video_assets.samples import speak, word_error_rate

    print(f"\nfaster-whisper, bundled base, float16 (CTranslate2 {ctranslate2.__version__})")
    audio = speak(SPEECH, rate=SAMPLE_RATE).astype("float32") / 32768.0
    seconds = audio.size / SAMPLE_RATE
    started = time.perf_counter()
    pipeline, runtime = load_whisper(BUNDLED, device="cuda", compute_type="float16")
    print(
        f"  loaded {runtime.path} on {runtime.device} ({runtime.compute_type}) in {time.perf_counter() - started:.2f} s"
    )
    transcribe(pipeline, audio)  # the first call pays for CUDA kernels and allocations
    runs = []
    for _ in range(3):
        started = time.perf_counter()
        result = transcribe(pipeline, audio)
        runs.append(time.perf_counter() - started)
    best = min(runs)
    print(
        f"  {seconds:.1f} s of speech in {best:.3f} s (best of 3): real-time factor {best / seconds:.4f} "
        f"({seconds / best:.0f}x real time)"
    )
    print(f"  language {result.language}, WER {word_error_rate(SPEECH, result.text):.3f}: {result.text}")


def tiny_vlm_4bit() -> None:
    import torch

    from video_assets.models.captioners import TransformersVLMCaptioner, gpu_batch_size
    from video_assets.models.tiny_vlm import save_tiny_llava
    from video_assets.samples import draw_card

    print("\ntiny randomly initialised VLM, 4-bit through bitsandbytes")
    with tempfile.TemporaryDirectory(prefix="tiny-vlm-") as folder:
        save_tiny_llava(Path(folder))
        started = time.perf_counter()
        captioner = TransformersVLMCaptioner(folder, device="cuda", max_new_tokens=16)
        print(f"  loaded in {time.perf_counter() - started:.2f} s")
        config = getattr(captioner.model, "quantization_config", None) or getattr(
            captioner.model.config, "quantization_config", None
        )
        quantised = [name for name, m in captioner.model.named_modules() if type(m).__name__ == "Linear4bit"]
        print(f"  quantization: {type(config).__name__ if config else None}, {len(quantised)} Linear4bit layers")
        print(f"  weights {captioner.model.get_memory_footprint() / 2**20:.2f} MiB on {captioner.model.device}")
        frame = draw_card("VOLCANO", "#b22222", (640, 360), subtitle="lava near the village")
        started = time.perf_counter()
        caption = captioner.caption_segment([(0.0, frame)], transcript="the volcano erupted")
        print(f"  one frame captioned in {time.perf_counter() - started:.2f} s: {caption.text[:120]!r}")
        free, total = torch.cuda.mem_get_info(torch.device("cuda"))
        print(
            f"\ncaption batch size from free GPU memory: {captioner.batch_size()} frames "
            f"({gib(free)} free of {gib(total)}; gpu_batch_size({free}) = {gpu_batch_size(free)})"
        )
        captioner.release()


def main() -> int:
    if not cuda_ready():
        print("no CUDA device: nothing to measure")
        return 0
    device_report()
    failed = []
    for step in (whisper_float16, tiny_vlm_4bit):
        try:
            step()
        except Exception:  # noqa: BLE001 - each step reports; the others still run
            traceback.print_exc()
            failed.append(step.__name__)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
