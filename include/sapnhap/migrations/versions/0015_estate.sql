-- Frozen at revision 0010_estate: the indicator_values and portal_pages datasets as datasets.py described them then.

CREATE TABLE IF NOT EXISTS core.indicator_values (
    indicator_code text, period text, old_commune_code text, value text, numerator text, denominator text, reported_date date, updated_at timestamp, source_id text NOT NULL, source_key text NOT NULL, old_province_code text, old_district_code text, new_province_code text, new_commune_code text, mapping_method text, mapping_status text, crosswalk_version text, unit_scheme text NOT NULL, record_era text, flag_old_code_after_merger boolean NOT NULL DEFAULT false, record_hash text NOT NULL, batch_id text NOT NULL, valid_from timestamptz NOT NULL DEFAULT now(), legacy_row_hash text, deleted_in_source_at timestamptz,
    PRIMARY KEY (indicator_code, period, old_commune_code)
);
-- schema change (keys): a legacy record by (source_id, source_key), for the merge's re-keyed records
-- and verification's reads of one source's rows (its own indicator_values_source_key duplicated it: dropped in 0009_lead)
CREATE INDEX IF NOT EXISTS indicator_values_record ON core.indicator_values (source_id, source_key);
CREATE INDEX IF NOT EXISTS indicator_values_new_unit ON core.indicator_values (new_commune_code);
CREATE INDEX IF NOT EXISTS indicator_values_old_unit ON core.indicator_values (old_commune_code);
CREATE TABLE IF NOT EXISTS history.indicator_values (
    history_id bigserial PRIMARY KEY,
    indicator_code text, period text, old_commune_code text, value text, numerator text, denominator text, reported_date date, updated_at timestamp, source_id text NOT NULL, source_key text NOT NULL, old_province_code text, old_district_code text, new_province_code text, new_commune_code text, mapping_method text, mapping_status text, crosswalk_version text, unit_scheme text NOT NULL, record_era text, flag_old_code_after_merger boolean NOT NULL, record_hash text NOT NULL, batch_id text NOT NULL, valid_from timestamptz NOT NULL, legacy_row_hash text, deleted_in_source_at timestamptz,
    valid_to timestamptz NOT NULL,
    change text NOT NULL
);
ALTER TABLE core.indicator_values ADD COLUMN IF NOT EXISTS legacy_row_hash text;
ALTER TABLE core.indicator_values ADD COLUMN IF NOT EXISTS deleted_in_source_at timestamptz;
ALTER TABLE history.indicator_values ADD COLUMN IF NOT EXISTS legacy_row_hash text;
ALTER TABLE history.indicator_values ADD COLUMN IF NOT EXISTS deleted_in_source_at timestamptz;
CREATE INDEX IF NOT EXISTS indicator_values_history_key ON history.indicator_values (indicator_code, period, old_commune_code);
-- SECURITY DEFINER: history is written by this trigger only; the loader role cannot insert,
-- update, delete or truncate history rows itself (see ensure_roles).
CREATE OR REPLACE FUNCTION history.keep_indicator_values() RETURNS trigger LANGUAGE plpgsql
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    INSERT INTO history.indicator_values (indicator_code, period, old_commune_code, value, numerator, denominator, reported_date, updated_at, source_id, source_key, old_province_code, old_district_code, new_province_code, new_commune_code, mapping_method, mapping_status, crosswalk_version, unit_scheme, record_era, flag_old_code_after_merger, record_hash, batch_id, valid_from, legacy_row_hash, deleted_in_source_at, valid_to, change)
    SELECT indicator_code, period, old_commune_code, value, numerator, denominator, reported_date, updated_at, source_id, source_key, old_province_code, old_district_code, new_province_code, new_commune_code, mapping_method, mapping_status, crosswalk_version, unit_scheme, record_era, flag_old_code_after_merger, record_hash, batch_id, valid_from, legacy_row_hash, deleted_in_source_at, now(), lower(TG_OP) FROM old_rows;
    RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS keep_history ON core.indicator_values;
CREATE TRIGGER keep_history AFTER UPDATE ON core.indicator_values
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION history.keep_indicator_values();
DROP TRIGGER IF EXISTS keep_history_delete ON core.indicator_values;
CREATE TRIGGER keep_history_delete AFTER DELETE ON core.indicator_values
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION history.keep_indicator_values();

DROP FUNCTION IF EXISTS core.find_indicator_values_by_old_unit(text, date);
DROP FUNCTION IF EXISTS core.find_indicator_values_by_new_unit(text, date);
DROP FUNCTION IF EXISTS core.find_indicator_values_by_old_unit_name(text, date);
CREATE OR REPLACE FUNCTION core.find_indicator_values_by_old_unit(code text, as_of date DEFAULT current_date, known_at timestamptz DEFAULT NULL)
    RETURNS SETOF core.indicator_values LANGUAGE sql STABLE AS $$
    SELECT * FROM (
        SELECT indicator_code, period, old_commune_code, value, numerator, denominator, reported_date, updated_at, source_id, source_key, old_province_code, old_district_code, new_province_code, new_commune_code, mapping_method, mapping_status, crosswalk_version, unit_scheme, record_era, flag_old_code_after_merger, record_hash, batch_id, valid_from, legacy_row_hash, deleted_in_source_at FROM core.indicator_values WHERE known_at IS NULL OR valid_from <= known_at
        UNION ALL
        SELECT indicator_code, period, old_commune_code, value, numerator, denominator, reported_date, updated_at, source_id, source_key, old_province_code, old_district_code, new_province_code, new_commune_code, mapping_method, mapping_status, crosswalk_version, unit_scheme, record_era, flag_old_code_after_merger, record_hash, batch_id, valid_from, legacy_row_hash, deleted_in_source_at FROM history.indicator_values WHERE known_at IS NOT NULL AND valid_from <= known_at AND valid_to > known_at) r
    WHERE (r.reported_date IS NULL OR r.reported_date::date <= as_of)
      AND CASE length(code) WHEN 2 THEN r.old_province_code = code
                            WHEN 3 THEN r.old_district_code = code
                            ELSE r.old_commune_code = code END $$;
CREATE OR REPLACE FUNCTION core.find_indicator_values_by_new_unit(code text, as_of date DEFAULT current_date, known_at timestamptz DEFAULT NULL)
    RETURNS SETOF core.indicator_values LANGUAGE sql STABLE AS $$
    SELECT * FROM (
        SELECT indicator_code, period, old_commune_code, value, numerator, denominator, reported_date, updated_at, source_id, source_key, old_province_code, old_district_code, new_province_code, new_commune_code, mapping_method, mapping_status, crosswalk_version, unit_scheme, record_era, flag_old_code_after_merger, record_hash, batch_id, valid_from, legacy_row_hash, deleted_in_source_at FROM core.indicator_values WHERE known_at IS NULL OR valid_from <= known_at
        UNION ALL
        SELECT indicator_code, period, old_commune_code, value, numerator, denominator, reported_date, updated_at, source_id, source_key, old_province_code, old_district_code, new_province_code, new_commune_code, mapping_method, mapping_status, crosswalk_version, unit_scheme, record_era, flag_old_code_after_merger, record_hash, batch_id, valid_from, legacy_row_hash, deleted_in_source_at FROM history.indicator_values WHERE known_at IS NOT NULL AND valid_from <= known_at AND valid_to > known_at) r
    WHERE (r.reported_date IS NULL OR r.reported_date::date <= as_of)
      AND CASE length(code) WHEN 2 THEN r.new_province_code = code ELSE r.new_commune_code = code END $$;
CREATE OR REPLACE FUNCTION core.find_indicator_values_by_old_unit_name(name text, as_of date DEFAULT current_date, known_at timestamptz DEFAULT NULL)
    RETURNS SETOF core.indicator_values LANGUAGE sql STABLE AS $$
    SELECT r.* FROM (
        SELECT indicator_code, period, old_commune_code, value, numerator, denominator, reported_date, updated_at, source_id, source_key, old_province_code, old_district_code, new_province_code, new_commune_code, mapping_method, mapping_status, crosswalk_version, unit_scheme, record_era, flag_old_code_after_merger, record_hash, batch_id, valid_from, legacy_row_hash, deleted_in_source_at FROM core.indicator_values WHERE known_at IS NULL OR valid_from <= known_at
        UNION ALL
        SELECT indicator_code, period, old_commune_code, value, numerator, denominator, reported_date, updated_at, source_id, source_key, old_province_code, old_district_code, new_province_code, new_commune_code, mapping_method, mapping_status, crosswalk_version, unit_scheme, record_era, flag_old_code_after_merger, record_hash, batch_id, valid_from, legacy_row_hash, deleted_in_source_at FROM history.indicator_values WHERE known_at IS NOT NULL AND valid_from <= known_at AND valid_to > known_at) r
    WHERE (r.reported_date IS NULL OR r.reported_date::date <= as_of)
      AND (r.old_commune_code IN (SELECT code FROM core.find_units_by_name(name, 'old') WHERE level = 'commune')
           OR r.old_district_code IN (SELECT code FROM core.find_units_by_name(name, 'old') WHERE level = 'district')) $$;

CREATE TABLE IF NOT EXISTS core.portal_pages (
    url text, title text, kind text, old_commune_code text, published_date date, summary text, status text, updated_at timestamp, source_id text NOT NULL, source_key text NOT NULL, old_province_code text, old_district_code text, new_province_code text, new_commune_code text, mapping_method text, mapping_status text, crosswalk_version text, unit_scheme text NOT NULL, record_era text, flag_old_code_after_merger boolean NOT NULL DEFAULT false, record_hash text NOT NULL, batch_id text NOT NULL, valid_from timestamptz NOT NULL DEFAULT now(), legacy_row_hash text, deleted_in_source_at timestamptz,
    PRIMARY KEY (url)
);
-- schema change (keys): a legacy record by (source_id, source_key), for the merge's re-keyed records
-- and verification's reads of one source's rows (its own portal_pages_source_key duplicated it: dropped in 0009_lead)
CREATE INDEX IF NOT EXISTS portal_pages_record ON core.portal_pages (source_id, source_key);
CREATE INDEX IF NOT EXISTS portal_pages_new_unit ON core.portal_pages (new_commune_code);
CREATE INDEX IF NOT EXISTS portal_pages_old_unit ON core.portal_pages (old_commune_code);
CREATE TABLE IF NOT EXISTS history.portal_pages (
    history_id bigserial PRIMARY KEY,
    url text, title text, kind text, old_commune_code text, published_date date, summary text, status text, updated_at timestamp, source_id text NOT NULL, source_key text NOT NULL, old_province_code text, old_district_code text, new_province_code text, new_commune_code text, mapping_method text, mapping_status text, crosswalk_version text, unit_scheme text NOT NULL, record_era text, flag_old_code_after_merger boolean NOT NULL, record_hash text NOT NULL, batch_id text NOT NULL, valid_from timestamptz NOT NULL, legacy_row_hash text, deleted_in_source_at timestamptz,
    valid_to timestamptz NOT NULL,
    change text NOT NULL
);
ALTER TABLE core.portal_pages ADD COLUMN IF NOT EXISTS legacy_row_hash text;
ALTER TABLE core.portal_pages ADD COLUMN IF NOT EXISTS deleted_in_source_at timestamptz;
ALTER TABLE history.portal_pages ADD COLUMN IF NOT EXISTS legacy_row_hash text;
ALTER TABLE history.portal_pages ADD COLUMN IF NOT EXISTS deleted_in_source_at timestamptz;
CREATE INDEX IF NOT EXISTS portal_pages_history_key ON history.portal_pages (url);
-- SECURITY DEFINER: history is written by this trigger only; the loader role cannot insert,
-- update, delete or truncate history rows itself (see ensure_roles).
CREATE OR REPLACE FUNCTION history.keep_portal_pages() RETURNS trigger LANGUAGE plpgsql
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    INSERT INTO history.portal_pages (url, title, kind, old_commune_code, published_date, summary, status, updated_at, source_id, source_key, old_province_code, old_district_code, new_province_code, new_commune_code, mapping_method, mapping_status, crosswalk_version, unit_scheme, record_era, flag_old_code_after_merger, record_hash, batch_id, valid_from, legacy_row_hash, deleted_in_source_at, valid_to, change)
    SELECT url, title, kind, old_commune_code, published_date, summary, status, updated_at, source_id, source_key, old_province_code, old_district_code, new_province_code, new_commune_code, mapping_method, mapping_status, crosswalk_version, unit_scheme, record_era, flag_old_code_after_merger, record_hash, batch_id, valid_from, legacy_row_hash, deleted_in_source_at, now(), lower(TG_OP) FROM old_rows;
    RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS keep_history ON core.portal_pages;
CREATE TRIGGER keep_history AFTER UPDATE ON core.portal_pages
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION history.keep_portal_pages();
DROP TRIGGER IF EXISTS keep_history_delete ON core.portal_pages;
CREATE TRIGGER keep_history_delete AFTER DELETE ON core.portal_pages
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION history.keep_portal_pages();

DROP FUNCTION IF EXISTS core.find_portal_pages_by_old_unit(text, date);
DROP FUNCTION IF EXISTS core.find_portal_pages_by_new_unit(text, date);
DROP FUNCTION IF EXISTS core.find_portal_pages_by_old_unit_name(text, date);
CREATE OR REPLACE FUNCTION core.find_portal_pages_by_old_unit(code text, as_of date DEFAULT current_date, known_at timestamptz DEFAULT NULL)
    RETURNS SETOF core.portal_pages LANGUAGE sql STABLE AS $$
    SELECT * FROM (
        SELECT url, title, kind, old_commune_code, published_date, summary, status, updated_at, source_id, source_key, old_province_code, old_district_code, new_province_code, new_commune_code, mapping_method, mapping_status, crosswalk_version, unit_scheme, record_era, flag_old_code_after_merger, record_hash, batch_id, valid_from, legacy_row_hash, deleted_in_source_at FROM core.portal_pages WHERE known_at IS NULL OR valid_from <= known_at
        UNION ALL
        SELECT url, title, kind, old_commune_code, published_date, summary, status, updated_at, source_id, source_key, old_province_code, old_district_code, new_province_code, new_commune_code, mapping_method, mapping_status, crosswalk_version, unit_scheme, record_era, flag_old_code_after_merger, record_hash, batch_id, valid_from, legacy_row_hash, deleted_in_source_at FROM history.portal_pages WHERE known_at IS NOT NULL AND valid_from <= known_at AND valid_to > known_at) r
    WHERE (r.published_date IS NULL OR r.published_date::date <= as_of)
      AND CASE length(code) WHEN 2 THEN r.old_province_code = code
                            WHEN 3 THEN r.old_district_code = code
                            ELSE r.old_commune_code = code END $$;
CREATE OR REPLACE FUNCTION core.find_portal_pages_by_new_unit(code text, as_of date DEFAULT current_date, known_at timestamptz DEFAULT NULL)
    RETURNS SETOF core.portal_pages LANGUAGE sql STABLE AS $$
    SELECT * FROM (
        SELECT url, title, kind, old_commune_code, published_date, summary, status, updated_at, source_id, source_key, old_province_code, old_district_code, new_province_code, new_commune_code, mapping_method, mapping_status, crosswalk_version, unit_scheme, record_era, flag_old_code_after_merger, record_hash, batch_id, valid_from, legacy_row_hash, deleted_in_source_at FROM core.portal_pages WHERE known_at IS NULL OR valid_from <= known_at
        UNION ALL
        SELECT url, title, kind, old_commune_code, published_date, summary, status, updated_at, source_id, source_key, old_province_code, old_district_code, new_province_code, new_commune_code, mapping_method, mapping_status, crosswalk_version, unit_scheme, record_era, flag_old_code_after_merger, record_hash, batch_id, valid_from, legacy_row_hash, deleted_in_source_at FROM history.portal_pages WHERE known_at IS NOT NULL AND valid_from <= known_at AND valid_to > known_at) r
    WHERE (r.published_date IS NULL OR r.published_date::date <= as_of)
      AND CASE length(code) WHEN 2 THEN r.new_province_code = code ELSE r.new_commune_code = code END $$;
CREATE OR REPLACE FUNCTION core.find_portal_pages_by_old_unit_name(name text, as_of date DEFAULT current_date, known_at timestamptz DEFAULT NULL)
    RETURNS SETOF core.portal_pages LANGUAGE sql STABLE AS $$
    SELECT r.* FROM (
        SELECT url, title, kind, old_commune_code, published_date, summary, status, updated_at, source_id, source_key, old_province_code, old_district_code, new_province_code, new_commune_code, mapping_method, mapping_status, crosswalk_version, unit_scheme, record_era, flag_old_code_after_merger, record_hash, batch_id, valid_from, legacy_row_hash, deleted_in_source_at FROM core.portal_pages WHERE known_at IS NULL OR valid_from <= known_at
        UNION ALL
        SELECT url, title, kind, old_commune_code, published_date, summary, status, updated_at, source_id, source_key, old_province_code, old_district_code, new_province_code, new_commune_code, mapping_method, mapping_status, crosswalk_version, unit_scheme, record_era, flag_old_code_after_merger, record_hash, batch_id, valid_from, legacy_row_hash, deleted_in_source_at FROM history.portal_pages WHERE known_at IS NOT NULL AND valid_from <= known_at AND valid_to > known_at) r
    WHERE (r.published_date IS NULL OR r.published_date::date <= as_of)
      AND (r.old_commune_code IN (SELECT code FROM core.find_units_by_name(name, 'old') WHERE level = 'commune')
           OR r.old_district_code IN (SELECT code FROM core.find_units_by_name(name, 'old') WHERE level = 'district')) $$;
