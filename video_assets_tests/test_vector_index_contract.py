"""One behaviour for both index engines (Qdrant Edge, qdrant-client local mode standing in for a server),
migration from local mode, and processes sharing one edge shard. Hand-made 8-dim vectors: no model."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from qdrant_client import QdrantClient

from video_assets.models.embedder import sparse_vector
from video_assets.store.qdrant_client_index import ClientVectorIndex
from video_assets.store.qdrant_edge_index import EdgeVectorIndex
from video_assets.store.vector_access import vector_index
from video_assets.store.vector_index import (
    DESCRIPTION,
    SEGMENT,
    IndexedText,
    SearchHit,
    VectorIndex,
    VectorIndexError,
    point_id,
)
from video_assets.store.vector_migration import MIGRATED_DIR, edge_shard_path, migrate_local_mode

REPO = Path(__file__).resolve().parents[1]
DIM = 8
MODEL = "test-model"
COLLECTION = "video_segments"

NEWS = [
    "Good evening, here are tonight's top stories.",
    "The mountain erupted overnight, sending molten rock down toward the valley.",
    "XQ7 VOLCANO: let's look at the numbers on the next chart.",
    "Tomorrow will be sunny with light winds and mild temperatures.",
]
COOKING = [
    "Bring a large pot of salted water to the boil.",
    "Add the spaghetti and cook it for nine minutes.",
    "Meanwhile, simmer the tomatoes with garlic and basil.",
    "Serve with grated parmesan and fresh basil leaves.",
]


def unit(*weights: float) -> np.ndarray:
    vector = np.zeros(DIM)
    vector[: len(weights)] = weights
    return vector / np.linalg.norm(vector)


def axis(i: int, lean: float = 0.2) -> np.ndarray:
    """Mostly along axis i, leaning toward axis 7 so neighbours are not orthogonal."""
    vector = np.zeros(DIM)
    vector[i], vector[7] = 1.0, lean
    return vector / np.linalg.norm(vector)


def points(
    workspace: str, video: str, texts: list[str], first_axis: int, model: str | None = MODEL
) -> list[IndexedText]:
    return [
        IndexedText(
            index=i,
            text=text,
            dense=axis(first_axis + i).tolist(),
            sparse=sparse_vector(text),
            payload={
                "workspace": workspace,
                "files": [video],
                "start": 30.0 * i,
                "end": 30.0 * (i + 1),
                "language": "en",
                **({"model": model} if model else {}),
            },
        )
        for i, text in enumerate(texts)
    ]


Opener = Callable[[], VectorIndex]


@pytest.fixture(params=["edge", "client"])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """Opens the backend's index in a fresh folder; every index it opened is closed at the end."""
    opened: list[VectorIndex] = []

    def open_index() -> VectorIndex:
        if request.param == "edge":
            index: VectorIndex = EdgeVectorIndex(tmp_path / "edge" / COLLECTION)
        else:
            index = ClientVectorIndex(path=tmp_path / "local", collection=COLLECTION)
        opened.append(index)
        return index

    yield open_index
    for index in opened:
        index.close()


def fill(index: VectorIndex) -> None:
    index.ensure_collection(DIM, MODEL)
    index.replace_partition_points("news/volcano.mp4", points("news", "volcano.mp4", NEWS, 0), kind=SEGMENT)
    index.replace_partition_points("cook/pasta.mp4", points("cooking", "pasta.mp4", COOKING, 3), kind=SEGMENT)


@pytest.fixture
def index(opener: Opener) -> VectorIndex:
    index = opener()
    fill(index)
    return index


def query(index: VectorIndex, dense: np.ndarray, text: str, workspace: str = "news", **options) -> list[SearchHit]:
    return index.hybrid_search(dense.tolist(), sparse_vector(text), workspace=workspace, **options)


# --- the contract, for each backend ---


def test_an_index_without_collection_is_empty(opener: Opener) -> None:
    index = opener()

    assert index.count() == 0 and index.count(workspace="news") == 0
    assert index.partition_keys() == set() and index.index_model() is None
    assert index.delete_partition("news/volcano.mp4") == 0
    assert query(index, axis(1), "volcano") == []
    assert index.is_server is False


def test_stored_points_survive_closing_and_reopening(opener: Opener) -> None:
    first = opener()
    fill(first)
    first.close()

    again = opener()

    assert again.count() == 8 and again.index_model() == MODEL
    assert query(again, axis(1), "molten rock")[0].segment == 1


def test_an_existing_collection_of_another_size_is_refused(opener: Opener) -> None:
    index = opener()
    index.ensure_collection(DIM, MODEL)
    index.ensure_collection(DIM, MODEL)  # an existing collection is fine
    index.close()
    again = opener()

    with pytest.raises(VectorIndexError, match=r"8-dimensional.*16-dimensional"):
        again.ensure_collection(16, MODEL)


def test_vectors_of_another_model_are_refused(index: VectorIndex) -> None:
    assert index.index_model() == MODEL

    with pytest.raises(VectorIndexError) as error:
        index.ensure_collection(DIM, "other-model")

    assert str(error.value) == (
        f"the search index holds vectors of {MODEL!r} but the embedding model is 'other-model': "
        "run `video-assets reindex`"
    )


def test_a_dropped_collection_takes_a_new_model_and_size(opener: Opener) -> None:
    index = opener()
    fill(index)
    index.drop_collection()
    assert index.count() == 0 and index.index_model() is None
    index.ensure_collection(16, "another-model")  # what a re-index with a new embedding model does
    index.close()

    again = opener()
    assert again.count() == 0
    with pytest.raises(VectorIndexError, match=r"16-dimensional.*8-dimensional"):
        again.ensure_collection(DIM, MODEL)


def test_points_without_a_model_name_block_no_model(opener: Opener) -> None:
    index = opener()
    index.ensure_collection(DIM, MODEL)
    index.replace_partition_points("a/x.mp4", points("a", "x.mp4", NEWS[:1], 0, model=None), kind=DESCRIPTION)

    assert index.index_model() is None
    index.ensure_collection(DIM, "any-model")


def test_replacing_a_partition_leaves_exactly_the_given_points(index: VectorIndex) -> None:
    news = points("news", "volcano.mp4", NEWS, 0)

    assert index.replace_partition_points("news/volcano.mp4", news, kind=SEGMENT) == 4  # a rerun
    assert index.count(partition_key="news/volcano.mp4") == 4
    assert index.replace_partition_points("news/volcano.mp4", news[:2], kind=SEGMENT) == 2  # fewer segments
    assert index.count(partition_key="news/volcano.mp4") == 2
    assert sorted(h.segment for h in query(index, axis(0), "", limit=10)) == [0, 1]
    assert index.count(partition_key="cook/pasta.mp4") == 4  # other partitions untouched
    assert index.count() == 6 and index.count(workspace="cooking", kind=SEGMENT) == 4
    assert index.replace_partition_points("news/volcano.mp4", [], kind=SEGMENT) == 0
    assert index.count(workspace="news") == 0


def test_description_points_live_beside_segments(index: VectorIndex) -> None:
    text = "A news bulletin about a volcanic eruption, then the weather."
    description = IndexedText(None, text, unit(1, 1, 0, 1).tolist(), sparse_vector(text), {"workspace": "news"})
    description.payload["files"] = ["volcano.mp4"]

    index.replace_partition_points("news/volcano.mp4", [description], kind=DESCRIPTION)
    index.replace_partition_points("news/volcano.mp4", [description], kind=DESCRIPTION)

    assert index.count(partition_key="news/volcano.mp4", kind=DESCRIPTION) == 1
    assert index.count(partition_key="news/volcano.mp4", kind=SEGMENT) == 4
    hit = query(index, unit(1, 1, 0, 1), "bulletin")[0]
    assert (hit.kind, hit.segment, hit.file, hit.keyword_match) == (DESCRIPTION, None, "volcano.mp4", True)
    assert hit.score == pytest.approx(1.0, abs=1e-6)
    assert point_id("news/volcano.mp4", DESCRIPTION, None) == point_id("news/volcano.mp4", DESCRIPTION, None)


def test_partition_keys_and_delete(index: VectorIndex) -> None:
    assert index.partition_keys() == {"news/volcano.mp4", "cook/pasta.mp4"}

    assert index.delete_partition("cook/pasta.mp4") == 4

    assert index.partition_keys() == {"news/volcano.mp4"}
    assert index.count(workspace="cooking") == 0 and index.count() == 4


def test_a_point_without_workspace_is_refused(index: VectorIndex) -> None:
    [point] = points("", "x.mp4", NEWS[:1], 0)

    with pytest.raises(ValueError, match="no workspace"):
        index.replace_partition_points("x.mp4", [point], kind=SEGMENT)


def test_a_hit_carries_its_payload_and_its_dense_cosine(index: VectorIndex) -> None:
    dense = unit(0.3, 1.0, 0.1)
    hits = query(index, dense, "molten rock")

    top = hits[0]
    assert (top.partition, top.segment, top.file, top.kind) == ("news/volcano.mp4", 1, "volcano.mp4", SEGMENT)
    assert (top.start, top.end, top.language, top.keyword_match) == (30.0, 60.0, "en", True)
    assert "molten rock" in top.text
    for hit in hits:
        assert hit.score == pytest.approx(float(dense @ axis(hit.segment)), abs=1e-6)
        assert hit.keyword_match == (hit.segment == 1)


def test_a_workspace_never_sees_another_workspaces_points(index: VectorIndex) -> None:
    cooking_hits = query(index, axis(1), "XQ7 volcano molten rock", workspace="cooking", limit=10)
    news_hits = query(index, axis(4), "spaghetti tomatoes basil", workspace="news", limit=10)

    assert {h.partition for h in cooking_hits} == {"cook/pasta.mp4"} and len(cooking_hits) == 4
    assert {h.partition for h in news_hits} == {"news/volcano.mp4"} and len(news_hits) == 4
    assert not any(h.keyword_match for h in cooking_hits + news_hits)
    assert query(index, axis(1), "pasta", workspace="nobody") == []


def test_search_answers_only_when_something_matches(index: VectorIndex) -> None:
    away = -unit(0, 0, 0, 0, 0, 0, 0, 1)  # a negative cosine with every stored vector

    assert query(index, away, "", min_score=0.0) == []  # no dense match, no keyword
    assert query(index, away, "nothing in common", min_score=0.0) == []
    [hit] = query(index, away, "XQ7", min_score=0.0)  # only the keyword side answers
    assert (hit.segment, hit.keyword_match) == (2, True) and hit.score < 0

    close = query(index, axis(1), "", min_score=0.9)  # only near vectors pass the threshold
    assert [(h.segment, h.keyword_match) for h in close] == [(1, False)]


def test_the_keyword_side_lifts_a_rare_word_above_the_dense_ranking(index: VectorIndex) -> None:
    dense = axis(3)  # points at segment 3 (weather)

    assert query(index, dense, "", limit=1)[0].segment == 3
    [top] = query(index, dense, "xq7", limit=1)
    assert (top.segment, top.keyword_match) == (2, True)


def test_both_backends_answer_alike(tmp_path: Path) -> None:
    edge = EdgeVectorIndex(tmp_path / "edge" / COLLECTION)
    client = ClientVectorIndex(path=tmp_path / "local", collection=COLLECTION)
    try:
        for index in (edge, client):
            fill(index)
        rng = np.random.default_rng(7)
        for text in ["molten rock", "XQ7 volcano", "basil tomatoes", "", "sunny winds valley"]:
            dense = rng.normal(size=DIM)
            dense /= np.linalg.norm(dense)
            for workspace in ("news", "cooking"):
                a, b = (query(i, dense, text, workspace=workspace, limit=3) for i in (edge, client))
                assert [(h.partition, h.segment, h.keyword_match) for h in a] == [
                    (h.partition, h.segment, h.keyword_match) for h in b
                ]
                assert [h.score for h in a] == pytest.approx([h.score for h in b], abs=1e-6)
    finally:
        edge.close()
        client.close()


# --- migration from qdrant-client local mode ---


def make_local_mode_root(vectors: Path) -> dict[str, dict]:
    """A data root as the last release wrote it; returns its points by id."""
    legacy = ClientVectorIndex(path=vectors, collection=COLLECTION)
    fill(legacy)
    text = "A news bulletin about a volcanic eruption."
    legacy.replace_partition_points(
        "news/volcano.mp4",
        [IndexedText(None, text, unit(1, 1).tolist(), sparse_vector(text), {"workspace": "news", "model": MODEL})],
        kind=DESCRIPTION,
    )
    stored = {str(r.id): {"payload": r.payload, "vector": r.vector} for r in legacy.scroll_all()}
    legacy.close()
    return stored


def random_unit(seed: int) -> np.ndarray:
    vector = np.random.default_rng(seed).normal(size=DIM)
    return vector / np.linalg.norm(vector)


# Random directions and words no two points share equally: no ties on either side, so the fused order is defined.
SEARCHES = [
    (random_unit(1), "molten rock", "news"),
    (random_unit(2), "xq7", "news"),
    (random_unit(3), "garlic basil", "cooking"),
]


def test_a_local_mode_root_is_migrated_once_and_kept_aside(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    vectors = tmp_path / "vectors"
    stored = make_local_mode_root(vectors)
    with ClientVectorIndex(path=vectors, collection=COLLECTION) as legacy:
        before = [query(legacy, *search[:2], workspace=search[2], limit=5) for search in SEARCHES]

    with (
        caplog.at_level(logging.INFO, logger="video_assets"),
        vector_index(url=None, path=vectors, collection=COLLECTION) as index,
    ):
        after = [query(index, *search[:2], workspace=search[2], limit=5) for search in SEARCHES]
        migrated = {str(r.id): r for r in index.scroll_all()}  # type: ignore[attr-defined]

    assert isinstance(index, EdgeVectorIndex) and index.path == edge_shard_path(vectors, COLLECTION)
    [line] = [r.getMessage() for r in caplog.records if "local mode" in r.getMessage()]
    assert f"moved 9 points of collection {COLLECTION!r}" in line
    assert str(vectors) in line and str(edge_shard_path(vectors, COLLECTION)) in line
    assert set(migrated) == set(stored)
    for point_id_, old in stored.items():
        new = migrated[point_id_]
        assert new.payload == old["payload"]
        assert np.allclose(new.vector["dense"], old["vector"]["dense"], atol=1e-7)
        assert list(new.vector["keywords"].indices) == list(old["vector"]["keywords"].indices)
        assert np.allclose(new.vector["keywords"].values, old["vector"]["keywords"].values)
    assert len(after) == len(before) == len(SEARCHES)
    for old_hits, new_hits in zip(before, after):
        assert [(h.partition, h.segment, h.kind, h.keyword_match, h.text) for h in new_hits] == [
            (h.partition, h.segment, h.kind, h.keyword_match, h.text) for h in old_hits
        ]
        assert [h.score for h in new_hits] == pytest.approx([h.score for h in old_hits], abs=1e-6)

    # The old files are moved aside, whole: still a local-mode root.
    aside = vectors / MIGRATED_DIR
    assert not (vectors / "meta.json").exists() and not (vectors / "collection").exists()
    assert (aside / "meta.json").is_file() and (aside / "collection" / COLLECTION / "storage.sqlite").is_file()
    kept = QdrantClient(path=str(aside))
    assert kept.count(COLLECTION).count == 9
    kept.close()

    caplog.clear()
    with (
        caplog.at_level(logging.INFO, logger="video_assets"),
        vector_index(url=None, path=vectors, collection=COLLECTION) as index,
    ):
        assert index.count() == 9
    assert not [r for r in caplog.records if "local mode" in r.getMessage()]
    assert migrate_local_mode(vectors, COLLECTION) is None


# --- several processes on one edge shard ---

WRITER = """
import sys, time
from pathlib import Path
import numpy as np
from video_assets.models.embedder import sparse_vector
from video_assets.store.vector_access import vector_index
from video_assets.store.vector_index import IndexedText, SEGMENT

vectors, name = Path(sys.argv[1]), sys.argv[2]
rounds, per_round, hold = int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
rng = np.random.default_rng(abs(hash(name)) % 1000)
for r in range(rounds):
    with vector_index(url=None, path=vectors, collection="video_segments", lock_wait_seconds=60) as index:
        index.ensure_collection(8, "test-model")
        items = []
        for i in range(per_round):
            dense = rng.normal(size=8)
            items.append(IndexedText(i, f"{name} round {r} item {i}", (dense / np.linalg.norm(dense)).tolist(),
                                     sparse_vector(f"{name} item{i}"), {"workspace": name, "model": "test-model"}))
        index.replace_partition_points(f"{name}/v{r}.mp4", items, kind=SEGMENT)
        print("held", flush=True)
        time.sleep(hold)
print("done", flush=True)
"""


def writer(vectors: Path, name: str, rounds: int, per_round: int, hold: float) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(WRITER), str(vectors), name, str(rounds), str(per_round), str(hold)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_process_holding_the_shard_makes_another_wait(tmp_path: Path) -> None:
    vectors = tmp_path / "vectors"
    holder = writer(vectors, "one", rounds=1, per_round=3, hold=2.0)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"

    with (
        pytest.raises(VectorIndexError, match="held by another process"),
        vector_index(url=None, path=vectors, collection=COLLECTION, lock_wait_seconds=0.2),
    ):
        pass
    started = time.monotonic()
    with vector_index(url=None, path=vectors, collection=COLLECTION, lock_wait_seconds=30) as index:
        waited = time.monotonic() - started
        assert index.count(workspace="one") == 3  # the other process's write is seen
    assert holder.wait(timeout=30) == 0, holder.stderr.read() if holder.stderr else ""
    assert waited > 0.5


def test_two_processes_writing_in_turn_lose_no_point(tmp_path: Path) -> None:
    vectors = tmp_path / "vectors"
    writers = [writer(vectors, name, rounds=10, per_round=10, hold=0.0) for name in ("alpha", "beta")]
    for process in writers:
        _, errors = process.communicate(timeout=120)
        assert process.returncode == 0, errors

    with vector_index(url=None, path=vectors, collection=COLLECTION) as index:
        assert index.count() == 200
        assert index.count(workspace="alpha") == 100 and index.count(workspace="beta") == 100
        assert len(index.partition_keys()) == 20


MIGRATOR = """
import sys
from pathlib import Path
from video_assets.store.vector_migration import migrate_local_mode
print(migrate_local_mode(Path(sys.argv[1]), "video_segments"), flush=True)
"""


def test_two_processes_migrating_at_once_copy_once(tmp_path: Path) -> None:
    vectors = tmp_path / "vectors"
    make_local_mode_root(vectors)

    runs = [
        subprocess.Popen([sys.executable, "-c", MIGRATOR, str(vectors)], cwd=REPO, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    results = sorted(process.communicate(timeout=120)[0].strip() for process in runs)

    assert [process.returncode for process in runs] == [0, 0]
    assert results == ["9", "None"]
    with vector_index(url=None, path=vectors, collection=COLLECTION) as index:
        assert index.count() == 9
