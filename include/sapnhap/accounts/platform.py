"""Schema ``accounts`` of the platform: the re-mapped accounts, rebuilt per run in one transaction.

The tables are derived data (recomputed from ``core.accounts`` and ``core.mail_directory`` on
every run), so a run replaces them whole: readers see the previous run's set or the new one,
never a mix. The schema is made by the platform migrations (``python -m sapnhap migrate``).
"""

from __future__ import annotations

import io

import pandas as pd
import psycopg
from psycopg import sql

from sapnhap.accounts.build import AccountSet

# The tables are made by the platform migrations (revision 0002, sapnhap/migrations/versions).

# Platform table -> the AccountSet frame that fills it.
TABLES = {
    "people": "people",
    "person_links": "links",
    "match_review": "match_review",
    "legacy_accounts": "legacy_accounts",
    "new_accounts": "new_accounts",
    "role_assignments": "role_assignments",
    "orphaned_roles": "orphaned_roles",
    "mail_forwarding": "mail_forwarding",
    "directory": "directory",
}


def read_inputs(dsn: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The current ``core.accounts`` and ``core.mail_directory`` rows (empty frames if none)."""
    out = []
    with psycopg.connect(dsn) as conn:
        for table in ("accounts", "mail_directory"):
            exists = conn.execute("SELECT to_regclass(%s)", (f"core.{table}",)).fetchone()[0]
            if exists is None:
                raise RuntimeError(f"core.{table} does not exist: has the nightly sync run with the accounts datasets?")
            cur = conn.execute(sql.SQL("SELECT * FROM core.{}").format(sql.Identifier(table)))
            out.append(pd.DataFrame(cur.fetchall(), columns=[d.name for d in cur.description]))
    return out[0], out[1]


def _table_columns(conn: psycopg.Connection, table: str) -> list[str]:
    rows = conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = 'accounts' AND table_name = %s"
        " ORDER BY ordinal_position", (table,),
    ).fetchall()
    return [r[0] for r in rows]


def _copy(conn: psycopg.Connection, table: str, frame: pd.DataFrame, run_id: str) -> int:
    columns = _table_columns(conn, table)
    data = frame.assign(run_id=run_id)
    for col in columns:
        if col not in data:
            data[col] = None
    data = data[columns]
    buf = io.StringIO()
    data.to_csv(buf, header=False, index=False, na_rep="\\N", date_format="%Y-%m-%d %H:%M:%S")
    stmt = sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT csv, NULL '\\N')").format(
        sql.Identifier("accounts", table), sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    )
    with conn.cursor() as cur, cur.copy(stmt) as copy:
        copy.write(buf.getvalue())
    return len(data)


def store_account_set(dsn: str, account_set: AccountSet, *, run_id: str, as_of, crosswalk_version: str | None,  # noqa: ANN001
                      rules_version: int) -> dict[str, int]:
    """Replace every ``accounts.*`` table with this run's set, in one transaction; return row counts."""
    import json

    frames = account_set.frames()
    written = {}
    with psycopg.connect(dsn) as conn, conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('sapnhap.accounts.rebuild'))")
        conn.execute(sql.SQL("TRUNCATE {}").format(
            sql.SQL(", ").join(sql.Identifier("accounts", t) for t in TABLES)
        ))
        for table, frame_name in TABLES.items():
            written[table] = _copy(conn, table, frames[frame_name], run_id)
        conn.execute(
            """INSERT INTO accounts.runs (run_id, as_of, crosswalk_version, rules_version, counts)
               VALUES (%s, %s, %s, %s, %s::jsonb)
               ON CONFLICT (run_id) DO UPDATE SET as_of = EXCLUDED.as_of, crosswalk_version = EXCLUDED.crosswalk_version,
                   rules_version = EXCLUDED.rules_version, counts = EXCLUDED.counts, built_at = now()""",
            (run_id, as_of, crosswalk_version, rules_version, json.dumps(account_set.counts())),
        )
    return written


def read_table(dsn: str, table: str) -> pd.DataFrame:
    """One ``accounts.<table>`` as a frame."""
    if table not in TABLES and table != "runs":
        raise KeyError(f"unknown accounts table {table!r}")
    with psycopg.connect(dsn) as conn:
        cur = conn.execute(sql.SQL("SELECT * FROM {}").format(sql.Identifier("accounts", table)))
        return pd.DataFrame(cur.fetchall(), columns=[d.name for d in cur.description])
