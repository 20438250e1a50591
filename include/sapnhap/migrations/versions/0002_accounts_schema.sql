-- Migration 0002: schema accounts (frozen from sapnhap.accounts.platform.ACCOUNTS_DDL of release 0.1.0,
-- which the accounts DAG ran on every run). Never edit: a change is a new migration.

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
