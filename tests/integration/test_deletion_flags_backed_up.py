"""Deletion flags are backed up: a dataset rebuilt from the backups shows a row deleted in its
source as deleted, as the platform does (issue 10: "a restore reproduces the platform").

Verification flags ``deleted_in_source_at`` on core rows whose legacy row is gone. Those flags
are not in any batch's backup; verification writes them as a signed, write-once object per
(source, dataset, verification) listed in ``ops.deletion_flag_backups``, and a restore applies
them, in time order with the batches, after verifying them like manifests.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg
import pytest
from legacy_sqlite import bacquang_dossiers_source, dossier, sqlite_legacy, sync
from psycopg import sql

from sapnhap import storage, verify
from sapnhap.restore import RestoreError, drop_scratch, restore_dataset
from sapnhap.services import Services

pytestmark = pytest.mark.integration


def _flag(dsn: str, table: str, code: str) -> object:
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql.SQL("SELECT deleted_in_source_at FROM {} WHERE dossier_code = %s").format(
            sql.Identifier(*table.split("."))), (code,)).fetchone()[0]


def test_a_restore_reproduces_the_deletion_flags(services: Services, tmp_path: Path) -> None:
    source = bacquang_dossiers_source()
    path = tmp_path / "bacquang.db"
    connection = sqlite_legacy(path, [dossier(f"BQ-{i:04d}", modified=f"2025-11-02 09:{i:02d}:00") for i in range(1, 11)])
    assert sync(services, source, connection, "run-1")["inserted"] == 10
    with sqlite3.connect(path) as db:
        db.execute("DELETE FROM dossiers WHERE file_no = 'BQ-0003'")
    found = verify.verify_dataset(services, source, "dossiers", connection, run_id="v-1")
    assert found.flagged_deleted == 1
    flagged_at = _flag(services.platform_dsn, "core.dossiers", "BQ-0003")
    assert flagged_at is not None
    # A later night loads more: the flag is replayed in its place between the batches.
    with sqlite3.connect(path) as db:
        row = dossier("BQ-0011", modified="2025-11-03 09:00:00")
        db.execute(f"INSERT INTO dossiers VALUES ({', '.join('?' * len(row))})", list(row.values()))
    assert sync(services, source, connection, "run-2")["inserted"] == 1

    try:
        report = restore_dataset(services, "dossiers", target_schema="scratch_flags", compare=True)
        assert report.matches_platform, report
        assert _flag(services.platform_dsn, "scratch_flags.dossiers", "BQ-0003") == flagged_at
        assert _flag(services.platform_dsn, "scratch_flags.dossiers", "BQ-0004") is None
    finally:
        drop_scratch(services, "scratch_flags")

    with psycopg.connect(services.platform_dsn) as conn:
        (key, sha, flags) = conn.execute(
            "SELECT object_key, sha256, flagged FROM ops.deletion_flag_backups WHERE verification_id = %s",
            (found.verification_id,)).fetchone()
    stored = storage.get_json(services.s3, key)
    storage.verify_manifest_signature(stored, services.signing_key, name=key)
    assert flags == 1 and stored["flagged"] == {"BQ-0003": flagged_at.isoformat()}
    assert storage.sha256_bytes(storage.get_bytes(services.s3, key)) == sha

    # The record comes back in its source: the next verification clears the flag, the restore too.
    with sqlite3.connect(path) as db:
        row = dossier("BQ-0003", modified="2025-11-02 09:03:00")
        db.execute(f"INSERT INTO dossiers VALUES ({', '.join('?' * len(row))})", list(row.values()))
    assert verify.verify_dataset(services, source, "dossiers", connection, run_id="v-2").reappeared == 1
    try:
        report = restore_dataset(services, "dossiers", target_schema="scratch_back", compare=True)
        assert report.matches_platform
        assert _flag(services.platform_dsn, "scratch_back.dossiers", "BQ-0003") is None
    finally:
        drop_scratch(services, "scratch_back")

    # A flag backup the platform lists but the bucket lost: refused like a missing manifest.
    services.s3.client().delete_object(Bucket=services.s3.bucket, Key=key)
    with pytest.raises(RestoreError, match="deletion flags") as refused:
        restore_dataset(services, "dossiers", target_schema="scratch_gone")
    assert key in refused.value.missing


def test_flags_the_backups_cannot_hold_are_not_set(services: Services, tmp_path: Path) -> None:
    import dataclasses

    from sapnhap_dev.embedded import free_port

    source = bacquang_dossiers_source()
    path = tmp_path / "bacquang.db"
    connection = sqlite_legacy(path, [dossier(f"BQ-{i:04d}", modified=f"2025-11-02 09:{i:02d}:00") for i in range(1, 6)])
    sync(services, source, connection, "run-1")
    with sqlite3.connect(path) as db:
        db.execute("DELETE FROM dossiers WHERE file_no = 'BQ-0002'")
    dead = dataclasses.replace(services, s3=dataclasses.replace(
        services.s3, endpoint_url=f"http://127.0.0.1:{free_port()}", connect_timeout=1))
    with pytest.raises(verify.VerificationError, match="dossiers"):
        verify.verify_source(dead, source, connection, run_id="v-down")
    assert _flag(services.platform_dsn, "core.dossiers", "BQ-0002") is None
    with psycopg.connect(services.platform_dsn) as conn:
        assert conn.execute("SELECT status FROM ops.verifications WHERE run_id = 'v-down'").fetchone()[0] == "failed"
        assert conn.execute("SELECT count(*) FROM ops.deletion_flag_backups").fetchone()[0] == 0
    # The bucket back: the next verification flags it, backed up.
    assert verify.verify_dataset(services, source, "dossiers", connection, run_id="v-up").flagged_deleted == 1
    assert _flag(services.platform_dsn, "core.dossiers", "BQ-0002") is not None
