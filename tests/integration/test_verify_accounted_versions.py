"""A quarantined key is accounted for by the version the platform saw, not whatever its version.

Verification counts a legacy key that is not in core but quarantined (or merged into another
record) as accounted for. If the legacy row then changes behind the cursor (the legacy team fixes
the bad value without the timestamp moving, or restores an older copy), the platform holds an old
version of it: verification must see the difference and re-sync it, as for a core row.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg
import pytest
from legacy_sqlite import bacquang_dossiers_source, dossier, sqlite_legacy, sync

from sapnhap import verify
from sapnhap.services import Services

pytestmark = pytest.mark.integration


def _one(dsn: str, query: str) -> object:
    with psycopg.connect(dsn) as conn:
        return conn.execute(query).fetchone()[0]


def test_a_quarantined_key_whose_legacy_row_changed_is_different_and_resynced(services: Services, tmp_path: Path) -> None:
    source = bacquang_dossiers_source()
    path = tmp_path / "bacquang.db"
    # BQ-2 has no such day (31/02) and sits behind the cursor: quarantined.
    connection = sqlite_legacy(path, [dossier("BQ-1", modified="2024-03-05 08:00:00"),
                                      dossier("BQ-2", recv="31/02/2024", modified="2024-03-04 08:00:00")])
    assert sync(services, source, connection, "run-1")["quarantined"] == 1
    seen = verify.verify_dataset(services, source, "dossiers", connection, run_id="v-1")
    assert (seen.missing, seen.different, seen.accounted, seen.status) == (0, 0, 1, "ok")

    # The legacy team fixes the date in place: the timestamp does not move, the nightly never reads it.
    with sqlite3.connect(path) as db:
        db.execute("UPDATE dossiers SET recv_date = '29/02/2024' WHERE file_no = 'BQ-2'")
    assert sync(services, source, connection, "run-2")["extracted"] <= 1
    assert _one(services.platform_dsn, "SELECT count(*) FROM core.dossiers WHERE dossier_code = 'BQ-2'") == 0

    changed = verify.verify_dataset(services, source, "dossiers", connection, run_id="v-2")
    assert (changed.different, changed.accounted, changed.resync_requested) == (1, 0, 1), changed
    sync(services, source, connection, "run-3")
    assert _one(services.platform_dsn, "SELECT received_date::text FROM core.dossiers WHERE dossier_code = 'BQ-2'") \
        == "2024-02-29"
    after = verify.verify_dataset(services, source, "dossiers", connection, run_id="v-3")
    assert (after.missing, after.extra, after.different, after.status) == (0, 0, 0, "ok")


def test_a_merged_duplicate_whose_legacy_row_changed_is_different_and_resynced(services: Services, tmp_path: Path) -> None:
    from test_keys_and_ordering import Legacy, night, resident, residents_source

    source = residents_source()
    legacy = Legacy(tmp_path / "legacy.db")
    # Two legacy rows of one person (same citizen id): the later one is kept, the earlier merged.
    legacy.upsert(resident("1", "002190000001", "2025-08-01 08:00:00"),
                  resident("2", "002190000001", "2025-08-02 08:00:00"))
    assert night(services, source, legacy, "n1")[1]["merged_in_batch"] == 1
    seen = verify.verify_dataset(services, source, "residents", legacy.uri, run_id="v-1")
    assert (seen.missing, seen.different, seen.accounted, seen.status) == (0, 0, 1, "ok")

    # The legacy team corrects the merged row's citizen id in place (its timestamp does not move): it
    # is another person, whom the platform never read. Accounted "whatever its version", it is lost.
    with sqlite3.connect(legacy.path) as db:
        db.execute("UPDATE residents SET id_number = '002190000009' WHERE rid = '1'")
    changed = verify.verify_dataset(services, source, "residents", legacy.uri, run_id="v-2")
    assert (changed.different, changed.accounted, changed.resync_requested) == (1, 0, 1), changed
    night(services, source, legacy, "n2")
    assert _one(services.platform_dsn, "SELECT source_key FROM core.residents WHERE citizen_id = '002190000009'") == "1"
    after = verify.verify_dataset(services, source, "residents", legacy.uri, run_id="v-3")
    assert (after.missing, after.extra, after.different, after.status) == (0, 0, 0, "ok")
