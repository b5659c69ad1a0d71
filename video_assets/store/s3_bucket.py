"""The upload bucket in S3 or any S3-compatible store: `VIDEO_ASSETS_UPLOADS=s3://bucket/prefix`.

Layout: `<prefix>/<workspace>/<any/sub/path/name>`. A listing is a paginated ListObjectsV2; an object's
signature is its size and LastModified, as a file's is its size and mtime. The client is boto3's, set up
from the standard AWS environment (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
AWS_DEFAULT_REGION, or ~/.aws, or an instance role): credentials never pass through our settings, config,
metadata or logs. A custom endpoint (SeaweedFS, MinIO) is addressed path-style.

Probing, hashing and cutting need a file: `local_path` streams the object, chunk by chunk, into the
working folder `<home>/cache/uploads/` under a name made of its ETag, LastModified and a hash of its key,
so no key can name a place outside it; `release` removes that copy once its reader is done, and copies older than a day
(left by a killed process) are removed by the next download. A key that could escape a folder (`..`, an
absolute path, a backslash, a control character) is never downloaded: the listing skips it and says so.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from video_assets.store.layout import check_workspace
from video_assets.store.uploads import ListingError, UploadedObject

_log = logging.getLogger(__name__)
CHUNK_BYTES = 8 << 20  # read from the streamed body at a time: memory per download, whatever the object's size
STALE_COPY_SECONDS = 24 * 3600.0
_ETAG_CHARS = re.compile(r"[^0-9A-Za-z]")
_SUFFIX = re.compile(r"^\.[0-9A-Za-z]{1,12}$")


class UnsafeKey(ValueError):
    """An object key that could name a place outside a folder if it became a path."""


def split_location(location: str) -> tuple[str, str]:
    """`s3://bucket/some/prefix` -> ("bucket", "some/prefix"); the prefix may be empty."""
    if not location.startswith("s3://"):
        raise ValueError(f"{location}: not an s3:// location")
    bucket, _, prefix = location.removeprefix("s3://").partition("/")
    if not bucket:
        raise ValueError(f"{location}: no bucket name (expected s3://bucket/prefix)")
    return bucket, prefix.strip("/")


def check_name(name: str) -> str:
    """A name relative to its workspace that is safe as a relative path: raises UnsafeKey if not."""
    if not name:
        raise UnsafeKey("empty name")
    if name.startswith("/"):
        raise UnsafeKey("an absolute path")
    if "\\" in name:
        raise UnsafeKey("a backslash in the name")
    if any(ord(char) < 32 or ord(char) == 127 for char in name):
        raise UnsafeKey("a control character in the name")
    parts = name.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise UnsafeKey("an empty, '.' or '..' path segment")
    return name


def printable(text: str) -> str:
    """`text` with each unprintable character escaped, as Python writes it in a string literal."""
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


def _hidden(name: str) -> bool:
    """A segment with a leading '.', as the local folder hides: a partial upload or a tool's own file."""
    return any(part.startswith(".") for part in name.split("/"))


class S3Bucket:
    """An `UploadBucket` over one bucket and prefix; `cache_dir` is the working folder for local copies."""

    def __init__(self, location: str, cache_dir: Path, *, client: Any = None, chunk_bytes: int | None = None):
        self.bucket, self.prefix = split_location(location)
        self.location = f"s3://{self.bucket}/{self.prefix}".rstrip("/")
        self.cache_dir = Path(cache_dir).expanduser().resolve()
        self.chunk_bytes = chunk_bytes
        self._client = client
        self._local = threading.local()
        self._copies: dict[str, Path] = {}  # URI -> the local copy this object made of it

    # -- the client --------------------------------------------------------------------------

    @property
    def client(self) -> Any:
        """boto3's S3 client, one per process: a client must not cross a fork."""
        if self._client is not None:
            return self._client
        if getattr(self._local, "pid", None) != os.getpid():
            self._local.client = make_client()
            self._local.pid = os.getpid()
        return self._local.client

    # -- keys --------------------------------------------------------------------------------

    def _key(self, workspace: str, name: str) -> str:
        relative = f"{check_workspace(workspace)}/{check_name(name)}"
        return f"{self.prefix}/{relative}" if self.prefix else relative

    def uri(self, workspace: str, name: str) -> str:
        return f"s3://{self.bucket}/{self._key(workspace, name)}"

    def _split_uri(self, uri: str) -> tuple[str, str, str]:
        """(key, workspace, name) of a URI of this bucket; ValueError for any other or an unsafe one."""
        bucket, key = split_location(uri) if uri.startswith("s3://") else ("", "")
        head = f"{self.prefix}/" if self.prefix else ""
        if bucket != self.bucket or not key.startswith(head):
            raise ValueError(f"{uri}: not an object of the upload bucket {self.location}")
        workspace, _, name = key.removeprefix(head).partition("/")
        return key, check_workspace(workspace), check_name(name)

    # -- listing -----------------------------------------------------------------------------

    def list(self, on_error: ListingError | None = None) -> Iterator[UploadedObject]:
        """Every visible object under the prefix, in key order (ListObjectsV2, page by page).

        An error of the store itself raises: a listing cut short must never read as uploads removed.
        """
        paginator = self.client.get_paginator("list_objects_v2")
        head = f"{self.prefix}/" if self.prefix else ""
        for page in paginator.paginate(Bucket=self.bucket, Prefix=head):
            for entry in page.get("Contents", []):
                obj = self._listed(entry, head, on_error)
                if obj is not None:
                    yield obj

    def _listed(self, entry: dict, head: str, on_error: ListingError | None) -> UploadedObject | None:
        key = entry["Key"]
        relative = key.removeprefix(head)
        if key.endswith("/") or "/" not in relative:  # a folder marker, or an object beside the workspaces
            return None
        workspace, _, name = relative.partition("/")
        try:
            check_workspace(workspace)
            check_name(name)
        except ValueError as exc:
            shown = f"s3://{self.bucket}/{printable(key)}"  # a newline in a key must not forge a log line
            if on_error:
                on_error(shown, OSError(errno.EINVAL, f"skipped, never downloaded: {exc}"))
            else:
                _log.warning("%s: skipped, never downloaded: %s", shown, exc)
            return None
        if _hidden(name):
            return None
        uri = f"s3://{self.bucket}/{key}"
        return UploadedObject(uri, workspace, name, int(entry["Size"]), seconds(entry["LastModified"]))

    def stat(self, workspace: str, name: str) -> UploadedObject | None:
        """The object as it is now (HeadObject), or None if there is none."""
        head = self._head(self._key(workspace, name))
        if head is None:
            return None
        return UploadedObject(
            self.uri(workspace, name), workspace, name, int(head["ContentLength"]), seconds(head["LastModified"])
        )

    def _head(self, key: str) -> dict | None:
        from botocore.exceptions import ClientError

        try:
            return self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _status(exc) == 404:
                return None
            raise

    # -- reading -----------------------------------------------------------------------------

    def local_path(self, uri: str) -> Path:
        """A local copy of the object as it is now, downloaded in chunks unless already there.

        Its mtime is the object's LastModified, so a copy of other bytes than those listed (the object was
        overwritten meanwhile) shows as a changed upload. A missing object gives a path that does not exist.
        """
        from botocore.exceptions import ClientError

        key, _, name = self._split_uri(uri)
        for _ in range(3):
            head = self._head(key)
            if head is None:
                return self.cache_dir / "missing" / "object"  # never created: the object is gone
            target = self._copy_path(key, head, name)
            self._copies[uri] = target
            if target.is_file() and target.stat().st_size == int(head["ContentLength"]):
                return target
            try:
                chunk_bytes = self.chunk_bytes or CHUNK_BYTES
                download(self.client, self.bucket, key, target, etag=head["ETag"], chunk_bytes=chunk_bytes)
            except ClientError as exc:
                if _status(exc) in (404, 412):  # deleted or overwritten between HEAD and GET: look again
                    continue
                raise
            self._remove_stale()
            return target
        raise OSError(errno.EAGAIN, f"{uri}: changed during every try to download it")

    def _copy_path(self, key: str, head: dict, name: str) -> Path:
        """`<cache>/<etag>-<LastModified>-<key digest>[.suffix]`: one file per object version, and nothing of
        the key in its name but a hash and a checked suffix."""
        etag = _ETAG_CHARS.sub("", str(head["ETag"]))[:64] or "noetag"
        stamp = int(seconds(head["LastModified"]))
        of_key = hashlib.sha256(f"{self.bucket}/{key}".encode()).hexdigest()[:12]
        suffix = Path(name).suffix
        path = self.cache_dir / f"{etag}-{stamp}-{of_key}{suffix if _SUFFIX.match(suffix) else ''}"
        assert path.parent == self.cache_dir
        return path

    def release(self, uri: str) -> None:
        """Remove the local copy of an object, if any: its reader is done with it. The copy this object
        made, else the copy of the object as it is now (the sensor keeps one for the run it requests)."""
        copy = self._copies.pop(uri, None)
        if copy is None:
            try:
                key, _, name = self._split_uri(uri)
            except ValueError:
                return
            head = self._head(key)
            if head is None:
                return
            copy = self._copy_path(key, head, name)
        copy.unlink(missing_ok=True)

    def _remove_stale(self) -> None:
        """Copies (and partial downloads) a killed process left behind, by when they were downloaded."""
        cutoff = time.time() - STALE_COPY_SECONDS
        try:
            entries = list(os.scandir(self.cache_dir))
        except FileNotFoundError:
            return
        for entry in entries:
            try:
                if entry.is_file(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_ctime < cutoff:
                    os.unlink(entry.path)
            except FileNotFoundError:
                continue

    # -- writing -----------------------------------------------------------------------------

    def put(self, source: Path, workspace: str, name: str) -> UploadedObject:
        """Upload a file (boto3's managed transfer: multipart and streamed for a large one)."""
        key = self._key(workspace, name)
        self.client.upload_file(str(source), self.bucket, key)
        obj = self.stat(workspace, name)
        if obj is None:
            raise OSError(errno.EIO, f"s3://{self.bucket}/{key}: not there after its upload")
        return obj

    def remove(self, workspace: str, name: str) -> bool:
        """Delete an upload; False if it was not there."""
        key = self._key(workspace, name)
        if self._head(key) is None:
            return False
        self.client.delete_object(Bucket=self.bucket, Key=key)
        return True


def download(client: Any, bucket: str, key: str, target: Path, *, etag: str, chunk_bytes: int = CHUNK_BYTES) -> None:
    """Stream one object version (If-Match its ETag) into `target`, `chunk_bytes` at a time, atomically:
    a hidden temporary file beside it, renamed once complete, with the object's LastModified as mtime."""
    target.parent.mkdir(parents=True, exist_ok=True)
    response = client.get_object(Bucket=bucket, Key=key, IfMatch=etag)
    expected = int(response["ContentLength"])
    temporary = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.part")
    written = 0
    try:
        with temporary.open("wb") as handle:
            for chunk in response["Body"].iter_chunks(chunk_size=chunk_bytes):
                handle.write(chunk)
                written += len(chunk)
        if written != expected:
            raise OSError(errno.EIO, f"s3://{bucket}/{key}: {written} of {expected} bytes read")
        stamp = seconds(response["LastModified"])
        os.utime(temporary, (stamp, stamp))
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    finally:
        response["Body"].close()


def make_client() -> Any:
    """boto3's S3 client from the standard AWS environment; path-style addressing for a custom endpoint."""
    import boto3
    from botocore.config import Config

    custom_endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    config = Config(
        s3={"addressing_style": "path" if custom_endpoint else "auto"},
        retries={"max_attempts": 5, "mode": "standard"},
    )
    return boto3.session.Session().client("s3", config=config)


def seconds(stamp: Any) -> float:
    """LastModified in whole seconds: listings may carry milliseconds where HEAD and GET (HTTP dates) do not,
    and an object's signature must read the same through both."""
    return float(int(stamp.timestamp()))


def _status(exc: Exception) -> int | None:
    response = getattr(exc, "response", None) or {}
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    if status is None and response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
        return 404
    return status
