"""The consolidated provincial platform: schemas, tables, history and roles.

``core``    current records of each dataset, keyed by natural key, with lineage and new codes
``history`` every previous version of a core record, with its validity period (kept by
          statement-level triggers: one INSERT per statement from its transition table)
``ops``     runs, batches, cursors, quarantine, reconciliation: the audit trail of the syncs

The DDL here describes the schema this code expects; it is applied only through the numbered
migrations (:mod:`sapnhap.migrations`, ``python -m sapnhap migrate``), and a test checks that
they build everything described here. A change here needs a migration (docs/schema-changes.md).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

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
    # schema change (verify): last in this list, so an existing table gains them in this order too.
    ("legacy_row_hash", "text"),  # md5 of the legacy row as extracted (sapnhap.verify)
    ("deleted_in_source_at", "timestamptz"),  # set by verification when the legacy system no longer has the row
)
# Lineage the load does not write: the verification sets it (sapnhap.verify).
VERIFY_ONLY_COLUMNS = ("deleted_in_source_at",)

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
-- schema change (restore): one row per backup attempt whose load committed (a re-run of a source inside
-- a run is a second attempt of the same batch_id); a restore replays exactly these, and retention keeps them.
CREATE TABLE IF NOT EXISTS ops.loaded_backups (
    manifest_key text PRIMARY KEY,
    batch_id text NOT NULL,
    run_id text NOT NULL,
    source_id text NOT NULL,
    dataset text NOT NULL,
    status text NOT NULL,
    loaded_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS loaded_backups_dataset ON ops.loaded_backups (dataset, source_id, loaded_at);
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
CREATE TABLE IF NOT EXISTS ops.assessments (
    source_id text NOT NULL,
    run_id text NOT NULL,
    profile_key text NOT NULL,
    row_counts jsonb NOT NULL,
    findings jsonb NOT NULL,
    emailed_to text[] NOT NULL,
    assessed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source_id, run_id)
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
CREATE TABLE IF NOT EXISTS ops.handover_records (
    run_id text NOT NULL,
    old_unit_code text NOT NULL,
    old_unit_level text NOT NULL,
    old_unit_name text,
    source_ids text[] NOT NULL,
    new_unit_codes text[] NOT NULL,
    crosswalk_version text,
    datasets jsonb NOT NULL,
    object_key text NOT NULL,
    sha256 text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, old_unit_code)
);
-- schema change (outbox): every owner email is stored before it is sent, and sent once.
CREATE TABLE IF NOT EXISTS ops.outbox (
    outbox_id bigserial PRIMARY KEY,
    kind text NOT NULL,
    dedup_key text NOT NULL UNIQUE,
    run_id text NOT NULL,
    recipient text NOT NULL,
    message_id text NOT NULL UNIQUE,
    subject text NOT NULL,
    message bytea,
    batch_ids text[] NOT NULL DEFAULT '{}',
    meta jsonb NOT NULL DEFAULT '{}',
    status text NOT NULL DEFAULT 'pending',
    attempts integer NOT NULL DEFAULT 0,
    last_error text,
    created_at timestamptz NOT NULL DEFAULT now(),
    last_attempt_at timestamptz,
    sent_at timestamptz
);
CREATE INDEX IF NOT EXISTS outbox_pending ON ops.outbox (created_at) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS outbox_recipient ON ops.outbox (kind, recipient);
-- schema change (outbox): one row per (record, warn check) of a batch; the record still loads.
CREATE TABLE IF NOT EXISTS ops.warnings (
    warning_id bigserial PRIMARY KEY,
    batch_id text NOT NULL,
    source_id text NOT NULL,
    dataset text NOT NULL,
    source_key text NOT NULL,
    expectation text NOT NULL,
    column_name text,
    value_masked text,
    reason_vi text NOT NULL,
    fix_vi text,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE NULLS NOT DISTINCT (batch_id, source_key, expectation, column_name)
);
CREATE INDEX IF NOT EXISTS warnings_source ON ops.warnings (source_id, dataset);
-- schema change (keys): one lease per (source, dataset), taken by the extract, released by the load's commit
CREATE TABLE IF NOT EXISTS ops.batch_leases (
    source_id text NOT NULL,
    dataset text NOT NULL,
    run_id text NOT NULL,
    batch_id text NOT NULL,
    taken_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (source_id, dataset)
);
-- schema change (verify): source-vs-platform verification results and the keys it re-syncs.
CREATE TABLE IF NOT EXISTS ops.verifications (
    verification_id bigserial PRIMARY KEY,
    run_id text NOT NULL,
    source_id text NOT NULL,
    dataset text NOT NULL,
    status text NOT NULL,
    method text,
    source_rows integer,
    platform_rows integer,
    missing integer,
    extra integer,
    different integer,
    unhashed integer,
    accounted integer,
    flagged_deleted integer,
    reappeared integer,
    resync_requested integer,
    legacy_queries integer,
    platform_queries integer,
    rows_read integer,
    chunks_compared integer,
    chunks_differing integer,
    message text,
    started_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);
CREATE INDEX IF NOT EXISTS verifications_source ON ops.verifications (source_id, dataset, finished_at);
CREATE TABLE IF NOT EXISTS ops.verification_rows (
    verification_id bigint NOT NULL REFERENCES ops.verifications (verification_id),
    source_id text NOT NULL,
    dataset text NOT NULL,
    source_key text NOT NULL,
    outcome text NOT NULL CHECK (outcome IN ('missing', 'extra', 'different')),
    PRIMARY KEY (verification_id, source_key, outcome)
);
CREATE TABLE IF NOT EXISTS ops.resync_keys (
    source_id text NOT NULL,
    dataset text NOT NULL,
    source_key text NOT NULL,
    verification_id bigint NOT NULL REFERENCES ops.verifications (verification_id),
    requested_at timestamptz NOT NULL DEFAULT now(),
    batch_id text,
    read_at timestamptz,
    PRIMARY KEY (source_id, dataset, source_key, verification_id)
);
CREATE INDEX IF NOT EXISTS resync_keys_pending ON ops.resync_keys (source_id, dataset) WHERE batch_id IS NULL;
-- schema change (input): rows whose text was cleaned / repaired (mojibake) in the batch
ALTER TABLE ops.batches ADD COLUMN IF NOT EXISTS text_cleaned integer NOT NULL DEFAULT 0;
ALTER TABLE ops.batches ADD COLUMN IF NOT EXISTS text_repaired integer NOT NULL DEFAULT 0;
-- schema change (perf): the batch's Data Docs page, when it has one (only a batch with failures does)
ALTER TABLE ops.batches ADD COLUMN IF NOT EXISTS data_docs_key text;
-- schema change (input): files that cannot be read (export files, returned correction files),
-- quarantined as a whole with a reason for their owner; their content is never stored here.
CREATE TABLE IF NOT EXISTS ops.quarantined_files (
    source_id text NOT NULL,
    dataset text NOT NULL,
    kind text NOT NULL,
    file_name text NOT NULL,
    sha256 text NOT NULL,
    reason_vi text NOT NULL,
    fix_vi text,
    status text NOT NULL DEFAULT 'open',
    first_batch_id text NOT NULL,
    last_batch_id text NOT NULL,
    resolved_batch_id text,
    first_seen timestamptz NOT NULL DEFAULT now(),
    last_seen timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source_id, dataset, sha256)
);
CREATE INDEX IF NOT EXISTS quarantined_files_open ON ops.quarantined_files (source_id) WHERE status = 'open';
-- schema change (trust): each verification's deletion flags of one source's dataset, backed up as a
-- signed write-once object (deletions/<source>/<dataset>/...), applied by a restore in time order.
CREATE TABLE IF NOT EXISTS ops.deletion_flag_backups (
    object_key text PRIMARY KEY,
    verification_id bigint NOT NULL REFERENCES ops.verifications (verification_id),
    source_id text NOT NULL,
    dataset text NOT NULL,
    sha256 text NOT NULL,
    flagged integer NOT NULL,
    taken_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS deletion_flag_backups_dataset ON ops.deletion_flag_backups (dataset, source_id, taken_at);
-- schema change (trust): the legacy row version that was merged (verification compares it).
ALTER TABLE ops.merged_duplicates ADD COLUMN IF NOT EXISTS legacy_row_hash text;
CREATE TABLE IF NOT EXISTS ops.restores (
    restore_id bigserial PRIMARY KEY,
    dataset text NOT NULL,
    source_id text,
    as_of_run text,
    target_schema text NOT NULL,
    batches integer NOT NULL,
    rows integer NOT NULL,
    checksum text NOT NULL,
    matches_platform boolean,
    drill boolean NOT NULL DEFAULT false,
    message text,
    restored_at timestamptz NOT NULL DEFAULT now()
);
"""


def _column_ddl(col: Column) -> str:
    return f"{col.name} {PG_TYPES[col.type]}"


def history_function_sql(t: str, names: Sequence[str], *, per_row: bool = False) -> str:
    """The trigger function that copies the previous versions of ``core.<t>`` rows into ``history.<t>``.

    Set-based (issue 12): one INSERT per statement from its transition table ``old_rows`` (see
    :func:`history_triggers_sql`). ``per_row`` gives the row-trigger function of migrations before
    0009, for a platform still at one of them.
    """
    cols = ", ".join(names)
    if per_row:
        old = ", ".join("OLD." + n for n in names)
        body = f"INSERT INTO history.{t} ({cols}, valid_to, change)\n    VALUES ({old}, now(), lower(TG_OP));"
    else:
        body = f"INSERT INTO history.{t} ({cols}, valid_to, change)\n    SELECT {cols}, now(), lower(TG_OP) FROM old_rows;"
    return f"""-- SECURITY DEFINER: history is written by this trigger only; the loader role cannot insert,
-- update, delete or truncate history rows itself (see ensure_roles).
CREATE OR REPLACE FUNCTION history.keep_{t}() RETURNS trigger LANGUAGE plpgsql
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    {body}
    RETURN NULL;
END $$;
"""


def history_triggers_sql(t: str) -> str:
    """The statement-level triggers that keep ``history.<t>``: one per event (a trigger with a
    transition table has one event), each writing the statement's previous versions at once."""
    return "".join(
        f"""DROP TRIGGER IF EXISTS {name} ON core.{t};
CREATE TRIGGER {name} AFTER {event} ON core.{t}
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION history.keep_{t}();
"""
        for name, event in HISTORY_TRIGGERS
    )


HISTORY_TRIGGERS = (("keep_history", "UPDATE"), ("keep_history_delete", "DELETE"))


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
    # schema change (verify): tables created before the verification columns existed gain them.
    added = "".join(
        f"ALTER TABLE {schema}.{t} ADD COLUMN IF NOT EXISTS {n} {d};\n"
        for schema in ("core", "history")
        for n, d in LINEAGE_DDL
        if n in ("legacy_row_hash", "deleted_in_source_at")
    )
    return f"""
CREATE TABLE IF NOT EXISTS core.{t} (
    {", ".join(cols)},
    PRIMARY KEY ({key})
);
-- schema change (keys): a legacy record by (source_id, source_key), for the merge's re-keyed records
-- and verification's reads of one source's rows (its own {t}_source_key duplicated it: dropped in 0009_lead)
CREATE INDEX IF NOT EXISTS {t}_record ON core.{t} (source_id, source_key);
{unit_indexes}CREATE TABLE IF NOT EXISTS history.{t} (
    history_id bigserial PRIMARY KEY,
    {", ".join(history_cols)},
    valid_to timestamptz NOT NULL,
    change text NOT NULL
);
{added}CREATE INDEX IF NOT EXISTS {t}_history_key ON history.{t} ({key});
{history_function_sql(t, names)}{history_triggers_sql(t)}"""


# Accent-insensitive search without the unaccent extension (not every server has it): NFC,
# lower case, then every Vietnamese vowel with a diacritic -> its base letter, đ -> d.
_VI_ACCENTED = (
    "àáảãạăằắẳẵặâầấẩẫậèéẻẽẹêềếểễệìíỉĩịòóỏõọôồốổỗộơờớởỡợùúủũụưừứửữựỳýỷỹỵđ"
)
_VI_BASE = "a" * 17 + "e" * 11 + "i" * 5 + "o" * 17 + "u" * 11 + "y" * 5 + "d"

LOOKUP_COMMON_DDL = f"""
CREATE OR REPLACE FUNCTION core.fold_vi(name text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE RETURNS NULL ON NULL INPUT
    AS $$ SELECT translate(lower(normalize(name, NFC)), '{_VI_ACCENTED}', '{_VI_BASE}') $$;
-- Units of every scheme and version with their folded names, for search by name (R8).
CREATE OR REPLACE VIEW core.v_unit_names AS
SELECT scheme, level, code, name, core.fold_vi(name) AS name_folded, type, parent, province_code,
       valid_from, valid_to, reference_version
FROM registry.units;
-- Old or new units whose name contains the words typed, with or without diacritics.
CREATE OR REPLACE FUNCTION core.find_units_by_name(query text, unit_scheme text DEFAULT NULL)
    RETURNS SETOF core.v_unit_names LANGUAGE sql STABLE AS $$
    SELECT * FROM core.v_unit_names
    WHERE name_folded LIKE '%' || core.fold_vi(query) || '%'
      AND (unit_scheme IS NULL OR scheme = unit_scheme)
    ORDER BY scheme, level, code, valid_from $$;
"""


def lookup_ddl(ds: Dataset) -> str:
    """Historical lookup functions of one dataset with a unit (R8).

    ``core.find_<t>_by_old_unit(code, as_of, known_at)``: the records of an old province
    (2 digits), district (3) or commune (5) that existed on ``as_of`` by their own business date
    (the dataset's ``record_date``: registered, received, created; a record without one is
    always included), each in the version the platform held at ``known_at`` (the current row when
    it was already valid then, else the history row valid then; default NULL: the current rows).
    ``core.find_<t>_by_new_unit(code, as_of, known_at)``: the same by new province/commune code.
    ``core.find_<t>_by_old_unit_name(name, as_of, known_at)``: by old commune/district name, accents optional.
    """
    return lookup_functions_sql(ds.name, [c.name for c in ds.columns] + [n for n, _ in LINEAGE_DDL], ds.record_date)


def lookup_functions_sql(t: str, columns: Sequence[str], record_date: str | None = None) -> str:
    """The lookup functions of ``core.<t>``; ``columns`` in the table's column order (its row type).

    ``record_date``: the column that places a record in time (its business date); without one,
    ``as_of`` leaves every record in (all the platform held at ``known_at``). The functions
    of releases before 0009 (``(code, as_of)``, "as loaded by then") are dropped: two overloads
    with defaults would make every call ambiguous.
    """
    names = ", ".join(columns)
    versions = f"""
        SELECT {names} FROM core.{t} WHERE known_at IS NULL OR valid_from <= known_at
        UNION ALL
        SELECT {names} FROM history.{t} WHERE known_at IS NOT NULL AND valid_from <= known_at AND valid_to > known_at"""
    when = f"(r.{record_date} IS NULL OR r.{record_date}::date <= as_of)" if record_date in columns else "true"
    args = "as_of date DEFAULT current_date, known_at timestamptz DEFAULT NULL"
    drops = "".join(f"DROP FUNCTION IF EXISTS core.find_{t}_by_{kind}(text, date);\n"
                    for kind in ("old_unit", "new_unit", "old_unit_name"))
    return f"""
{drops}CREATE OR REPLACE FUNCTION core.find_{t}_by_old_unit(code text, {args})
    RETURNS SETOF core.{t} LANGUAGE sql STABLE AS $$
    SELECT * FROM ({versions}) r
    WHERE {when}
      AND CASE length(code) WHEN 2 THEN r.old_province_code = code
                            WHEN 3 THEN r.old_district_code = code
                            ELSE r.old_commune_code = code END $$;
CREATE OR REPLACE FUNCTION core.find_{t}_by_new_unit(code text, {args})
    RETURNS SETOF core.{t} LANGUAGE sql STABLE AS $$
    SELECT * FROM ({versions}) r
    WHERE {when}
      AND CASE length(code) WHEN 2 THEN r.new_province_code = code ELSE r.new_commune_code = code END $$;
CREATE OR REPLACE FUNCTION core.find_{t}_by_old_unit_name(name text, {args})
    RETURNS SETOF core.{t} LANGUAGE sql STABLE AS $$
    SELECT r.* FROM ({versions}) r
    WHERE {when}
      AND (r.old_commune_code IN (SELECT code FROM core.find_units_by_name(name, 'old') WHERE level = 'commune')
           OR r.old_district_code IN (SELECT code FROM core.find_units_by_name(name, 'old') WHERE level = 'district')) $$;
"""


def document_lookup_ddl() -> str:
    """Lookup of documents by agency and of a document's processing history (R16), as of a date.

    ``core.find_documents_by_old_agency(code, as_of)``: documents an old agency issued or received;
    ``core.find_documents_by_new_agency(code, as_of)``: the same by the agency of the new structure
    (a document of an abolished district office is found under its successor);
    ``core.find_document_steps(document_code, as_of)``: its processing history in time order.
    """
    docs = [c.name for c in DATASETS["documents"].columns] + [n for n, _ in LINEAGE_DDL]
    steps = [c.name for c in DATASETS["document_steps"].columns] + [n for n, _ in LINEAGE_DDL]

    def as_of_rows(t: str, names: list[str]) -> str:
        cols = ", ".join(names)
        return f"""
        SELECT {cols} FROM core.{t} WHERE valid_from < (as_of + 1)
        UNION ALL
        SELECT {cols} FROM history.{t} WHERE valid_from < (as_of + 1) AND valid_to >= (as_of + 1)"""

    return f"""
CREATE OR REPLACE FUNCTION core.find_documents_by_old_agency(code text, as_of date DEFAULT current_date)
    RETURNS SETOF core.documents LANGUAGE sql STABLE AS $$
    SELECT * FROM ({as_of_rows("documents", docs)}) r
    WHERE r.issuer_code = code OR r.receiver_code = code $$;
CREATE OR REPLACE FUNCTION core.find_documents_by_new_agency(code text, as_of date DEFAULT current_date)
    RETURNS SETOF core.documents LANGUAGE sql STABLE AS $$
    SELECT * FROM ({as_of_rows("documents", docs)}) r
    WHERE r.issuer_new_agency_code = code OR r.receiver_new_agency_code = code $$;
CREATE OR REPLACE FUNCTION core.find_document_steps(code text, as_of date DEFAULT current_date)
    RETURNS SETOF core.document_steps LANGUAGE sql STABLE AS $$
    SELECT * FROM ({as_of_rows("document_steps", steps)}) r
    WHERE r.document_code = code ORDER BY r.acted_at, r.step_no $$;
"""


def platform_ddl() -> str:
    """The platform schema this code expects, in dependency order (registry schema first).

    Not applied as such: the migrations build it (checked by test_platform_migrations).
    """
    parts = ["CREATE SCHEMA IF NOT EXISTS core;", "CREATE SCHEMA IF NOT EXISTS history;", OPS_DDL]
    parts += [dataset_ddl(ds) for ds in DATASETS.values()]
    parts.append(LOOKUP_COMMON_DDL)
    parts += [lookup_ddl(ds) for ds in DATASETS.values() if ds.has_unit]
    parts.append(document_lookup_ddl())
    from sapnhap.documents import documents_access_ddl

    parts.append(documents_access_ddl())
    return "\n".join(parts)


def ensure_platform(dsn: str, revision: str = "head", *, repair: bool = False) -> str:
    """Bring the platform to this code's schema (``python -m sapnhap migrate``); return the revision.

    Applies the numbered migrations (:mod:`sapnhap.migrations`) with the connected user, who must
    own the schemas, then (re)grants the least-privilege roles (:func:`ensure_roles`). The nightly
    never calls this: it runs as the loader and only checks the revision. ``repair`` replays every
    migration to recreate what was dropped (``migrate --repair``, before a restore).
    """
    from sapnhap.migrations import upgrade

    applied = upgrade(dsn, revision, repair=repair)
    if not ensure_roles(dsn):
        logging.getLogger(__name__).warning(
            "the roles %s do not exist and this user may not create them: a DBA runs "
            "`python -m sapnhap migrate` once with a user that has CREATEROLE", ", ".join(ROLES))
    return applied


LOADER_ROLE = "sapnhap_loader"
ANALYST_ROLE = "sapnhap_analyst"
AUDITOR_ROLE = "sapnhap_auditor"
# Cleared to read classified documents' summaries (sapnhap.documents.grant_document_access).
DOCUMENT_READER_ROLE = "sapnhap_document_reader"
ROLES = (LOADER_ROLE, ANALYST_ROLE, AUDITOR_ROLE, DOCUMENT_READER_ROLE)

# Least privilege (R4). Group roles (NOLOGIN); grant them to login users:
#   CREATE ROLE etl_airflow LOGIN PASSWORD '...' IN ROLE sapnhap_loader;
#   GRANT sapnhap_analyst TO nguyen_van_a;
# Only the owner (who runs the migrations) changes the schema, drops, or disables triggers.
# History is written by the SECURITY DEFINER trigger only: every role reads it, none writes it.
# The ops audit trail is append-only for the loader: it inserts; it updates only the columns a
# sync moves forward (cursors, batch and run status, quarantine status); reconciliation and
# handover records of an open run are recorded again through ops.record_* (migration 0003).
# Applied again after every migration (GRANT ... ON ALL TABLES covers only the tables that exist).
#
# What the loader may UPDATE in ops (column privileges), and DELETE: nothing else. A table not
# named here is append-only for it (reconciliation, handover_records, restores, merged_duplicates,
# source_files, assessments, ...). A new ops table the nightly updates gets its line here.
LOADER_OPS_UPDATES: dict[str, tuple[str, ...]] = {
    "cursors": ("cursor_value", "batch_id", "updated_at"),
    "batches": ("status", "extracted", "merged_in_batch", "quarantined", "warned", "inserted", "updated", "unchanged",
                "merged_cross_source", "cursor_from", "cursor_to", "failed_ratio", "decision", "manifest_key",
                "message", "committed_at", "text_cleaned", "text_repaired", "data_docs_key"),
    "runs": ("status", "finished_at", "message"),
    "quarantine": ("last_batch_id", "last_seen", "status", "resolved_batch_id"),
    # Tables of the other branches' schema changes (granted once their migration made them).
    "batch_leases": ("run_id", "batch_id", "taken_at", "expires_at"),
    "outbox": ("status", "sent_at", "last_attempt_at", "attempts", "last_error"),
    "quarantined_files": ("last_batch_id", "last_seen", "reason_vi", "fix_vi", "status", "resolved_batch_id"),
    "verifications": ("status", "method", "source_rows", "platform_rows", "missing", "extra", "different", "unhashed",
                      "accounted", "flagged_deleted", "reappeared", "resync_requested", "legacy_queries",
                      "platform_queries", "rows_read", "chunks_compared", "chunks_differing", "message", "finished_at"),
    "resync_keys": ("batch_id", "read_at"),
}
# A lease is released by deleting it (the load's commit); nothing else is deleted.
LOADER_OPS_DELETES: tuple[str, ...] = ("batch_leases",)


def _grant_loader_ops(conn: psycopg.Connection) -> None:
    """The loader's UPDATE and DELETE grants in ops, for the tables and columns the platform has."""
    from psycopg import sql

    have: dict[str, set[str]] = {}
    for table, column in conn.execute(
        "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'ops'"
    ).fetchall():
        have.setdefault(table, set()).add(column)
    loader = sql.Identifier(LOADER_ROLE)
    for table, cols in LOADER_OPS_UPDATES.items():
        present = [c for c in cols if c in have.get(table, set())]
        if present:
            conn.execute(sql.SQL("GRANT UPDATE ({}) ON {} TO {}").format(
                sql.SQL(", ").join(map(sql.Identifier, present)), sql.Identifier("ops", table), loader))
    for table in LOADER_OPS_DELETES:
        if table in have:
            conn.execute(sql.SQL("GRANT DELETE ON {} TO {}").format(sql.Identifier("ops", table), loader))


_GRANTS = f"""
GRANT USAGE ON SCHEMA core, history, ops, registry, accounts TO {LOADER_ROLE}, {ANALYST_ROLE}, {AUDITOR_ROLE};
REVOKE ALL ON ALL TABLES IN SCHEMA core, history, ops, registry, accounts FROM {LOADER_ROLE}, {ANALYST_ROLE}, {AUDITOR_ROLE};
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA ops FROM PUBLIC, {LOADER_ROLE}, {ANALYST_ROLE}, {AUDITOR_ROLE};
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA core TO {LOADER_ROLE};
GRANT SELECT, INSERT ON ALL TABLES IN SCHEMA ops TO {LOADER_ROLE};
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA ops TO {LOADER_ROLE};
GRANT SELECT ON ALL TABLES IN SCHEMA history, registry TO {LOADER_ROLE};
-- The nightly publishes the reference version its code ships (rows only; the tables are migrated).
GRANT INSERT ON registry.reference_versions, registry.units, registry.crosswalk, registry.split_rules TO {LOADER_ROLE};
GRANT UPDATE (new_commune_code, demo) ON registry.split_rules TO {LOADER_ROLE};
GRANT INSERT, UPDATE ON registry.review_queue TO {LOADER_ROLE};
-- The review page of the UI (which uses the same connection) records the data team's decisions.
GRANT INSERT, UPDATE (old_commune_code, new_commune_code, decided_by, decided_at, reference_version)
    ON registry.mapping_decisions TO {LOADER_ROLE};
GRANT USAGE ON ALL SEQUENCES IN SCHEMA ops TO {LOADER_ROLE};
-- Schemas of its own only: the restore drill's scratch copy (restore_drill), created and dropped
-- by the loader; no privilege on the platform's schemas comes with it.
DO $$ BEGIN EXECUTE format('GRANT CREATE ON DATABASE %I TO {LOADER_ROLE}', current_database()); END $$;
-- accounts.* is derived data the accounts DAG rebuilds whole on every run.
GRANT SELECT, INSERT, TRUNCATE ON ALL TABLES IN SCHEMA accounts TO {LOADER_ROLE};
GRANT UPDATE ON accounts.runs TO {LOADER_ROLE};
GRANT SELECT ON ALL TABLES IN SCHEMA core, history, registry TO {ANALYST_ROLE};
GRANT SELECT ON ops.runs, ops.batches, ops.reconciliation, ops.merged_duplicates, ops.handover_records TO {ANALYST_ROLE};
-- Quarantine rows without the payload: it is the whole legacy record, personal data unmasked.
GRANT SELECT (quarantine_id, source_id, dataset, source_key, expectation, column_name, value_masked, reason_vi,
              fix_vi, severity, status, first_batch_id, last_batch_id, resolved_batch_id, first_seen, last_seen)
    ON ops.quarantine TO {ANALYST_ROLE};
GRANT SELECT ON ops.warnings TO {ANALYST_ROLE};
GRANT SELECT ON ALL TABLES IN SCHEMA core, history, ops, registry, accounts TO {AUDITOR_ROLE};
"""


def ensure_roles(dsn: str) -> bool:
    """Create the NOLOGIN group roles if missing and (re)grant their privileges; idempotent.

    Returns False (and grants nothing) when the roles are missing and the connected user may
    not create roles: a DBA then runs this once with a privileged user.
    """
    with psycopg.connect(dsn, autocommit=False) as conn:
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('sapnhap.ensure_roles'))")
        existing = {r[0] for r in conn.execute("SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", (list(ROLES),))}
        can_create = conn.execute(
            "SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user"
        ).fetchone()[0]
        if existing != set(ROLES) and not can_create:
            return False
        for role in ROLES:
            if role not in existing:
                # Roles are cluster-wide: another database's setup may create it at the same moment.
                conn.execute(
                    f"DO $$ BEGIN CREATE ROLE {role} NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$"
                )
        conn.execute(_GRANTS)
        _grant_loader_ops(conn)
        from sapnhap.documents import grant_document_access

        grant_document_access(conn)
    return True
