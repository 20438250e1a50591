"""``airflow dags test`` of the verification DAG after a nightly, on real services (slow)."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from conftest import pg_url
from sapnhap.runner import pools_of
from sapnhap.sources import load_sources
from sapnhap_dev.embedded import airflow_env, prepare_airflow, start_stack
from sapnhap_dev.runner import run_nightly

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_verify_dag_after_a_nightly_reports_every_dataset_clean(tmp_path, pg_admin_dsn: str, monkeypatch) -> None:
    from sapnhap_dev.demo.generator import generate_world

    db = f"sapnhap_vd_{uuid.uuid4().hex[:8]}"
    prefix = f"lvd{uuid.uuid4().hex[:6]}"
    monkeypatch.setenv("SAPNHAP_PLATFORM_URL", pg_url(pg_admin_dsn, db))  # undone even when the stack fails to start
    stack = start_stack(tmp_path)
    try:
        world = generate_world(tmp_path / "world", seed=5, size=10, pg_dsn=stack.admin_dsn(), db_prefix=prefix)
        env = airflow_env(stack, world.connections)
        prepare_airflow(env, pools_of(load_sources()))
        nightly = run_nightly(env, tmp_path / "nightly.log")
        assert nightly.state == "success", nightly.log.read_text()[-3000:]
        result = run_nightly(env, tmp_path / "verify.log", dag_id="sapnhap_verify")
        assert result.state == "success", result.log.read_text()[-3000:]
        with psycopg.connect(stack.platform_dsn) as conn:
            rows = conn.execute(
                "SELECT source_id, dataset, status, missing, extra, different FROM ops.verifications ORDER BY 1, 2"
            ).fetchall()
        expected = {(s.id, d) for s in load_sources() for d in s.datasets}
        assert {(r[0], r[1]) for r in rows} == expected
        assert all(r[2:] == ("ok", 0, 0, 0) for r in rows), rows
    finally:
        stack.stop()
        with psycopg.connect(stack.admin_dsn(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
            for (name,) in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", (prefix + "%",)).fetchall():
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
