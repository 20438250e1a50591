"""Task processes fork warm under the scheduler (issue 12, ``sapnhap.preload``).

A probe DAG whose file imports nothing but ``airflow.sdk`` runs on a real Airflow (scheduler,
DAG processor, API server, LocalExecutor, PostgreSQL metadata database) started with the
product's settings (``sapnhap.preload.airflow_settings``, as ``make airflow-ui``, the benchmark and
``docker-compose.yml`` use them). Its task looks at ``sys.modules`` before it imports anything:
Great Expectations, pandas and sapnhap's stages must already be there, imported by a process
that is neither the task nor the worker that forked it (the executor's fork server).
"""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))



def test_a_task_under_the_local_executor_finds_the_heavy_modules_already_imported(pg_admin_dsn: str,
                                                                                   tmp_path: Path) -> None:
    from airflow_stack import WARM_PROBE_DAG_ID, AirflowStack, warm_probe_result, write_warm_probe
    from conftest import _with_db

    dags = tmp_path / "dags"
    dags.mkdir()
    out = tmp_path / "probe.json"
    write_warm_probe(dags, out)
    metadata_db = f"sapnhap_wp_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(pg_admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{metadata_db}"')
    base_env = {**os.environ, "PYTHONPATH": str(ROOT / "include")}
    stack = AirflowStack.create(tmp_path / "airflow", base_env, _with_db(pg_admin_dsn, metadata_db),
                                executor="LocalExecutor", parallelism=2, dags_folder=dags, dag_id=WARM_PROBE_DAG_ID)
    try:
        stack.start()
        result = stack.run_nightly("probe_1", timeout=300)
        assert result.state == "success", stack.task_log_tail()
    finally:
        stack.stop()
        with psycopg.connect(pg_admin_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{metadata_db}" WITH (FORCE)')
    probe = warm_probe_result(out)
    assert probe["found"] == ["great_expectations", "pandas", "pyarrow", "sapnhap.sync.validate", "sapnhap.sync.load"]
    # ... and the deployment's plugins folder (the UI plugin), which every task's runner loads at start.
    assert probe["plugins_preloaded"] == ["sapnhap"]
    assert probe["failed"] == {}
    # Imported once, before the executor's worker was forked: not by the task, not by its supervisor.
    assert probe["warmed_by"] not in (None, probe["pid"], probe["ppid"])
