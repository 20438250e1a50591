-- Migration 0003: the audit trail is append-only for the loader role. The nightly still records
-- a reconciliation or a handover record again when a task of an open run is retried; it does so
-- through these two functions, which refuse to touch the rows of a closed run. A run is open
-- until its reconcile task finishes it; the newest run stays open for its handover task, which
-- runs beside reconcile.
CREATE OR REPLACE FUNCTION ops.is_open_run(p_run_id text) RETURNS boolean
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT EXISTS (SELECT 1 FROM ops.runs WHERE run_id = p_run_id AND finished_at IS NULL)
        OR coalesce(p_run_id = (SELECT run_id FROM ops.runs ORDER BY started_at DESC, run_id DESC LIMIT 1), false) $$;

CREATE OR REPLACE FUNCTION ops.record_reconciliation(
    p_run_id text, p_batch_id text, p_source_id text, p_dataset text, p_extracted integer, p_loaded integer,
    p_quarantined integer, p_merged_duplicates integer, p_not_loaded_blocked integer, p_ok boolean
) RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    INSERT INTO ops.reconciliation (run_id, batch_id, source_id, dataset, extracted, loaded, quarantined,
                                    merged_duplicates, not_loaded_blocked, ok)
    VALUES (p_run_id, p_batch_id, p_source_id, p_dataset, p_extracted, p_loaded, p_quarantined,
            p_merged_duplicates, p_not_loaded_blocked, p_ok)
    ON CONFLICT (run_id, source_id, dataset) DO NOTHING;
    IF FOUND THEN
        RETURN;
    END IF;
    IF NOT ops.is_open_run(p_run_id) THEN
        RAISE EXCEPTION 'ops.reconciliation of run % is closed: only an open run may be recorded again', p_run_id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    UPDATE ops.reconciliation SET batch_id = p_batch_id, extracted = p_extracted, loaded = p_loaded,
           quarantined = p_quarantined, merged_duplicates = p_merged_duplicates,
           not_loaded_blocked = p_not_loaded_blocked, ok = p_ok, checked_at = now()
     WHERE run_id = p_run_id AND source_id = p_source_id AND dataset = p_dataset;
END $$;

CREATE OR REPLACE FUNCTION ops.record_handover(
    p_run_id text, p_old_unit_code text, p_old_unit_level text, p_old_unit_name text, p_source_ids text[],
    p_new_unit_codes text[], p_crosswalk_version text, p_datasets jsonb, p_object_key text, p_sha256 text
) RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    INSERT INTO ops.handover_records (run_id, old_unit_code, old_unit_level, old_unit_name, source_ids,
                                      new_unit_codes, crosswalk_version, datasets, object_key, sha256)
    VALUES (p_run_id, p_old_unit_code, p_old_unit_level, p_old_unit_name, p_source_ids, p_new_unit_codes,
            p_crosswalk_version, p_datasets, p_object_key, p_sha256)
    ON CONFLICT (run_id, old_unit_code) DO NOTHING;
    IF FOUND THEN
        RETURN;
    END IF;
    IF NOT ops.is_open_run(p_run_id) THEN
        RAISE EXCEPTION 'ops.handover_records of run % are closed: only an open run may be recorded again', p_run_id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    UPDATE ops.handover_records SET old_unit_level = p_old_unit_level, old_unit_name = p_old_unit_name,
           source_ids = p_source_ids, new_unit_codes = p_new_unit_codes, crosswalk_version = p_crosswalk_version,
           datasets = p_datasets, object_key = p_object_key, sha256 = p_sha256, created_at = now()
     WHERE run_id = p_run_id AND old_unit_code = p_old_unit_code;
END $$;

-- Only the roles granted below call them (ensure_roles grants EXECUTE to the loader).
REVOKE ALL ON FUNCTION ops.is_open_run(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION ops.record_reconciliation(text, text, text, text, integer, integer, integer, integer, integer, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION ops.record_handover(text, text, text, text, text[], text[], text, jsonb, text, text) FROM PUBLIC;
