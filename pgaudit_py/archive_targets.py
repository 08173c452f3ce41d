"""Where archive batches go: a local directory (file:///dir) or an S3-compatible bucket
(s3://bucket/prefix), with the same layout and the same three operations. Objects travel as
files, never whole in memory: a batch can be far larger than the archiver's memory."""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO, TYPE_CHECKING, Protocol, cast
from urllib.parse import unquote, urlparse

from pgaudit_py.errors import InvalidArgument, StorageError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

ARCHIVE_URL_ENV = "PGAUDIT_ARCHIVE_URL"


class Target(Protocol):
    url: str

    def upload(self, key: str, source: IO[bytes]) -> None:
        """Store what `source` holds, from its current position to its end, under `key`."""

    def download(self, key: str, into: IO[bytes]) -> bool:
        """Write the object's bytes to `into`; False if there is no such object."""

    def list_keys(self) -> list[str]: ...


def read_object(target: Target, key: str) -> bytes | None:
    """A small object (a manifest) as bytes, or None if there is none."""
    buffer = io.BytesIO()
    return buffer.getvalue() if target.download(key, buffer) else None


def write_object(target: Target, key: str, data: bytes) -> None:
    target.upload(key, io.BytesIO(data))


class FileTarget:
    def __init__(self, url: str, directory: Path):
        self.url = url
        self.directory = directory

    def _path(self, key: str) -> Path:
        return self.directory / key

    def upload(self, key: str, source: IO[bytes]) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write aside, sync, then rename: a crash leaves the old object or the whole new one.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".part-")
        try:
            with os.fdopen(fd, "wb") as f:
                shutil.copyfileobj(source, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def download(self, key: str, into: IO[bytes]) -> bool:
        try:
            with self._path(key).open("rb") as f:
                shutil.copyfileobj(f, into)
        except FileNotFoundError:
            return False
        return True

    def list_keys(self) -> list[str]:
        if not self.directory.is_dir():
            return []
        return sorted(str(p.relative_to(self.directory)) for p in self.directory.rglob("*")
                      if p.is_file() and not p.name.startswith(".part-"))


class _Lent:
    """A file lent to s3transfer, which closes the files it uploads from (boto/s3transfer#80): the
    caller's file stays open."""

    def __init__(self, f: IO[bytes]):
        self._f = f

    def __getattr__(self, name: str) -> object:
        return getattr(self._f, name)

    def close(self) -> None:
        pass


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

    def upload(self, key: str, source: IO[bytes]) -> None:
        from boto3.exceptions import S3UploadFailedError
        from botocore.exceptions import BotoCoreError, ClientError

        # A managed transfer: large objects go up in parts, read from the file as they are sent.
        extra = {"ServerSideEncryption": self.sse} if self.sse else None
        try:
            self.client.upload_fileobj(cast(IO[bytes], _Lent(source)), self.bucket, self._key(key), ExtraArgs=extra)
        except (BotoCoreError, ClientError, S3UploadFailedError) as exc:
            raise StorageError(f"storing {self._key(key)} in s3://{self.bucket} failed: {exc}") from exc

    def download(self, key: str, into: IO[bytes]) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.download_fileobj(self.bucket, self._key(key), into)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return False
            raise StorageError(f"reading {self._key(key)} from s3://{self.bucket} failed: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"reading {self._key(key)} from s3://{self.bucket} failed: {exc}") from exc
        return True

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
