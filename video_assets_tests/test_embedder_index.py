"""The default embedder, alone and searched through the default index (a Qdrant Edge shard per test).

What the index itself promises, for every engine, is in test_vector_index_contract.py.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from video_assets.models.embedder import (
    E5_SMALL_ID,
    MINILM_ID,
    dense_text,
    load_embedder,
    segment_text,
    sparse_vector,
    token_index,
)
from video_assets.store.qdrant_edge_index import EdgeVectorIndex
from video_assets.store.vector_index import DESCRIPTION, SEGMENT, IndexedText, SearchHit, VectorIndex

os.environ.setdefault("HF_HUB_OFFLINE", "1")

NEWS = [
    (
        'On-screen text: "BREAKING NEWS". Colours: red, white.',
        "Good evening, here are tonight's top stories.",
    ),
    (
        "Colours: orange, black. Dim.",
        "The mountain erupted overnight, sending molten rock down toward the valley.",
    ),
    ('On-screen text: "XQ7 VOLCANO". Colours: gray. Bright.', "Let's look at the numbers on the next chart."),
    ("Colours: blue, white. Bright.", "Tomorrow will be sunny with light winds and mild temperatures."),
]
COOKING = [
    ("Colours: white. Bright.", "Bring a large pot of salted water to the boil."),
    ("Colours: yellow. Bright.", "Add the spaghetti and cook it for nine minutes."),
    ("Colours: red. Bright.", "Meanwhile, simmer the tomatoes with garlic and basil."),
    ("Colours: green. Bright.", "Serve with grated parmesan and fresh basil leaves."),
]


@pytest.fixture(scope="module")
def embedder() -> Any:
    started = time.perf_counter()
    model = load_embedder()
    print(f"embedder load: {time.perf_counter() - started:.2f} s")
    return model


def points_for(embedder: Any, workspace: str, video: str, segments: list[tuple[str, str]]) -> list[IndexedText]:
    texts = [segment_text(caption, transcript) for caption, transcript in segments]
    dense = embedder.embed([dense_text(caption, transcript) for caption, transcript in segments])
    sparse = embedder.sparse(texts)
    return [
        IndexedText(
            index=i,
            text=text,
            dense=dense[i],
            sparse=sparse[i],
            payload={
                "workspace": workspace,
                "files": [video],
                "start": 30.0 * i,
                "end": 30.0 * (i + 1),
                "model": embedder.name,
            },
        )
        for i, text in enumerate(texts)
    ]


@pytest.fixture
def index(tmp_path: Path, embedder: Any) -> Iterator[VectorIndex]:
    index = EdgeVectorIndex(tmp_path / "edge" / "video_segments")
    index.ensure_collection(embedder.dimension, embedder.name)
    index.replace_partition_points("news/volcano.mp4", points_for(embedder, "news", "volcano.mp4", NEWS), kind=SEGMENT)
    index.replace_partition_points(
        "cook/pasta.mp4", points_for(embedder, "cooking", "pasta.mp4", COOKING), kind=SEGMENT
    )
    yield index
    index.close()


def search(
    index: VectorIndex, embedder: Any, query: str, workspace: str, limit: int = 3, floor: float | None = None
) -> list[SearchHit]:
    return index.hybrid_search(
        embedder.embed_query(query),
        embedder.sparse([query])[0],
        workspace=workspace,
        limit=limit,
        min_score=embedder.relevance_floor if floor is None else floor,
    )


def test_the_default_embedder_makes_unit_vectors_of_its_dimension(embedder: Any) -> None:
    assert load_embedder() is embedder and load_embedder("bundled") is embedder  # loaded once per process
    assert embedder.name == E5_SMALL_ID and embedder.dimension == 384
    vectors = embedder.embed(["a volcano erupts", "lava flows down a mountain", "a bowl of pasta"])
    assert vectors.dtype == np.float32 and vectors.shape == (3, embedder.dimension)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]  # meaning, not shared words


def test_sparse_vector_counts_words_not_stop_words() -> None:
    vector = sparse_vector("The XQ7 volcano, the VOLCANO! Über")
    weights = dict(zip(vector.indices, vector.values, strict=True))

    assert set(weights) == {token_index("xq7"), token_index("volcano"), token_index("über")}
    assert weights[token_index("volcano")] == pytest.approx(2 * 2.2 / 3.2)  # tf 2, saturated
    assert weights[token_index("xq7")] == 1.0
    assert token_index("volcano") == 2086639598  # blake2b: the same in every process and release
    assert sparse_vector("the of and").indices == []


def test_segment_text_has_the_original_form() -> None:
    assert segment_text("A red card.", "Hello.") == "Caption: A red card. Transcript: Hello."


def test_paraphrase_ranks_the_right_segment_first(index: VectorIndex, embedder: Any) -> None:
    hits = search(index, embedder, "volcanic eruption with lava flowing", "news")

    assert (hits[0].partition, hits[0].segment, hits[0].file) == ("news/volcano.mp4", 1, "volcano.mp4")
    assert (hits[0].start, hits[0].end, hits[0].kind) == (30.0, 60.0, SEGMENT)
    assert "molten rock" in hits[0].text and hits[0].keyword_match is False  # no word in common
    query = embedder.embed_query("volcanic eruption with lava flowing")
    stored = embedder.embed([dense_text(*NEWS[1])])[0]
    assert hits[0].score == pytest.approx(float(query @ stored), abs=1e-5)  # the dense cosine
    assert hits[0].score >= embedder.relevance_floor


def test_exact_rare_word_is_found_by_the_keyword_side(index: VectorIndex, embedder: Any) -> None:
    assert search(index, embedder, "XQ7 VOLCANO", "news")[0].segment == 2

    # A dense vector pointing at another segment: only the keyword side can bring segment 2 up.
    unrelated = embedder.embed_query("weather forecast for tomorrow")
    hits = index.hybrid_search(unrelated, embedder.sparse(["xq7"])[0], workspace="news", limit=4)

    assert (hits[0].segment, hits[0].keyword_match) == (2, True)
    assert index.hybrid_search(unrelated, embedder.sparse(["xq7"])[0], workspace="news", limit=1)[0].segment == 2


def test_a_workspace_never_sees_another_workspaces_videos(index: VectorIndex, embedder: Any) -> None:
    # No floor: every point the workspace holds is a candidate, and still none of the other workspace's.
    cooking_hits = search(index, embedder, "XQ7 VOLCANO molten rock erupted", "cooking", limit=10, floor=0.0)
    news_hits = search(index, embedder, "spaghetti with tomatoes and basil", "news", limit=10, floor=0.0)

    assert {h.partition for h in cooking_hits} == {"cook/pasta.mp4"}
    assert {h.partition for h in news_hits} == {"news/volcano.mp4"}
    assert search(index, embedder, "pasta", "nobody") == []
    assert index.count(workspace="news") == 4 and index.count(workspace="cooking") == 4


def test_description_points_live_beside_segments(index: VectorIndex, embedder: Any) -> None:
    text = "A news bulletin about a volcanic eruption, then the weather."
    description = IndexedText(
        None,
        text,
        embedder.embed([text])[0],
        embedder.sparse([text])[0],
        {"workspace": "news", "files": ["volcano.mp4"], "model": embedder.name},
    )

    index.replace_partition_points("news/volcano.mp4", [description], kind=DESCRIPTION)
    index.replace_partition_points("news/volcano.mp4", [description], kind=DESCRIPTION)

    assert index.count(partition_key="news/volcano.mp4", kind=DESCRIPTION) == 1
    assert index.count(partition_key="news/volcano.mp4", kind=SEGMENT) == 4
    hit = search(index, embedder, "news bulletin about an eruption", "news")[0]
    assert (hit.kind, hit.segment) == (DESCRIPTION, None)


def test_a_query_about_nothing_stored_finds_nothing(index: VectorIndex, embedder: Any) -> None:
    assert search(index, embedder, "how to train a puppy to sit", "news") == []
    assert search(index, embedder, "zorblax quintessence flimflam", "cooking") == []
    assert search(index, embedder, "boiling spaghetti", "cooking")[0].segment == 1


def test_e5_embeds_queries_and_passages_with_their_own_prefixes(embedder: Any) -> None:
    text = "a volcano erupts"
    query, passage = embedder.embed_query(text), embedder.embed([text])[0]
    assert query.shape == passage.shape == (embedder.dimension,)
    assert 0.8 < float(query @ passage) < 0.999  # the same words, embedded as a query and as a passage


@pytest.mark.parametrize(
    ("query", "segment"),
    [("a volcano erupting", 0), ("a bike with a broken chain", 1), ("sunny weather tomorrow", 2), ("cooking pasta", 3)],
)
def test_an_english_query_finds_a_segment_spoken_in_another_language(embedder: Any, query: str, segment: int) -> None:
    spoken = [
        "Oggi parliamo del vulcano e della lava calda che scende verso il villaggio.",
        "Mi bicicleta tiene la cadena rota y una rueda pinchada.",
        "Morgen wird es sonnig und warm, mit leichtem Wind an der Küste.",
        "Nous allons cuisiner des pâtes avec de la sauce tomate et du basilic.",
    ]
    passages = embedder.embed([dense_text("", text) for text in spoken])
    scores = passages @ embedder.embed_query(query)
    assert int(np.argmax(scores)) == segment, np.round(scores, 3)
    assert scores[segment] >= embedder.relevance_floor


def test_minilm_stays_selectable_by_name() -> None:
    minilm = load_embedder("all-MiniLM-L6-v2")
    assert minilm.name == MINILM_ID and minilm.dimension == 384 and minilm.relevance_floor > 0
    vectors = minilm.embed(["a volcano erupts", "lava flows down a mountain", "a bowl of pasta"])
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]
