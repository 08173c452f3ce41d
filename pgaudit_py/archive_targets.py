"""Where archive batches go: a local directory (file:///dir) or an S3-compatible bucket
(s3://bucket/prefix), with the same layout and the same three operations. Objects travel as
files, never whole in memory: a batch can be far larger than the archiver's memory."""

from __future__ import annotations

import glob
import io
import os
import re
import shutil
import stat
import tempfile
from pathlib import Path
from typing import IO, TYPE_CHECKING, Protocol, cast
from urllib.parse import unquote, urlparse

from pgaudit_py.errors import InvalidArgument, ObjectTooLarge, StorageError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

ARCHIVE_URL_ENV = "PGAUDIT_ARCHIVE_URL"


class Target(Protocol):
    url: str

    def upload(self, key: str, source: IO[bytes]) -> None:
        """Store what `source` holds, from its current position to its end, under `key`."""

    def download(self, key: str, into: IO[bytes]) -> bool:
        """Write the object's bytes to `into`; False if there is no such object."""

    def size(self, key: str) -> int | None:
        """The object's size in bytes, or None if there is no such object: checked before a
        download, so that an object planted under a batch's key costs nothing to refuse."""

    def list_keys(self) -> list[str]: ...


def read_object(target: Target, key: str, limit: int = 64 << 20) -> bytes | None:
    """A small object (a manifest) as bytes, or None if there is none; ObjectTooLarge past `limit`."""
    size = target.size(key)
    if size is not None and size > limit:
        raise ObjectTooLarge(f"{target.url}: {key} is {size} bytes, more than the {limit} it may be")
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
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Write aside, sync, rename, sync the directory: after a crash, even a power loss, the
            # old object or the whole new one is there, as the database will believe once it is told.
            # The file aside is named after its object: what a crash left of an earlier try of the
            # same object (its batch's run, tried again) goes now, so that a finished archive holds
            # nothing else, as the offline verifier insists.
            for stale in path.parent.glob(f".part-{glob.escape(path.name)}-*"):
                stale.unlink(missing_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".part-{path.name}-")
            try:
                with os.fdopen(fd, "wb") as f:
                    shutil.copyfileobj(source, f)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            for directory in (path.parent, *path.parent.parents)[:len(Path(key).parts)]:
                _fsync_directory(directory)
        except OSError as exc:
            raise StorageError(f"storing {key} in {self.url} failed: {exc.strerror or exc}") from exc

    def download(self, key: str, into: IO[bytes]) -> bool:
        try:
            # Opened without waiting, and read only if it is a regular file: a FIFO left under a
            # batch's key would hold the run (and the worker's sealing) for good, /dev/zero feed it without end.
            with os.fdopen(os.open(self._path(key), os.O_RDONLY | os.O_NONBLOCK), "rb") as f:
                self._regular(key, os.fstat(f.fileno()))
                shutil.copyfileobj(f, into)
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise StorageError(f"reading {key} from {self.url} failed: {exc.strerror or exc}") from exc
        return True

    def size(self, key: str) -> int | None:
        try:
            return self._regular(key, self._path(key).stat()).st_size
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageError(f"reading {key} from {self.url} failed: {exc.strerror or exc}") from exc

    def _regular(self, key: str, info: os.stat_result) -> os.stat_result:
        if not stat.S_ISREG(info.st_mode):
            raise StorageError(f"reading {key} from {self.url} failed: it is not a regular file")
        return info

    def list_keys(self) -> list[str]:
        if not self.directory.is_dir():
            return []
        return sorted(str(p.relative_to(self.directory)) for p in self.directory.rglob("*")
                      if p.is_file() and not p.name.startswith(".part-"))


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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
        try:
            import boto3
        except ImportError:
            raise InvalidArgument("S3 targets need boto3: pip install 'pgaudit_py[s3]'") from None

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

        # A managed transfer: large objects go up in parts, read from the file as they are sent. Parts
        # of an upload a crash interrupted would stay, unlisted and billed: this key's are aborted
        # first (one archiver runs at a time; a lifecycle rule covers a crash never re-run).
        extra = {"ServerSideEncryption": self.sse} if self.sse else None
        try:
            stale = self.client.list_multipart_uploads(Bucket=self.bucket, Prefix=self._key(key)).get("Uploads", [])
            for upload in stale:
                if upload.get("Key") == self._key(key):
                    self.client.abort_multipart_upload(Bucket=self.bucket, Key=self._key(key),
                                                       UploadId=upload["UploadId"])
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

    def size(self, key: str) -> int | None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return int(self.client.head_object(Bucket=self.bucket, Key=self._key(key))["ContentLength"])
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


_BUCKET = re.compile(r"[A-Za-z0-9._-]{1,255}")  # S3's names, and the older ones some stores keep


def open_target(url: str | None = None, *, sse: str | None = None) -> Target:
    """The target named by `url`, else by PGAUDIT_ARCHIVE_URL."""
    url = url or os.environ.get(ARCHIVE_URL_ENV)
    if not url:
        raise InvalidArgument(f"no archive target: give --target URL or set {ARCHIVE_URL_ENV}",
                              hint="file:///var/lib/pgaudit-archive or s3://bucket/prefix")
    try:
        url.encode("utf-8")  # the log records it: refused before any object is written
    except UnicodeEncodeError:
        raise InvalidArgument("the archive target's URL is not UTF-8: its batches' record in the log could not name"
                              " it") from None
    # The URL is never repeated in a refusal: a password may stand in it where no parse finds it
    # (s3:KEY:SECRET@bucket has no host). Nor is ValueError's text, which holds the host part.
    try:
        parsed = urlparse(url)
    except ValueError:
        raise InvalidArgument("the archive target is not a URL this reads: file:///dir or s3://bucket/prefix") from None
    if "@" in parsed.netloc:
        raise InvalidArgument("the archive target's URL holds a user name or password, which no target reads",
                              hint="file:///dir, or s3://bucket/prefix with credentials from the environment"
                                   " (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, or boto3's files)")
    if parsed.query or parsed.fragment or url.endswith(("?", "#")):  # read by no target, recorded in the log
        raise InvalidArgument("the archive target's URL holds a query or a fragment, which no target reads")
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise InvalidArgument("the archive target is a file URL on another host: a file URL names a local"
                                  " directory, file:///dir")
        directory = Path(unquote(parsed.path))
        # Refused before a batch is planned: a planned batch holds back prune until a run stores it
        # (tests/test_trust_attacks_85.py, s41). The directory itself may be made by the first upload.
        # lexists: a dangling symlink, or a loop, exists too and is no directory (exists() follows it)
        existing = next((p for p in (directory, *directory.parents) if os.path.lexists(p)), None)
        if existing is not None and not existing.is_dir():
            raise InvalidArgument(f"the archive target's {existing} is not a directory")
        return FileTarget(url, directory)
    if parsed.scheme == "s3":
        if not _BUCKET.fullmatch(parsed.netloc):  # nor a %-escape boto would repeat, nor a port
            raise InvalidArgument("the archive target is an S3 URL without a bucket name (letters, digits, '.', '-'"
                                  " and '_'): s3://bucket/prefix")
        return S3Target(url, parsed.netloc, unquote(parsed.path), sse)
    raise InvalidArgument("the archive target is neither a file nor an S3 URL: archive targets are file:///dir or"
                          " s3://bucket/prefix")
