"""The stages of the nightly sync, as plain functions the DAG tasks call.

Stages pass references (batch ids, object keys), never data: every intermediate artifact
is an object in the backup bucket, so any worker can run any stage and a retry starts from
what the previous stage stored.

    extract -> transform -> validate -> backup (manifest, verified) -> load (one transaction)
"""

from __future__ import annotations

import io
import json
import logging
import tempfile
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq

import sapnhap
from sapnhap import db, storage
from sapnhap.corrections import append_requeued
from sapnhap.datasets import get_dataset
from sapnhap.extract import extract_to_parquet
from sapnhap.load import (
    LoadCounts,
    ReconciliationError,
    merge_batch,
    record_batch_counts,
    record_quarantine,
    record_warnings,
    resolve_quarantine,
)
from sapnhap.ordering import advance_cursor, check_load_order, release_lease, take_lease
from sapnhap.quarantined_files import EXPORT, record_quarantined_files, resolve_replaced_files
from sapnhap.services import Services
from sapnhap.sources import Source
from sapnhap.verify import append_resync_rows

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
DATA_DOCS_SKIPPED = ("static/fonts/", "static/images/")


def batch_id_for(run_id: str, source_id: str, dataset: str) -> str:
    return f"{run_id}|{source_id}|{dataset}"


def _frame_bytes(frame: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    table = pa.Table.from_pandas(frame, preserve_index=False)
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


def _read_parquet(services: Services, obj: dict) -> pd.DataFrame:
    data = storage.get_bytes(services.s3, str(obj["key"]), str(obj["sha256"]))
    return pq.read_table(io.BytesIO(data)).to_pandas()


def _put_frame(services: Services, key: str, frame: pd.DataFrame) -> dict:
    return storage.put_bytes(services.s3, key, _frame_bytes(frame), "application/vnd.apache.parquet").as_dict()


def prepare_run(services: Services, run_id: str) -> dict:
    """Check the platform schema is at this code's revision, publish the reference data, open the run.

    No DDL: the nightly runs as the loader role; ``python -m sapnhap migrate`` (the owner) changes
    the schema. A platform behind this code fails here with :class:`~sapnhap.migrations.SchemaVersionError`.
    """
    from sapnhap.migrations import check_schema
    from sapnhap.reference import load_reference
    from sapnhap.reference.platform import publish_reference

    check_schema(db.dsn_for(services.platform_dsn, "prepare"))
    ref = load_reference()
    publish_reference(db.dsn_for(services.platform_dsn, "prepare"), ref)
    storage.ensure_bucket(services.s3, retention_days=storage.retention_days_from_env(),
                          object_lock=storage.object_lock_from_env())
    with db.connect(services.platform_dsn, "prepare") as conn:
        conn.execute(
            """INSERT INTO ops.runs (run_id, code_version, crosswalk_version) VALUES (%s, %s, %s)
               ON CONFLICT (run_id) DO NOTHING""",
            (run_id, sapnhap.__version__, ref.version),
        )
    return {"run_id": run_id, "crosswalk_version": ref.version}


def _platform_state(services: Services, source: Source, dataset: str) -> tuple[str | None, set[str]]:
    with db.connect(services.platform_dsn, "extract") as conn:
        row = conn.execute(
            "SELECT cursor_value FROM ops.cursors WHERE source_id = %s AND dataset = %s", (source.id, dataset)
        ).fetchone()
        files = conn.execute(
            "SELECT sha256 FROM ops.source_files WHERE source_id = %s AND dataset = %s", (source.id, dataset)
        ).fetchall()
    return (row[0] if row else None), {f[0] for f in files}


def extract_stage(services: Services, source: Source, dataset: str, connection: str, *, run_id: str, run_date: str) -> dict:
    """Extract new/changed rows of one dataset since the committed cursor; store them raw in the bucket.

    Takes the (source, dataset) lease first (see :mod:`sapnhap.ordering`): another run still
    running with it raises :class:`~sapnhap.ordering.BatchLockedError` and nothing is extracted.
    A failed extract gives the lease back; a successful one keeps it until its load commits.
    """
    batch_id = batch_id_for(run_id, source.id, dataset)
    with db.connect(services.platform_dsn, "extract") as conn:
        started = take_lease(conn, source_id=source.id, dataset=dataset, run_id=run_id, batch_id=batch_id)
    try:
        batch = _extract(services, source, dataset, connection, run_id=run_id, run_date=run_date, batch_id=batch_id)
        return {**batch, "extract_started_at": started}
    except BaseException:
        try:
            with db.connect(services.platform_dsn, "extract") as conn:
                release_lease(conn, source_id=source.id, dataset=dataset, run_id=run_id)
        except psycopg.Error as exc:
            # The extract's own error is the one to see; the lease ends with the run or expires.
            log.warning("%s/%s: lease of run %s not released: %s", source.id, dataset, run_id, type(exc).__name__)
        raise


def _extract(services: Services, source: Source, dataset: str, connection: str, *, run_id: str, run_date: str,
             batch_id: str) -> dict:
    cursor_value, seen = _platform_state(services, source, dataset)
    prefix = storage.batch_prefix(source.id, dataset, run_date, run_id)
    with tempfile.TemporaryDirectory(prefix="sapnhap-extract-") as tmp:
        result = extract_to_parquet(
            source, dataset, connection, Path(tmp) / "raw.parquet", cursor_value=cursor_value, seen_file_sha256=seen
        )
        # Quarantined records come back: corrected by their owner, or decided by the data team.
        requeued, correction_files = append_requeued(
            replace(services, platform_dsn=db.dsn_for(services.platform_dsn, "extract")), source, dataset, result.path, seen,
            batch_id=batch_id,
        )
        result.rows += requeued
        result.files += correction_files
        # Keys a source-vs-platform verification found missing or changed: read by key, beside the cursor.
        result.rows += append_resync_rows(
            services, source, dataset, connection, result.path, batch_id_for(run_id, source.id, dataset)
        )
        raw = storage.put_file(services.s3, prefix + "raw.parquet", result.path, "application/vnd.apache.parquet")
    if result.unmapped_columns:
        # Documented policy: new legacy columns are kept in the raw backup and reported, never dropped.
        log.warning("%s/%s: legacy columns not mapped (kept in raw backup): %s", source.id, dataset, result.unmapped_columns)
    with db.connect(services.platform_dsn, "extract") as conn:
        # Unreadable export files wait in quarantine with a reason for the owner; the others load.
        resolve_replaced_files(conn, source_id=source.id, dataset=dataset, batch_id=batch_id, kind=EXPORT,
                               readable_names=[f["file_name"] for f in result.files])
        record_quarantined_files(conn, source_id=source.id, dataset=dataset, batch_id=batch_id, kind=EXPORT,
                                 files=result.quarantined_files)
        conn.execute(
            """INSERT INTO ops.batches (batch_id, run_id, source_id, dataset, status, extracted, cursor_from, cursor_to, message)
               VALUES (%s, %s, %s, %s, 'extracted', %s, %s, %s, %s)
               ON CONFLICT (batch_id) DO UPDATE SET status = 'extracted', extracted = EXCLUDED.extracted,
                   cursor_from = EXCLUDED.cursor_from, cursor_to = EXCLUDED.cursor_to, message = EXCLUDED.message""",
            (
                batch_id, run_id, source.id, dataset, result.rows, result.cursor_from, result.cursor_to,
                f"unmapped legacy columns: {', '.join(result.unmapped_columns)}" if result.unmapped_columns else None,
            ),
        )
    return {
        "batch_id": batch_id,
        "source_id": source.id,
        "dataset": dataset,
        "prefix": prefix,
        "rows": result.rows,
        "cursor_from": result.cursor_from,
        "cursor_to": result.cursor_to,
        "files": result.files,
        "unmapped_columns": result.unmapped_columns,
        "quarantined_files": [
            {k: f[k] for k in ("file_name", "sha256", "reason_vi")} for f in result.quarantined_files
        ],
        "objects": {"raw": raw.as_dict()},
    }


def _decisions(services: Services) -> pd.DataFrame | None:
    from sapnhap.reference.platform import load_decisions

    return load_decisions(db.dsn_for(services.platform_dsn, "transform"))


def transform_stage(services: Services, source: Source, batch: dict) -> dict:
    """Map the raw batch to canonical rows under new unit codes; store the result."""
    from sapnhap.reference import load_reference, load_split_rules
    from sapnhap.reference.platform import enqueue_reviews
    from sapnhap.transform import record_keys, transform_frame

    raw = _read_parquet(services, batch["objects"]["raw"])
    ref = load_reference()
    result = transform_frame(
        raw, source, batch["dataset"], reference=ref, split_rules=load_split_rules(), decisions=_decisions(services)
    )
    if get_dataset(batch["dataset"]).has_unit:
        # Split-commune records with no rule and no decision wait for the data team, with their candidates.
        enqueue_reviews(
            db.dsn_for(services.platform_dsn, "transform"),
            result.frame.assign(record_key=record_keys(result.frame)),
            record_key_col="record_key",
            run_id=batch["batch_id"].split("|")[0],
            source_id=source.id,
            dataset=batch["dataset"],
            address_detail_col="address_detail" if "address_detail" in result.frame else None,
        )
    prefix = batch["prefix"]
    objects = dict(batch["objects"])
    objects["transformed"] = _put_frame(services, prefix + "transformed.parquet", result.frame)
    objects["merged_in_batch"] = _put_frame(services, prefix + "merged_in_batch.parquet", result.merged_duplicates)
    with db.connect(services.platform_dsn, "transform") as conn:
        conn.execute(
            "UPDATE ops.batches SET text_cleaned = %s, text_repaired = %s WHERE batch_id = %s",
            (result.text_cleaned, result.text_repaired, batch["batch_id"]),
        )
    return {**batch, "objects": objects, "transformed_rows": len(result.frame), "merged_in_batch": len(result.merged_duplicates),
            "crosswalk_version": ref.version, "text_cleaned": result.text_cleaned, "text_repaired": result.text_repaired,
            "date_findings": result.date_findings}


def validate_stage(services: Services, source: Source, batch: dict) -> dict:
    """Run the dataset's GX suite; store valid rows, quarantine, warnings and the Data Docs."""
    from sapnhap.quality import validate_batch
    from sapnhap.reference import load_reference

    frame = _read_parquet(services, batch["objects"]["transformed"])
    ref = load_reference()
    prefix = batch["prefix"]
    with tempfile.TemporaryDirectory(prefix="sapnhap-docs-") as tmp:
        outcome = validate_batch(
            frame,
            batch["dataset"],
            reference=ref,  # new codes are checked against the registry as of each record's date
            thresholds=source.quality,
            docs_dir=Path(tmp),
        )
        docs = []
        if outcome.data_docs_path is not None:
            for path in sorted(Path(outcome.data_docs_path).rglob("*")):
                rel = path.relative_to(outcome.data_docs_path).as_posix()
                # GX's fonts and images are the same 4 MB for every batch; the pages and styles are the record.
                if path.is_file() and not rel.startswith(DATA_DOCS_SKIPPED):
                    ctype = {".html": "text/html", ".css": "text/css"}.get(path.suffix, "application/octet-stream")
                    docs.append(storage.put_file(services.s3, prefix + "data_docs/" + rel, path, ctype).as_dict())
    decision, results = outcome.decision, list(outcome.results)
    date_findings = batch.get("date_findings") or []
    if date_findings:
        # Dates not proven: loading would swap day and month silently, so the dataset waits whole.
        decision = "block"
        results += [
            {"expectation": "date_format_proven", "check": "date_format", "column": f["column"], "success": False,
             "unexpected_count": f["day_month_only"] + f["month_day_only"] + f["ambiguous"], "severity": "block",
             "notes": f["reason_vi"], "evidence": {k: f[k] for k in
                                                   ("numeric", "day_month_only", "month_day_only", "ambiguous", "neither")}}
            for f in date_findings
        ]
        with db.connect(services.platform_dsn, "validate") as conn:
            conn.execute(
                """UPDATE ops.batches SET message = concat_ws(' | ', message, %(why)s::text)
                   WHERE batch_id = %(batch)s AND position(%(why)s::text IN coalesce(message, '')) = 0""",
                {"why": " ".join(f["reason_vi"] for f in date_findings), "batch": batch["batch_id"]},
            )
        log.warning("%s/%s: load blocked, date format not proven: %s", source.id, batch["dataset"],
                    "; ".join(f"{f['column']} {f['problem']}" for f in date_findings))
    objects = dict(batch["objects"])
    objects["valid"] = _put_frame(services, prefix + "valid.parquet", outcome.valid)
    objects["quarantine"] = _put_frame(services, prefix + "quarantine.parquet", outcome.quarantine)
    objects["warnings"] = _put_frame(services, prefix + "warnings.parquet", outcome.warnings)
    objects["validation"] = storage.put_json(
        services.s3,
        prefix + "validation.json",
        {"suite_version": outcome.suite_version, "decision": decision, "failed_ratio": outcome.failed_ratio,
         "results": results},
    ).as_dict()
    quarantined_rows = int(outcome.quarantine["_row_id"].nunique()) if len(outcome.quarantine) else 0
    return {
        **batch,
        "objects": objects,
        "data_docs": docs,
        "valid_rows": len(outcome.valid),
        "quarantined_rows": quarantined_rows,
        "failed_ratio": outcome.failed_ratio,
        "decision": decision,
        "suite_version": outcome.suite_version,
    }


def backup_stage(services: Services, source: Source, batch: dict) -> dict:
    """Verify every object of the batch and write its manifest; no load happens without it."""
    ds = get_dataset(batch["dataset"])
    for obj in [*batch["objects"].values(), *batch.get("data_docs", [])]:
        storage.verify_object(services.s3, obj)
    manifest = {
        "batch_id": batch["batch_id"],
        "source_id": source.id,
        "source_kind": source.kind,
        "dataset": ds.name,
        "objects": batch["objects"],
        "data_docs": [d["key"] for d in batch.get("data_docs", [])],
        "counts": {
            "extracted": batch["rows"],
            "transformed": batch["transformed_rows"],
            "merged_in_batch": batch["merged_in_batch"],
            "valid": batch["valid_rows"],
            "quarantined": batch["quarantined_rows"],
        },
        "cursor": {"from": batch["cursor_from"], "to": batch["cursor_to"], "column": source.datasets[ds.name].cursor},
        "files": batch["files"],
        "schema": {"canonical": ds.column_names, "natural_key": list(ds.natural_key)},
        "crosswalk_version": batch["crosswalk_version"],
        "suite_version": batch["suite_version"],
        "code_version": sapnhap.__version__,
        "run_id": batch["batch_id"].split("|")[0],
        # Restore replays batches in this order when the platform's ops tables are lost too.
        "created_at": datetime.now(UTC).isoformat(),
        "retention_days": storage.retention_days_from_env(),
        "decision": batch["decision"],
        "failed_ratio": batch["failed_ratio"],
        "complete": True,
    }
    key = batch["prefix"] + MANIFEST
    signed = storage.sign_manifest(manifest, services.signing_key)
    try:
        stored = storage.put_json(services.s3, key, signed, once=True)
    except storage.ObjectExistsError:
        # A retry of this task after the manifest was written: the same attempt's objects, keep it as it is.
        _same_attempt_manifest(services, key, signed)
    else:
        storage.verify_object(services.s3, stored.as_dict())
    with db.connect(services.platform_dsn, "backup") as conn:
        conn.execute(
            "UPDATE ops.batches SET status = 'backed_up', manifest_key = %s WHERE batch_id = %s", (key, batch["batch_id"])
        )
    return {**batch, "manifest_key": key}


def _same_attempt_manifest(services: Services, key: str, ours: dict) -> None:
    """Accept a manifest already in the bucket only if it is signed and lists exactly our objects."""
    theirs = storage.get_json(services.s3, key)
    storage.verify_manifest_signature(theirs, services.signing_key, name=key)
    if (theirs.get("batch_id"), theirs.get("objects"), theirs.get("data_docs")) != (
            ours["batch_id"], json.loads(json.dumps(ours["objects"], default=str)), ours["data_docs"]):
        raise storage.ObjectExistsError(f"{key} already holds another backup of {ours['batch_id']}; "
                                        "manifests are never replaced")


def record_loaded_backup(conn: psycopg.Connection, manifest_key: str, manifest: dict, status: str) -> None:
    """Remember, in the load's transaction, which backup attempt a committed load came from (restore replays these)."""
    conn.execute(
        """INSERT INTO ops.loaded_backups (manifest_key, batch_id, run_id, source_id, dataset, status)
           VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (manifest_key) DO NOTHING""",
        (manifest_key, manifest["batch_id"], manifest["batch_id"].split("|")[0], manifest["source_id"],
         manifest["dataset"], status),
    )
    conn.execute("UPDATE ops.batches SET manifest_key = %s WHERE batch_id = %s", (manifest_key, manifest["batch_id"]))


def load_stage(services: Services, source: Source, batch: dict) -> dict:
    """Load a backed-up batch in one transaction, with quarantine, cursor and reconciliation."""
    manifest = storage.get_json(services.s3, batch["manifest_key"])
    if not manifest.get("complete"):
        raise storage.BackupError(f"{batch['manifest_key']}: backup incomplete; nothing loaded")
    objects = manifest["objects"]
    valid = _read_parquet(services, objects["valid"])
    quarantine = _read_parquet(services, objects["quarantine"])
    # The whole transformed batch is needed only for the payloads of quarantined rows.
    transformed = _read_parquet(services, objects["transformed"]) if len(quarantine) else pd.DataFrame()
    merged_in_batch = _read_parquet(services, objects["merged_in_batch"])
    dataset = manifest["dataset"]
    batch_id = manifest["batch_id"]
    run_id = batch_id.split("|")[0]
    blocked = manifest["decision"] == "block"
    quarantined_rows = int(quarantine["_row_id"].nunique()) if len(quarantine) else 0

    with db.connect(services.platform_dsn, "load") as conn, db.explain_timeouts("load", batch_id), conn.transaction():
        # One batch of a source/dataset at a time: a retry waits for a crashed twin's rollback.
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"{source.id}/{dataset}",))
        done = _committed_counts(conn, batch_id, batch["manifest_key"])
        if done is not None:
            # A retried load of a batch that committed: the record of what it did stands, nothing is redone.
            return {"batch_id": batch_id, "dataset": dataset, **done}
        committed_cursor = check_load_order(conn, source_id=source.id, dataset=dataset, run_id=run_id,
                                            batch_id=batch_id, cursor_from=manifest["cursor"]["from"],
                                            extract_started_at=batch.get("extract_started_at"))
        if blocked:
            counts = LoadCounts(extracted=manifest["counts"]["extracted"], quarantined=quarantined_rows,
                                merged_in_batch=len(merged_in_batch))
            counts.blocked = len(valid)
        else:
            counts = merge_batch(conn, dataset=dataset, batch_id=batch_id, valid=valid)
            counts.extracted = manifest["counts"]["extracted"]
            counts.quarantined += quarantined_rows  # merge_batch counted the rows the platform refused
            counts.merged_in_batch = len(merged_in_batch)
        record_quarantine(conn, dataset=dataset, batch_id=batch_id, quarantine=quarantine, rows=transformed)
        if "warnings" in objects:
            record_warnings(conn, dataset=dataset, batch_id=batch_id, quarantine=quarantine,
                            warnings=_read_parquet(services, objects["warnings"]))
        if not merged_in_batch.empty:
            ds = get_dataset(dataset)
            with conn.cursor() as cur:
                cur.executemany(
                    """INSERT INTO ops.merged_duplicates
                       (dataset, natural_key, source_id, source_key, kept_source_id, kept_source_key, reason, batch_id)
                       VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING""",
                    [
                        (dataset, "|".join(str(getattr(r, k)) for k in ds.natural_key), source.id, r.source_key,
                         source.id, r.kept_source_key, r.reason, batch_id)
                        for r in merged_in_batch.itertuples(index=False)
                    ],
                )
        if not counts.reconciles():
            raise ReconciliationError(
                f"{batch_id}: extracted {counts.extracted} != loaded {counts.loaded} + quarantined "
                f"{counts.quarantined} + merged {counts.merged} + blocked {counts.blocked}; rolled back"
            )
        if not blocked:
            resolve_quarantine(conn, source_id=source.id, dataset=dataset, batch_id=batch_id,
                               loaded_keys=valid["source_key"].tolist())
            # The cursor moves only here, inside the load's transaction: after a crash it has not moved.
            advance_cursor(conn, source_id=source.id, dataset=dataset, batch_id=batch_id,
                           committed=committed_cursor, cursor_to=manifest["cursor"]["to"])
            with conn.cursor() as cur:
                cur.executemany(
                    """INSERT INTO ops.source_files (source_id, dataset, sha256, file_name, rows, batch_id)
                       VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING""",
                    [(source.id, dataset, f["sha256"], f["file_name"], int(f["rows"]), batch_id) for f in manifest["files"]],
                )
        record_batch_counts(conn, batch_id=batch_id, status="blocked" if blocked else "loaded", counts=counts,
                            failed_ratio=manifest["failed_ratio"], decision=manifest["decision"])
        record_loaded_backup(conn, batch["manifest_key"], manifest, "blocked" if blocked else "loaded")
        # The audit trail is append-only for the loader: a retry in an open run records again
        # through this function only (migration 0003), never by UPDATE.
        conn.execute(
            "SELECT ops.record_reconciliation(%s, %s, %s, %s, %s, %s, %s, %s, %s, true)",
            (batch_id.split("|")[0], batch_id, source.id, dataset, counts.extracted, counts.loaded,
             counts.quarantined, counts.merged, counts.blocked),
        )
        release_lease(conn, source_id=source.id, dataset=dataset, run_id=run_id)
    return {"batch_id": batch_id, "dataset": dataset, "status": "blocked" if blocked else "loaded", **asdict(counts)}


def _committed_counts(conn: psycopg.Connection, batch_id: str, manifest_key: str) -> dict | None:
    """What the committed load of this backup of ``batch_id`` recorded (status and counts), or None."""
    row = conn.execute(
        """SELECT b.status, b.extracted, b.inserted, b.updated, b.unchanged, b.merged_in_batch, b.merged_cross_source,
                  b.quarantined, coalesce(r.not_loaded_blocked, 0)
           FROM ops.batches b LEFT JOIN ops.reconciliation r ON r.batch_id = b.batch_id
           WHERE b.batch_id = %s AND b.manifest_key = %s AND b.status IN ('loaded', 'blocked')
             AND b.committed_at IS NOT NULL
           FOR UPDATE OF b""",
        (batch_id, manifest_key),
    ).fetchone()
    if row is None:
        return None
    counts = LoadCounts(extracted=row[1], inserted=row[2], updated=row[3], unchanged=row[4], merged_in_batch=row[5],
                        merged_cross_source=row[6], quarantined=row[7], blocked=row[8])
    return {"status": row[0], **asdict(counts)}


def reconcile_run(services: Services, run_id: str, expected: list[tuple[str, str]]) -> pd.DataFrame:
    """Check that every expected (source, dataset) batch of the run was reconciled; raise if not."""
    with db.connect(services.platform_dsn, "reconcile") as conn:
        rows = conn.execute(
            """SELECT source_id, dataset, extracted, loaded, quarantined, merged_duplicates, not_loaded_blocked, ok
               FROM ops.reconciliation WHERE run_id = %s""",
            (run_id,),
        ).fetchall()
    frame = pd.DataFrame(
        rows, columns=["source_id", "dataset", "extracted", "loaded", "quarantined", "merged_duplicates", "blocked", "ok"]
    )
    seen = set(zip(frame["source_id"], frame["dataset"], strict=True))
    missing = [f"{s}/{d}" for s, d in expected if (s, d) not in seen]
    bad = frame[(frame["extracted"] != frame["loaded"] + frame["quarantined"] + frame["merged_duplicates"] + frame["blocked"])]
    problem = (
        f"run {run_id}: not reconciled: missing batches {missing}; mismatched {bad.to_dict(orient='records')}"
        if missing or not bad.empty
        else None
    )
    with db.connect(services.platform_dsn, "reconcile") as conn:
        conn.execute(
            "UPDATE ops.runs SET status = %s, finished_at = now(), message = %s WHERE run_id = %s",
            ("failed" if problem else "succeeded", problem, run_id),
        )
    if problem:
        raise ReconciliationError(problem)
    return frame
