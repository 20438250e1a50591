"""Prepare: the platform is at this code's schema, the reference data is published, the bucket is ready,
the runs Airflow ended without a callback are closed, and the run is open in ``ops.runs``."""

from __future__ import annotations

import logging
from collections.abc import Callable

import sapnhap
from sapnhap import db, ops, storage
from sapnhap.services import Services

log = logging.getLogger(__name__)


def prepare_run(services: Services, run_id: str, *, airflow_state: Callable[[str], str | None] | None = None) -> dict:
    """Check the platform schema is at this code's revision, publish the reference data, open the run.

    No DDL: the nightly runs as the loader role; ``python -m sapnhap migrate`` (the owner) changes
    the schema. A platform behind this code fails here with :class:`~sapnhap.migrations.SchemaVersionError`.

    ``airflow_state(run_id)`` (the DAG passes Airflow's view of its runs, see
    :func:`sapnhap.runs.airflow_run_state`): earlier runs still ``running`` in ``ops.runs`` whose
    Airflow run has ended, or that Airflow does not know, are closed first
    (:func:`sapnhap.runs.sweep_runs`); the result lists them under ``swept``. A sweep that fails is
    logged and the run goes on: it is housekeeping, not the night's sync.
    """
    from sapnhap.migrations import check_schema
    from sapnhap.reference import load_reference
    from sapnhap.reference.platform import publish_reference

    check_schema(db.dsn_for(services.platform_dsn, "prepare"))
    ref = load_reference()
    publish_reference(db.dsn_for(services.platform_dsn, "prepare"), ref)
    # A new agency crosswalk re-maps the documents already loaded, once per version (R16).
    from sapnhap.documents import remap_loaded_documents

    agencies = remap_loaded_documents(db.dsn_for(services.platform_dsn, "prepare"), run_id=run_id)
    storage.ensure_bucket(services.s3, retention_days=storage.retention_days_from_env(),
                          object_lock=storage.object_lock_from_env())
    swept: dict[str, str] = {}
    if airflow_state is not None:
        from sapnhap.runs import sweep_runs

        try:
            swept = sweep_runs(db.dsn_for(services.platform_dsn, "prepare"), airflow_state, exclude=[run_id])
        except Exception as exc:  # noqa: BLE001 - see the docstring
            log.warning("prepare: runs left open by Airflow not swept (%s: %s)", type(exc).__name__, exc)
    with db.connect(services.platform_dsn, "prepare") as conn:
        ops.open_run(conn, run_id=run_id, code_version=sapnhap.__version__, crosswalk_version=ref.version)
    return {"run_id": run_id, "crosswalk_version": ref.version, "swept": swept, "agency_crosswalk": agencies}
