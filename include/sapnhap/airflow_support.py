"""What the DAGs share: Airflow connections turned into sapnhap settings (secrets stay in Airflow),
the nightly's params and run selection, the platform table assets, and the stage summary lines.

Connections are only read from inside tasks: never at DAG-parse time.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sapnhap.services import (
    PLATFORM_CONN_ID,
    S3_CONN_ID,
    SIGNING_CONN_ID,
    SIGNING_KEY_ENV,
    SMTP_CONN_ID,
    S3Config,
    Services,
    SmtpConfig,
    libpq_dsn,
)

if TYPE_CHECKING:
    from sapnhap.sources import Source

log = logging.getLogger("sapnhap.nightly")

# Libraries whose INFO lines drown the stage summaries in the task logs (GX logs every datasource
# load and every function it registers for its docs).
QUIET_LOGGERS = ("great_expectations",)

# The nightly's publish task emits one event per changed platform table through this alias.
CORE_TABLES_ALIAS = "sapnhap-core-tables"


def default_args() -> dict:
    """The ``default_args`` of every sapnhap DAG: owner, retries with back-off.

    Legacy servers hiccup at night: 5 minutes between tries by default;
    ``SAPNHAP_RETRY_DELAY_SECONDS`` shortens it for the embedded demo and the tests.
    Read from the environment only (no connection or variable at parse time).
    """
    return {
        "owner": "sapnhap-data-team",
        "retries": 2,
        "retry_delay": timedelta(seconds=int(os.environ.get("SAPNHAP_RETRY_DELAY_SECONDS", "300"))),
        "retry_exponential_backoff": True,
    }


def _extra(conn) -> dict:  # noqa: ANN001 - airflow Connection
    extra = conn.extra_dejson if hasattr(conn, "extra_dejson") else json.loads(conn.extra or "{}")
    return extra or {}


def get_connection(conn_id: str):  # noqa: ANN201
    from airflow.sdk import BaseHook

    return BaseHook.get_connection(conn_id)


def postgres_dsn(conn_id: str) -> str:
    """libpq DSN of an Airflow postgres connection (host may be a unix-socket directory)."""
    conn = get_connection(conn_id)
    return libpq_dsn(conn.host, conn.port, conn.login, conn.password, conn.schema)


def signing_key_from_airflow() -> str | None:
    """The backup signing key: password of the ``sapnhap_backup_signing`` connection, else the environment."""
    from airflow.exceptions import AirflowNotFoundException

    try:
        return get_connection(SIGNING_CONN_ID).password or None
    except AirflowNotFoundException:
        return os.environ.get(SIGNING_KEY_ENV) or None


def quiet_library_logs() -> None:
    """Keep only warnings and errors of chatty libraries in task logs (the stage summaries are the story)."""
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def services_from_airflow() -> Services:
    """Platform, bucket and mail settings from the Airflow connections sapnhap uses.

    Every task calls it first, so it also turns library logging down before GX is imported.
    """
    quiet_library_logs()
    s3_conn = get_connection(S3_CONN_ID)
    s3_extra = _extra(s3_conn)
    smtp_conn = get_connection(SMTP_CONN_ID)
    smtp_extra = _extra(smtp_conn)
    return Services(
        platform_dsn=postgres_dsn(PLATFORM_CONN_ID),
        s3=S3Config(
            bucket=s3_extra.get("bucket", S3Config.bucket),
            endpoint_url=s3_extra.get("endpoint_url"),
            access_key=s3_conn.login,
            secret_key=s3_conn.password,
            region=s3_extra.get("region_name", S3Config.region),
            sse=s3_extra.get("sse", "AES256") or None,
        ),
        smtp=SmtpConfig(
            host=smtp_conn.host or "127.0.0.1",
            port=int(smtp_conn.port or 25),
            user=smtp_conn.login or None,
            password=smtp_conn.password or None,
            starttls=bool(smtp_extra.get("starttls", False)),
            from_addr=smtp_extra.get("from_email", SmtpConfig.from_addr),
        ),
        signing_key=signing_key_from_airflow(),
    )


def legacy_connection(conn_id: str, kind: str) -> str:
    """What the extractor needs to reach a legacy system: a URI, or for ``files`` the folder."""
    conn = get_connection(conn_id)
    if kind in ("files", "access"):  # a folder of exports, or an Access file
        return json.dumps({"conn_type": "fs", "extra": _extra(conn)})
    if kind == "sqlite":
        # Airflow parses sqlite:////abs/file.db into schema="/abs/file.db" and an empty host.
        return f"sqlite://{conn.host or conn.schema or _extra(conn).get('path', '')}"
    if kind == "postgres":
        return postgres_dsn(conn_id)
    return conn.get_uri()


# --- the nightly's params and what a run covers -------------------------------------------------

NIGHTLY_PARAMS = ("sources", "datasets")


class SelectionError(ValueError):
    """A run's params or conf name something the registry does not have."""


def nightly_params(sources: Iterable[Source]) -> dict[str, Any]:
    """The nightly DAG's params: the sources and the datasets to sync (default: all of them)."""
    from airflow.sdk import Param

    sources = list(sources)
    source_ids = [s.id for s in sources]
    datasets = sorted({d for s in sources for d in s.datasets})
    return {
        "sources": Param(
            source_ids, type="array", items={"type": "string", "enum": source_ids}, uniqueItems=True,
            title="Nguồn dữ liệu (sources)",
            description="Các hệ thống cũ cần đồng bộ trong lần chạy này; mặc định: tất cả.",
        ),
        "datasets": Param(
            datasets, type="array", items={"type": "string", "enum": datasets}, uniqueItems=True,
            title="Bộ dữ liệu (datasets)",
            description="Các bộ dữ liệu cần đồng bộ của các nguồn đã chọn; mặc định: tất cả.",
        ),
    }


def _chosen(value: object, known: list[str], name: str) -> set[str]:
    if value is None:
        return set(known)
    values = [value] if isinstance(value, str) else list(value)  # type: ignore[call-overload]
    unknown = sorted(str(v) for v in values if v not in known)
    if unknown:
        raise SelectionError(f"param {name!r}: unknown {unknown}; known: {known}")
    return set(values)


def select_pairs(sources: Iterable[Source], params: Mapping[str, object],
                 conf: Mapping[str, object] | None = None) -> list[tuple[str, str]]:
    """The (source_id, dataset) pairs a run syncs, in registry order; raise :class:`SelectionError`.

    A conf key that is not a param (``{"source": ...}``) fails the run instead of being ignored:
    ignoring it would sync every source when the team asked for one.
    """
    sources = list(sources)
    stray = sorted(set(conf or {}) - set(NIGHTLY_PARAMS))
    if stray:
        raise SelectionError(f"run conf keys {stray} are not params of this DAG; use {list(NIGHTLY_PARAMS)}")
    source_ids = _chosen(params.get("sources"), [s.id for s in sources], "sources")
    datasets = _chosen(params.get("datasets"), sorted({d for s in sources for d in s.datasets}), "datasets")
    pairs = [(s.id, d) for s in sources if s.id in source_ids for d in s.datasets if d in datasets]
    if not pairs:
        raise SelectionError(f"nothing to sync: no source of {sorted(source_ids)} has a dataset of {sorted(datasets)}")
    return pairs


def selected_sources(sources: Iterable[Source], pairs: Iterable[Iterable[str]]) -> list[Source]:
    """The sources that have at least one selected pair (XCom turns the pairs into lists)."""
    ids = {p[0] for p in (tuple(x) for x in pairs)}
    return [s for s in sources if s.id in ids]


def is_selected(pairs: Iterable[Iterable[str]], source_id: str, dataset: str | None = None) -> bool:
    """Whether a run's selection covers this source (and dataset)."""
    return any(p[0] == source_id and (dataset is None or p[1] == dataset) for p in (tuple(x) for x in pairs))


def sources_to_assess(platform_dsn: str, source_ids: Iterable[str]) -> list[str]:
    """The sources of ``source_ids`` never assessed (no row in ``ops.assessments``), in that order: one query."""
    import psycopg

    ids = list(source_ids)
    if not ids:
        return []
    with psycopg.connect(platform_dsn) as conn:
        done = {r[0] for r in conn.execute("SELECT DISTINCT source_id FROM ops.assessments WHERE source_id = ANY(%s)",
                                           (ids,))}
    return [s for s in ids if s not in done]


def _assessment_lock_key(source_id: str) -> int:
    import hashlib

    return int.from_bytes(hashlib.blake2b(f"sapnhap.assess:{source_id}".encode(), digest_size=8).digest(), "big",
                          signed=True)


def assess_before_first_load(services: Services, source: Source, connection: str, *, run_id: str) -> dict:
    """Assess a new source (R13) from inside the extract of one of its datasets; once per source.

    The nightly has no ``assess`` task per source (a task instance per source per night to find
    that the source was assessed long ago; see "Task granularity"): ``plan`` lists the sources
    never assessed and their extracts call this first. The extracts of a source's datasets run at
    the same time: a PostgreSQL advisory lock per source lets the first one profile the source
    and queue the owners' email while the others wait, then find it done. An error is marked as
    the ``assess`` stage (the dataset's batch and its owners' report say so) and fails the extract:
    nothing of a source is loaded before its owners got its assessment.
    """
    import psycopg

    from sapnhap.assessment import assessment_step

    key = _assessment_lock_key(source.id)
    try:
        with psycopg.connect(services.platform_dsn, autocommit=True) as conn:
            conn.execute("SELECT pg_advisory_lock(%s)", (key,))
            try:
                done = assessment_step(services, source, connection, run_id=run_id)
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
    except Exception as exc:
        setattr(exc, STAGE_ATTRIBUTE, "assess")
        raise
    return {k: v for k, v in done.items() if k in ("source_id", "assessed", "profile_key", "row_counts")}


# --- platform table assets -----------------------------------------------------------------------

def core_asset(dataset: str):  # noqa: ANN201 - airflow.sdk.Asset
    """The asset of one platform table (``core.<dataset>``): the nightly emits it, other DAGs schedule on it."""
    from airflow.sdk import Asset

    from sapnhap.datasets import get_dataset

    name = get_dataset(dataset).name
    return Asset(name=f"core.{name}", uri=f"postgres://sapnhap-platform:5432/sapnhap/core/{name}")


def table_events(loads: Iterable[Mapping[str, Any]], run_id: str) -> dict[str, dict[str, Any]]:
    """One asset event ``extra`` per platform table the run changed: row counts, total and per batch.

    A table whose batches inserted and updated nothing gets no event (nothing downstream to redo).
    """
    fields = ("extracted", "inserted", "updated", "unchanged", "quarantined", "merged_in_batch",
              "merged_cross_source", "blocked")
    events: dict[str, dict[str, Any]] = {}
    for load in loads:
        if load.get("status") != "loaded" or not (load.get("inserted", 0) or load.get("updated", 0)):
            continue
        event = events.setdefault(load["dataset"], {"run_id": run_id, "table": f"core.{load['dataset']}",
                                                    **dict.fromkeys(fields, 0), "batches": []})
        for f in fields:
            event[f] += int(load.get(f, 0))
        event["batches"].append({"source_id": load.get("source_id"), "batch_id": load["batch_id"],
                                 **{f: int(load.get(f, 0)) for f in fields}})
    return events


# --- one plain line per stage ---------------------------------------------------------------------

def _where(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"


def stage_summary(stage: str, batch: Mapping[str, Any], *, bucket: str) -> str:
    """One plain line of what a stage did to a batch: rows in, rows out by outcome, where the artefacts are.

    Counts, keys and object locations only: no record, no personal data.
    """
    where = f"{batch['source_id']}/{batch['dataset']}" if "source_id" in batch else batch["dataset"]
    prefix = batch.get("prefix", "")
    if stage == "extract":
        unmapped = batch.get("unmapped_columns") or []
        return (
            f"extract {where}: {batch['rows']} rows out of the legacy system"
            f" (cursor {batch.get('cursor_from')} -> {batch.get('cursor_to')}, {len(batch.get('files') or [])} new files"
            + (f", {len(unmapped)} unmapped legacy columns kept in raw" if unmapped else "")
            + f") -> {_where(bucket, prefix + 'raw.parquet')}"
        )
    if stage == "transform":
        return (
            f"transform {where}: {batch['rows']} rows in -> {batch['transformed_rows']} rows under new unit codes,"
            f" {batch['merged_in_batch']} merged in batch (same natural key); crosswalk {batch['crosswalk_version']}"
            f" -> {_where(bucket, prefix + 'transformed.parquet')}"
        )
    if stage == "validate":
        docs = batch.get("data_docs") or []
        index = next((d["key"] for d in docs if str(d["key"]).endswith("data_docs/index.html")), None)
        return (
            f"validate {where}: {batch['transformed_rows']} rows in -> {batch['valid_rows']} valid,"
            f" {batch['quarantined_rows']} quarantined ({float(batch['failed_ratio']):.1%} failing,"
            f" decision {batch['decision']}); suite {batch['suite_version']}"
            + (f"; Data Docs {_where(bucket, index)}" if index else "")
        )
    if stage == "backup":
        objects = [*batch["objects"].values(), *(batch.get("data_docs") or [])]
        size = sum(int(o.get("size", 0)) for o in objects)
        return (
            f"backup {where}: {len(objects)} objects verified ({size} bytes), manifest"
            f" {_where(bucket, batch['manifest_key'])}"
        )
    if stage == "load":
        merged = int(batch.get("merged_in_batch", 0)) + int(batch.get("merged_cross_source", 0))
        return (
            f"load {where}: {batch['extracted']} rows in -> {batch['inserted']} inserted, {batch['updated']} updated,"
            f" {batch['unchanged']} unchanged, {batch['quarantined']} quarantined, {merged} merged,"
            f" {batch['blocked']} blocked; batch {batch['status']} ({batch['batch_id']})"
        )
    raise ValueError(f"unknown stage {stage!r}")


def log_stage(stage: str, batch: Mapping[str, Any], services: Services) -> None:
    """Write the stage's summary line to the task log."""
    log.info(stage_summary(stage, batch, bucket=services.s3.bucket))


def flatten_loads(values: object) -> list[Mapping[str, Any]]:
    """The load results of a run from the XCom of mapped load tasks, whatever shape the pull gave.

    Pulling a mapped task's XCom gives a list, a single dict when one instance pushed, or None when
    none did (a skipped or failed source).
    """
    if values is None:
        return []
    if isinstance(values, Mapping):
        return [values]
    if isinstance(values, str | bytes):
        raise TypeError(f"not a load result: {type(values).__name__}")
    return [item for value in values for item in flatten_loads(value)]  # type: ignore[attr-defined]


def process_batch(services: Services, source: Source, batch: dict[str, Any]) -> dict[str, Any]:
    """The nightly's ``process`` task: transform -> validate -> backup -> load of one extracted batch,
    one summary line per stage; returns the load's counts with the source id.

    A retry of the task after its backup was written (the load failed, or the worker was lost
    after the commit) loads that backup again instead of redoing the stages: the manifest is
    write-once and signed, and the objects it lists must never be rewritten. The load is
    idempotent, so nothing is doubled.
    """
    from sapnhap.sync.backup import backup_stage, existing_manifest
    from sapnhap.sync.load import load_stage
    from sapnhap.sync.transform import transform_stage
    from sapnhap.sync.validate import validate_stage

    key = existing_manifest(services, batch)
    if key is not None:
        log.info("backup %s/%s: already backed up by an earlier try of this task, manifest %s; loading it",
                 source.id, batch["dataset"], _where(services.s3.bucket, key))
        batch = {**batch, "manifest_key": key}
    else:
        for stage, run in (("transform", transform_stage), ("validate", validate_stage), ("backup", backup_stage)):
            batch = _in_stage(stage, run, services, source, batch)
            log_stage(stage, batch, services)
    # load_stage reads the manifest and refuses a batch without a complete, verified backup.
    result = {**_in_stage("load", load_stage, services, source, batch), "source_id": source.id}
    log_stage("load", result, services)
    return result


# Set on an exception raised inside ``process``: the stage it came from, for the failure callback.
STAGE_ATTRIBUTE = "sapnhap_stage"


def _in_stage(stage: str, run: Any, services: Services, source: Source, batch: dict[str, Any]) -> dict[str, Any]:
    try:
        return run(services, source, batch)
    except Exception as exc:
        setattr(exc, STAGE_ATTRIBUTE, stage)
        raise


def batch_of_task(context: Mapping[str, Any]) -> tuple[str, str, str] | None:
    """``(source_id, dataset, stage)`` of a nightly batch task from its Airflow context, else None.

    For task callbacks (e.g. recording why a stage failed): the batch tasks are
    ``<source_id>.datasets.<task>``, mapped by dataset, so the ids come from the task's
    arguments rather than from parsing the task id. The stage is the one the context's exception
    came from when ``process`` marked it, else the task's name.
    """
    task = context.get("task")
    ti = context.get("ti")
    task_id = str(getattr(ti, "task_id", "") or getattr(task, "task_id", ""))
    kwargs = getattr(task, "op_kwargs", None) or {}
    if ".datasets." not in task_id or "source_id" not in kwargs or "dataset" not in kwargs:
        return None
    stage = getattr(context.get("exception"), STAGE_ATTRIBUTE, None) or task_id.rsplit(".", 1)[1]
    return str(kwargs["source_id"]), str(kwargs["dataset"]), stage


# --- task logs of `airflow dags test` runs ----------------------------------------------------------

# `airflow dags test` (the demo's runs, the e2e tests) runs every task inside its own process: the
# task logs go to its output only, never to the per-attempt files the UI's log view reads
# (<base_log_folder>/dag_id=../run_id=../task_id=../[map_index=../]attempt=N.log). These turn that
# output back into those files, one JSON line per log line as a worker writes them.
_DAG_TEST_START = re.compile(r"\[DAG TEST\] starting task_id=(?P<task>\S+) map_index=(?P<map>-?\d+)")
_DAG_TEST_END = re.compile(r"\[DAG TEST\] end task task_id=(?P<task>\S+) map_index=(?P<map>-?\d+)")
_DAG_TEST_RUN = re.compile(r"\[DAG TEST\] running task <TaskInstance: (?P<dag>\S+?)\.(?P<task>\S+) (?P<run>\S+) ")
# structlog's console line: "<ts> [<level>   ] <event>   [<logger>] key=value ..."
_CONSOLE_LINE = re.compile(r"^(?P<ts>\d{4}-\d\d-\d\dT[\d:.]+Z) \[(?P<level>\w+)\s*\] (?P<event>.*?)"
                           r"(?:\s+\[(?P<logger>[\w.]+)\](?P<kv>(?:\s+\w+=\S*)*))?\s*$")


def _log_record(line: str) -> str:
    m = _CONSOLE_LINE.match(line)
    if not m:
        return line  # a printed line: the log view shows it as it is
    record: dict[str, Any] = {"timestamp": m["ts"], "level": m["level"], "event": m["event"].rstrip()}
    if m["logger"]:
        record["logger"] = m["logger"]
    for pair in (m["kv"] or "").split():
        key, _, value = pair.partition("=")
        record[key] = value
    return json.dumps(record, ensure_ascii=False)


def write_dags_test_task_logs(output: str, dag_id: str, base_log_folder: os.PathLike | str) -> list[str]:
    """Write the task logs of one ``airflow dags test`` run where the UI reads them; return the files.

    ``output`` is the command's output. Tasks run one after the other there, each between a
    "[DAG TEST] starting task_id=.. map_index=.." and an "end task" line; the n-th start of a task
    instance is its attempt n (the run is new). Paths follow Airflow's default
    ``[logging] log_filename_template``. An existing file is left alone (a worker wrote it).
    """
    from pathlib import Path

    base = Path(base_log_folder)
    written: list[str] = []
    attempts: dict[tuple[str, int], int] = {}
    current: tuple[str, int] | None = None
    lines: list[str] = []
    run_id: str | None = None

    def flush() -> None:
        if current is None or run_id is None:
            return
        task_id, map_index = current
        folder = base / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
        if map_index >= 0:
            folder = folder / f"map_index={map_index}"
        path = folder / f"attempt={attempts[current]}.log"
        if path.exists():
            return
        folder.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(_log_record(x) + "\n" for x in lines), encoding="utf-8")
        written.append(str(path))

    for line in output.splitlines():
        if m := _DAG_TEST_START.search(line):
            current = (m["task"], int(m["map"]))
            attempts[current] = attempts.get(current, 0) + 1
            lines = []
        elif current is not None and (m := _DAG_TEST_END.search(line)):
            flush()
            current = None
        elif current is not None:
            m = _DAG_TEST_RUN.search(line)
            if m and m["dag"] == dag_id:
                run_id = m["run"]
            else:
                lines.append(line)
    flush()  # a run cut short: what its last task said
    return written


def dags_test_log_folder(env: Mapping[str, str]) -> str:
    """Where the Airflow of ``env`` keeps task logs (``[logging] base_log_folder``)."""
    return env.get("AIRFLOW__LOGGING__BASE_LOG_FOLDER") or os.path.join(env["AIRFLOW_HOME"], "logs")
