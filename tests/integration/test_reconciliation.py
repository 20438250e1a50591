"""A row that goes missing in the load fails the batch loudly and rolls it back whole."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from legacy_sqlite import bacquang_dossiers_source, dossier, sqlite_legacy

from sapnhap.load import ReconciliationError
from sapnhap.services import Services
from sapnhap.sync import load as load_step
from sapnhap.sync.backup import backup_stage
from sapnhap.sync.extract import extract_stage
from sapnhap.sync.load import load_stage
from sapnhap.sync.prepare import prepare_run
from sapnhap.sync.transform import transform_stage
from sapnhap.sync.validate import validate_stage

pytestmark = pytest.mark.integration


def test_a_lost_row_fails_the_load_and_nothing_is_committed(tmp_path: Path, platform_dsn: str, s3_config, smtp_sink,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    services = Services(platform_dsn=platform_dsn, s3=s3_config, smtp=smtp_sink[0])
    source = bacquang_dossiers_source()
    connection = sqlite_legacy(tmp_path / "legacy.db", [dossier("R-1"), dossier("R-2"), dossier("R-3")])
    prepare_run(services, "run-1")
    batch = extract_stage(services, source, "dossiers", connection, run_id="run-1", run_date="2026-11-20")
    for stage in (transform_stage, validate_stage, backup_stage):
        batch = stage(services, source, batch)

    real_merge = load_step.merge_batch

    def losing_merge(conn, **kwargs):  # noqa: ANN001, ANN202 - same signature as merge_batch
        counts = real_merge(conn, **kwargs)
        counts.inserted -= 1  # one row the merge did not account for
        return counts

    monkeypatch.setattr(load_step, "merge_batch", losing_merge)
    with pytest.raises(ReconciliationError, match=r"extracted 3 != loaded 2"):
        load_stage(services, source, batch)
    with psycopg.connect(platform_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM core.dossiers").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM ops.cursors").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM ops.reconciliation").fetchone()[0] == 0

    monkeypatch.setattr(load_step, "merge_batch", real_merge)
    assert load_stage(services, source, batch)["inserted"] == 3  # the retry loads it exactly once
