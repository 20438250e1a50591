"""Documents on the platform beyond one batch (R16): numbering across batches and sources, a new
agency crosswalk re-mapping what is loaded, and the summary of classified documents kept from
readers without clearance. Real PostgreSQL, real S3 (moto), small SQLite document registers.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pandas as pd
import psycopg
import pytest
import yaml
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from conftest import pg_url
from sapnhap.airflow_support import process_batch
from sapnhap.documents import (
    CLASSIFIED_SUMMARY_VI,
    DEFAULT_AGENCIES_DIR,
    PLATFORM_NUMBER_CHECK,
    agency_impact,
    remap_loaded_documents,
)
from sapnhap.platform import ANALYST_ROLE, AUDITOR_ROLE, DOCUMENT_READER_ROLE, LOADER_ROLE
from sapnhap.services import Services
from sapnhap.sources import Source, parse_source
from sapnhap.sync import extract_stage, prepare_run

pytestmark = pytest.mark.integration

COLUMNS = {"document_code": "ma", "direction": "so", "number_symbol": "so_ky_hieu", "document_type": "loai",
           "issuer_code": "ma_cqbh", "issuer_name": "cqbh", "receiver_code": "ma_noi_nhan", "receiver_name": "noi_nhan",
           "issued_date": "ngay_bh", "received_date": "ngay_den", "summary": "trich_yeu", "signer": "nguoi_ky",
           "security_level": "do_mat", "status": "trang_thai", "updated_at": "cap_nhat"}


def _doc(code: str, number: str, *, issuer: str = "02.030.VP", issued: str = "05/03/2024", level: str = "normal",
         summary: str = "Về việc giao chỉ tiêu kế hoạch năm", updated: str = "2025-06-01 08:00:00") -> dict:
    return {"ma": code, "so": "outgoing", "so_ky_hieu": number, "loai": "Công văn", "ma_cqbh": issuer,
            "cqbh": "Văn phòng HĐND và UBND huyện Vị Xuyên", "ma_noi_nhan": "02.00913.UBND",
            "noi_nhan": "UBND Thị trấn Vị Xuyên", "ngay_bh": issued, "ngay_den": None, "trich_yeu": summary,
            "nguoi_ky": "Nguyễn Văn An", "do_mat": level, "trang_thai": "completed", "cap_nhat": updated}


def _register(folder: Path, source_id: str, rows: list[dict]) -> tuple[Source, str]:
    """A small document register (SQLite) declared as a data team declares one."""
    folder.mkdir(parents=True, exist_ok=True)
    db = folder / f"{source_id}.db"
    with sqlite3.connect(db) as conn:
        conn.execute("DROP TABLE IF EXISTS van_ban")
        conn.execute(f"CREATE TABLE van_ban ({', '.join(f'{c} TEXT' for c in COLUMNS.values())})")
        conn.executemany(f"INSERT INTO van_ban VALUES ({', '.join('?' for _ in COLUMNS)})",
                         [tuple(r[c] for c in COLUMNS.values()) for r in rows])
    body = {"id": source_id, "name": f"Sổ văn bản thử {source_id}", "kind": "sqlite", "conn_id": f"legacy_{source_id}",
            "old_units": {"province": "02", "districts": ["030"]}, "owners": ["vanthu@hagiang.gov.vn.example"],
            "connection": {"path": db.name},
            "datasets": {"documents": {"table": "van_ban", "primary_key": ["ma"], "cursor": "cap_nhat",
                                       "date_format": "%d/%m/%Y", "timestamp_format": "%Y-%m-%d %H:%M:%S",
                                       "columns": COLUMNS}}}
    path = folder / f"{source_id}.yaml"
    path.write_text(yaml.safe_dump(body, allow_unicode=True), encoding="utf-8")
    source = parse_source(path)
    return source, source.local_connection()


def _sync(services: Services, source: Source, connection: str, run_id: str) -> dict:
    prepare_run(services, run_id)
    batch = extract_stage(services, source, "documents", connection, run_id=run_id, run_date="2025-12-01")
    return process_batch(services, source, batch)


def _rows(dsn: str, query: str, *params) -> pd.DataFrame:
    with psycopg.connect(dsn) as conn:
        cur = conn.execute(query, params)
        return pd.DataFrame(cur.fetchall(), columns=[d.name for d in cur.description])


def _as(dsn: str, role: str) -> str:
    return make_conninfo(**{**conninfo_to_dict(dsn), "options": f"-c role={role}"})


# ------------------------------------------------------------------ numbering across the platform


def test_a_number_another_batch_or_source_holds_waits_in_quarantine_and_a_resync_is_no_conflict(
        services: Services, tmp_path: Path) -> None:
    district, sid_a = _register(tmp_path / "a", "hg_vx_vanban_a", [_doc("A1", "12/CV-VP"), _doc("A2", "13/CV-VP")])
    first = _sync(services, district, sid_a, "r1")
    assert first["inserted"] == 2
    # The same outgoing document typed into a second register (another source), and a third register
    # of the same district registering a new one under 12/CV-VP of another year (no conflict).
    commune, sid_b = _register(tmp_path / "b", "hg_vx_vanban_b", [
        _doc("B1", "12/cv-vp", summary="Về việc khác"), _doc("B2", "12/CV-VP", issued="05/03/2023"),
        _doc("B3", "14/CV-VP")])
    second = _sync(services, commune, sid_b, "r2")
    assert (second["inserted"], second["quarantined"]) == (2, 1)
    assert second["extracted"] == second["inserted"] + second["quarantined"] + second["merged_in_batch"] + \
        second["merged_cross_source"] + second["blocked"]
    q = _rows(services.platform_dsn, """SELECT source_id, source_key, expectation, column_name, value_masked, reason_vi,
                                               status FROM ops.quarantine WHERE dataset = 'documents'""")
    assert q[["source_id", "source_key", "expectation", "status"]].values.tolist() == [
        ["hg_vx_vanban_b", "B1", PLATFORM_NUMBER_CHECK, "open"]]
    row = q.iloc[0]
    assert row.column_name == "number_symbol" and row.value_masked == "12/cv-vp"
    assert "02.030.VP" in row.reason_vi and "2024" in row.reason_vi and "A1" in row.reason_vi
    assert "hg_vx_vanban_a" in row.reason_vi and "không trùng số" in row.reason_vi
    # The record already on the platform keeps the number; the newcomer is not loaded.
    held = _rows(services.platform_dsn, "SELECT document_code FROM core.documents ORDER BY 1")
    assert held["document_code"].tolist() == ["A1", "A2", "B2", "B3"]

    # A re-sync of the holder (edited in its register) is the same record: updated, no conflict.
    _register(tmp_path / "a", "hg_vx_vanban_a", [_doc("A1", "12/CV-VP", summary="Về việc giao chỉ tiêu (sửa)",
                                                      updated="2025-07-01 08:00:00"), _doc("A2", "13/CV-VP")])
    third = _sync(services, district, sid_a, "r3")
    assert (third["updated"], third["quarantined"]) == (1, 0)
    # The second register read again (its cursor re-reads the waiting record): the same decision, the same
    # quarantine row, nothing loaded.
    fourth = _sync(services, commune, sid_b, "r4")
    assert fourth["inserted"] == 0 and fourth["quarantined"] == fourth["extracted"] - fourth["unchanged"]
    again = _rows(services.platform_dsn, "SELECT source_key, expectation FROM ops.quarantine WHERE dataset = 'documents'")
    assert again.values.tolist() == [["B1", PLATFORM_NUMBER_CHECK]]
    assert _rows(services.platform_dsn, "SELECT count(*) AS n FROM core.documents")["n"].iloc[0] == 4


# ------------------------------------------------------------------ a new agency crosswalk


def _crosswalk_dir(tmp_path: Path, replace: tuple[str, str] | None = None) -> Path:
    folder = tmp_path / "agencies"
    folder.mkdir(exist_ok=True)
    shutil.copy(DEFAULT_AGENCIES_DIR / "agencies_08.csv", folder / "agencies_08.csv")
    if replace:
        path = folder / "agencies_08.csv"
        path.write_text(path.read_text(encoding="utf-8").replace(*replace), encoding="utf-8")
    return folder


def test_a_new_agency_crosswalk_remaps_loaded_documents_once_with_history_and_a_dry_run(
        services: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    from sapnhap.agencies import main as agencies_cli

    monkeypatch.setenv("SAPNHAP_AGENCIES_DIR", str(_crosswalk_dir(tmp_path)))
    source, conn = _register(tmp_path / "a", "hg_vx_vanban_a", [
        _doc("A1", "12/CV-VP"), _doc("A2", "7/QĐ-PNV", issuer="02.030.PNV"), _doc("A3", "13/CV-VP")])
    _sync(services, source, conn, "r1")
    dsn = services.platform_dsn
    before = _rows(dsn, "SELECT document_code, issuer_new_agency_code, agency_crosswalk_version FROM core.documents "
                        "ORDER BY 1")
    assert before["issuer_new_agency_code"].tolist() == ["N08.00913.UBND", "N08.SNV", "N08.00913.UBND"]
    old_version = before["agency_crosswalk_version"].iloc[0]
    assert _rows(dsn, "SELECT version FROM registry.agency_remaps")["version"].tolist() == [old_version]

    # The province corrects its file: the district's Internal Affairs office went to the Department of Finance.
    monkeypatch.setenv("SAPNHAP_AGENCIES_DIR", str(_crosswalk_dir(
        tmp_path, ("02.030.PNV,Phòng Nội vụ huyện Vị Xuyên,N08.SNV,Sở Nội vụ tỉnh Tuyên Quang",
                   "02.030.PNV,Phòng Nội vụ huyện Vị Xuyên,N08.STC,Sở Tài chính tỉnh Tuyên Quang"))))
    # Dry run first: what would change, nothing written.
    impact = agency_impact(dsn)
    new_version = impact.attrs["version"]
    assert new_version != old_version
    changed = impact[impact["changed"]]
    assert changed[["dataset", "role", "old_agency_code", "new_agency_before", "new_agency_after", "n_records"]
                   ].values.tolist() == [["documents", "issuer", "02.030.PNV", "N08.SNV", "N08.STC", 1]]
    assert int(impact["behind"].sum()) == int(impact["n_records"].sum()) == 6  # 3 documents x (issuer, receiver)
    assert agencies_cli(["impact", "--platform-url", pg_url(dsn)]) == 0
    assert "1 / 6 bản ghi (văn bản, bước xử lý) sẽ đổi cơ quan" in capsys.readouterr().out
    assert _rows(dsn, "SELECT count(*) AS n FROM history.documents")["n"].iloc[0] == 0

    # The next night's prepare re-maps what is loaded, once.
    prepare_run(services, "r2")
    after = _rows(dsn, "SELECT document_code, issuer_new_agency_code, issuer_new_agency_name, agency_crosswalk_version "
                       "FROM core.documents ORDER BY 1")
    assert after["issuer_new_agency_code"].tolist() == ["N08.00913.UBND", "N08.STC", "N08.00913.UBND"]
    assert after.loc[1, "issuer_new_agency_name"] == "Sở Tài chính tỉnh Tuyên Quang"
    assert set(after["agency_crosswalk_version"]) == {new_version}
    history = _rows(dsn, "SELECT document_code, issuer_new_agency_code, agency_crosswalk_version, change "
                         "FROM history.documents ORDER BY 1")
    assert history.values.tolist() == [["A1", "N08.00913.UBND", old_version, "update"],
                                       ["A2", "N08.SNV", old_version, "update"],
                                       ["A3", "N08.00913.UBND", old_version, "update"]]
    found = _rows(dsn, "SELECT document_code FROM core.find_documents_by_new_agency('N08.STC')")
    assert found["document_code"].tolist() == ["A2"]
    remaps = _rows(dsn, "SELECT version, run_id, documents_changed FROM registry.agency_remaps ORDER BY applied_at")
    assert remaps.values.tolist()[-1] == [new_version, "r2", 1]
    published = _rows(dsn, "SELECT new_agency_code FROM registry.agency_crosswalk WHERE version = %s "
                           "AND old_agency_code = '02.030.PNV'", new_version)
    assert published["new_agency_code"].tolist() == ["N08.STC"]
    # Again: nothing to do, no history row more.
    assert remap_loaded_documents(dsn)["applied"] is False
    prepare_run(services, "r3")
    assert _rows(dsn, "SELECT count(*) AS n FROM history.documents")["n"].iloc[0] == 3
    assert agencies_cli(["remap", "--platform-url", pg_url(dsn)]) == 0
    assert "đã áp dụng trước đó" in capsys.readouterr().out


# ------------------------------------------------------------------ classified summaries


SECRET = "Về việc phương án bảo vệ mục tiêu quan trọng"


@pytest.fixture
def classified(services: Services, tmp_path: Path) -> str:
    source, conn = _register(tmp_path / "a", "hg_vx_vanban_a", [
        _doc("A1", "12/CV-VP"), _doc("A2", "3/KH-VP", level="secret", summary=SECRET),
        _doc("A3", "4/KH-VP", level="confidential", summary=SECRET + " (2)"),
        # Classified documents that fail checks: their rows reach the quarantine, its pages and the emails.
        _doc("A4", "5/KH-VP", level="top_secret", summary=SECRET + " (3)", issued="31/02/2024"),
        _doc("A5", "5/KH-VP", level="secret", summary=SECRET + " (4)"),
        _doc("A6", "5/KH-VP", level="secret", summary=SECRET + " (5)")])
    _sync(services, source, conn, "r1")
    return services.platform_dsn


def test_a_classified_summary_reaches_only_the_cleared_role(classified: str) -> None:
    dsn = classified
    for role in (ANALYST_ROLE, AUDITOR_ROLE):
        with psycopg.connect(_as(dsn, role)) as conn:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("SELECT summary FROM core.documents").fetchall()
        with psycopg.connect(_as(dsn, role)) as conn:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("SELECT summary FROM history.documents").fetchall()
        # Every other column, and the summary through the view: masked above 'normal'.
        seen = _rows(_as(dsn, role), "SELECT document_code, summary FROM core.v_documents ORDER BY 1")
        assert seen["summary"].tolist() == ["Về việc giao chỉ tiêu kế hoạch năm", CLASSIFIED_SUMMARY_VI,
                                            CLASSIFIED_SUMMARY_VI]
        codes = _rows(_as(dsn, role), "SELECT document_code, issuer_new_agency_code FROM core.documents ORDER BY 1")
        assert len(codes) == 3
        looked_up = _rows(_as(dsn, role), "SELECT document_code, summary FROM core.find_documents_by_old_agency('02.030.VP') "
                                          "ORDER BY 1")
        assert looked_up["summary"].tolist() == seen["summary"].tolist()
        by_new = _rows(_as(dsn, role), "SELECT summary FROM core.find_documents_by_new_agency('N08.00913.UBND')")
        assert SECRET not in " ".join(by_new["summary"])
    # The UI's connection (the loader) is not cleared either: its lookups read through the views.
    loader = _rows(_as(dsn, LOADER_ROLE), "SELECT summary FROM core.find_documents_by_old_agency('02.030.VP')")
    assert SECRET not in " ".join(loader["summary"])
    # The role granted to cleared officials reads them.
    cleared = _rows(_as(dsn, DOCUMENT_READER_ROLE), "SELECT document_code, summary FROM core.documents ORDER BY 1")
    assert cleared["summary"].tolist()[1] == SECRET
    view = _rows(_as(dsn, DOCUMENT_READER_ROLE), "SELECT summary FROM core.v_documents ORDER BY document_code")
    assert view["summary"].tolist()[1:] == [SECRET, SECRET + " (2)"]


def test_the_ui_document_lookup_masks_classified_summaries(classified: str) -> None:
    from sapnhap.ui_queries import find_documents

    found = find_documents(classified, "02.030.VP")
    assert [d["document_code"] for d in found] == ["A1", "A2", "A3"]
    assert [d["summary"] for d in found] == ["Về việc giao chỉ tiêu kế hoạch năm", CLASSIFIED_SUMMARY_VI,
                                             CLASSIFIED_SUMMARY_VI]
    by_new = find_documents(classified, "N08.00913.UBND")
    assert {d["document_code"] for d in by_new} == {"A1", "A2", "A3"}
    assert all(SECRET not in (d["summary"] or "") for d in by_new)


def test_quality_outputs_never_show_a_classified_summary(classified: str, services: Services, tmp_path: Path,
                                                          smtp_sink) -> None:
    from sapnhap import storage
    from sapnhap.reports import send_run_reports
    from sapnhap.reports.attachment import read_quarantine_workbook
    from sapnhap.ui_queries import QuarantineFilter, open_quarantine, quarantine_xlsx
    from sapnhap_dev.embedded import read_mail

    dsn = classified
    q = _rows(dsn, "SELECT source_key, expectation, value_masked, reason_vi, fix_vi FROM ops.quarantine")
    assert set(q["source_key"]) == {"A4", "A5", "A6"}  # the impossible date, the number used twice
    assert not q.astype(str).apply(lambda c: c.str.contains(SECRET, regex=False)).any().any()
    # The quarantine page, its download, the Data Docs of the batch, the owner's email.
    page = open_quarantine(dsn, QuarantineFilter())
    assert page and all(SECRET not in str(vars(r)) for r in page)
    sheet = read_quarantine_workbook(quarantine_xlsx(dsn, QuarantineFilter()))
    assert sheet and SECRET not in str(sheet)
    docs_key = _rows(dsn, "SELECT data_docs_key FROM ops.batches WHERE dataset = 'documents'")["data_docs_key"].iloc[0]
    pages = [k for k in storage.list_keys(services.s3, docs_key.rsplit("/", 1)[0] + "/") if k.endswith(".html")]
    assert pages
    assert all(SECRET not in storage.get_bytes(services.s3, k).decode("utf-8") for k in pages)
    source = parse_source(tmp_path / "a" / "hg_vx_vanban_a.yaml")
    send_run_reports(services, "r1", [source])
    mails = read_mail(smtp_sink[1])
    assert mails
    for mail in mails:
        for part in mail.walk():
            payload = part.get_payload(decode=True)
            assert payload is None or SECRET.encode() not in payload
