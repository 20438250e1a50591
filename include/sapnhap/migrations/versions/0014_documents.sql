-- Frozen at revision 0010_documents: sapnhap.documents.documents_access_ddl() then.
-- Classified documents (R16): the summary only for the role cleared to read it.
CREATE OR REPLACE FUNCTION core.document_summary_cleared() RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'sapnhap_document_reader'
                   AND pg_has_role(current_user, oid, 'MEMBER')) $$;
CREATE OR REPLACE VIEW core.v_documents AS SELECT r.document_code, r.direction, r.number_symbol, r.document_type, r.issuer_code, r.issuer_name, r.receiver_code, r.receiver_name, r.issued_date, r.received_date, CASE WHEN r.security_level = 'normal' OR core.document_summary_cleared() THEN r.summary ELSE '[Trích yếu văn bản mật: chỉ người được cấp quyền đọc văn bản mật xem được]' END AS summary, r.signer, r.security_level, r.status, r.attachment_paths, r.updated_at, r.issuer_new_agency_code, r.issuer_new_agency_name, r.issuer_agency_status, r.receiver_new_agency_code, r.receiver_new_agency_name, r.receiver_agency_status, r.agency_crosswalk_version, r.attachments, r.source_id, r.source_key, r.old_province_code, r.old_district_code, r.new_province_code, r.new_commune_code, r.mapping_method, r.mapping_status, r.crosswalk_version, r.unit_scheme, r.record_era, r.flag_old_code_after_merger, r.record_hash, r.batch_id, r.valid_from, r.legacy_row_hash, r.deleted_in_source_at FROM core.documents r;
CREATE OR REPLACE VIEW history.v_documents AS
    SELECT r.document_code, r.direction, r.number_symbol, r.document_type, r.issuer_code, r.issuer_name, r.receiver_code, r.receiver_name, r.issued_date, r.received_date, CASE WHEN r.security_level = 'normal' OR core.document_summary_cleared() THEN r.summary ELSE '[Trích yếu văn bản mật: chỉ người được cấp quyền đọc văn bản mật xem được]' END AS summary, r.signer, r.security_level, r.status, r.attachment_paths, r.updated_at, r.issuer_new_agency_code, r.issuer_new_agency_name, r.issuer_agency_status, r.receiver_new_agency_code, r.receiver_new_agency_name, r.receiver_agency_status, r.agency_crosswalk_version, r.attachments, r.source_id, r.source_key, r.old_province_code, r.old_district_code, r.new_province_code, r.new_commune_code, r.mapping_method, r.mapping_status, r.crosswalk_version, r.unit_scheme, r.record_era, r.flag_old_code_after_merger, r.record_hash, r.batch_id, r.valid_from, r.legacy_row_hash, r.deleted_in_source_at, r.history_id, r.valid_to, r.change FROM history.documents r;
CREATE OR REPLACE FUNCTION core.find_documents_by_old_agency(code text, as_of date DEFAULT current_date)
    RETURNS SETOF core.documents LANGUAGE sql STABLE AS $$
    SELECT * FROM (
        SELECT document_code, direction, number_symbol, document_type, issuer_code, issuer_name, receiver_code, receiver_name, issued_date, received_date, summary, signer, security_level, status, attachment_paths, updated_at, issuer_new_agency_code, issuer_new_agency_name, issuer_agency_status, receiver_new_agency_code, receiver_new_agency_name, receiver_agency_status, agency_crosswalk_version, attachments, source_id, source_key, old_province_code, old_district_code, new_province_code, new_commune_code, mapping_method, mapping_status, crosswalk_version, unit_scheme, record_era, flag_old_code_after_merger, record_hash, batch_id, valid_from, legacy_row_hash, deleted_in_source_at FROM core.v_documents WHERE valid_from < (as_of + 1)
        UNION ALL
        SELECT document_code, direction, number_symbol, document_type, issuer_code, issuer_name, receiver_code, receiver_name, issued_date, received_date, summary, signer, security_level, status, attachment_paths, updated_at, issuer_new_agency_code, issuer_new_agency_name, issuer_agency_status, receiver_new_agency_code, receiver_new_agency_name, receiver_agency_status, agency_crosswalk_version, attachments, source_id, source_key, old_province_code, old_district_code, new_province_code, new_commune_code, mapping_method, mapping_status, crosswalk_version, unit_scheme, record_era, flag_old_code_after_merger, record_hash, batch_id, valid_from, legacy_row_hash, deleted_in_source_at FROM history.v_documents WHERE valid_from < (as_of + 1) AND valid_to >= (as_of + 1)) r
    WHERE r.issuer_code = code OR r.receiver_code = code $$;
CREATE OR REPLACE FUNCTION core.find_documents_by_new_agency(code text, as_of date DEFAULT current_date)
    RETURNS SETOF core.documents LANGUAGE sql STABLE AS $$
    SELECT * FROM (
        SELECT document_code, direction, number_symbol, document_type, issuer_code, issuer_name, receiver_code, receiver_name, issued_date, received_date, summary, signer, security_level, status, attachment_paths, updated_at, issuer_new_agency_code, issuer_new_agency_name, issuer_agency_status, receiver_new_agency_code, receiver_new_agency_name, receiver_agency_status, agency_crosswalk_version, attachments, source_id, source_key, old_province_code, old_district_code, new_province_code, new_commune_code, mapping_method, mapping_status, crosswalk_version, unit_scheme, record_era, flag_old_code_after_merger, record_hash, batch_id, valid_from, legacy_row_hash, deleted_in_source_at FROM core.v_documents WHERE valid_from < (as_of + 1)
        UNION ALL
        SELECT document_code, direction, number_symbol, document_type, issuer_code, issuer_name, receiver_code, receiver_name, issued_date, received_date, summary, signer, security_level, status, attachment_paths, updated_at, issuer_new_agency_code, issuer_new_agency_name, issuer_agency_status, receiver_new_agency_code, receiver_new_agency_name, receiver_agency_status, agency_crosswalk_version, attachments, source_id, source_key, old_province_code, old_district_code, new_province_code, new_commune_code, mapping_method, mapping_status, crosswalk_version, unit_scheme, record_era, flag_old_code_after_merger, record_hash, batch_id, valid_from, legacy_row_hash, deleted_in_source_at FROM history.v_documents WHERE valid_from < (as_of + 1) AND valid_to >= (as_of + 1)) r
    WHERE r.issuer_new_agency_code = code OR r.receiver_new_agency_code = code $$;
-- The agency crosswalk as published to the platform (one version per content), and the re-maps of
-- the loaded documents to each version.
CREATE TABLE IF NOT EXISTS registry.agency_crosswalk_versions (
    version text PRIMARY KEY,
    files jsonb NOT NULL,
    n_rows integer NOT NULL,
    published_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS registry.agency_crosswalk (
    version text NOT NULL REFERENCES registry.agency_crosswalk_versions (version),
    old_agency_code text NOT NULL,
    old_agency_name text,
    new_agency_code text NOT NULL,
    new_agency_name text,
    valid_from date NOT NULL,
    valid_to date,
    note text,
    PRIMARY KEY (version, old_agency_code, valid_from)
);
CREATE TABLE IF NOT EXISTS registry.agency_remaps (
    version text PRIMARY KEY REFERENCES registry.agency_crosswalk_versions (version),
    run_id text,
    applied_at timestamptz NOT NULL DEFAULT now(),
    documents_changed integer NOT NULL,
    steps_changed integer NOT NULL,
    impact jsonb NOT NULL
);
