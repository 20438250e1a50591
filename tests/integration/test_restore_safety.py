"""Restore cannot lose data; backups are immutable and signed (real PostgreSQL and moto S3).

Each test syncs a small demo world through the stage functions (as the nightly DAG's tasks call
them), then breaks what an operator or an attacker could break and checks what the restore does.
"""

from __future__ import annotations

import io
import json
import uuid
from pathlib import Path

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from psycopg import sql

from sapnhap import storage
from sapnhap.restore import RestoreError, restore_dataset, table_fingerprint
from sapnhap.services import S3Config, Services
from sapnhap.sources import Source, get_source
from sapnhap.sync.backup import backup_stage
from sapnhap.sync.extract import extract_stage
from sapnhap.sync.load import load_stage
from sapnhap.sync.prepare import prepare_run
from sapnhap.sync.transform import transform_stage
from sapnhap.sync.validate import validate_stage

pytestmark = pytest.mark.integration

RUN_DATE = "2025-12-01"
SONDUONG = "tq_sonduong_dancu"  # PostgreSQL legacy system: residents, households
BACQUANG = "hg_bacquang_sqlite"  # SQLite legacy system: dossiers, residents
RESIDENTS = sql.Identifier("core", "residents")


@pytest.fixture
def world(tmp_path: Path, pg_admin_dsn: str):
    from sapnhap_dev.demo.generator import generate_world

    w = generate_world(tmp_path / "world", seed=31, size=15, pg_dsn=pg_admin_dsn, db_prefix=f"ls{uuid.uuid4().hex[:6]}")
    try:
        yield w
    finally:
        w.drop_databases()


def _connection(world, source: Source) -> str:
    return str(world.sqlite_path()) if source.kind == "sqlite" else world.connections[source.conn_id]


def _backed_up(services: Services, world, sid: str, dataset: str, run_id: str) -> dict:
    source = get_source(sid)
    batch = extract_stage(services, source, dataset, _connection(world, source), run_id=run_id, run_date=RUN_DATE)
    return backup_stage(services, source, validate_stage(services, source, transform_stage(services, source, batch)))


def _load(services: Services, world, sid: str, dataset: str, run_id: str) -> dict:
    batch = _backed_up(services, world, sid, dataset, run_id)
    assert load_stage(services, get_source(sid), batch)["status"] == "loaded"
    return batch


def _two_nights(services: Services, world, sources=(SONDUONG, BACQUANG)) -> None:
    from sapnhap_dev.demo.generator import mutate_world

    for n, run_id in enumerate(("r1", "r2")):
        if n:
            mutate_world(world, fraction=0.3, seed=7)
        prepare_run(services, run_id)
        for sid in sources:
            _load(services, world, sid, "residents", run_id)


def _fingerprint(services: Services) -> tuple[int, str]:
    with psycopg.connect(services.platform_dsn) as conn:
        return table_fingerprint(conn, RESIDENTS, "residents")


def _restores_logged(services: Services) -> int:
    with psycopg.connect(services.platform_dsn) as conn:
        return conn.execute("SELECT count(*) FROM ops.restores").fetchone()[0]


def _manifests(services: Services, prefix: str = "backups/") -> list[str]:
    return sorted(k for k in storage.list_keys(services.s3, prefix) if k.endswith("/manifest.json"))


# -- re-running a source inside a run (Airflow's Clear) ------------------------------------------


def test_clearing_a_source_inside_a_run_keeps_the_first_attempts_backup(world, services: Services) -> None:
    prepare_run(services, "r1")
    first = _load(services, world, BACQUANG, "dossiers", "r1")
    # Clear: the same run extracts again after its cursor moved, so this attempt holds only boundary rows.
    second = _load(services, world, BACQUANG, "dossiers", "r1")
    assert first["prefix"] != second["prefix"] and first["batch_id"] == second["batch_id"]
    assert storage.get_json(services.s3, first["manifest_key"])["counts"]["valid"] > 1  # not overwritten
    assert len(_manifests(services, f"backups/{BACQUANG}/dossiers/")) == 2
    with psycopg.connect(services.platform_dsn) as conn:
        platform = conn.execute("SELECT count(*) FROM core.dossiers").fetchone()[0]
        recorded = conn.execute("SELECT manifest_key FROM ops.batches WHERE batch_id = %s",
                                (second["batch_id"],)).fetchone()[0]
        loaded = [r[0] for r in conn.execute(
            "SELECT manifest_key FROM ops.loaded_backups WHERE batch_id = %s ORDER BY loaded_at",
            (second["batch_id"],)).fetchall()]
    assert recorded == second["manifest_key"] and loaded == [first["manifest_key"], second["manifest_key"]]
    report = restore_dataset(services, "dossiers", target_schema="scratch_clear", compare=True)
    assert report.rows == platform > 1 and report.matches_platform
    assert len(report.batches) == 2

    # Every backup of the dataset gone: the drill names it (once, not retried), it does not skip it.
    from sapnhap.restore import restore_drill

    for key in loaded:
        storage._client(services.s3).delete_object(Bucket=services.s3.bucket, Key=key)
    with pytest.raises(RestoreError, match="dossiers") as drill:
        restore_drill(services, recipients=[])
    assert not drill.value.retryable and "have no verified backup" in str(drill.value)


def test_a_manifest_is_written_once(world, services: Services) -> None:
    prepare_run(services, "r1")
    batch = _backed_up(services, world, SONDUONG, "residents", "r1")
    before = storage.get_bytes(services.s3, batch["manifest_key"])
    # The backup task retried after its manifest was written: same attempt, same objects, accepted as is.
    again = backup_stage(services, get_source(SONDUONG), batch)
    assert again["manifest_key"] == batch["manifest_key"]
    assert storage.get_bytes(services.s3, batch["manifest_key"]) == before
    # Anything else written under that key is refused, the first manifest stays.
    other = {**batch, "objects": {**batch["objects"], "valid": batch["objects"]["quarantine"]}}
    with pytest.raises(storage.ObjectExistsError, match="never replaced"):
        backup_stage(services, get_source(SONDUONG), other)
    with pytest.raises(storage.ObjectExistsError):
        storage.put_bytes(services.s3, batch["manifest_key"], b"{}", once=True)
    assert storage.get_bytes(services.s3, batch["manifest_key"]) == before


# -- a restore refuses when a loaded batch's backup is missing -------------------------------------


def test_restore_refuses_and_lists_every_missing_manifest(world, services: Services, capsys) -> None:
    from sapnhap.runner import run_restore

    _two_nights(services, world)
    before = _fingerprint(services)
    with psycopg.connect(services.platform_dsn) as conn:
        gone = [r[0] for r in conn.execute(
            """SELECT manifest_key FROM ops.loaded_backups WHERE dataset = 'residents'
               AND (source_id, run_id) IN (('tq_sonduong_dancu', 'r1'), ('hg_bacquang_sqlite', 'r2'))
               ORDER BY manifest_key""").fetchall()]
    assert len(gone) == 2
    for key in gone:
        storage._client(services.s3).delete_object(Bucket=services.s3.bucket, Key=key)
    with pytest.raises(RestoreError, match="restore refused") as refused:
        restore_dataset(services, "residents", confirm=True)
    message = str(refused.value)
    assert all(key in message for key in gone) and "2 of 4" in message
    assert sorted(refused.value.missing) == gone
    assert _fingerprint(services) == before and _restores_logged(services) == 0  # nothing written
    # One source's restore needs only that source's batches: its own missing one is named, not the other's.
    with pytest.raises(RestoreError) as one:
        restore_dataset(services, "residents", source_id=BACQUANG, target_schema="scratch_one")
    assert one.value.missing == [gone[0] if BACQUANG in gone[0] else gone[1]]
    # Cut before the loss: as of r1 only the first night's batches are needed.
    with pytest.raises(RestoreError) as as_of:
        restore_dataset(services, "residents", as_of_run="r1", target_schema="scratch_r1")
    assert as_of.value.missing == [k for k in gone if SONDUONG in k]

    # The CLI exits non-zero and lists the missing manifests.
    code = run_restore("residents", source_id=None, as_of_run=None, target_schema="core", confirm=True,
                       services=services)
    err = capsys.readouterr().err
    assert code == 1 and all(key in err for key in gone)
    assert _fingerprint(services) == before

    # A platform from before ops.loaded_backups: ops.batches alone says what loaded, the refusal is the same.
    with psycopg.connect(services.platform_dsn) as conn:
        conn.execute("DROP TABLE ops.loaded_backups")
    with pytest.raises(RestoreError) as legacy:
        restore_dataset(services, "residents", confirm=True)
    assert sorted(legacy.value.missing) == gone and _fingerprint(services) == before


# -- a restore into core shows its plan and needs a confirmation -------------------------------------


def test_restore_into_core_plans_first_and_writes_only_when_confirmed(world, services: Services, capsys) -> None:
    from sapnhap.runner import run_restore

    _two_nights(services, world)
    good = _fingerprint(services)
    with psycopg.connect(services.platform_dsn) as conn:
        conn.execute("DELETE FROM core.residents WHERE citizen_id IN (SELECT citizen_id FROM core.residents"
                     " WHERE source_id = %s ORDER BY citizen_id LIMIT 3)", (SONDUONG,))
        conn.execute("UPDATE core.residents SET full_name = 'Sai Lệch' WHERE citizen_id = (SELECT min(citizen_id)"
                     " FROM core.residents WHERE source_id = %s)", (SONDUONG,))
        # A row no backup holds (written by hand, or by a load whose backup is not in ops): the plan deletes it.
        conn.execute("CREATE TEMP TABLE extra AS SELECT * FROM core.residents WHERE source_id = %s LIMIT 1", (SONDUONG,))
        conn.execute("UPDATE extra SET citizen_id = '999999999999', source_key = 'not-backed-up'")
        conn.execute("INSERT INTO core.residents SELECT * FROM extra")
    damaged = _fingerprint(services)

    plan = restore_dataset(services, "residents")
    assert not plan.applied and plan.target_schema == "core"
    assert (plan.plan["insert"], plan.plan["update"], plan.plan["delete"]) == (3, 1, 1)
    assert plan.plan["by_source"] == {SONDUONG: {"insert": 3, "update": 1, "delete": 1}}
    assert _fingerprint(services) == damaged and _restores_logged(services) == 0

    code = run_restore("residents", source_id=None, as_of_run=None, target_schema="core", confirm=False,
                       services=services)
    out = capsys.readouterr()
    assert code == 0 and '"insert": 3' in out.out and "--confirm" in out.err
    assert _fingerprint(services) == damaged

    code = run_restore("residents", source_id=SONDUONG, as_of_run=None, target_schema="core", confirm=True,
                       services=services)
    assert code == 0 and _fingerprint(services) == good
    with psycopg.connect(services.platform_dsn) as conn:
        logged = conn.execute("SELECT count(*) FROM ops.restores WHERE target_schema = 'core' AND matches_platform"
                              " AND source_id = %s", (SONDUONG,)).fetchone()[0]
    assert logged == 1


# -- signed manifests -------------------------------------------------------------------------------


def test_restore_refuses_a_data_file_modified_with_its_manifest(world, services: Services) -> None:
    _two_nights(services, world, sources=(SONDUONG,))
    key = _manifests(services, f"backups/{SONDUONG}/residents/")[0]
    manifest = storage.get_json(services.s3, key)
    valid = manifest["objects"]["valid"]
    table = pq.read_table(io.BytesIO(storage.get_bytes(services.s3, valid["key"]))).to_pandas()
    table.loc[0, "full_name"] = "Người Khác"
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(table, preserve_index=False), buf)
    data = buf.getvalue()
    # The tamperer rewrites the data file and fixes every checksum the manifest carries.
    client = storage._client(services.s3)
    client.put_object(Bucket=services.s3.bucket, Key=valid["key"], Body=data, ServerSideEncryption="AES256",
                      Metadata={"sha256": storage.sha256_bytes(data)})
    manifest["objects"]["valid"] = {**valid, "sha256": storage.sha256_bytes(data), "size": len(data)}
    body = json.dumps(manifest, ensure_ascii=False, indent=2, sort_keys=True).encode("utf-8")
    client.put_object(Bucket=services.s3.bucket, Key=key, Body=body, ServerSideEncryption="AES256",
                      Metadata={"sha256": storage.sha256_bytes(body)})

    with pytest.raises(RestoreError, match="signature does not match"):
        restore_dataset(services, "residents", target_schema="scratch_tampered")
    with psycopg.connect(services.platform_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname = 'scratch_tampered'").fetchone()[0] == 0
    # Without the key nothing can be verified: refused too.
    keyless = Services(platform_dsn=services.platform_dsn, s3=services.s3, smtp=services.smtp, signing_key=None)
    other = _manifests(services, f"backups/{SONDUONG}/residents/")[1]
    with pytest.raises(RestoreError, match="no backup signing key"):
        restore_dataset(keyless, "residents", target_schema="scratch_keyless")
    # Another key: named as such.
    wrong = Services(platform_dsn=services.platform_dsn, s3=services.s3, smtp=services.smtp, signing_key="x" * 64)
    with pytest.raises(RestoreError, match="signed with key"):
        restore_dataset(wrong, "residents", target_schema="scratch_wrong")
    assert storage.get_json(services.s3, other)["signature"]["algorithm"] == "HMAC-SHA256"


def test_backup_without_a_signing_key_is_refused(world, services: Services) -> None:
    keyless = Services(platform_dsn=services.platform_dsn, s3=services.s3, smtp=services.smtp, signing_key=None)
    prepare_run(keyless, "r1")
    with pytest.raises(storage.SignatureError, match="no backup signing key"):
        _backed_up(keyless, world, SONDUONG, "residents", "r1")
    assert _manifests(services) == []


# -- retention never expires what a restore needs ---------------------------------------------------


def test_retention_keeps_every_loaded_backup_and_expires_attempts_that_never_loaded(world, services: Services) -> None:
    from datetime import UTC, datetime, timedelta

    from sapnhap.restore import expire_backups

    prepare_run(services, "r1")
    loaded = _load(services, world, SONDUONG, "residents", "r1")  # the first full load: every restore replays it
    unloaded = _backed_up(services, world, SONDUONG, "residents", "r1")  # an attempt whose load never ran
    # The rule of the previous release expired every backup after the retention, the first full load too.
    client = storage._client(services.s3)
    client.put_bucket_lifecycle_configuration(Bucket=services.s3.bucket, LifecycleConfiguration={"Rules": [
        {"ID": storage.RETENTION_RULE_ID, "Filter": {"Prefix": "backups/"}, "Status": "Enabled",
         "Expiration": {"Days": 30}},
        {"ID": "reports", "Filter": {"Prefix": "reports/"}, "Status": "Enabled", "Expiration": {"Days": 90}}]})
    storage.ensure_bucket(services.s3, retention_days=30)
    rules = client.get_bucket_lifecycle_configuration(Bucket=services.s3.bucket)["Rules"]
    assert [r["ID"] for r in rules] == ["reports"]  # no rule deletes current backups by age; others' rules stay

    assert expire_backups(services, 30)["expired"] == []  # nothing is old yet
    later = datetime.now(UTC) + timedelta(days=400)
    result = expire_backups(services, 30, now=later)
    remaining = storage.list_keys(services.s3, "backups/")
    assert result["expired"] and all(k.startswith(unloaded["prefix"]) for k in result["expired"])
    assert not any(k.startswith(unloaded["prefix"]) for k in remaining)
    needed = storage.get_json(services.s3, loaded["manifest_key"])
    assert {o["key"] for o in needed["objects"].values()} | {loaded["manifest_key"]} <= set(remaining)
    report = restore_dataset(services, "residents", target_schema="scratch_after_retention", compare=True)
    assert report.matches_platform and report.rows > 0

    with psycopg.connect(services.platform_dsn) as conn:
        conn.execute("DELETE FROM ops.batches")
    with pytest.raises(RestoreError, match="retention refused"):
        expire_backups(services, 30, now=later)
    assert storage.list_keys(services.s3, "backups/") == remaining
    # The platform lost its ops records: the restore falls back to every signed backup in the bucket.
    fallback = restore_dataset(services, "residents", target_schema="scratch_ops_lost", compare=True)
    assert fallback.matches_platform and fallback.batches == [loaded["batch_id"]]


# -- Object Lock ---------------------------------------------------------------------------------------


def test_bucket_with_object_lock_keeps_every_version_for_the_retention(s3_server: str, monkeypatch) -> None:
    cfg = S3Config(bucket=f"t-lock-{uuid.uuid4().hex[:10]}", endpoint_url=s3_server, access_key="test",
                   secret_key="test")
    with pytest.raises(ValueError, match="needs a retention"):
        storage.ensure_bucket(cfg, object_lock="governance")
    storage.ensure_bucket(cfg, retention_days=30, object_lock="governance")
    storage.ensure_bucket(cfg, retention_days=30, object_lock="governance")  # idempotent on the existing bucket
    conf = storage._client(cfg).get_object_lock_configuration(Bucket=cfg.bucket)["ObjectLockConfiguration"]
    assert conf["ObjectLockEnabled"] == "Enabled"
    assert (conf["Rule"]["DefaultRetention"]["Mode"], conf["Rule"]["DefaultRetention"]["Days"]) == ("GOVERNANCE", 30)
    assert storage.object_lock_mode(cfg) == "GOVERNANCE"
    rules = storage._client(cfg).get_bucket_lifecycle_configuration(Bucket=cfg.bucket)["Rules"]
    assert [(r["Filter"]["Prefix"], r["NoncurrentVersionExpiration"]["NoncurrentDays"]) for r in rules] == [
        ("backups/", 30)] and not any("Expiration" in r for r in rules)  # only replaced versions expire

    stored = storage.put_bytes(cfg, "backups/s/residents/2025-12-01/r1/a/manifest.json", b"{}", once=True)
    head = storage._client(cfg).head_object(Bucket=cfg.bucket, Key=stored.key)
    assert head["ObjectLockMode"] == "GOVERNANCE"
    with pytest.raises(storage.BackupError, match="AccessDenied"):
        storage.delete_object(cfg, stored.key)  # no version can be removed before its retention ends
    assert storage.get_bytes(cfg, stored.key, stored.sha256) == b"{}"

    plain = S3Config(bucket=f"t-plain-{uuid.uuid4().hex[:10]}", endpoint_url=s3_server, access_key="test",
                     secret_key="test")
    storage.ensure_bucket(plain)
    assert storage.object_lock_mode(plain) is None
    with pytest.raises(storage.BackupError, match="without Object Lock"):
        storage.ensure_bucket(plain, retention_days=30, object_lock="compliance")

    monkeypatch.setenv(storage.OBJECT_LOCK_ENV, "Compliance")
    assert storage.object_lock_from_env() == "COMPLIANCE"
    monkeypatch.setenv(storage.OBJECT_LOCK_ENV, "forever")
    with pytest.raises(ValueError, match="governance or compliance"):
        storage.object_lock_from_env()
    monkeypatch.delenv(storage.OBJECT_LOCK_ENV)
    assert storage.object_lock_from_env() is None
