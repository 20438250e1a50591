"""The SQL the one extract path emits, pinned per dialect (no server needed).

SQL Server and Oracle cannot run here: what the path sends them (session statements, the select
with the dialect's quoting, the bound cursor predicate, the ordering) is compiled against
SQLAlchemy's own ``mssql`` (pymssql) and ``oracle`` (oracledb) dialects and pinned. The same
function builds the statements the integration tests run on PostgreSQL, MariaDB and SQLite.
"""

from __future__ import annotations

import pytest

from sapnhap.extract import extract_statements, legacy_dialect
from sapnhap.sources import Source, SourceConfigError

COLUMNS = {"dossier_code": "ma_ho_so", "received_date": "ngay_nhan", "status": "trang_thai"}


def _source(kind: str, **dataset: object) -> Source:
    spec = {"table": "ho_so", "primary_key": ["id"], "cursor": "ngay_cap_nhat", "columns": COLUMNS, **dataset}
    return Source.model_validate(
        {"id": "tq_motcua_cu", "name": "Một cửa cũ", "kind": kind, "conn_id": "legacy_tq_motcua_cu",
         "old_units": {"province": "08"}, "owners": ["it@tuyenquang.gov.vn.example"],
         "datasets": {"dossiers": spec}}
    )


def _sql(kind: str, url: str, cursor_value: str | None = "2025-01-02 03:04:05", **dataset: object):
    source = _source(kind, **dataset)
    stmts = extract_statements(source, "dossiers", legacy_dialect(source, url), cursor_value)
    return stmts.session, " ".join(stmts.select.split()), stmts.params


MSSQL = "mssql+pymssql://reader:secret@10.0.0.5:1433/MotCua"
ORACLE = "oracle+oracledb://reader:secret@10.0.0.6:1521/?service_name=MOTCUA"


def test_sql_server_statements_are_pinned() -> None:
    session, select, params = _sql("mssql", MSSQL, table="dbo.HoSo", cursor="order")
    # Dates compared as text read year-month-day whatever the login's language; no write is possible
    # in a SELECT, and the login's grants are read-only (db_datareader), as the README says.
    assert session == ["SET DATEFORMAT ymd"]
    assert select == (
        "SELECT * FROM dbo.[HoSo] WHERE dbo.[HoSo].[order] >= %(cursor_from)s ORDER BY dbo.[HoSo].[order]"
    )
    assert params == {"cursor_from": "2025-01-02 03:04:05"}


def test_oracle_statements_are_pinned() -> None:
    session, select, params = _sql("oracle", ORACLE)
    assert session == [
        "ALTER SESSION SET NLS_DATE_FORMAT = 'YYYY-MM-DD HH24:MI:SS'",
        "ALTER SESSION SET NLS_TIMESTAMP_FORMAT = 'YYYY-MM-DD HH24:MI:SS.FF'",
        "SET TRANSACTION READ ONLY",
    ]
    # Lower-case names are Oracle's case-insensitive (unquoted, upper-cased by the server) names.
    assert select == "SELECT * FROM ho_so WHERE ho_so.ngay_cap_nhat >= :cursor_from ORDER BY ho_so.ngay_cap_nhat"
    assert params == {"cursor_from": "2025-01-02 03:04:05"}
    _, quoted, _ = _sql("oracle", ORACLE, table="HoSo", cursor="level")
    assert quoted == 'SELECT * FROM "HoSo" WHERE "HoSo"."level" >= :cursor_from ORDER BY "HoSo"."level"'


def test_a_query_is_a_subquery_with_the_dialects_alias_and_its_text_binds_nothing() -> None:
    query = "SELECT * FROM ho_so WHERE ghi_chu <> ':x' AND ma LIKE 'HS%'"
    _, oracle, _ = _sql("oracle", ORACLE, table=None, query=query)
    assert oracle == f"SELECT * FROM ({query}) src WHERE src.ngay_cap_nhat >= :cursor_from ORDER BY src.ngay_cap_nhat"
    _, mssql, _ = _sql("mssql", MSSQL, table=None, query=query)
    # pymssql takes %(name)s parameters yet a lone % as text (SQLAlchemy knows); the colon is text too.
    assert mssql == f"SELECT * FROM ({query}) AS src WHERE src.ngay_cap_nhat >= %(cursor_from)s ORDER BY src.ngay_cap_nhat"
    _, postgres, _ = _sql("postgres", "dbname=legacy", table=None, query=query)
    assert "LIKE 'HS%%'" in postgres and "':x'" in postgres  # psycopg's paramstyle needs the percent doubled


def test_the_first_extract_has_no_predicate_and_a_source_without_cursor_no_order() -> None:
    _, first, params = _sql("mssql", MSSQL, cursor_value=None)
    assert first == "SELECT * FROM ho_so ORDER BY ho_so.ngay_cap_nhat" and params == {}
    _, whole, _ = _sql("oracle", ORACLE, cursor=None)
    assert whole == "SELECT * FROM ho_so"


@pytest.mark.parametrize(
    ("kind", "url", "session", "select"),
    [
        ("postgres", "host=/tmp dbname=legacy", ["SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY"],
         'SELECT * FROM "HoSo" WHERE "HoSo".ngay_cap_nhat >= %(cursor_from)s ORDER BY "HoSo".ngay_cap_nhat'),
        ("mysql", "mysql://root@127.0.0.1/legacy", ["START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY"],
         "SELECT * FROM `HoSo` WHERE `HoSo`.ngay_cap_nhat >= %s ORDER BY `HoSo`.ngay_cap_nhat"),
        ("mysql", "mariadb+pymysql://root@127.0.0.1/legacy", ["START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY"],
         "SELECT * FROM `HoSo` WHERE `HoSo`.ngay_cap_nhat >= %s ORDER BY `HoSo`.ngay_cap_nhat"),
        ("sqlite", "/srv/legacy/hoso.db", [],
         'SELECT * FROM "HoSo" WHERE "HoSo".ngay_cap_nhat >= ? ORDER BY "HoSo".ngay_cap_nhat'),
    ],
)
def test_the_engines_that_run_here_take_the_same_path(kind: str, url: str, session: list[str], select: str) -> None:
    got_session, got_select, params = _sql(kind, url, table="HoSo")
    assert (got_session, got_select, params) == (session, select, {"cursor_from": "2025-01-02 03:04:05"})


def test_the_connection_url_chooses_the_driver() -> None:
    assert legacy_dialect(_source("mssql"), "mssql://reader@host/MotCua").driver == "pymssql"
    assert legacy_dialect(_source("oracle"), "oracle://reader@host:1521/MOTCUA").driver == "oracledb"
    assert legacy_dialect(_source("mysql"), "mysql://root@host/x").driver == "pymysql"
    assert legacy_dialect(_source("postgres"), "postgres://u@host/x").driver == "psycopg"
    assert legacy_dialect(_source("postgres"), "postgresql+psycopg2://u@host/x").driver == "psycopg"  # psycopg connects
    assert legacy_dialect(_source("mysql"), "mariadb://root@host/x").name == "mariadb"
    with pytest.raises(SourceConfigError, match=r"tq_motcua_cu: connection legacy_tq_motcua_cu is a postgresql URL.*kind mssql"):
        legacy_dialect(_source("mssql"), "postgresql://u@host/x")


def test_a_cursor_value_is_bound_never_written_into_the_sql() -> None:
    evil = "2025-01-01' OR '1'='1"
    for kind, url in (("mssql", MSSQL), ("oracle", ORACLE)):
        _, select, params = _sql(kind, url, cursor_value=evil)
        assert evil not in select and "'1'" not in select
        assert params == {"cursor_from": evil}


@pytest.mark.parametrize(
    ("dialect", "error", "orig", "schema"),
    [
        # pymssql: the server's message number first (208 invalid object name, 207 invalid column name).
        ("mssql", "OperationalError", (208, b"Invalid object name 'dbo.HoSo'."), True),
        ("mssql", "OperationalError", (207, b"Invalid column name 'ngay_cap_nhat'."), True),
        ("mssql", "OperationalError", (1205, b"Transaction was deadlocked"), False),
        ("oracle", "DatabaseError", ("ORA-00942: table or view does not exist",), True),
        ("oracle", "DatabaseError", ("ORA-00904: \"NGAY\": invalid identifier",), True),
        ("oracle", "DatabaseError", ("ORA-01555: snapshot too old",), False),
        ("postgresql", "ProgrammingError", ('relation "ho_so" does not exist',), True),
        ("sqlite", "OperationalError", ("no such table: ho_so",), True),
        ("postgresql", "OperationalError", ("server closed the connection unexpectedly",), False),
    ],
)
def test_which_refusals_mean_the_source_file_names_what_the_server_lacks(dialect: str, error: str, orig: tuple,
                                                                        schema: bool) -> None:
    import sqlalchemy as sa

    from sapnhap.extract import is_schema_error

    exc = getattr(sa.exc, error)("SELECT ...", {}, Exception(*orig))
    assert is_schema_error(dialect, exc) is schema


# -- Oracle: names as the DBA sees them (upper case) or in lower case --------------------------------


def test_oracle_names_are_taken_as_the_dba_sees_them_upper_or_lower_case() -> None:
    from sqlalchemy.dialects import oracle

    from sapnhap.engines import catalogue_name, declared_columns, dialect_name

    upper = _source("oracle", table="HO_SO", primary_key=["ID"], cursor="NGAY_CAP_NHAT",
                    columns={"dossier_code": "MA_HO_SO", "received_date": "NGAY_NHAN", "status": "TrangThai"})
    _, select, _ = _sql("oracle", ORACLE, table="HO_SO", cursor="NGAY_CAP_NHAT")
    # Quoted upper case is the catalogue's name: the same table and column as unquoted ho_so.
    assert select == ('SELECT * FROM "HO_SO" WHERE "HO_SO"."NGAY_CAP_NHAT" >= :cursor_from '
                      'ORDER BY "HO_SO"."NGAY_CAP_NHAT"')
    dialect = legacy_dialect(upper, ORACLE)
    # What SQLAlchemy's Oracle dialect reports for the catalogue's columns: case-insensitive names in
    # lower case (TrangThai was created quoted, GHI_CHU is a column the source file does not map).
    catalogue = ["ID", "MA_HO_SO", "NGAY_NHAN", "TrangThai", "NGAY_CAP_NHAT", "GHI_CHU"]
    reported = [str(dialect.normalize_name(c)) for c in catalogue]
    assert reported == ["id", "ma_ho_so", "ngay_nhan", "TrangThai", "ngay_cap_nhat", "ghi_chu"]
    mapping = upper.datasets["dossiers"]
    assert declared_columns(mapping, dialect, reported) == ["ID", "MA_HO_SO", "NGAY_NHAN", "TrangThai",
                                                           "NGAY_CAP_NHAT", "ghi_chu"]
    lower = _source("oracle")
    assert declared_columns(lower.datasets["dossiers"], dialect, ["id", "ma_ho_so", "ngay_cap_nhat"]) == \
        ["id", "ma_ho_so", "ngay_cap_nhat"]
    # Both spellings are one name; mixed case is a quoted, case-sensitive name; a reserved word stays upper.
    assert {catalogue_name(dialect, n) for n in ("MAMVB", "mamvb")} == {"MAMVB"}
    assert [dialect_name(dialect, n) for n in ("MAMVB", "mamvb", "MaMvb", "level")] == \
        ["mamvb", "mamvb", "MaMvb", "LEVEL"]
    # Other engines keep names as written (their dialects report the catalogue's spelling).
    mssql = legacy_dialect(_source("mssql"), MSSQL)
    assert declared_columns(mapping, mssql, ["id", "MA_HO_SO"]) == ["id", "MA_HO_SO"]
    assert declared_columns(mapping, oracle.dialect(), ["ma_ho_so"]) == ["MA_HO_SO"]
