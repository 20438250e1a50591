"""Source-vs-platform verification of the engines the extract reads beyond PostgreSQL and MariaDB.

- Access files: verified through the extract's own reader (mdbtools), end to end: a row restored
  behind the cursor (missing), a row deleted (extra) and a row changed without a new stamp
  (different) are found, re-synced by the next nightly, and the next verification is clean.
- SQL Server and Oracle are read through the extract's SQLAlchemy Core path and hashed in Python
  with the extract's text conversion (their SQL is pinned in tests/unit/test_verify_sql.py). The
  same reader runs here for real on SQLite and PostgreSQL, and its hashes equal the extract's.
- Oracle's names: a SQLite file whose catalogue holds upper-case names, reported through Oracle's
  own name normalisation (lower case), declared in a source file as the DBA sees them.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import psycopg
import pyarrow.parquet as pq
import pytest
import yaml
from legacy_sqlite import sync

from sapnhap import verify
from sapnhap.extract import extract_to_parquet
from sapnhap.services import S3Config, Services
from sapnhap.sources import Source, parse_source
from sapnhap_dev.demo.access_mdb import DATETIME, LONG, TEXT, Column, write_mdb

pytestmark = pytest.mark.integration

COMMUNE = "02536"  # an old commune of the former Sơn Dương district (province 08)


@pytest.fixture
def services(platform_dsn: str, s3_config: S3Config) -> Services:
    return Services(platform_dsn=platform_dsn, s3=s3_config)


def _one(dsn: str, query: str, params: tuple = ()) -> object:
    with psycopg.connect(dsn) as conn:
        return conn.execute(query, params).fetchone()[0]


def _outcome_keys(dsn: str, vid: int, outcome: str) -> list[str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT source_key FROM ops.verification_rows WHERE verification_id = %s AND outcome = %s ORDER BY 1",
            (vid, outcome),
        ).fetchall()
    return [r[0] for r in rows]


# -- Access: the extract's reader, end to end ----------------------------------------------------------

HOUSEHOLDS = [Column("Mã hộ", TEXT, 20), Column("CCCD chủ hộ", TEXT, 12), Column("Mã xã", TEXT, 5),
              Column("Địa chỉ", TEXT, 200), Column("Số nhân khẩu", LONG), Column("Ngày lập hộ", TEXT, 10),
              Column("Ngày cập nhật", DATETIME)]


def _household(i: int, *, updated: datetime | None = None, address: str | None = None) -> dict:
    return {"Mã hộ": f"H{i:04d}", "CCCD chủ hộ": f"008190{i:06d}", "Mã xã": COMMUNE,
            "Địa chỉ": address or f"Thôn Đồng Tâm {i % 5}, xã Trung Môn", "Số nhân khẩu": i % 7 or None,
            "Ngày lập hộ": "01/02/2003", "Ngày cập nhật": updated or datetime(2025, 10, 1 + i % 28, 8, 30, 15)}


def _access_source(folder: Path) -> Source:
    body = {"id": "tq_trungmon_hogiadinh", "name": "Phần mềm hộ gia đình xã Trung Môn (Access)", "kind": "access",
            "conn_id": "legacy_tq_trungmon_hogiadinh", "old_units": {"province": "08", "communes": [COMMUNE]},
            "owners": ["vanphong.trungmon@tuyenquang.gov.vn.example"], "connection": {"path": "data/hogiadinh.mdb"},
            "datasets": {"households": {
                "table": "Hộ gia đình", "primary_key": ["Mã hộ"], "cursor": "Ngày cập nhật",
                "columns": {"household_code": "Mã hộ", "head_citizen_id": "CCCD chủ hộ", "old_commune_code": "Mã xã",
                            "address_detail": "Địa chỉ", "registered_date": "Ngày lập hộ",
                            "updated_at": "Ngày cập nhật"}}}}
    path = folder / "tq_trungmon_hogiadinh.yaml"
    path.write_text(yaml.safe_dump(body, allow_unicode=True), encoding="utf-8")
    return parse_source(path)


def test_access_missing_extra_and_different_rows_are_found_resynced_and_flagged(services: Services,
                                                                                tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    mdb = tmp_path / "data" / "hogiadinh.mdb"
    rows = {i: _household(i) for i in range(1, 31)}
    write_mdb(mdb, {"Hộ gia đình": (HOUSEHOLDS, list(rows.values()))})
    source = _access_source(tmp_path)
    connection = source.local_connection()
    dsn = services.platform_dsn
    assert sync(services, source, connection, "run-1", dataset="households")["inserted"] == 30

    clean = verify.verify_dataset(services, source, "households", connection, run_id="v-1")
    assert (clean.missing, clean.extra, clean.different, clean.status) == (0, 0, 0, "ok")
    assert clean.method == "streamed" and clean.source_rows == clean.platform_rows == 30

    # The commune sends its file again: a household restored from an old copy (stamped long before the
    # cursor), one deleted, one address corrected without a new stamp.
    rows[101] = _household(101, updated=datetime(2023, 5, 6, 7, 8, 9))
    del rows[5]
    rows[7] = _household(7, address="Thôn Khuôn Phẳng, xã Trung Môn")
    write_mdb(mdb, {"Hộ gia đình": (HOUSEHOLDS, list(rows.values()))})
    assert sync(services, source, connection, "run-2", dataset="households")["inserted"] == 0  # behind the cursor

    found = verify.verify_dataset(services, source, "households", connection, run_id="v-2")
    assert (found.missing, found.extra, found.different, found.flagged_deleted) == (1, 1, 1, 1), found
    assert _outcome_keys(dsn, found.verification_id, "missing") == ["H0101"]
    assert _outcome_keys(dsn, found.verification_id, "extra") == ["H0005"]
    assert _outcome_keys(dsn, found.verification_id, "different") == ["H0007"]
    assert _one(dsn, "SELECT deleted_in_source_at IS NOT NULL FROM core.households WHERE household_code = 'H0005'")

    # The next nightly reads the queued keys from the file beside its cursor window.
    third = sync(services, source, connection, "run-3", dataset="households")
    assert (third["inserted"], third["updated"]) == (1, 1), third
    assert _one(dsn, "SELECT address_detail FROM core.households WHERE household_code = 'H0007'") \
        == "Thôn Khuôn Phẳng, xã Trung Môn"
    after = verify.verify_dataset(services, source, "households", connection, run_id="v-3")
    assert (after.missing, after.extra, after.different, after.status) == (0, 0, 0, "ok")
    assert after.source_rows == 30


def test_an_unreadable_access_file_fails_the_verification_naming_the_file(services: Services, tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    write_mdb(tmp_path / "data" / "hogiadinh.mdb", {"Hộ gia đình": (HOUSEHOLDS, [_household(1)])})
    source = _access_source(tmp_path)
    connection = source.local_connection()
    sync(services, source, connection, "run-1", dataset="households")
    (tmp_path / "data" / "hogiadinh.mdb").write_bytes(b"PK\x03\x04 a zip, not an Access file" * 200)
    with pytest.raises(verify.VerificationError, match=r"households: .*hogiadinh\.mdb is not an Access file"):
        verify.verify_source(services, source, connection, run_id="v-1")
    assert _one(services.platform_dsn, "SELECT count(*) FROM core.households WHERE deleted_in_source_at IS NOT NULL") == 0


# -- the SQLAlchemy Core reader (SQL Server, Oracle) for real on SQLite and PostgreSQL ------------------


def _typed_source(kind: str, table: str) -> Source:
    return Source.model_validate({
        "id": "typed_legacy", "name": "typed", "kind": kind, "conn_id": "x", "owners": ["a@b.example"],
        "old_units": {"province": "08"},
        "datasets": {"households": {
            "table": table, "primary_key": ["id", "code"], "cursor": "ts",
            "columns": {"household_code": "code", "head_citizen_id": "flag", "old_commune_code": "uid",
                        "address_detail": "name", "registered_date": "d", "updated_at": "ts"},
        }},
    })


def _extracted_hashes(source: Source, uri: str, tmp_path: Path) -> dict[str, str]:
    mapping = source.datasets["households"]
    raw = pq.read_table(extract_to_parquet(source, "households", uri, tmp_path / "raw.parquet").path).to_pandas()
    keys = ["|".join("" if v is None else v for v in row) for row in raw[mapping.primary_key].itertuples(index=False)]
    return dict(zip(keys, verify.legacy_row_hashes(raw, mapping), strict=True))


ALL_BUCKETS = [f"{i:02x}" for i in range(256)]


@pytest.fixture
def legacy_pg(pg_admin_dsn: str) -> Iterator[str]:
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    name = f"legacy_e_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    params = conninfo_to_dict(pg_admin_dsn)
    params["dbname"] = name
    try:
        yield make_conninfo(**params)
    finally:
        with psycopg.connect(pg_admin_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_the_core_reader_hashes_postgres_rows_as_the_extract_writes_them(legacy_pg: str, tmp_path: Path) -> None:
    with psycopg.connect(legacy_pg) as conn:
        conn.execute("""CREATE TABLE typed (id BIGINT, code VARCHAR(20), flag NUMERIC, uid UUID, name TEXT, d DATE,
                            ts TIMESTAMPTZ, PRIMARY KEY (id, code))""")
        conn.execute(
            """INSERT INTO typed VALUES
               (1, 'A', 0.0000001, 'b5a3c1de-0000-4000-8000-00000000abcd', 'Nguyễn Văn Ánh', '2020-01-31',
                '2025-01-02 03:04:05+07'),
               (2, 'B', 12.50, NULL, 'Tổ 5: phố "Cũ" | ''x''', '0999-12-31', '2025-01-02 03:04:05.12+00'),
               (3, 'C|D', NULL, NULL, NULL, NULL, NULL)"""
        )
    source = _typed_source("postgres", "typed")
    side = verify._open_core(source, "households", legacy_pg)
    assert side.method == "streamed" and side.queries == 2  # the probe, then one streamed select
    core = side.rows(2, ALL_BUCKETS)
    assert core == _extracted_hashes(source, legacy_pg, tmp_path) and len(core) == 3


def test_the_core_reader_hashes_sqlite_rows_and_reads_queued_keys(tmp_path: Path) -> None:
    path = tmp_path / "typed.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE typed (id INTEGER, code TEXT, flag REAL, uid BLOB, name TEXT, d TEXT, ts TEXT,"
                   " extra TEXT, PRIMARY KEY (id, code))")
        db.executemany("INSERT INTO typed VALUES (?, ?, ?, ?, ?, ?, ?, ?)", [
            (1, "A", 1.5, None, "Nguyễn Văn Ánh", "31/01/2020", "2025-01-02 03:04:05", "x"),
            (2, "B", None, None, "Tổ 5: phố \"Cũ\" | 'x'", None, "2025-01-02 03:04:06", None),
            (3, "C|D", 0.1, None, None, None, None, "y"),
        ])
    source = _typed_source("sqlite", "typed")
    uri = f"sqlite:///{path}"
    side = verify.open_legacy(source, "households", uri)
    assert side.method == "streamed"
    assert side.rows(2, ALL_BUCKETS) == _extracted_hashes(source, uri, tmp_path)
    columns, rows = verify._legacy_rows_by_key(source, "households", uri, {"2|B", "3|C|D", "9|Z"})
    assert columns == ["id", "code", "flag", "uid", "name", "d", "ts", "extra"]
    assert sorted(rows) == [(2, "B", None, None, "Tổ 5: phố \"Cũ\" | 'x'", None, "2025-01-02 03:04:06", None),
                            (3, "C|D", 0.1, None, None, None, None, "y")]
    renamed = source.model_copy(deep=True)
    renamed.datasets["households"].columns["address_detail"] = "ten"
    with pytest.raises(verify.SourceSchemaError, match=r"typed_legacy/households: legacy columns missing.*'ten'"):
        verify.open_legacy(renamed, "households", uri)


@pytest.mark.parametrize(("kind", "driver", "url", "name"), [
    ("mssql", "pymssql", "mssql://reader:secret@127.0.0.1:{port}/MotCua", "SQL Server"),
    ("oracle", "oracledb", "oracle://reader:secret@127.0.0.1:{port}/?service_name=MOTCUA", "Oracle"),
])
def test_sql_server_and_oracle_are_verified_through_their_drivers(kind: str, driver: str, url: str, name: str,
                                                                  services: Services) -> None:
    """No server here: the verification dials the real driver, and an unreachable server fails that
    dataset alone, recorded, with the engine named (the SQL it would send is pinned in the unit tests)."""
    import socket

    pytest.importorskip(driver)
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    source = _typed_source(kind, "typed")
    with pytest.raises(verify.SourceUnavailableError, match=rf"typed_legacy/households: cannot connect to legacy {name}"):
        verify.open_legacy(source, "households", url.format(port=port))
    # Never loaded: the source's rows cannot be counted, recorded as such (not an error of the run).
    result = verify.verify_dataset(services, source, "households", url.format(port=port), run_id="v-1")
    assert result.status == "not_loaded" and f"cannot connect to legacy {name}" in (result.message or "")


# -- Oracle's names: upper case as the DBA sees them, lower case as SQLAlchemy reports them -----------------


@pytest.fixture
def oracle_names(monkeypatch: pytest.MonkeyPatch) -> None:
    """Engines that report names as SQLAlchemy's Oracle dialect does: case-insensitive ones in lower case."""
    from sqlalchemy.dialects import oracle

    from sapnhap import extract

    real, names = extract.legacy_engine, oracle.dialect()

    def engine(source: Source, connection: str, dataset: str | None = None):  # noqa: ANN202
        made = real(source, connection, dataset)
        made.dialect.requires_name_normalize = True
        made.dialect.normalize_name = names.normalize_name
        return made

    monkeypatch.setattr(extract, "legacy_engine", engine)


def _upper_catalogue(path: Path, rows: list[tuple]) -> None:
    with sqlite3.connect(path) as db:
        db.execute("""CREATE TABLE HO_GIA_DINH (MA_HO TEXT PRIMARY KEY, CCCD_CHU_HO TEXT, MA_XA TEXT, DIA_CHI TEXT,
                          NGAY_LAP_HO TEXT, THOI_DIEM_CAP_NHAT TEXT, GHI_CHU TEXT)""")
        db.executemany("INSERT INTO HO_GIA_DINH VALUES (?, ?, ?, ?, ?, ?, ?)", rows)


def _oracle_row(i: int, *, stamp: str = "2025-10-01 08:00:00", address: str | None = None) -> tuple:
    return (f"HO{i:05d}", f"0083010{i:05d}", COMMUNE, address or f"Thôn Đồng Bừa {i % 7}", "01/02/2020", stamp, None)


@pytest.mark.parametrize("spelling", [str.upper, str.lower], ids=["upper", "lower"])
def test_oracle_names_are_declared_as_the_dba_sees_them(oracle_names: None, services: Services, tmp_path: Path,
                                                         spelling) -> None:  # noqa: ANN001
    path = tmp_path / "oracle_like.db"
    _upper_catalogue(path, [_oracle_row(i, stamp=f"2025-10-{i:02d} 08:00:00") for i in range(1, 21)])
    source = Source.model_validate({
        "id": "tq_oracle_dancu", "name": "Dân cư (Oracle)", "kind": "sqlite", "conn_id": "legacy_tq_oracle_dancu",
        "old_units": {"province": "08"}, "owners": ["a@tuyenquang.gov.vn.example"],
        "datasets": {"households": {
            "table": spelling("ho_gia_dinh"), "primary_key": [spelling("ma_ho")], "cursor": spelling("thoi_diem_cap_nhat"),
            "columns": {"household_code": spelling("ma_ho"), "head_citizen_id": spelling("cccd_chu_ho"),
                        "old_commune_code": spelling("ma_xa"), "address_detail": spelling("dia_chi"),
                        "registered_date": spelling("ngay_lap_ho"), "updated_at": spelling("thoi_diem_cap_nhat")}}},
    })
    uri = f"sqlite:///{path}"
    raw = extract_to_parquet(source, "households", uri, tmp_path / "raw.parquet")
    # The raw backup names the declared columns as declared; a column the file does not map as reported.
    assert raw.columns == [spelling(c) for c in ("ma_ho", "cccd_chu_ho", "ma_xa", "dia_chi", "ngay_lap_ho",
                                                 "thoi_diem_cap_nhat")] + ["ghi_chu"]
    assert raw.rows == 20 and raw.cursor_to == "2025-10-20 08:00:00"

    assert sync(services, source, uri, "run-1", dataset="households")["inserted"] == 20
    clean = verify.verify_dataset(services, source, "households", uri, run_id="v-1")
    assert (clean.missing, clean.extra, clean.different, clean.status) == (0, 0, 0, "ok")
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO HO_GIA_DINH VALUES (?, ?, ?, ?, ?, ?, ?)", _oracle_row(77, stamp="2020-01-01 00:00:00"))
        db.execute("UPDATE HO_GIA_DINH SET DIA_CHI = 'Tổ dân phố Tân Bắc' WHERE MA_HO = 'HO00003'")
    found = verify.verify_dataset(services, source, "households", uri, run_id="v-2")
    assert (found.missing, found.extra, found.different) == (1, 0, 1), found
    assert sync(services, source, uri, "run-2", dataset="households")["inserted"] == 1
    after = verify.verify_dataset(services, source, "households", uri, run_id="v-3")
    assert (after.missing, after.extra, after.different, after.status) == (0, 0, 0, "ok")
