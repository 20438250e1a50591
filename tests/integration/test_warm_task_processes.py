"""Task processes fork warm under the scheduler (issue 12, ``sapnhap.preload``).

A probe DAG whose file imports nothing but ``airflow.sdk`` runs on a real Airflow (scheduler,
DAG processor, API server, LocalExecutor, PostgreSQL metadata database) started with the
product's settings (``sapnhap.preload.airflow_settings``, as ``make airflow-ui``, the benchmark and
``docker-compose.yml`` use them). Its task looks at ``sys.modules`` before it imports anything:
Great Expectations, pandas and sapnhap's stages must already be there, imported by a process
that is neither the task nor the worker that forked it (the executor's fork server).
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

PROBE_DAG = '''
import json
import os
import sys

import pendulum
from airflow.sdk import dag, task

OUT = {out!r}
HEAVY = ("great_expectations", "pandas", "pyarrow", "sapnhap.sync.validate", "sapnhap.sync.load")


@dag(dag_id="sapnhap_warm_probe", schedule=None, start_date=pendulum.datetime(2025, 7, 1), catchup=False)
def sapnhap_warm_probe():
    @task
    def look() -> None:
        # First thing in the task: what did the process find already imported?
        found = [m for m in HEAVY if m in sys.modules]
        preload = sys.modules.get("sapnhap.preload")
        warmed = dict(preload.WARMED) if preload is not None else {{}}
        with open(OUT, "w") as fh:
            json.dump({{"pid": os.getpid(), "ppid": os.getppid(), "found": found,
                        "warmed_by": warmed.get("pid"), "failed": warmed.get("failed")}}, fh)

    look()


sapnhap_warm_probe()
'''


def test_a_task_under_the_local_executor_finds_the_heavy_modules_already_imported(pg_admin_dsn: str,
                                                                                   tmp_path: Path) -> None:
    from airflow_stack import AirflowStack
    from conftest import _with_db

    dags = tmp_path / "dags"
    dags.mkdir()
    out = tmp_path / "probe.json"
    (dags / "warm_probe.py").write_text(PROBE_DAG.format(out=str(out)))
    metadata_db = f"sapnhap_wp_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(pg_admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{metadata_db}"')
    base_env = {**os.environ, "PYTHONPATH": str(ROOT / "include")}
    stack = AirflowStack.create(tmp_path / "airflow", base_env, _with_db(pg_admin_dsn, metadata_db),
                                executor="LocalExecutor", parallelism=2, dags_folder=dags, dag_id="sapnhap_warm_probe")
    try:
        stack.start()
        result = stack.run_nightly("probe_1", timeout=300)
        assert result.state == "success", stack.task_log_tail()
    finally:
        stack.stop()
        with psycopg.connect(pg_admin_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{metadata_db}" WITH (FORCE)')
    probe = json.loads(out.read_text())
    assert probe["found"] == ["great_expectations", "pandas", "pyarrow", "sapnhap.sync.validate", "sapnhap.sync.load"]
    assert probe["failed"] == {}
    # Imported once, before the executor's worker was forked: not by the task, not by its supervisor.
    assert probe["warmed_by"] not in (None, probe["pid"], probe["ppid"])
