"""Keys, not luck; ordering; timeouts: every legacy record is accounted for, night after night.

A small SQLite legacy system holding residents (primary key ``rid``, natural key the citizen id)
is synced by the pipeline's stages on real PostgreSQL and the moto S3 server.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg
import pytest

from sapnhap.pipeline import backup_stage, extract_stage, load_stage, prepare_run, transform_stage, validate_stage
from sapnhap.services import Services
from sapnhap.sources import Source, get_source

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
    """Where each legacy record ended: 'core', 'quarantine', 'merged->core' (chain followed) or 'missing'.

    A merged record counts only when its latest merge row (by batch commit order) names a kept
    record that is itself in core or quarantine, following merges of merges.
    """
    with psycopg.connect(dsn) as conn:
        in_core = {(r[0], r[1]) for r in conn.execute(f"SELECT source_id, source_key FROM core.{dataset}")}  # noqa: S608
        quarantined = {(r[0], r[1]) for r in conn.execute(
            "SELECT source_id, source_key FROM ops.quarantine WHERE dataset = %s AND status = 'open'", (dataset,))}
        latest = {
            (r[0], r[1]): (r[2], r[3])
            for r in conn.execute(
                """SELECT DISTINCT ON (m.source_id, m.source_key) m.source_id, m.source_key, m.kept_source_id,
                          m.kept_source_key
                   FROM ops.merged_duplicates m JOIN ops.batches b USING (batch_id)
                   WHERE m.dataset = %s
                   ORDER BY m.source_id, m.source_key, b.committed_at DESC, m.batch_id DESC""",
                (dataset,),
            )
        }

    def resolve(record: tuple[str, str], seen: frozenset = frozenset()) -> str:
        if record in in_core:
            return "core"
        if record in quarantined:
            return "quarantine"
        if record in latest and record not in seen:
            end = resolve(latest[record], seen | {record})
            return "merged->" + end.removeprefix("merged->") if end != "missing" else "missing"
        return "missing"

    return {k: resolve((source_id, k)) for k in keys}


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
    assert set(outcome_of(dsn, SOURCE_ID, legacy.keys()).values()) <= {"core", "merged->core"}

    # Night 2: the older duplicate is edited (and only it is read: the cursor is past the other);
    # it is now the newer record and wins, and the record it displaces is listed as merged into it.
    legacy.upsert(resident("1", "002190000001", "2025-08-03 08:00:00", name="Trần Thị Bình C"))
    _, second = night(services, source, legacy, "n2")
    assert core_holder(dsn, "002190000001") == ("1", "Trần Thị Bình C")
    outcome = outcome_of(dsn, SOURCE_ID, legacy.keys())
    assert outcome == {"1": "core", "2": "merged->core", "3": "core"}, outcome
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
    _, third = night(services, source, legacy, "n3")
    assert core_holder(dsn, "002190000001") == ("2", "Trần Thị Bình D")
    outcome = outcome_of(dsn, SOURCE_ID, legacy.keys())
    assert outcome == {"1": "merged->core", "2": "core", "3": "core", "4": "merged->core"}, outcome
    loaded = third["inserted"] + third["updated"] + third["unchanged"]
    assert third["extracted"] == loaded + third["quarantined"] + third["merged_in_batch"] + third["merged_cross_source"]

