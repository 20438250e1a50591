"""Platform migrations and least privilege on a real PostgreSQL.

Every schema change is a numbered Alembic revision applied by ``python -m sapnhap migrate`` as
the owner; the nightly runs as the loader role, does no DDL, and only checks the revision.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from sapnhap.migrations import SchemaVersionError, check_schema, current, head, revisions, upgrade
from sapnhap.platform import LOADER_ROLE, ensure_platform, ensure_roles
from sapnhap.services import Services
from sapnhap.sources import get_source
from sapnhap.sync.backup import backup_stage
from sapnhap.sync.extract import extract_stage
from sapnhap.sync.load import load_stage
from sapnhap.sync.prepare import prepare_run
from sapnhap.sync.transform import transform_stage
from sapnhap.sync.validate import validate_stage

pytestmark = pytest.mark.integration


def as_role(dsn: str, role: str) -> str:
    """The same database, every statement run with ``role``'s privileges (as a login in that group would)."""
    return make_conninfo(**{**conninfo_to_dict(dsn), "options": f"-c role={role}"})


@pytest.fixture
def fresh_db(pg_admin_dsn: str):
    """Another empty database (``scratch_db`` is the one ``platform_dsn`` migrates)."""
    name = f"sapnhap_f_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_conninfo(**{**conninfo_to_dict(pg_admin_dsn), "dbname": name})
    finally:
        with psycopg.connect(pg_admin_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _trigger_oids(dsn: str) -> list[int]:
    with psycopg.connect(dsn) as conn:
        return [r[0] for r in conn.execute(
            "SELECT oid FROM pg_trigger WHERE tgname = 'keep_history' ORDER BY tgrelid").fetchall()]


def test_prepare_checks_the_schema_version_and_runs_no_ddl(platform_dsn: str, fresh_db: str, s3_config) -> None:
    before = _trigger_oids(platform_dsn)
    prepare_run(Services(platform_dsn=platform_dsn, s3=s3_config), "r1")
    # Today's prepare dropped and re-created every history trigger each night (an ACCESS
    # EXCLUSIVE lock behind any long analyst query, blocking every reader).
    assert _trigger_oids(platform_dsn) == before and before

    with pytest.raises(SchemaVersionError, match="python -m sapnhap migrate"):
        prepare_run(Services(platform_dsn=fresh_db, s3=s3_config), "r1")
    upgrade(fresh_db, revisions()[-2])
    with pytest.raises(SchemaVersionError, match=f"behind this code's {head()}"):
        prepare_run(Services(platform_dsn=fresh_db, s3=s3_config), "r1")
    with psycopg.connect(fresh_db) as conn:  # the failed prepare wrote nothing
        assert conn.execute("SELECT count(*) FROM ops.runs").fetchone()[0] == 0


def _release_0_1_0_rows(dsn: str) -> None:
    """What a platform of release 0.1.0 holds after a night: a core row, its history, the run's audit trail."""
    with psycopg.connect(dsn) as conn:
        conn.execute("INSERT INTO ops.runs (run_id, status, finished_at) VALUES ('r0', 'succeeded', now())")
        conn.execute(
            """INSERT INTO core.residents (citizen_id, full_name, birth_date, gender, old_commune_code, source_id,
                   source_key, unit_scheme, record_hash, batch_id)
               VALUES ('001000000001', 'Người Thử', '1990-01-01', 'nam', '02338', 'hg_old', 'k1', 'old', 'h1',
                       'r0|hg_old|residents')""")
        conn.execute("UPDATE core.residents SET record_hash = 'h2' WHERE citizen_id = '001000000001'")
        conn.execute(
            """INSERT INTO ops.reconciliation (run_id, batch_id, source_id, dataset, extracted, loaded, quarantined,
                   merged_duplicates, ok) VALUES ('r0', 'r0|hg_old|residents', 'hg_old', 'residents', 1, 1, 0, 0, true)""")


def test_the_previous_release_upgrades_with_its_data_and_the_nightly_runs_as_loader(
    scratch_db: str, pg_admin_dsn: str, s3_config, tmp_path: Path
) -> None:
    from sapnhap.handover import build_handover
    from sapnhap.restore import restore_drill
    from sapnhap.sync.reconcile import reconcile_run
    from sapnhap_dev.demo.generator import generate_world

    assert revisions()[0] == "0001"
    upgrade(scratch_db, "0001")  # release 0.1.0's schema, frozen
    _release_0_1_0_rows(scratch_db)
    assert ensure_platform(scratch_db) == head() == current(scratch_db)

    with psycopg.connect(scratch_db) as conn:
        assert conn.execute("SELECT record_hash FROM core.residents").fetchall() == [("h2",)]
        assert conn.execute("SELECT count(*) FROM history.residents").fetchone()[0] == 1
        assert conn.execute("SELECT count(*) FROM ops.reconciliation WHERE run_id = 'r0'").fetchone()[0] == 1

    loader = Services(platform_dsn=as_role(scratch_db, LOADER_ROLE), s3=s3_config)
    world = generate_world(tmp_path / "world", seed=5, size=10, pg_dsn=pg_admin_dsn,
                           db_prefix=f"lm{uuid.uuid4().hex[:6]}")
    try:
        sources = [get_source("tq_sonduong_dancu"), get_source("hg_bacquang_sqlite")]
        for run_id in ("r1", "r2"):  # the second night changes nothing, and re-records nothing by UPDATE
            prepare_run(loader, run_id)
            for source in sources:
                conn = str(world.sqlite_path()) if source.kind == "sqlite" else world.connections[source.conn_id]
                batch = extract_stage(loader, source, "residents", conn, run_id=run_id, run_date="2025-12-01")
                batch = backup_stage(loader, source, validate_stage(loader, source, transform_stage(loader, source, batch)))
                assert load_stage(loader, source, batch)["status"] == "loaded"
            build_handover(loader, run_id, sources=sources)
            reconcile_run(loader, run_id, [(s.id, "residents") for s in sources])
    finally:
        world.drop_databases()
    with psycopg.connect(scratch_db) as conn:
        loaded = conn.execute("SELECT count(*) FROM core.residents WHERE source_id <> 'hg_old'").fetchone()[0]
        old = conn.execute("SELECT count(*) FROM core.residents WHERE source_id = 'hg_old'").fetchone()[0]
        runs = conn.execute("SELECT run_id, status FROM ops.runs ORDER BY run_id").fetchall()
        # The 0.1.0 row was never backed up in this bucket: out of the drill's comparison.
        conn.execute("DELETE FROM core.residents WHERE source_id = 'hg_old'")
    assert loaded > 0 and old == 1
    assert runs == [("r0", "succeeded"), ("r1", "succeeded"), ("r2", "succeeded")]
    # The weekly restore drill (the same connection) restores into its own scratch schema.
    assert restore_drill(loader, recipients=[], datasets=["residents"])["ok"]


NEW_COLUMN_MIGRATION = '''
from sapnhap.migrations.helpers import add_dataset_column

revision = "9001"
down_revision = {head!r}
branch_labels = None
depends_on = None


def upgrade() -> None:
    add_dataset_column("residents", "ethnicity", "text")


def downgrade() -> None:
    raise NotImplementedError
'''


def test_a_new_canonical_column_is_one_migration_and_history_and_lookups_follow(scratch_db: str, tmp_path: Path) -> None:
    """The procedure of docs/schema-changes.md on a platform holding data."""
    upgrade(scratch_db)
    _release_0_1_0_rows(scratch_db)
    extra = tmp_path / "versions"
    extra.mkdir()
    (extra / "9001_residents_ethnicity.py").write_text(NEW_COLUMN_MIGRATION.format(head=head()))
    assert upgrade(scratch_db, version_locations=[extra]) == "9001"
    with psycopg.connect(scratch_db) as conn:
        conn.execute("UPDATE core.residents SET ethnicity = 'Tày' WHERE citizen_id = '001000000001'")
        conn.execute("UPDATE core.residents SET ethnicity = 'Kinh' WHERE citizen_id = '001000000001'")
        kept = conn.execute("SELECT ethnicity FROM history.residents ORDER BY history_id").fetchall()
        # The lookup functions return the table's row type: they were recreated with the new column.
        found = conn.execute("SELECT citizen_id, ethnicity FROM core.find_residents_by_old_unit('02338')").fetchall()
    assert kept == [(None,), (None,), ("Tày",)]  # 0.1.0 history rows keep no value
    assert found == [("001000000001", "Kinh")]
    with pytest.raises(SchemaVersionError, match="newer than this code"):
        check_schema(scratch_db)


def _shape(dsn: str) -> dict[str, set]:
    schemas = ["core", "history", "ops", "registry"]
    with psycopg.connect(dsn) as conn:
        return {
            "columns": set(conn.execute(
                """SELECT table_schema, table_name, column_name, data_type, is_nullable, column_default
                   FROM information_schema.columns WHERE table_schema = ANY(%s)""", (schemas,)).fetchall()),
            "indexes": set(conn.execute(
                "SELECT schemaname, indexname, indexdef FROM pg_indexes WHERE schemaname = ANY(%s)", (schemas,)).fetchall()),
            "functions": {r for r in conn.execute(
                """SELECT n.nspname, p.proname, pg_get_function_identity_arguments(p.oid) FROM pg_proc p
                   JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = ANY(%s)""", (schemas,)).fetchall()},
            "triggers": set(conn.execute(
                "SELECT tgrelid::regclass::text, tgname FROM pg_trigger WHERE NOT tgisinternal").fetchall()),
        }


def test_the_migrations_build_the_schema_the_code_describes(scratch_db: str, fresh_db: str) -> None:
    """``platform_ddl()`` describes the schema the code expects; a change there needs a migration."""
    from sapnhap.platform import platform_ddl
    from sapnhap.reference.platform import ensure_schema

    upgrade(scratch_db)
    with psycopg.connect(fresh_db) as conn:
        ensure_schema(conn)
        conn.execute(platform_ddl())
    want, have = _shape(fresh_db), _shape(scratch_db)
    for kind in ("columns", "indexes", "triggers"):
        assert want[kind] - have[kind] == set(), f"{kind} in platform.py without a migration"
    assert want["functions"] - have["functions"] == set(), "functions in platform.py without a migration"
    # Only the version table and the migrations' own functions are extra.
    extra_tables = {(s, t) for s, t, *_ in have["columns"] - want["columns"]}
    assert extra_tables <= {("ops", "schema_version")}


LOADER_FORBIDDEN = [
    "ALTER TABLE core.residents DISABLE TRIGGER keep_history",
    "ALTER TABLE core.residents DISABLE TRIGGER keep_history_delete",
    "ALTER TABLE core.residents DISABLE TRIGGER ALL",
    "DROP TRIGGER keep_history ON core.residents",
    "DELETE FROM history.residents",
    "UPDATE history.residents SET change = 'x'",
    "TRUNCATE history.residents",
    "DROP TABLE core.residents",
    "UPDATE ops.reconciliation SET loaded = extracted",
    "DELETE FROM ops.reconciliation",
    "UPDATE ops.handover_records SET sha256 = 'x'",
    "DELETE FROM ops.handover_records",
    "UPDATE ops.restores SET matches_platform = true",
    "DELETE FROM ops.restores",
    "DELETE FROM ops.cursors",
    "UPDATE ops.cursors SET source_id = 'x'",
    "DELETE FROM ops.quarantine",
    "UPDATE ops.quarantine SET payload = NULL",
    "DELETE FROM ops.batches",
    "DELETE FROM ops.source_files",
    "ALTER TABLE ops.reconciliation ADD COLUMN x text",
    "CREATE TABLE ops.mine (x text)",
    "SELECT ops.record_reconciliation('r0', 'b', 'hg_old', 'residents', 1, 0, 0, 0, 0, true)",
]


def test_the_loader_cannot_rewrite_the_audit_trail_or_the_schema(platform_dsn: str) -> None:
    _release_0_1_0_rows(platform_dsn)
    with psycopg.connect(platform_dsn) as conn:  # a later run: r0 is closed
        conn.execute("INSERT INTO ops.runs (run_id) VALUES ('r1')")
    allowed = []
    with psycopg.connect(as_role(platform_dsn, LOADER_ROLE), autocommit=True) as conn:
        assert conn.execute("SELECT current_user").fetchone()[0] == LOADER_ROLE
        for statement in LOADER_FORBIDDEN:
            try:
                conn.execute(statement)
                allowed.append(statement)
            except psycopg.errors.InsufficientPrivilege:
                pass
    assert allowed == []
    with psycopg.connect(platform_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM history.residents").fetchone()[0] == 1
        assert conn.execute("SELECT loaded FROM ops.reconciliation WHERE run_id = 'r0'").fetchone()[0] == 1


def test_an_open_run_records_its_reconciliation_again_through_the_function_only(platform_dsn: str) -> None:
    assert ensure_roles(platform_dsn)
    with psycopg.connect(platform_dsn) as conn:
        conn.execute("INSERT INTO ops.runs (run_id) VALUES ('r1')")
    with psycopg.connect(as_role(platform_dsn, LOADER_ROLE)) as conn:
        for loaded in (0, 1):  # a retried load of the open run
            conn.execute("SELECT ops.record_reconciliation('r1', 'b', 's', 'residents', 1, %s, 0, 0, 0, true)",
                         (loaded,))
        assert conn.execute("SELECT loaded FROM ops.reconciliation WHERE run_id = 'r1'").fetchone()[0] == 1


def test_python_m_sapnhap_migrate(fresh_db: str, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    from sapnhap.runner import main

    params = conninfo_to_dict(fresh_db)
    url = f"postgresql://localhost/{params.pop('dbname')}?" + "&".join(f"{k}={v}" for k, v in params.items())
    monkeypatch.setenv("SAPNHAP_PLATFORM_URL", url)
    assert main(["migrate", "--check"]) == 1
    assert "python -m sapnhap migrate" in capsys.readouterr().err
    assert main(["migrate"]) == 0
    assert f"none -> {head()}" in capsys.readouterr().out
    assert main(["migrate", "--check"]) == 0 and current(fresh_db) == head()


def test_repair_recreates_a_dropped_table_after_a_column_migration(scratch_db: str, tmp_path: Path) -> None:
    extra = tmp_path / "versions"
    extra.mkdir()
    (extra / "9001_residents_ethnicity.py").write_text(NEW_COLUMN_MIGRATION.format(head=head()))
    upgrade(scratch_db, version_locations=[extra])
    with psycopg.connect(scratch_db) as conn:
        conn.execute("DROP TABLE core.dossiers CASCADE")  # by hand, before a restore
    assert upgrade(scratch_db, version_locations=[extra]) == "9001"  # nothing to do: the version is current
    assert upgrade(scratch_db, version_locations=[extra], repair=True) == "9001"
    with psycopg.connect(scratch_db) as conn:
        assert conn.execute("SELECT to_regclass('core.dossiers')").fetchone()[0] is not None
        conn.execute("SELECT * FROM core.find_dossiers_by_old_unit('02338')").fetchall()
        _release_0_1_0_rows(scratch_db)
        found = conn.execute("SELECT ethnicity FROM core.find_residents_by_old_unit('02338')").fetchall()
    assert found == [(None,)]


def _dossiers(source_id: str, rows: list[tuple[str, str, str]]):  # noqa: ANN202
    """(id, dossier_code, updated_at) -> a transformed dossiers frame of ``source_id``."""
    import pandas as pd

    from sapnhap.reference import load_reference
    from sapnhap.transform import transform_frame

    raw = pd.DataFrame({
        "id": [r[0] for r in rows], "ma_ho_so": [r[1] for r in rows], "ma_thu_tuc": "1.001",
        "ten_thu_tuc": "Đăng ký khai sinh", "nguoi_nop": "Nguyễn Văn An", "so_cccd": "002090012345", "ma_xa": "00703",
        "dia_chi_chi_tiet": "Thôn Bản Mán", "ngay_nhan": "01/02/2024", "ngay_hen_tra": "05/02/2024", "ngay_tra": None,
        "trang_thai": "Đã tiếp nhận", "ngay_cap_nhat": [r[2] for r in rows],
    })
    source = get_source("hg_vixuyen_motcua").model_copy(update={"id": source_id})
    return transform_frame(raw, source, "dossiers", reference=load_reference()).frame


def _a_week_of_loads(dsn: str) -> list[dict]:
    """Batches that insert, leave alone, update, replace by a newer record and re-key dossiers; the history left."""
    from psycopg.rows import dict_row

    from sapnhap.load import merge_batch

    first = _dossiers("src_a", [("1", "HS1", "2024-02-01 10:00:00"), ("2", "HS2", "2024-02-01 10:00:00"),
                                ("3", "HS3", "2024-02-01 10:00:00")])
    changed = first.copy()
    changed["status"] = ["completed", "completed", changed.loc[2, "status"]]
    changed["record_hash"] = ["c1", "c2", changed.loc[2, "record_hash"]]
    newer = _dossiers("src_b", [("9", "HS2", "2024-03-01 10:00:00")])
    rekeyed = _dossiers("src_a", [("3", "HS3-NEW", "2024-04-01 10:00:00")])
    stamps = {}
    for batch_id, valid in [("b1", first), ("b2", first), ("b3", changed), ("b4", newer), ("b5", rekeyed)]:
        with psycopg.connect(dsn) as conn, conn.transaction():
            merge_batch(conn, dataset="dossiers", batch_id=batch_id, valid=valid)
            stamps[batch_id] = conn.execute("SELECT now()").fetchone()[0]
    with psycopg.connect(dsn) as conn, conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute("SELECT * FROM history.dossiers ORDER BY history_id").fetchall()
        valid_from = dict(conn.execute("SELECT batch_id, min(valid_from) FROM core.dossiers GROUP BY 1").fetchall())
    out = []
    for r in rows:
        # Valid until the transaction that replaced it: the batch whose time it carries.
        ended_by = next(b for b, t in stamps.items() if t == r["valid_to"])
        assert r["valid_from"] < r["valid_to"] and (ended_by not in valid_from or valid_from[ended_by] == r["valid_to"])
        out.append({**{k: v for k, v in r.items() if k not in ("history_id", "valid_from", "valid_to")}, "ended_by": ended_by})
    return sorted(out, key=repr)


def test_history_is_written_per_statement_with_the_content_the_row_trigger_wrote(scratch_db: str, fresh_db: str) -> None:
    known = revisions()
    before = known[known.index("0009_perf") - 1]  # the last revision with row triggers
    upgrade(fresh_db, before)  # row triggers: one history INSERT per changed row
    upgrade(scratch_db)
    with psycopg.connect(scratch_db) as conn:
        triggers = conn.execute(
            """SELECT tgrelid::regclass::text, tgname, tgtype & 1 = 1 AS per_row, tgoldtable FROM pg_trigger
               WHERE tgname LIKE 'keep_history%' ORDER BY 1, 2""").fetchall()
    assert triggers and {t[2] for t in triggers} == {False} and {t[3] for t in triggers} == {"old_rows"}
    assert {t[1] for t in triggers if t[0] == "core.dossiers"} == {"keep_history", "keep_history_delete"}
    before, after = _a_week_of_loads(fresh_db), _a_week_of_loads(scratch_db)
    # HS1, HS2 updated (b3), HS2 replaced by src_b's newer record (b4), HS3 re-keyed: its old row deleted (b5).
    assert sorted((r["dossier_code"], r["change"], r["ended_by"]) for r in after) == [
        ("HS1", "update", "b3"), ("HS2", "update", "b3"), ("HS2", "update", "b4"), ("HS3", "delete", "b5")]
    assert after == before
