"""Read what the reports need from the ``ops`` schema, as plain dicts."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from sapnhap.datasets import DATASETS

HISTORY_RUNS = 30

# Personal values of the failing record, read from the payload only to mask them in texts.
_PII_COLUMNS = sorted({c for ds in DATASETS.values() for c in ds.pii_columns})


@dataclass
class RunData:
    """This run's ops rows for a set of sources."""

    run_id: str
    run_started_at: datetime | None = None
    batches: list[dict[str, Any]] = field(default_factory=list)
    reconciliation: list[dict[str, Any]] = field(default_factory=list)
    quarantine: list[dict[str, Any]] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    cursors: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[dict[str, Any]] = field(default_factory=list)
    verifications: list[dict[str, Any]] = field(default_factory=list)
    quarantined_files: list[dict[str, Any]] = field(default_factory=list)


_QUARANTINE = sql.SQL(
    """SELECT quarantine_id, source_id, dataset, source_key, expectation, column_name, value_masked,
              reason_vi, fix_vi, severity, status, first_batch_id, last_batch_id, resolved_batch_id,
              (SELECT run_id FROM ops.batches b WHERE b.batch_id = first_batch_id) AS first_run_id,
              (SELECT run_id FROM ops.batches b WHERE b.batch_id = last_batch_id) AS last_run_id,
              (SELECT run_id FROM ops.batches b WHERE b.batch_id = resolved_batch_id) AS resolved_run_id,
              ARRAY[{pii}] AS pii_values
       FROM ops.quarantine
       WHERE source_id = ANY(%(sources)s)
         AND (status = 'open'
              OR EXISTS (SELECT 1 FROM ops.batches b
                         WHERE b.run_id = %(run)s
                           AND b.batch_id IN (first_batch_id, last_batch_id, resolved_batch_id)))
       ORDER BY source_id, dataset, expectation, column_name NULLS FIRST, source_key, quarantine_id"""
).format(pii=sql.SQL(", ").join(sql.SQL("payload->>{}").format(sql.Literal(c)) for c in _PII_COLUMNS))

# The last HISTORY_RUNS runs of these sources up to this one (ordered by their first batch).
_HISTORY = """
WITH runs AS (
    SELECT run_id, min(created_at) AS started FROM ops.batches
    WHERE source_id = ANY(%(sources)s) GROUP BY run_id
), this_run AS (
    SELECT coalesce((SELECT started FROM runs WHERE run_id = %(run)s), 'infinity'::timestamptz) AS started
), recent AS (
    SELECT runs.run_id, runs.started FROM runs, this_run
    WHERE runs.started <= this_run.started ORDER BY runs.started DESC LIMIT %(limit)s
)
SELECT b.run_id, recent.started, b.source_id, b.dataset, b.status, b.extracted, b.quarantined
FROM ops.batches b JOIN recent USING (run_id)
WHERE b.source_id = ANY(%(sources)s)
ORDER BY recent.started, b.source_id, b.dataset
"""


# Warn-severity failures of this run's batches (their records were loaded).
_WARNINGS = """
SELECT w.warning_id, w.batch_id, b.run_id, w.source_id, w.dataset, w.source_key, w.expectation, w.column_name,
       w.value_masked, w.reason_vi, w.fix_vi
FROM ops.warnings w JOIN ops.batches b ON b.batch_id = w.batch_id
WHERE w.source_id = ANY(%(sources)s) AND b.run_id = %(run)s
ORDER BY w.source_id, w.dataset, w.expectation, w.column_name NULLS FIRST, w.source_key, w.warning_id
"""

# Batches committed by other runs that no report to the owner covers yet (a killed run's, a
# run whose report never ran), committed within the lookback (the first report after this
# query existed would otherwise list the whole history).
_UNREPORTED = """
SELECT o.owner, b.batch_id, b.run_id, b.source_id, b.dataset, b.status, b.extracted, b.merged_in_batch, b.quarantined,
       b.warned, b.inserted, b.updated, b.unchanged, b.merged_cross_source, b.failed_ratio, b.decision, b.message,
       b.created_at, b.committed_at
FROM unnest(%(owners)s::text[]) AS o(owner)
JOIN ops.batches b ON b.source_id = ANY(%(sources)s) AND b.status IN ('loaded', 'blocked')
                  AND b.run_id <> %(run)s AND b.committed_at >= now() - %(lookback)s::interval
WHERE NOT EXISTS (
    SELECT 1 FROM ops.outbox x
    WHERE x.kind = 'owner_report' AND x.recipient = o.owner AND b.batch_id = ANY(x.batch_ids)
)
ORDER BY o.owner, b.committed_at, b.batch_id
"""
UNREPORTED_LOOKBACK = "7 days"


def fetch_unreported_batches(
    conn: psycopg.Connection, run_id: str, source_ids: list[str], owners: list[str]
) -> dict[str, list[dict[str, Any]]]:
    """Per owner (lower case): committed batches of these sources from other runs no report to them covers."""
    params = {"run": run_id, "sources": source_ids, "owners": [o.strip().lower() for o in owners],
              "lookback": UNREPORTED_LOOKBACK}
    out: dict[str, list[dict[str, Any]]] = {}
    with conn.cursor(row_factory=dict_row) as cur:
        for row in cur.execute(_UNREPORTED, params).fetchall():
            out.setdefault(row.pop("owner"), []).append(row)
    return out


def fetch_run_data(conn: psycopg.Connection, run_id: str, source_ids: list[str]) -> RunData:
    """Everything the owner reports of ``run_id`` need, for these sources."""
    params = {"run": run_id, "sources": source_ids, "limit": HISTORY_RUNS}
    with conn.cursor(row_factory=dict_row) as cur:
        run = cur.execute("SELECT started_at FROM ops.runs WHERE run_id = %(run)s", params).fetchone()
        batches = cur.execute(
            """SELECT batch_id, run_id, source_id, dataset, status, extracted, merged_in_batch, quarantined, warned,
                      inserted, updated, unchanged, merged_cross_source, failed_ratio, decision, message, created_at
               FROM ops.batches WHERE run_id = %(run)s AND source_id = ANY(%(sources)s)""",
            params,
        ).fetchall()
        recon = cur.execute(
            """SELECT run_id, source_id, dataset, extracted, loaded, quarantined, merged_duplicates,
                      not_loaded_blocked, ok
               FROM ops.reconciliation WHERE run_id = %(run)s AND source_id = ANY(%(sources)s)""",
            params,
        ).fetchall()
        quarantine = cur.execute(_QUARANTINE, params).fetchall()
        history = cur.execute(_HISTORY, params).fetchall()
        cursors = cur.execute(
            "SELECT source_id, dataset, cursor_value, updated_at FROM ops.cursors WHERE source_id = ANY(%(sources)s)",
            params,
        ).fetchall()
        warnings = cur.execute(_WARNINGS, params).fetchall()
    started = run["started_at"] if run else None
    if started is None and batches:
        started = min(b["created_at"] for b in batches)
    from sapnhap.ops import open_quarantined_files
    from sapnhap.verify import verification_summary

    files = [{"source_id": sid, **f} for sid in source_ids for f in open_quarantined_files(conn, sid)]
    return RunData(run_id, started, batches, recon, quarantine, history, cursors, warnings,
                   verification_summary(conn, source_ids), files)
