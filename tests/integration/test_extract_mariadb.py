"""MariaDB as a legacy source: streaming extract with the incremental cursor (real server at 127.0.0.1:3306)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from sapnhap.extract import SourceSchemaError, SourceUnavailableError, extract_to_parquet
from sapnhap.sources import Source

pytestmark = pytest.mark.integration

pymysql = pytest.importorskip("pymysql")


@pytest.fixture
def mariadb_db():
    try:
        admin = pymysql.connect(host="127.0.0.1", port=3306, user="root", password="", connect_timeout=3)
    except pymysql.err.OperationalError as exc:
        pytest.skip(f"no MariaDB at 127.0.0.1:3306: {exc}")
    name = f"legacy_{uuid.uuid4().hex[:8]}"
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
        cur.execute(
            f"""CREATE TABLE {name}.nhan_khau (id INT PRIMARY KEY, so_cccd VARCHAR(12), ho_ten VARCHAR(100),
                ngay_sinh VARCHAR(10), gioi_tinh VARCHAR(5), ma_xa VARCHAR(5), cap_nhat DATETIME)"""
        )
        cur.executemany(
            f"INSERT INTO {name}.nhan_khau VALUES (%s, %s, %s, %s, %s, %s, %s)",
            [
                (i, f"008090{i:06d}", "Hoàng Thị Lụa", "05/06/1990", "Nữ", "02554", f"2025-0{1 + i % 9}-01 10:00:00")
                for i in range(1, 2501)
            ],
        )
    admin.commit()
    try:
        yield name
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name}")
        admin.close()


def _source(table: str = "nhan_khau") -> Source:
    return Source.model_validate(
        {
            "id": "tq_mariadb_dancu", "name": "Hệ thống dân cư (MariaDB)", "kind": "mysql", "conn_id": "legacy_tq_mariadb",
            "old_units": {"province": "08"}, "owners": ["it@tuyenquang.gov.vn.example"],
            "datasets": {"residents": {
                "table": table, "primary_key": ["id"], "cursor": "cap_nhat",
                "columns": {"citizen_id": "so_cccd", "full_name": "ho_ten", "birth_date": "ngay_sinh",
                            "gender": "gioi_tinh", "old_commune_code": "ma_xa", "updated_at": "cap_nhat"},
            }},
        }
    )


def test_mariadb_extract_streams_in_chunks_and_follows_the_cursor(mariadb_db: str, tmp_path: Path) -> None:
    uri = f"mysql://root@127.0.0.1:3306/{mariadb_db}"
    full = extract_to_parquet(_source(), "residents", uri, tmp_path / "all.parquet", chunk_rows=500)
    table = pq.read_table(full.path)
    assert full.rows == table.num_rows == 2500
    assert table.column("ho_ten")[0].as_py() == "Hoàng Thị Lụa"  # utf8mb4 text arrives intact
    assert full.cursor_to == "2025-09-01 10:00:00"
    assert full.unmapped_columns == []  # the primary key is used (source key), not an unmapped column
    later = extract_to_parquet(_source(), "residents", uri, tmp_path / "inc.parquet", cursor_value="2025-09-01 10:00:00")
    # The boundary is re-read (>=): every row with the last cursor value, none before it.
    assert later.rows == sum(1 for i in range(1, 2501) if 1 + i % 9 == 9)


def test_mariadb_problems_are_clear_errors(mariadb_db: str, tmp_path: Path) -> None:
    with pytest.raises(SourceUnavailableError, match="MySQL/MariaDB"):
        extract_to_parquet(_source(), "residents", "mysql://root@127.0.0.1:1/nothing", tmp_path / "x.parquet")
    with pytest.raises(SourceSchemaError, match=r"nhan_khau_cu.*tq_mariadb_dancu\.yaml"):
        extract_to_parquet(_source("nhan_khau_cu"), "residents", f"mysql://root@127.0.0.1:3306/{mariadb_db}",
                           tmp_path / "y.parquet")
