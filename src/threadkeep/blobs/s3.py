"""Blobs in S3-compatible object storage (AWS S3, MinIO, R2, Ceph...), through boto3.

Objects are ``<prefix>blobs/<sha256>``. A put streams the bytes into a
multipart upload at ``<prefix>tmp/<uuid>`` (parts of 8 MiB: at most one part
in memory), checks the sha256, then copies the object to its final key on the
server side and deletes the temporary one; the final key therefore only ever
holds whole, verified bytes. A crash leaves at most a temporary object or an
unfinished multipart upload, both swept by ``collect``.

A blob's age is the ``tk-touched`` metadata of its object (its LastModified
when absent); storing bytes already there rewrites that metadata in place.
S3 has no conditional delete on age, so ``collect`` re-reads the age just
before deleting: the window left is the milliseconds between that read and
the delete, against an upload that would have to store the same bytes *and*
commit its row inside it (docs/blobs.md).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from threadkeep.blobs.contract import (
    CHUNK,
    SHA256,
    BlobInfo,
    BlobStore,
    Hashing,
    Referenced,
    Source,
)
from threadkeep.errors import BlobMissing

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

PART = 8 * 1024 * 1024  # S3's minimum part is 5 MiB (except the last)
_TOUCHED = "tk-touched"


def _not_found(exc: Exception) -> bool:
    code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
    return code in ("404", "NoSuchKey", "NotFound")


class S3BlobStore(BlobStore):
    name = "s3"

    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "threadkeep/",
        client: S3Client | None = None,
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
    ) -> None:
        if client is None:
            import boto3
            from botocore.config import Config

            client = boto3.client(
                "s3",
                endpoint_url=endpoint_url,
                region_name=region,
                aws_access_key_id=access_key_id,
                aws_secret_access_key=secret_access_key,
                config=Config(retries={"mode": "standard", "max_attempts": 5}),
            )
        self.client = client
        self.bucket = bucket
        self.prefix = prefix

    def key(self, sha256: str) -> str:
        return f"{self.prefix}blobs/{sha256}"

    def put(
        self, source: Source, *, max_bytes: int, expected_sha256: str | None = None
    ) -> BlobInfo:
        hashing = Hashing(source, max_bytes, expected_sha256)
        temp = f"{self.prefix}tmp/{uuid.uuid4().hex}"
        self._upload(temp, hashing.regrouped(PART))
        try:
            assert hashing.sha256 is not None
            final = self.key(hashing.sha256)
            created = not self._touch(final)
            if created:
                self.client.copy(
                    {"Bucket": self.bucket, "Key": temp},
                    self.bucket,
                    final,
                    ExtraArgs={"Metadata": {_TOUCHED: _now()}, "MetadataDirective": "REPLACE"},
                )
        finally:
            self.client.delete_object(Bucket=self.bucket, Key=temp)
        return BlobInfo(hashing.sha256, hashing.size, created)

    def _upload(self, key: str, parts: Iterator[bytes]) -> None:
        mpu = self.client.create_multipart_upload(Bucket=self.bucket, Key=key)
        upload_id = mpu["UploadId"]
        try:
            done = []
            for number, part in enumerate(parts, start=1):
                got = self.client.upload_part(
                    Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=part
                )
                done.append({"ETag": got["ETag"], "PartNumber": number})
            if not done:  # empty bytes: one empty part is allowed
                got = self.client.upload_part(
                    Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=b""
                )
                done.append({"ETag": got["ETag"], "PartNumber": 1})
            self.client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": done},  # type: ignore[typeddict-item]
            )
        except BaseException:
            with contextlib.suppress(Exception):
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            raise

    def _touch(self, key: str) -> bool:
        """Refresh the age of an object; False when there is no such object."""
        try:
            self.client.copy_object(
                Bucket=self.bucket,
                Key=key,
                CopySource={"Bucket": self.bucket, "Key": key},
                Metadata={_TOUCHED: _now()},
                MetadataDirective="REPLACE",
            )
        except self.client.exceptions.ClientError as exc:
            if _not_found(exc) or "NoSuchKey" in str(exc):
                return False
            raise
        return True

    def open(self, sha256: str) -> Iterator[bytes]:
        try:
            got = self.client.get_object(Bucket=self.bucket, Key=self.key(sha256))
        except self.client.exceptions.NoSuchKey:
            raise BlobMissing(sha256) from None
        return _read(got["Body"])

    def exists(self, sha256: str) -> bool:
        return self._age(self.key(sha256)) is not None

    def touch(self, sha256: str) -> int | None:
        key = self.key(sha256)
        try:
            size = int(self.client.head_object(Bucket=self.bucket, Key=key)["ContentLength"])
        except self.client.exceptions.ClientError as exc:
            if _not_found(exc):
                return None
            raise
        return size if self._touch(key) else None

    def _age(self, key: str) -> datetime | None:
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=key)
        except self.client.exceptions.ClientError as exc:
            if _not_found(exc):
                return None
            raise
        touched = head.get("Metadata", {}).get(_TOUCHED)
        if touched:
            return datetime.fromisoformat(touched)
        return head["LastModified"].astimezone(UTC)

    def _objects(self, folder: str) -> Iterator[dict[str, Any]]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=f"{self.prefix}{folder}/"
        )
        for page in pages:
            yield from page.get("Contents", [])  # type: ignore[misc]

    def list_blobs(self) -> Iterator[tuple[str, datetime]]:
        for obj in self._objects("blobs"):
            sha256 = obj["Key"].rsplit("/", 1)[-1]
            if SHA256.fullmatch(sha256):
                age = self._age(obj["Key"])
                if age is not None:
                    yield sha256, age

    def collect(self, referenced: Referenced, cutoff: datetime) -> list[str]:
        deleted = []
        for sha256, touched in list(self.list_blobs()):
            if touched >= cutoff or referenced(sha256):
                continue
            if self.discard(sha256, referenced, cutoff):
                deleted.append(sha256)
        for obj in self._objects("tmp"):
            if obj["LastModified"].astimezone(UTC) < cutoff:
                self.client.delete_object(Bucket=self.bucket, Key=obj["Key"])
        pending = self.client.list_multipart_uploads(
            Bucket=self.bucket, Prefix=f"{self.prefix}tmp/"
        )
        for mpu in pending.get("Uploads", []):
            if mpu["Initiated"].astimezone(UTC) < cutoff:
                self.client.abort_multipart_upload(
                    Bucket=self.bucket, Key=mpu["Key"], UploadId=mpu["UploadId"]
                )
        return deleted

    def discard(self, sha256: str, referenced: Referenced, cutoff: datetime) -> bool:
        key = self.key(sha256)
        age = self._age(key)  # re-read just before the delete
        if age is None or age >= cutoff or referenced(sha256):
            return False
        self.client.delete_object(Bucket=self.bucket, Key=key)
        return True

    def close(self) -> None:
        self.client.close()

    def __repr__(self) -> str:
        return f"S3BlobStore(bucket={self.bucket!r}, prefix={self.prefix!r})"


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _read(body: Any) -> Iterator[bytes]:
    try:
        yield from body.iter_chunks(CHUNK)
    finally:
        body.close()
