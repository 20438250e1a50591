"""Source settings are input too: names quoted by the driver, plain identifiers only, read-only queries.

Real legacy servers: PostgreSQL (scratch database), MariaDB at 127.0.0.1:3306 when present, SQLite.
"""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import psycopg
import pyarrow.parquet as pq
import pytest

from sapnhap.extract import extract_to_parquet
from sapnhap.sources import Source, SourceConfigError

pytestmark = pytest.mark.integration

COLUMNS = {"citizen_id": "so_cccd", "full_name": "ho_ten", "birth_date": "ngay_sinh", "gender": "gioi_tinh",
           "old_commune_code": "ma_xa", "updated_at": "cap_nhat"}


def _source(kind: str, **dataset: object) -> Source:
    """A valid source, then ``dataset`` settings set past the YAML validation: the extract's own checks are tested."""
    spec = {"table": "nhan_khau", "primary_key": ["id"], "cursor": "cap_nhat", "columns": COLUMNS}
    source = Source.model_validate(
        {"id": "tq_legacy_dancu", "name": "Dân cư", "kind": kind, "conn_id": "legacy_x",
         "old_units": {"province": "08"}, "owners": ["it@tuyenquang.gov.vn.example"],
         "datasets": {"residents": spec}}
    )
    mapping = source.datasets["residents"].model_copy(update=dataset)
    return source.model_copy(update={"datasets": {"residents": mapping}})


@pytest.fixture
def legacy_pg(scratch_db: str) -> str:
    with psycopg.connect(scratch_db) as conn:
        conn.execute(
            """CREATE TABLE nhan_khau (id int PRIMARY KEY, so_cccd text, ho_ten text, ngay_sinh text, gioi_tinh text,
               ma_xa text, cap_nhat timestamp)"""
        )
        conn.execute("INSERT INTO nhan_khau VALUES (1, '008190001234', 'Hoàng Thị Lụa', '05/06/1990', 'Nữ', '02554', "
                     "'2025-01-01 10:00:00')")
        conn.execute('CREATE TABLE "Bảng ""lạ""" (id int, cap_nhat timestamp)')
    return scratch_db


INJECTIONS = [
    # Closes the quotes the code put around the name, then reads a file of the legacy server.
    {"table": "nhan_khau\" WHERE false UNION ALL SELECT 1, pg_read_file('PG_VERSION'), '', '', '', '', now() --"},
    {"cursor": "cap_nhat\" >= '1900-01-01' UNION ALL SELECT 1, pg_read_file('PG_VERSION'), '', '', '', '', now() --"},
    {"table": "nhan_khau; DROP TABLE nhan_khau"},
]


@pytest.mark.parametrize("bad", INJECTIONS)
def test_table_and_cursor_names_cannot_run_sql_on_the_legacy_server(legacy_pg: str, tmp_path: Path, bad: dict) -> None:
    field = next(iter(bad))
    with pytest.raises(SourceConfigError, match=rf"tq_legacy_dancu\.yaml: datasets\.residents\.{field}"):
        extract_to_parquet(_source("postgres", **bad), "residents", legacy_pg, tmp_path / "out.parquet",
                           cursor_value="2000-01-01 00:00:00")
    with psycopg.connect(legacy_pg) as conn:
        assert conn.execute("SELECT count(*) FROM nhan_khau").fetchone()[0] == 1


def test_plain_and_schema_qualified_names_still_extract(legacy_pg: str, tmp_path: Path) -> None:
    for table in ("nhan_khau", "public.nhan_khau"):
        result = extract_to_parquet(_source("postgres", table=table), "residents", legacy_pg, tmp_path / "out.parquet")
        assert result.rows == 1
        assert pq.read_table(result.path).column("ho_ten").to_pylist() == ["Hoàng Thị Lụa"]


def test_extraction_queries_run_read_only(legacy_pg: str, tmp_path: Path) -> None:
    # A query: that writes is refused by the server's read-only transaction, whatever the legacy user may do.
    writes = "SELECT * FROM nhan_khau WHERE pg_catalog.set_config('x.y', 'z', false) IS NOT NULL AND " \
             "(SELECT count(*) FROM (SELECT nextval('seq_x')) s) > 0"
    with psycopg.connect(legacy_pg) as conn:
        conn.execute("CREATE SEQUENCE seq_x")
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        extract_to_parquet(_source("postgres", table=None, query=writes), "residents", legacy_pg, tmp_path / "o.parquet")
    with psycopg.connect(legacy_pg) as conn:
        assert conn.execute("SELECT last_value, is_called FROM seq_x").fetchone() == (1, False)


def test_sqlite_names_are_quoted_and_the_file_opened_read_only(tmp_path: Path) -> None:
    path = tmp_path / "legacy # file?.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE nhan_khau (id, so_cccd, ho_ten, ngay_sinh, gioi_tinh, ma_xa, cap_nhat)")
        db.execute("INSERT INTO nhan_khau VALUES (1, '008190001234', 'Lụa', '05/06/1990', 'Nữ', '02554', '2025-01-01')")
    bad = _source("sqlite", table='nhan_khau" UNION SELECT 1, sqlite_version(), 3, 4, 5, 6, 7 --')
    with pytest.raises(SourceConfigError, match=r"datasets\.residents\.table"):
        extract_to_parquet(bad, "residents", str(path), tmp_path / "out.parquet")
    result = extract_to_parquet(_source("sqlite"), "residents", str(path), tmp_path / "out.parquet")
    assert result.rows == 1
    # The extract opens the file read-only: a write through the same connection string fails.
    from sapnhap import extract as extract_mod

    calls: list[tuple] = []
    real_connect = sqlite3.connect

    def spy(*args, **kwargs):  # noqa: ANN002, ANN003
        calls.append((args, kwargs))
        return real_connect(*args, **kwargs)

    extract_mod.sqlite3.connect = spy
    try:
        extract_to_parquet(_source("sqlite"), "residents", str(path), tmp_path / "out2.parquet")
    finally:
        extract_mod.sqlite3.connect = real_connect
    ((args, kwargs),) = calls
    with real_connect(*args, **kwargs) as same, pytest.raises(sqlite3.OperationalError, match="readonly"):
        same.execute("DELETE FROM nhan_khau")


pymysql = pytest.importorskip("pymysql")


@pytest.fixture
def legacy_mariadb():
    try:
        admin = pymysql.connect(host="127.0.0.1", port=3306, user="root", password="", connect_timeout=3)
    except pymysql.err.OperationalError as exc:
        pytest.skip(f"no MariaDB at 127.0.0.1:3306: {exc}")
    name = f"legacy_{uuid.uuid4().hex[:8]}"
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
        cur.execute(f"""CREATE TABLE {name}.nhan_khau (id INT PRIMARY KEY, so_cccd VARCHAR(12), ho_ten VARCHAR(100),
                        ngay_sinh VARCHAR(10), gioi_tinh VARCHAR(5), ma_xa VARCHAR(5), cap_nhat DATETIME)""")
        cur.execute(f"INSERT INTO {name}.nhan_khau VALUES (1, '008190001234', 'Lụa', '05/06/1990', 'Nữ', '02554', "
                    "'2025-01-01 10:00:00')")
    admin.commit()
    try:
        yield f"mysql://root@127.0.0.1:3306/{name}"
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name}")
        admin.close()


def test_mysql_names_are_quoted_by_the_driver(legacy_mariadb: str, tmp_path: Path) -> None:
    bad = _source("mysql", table="nhan_khau` UNION SELECT 1, @@version, 3, 4, 5, 6, now() -- ")
    with pytest.raises(SourceConfigError, match=r"datasets\.residents\.table"):
        extract_to_parquet(bad, "residents", legacy_mariadb, tmp_path / "out.parquet")
    result = extract_to_parquet(_source("mysql"), "residents", legacy_mariadb, tmp_path / "out.parquet")
    assert result.rows == 1
