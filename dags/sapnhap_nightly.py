"""
### Nightly sync of the legacy district/commune systems into the provincial platform

**plan** reads the run's params (`sources`, `datasets`; default: all of them) and lists the
(source, dataset) pairs the run syncs (a conf key that is not a param fails the run), then
prepares the run (platform schema checked, reference data published, the run opened in
`ops.runs`) and lists the selected sources never assessed.

One task group per legacy system of the source registry (`include/sources/*.yaml`), with one
mapped instance per dataset of the source of two tasks: **extract** (incremental, by cursor or new
export files; in the legacy server's pool; for a new source, the source is first profiled and its
owners told before its first load: the assessment, once per source whichever of its datasets gets
there first) and **process**: transform (old codes -> new province/commune codes, lineage kept) ->
validate (GX suite of the dataset, failing rows quarantined with a reason) -> backup (Parquet +
manifest, encrypted, verified) -> load (one transaction per batch, idempotent), one log line per
stage. Why these tasks and not more: `docs/architecture.md`, "Task granularity". A pair the
params leave out is skipped; a failing dataset does not stop its siblings (it retries, and its
owner is told).

Then, for what the run covered only: **reconcile** checks extracted = loaded + quarantined +
merged duplicates for every batch, **report** emails the owners of the synced sources in
Vietnamese, **handover** stores a handover record (biên bản bàn giao dữ liệu) per old unit, and
**publish** emits one asset event per platform table the run changed (`core.<dataset>`), with
its row counts in the event's `extra`, and one on `registry.review_queue` when records wait for a
decision (the `sapnhap_review` DAG then asks the data team in Required Actions; never this run).
"""

from __future__ import annotations

import logging

import pendulum
from airflow.sdk import AssetAlias, TaskGroup, dag, get_current_context, get_parsing_context, task, task_group

from sapnhap.airflow_support import CORE_TABLES_ALIAS, default_args, nightly_params
from sapnhap.review_hitl import REVIEW_WAITING_ALIAS
from sapnhap.sources import load_registry

# Declarative files only: no connection or database is touched at parse time. An invalid file
# disables its source only (a failing task below); the DAG still imports and the others run.
DAG_ID = "sapnhap_nightly"
REGISTRY = load_registry()
SOURCES = list(REGISTRY.sources)


def _sources_to_build() -> list:
    """The sources whose task groups this parse builds: all of them, except in a task's own process.

    Airflow parses the DAG file again for every task instance it runs, and building one group per
    source grows with the registry (1.8 s per task instance at 300 sources: docs/architecture.md,
    "What a task instance parses"). The task runner says which task it runs (Airflow's parsing
    context): a task of one source's group gets that group, ``plan`` and the leaves, the same task
    as in the whole DAG. The scheduler, the DAG processor and every other task get all sources.
    """
    context = get_parsing_context()
    if context.dag_id == DAG_ID and context.task_id:
        mine = [s for s in SOURCES if s.id == context.task_id.split(".", 1)[0]]
        if mine:
            return mine
    return SOURCES


BUILT = _sources_to_build()
CORE_TABLES = AssetAlias(CORE_TABLES_ALIAS)
REVIEW_WAITING = AssetAlias(REVIEW_WAITING_ALIAS)  # an event only when records wait: sapnhap_review asks
# Per-batch stage tasks: one summary line in the log instead of Airflow's dump of the returned
# dict, and each mapped instance named by its dataset in the UI. One XCom per task instance: a
# task returning ``dict`` is otherwise taken for ``multiple_outputs``, and Airflow pushed every key
# of the batch again as an XCom of its own (~30 calls to the API server, 0.3-0.5 s per instance).
ONE_XCOM = {"multiple_outputs": False, "show_return_value_in_logs": False}
STAGE = {**ONE_XCOM, "map_index_template": "{{ task.op_kwargs.get('dataset', '') }}"}

log = logging.getLogger("sapnhap.nightly")


def _run_ids() -> tuple[str, str]:
    ctx = get_current_context()
    # Under the scheduler a triggered run's dates are plain datetimes (pendulum only under `dags test`).
    when = pendulum.instance(ctx.get("logical_date") or ctx["dag_run"].run_after)
    run_date = when.in_timezone("Asia/Ho_Chi_Minh").date().isoformat()
    return ctx["dag_run"].run_id, run_date


def _close_run(context) -> None:  # noqa: ANN001 - Airflow callback context
    """ops.runs ends in the state Airflow gives the run (DAG-level success and failure callbacks)."""
    from sapnhap.airflow_support import services_from_airflow
    from sapnhap.runs import close_run_from_context

    close_run_from_context(context, services_from_airflow().platform_dsn)


def _stage_failed(context) -> None:  # noqa: ANN001 - Airflow callback context
    """A dataset's stage failed for good: its batch says which stage and why (the owner's email shows it)."""
    from sapnhap.airflow_support import batch_of_task, services_from_airflow
    from sapnhap.runs import record_stage_failure

    dsn = services_from_airflow().platform_dsn
    batch = batch_of_task(context)  # a mapped <source>.datasets.<stage> task: that one dataset
    if batch is None:  # plan, reconcile, report, ...: no batch of theirs to mark
        return
    source_id, dataset, stage = batch
    error = context.get("exception") or "the task ended without an exception (killed or timed out)"
    record_stage_failure(dsn, run_id=context.get("run_id") or context["ti"].run_id, source_id=source_id,
                         datasets=[dataset], stage=stage, error=error)


def _planned(selected: list | None, *, fail: bool = False) -> list:
    """The pairs ``plan`` chose. When plan failed (bad params) nothing ran: ``fail`` makes the task
    fail (a leaf that only skipped would let Airflow call the run a success), else it is skipped."""
    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

    if selected is None:
        message = "plan failed (see its log): no (source, dataset) pair was selected, nothing ran"
        raise AirflowFailException(message) if fail else AirflowSkipException(message)
    return selected


def _skip_unless_selected(selected: list, source_id: str, dataset: str | None = None) -> None:
    from airflow.sdk.exceptions import AirflowSkipException

    from sapnhap.airflow_support import is_selected

    if not is_selected(selected, source_id, dataset):
        what = f"{source_id}/{dataset}" if dataset else source_id
        raise AirflowSkipException(f"{what} is not selected by this run's params")


@dag(
    dag_id=DAG_ID,
    schedule="0 1 * * *",
    start_date=pendulum.datetime(2025, 7, 1, tz="Asia/Ho_Chi_Minh"),
    catchup=False,
    max_active_runs=1,  # one night at a time: batches of a source must commit in cursor order
    default_args={**default_args(), "on_failure_callback": _stage_failed},
    on_success_callback=_close_run,
    on_failure_callback=_close_run,
    params=nightly_params(SOURCES),
    tags=["sapnhap", "nightly", "sync"],
    doc_md=__doc__,
)
def sapnhap_nightly() -> None:
    @task(multiple_outputs=True, show_return_value_in_logs=False)
    def plan() -> dict:
        """The run's pairs, then what ``prepare`` did: one task, not two (see "Task granularity")."""
        from airflow.sdk.exceptions import AirflowFailException

        from sapnhap.airflow_support import (
            SelectionError,
            select_pairs,
            selected_sources,
            services_from_airflow,
            sources_to_assess,
        )
        from sapnhap.runs import airflow_run_state
        from sapnhap.sync.prepare import prepare_run

        ctx = get_current_context()
        try:
            pairs = select_pairs(SOURCES, ctx["params"], ctx["dag_run"].conf)
        except SelectionError as exc:
            raise AirflowFailException(str(exc)) from None  # a retry would not change the params
        total = sum(len(s.datasets) for s in SOURCES)
        log.info("plan: this run syncs %d of %d (source, dataset) pairs: %s", len(pairs), total,
                 ", ".join(f"{s}/{d}" for s, d in pairs))
        run_id, _ = _run_ids()
        services = services_from_airflow()
        # Runs Airflow ended without calling back (a scheduler restart, marked failed by hand) are closed first.
        opened = prepare_run(services, run_id, airflow_state=airflow_run_state(ctx))
        log.info("prepare: platform schema and reference data %s published; run %s opened%s",
                 opened["crosswalk_version"], run_id,
                 "; closed runs Airflow had ended: " + ", ".join(f"{r} {s}" for r, s in opened["swept"].items())
                 if opened["swept"] else "")
        new = sources_to_assess(services.platform_dsn, [s.id for s in selected_sources(SOURCES, pairs)])
        if new:
            log.info("plan: %d new sources are assessed before their first load: %s", len(new), ", ".join(new))
        return {"pairs": [list(p) for p in pairs], "new_sources": new}

    @task(**STAGE)
    def extract(source_id: str, dataset: str, selected: list, new_sources: list) -> dict:
        from sapnhap.airflow_support import (
            assess_before_first_load,
            legacy_connection,
            log_stage,
            services_from_airflow,
        )
        from sapnhap.sources import get_source
        from sapnhap.sync.extract import extract_stage

        _skip_unless_selected(selected, source_id, dataset)
        src = get_source(source_id)
        run_id, run_date = _run_ids()
        services = services_from_airflow()
        connection = legacy_connection(src.conn_id, src.kind)
        if source_id in (new_sources or ()):
            # R13: a new source is profiled and its owners get the assessment (through the outbox)
            # before its first load; the first of its datasets' extracts does it, the others wait for it.
            done = assess_before_first_load(services, src, connection, run_id=run_id)
            log.info("assess %s: %s", source_id, "new source profiled, assessment queued for its owners"
                     if done["assessed"] else "already assessed (by a sibling dataset's extract)")
        batch = extract_stage(services, src, dataset, connection, run_id=run_id, run_date=run_date)
        log_stage("extract", batch, services)
        return batch

    @task(**STAGE)
    def process(source_id: str, dataset: str, batch: dict) -> dict:
        """transform -> validate -> backup -> load of one batch, one summary line each (see "Task granularity")."""
        from sapnhap.airflow_support import process_batch, services_from_airflow
        from sapnhap.sources import get_source

        return process_batch(services_from_airflow(), get_source(source_id), batch)

    loads = []

    @task_group(group_id="datasets")
    def datasets(source_id: str, pool: str, selected: list, new_sources: list, dataset: str) -> None:
        """One mapped instance per dataset of the source: a failing dataset does not stop its siblings."""
        # Keyword arguments: the map index template names each instance by op_kwargs["dataset"].
        batch = extract.override(pool=pool)(source_id=source_id, dataset=dataset, selected=selected,
                                            new_sources=new_sources)
        loads.append(process(source_id=source_id, dataset=dataset, batch=batch))

    @task(trigger_rule="all_done", retries=0, show_return_value_in_logs=False)
    def reconcile(selected: list) -> list[dict]:
        from sapnhap.airflow_support import services_from_airflow
        from sapnhap.sync.reconcile import reconcile_run

        run_id, _ = _run_ids()
        expected = [tuple(p) for p in _planned(selected, fail=True)]
        frame = reconcile_run(services_from_airflow(), run_id, expected)
        totals = frame[["extracted", "loaded", "quarantined", "merged_duplicates", "blocked"]].sum()
        log.info("reconcile: %d batches reconciled: %d extracted = %d loaded + %d quarantined + %d merged + %d blocked",
                 len(frame), *(int(v) for v in totals))
        return frame.to_dict(orient="records")

    @task(trigger_rule="all_done", **ONE_XCOM)
    def report(selected: list) -> dict:
        from sapnhap.airflow_support import selected_sources, services_from_airflow
        from sapnhap.reports import send_run_reports

        run_id, _ = _run_ids()
        sources = selected_sources(SOURCES, _planned(selected))
        sent = send_run_reports(services_from_airflow(), run_id, sources)
        # Counts only: the recipients' addresses stay out of XCom and logs.
        return {"sources": [s.id for s in sources], "sent": len(sent["sent"]), "skipped": len(sent["skipped"])}

    @task(trigger_rule="all_done", **ONE_XCOM)
    def handover(selected: list) -> dict:
        from sapnhap.airflow_support import selected_sources, services_from_airflow
        from sapnhap.handover import build_handover

        run_id, _ = _run_ids()
        records = build_handover(services_from_airflow(), run_id, sources=selected_sources(SOURCES, _planned(selected)))
        return {"handover_records": len(records)}

    @task(trigger_rule="all_done", outlets=[CORE_TABLES, REVIEW_WAITING], **ONE_XCOM)
    def publish(loaded: list) -> dict:
        from sapnhap.airflow_support import core_asset, flatten_loads, services_from_airflow, table_events
        from sapnhap.review_hitl import announce_waiting_reviews

        ctx = get_current_context()
        run_id, _ = _run_ids()
        events = table_events(flatten_loads(loaded), run_id)
        for dataset, extra in events.items():
            ctx["outlet_events"][CORE_TABLES].add(core_asset(dataset), extra=extra)
            log.info("publish core.%s: %d inserted, %d updated by %d batches", dataset, extra["inserted"],
                     extra["updated"], len(extra["batches"]))
        if not events:
            log.info("publish: no platform table changed in this run; no asset event")
        announce_waiting_reviews(ctx["outlet_events"][REVIEW_WAITING], services_from_airflow().platform_dsn, run_id)
        return {f"core.{d}": e["inserted"] + e["updated"] for d, e in events.items()}

    planned = plan()
    pairs = planned["pairs"]
    for source in BUILT:
        with TaskGroup(group_id=source.id, tooltip=source.name):
            datasets.partial(source_id=source.id, pool=source.pool, selected=pairs,
                             new_sources=planned["new_sources"]).expand(dataset=list(source.datasets))

    for bad in REGISTRY.invalid if BUILT is SOURCES else ():
        with TaskGroup(group_id=bad.group_id, tooltip=f"invalid source file {bad.path.name}"):

            # No retry: the file does not fix itself, and each try would mail the owners again.
            @task(task_id="source_file_invalid", retries=0)
            def source_file_invalid(path: str = str(bad.path)) -> None:
                from sapnhap.airflow_support import services_from_airflow
                from sapnhap.sources import fail_invalid_source

                run_id, _ = _run_ids()
                fail_invalid_source(services_from_airflow(), path, run_id=run_id)

            source_file_invalid()

    # Leaves: a failed dataset or an unreconciled batch fails the run, and the owners of what ran
    # are still told (these run whatever happened upstream).
    loads >> reconcile(pairs)
    loads >> report(pairs)
    loads >> handover(pairs)  # biên bản bàn giao per old unit, from what the loads committed
    publish(loads)


sapnhap_nightly()
