"""sapnhap.preload: what the executor's workers import before they fork task processes (issue 12)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Run in a fresh interpreter: what does importing the warm module leave behind in the process?
PROBE = r"""
import json, os, sys, threading
import sapnhap.preload.warm as w
fds = []
for fd in os.listdir(f"/proc/{os.getpid()}/fd"):
    try:
        fds.append(os.readlink(f"/proc/{os.getpid()}/fd/{fd}"))
    except OSError:
        pass
print(json.dumps({"warmed": w.WARMED, "threads": [t.name for t in threading.enumerate()],
                  "sockets": [f for f in fds if f.startswith("socket:")],
                  "modules": [m for m in ("great_expectations", "pandas", "sapnhap.sync.load", "sapnhap_ui",
                                          "airflow.dag_processing.dagbag") if m in sys.modules],
                  "plugins_loaded": __import__("airflow.listeners.listener", fromlist=["x"])
                                    .get_listener_manager.cache_info().currsize,
                  "crosswalk_cached": __import__("sapnhap.reference", fromlist=["x"]).load_reference.cache_info().currsize}))
"""


def test_the_warm_module_imports_the_task_modules_and_leaves_nothing_open_to_fork() -> None:
    # The deployed Airflow's plugins folder (the sapnhap UI plugin), as make airflow-ui and
    # docker-compose.yml set it: every task process loaded it again (0.25-0.37 s) when its runner
    # started Airflow's listener manager; loaded once where the task processes are forked from.
    env = {**os.environ, "PYTHONPATH": str(ROOT / "include"), "GX_ANALYTICS_ENABLED": "False",
           "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    proc = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["warmed"]["failed"] == {}
    # ... and the DagBag every task's runner parses its DAG file with (0.4-0.5 s of import per task).
    assert out["modules"] == ["great_expectations", "pandas", "sapnhap.sync.load", "sapnhap_ui",
                              "airflow.dag_processing.dagbag"]
    assert out["plugins_loaded"] == 1 and out["warmed"]["plugins"] == ["sapnhap"]
    assert out["crosswalk_cached"] == 1
    # A fork shares whatever is open: no thread but the main one, no socket (no database, no broker).
    assert out["threads"] == ["MainThread"]
    assert out["sockets"] == []


def test_settings_per_executor() -> None:
    from sapnhap.preload import FORKSERVER_PRELOAD, MODULES, airflow_settings

    local = airflow_settings("LocalExecutor")
    assert local["AIRFLOW__SCHEDULER__MP_START_METHOD"] == "forkserver"
    assert local["AIRFLOW__SCHEDULER__MP_FORKSERVER_PRELOAD"] == FORKSERVER_PRELOAD == "sapnhap.preload.warm"
    celery = airflow_settings("CeleryExecutor")
    assert celery["AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS"] == "sapnhap.preload.CELERY_CONFIG"
    assert "AIRFLOW__SCHEDULER__MP_START_METHOD" not in celery
    assert "great_expectations" in MODULES and "sapnhap.sync.validate" in MODULES


def test_the_celery_configuration_is_airflows_plus_the_warm_import() -> None:
    from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG

    from sapnhap.preload import CELERY_CONFIG

    assert CELERY_CONFIG["imports"] == ("sapnhap.preload.warm",)
    assert {k: v for k, v in CELERY_CONFIG.items() if k != "imports"} == DEFAULT_CELERY_CONFIG


def test_the_task_supervisor_notices_a_finished_task_within_a_second() -> None:
    """Measured under the scheduler (issue 12, bench/RESULTS.md): 15 of the 29 task instances of an
    incremental nightly sat exactly 5 s after their task had returned. Airflow's supervisor stops
    watching a task's sockets at their EOF and then sleeps in ``select`` for up to
    ``[workers] min_heartbeat_interval`` (default 5 s) before it sees that the process exited. The
    product's settings bound that wait to 1 s, in the supervisor as it reads them."""
    from sapnhap.preload import airflow_settings

    probe = "from airflow.sdk.execution_time import supervisor as s; print(s.MIN_HEARTBEAT_INTERVAL)"
    for executor in ("LocalExecutor", "CeleryExecutor"):
        env = {**os.environ, **airflow_settings(executor), "PYTHONPATH": str(ROOT / "include")}
        proc = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=300,
                              check=False)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert int(proc.stdout.strip().splitlines()[-1]) == 1, executor
