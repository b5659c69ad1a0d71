"""Calibrate the relevance floor of each bundled embedding model (figures, not a test).

    .venv/bin/python benchmarks/calibrate_search.py [--models multilingual-e5-small,all-MiniLM-L6-v2]

Segment texts are built the way the pipeline embeds them (`dense_text`: transcript, then the OCR caption,
as Whisper hears espeak and RapidOCR reads the frames). For each model it prints the dense cosine of every true
paraphrase with its own segment (English, and English queries against Italian, Spanish, German and
French segments) and of every unrelated query with the best segment of its corpus, then the floor that
misclassifies fewest (in the widest gap among equals) and what falls on its wrong side. The floors in
`video_assets/models/embedder.py` (`RELEVANCE_FLOORS`) come from this output.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from video_assets.models.embedder import MINILM_ID, dense_text, load_embedder, model_id  # noqa: E402

# (caption, transcript, [paraphrases that should find it])
CORPORA: dict[str, list[tuple[str, str, list[str]]]] = {
    "four scenes": [
        (
            'On-screen text: "MAGMA". Colours: red. Bright.',
            "The volcano erupted and bright orange lava flowed down toward the village.",
            ["molten rock pouring from a mountain", "an eruption threatens a town", "lava"],
        ),
        (
            'On-screen text: "PEDAL". Colours: green. Bright.',
            "My bicycle has a broken chain, so I repaired the gears and pumped the flat tire.",
            ["fixing a bike", "who fixed the bike", "repairing the gears of a bike"],
        ),
        (
            'On-screen text: "QUARTZ". Colours: blue. Dim.',
            "She practised the piano every morning and played a sonata at the concert.",
            ["a musician performing classical music", "piano practice", "a concert"],
        ),
        (
            'On-screen text: "OVEN". Colours: brown. Dim.',
            "Whisk the eggs with flour and sugar, then bake the sponge cake for twenty minutes.",
            ["baking dessert in the kitchen", "a cake recipe", "how long to bake a sponge"],
        ),
    ],
    "lecture": [
        (
            'On-screen text: "REVIEW", "Q3". Colours: blue, white. Bright.',
            "Welcome to the quarterly review, revenue grew in every region this spring.",
            ["sales went up", "financial results of the quarter", "company earnings"],
        ),
        (
            'On-screen text: "FORECAST". Colours: blue. Bright.',
            "Tomorrow will be sunny with light winds and mild temperatures across the coast.",
            ["what will the weather be like", "sunny tomorrow", "weather report"],
        ),
        (
            'On-screen text: "PASTA". Colours: yellow, red. Bright.',
            "Add the spaghetti to the boiling water and simmer the tomatoes with garlic and basil.",
            ["cooking Italian food", "how to make spaghetti", "tomato sauce recipe"],
        ),
        (
            "Colours: gray. Dim. Static shot.",
            "",
            [],
        ),
    ],
    "other languages": [
        (
            'On-screen text: "VULCANO". Colours: red. Bright.',
            "Buongiorno a tutti, oggi parliamo del vulcano e della lava calda.",
            ["a talk about a volcano and hot lava", "volcano eruption"],
        ),
        (
            "Colours: green. Bright.",
            "Mi bicicleta tiene la cadena rota y una rueda pinchada.",
            ["a bike with a broken chain", "flat tyre on a bicycle"],
        ),
        (
            "Colours: white. Bright.",
            "Morgen wird es sonnig und warm, mit leichtem Wind an der Küste.",
            ["weather forecast sunny and warm", "what will the weather be tomorrow"],
        ),
        (
            "Colours: yellow. Bright.",
            "Nous allons cuisiner des pâtes avec de la sauce tomate et du basilic.",
            ["cooking pasta with tomato sauce", "an Italian recipe"],
        ),
    ],
}
UNRELATED = [
    "zorblax quintessence flimflam",
    "the stock market crashed in Tokyo",
    "how to train a puppy to sit",
    "quantum entanglement of photons",
    "the football final ended in a penalty shootout",
    "symptoms of the flu in children",
    "installing a new kitchen sink faucet",
    "the history of the Roman empire",
    "best hiking trails in Norway",
    "a car accident on the highway",
]
# Queries unrelated to one corpus but related to another: each is measured only against the corpora
# where it has no true match.
CROSS_CORPUS = {"lecture": ["who fixed the bike", "a musician performing classical music", "lava"]}


ENGLISH_ONLY = {MINILM_ID}


def measure(model: str) -> dict:
    embedder = load_embedder(model)
    related: list[tuple[float, str, str]] = []
    unrelated: list[tuple[float, str, str]] = []
    for corpus, segments in CORPORA.items():
        if corpus == "other languages" and embedder.name in ENGLISH_ONLY:
            continue  # an English-only model is not asked to match across languages
        vectors = embedder.embed([dense_text(caption, transcript) for caption, transcript, _ in segments])
        for i, (_, _, queries) in enumerate(segments):
            for query in queries:
                scores = vectors @ embedder.embed_query(query)
                related.append((float(scores[i]), query, corpus))
                if int(np.argmax(scores)) != i:
                    print(f"  ranking miss: {query!r} -> segment {int(np.argmax(scores))}, not {i} ({corpus})")
        for query in UNRELATED + CROSS_CORPUS.get(corpus, []):
            unrelated.append((float(np.max(vectors @ embedder.embed_query(query))), query, corpus))
    return {"name": embedder.name, "related": sorted(related), "unrelated": sorted(unrelated)}


def best_floor(related: list[float], unrelated: list[float]) -> tuple[float, int, int, float]:
    """The floor with the fewest true matches under it plus unrelated queries over it; among equals, the one
    in the widest gap between neighbouring scores. Returns (floor, true matches lost, unrelated kept, gap)."""
    scores = sorted(related + unrelated)
    best: tuple[int, float, float] | None = None
    for low, high in zip(scores, scores[1:]):
        floor = (low + high) / 2
        errors = sum(r < floor for r in related) + sum(u >= floor for u in unrelated)
        if best is None or (errors, -(high - low)) < (best[0], -best[2]):
            best = (errors, floor, high - low)
    assert best is not None
    _, floor, gap = best
    return floor, sum(r < floor for r in related), sum(u >= floor for u in unrelated), gap


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="multilingual-e5-small,all-MiniLM-L6-v2")
    args = parser.parse_args()
    for model in args.models.split(","):
        print(f"\n{model_id(model)}")
        result = measure(model)
        related, unrelated = result["related"], result["unrelated"]
        print(
            f"  true matches ({len(related)}): min {related[0][0]:.3f}, "
            f"median {np.median([r[0] for r in related]):.3f}, max {related[-1][0]:.3f}"
        )
        print(
            f"  unrelated ({len(unrelated)}): max {unrelated[-1][0]:.3f}, "
            f"median {np.median([u[0] for u in unrelated]):.3f}"
        )
        for score, query, corpus in related[:3]:
            print(f"    lowest true matches  {score:.3f}  {query!r} ({corpus})")
        for score, query, corpus in unrelated[-3:]:
            print(f"    highest unrelated    {score:.3f}  {query!r} ({corpus})")
        floor, lost, kept, gap = best_floor([r[0] for r in related], [u[0] for u in unrelated])
        print(
            f"  floor {floor:.3f} (in a gap of {gap:.3f}): {lost} of {len(related)} true matches under it, "
            f"{kept} of {len(unrelated)} unrelated queries over it"
        )


if __name__ == "__main__":
    main()
