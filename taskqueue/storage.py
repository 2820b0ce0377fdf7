"""Where finished runs' files live: a local (or shared, mounted) folder, or an S3-compatible bucket.

STORAGE_URL picks one: a path (default DATA_DIR/runs) or `s3://bucket/prefix`. Workers `put` into it,
the API reads back from it; both only ever name a file by (run id, file name).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

from pipeline.settings import Settings

CONTENT_TYPES = {".mp4": "video/mp4", ".jpg": "image/jpeg", ".png": "image/png", ".json": "application/json"}
CHUNK_BYTES = 256 * 1024


def content_type(name: str) -> str:
    return CONTENT_TYPES.get(Path(name).suffix, "application/octet-stream")


@dataclass(frozen=True)
class ByteRange:
    """Inclusive byte positions, as in HTTP's Range and Content-Range."""

    start: int
    end: int

    @property
    def length(self) -> int:
        return self.end - self.start + 1


class Storage(Protocol):
    def put(self, run_id: str, name: str, path: Path) -> None: ...
    def exists(self, run_id: str, name: str) -> bool: ...
    def size(self, run_id: str, name: str) -> int | None: ...
    def stream(self, run_id: str, name: str, byte_range: ByteRange | None = None) -> Iterator[bytes]: ...
    def local_path(self, run_id: str, name: str) -> Path | None: ...
    def presigned_url(self, run_id: str, name: str, seconds: int) -> str | None: ...
    def delete(self, run_id: str) -> None: ...


class LocalStorage:
    """A folder: DATA_DIR/runs (nothing is copied: the worker renders right there) or a shared mount."""

    def __init__(self, root: Path):
        self.root = root

    def _path(self, run_id: str, name: str) -> Path:
        return self.root / run_id / name

    def put(self, run_id: str, name: str, path: Path) -> None:
        target = self._path(run_id, name)
        if target.resolve() == path.resolve():
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        # Copy beside the target, then rename: a reader on another machine never sees half a file.
        partial = target.with_name(f".{name}.{os.getpid()}.part")
        shutil.copyfile(path, partial)
        os.replace(partial, target)

    def exists(self, run_id: str, name: str) -> bool:
        return self._path(run_id, name).is_file()

    def size(self, run_id: str, name: str) -> int | None:
        path = self._path(run_id, name)
        return path.stat().st_size if path.is_file() else None

    def stream(self, run_id: str, name: str, byte_range: ByteRange | None = None) -> Iterator[bytes]:
        with self._path(run_id, name).open("rb") as f:
            remaining = None
            if byte_range is not None:
                f.seek(byte_range.start)
                remaining = byte_range.length
            while remaining is None or remaining > 0:
                chunk = f.read(CHUNK_BYTES if remaining is None else min(CHUNK_BYTES, remaining))
                if not chunk:
                    return
                if remaining is not None:
                    remaining -= len(chunk)
                yield chunk

    def local_path(self, run_id: str, name: str) -> Path | None:
        path = self._path(run_id, name)
        return path if path.is_file() else None

    def presigned_url(self, run_id: str, name: str, seconds: int) -> str | None:
        return None

    def delete(self, run_id: str) -> None:
        shutil.rmtree(self.root / run_id, ignore_errors=True)


class S3Storage:
    """An S3-compatible bucket (AWS, MinIO, R2, ...): objects at `prefix/run_id/name`."""

    def __init__(self, bucket: str, prefix: str, client: Any):
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.client = client

    def key(self, run_id: str, name: str) -> str:
        return "/".join(p for p in (self.prefix, run_id, name) if p)

    def put(self, run_id: str, name: str, path: Path) -> None:
        self.client.upload_file(str(path), self.bucket, self.key(run_id, name),
                                ExtraArgs={"ContentType": content_type(name)})

    def _head(self, run_id: str, name: str) -> dict | None:
        from botocore.exceptions import ClientError

        try:
            return self.client.head_object(Bucket=self.bucket, Key=self.key(run_id, name))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise

    def exists(self, run_id: str, name: str) -> bool:
        return self._head(run_id, name) is not None

    def size(self, run_id: str, name: str) -> int | None:
        head = self._head(run_id, name)
        return int(head["ContentLength"]) if head else None

    def stream(self, run_id: str, name: str, byte_range: ByteRange | None = None) -> Iterator[bytes]:
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": self.key(run_id, name)}
        if byte_range is not None:
            kwargs["Range"] = f"bytes={byte_range.start}-{byte_range.end}"
        body = self.client.get_object(**kwargs)["Body"]
        try:
            yield from body.iter_chunks(CHUNK_BYTES)
        finally:
            body.close()

    def local_path(self, run_id: str, name: str) -> Path | None:
        return None

    def presigned_url(self, run_id: str, name: str, seconds: int) -> str | None:
        return self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": self.key(run_id, name)}, ExpiresIn=seconds)

    def delete(self, run_id: str) -> None:
        prefix = self.key(run_id, "")
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix.rstrip("/") + "/"):
            keys = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
            if keys:
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": keys})


def s3_client(settings: Settings) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint_url,
        region_name=settings.s3_region,
        aws_access_key_id=settings.s3_access_key_id,
        aws_secret_access_key=settings.s3_secret_access_key,
        # Path-style works with every S3-compatible server (MinIO, moto) and with AWS itself.
        config=Config(s3={"addressing_style": "path"}, signature_version="s3v4",
                      retries={"max_attempts": 5, "mode": "standard"}),
    )


def is_s3(settings: Settings) -> bool:
    return (settings.storage_url or "").startswith("s3://")


def make_storage(settings: Settings, *, client: Any = None) -> Storage:
    """The storage STORAGE_URL names (default: the folder DATA_DIR/runs)."""
    url = settings.storage_url
    if not url:
        return LocalStorage(settings.runs_dir)
    if url.startswith("s3://"):
        parsed = urlparse(url)
        if not parsed.netloc:
            raise ValueError(f"STORAGE_URL {url!r} names no bucket; use s3://bucket/prefix")
        return S3Storage(parsed.netloc, parsed.path, client or s3_client(settings))
    if url.startswith("file://"):
        url = urlparse(url).path
    return LocalStorage(Path(url).expanduser().resolve())


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The one byte range a `Range: bytes=...` header asks for; None for the whole file (no header, or
    several ranges, which a server may answer whole). ValueError when the range cannot be satisfied."""
    if not header or not header.startswith("bytes=") or "," in header:
        return None
    first, sep, last = header[len("bytes="):].strip().partition("-")
    if not sep or not (first or last) or not all(p == "" or p.isdigit() for p in (first, last)):
        return None  # a malformed header is ignored, as RFC 9110 allows
    if first == "":
        if int(last) == 0 or size == 0:
            raise ValueError(f"range {header} selects no bytes")
        return ByteRange(max(0, size - int(last)), size - 1)
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or end < start:
        raise ValueError(f"range {header} outside 0-{size - 1}")
    return ByteRange(start, end)
