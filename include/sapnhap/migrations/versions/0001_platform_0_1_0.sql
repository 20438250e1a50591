-- Migration 0001: the platform schema of release 0.1.0 (frozen; generated once from
-- sapnhap.reference.platform._DDL for schema registry and sapnhap.platform.platform_ddl()).
-- Never edit: a change is a new migration.

CREATE SCHEMA IF NOT EXISTS registry;
CREATE TABLE IF NOT EXISTS registry.reference_versions (
    version text PRIMARY KEY,
    kind text NOT NULL,
    effective_from date,
    effective_to date,
    provenance jsonb NOT NULL,
    published_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS registry.units (
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
CREATE UNIQUE INDEX IF NOT EXISTS units_version_key ON registry.units
    (reference_version, scheme, level, code, (coalesce(valid_from, DATE '0001-01-01')));
CREATE TABLE IF NOT EXISTS registry.crosswalk (
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
CREATE UNIQUE INDEX IF NOT EXISTS crosswalk_version_key ON registry.crosswalk
    (reference_version, old_district_code, (coalesce(old_commune_code, '')), new_commune_code);
CREATE TABLE IF NOT EXISTS registry.split_rules (
    province_code text NOT NULL,
    old_commune_code text NOT NULL,
    match_kind text NOT NULL CHECK (match_kind IN ('village', 'street')),
    pattern text NOT NULL,
    new_commune_code text NOT NULL,
    demo boolean NOT NULL,
    PRIMARY KEY (old_commune_code, match_kind, pattern)
);
CREATE TABLE IF NOT EXISTS registry.mapping_decisions (
    record_key text PRIMARY KEY,
    old_commune_code text NOT NULL,
    new_commune_code text NOT NULL,
    decided_by text NOT NULL,
    decided_at timestamptz NOT NULL DEFAULT now(),
    reference_version text NOT NULL
);
CREATE TABLE IF NOT EXISTS registry.review_queue (
    record_key text PRIMARY KEY,
    source_id text,
    dataset text,
    old_commune_code text NOT NULL,
    candidates text NOT NULL,
    address_detail text,
    first_seen_run text,
    status text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'decided'))
);
CREATE OR REPLACE VIEW registry.v_old_to_new AS
SELECT c.reference_version,
       c.old_province_code, op.name AS old_province_name,
       c.old_district_code, od.name AS old_district_name,
       c.old_commune_code, coalesce(oc.name, c.old_commune_name) AS old_commune_name,
       c.new_province_code, np.name AS new_province_name,
       c.new_commune_code, c.new_commune_name,
       c.note, c.is_split, c.n_targets,
       CASE WHEN c.is_split THEN 'Tách về ' || c.n_targets || ' xã/phường mới: cần thôn/tổ dân phố hoặc quyết định'
            ELSE 'Chuyển nguyên về ' || c.new_commune_name END AS giai_thich
FROM registry.crosswalk c
JOIN registry.reference_versions v ON v.version = c.reference_version
LEFT JOIN registry.units op ON op.scheme = 'old' AND op.level = 'province' AND op.code = c.old_province_code
    AND op.reference_version = v.provenance->>'old_units_version'
LEFT JOIN registry.units od ON od.scheme = 'old' AND od.level = 'district' AND od.code = c.old_district_code
    AND od.reference_version = v.provenance->>'old_units_version'
LEFT JOIN registry.units oc ON oc.scheme = 'old' AND oc.level = 'commune' AND oc.code = c.old_commune_code
    AND oc.reference_version = v.provenance->>'old_units_version'
LEFT JOIN registry.units np ON np.scheme = 'new' AND np.level = 'province' AND np.code = c.new_province_code
    AND np.reference_version = c.reference_version AND np.valid_to IS NULL;
CREATE OR REPLACE VIEW registry.v_new_to_old AS
SELECT reference_version,
       new_province_code, new_province_name, new_commune_code, new_commune_name,
       old_province_code, old_province_name, old_district_code, old_district_name,
       old_commune_code, old_commune_name, note, is_split
FROM registry.v_old_to_new;

CREATE SCHEMA IF NOT EXISTS core;
CREATE SCHEMA IF NOT EXISTS history;

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


CREATE TABLE IF NOT EXISTS core.dossiers (
    dossier_code text, procedure_code text, procedure_name text, applicant_name text, applicant_citizen_id text, old_commune_code text, address_detail text, received_date date, due_date date, completed_date date, status text, updated_at timestamp, source_id text NOT NULL, source_key text NOT NULL, old_province_code text, old_district_code text, new_province_code text, new_commune_code text, mapping_method text, mapping_status text, crosswalk_version text, unit_scheme text NOT NULL, record_era text, flag_old_code_after_merger boolean NOT NULL DEFAULT false, record_hash text NOT NULL, batch_id text NOT NULL, valid_from timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (dossier_code)
);
CREATE INDEX IF NOT EXISTS dossiers_new_unit ON core.dossiers (new_commune_code);
CREATE INDEX IF NOT EXISTS dossiers_old_unit ON core.dossiers (old_commune_code);
CREATE TABLE IF NOT EXISTS history.dossiers (
    history_id bigserial PRIMARY KEY,
    dossier_code text, procedure_code text, procedure_name text, applicant_name text, applicant_citizen_id text, old_commune_code text, address_detail text, received_date date, due_date date, completed_date date, status text, updated_at timestamp, source_id text NOT NULL, source_key text NOT NULL, old_province_code text, old_district_code text, new_province_code text, new_commune_code text, mapping_method text, mapping_status text, crosswalk_version text, unit_scheme text NOT NULL, record_era text, flag_old_code_after_merger boolean NOT NULL, record_hash text NOT NULL, batch_id text NOT NULL, valid_from timestamptz NOT NULL,
    valid_to timestamptz NOT NULL,
    change text NOT NULL
);
CREATE INDEX IF NOT EXISTS dossiers_history_key ON history.dossiers (dossier_code);
-- SECURITY DEFINER: history is written by this trigger only; the loader role cannot insert,
-- update, delete or truncate history rows itself (see ensure_roles).
CREATE OR REPLACE FUNCTION history.keep_dossiers() RETURNS trigger LANGUAGE plpgsql
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    INSERT INTO history.dossiers (dossier_code, procedure_code, procedure_name, applicant_name, applicant_citizen_id, old_commune_code, address_detail, received_date, due_date, completed_date, status, updated_at, source_id, source_key, old_province_code, old_district_code, new_province_code, new_commune_code, mapping_method, mapping_status, crosswalk_version, unit_scheme, record_era, flag_old_code_after_merger, record_hash, batch_id, valid_from, valid_to, change)
    VALUES (OLD.dossier_code, OLD.procedure_code, OLD.procedure_name, OLD.applicant_name, OLD.applicant_citizen_id, OLD.old_commune_code, OLD.address_detail, OLD.received_date, OLD.due_date, OLD.completed_date, OLD.status, OLD.updated_at, OLD.source_id, OLD.source_key, OLD.old_province_code, OLD.old_district_code, OLD.new_province_code, OLD.new_commune_code, OLD.mapping_method, OLD.mapping_status, OLD.crosswalk_version, OLD.unit_scheme, OLD.record_era, OLD.flag_old_code_after_merger, OLD.record_hash, OLD.batch_id, OLD.valid_from, now(), lower(TG_OP));
    RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS keep_history ON core.dossiers;
CREATE TRIGGER keep_history AFTER UPDATE OR DELETE ON core.dossiers
    FOR EACH ROW EXECUTE FUNCTION history.keep_dossiers();


CREATE TABLE IF NOT EXISTS core.dossier_steps (
    dossier_code text, step_no integer, step_name text, handler text, started_at timestamp, finished_at timestamp, updated_at timestamp, source_id text NOT NULL, source_key text NOT NULL, old_province_code text, old_district_code text, new_province_code text, new_commune_code text, mapping_method text, mapping_status text, crosswalk_version text, unit_scheme text NOT NULL, record_era text, flag_old_code_after_merger boolean NOT NULL DEFAULT false, record_hash text NOT NULL, batch_id text NOT NULL, valid_from timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (dossier_code, step_no)
);
CREATE TABLE IF NOT EXISTS history.dossier_steps (
    history_id bigserial PRIMARY KEY,
    dossier_code text, step_no integer, step_name text, handler text, started_at timestamp, finished_at timestamp, updated_at timestamp, source_id text NOT NULL, source_key text NOT NULL, old_province_code text, old_district_code text, new_province_code text, new_commune_code text, mapping_method text, mapping_status text, crosswalk_version text, unit_scheme text NOT NULL, record_era text, flag_old_code_after_merger boolean NOT NULL, record_hash text NOT NULL, batch_id text NOT NULL, valid_from timestamptz NOT NULL,
    valid_to timestamptz NOT NULL,
    change text NOT NULL
);
CREATE INDEX IF NOT EXISTS dossier_steps_history_key ON history.dossier_steps (dossier_code, step_no);
-- SECURITY DEFINER: history is written by this trigger only; the loader role cannot insert,
-- update, delete or truncate history rows itself (see ensure_roles).
CREATE OR REPLACE FUNCTION history.keep_dossier_steps() RETURNS trigger LANGUAGE plpgsql
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    INSERT INTO history.dossier_steps (dossier_code, step_no, step_name, handler, started_at, finished_at, updated_at, source_id, source_key, old_province_code, old_district_code, new_province_code, new_commune_code, mapping_method, mapping_status, crosswalk_version, unit_scheme, record_era, flag_old_code_after_merger, record_hash, batch_id, valid_from, valid_to, change)
    VALUES (OLD.dossier_code, OLD.step_no, OLD.step_name, OLD.handler, OLD.started_at, OLD.finished_at, OLD.updated_at, OLD.source_id, OLD.source_key, OLD.old_province_code, OLD.old_district_code, OLD.new_province_code, OLD.new_commune_code, OLD.mapping_method, OLD.mapping_status, OLD.crosswalk_version, OLD.unit_scheme, OLD.record_era, OLD.flag_old_code_after_merger, OLD.record_hash, OLD.batch_id, OLD.valid_from, now(), lower(TG_OP));
    RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS keep_history ON core.dossier_steps;
CREATE TRIGGER keep_history AFTER UPDATE OR DELETE ON core.dossier_steps
    FOR EACH ROW EXECUTE FUNCTION history.keep_dossier_steps();


CREATE TABLE IF NOT EXISTS core.residents (
    citizen_id text, full_name text, birth_date date, gender text, household_code text, relation_to_head text, old_commune_code text, address_detail text, registered_date date, updated_at timestamp, source_id text NOT NULL, source_key text NOT NULL, old_province_code text, old_district_code text, new_province_code text, new_commune_code text, mapping_method text, mapping_status text, crosswalk_version text, unit_scheme text NOT NULL, record_era text, flag_old_code_after_merger boolean NOT NULL DEFAULT false, record_hash text NOT NULL, batch_id text NOT NULL, valid_from timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (citizen_id)
);
CREATE INDEX IF NOT EXISTS residents_new_unit ON core.residents (new_commune_code);
CREATE INDEX IF NOT EXISTS residents_old_unit ON core.residents (old_commune_code);
CREATE TABLE IF NOT EXISTS history.residents (
    history_id bigserial PRIMARY KEY,
    citizen_id text, full_name text, birth_date date, gender text, household_code text, relation_to_head text, old_commune_code text, address_detail text, registered_date date, updated_at timestamp, source_id text NOT NULL, source_key text NOT NULL, old_province_code text, old_district_code text, new_province_code text, new_commune_code text, mapping_method text, mapping_status text, crosswalk_version text, unit_scheme text NOT NULL, record_era text, flag_old_code_after_merger boolean NOT NULL, record_hash text NOT NULL, batch_id text NOT NULL, valid_from timestamptz NOT NULL,
    valid_to timestamptz NOT NULL,
    change text NOT NULL
);
CREATE INDEX IF NOT EXISTS residents_history_key ON history.residents (citizen_id);
-- SECURITY DEFINER: history is written by this trigger only; the loader role cannot insert,
-- update, delete or truncate history rows itself (see ensure_roles).
CREATE OR REPLACE FUNCTION history.keep_residents() RETURNS trigger LANGUAGE plpgsql
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    INSERT INTO history.residents (citizen_id, full_name, birth_date, gender, household_code, relation_to_head, old_commune_code, address_detail, registered_date, updated_at, source_id, source_key, old_province_code, old_district_code, new_province_code, new_commune_code, mapping_method, mapping_status, crosswalk_version, unit_scheme, record_era, flag_old_code_after_merger, record_hash, batch_id, valid_from, valid_to, change)
    VALUES (OLD.citizen_id, OLD.full_name, OLD.birth_date, OLD.gender, OLD.household_code, OLD.relation_to_head, OLD.old_commune_code, OLD.address_detail, OLD.registered_date, OLD.updated_at, OLD.source_id, OLD.source_key, OLD.old_province_code, OLD.old_district_code, OLD.new_province_code, OLD.new_commune_code, OLD.mapping_method, OLD.mapping_status, OLD.crosswalk_version, OLD.unit_scheme, OLD.record_era, OLD.flag_old_code_after_merger, OLD.record_hash, OLD.batch_id, OLD.valid_from, now(), lower(TG_OP));
    RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS keep_history ON core.residents;
CREATE TRIGGER keep_history AFTER UPDATE OR DELETE ON core.residents
    FOR EACH ROW EXECUTE FUNCTION history.keep_residents();


CREATE TABLE IF NOT EXISTS core.households (
    household_code text, head_citizen_id text, old_commune_code text, address_detail text, registered_date date, updated_at timestamp, source_id text NOT NULL, source_key text NOT NULL, old_province_code text, old_district_code text, new_province_code text, new_commune_code text, mapping_method text, mapping_status text, crosswalk_version text, unit_scheme text NOT NULL, record_era text, flag_old_code_after_merger boolean NOT NULL DEFAULT false, record_hash text NOT NULL, batch_id text NOT NULL, valid_from timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (household_code)
);
CREATE INDEX IF NOT EXISTS households_new_unit ON core.households (new_commune_code);
CREATE INDEX IF NOT EXISTS households_old_unit ON core.households (old_commune_code);
CREATE TABLE IF NOT EXISTS history.households (
    history_id bigserial PRIMARY KEY,
    household_code text, head_citizen_id text, old_commune_code text, address_detail text, registered_date date, updated_at timestamp, source_id text NOT NULL, source_key text NOT NULL, old_province_code text, old_district_code text, new_province_code text, new_commune_code text, mapping_method text, mapping_status text, crosswalk_version text, unit_scheme text NOT NULL, record_era text, flag_old_code_after_merger boolean NOT NULL, record_hash text NOT NULL, batch_id text NOT NULL, valid_from timestamptz NOT NULL,
    valid_to timestamptz NOT NULL,
    change text NOT NULL
);
CREATE INDEX IF NOT EXISTS households_history_key ON history.households (household_code);
-- SECURITY DEFINER: history is written by this trigger only; the loader role cannot insert,
-- update, delete or truncate history rows itself (see ensure_roles).
CREATE OR REPLACE FUNCTION history.keep_households() RETURNS trigger LANGUAGE plpgsql
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    INSERT INTO history.households (household_code, head_citizen_id, old_commune_code, address_detail, registered_date, updated_at, source_id, source_key, old_province_code, old_district_code, new_province_code, new_commune_code, mapping_method, mapping_status, crosswalk_version, unit_scheme, record_era, flag_old_code_after_merger, record_hash, batch_id, valid_from, valid_to, change)
    VALUES (OLD.household_code, OLD.head_citizen_id, OLD.old_commune_code, OLD.address_detail, OLD.registered_date, OLD.updated_at, OLD.source_id, OLD.source_key, OLD.old_province_code, OLD.old_district_code, OLD.new_province_code, OLD.new_commune_code, OLD.mapping_method, OLD.mapping_status, OLD.crosswalk_version, OLD.unit_scheme, OLD.record_era, OLD.flag_old_code_after_merger, OLD.record_hash, OLD.batch_id, OLD.valid_from, now(), lower(TG_OP));
    RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS keep_history ON core.households;
CREATE TRIGGER keep_history AFTER UPDATE OR DELETE ON core.households
    FOR EACH ROW EXECUTE FUNCTION history.keep_households();


CREATE TABLE IF NOT EXISTS core.accounts (
    system_code text, username text, citizen_id text, full_name text, birth_date date, unit_level text, old_commune_code text, unit_district_code text, address_detail text, roles text, status text, last_login timestamp, created_date date, updated_at timestamp, source_id text NOT NULL, source_key text NOT NULL, old_province_code text, old_district_code text, new_province_code text, new_commune_code text, mapping_method text, mapping_status text, crosswalk_version text, unit_scheme text NOT NULL, record_era text, flag_old_code_after_merger boolean NOT NULL DEFAULT false, record_hash text NOT NULL, batch_id text NOT NULL, valid_from timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (system_code, username)
);
CREATE INDEX IF NOT EXISTS accounts_new_unit ON core.accounts (new_commune_code);
CREATE INDEX IF NOT EXISTS accounts_old_unit ON core.accounts (old_commune_code);
CREATE TABLE IF NOT EXISTS history.accounts (
    history_id bigserial PRIMARY KEY,
    system_code text, username text, citizen_id text, full_name text, birth_date date, unit_level text, old_commune_code text, unit_district_code text, address_detail text, roles text, status text, last_login timestamp, created_date date, updated_at timestamp, source_id text NOT NULL, source_key text NOT NULL, old_province_code text, old_district_code text, new_province_code text, new_commune_code text, mapping_method text, mapping_status text, crosswalk_version text, unit_scheme text NOT NULL, record_era text, flag_old_code_after_merger boolean NOT NULL, record_hash text NOT NULL, batch_id text NOT NULL, valid_from timestamptz NOT NULL,
    valid_to timestamptz NOT NULL,
    change text NOT NULL
);
CREATE INDEX IF NOT EXISTS accounts_history_key ON history.accounts (system_code, username);
-- SECURITY DEFINER: history is written by this trigger only; the loader role cannot insert,
-- update, delete or truncate history rows itself (see ensure_roles).
CREATE OR REPLACE FUNCTION history.keep_accounts() RETURNS trigger LANGUAGE plpgsql
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    INSERT INTO history.accounts (system_code, username, citizen_id, full_name, birth_date, unit_level, old_commune_code, unit_district_code, address_detail, roles, status, last_login, created_date, updated_at, source_id, source_key, old_province_code, old_district_code, new_province_code, new_commune_code, mapping_method, mapping_status, crosswalk_version, unit_scheme, record_era, flag_old_code_after_merger, record_hash, batch_id, valid_from, valid_to, change)
    VALUES (OLD.system_code, OLD.username, OLD.citizen_id, OLD.full_name, OLD.birth_date, OLD.unit_level, OLD.old_commune_code, OLD.unit_district_code, OLD.address_detail, OLD.roles, OLD.status, OLD.last_login, OLD.created_date, OLD.updated_at, OLD.source_id, OLD.source_key, OLD.old_province_code, OLD.old_district_code, OLD.new_province_code, OLD.new_commune_code, OLD.mapping_method, OLD.mapping_status, OLD.crosswalk_version, OLD.unit_scheme, OLD.record_era, OLD.flag_old_code_after_merger, OLD.record_hash, OLD.batch_id, OLD.valid_from, now(), lower(TG_OP));
    RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS keep_history ON core.accounts;
CREATE TRIGGER keep_history AFTER UPDATE OR DELETE ON core.accounts
    FOR EACH ROW EXECUTE FUNCTION history.keep_accounts();


CREATE TABLE IF NOT EXISTS core.mail_directory (
    address text, owner_full_name text, owner_citizen_id text, owner_birth_date date, unit_level text, old_commune_code text, unit_district_code text, address_detail text, aliases text, created_date date, updated_at timestamp, source_id text NOT NULL, source_key text NOT NULL, old_province_code text, old_district_code text, new_province_code text, new_commune_code text, mapping_method text, mapping_status text, crosswalk_version text, unit_scheme text NOT NULL, record_era text, flag_old_code_after_merger boolean NOT NULL DEFAULT false, record_hash text NOT NULL, batch_id text NOT NULL, valid_from timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (address)
);
CREATE INDEX IF NOT EXISTS mail_directory_new_unit ON core.mail_directory (new_commune_code);
CREATE INDEX IF NOT EXISTS mail_directory_old_unit ON core.mail_directory (old_commune_code);
CREATE TABLE IF NOT EXISTS history.mail_directory (
    history_id bigserial PRIMARY KEY,
    address text, owner_full_name text, owner_citizen_id text, owner_birth_date date, unit_level text, old_commune_code text, unit_district_code text, address_detail text, aliases text, created_date date, updated_at timestamp, source_id text NOT NULL, source_key text NOT NULL, old_province_code text, old_district_code text, new_province_code text, new_commune_code text, mapping_method text, mapping_status text, crosswalk_version text, unit_scheme text NOT NULL, record_era text, flag_old_code_after_merger boolean NOT NULL, record_hash text NOT NULL, batch_id text NOT NULL, valid_from timestamptz NOT NULL,
    valid_to timestamptz NOT NULL,
    change text NOT NULL
);
CREATE INDEX IF NOT EXISTS mail_directory_history_key ON history.mail_directory (address);
-- SECURITY DEFINER: history is written by this trigger only; the loader role cannot insert,
-- update, delete or truncate history rows itself (see ensure_roles).
CREATE OR REPLACE FUNCTION history.keep_mail_directory() RETURNS trigger LANGUAGE plpgsql
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    INSERT INTO history.mail_directory (address, owner_full_name, owner_citizen_id, owner_birth_date, unit_level, old_commune_code, unit_district_code, address_detail, aliases, created_date, updated_at, source_id, source_key, old_province_code, old_district_code, new_province_code, new_commune_code, mapping_method, mapping_status, crosswalk_version, unit_scheme, record_era, flag_old_code_after_merger, record_hash, batch_id, valid_from, valid_to, change)
    VALUES (OLD.address, OLD.owner_full_name, OLD.owner_citizen_id, OLD.owner_birth_date, OLD.unit_level, OLD.old_commune_code, OLD.unit_district_code, OLD.address_detail, OLD.aliases, OLD.created_date, OLD.updated_at, OLD.source_id, OLD.source_key, OLD.old_province_code, OLD.old_district_code, OLD.new_province_code, OLD.new_commune_code, OLD.mapping_method, OLD.mapping_status, OLD.crosswalk_version, OLD.unit_scheme, OLD.record_era, OLD.flag_old_code_after_merger, OLD.record_hash, OLD.batch_id, OLD.valid_from, now(), lower(TG_OP));
    RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS keep_history ON core.mail_directory;
CREATE TRIGGER keep_history AFTER UPDATE OR DELETE ON core.mail_directory
    FOR EACH ROW EXECUTE FUNCTION history.keep_mail_directory();


CREATE OR REPLACE FUNCTION core.fold_vi(name text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE RETURNS NULL ON NULL INPUT
    AS $$ SELECT translate(lower(normalize(name, NFC)), 'àáảãạăằắẳẵặâầấẩẫậèéẻẽẹêềếểễệìíỉĩịòóỏõọôồốổỗộơờớởỡợùúủũụưừứửữựỳýỷỹỵđ', 'aaaaaaaaaaaaaaaaaeeeeeeeeeeeiiiiiooooooooooooooooouuuuuuuuuuuyyyyyd') $$;
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


CREATE OR REPLACE FUNCTION core.find_dossiers_by_old_unit(code text, as_of date DEFAULT current_date)
    RETURNS SETOF core.dossiers LANGUAGE sql STABLE AS $$
    SELECT * FROM (
        SELECT dossier_code, procedure_code, procedure_name, applicant_name, applicant_citizen_id, old_commune_code, address_detail, received_date, due_date, completed_date, status, updated_at, source_id, source_key, old_province_code, old_district_code, new_province_code, new_commune_code, mapping_method, mapping_status, crosswalk_version, unit_scheme, record_era, flag_old_code_after_merger, record_hash, batch_id, valid_from FROM core.dossiers WHERE valid_from < (as_of + 1)
        UNION ALL
        SELECT dossier_code, procedure_code, procedure_name, applicant_name, applicant_citizen_id, old_commune_code, address_detail, received_date, due_date, completed_date, status, updated_at, source_id, source_key, old_province_code, old_district_code, new_province_code, new_commune_code, mapping_method, mapping_status, crosswalk_version, unit_scheme, record_era, flag_old_code_after_merger, record_hash, batch_id, valid_from FROM history.dossiers WHERE valid_from < (as_of + 1) AND valid_to >= (as_of + 1)) r
    WHERE CASE length(code) WHEN 2 THEN r.old_province_code = code
                            WHEN 3 THEN r.old_district_code = code
                            ELSE r.old_commune_code = code END $$;
CREATE OR REPLACE FUNCTION core.find_dossiers_by_new_unit(code text, as_of date DEFAULT current_date)
    RETURNS SETOF core.dossiers LANGUAGE sql STABLE AS $$
    SELECT * FROM (
        SELECT dossier_code, procedure_code, procedure_name, applicant_name, applicant_citizen_id, old_commune_code, address_detail, received_date, due_date, completed_date, status, updated_at, source_id, source_key, old_province_code, old_district_code, new_province_code, new_commune_code, mapping_method, mapping_status, crosswalk_version, unit_scheme, record_era, flag_old_code_after_merger, record_hash, batch_id, valid_from FROM core.dossiers WHERE valid_from < (as_of + 1)
        UNION ALL
        SELECT dossier_code, procedure_code, procedure_name, applicant_name, applicant_citizen_id, old_commune_code, address_detail, received_date, due_date, completed_date, status, updated_at, source_id, source_key, old_province_code, old_district_code, new_province_code, new_commune_code, mapping_method, mapping_status, crosswalk_version, unit_scheme, record_era, flag_old_code_after_merger, record_hash, batch_id, valid_from FROM history.dossiers WHERE valid_from < (as_of + 1) AND valid_to >= (as_of + 1)) r
    WHERE CASE length(code) WHEN 2 THEN r.new_province_code = code ELSE r.new_commune_code = code END $$;
CREATE OR REPLACE FUNCTION core.find_dossiers_by_old_unit_name(name text, as_of date DEFAULT current_date)
    RETURNS SETOF core.dossiers LANGUAGE sql STABLE AS $$
    SELECT r.* FROM (
        SELECT dossier_code, procedure_code, procedure_name, applicant_name, applicant_citizen_id, old_commune_code, address_detail, received_date, due_date, completed_date, status, updated_at, source_id, source_key, old_province_code, old_district_code, new_province_code, new_commune_code, mapping_method, mapping_status, crosswalk_version, unit_scheme, record_era, flag_old_code_after_merger, record_hash, batch_id, valid_from FROM core.dossiers WHERE valid_from < (as_of + 1)
        UNION ALL
        SELECT dossier_code, procedure_code, procedure_name, applicant_name, applicant_citizen_id, old_commune_code, address_detail, received_date, due_date, completed_date, status, updated_at, source_id, source_key, old_province_code, old_district_code, new_province_code, new_commune_code, mapping_method, mapping_status, crosswalk_version, unit_scheme, record_era, flag_old_code_after_merger, record_hash, batch_id, valid_from FROM history.dossiers WHERE valid_from < (as_of + 1) AND valid_to >= (as_of + 1)) r
    WHERE r.old_commune_code IN (SELECT code FROM core.find_units_by_name(name, 'old') WHERE level = 'commune')
       OR r.old_district_code IN (SELECT code FROM core.find_units_by_name(name, 'old') WHERE level = 'district') $$;


CREATE OR REPLACE FUNCTION core.find_residents_by_old_unit(code text, as_of date DEFAULT current_date)
    RETURNS SETOF core.residents LANGUAGE sql STABLE AS $$
    SELECT * FROM (
        SELECT citizen_id, full_name, birth_date, gender, household_code, relation_to_head, old_commune_code, address_detail, registered_date, updated_at, source_id, source_key, old_province_code, old_district_code, new_province_code, new_commune_code, mapping_method, mapping_status, crosswalk_version, unit_scheme, record_era, flag_old_code_after_merger, record_hash, batch_id, valid_from FROM core.residents WHERE valid_from < (as_of + 1)
        UNION ALL
        SELECT citizen_id, full_name, birth_date, gender, household_code, relation_to_head, old_commune_code, address_detail, registered_date, updated_at, source_id, source_key, old_province_code, old_district_code, new_province_code, new_commune_code, mapping_method, mapping_status, crosswalk_version, unit_scheme, record_era, flag_old_code_after_merger, record_hash, batch_id, valid_from FROM history.residents WHERE valid_from < (as_of + 1) AND valid_to >= (as_of + 1)) r
    WHERE CASE length(code) WHEN 2 THEN r.old_province_code = code
                            WHEN 3 THEN r.old_district_code = code
                            ELSE r.old_commune_code = code END $$;
CREATE OR REPLACE FUNCTION core.find_residents_by_new_unit(code text, as_of date DEFAULT current_date)
    RETURNS SETOF core.residents LANGUAGE sql STABLE AS $$
    SELECT * FROM (
        SELECT citizen_id, full_name, birth_date, gender, household_code, relation_to_head, old_commune_code, address_detail, registered_date, updated_at, source_id, source_key, old_province_code, old_district_code, new_province_code, new_commune_code, mapping_method, mapping_status, crosswalk_version, unit_scheme, record_era, flag_old_code_after_merger, record_hash, batch_id, valid_from FROM core.residents WHERE valid_from < (as_of + 1)
        UNION ALL
        SELECT citizen_id, full_name, birth_date, gender, household_code, relation_to_head, old_commune_code, address_detail, registered_date, updated_at, source_id, source_key, old_province_code, old_district_code, new_province_code, new_commune_code, mapping_method, mapping_status, crosswalk_version, unit_scheme, record_era, flag_old_code_after_merger, record_hash, batch_id, valid_from FROM history.residents WHERE valid_from < (as_of + 1) AND valid_to >= (as_of + 1)) r
    WHERE CASE length(code) WHEN 2 THEN r.new_province_code = code ELSE r.new_commune_code = code END $$;
CREATE OR REPLACE FUNCTION core.find_residents_by_old_unit_name(name text, as_of date DEFAULT current_date)
    RETURNS SETOF core.residents LANGUAGE sql STABLE AS $$
    SELECT r.* FROM (
        SELECT citizen_id, full_name, birth_date, gender, household_code, relation_to_head, old_commune_code, address_detail, registered_date, updated_at, source_id, source_key, old_province_code, old_district_code, new_province_code, new_commune_code, mapping_method, mapping_status, crosswalk_version, unit_scheme, record_era, flag_old_code_after_merger, record_hash, batch_id, valid_from FROM core.residents WHERE valid_from < (as_of + 1)
        UNION ALL
        SELECT citizen_id, full_name, birth_date, gender, household_code, relation_to_head, old_commune_code, address_detail, registered_date, updated_at, source_id, source_key, old_province_code, old_district_code, new_province_code, new_commune_code, mapping_method, mapping_status, crosswalk_version, unit_scheme, record_era, flag_old_code_after_merger, record_hash, batch_id, valid_from FROM history.residents WHERE valid_from < (as_of + 1) AND valid_to >= (as_of + 1)) r
    WHERE r.old_commune_code IN (SELECT code FROM core.find_units_by_name(name, 'old') WHERE level = 'commune')
       OR r.old_district_code IN (SELECT code FROM core.find_units_by_name(name, 'old') WHERE level = 'district') $$;


CREATE OR REPLACE FUNCTION core.find_households_by_old_unit(code text, as_of date DEFAULT current_date)
    RETURNS SETOF core.households LANGUAGE sql STABLE AS $$
    SELECT * FROM (
        SELECT household_code, head_citizen_id, old_commune_code, address_detail, registered_date, updated_at, source_id, source_key, old_province_code, old_district_code, new_province_code, new_commune_code, mapping_method, mapping_status, crosswalk_version, unit_scheme, record_era, flag_old_code_after_merger, record_hash, batch_id, valid_from FROM core.households WHERE valid_from < (as_of + 1)
        UNION ALL
        SELECT household_code, head_citizen_id, old_commune_code, address_detail, registered_date, updated_at, source_id, source_key, old_province_code, old_district_code, new_province_code, new_commune_code, mapping_method, mapping_status, crosswalk_version, unit_scheme, record_era, flag_old_code_after_merger, record_hash, batch_id, valid_from FROM history.households WHERE valid_from < (as_of + 1) AND valid_to >= (as_of + 1)) r
    WHERE CASE length(code) WHEN 2 THEN r.old_province_code = code
                            WHEN 3 THEN r.old_district_code = code
                            ELSE r.old_commune_code = code END $$;
CREATE OR REPLACE FUNCTION core.find_households_by_new_unit(code text, as_of date DEFAULT current_date)
    RETURNS SETOF core.households LANGUAGE sql STABLE AS $$
    SELECT * FROM (
        SELECT household_code, head_citizen_id, old_commune_code, address_detail, registered_date, updated_at, source_id, source_key, old_province_code, old_district_code, new_province_code, new_commune_code, mapping_method, mapping_status, crosswalk_version, unit_scheme, record_era, flag_old_code_after_merger, record_hash, batch_id, valid_from FROM core.households WHERE valid_from < (as_of + 1)
        UNION ALL
        SELECT household_code, head_citizen_id, old_commune_code, address_detail, registered_date, updated_at, source_id, source_key, old_province_code, old_district_code, new_province_code, new_commune_code, mapping_method, mapping_status, crosswalk_version, unit_scheme, record_era, flag_old_code_after_merger, record_hash, batch_id, valid_from FROM history.households WHERE valid_from < (as_of + 1) AND valid_to >= (as_of + 1)) r
    WHERE CASE length(code) WHEN 2 THEN r.new_province_code = code ELSE r.new_commune_code = code END $$;
CREATE OR REPLACE FUNCTION core.find_households_by_old_unit_name(name text, as_of date DEFAULT current_date)
    RETURNS SETOF core.households LANGUAGE sql STABLE AS $$
    SELECT r.* FROM (
        SELECT household_code, head_citizen_id, old_commune_code, address_detail, registered_date, updated_at, source_id, source_key, old_province_code, old_district_code, new_province_code, new_commune_code, mapping_method, mapping_status, crosswalk_version, unit_scheme, record_era, flag_old_code_after_merger, record_hash, batch_id, valid_from FROM core.households WHERE valid_from < (as_of + 1)
        UNION ALL
        SELECT household_code, head_citizen_id, old_commune_code, address_detail, registered_date, updated_at, source_id, source_key, old_province_code, old_district_code, new_province_code, new_commune_code, mapping_method, mapping_status, crosswalk_version, unit_scheme, record_era, flag_old_code_after_merger, record_hash, batch_id, valid_from FROM history.households WHERE valid_from < (as_of + 1) AND valid_to >= (as_of + 1)) r
    WHERE r.old_commune_code IN (SELECT code FROM core.find_units_by_name(name, 'old') WHERE level = 'commune')
       OR r.old_district_code IN (SELECT code FROM core.find_units_by_name(name, 'old') WHERE level = 'district') $$;


CREATE OR REPLACE FUNCTION core.find_accounts_by_old_unit(code text, as_of date DEFAULT current_date)
    RETURNS SETOF core.accounts LANGUAGE sql STABLE AS $$
    SELECT * FROM (
        SELECT system_code, username, citizen_id, full_name, birth_date, unit_level, old_commune_code, unit_district_code, address_detail, roles, status, last_login, created_date, updated_at, source_id, source_key, old_province_code, old_district_code, new_province_code, new_commune_code, mapping_method, mapping_status, crosswalk_version, unit_scheme, record_era, flag_old_code_after_merger, record_hash, batch_id, valid_from FROM core.accounts WHERE valid_from < (as_of + 1)
        UNION ALL
        SELECT system_code, username, citizen_id, full_name, birth_date, unit_level, old_commune_code, unit_district_code, address_detail, roles, status, last_login, created_date, updated_at, source_id, source_key, old_province_code, old_district_code, new_province_code, new_commune_code, mapping_method, mapping_status, crosswalk_version, unit_scheme, record_era, flag_old_code_after_merger, record_hash, batch_id, valid_from FROM history.accounts WHERE valid_from < (as_of + 1) AND valid_to >= (as_of + 1)) r
    WHERE CASE length(code) WHEN 2 THEN r.old_province_code = code
                            WHEN 3 THEN r.old_district_code = code
                            ELSE r.old_commune_code = code END $$;
CREATE OR REPLACE FUNCTION core.find_accounts_by_new_unit(code text, as_of date DEFAULT current_date)
    RETURNS SETOF core.accounts LANGUAGE sql STABLE AS $$
    SELECT * FROM (
        SELECT system_code, username, citizen_id, full_name, birth_date, unit_level, old_commune_code, unit_district_code, address_detail, roles, status, last_login, created_date, updated_at, source_id, source_key, old_province_code, old_district_code, new_province_code, new_commune_code, mapping_method, mapping_status, crosswalk_version, unit_scheme, record_era, flag_old_code_after_merger, record_hash, batch_id, valid_from FROM core.accounts WHERE valid_from < (as_of + 1)
        UNION ALL
        SELECT system_code, username, citizen_id, full_name, birth_date, unit_level, old_commune_code, unit_district_code, address_detail, roles, status, last_login, created_date, updated_at, source_id, source_key, old_province_code, old_district_code, new_province_code, new_commune_code, mapping_method, mapping_status, crosswalk_version, unit_scheme, record_era, flag_old_code_after_merger, record_hash, batch_id, valid_from FROM history.accounts WHERE valid_from < (as_of + 1) AND valid_to >= (as_of + 1)) r
    WHERE CASE length(code) WHEN 2 THEN r.new_province_code = code ELSE r.new_commune_code = code END $$;
CREATE OR REPLACE FUNCTION core.find_accounts_by_old_unit_name(name text, as_of date DEFAULT current_date)
    RETURNS SETOF core.accounts LANGUAGE sql STABLE AS $$
    SELECT r.* FROM (
        SELECT system_code, username, citizen_id, full_name, birth_date, unit_level, old_commune_code, unit_district_code, address_detail, roles, status, last_login, created_date, updated_at, source_id, source_key, old_province_code, old_district_code, new_province_code, new_commune_code, mapping_method, mapping_status, crosswalk_version, unit_scheme, record_era, flag_old_code_after_merger, record_hash, batch_id, valid_from FROM core.accounts WHERE valid_from < (as_of + 1)
        UNION ALL
        SELECT system_code, username, citizen_id, full_name, birth_date, unit_level, old_commune_code, unit_district_code, address_detail, roles, status, last_login, created_date, updated_at, source_id, source_key, old_province_code, old_district_code, new_province_code, new_commune_code, mapping_method, mapping_status, crosswalk_version, unit_scheme, record_era, flag_old_code_after_merger, record_hash, batch_id, valid_from FROM history.accounts WHERE valid_from < (as_of + 1) AND valid_to >= (as_of + 1)) r
    WHERE r.old_commune_code IN (SELECT code FROM core.find_units_by_name(name, 'old') WHERE level = 'commune')
       OR r.old_district_code IN (SELECT code FROM core.find_units_by_name(name, 'old') WHERE level = 'district') $$;


CREATE OR REPLACE FUNCTION core.find_mail_directory_by_old_unit(code text, as_of date DEFAULT current_date)
    RETURNS SETOF core.mail_directory LANGUAGE sql STABLE AS $$
    SELECT * FROM (
        SELECT address, owner_full_name, owner_citizen_id, owner_birth_date, unit_level, old_commune_code, unit_district_code, address_detail, aliases, created_date, updated_at, source_id, source_key, old_province_code, old_district_code, new_province_code, new_commune_code, mapping_method, mapping_status, crosswalk_version, unit_scheme, record_era, flag_old_code_after_merger, record_hash, batch_id, valid_from FROM core.mail_directory WHERE valid_from < (as_of + 1)
        UNION ALL
        SELECT address, owner_full_name, owner_citizen_id, owner_birth_date, unit_level, old_commune_code, unit_district_code, address_detail, aliases, created_date, updated_at, source_id, source_key, old_province_code, old_district_code, new_province_code, new_commune_code, mapping_method, mapping_status, crosswalk_version, unit_scheme, record_era, flag_old_code_after_merger, record_hash, batch_id, valid_from FROM history.mail_directory WHERE valid_from < (as_of + 1) AND valid_to >= (as_of + 1)) r
    WHERE CASE length(code) WHEN 2 THEN r.old_province_code = code
                            WHEN 3 THEN r.old_district_code = code
                            ELSE r.old_commune_code = code END $$;
CREATE OR REPLACE FUNCTION core.find_mail_directory_by_new_unit(code text, as_of date DEFAULT current_date)
    RETURNS SETOF core.mail_directory LANGUAGE sql STABLE AS $$
    SELECT * FROM (
        SELECT address, owner_full_name, owner_citizen_id, owner_birth_date, unit_level, old_commune_code, unit_district_code, address_detail, aliases, created_date, updated_at, source_id, source_key, old_province_code, old_district_code, new_province_code, new_commune_code, mapping_method, mapping_status, crosswalk_version, unit_scheme, record_era, flag_old_code_after_merger, record_hash, batch_id, valid_from FROM core.mail_directory WHERE valid_from < (as_of + 1)
        UNION ALL
        SELECT address, owner_full_name, owner_citizen_id, owner_birth_date, unit_level, old_commune_code, unit_district_code, address_detail, aliases, created_date, updated_at, source_id, source_key, old_province_code, old_district_code, new_province_code, new_commune_code, mapping_method, mapping_status, crosswalk_version, unit_scheme, record_era, flag_old_code_after_merger, record_hash, batch_id, valid_from FROM history.mail_directory WHERE valid_from < (as_of + 1) AND valid_to >= (as_of + 1)) r
    WHERE CASE length(code) WHEN 2 THEN r.new_province_code = code ELSE r.new_commune_code = code END $$;
CREATE OR REPLACE FUNCTION core.find_mail_directory_by_old_unit_name(name text, as_of date DEFAULT current_date)
    RETURNS SETOF core.mail_directory LANGUAGE sql STABLE AS $$
    SELECT r.* FROM (
        SELECT address, owner_full_name, owner_citizen_id, owner_birth_date, unit_level, old_commune_code, unit_district_code, address_detail, aliases, created_date, updated_at, source_id, source_key, old_province_code, old_district_code, new_province_code, new_commune_code, mapping_method, mapping_status, crosswalk_version, unit_scheme, record_era, flag_old_code_after_merger, record_hash, batch_id, valid_from FROM core.mail_directory WHERE valid_from < (as_of + 1)
        UNION ALL
        SELECT address, owner_full_name, owner_citizen_id, owner_birth_date, unit_level, old_commune_code, unit_district_code, address_detail, aliases, created_date, updated_at, source_id, source_key, old_province_code, old_district_code, new_province_code, new_commune_code, mapping_method, mapping_status, crosswalk_version, unit_scheme, record_era, flag_old_code_after_merger, record_hash, batch_id, valid_from FROM history.mail_directory WHERE valid_from < (as_of + 1) AND valid_to >= (as_of + 1)) r
    WHERE r.old_commune_code IN (SELECT code FROM core.find_units_by_name(name, 'old') WHERE level = 'commune')
       OR r.old_district_code IN (SELECT code FROM core.find_units_by_name(name, 'old') WHERE level = 'district') $$;

