"""Backup: every object of the batch verified, then its manifest built from the batch, signed, written once
and verified. No load happens without it; a manifest is never replaced.

The manifest is the batch's record in the bucket (restore replays from it when the platform is
lost): identity (``batch_id``, ``run_id``, ``source_id``, ``dataset``, ``attempt``), the objects
and their checksums, the counts, the cursor, the consumed files, the schema and the versions of
the code, crosswalk and suite that made it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import sapnhap
from sapnhap import db, ops, storage
from sapnhap.datasets import get_dataset
from sapnhap.documents import attach_to_batch
from sapnhap.services import Services
from sapnhap.sources import Source
from sapnhap.sync.batch import Batch

MANIFEST = "manifest.json"


def data_docs_index(keys: list[str]) -> str | None:
    """The entry page of a batch's Data Docs among its archived keys; None when it has none (no failing check)."""
    return next((k for k in keys if k.endswith("/data_docs/index.html")), None)


def manifest_key(batch: Batch) -> str:
    """Where the manifest of this attempt at the batch is (or will be)."""
    return batch.prefix + MANIFEST


def existing_manifest(services: Services, payload: Batch | Mapping[str, Any]) -> str | None:
    """The key of this attempt's manifest when an earlier try already wrote it, else None."""
    key = manifest_key(Batch.from_xcom(payload))
    return key if storage.exists(services.s3, key) else None


def manifest_body(batch: Batch, source: Source, *, created_at: str | None = None) -> dict:
    """The manifest of a validated batch (unsigned)."""
    ds = get_dataset(batch.dataset)
    return {
        "batch_id": batch.batch_id,
        "run_id": batch.run_id,
        "source_id": batch.source_id,
        "source_kind": source.kind,
        "dataset": ds.name,
        "run_date": batch.run_date,
        "attempt": batch.attempt,
        "objects": batch.objects,
        "data_docs": [d["key"] for d in batch.data_docs],
        "counts": {
            "extracted": batch.rows,
            "transformed": batch.transformed_rows,
            "merged_in_batch": batch.merged_in_batch,
            "valid": batch.valid_rows,
            "quarantined": batch.quarantined_rows,
        },
        "cursor": {"from": batch.cursor_from, "to": batch.cursor_to, "column": source.datasets[ds.name].cursor},
        "files": batch.files,
        "schema": {"canonical": ds.column_names, "natural_key": list(ds.natural_key)},
        "crosswalk_version": batch.crosswalk_version,
        "suite_version": batch.suite_version,
        "code_version": sapnhap.__version__,
        # Restore replays batches in this order when the platform's ops tables are lost too.
        "created_at": created_at or datetime.now(UTC).isoformat(),
        "retention_days": storage.retention_days_from_env(),
        "decision": batch.decision,
        "failed_ratio": batch.failed_ratio,
        "complete": True,
    }


def backup_stage(services: Services, source: Source, payload: Batch | Mapping[str, Any]) -> dict:
    """Verify every object of the batch and write its manifest; no load happens without it."""
    batch = Batch.from_xcom(payload)
    # Documents' attached files: copied to the bucket and linked, or their document quarantined.
    batch = attach_to_batch(services, source, batch)
    for obj in [*batch.objects.values(), *batch.data_docs]:
        storage.verify_object(services.s3, obj)
    key = manifest_key(batch)
    signed = storage.sign_manifest(manifest_body(batch, source), services.signing_key)
    try:
        stored = storage.put_json(services.s3, key, signed, once=True)
    except storage.ObjectExistsError:
        # A retry of this task after the manifest was written: the same attempt's objects, keep it as it is.
        _same_attempt_manifest(services, key, signed)
    else:
        storage.verify_object(services.s3, stored.as_dict())
    with db.connect(services.platform_dsn, "backup") as conn:
        ops.record_backed_up(conn, batch_id=batch.batch_id, manifest_key=key,
                             data_docs_key=data_docs_index([d["key"] for d in batch.data_docs]))
    return replace(batch, manifest_key=key).to_xcom()


def _same_attempt_manifest(services: Services, key: str, ours: dict) -> None:
    """Accept a manifest already in the bucket only if it is signed and lists exactly our objects."""
    theirs = storage.get_json(services.s3, key)
    storage.verify_manifest_signature(theirs, services.signing_key, name=key)
    if (theirs.get("batch_id"), theirs.get("objects"), theirs.get("data_docs")) != (
            ours["batch_id"], json.loads(json.dumps(ours["objects"], default=str)), ours["data_docs"]):
        raise storage.ObjectExistsError(f"{key} already holds another backup of {ours['batch_id']}; "
                                        "manifests are never replaced")


def read_manifest(services: Services, key: str) -> dict:
    """A batch's manifest, refused (:class:`~sapnhap.storage.BackupError`) unless it says the backup is complete."""
    manifest = storage.get_json(services.s3, key)
    if not manifest.get("complete"):
        raise storage.BackupError(f"{key}: backup incomplete; nothing loaded")
    return manifest
