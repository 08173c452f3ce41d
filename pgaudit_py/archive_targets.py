"""Where archive batches go: a local directory (file:///dir) or an S3-compatible bucket
(s3://bucket/prefix), with the same layout and the same four operations."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Protocol
from urllib.parse import unquote, urlparse

from pgaudit_py.errors import InvalidArgument, StorageError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

ARCHIVE_URL_ENV = "PGAUDIT_ARCHIVE_URL"


class Target(Protocol):
    url: str

    def put(self, key: str, data: bytes) -> None: ...

    def get(self, key: str) -> bytes | None:
        """The object's bytes, or None if there is no such object."""

    def list_keys(self) -> list[str]: ...


class FileTarget:
    def __init__(self, url: str, directory: Path):
        self.url = url
        self.directory = directory

    def _path(self, key: str) -> Path:
        return self.directory / key

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write aside, sync, then rename: a crash leaves the old object or the whole new one.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".part-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            return None

    def list_keys(self) -> list[str]:
        if not self.directory.is_dir():
            return []
        return sorted(str(p.relative_to(self.directory)) for p in self.directory.rglob("*")
                      if p.is_file() and not p.name.startswith(".part-"))


class S3Target:
    """Endpoint, region, credentials and addressing style come from the usual AWS settings
    (environment, shared config and credentials files; AWS_ENDPOINT_URL included)."""

    def __init__(self, url: str, bucket: str, prefix: str, sse: str | None = None):
        import boto3

        self.url = url
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.sse = sse
        self.client: S3Client = boto3.session.Session().client("s3")

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def put(self, key: str, data: bytes) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            if self.sse:
                self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data,
                                       ServerSideEncryption=self.sse)  # type: ignore[arg-type]
            else:
                self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"storing {self._key(key)} in s3://{self.bucket} failed: {exc}") from exc

    def get(self, key: str) -> bytes | None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise StorageError(f"reading {self._key(key)} from s3://{self.bucket} failed: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"reading {self._key(key)} from s3://{self.bucket} failed: {exc}") from exc

    def list_keys(self) -> list[str]:
        from botocore.exceptions import BotoCoreError, ClientError

        found = []
        start = f"{self.prefix}/" if self.prefix else ""
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=start):
                found += [obj["Key"][len(start):] for obj in page.get("Contents", [])]
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"listing s3://{self.bucket}/{self.prefix} failed: {exc}") from exc
        return sorted(found)


def open_target(url: str | None = None, *, sse: str | None = None) -> Target:
    """The target named by `url`, else by PGAUDIT_ARCHIVE_URL."""
    url = url or os.environ.get(ARCHIVE_URL_ENV)
    if not url:
        raise InvalidArgument(f"no archive target: give --target URL or set {ARCHIVE_URL_ENV}",
                              hint="file:///var/lib/pgaudit-archive or s3://bucket/prefix")
    parsed = urlparse(url)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise InvalidArgument(f"{url}: a file URL names a local directory, file:///dir")
        return FileTarget(url, Path(unquote(parsed.path)))
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise InvalidArgument(f"{url}: an S3 URL names a bucket, s3://bucket/prefix")
        return S3Target(url, parsed.netloc, unquote(parsed.path), sse)
    raise InvalidArgument(f"{url}: archive targets are file:///dir or s3://bucket/prefix")
