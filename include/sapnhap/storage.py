"""Object storage for backups: encrypted uploads with sha256, verified downloads, manifests."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError

from sapnhap.services import S3Config


class BackupError(RuntimeError):
    """The bucket cannot be reached, or an object is missing or does not match its checksum."""


@dataclass(frozen=True)
class StoredObject:
    """An object written to the bucket: its key, sha256 and size."""

    key: str
    sha256: str
    size: int

    def as_dict(self) -> dict[str, object]:
        return {"key": self.key, "sha256": self.sha256, "size": self.size}


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def safe_run_id(run_id: str) -> str:
    """An Airflow run id made safe for object keys (``manual__2026-...+00:00`` -> ``manual__2026-..._00_00``)."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in run_id)


def batch_prefix(source_id: str, dataset: str, run_date: str, run_id: str) -> str:
    """Backup layout: ``backups/<source>/<dataset>/<YYYY-MM-DD>/<run>/``."""
    return f"backups/{source_id}/{dataset}/{run_date}/{safe_run_id(run_id)}/"


def _client(cfg: S3Config):  # noqa: ANN202 - boto3 client type is dynamic
    """One client per settings and process: creating a boto3 client costs ~0.1 s, a batch uploads dozens of objects."""
    return _cached_client(cfg, os.getpid())


@lru_cache(maxsize=16)
def _cached_client(cfg: S3Config, pid: int):  # noqa: ANN202, ARG001 - pid keys the cache: no client crosses a fork
    return cfg.client()


def _call(what: str, fn, *args, **kwargs):  # noqa: ANN001, ANN202 - thin wrapper around boto3
    try:
        return fn(*args, **kwargs)
    except (BotoCoreError, ClientError) as exc:
        raise BackupError(f"object storage: {what} failed: {exc}") from exc


RETENTION_ENV = "SAPNHAP_BACKUP_RETENTION_DAYS"


def retention_days_from_env() -> int | None:
    """Days backups are kept (``SAPNHAP_BACKUP_RETENTION_DAYS``); None or 0 keeps them forever."""
    text = os.environ.get(RETENTION_ENV, "").strip()
    if not text:
        return None
    try:
        days = int(text)
    except ValueError:
        raise ValueError(f"{RETENTION_ENV}={text!r}: expected a whole number of days") from None
    if days < 0:
        raise ValueError(f"{RETENTION_ENV}={days}: must be 0 (keep forever) or more")
    return days or None


def ensure_bucket(cfg: S3Config, *, retention_days: int | None = None) -> None:
    """Create the bucket if needed, with default encryption and (optionally) a retention rule."""
    s3 = _client(cfg)
    try:
        s3.head_bucket(Bucket=cfg.bucket)
    except ClientError:
        kwargs = {"Bucket": cfg.bucket}
        if cfg.region and cfg.region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": cfg.region}
        _call(f"create bucket {cfg.bucket}", s3.create_bucket, **kwargs)
    except BotoCoreError as exc:
        raise BackupError(f"object storage unreachable ({cfg.endpoint_url or 'AWS'}): {exc}") from exc
    if cfg.sse:
        _call(
            "set default encryption",
            s3.put_bucket_encryption,
            Bucket=cfg.bucket,
            ServerSideEncryptionConfiguration={"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": cfg.sse}}]},
        )
    if retention_days:
        _call(
            "set retention",
            s3.put_bucket_lifecycle_configuration,
            Bucket=cfg.bucket,
            LifecycleConfiguration={
                "Rules": [
                    {
                        "ID": "sapnhap-backup-retention",
                        "Filter": {"Prefix": "backups/"},
                        "Status": "Enabled",
                        "Expiration": {"Days": retention_days},
                    }
                ]
            },
        )


def _sse_args(cfg: S3Config) -> dict[str, str]:
    return {"ServerSideEncryption": cfg.sse} if cfg.sse else {}


def put_bytes(cfg: S3Config, key: str, data: bytes, content_type: str = "application/octet-stream") -> StoredObject:
    """Upload bytes encrypted at rest, with their sha256 in the object metadata."""
    digest = sha256_bytes(data)
    _call(
        f"upload {key}",
        _client(cfg).put_object,
        Bucket=cfg.bucket,
        Key=key,
        Body=data,
        ContentType=content_type,
        Metadata={"sha256": digest},
        **_sse_args(cfg),
    )
    return StoredObject(key, digest, len(data))


def put_file(cfg: S3Config, key: str, path: Path, content_type: str = "application/octet-stream") -> StoredObject:
    """Upload a local file (see :func:`put_bytes`)."""
    return put_bytes(cfg, key, path.read_bytes(), content_type)


def get_bytes(cfg: S3Config, key: str, expected_sha256: str | None = None) -> bytes:
    """Download an object; raise :class:`BackupError` if it is missing or its sha256 differs."""
    body = _call(f"download {key}", _client(cfg).get_object, Bucket=cfg.bucket, Key=key)["Body"].read()
    if expected_sha256 is not None and sha256_bytes(body) != expected_sha256:
        raise BackupError(f"checksum mismatch for {key}: expected {expected_sha256}, got {sha256_bytes(body)}")
    return body


def get_file(cfg: S3Config, key: str, dest: Path, expected_sha256: str | None = None) -> Path:
    """Download to ``dest`` with verification (see :func:`get_bytes`)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(get_bytes(cfg, key, expected_sha256))
    return dest


def verify_object(cfg: S3Config, obj: dict[str, object]) -> None:
    """Re-read an object and check size, checksum and encryption; raise :class:`BackupError` if not."""
    s3 = _client(cfg)
    head = _call(f"inspect {obj['key']}", s3.head_object, Bucket=cfg.bucket, Key=obj["key"])
    if cfg.sse and head.get("ServerSideEncryption") != cfg.sse:
        raise BackupError(f"{obj['key']} is not encrypted at rest ({head.get('ServerSideEncryption')})")
    if int(head["ContentLength"]) != int(obj["size"]):
        raise BackupError(f"{obj['key']}: size {head['ContentLength']} != {obj['size']}")
    get_bytes(cfg, str(obj["key"]), str(obj["sha256"]))


def put_json(cfg: S3Config, key: str, payload: dict) -> StoredObject:
    data = json.dumps(payload, ensure_ascii=False, indent=2, sort_keys=True, default=str).encode("utf-8")
    return put_bytes(cfg, key, data, "application/json")


def get_json(cfg: S3Config, key: str) -> dict:
    return json.loads(get_bytes(cfg, key).decode("utf-8"))


def list_keys(cfg: S3Config, prefix: str) -> list[str]:
    """All keys under a prefix."""
    paginator = _client(cfg).get_paginator("list_objects_v2")
    keys: list[str] = []
    for page in _call(f"list {prefix}", lambda: list(paginator.paginate(Bucket=cfg.bucket, Prefix=prefix))):
        keys += [o["Key"] for o in page.get("Contents", [])]
    return keys
