"""Which uploaded files hold a video's bytes, in one SQLite database under the data root.

Per video (partition): its sha256 and when it was first seen. Per name in the bucket (workspace +
path relative to the workspace folder): the video it holds now and the size, mtime and sha256 it had
when registered. Per rejected upload (not a video, unreadable): its size, mtime and the reason, so a
bad file is looked at again only once it changes. A name belongs to one video at a time: when its
bytes change it moves to the video of the new bytes, and a video can be left with no name at all.

Names, not paths, are stored: a URI is rebuilt through the bucket, so moving the data root and the
bucket keeps every record valid. WAL and a busy timeout let the sensor, CLI processes and runs read
and write at once; every write takes the write lock up front (BEGIN IMMEDIATE), so two writers queue
instead of one failing on a lock upgrade.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from video_assets.media.errors import MediaError
from video_assets.store.atomic import read_json
from video_assets.store.layout import DataLayout, split_partition_key

if TYPE_CHECKING:
    from video_assets.media.probe import MediaInfo
    from video_assets.store.uploads import UploadBucket, UploadedObject

_log = logging.getLogger(__name__)
# Kept as PRAGMA user_version, raised when the schema changes; 0 is a database never set up.
_SCHEMA_VERSION = 2  # 2: dropped_names, sources.original_deleted
_BUSY_TIMEOUT_MS = 60_000
_SCHEMA = """
CREATE TABLE IF NOT EXISTS videos (
    partition_key TEXT PRIMARY KEY,
    workspace TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    first_seen REAL NOT NULL,
    -- 1 once its partition is known to exist: until then the sensor asks for it again
    partitioned INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS sources (
    workspace TEXT NOT NULL,
    name TEXT NOT NULL,
    partition_key TEXT NOT NULL REFERENCES videos (partition_key),
    size INTEGER NOT NULL,
    mtime REAL NOT NULL,
    sha256 TEXT NOT NULL,
    registered REAL NOT NULL,
    uri TEXT NOT NULL,  -- as recorded, used only when the registry is opened without a bucket
    -- 1 once the upload was deleted on purpose after its run (VIDEO_DELETE_ORIGINAL_ENABLED): the
    -- name still references the video, and its absence from the bucket is no deletion
    original_deleted INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (workspace, name)
);
-- Names a video lost (deleted, gone from the bucket): the cleanup's "is the video still present"
-- looks for them too, so a file whose reference was dropped is kept and reported, not deleted.
CREATE TABLE IF NOT EXISTS dropped_names (
    workspace TEXT NOT NULL,
    name TEXT NOT NULL,
    partition_key TEXT NOT NULL,
    size INTEGER NOT NULL,
    dropped REAL NOT NULL,
    PRIMARY KEY (workspace, name, partition_key)
);
CREATE INDEX IF NOT EXISTS sources_by_partition ON sources (partition_key);
CREATE TABLE IF NOT EXISTS rejected (
    workspace TEXT NOT NULL,
    name TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime REAL NOT NULL,
    reason TEXT NOT NULL,
    rejected REAL NOT NULL,
    PRIMARY KEY (workspace, name)
);
"""


@dataclass(frozen=True)
class SourceFile:
    uri: str  # a local path or s3://bucket/key
    name: str  # the name as uploaded, relative to the workspace folder
    size: int
    mtime: float


@dataclass(frozen=True)
class VideoRecord:
    partition_key: str
    sha256: str
    sources: list[SourceFile]

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.sources]


class UploadChanged(Exception):
    """The file changed while it was hashed: it is still being written, and is looked at again later."""


class VideoRegistry:
    """The registry of one data root. `bucket` rebuilds URIs; without it, URIs are returned as recorded."""

    def __init__(self, layout: DataLayout, bucket: UploadBucket | None = None):
        self.layout = layout
        self.bucket = bucket
        self._local = threading.local()

    # -- reading ------------------------------------------------------------------------------

    def get(self, key: str) -> VideoRecord | None:
        db = self._db()
        row = db.execute("SELECT sha256 FROM videos WHERE partition_key = ?", (key,)).fetchone()
        if row is None:
            return None
        rows = db.execute(
            "SELECT workspace, name, size, mtime, uri FROM sources WHERE partition_key = ? ORDER BY rowid", (key,)
        ).fetchall()
        return VideoRecord(key, row[0], [SourceFile(self._uri(w, n, uri), n, s, m) for w, n, s, m, uri in rows])

    def partition_keys(self) -> list[str]:
        return [key for (key,) in self._db().execute("SELECT partition_key FROM videos ORDER BY partition_key")]

    def owner(self, workspace: str, name: str) -> str | None:
        """The video a name holds now, or None."""
        row = (
            self._db()
            .execute("SELECT partition_key FROM sources WHERE workspace = ? AND name = ?", (workspace, name))
            .fetchone()
        )
        return row[0] if row else None

    def orphaned_partitions(self) -> list[str]:
        """Videos no name holds any more (every name was overwritten or moved to other bytes)."""
        query = (
            "SELECT partition_key FROM videos WHERE partition_key NOT IN (SELECT partition_key FROM sources) "
            "ORDER BY partition_key"
        )
        return [key for (key,) in self._db().execute(query)]

    def known_signatures(self, workspace: str | None = None) -> dict[tuple[str, str], tuple[int, float]]:
        """(size, mtime) per (workspace, name) the registry has looked at: registered or rejected.

        A listed file with the same signature needs no probe and no hash.
        """
        where, args = ("WHERE workspace = ?", (workspace,)) if workspace is not None else ("", ())
        known: dict[tuple[str, str], tuple[int, float]] = {}
        db = self._db()
        for table in ("rejected", "sources"):
            for w, n, size, mtime in db.execute(f"SELECT workspace, name, size, mtime FROM {table} {where}", args):
                known[(w, n)] = (size, mtime)
        return known

    def rejection(self, workspace: str, name: str) -> str | None:
        row = (
            self._db()
            .execute("SELECT reason FROM rejected WHERE workspace = ? AND name = ?", (workspace, name))
            .fetchone()
        )
        return row[0] if row else None

    def unpartitioned(self, registered_before: float) -> list[str]:
        """Videos holding a name, first seen before `registered_before`, whose partition is not confirmed yet."""
        query = (
            "SELECT DISTINCT v.partition_key FROM videos v JOIN sources s ON s.partition_key = v.partition_key "
            "WHERE v.partitioned = 0 AND v.first_seen < ? ORDER BY v.partition_key"
        )
        return [key for (key,) in self._db().execute(query, (registered_before,))]

    # -- writing ------------------------------------------------------------------------------

    def record(self, key: str, sha256: str, source: SourceFile) -> VideoRecord:
        """Make `source.name` (in the key's workspace) a name of video `key`; returns the updated record.

        The name leaves whatever video it held before: its bytes are now these.
        """
        workspace, _ = split_partition_key(key)
        now = time.time()
        with self._write() as db:
            db.execute(
                "INSERT OR IGNORE INTO videos (partition_key, workspace, sha256, first_seen) VALUES (?, ?, ?, ?)",
                (key, workspace, sha256, now),
            )
            # Delete, then insert: a name recorded again goes last, as a list append would put it.
            db.execute("DELETE FROM sources WHERE workspace = ? AND name = ?", (workspace, source.name))
            db.execute(
                "INSERT INTO sources (workspace, name, partition_key, size, mtime, sha256, registered, uri) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (workspace, source.name, key, source.size, source.mtime, sha256, now, source.uri),
            )
            db.execute("DELETE FROM rejected WHERE workspace = ? AND name = ?", (workspace, source.name))
        record = self.get(key)
        assert record is not None
        return record

    def record_rejected(self, workspace: str, name: str, size: int, mtime: float, reason: str) -> str | None:
        """Remember an upload that is no video, until its size or mtime change.

        Returns the video the name held before, if any: a name whose bytes are no video holds none.
        """
        with self._write() as db:
            row = db.execute(
                "SELECT partition_key FROM sources WHERE workspace = ? AND name = ?", (workspace, name)
            ).fetchone()
            db.execute("DELETE FROM sources WHERE workspace = ? AND name = ?", (workspace, name))
            db.execute(
                "INSERT OR REPLACE INTO rejected (workspace, name, size, mtime, reason, rejected) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (workspace, name, size, mtime, reason, time.time()),
            )
        return row[0] if row else None

    def missing_names(self, listed: set[tuple[str, str]]) -> list[tuple[str, str, str]]:
        """(workspace, name, video) of every name no longer in the bucket listing `listed`, except
        originals deleted on purpose."""
        rows = self._db().execute("SELECT workspace, name, partition_key FROM sources WHERE original_deleted = 0")
        return [(w, n, k) for w, n, k in rows if (w, n) not in listed]

    def drop_name(self, workspace: str, name: str) -> str | None:
        """Drop a name's reference; returns the video it held, or None if it held none."""
        with self._write() as db:
            row = db.execute(
                "SELECT partition_key, size FROM sources WHERE workspace = ? AND name = ?", (workspace, name)
            ).fetchone()
            if row is None:
                return None
            db.execute("DELETE FROM sources WHERE workspace = ? AND name = ?", (workspace, name))
            db.execute(
                "INSERT OR REPLACE INTO dropped_names (workspace, name, partition_key, size, dropped) "
                "VALUES (?, ?, ?, ?, ?)",
                (workspace, name, row[0], row[1], time.time()),
            )
        return row[0]

    def dropped_names(self, key: str) -> list[tuple[str, int]]:
        """(name, size) of the names video `key` lost, to look for them in the bucket."""
        rows = self._db().execute("SELECT name, size FROM dropped_names WHERE partition_key = ?", (key,))
        return [(n, s) for n, s in rows]

    def mark_original_deleted(self, key: str) -> None:
        with self._write() as db:
            db.execute("UPDATE sources SET original_deleted = 1 WHERE partition_key = ?", (key,))

    def forget_video(self, key: str) -> None:
        """Every trace of a deleted video: its row, its names, the names it lost."""
        with self._write() as db:
            for table in ("sources", "dropped_names", "videos"):
                db.execute(f"DELETE FROM {table} WHERE partition_key = ?", (key,))

    def mark_partitioned(self, keys: list[str]) -> None:
        if keys:
            with self._write() as db:
                db.executemany("UPDATE videos SET partitioned = 1 WHERE partition_key = ?", [(k,) for k in keys])

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Many writes in one transaction (a bulk import, a test's fixture): one commit, not one each."""
        with self._write():
            yield

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    # -- internals ----------------------------------------------------------------------------

    def _uri(self, workspace: str, name: str, recorded: str) -> str:
        return self.bucket.uri(workspace, name) if self.bucket is not None else recorded

    def _db(self) -> sqlite3.Connection:
        """One connection per thread and process: a connection must not cross a fork or a thread."""
        if getattr(self._local, "pid", None) != os.getpid() or self._local.db is None:
            self._local.db = _open(self.layout)
            self._local.pid = os.getpid()
        return self._local.db

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        db = self._db()
        if db.in_transaction:  # inside batch(): its transaction commits
            yield db
            return
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")


def _open(layout: DataLayout) -> sqlite3.Connection:
    path = layout.registry_db
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, isolation_level=None)  # transactions are begun explicitly
    db.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
    if db.execute("PRAGMA user_version").fetchone()[0] != _SCHEMA_VERSION:
        _set_up(db, layout)
    db.execute("PRAGMA synchronous = NORMAL")  # with WAL: durable up to the last checkpoint, never corrupt
    return db


def _set_up(db: sqlite3.Connection, layout: DataLayout) -> None:
    """Create the tables and import the JSON registry of an older data root: once, under the write lock."""
    _use_wal(db)
    db.execute("BEGIN IMMEDIATE")
    try:
        version = db.execute("PRAGMA user_version").fetchone()[0]  # another process may have set it up meanwhile
        if version != _SCHEMA_VERSION:
            for statement in _SCHEMA.split(";"):  # executescript() would commit the transaction first
                if statement.strip():
                    db.execute(statement)
            if version == 1:
                db.execute("ALTER TABLE sources ADD COLUMN original_deleted INTEGER NOT NULL DEFAULT 0")
            if version == 0:
                _import_json_registry(db, layout)
            db.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _use_wal(db: sqlite3.Connection) -> None:
    """Switch the database to WAL (kept in the file). The switch needs the database to itself and does not
    wait for it like other statements do: another process setting up or reading at that moment is waited out."""
    deadline = time.monotonic() + _BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            if db.execute("PRAGMA journal_mode = WAL").fetchone()[0] == "wal":
                return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise sqlite3.OperationalError("database is locked: another process kept it from switching to WAL")
        time.sleep(0.01)


def _import_json_registry(db: sqlite3.Connection, layout: DataLayout) -> None:
    """`registry/<workspace>/<video id>.json`, one per video, as earlier versions wrote it (left in place).

    The old files could list one name under two videos (an overwrite); the name goes to the video
    whose recorded bytes are newest, as the sensor would decide now.
    """
    named: list[tuple[float, str, str, dict]] = []
    for path in layout.legacy_registry_files():
        try:
            data = read_json(path)
            key, sha = data["partition_key"], data["sha256"]
            workspace, _ = split_partition_key(key)
            sources = list(data["sources"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            _log.warning("registry import: %s skipped, unreadable (%s)", path, exc)
            continue
        updated = float(data.get("updated") or path.stat().st_mtime)
        db.execute(
            "INSERT OR IGNORE INTO videos (partition_key, workspace, sha256, first_seen, partitioned) "
            "VALUES (?, ?, ?, ?, 1)",  # handled by the version that wrote it: its partition was added then
            (key, workspace, sha, updated),
        )
        named += [(float(s["mtime"]), key, sha, s | {"registered": updated}) for s in sources]
    for mtime, key, sha, source in sorted(named, key=lambda item: item[0]):
        workspace, _ = split_partition_key(key)
        db.execute("DELETE FROM sources WHERE workspace = ? AND name = ?", (workspace, source["name"]))
        db.execute(
            "INSERT INTO sources (workspace, name, partition_key, size, mtime, sha256, registered, uri) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (workspace, source["name"], key, int(source["size"]), mtime, sha, source["registered"], source["uri"]),
        )


def register_upload(registry: VideoRegistry, bucket: UploadBucket, obj: UploadedObject) -> VideoRecord:
    """Probe an uploaded object, hash its bytes and record it under its partition key.

    Raises MediaError (naming the file and the cause) for anything that is not a readable video, and
    UploadChanged when the file's size or mtime moved while it was read: those bytes are no version of it.
    """
    path = bucket.local_path(obj.uri)
    _, sha, key = identify(path, obj.workspace)
    stat = path.stat()
    if (stat.st_size, stat.st_mtime) != (obj.size, obj.mtime):
        raise UploadChanged(f"{obj.uri}: changed while it was read")
    return registry.record(key, sha, SourceFile(obj.uri, obj.name, obj.size, obj.mtime))


@dataclass(frozen=True)
class Registration:
    """What became of one upload offered to `admit`."""

    obj: UploadedObject
    status: str  # "registered", "rejected", "failed" (an unexpected error, rejected too), "changing"
    partition_key: str | None = None
    previous_key: str | None = None  # the video the name held before, when its bytes were another video's
    reason: str = ""


def admit(registry: VideoRegistry, bucket: UploadBucket, obj: UploadedObject) -> Registration:
    """Register an upload, or remember why it is no video; never raises for a problem with the file.

    An unexpected error (permissions, I/O) is remembered like a rejection, so a file that cannot be
    read is not retried, and logged, every tick; it is looked at again once it changes.
    """
    previous = registry.owner(obj.workspace, obj.name)
    try:
        key = register_upload(registry, bucket, obj).partition_key
    except UploadChanged as exc:
        return Registration(obj, "changing", reason=str(exc))
    except (MediaError, ValueError) as exc:
        reason, status = str(getattr(exc, "cause", exc)), "rejected"
    except Exception as exc:
        reason, status = f"unexpected {type(exc).__name__}: {exc}", "failed"
    else:
        return Registration(obj, "registered", key, previous if previous != key else None)
    previous = registry.record_rejected(obj.workspace, obj.name, obj.size, obj.mtime, reason)
    return Registration(obj, status, previous_key=previous, reason=reason)


def identify(path: Path, workspace: str) -> tuple[MediaInfo, str, str]:
    """(media info, sha256, partition key) of a file; MediaError if it is not a readable video."""
    from video_assets.media.probe import probe
    from video_assets.store.layout import content_hash, partition_key

    info = probe(path)
    sha = content_hash(path)
    return info, sha, partition_key(workspace, sha)
