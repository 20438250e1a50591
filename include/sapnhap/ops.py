"""The SQL the nightly sync writes to (and reads back from) the platform's ``ops`` schema, in one place.

Every function takes an open connection and runs in the caller's transaction (the load's
functions are all called inside its one transaction); none opens or commits one itself unless
it says so. What each table holds is described in ``sapnhap.platform``. Grouped by table:

- ``ops.runs``: :func:`open_run`, :func:`close_run`, :func:`upsert_run_status`, :func:`running_runs`;
- ``ops.batches``: :func:`record_extracted`, :func:`record_text_counts`, :func:`append_batch_message`,
  :func:`record_backed_up`, :func:`committed_counts`, :func:`batch_committed_since`, :func:`record_stage_failure`;
- ``ops.batch_leases``: :func:`lease_holder`, :func:`write_lease`, :func:`delete_lease`, :func:`lock_lease`;
- ``ops.cursors``, ``ops.source_files``: :func:`cursor_and_files`, :func:`lock_cursor`, :func:`write_cursor`,
  :func:`record_source_files`;
- ``ops.loaded_backups``: :func:`record_loaded_backup`;
- ``ops.merged_duplicates``: :func:`record_merged_in_batch`;
- ``ops.reconciliation``: :func:`record_reconciliation`, :func:`run_reconciliation`;
- ``ops.quarantine``, ``ops.warnings``: :func:`record_refused`, :func:`record_quarantine`,
  :func:`resolve_quarantine`, :func:`record_warnings`; the load's counts: :func:`record_batch_counts`;
- ``ops.quarantined_files``: :func:`record_quarantined_files`, :func:`resolve_replaced_files`,
  :func:`open_quarantined_files`.

SQL other parts of the product own stays with them: verification (``sapnhap.verify``),
handover records (``sapnhap.handover``), the owners' reports and the outbox (``sapnhap.reports``),
the UI's queries (``sapnhap.ui_queries``), and the merge of a batch into ``core`` with the
duplicates it finds (``sapnhap.load.merge_batch``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

import psycopg

if TYPE_CHECKING:  # frames are passed in; pandas is not imported here (the DAG callbacks import this module)
    import pandas as pd

    from sapnhap.load import LoadCounts

# --- ops.runs --------------------------------------------------------------------------------------


def open_run(conn: psycopg.Connection, *, run_id: str, code_version: str, crosswalk_version: str) -> None:
    """Open run ``run_id`` (status ``running``); an open or closed run of that id is left as it is."""
    conn.execute(
        """INSERT INTO ops.runs (run_id, code_version, crosswalk_version) VALUES (%s, %s, %s)
           ON CONFLICT (run_id) DO NOTHING""",
        (run_id, code_version, crosswalk_version),
    )


def close_run(conn: psycopg.Connection, *, run_id: str, status: str, message: str | None) -> None:
    """Close run ``run_id`` with reconciliation's verdict (``succeeded``/``failed``) and its message."""
    conn.execute(
        "UPDATE ops.runs SET status = %s, finished_at = now(), message = %s WHERE run_id = %s",
        (status, message, run_id),
    )


def upsert_run_status(conn: psycopg.Connection, *, run_id: str, status: str, message: str | None) -> None:
    """Close run ``run_id`` with Airflow's final state (a run that never reached prepare gets its row here).

    ``message`` replaces the stored one when given; otherwise the stored one stays.
    """
    conn.execute(
        """INSERT INTO ops.runs (run_id, status, finished_at, message) VALUES (%s, %s, now(), %s)
           ON CONFLICT (run_id) DO UPDATE SET status = EXCLUDED.status, finished_at = now(),
               message = coalesce(EXCLUDED.message, ops.runs.message)""",
        (run_id, status, message),
    )


def running_runs(conn: psycopg.Connection) -> list[str]:
    """The runs still ``running``, oldest first."""
    return [r[0] for r in conn.execute("SELECT run_id FROM ops.runs WHERE status = 'running' ORDER BY started_at")]


# --- ops.batches -----------------------------------------------------------------------------------


def record_extracted(conn: psycopg.Connection, *, batch_id: str, run_id: str, source_id: str, dataset: str, rows: int,
                     cursor_from: str | None, cursor_to: str | None, message: str | None) -> None:
    """The batch's row after its extract (status ``extracted``); an earlier attempt's row is reset to it."""
    conn.execute(
        """INSERT INTO ops.batches (batch_id, run_id, source_id, dataset, status, extracted, cursor_from, cursor_to, message)
           VALUES (%s, %s, %s, %s, 'extracted', %s, %s, %s, %s)
           ON CONFLICT (batch_id) DO UPDATE SET status = 'extracted', extracted = EXCLUDED.extracted,
               cursor_from = EXCLUDED.cursor_from, cursor_to = EXCLUDED.cursor_to, message = EXCLUDED.message""",
        (batch_id, run_id, source_id, dataset, rows, cursor_from, cursor_to, message),
    )


def record_text_counts(conn: psycopg.Connection, *, batch_id: str, cleaned: int, repaired: int) -> None:
    """How many rows of the batch the transform cleaned and repaired (text)."""
    conn.execute(
        "UPDATE ops.batches SET text_cleaned = %s, text_repaired = %s WHERE batch_id = %s",
        (cleaned, repaired, batch_id),
    )


def append_batch_message(conn: psycopg.Connection, *, batch_id: str, text: str) -> None:
    """Add ``text`` to the batch's message (``a | b``) unless the message already holds it."""
    conn.execute(
        """UPDATE ops.batches SET message = concat_ws(' | ', message, %(why)s::text)
           WHERE batch_id = %(batch)s AND position(%(why)s::text IN coalesce(message, '')) = 0""",
        {"why": text, "batch": batch_id},
    )


def record_backed_up(conn: psycopg.Connection, *, batch_id: str, manifest_key: str,
                     data_docs_key: str | None = None) -> None:
    """The batch is backed up: its manifest, and its Data Docs page (only a batch with failures has one)."""
    conn.execute(
        "UPDATE ops.batches SET status = 'backed_up', manifest_key = %s, data_docs_key = %s WHERE batch_id = %s",
        (manifest_key, data_docs_key, batch_id),
    )


def committed_counts(conn: psycopg.Connection, *, batch_id: str, manifest_key: str) -> tuple | None:
    """What the committed load of this backup of ``batch_id`` recorded, row locked, else None.

    ``(status, extracted, inserted, updated, unchanged, merged_in_batch, merged_cross_source,
    quarantined, blocked)``.
    """
    return conn.execute(
        """SELECT b.status, b.extracted, b.inserted, b.updated, b.unchanged, b.merged_in_batch, b.merged_cross_source,
                  b.quarantined, coalesce(r.not_loaded_blocked, 0)
           FROM ops.batches b LEFT JOIN ops.reconciliation r ON r.batch_id = b.batch_id
           WHERE b.batch_id = %s AND b.manifest_key = %s AND b.status IN ('loaded', 'blocked')
             AND b.committed_at IS NOT NULL
           FOR UPDATE OF b""",
        (batch_id, manifest_key),
    ).fetchone()


def batch_committed_since(conn: psycopg.Connection, *, source_id: str, dataset: str, other_than: str,
                          since: str) -> tuple | None:
    """The latest other batch of a (source, dataset) committed after ``since``: ``(batch_id, committed_at)``."""
    return conn.execute(
        """SELECT batch_id, committed_at FROM ops.batches
           WHERE source_id = %s AND dataset = %s AND batch_id <> %s AND committed_at > %s::timestamptz
           ORDER BY committed_at DESC LIMIT 1""",
        (source_id, dataset, other_than, since),
    ).fetchone()


def record_stage_failure(conn: psycopg.Connection, *, batch_id: str, run_id: str, source_id: str, dataset: str,
                         message: str) -> int:
    """Write a failed stage's message on a batch that did not commit (a missing batch gets a ``failed`` row)."""
    cur = conn.execute(
        """INSERT INTO ops.batches (batch_id, run_id, source_id, dataset, status, message)
           VALUES (%s, %s, %s, %s, 'failed', %s)
           ON CONFLICT (batch_id) DO UPDATE SET message = EXCLUDED.message
           WHERE ops.batches.status NOT IN ('loaded', 'blocked')""",
        (batch_id, run_id, source_id, dataset, message),
    )
    return cur.rowcount


# --- ops.quarantine, ops.warnings, the load's counts on ops.batches -----------------------------------

REFUSED_EXPECTATION = "platform_refused"


def record_refused(conn: psycopg.Connection, *, dataset: str, batch_id: str, refused: pd.DataFrame) -> int:
    """Quarantine the rows the platform refused at COPY (``sapnhap.load._copy_frame``); return how many."""
    if refused.empty:
        return 0
    payload_cols = [c for c in refused.columns if not c.startswith("_") and c != "batch_id"]
    # jsonb refuses the NUL character too: the payload keeps everything else of the record.
    payloads = [p.replace("\\u0000", "") for p in _payload(refused[payload_cols])]
    fix = "Sửa giá trị cột {} của bản ghi trong hệ thống cũ, hoặc ghi giá trị đúng vào cột corrected_value và gửi lại."
    params = [
        (sid, dataset, key, h, REFUSED_EXPECTATION, col, reason, fix.format(col or "được nêu"), payload, batch_id, batch_id)
        for sid, key, h, col, reason, payload in zip(
            refused["source_id"], refused["source_key"], refused["record_hash"], refused["_refused_column"],
            refused["_refused_reason_vi"], payloads, strict=True,
        )
    ]
    with conn.cursor() as cur:
        cur.executemany(
            """INSERT INTO ops.quarantine
               (source_id, dataset, source_key, record_hash, expectation, column_name, value_masked,
                reason_vi, fix_vi, severity, payload, first_batch_id, last_batch_id)
               VALUES (%s, %s, %s, %s, %s, %s, NULL, %s, %s, 'block', %s::jsonb, %s, %s)
               ON CONFLICT (source_id, dataset, source_key, record_hash, expectation, column_name)
               DO UPDATE SET last_batch_id = EXCLUDED.last_batch_id, last_seen = now()""",
            params,
        )
    return len(params)


def _payload(frame: pd.DataFrame) -> list[str]:
    cleaned = frame.astype(object).where(frame.notna(), None)
    return [json.dumps(rec, ensure_ascii=False, default=str) for rec in cleaned.to_dict(orient="records")]


def record_quarantine(
    conn: psycopg.Connection,
    *,
    dataset: str,
    batch_id: str,
    quarantine: pd.DataFrame,
    rows: pd.DataFrame,
) -> None:
    """Upsert quarantine rows (one per failing row and expectation), with the row as payload.

    A rerun that sees the same failing record again only updates ``last_batch_id``; a row
    already resolved (e.g. corrected through the fix loop while the legacy copy still holds
    the old value) stays resolved: the identical content is not news.
    """
    if quarantine.empty:
        return
    payload_cols = [c for c in rows.columns if not c.startswith("_")]
    by_row = rows.set_index("_row_id")
    q = quarantine.merge(
        by_row[["record_hash"]].rename(columns={"record_hash": "row_hash"}), left_on="_row_id", right_index=True, how="left"
    )
    # Only the quarantined rows need their payload (a batch is mostly valid rows).
    failing = by_row.loc[by_row.index.isin(quarantine["_row_id"]), payload_cols]
    payloads = dict(zip(failing.index, _payload(failing), strict=True))
    q = q.astype(object).where(q.notna(), None)
    q["expectation"] = _check_ids(q)
    q["payload"] = q["_row_id"].map(payloads)
    q["fix_vi"] = q["fix_vi"] if "fix_vi" in q else None
    q["severity"] = q["severity"] if "severity" in q else "block"
    q["row_hash"] = q["row_hash"].fillna("")
    cols = ["source_id", "source_key", "row_hash", "expectation", "column", "value", "reason_vi", "fix_vi", "severity", "payload"]
    params = [
        (sid, dataset, key, h, exp, col, val, reason, fix, sev, payload, batch_id, batch_id)
        for sid, key, h, exp, col, val, reason, fix, sev, payload in zip(*(q[c] for c in cols), strict=True)
    ]
    with conn.cursor() as cur:
        cur.executemany(
            """INSERT INTO ops.quarantine
               (source_id, dataset, source_key, record_hash, expectation, column_name, value_masked,
                reason_vi, fix_vi, severity, payload, first_batch_id, last_batch_id)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s, %s)
               ON CONFLICT (source_id, dataset, source_key, record_hash, expectation, column_name)
               DO UPDATE SET last_batch_id = EXCLUDED.last_batch_id, last_seen = now()""",
            params,
        )


def record_batch_counts(conn: psycopg.Connection, *, batch_id: str, status: str, counts: LoadCounts,
                        failed_ratio: float | None, decision: str | None) -> None:
    """Write a committed load's counts on its ``ops.batches`` row: the night's counts, not the attempt's.

    A batch committed before (its load task died after the commit and was retried, or the
    source was re-run) keeps what earlier attempts did: records inserted or updated add up
    (no record is inserted twice), and a replay of the committed backup (status still
    loaded/blocked) keeps its unchanged and cross-source counts instead of reporting every
    row as unchanged.
    """
    conn.execute(
        """UPDATE ops.batches SET
               inserted = CASE WHEN committed_at IS NULL THEN %(inserted)s ELSE inserted + %(inserted)s END,
               updated = CASE WHEN committed_at IS NULL THEN %(updated)s ELSE updated + %(updated)s END,
               unchanged = CASE WHEN status IN ('loaded', 'blocked') THEN unchanged ELSE %(unchanged)s END,
               merged_cross_source = CASE WHEN status IN ('loaded', 'blocked') THEN merged_cross_source
                                          ELSE %(merged_cross_source)s END,
               status = %(status)s, merged_in_batch = %(merged_in_batch)s, quarantined = %(quarantined)s,
               failed_ratio = %(failed_ratio)s, decision = %(decision)s, committed_at = now()
           WHERE batch_id = %(batch_id)s""",
        {"inserted": counts.inserted, "updated": counts.updated, "unchanged": counts.unchanged,
         "merged_cross_source": counts.merged_cross_source, "status": status,
         "merged_in_batch": counts.merged_in_batch, "quarantined": counts.quarantined,
         "failed_ratio": failed_ratio, "decision": decision, "batch_id": batch_id},
    )


def _check_ids(frame: pd.DataFrame) -> pd.Series:
    """The check id of each failure (``meta.check`` of the suite), else its expectation type.

    Two checks may share one GX type (unknown code, split commune): the id keeps them apart,
    in the unique key and in the owner's report.
    """
    if "check" not in frame:
        return frame["expectation"]
    return frame["check"].where(frame["check"].notna(), frame["expectation"])


def record_warnings(conn: psycopg.Connection, *, dataset: str, batch_id: str, warnings: pd.DataFrame,
                    quarantine: pd.DataFrame | None = None) -> int:
    """Store one ``ops.warnings`` row per (record, warn check) of a batch; set ``ops.batches.warned``.

    ``warnings`` is validate's warnings frame (values already masked). Records that are also
    quarantined are left out (they were not loaded; their quarantine rows say why). Returns
    the number of records with a warning. Idempotent per batch.
    """
    if warnings is None or warnings.empty:
        conn.execute("UPDATE ops.batches SET warned = 0 WHERE batch_id = %s", (batch_id,))
        return 0
    w = warnings
    if quarantine is not None and len(quarantine):
        w = w[~w["_row_id"].isin(quarantine["_row_id"])]
    w = w.astype(object).where(w.notna(), None)
    checks = _check_ids(w) if len(w) else []
    params = [
        (batch_id, sid, dataset, key, check, col, None if val is None else str(val), reason, fix)
        for sid, key, check, col, val, reason, fix in zip(
            w["source_id"], w["source_key"], checks, w["column"], w["value"], w["reason_vi"],
            w["fix_vi"] if "fix_vi" in w else [None] * len(w), strict=True)
    ]
    with conn.cursor() as cur:
        cur.executemany(
            """INSERT INTO ops.warnings (batch_id, source_id, dataset, source_key, expectation, column_name, value_masked,
                   reason_vi, fix_vi)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING""",
            params,
        )
    warned = int(w["_row_id"].nunique())
    conn.execute("UPDATE ops.batches SET warned = %s WHERE batch_id = %s", (warned, batch_id))
    return warned


def resolve_quarantine(conn: psycopg.Connection, *, source_id: str, dataset: str, batch_id: str, loaded_keys: list[str]) -> int:
    """Close open quarantine rows of records that now loaded cleanly; return how many closed.

    A row quarantined by this very batch (the platform refused the record at COPY) stays open.
    """
    if not loaded_keys:
        return 0
    with conn.cursor() as cur:
        cur.execute(
            """UPDATE ops.quarantine SET status = 'resolved', resolved_batch_id = %s
               WHERE status = 'open' AND source_id = %s AND dataset = %s AND source_key = ANY(%s)
                 AND last_batch_id <> %s""",
            (batch_id, source_id, dataset, loaded_keys, batch_id),
        )
        return cur.rowcount



# --- ops.quarantined_files: files that cannot be read, set aside whole -------------------------------
# An export file without a header, in the wrong encoding or with the wrong columns, and a returned
# correction workbook that cannot be read, wait with a reason and a fix in Vietnamese for their
# owner; the source's other files load. Only the file's name and sha256 are kept: never its
# content, which may be personal data.

EXPORT = "export"
CORRECTION = "correction"


def record_quarantined_files(
    conn: psycopg.Connection, *, source_id: str, dataset: str, batch_id: str, kind: str, files: list[dict]
) -> int:
    """Upsert one row per file (``file_name``, ``sha256``, ``reason_vi``, ``fix_vi``); return how many.

    The same file seen again only moves ``last_batch_id`` and ``last_seen``.
    """
    if not files:
        return 0
    with conn.cursor() as cur:
        cur.executemany(
            """INSERT INTO ops.quarantined_files
               (source_id, dataset, kind, file_name, sha256, reason_vi, fix_vi, first_batch_id, last_batch_id)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
               ON CONFLICT (source_id, dataset, sha256) DO UPDATE SET
                   last_batch_id = EXCLUDED.last_batch_id, last_seen = now(), reason_vi = EXCLUDED.reason_vi,
                   fix_vi = EXCLUDED.fix_vi""",
            [
                (source_id, dataset, kind, f["file_name"], f["sha256"], f["reason_vi"], f.get("fix_vi"), batch_id, batch_id)
                for f in files
            ],
        )
    return len(files)


def resolve_replaced_files(
    conn: psycopg.Connection, *, source_id: str, dataset: str, batch_id: str, kind: str, readable_names: list[str]
) -> int:
    """Close open rows of files now read cleanly under the same name (the owner sent a fixed version)."""
    if not readable_names:
        return 0
    cur = conn.execute(
        """UPDATE ops.quarantined_files SET status = 'resolved', resolved_batch_id = %s
           WHERE status = 'open' AND source_id = %s AND dataset = %s AND kind = %s AND file_name = ANY(%s)""",
        (batch_id, source_id, dataset, kind, readable_names),
    )
    return cur.rowcount


def open_quarantined_files(conn: psycopg.Connection, source_id: str) -> list[dict]:
    """The open quarantined files of a source (for its owner's report), oldest first."""
    rows = conn.execute(
        """SELECT dataset, kind, file_name, sha256, reason_vi, fix_vi, first_seen, last_seen
           FROM ops.quarantined_files WHERE source_id = %s AND status = 'open' ORDER BY first_seen, file_name""",
        (source_id,),
    ).fetchall()
    names = ("dataset", "kind", "file_name", "sha256", "reason_vi", "fix_vi", "first_seen", "last_seen")
    return [dict(zip(names, r, strict=True)) for r in rows]


# --- ops.batch_leases (the policy is in sapnhap.ordering) -------------------------------------------


def lease_holder(conn: psycopg.Connection, *, source_id: str, dataset: str) -> tuple | None:
    """Serialise lease takers of a (source, dataset), then lock and return its lease: ``(run_id, taken_at,
    expires_at, expired, holder_still_running)``, or None. In the caller's transaction."""
    conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"lease:{source_id}/{dataset}",))
    return conn.execute(
        """SELECT l.run_id, l.taken_at, l.expires_at, l.expires_at < now(),
                  coalesce(r.status = 'running' AND r.finished_at IS NULL, false)
           FROM ops.batch_leases l LEFT JOIN ops.runs r ON r.run_id = l.run_id
           WHERE l.source_id = %s AND l.dataset = %s FOR UPDATE OF l""",
        (source_id, dataset),
    ).fetchone()


def write_lease(conn: psycopg.Connection, *, source_id: str, dataset: str, run_id: str, batch_id: str,
                seconds: float) -> datetime:
    """Give the (source, dataset) lease to ``run_id`` for ``seconds``; return when it was taken (database clock)."""
    return conn.execute(
        """INSERT INTO ops.batch_leases (source_id, dataset, run_id, batch_id, expires_at)
           VALUES (%s, %s, %s, %s, now() + make_interval(secs => %s))
           ON CONFLICT (source_id, dataset) DO UPDATE SET run_id = EXCLUDED.run_id, batch_id = EXCLUDED.batch_id,
               taken_at = now(), expires_at = EXCLUDED.expires_at
           RETURNING taken_at""",
        (source_id, dataset, run_id, batch_id, seconds),
    ).fetchone()[0]


def delete_lease(conn: psycopg.Connection, *, source_id: str, dataset: str, run_id: str) -> None:
    """Drop the (source, dataset) lease if ``run_id`` holds it."""
    conn.execute(
        "DELETE FROM ops.batch_leases WHERE source_id = %s AND dataset = %s AND run_id = %s",
        (source_id, dataset, run_id),
    )


def lock_lease(conn: psycopg.Connection, *, source_id: str, dataset: str) -> tuple | None:
    """The (source, dataset) lease, row locked: ``(run_id, taken_at)``, or None."""
    return conn.execute(
        "SELECT run_id, taken_at FROM ops.batch_leases WHERE source_id = %s AND dataset = %s FOR UPDATE",
        (source_id, dataset),
    ).fetchone()


# --- ops.cursors, ops.source_files -----------------------------------------------------------------


def lock_cursor(conn: psycopg.Connection, *, source_id: str, dataset: str) -> tuple[str | None, str | None]:
    """The committed cursor of a (source, dataset) and the batch that committed it, row locked; (None, None)."""
    row = conn.execute(
        "SELECT cursor_value, batch_id FROM ops.cursors WHERE source_id = %s AND dataset = %s FOR UPDATE",
        (source_id, dataset),
    ).fetchone()
    return (row[0], row[1]) if row else (None, None)


def write_cursor(conn: psycopg.Connection, *, source_id: str, dataset: str, value: str, batch_id: str) -> None:
    conn.execute(
        """INSERT INTO ops.cursors (source_id, dataset, cursor_value, batch_id) VALUES (%s, %s, %s, %s)
           ON CONFLICT (source_id, dataset) DO UPDATE SET cursor_value = EXCLUDED.cursor_value,
           batch_id = EXCLUDED.batch_id, updated_at = now()""",
        (source_id, dataset, value, batch_id),
    )


def cursor_and_files(conn: psycopg.Connection, *, source_id: str, dataset: str) -> tuple[str | None, set[str]]:
    """The committed cursor of a (source, dataset) and the sha256 of the export files it consumed."""
    row = conn.execute(
        "SELECT cursor_value FROM ops.cursors WHERE source_id = %s AND dataset = %s", (source_id, dataset)
    ).fetchone()
    files = conn.execute(
        "SELECT sha256 FROM ops.source_files WHERE source_id = %s AND dataset = %s", (source_id, dataset)
    ).fetchall()
    return (row[0] if row else None), {f[0] for f in files}


def record_source_files(conn: psycopg.Connection, *, source_id: str, dataset: str, batch_id: str,
                        files: Iterable[dict]) -> None:
    """The export files a committed load consumed (never read again)."""
    with conn.cursor() as cur:
        cur.executemany(
            """INSERT INTO ops.source_files (source_id, dataset, sha256, file_name, rows, batch_id)
               VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING""",
            [(source_id, dataset, f["sha256"], f["file_name"], int(f["rows"]), batch_id) for f in files],
        )


# --- ops.loaded_backups ----------------------------------------------------------------------------


def record_loaded_backup(conn: psycopg.Connection, *, manifest_key: str, batch_id: str, run_id: str, source_id: str,
                         dataset: str, status: str, data_docs_key: str | None = None) -> None:
    """Remember, in the load's transaction, which backup attempt a committed load came from (restore replays these),
    and that attempt's Data Docs page (None: the batch had no failing check)."""
    conn.execute(
        """INSERT INTO ops.loaded_backups (manifest_key, batch_id, run_id, source_id, dataset, status)
           VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (manifest_key) DO NOTHING""",
        (manifest_key, batch_id, run_id, source_id, dataset, status),
    )
    conn.execute("UPDATE ops.batches SET manifest_key = %s, data_docs_key = %s WHERE batch_id = %s",
                 (manifest_key, data_docs_key, batch_id))


# --- ops.merged_duplicates -------------------------------------------------------------------------


def record_merged_in_batch(conn: psycopg.Connection, rows: Sequence[tuple]) -> None:
    """Rows merged into another row of the same batch: ``(dataset, natural_key, source_id, source_key,
    kept_source_id, kept_source_key, reason, batch_id, legacy_row_hash)`` each (the hash of the merged
    legacy row's version: verification accounts for the key only while its legacy row is that version)."""
    with conn.cursor() as cur:
        cur.executemany(
            """INSERT INTO ops.merged_duplicates
               (dataset, natural_key, source_id, source_key, kept_source_id, kept_source_key, reason, batch_id,
                legacy_row_hash)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING""",
            rows,
        )


# --- ops.reconciliation ----------------------------------------------------------------------------


def record_reconciliation(conn: psycopg.Connection, *, run_id: str, batch_id: str, source_id: str, dataset: str,
                          extracted: int, loaded: int, quarantined: int, merged: int, blocked: int) -> None:
    """The batch's reconciliation row. The audit trail is append-only for the loader: a retry in an open
    run records again through this function only (migration 0003), never by UPDATE."""
    conn.execute(
        "SELECT ops.record_reconciliation(%s, %s, %s, %s, %s, %s, %s, %s, %s, true)",
        (run_id, batch_id, source_id, dataset, extracted, loaded, quarantined, merged, blocked),
    )


RECONCILIATION_COLUMNS = ("source_id", "dataset", "extracted", "loaded", "quarantined", "merged_duplicates", "blocked",
                          "ok")


def run_reconciliation(conn: psycopg.Connection, run_id: str) -> list[tuple]:
    """The reconciliation rows of a run (:data:`RECONCILIATION_COLUMNS`)."""
    return conn.execute(
        """SELECT source_id, dataset, extracted, loaded, quarantined, merged_duplicates, not_loaded_blocked, ok
           FROM ops.reconciliation WHERE run_id = %s""",
        (run_id,),
    ).fetchall()
