"""Object storage for backups: encrypted uploads with sha256, verified downloads, signed write-once manifests."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError

from sapnhap.services import S3Config


class BackupError(RuntimeError):
    """The bucket cannot be reached, or an object is missing or does not match its checksum."""


class ObjectExistsError(BackupError):
    """A write-once object (a manifest) is already in the bucket: it is never replaced."""


class SignatureError(BackupError):
    """A manifest is unsigned, or its signature does not match its content under the configured key."""


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


def new_attempt_id() -> str:
    """An id for one attempt at a batch: its UTC start time (sorts as the attempts ran) and a random nonce."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}-{uuid.uuid4().hex[:8]}"


def batch_prefix(source_id: str, dataset: str, run_date: str, run_id: str, attempt: str | None = None) -> str:
    """Backup layout: ``backups/<source>/<dataset>/<YYYY-MM-DD>/<run>/<attempt>/``.

    Every extract is a new attempt with its own folder, so re-running a source inside a run
    (Airflow's Clear) never overwrites the objects of the attempt that loaded before it.
    """
    return f"backups/{source_id}/{dataset}/{run_date}/{safe_run_id(run_id)}/{attempt or new_attempt_id()}/"


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


OBJECT_LOCK_ENV = "SAPNHAP_BACKUP_OBJECT_LOCK"
OBJECT_LOCK_MODES = ("GOVERNANCE", "COMPLIANCE")


def object_lock_from_env() -> str | None:
    """Object Lock mode for a new bucket (``SAPNHAP_BACKUP_OBJECT_LOCK``: governance or compliance); None: off."""
    text = os.environ.get(OBJECT_LOCK_ENV, "").strip().upper()
    if not text or text in ("0", "NO", "FALSE", "OFF"):
        return None
    if text not in OBJECT_LOCK_MODES:
        raise ValueError(f"{OBJECT_LOCK_ENV}={text.lower()!r}: expected governance or compliance")
    return text


def ensure_bucket(cfg: S3Config, *, retention_days: int | None = None, object_lock: str | None = None) -> None:
    """Create the bucket if needed, with default encryption, and keep its retention settings.

    ``object_lock`` (``GOVERNANCE`` or ``COMPLIANCE``) creates the bucket with S3 Object Lock and a
    default retention of ``retention_days``: no object version can be deleted or overwritten
    before then. Retention never expires current backups through a lifecycle rule (a restore of the
    platform replays every loaded batch since the first full load): :func:`sapnhap.restore.expire_backups`
    deletes only what no restore needs; in a versioned bucket the lifecycle rule drops replaced
    (noncurrent) versions after ``retention_days``.
    """
    mode = object_lock.upper() if object_lock else None
    if mode is not None and mode not in OBJECT_LOCK_MODES:
        raise ValueError(f"object lock mode {object_lock!r}: expected governance or compliance")
    if mode is not None and not retention_days:
        raise ValueError(f"Object Lock ({mode.lower()}) needs a retention: set {RETENTION_ENV} to a number of days")
    s3 = _client(cfg)
    created = False
    try:
        s3.head_bucket(Bucket=cfg.bucket)
    except ClientError:
        kwargs: dict[str, object] = {"Bucket": cfg.bucket}
        if cfg.region and cfg.region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": cfg.region}
        if mode is not None:
            kwargs["ObjectLockEnabledForBucket"] = True  # only possible when the bucket is created
        _call(f"create bucket {cfg.bucket}", s3.create_bucket, **kwargs)
        created = True
    except BotoCoreError as exc:
        raise BackupError(f"object storage unreachable ({cfg.endpoint_url or 'AWS'}): {exc}") from exc
    if cfg.sse:
        _call(
            "set default encryption",
            s3.put_bucket_encryption,
            Bucket=cfg.bucket,
            ServerSideEncryptionConfiguration={"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": cfg.sse}}]},
        )
    if mode is not None:
        if not created and not object_lock_mode(cfg):
            raise BackupError(f"bucket {cfg.bucket} exists without Object Lock; it can only be enabled on a new "
                              f"bucket: create a new one or unset {OBJECT_LOCK_ENV}")
        _call(
            "set object lock",
            s3.put_object_lock_configuration,
            Bucket=cfg.bucket,
            ObjectLockConfiguration={"ObjectLockEnabled": "Enabled",
                                     "Rule": {"DefaultRetention": {"Mode": mode, "Days": int(retention_days)}}},
        )
    _keep_retention_rule(cfg, retention_days)


RETENTION_RULE_ID = "sapnhap-backup-retention"


def _keep_retention_rule(cfg: S3Config, retention_days: int | None) -> None:
    """The bucket's lifecycle: replaced (noncurrent) versions under ``backups/`` expire after the retention.

    Current backups are never expired by a rule (every restore replays the first full load). A
    rule of an earlier release that expired current backups is removed; other rules stay.
    """
    s3 = _client(cfg)
    try:
        rules = s3.get_bucket_lifecycle_configuration(Bucket=cfg.bucket).get("Rules", [])
    except ClientError:
        rules = []  # no lifecycle configuration yet
    except BotoCoreError as exc:
        raise BackupError(f"object storage: read lifecycle of {cfg.bucket} failed: {exc}") from exc
    others = [r for r in rules if r.get("ID") != RETENTION_RULE_ID]
    versioned = _call("read versioning", s3.get_bucket_versioning, Bucket=cfg.bucket).get("Status") == "Enabled"
    ours = [{
        "ID": RETENTION_RULE_ID,
        "Filter": {"Prefix": "backups/"},
        "Status": "Enabled",
        "NoncurrentVersionExpiration": {"NoncurrentDays": int(retention_days)},
    }] if retention_days and versioned else []
    if others or ours:
        _call("set retention", s3.put_bucket_lifecycle_configuration, Bucket=cfg.bucket,
              LifecycleConfiguration={"Rules": others + ours})
    elif rules:
        _call("remove the expiration of current backups", s3.delete_bucket_lifecycle, Bucket=cfg.bucket)


def object_lock_mode(cfg: S3Config) -> str | None:
    """The bucket's default Object Lock mode, or None when it has no Object Lock."""
    try:
        conf = _client(cfg).get_object_lock_configuration(Bucket=cfg.bucket)["ObjectLockConfiguration"]
    except ClientError:
        return None
    except BotoCoreError as exc:
        raise BackupError(f"object storage: read object lock of {cfg.bucket} failed: {exc}") from exc
    if conf.get("ObjectLockEnabled") != "Enabled":
        return None
    return ((conf.get("Rule") or {}).get("DefaultRetention") or {}).get("Mode") or "ENABLED"


def _sse_args(cfg: S3Config) -> dict[str, str]:
    return {"ServerSideEncryption": cfg.sse} if cfg.sse else {}


def exists(cfg: S3Config, key: str) -> bool:
    """Whether an object is in the bucket (a 404 is False; any other failure raises :class:`BackupError`)."""
    try:
        _client(cfg).head_object(Bucket=cfg.bucket, Key=key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return False
        raise BackupError(f"object storage: inspect {key} failed: {exc}") from exc
    except BotoCoreError as exc:
        raise BackupError(f"object storage: inspect {key} failed: {exc}") from exc
    return True


def put_bytes(cfg: S3Config, key: str, data: bytes, content_type: str = "application/octet-stream", *,
              once: bool = False) -> StoredObject:
    """Upload bytes encrypted at rest, with their sha256 in the object metadata.

    ``once=True`` writes the object only if the key is free (a check, then S3's conditional
    ``If-None-Match: *``, which also stops a concurrent writer) and raises :class:`ObjectExistsError`
    otherwise.
    """
    digest = sha256_bytes(data)
    conditional: dict[str, str] = {}
    if once:
        if exists(cfg, key):
            raise ObjectExistsError(f"{key} is already in the bucket and is never replaced")
        conditional["IfNoneMatch"] = "*"
    try:
        _client(cfg).put_object(
            Bucket=cfg.bucket,
            Key=key,
            Body=data,
            ContentType=content_type,
            Metadata={"sha256": digest},
            **_sse_args(cfg),
            **conditional,
        )
    except ClientError as exc:
        if once and exc.response.get("Error", {}).get("Code") in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
            raise ObjectExistsError(f"{key} was written meanwhile by another attempt and is never replaced") from exc
        raise BackupError(f"object storage: upload {key} failed: {exc}") from exc
    except BotoCoreError as exc:
        raise BackupError(f"object storage: upload {key} failed: {exc}") from exc
    return StoredObject(key, digest, len(data))


# Files above this size go up in parts (S3 multipart upload): a large raw extract is never held in memory whole.
STREAM_THRESHOLD = 64 << 20
_BLOCK = 1 << 20


def put_file(cfg: S3Config, key: str, path: Path, content_type: str = "application/octet-stream") -> StoredObject:
    """Upload a local file (see :func:`put_bytes`); a large one is streamed from disk, never read whole."""
    size = path.stat().st_size
    if size <= STREAM_THRESHOLD:
        return put_bytes(cfg, key, path.read_bytes(), content_type)
    from boto3.s3.transfer import TransferConfig

    digest = sha256_file(path)
    extra = {"ContentType": content_type, "Metadata": {"sha256": digest}, **_sse_args(cfg)}
    try:
        with path.open("rb") as fh:
            _client(cfg).upload_fileobj(fh, cfg.bucket, key, ExtraArgs=extra,
                                        Config=TransferConfig(multipart_threshold=STREAM_THRESHOLD,
                                                              multipart_chunksize=16 << 20, max_concurrency=2))
    except (BotoCoreError, ClientError) as exc:
        raise BackupError(f"object storage: upload {key} failed: {exc}") from exc
    return StoredObject(key, digest, size)


def _stream(cfg: S3Config, key: str, sink) -> str:  # noqa: ANN001 - a writable binary file or None
    """Read an object block by block into ``sink`` (or nowhere); return its sha256."""
    body = _call(f"download {key}", _client(cfg).get_object, Bucket=cfg.bucket, Key=key)["Body"]
    digest = hashlib.sha256()
    try:
        for block in body.iter_chunks(_BLOCK):
            digest.update(block)
            if sink is not None:
                sink.write(block)
    except (BotoCoreError, ClientError) as exc:
        raise BackupError(f"object storage: download {key} failed: {exc}") from exc
    return digest.hexdigest()


def get_bytes(cfg: S3Config, key: str, expected_sha256: str | None = None) -> bytes:
    """Download an object; raise :class:`BackupError` if it is missing or its sha256 differs."""
    body = _call(f"download {key}", _client(cfg).get_object, Bucket=cfg.bucket, Key=key)["Body"].read()
    if expected_sha256 is not None and sha256_bytes(body) != expected_sha256:
        raise BackupError(f"checksum mismatch for {key}: expected {expected_sha256}, got {sha256_bytes(body)}")
    return body


def get_file(cfg: S3Config, key: str, dest: Path, expected_sha256: str | None = None) -> Path:
    """Download to ``dest`` block by block, verified (see :func:`get_bytes`); a mismatching file is removed."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with dest.open("wb") as fh:
        got = _stream(cfg, key, fh)
    if expected_sha256 is not None and got != expected_sha256:
        dest.unlink(missing_ok=True)
        raise BackupError(f"checksum mismatch for {key}: expected {expected_sha256}, got {got}")
    return dest


# --- objects in parts ------------------------------------------------------------------------------
# A batch larger than one chunk stores its row objects (transformed, valid) as several Parquet
# parts. The manifest lists every part (key, sha256, size, rows); the object itself is
# ``{"parts": [...], "rows": n, "size": total, "sha256": <sha256 of the parts' sha256s>}``. An
# object of one part is stored as before (``{"key", "sha256", "size"}``): older manifests and small
# batches read the same way.


def parts_of(obj: dict) -> list[dict]:
    """The stored objects behind an object reference: its parts, or the object itself."""
    return list(obj["parts"]) if "parts" in obj else [obj]


def multipart(parts: list[dict]) -> dict:
    """The reference of an object stored in ``parts`` (each a stored object's dict with its ``rows``)."""
    return {
        "parts": parts,
        "rows": sum(int(p["rows"]) for p in parts),
        "size": sum(int(p["size"]) for p in parts),
        "sha256": sha256_bytes("\n".join(str(p["sha256"]) for p in parts).encode()),
    }


def verify_object(cfg: S3Config, obj: dict[str, object]) -> None:
    """Re-read an object (every part of it) and check size, checksum and encryption; raise :class:`BackupError` if not."""
    if "parts" in obj:
        parts = parts_of(obj)  # type: ignore[arg-type]
        if multipart(parts)["sha256"] != obj.get("sha256"):
            raise BackupError("an object in parts does not match the list of its parts")
        for part in parts:
            verify_object(cfg, part)
        return
    s3 = _client(cfg)
    head = _call(f"inspect {obj['key']}", s3.head_object, Bucket=cfg.bucket, Key=obj["key"])
    if cfg.sse and head.get("ServerSideEncryption") != cfg.sse:
        raise BackupError(f"{obj['key']} is not encrypted at rest ({head.get('ServerSideEncryption')})")
    if int(head["ContentLength"]) != int(obj["size"]):
        raise BackupError(f"{obj['key']}: size {head['ContentLength']} != {obj['size']}")
    got = _stream(cfg, str(obj["key"]), None)
    if got != str(obj["sha256"]):
        raise BackupError(f"checksum mismatch for {obj['key']}: expected {obj['sha256']}, got {got}")


def read_parquet(cfg: S3Config, obj: dict, columns: list[str] | None = None):  # noqa: ANN201 - pandas.DataFrame
    """The frame of a Parquet object (all its parts, in order), every part's sha256 checked.

    ``columns``: only these, of those the object has (a reader that needs three columns of a
    large batch does not decode the other twenty).
    """
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = []
    for part in parts_of(obj):
        file = pq.ParquetFile(io.BytesIO(get_bytes(cfg, str(part["key"]), str(part["sha256"]))))
        wanted = None if columns is None else [c for c in columns if c in file.schema_arrow.names]
        tables.append(file.read(columns=wanted))
    return (tables[0] if len(tables) == 1 else pa.concat_tables(tables, promote_options="default")).to_pandas()


def put_json(cfg: S3Config, key: str, payload: dict, *, once: bool = False) -> StoredObject:
    data = json.dumps(payload, ensure_ascii=False, indent=2, sort_keys=True, default=str).encode("utf-8")
    return put_bytes(cfg, key, data, "application/json", once=once)


def get_json(cfg: S3Config, key: str) -> dict:
    return json.loads(get_bytes(cfg, key).decode("utf-8"))


def list_keys(cfg: S3Config, prefix: str) -> list[str]:
    """All keys under a prefix."""
    paginator = _client(cfg).get_paginator("list_objects_v2")
    keys: list[str] = []
    for page in _call(f"list {prefix}", lambda: list(paginator.paginate(Bucket=cfg.bucket, Prefix=prefix))):
        keys += [o["Key"] for o in page.get("Contents", [])]
    return keys


def list_objects(cfg: S3Config, prefix: str) -> list[tuple[str, datetime]]:
    """(key, last modified) of every current object under a prefix."""
    paginator = _client(cfg).get_paginator("list_objects_v2")
    found: list[tuple[str, datetime]] = []
    for page in _call(f"list {prefix}", lambda: list(paginator.paginate(Bucket=cfg.bucket, Prefix=prefix))):
        found += [(o["Key"], o["LastModified"]) for o in page.get("Contents", [])]
    return found


def delete_object(cfg: S3Config, key: str) -> None:
    """Delete an object with every version of it (a versioned bucket would otherwise keep the data)."""
    s3 = _client(cfg)
    paginator = s3.get_paginator("list_object_versions")
    versions = []
    for page in _call(f"list versions of {key}", lambda: list(paginator.paginate(Bucket=cfg.bucket, Prefix=key))):
        versions += [v["VersionId"] for v in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]
                     if v["Key"] == key and v.get("VersionId") not in (None, "null")]
    if not versions:
        _call(f"delete {key}", s3.delete_object, Bucket=cfg.bucket, Key=key)
    for version in versions:
        _call(f"delete {key} ({version})", s3.delete_object, Bucket=cfg.bucket, Key=key, VersionId=version)


# -- signed manifests -----------------------------------------------------------------------------
SIGNATURE_ALGORITHM = "HMAC-SHA256"


def canonical_json(payload: dict) -> bytes:
    """The bytes a manifest's signature covers: the manifest without its signature, as sorted compact JSON."""
    body = {k: v for k, v in payload.items() if k != "signature"}
    # Round-trip first, so values JSON turns into strings (dates) sign the same before and after storage.
    body = json.loads(json.dumps(body, ensure_ascii=False, default=str))
    return json.dumps(body, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode("utf-8")


def signing_key_id(key: str) -> str:
    """A public name for a signing key (an HMAC of a constant: says which key, reveals nothing of it)."""
    return hmac.new(key.encode("utf-8"), b"sapnhap backup signing key id", hashlib.sha256).hexdigest()[:12]


def sign_manifest(payload: dict, key: str | None) -> dict:
    """The manifest with an HMAC-SHA256 signature of its canonical JSON under ``key``."""
    if not key:
        raise SignatureError("no backup signing key is configured: set the Airflow connection "
                             "sapnhap_backup_signing (its password) or SAPNHAP_BACKUP_SIGNING_KEY; "
                             "nothing is backed up or loaded unsigned")
    value = hmac.new(key.encode("utf-8"), canonical_json(payload), hashlib.sha256).hexdigest()
    return {**payload, "signature": {"algorithm": SIGNATURE_ALGORITHM, "key_id": signing_key_id(key), "value": value}}


def verify_manifest_signature(payload: dict, key: str | None, *, name: str) -> None:
    """Raise :class:`SignatureError` unless ``payload`` carries a valid signature under ``key``."""
    if not key:
        raise SignatureError(f"{name}: cannot verify its signature: no backup signing key is configured "
                             "(Airflow connection sapnhap_backup_signing or SAPNHAP_BACKUP_SIGNING_KEY)")
    sig = payload.get("signature")
    if not isinstance(sig, dict) or sig.get("algorithm") != SIGNATURE_ALGORITHM or not sig.get("value"):
        raise SignatureError(f"{name} is not signed")
    expected = hmac.new(key.encode("utf-8"), canonical_json(payload), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, str(sig["value"])):
        if sig.get("key_id") != signing_key_id(key):
            raise SignatureError(f"{name} was signed with key {sig.get('key_id')}, not the configured key "
                                 f"{signing_key_id(key)}")
        raise SignatureError(f"{name}: signature does not match its content (modified after it was written)")
