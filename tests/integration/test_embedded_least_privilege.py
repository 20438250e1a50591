"""The embedded default ships least privilege: owner migrates, the nightly's connection is a loader
login, and the demo's local copy of the bucket is readable by its user only."""

from __future__ import annotations

import json
import stat
import uuid
from pathlib import Path
from types import SimpleNamespace

import psycopg
import pytest

from conftest import pg_url
from sapnhap import storage

pytestmark = pytest.mark.integration


def test_the_embedded_platform_is_owned_by_its_owner_and_airflow_connects_as_the_loader(
    tmp_path: Path, pg_admin_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sapnhap.migrations import current, head
    from sapnhap_dev.embedded import airflow_env, drop_platform, start_stack

    db = f"sapnhap_emb_{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("SAPNHAP_PLATFORM_URL", pg_url(pg_admin_dsn, db))
    stack = start_stack(tmp_path)
    try:
        owner, _ = stack.logins["owner"]
        loader, _ = stack.logins["loader"]
        assert current(stack.platform_dsn) == head()  # migrated when the stack started
        conn_json = json.loads(airflow_env(stack, {})["AIRFLOW_CONN_SAPNHAP_PLATFORM"])
        assert conn_json["login"] == loader != owner
        with psycopg.connect(stack.platform_dsn) as conn:
            db_owner = conn.execute(
                "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()").fetchone()[0]
            schema_owners = {r[0] for r in conn.execute(
                "SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname IN ('core', 'history', 'ops')")}
            loader_attrs = conn.execute(
                "SELECT rolsuper, rolcreaterole, rolcreatedb, pg_has_role(rolname, 'sapnhap_loader', 'MEMBER') "
                "FROM pg_roles WHERE rolname = %s", (loader,)).fetchone()
        assert db_owner == owner and schema_owners == {owner}
        assert loader_attrs == (False, False, False, True)
        with psycopg.connect(stack.login_dsn("loader")) as conn:
            assert conn.execute("SELECT current_user").fetchone()[0] == loader
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("ALTER TABLE core.residents DISABLE TRIGGER keep_history")
        logins = tmp_path / "platform-logins.json"
        assert stat.S_IMODE(logins.stat().st_mode) == 0o600
        assert stat.S_IMODE(stack.mail_dir.stat().st_mode) == 0o700
    finally:
        drop_platform(stack.admin_dsn(), stack.platform["schema"])
        stack.stop()


def test_the_local_copy_of_the_bucket_is_readable_by_its_user_only(tmp_path: Path, s3_config) -> None:
    from sapnhap_dev.runner import snapshot_bucket

    storage.put_bytes(s3_config, "backups/s/residents/2025-12-01/r1/raw.parquet", b"raw rows", "application/octet-stream")
    storage.put_bytes(s3_config, "handover/r1/02338.html", b"<html></html>", "text/html")
    dest = tmp_path / "bucket"
    (dest / "old").mkdir(parents=True)
    (dest / "old" / "left.parquet").write_bytes(b"from an older demo")
    dest.chmod(0o755)
    (dest / "old" / "left.parquet").chmod(0o644)
    assert snapshot_bucket(SimpleNamespace(s3=s3_config), dest) == 2
    paths = [dest, *dest.rglob("*")]
    assert len([p for p in paths if p.is_file()]) == 3
    for p in paths:
        assert stat.S_IMODE(p.stat().st_mode) == (0o700 if p.is_dir() else 0o600), p
