"""``core.find_*_by_old_unit(code, as_of)``: "as of" is the record's business date, not its load date.

The README's example, ``core.find_residents_by_old_unit('02494', '2024-12-31')``, on residents of
the demo world's Yên Sơn exports synced today by the real stages. Xã Thái Bình (02494) is split
with no rule: its residents wait in the review queue, the data team decides them on the review
page, and the next run loads them. Registered years ago, they are found "as of" 2024-12-31.
"""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path

import psycopg
import pytest

from sapnhap.services import Services
from sapnhap.sources import get_source
from sapnhap.sync.backup import backup_stage
from sapnhap.sync.extract import extract_stage
from sapnhap.sync.load import load_stage
from sapnhap.sync.prepare import prepare_run
from sapnhap.sync.transform import transform_stage
from sapnhap.sync.validate import validate_stage
from sapnhap.ui_queries import decide_group, review_groups

pytestmark = pytest.mark.integration

SOURCE = "tq_yenson_xa_exports"
COMMUNE = "02494"  # Xã Thái Bình: split with no rule


@pytest.fixture
def yenson(tmp_path: Path, services: Services, pg_admin_dsn: str):  # noqa: ANN201
    from sapnhap_dev.demo.generator import generate_world

    world = generate_world(tmp_path / "world", seed=23, size=40, pg_dsn=pg_admin_dsn,
                           db_prefix=f"lb{uuid.uuid4().hex[:6]}")
    try:
        source = get_source(SOURCE)
        for night in ("r1", "r2"):
            prepare_run(services, night)
            batch = extract_stage(services, source, "residents", world.connections[source.conn_id], run_id=night,
                                  run_date="2026-12-01")
            batch = backup_stage(services, source,
                                 validate_stage(services, source, transform_stage(services, source, batch)))
            assert load_stage(services, source, batch)["status"] == "loaded"
            if night == "r1":  # the review page: one decision per group, applied by the next run
                groups = [g for g in review_groups(services.platform_dsn) if g.old_commune_code == COMMUNE]
                assert groups
                for group in groups:
                    decide_group(services.platform_dsn, group.group_id, group.candidates[0].code, decided_by="canbo")
        yield services
    finally:
        world.drop_databases()


def _count(dsn: str, query: str, *args: object):  # noqa: ANN202 - a count, or a date
    with psycopg.connect(dsn) as conn:
        return conn.execute(query, args).fetchone()[0]


def test_the_readme_example_finds_the_residents_registered_by_then(yenson: Services) -> None:
    dsn = yenson.platform_dsn
    held = _count(dsn, "SELECT count(*) FROM core.residents WHERE old_commune_code = %s", COMMUNE)
    by_then = _count(dsn, "SELECT count(*) FROM core.residents WHERE old_commune_code = %s"
                     " AND (registered_date IS NULL OR registered_date <= '2024-12-31')", COMMUNE)
    assert held > 0 and by_then > 0
    assert _count(dsn, "SELECT count(*) FROM core.find_residents_by_old_unit('02494', '2024-12-31')") == by_then
    # by name too, accents optional; and nothing registered before the first registration
    assert _count(dsn, "SELECT count(*) FROM core.find_residents_by_old_unit_name('thai binh', '2024-12-31')"
                  " WHERE old_commune_code = '02494'") == by_then
    first = _count(dsn, "SELECT min(registered_date) - 1 FROM core.residents WHERE old_commune_code = %s", COMMUNE)
    undated = _count(dsn, "SELECT count(*) FROM core.residents WHERE old_commune_code = %s"
                     " AND registered_date IS NULL", COMMUNE)
    assert _count(dsn, "SELECT count(*) FROM core.find_residents_by_old_unit('02494', %s)", first) == undated
    # today: every record of the commune
    assert _count(dsn, "SELECT count(*) FROM core.find_residents_by_old_unit('02494')") == held


def test_known_at_still_asks_what_the_platform_held_then(yenson: Services) -> None:
    dsn = yenson.platform_dsn
    yesterday = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    assert _count(dsn, "SELECT count(*) FROM core.find_residents_by_old_unit('02494', known_at => %s)", yesterday) == 0
    assert _count(dsn, "SELECT count(*) FROM core.find_residents_by_new_unit('08', known_at => %s)", yesterday) == 0
    assert _count(dsn, "SELECT count(*) FROM core.find_residents_by_new_unit('08', known_at => now())") > 0
