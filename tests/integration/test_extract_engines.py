"""One extract path through SQLAlchemy Core, run for real on PostgreSQL, MariaDB and SQLite.

The same legacy table (a name that needs quoting, a timestamp cursor) is created on each engine
with SQLAlchemy, then extracted through the same function: streamed in chunks, cursor and
look-back, errors that name the source and the dataset. MariaDB is the machine's server at
127.0.0.1:3306 (skipped without it: CI runs these with ``-k "mariadb or mysql"`` on the host).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from conftest import pg_url
from sapnhap.extract import SourceSchemaError, SourceUnavailableError, extract_to_parquet
from sapnhap.sources import Source

pytestmark = pytest.mark.integration

ROWS = 2500
COLUMNS = {"citizen_id": "so_cccd", "full_name": "ho_ten", "birth_date": "ngay_sinh", "gender": "gioi_tinh",
           "old_commune_code": "ma_xa", "updated_at": "cap_nhat"}
KIND = {"postgres": "postgres", "mariadb": "mysql", "sqlite": "sqlite"}


def _source(engine: str, table: str = "NhanKhau", **dataset: object) -> Source:
    spec = {"table": table, "primary_key": ["id"], "cursor": "cap_nhat", "columns": COLUMNS, **dataset}
    return Source.model_validate(
        {"id": "tq_dancu_cu", "name": "Dân cư cũ", "kind": KIND[engine], "conn_id": "legacy_tq_dancu_cu",
         "old_units": {"province": "08"}, "owners": ["it@tuyenquang.gov.vn.example"],
         "datasets": {"residents": spec}}
    )


def _fill(url: str) -> None:
    """The legacy table, created and filled through SQLAlchemy on any engine."""
    meta = sa.MetaData()
    table = sa.Table(
        "NhanKhau", meta, sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("so_cccd", sa.String(12)), sa.Column("ho_ten", sa.String(100)), sa.Column("ngay_sinh", sa.String(10)),
        sa.Column("gioi_tinh", sa.String(5)), sa.Column("ma_xa", sa.String(5)), sa.Column("cap_nhat", sa.DateTime().with_variant(sa.String(19), "sqlite")),
    )
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        meta.create_all(conn)
        conn.execute(table.insert(), [
            {"id": i, "so_cccd": f"008090{i:06d}", "ho_ten": "Hoàng Thị Lụa", "ngay_sinh": "05/06/1990",
             "gioi_tinh": "Nữ", "ma_xa": "02554", "cap_nhat": f"2025-{1 + i % 9:02d}-01 10:00:00"}
            for i in range(1, ROWS + 1)
        ])
    engine.dispose()


@pytest.fixture
def postgres(scratch_db: str) -> str:
    # The connection URL names its driver, as a SQLAlchemy URL does.
    url = pg_url(scratch_db).replace("postgresql://", "postgresql+psycopg://", 1)
    _fill(url)
    return url


@pytest.fixture
def mariadb() -> Iterator[str]:
    pymysql = pytest.importorskip("pymysql")
    try:
        admin = pymysql.connect(host="127.0.0.1", port=3306, user="root", password="", connect_timeout=3)
    except pymysql.err.OperationalError as exc:
        pytest.skip(f"no MariaDB at 127.0.0.1:3306: {exc}")
    name = f"legacy_{uuid.uuid4().hex[:8]}"
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
    url = f"mariadb+pymysql://root@127.0.0.1:3306/{name}?charset=utf8mb4"
    try:
        _fill(url)
        yield url
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name}")
        admin.close()


@pytest.fixture
def sqlite(tmp_path: Path) -> str:
    path = tmp_path / "dân cư # cũ.db"
    _fill(f"sqlite:///{path}")
    return f"sqlite:///{path}"


@pytest.fixture(params=["postgres", "mariadb", "sqlite"])
def legacy(request: pytest.FixtureRequest) -> tuple[str, str]:
    return request.param, request.getfixturevalue(request.param)


def test_every_engine_streams_through_the_same_path(legacy: tuple[str, str], tmp_path: Path) -> None:
    engine, url = legacy
    full = extract_to_parquet(_source(engine), "residents", url, tmp_path / "all.parquet", chunk_rows=500)
    parquet = pq.ParquetFile(full.path)
    assert full.rows == parquet.metadata.num_rows == ROWS
    assert parquet.metadata.num_row_groups == ROWS // 500  # written chunk by chunk as streamed
    table = parquet.read()
    assert set(table.column("ho_ten").to_pylist()) == {"Hoàng Thị Lụa"}  # text arrives intact
    assert table.column("cap_nhat").to_pylist() == sorted(table.column("cap_nhat").to_pylist())  # ordered by the cursor
    assert full.cursor_to == "2025-09-01 10:00:00"
    assert full.columns == ["id", "so_cccd", "ho_ten", "ngay_sinh", "gioi_tinh", "ma_xa", "cap_nhat"]
    # Next night: the boundary is re-read (>=), and a look-back of 31 days reaches August too.
    later = extract_to_parquet(_source(engine, cursor_lookback="31d"), "residents", url, tmp_path / "inc.parquet",
                               cursor_value="2025-09-01 10:00:00")
    assert later.rows == sum(1 for i in range(1, ROWS + 1) if 1 + i % 9 >= 8)
    assert later.cursor_from == "2025-09-01 10:00:00" and later.cursor_to == "2025-09-01 10:00:00"
    # A query: without a cursor streams the same way.
    name = "`NhanKhau`" if engine == "mariadb" else '"NhanKhau"'
    query = _source(engine, table=None, query=f"SELECT * FROM {name} WHERE ho_ten LIKE 'Ho%'", cursor=None)
    whole = extract_to_parquet(query, "residents", url, tmp_path / "q.parquet", chunk_rows=1000)
    assert whole.rows == ROWS and pq.ParquetFile(whole.path).metadata.num_row_groups == 3


def test_every_engine_names_the_source_and_dataset_in_its_errors(legacy: tuple[str, str], tmp_path: Path) -> None:
    engine, url = legacy
    with pytest.raises(SourceSchemaError, match=r"(?s)tq_dancu_cu/residents: .*NhanKhauCu.*tq_dancu_cu\.yaml"):
        extract_to_parquet(_source(engine, "NhanKhauCu"), "residents", url, tmp_path / "x.parquet")
    renamed = _source(engine, columns={**COLUMNS, "full_name": "ho_va_ten"})
    with pytest.raises(SourceSchemaError, match=r"tq_dancu_cu/residents: legacy columns missing.*ho_va_ten"):
        extract_to_parquet(renamed, "residents", url, tmp_path / "y.parquet")
    unreachable = {
        "postgres": "postgresql+psycopg://postgres@127.0.0.1:1/nowhere",
        "mariadb": "mariadb+pymysql://root@127.0.0.1:1/nowhere",
        "sqlite": f"sqlite:///{tmp_path}/nowhere.db",
    }[engine]
    name = {"postgres": "PostgreSQL", "mariadb": "MySQL/MariaDB", "sqlite": "SQLite"}[engine]
    with pytest.raises(SourceUnavailableError, match=rf"tq_dancu_cu/residents: .*{name}"):
        extract_to_parquet(_source(engine), "residents", unreachable, tmp_path / "z.parquet")


@pytest.mark.parametrize(("kind", "driver", "url", "name"), [
    ("mssql", "pymssql", "mssql://reader:secret@127.0.0.1:{port}/MotCua", "SQL Server"),
    ("oracle", "oracledb", "oracle://reader:secret@127.0.0.1:{port}/?service_name=MOTCUA", "Oracle"),
])
def test_sql_server_and_oracle_drivers_connect_through_the_same_path(kind: str, driver: str, url: str, name: str,
                                                                     tmp_path: Path) -> None:
    """No server here: the driver (from requirements.txt) is loaded, dialed, and its refusal is a clear error."""
    import socket

    pytest.importorskip(driver)
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    source = _source("postgres").model_copy(update={"kind": kind})
    with pytest.raises(SourceUnavailableError, match=rf"tq_dancu_cu/residents: cannot connect to legacy {name}"):
        extract_to_parquet(source, "residents", url.format(port=port), tmp_path / "x.parquet")
