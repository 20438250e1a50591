"""The SQL source-vs-platform verification sends SQL Server and Oracle, pinned per dialect (no server here).

Those engines are read through the extract's own path (SQLAlchemy Core, the same session
statements) and hashed in Python with the extract's text conversion, as SQLite is: one probe for
the columns, then one streamed select of the hashed columns. Re-sync reads the rows of queued
keys through the same path. The same functions run for real on SQLite and PostgreSQL in
``tests/integration/test_verify_engines.py``.
"""

from __future__ import annotations

from sapnhap import verify
from sapnhap.extract import legacy_dialect
from sapnhap.sources import Source

MSSQL = "mssql+pymssql://reader:secret@10.0.0.5:1433/MotCua"
ORACLE = "oracle+oracledb://reader:secret@10.0.0.6:1521/?service_name=MOTCUA"
COLUMNS = {"dossier_code": "ma_ho_so", "received_date": "ngay_nhan", "status": "trang_thai"}


def _source(kind: str, **dataset: object) -> Source:
    spec = {"table": "ho_so", "primary_key": ["id"], "cursor": "ngay_cap_nhat", "columns": COLUMNS, **dataset}
    return Source.model_validate(
        {"id": "tq_motcua_cu", "name": "Một cửa cũ", "kind": kind, "conn_id": "legacy_tq_motcua_cu",
         "old_units": {"province": "08"}, "owners": ["it@tuyenquang.gov.vn.example"],
         "datasets": {"dossiers": spec}}
    )


def _statements(kind: str, url: str, **dataset: object) -> verify.LegacyStatements:
    source = _source(kind, **dataset)
    return verify.legacy_statements(source, "dossiers", legacy_dialect(source, url))


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_sql_server_verification_statements_are_pinned() -> None:
    s = _statements("mssql", MSSQL, table="dbo.HoSo", primary_key=["order"])
    assert s.session == ["SET DATEFORMAT ymd"]  # the extract's session: the same text of every value
    assert _flat(s.probe) == "SELECT * FROM dbo.[HoSo] WHERE 1 = 0"
    # The hashed columns only (mapped and key, by name), no order: the hash is computed on this side.
    assert _flat(s.hashes) == (
        "SELECT dbo.[HoSo].ma_ho_so, dbo.[HoSo].ngay_nhan, dbo.[HoSo].[order], dbo.[HoSo].trang_thai FROM dbo.[HoSo]"
    )
    assert _flat(s.rows) == "SELECT * FROM dbo.[HoSo]"


def test_oracle_verification_statements_are_pinned() -> None:
    s = _statements("oracle", ORACLE)
    assert s.session == [
        "ALTER SESSION SET NLS_DATE_FORMAT = 'YYYY-MM-DD HH24:MI:SS'",
        "ALTER SESSION SET NLS_TIMESTAMP_FORMAT = 'YYYY-MM-DD HH24:MI:SS.FF'",
        "SET TRANSACTION READ ONLY",  # one snapshot for the probe and the read
    ]
    assert _flat(s.probe) == "SELECT * FROM ho_so WHERE 1 = 0"
    assert _flat(s.hashes) == "SELECT ho_so.id, ho_so.ma_ho_so, ho_so.ngay_nhan, ho_so.trang_thai FROM ho_so"
    assert _flat(s.rows) == "SELECT * FROM ho_so"


def test_oracle_verification_takes_upper_case_names_as_the_dba_sees_them() -> None:
    upper = _statements("oracle", ORACLE, table="MOTCUA.HO_SO", primary_key=["ID"], cursor="NGAY_CAP_NHAT",
                        columns={"dossier_code": "MA_HO_SO", "received_date": "NgayNhan", "status": "LEVEL"})
    # Upper-case names are Oracle's case-insensitive names, rendered unquoted; mixed case stays quoted.
    assert _flat(upper.hashes) == (
        'SELECT motcua.ho_so.id, motcua.ho_so."LEVEL", motcua.ho_so.ma_ho_so, motcua.ho_so."NgayNhan" '
        "FROM motcua.ho_so"
    )
    lower = _statements("oracle", ORACLE, table="motcua.ho_so")
    assert _flat(lower.hashes) == (
        "SELECT motcua.ho_so.id, motcua.ho_so.ma_ho_so, motcua.ho_so.ngay_nhan, motcua.ho_so.trang_thai FROM motcua.ho_so"
    )


def test_a_query_source_is_verified_through_a_subquery_whose_text_binds_nothing() -> None:
    query = "SELECT * FROM ho_so WHERE ghi_chu <> ':x' AND ma LIKE 'HS%'"
    ora = _statements("oracle", ORACLE, table=None, query=query)
    assert _flat(ora.probe) == f"SELECT * FROM ({query}) src WHERE 1 = 0"
    assert _flat(ora.hashes) == f"SELECT src.id, src.ma_ho_so, src.ngay_nhan, src.trang_thai FROM ({query}) src"
    assert _flat(ora.rows) == query
    ms = _statements("mssql", MSSQL, table=None, query=query)
    assert _flat(ms.hashes) == f"SELECT src.id, src.ma_ho_so, src.ngay_nhan, src.trang_thai FROM ({query}) AS src"
