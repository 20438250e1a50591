"""Access files (.mdb/.accdb) of small commune tools, read with mdbtools (Debian's package; `make install`).

The file is built by sapnhap_dev.demo.access_mdb (an Access 2000 file, text in Access's
default "Unicode compression"), declared beside its source file like an export folder.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from sapnhap.extract import SourceSchemaError, SourceUnavailableError, extract_to_parquet
from sapnhap.sources import Source, SourceConfigError, parse_source
from sapnhap_dev.demo.access_mdb import DATETIME, LONG, TEXT, Column, write_mdb

pytestmark = pytest.mark.integration

ROWS = 300
HOUSEHOLDS = [Column("Mã hộ", TEXT, 20), Column("CCCD chủ hộ", TEXT, 12), Column("Mã xã", TEXT, 5),
              Column("Địa chỉ", TEXT, 200), Column("Số nhân khẩu", LONG), Column("Ngày lập hộ", TEXT, 10),
              Column("Ngày cập nhật", DATETIME)]


def _household(i: int) -> dict:
    return {"Mã hộ": f"H{i:04d}", "CCCD chủ hộ": f"008190{i:06d}", "Mã xã": "02431",
            # Vietnamese letters switch the compressed text to two-byte characters and back.
            "Địa chỉ": "Thôn Đồng Tâm, xã Trung Môn" if i % 2 else 'Tổ 5, "phố mới"\nthị trấn Tân Bình',
            "Số nhân khẩu": i % 7 or None, "Ngày lập hộ": "01/02/2003",
            "Ngày cập nhật": datetime(2024, 1 + i % 12, 2, 8, 30, 15)}


def _source_file(folder: Path, **dataset: object) -> Source:
    """An Access source declared as a data team declares one: a YAML file and the .mdb beside it."""
    spec = {"table": "Hộ gia đình", "primary_key": ["Mã hộ"], "cursor": "Ngày cập nhật",
            "columns": {"household_code": "Mã hộ", "head_citizen_id": "CCCD chủ hộ", "old_commune_code": "Mã xã",
                        "address_detail": "Địa chỉ", "registered_date": "Ngày lập hộ", "updated_at": "Ngày cập nhật"},
            **dataset}
    body = {"id": "tq_trungmon_hogiadinh", "name": "Phần mềm hộ gia đình xã Trung Môn (Access)", "kind": "access",
            "conn_id": "legacy_tq_trungmon_hogiadinh", "old_units": {"province": "08", "communes": ["02431"]},
            "owners": ["vanphong.trungmon@tuyenquang.gov.vn.example"], "connection": {"path": "data/hogiadinh.mdb"},
            "datasets": {"households": spec}}
    path = folder / "tq_trungmon_hogiadinh.yaml"
    path.write_text(yaml.safe_dump(body, allow_unicode=True), encoding="utf-8")
    return parse_source(path)


@pytest.fixture
def access(tmp_path: Path) -> tuple[Source, str]:
    (tmp_path / "data").mkdir()
    write_mdb(tmp_path / "data" / "hogiadinh.mdb",
              {"Hộ gia đình": (HOUSEHOLDS, [_household(i) for i in range(1, ROWS + 1)])})
    source = _source_file(tmp_path)
    return source, source.local_connection()


def test_an_access_file_streams_into_parquet_with_its_text_intact(access: tuple[Source, str], tmp_path: Path) -> None:
    source, connection = access
    result = extract_to_parquet(source, "households", connection, tmp_path / "out.parquet", chunk_rows=100)
    parquet = pq.ParquetFile(result.path)
    assert result.rows == parquet.metadata.num_rows == ROWS and parquet.metadata.num_row_groups == 3
    assert result.columns == [c.name for c in HOUSEHOLDS]
    assert result.unmapped_columns == ["Số nhân khẩu"]
    rows = {r["Mã hộ"]: r for r in parquet.read().to_pylist()}
    assert rows["H0001"] == {"Mã hộ": "H0001", "CCCD chủ hộ": "008190000001", "Mã xã": "02431",
                             "Địa chỉ": "Thôn Đồng Tâm, xã Trung Môn", "Số nhân khẩu": "1",
                             "Ngày lập hộ": "01/02/2003", "Ngày cập nhật": "2024-02-02 08:30:15"}
    assert rows["H0002"]["Địa chỉ"] == 'Tổ 5, "phố mới"\nthị trấn Tân Bình'  # quotes, line break kept
    assert rows["H0007"]["Số nhân khẩu"] is None  # NULL stays NULL
    assert result.cursor_to == "2024-12-02 08:30:15"


def test_an_access_file_follows_the_cursor(access: tuple[Source, str], tmp_path: Path) -> None:
    source, connection = access
    later = extract_to_parquet(source, "households", connection, tmp_path / "inc.parquet",
                               cursor_value="2024-11-02 08:30:15")
    months = [1 + i % 12 for i in range(1, ROWS + 1)]
    assert later.rows == sum(1 for m in months if m >= 11)
    assert later.cursor_from == "2024-11-02 08:30:15" and later.cursor_to == "2024-12-02 08:30:15"
    assert set(pq.read_table(later.path).column("Ngày cập nhật").to_pylist()) == {"2024-11-02 08:30:15",
                                                                                  "2024-12-02 08:30:15"}


def test_access_problems_name_the_source_dataset_and_field(access: tuple[Source, str], tmp_path: Path) -> None:
    source, connection = access
    where = "tq_trungmon_hogiadinh/households"
    with pytest.raises(SourceSchemaError, match=rf"{where}: the Access file has no table 'Hộ gia đình cũ'.*Hộ gia đình"):
        extract_to_parquet(_source_file(tmp_path, table="Hộ gia đình cũ"), "households", connection, tmp_path / "a.parquet")
    renamed = {"household_code": "Mã hộ", "address_detail": "Địa chỉ thường trú"}
    with pytest.raises(SourceSchemaError, match=rf"{where}: legacy columns missing.*Địa chỉ thường trú"):
        extract_to_parquet(_source_file(tmp_path, columns=renamed), "households", connection, tmp_path / "b.parquet")
    with pytest.raises(SourceUnavailableError, match=rf"{where}: Access file not found"):
        extract_to_parquet(source, "households", str(tmp_path / "nowhere.mdb"), tmp_path / "c.parquet")
    (tmp_path / "not_access.mdb").write_bytes(b"PK\x03\x04 a zip, not an Access file" * 200)
    with pytest.raises(SourceUnavailableError, match=rf"{where}: .*not_access\.mdb is not an Access file"):
        extract_to_parquet(source, "households", str(tmp_path / "not_access.mdb"), tmp_path / "d.parquet")
    with pytest.raises(SourceConfigError, match=r"datasets\.households\.query: an Access source reads a table"):
        extract_to_parquet(_source_file(tmp_path, table=None, query="SELECT * FROM x"), "households", connection,
                           tmp_path / "e.parquet")


def test_an_access_table_name_is_never_sql_for_a_database(tmp_path: Path) -> None:
    # Spaces are fine in an Access table name (a program argument); for a SQL database they are refused.
    _source_file(tmp_path)
    body = yaml.safe_load((tmp_path / "tq_trungmon_hogiadinh.yaml").read_text(encoding="utf-8"))
    body.update(kind="postgres", connection=None)
    path = tmp_path / "sql" / "tq_trungmon_hogiadinh.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump({k: v for k, v in body.items() if v is not None}, allow_unicode=True), encoding="utf-8")
    with pytest.raises(SourceConfigError, match=r"households\.table: a table name"):
        parse_source(path)


def test_the_airflow_connection_of_an_access_source_reaches_the_file(access: tuple[Source, str], tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from sapnhap.airflow_support import legacy_connection

    source, connection = access
    # What `make demo --sources-dir` (or a deployment) gives Airflow: the fs connection the YAML declares.
    monkeypatch.setenv("AIRFLOW_CONN_" + source.conn_id.upper(), connection)
    result = extract_to_parquet(source, "households", legacy_connection(source.conn_id, source.kind),
                                tmp_path / "o.parquet")
    assert result.rows == ROWS
