"""Extract: new and changed rows of one (source, dataset) since the committed cursor, stored raw in the bucket.

Besides the legacy rows the cursor (or the new export files) gives, the batch carries the
quarantined records that come back (corrected by their owner, or decided by the data team) and
the keys a verification found missing or changed. The (source, dataset) lease
(:mod:`sapnhap.ordering`) is taken first and held until the load commits.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import replace
from pathlib import Path

import psycopg

from sapnhap import db, ops, storage
from sapnhap.corrections import append_requeued
from sapnhap.extract import extract_to_parquet
from sapnhap.ordering import release_lease, take_lease
from sapnhap.services import Services
from sapnhap.sources import Source
from sapnhap.sync.batch import Batch, batch_id_for
from sapnhap.sync.frames import PARQUET
from sapnhap.verify import append_resync_rows

log = logging.getLogger(__name__)


def extract_stage(services: Services, source: Source, dataset: str, connection: str, *, run_id: str, run_date: str) -> dict:
    """Extract new/changed rows of one dataset since the committed cursor; store them raw in the bucket.

    Takes the (source, dataset) lease first (see :mod:`sapnhap.ordering`): another run still
    running with it raises :class:`~sapnhap.ordering.BatchLockedError` and nothing is extracted.
    A failed extract gives the lease back; a successful one keeps it until its load commits.
    Returns the batch's payload (:meth:`Batch.to_xcom`).
    """
    with db.connect(services.platform_dsn, "extract") as conn:
        started = take_lease(conn, source_id=source.id, dataset=dataset, run_id=run_id,
                             batch_id=batch_id_for(run_id, source.id, dataset))
    try:
        batch = Batch(run_id=run_id, source_id=source.id, dataset=dataset, run_date=run_date,
                      attempt=storage.new_attempt_id(), extract_started_at=started)
        return _extract(services, source, connection, batch).to_xcom()
    except BaseException:
        try:
            with db.connect(services.platform_dsn, "extract") as conn:
                release_lease(conn, source_id=source.id, dataset=dataset, run_id=run_id)
        except psycopg.Error as exc:
            # The extract's own error is the one to see; the lease ends with the run or expires.
            log.warning("%s/%s: lease of run %s not released: %s", source.id, dataset, run_id, type(exc).__name__)
        raise


def _extract(services: Services, source: Source, connection: str, batch: Batch) -> Batch:
    dataset, batch_id = batch.dataset, batch.batch_id
    with db.connect(services.platform_dsn, "extract") as conn:
        cursor_value, seen = ops.cursor_and_files(conn, source_id=source.id, dataset=dataset)
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
        result.rows += append_resync_rows(services, source, dataset, connection, result.path, batch_id)
        raw = storage.put_file(services.s3, batch.prefix + "raw.parquet", result.path, PARQUET)
    if result.unmapped_columns:
        # Documented policy: new legacy columns are kept in the raw backup and reported, never dropped.
        log.warning("%s/%s: legacy columns not mapped (kept in raw backup): %s", source.id, dataset, result.unmapped_columns)
    with db.connect(services.platform_dsn, "extract") as conn:
        # Unreadable export files wait in quarantine with a reason for the owner; the others load.
        ops.resolve_replaced_files(conn, source_id=source.id, dataset=dataset, batch_id=batch_id, kind=ops.EXPORT,
                                   readable_names=[f["file_name"] for f in result.files])
        ops.record_quarantined_files(conn, source_id=source.id, dataset=dataset, batch_id=batch_id, kind=ops.EXPORT,
                                     files=result.quarantined_files)
        ops.record_extracted(
            conn, batch_id=batch_id, run_id=batch.run_id, source_id=source.id, dataset=dataset, rows=result.rows,
            cursor_from=result.cursor_from, cursor_to=result.cursor_to,
            message=f"unmapped legacy columns: {', '.join(result.unmapped_columns)}" if result.unmapped_columns else None,
        )
    return replace(
        batch,
        rows=result.rows,
        cursor_from=result.cursor_from,
        cursor_to=result.cursor_to,
        files=result.files,
        unmapped_columns=result.unmapped_columns,
        quarantined_files=[{k: f[k] for k in ("file_name", "sha256", "reason_vi")} for f in result.quarantined_files],
        objects={"raw": raw.as_dict()},
    )
