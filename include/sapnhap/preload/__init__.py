"""Warm task processes (issue 12): the heavy modules imported once per executor worker, not per task.

Under the scheduler every task instance is a process of its own: the LocalExecutor's worker (and
a Celery pool process alike) runs Airflow's supervisor, which ``os.fork()``s the task runner for
each task instance. The runner then parses the DAG file and the task imports what its callable
needs: pandas, pyarrow, psycopg, boto3, Great Expectations, sapnhap's stages and the reference
data, 2-3 s of every task (6-9 s when the machine is busy) whatever the batch's size. A module
already imported in the worker that forks is there in the child for free (copy-on-write), so this
module lists them and :mod:`sapnhap.preload.warm` imports them once in the process the workers
are forked from:

- **LocalExecutor** (``make airflow-ui``, the benchmark, a small install): ``[scheduler]
  mp_start_method = forkserver`` and ``[scheduler] mp_forkserver_preload = sapnhap.preload.warm``
  (Airflow 3.3 settings): the scheduler starts its executor workers from a fork server that
  imported this once; the scheduler itself stays lean and nothing of it (threads, database
  connections) is inherited.
- **CeleryExecutor** (``docker-compose.yml``): ``[celery] celery_config_options =
  sapnhap.preload.CELERY_CONFIG``, Airflow's default Celery configuration plus Celery's
  ``imports`` setting: the ``airflow celery worker`` process imports :mod:`sapnhap.preload.warm`
  at start-up, before it forks its pool processes (as Airflow's provider does for its own
  modules).

:func:`airflow_settings` gives these settings as ``AIRFLOW__*`` variables: the embedded stack,
the benchmark's stack and ``docker-compose.yml`` use the same values.

What is preloaded is imported, never run: no database connection, socket, thread or file stays
open after :func:`warm` (a fork would share them). Only pure, read-only caches are filled (the
committed reference data and its lookup arrays).

**The price:** code imported in the worker is the code the tasks run until the worker restarts.
After deploying a new ``include/sapnhap``, restart the scheduler (LocalExecutor) or the Celery
workers, as for any change of Airflow's own packages; DAG files are still parsed by every task.
"""

from __future__ import annotations

import importlib
import logging
import time
from typing import Any

log = logging.getLogger(__name__)

# What the nightly's task processes import, heaviest first where it matters (Airflow's task runner
# and sdk, the data stack, Great Expectations), then every module a DAG file or a task imports.
MODULES: tuple[str, ...] = (
    "airflow.sdk",
    "airflow.sdk.execution_time.task_runner",
    "airflow.sdk.execution_time.supervisor",
    # What the task runner imports to parse the DAG file (its DagBag pulls Airflow's serialization):
    # 0.4-0.5 s of every task instance when it was not preloaded (bench/RESULTS.md, session 6).
    "airflow.dag_processing.dagbag",
    "airflow.providers.standard.operators.python",
    "pandas",
    "numpy",
    "pyarrow",
    "pyarrow.parquet",
    "sqlalchemy",
    "psycopg",
    "boto3",
    "great_expectations",
    "sapnhap.airflow_support",
    "sapnhap.sources",
    "sapnhap.review_hitl",
    "sapnhap.runs",
    "sapnhap.assessment",
    "sapnhap.sync.prepare",
    "sapnhap.sync.extract",
    "sapnhap.sync.transform",
    "sapnhap.sync.validate",
    "sapnhap.sync.backup",
    "sapnhap.sync.load",
    "sapnhap.sync.reconcile",
    "sapnhap.transform",
    "sapnhap.quality",
    "sapnhap.reports",
    "sapnhap.handover",
)

# Filled by warm(): what the process that forks the task processes has done (tests read it in a task).
WARMED: dict[str, Any] = {}


def warm() -> dict[str, Any]:
    """Import :data:`MODULES` and fill the reference data's caches in this process; never raises.

    A module that fails to import is logged and left out: the task that needs it imports it
    itself and fails there, visibly, instead of the executor's worker not starting.
    """
    import os

    if WARMED:
        return WARMED
    started = time.perf_counter()
    # Before Great Expectations is imported: its import logs every function it registers.
    from sapnhap.airflow_support import quiet_library_logs

    quiet_library_logs()
    failed: dict[str, str] = {}
    for name in MODULES:
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - a warm-up must not stop the worker
            failed[name] = f"{type(exc).__name__}: {exc}"
    try:
        from sapnhap.reference import load_reference
        from sapnhap.reference.convert import _lookup

        _lookup(load_reference())  # the crosswalk (lru_cache per process) and its lookup arrays
    except Exception as exc:  # noqa: BLE001
        failed["sapnhap.reference"] = f"{type(exc).__name__}: {exc}"
    plugins = _load_airflow_plugins(failed)
    WARMED.update(pid=os.getpid(), seconds=round(time.perf_counter() - started, 2), failed=failed,
                  modules=[m for m in MODULES if m not in failed], plugins=plugins)
    if failed:
        log.warning("sapnhap.preload: %d modules not preloaded (tasks import them themselves): %s", len(failed), failed)
    return WARMED


def _load_airflow_plugins(failed: dict[str, str]) -> list[str]:
    """Load the deployment's Airflow plugins (its plugins folder: the sapnhap UI plugin) once, here.

    Each task's runner starts Airflow's listener manager and template macros, which import every
    plugin of the plugins folder: 0.25-0.37 s of every task instance (bench/RESULTS.md, session 6).
    Both are cached per process, so a task forked from here finds them loaded. Loading a plugin
    imports it (the UI plugin builds its FastAPI app); it opens nothing.
    """
    try:
        from airflow.listeners.listener import get_listener_manager
        from airflow.sdk.plugins_manager import _get_plugins, integrate_macros_plugins

        get_listener_manager()
        integrate_macros_plugins()
        return sorted(str(p.name) for p in _get_plugins()[0])
    except Exception as exc:  # noqa: BLE001 - the task loads them itself, as without a preload
        failed["airflow.plugins"] = f"{type(exc).__name__}: {exc}"
        return []


# ``[scheduler] mp_forkserver_preload``: the module the LocalExecutor's fork server imports.
FORKSERVER_PRELOAD = "sapnhap.preload.warm"


def airflow_settings(executor: str = "LocalExecutor") -> dict[str, str]:
    """The ``AIRFLOW__*`` variables that make the executor's workers fork warm task processes.

    Plus the scheduler's idle sleep: a busy scheduler loops without sleeping, an idle one sleeps
    this long before it looks again for tasks whose upstream just finished (default 1 s). And the
    task supervisor's longest wait: once a task has closed its sockets, Airflow's supervisor sleeps
    in ``select`` for up to ``[workers] min_heartbeat_interval`` (default 5 s) before it sees the
    process has exited, so about half the task instances held their executor slot 5 s after their
    work was done (measured: bench/RESULTS.md); at 1 s the supervisor heartbeats once a second.
    """
    settings = {
        "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.25",
        "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1",
    }
    if executor == "LocalExecutor":
        settings.update({
            "AIRFLOW__SCHEDULER__MP_START_METHOD": "forkserver",
            "AIRFLOW__SCHEDULER__MP_FORKSERVER_PRELOAD": FORKSERVER_PRELOAD,
        })
    elif executor == "CeleryExecutor":
        settings["AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS"] = "sapnhap.preload.CELERY_CONFIG"
    return settings


def __getattr__(name: str) -> Any:
    # Built on first use: importing this module (the scheduler, the API server) needs no Celery.
    if name == "CELERY_CONFIG":
        from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG

        imports = tuple(DEFAULT_CELERY_CONFIG.get("imports") or ())
        return {**DEFAULT_CELERY_CONFIG, "imports": (*imports, FORKSERVER_PRELOAD)}
    raise AttributeError(name)
