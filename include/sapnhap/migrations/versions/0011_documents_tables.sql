-- Frozen at revision 0009_documents: the documents dataset as datasets.py described it then.

CREATE TABLE IF NOT EXISTS core.documents (
    document_code text, direction text, number_symbol text, document_type text, issuer_code text, issuer_name text, receiver_code text, receiver_name text, issued_date date, received_date date, summary text, signer text, security_level text, status text, attachment_paths text, updated_at timestamp, issuer_new_agency_code text, issuer_new_agency_name text, issuer_agency_status text, receiver_new_agency_code text, receiver_new_agency_name text, receiver_agency_status text, agency_crosswalk_version text, attachments text, source_id text NOT NULL, source_key text NOT NULL, old_province_code text, old_district_code text, new_province_code text, new_commune_code text, mapping_method text, mapping_status text, crosswalk_version text, unit_scheme text NOT NULL, record_era text, flag_old_code_after_merger boolean NOT NULL DEFAULT false, record_hash text NOT NULL, batch_id text NOT NULL, valid_from timestamptz NOT NULL DEFAULT now(), legacy_row_hash text, deleted_in_source_at timestamptz,
    PRIMARY KEY (document_code)
);
-- schema change (keys): a legacy record by (source_id, source_key), for the merge's re-keyed records
CREATE INDEX IF NOT EXISTS documents_record ON core.documents (source_id, source_key);
CREATE TABLE IF NOT EXISTS history.documents (
    history_id bigserial PRIMARY KEY,
    document_code text, direction text, number_symbol text, document_type text, issuer_code text, issuer_name text, receiver_code text, receiver_name text, issued_date date, received_date date, summary text, signer text, security_level text, status text, attachment_paths text, updated_at timestamp, issuer_new_agency_code text, issuer_new_agency_name text, issuer_agency_status text, receiver_new_agency_code text, receiver_new_agency_name text, receiver_agency_status text, agency_crosswalk_version text, attachments text, source_id text NOT NULL, source_key text NOT NULL, old_province_code text, old_district_code text, new_province_code text, new_commune_code text, mapping_method text, mapping_status text, crosswalk_version text, unit_scheme text NOT NULL, record_era text, flag_old_code_after_merger boolean NOT NULL, record_hash text NOT NULL, batch_id text NOT NULL, valid_from timestamptz NOT NULL, legacy_row_hash text, deleted_in_source_at timestamptz,
    valid_to timestamptz NOT NULL,
    change text NOT NULL
);
ALTER TABLE core.documents ADD COLUMN IF NOT EXISTS legacy_row_hash text;
ALTER TABLE core.documents ADD COLUMN IF NOT EXISTS deleted_in_source_at timestamptz;
ALTER TABLE history.documents ADD COLUMN IF NOT EXISTS legacy_row_hash text;
ALTER TABLE history.documents ADD COLUMN IF NOT EXISTS deleted_in_source_at timestamptz;
CREATE INDEX IF NOT EXISTS documents_source_key ON core.documents (source_id, source_key);
CREATE INDEX IF NOT EXISTS documents_history_key ON history.documents (document_code);
-- SECURITY DEFINER: history is written by this trigger only; the loader role cannot insert,
-- update, delete or truncate history rows itself (see ensure_roles).
CREATE OR REPLACE FUNCTION history.keep_documents() RETURNS trigger LANGUAGE plpgsql
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    INSERT INTO history.documents (document_code, direction, number_symbol, document_type, issuer_code, issuer_name, receiver_code, receiver_name, issued_date, received_date, summary, signer, security_level, status, attachment_paths, updated_at, issuer_new_agency_code, issuer_new_agency_name, issuer_agency_status, receiver_new_agency_code, receiver_new_agency_name, receiver_agency_status, agency_crosswalk_version, attachments, source_id, source_key, old_province_code, old_district_code, new_province_code, new_commune_code, mapping_method, mapping_status, crosswalk_version, unit_scheme, record_era, flag_old_code_after_merger, record_hash, batch_id, valid_from, legacy_row_hash, deleted_in_source_at, valid_to, change)
    VALUES (OLD.document_code, OLD.direction, OLD.number_symbol, OLD.document_type, OLD.issuer_code, OLD.issuer_name, OLD.receiver_code, OLD.receiver_name, OLD.issued_date, OLD.received_date, OLD.summary, OLD.signer, OLD.security_level, OLD.status, OLD.attachment_paths, OLD.updated_at, OLD.issuer_new_agency_code, OLD.issuer_new_agency_name, OLD.issuer_agency_status, OLD.receiver_new_agency_code, OLD.receiver_new_agency_name, OLD.receiver_agency_status, OLD.agency_crosswalk_version, OLD.attachments, OLD.source_id, OLD.source_key, OLD.old_province_code, OLD.old_district_code, OLD.new_province_code, OLD.new_commune_code, OLD.mapping_method, OLD.mapping_status, OLD.crosswalk_version, OLD.unit_scheme, OLD.record_era, OLD.flag_old_code_after_merger, OLD.record_hash, OLD.batch_id, OLD.valid_from, OLD.legacy_row_hash, OLD.deleted_in_source_at, now(), lower(TG_OP));
    RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS keep_history ON core.documents;
CREATE TRIGGER keep_history AFTER UPDATE OR DELETE ON core.documents
    FOR EACH ROW EXECUTE FUNCTION history.keep_documents();

CREATE TABLE IF NOT EXISTS core.document_steps (
    document_code text, step_no integer, unit_code text, unit_name text, handler text, action text, acted_at timestamp, updated_at timestamp, unit_new_agency_code text, unit_new_agency_name text, unit_agency_status text, agency_crosswalk_version text, source_id text NOT NULL, source_key text NOT NULL, old_province_code text, old_district_code text, new_province_code text, new_commune_code text, mapping_method text, mapping_status text, crosswalk_version text, unit_scheme text NOT NULL, record_era text, flag_old_code_after_merger boolean NOT NULL DEFAULT false, record_hash text NOT NULL, batch_id text NOT NULL, valid_from timestamptz NOT NULL DEFAULT now(), legacy_row_hash text, deleted_in_source_at timestamptz,
    PRIMARY KEY (document_code, step_no)
);
-- schema change (keys): a legacy record by (source_id, source_key), for the merge's re-keyed records
CREATE INDEX IF NOT EXISTS document_steps_record ON core.document_steps (source_id, source_key);
CREATE TABLE IF NOT EXISTS history.document_steps (
    history_id bigserial PRIMARY KEY,
    document_code text, step_no integer, unit_code text, unit_name text, handler text, action text, acted_at timestamp, updated_at timestamp, unit_new_agency_code text, unit_new_agency_name text, unit_agency_status text, agency_crosswalk_version text, source_id text NOT NULL, source_key text NOT NULL, old_province_code text, old_district_code text, new_province_code text, new_commune_code text, mapping_method text, mapping_status text, crosswalk_version text, unit_scheme text NOT NULL, record_era text, flag_old_code_after_merger boolean NOT NULL, record_hash text NOT NULL, batch_id text NOT NULL, valid_from timestamptz NOT NULL, legacy_row_hash text, deleted_in_source_at timestamptz,
    valid_to timestamptz NOT NULL,
    change text NOT NULL
);
ALTER TABLE core.document_steps ADD COLUMN IF NOT EXISTS legacy_row_hash text;
ALTER TABLE core.document_steps ADD COLUMN IF NOT EXISTS deleted_in_source_at timestamptz;
ALTER TABLE history.document_steps ADD COLUMN IF NOT EXISTS legacy_row_hash text;
ALTER TABLE history.document_steps ADD COLUMN IF NOT EXISTS deleted_in_source_at timestamptz;
CREATE INDEX IF NOT EXISTS document_steps_source_key ON core.document_steps (source_id, source_key);
CREATE INDEX IF NOT EXISTS document_steps_history_key ON history.document_steps (document_code, step_no);
-- SECURITY DEFINER: history is written by this trigger only; the loader role cannot insert,
-- update, delete or truncate history rows itself (see ensure_roles).
CREATE OR REPLACE FUNCTION history.keep_document_steps() RETURNS trigger LANGUAGE plpgsql
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    INSERT INTO history.document_steps (document_code, step_no, unit_code, unit_name, handler, action, acted_at, updated_at, unit_new_agency_code, unit_new_agency_name, unit_agency_status, agency_crosswalk_version, source_id, source_key, old_province_code, old_district_code, new_province_code, new_commune_code, mapping_method, mapping_status, crosswalk_version, unit_scheme, record_era, flag_old_code_after_merger, record_hash, batch_id, valid_from, legacy_row_hash, deleted_in_source_at, valid_to, change)
    VALUES (OLD.document_code, OLD.step_no, OLD.unit_code, OLD.unit_name, OLD.handler, OLD.action, OLD.acted_at, OLD.updated_at, OLD.unit_new_agency_code, OLD.unit_new_agency_name, OLD.unit_agency_status, OLD.agency_crosswalk_version, OLD.source_id, OLD.source_key, OLD.old_province_code, OLD.old_district_code, OLD.new_province_code, OLD.new_commune_code, OLD.mapping_method, OLD.mapping_status, OLD.crosswalk_version, OLD.unit_scheme, OLD.record_era, OLD.flag_old_code_after_merger, OLD.record_hash, OLD.batch_id, OLD.valid_from, OLD.legacy_row_hash, OLD.deleted_in_source_at, now(), lower(TG_OP));
    RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS keep_history ON core.document_steps;
CREATE TRIGGER keep_history AFTER UPDATE OR DELETE ON core.document_steps
    FOR EACH ROW EXECUTE FUNCTION history.keep_document_steps();

CREATE OR REPLACE FUNCTION core.find_documents_by_old_agency(code text, as_of date DEFAULT current_date)
    RETURNS SETOF core.documents LANGUAGE sql STABLE AS $$
    SELECT * FROM (
        SELECT document_code, direction, number_symbol, document_type, issuer_code, issuer_name, receiver_code, receiver_name, issued_date, received_date, summary, signer, security_level, status, attachment_paths, updated_at, issuer_new_agency_code, issuer_new_agency_name, issuer_agency_status, receiver_new_agency_code, receiver_new_agency_name, receiver_agency_status, agency_crosswalk_version, attachments, source_id, source_key, old_province_code, old_district_code, new_province_code, new_commune_code, mapping_method, mapping_status, crosswalk_version, unit_scheme, record_era, flag_old_code_after_merger, record_hash, batch_id, valid_from, legacy_row_hash, deleted_in_source_at FROM core.documents WHERE valid_from < (as_of + 1)
        UNION ALL
        SELECT document_code, direction, number_symbol, document_type, issuer_code, issuer_name, receiver_code, receiver_name, issued_date, received_date, summary, signer, security_level, status, attachment_paths, updated_at, issuer_new_agency_code, issuer_new_agency_name, issuer_agency_status, receiver_new_agency_code, receiver_new_agency_name, receiver_agency_status, agency_crosswalk_version, attachments, source_id, source_key, old_province_code, old_district_code, new_province_code, new_commune_code, mapping_method, mapping_status, crosswalk_version, unit_scheme, record_era, flag_old_code_after_merger, record_hash, batch_id, valid_from, legacy_row_hash, deleted_in_source_at FROM history.documents WHERE valid_from < (as_of + 1) AND valid_to >= (as_of + 1)) r
    WHERE r.issuer_code = code OR r.receiver_code = code $$;
CREATE OR REPLACE FUNCTION core.find_documents_by_new_agency(code text, as_of date DEFAULT current_date)
    RETURNS SETOF core.documents LANGUAGE sql STABLE AS $$
    SELECT * FROM (
        SELECT document_code, direction, number_symbol, document_type, issuer_code, issuer_name, receiver_code, receiver_name, issued_date, received_date, summary, signer, security_level, status, attachment_paths, updated_at, issuer_new_agency_code, issuer_new_agency_name, issuer_agency_status, receiver_new_agency_code, receiver_new_agency_name, receiver_agency_status, agency_crosswalk_version, attachments, source_id, source_key, old_province_code, old_district_code, new_province_code, new_commune_code, mapping_method, mapping_status, crosswalk_version, unit_scheme, record_era, flag_old_code_after_merger, record_hash, batch_id, valid_from, legacy_row_hash, deleted_in_source_at FROM core.documents WHERE valid_from < (as_of + 1)
        UNION ALL
        SELECT document_code, direction, number_symbol, document_type, issuer_code, issuer_name, receiver_code, receiver_name, issued_date, received_date, summary, signer, security_level, status, attachment_paths, updated_at, issuer_new_agency_code, issuer_new_agency_name, issuer_agency_status, receiver_new_agency_code, receiver_new_agency_name, receiver_agency_status, agency_crosswalk_version, attachments, source_id, source_key, old_province_code, old_district_code, new_province_code, new_commune_code, mapping_method, mapping_status, crosswalk_version, unit_scheme, record_era, flag_old_code_after_merger, record_hash, batch_id, valid_from, legacy_row_hash, deleted_in_source_at FROM history.documents WHERE valid_from < (as_of + 1) AND valid_to >= (as_of + 1)) r
    WHERE r.issuer_new_agency_code = code OR r.receiver_new_agency_code = code $$;
CREATE OR REPLACE FUNCTION core.find_document_steps(code text, as_of date DEFAULT current_date)
    RETURNS SETOF core.document_steps LANGUAGE sql STABLE AS $$
    SELECT * FROM (
        SELECT document_code, step_no, unit_code, unit_name, handler, action, acted_at, updated_at, unit_new_agency_code, unit_new_agency_name, unit_agency_status, agency_crosswalk_version, source_id, source_key, old_province_code, old_district_code, new_province_code, new_commune_code, mapping_method, mapping_status, crosswalk_version, unit_scheme, record_era, flag_old_code_after_merger, record_hash, batch_id, valid_from, legacy_row_hash, deleted_in_source_at FROM core.document_steps WHERE valid_from < (as_of + 1)
        UNION ALL
        SELECT document_code, step_no, unit_code, unit_name, handler, action, acted_at, updated_at, unit_new_agency_code, unit_new_agency_name, unit_agency_status, agency_crosswalk_version, source_id, source_key, old_province_code, old_district_code, new_province_code, new_commune_code, mapping_method, mapping_status, crosswalk_version, unit_scheme, record_era, flag_old_code_after_merger, record_hash, batch_id, valid_from, legacy_row_hash, deleted_in_source_at FROM history.document_steps WHERE valid_from < (as_of + 1) AND valid_to >= (as_of + 1)) r
    WHERE r.document_code = code ORDER BY r.acted_at, r.step_no $$;
