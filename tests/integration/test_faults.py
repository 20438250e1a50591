"""Nothing lost, nothing doubled: the pipeline's stages under faults, on real services.

PostgreSQL (legacy systems and platform), moto's S3 API and an aiosmtpd sink; the stage
functions are called directly (no Airflow), as the nightly DAG's tasks call them.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
import uuid
from pathlib import Path

import psycopg
import pytest

from sapnhap import extract as extract_mod
from sapnhap import storage
from sapnhap.extract import SourceSchemaError, SourceUnavailableError
from sapnhap.services import S3Config, Services
from sapnhap.sources import Source, get_source
from sapnhap.sync.backup import backup_stage
from sapnhap.sync.extract import extract_stage
from sapnhap.sync.load import load_stage
from sapnhap.sync.prepare import prepare_run
from sapnhap.sync.transform import transform_stage
from sapnhap.sync.validate import validate_stage
from sapnhap_dev.embedded import free_port, read_mail
from sapnhap_dev.runner import account_for

pytestmark = pytest.mark.integration

RUN_DATE = "2025-12-01"
SONDUONG = "tq_sonduong_dancu"  # PostgreSQL: residents (nhan_khau), households (ho_gia_dinh)
BACQUANG = "hg_bacquang_sqlite"  # SQLite: dossiers, residents


@pytest.fixture
def world(tmp_path: Path, pg_admin_dsn: str):
    from sapnhap_dev.demo.generator import generate_world

    w = generate_world(tmp_path / "world", seed=11, size=15, pg_dsn=pg_admin_dsn, db_prefix=f"lf{uuid.uuid4().hex[:6]}")
    try:
        yield w
    finally:
        w.drop_databases()


def _connection(world, source: Source) -> str:
    return str(world.sqlite_path()) if source.kind == "sqlite" else world.connections[source.conn_id]


def _until_backup(services: Services, source: Source, dataset: str, connection: str, run_id: str) -> dict:
    batch = extract_stage(services, source, dataset, connection, run_id=run_id, run_date=RUN_DATE)
    batch = transform_stage(services, source, batch)
    batch = validate_stage(services, source, batch)
    return backup_stage(services, source, batch)


def _sync(services: Services, world, source_ids: list[str], run_id: str, *, connections: dict | None = None,
          datasets: list[str] | None = None) -> dict[str, object]:
    """One nightly run of some sources through the stage functions; a failing source does not stop the others."""
    prepare_run(services, run_id)
    outcome: dict[str, object] = {}
    for sid in source_ids:
        source = get_source(sid)
        conn = (connections or {}).get(sid) or _connection(world, source)
        try:
            outcome[sid] = [
                load_stage(services, source, _until_backup(services, source, d, conn, run_id))
                for d in source.datasets if datasets is None or d in datasets
            ]
        except (SourceUnavailableError, SourceSchemaError, storage.BackupError) as exc:
            outcome[sid] = exc
    return outcome


def _state(dsn: str, dataset: str, source_id: str) -> dict:
    with psycopg.connect(dsn) as conn:
        return {
            "core": conn.execute(f"SELECT count(*) FROM core.{dataset}").fetchone()[0],  # noqa: S608
            "history": conn.execute(f"SELECT count(*) FROM history.{dataset}").fetchone()[0],  # noqa: S608
            "cursor": conn.execute(
                "SELECT cursor_value FROM ops.cursors WHERE source_id = %s AND dataset = %s", (source_id, dataset)
            ).fetchone(),
            "reconciliation": conn.execute(
                "SELECT count(*) FROM ops.reconciliation WHERE source_id = %s AND dataset = %s", (source_id, dataset)
            ).fetchone()[0],
        }


def _accounted(dsn: str, ledger, source_ids: list[str]) -> None:
    """Every generated record of these sources is loaded, quarantined or merged: none missing."""
    outcome = account_for(dsn, ledger[ledger["source_id"].isin(source_ids)])
    missing = outcome[outcome["outcome"] == "missing"]
    assert missing.empty, missing.head(10).to_string()


def _no_double_counting(dsn: str) -> None:
    """Each run's reconciliation holds, and no record was loaded twice (core keys are unique by construction)."""
    with psycopg.connect(dsn) as conn:
        bad = conn.execute(
            "SELECT count(*) FROM ops.reconciliation WHERE extracted <> loaded + quarantined + merged_duplicates"
            " + not_loaded_blocked OR NOT ok"
        ).fetchone()[0]
        dup_sources = conn.execute(
            "SELECT count(*) FROM (SELECT source_id, source_key FROM core.residents GROUP BY 1, 2 HAVING count(*) > 1) d"
        ).fetchone()[0]
    assert bad == 0 and dup_sources == 0


# -- the load is killed in the middle of a batch ------------------------------------------------


def _load_in_child(services: Services, source: Source, batch: dict) -> None:
    load_stage(services, source, batch)


def test_load_killed_mid_batch_leaves_nothing_and_reloads_once(world, services: Services) -> None:
    source = get_source(SONDUONG)
    prepare_run(services, "r1")
    batch = _until_backup(services, source, "residents", _connection(world, source), "r1")
    before = _state(services.platform_dsn, "residents", SONDUONG)
    with psycopg.connect(services.platform_dsn) as blocker:
        # The load's last statement waits on this lock: by then its transaction has merged the rows,
        # written quarantine and moved the cursor, all uncommitted.
        blocker.execute("LOCK TABLE ops.reconciliation IN EXCLUSIVE MODE")
        child = multiprocessing.get_context("fork").Process(target=_load_in_child, args=(services, source, batch))
        child.start()
        deadline = time.monotonic() + 60
        waiting = 0
        while time.monotonic() < deadline and not waiting:
            with psycopg.connect(services.platform_dsn) as probe:
                waiting = probe.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                    " AND query LIKE '%%ops.record_reconciliation%%'"
                ).fetchone()[0]
            time.sleep(0.1)
        assert waiting, "the load never reached its last statement"
        with psycopg.connect(services.platform_dsn) as probe:
            in_flight = probe.execute(
                "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation"
                " WHERE c.relname = 'residents' AND l.mode = 'RowExclusiveLock'"
            ).fetchone()[0]
        assert in_flight, "the killed transaction had written to core.residents"
        os.kill(child.pid, signal.SIGKILL)
        child.join(10)
        assert child.exitcode == -signal.SIGKILL
        blocker.rollback()

    after_kill = _state(services.platform_dsn, "residents", SONDUONG)
    assert after_kill == before  # no partial batch: core, history, cursor, reconciliation untouched
    assert before["core"] == 0 and before["cursor"] is None

    # The retry (the same task again) loads the batch exactly once.
    result = load_stage(services, source, batch)
    assert result["status"] == "loaded" and result["inserted"] > 0
    first = _state(services.platform_dsn, "residents", SONDUONG)
    assert first["core"] == result["inserted"] and first["reconciliation"] == 1 and first["cursor"] is not None
    # And the next night changes nothing: the boundary row is re-read and merged, not doubled.
    _sync(services, world, [SONDUONG], "r2", datasets=["residents"])
    second = _state(services.platform_dsn, "residents", SONDUONG)
    assert second["core"] == first["core"] and second["history"] == first["history"]
    _accounted(services.platform_dsn, world.ledger[world.ledger["dataset"] == "residents"], [SONDUONG])
    _no_double_counting(services.platform_dsn)


# -- a legacy source is unreachable ---------------------------------------------------------------


def test_unreachable_source_fails_alone_its_owner_is_told_and_it_catches_up(world, services: Services,
                                                                           smtp_sink) -> None:
    from sapnhap.reports import send_run_reports
    from sapnhap_dev.demo.generator import mutate_world

    closed = f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere"
    first = _sync(services, world, [SONDUONG, BACQUANG], "r1", connections={SONDUONG: closed})
    error = first[SONDUONG]
    assert isinstance(error, SourceUnavailableError)
    assert SONDUONG in str(error) and "cannot connect to legacy PostgreSQL" in str(error)
    assert all(b["status"] == "loaded" for b in first[BACQUANG])  # the other source loaded
    assert _state(services.platform_dsn, "residents", SONDUONG)["cursor"] is None

    sources = [get_source(SONDUONG), get_source(BACQUANG)]
    sent = send_run_reports(services, "r1", sources)
    messages = read_mail(smtp_sink[1])
    owners = set(get_source(SONDUONG).owners)
    told = [m for m in messages if m["To"] in owners]
    assert {m["To"] for m in told} == owners, sent
    body = told[0].get_body(preferencelist=("plain", "html")).get_content()
    assert "Không đồng bộ được" in body or "không đồng bộ được" in body.lower()

    # It is back, and the legacy systems moved on meanwhile: the next run catches up on everything.
    mutate_world(world, fraction=0.2, seed=3)
    second = _sync(services, world, [SONDUONG, BACQUANG], "r2")
    assert not any(isinstance(v, Exception) for v in second.values()), second
    _accounted(services.platform_dsn, world.ledger, [SONDUONG, BACQUANG])
    _no_double_counting(services.platform_dsn)


# -- the bucket is unreachable ------------------------------------------------------------------


def test_unreachable_bucket_loads_nothing_and_says_why(world, services: Services) -> None:
    source = get_source(SONDUONG)
    conn = _connection(world, source)
    prepare_run(services, "r1")
    dead = Services(platform_dsn=services.platform_dsn, smtp=services.smtp,
                    s3=S3Config(bucket=services.s3.bucket, endpoint_url=f"http://127.0.0.1:{free_port()}",
                                access_key="x", secret_key="x", connect_timeout=1))
    with pytest.raises(storage.BackupError, match=r"object storage: .* failed: Could not connect to the endpoint"):
        extract_stage(dead, source, "residents", conn, run_id="r1", run_date=RUN_DATE)
    # A batch backed up while the bucket was there, loaded when it is gone: refused, nothing written.
    batch = _until_backup(services, source, "residents", conn, "r1")
    with pytest.raises(storage.BackupError, match=r"manifest\.json failed"):
        load_stage(dead, source, batch)
    # A manifest that never got written (the backup task died): no load without it.
    missing = {**batch, "manifest_key": batch["prefix"] + "missing/manifest.json"}
    with pytest.raises(storage.BackupError, match="NoSuchKey|Not Found|404"):
        load_stage(services, source, missing)
    state = _state(services.platform_dsn, "residents", SONDUONG)
    assert state["core"] == 0 and state["cursor"] is None and state["reconciliation"] == 0
    with psycopg.connect(services.platform_dsn) as c:
        statuses = {r[0] for r in c.execute("SELECT status FROM ops.batches").fetchall()}
    assert "loaded" not in statuses
    assert load_stage(services, source, batch)["status"] == "loaded"  # the bucket is back


# -- rows are inserted while the extract streams ------------------------------------------------


def _clone_residents(dsn: str, n: int, *, tag: str, stamp_sql: str) -> tuple[psycopg.Connection, list[str]]:
    """Insert n copies of clean legacy residents with new keys and citizen ids, uncommitted; return (conn, keys)."""
    conn = psycopg.connect(dsn)
    base = conn.execute("SELECT max(id_nhan_khau) FROM nhan_khau").fetchone()[0] + (1000 if tag == "late" else 2000)
    rows = conn.execute(
        """INSERT INTO nhan_khau SELECT id_nhan_khau + %s - (SELECT min(id_nhan_khau) FROM nhan_khau),
                  left(so_dinh_danh, 6) || lpad(((right(so_dinh_danh, 6)::int + %s) %% 1000000)::text, 6, '0'),
                  ho_ten, ngay_sinh, gioi_tinh, ma_ho, quan_he_chu_ho, ma_xa_thuong_tru, dia_chi, ngay_dang_ky, """
        + stamp_sql
        + """ FROM nhan_khau WHERE so_dinh_danh ~ '^[0-9]{12}$' ORDER BY id_nhan_khau LIMIT %s
           RETURNING id_nhan_khau""",
        (base, base, n),
    ).fetchall()
    return conn, [str(r[0]) for r in rows]


def test_rows_written_during_the_extract_are_neither_skipped_nor_doubled(world, services: Services,
                                                                         monkeypatch) -> None:
    source = get_source(SONDUONG)
    dsn = world.connections[source.conn_id]
    with psycopg.connect(dsn) as c:
        columns = [r[0] for r in c.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'nhan_khau' ORDER BY ordinal_position"
        ).fetchall()]
        max_stamp = c.execute("SELECT max(thoi_diem_cap_nhat) FROM nhan_khau").fetchone()[0]
    assert columns[-1] == "thoi_diem_cap_nhat"
    # A writer whose transaction took its timestamp before the extract's newest row and commits
    # while the extract runs: the classic way an incremental cursor skips rows.
    early, early_keys = _clone_residents(dsn, 3, tag="early", stamp_sql=f"TIMESTAMP '{max_stamp}' - interval '10 minutes'")
    late, late_keys = _clone_residents(dsn, 3, tag="late", stamp_sql=f"TIMESTAMP '{max_stamp}' + interval '1 hour'")
    committed = threading.Event()
    original = extract_mod.chunk_to_table

    def commit_mid_extract(columns, rows):  # noqa: ANN001, ANN202 - wraps the extractor's chunk writer
        if not committed.is_set():
            threading.Thread(target=lambda: (early.commit(), late.commit(), committed.set())).start()
            assert committed.wait(10)
        return original(columns, rows)

    monkeypatch.setattr(extract_mod, "chunk_to_table", commit_mid_extract)
    lookback = source.model_copy(deep=True)
    lookback.datasets["residents"].cursor_lookback = "1h"
    _sync(services, world, [SONDUONG], "r1", datasets=["residents"])  # the snapshot predates both commits
    monkeypatch.setattr(extract_mod, "chunk_to_table", original)
    early.close()
    late.close()

    def loaded(keys: list[str]) -> set[str]:
        with psycopg.connect(services.platform_dsn) as c:
            return {r[0] for r in c.execute(
                "SELECT source_key FROM core.residents WHERE source_id = %s AND source_key = ANY(%s)"
                " UNION SELECT source_key FROM ops.quarantine WHERE source_id = %s AND source_key = ANY(%s)",
                (SONDUONG, keys, SONDUONG, keys)).fetchall()}

    assert not loaded(early_keys + late_keys)  # invisible to the first extract's snapshot
    # Without a lookback, the next run reads from the committed cursor (the newest row seen) and
    # the late rows arrive, but the early rows sit below the cursor forever: they would be skipped.
    no_lookback = source.model_copy(deep=True)
    no_lookback.datasets["residents"].cursor_lookback = None  # the demo file sets one: probe without it
    batch = extract_stage(services, no_lookback, "residents", dsn, run_id="probe", run_date=RUN_DATE)
    raw = storage.get_bytes(services.s3, batch["objects"]["raw"]["key"])
    import io

    import pyarrow.parquet as pq
    probe_keys = set(pq.read_table(io.BytesIO(raw)).column("id_nhan_khau").to_pylist())
    assert set(late_keys) <= probe_keys and not set(early_keys) & probe_keys
    # With the source's cursor_lookback (re-read a window below the committed cursor), nothing is skipped.
    prepare_run(services, "r2")
    load_stage(services, lookback, _until_backup(services, lookback, "residents", dsn, "r2"))
    assert loaded(early_keys + late_keys) == set(early_keys + late_keys)
    before = _state(services.platform_dsn, "residents", SONDUONG)
    prepare_run(services, "r3")
    again = load_stage(services, lookback, _until_backup(services, lookback, "residents", dsn, "r3"))
    assert again["inserted"] == 0 and again["updated"] == 0  # the window is re-read and merged, not doubled
    assert _state(services.platform_dsn, "residents", SONDUONG)["core"] == before["core"]
    _no_double_counting(services.platform_dsn)


# -- a source adds, renames or drops a column ---------------------------------------------------


def test_schema_changes_follow_the_documented_policy(world, services: Services) -> None:
    source = get_source(SONDUONG)
    dsn = world.connections[source.conn_id]
    _sync(services, world, [SONDUONG], "r1", datasets=["residents"])
    cursor = _state(services.platform_dsn, "residents", SONDUONG)["cursor"]
    with psycopg.connect(dsn) as c:
        c.execute("ALTER TABLE nhan_khau ADD COLUMN so_dien_thoai text DEFAULT '0912345678'")
        c.execute("UPDATE nhan_khau SET thoi_diem_cap_nhat = thoi_diem_cap_nhat + interval '1 day' WHERE id_nhan_khau IN"
                  " (SELECT id_nhan_khau FROM nhan_khau ORDER BY id_nhan_khau LIMIT 2)")
    # Added: kept in the raw backup and reported; the mapped columns load as before.
    added = _sync(services, world, [SONDUONG], "r2", datasets=["residents"])[SONDUONG]
    assert added[0]["status"] == "loaded"
    with psycopg.connect(services.platform_dsn) as c:
        message, manifest_key = c.execute(
            "SELECT message, manifest_key FROM ops.batches WHERE batch_id = %s", (added[0]["batch_id"],)).fetchone()
    assert "so_dien_thoai" in message
    raw_key = storage.get_json(services.s3, manifest_key)["objects"]["raw"]["key"]
    import io

    import pyarrow.parquet as pq
    assert "so_dien_thoai" in pq.read_table(io.BytesIO(storage.get_bytes(services.s3, raw_key))).column_names
    cursor = _state(services.platform_dsn, "residents", SONDUONG)["cursor"]

    # Renamed or dropped mapped column: the source fails clearly, nothing is loaded, the cursor stays.
    for ddl, column in (("ALTER TABLE nhan_khau RENAME COLUMN ho_ten TO ho_va_ten", "ho_ten"),
                        ("ALTER TABLE nhan_khau RENAME COLUMN ho_va_ten TO ho_ten; "
                         "ALTER TABLE nhan_khau DROP COLUMN ngay_sinh", "ngay_sinh")):
        with psycopg.connect(dsn) as c:
            c.execute(ddl)
        before = _state(services.platform_dsn, "residents", SONDUONG)
        failed = _sync(services, world, [SONDUONG], f"r-{column}", datasets=["residents"])[SONDUONG]
        assert isinstance(failed, SourceSchemaError)
        assert column in str(failed) and f"{SONDUONG}.yaml" in str(failed)
        after = _state(services.platform_dsn, "residents", SONDUONG)
        assert after == before and after["cursor"] == cursor


# -- a dataset is dropped from the platform and restored ----------------------------------------


def test_dropped_dataset_is_restored_from_backups_with_identical_checksums(world, services: Services) -> None:
    from psycopg import sql

    from sapnhap.platform import ensure_platform
    from sapnhap.restore import restore_dataset, table_fingerprint
    from sapnhap_dev.demo.generator import mutate_world

    sources = [SONDUONG, "hg_bacquang_sqlite"]  # two sources hold residents: cross-source merges replay too
    _sync(services, world, sources, "r1", datasets=["residents"])
    mutate_world(world, fraction=0.3, seed=5)
    _sync(services, world, sources, "r2", datasets=["residents"])
    table = sql.Identifier("core", "residents")
    with psycopg.connect(services.platform_dsn) as c:
        before = table_fingerprint(c, table, "residents")
        c.execute("DROP TABLE core.residents CASCADE")  # the lookup functions go with it
    ensure_platform(services.platform_dsn, repair=True)  # `python -m sapnhap migrate --repair`
    report = restore_dataset(services, "residents", confirm=True)
    with psycopg.connect(services.platform_dsn) as c:
        after = table_fingerprint(c, table, "residents")
    assert before[0] > 0 and after == before and report.checksum == before[1]
    assert report.matches_platform and len(report.batches) == 4 and report.verified_objects >= 4 * 6
