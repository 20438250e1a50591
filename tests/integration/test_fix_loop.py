"""The fix loop end to end: quarantine -> owner email with XLSX -> corrected file returned -> loaded.

Real services: PostgreSQL (platform), moto's S3 API (backups, landing prefix), aiosmtpd (mail);
the legacy system is a SQLite file shaped like the Bắc Quang source.
"""

from __future__ import annotations

import io
from pathlib import Path

import psycopg
import pytest
from legacy_sqlite import bacquang_dossiers_source, dossier, sqlite_legacy, sync
from openpyxl import load_workbook

from sapnhap import storage
from sapnhap.corrections import correction_prefix
from sapnhap.reports import send_run_reports
from sapnhap.services import Services
from sapnhap.sync.prepare import prepare_run
from sapnhap_dev.embedded import read_mail

pytestmark = pytest.mark.integration

def test_owner_correction_leaves_quarantine_and_loads(tmp_path: Path, platform_dsn: str, s3_config, smtp_sink) -> None:
    smtp, mail_dir = smtp_sink
    services = Services(platform_dsn=platform_dsn, s3=s3_config, smtp=smtp)
    source = bacquang_dossiers_source()
    # BQ-2 has no such day (31/02): quarantined.
    connection = sqlite_legacy(
        tmp_path / "bacquang.db", [dossier("BQ-1"), dossier("BQ-2", recv="31/02/2024", modified="2024-03-04 08:00:00")]
    )
    prepare_run(services, "run-1")
    first = sync(services, source, connection, "run-1")
    assert (first["inserted"], first["quarantined"]) == (1, 1)

    send_run_reports(services, "run-1", [source])
    (message,) = [m for m in read_mail(mail_dir) if m["To"] == source.owners[0]] or [None]
    assert message is not None
    (attachment,) = [p for p in message.iter_attachments() if p.get_filename().endswith(".xlsx")]
    workbook = load_workbook(io.BytesIO(attachment.get_content()))
    sheet = workbook["cach_ly"]
    header = [c.value for c in sheet[1]]
    rows = [dict(zip(header, [c.value for c in r], strict=True)) for r in sheet.iter_rows(min_row=2)]
    bad = [r for r in rows if r["source_key"] == "BQ-2" and r["column"] == "received_date"]
    assert bad, rows
    # The owner writes the right date and returns the workbook to the landing prefix.
    sheet.cell(row=rows.index(bad[0]) + 2, column=header.index("corrected_value") + 1, value="29/02/2024")
    out = io.BytesIO()
    workbook.save(out)
    storage.put_bytes(s3_config, correction_prefix(source.id) + "bacquang-sua-loi.xlsx", out.getvalue())

    prepare_run(services, "run-2")
    second = sync(services, source, connection, "run-2")
    with psycopg.connect(platform_dsn) as conn:
        loaded = conn.execute("SELECT received_date::text FROM core.dossiers WHERE dossier_code = 'BQ-2'").fetchone()
        open_rows = conn.execute(
            "SELECT count(*) FROM ops.quarantine WHERE source_key = 'BQ-2' AND status = 'open'"
        ).fetchone()[0]
        resolved = conn.execute(
            "SELECT resolved_batch_id FROM ops.quarantine WHERE source_key = 'BQ-2' AND column_name = 'received_date'"
        ).fetchone()[0]
        recon = conn.execute(
            "SELECT extracted, loaded, quarantined, merged_duplicates FROM ops.reconciliation WHERE run_id = 'run-2'"
        ).fetchone()
    assert loaded == ("2024-02-29",)
    assert open_rows == 0 and resolved.startswith("run-2|")
    # run-2 re-reads the boundary row BQ-2 from the legacy system (still wrong there) and the corrected
    # record from the returned file: the corrected one wins, the stale copy is merged into it.
    assert recon[0] == recon[1] + recon[2] + recon[3]
    assert second["quarantined"] == 0

    # The same file is taken once: a third run applies nothing again.
    prepare_run(services, "run-3")
    third = sync(services, source, connection, "run-3")
    assert third["extracted"] == 1  # only the legacy boundary row
    with psycopg.connect(platform_dsn) as conn:
        still = conn.execute("SELECT received_date::text FROM core.dossiers WHERE dossier_code = 'BQ-2'").fetchone()
        reopened = conn.execute("SELECT count(*) FROM ops.quarantine WHERE status = 'open'").fetchone()[0]
    assert still == ("2024-02-29",) and reopened == 0
