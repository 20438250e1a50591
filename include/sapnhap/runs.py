"""The state of a nightly run in ``ops.runs``, and what failed in it, as Airflow saw it.

``ops.runs`` is opened by ``prepare`` and closed by :func:`finish_run`, which the DAG calls
from its DAG-level success/failure callbacks with Airflow's final state; :func:`sweep_runs`
closes the runs a callback never reached (a scheduler restart, a run marked failed by hand); the
nightly's ``prepare`` runs it (:func:`airflow_run_state` gives it Airflow's view).
:func:`record_stage_failure` writes a failed stage's error into the batches it left
uncommitted, so the owner's email names the cause instead of an older note.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import psycopg

from sapnhap import ops
from sapnhap.reports.model import scrub_text
from sapnhap.sync.batch import batch_id_for

log = logging.getLogger(__name__)

# Airflow DagRun states -> ops.runs states.
FINAL_STATES = {"success": "succeeded", "failed": "failed", "succeeded": "succeeded"}
STAGE_FAILURE_PREFIX = "failed at "
SOURCE_STAGES = ("assess", "extract", "transform", "validate", "backup", "load")
MAX_MESSAGE_CHARS = 1000


def finish_run(dsn: str, run_id: str, state: str, message: str | None = None) -> str:
    """Close run ``run_id`` in ``ops.runs`` with Airflow's final state (``success``/``failed``); return it.

    A run that never reached ``prepare`` gets its row here. ``message`` (e.g. the failed tasks)
    replaces the stored one when given; otherwise the stored one (reconciliation's) stays.
    """
    status = FINAL_STATES.get(state)
    if status is None:
        raise ValueError(f"run {run_id}: {state!r} is not a final Airflow state (success, failed)")
    text = scrub_text(message[:MAX_MESSAGE_CHARS]) if message else None
    with psycopg.connect(dsn) as conn:
        ops.upsert_run_status(conn, run_id=run_id, status=status, message=text)
    log.info("run %s: %s", run_id, status)
    return status


def close_run_from_context(context: Mapping[str, Any], dsn: str) -> str:
    """The DAG-level ``on_success_callback``/``on_failure_callback``: close the run with the DagRun's state.

    ``context["dag_run"]`` is the ended DagRun; ``context["reason"]`` (Airflow's, e.g.
    ``task_failure``) becomes the message of a failed run.
    """
    dag_run = context["dag_run"]
    state = str(getattr(dag_run.state, "value", dag_run.state))
    reason = context.get("reason")
    message = f"Airflow: {reason}" if state == "failed" and reason else None
    return finish_run(dsn, dag_run.run_id, state, message)


def sweep_runs(dsn: str, airflow_state: Callable[[str], str | None], *, exclude: Iterable[str] = ()) -> dict[str, str]:
    """Close every run still ``running`` in ``ops.runs`` whose Airflow run has ended; return {run_id: status}.

    ``airflow_state(run_id)`` is the DagRun's state as Airflow reports it (``None`` when Airflow
    does not know the run: it is marked failed, nothing will ever finish it). Runs in
    ``exclude`` (the current one) are left alone.
    """
    skip = set(exclude)
    with psycopg.connect(dsn) as conn:
        running = ops.running_runs(conn)
    closed: dict[str, str] = {}
    for run_id in running:
        if run_id in skip:
            continue
        state = airflow_state(run_id)
        if state is None:
            closed[run_id] = finish_run(dsn, run_id, "failed", "run unknown to Airflow; closed by the sweep")
        elif state in FINAL_STATES:
            closed[run_id] = finish_run(dsn, run_id, state, None if state == "success" else
                                        "Airflow ended the run without its final callback; closed by the sweep")
    return closed


def airflow_run_state(context: Mapping[str, Any]) -> Callable[[str], str | None]:
    """From a running task's context: ``run_id -> state`` of its DAG's runs as Airflow knows them, for
    :func:`sweep_runs` (``None`` for a run Airflow has no record of)."""
    ti = context["ti"]
    dag_id = ti.dag_id

    def state(run_id: str) -> str | None:
        if ti.get_dr_count(dag_id=dag_id, run_ids=[run_id]) == 0:
            return None
        value = ti.get_dagrun_state(dag_id=dag_id, run_id=run_id)
        return str(getattr(value, "value", value))

    return state


def record_stage_failure(
    dsn: str, *, run_id: str, source_id: str, datasets: Iterable[str], stage: str, error: BaseException | str
) -> int:
    """Write ``failed at <stage>: <error>`` into this run's batches of the source that did not commit.

    A batch the stage never created gets a row with status ``failed``. Committed batches
    (loaded, blocked) keep their message. Personal data is masked. Returns rows written.
    """
    detail = f"{type(error).__name__}: {error}" if isinstance(error, BaseException) else str(error)
    text = scrub_text(f"{STAGE_FAILURE_PREFIX}{stage}: {detail}"[:MAX_MESSAGE_CHARS])
    written = 0
    with psycopg.connect(dsn) as conn:
        for dataset in datasets:
            written += ops.record_stage_failure(conn, batch_id=batch_id_for(run_id, source_id, dataset), run_id=run_id,
                                                source_id=source_id, dataset=dataset, message=text)
    return written


def stage_failure_from_context(context: Mapping[str, Any], dsn: str, datasets_of: Mapping[str, Sequence[str]]) -> int:
    """A task-level ``on_failure_callback``: record why a source's stage task failed for good.

    The task id is ``<source_id>.<stage>`` (the DAG's task group per source); other tasks
    (prepare, report, ...) are ignored. ``datasets_of``: source id -> its datasets.
    """
    ti = context["ti"]
    source_id, _, stage = str(ti.task_id).rpartition(".")
    if stage not in SOURCE_STAGES or source_id not in datasets_of:
        return 0
    error = context.get("exception") or "the task ended without an exception (killed or timed out)"
    run_id = context.get("run_id") or ti.run_id
    return record_stage_failure(dsn, run_id=run_id, source_id=source_id, datasets=datasets_of[source_id],
                                stage=stage, error=error)
