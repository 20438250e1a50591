"""Files that cannot be read, quarantined as a whole: ``ops.quarantined_files``.

An export file without a header, in the wrong encoding or with the wrong columns, and a
returned correction workbook that cannot be read, are set aside with a reason and a fix in
Vietnamese for their owner; the source's other files load. Only the file's name and sha256 are
kept: never its content, which may be personal data.
"""

from __future__ import annotations

import psycopg

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
