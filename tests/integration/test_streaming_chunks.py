"""A batch larger than one chunk flows through the stages in bounded chunks, with the one-frame outcome.

The same extract (with in-batch duplicates placed in different chunks) is processed twice, on two
platforms and two buckets: once as one chunk (today's path) and once with ``SAPNHAP_CHUNK_ROWS``
a fraction of the batch. The stages of the chunked run never see more rows than a chunk (only the
whole-batch uniqueness check sees every row, and only its key columns); the manifest lists the
parts; and the core rows, quarantine, warnings, merges, hashes, cursor, reconciliation, validation
results and a restore from the backup are the same as the one-chunk run's.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pandas as pd
import psycopg
import pytest

from sapnhap import storage
from sapnhap.airflow_support import process_batch
from sapnhap.services import Services
from sapnhap.sources import get_source
from sapnhap.sync.backup import MANIFEST
from sapnhap.sync.extract import extract_stage
from sapnhap.sync.frames import CHUNK_ROWS_ENV, put_frame, read_frame
from sapnhap.sync.prepare import prepare_run

pytestmark = pytest.mark.integration

SONDUONG = "tq_sonduong_dancu"
KEY_COLUMNS = {"_row_id", "source_id", "source_key", "citizen_id"}


@pytest.fixture
def world(tmp_path: Path, pg_admin_dsn: str):
    from sapnhap_dev.demo.generator import generate_world

    w = generate_world(tmp_path / "world", seed=7, size=30, pg_dsn=pg_admin_dsn, db_prefix=f"sc{uuid.uuid4().hex[:6]}")
    try:
        yield w
    finally:
        w.drop_databases()


@pytest.fixture
def other_services(pg_admin_dsn: str, s3_server: str, smtp_sink):  # noqa: ANN201
    """A second platform and bucket, for the same batch processed the other way."""
    from conftest import _with_db
    from sapnhap.platform import ensure_platform
    from sapnhap.services import S3Config

    name = f"sapnhap_t_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    dsn = _with_db(pg_admin_dsn, name)
    ensure_platform(dsn)
    cfg = S3Config(bucket=f"t-{uuid.uuid4().hex[:12]}", endpoint_url=s3_server, access_key="test", secret_key="test")
    storage.ensure_bucket(cfg)
    try:
        yield Services(platform_dsn=dsn, s3=cfg, smtp=smtp_sink[0])
    finally:
        with psycopg.connect(pg_admin_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _extract_with_duplicates(services: Services, world, run_id: str) -> dict:
    """The residents batch, with rows repeating a record and a citizen id placed far from their twins."""
    source = get_source(SONDUONG)
    prepare_run(services, run_id)
    batch = extract_stage(services, source, "residents", world.connections[source.conn_id], run_id=run_id,
                          run_date="2025-12-01")
    raw = read_frame(services, batch["objects"]["raw"])
    same_record = raw.iloc[[0, 1]].copy()  # read twice: the later copy (a newer update) wins
    same_record["ho_ten"] = same_record["ho_ten"].astype(str) + " B"
    same_record["thoi_diem_cap_nhat"] = "2026-11-30 10:00:00"
    same_key = raw.iloc[[2]].copy()  # another legacy row with the citizen id of row 2: merged into the newer
    same_key["id_nhan_khau"] = same_key["id_nhan_khau"].astype(str) + "0000"
    same_key["thoi_diem_cap_nhat"] = "2026-11-30 11:00:00"
    middle = len(raw) // 2
    raw = pd.concat([raw.iloc[:middle], same_key, raw.iloc[middle:], same_record], ignore_index=True)
    raw = raw.astype({c: raw[c].dtype for c in raw.columns})
    obj = put_frame(services, batch["prefix"] + "raw.parquet", raw)
    with psycopg.connect(services.platform_dsn) as conn:  # as the extract records a batch of these rows
        conn.execute("UPDATE ops.batches SET extracted = %s WHERE batch_id = %s", (len(raw), batch["batch_id"]))
    return {**batch, "rows": len(raw), "objects": {"raw": obj}}


class _Seen:
    """The largest frame each spied stage function was handed."""

    def __init__(self) -> None:
        self.rows: dict[str, int] = {}
        self.whole_batch_columns: list[set[str]] = []

    def spy(self, monkeypatch, module, name: str, arg: int = 0) -> None:  # noqa: ANN001
        real = getattr(module, name)

        def wrapper(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            frame = args[arg]
            self.rows[name] = max(self.rows.get(name, 0), len(frame))
            return real(*args, **kwargs)

        monkeypatch.setattr(module, name, wrapper)


def _outcome(services: Services, run_id: str) -> dict:
    with psycopg.connect(services.platform_dsn) as conn:
        core = conn.execute(
            """SELECT source_id, source_key, citizen_id, full_name, birth_date, gender, new_commune_code,
                      mapping_status, record_hash, legacy_row_hash, record_era
               FROM core.residents ORDER BY source_id, source_key""").fetchall()
        quarantine = conn.execute(
            """SELECT source_key, record_hash, expectation, column_name, value_masked, reason_vi, severity,
                      payload::text FROM ops.quarantine ORDER BY 1, 3, 4""").fetchall()
        warnings = conn.execute(
            "SELECT source_key, expectation, column_name, value_masked FROM ops.warnings ORDER BY 1, 2, 3").fetchall()
        merged = conn.execute(
            """SELECT natural_key, source_key, kept_source_key, reason, legacy_row_hash FROM ops.merged_duplicates
               ORDER BY 1, 2""").fetchall()
        reconciliation = conn.execute(
            """SELECT extracted, loaded, quarantined, merged_duplicates, not_loaded_blocked, ok
               FROM ops.reconciliation WHERE run_id = %s""", (run_id,)).fetchall()
        cursor = conn.execute("SELECT cursor_value FROM ops.cursors WHERE source_id = %s AND dataset = 'residents'",
                              (SONDUONG,)).fetchall()
    return {"core": core, "quarantine": quarantine, "warnings": warnings, "merged": merged,
            "reconciliation": reconciliation, "cursor": cursor}


def _results(services: Services, manifest: dict) -> list[tuple]:
    validation = storage.get_json(services.s3, manifest["objects"]["validation"]["key"])
    return [(r["check"], r["success"], r["unexpected_count"], r["unexpected_percent"]) for r in validation["results"]] + [
        (validation["decision"], validation["failed_ratio"])]


def test_a_batch_larger_than_a_chunk_is_processed_in_chunks_with_the_one_frame_outcome(
        world, services: Services, other_services: Services, monkeypatch) -> None:
    import sapnhap.load as load
    import sapnhap.quality.validate as validate
    import sapnhap.transform as transform
    from sapnhap.restore import RestoreError, restore_dataset

    source = get_source(SONDUONG)
    # One chunk: today's path.
    monkeypatch.delenv(CHUNK_ROWS_ENV, raising=False)
    whole_batch = _extract_with_duplicates(services, world, "r1")
    whole = process_batch(services, source, whole_batch)
    whole_manifest = storage.get_json(services.s3, whole_batch["prefix"] + MANIFEST)
    assert "parts" not in whole_manifest["objects"]["transformed"]
    assert whole["merged_in_batch"] >= 3 and whole["quarantined"] > 0

    # The same extract in chunks of about a quarter of it.
    batch = _extract_with_duplicates(other_services, world, "r1")
    assert batch["rows"] == whole_batch["rows"]
    chunk = batch["rows"] // 4 + 1
    monkeypatch.setenv(CHUNK_ROWS_ENV, str(chunk))
    seen = _Seen()
    seen.spy(monkeypatch, transform, "prepare_rows")
    seen.spy(monkeypatch, transform, "finish_rows")
    seen.spy(monkeypatch, load, "_prepare")
    real_run_gx = validate._run_gx

    def run_gx(work, ds, suite, to_run, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        if all(e["type"] in validate.WHOLE_BATCH for e in to_run):
            seen.whole_batch_columns.append(set(work.columns))
        else:
            seen.rows["_run_gx"] = max(seen.rows.get("_run_gx", 0), len(work))
        return real_run_gx(work, ds, suite, to_run, *args, **kwargs)

    monkeypatch.setattr(validate, "_run_gx", run_gx)
    chunked = process_batch(other_services, source, batch)

    # No stage held more than a chunk of rows; the uniqueness check saw the whole batch's keys only.
    assert set(seen.rows) == {"prepare_rows", "finish_rows", "_prepare", "_run_gx"}
    assert all(0 < n <= chunk for n in seen.rows.values()), seen.rows
    assert seen.whole_batch_columns and all(cols <= KEY_COLUMNS for cols in seen.whole_batch_columns)
    manifest = storage.get_json(other_services.s3, batch["prefix"] + MANIFEST)
    for name in ("transformed", "valid"):
        parts = manifest["objects"][name]["parts"]
        assert len(parts) >= 4 and all(0 <= p["rows"] <= chunk for p in parts)
        assert all(set(p) == {"key", "sha256", "size", "rows"} for p in parts)
    assert sum(p["rows"] for p in manifest["objects"]["transformed"]["parts"]) == manifest["counts"]["transformed"]
    assert sum(p["rows"] for p in manifest["objects"]["valid"]["parts"]) == manifest["counts"]["valid"]
    storage.verify_manifest_signature(manifest, other_services.signing_key, name="chunked manifest")

    # The outcome is the one frame's.
    assert {k: v for k, v in chunked.items() if k != "batch_id"} == {k: v for k, v in whole.items() if k != "batch_id"}
    assert manifest["counts"] == whole_manifest["counts"]
    assert _outcome(other_services, "r1") == _outcome(services, "r1")
    assert _results(other_services, manifest) == _results(services, whole_manifest)
    for name in ("transformed", "valid", "merged_in_batch"):
        pd.testing.assert_frame_equal(read_frame(other_services, manifest["objects"][name]),
                                      read_frame(services, whole_manifest["objects"][name]), check_dtype=False)
    for name in ("quarantine", "warnings"):  # the same rows (GX orders one frame's checks its own way)
        ours, theirs = (read_frame(s, m["objects"][name]).sort_values(["_row_id", "check"], ignore_index=True)
                        for s, m in ((other_services, manifest), (services, whole_manifest)))
        assert len(ours) and ours.equals(theirs) or pd.testing.assert_frame_equal(ours, theirs, check_dtype=False)

    # A rerun of the committed batch redoes nothing; a restore reads the parts back to the same table.
    again = process_batch(other_services, source, batch)
    assert again == chunked
    report = restore_dataset(other_services, "residents", target_schema="restored", compare=True)
    assert report.matches_platform and report.rows == len(_outcome(services, "r1")["core"])

    # Every part is checked against the manifest: one part replaced, and the restore refuses to start.
    part = manifest["objects"]["valid"]["parts"][1]
    storage.put_bytes(other_services.s3, part["key"], b"not the backed-up rows")
    with pytest.raises(RestoreError, match="valid of batch"):
        restore_dataset(other_services, "residents", target_schema="restored2", compare=True)
