"""A source above its block threshold is not loaded that night, the others are, and its owner is told why."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from legacy_sqlite import bacquang_dossiers_source, dossier, sqlite_legacy, sync

from sapnhap.reports import send_run_reports
from sapnhap.services import Services
from sapnhap.sources import QualityThresholds
from sapnhap.sync.prepare import prepare_run
from sapnhap_dev.embedded import read_mail

pytestmark = pytest.mark.integration


def test_blocked_source_is_not_loaded_and_its_owner_is_told(tmp_path: Path, platform_dsn: str, s3_config, smtp_sink) -> None:
    smtp, mail_dir = smtp_sink
    services = Services(platform_dsn=platform_dsn, s3=s3_config, smtp=smtp)
    strict = bacquang_dossiers_source().model_copy(
        update={"id": "bq_strict", "owners": ["strict@tinh.gov.vn.example"],
                "quality": QualityThresholds(warn_ratio=0.1, block_ratio=0.3)}
    )
    healthy = bacquang_dossiers_source().model_copy(update={"id": "bq_healthy", "owners": ["ok@tinh.gov.vn.example"]})
    # 3 of 4 rows carry an impossible date: 75% failing > 30% block threshold.
    bad = sqlite_legacy(tmp_path / "bad.db", [
        dossier("B-1"), dossier("B-2", recv="31/02/2024"), dossier("B-3", recv="abc"), dossier("B-4", recv="2024-13-01"),
    ])
    good = sqlite_legacy(tmp_path / "good.db", [dossier("G-1"), dossier("G-2", modified="2024-03-05 08:00:00")])
    prepare_run(services, "run-1")
    blocked = sync(services, strict, bad, "run-1")
    loaded = sync(services, healthy, good, "run-1")
    assert blocked["status"] == "blocked" and (blocked["inserted"], blocked["quarantined"], blocked["blocked"]) == (0, 3, 1)
    assert loaded["status"] == "loaded" and loaded["inserted"] == 2

    with psycopg.connect(platform_dsn) as conn:
        in_core = dict(conn.execute("SELECT source_id, count(*) FROM core.dossiers GROUP BY 1").fetchall())
        cursor = conn.execute("SELECT cursor_value FROM ops.cursors WHERE source_id = 'bq_strict'").fetchone()
        recon = conn.execute(
            "SELECT extracted, loaded, quarantined, merged_duplicates, not_loaded_blocked, ok"
            " FROM ops.reconciliation WHERE source_id = 'bq_strict'"
        ).fetchone()
    assert in_core == {"bq_healthy": 2}  # not even the clean row of the blocked source
    assert cursor is None  # tomorrow's extract reads the whole batch again
    assert recon == (4, 0, 3, 0, 1, True)

    send_run_reports(services, "run-1", [strict, healthy])
    (mail,) = [m for m in read_mail(mail_dir) if m["To"] == "strict@tinh.gov.vn.example"]
    body = mail.get_body(("html",)).get_content()
    assert "KHÔNG được nạp" in body and "30%" in body
