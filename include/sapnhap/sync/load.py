"""Load: a backed-up batch into the platform in one transaction (:mod:`sapnhap.load` does the merge).

The transaction holds everything a committed batch leaves behind, so a crash leaves nothing
half-loaded and nothing skipped: the rows, the quarantine and warnings, the in-batch merges, the
incremental cursor (it moves only here), the consumed export files, the batch's counts, which
backup it came from, and its reconciliation row. A retry of a committed load redoes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

import pandas as pd
import psycopg

from sapnhap import db, ops
from sapnhap.datasets import get_dataset
from sapnhap.load import LoadCounts, ReconciliationError, merge_batch
from sapnhap.ordering import advance_cursor, check_load_order, release_lease
from sapnhap.services import Services
from sapnhap.sources import Source
from sapnhap.storage import BackupError
from sapnhap.sync.backup import data_docs_index, read_manifest
from sapnhap.sync.batch import Batch
from sapnhap.sync.frames import iter_frames, read_frame


def load_stage(services: Services, source: Source, payload: Batch | Mapping[str, Any]) -> dict:
    """Load a backed-up batch in one transaction, with quarantine, cursor and reconciliation.

    Returns the load's result: ``batch_id``, ``dataset``, ``status`` (loaded/blocked) and the counts.
    """
    batch = Batch.from_xcom(payload)
    if batch.manifest_key is None:
        raise BackupError(f"{batch.batch_id}: not backed up (no manifest); nothing loaded")
    manifest = read_manifest(services, batch.manifest_key)
    objects = manifest["objects"]
    # A batch of one chunk is read whole as before; a larger one chunk by chunk (its parts), never whole.
    in_parts = "parts" in objects["valid"] or "parts" in objects["transformed"]
    valid = None if in_parts else read_frame(services, objects["valid"])
    valid_total = int(manifest["counts"]["valid"]) if in_parts else len(valid)
    quarantine = read_frame(services, objects["quarantine"])
    merged_in_batch = read_frame(services, objects["merged_in_batch"])
    if (manifest.get("batch_id"), manifest.get("dataset")) != (batch.batch_id, batch.dataset):
        raise BackupError(f"{batch.manifest_key} is the backup of {manifest.get('batch_id')}, not of {batch.batch_id}; "
                          "nothing loaded")
    dataset, batch_id, run_id = batch.dataset, batch.batch_id, batch.run_id
    blocked = manifest["decision"] == "block"
    status = "blocked" if blocked else "loaded"
    quarantined_rows = int(quarantine["_row_id"].nunique()) if len(quarantine) else 0

    with db.connect(services.platform_dsn, "load") as conn, db.explain_timeouts("load", batch_id), conn.transaction():
        # One batch of a source/dataset at a time: a retry waits for a crashed twin's rollback.
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"{source.id}/{dataset}",))
        done = _committed_counts(conn, batch_id, batch.manifest_key)
        if done is not None:
            # A retried load of a batch that committed: the record of what it did stands, nothing is redone.
            return {"batch_id": batch_id, "dataset": dataset, **done}
        committed_cursor = check_load_order(conn, source_id=source.id, dataset=dataset, run_id=run_id,
                                            batch_id=batch_id, cursor_from=manifest["cursor"]["from"],
                                            extract_started_at=batch.extract_started_at)
        if blocked:
            counts = LoadCounts(extracted=manifest["counts"]["extracted"], quarantined=quarantined_rows,
                                merged_in_batch=len(merged_in_batch))
            counts.blocked = valid_total
        else:
            counts = merge_batch(conn, dataset=dataset, batch_id=batch_id,
                                 valid=iter_frames(services, objects["valid"]) if in_parts else valid, rows=valid_total)
            counts.extracted = manifest["counts"]["extracted"]
            counts.quarantined += quarantined_rows  # merge_batch counted the rows the platform refused
            counts.merged_in_batch = len(merged_in_batch)
        if len(quarantine):
            # The transformed rows are needed only for the payloads of quarantined rows (chunk by chunk).
            seen = pd.Series(False, index=quarantine.index)
            for rows in iter_frames(services, objects["transformed"]):
                here = quarantine["_row_id"].isin(rows["_row_id"])
                if here.any():
                    seen |= here
                    ops.record_quarantine(conn, dataset=dataset, batch_id=batch_id, quarantine=quarantine[here],
                                          rows=rows[rows["_row_id"].isin(quarantine.loc[here, "_row_id"])])
            if not seen.all():  # rows the transformed batch does not hold (none today): recorded without payload
                ops.record_quarantine(conn, dataset=dataset, batch_id=batch_id, quarantine=quarantine[~seen],
                                      rows=pd.DataFrame({"_row_id": pd.Series(dtype="int64"),
                                                         "record_hash": pd.Series(dtype="object")}))
        if "warnings" in objects:
            ops.record_warnings(conn, dataset=dataset, batch_id=batch_id, quarantine=quarantine,
                                warnings=read_frame(services, objects["warnings"]))
        if not merged_in_batch.empty:
            ds = get_dataset(dataset)
            ops.record_merged_in_batch(conn, [
                (dataset, "|".join(str(getattr(r, k)) for k in ds.natural_key), source.id, r.source_key,
                 source.id, r.kept_source_key, r.reason, batch_id, getattr(r, "legacy_row_hash", None))
                for r in merged_in_batch.itertuples(index=False)
            ])
        if not counts.reconciles():
            raise ReconciliationError(
                f"{batch_id}: extracted {counts.extracted} != loaded {counts.loaded} + quarantined "
                f"{counts.quarantined} + merged {counts.merged} + blocked {counts.blocked}; rolled back"
            )
        if not blocked:
            for keys in ([valid] if valid is not None else iter_frames(services, objects["valid"], ["source_key"])):
                ops.resolve_quarantine(conn, source_id=source.id, dataset=dataset, batch_id=batch_id,
                                       loaded_keys=keys["source_key"].tolist())
            # The cursor moves only here, inside the load's transaction: after a crash it has not moved.
            advance_cursor(conn, source_id=source.id, dataset=dataset, batch_id=batch_id,
                           committed=committed_cursor, cursor_to=manifest["cursor"]["to"])
            ops.record_source_files(conn, source_id=source.id, dataset=dataset, batch_id=batch_id,
                                    files=manifest["files"])
        ops.record_batch_counts(conn, batch_id=batch_id, status=status, counts=counts,
                                failed_ratio=manifest["failed_ratio"], decision=manifest["decision"])
        # Which backup attempt this committed load came from (restore replays these).
        ops.record_loaded_backup(conn, manifest_key=batch.manifest_key, batch_id=batch_id, run_id=run_id,
                                 source_id=manifest["source_id"], dataset=dataset, status=status,
                                 data_docs_key=data_docs_index(manifest.get("data_docs") or []))
        ops.record_reconciliation(conn, run_id=run_id, batch_id=batch_id, source_id=source.id, dataset=dataset,
                                  extracted=counts.extracted, loaded=counts.loaded, quarantined=counts.quarantined,
                                  merged=counts.merged, blocked=counts.blocked)
        release_lease(conn, source_id=source.id, dataset=dataset, run_id=run_id)
    return {"batch_id": batch_id, "dataset": dataset, "status": status, **asdict(counts)}


def _committed_counts(conn: psycopg.Connection, batch_id: str, manifest_key: str) -> dict | None:
    """What the committed load of this backup of ``batch_id`` recorded (status and counts), or None."""
    row = ops.committed_counts(conn, batch_id=batch_id, manifest_key=manifest_key)
    if row is None:
        return None
    counts = LoadCounts(extracted=row[1], inserted=row[2], updated=row[3], unchanged=row[4], merged_in_batch=row[5],
                        merged_cross_source=row[6], quarantined=row[7], blocked=row[8])
    return {"status": row[0], **asdict(counts)}
