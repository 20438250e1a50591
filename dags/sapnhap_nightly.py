"""
### Nightly sync of the legacy district/commune systems into the provincial platform

One task group per legacy system of the source registry (`include/sources/*.yaml`):
**extract** (incremental, by cursor or new export files) -> **transform** (old codes -> new
province/commune codes, lineage kept) -> **validate** (GX suite of the dataset, failing rows
quarantined with a reason) -> **backup** (Parquet + manifest, encrypted, verified) -> **load**
(one transaction per batch, idempotent). Then **reconcile** checks extracted = loaded +
quarantined + merged duplicates for every batch, **report** emails every owner in Vietnamese,
and **handover** stores a handover record (biên bản bàn giao dữ liệu) per old unit.

A failing source does not stop the others; it retries, and its owner is told.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Asset, TaskGroup, dag, get_current_context, task

from sapnhap.airflow_support import default_args
from sapnhap.sources import load_sources

PLATFORM_ASSET = Asset("postgres://sapnhap-platform:5432/sapnhap/core/records")
SOURCES = load_sources()  # declarative files only: no connection or database is touched at parse time



def _run_ids() -> tuple[str, str]:
    ctx = get_current_context()
    run_date = (ctx.get("logical_date") or ctx["dag_run"].run_after).in_timezone("Asia/Ho_Chi_Minh").date().isoformat()
    return ctx["dag_run"].run_id, run_date


def _close_run(context) -> None:  # noqa: ANN001 - Airflow callback context
    """ops.runs ends in the state Airflow gives the run (DAG-level success and failure callbacks)."""
    from sapnhap.airflow_support import services_from_airflow
    from sapnhap.runs import close_run_from_context

    close_run_from_context(context, services_from_airflow().platform_dsn)


def _stage_failed(context) -> None:  # noqa: ANN001 - Airflow callback context
    """A source's stage failed for good: its batches say which stage and why (the owner's email shows it)."""
    from sapnhap.airflow_support import services_from_airflow
    from sapnhap.runs import stage_failure_from_context

    datasets_of = {s.id: list(s.datasets) for s in SOURCES}
    stage_failure_from_context(context, services_from_airflow().platform_dsn, datasets_of)


@dag(
    dag_id="sapnhap_nightly",
    schedule="0 1 * * *",
    start_date=pendulum.datetime(2025, 7, 1, tz="Asia/Ho_Chi_Minh"),
    catchup=False,
    max_active_runs=1,  # one night at a time: batches of a source must commit in cursor order
    default_args={**default_args(), "on_failure_callback": _stage_failed},
    on_success_callback=_close_run,
    on_failure_callback=_close_run,
    tags=["sapnhap", "nightly", "sync"],
    doc_md=__doc__,
)
def sapnhap_nightly() -> None:
    @task
    def prepare() -> dict:
        from sapnhap.airflow_support import services_from_airflow
        from sapnhap.pipeline import prepare_run

        run_id, _ = _run_ids()
        return prepare_run(services_from_airflow(), run_id)

    @task(trigger_rule="all_done", retries=0)
    def reconcile() -> list[dict]:
        from sapnhap.airflow_support import services_from_airflow
        from sapnhap.pipeline import reconcile_run

        run_id, _ = _run_ids()
        expected = [(s.id, d) for s in SOURCES for d in s.datasets]
        return reconcile_run(services_from_airflow(), run_id, expected).to_dict(orient="records")

    @task(trigger_rule="all_done")
    def report() -> dict:
        from sapnhap.airflow_support import services_from_airflow
        from sapnhap.reports import send_run_reports

        run_id, _ = _run_ids()
        return send_run_reports(services_from_airflow(), run_id, SOURCES)

    @task(trigger_rule="all_done")
    def handover() -> list[dict]:
        from sapnhap.airflow_support import services_from_airflow
        from sapnhap.handover import build_handover

        run_id, _ = _run_ids()
        return build_handover(services_from_airflow(), run_id, sources=SOURCES)

    started = prepare()
    loads = []
    for source in SOURCES:
        with TaskGroup(group_id=source.id, tooltip=source.name):

            @task(pool=source.pool, task_id="extract")
            def extract(source_id: str = source.id) -> list[dict]:
                from sapnhap.airflow_support import legacy_connection, services_from_airflow
                from sapnhap.assessment import assess_source, needs_assessment
                from sapnhap.pipeline import extract_stage
                from sapnhap.sources import get_source

                src = get_source(source_id)
                run_id, run_date = _run_ids()
                services = services_from_airflow()
                connection = legacy_connection(src.conn_id, src.kind)
                if needs_assessment(services, src):
                    # R13: a new source is profiled and its owners get the assessment before its first load.
                    assess_source(services, src, connection, run_id=run_id)
                return [
                    extract_stage(services, src, d, connection, run_id=run_id, run_date=run_date) for d in src.datasets
                ]

            @task(task_id="transform")
            def transform(batches: list[dict], source_id: str = source.id) -> list[dict]:
                from sapnhap.airflow_support import services_from_airflow
                from sapnhap.pipeline import transform_stage
                from sapnhap.sources import get_source

                services = services_from_airflow()
                return [transform_stage(services, get_source(source_id), b) for b in batches]

            @task(task_id="validate")
            def validate(batches: list[dict], source_id: str = source.id) -> list[dict]:
                from sapnhap.airflow_support import services_from_airflow
                from sapnhap.pipeline import validate_stage
                from sapnhap.sources import get_source

                services = services_from_airflow()
                return [validate_stage(services, get_source(source_id), b) for b in batches]

            @task(task_id="backup")
            def backup(batches: list[dict], source_id: str = source.id) -> list[dict]:
                from sapnhap.airflow_support import services_from_airflow
                from sapnhap.pipeline import backup_stage
                from sapnhap.sources import get_source

                services = services_from_airflow()
                return [backup_stage(services, get_source(source_id), b) for b in batches]

            @task(task_id="load", outlets=[PLATFORM_ASSET])
            def load(batches: list[dict], source_id: str = source.id) -> list[dict]:
                from sapnhap.airflow_support import services_from_airflow
                from sapnhap.pipeline import load_stage
                from sapnhap.sources import get_source

                services = services_from_airflow()
                return [load_stage(services, get_source(source_id), b) for b in batches]

            extracted = extract()
            started >> extracted
            loads.append(load(backup(validate(transform(extracted)))))

    # Both are leaves: a failed source or an unreconciled batch fails the run, and the owners
    # are still told (the report runs whatever happened upstream).
    loads >> reconcile()
    loads >> report()
    loads >> handover()  # biên bản bàn giao per old unit, from what the loads committed


sapnhap_nightly()
