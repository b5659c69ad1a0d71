"""The bundled MiniLM embedder and the Qdrant index (embedded local mode in a temporary folder)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from video_assets.models.embedder import (
    BUNDLED_MODEL_ID,
    TextEmbedder,
    load_embedder,
    segment_text,
    sparse_vector,
    token_index,
)
from video_assets.store.vector_index import (
    DESCRIPTION,
    SEGMENT,
    IndexedText,
    SearchHit,
    VectorIndex,
    VectorIndexError,
    open_index,
    point_id,
)

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
def embedder() -> TextEmbedder:
    started = time.perf_counter()
    model = load_embedder()
    print(f"embedder load: {time.perf_counter() - started:.2f} s")
    return model


def points_for(
    embedder: TextEmbedder, workspace: str, video: str, segments: list[tuple[str, str]]
) -> list[IndexedText]:
    texts = [segment_text(caption, transcript) for caption, transcript in segments]
    dense = embedder.embed(texts)
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
def index(tmp_path: Path, embedder: TextEmbedder) -> Iterator[VectorIndex]:
    index = VectorIndex(path=tmp_path / "qdrant")
    index.ensure_collection(embedder.dimension)
    index.replace_partition_points("news/volcano.mp4", points_for(embedder, "news", "volcano.mp4", NEWS), kind=SEGMENT)
    index.replace_partition_points(
        "cook/pasta.mp4", points_for(embedder, "cooking", "pasta.mp4", COOKING), kind=SEGMENT
    )
    yield index
    index.close()


def search(index: VectorIndex, embedder: TextEmbedder, query: str, workspace: str, limit: int = 3) -> list[SearchHit]:
    return index.hybrid_search(
        embedder.embed([query])[0], embedder.sparse([query])[0], workspace=workspace, limit=limit
    )


def test_default_embedder_is_the_bundled_minilm(embedder: TextEmbedder) -> None:
    assert embedder.name == BUNDLED_MODEL_ID
    assert embedder.dimension == 384 == embedder.model.get_embedding_dimension()
    assert load_embedder("bundled") is embedder and load_embedder(BUNDLED_MODEL_ID) is embedder
    vectors = embedder.embed(["a volcano erupts", "lava flows down a mountain", "a bowl of pasta"])
    assert vectors.dtype == np.float32 and vectors.shape == (3, 384)
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


def test_paraphrase_ranks_the_right_segment_first(index: VectorIndex, embedder: TextEmbedder) -> None:
    hits = search(index, embedder, "volcanic eruption with lava flowing", "news")

    assert (hits[0].partition, hits[0].segment, hits[0].file) == ("news/volcano.mp4", 1, "volcano.mp4")
    assert (hits[0].start, hits[0].end, hits[0].kind) == (30.0, 60.0, SEGMENT)
    assert "molten rock" in hits[0].text
    assert hits[0].score >= hits[-1].score


def test_exact_rare_word_is_found_by_the_keyword_side(index: VectorIndex, embedder: TextEmbedder) -> None:
    assert search(index, embedder, "XQ7 VOLCANO", "news")[0].segment == 2

    # A dense vector pointing at another segment: only the keyword side can bring segment 2 up.
    unrelated = embedder.embed(["weather forecast for tomorrow"])[0]
    hits = index.hybrid_search(unrelated, embedder.sparse(["xq7"])[0], workspace="news", limit=4)

    assert hits[0].segment == 2
    assert index.hybrid_search(unrelated, embedder.sparse(["xq7"])[0], workspace="news", limit=1)[0].segment == 2


def test_a_workspace_never_sees_another_workspaces_videos(index: VectorIndex, embedder: TextEmbedder) -> None:
    cooking_hits = search(index, embedder, "XQ7 VOLCANO molten rock erupted", "cooking", limit=10)
    news_hits = search(index, embedder, "spaghetti with tomatoes and basil", "news", limit=10)

    assert {h.partition for h in cooking_hits} == {"cook/pasta.mp4"} and len(cooking_hits) == 4
    assert {h.partition for h in news_hits} == {"news/volcano.mp4"} and len(news_hits) == 4
    assert search(index, embedder, "pasta", "nobody") == []
    assert index.count(workspace="news") == 4 and index.count(workspace="cooking") == 4


def test_replacing_a_partition_leaves_one_point_per_segment(index: VectorIndex, embedder: TextEmbedder) -> None:
    news = points_for(embedder, "news", "volcano.mp4", NEWS)

    assert index.replace_partition_points("news/volcano.mp4", news, kind=SEGMENT) == 4  # a rerun
    assert index.count(partition_key="news/volcano.mp4") == 4
    assert index.replace_partition_points("news/volcano.mp4", news[:2], kind=SEGMENT) == 2  # fewer segments
    assert index.count(partition_key="news/volcano.mp4") == 2
    assert sorted(h.segment for h in search(index, embedder, "news", "news", limit=10)) == [0, 1]
    assert index.count(partition_key="cook/pasta.mp4") == 4  # other partitions untouched
    assert index.count() == 6


def test_description_points_live_beside_segments(index: VectorIndex, embedder: TextEmbedder) -> None:
    text = "A news bulletin about a volcanic eruption, then the weather."
    description = IndexedText(
        None,
        text,
        embedder.embed([text])[0],
        embedder.sparse([text])[0],
        {"workspace": "news", "files": ["volcano.mp4"]},
    )

    index.replace_partition_points("news/volcano.mp4", [description], kind=DESCRIPTION)
    index.replace_partition_points("news/volcano.mp4", [description], kind=DESCRIPTION)

    assert index.count(partition_key="news/volcano.mp4", kind=DESCRIPTION) == 1
    assert index.count(partition_key="news/volcano.mp4", kind=SEGMENT) == 4
    hit = search(index, embedder, "news bulletin about an eruption", "news")[0]
    assert (hit.kind, hit.segment) == (DESCRIPTION, None)
    assert point_id("news/volcano.mp4", DESCRIPTION, None) == point_id("news/volcano.mp4", DESCRIPTION, None)


def test_partition_keys_and_delete(index: VectorIndex) -> None:
    assert index.partition_keys() == {"news/volcano.mp4", "cook/pasta.mp4"}

    index.delete_partition("cook/pasta.mp4")

    assert index.partition_keys() == {"news/volcano.mp4"}
    assert index.count(workspace="cooking") == 0


def test_a_point_without_workspace_is_refused(index: VectorIndex, embedder: TextEmbedder) -> None:
    [point] = points_for(embedder, "", "x.mp4", NEWS[:1])

    with pytest.raises(ValueError, match="no workspace"):
        index.replace_partition_points("x.mp4", [point], kind=SEGMENT)


def test_a_collection_of_another_dimension_is_refused(tmp_path: Path) -> None:
    index = VectorIndex(path=tmp_path / "qdrant")
    index.ensure_collection(384)
    index.ensure_collection(384)  # an existing collection is fine

    with pytest.raises(VectorIndexError, match=r"384-dimensional.*768-dimensional"):
        index.ensure_collection(768)
    index.close()


def test_open_index_shares_one_client_per_folder_and_reopens_after_close(
    tmp_path: Path, embedder: TextEmbedder
) -> None:
    folder = tmp_path / "shared"
    first = open_index(path=folder)
    assert open_index(path=str(folder)) is first  # a second local client on the folder would fail its lock
    other_collection = open_index(path=folder, collection="other")
    assert other_collection.client is first.client
    first.ensure_collection(embedder.dimension)
    first.replace_partition_points("v.mp4", points_for(embedder, "w", "v.mp4", NEWS[:1]), kind=SEGMENT)

    first.close()
    reopened = open_index(path=folder)

    assert reopened is not first
    assert reopened.count() == 1  # stored on disk
    reopened.close()
