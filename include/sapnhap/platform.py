"""The consolidated provincial platform: schemas, tables, history and roles.

``core``    current records of each dataset, keyed by natural key, with lineage and new codes
``history`` every previous version of a core record, with its validity period (kept by trigger)
``ops``     runs, batches, cursors, quarantine, reconciliation: the audit trail of the syncs
All DDL is idempotent: applying it again changes nothing.
"""

from __future__ import annotations

import psycopg

from sapnhap.datasets import DATASETS, Column, Dataset

PG_TYPES = {
    "text": "text",
    "date": "date",
    "timestamp": "timestamp",
    "int": "integer",
    "code2": "text",
    "code3": "text",
    "code5": "text",
    "citizen_id": "text",
}

# Lineage kept on every core row (R3, R10): where it came from, how its unit was mapped.
LINEAGE_DDL = (
    ("source_id", "text NOT NULL"),
    ("source_key", "text NOT NULL"),
    ("old_province_code", "text"),
    ("old_district_code", "text"),
    ("new_province_code", "text"),
    ("new_commune_code", "text"),
    ("mapping_method", "text"),
    ("mapping_status", "text"),
    ("crosswalk_version", "text"),
    ("unit_scheme", "text NOT NULL"),
    ("record_era", "text"),
    ("flag_old_code_after_merger", "boolean NOT NULL DEFAULT false"),
    ("record_hash", "text NOT NULL"),
    ("batch_id", "text NOT NULL"),
    ("valid_from", "timestamptz NOT NULL DEFAULT now()"),
)

OPS_DDL = """
CREATE SCHEMA IF NOT EXISTS ops;
CREATE TABLE IF NOT EXISTS ops.runs (
    run_id text PRIMARY KEY,
    started_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    status text NOT NULL DEFAULT 'running',
    code_version text,
    crosswalk_version text,
    message text
);
CREATE TABLE IF NOT EXISTS ops.batches (
    batch_id text PRIMARY KEY,
    run_id text NOT NULL,
    source_id text NOT NULL,
    dataset text NOT NULL,
    status text NOT NULL,
    extracted integer NOT NULL DEFAULT 0,
    merged_in_batch integer NOT NULL DEFAULT 0,
    quarantined integer NOT NULL DEFAULT 0,
    warned integer NOT NULL DEFAULT 0,
    inserted integer NOT NULL DEFAULT 0,
    updated integer NOT NULL DEFAULT 0,
    unchanged integer NOT NULL DEFAULT 0,
    merged_cross_source integer NOT NULL DEFAULT 0,
    cursor_from text,
    cursor_to text,
    failed_ratio double precision,
    decision text,
    manifest_key text,
    message text,
    created_at timestamptz NOT NULL DEFAULT now(),
    committed_at timestamptz
);
CREATE INDEX IF NOT EXISTS batches_run ON ops.batches (run_id);
CREATE TABLE IF NOT EXISTS ops.cursors (
    source_id text NOT NULL,
    dataset text NOT NULL,
    cursor_value text,
    batch_id text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source_id, dataset)
);
CREATE TABLE IF NOT EXISTS ops.source_files (
    source_id text NOT NULL,
    dataset text NOT NULL,
    sha256 text NOT NULL,
    file_name text NOT NULL,
    rows integer,
    batch_id text NOT NULL,
    loaded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source_id, dataset, sha256)
);
CREATE TABLE IF NOT EXISTS ops.quarantine (
    quarantine_id bigserial PRIMARY KEY,
    source_id text NOT NULL,
    dataset text NOT NULL,
    source_key text NOT NULL,
    record_hash text NOT NULL,
    expectation text NOT NULL,
    column_name text,
    value_masked text,
    reason_vi text NOT NULL,
    fix_vi text,
    severity text NOT NULL DEFAULT 'block',
    payload jsonb,
    status text NOT NULL DEFAULT 'open',
    first_batch_id text NOT NULL,
    last_batch_id text NOT NULL,
    resolved_batch_id text,
    first_seen timestamptz NOT NULL DEFAULT now(),
    last_seen timestamptz NOT NULL DEFAULT now(),
    UNIQUE (source_id, dataset, source_key, record_hash, expectation, column_name)
);
CREATE INDEX IF NOT EXISTS quarantine_open ON ops.quarantine (source_id, dataset) WHERE status = 'open';
CREATE TABLE IF NOT EXISTS ops.merged_duplicates (
    dataset text NOT NULL,
    natural_key text NOT NULL,
    source_id text NOT NULL,
    source_key text NOT NULL,
    kept_source_id text NOT NULL,
    kept_source_key text NOT NULL,
    reason text NOT NULL,
    batch_id text NOT NULL,
    PRIMARY KEY (dataset, source_id, source_key, batch_id)
);
CREATE TABLE IF NOT EXISTS ops.reconciliation (
    run_id text NOT NULL,
    batch_id text NOT NULL,
    source_id text NOT NULL,
    dataset text NOT NULL,
    extracted integer NOT NULL,
    loaded integer NOT NULL,
    quarantined integer NOT NULL,
    merged_duplicates integer NOT NULL,
    not_loaded_blocked integer NOT NULL DEFAULT 0,
    ok boolean NOT NULL,
    checked_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, source_id, dataset)
);
"""


def _column_ddl(col: Column) -> str:
    return f"{col.name} {PG_TYPES[col.type]}"


def dataset_ddl(ds: Dataset) -> str:
    """DDL of the core table, its history table and the trigger that keeps history."""
    t = ds.name
    key = ", ".join(ds.natural_key)
    cols = [_column_ddl(c) for c in ds.columns] + [f"{n} {d}" for n, d in LINEAGE_DDL]
    # History rows copy the core row as it was; defaults belong to the core table only.
    history_cols = [_column_ddl(c) for c in ds.columns] + [
        f"{n} {d.replace(' DEFAULT now()', '').replace(' DEFAULT false', '')}" for n, d in LINEAGE_DDL
    ]
    names = [c.name for c in ds.columns] + [n for n, _ in LINEAGE_DDL]
    unit_indexes = (
        f"CREATE INDEX IF NOT EXISTS {t}_new_unit ON core.{t} (new_commune_code);\n"
        f"CREATE INDEX IF NOT EXISTS {t}_old_unit ON core.{t} (old_commune_code);\n"
        if ds.has_unit
        else ""
    )
    return f"""
CREATE TABLE IF NOT EXISTS core.{t} (
    {", ".join(cols)},
    PRIMARY KEY ({key})
);
{unit_indexes}CREATE TABLE IF NOT EXISTS history.{t} (
    history_id bigserial PRIMARY KEY,
    {", ".join(history_cols)},
    valid_to timestamptz NOT NULL,
    change text NOT NULL
);
CREATE INDEX IF NOT EXISTS {t}_history_key ON history.{t} ({key});
CREATE OR REPLACE FUNCTION history.keep_{t}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO history.{t} ({", ".join(names)}, valid_to, change)
    VALUES ({", ".join("OLD." + n for n in names)}, now(), lower(TG_OP));
    RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS keep_history ON core.{t};
CREATE TRIGGER keep_history AFTER UPDATE OR DELETE ON core.{t}
    FOR EACH ROW EXECUTE FUNCTION history.keep_{t}();
"""


def platform_ddl() -> str:
    """All platform DDL, in dependency order."""
    parts = ["CREATE SCHEMA IF NOT EXISTS core;", "CREATE SCHEMA IF NOT EXISTS history;", OPS_DDL]
    parts += [dataset_ddl(ds) for ds in DATASETS.values()]
    return "\n".join(parts)


def ensure_platform(dsn: str) -> None:
    """Create or update the platform schema (idempotent; serialized by an advisory lock)."""
    with psycopg.connect(dsn, autocommit=False) as conn:
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('sapnhap.ensure_platform'))")
        conn.execute(platform_ddl())
