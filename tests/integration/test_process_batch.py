"""The nightly's ``process`` task (transform, validate, backup, load of one batch) on real services.

A retry of the task must not rewrite a backup that already has its manifest: the manifest is
write-once and signed, and a restore verifies every object against it.
"""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

import psycopg
import pytest

from sapnhap import storage
from sapnhap.airflow_support import process_batch
from sapnhap.services import Services
from sapnhap.sources import get_source
from sapnhap.sync.backup import MANIFEST
from sapnhap.sync.extract import extract_stage
from sapnhap.sync.prepare import prepare_run

pytestmark = pytest.mark.integration

SONDUONG = "tq_sonduong_dancu"


@pytest.fixture
def world(tmp_path: Path, pg_admin_dsn: str):
    from sapnhap_dev.demo.generator import generate_world

    w = generate_world(tmp_path / "world", seed=5, size=10, pg_dsn=pg_admin_dsn, db_prefix=f"lp{uuid.uuid4().hex[:6]}")
    try:
        yield w
    finally:
        w.drop_databases()


def test_a_retried_process_loads_the_backup_it_already_wrote(world, services: Services, caplog) -> None:
    source = get_source(SONDUONG)
    prepare_run(services, "r1")
    batch = extract_stage(services, source, "residents", world.connections[source.conn_id], run_id="r1",
                          run_date="2025-12-01")
    with caplog.at_level(logging.INFO, logger="sapnhap.nightly"):
        first = process_batch(services, source, batch)
    lines = [r.getMessage() for r in caplog.records if r.name == "sapnhap.nightly"]
    assert [line.split(" ", 1)[0] for line in lines] == ["transform", "validate", "backup", "load"]
    assert first["status"] == "loaded" and first["source_id"] == SONDUONG
    key = batch["prefix"] + MANIFEST
    manifest = storage.get_json(services.s3, key)
    with psycopg.connect(services.platform_dsn) as conn:
        core_before = conn.execute("SELECT count(*) FROM core.residents WHERE source_id = %s", (SONDUONG,)).fetchone()[0]

    # The task failed after the load committed (a lost worker, an XCom push that failed): Airflow retries it.
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="sapnhap.nightly"):
        again = process_batch(services, source, batch)
    assert storage.get_json(services.s3, key) == manifest  # write-once: the same manifest
    for obj in manifest["objects"].values():
        storage.verify_object(services.s3, obj)  # and the objects it lists were not rewritten
    assert any("already backed up by an earlier try" in r.getMessage() for r in caplog.records)
    assert again["extracted"] == first["extracted"]
    with psycopg.connect(services.platform_dsn) as conn:
        core = conn.execute("SELECT count(*) FROM core.residents WHERE source_id = %s", (SONDUONG,)).fetchone()[0]
        rec = conn.execute(
            "SELECT extracted, loaded + quarantined + merged_duplicates + not_loaded_blocked FROM ops.reconciliation"
            " WHERE run_id = 'r1' AND source_id = %s AND dataset = 'residents'", (SONDUONG,)).fetchone()
    assert core == core_before == first["inserted"] and rec[0] == rec[1]  # nothing doubled


def test_a_failing_stage_is_named_on_the_error_for_the_failure_callback(world, services: Services) -> None:
    source = get_source(SONDUONG)
    prepare_run(services, "r2")
    batch = extract_stage(services, source, "households", world.connections[source.conn_id], run_id="r2",
                          run_date="2025-12-01")
    broken = {**batch, "objects": {"raw": {**batch["objects"]["raw"], "key": batch["prefix"] + "gone.parquet"}}}
    with pytest.raises(storage.BackupError) as caught:
        process_batch(services, source, broken)
    assert caught.value.sapnhap_stage == "transform"
    assert not storage.exists(services.s3, batch["prefix"] + MANIFEST)  # nothing backed up, nothing loaded
