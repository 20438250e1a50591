"""The SQL the nightly sync writes to (and reads back from) the platform's ``ops`` schema, in one place.

Every function takes an open connection and runs in the caller's transaction (the load's
functions are all called inside its one transaction); none opens or commits one itself unless
it says so. What each table holds is described in ``sapnhap.platform``. Grouped by table:

- ``ops.runs``: :func:`open_run`, :func:`close_run`, :func:`upsert_run_status`, :func:`running_runs`;
- ``ops.batches``: :func:`record_extracted`, :func:`record_text_counts`, :func:`append_batch_message`,
  :func:`record_backed_up`, :func:`committed_counts`, :func:`record_stage_failure`;
- ``ops.cursors``, ``ops.source_files``: :func:`cursor_and_files`, :func:`record_source_files`;
- ``ops.loaded_backups``: :func:`record_loaded_backup`;
- ``ops.merged_duplicates``: :func:`record_merged_in_batch`;
- ``ops.reconciliation``: :func:`record_reconciliation`, :func:`run_reconciliation`.

SQL other parts of the product own stays with them: verification (``sapnhap.verify``),
handover records (``sapnhap.handover``), the owners' reports and the outbox (``sapnhap.reports``),
the UI's queries (``sapnhap.ui_queries``), and the merge of a batch into ``core`` with the
duplicates it finds (``sapnhap.load.merge_batch``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import psycopg

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


def record_backed_up(conn: psycopg.Connection, *, batch_id: str, manifest_key: str) -> None:
    conn.execute(
        "UPDATE ops.batches SET status = 'backed_up', manifest_key = %s WHERE batch_id = %s", (manifest_key, batch_id)
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


# --- ops.cursors, ops.source_files -----------------------------------------------------------------


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
                         dataset: str, status: str) -> None:
    """Remember, in the load's transaction, which backup attempt a committed load came from (restore replays these)."""
    conn.execute(
        """INSERT INTO ops.loaded_backups (manifest_key, batch_id, run_id, source_id, dataset, status)
           VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (manifest_key) DO NOTHING""",
        (manifest_key, batch_id, run_id, source_id, dataset, status),
    )
    conn.execute("UPDATE ops.batches SET manifest_key = %s WHERE batch_id = %s", (manifest_key, batch_id))


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
