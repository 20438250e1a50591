"""A file that cannot be read is quarantined as a file; the source's other files load (real PostgreSQL, S3).

Nothing of a quarantined file's content reaches a log line, an exception or the platform.
"""

from __future__ import annotations

import logging
from pathlib import Path

import psycopg
import pytest
from legacy_sqlite import bacquang_dossiers_source, dossier, sqlite_legacy, sync

from sapnhap import storage
from sapnhap.corrections import correction_prefix
from sapnhap.services import Services
from sapnhap.sources import SourceConfigError, get_source
from sapnhap.sync.prepare import prepare_run

pytestmark = pytest.mark.integration

HEADER = "Mã NK,Số CCCD,Họ và tên,Ngày sinh,Giới tính,Mã hộ,Quan hệ với chủ hộ,Mã xã,Thôn/Tổ,Ngày đăng ký,Ngày cập nhật"
SECRET_ID, SECRET_NAME, SECRET_BIRTH = "008190001234", "Phạm Thị Huyền", "17/09/1990"


def _row(key: str, cid: str, name: str, birth: str) -> str:
    return f"{key},{cid},{name},{birth},0,H{key},Chủ hộ,02431,Thôn Đồng Tâm,01/03/2020,02/03/2024 08:00:00"


def _residents_source():
    source = get_source("tq_yenson_xa_exports")
    return source.model_copy(update={"datasets": {"residents": source.datasets["residents"]}})


@pytest.fixture
def services(platform_dsn: str, s3_config, smtp_sink) -> Services:
    return Services(platform_dsn=platform_dsn, s3=s3_config, smtp=smtp_sink[0])


def test_unreadable_export_files_are_quarantined_and_the_others_load(
    tmp_path: Path, services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "exports"
    folder.mkdir()
    (folder / "nhan_khau_02431.csv").write_text(
        "\n".join([HEADER, _row("1", "008180000001", "Nguyễn Văn An", "01/02/1980")]) + "\n", encoding="utf-8-sig"
    )
    # No header: the first line is a real person's record.
    (folder / "nhan_khau_02434.csv").write_text(_row("7", SECRET_ID, SECRET_NAME, SECRET_BIRTH) + "\n", encoding="utf-8")
    # Windows-125x bytes in a source declared UTF-8.
    (folder / "nhan_khau_02437.csv").write_bytes(
        ("\n".join([HEADER, _row("8", SECRET_ID, "Phạm Thị Huyền", SECRET_BIRTH)]) + "\n").encode("cp1252", "replace")
    )
    # A column the source file maps is missing.
    (folder / "nhan_khau_02440.csv").write_text(
        "Mã NK,Số CCCD,Họ và tên\n9," + SECRET_ID + "," + SECRET_NAME + "\n", encoding="utf-8"
    )
    # Semicolons for commas (a spreadsheet's regional setting).
    (folder / "nhan_khau_02443.csv").write_text(
        "\n".join([HEADER.replace(",", ";"), _row("9", SECRET_ID, SECRET_NAME, SECRET_BIRTH).replace(",", ";")]) + "\n",
        encoding="utf-8",
    )
    source = _residents_source()
    prepare_run(services, "run-1")
    with caplog.at_level(logging.DEBUG):
        counts = sync(services, source, str(folder), "run-1", dataset="residents")
    assert (counts["status"], counts["inserted"], counts["extracted"]) == ("loaded", 1, 1)
    with psycopg.connect(services.platform_dsn) as conn:
        files = conn.execute(
            "SELECT file_name, kind, reason_vi, fix_vi, status FROM ops.quarantined_files ORDER BY file_name"
        ).fetchall()
        loaded_files = [r[0] for r in conn.execute("SELECT file_name FROM ops.source_files").fetchall()]
        everything = str(conn.execute("SELECT * FROM ops.quarantined_files").fetchall())
        everything += str(conn.execute("SELECT * FROM ops.batches").fetchall())
    assert [f[0] for f in files] == ["nhan_khau_02434.csv", "nhan_khau_02437.csv", "nhan_khau_02440.csv",
                                     "nhan_khau_02443.csv"]
    assert all(f[1] == "export" and f[3] and f[4] == "open" for f in files)
    assert "tiêu đề" in files[0][2] and "bảng mã" in files[1][2] and "thiếu các cột" in files[2][2]
    assert "chấm phẩy" in files[3][2]
    assert loaded_files == ["nhan_khau_02431.csv"]
    logged = caplog.text
    for secret in (SECRET_ID, SECRET_NAME, SECRET_BIRTH, "Huy"):
        assert secret not in logged and secret not in everything

    # The next night the same bad files stay quarantined once; the source still syncs.
    prepare_run(services, "run-2")
    again = sync(services, source, str(folder), "run-2", dataset="residents")
    assert again["status"] == "loaded"
    with psycopg.connect(services.platform_dsn) as conn:
        assert conn.execute("SELECT count(*), min(last_batch_id) FROM ops.quarantined_files").fetchone() == (
            4, "run-2|tq_yenson_xa_exports|residents"
        )

    # The owner sends the header-less file again with its header: it loads and its quarantine closes.
    (folder / "nhan_khau_02434.csv").write_text(
        "\n".join([HEADER, _row("7", SECRET_ID, SECRET_NAME, SECRET_BIRTH)]) + "\n", encoding="utf-8"
    )
    prepare_run(services, "run-3")
    fixed = sync(services, source, str(folder), "run-3", dataset="residents")
    assert (fixed["status"], fixed["inserted"]) == ("loaded", 1)
    with psycopg.connect(services.platform_dsn) as conn:
        states = conn.execute(
            "SELECT file_name, status, resolved_batch_id FROM ops.quarantined_files ORDER BY file_name"
        ).fetchall()
    assert states[0] == ("nhan_khau_02434.csv", "resolved", "run-3|tq_yenson_xa_exports|residents")
    assert [s[1] for s in states[1:]] == ["open", "open", "open"]


def test_file_pattern_cannot_read_outside_the_connection_folder(tmp_path: Path, services: Services) -> None:
    from sapnhap.extract import extract_to_parquet

    other = tmp_path / "other_source"
    other.mkdir()
    (other / "nhan_khau_1.csv").write_text(HEADER + "\n" + _row("1", "008180000001", "Nguyễn Văn An", "01/02/1980"))
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "link.csv").symlink_to(other / "nhan_khau_1.csv")
    source = _residents_source()
    for pattern in ("../other_source/*.csv", str(other / "*.csv"), "*.csv"):
        mapping = source.datasets["residents"].model_copy(update={"file_pattern": pattern})
        bad = source.model_copy(update={"datasets": {"residents": mapping}})
        with pytest.raises(SourceConfigError, match=r"tq_yenson_xa_exports\.yaml: datasets\.residents\.file_pattern"):
            extract_to_parquet(bad, "residents", str(mine), tmp_path / "out.parquet")


def test_malformed_correction_workbook_is_quarantined_and_the_source_syncs(
    tmp_path: Path, services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    source = bacquang_dossiers_source()
    connection = sqlite_legacy(tmp_path / "bacquang.db", [dossier("BQ-1")])
    storage.put_bytes(services.s3, correction_prefix(source.id) + "sua-loi.xlsx", b"PK\x03\x04 not a workbook " + SECRET_ID.encode())
    storage.put_bytes(services.s3, correction_prefix(source.id) + "sua-loi-2.csv", f"ma,gia_tri\n1,{SECRET_NAME}\n".encode())
    prepare_run(services, "run-1")
    with caplog.at_level(logging.DEBUG):
        counts = sync(services, source, connection, "run-1")
    assert (counts["status"], counts["inserted"]) == ("loaded", 1)
    with psycopg.connect(services.platform_dsn) as conn:
        files = conn.execute(
            "SELECT file_name, kind, reason_vi, fix_vi FROM ops.quarantined_files ORDER BY file_name"
        ).fetchall()
    assert [(f[0].rsplit("/", 1)[1], f[1]) for f in files] == [("sua-loi-2.csv", "correction"), ("sua-loi.xlsx", "correction")]
    assert "thiếu cột" in files[0][2] and "không đọc được" in files[1][2]
    assert SECRET_ID not in caplog.text and SECRET_NAME not in caplog.text
