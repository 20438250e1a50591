"""Publish the unit registry and crosswalk to the platform's PostgreSQL (schema `registry`).

Tables: units, crosswalk, split_rules, reference_versions, mapping_decisions (the data
team's decisions on split-commune records, one per record_key) and review_queue.
Views for officials: v_old_to_new ("where did my commune go?") and v_new_to_old.
Publishing is idempotent: the same version again changes nothing; a new version adds rows.
"""

from __future__ import annotations

import datetime as dt
import json

import pandas as pd
import psycopg
from psycopg import sql

from sapnhap.reference import Reference, load_reference, load_split_rules

DEFAULT_SCHEMA = "registry"

_DDL = """
CREATE SCHEMA IF NOT EXISTS {schema};
CREATE TABLE IF NOT EXISTS {schema}.reference_versions (
    version text PRIMARY KEY,
    kind text NOT NULL,
    effective_from date,
    effective_to date,
    provenance jsonb NOT NULL,
    published_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS {schema}.units (
    scheme text NOT NULL CHECK (scheme IN ('old', 'new')),
    level text NOT NULL CHECK (level IN ('province', 'district', 'commune')),
    code text NOT NULL,
    name text NOT NULL,
    type text,
    parent text,
    province_code text NOT NULL,
    valid_from date,
    valid_to date,
    reference_version text NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS units_version_key ON {schema}.units
    (reference_version, scheme, level, code, (coalesce(valid_from, DATE '0001-01-01')));
CREATE TABLE IF NOT EXISTS {schema}.crosswalk (
    reference_version text NOT NULL,
    old_unit_level text NOT NULL,
    old_province_code text NOT NULL,
    old_district_code text NOT NULL,
    old_commune_code text,
    old_commune_name text,
    new_province_code text NOT NULL,
    new_commune_code text NOT NULL,
    new_commune_name text NOT NULL,
    note text,
    is_split boolean NOT NULL,
    n_targets integer NOT NULL,
    errata text
);
CREATE UNIQUE INDEX IF NOT EXISTS crosswalk_version_key ON {schema}.crosswalk
    (reference_version, old_district_code, (coalesce(old_commune_code, '')), new_commune_code);
CREATE TABLE IF NOT EXISTS {schema}.split_rules (
    province_code text NOT NULL,
    old_commune_code text NOT NULL,
    match_kind text NOT NULL CHECK (match_kind IN ('village', 'street')),
    pattern text NOT NULL,
    new_commune_code text NOT NULL,
    demo boolean NOT NULL,
    PRIMARY KEY (old_commune_code, match_kind, pattern)
);
CREATE TABLE IF NOT EXISTS {schema}.mapping_decisions (
    record_key text PRIMARY KEY,
    old_commune_code text NOT NULL,
    new_commune_code text NOT NULL,
    decided_by text NOT NULL,
    decided_at timestamptz NOT NULL DEFAULT now(),
    reference_version text NOT NULL
);
CREATE TABLE IF NOT EXISTS {schema}.review_queue (
    record_key text PRIMARY KEY,
    source_id text,
    dataset text,
    old_commune_code text NOT NULL,
    candidates text NOT NULL,
    address_detail text,
    first_seen_run text,
    status text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'decided'))
);
CREATE OR REPLACE VIEW {schema}.v_old_to_new AS
SELECT c.reference_version,
       c.old_province_code, op.name AS old_province_name,
       c.old_district_code, od.name AS old_district_name,
       c.old_commune_code, coalesce(oc.name, c.old_commune_name) AS old_commune_name,
       c.new_province_code, np.name AS new_province_name,
       c.new_commune_code, c.new_commune_name,
       c.note, c.is_split, c.n_targets,
       CASE WHEN c.is_split THEN 'Tách về ' || c.n_targets || ' xã/phường mới: cần thôn/tổ dân phố hoặc quyết định'
            ELSE 'Chuyển nguyên về ' || c.new_commune_name END AS giai_thich
FROM {schema}.crosswalk c
JOIN {schema}.reference_versions v ON v.version = c.reference_version
LEFT JOIN {schema}.units op ON op.scheme = 'old' AND op.level = 'province' AND op.code = c.old_province_code
    AND op.reference_version = v.provenance->>'old_units_version'
LEFT JOIN {schema}.units od ON od.scheme = 'old' AND od.level = 'district' AND od.code = c.old_district_code
    AND od.reference_version = v.provenance->>'old_units_version'
LEFT JOIN {schema}.units oc ON oc.scheme = 'old' AND oc.level = 'commune' AND oc.code = c.old_commune_code
    AND oc.reference_version = v.provenance->>'old_units_version'
LEFT JOIN {schema}.units np ON np.scheme = 'new' AND np.level = 'province' AND np.code = c.new_province_code
    AND np.reference_version = c.reference_version AND np.valid_to IS NULL;
CREATE OR REPLACE VIEW {schema}.v_new_to_old AS
SELECT reference_version,
       new_province_code, new_province_name, new_commune_code, new_commune_name,
       old_province_code, old_province_name, old_district_code, old_district_name,
       old_commune_code, old_commune_name, note, is_split
FROM {schema}.v_old_to_new;
"""

_UNIT_COLUMNS = ["scheme", "level", "code", "name", "type", "parent", "province_code", "valid_from", "valid_to",
                 "reference_version"]  # fmt: skip
_CROSSWALK_COLUMNS = ["reference_version", "old_unit_level", "old_province_code", "old_district_code",
                      "old_commune_code", "old_commune_name", "new_province_code", "new_commune_code",
                      "new_commune_name", "note", "is_split", "n_targets", "errata"]  # fmt: skip


def ensure_schema(conn: psycopg.Connection, schema: str = DEFAULT_SCHEMA) -> None:
    """Create the registry schema, tables and views if missing.

    On a platform the migrations built they exist, and nothing runs: no DDL, which the loader
    role may not do (and which would lock the tables the lookups read).
    """
    if conn.execute("SELECT to_regclass(%s)", (f"{schema}.review_queue",)).fetchone()[0] is not None:
        return
    conn.execute(sql.SQL(_DDL).format(schema=sql.Identifier(schema)))


def _records(frame: pd.DataFrame, columns: list[str]) -> list[tuple]:
    clean = frame[columns].astype(object).where(frame[columns].notna(), None)
    return list(clean.itertuples(index=False, name=None))


def _insert_new(conn: psycopg.Connection, schema: str, table: str, columns: list[str], rows: list[tuple]) -> int:
    """COPY rows into a temporary table, then insert those not there yet; return rows added."""
    staging = sql.Identifier(f"_stage_{table}")
    conn.execute(
        sql.SQL("CREATE TEMP TABLE {staging} (LIKE {schema}.{table} INCLUDING DEFAULTS) ON COMMIT DROP").format(
            staging=staging, schema=sql.Identifier(schema), table=sql.Identifier(table)
        )
    )
    column_list = sql.SQL(", ").join(map(sql.Identifier, columns))
    with conn.cursor() as cursor:
        with cursor.copy(sql.SQL("COPY {staging} ({columns}) FROM STDIN").format(staging=staging, columns=column_list)) as copy:
            for row in rows:
                copy.write_row(row)
        cursor.execute(
            sql.SQL("INSERT INTO {schema}.{table} ({columns}) SELECT {columns} FROM {staging} ON CONFLICT DO NOTHING").format(
                schema=sql.Identifier(schema), table=sql.Identifier(table), columns=column_list, staging=staging
            )
        )
        return cursor.rowcount


def publish_reference(conninfo: str, ref: Reference, schema: str = DEFAULT_SCHEMA) -> dict[str, int]:
    """Publish one reference version (units, crosswalk, split rules) in one transaction.

    Returns the number of rows added per table; publishing the same version twice adds 0.
    """
    old_units = ref.old_units.rename(columns={"unit_type": "type", "parent_code": "parent"}).assign(
        reference_version=ref.old_units_version
    )
    new_units = ref.new_units.rename(columns={"unit_type": "type", "parent_code": "parent"}).assign(
        reference_version=ref.version
    )
    crosswalk = ref.crosswalk.assign(reference_version=ref.version)
    rules = load_split_rules()
    provenance = {**ref.provenance, "old_units_version": ref.old_units_version}
    with psycopg.connect(conninfo) as conn:
        ensure_schema(conn, schema)
        conn.execute(
            sql.SQL(
                "INSERT INTO {schema}.reference_versions (version, kind, effective_from, effective_to, provenance) "
                "VALUES (%s, 'crosswalk', %s, %s, %s) ON CONFLICT (version) DO NOTHING"
            ).format(schema=sql.Identifier(schema)),
            (ref.version, ref.effective_from, ref.effective_to, json.dumps(provenance, ensure_ascii=False)),
        )
        added = {
            "units": _insert_new(
                conn, schema, "units", _UNIT_COLUMNS, _records(pd.concat([old_units, new_units]), _UNIT_COLUMNS)
            ),
            "crosswalk": _insert_new(conn, schema, "crosswalk", _CROSSWALK_COLUMNS, _records(crosswalk, _CROSSWALK_COLUMNS)),
        }
        # Rules change when the province sends its list: the latest file wins.
        rule_columns = ["province_code", "old_commune_code", "match_kind", "pattern", "new_commune_code", "demo"]
        with conn.cursor() as cursor:
            cursor.executemany(
                sql.SQL(
                    "INSERT INTO {schema}.split_rules ({columns}) VALUES (%s, %s, %s, %s, %s, %s) "
                    "ON CONFLICT (old_commune_code, match_kind, pattern) DO UPDATE "
                    "SET new_commune_code = EXCLUDED.new_commune_code, demo = EXCLUDED.demo "
                    "WHERE split_rules.new_commune_code IS DISTINCT FROM EXCLUDED.new_commune_code "
                    "OR split_rules.demo IS DISTINCT FROM EXCLUDED.demo"
                ).format(schema=sql.Identifier(schema), columns=sql.SQL(", ").join(map(sql.Identifier, rule_columns))),
                _records(rules, rule_columns),
            )
    added["split_rules"] = len(rules)
    return added


def record_decision(
    conninfo: str,
    record_key: str,
    old_commune_code: str,
    new_commune_code: str,
    decided_by: str,
    *,
    schema: str = DEFAULT_SCHEMA,
    reference_version: str | None = None,
) -> None:
    """Record the data team's decision for one record of a split commune.

    Raises ValueError unless `new_commune_code` is one of the commune's candidate new
    communes in the published crosswalk (default: the current version). The decision
    replaces an earlier one for the same record_key and closes its review-queue entry.
    """
    version = reference_version or load_reference().version
    old_commune_code, new_commune_code = str(old_commune_code).zfill(5), str(new_commune_code).zfill(5)
    target = sql.Identifier(schema)
    with psycopg.connect(conninfo) as conn:
        candidates = [
            row[0]
            for row in conn.execute(
                sql.SQL(
                    "SELECT new_commune_code FROM {schema}.crosswalk "
                    "WHERE reference_version = %s AND old_commune_code = %s AND is_split ORDER BY 1"
                ).format(schema=target),
                (version, old_commune_code),
            )
        ]
        if new_commune_code not in candidates:
            raise ValueError(
                f"{new_commune_code} is not a candidate of split commune {old_commune_code} in {version}: "
                f"candidates {candidates or 'none (not a split commune)'}"
            )
        conn.execute(
            sql.SQL(
                "INSERT INTO {schema}.mapping_decisions "
                "(record_key, old_commune_code, new_commune_code, decided_by, decided_at, reference_version) "
                "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (record_key) DO UPDATE SET "
                "old_commune_code = EXCLUDED.old_commune_code, new_commune_code = EXCLUDED.new_commune_code, "
                "decided_by = EXCLUDED.decided_by, decided_at = EXCLUDED.decided_at, "
                "reference_version = EXCLUDED.reference_version"
            ).format(schema=target),
            (record_key, old_commune_code, new_commune_code, decided_by, dt.datetime.now(dt.UTC), version),
        )
        conn.execute(
            sql.SQL("UPDATE {schema}.review_queue SET status = 'decided' WHERE record_key = %s").format(schema=target),
            (record_key,),
        )


def load_decisions(conninfo: str, schema: str = DEFAULT_SCHEMA) -> pd.DataFrame:
    """Return the recorded decisions: record_key, old_commune_code, new_commune_code, decided_by, decided_at."""
    columns = ["record_key", "old_commune_code", "new_commune_code", "decided_by", "decided_at"]
    with psycopg.connect(conninfo) as conn:
        rows = conn.execute(
            sql.SQL("SELECT {columns} FROM {schema}.mapping_decisions ORDER BY record_key").format(
                columns=sql.SQL(", ").join(map(sql.Identifier, columns)), schema=sql.Identifier(schema)
            )
        ).fetchall()
    return pd.DataFrame(rows, columns=columns)


def enqueue_reviews(
    conninfo: str,
    converted: pd.DataFrame,
    *,
    record_key_col: str,
    run_id: str,
    source_id: str | None = None,
    dataset: str | None = None,
    old_commune_col: str = "old_commune_code",
    address_detail_col: str | None = None,
    schema: str = DEFAULT_SCHEMA,
) -> int:
    """Add the 'review' rows of a convert_codes result to review_queue; return rows added.

    A record already queued keeps its first_seen_run (reruns add nothing).
    """
    review = converted[converted["mapping_status"] == "review"]
    frame = pd.DataFrame(
        {
            "record_key": review[record_key_col].astype(str),
            "source_id": source_id,
            "dataset": dataset,
            "old_commune_code": review[old_commune_col].astype(str).str.zfill(5),
            "candidates": review["mapping_candidates"].astype(str),
            "address_detail": review[address_detail_col] if address_detail_col else None,
            "first_seen_run": run_id,
        }
    )
    columns = list(frame.columns)
    with psycopg.connect(conninfo) as conn:
        ensure_schema(conn, schema)
        return _insert_new(conn, schema, "review_queue", columns, _records(frame, columns))
