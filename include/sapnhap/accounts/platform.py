"""Schema ``accounts`` of the platform: the re-mapped accounts, rebuilt per run in one transaction.

The tables are derived data (recomputed from ``core.accounts`` and ``core.mail_directory`` on
every run), so a run replaces them whole: readers see the previous run's set or the new one,
never a mix. DDL is idempotent.
"""

from __future__ import annotations

import io

import pandas as pd
import psycopg
from psycopg import sql

from sapnhap.accounts.build import AccountSet

ACCOUNTS_DDL = """
CREATE SCHEMA IF NOT EXISTS accounts;
CREATE TABLE IF NOT EXISTS accounts.runs (
    run_id text PRIMARY KEY,
    as_of date NOT NULL,
    crosswalk_version text,
    rules_version integer,
    counts jsonb NOT NULL,
    built_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS accounts.people (
    person_id text PRIMARY KEY,
    full_name text,
    name_key text,
    citizen_id text,
    birth_date date,
    unit_level text,
    unit_key text,
    new_province_code text,
    new_commune_code text,
    old_commune_code text,
    unit_district_code text,
    n_accounts integer NOT NULL,
    n_mailboxes integer NOT NULL,
    match_rule text NOT NULL,
    address text NOT NULL UNIQUE,
    report_unit text,
    run_id text NOT NULL
);
CREATE TABLE IF NOT EXISTS accounts.person_links (
    record_id text PRIMARY KEY,
    kind text NOT NULL,
    person_id text NOT NULL,
    match_rule text NOT NULL,
    source_id text,
    source_key text,
    run_id text NOT NULL
);
CREATE TABLE IF NOT EXISTS accounts.match_review (
    review_id text PRIMARY KEY,
    kind text NOT NULL,
    person_id_a text NOT NULL,
    person_id_b text NOT NULL,
    record_id_a text NOT NULL,
    record_id_b text NOT NULL,
    unit_key_a text,
    unit_key_b text,
    reason_vi text NOT NULL,
    run_id text NOT NULL
);
CREATE TABLE IF NOT EXISTS accounts.legacy_accounts (
    system_code text NOT NULL,
    username text NOT NULL,
    source_id text,
    source_key text,
    person_id text,
    new_username text,
    outcome text NOT NULL CHECK (outcome IN ('mapped', 'merged', 'orphaned')),
    merged_into text,
    duplicate_in_system boolean NOT NULL,
    status text,
    last_login timestamp,
    dormant boolean NOT NULL,
    unit_level text,
    old_commune_code text,
    unit_district_code text,
    new_province_code text,
    new_commune_code text,
    report_unit text,
    roles text,
    orphan_reasons text,
    run_id text NOT NULL,
    PRIMARY KEY (system_code, username)
);
CREATE TABLE IF NOT EXISTS accounts.new_accounts (
    new_username text PRIMARY KEY,
    person_id text NOT NULL,
    address text NOT NULL,
    status text NOT NULL,
    roles text,
    last_login timestamp,
    dormant boolean NOT NULL,
    widened boolean NOT NULL,
    n_legacy_accounts integer NOT NULL,
    new_province_code text,
    new_commune_code text,
    report_unit text,
    run_id text NOT NULL
);
CREATE TABLE IF NOT EXISTS accounts.role_assignments (
    new_username text NOT NULL,
    person_id text NOT NULL,
    system_code text NOT NULL,
    username text NOT NULL,
    legacy_role text NOT NULL,
    rule_id text NOT NULL,
    new_role text NOT NULL,
    scope_level text NOT NULL,
    scope_code text NOT NULL,
    new_province_code text,
    old_reach integer NOT NULL,
    new_reach integer NOT NULL,
    widened boolean NOT NULL,
    widening text,
    run_id text NOT NULL,
    PRIMARY KEY (system_code, username, legacy_role, scope_level, scope_code)
);
CREATE TABLE IF NOT EXISTS accounts.orphaned_roles (
    system_code text NOT NULL,
    username text NOT NULL,
    legacy_role text,
    reason text NOT NULL,
    reason_vi text,
    unit_key text,
    person_id text,
    report_unit text,
    run_id text NOT NULL
);
CREATE TABLE IF NOT EXISTS accounts.mail_forwarding (
    old_address text PRIMARY KEY,
    new_address text NOT NULL,
    person_id text NOT NULL,
    kind text NOT NULL,
    valid_from date NOT NULL,
    valid_to date NOT NULL,
    run_id text NOT NULL
);
CREATE TABLE IF NOT EXISTS accounts.directory (
    address text PRIMARY KEY,
    person_id text NOT NULL UNIQUE,
    new_province_code text NOT NULL,
    new_province_name text,
    new_commune_code text,
    new_commune_name text,
    display_name text,
    given_name text,
    family_name text,
    unit_pending boolean NOT NULL,
    run_id text NOT NULL
);
"""

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


def ensure_accounts_schema(dsn: str) -> None:
    """Create the ``accounts`` schema and tables (idempotent; serialized by an advisory lock)."""
    with psycopg.connect(dsn) as conn, conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('sapnhap.accounts.ddl'))")
        conn.execute(ACCOUNTS_DDL)


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

    ensure_accounts_schema(dsn)
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
