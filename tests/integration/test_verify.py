"""Source-vs-platform verification on real legacy databases (PostgreSQL, SQLite, MariaDB) and a real platform.

Rows the cursor never reads (back-dated, restored from an old copy) are found missing and loaded by
the next sync; rows deleted in the legacy system are flagged, kept in history; changed rows are
found different and re-synced; afterwards the verification reports 0/0/0.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pyarrow.parquet as pq
import pytest
from legacy_sqlite import bacquang_dossiers_source, dossier, sqlite_legacy, sync

from sapnhap import verify
from sapnhap.extract import extract_to_parquet
from sapnhap.services import S3Config, Services
from sapnhap.sources import Source, get_source

pytestmark = pytest.mark.integration

COMMUNE = "02536"  # an old commune of the former Sơn Dương district


@pytest.fixture
def services(platform_dsn: str, s3_config: S3Config) -> Services:
    return Services(platform_dsn=platform_dsn, s3=s3_config)


@pytest.fixture
def legacy_pg(pg_admin_dsn: str) -> Iterator[str]:
    """An empty legacy PostgreSQL database of its own; yields its URI."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    name = f"legacy_v_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    params = conninfo_to_dict(pg_admin_dsn)
    params["dbname"] = name
    try:
        yield make_conninfo(**params)
    finally:
        with psycopg.connect(pg_admin_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def sonduong_households() -> Source:
    source = get_source("tq_sonduong_dancu")
    return source.model_copy(update={"datasets": {"households": source.datasets["households"]}})


def household(i: int, *, stamp: str = "2025-11-01 08:00:00", address: str | None = None) -> tuple:
    return (f"HO{i:05d}", f"0083010{i:05d}", COMMUNE, address or f"Thôn Đồng Bừa {i % 7}", "01-02-2020", stamp)


def create_households(uri: str, rows: list[tuple]) -> None:
    with psycopg.connect(uri) as conn:
        conn.execute(
            """CREATE TABLE ho_gia_dinh (ma_ho TEXT PRIMARY KEY, cccd_chu_ho TEXT, ma_xa TEXT, dia_chi TEXT,
                   ngay_lap_ho TEXT, thoi_diem_cap_nhat TIMESTAMP)"""
        )
        with conn.cursor() as cur, cur.copy("COPY ho_gia_dinh FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)


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


# -- PostgreSQL legacy system: back-dated, deleted and changed rows ---------------------------------


def test_postgres_backdated_deleted_and_changed_rows_are_found_resynced_and_flagged(
    services: Services, legacy_pg: str
) -> None:
    source = sonduong_households()
    dsn = services.platform_dsn
    def stamp(i: int) -> str:  # spread over weeks: most rows are far behind the cursor's look-back window
        return f"2025-10-{1 + i % 28:02d} 08:00:00.{i:06d}"

    create_households(legacy_pg, [household(i, stamp=stamp(i)) for i in range(1, 41)])
    first = sync(services, source, legacy_pg, "run-1", dataset="households")
    assert first["inserted"] == 40

    clean = verify.verify_dataset(services, source, "households", legacy_pg, run_id="v-1")
    assert (clean.missing, clean.extra, clean.different, clean.status) == (0, 0, 0, "ok")
    assert clean.method == "in_database" and clean.source_rows == clean.platform_rows == 40
    assert clean.legacy_queries == 1 and clean.rows_read == 0  # one aggregate query, no row read

    # The legacy system changes behind the committed cursor (beyond cursor_lookback: 2h).
    with psycopg.connect(legacy_pg) as conn:
        for i in (101, 102, 103):  # restored from an old copy / re-imported: old timestamps
            conn.execute("INSERT INTO ho_gia_dinh VALUES (%s, %s, %s, %s, %s, %s)",
                         household(i, stamp="2024-03-01 10:00:00"))
        conn.execute("DELETE FROM ho_gia_dinh WHERE ma_ho IN ('HO00005', 'HO00006')")
        conn.execute("UPDATE ho_gia_dinh SET dia_chi = 'Tổ dân phố Tân Bắc' WHERE ma_ho = 'HO00007'")  # no new stamp
    second = sync(services, source, legacy_pg, "run-2", dataset="households")
    assert second["inserted"] == 0  # the nightly alone never sees them: the bug this verification closes
    assert _one(dsn, "SELECT count(*) FROM core.households WHERE household_code LIKE 'HO001%%'") == 0

    found = verify.verify_dataset(services, source, "households", legacy_pg, run_id="v-2")
    assert (found.missing, found.extra, found.different) == (3, 2, 1), found
    assert found.status == "differences" and found.flagged_deleted == 2 and found.resync_requested == 4
    assert _outcome_keys(dsn, found.verification_id, "missing") == ["HO00101", "HO00102", "HO00103"]
    assert _outcome_keys(dsn, found.verification_id, "extra") == ["HO00005", "HO00006"]
    assert _outcome_keys(dsn, found.verification_id, "different") == ["HO00007"]
    with psycopg.connect(dsn) as conn:
        (summary,) = verify.verification_summary(conn, [source.id])
    assert (summary["status"], summary["missing"], summary["extra"], summary["different"]) == ("differences", 3, 2, 1)
    assert summary["summary_vi"].startswith("Thiếu 3, thừa 2")

    # Deleted in the source: flagged, still in core, the version before the flag kept in history.
    with psycopg.connect(dsn) as conn:
        flagged = conn.execute(
            "SELECT household_code FROM core.households WHERE deleted_in_source_at IS NOT NULL ORDER BY 1"
        ).fetchall()
        assert [r[0] for r in flagged] == ["HO00005", "HO00006"]
        assert conn.execute("SELECT count(*) FROM core.households").fetchone()[0] == 40
        history = conn.execute(
            "SELECT count(*) FROM history.households WHERE household_code IN ('HO00005', 'HO00006')"
            " AND deleted_in_source_at IS NULL"
        ).fetchone()[0]
        assert history == 2
        # Lookups tell them apart.
        looked_up = conn.execute(
            "SELECT count(*) FILTER (WHERE deleted_in_source_at IS NOT NULL), count(*)"
            " FROM core.find_households_by_old_unit(%s)", (COMMUNE,)
        ).fetchone()
        assert looked_up == (2, 40)

    # The next nightly reads the queued keys beside its cursor window: loaded like any row.
    third = sync(services, source, legacy_pg, "run-3", dataset="households")
    assert third["inserted"] == 3 and third["updated"] == 1, third
    assert _one(dsn, "SELECT address_detail FROM core.households WHERE household_code = 'HO00007'") == "Tổ dân phố Tân Bắc"
    assert _one(dsn, "SELECT count(*) FROM ops.reconciliation WHERE run_id = 'run-3' AND ok") == 1

    after = verify.verify_dataset(services, source, "households", legacy_pg, run_id="v-3")
    assert (after.missing, after.extra, after.different, after.status) == (0, 0, 0, "ok")
    assert after.source_rows == 41 and after.platform_rows == 41
    # Nothing left to re-sync: the next nightly reads no extra row.
    fourth = sync(services, source, legacy_pg, "run-4", dataset="households")
    assert fourth["extracted"] <= 1  # only the cursor's boundary row is re-read

    # A flagged row that comes back in the source is live again.
    with psycopg.connect(legacy_pg) as conn:
        conn.execute("INSERT INTO ho_gia_dinh VALUES (%s, %s, %s, %s, %s, %s)",
                     household(5, stamp=stamp(5)))
    back = verify.verify_dataset(services, source, "households", legacy_pg, run_id="v-4")
    assert back.reappeared == 1 and (back.missing, back.different) == (0, 0)
    assert _one(dsn, "SELECT deleted_in_source_at FROM core.households WHERE household_code = 'HO00005'") is None

    with psycopg.connect(dsn) as conn:
        summary = verify.verification_summary(conn, [source.id, "no_such_source"])
    assert [(s["dataset"], s["status"], s["source_rows"], s["missing"]) for s in summary] == [("households", "ok", 42, 0)]
    assert summary[0]["summary_vi"].startswith("Khớp hoàn toàn: 42 bản ghi")


def test_an_empty_legacy_table_does_not_mark_the_dataset_deleted(services: Services, legacy_pg: str) -> None:
    source = sonduong_households()
    create_households(legacy_pg, [household(i) for i in range(1, 11)])
    sync(services, source, legacy_pg, "run-1", dataset="households")
    with psycopg.connect(legacy_pg) as conn:
        conn.execute("DELETE FROM ho_gia_dinh")
    result = verify.verify_dataset(services, source, "households", legacy_pg, run_id="v-1")
    assert result.extra == 10 and result.flagged_deleted == 0 and "allow_mass_delete" in (result.message or "")
    assert _one(services.platform_dsn, "SELECT count(*) FROM core.households WHERE deleted_in_source_at IS NULL") == 10


# -- chunked digests: a large clean table costs a few queries -----------------------------------------


def test_large_table_costs_few_queries_and_descends_only_into_differing_chunks(
    services: Services, legacy_pg: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = sonduong_households()
    n = 6000
    create_households(legacy_pg, [household(i, stamp=f"2025-10-{1 + i % 28:02d} 07:00:00") for i in range(1, n + 1)])
    assert sync(services, source, legacy_pg, "run-1", dataset="households")["inserted"] == n

    clean = verify.verify_dataset(services, source, "households", legacy_pg, run_id="v-1")
    assert clean.status == "ok" and clean.source_rows == n
    assert (clean.legacy_queries, clean.platform_queries, clean.rows_read) == (1, 1, 0)

    with psycopg.connect(legacy_pg) as conn:
        conn.execute("UPDATE ho_gia_dinh SET dia_chi = 'Thôn Mới' WHERE ma_ho = 'HO04321'")
    one = verify.verify_dataset(services, source, "households", legacy_pg, run_id="v-2")
    assert one.different == 1 and one.chunks_differing == 1
    assert one.legacy_queries == 2 and one.rows_read < 200  # one chunk read row by row, not 6,000 rows

    # Chunks too big to read row by row are split first: one more aggregate query per side.
    monkeypatch.setattr(verify, "FETCH_ROWS", 10)
    split = verify.verify_dataset(services, source, "households", legacy_pg, run_id="v-3")
    assert split.different == 1 and split.legacy_queries == 3 and split.rows_read <= 4


# -- the hash computed inside the legacy database equals the extract's text ---------------------------


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
    import pandas as pd

    mapping = source.datasets["households"]
    result = extract_to_parquet(source, "households", uri, tmp_path / "raw.parquet")
    raw: pd.DataFrame = pq.read_table(result.path).to_pandas()
    keys = ["|".join("" if v is None else v for v in row) for row in raw[mapping.primary_key].itertuples(index=False)]
    return dict(zip(keys, verify.legacy_row_hashes(raw, mapping), strict=True))


def test_postgres_in_database_hash_equals_the_extracted_rows_hash(legacy_pg: str, tmp_path: Path) -> None:
    with psycopg.connect(legacy_pg) as conn:
        conn.execute(
            """CREATE TABLE typed (id BIGINT, code VARCHAR(20), flag BOOLEAN, uid UUID, name TEXT, d DATE,
                   ts TIMESTAMP, PRIMARY KEY (id, code))"""
        )
        conn.execute(
            """INSERT INTO typed VALUES
               (1, 'A', true, 'b5a3c1de-0000-4000-8000-00000000abcd', 'Nguyễn Văn Ánh', '2020-01-31', '2025-01-02 03:04:05'),
               (2, 'B', false, NULL, 'Tổ 5: phố "Cũ" | ''x''', '0999-12-31', '2025-01-02 03:04:05.120000'),
               (3, 'C|D', NULL, NULL, NULL, NULL, '2025-01-02 03:04:05.000001'),
               (-4, '', true, NULL, '', '2024-02-29', NULL)"""
        )
    source = _typed_source("postgres", "typed")
    side = verify.open_legacy(source, "households", legacy_pg)
    try:
        assert side.method == "in_database"
        in_db = side.rows(2, [f"{i:02x}" for i in range(256)])
    finally:
        side.close()
    assert in_db == _extracted_hashes(source, legacy_pg, tmp_path)
    assert len(in_db) == 4


def test_postgres_types_sql_cannot_render_are_hashed_in_python(legacy_pg: str, tmp_path: Path) -> None:
    with psycopg.connect(legacy_pg) as conn:
        conn.execute("CREATE TABLE typed (id INTEGER, code TEXT, flag NUMERIC, uid REAL, name CHAR(5), d DATE,"
                     " ts TIMESTAMPTZ, PRIMARY KEY (id, code))")
        conn.execute("INSERT INTO typed VALUES (1, 'A', 0.0000001, 1.5, 'ab', '2020-01-01', '2025-01-01 00:00:00+07')")
    source = _typed_source("postgres", "typed")
    side = verify.open_legacy(source, "households", legacy_pg)
    assert side.method == "streamed"
    assert side.rows(2, [f"{i:02x}" for i in range(256)]) == _extracted_hashes(source, legacy_pg, tmp_path)


def test_mariadb_in_database_hash_equals_the_extracted_rows_hash(tmp_path: Path) -> None:
    pymysql = pytest.importorskip("pymysql")
    try:
        admin = pymysql.connect(host="127.0.0.1", port=3306, user="root", password="", connect_timeout=3)
    except pymysql.err.OperationalError as exc:
        pytest.skip(f"no MariaDB at 127.0.0.1:3306: {exc}")
    name = f"legacy_v_{uuid.uuid4().hex[:8]}"
    try:
        with admin.cursor() as cur:
            cur.execute(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
            cur.execute(
                f"""CREATE TABLE {name}.typed (id BIGINT, code VARCHAR(20), flag TINYINT, uid CHAR(36), name TEXT,
                    d DATE, ts DATETIME(6), PRIMARY KEY (id, code))"""
            )
            cur.execute(
                f"""INSERT INTO {name}.typed VALUES
                    (1, 'A', 1, 'x', 'Nguyễn Văn Ánh', '2020-01-31', '2025-01-02 03:04:05'),
                    (2, 'B', 0, NULL, 'Tổ 5: phố "Cũ" | ''x''', '2024-02-29', '2025-01-02 03:04:05.120000'),
                    (3, 'C|D', NULL, NULL, NULL, NULL, '2025-01-02 03:04:05.000001')"""
            )
        admin.commit()
        uri = f"mysql://root@127.0.0.1:3306/{name}"
        source = _typed_source("mysql", "typed")
        side = verify.open_legacy(source, "households", uri)
        try:
            assert side.method == "in_database"
            in_db = side.rows(2, [f"{i:02x}" for i in range(256)])
            digests = side.digests(2, None)
        finally:
            side.close()
        extracted = _extracted_hashes(source, uri, tmp_path)
        assert in_db == extracted and len(in_db) == 3
        assert digests == verify._Streamed(extracted, 0).digests(2, None)
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name}")
        admin.close()


# -- SQLite legacy system -----------------------------------------------------------------------------


def test_sqlite_backdated_deleted_and_changed_rows(services: Services, tmp_path: Path) -> None:
    source = bacquang_dossiers_source()
    path = tmp_path / "bacquang.db"
    connection = sqlite_legacy(path, [dossier(f"BQ-{i:04d}", modified=f"2025-11-02 09:{i:02d}:00") for i in range(1, 21)])
    assert sync(services, source, connection, "run-1")["inserted"] == 20
    clean = verify.verify_dataset(services, source, "dossiers", connection, run_id="v-1")
    assert (clean.missing, clean.extra, clean.different, clean.method) == (0, 0, 0, "streamed")

    with sqlite3.connect(path) as db:
        row = dossier("BQ-0900", modified="2023-01-01 00:00:00")
        db.execute(f"INSERT INTO dossiers VALUES ({', '.join('?' * len(row))})", list(row.values()))
        db.execute("DELETE FROM dossiers WHERE file_no = 'BQ-0003'")
        db.execute("UPDATE dossiers SET status = 'DONE', return_date = '12/03/2024' WHERE file_no = 'BQ-0004'")
    assert sync(services, source, connection, "run-2")["inserted"] == 0

    found = verify.verify_dataset(services, source, "dossiers", connection, run_id="v-2")
    assert (found.missing, found.extra, found.different, found.flagged_deleted) == (1, 1, 1, 1)
    assert _one(services.platform_dsn,
                "SELECT deleted_in_source_at IS NOT NULL FROM core.dossiers WHERE dossier_code = 'BQ-0003'") is True

    third = sync(services, source, connection, "run-3")
    assert third["inserted"] == 1 and third["updated"] == 1
    assert _one(services.platform_dsn, "SELECT status FROM core.dossiers WHERE dossier_code = 'BQ-0004'") == "completed"
    after = verify.verify_dataset(services, source, "dossiers", connection, run_id="v-3")
    assert (after.missing, after.extra, after.different, after.status) == (0, 0, 0, "ok")


# -- the demo world: every source kind, quarantine, in-system and cross-source duplicates ----------------


@pytest.fixture
def world(tmp_path: Path, pg_admin_dsn: str):
    from sapnhap_dev.demo.generator import generate_world

    w = generate_world(tmp_path / "world", seed=11, size=15, pg_dsn=pg_admin_dsn, db_prefix=f"lv{uuid.uuid4().hex[:6]}")
    try:
        yield w
    finally:
        w.drop_databases()


def test_demo_world_verifies_clean_after_a_sync_and_after_a_resync(world, services: Services, monkeypatch) -> None:
    from sapnhap.sources import load_sources
    from sapnhap.sync.prepare import prepare_run

    for conn_id, value in world.connections.items():  # the documents' attachment folders are fs connections
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", value)

    def connection(source: Source) -> str:
        value = world.connections.get(source.conn_id, "")
        return value.removeprefix("sqlite:///") if source.kind == "sqlite" else value  # the file's path

    def night(run_id: str) -> None:
        prepare_run(services, run_id)
        for source in load_sources():
            for dataset in source.datasets:
                sync(services, source, connection(source), run_id, dataset=dataset)

    def verify_all(run_id: str) -> dict[tuple[str, str], tuple[int, int, int]]:
        out = {}
        for source in load_sources():
            for r in verify.verify_source(services, source, connection(source), run_id=run_id):
                out[(r["source_id"], r["dataset"])] = (r["missing"], r["extra"], r["different"])
        return out

    night("run-1")
    first = verify_all("v-1")
    assert first and all(v == (0, 0, 0) for v in first.values()), first

    # The PostgreSQL legacy system of Sơn Dương is partly restored from an older copy: rows come back
    # with old timestamps, and some recent ones vanish.
    sonduong = get_source("tq_sonduong_dancu")
    with psycopg.connect(world.connections[sonduong.conn_id]) as conn:
        kept = conn.execute("SELECT ma_ho FROM ho_gia_dinh ORDER BY thoi_diem_cap_nhat DESC LIMIT 3").fetchall()
        conn.execute("DELETE FROM ho_gia_dinh WHERE ma_ho = ANY(%s)", ([k[0] for k in kept],))
        changed = conn.execute("UPDATE ho_gia_dinh SET dia_chi = dia_chi || ' (cũ)', thoi_diem_cap_nhat = '2019-01-01'"
                               " WHERE ma_ho IN (SELECT ma_ho FROM ho_gia_dinh ORDER BY ma_ho LIMIT 6) RETURNING ma_ho").fetchall()
    with psycopg.connect(services.platform_dsn) as conn:
        # The platform loses records of an export-file source (what a restore from an incomplete
        # set of backups did): the files still hold them.
        lost = conn.execute(
            """DELETE FROM core.households WHERE (source_id, source_key) IN (
                   SELECT source_id, source_key FROM core.households h WHERE source_id = 'tq_yenson_xa_exports'
                   AND NOT EXISTS (SELECT 1 FROM ops.merged_duplicates m WHERE m.source_id = h.source_id
                                   AND m.source_key = h.source_key)
                   ORDER BY source_key LIMIT 2)"""
        ).rowcount
    assert lost == 2
    found = verify_all("v-2")
    # Every changed row is different, also one that sits in quarantine or was merged: the platform
    # saw another version of it (it used to count as accounted for whatever its version).
    assert found[(sonduong.id, "households")] == (0, 3, len(changed)), found
    assert found[("tq_yenson_xa_exports", "households")] == (2, 0, 0), found
    changed_sources = {(sonduong.id, "households"), ("tq_yenson_xa_exports", "households")}
    assert all(v == (0, 0, 0) for k, v in found.items() if k not in changed_sources), found

    night("run-2")
    assert all(v == (0, 0, 0) for v in verify_all("v-3").values())


def test_a_record_corrected_through_the_fix_loop_is_not_reported_different(services: Services, tmp_path: Path) -> None:
    from sapnhap import storage
    from sapnhap.corrections import correction_prefix

    source = bacquang_dossiers_source()
    path = tmp_path / "bacquang.db"
    # BQ-2 has no such day (31/02) and sits behind the cursor: quarantined, then corrected by its owner.
    connection = sqlite_legacy(path, [dossier("BQ-1", modified="2024-03-05 08:00:00"),
                                      dossier("BQ-2", recv="31/02/2024", modified="2024-03-04 08:00:00")])
    assert sync(services, source, connection, "run-1")["quarantined"] == 1
    qid = _one(services.platform_dsn, "SELECT quarantine_id FROM ops.quarantine WHERE source_key = 'BQ-2'"
               " AND column_name = 'received_date'")
    storage.put_bytes(services.s3, correction_prefix(source.id) + "sua.csv",
                      f"quarantine_id,corrected_value\n{qid},29/02/2024\n".encode())
    assert sync(services, source, connection, "run-2")["quarantined"] == 0
    assert _one(services.platform_dsn, "SELECT received_date::text FROM core.dossiers WHERE dossier_code = 'BQ-2'") \
        == "2024-02-29"

    # The platform holds the owner's correction of the legacy row it saw: not a difference to re-sync.
    same = verify.verify_dataset(services, source, "dossiers", connection, run_id="v-1")
    assert (same.missing, same.extra, same.different) == (0, 0, 0)

    # The legacy system itself is fixed later, behind the cursor: that change shows and is re-synced.
    with sqlite3.connect(path) as db:
        db.execute("UPDATE dossiers SET recv_date = '29/02/2024', proc_name = 'Chứng thực chữ ký' WHERE file_no = 'BQ-2'")
    fixed = verify.verify_dataset(services, source, "dossiers", connection, run_id="v-2")
    assert fixed.different == 1
    sync(services, source, connection, "run-3")
    assert _one(services.platform_dsn, "SELECT procedure_name FROM core.dossiers WHERE dossier_code = 'BQ-2'") \
        == "Chứng thực chữ ký"
    after = verify.verify_dataset(services, source, "dossiers", connection, run_id="v-3")
    assert (after.missing, after.extra, after.different) == (0, 0, 0)


def test_rows_loaded_before_legacy_hashes_are_resynced_once_to_set_the_baseline(
    services: Services, legacy_pg: str
) -> None:
    source = sonduong_households()
    create_households(legacy_pg, [household(i, stamp=f"2025-10-{i:02d} 07:00:00") for i in range(1, 11)])
    sync(services, source, legacy_pg, "run-1", dataset="households")
    with psycopg.connect(services.platform_dsn) as conn:  # as the platform was before this column existed
        conn.execute("UPDATE core.households SET legacy_row_hash = NULL")
    first = verify.verify_dataset(services, source, "households", legacy_pg, run_id="v-1")
    assert (first.unhashed, first.different, first.status, first.resync_requested) == (10, 0, "baseline", 10)
    assert sync(services, source, legacy_pg, "run-2", dataset="households")["extracted"] == 10
    assert _one(services.platform_dsn, "SELECT count(*) FROM core.households WHERE legacy_row_hash IS NULL") == 0
    after = verify.verify_dataset(services, source, "households", legacy_pg, run_id="v-2")
    assert (after.unhashed, after.status) == (0, "ok")


def test_a_dataset_that_cannot_be_verified_fails_alone_and_is_recorded(services: Services, legacy_pg: str) -> None:
    source = get_source("tq_sonduong_dancu")  # residents (nhan_khau) and households (ho_gia_dinh)
    create_households(legacy_pg, [household(i) for i in range(1, 4)])
    sync(services, source.model_copy(update={"datasets": {"households": source.datasets["households"]}}),
         legacy_pg, "run-1", dataset="households")
    assert verify.verify_dataset(services, source, "households", legacy_pg, run_id="v-0").status == "ok"
    with psycopg.connect(legacy_pg) as conn:  # the legacy system renamed its table
        conn.execute("ALTER TABLE ho_gia_dinh RENAME TO ho_gia_dinh_cu")
    with pytest.raises(verify.VerificationError, match="households") as raised:
        verify.verify_source(services, source, legacy_pg, run_id="v-1")
    assert "residents" not in str(raised.value)  # never loaded: recorded, not compared, not an error
    with psycopg.connect(services.platform_dsn) as conn:
        rows = dict(conn.execute("SELECT dataset, status FROM ops.verifications WHERE run_id = 'v-1'").fetchall())
        summary = {s["dataset"]: s for s in verify.verification_summary(conn, [source.id])}
        flagged = conn.execute("SELECT count(*) FROM core.households WHERE deleted_in_source_at IS NOT NULL").fetchone()[0]
    assert rows == {"households": "failed", "residents": "not_loaded"}
    assert summary["households"]["summary_vi"].startswith("Không đối chiếu được")
    assert flagged == 0  # an unreadable source marks nothing deleted


# -- MariaDB legacy system: the same spine, digests computed by MariaDB ---------------------------------


@pytest.fixture
def legacy_mariadb() -> Iterator[tuple[str, object]]:
    pymysql = pytest.importorskip("pymysql")
    try:
        admin = pymysql.connect(host="127.0.0.1", port=3306, user="root", password="", connect_timeout=3,
                                charset="utf8mb4", autocommit=True)
    except pymysql.err.OperationalError as exc:
        pytest.skip(f"no MariaDB at 127.0.0.1:3306: {exc}")
    name = f"legacy_v_{uuid.uuid4().hex[:8]}"
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
        cur.execute(f"USE {name}")
        cur.execute("""CREATE TABLE ho_gia_dinh (ma_ho VARCHAR(20) PRIMARY KEY, cccd_chu_ho VARCHAR(12), ma_xa VARCHAR(5),
                       dia_chi VARCHAR(200), ngay_lap_ho VARCHAR(10), thoi_diem_cap_nhat DATETIME(6))""")
    try:
        yield f"mysql://root@127.0.0.1:3306/{name}", admin
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name}")
        admin.close()


def test_mariadb_backdated_deleted_and_changed_rows(services: Services, legacy_mariadb,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    uri, admin = legacy_mariadb
    base = sonduong_households()
    source = base.model_copy(update={"id": "tq_mariadb_hogd", "kind": "mysql", "conn_id": "legacy_tq_mariadb"})
    with admin.cursor() as cur:
        cur.executemany("INSERT INTO ho_gia_dinh VALUES (%s, %s, %s, %s, %s, %s)",
                        [household(i, stamp=f"2025-10-{1 + i % 28:02d} 08:00:00.{i:06d}") for i in range(1, 3001)])
    assert sync(services, source, uri, "run-1", dataset="households")["inserted"] == 3000
    clean = verify.verify_dataset(services, source, "households", uri, run_id="v-1")
    assert (clean.status, clean.method, clean.legacy_queries, clean.rows_read) == ("ok", "in_database", 1, 0)

    with admin.cursor() as cur:
        cur.execute("INSERT INTO ho_gia_dinh VALUES (%s, %s, %s, %s, %s, %s)", household(9001, stamp="2021-01-01 00:00:00"))
        cur.execute("DELETE FROM ho_gia_dinh WHERE ma_ho = 'HO00010'")
        cur.execute("UPDATE ho_gia_dinh SET dia_chi = 'Thôn Mới' WHERE ma_ho = 'HO00020'")
    monkeypatch.setattr(verify, "FETCH_ROWS", 10)  # descend once more inside MariaDB before reading rows
    found = verify.verify_dataset(services, source, "households", uri, run_id="v-2")
    assert (found.missing, found.extra, found.different, found.flagged_deleted) == (1, 1, 1, 1)
    assert found.legacy_queries == 3 and found.rows_read < 50

    third = sync(services, source, uri, "run-2", dataset="households")
    assert (third["inserted"], third["updated"]) == (1, 1)
    after = verify.verify_dataset(services, source, "households", uri, run_id="v-3")
    assert (after.missing, after.extra, after.different, after.status) == (0, 0, 0, "ok")


def test_resync_reads_only_the_queued_keys_by_the_legacy_key_column(legacy_pg: str) -> None:
    with psycopg.connect(legacy_pg) as conn:
        conn.execute("CREATE TABLE nk (id BIGINT PRIMARY KEY, ten TEXT)")
        conn.execute("INSERT INTO nk SELECT g, 'Người ' || g FROM generate_series(1, 500) g")
    source = Source.model_validate({
        "id": "int_keys", "name": "x", "kind": "postgres", "conn_id": "x", "owners": ["a@b.example"],
        "old_units": {"province": "08"},
        "datasets": {"households": {"table": "nk", "primary_key": ["id"], "columns": {"household_code": "ten"}}},
    })
    columns, rows = verify._legacy_rows_by_key(source, "households", legacy_pg, {"7", "250", "9999"})
    assert columns == ["id", "ten"] and sorted(rows) == [(7, "Người 7"), (250, "Người 250")]
    # A key that is not an integer as the extract writes it cannot be one of these rows.
    assert verify._legacy_rows_by_key(source, "households", legacy_pg, {"007", "x"})[1] == []


def test_a_dataset_never_loaded_is_not_compared_nor_queued(services: Services, legacy_pg: str) -> None:
    source = sonduong_households()
    create_households(legacy_pg, [household(i) for i in range(1, 6)])
    result = verify.verify_dataset(services, source, "households", legacy_pg, run_id="v-0")
    assert (result.status, result.missing, result.resync_requested) == ("not_loaded", 0, 0)
    # The source's rows are counted (one aggregate query): a dataset whose every batch was blocked
    # holds rows the platform has not loaded, and the soak and the owners must see it.
    assert (result.source_rows, result.platform_rows, result.legacy_queries) == (5, 0, 1)
    assert "5" in (result.message or "")
    assert _one(services.platform_dsn, "SELECT source_rows FROM ops.verifications WHERE verification_id = %s",
                (result.verification_id,)) == 5
    assert _one(services.platform_dsn, "SELECT count(*) FROM ops.resync_keys") == 0
    with psycopg.connect(services.platform_dsn) as conn:
        (summary,) = verify.verification_summary(conn, [source.id])
    assert summary["status"] == "not_loaded" and summary["summary_vi"].startswith("Chưa đối chiếu")
    assert "5 bản ghi" in summary["summary_vi"]
