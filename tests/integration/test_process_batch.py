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


def _data_docs_key(services: Services, batch_id: str) -> str | None:
    with psycopg.connect(services.platform_dsn) as conn:
        return conn.execute("SELECT data_docs_key FROM ops.batches WHERE batch_id = %s", (batch_id,)).fetchone()[0]


def test_a_batch_of_no_rows_runs_no_checks_and_a_clean_batch_has_no_data_docs(world, services: Services,
                                                                              monkeypatch) -> None:
    import pandas as pd

    import sapnhap.quality.validate as validate
    import sapnhap.reference.platform as reference_platform
    from sapnhap.sync.frames import put_frame, read_frame

    source = get_source(SONDUONG)
    prepare_run(services, "r1")
    batch = extract_stage(services, source, "residents", world.connections[source.conn_id], run_id="r1",
                          run_date="2025-12-01")
    first = process_batch(services, source, batch)
    manifest = storage.get_json(services.s3, batch["prefix"] + MANIFEST)
    # A batch with failing rows: its Data Docs beside its manifest, and the UI's link to them.
    assert first["quarantined"] > 0 and manifest["data_docs"]
    assert _data_docs_key(services, batch["batch_id"]) == batch["prefix"] + "data_docs/index.html"
    assert _data_docs_key(services, batch["batch_id"]) in manifest["data_docs"]

    # The next night nothing changed in the legacy system: a batch of no rows.
    prepare_run(services, "r2")
    batch = extract_stage(services, source, "residents", world.connections[source.conn_id], run_id="r2",
                          run_date="2025-12-02")
    raw = read_frame(services, batch["objects"]["raw"]).iloc[0:0]
    batch = {**batch, "rows": 0, "objects": {"raw": put_frame(services, batch["prefix"] + "raw.parquet", raw)}}

    def not_for_no_rows(*args, **kwargs) -> pd.DataFrame:  # noqa: ARG001
        raise AssertionError("work done for a batch of no rows")

    monkeypatch.setattr(validate, "_gx_state", not_for_no_rows)  # no Great Expectations
    monkeypatch.setattr(reference_platform, "load_decisions", not_for_no_rows)  # no review decisions read
    monkeypatch.setattr(reference_platform, "enqueue_reviews", not_for_no_rows)  # nothing to queue
    second = process_batch(services, source, batch)
    assert second["status"] == "loaded"
    assert [second[k] for k in ("extracted", "inserted", "updated", "unchanged", "quarantined")] == [0] * 5
    assert storage.get_json(services.s3, batch["prefix"] + MANIFEST)["data_docs"] == []
    assert _data_docs_key(services, batch["batch_id"]) is None  # no failure, no Data Docs, no link
    with psycopg.connect(services.platform_dsn) as conn:
        ok = conn.execute("SELECT ok, extracted FROM ops.reconciliation WHERE run_id = 'r2'").fetchone()
    assert ok == (True, 0)
