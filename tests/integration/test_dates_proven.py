"""Dates proven, not assumed: a dd/mm system configured as mm/dd blocks its dataset (real PostgreSQL, S3)."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from legacy_sqlite import bacquang_dossiers_source, dossier, sqlite_legacy, sync

from sapnhap import storage
from sapnhap.services import Services
from sapnhap.sync.backup import backup_stage
from sapnhap.sync.extract import extract_stage
from sapnhap.sync.load import load_stage
from sapnhap.sync.prepare import prepare_run
from sapnhap.sync.transform import transform_stage
from sapnhap.sync.validate import validate_stage

pytestmark = pytest.mark.integration


def test_swapped_date_format_blocks_the_dataset_naming_column_and_counts(
    tmp_path: Path, platform_dsn: str, s3_config, smtp_sink
) -> None:
    services = Services(platform_dsn=platform_dsn, s3=s3_config, smtp=smtp_sink[0])
    source = bacquang_dossiers_source()
    mapping = source.datasets["dossiers"].model_copy(update={"date_format": "%m/%d/%Y"})
    source = source.model_copy(update={"datasets": {"dossiers": mapping}})
    # A dd/mm/yyyy system: three days above 12 (impossible months under mm/dd), five that would swap.
    received = ["13/03/2024", "20/03/2024", "25/03/2024", "03/04/2024", "05/03/2024", "07/02/2024",
                "08/01/2024", "09/04/2024"]
    rows = [dossier(f"BQ-{i}", recv=r, due="01/01/2025") for i, r in enumerate(received)]
    connection = sqlite_legacy(tmp_path / "bacquang.db", rows)
    prepare_run(services, "run-1")
    batch = extract_stage(services, source, "dossiers", connection, run_id="run-1", run_date="2026-11-20")
    batch = transform_stage(services, source, batch)
    validate_stage(services, source, batch)  # a retried task writes the reason once
    counts = load_stage(services, source, backup_stage(services, source, validate_stage(services, source, batch)))
    assert counts["status"] == "blocked"
    assert counts["inserted"] == 0
    with psycopg.connect(platform_dsn) as conn:
        loaded = conn.execute("SELECT count(*) FROM core.dossiers").fetchone()[0]
        message, decision, manifest_key = conn.execute(
            "SELECT message, decision, manifest_key FROM ops.batches WHERE run_id = 'run-1'").fetchone()
        cursor = conn.execute("SELECT count(*) FROM ops.cursors").fetchone()[0]
    assert loaded == 0 and decision == "block" and cursor == 0
    assert "received_date" in message and "%m/%d/%Y" in message
    assert "3 giá trị chỉ đọc được theo ngày/tháng/năm" in message and message.count("received_date") == 1
    assert not any(r in message for r in received)
    manifest = storage.get_json(s3_config, manifest_key)
    validation = storage.get_json(s3_config, manifest["objects"]["validation"]["key"])
    (proof,) = [r for r in validation["results"] if r["expectation"] == "date_format_proven"]
    assert proof["column"] == "received_date" and proof["evidence"]["day_month_only"] == 3

    # Fixed in the source file, the same rows load with the right dates.
    fixed = source.model_copy(update={"datasets": {"dossiers": mapping.model_copy(update={"date_format": "%d/%m/%Y"})}})
    prepare_run(services, "run-2")
    assert sync(services, fixed, connection, "run-2")["inserted"] == len(received)
    with psycopg.connect(platform_dsn) as conn:
        day = conn.execute("SELECT received_date::text FROM core.dossiers WHERE dossier_code = 'BQ-3'").fetchone()[0]
    assert day == "2024-04-03"


def test_assessment_names_the_date_column_before_the_first_load(
    tmp_path: Path, platform_dsn: str, s3_config, smtp_sink
) -> None:
    from sapnhap.assessment import assess_source

    services = Services(platform_dsn=platform_dsn, s3=s3_config, smtp=smtp_sink[0])
    source = bacquang_dossiers_source()
    mapping = source.datasets["dossiers"].model_copy(update={"date_format": "%m/%d/%Y"})
    source = source.model_copy(update={"datasets": {"dossiers": mapping}})
    received = [f"{d:02d}/0{m}/2024" for d in range(1, 29) for m in (3, 4)]
    rows = [dossier(f"BQ-{i}", recv=r, due="01/01/2025") for i, r in enumerate(received)]
    connection = sqlite_legacy(tmp_path / "bacquang.db", rows)
    prepare_run(services, "run-0")
    summary = assess_source(services, source, connection, run_id="run-0")
    profile = storage.get_json(s3_config, summary["profile_key"])["dossiers"]
    proof = profile["date_formats"]["received_date"]
    assert (proof["problem"], proof["day_month_only"], proof["month_day_only"]) == ("contradicts", 32, 0)
    assert profile["date_formats"]["due_date"]["problem"] is None
    with psycopg.connect(platform_dsn) as conn:
        findings = conn.execute("SELECT findings FROM ops.assessments WHERE source_id = %s", (source.id,)).fetchone()[0]
    assert any("received_date" in f and "%m/%d/%Y" in f for f in findings["dossiers"])
