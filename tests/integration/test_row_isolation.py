"""One row never fails a batch: text cleaned at the boundary, refused rows quarantined (real PostgreSQL, S3)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import psycopg
import pytest
from legacy_sqlite import bacquang_dossiers_source, dossier, sqlite_legacy, sync

from sapnhap.load import merge_batch
from sapnhap.services import Services
from sapnhap.sources import get_source
from sapnhap.sync.prepare import prepare_run
from sapnhap.transform import transform_frame

pytestmark = pytest.mark.integration


def test_nul_in_an_address_loads_cleaned_flagged_and_counted(tmp_path: Path, platform_dsn: str, s3_config, smtp_sink) -> None:
    services = Services(platform_dsn=platform_dsn, s3=s3_config, smtp=smtp_sink[0])
    source = bacquang_dossiers_source()
    mojibake = "Tráº§n Thá»‹ BÃ¬nh"
    rows = [dossier("BQ-1"), dossier("BQ-2", address="Thôn\x00 Khuổi\u00a0Lác"), dossier("BQ-3")]
    rows[2]["applicant"] = mojibake
    connection = sqlite_legacy(tmp_path / "bacquang.db", rows)
    prepare_run(services, "run-1")
    counts = sync(services, source, connection, "run-1")
    assert (counts["inserted"], counts["quarantined"]) == (3, 0)
    with psycopg.connect(platform_dsn) as conn:
        address = conn.execute("SELECT address_detail FROM core.dossiers WHERE dossier_code = 'BQ-2'").fetchone()[0]
        name = conn.execute("SELECT applicant_name FROM core.dossiers WHERE dossier_code = 'BQ-3'").fetchone()[0]
        batch = conn.execute("SELECT text_cleaned, text_repaired FROM ops.batches WHERE run_id = 'run-1'").fetchone()
    assert address == "Thôn Khuổi Lác"
    assert name == "Trần Thị Bình"
    assert batch == (1, 1)
    # The raw backup keeps what the legacy system held.
    import io

    import pyarrow.parquet as pq

    from sapnhap import storage

    (raw_key,) = [k for k in storage.list_keys(s3_config, "") if k.endswith("raw.parquet")]
    raw = pq.read_table(io.BytesIO(storage.get_bytes(s3_config, raw_key))).to_pandas().set_index("file_no")
    assert raw.loc["BQ-2", "address"] == "Thôn\x00 Khuổi\u00a0Lác"
    assert raw.loc["BQ-3", "applicant"] == mojibake


def _steps(rows: list[dict]) -> pd.DataFrame:
    raw = pd.DataFrame(rows)
    return transform_frame(raw, get_source("hg_vixuyen_motcua"), "dossier_steps").frame


def _step(code: str, no: str, handler: str = "Nguyễn Văn Ba") -> dict:
    return {"ma_ho_so": code, "buoc": no, "ten_buoc": "Tiếp nhận", "can_bo_xu_ly": handler,
            "thoi_gian_bat_dau": "01/02/2024 08:00:00", "thoi_gian_ket_thuc": None,
            "ngay_cap_nhat": "01/02/2024 08:00:00"}


def test_rows_the_platform_refuses_are_quarantined_with_key_column_reason_and_the_rest_loads(platform_dsn: str) -> None:
    frame = _steps([_step("HS1", "1"), _step("HS1", "2"), _step("HS2", "99999999999"), _step("HS3", "1"),
                    _step("HS4", "1"), _step("HS5", "1")])
    # A NUL that reached the load (the cleaning is the first guard; COPY refusal handling the last).
    frame.loc[frame["dossier_code"] == "HS4", "handler"] = "Lê\x00 Văn Tư"
    with psycopg.connect(platform_dsn) as conn, conn.transaction():
        counts = merge_batch(conn, dataset="dossier_steps", batch_id="run-1|hg_vixuyen_motcua|dossier_steps", valid=frame)
    assert (counts.inserted, counts.quarantined) == (4, 2)
    assert counts.reconciles()
    with psycopg.connect(platform_dsn) as conn:
        loaded = conn.execute("SELECT dossier_code, step_no FROM core.dossier_steps ORDER BY 1, 2").fetchall()
        quarantined = conn.execute(
            """SELECT source_key, column_name, reason_vi, fix_vi, value_masked, payload->>'dossier_code'
               FROM ops.quarantine WHERE expectation = 'platform_refused' ORDER BY source_key"""
        ).fetchall()
    assert loaded == [("HS1", 1), ("HS1", 2), ("HS3", 1), ("HS5", 1)]
    assert [(q[0], q[1]) for q in quarantined] == [("HS2|99999999999", "step_no"), ("HS4|1", "handler")]
    assert "phạm vi" in quarantined[0][2] and "NUL" in quarantined[1][2]
    assert all(q[3] and q[4] is None for q in quarantined)
    assert [q[5] for q in quarantined] == ["HS2", "HS4"]
    # Nothing of the refused values is in the reasons.
    assert not any("99999999999" in q[2] or "Văn Tư" in q[2] for q in quarantined)


def test_a_refused_row_through_the_nightly_stages_reconciles_and_stays_open(
    tmp_path: Path, platform_dsn: str, s3_config, smtp_sink
) -> None:
    import sqlite3

    from legacy_sqlite import sync as sync_stages

    services = Services(platform_dsn=platform_dsn, s3=s3_config, smtp=smtp_sink[0])
    source = get_source("hg_vixuyen_motcua")
    steps_mapping = source.datasets["dossier_steps"].model_copy(update={"cursor_lookback": None})
    source = source.model_copy(update={"kind": "sqlite", "datasets": {"dossier_steps": steps_mapping}})
    path = tmp_path / "steps.db"
    steps = [_step("HS1", "1"), _step("HS1", "2"), _step("HS2", "99999999999")]
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE qua_trinh_xu_ly (ma_ho_so, buoc, ten_buoc, can_bo_xu_ly, thoi_gian_bat_dau,"
                   " thoi_gian_ket_thuc, ngay_cap_nhat)")
        db.executemany("INSERT INTO qua_trinh_xu_ly VALUES (?, ?, ?, ?, ?, ?, ?)", [tuple(s.values()) for s in steps])
    for run in ("run-1", "run-2"):
        prepare_run(services, run)
        counts = sync_stages(services, source, f"sqlite://{path}", run, dataset="dossier_steps")
        assert (counts["status"], counts["quarantined"], counts["extracted"]) == ("loaded", 1, 3)
    with psycopg.connect(platform_dsn) as conn:
        recon = conn.execute(
            "SELECT extracted, loaded, quarantined, ok FROM ops.reconciliation ORDER BY run_id").fetchall()
        refused = conn.execute(
            "SELECT source_key, column_name, status, last_batch_id FROM ops.quarantine WHERE expectation = 'platform_refused'"
        ).fetchall()
        batches = conn.execute("SELECT quarantined FROM ops.batches ORDER BY run_id").fetchall()
    assert recon == [(3, 2, 1, True), (3, 2, 1, True)]
    assert refused == [("HS2|99999999999", "step_no", "open", "run-2|hg_vixuyen_motcua|dossier_steps")]
    assert batches == [(1,), (1,)]


def test_a_platform_fault_refusing_every_row_fails_the_batch_and_names_no_value(
    platform_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sapnhap import load

    monkeypatch.setattr(load, "MAX_REFUSED", 2)
    frame = _steps([_step(f"HS{i}", "1") for i in range(6)])
    # A DBA narrowed a column: every row is refused, which is the platform's fault, not the rows'.
    with psycopg.connect(platform_dsn) as conn:
        conn.execute("ALTER TABLE core.dossier_steps ALTER COLUMN handler TYPE varchar(3)")
    with psycopg.connect(platform_dsn) as conn, pytest.raises(load.LoadRefusedError) as err, conn.transaction():
        merge_batch(conn, dataset="dossier_steps", batch_id="b1", valid=frame)
    assert "handler" in str(err.value) and "Nguyễn" not in str(err.value)
    with psycopg.connect(platform_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM core.dossier_steps").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM ops.quarantine").fetchone()[0] == 0


def test_a_value_too_long_for_the_platform_column_is_quarantined_alone(platform_dsn: str) -> None:
    with psycopg.connect(platform_dsn) as conn:
        conn.execute("ALTER TABLE core.dossier_steps ALTER COLUMN handler TYPE varchar(20)")
    frame = _steps([_step("HS1", "1"), _step("HS2", "1", handler="Nguyễn Thị Phương Thảo Nguyên Khôi"), _step("HS3", "1")])
    with psycopg.connect(platform_dsn) as conn, conn.transaction():
        counts = merge_batch(conn, dataset="dossier_steps", batch_id="b1", valid=frame)
    assert (counts.inserted, counts.quarantined) == (2, 1)
    with psycopg.connect(platform_dsn) as conn:
        row = conn.execute("SELECT source_key, column_name, reason_vi FROM ops.quarantine").fetchone()
    assert row[:2] == ("HS2|1", "handler") and "dài hơn" in row[2]
