"""Keys, not luck; ordering; timeouts: every legacy record is accounted for, night after night.

A small SQLite legacy system holding residents (primary key ``rid``, natural key the citizen id)
is synced by the pipeline's stages on real PostgreSQL and the moto S3 server.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pandas as pd
import psycopg
import pytest

from sapnhap.services import Services
from sapnhap.sources import Source, get_source
from sapnhap.sync.backup import backup_stage
from sapnhap.sync.extract import extract_stage
from sapnhap.sync.load import load_stage
from sapnhap.sync.prepare import prepare_run
from sapnhap.sync.transform import transform_stage
from sapnhap.sync.validate import validate_stage

pytestmark = pytest.mark.integration

SOURCE_ID = "hg_bacquang_sqlite"
COLUMNS = ("rid", "id_number", "full_name", "dob", "sex", "household_no", "relation", "commune_code", "address",
           "reg_date", "last_modified")


def residents_source() -> Source:
    source = get_source(SOURCE_ID)
    return source.model_copy(update={"datasets": {"residents": source.datasets["residents"]}})


def resident(rid: str, citizen_id: str, modified: str, *, name: str = "Trần Thị Bình") -> dict:
    return {"rid": rid, "id_number": citizen_id, "full_name": name, "dob": "02/03/1990", "sex": "F",
            "household_no": "HB-" + rid, "relation": "Chủ hộ", "commune_code": "01153", "address": "Thôn Khuổi Lác",
            "reg_date": "01/01/2020", "last_modified": modified}


class Legacy:
    """The legacy SQLite file: rows are written, updated and read as the legacy application would."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with sqlite3.connect(path) as db:
            db.execute(f"CREATE TABLE residents ({', '.join(c + ' TEXT' for c in COLUMNS)}, PRIMARY KEY (rid))")

    @property
    def uri(self) -> str:
        return f"sqlite://{self.path}"

    def upsert(self, *rows: dict) -> None:
        with sqlite3.connect(self.path) as db:
            db.executemany(
                f"INSERT OR REPLACE INTO residents VALUES ({', '.join('?' for _ in COLUMNS)})",
                [[r[c] for c in COLUMNS] for r in rows],
            )

    def keys(self) -> list[str]:
        with sqlite3.connect(self.path) as db:
            return [r[0] for r in db.execute("SELECT rid FROM residents ORDER BY rid")]

    def rows(self) -> dict[str, dict]:
        with sqlite3.connect(self.path) as db:
            return {r[0]: dict(zip(COLUMNS, r, strict=True)) for r in db.execute("SELECT * FROM residents")}


def until_backup(services: Services, source: Source, connection: str, run_id: str) -> dict:
    batch = extract_stage(services, source, "residents", connection, run_id=run_id, run_date="2026-11-20")
    for stage in (transform_stage, validate_stage, backup_stage):
        batch = stage(services, source, batch)
    return batch


def night(services: Services, source: Source, legacy: Legacy, run_id: str) -> tuple[dict, dict]:
    prepare_run(services, run_id)
    batch = until_backup(services, source, legacy.uri, run_id)
    return batch, load_stage(services, source, batch)


def outcome_of(dsn: str, source_id: str, keys: list[str], dataset: str = "residents") -> dict[str, str]:
    """Where each legacy record ended (``sapnhap_dev.runner.account_for``): loaded, quarantined, merged or missing."""
    from sapnhap_dev.runner import account_for

    ledger = pd.DataFrame({"source_id": source_id, "dataset": dataset, "source_key": keys})
    outcome = account_for(dsn, ledger)
    return dict(zip(outcome["source_key"], outcome["outcome"], strict=True))


def core_holder(dsn: str, citizen_id: str) -> tuple[str, str] | None:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT source_key, full_name FROM core.residents WHERE citizen_id = %s",
                           (citizen_id,)).fetchone()
    return (row[0], row[1]) if row else None


def table_state(dsn: str) -> dict:
    with psycopg.connect(dsn) as conn:
        return {
            "core": sorted(conn.execute("SELECT source_key, record_hash FROM core.residents").fetchall()),
            "history": conn.execute("SELECT count(*) FROM history.residents").fetchone()[0],
            "merged": sorted(conn.execute(
                "SELECT source_id, source_key, kept_source_key, reason, batch_id FROM ops.merged_duplicates"
            ).fetchall()),
            "cursor": conn.execute("SELECT cursor_value, batch_id FROM ops.cursors").fetchall(),
            "reconciliation": sorted(conn.execute(
                "SELECT batch_id, extracted, loaded, quarantined, merged_duplicates FROM ops.reconciliation"
            ).fetchall()),
        }


@pytest.fixture
def services(platform_dsn: str, s3_config, smtp_sink) -> Services:
    return Services(platform_dsn=platform_dsn, s3=s3_config, smtp=smtp_sink[0])


# -- keys, not luck ------------------------------------------------------------------------------


def test_in_system_duplicates_updated_on_later_nights_are_all_accounted_for(tmp_path: Path, services: Services) -> None:
    source = residents_source()
    legacy = Legacy(tmp_path / "legacy.db")
    dsn = services.platform_dsn
    # Two legacy rows of one person (same citizen id), and one other person.
    legacy.upsert(resident("1", "002190000001", "2025-08-01 08:00:00", name="Trần Thị Bình"),
                  resident("2", "002190000001", "2025-08-02 08:00:00", name="Trần Thị Bình B"),
                  resident("3", "002190000003", "2025-08-02 09:00:00", name="Lê Văn Cường"))
    _, first = night(services, source, legacy, "n1")
    assert first["merged_in_batch"] == 1 and first["inserted"] == 2
    assert core_holder(dsn, "002190000001") == ("2", "Trần Thị Bình B")
    assert set(outcome_of(dsn, SOURCE_ID, legacy.keys()).values()) <= {"loaded", "merged"}

    # Night 2: the older duplicate is edited (and only it is read: the cursor is past the other);
    # it is now the newer record and wins, and the record it displaces is listed as merged into it.
    legacy.upsert(resident("1", "002190000001", "2025-08-03 08:00:00", name="Trần Thị Bình C"))
    _, second = night(services, source, legacy, "n2")
    assert core_holder(dsn, "002190000001") == ("1", "Trần Thị Bình C")
    outcome = outcome_of(dsn, SOURCE_ID, legacy.keys())
    assert outcome == {"1": "loaded", "2": "merged", "3": "loaded"}, outcome
    assert second["merged_cross_source"] + second["merged_in_batch"] == 1 and second["updated"] == 0
    with psycopg.connect(dsn) as conn:
        merged = conn.execute(
            "SELECT source_key, kept_source_key, reason FROM ops.merged_duplicates WHERE batch_id = %s",
            ("n2|hg_bacquang_sqlite|residents",),
        ).fetchall()
    assert merged == [("2", "1", "duplicate_in_source")]

    # Night 3: the other duplicate is edited and wins back; a third row of the same person appears.
    legacy.upsert(resident("2", "002190000001", "2025-08-04 08:00:00", name="Trần Thị Bình D"),
                  resident("4", "002190000001", "2025-08-04 07:00:00", name="Trần Thị Bình E"))
    batch, third = night(services, source, legacy, "n3")
    assert core_holder(dsn, "002190000001") == ("2", "Trần Thị Bình D")
    outcome = outcome_of(dsn, SOURCE_ID, legacy.keys())
    assert outcome == {"1": "merged", "2": "loaded", "3": "loaded", "4": "merged"}, outcome
    loaded = third["inserted"] + third["updated"] + third["unchanged"]
    assert third["extracted"] == loaded + third["quarantined"] + third["merged_in_batch"] + third["merged_cross_source"]

    # A rerun of the same batch (a retried load task) changes nothing.
    before = table_state(dsn)
    again = load_stage(services, source, batch)
    assert table_state(dsn) == before
    assert {k: again[k] for k in ("inserted", "updated", "unchanged", "merged_in_batch", "merged_cross_source")} == {
        k: third[k] for k in ("inserted", "updated", "unchanged", "merged_in_batch", "merged_cross_source")}



def test_a_record_whose_natural_key_changed_leaves_no_stale_row(tmp_path: Path, services: Services) -> None:
    source = residents_source()
    legacy = Legacy(tmp_path / "legacy.db")
    dsn = services.platform_dsn
    legacy.upsert(resident("1", "002190000009", "2025-08-01 08:00:00"), resident("3", "002190000003", "2025-08-01 09:00:00"))
    night(services, source, legacy, "k1")
    # The legacy system corrects the citizen id of record 1.
    legacy.upsert(resident("1", "002190000010", "2025-08-02 08:00:00"))
    night(services, source, legacy, "k2")
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT citizen_id FROM core.residents WHERE source_key = '1'").fetchall()
        history = conn.execute("SELECT citizen_id, change FROM history.residents WHERE source_key = '1'").fetchall()
    assert rows == [("002190000010",)]
    assert history == [("002190000009", "delete")]
    assert outcome_of(dsn, SOURCE_ID, legacy.keys()) == {"1": "loaded", "3": "loaded"}


def test_nights_of_edits_new_rows_and_in_system_duplicates_lose_nothing(tmp_path: Path, services: Services) -> None:
    import random
    from datetime import datetime, timedelta

    rng = random.Random(7)
    source = residents_source()
    legacy = Legacy(tmp_path / "legacy.db")
    dsn = services.platform_dsn
    clock = [datetime(2025, 8, 1, 8, 0)]
    counter = {"rid": 0, "person": 0}

    def stamp() -> str:  # every write gets a later, distinct last_modified
        clock[0] += timedelta(minutes=rng.randint(1, 90))
        return clock[0].strftime("%Y-%m-%d %H:%M:%S")

    def new_row(citizen_id: str | None = None) -> dict:
        counter["rid"] += 1
        if citizen_id is None:
            counter["person"] += 1
            citizen_id = f"00219{counter['person']:07d}"
        return resident(str(counter["rid"]), citizen_id, stamp(), name=f"Người {counter['rid']}")

    batch = None
    for n in range(7):
        rows = legacy.rows()
        by_id: dict[str, list[str]] = {}
        for rid, r in rows.items():
            by_id.setdefault(r["id_number"], []).append(rid)
        changes = []
        if n == 0:
            changes = [new_row() for _ in range(10)]
            changes += [new_row(c["id_number"]) for c in changes[:3]]  # second legacy rows of 3 people
        else:
            for rid in rng.sample(sorted(rows), 3):  # edits, duplicates included
                changes.append({**rows[rid], "full_name": f"Sửa {n} {rid}", "last_modified": stamp()})
            changes.append(new_row())
            changes.append(new_row(rng.choice(sorted(by_id))))  # a new duplicate of someone
            singles = sorted(rid for ids in by_id.values() if len(ids) == 1 for rid in ids
                             if rid not in {c["rid"] for c in changes})
            counter["person"] += 1
            moved = rng.choice(singles)
            changes.append({**rows[moved], "id_number": f"00219{counter['person']:07d}", "last_modified": stamp()})
        legacy.upsert(*changes)
        batch, _ = night(services, source, legacy, f"night-{n}")

        rows = legacy.rows()
        outcome = outcome_of(dsn, SOURCE_ID, sorted(rows))
        assert "missing" not in outcome.values(), (n, outcome)
        newest: dict[str, tuple[str, str]] = {}
        for rid, r in rows.items():
            if r["id_number"] not in newest or r["last_modified"] > newest[r["id_number"]][1]:
                newest[r["id_number"]] = (rid, r["last_modified"])
        with psycopg.connect(dsn) as conn:
            held = dict(conn.execute("SELECT citizen_id, source_key FROM core.residents").fetchall())
            twice = conn.execute("SELECT count(*) - count(DISTINCT source_key) FROM core.residents").fetchone()[0]
            bad = conn.execute("SELECT count(*) FROM ops.reconciliation WHERE NOT ok OR extracted <> loaded"
                               " + quarantined + merged_duplicates + not_loaded_blocked").fetchone()[0]
        assert held == {cid: rid for cid, (rid, _) in newest.items()}, n  # the newest legacy row holds each person
        assert twice == 0 and bad == 0

    before = table_state(dsn)
    load_stage(services, source, batch)  # the last night's load, retried
    assert table_state(dsn) == before

# -- ordering -------------------------------------------------------------------------------------


def _end_run(dsn: str, run_id: str, status: str = "failed") -> None:
    """What the run's reconcile (or the outbox's state sync) records when a run ends."""
    with psycopg.connect(dsn) as conn:
        conn.execute("UPDATE ops.runs SET status = %s, finished_at = now() WHERE run_id = %s", (status, run_id))


def test_an_older_extract_loaded_after_a_newer_one_is_refused(tmp_path: Path, services: Services) -> None:
    from sapnhap.ordering import BatchLockedError, StaleBatchError

    source = residents_source()
    legacy = Legacy(tmp_path / "legacy.db")
    dsn = services.platform_dsn
    legacy.upsert(resident("1", "002190000001", "2025-08-01 08:00:00", name="Version One"),
                  resident("3", "002190000003", "2025-08-01 09:00:00"))
    night(services, source, legacy, "n0")
    # Run "a" extracts version two, then its worker hangs; the run is ended (failed) meanwhile.
    legacy.upsert(resident("1", "002190000001", "2025-08-02 08:00:00", name="Version Two"))
    prepare_run(services, "a")
    old = until_backup(services, source, legacy.uri, "a")
    _end_run(dsn, "a")
    # Run "b" takes the lease over (run "a" is no longer running) and reads version three.
    legacy.upsert(resident("1", "002190000001", "2025-08-03 08:00:00", name="Version Three"))
    prepare_run(services, "b")
    new = until_backup(services, source, legacy.uri, "b")
    with pytest.raises(BatchLockedError, match=r"run b took the hg_bacquang_sqlite/residents lease over"):
        load_stage(services, source, old)
    assert load_stage(services, source, new)["status"] == "loaded"
    after_new = table_state(dsn)
    assert core_holder(dsn, "002190000001") == ("1", "Version Three")
    assert after_new["cursor"] == [("2025-08-03 08:00:00", "b|hg_bacquang_sqlite|residents")]

    # The hung worker of run "a" wakes up and loads its older extract: refused, nothing written.
    with pytest.raises(StaleBatchError, match=r"extracted from cursor '2025-08-01 09:00:00'.*committed cursor "
                                              r"'2025-08-03 08:00:00'.*nothing written"):
        load_stage(services, source, old)
    assert table_state(dsn) == after_new
    assert core_holder(dsn, "002190000001") == ("1", "Version Three")


def test_an_older_full_extract_loaded_after_a_newer_one_is_refused(tmp_path: Path, services: Services) -> None:
    from sapnhap.ordering import StaleBatchError

    full = residents_source().model_copy(deep=True)
    full.datasets["residents"].cursor = None  # no cursor: every night reads the whole table
    legacy = Legacy(tmp_path / "legacy.db")
    dsn = services.platform_dsn
    legacy.upsert(resident("1", "002190000001", "2025-08-02 08:00:00", name="Version Two"))
    prepare_run(services, "a")
    old = until_backup(services, full, legacy.uri, "a")
    _end_run(dsn, "a")
    legacy.upsert(resident("1", "002190000001", "2025-08-03 08:00:00", name="Version Three"))
    prepare_run(services, "b")
    load_stage(services, full, until_backup(services, full, legacy.uri, "b"))
    after_new = table_state(dsn)
    with pytest.raises(StaleBatchError, match=r"a\|hg_bacquang_sqlite\|residents: extracted from .* but batch "
                                              r"b\|hg_bacquang_sqlite\|residents committed after that"):
        load_stage(services, full, old)
    assert table_state(dsn) == after_new
    assert core_holder(dsn, "002190000001") == ("1", "Version Three")

def test_a_second_run_at_once_fails_clearly_and_doubles_nothing(tmp_path: Path, services: Services) -> None:
    from sapnhap.handover import build_handover
    from sapnhap.ordering import BatchLockedError

    source = residents_source()
    legacy = Legacy(tmp_path / "legacy.db")
    dsn = services.platform_dsn
    legacy.upsert(resident("1", "002190000001", "2025-08-01 08:00:00"),
                  resident("2", "002190000001", "2025-08-02 08:00:00"),
                  resident("3", "002190000003", "2025-08-02 09:00:00"))
    prepare_run(services, "a")
    prepare_run(services, "b")
    batch_a = extract_stage(services, source, "residents", legacy.uri, run_id="a", run_date="2026-11-20")
    with pytest.raises(BatchLockedError, match=r"run a holds the extract-to-load lease .* run b extracted nothing"):
        extract_stage(services, source, "residents", legacy.uri, run_id="b", run_date="2026-11-20")
    for stage in (transform_stage, validate_stage, backup_stage):
        batch_a = stage(services, source, batch_a)
    assert load_stage(services, source, batch_a)["merged_in_batch"] == 1

    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT count(*) FROM ops.batches WHERE run_id = 'b'").fetchone()[0] == 0
    records_a = build_handover(services, "a", sources=[source])
    assert build_handover(services, "b", sources=[source]) == []  # run b handed nothing over
    with psycopg.connect(dsn) as conn:
        stored_a = conn.execute("SELECT old_unit_code, object_key, sha256, created_at FROM ops.handover_records"
                                " ORDER BY 1").fetchall()
    assert records_a and {r[0] for r in stored_a} == {r["old_unit_code"] for r in records_a}
    # The handover task of run a retried: the same records, not re-written.
    assert build_handover(services, "a", sources=[source]) == records_a
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT old_unit_code, object_key, sha256, created_at FROM ops.handover_records"
                            " ORDER BY 1").fetchall() == stored_a

    # Run b's retry, after run a loaded: it reads from a's cursor; no merge is listed twice.
    batch_b = until_backup(services, source, legacy.uri, "b")
    load_stage(services, source, batch_b)
    with psycopg.connect(dsn) as conn:
        merged = conn.execute("SELECT source_key, kept_source_key FROM ops.merged_duplicates").fetchall()
        leases = conn.execute("SELECT count(*) FROM ops.batch_leases").fetchone()[0]
    assert merged == [("1", "2")] and leases == 0
    assert outcome_of(dsn, SOURCE_ID, legacy.keys()) == {"1": "merged", "2": "loaded", "3": "loaded"}


def test_a_lease_of_a_run_that_never_ended_expires(tmp_path: Path, services: Services,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from sapnhap.ordering import BatchLockedError

    source = residents_source()
    legacy = Legacy(tmp_path / "legacy.db")
    legacy.upsert(resident("1", "002190000001", "2025-08-01 08:00:00"))
    prepare_run(services, "killed")
    prepare_run(services, "next")
    extract_stage(services, source, "residents", legacy.uri, run_id="killed", run_date="2026-11-20")
    # kill -9 of the worker: ops.runs still says "running" and the lease stays.
    with pytest.raises(BatchLockedError):
        extract_stage(services, source, "residents", legacy.uri, run_id="next", run_date="2026-11-20")
    with psycopg.connect(services.platform_dsn) as conn:
        conn.execute("UPDATE ops.batch_leases SET expires_at = now() - interval '1 second'")
    assert load_stage(services, source, until_backup(services, source, legacy.uri, "next"))["inserted"] == 1


# -- timeouts -------------------------------------------------------------------------------------


def test_a_held_lock_on_a_core_table_fails_the_load_fast_and_writes_nothing(
    tmp_path: Path, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading
    import time

    from sapnhap.db import PlatformTimeoutError

    source = residents_source()
    legacy = Legacy(tmp_path / "legacy.db")
    dsn = services.platform_dsn
    legacy.upsert(resident("1", "002190000001", "2025-08-01 08:00:00"), resident("3", "002190000003", "2025-08-01 09:00:00"))
    prepare_run(services, "t1")
    batch = until_backup(services, source, legacy.uri, "t1")
    before = table_state(dsn)
    monkeypatch.setenv("SAPNHAP_LOCK_TIMEOUT_LOAD", "1s")
    blocker = psycopg.connect(dsn)
    try:
        # An analyst's session (or a frozen load) holding the table; it would let go after 30 s.
        blocker.execute("LOCK TABLE core.residents IN ACCESS EXCLUSIVE MODE")
        release = threading.Timer(30, blocker.rollback)
        release.start()
        started = time.monotonic()
        with pytest.raises(PlatformTimeoutError, match=r"t1\|hg_bacquang_sqlite\|residents: waited longer than "
                                                       r"lock_timeout=1s \(step load\).*nothing written"):
            load_stage(services, source, batch)
        assert time.monotonic() - started < 15
        release.cancel()
        blocker.rollback()
    finally:
        blocker.close()
    assert table_state(dsn) == before
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT status FROM ops.batches WHERE run_id = 't1'").fetchone()[0] == "backed_up"
    assert load_stage(services, source, batch)["inserted"] == 2  # the retry, once the lock is gone


def test_platform_sessions_carry_the_step_timeouts(platform_dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from sapnhap import db

    monkeypatch.setenv("SAPNHAP_STATEMENT_TIMEOUT_REPORT", "90s")
    with db.connect(platform_dsn, "load") as conn:
        load = conn.execute("SELECT current_setting('lock_timeout'), current_setting('statement_timeout'),"
                            " current_setting('idle_in_transaction_session_timeout')").fetchone()
    with db.connect(platform_dsn, "report") as conn:
        report = conn.execute("SELECT current_setting('statement_timeout')").fetchone()[0]
    assert load == ("30s", "1h", "10min")
    assert report == "90s"
    monkeypatch.setenv("SAPNHAP_LOCK_TIMEOUT_LOAD", "1s; DROP TABLE x")
    with pytest.raises(ValueError, match="SAPNHAP_LOCK_TIMEOUT_LOAD"):
        db.connect(platform_dsn, "load")


def test_a_merge_into_a_record_that_vanished_is_not_accounted_for(platform_dsn: str) -> None:
    from sapnhap_dev.runner import account_for

    with psycopg.connect(platform_dsn) as conn:
        conn.execute(
            """INSERT INTO ops.merged_duplicates
               (dataset, natural_key, source_id, source_key, kept_source_id, kept_source_key, reason, batch_id)
               VALUES ('residents', '002190000001', 's', 'a', 's', 'b', 'duplicate_in_batch', 'r|s|residents')"""
        )
    ledger = pd.DataFrame({"source_id": "s", "dataset": "residents", "source_key": ["a", "b"]})
    # Neither 'b' nor anything 'b' went to is in core or quarantine: 'a' is as lost as 'b'.
    assert account_for(platform_dsn, ledger)["outcome"].tolist() == ["missing", "missing"]
