"""Restore, restore drill, handover records, historical lookup, roles and retention on real services.

One small demo world (two legacy systems holding residents), two nightly runs through the
stage functions, then each test reads or (last ones) damages and repairs the platform.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import psycopg
import pytest
from botocore.exceptions import ClientError
from psycopg import sql

from conftest import pg_url
from sapnhap import storage
from sapnhap.restore import RestoreError, restore_dataset, restore_drill, table_fingerprint
from sapnhap.services import S3Config, Services
from sapnhap.sources import get_source
from sapnhap.sync.backup import backup_stage
from sapnhap.sync.extract import extract_stage
from sapnhap.sync.load import load_stage
from sapnhap.sync.prepare import prepare_run
from sapnhap.sync.transform import transform_stage
from sapnhap.sync.validate import validate_stage
from sapnhap_dev.embedded import read_mail

pytestmark = pytest.mark.integration

SOURCES = ("tq_sonduong_dancu", "hg_bacquang_sqlite")
RESIDENTS = sql.Identifier("core", "residents")


def _run(services: Services, world, run_id: str) -> None:
    prepare_run(services, run_id)
    for sid in SOURCES:
        source = get_source(sid)
        conn = str(world.sqlite_path()) if source.kind == "sqlite" else world.connections[source.conn_id]
        batch = extract_stage(services, source, "residents", conn, run_id=run_id, run_date="2025-12-01")
        batch = backup_stage(services, source, validate_stage(services, source, transform_stage(services, source, batch)))
        assert load_stage(services, source, batch)["status"] == "loaded"


@pytest.fixture(scope="module")
def synced(tmp_path_factory: pytest.TempPathFactory, pg_admin_dsn: str, s3_server: str):
    from aiosmtpd.controller import Controller
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    from sapnhap.services import SmtpConfig
    from sapnhap_dev.demo.generator import generate_world, mutate_world
    from sapnhap_dev.embedded import MailSink, free_port

    tmp = tmp_path_factory.mktemp("restore")
    db = f"sapnhap_rh_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
    params = {**conninfo_to_dict(pg_admin_dsn), "dbname": db}
    s3 = S3Config(bucket=f"t-{uuid.uuid4().hex[:12]}", endpoint_url=s3_server, access_key="test", secret_key="test")
    port = free_port()
    mail = Controller(MailSink(tmp / "mail"), hostname="127.0.0.1", port=port)
    mail.start()
    services = Services(platform_dsn=make_conninfo(**params), s3=s3,
                        smtp=SmtpConfig(host="127.0.0.1", port=port, from_addr="sapnhap@test.example"))
    from sapnhap.platform import ensure_platform

    ensure_platform(services.platform_dsn)  # `python -m sapnhap migrate`, as in every deployment
    world = generate_world(tmp / "world", seed=23, size=15, pg_dsn=pg_admin_dsn, db_prefix=f"lr{uuid.uuid4().hex[:6]}")
    try:
        _run(services, world, "r1")
        with psycopg.connect(services.platform_dsn) as conn:
            after_r1 = table_fingerprint(conn, RESIDENTS, "residents")
        mutate_world(world, fraction=0.3, seed=9)
        _run(services, world, "r2")
        yield {"services": services, "world": world, "after_r1": after_r1, "params": params, "mail": tmp / "mail"}
    finally:
        mail.stop()
        world.drop_databases()
        with psycopg.connect(pg_admin_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


def test_manifest_records_versions_cursor_and_retention(synced, monkeypatch) -> None:
    services = synced["services"]
    keys = [k for k in storage.list_keys(services.s3, "backups/") if k.endswith("manifest.json")]
    assert len(keys) == 4
    manifest = storage.get_json(services.s3, keys[0])
    assert manifest["code_version"] and manifest["crosswalk_version"] and manifest["run_id"] in ("r1", "r2")
    assert set(manifest["cursor"]) == {"from", "to", "column"} and manifest["created_at"]
    monkeypatch.setenv(storage.RETENTION_ENV, "400")
    prepare_run(services, "r-retention")
    # No rule expires current backups by age (a restore replays the first full load); the unversioned
    # bucket has no replaced versions to expire either. Retention is applied by restore.expire_backups.
    with pytest.raises(ClientError, match="NoSuchLifecycleConfiguration"):
        services.s3.client().get_bucket_lifecycle_configuration(Bucket=services.s3.bucket)
    monkeypatch.setenv(storage.RETENTION_ENV, "soon")
    with pytest.raises(ValueError, match="whole number of days"):
        storage.retention_days_from_env()


def test_restore_into_scratch_matches_platform_and_as_of_run(synced) -> None:
    services = synced["services"]
    full = restore_dataset(services, "residents", target_schema="scratch_full", compare=True)
    assert full.matches_platform and len(full.batches) == 4 and full.rows > 0
    as_of = restore_dataset(services, "residents", as_of_run="r1", target_schema="scratch_r1")
    assert (as_of.rows, as_of.checksum) == synced["after_r1"] and len(as_of.batches) == 2
    with pytest.raises(RestoreError, match="no loaded batch"):
        restore_dataset(services, "residents", as_of_run="r-none", target_schema="scratch_x")
    with pytest.raises(RestoreError, match="refused"):
        restore_dataset(services, "residents", target_schema="history")


def test_restore_refuses_a_backup_that_does_not_match_its_manifest(synced) -> None:
    services = synced["services"]
    key = next(k for k in storage.list_keys(services.s3, "backups/tq_sonduong_dancu/") if k.endswith("valid.parquet"))
    original = storage.get_bytes(services.s3, key)
    services.s3.client().put_object(Bucket=services.s3.bucket, Key=key, Body=original[:-10] + b"0" * 10)
    try:
        with pytest.raises(RestoreError, match=r"valid of batch .* does not match manifest .*checksum mismatch"):
            restore_dataset(services, "residents", target_schema="scratch_bad")
        with psycopg.connect(services.platform_dsn) as conn:
            made = conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname = 'scratch_bad'").fetchone()[0]
        assert made == 0  # refused before anything was written
    finally:
        services.s3.client().put_object(Bucket=services.s3.bucket, Key=key, Body=original, ServerSideEncryption="AES256")


def test_handover_records_per_old_unit(synced) -> None:
    from sapnhap.handover import build_handover

    services = synced["services"]
    sources = [get_source(s) for s in SOURCES]
    records = build_handover(services, "r2", sources=sources)
    communes = sum(len(s.old_units.communes) for s in sources)
    assert len(records) == communes + 2  # every old commune, and each old district with its totals
    assert build_handover(services, "r2", sources=sources) and True  # idempotent upsert
    with psycopg.connect(services.platform_dsn) as conn:
        listed = conn.execute("SELECT count(*) FROM ops.handover_records WHERE run_id = 'r2'").fetchone()[0]
        held = conn.execute(
            "SELECT count(*) FROM core.residents WHERE source_id = 'tq_sonduong_dancu' AND old_commune_code = ANY(%s)",
            (list(get_source("tq_sonduong_dancu").old_units.communes),),
        ).fetchone()[0]
        rows = conn.execute(
            """SELECT old_unit_code, datasets, object_key, sha256, new_unit_codes FROM ops.handover_records
               WHERE run_id = 'r2' AND old_unit_level = 'commune' AND 'tq_sonduong_dancu' = ANY(source_ids)"""
        ).fetchall()
    assert listed == communes + 2
    assert sum(d["held_total"] for r in rows for d in r[1] if d["dataset"] == "residents") == held > 0
    code, datasets, key, sha, new_codes = next(r for r in rows if r[1][0]["held_total"] > 0)
    html = storage.get_bytes(services.s3, key, sha).decode("utf-8")
    for text in ("BIÊN BẢN BÀN GIAO DỮ LIỆU", "BÊN GIAO", "BÊN NHẬN", "DANH MỤC DỮ LIỆU", code, new_codes[0],
                 datasets[0]["manifest_key"], "nso-2025.07"):
        assert text in html
    assert key == f"handover/r2/{code}.html"


def test_historical_lookup_by_old_and_new_unit_as_known_at_a_moment(synced) -> None:
    services = synced["services"]
    with psycopg.connect(services.platform_dsn) as conn:
        conn.execute("SET session_replication_role = replica")  # shift the timeline without firing the history trigger
        conn.execute("UPDATE core.residents SET valid_from = now() - interval '10 days' WHERE batch_id LIKE 'r1|%%'")
        conn.execute("UPDATE core.residents SET valid_from = now() - interval '5 days' WHERE batch_id LIKE 'r2|%%'")
        conn.execute("UPDATE history.residents SET valid_from = now() - interval '10 days',"
                     " valid_to = now() - interval '5 days'")
        conn.commit()
        conn.execute("SET session_replication_role = origin")
        updated = conn.execute("SELECT count(*) FROM history.residents").fetchone()[0]
        assert updated > 0
        then = conn.execute("SELECT count(*), sum(hashtext(record_hash)) FROM core.find_residents_by_old_unit('08',"
                            " known_at => current_date - 7)").fetchone()
        now = conn.execute("SELECT count(*) FROM core.find_residents_by_old_unit('08')").fetchone()[0]
        r1_hg = conn.execute("SELECT count(*) FROM core.find_residents_by_old_unit('02', known_at => current_date - 7)").fetchone()[0]
        current_08 = conn.execute("SELECT count(*) FROM core.residents WHERE old_province_code = '08'").fetchone()[0]
        by_name = conn.execute("SELECT count(*) FROM core.find_residents_by_old_unit_name('son duong')").fetchone()[0]
        by_code = conn.execute("SELECT count(*) FROM core.find_residents_by_old_unit('076')").fetchone()[0]
        by_name_accents = conn.execute(
            "SELECT count(*) FROM core.find_residents_by_old_unit_name('Sơn Dương')").fetchone()[0]
        new_code = conn.execute("SELECT new_commune_code FROM core.residents WHERE new_commune_code IS NOT NULL"
                                " LIMIT 1").fetchone()[0]
        by_new = conn.execute("SELECT count(*) FROM core.find_residents_by_new_unit(%s)", (new_code,)).fetchone()[0]
        units = conn.execute("SELECT scheme, level, code FROM core.find_units_by_name('SON DUONG')").fetchall()
        before_merger = conn.execute("SELECT count(*) FROM core.find_residents_by_old_unit('08', known_at => '2020-01-01')").fetchone()[0]
    assert now == current_08 and 0 < then[0] and before_merger == 0
    assert r1_hg + then[0] == synced["after_r1"][0]  # the platform as it stood after the first night
    assert by_name == by_code > 0 and by_name_accents == by_name and by_new > 0
    assert ("old", "district", "076") in units


def test_least_privilege_roles(synced) -> None:
    from sapnhap.platform import ensure_roles

    dsn = synced["services"].platform_dsn
    assert ensure_roles(dsn) and ensure_roles(dsn)  # idempotent
    with psycopg.connect(dsn, autocommit=True) as conn:
        nologin = conn.execute("SELECT bool_and(NOT rolcanlogin) FROM pg_roles WHERE rolname LIKE 'sapnhap_%%'"
                               " AND rolname IN ('sapnhap_loader', 'sapnhap_analyst', 'sapnhap_auditor')").fetchone()[0]
        assert nologin
        history_before = conn.execute("SELECT count(*) FROM history.residents").fetchone()[0]

        def as_role(role: str, statement: str) -> None:
            with conn.transaction():
                conn.execute(f"SET LOCAL ROLE {role}")
                conn.execute(statement)

        for statement in ("TRUNCATE history.residents", "DELETE FROM history.residents",
                          "UPDATE history.residents SET change = 'x'", "DROP TABLE history.residents",
                          "TRUNCATE core.residents", "DROP TABLE core.residents",
                          "INSERT INTO history.residents (citizen_id) VALUES ('x')"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                as_role("sapnhap_loader", statement)
        # The loader writes core; the history trigger (SECURITY DEFINER) keeps the previous version.
        as_role("sapnhap_loader", "UPDATE core.residents SET address_detail = address_detail || ' ' "
                                  "WHERE citizen_id = (SELECT min(citizen_id) FROM core.residents)")
        as_role("sapnhap_loader", "UPDATE core.residents SET address_detail = rtrim(address_detail) "
                                  "WHERE citizen_id = (SELECT min(citizen_id) FROM core.residents)")
        assert conn.execute("SELECT count(*) FROM history.residents").fetchone()[0] == history_before + 2
        as_role("sapnhap_analyst", "SELECT count(*), min(citizen_id) FROM core.residents")
        as_role("sapnhap_analyst", "SELECT count(*) FROM core.find_residents_by_old_unit('08')")
        as_role("sapnhap_analyst", "SELECT reason_vi, value_masked FROM ops.quarantine")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            as_role("sapnhap_analyst", "SELECT payload FROM ops.quarantine")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            as_role("sapnhap_analyst", "UPDATE core.residents SET full_name = 'x'")
        as_role("sapnhap_auditor", "SELECT payload FROM ops.quarantine")
        as_role("sapnhap_auditor", "SELECT count(*) FROM ops.cursors, history.residents")


def test_drill_detects_damage_and_per_source_restore_repairs_it(synced) -> None:
    from sapnhap.runner import main

    services = synced["services"]
    with psycopg.connect(services.platform_dsn) as conn:
        good = table_fingerprint(conn, RESIDENTS, "residents")
    ok = restore_drill(services, recipients=["doi.du.lieu@test.example"], datasets=["residents"])
    assert ok["ok"] and ok["reports"][0]["matches_platform"]
    with psycopg.connect(services.platform_dsn) as conn:
        conn.execute("DELETE FROM core.residents WHERE citizen_id IN (SELECT citizen_id FROM core.residents"
                     " WHERE source_id = 'tq_sonduong_dancu' ORDER BY citizen_id LIMIT 3)")
        conn.execute("UPDATE core.residents SET full_name = 'Sai Lệch' WHERE citizen_id = (SELECT min(citizen_id)"
                     " FROM core.residents WHERE source_id = 'tq_sonduong_dancu')")
        assert conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname = 'restore_drill'").fetchone()[0] == 0
    with pytest.raises(RestoreError, match="restore drill failed") as failed:
        restore_drill(services, recipients=["doi.du.lieu@test.example"], datasets=["residents"])
    assert not failed.value.retryable  # a mismatch: another try would only repeat the alarm
    mails = [m for m in read_mail(synced["mail"]) if m["To"] == "doi.du.lieu@test.example"]
    assert "ĐẠT" in str(mails[0]["Subject"]) and "KHÔNG ĐẠT" in str(mails[-1]["Subject"])
    body = mails[-1].get_body(preferencelist=("plain",)).get_content()
    assert "KHÔNG KHỚP" in body and "nguồn tq_sonduong_dancu: khôi phục" in body

    # The CLI restores the one damaged source into core; the other source's rows are not touched.
    url = pg_url(services.platform_dsn)
    s3 = services.s3
    env = {"SAPNHAP_PLATFORM_URL": url,
           "SAPNHAP_S3_URL": f"s3://{s3.access_key}:{s3.secret_key}@{s3.endpoint_url.split('//')[1]}/{s3.bucket}"}
    mp = pytest.MonkeyPatch()
    for k, v in env.items():
        mp.setenv(k, v)
    try:
        assert main(["restore", "--dataset", "residents", "--source", "tq_sonduong_dancu", "--confirm"]) == 0
    finally:
        mp.undo()
    with psycopg.connect(services.platform_dsn) as conn:
        assert table_fingerprint(conn, RESIDENTS, "residents") == good
        logged = conn.execute("SELECT count(*) FROM ops.restores WHERE source_id = 'tq_sonduong_dancu'"
                              " AND target_schema = 'core' AND matches_platform").fetchone()[0]
    assert logged == 1
    assert restore_drill(services, recipients=[], datasets=["residents"])["ok"]


def test_restore_cli_needs_its_settings(monkeypatch, capsys) -> None:
    from sapnhap.runner import main

    monkeypatch.delenv("SAPNHAP_PLATFORM_URL", raising=False)
    monkeypatch.delenv("SAPNHAP_S3_URL", raising=False)
    assert main(["restore", "--dataset", "residents"]) == 2
    assert "SAPNHAP_PLATFORM_URL" in capsys.readouterr().err


def test_drill_without_backups_fails(tmp_path: Path, platform_dsn: str, s3_config: S3Config, smtp_sink) -> None:
    services = Services(platform_dsn=platform_dsn, s3=s3_config, smtp=smtp_sink[0])
    with pytest.raises(RestoreError, match="no backups found"):
        restore_drill(services, recipients=["doi.du.lieu@test.example"])
    body = read_mail(smtp_sink[1])[0].get_body(preferencelist=("plain",)).get_content()
    assert "Không tìm thấy bản sao lưu" in body
