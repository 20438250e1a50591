"""Soak test of the nightly sync (issue 10, "Done when"): N nights on the demo world, faults at random.

    make soak ARGS="--nights 30 --seed 1"          # the long run (outside the test suite)
    make soak ARGS="--nights 3 --seed 1 --size 8"   # what tests/soak/test_soak_short.py runs

Starts the embedded services in ``--workdir`` (a pgserver PostgreSQL for the legacy databases
and the platform, a moto S3 server, an aiosmtpd sink), generates the demo world, then runs one
nightly sync per night by calling the stage functions of :mod:`sapnhap.sync` in-process
(prepare, per source and dataset extract -> transform -> validate -> backup -> load, reconcile,
the owners' reports), not through Airflow.

Before each night, seeded at random, the legacy systems change: inserts and updates
(``mutate_world``), deletes, in-system duplicates (a second row with the natural key of an
existing one in the same system; updated again on a later night), back-dated rows (new rows
written behind the committed cursor, beyond ``cursor_lookback``), and once a legacy PostgreSQL
database restored from a copy taken on night 1. During the night, seeded at random (every kind
at least once when there are enough nights): ``kill9`` (a stage runs in a forked process that
gets SIGKILL, then the stage is retried), ``s3_down`` (a stage meets a closed S3 port, then is
retried), ``smtp_down`` (the night's report task meets a closed SMTP port on every try),
``platform_restart`` (the embedded PostgreSQL restarts while a stage runs; the stage is retried),
``clear_rerun`` (a source's stages run again in the same run), ``twin_run`` (a second run of
the same source in a forked process at the same time).

After the last night, a clean sync; then the checks, each printed and in ``soak-summary.json``:

- ``verify``: source-vs-platform verification (``sapnhap.verify``) 0 missing, 0 extra, 0
  different rows for every source and dataset (verify, re-sync night, verify again);
- ``reports``: each report email delivered once (by Message-ID), at most one per (run, owner),
  exactly one per night and owner whose sources had records inserted or updated that night
  (needs the outbox, ``sapnhap.reports.outbox``);
- ``restore``: every dataset restored from the backups into a scratch schema has the
  platform's checksum (``sapnhap.restore``).

A check whose module is not on this branch yet is reported ``skipped`` naming the module. Exit
code 0 when every check that ran passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import traceback
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "include"))
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")

from sapnhap import sync  # noqa: E402
from sapnhap.services import S3Config, Services, SmtpConfig  # noqa: E402
from sapnhap.sources import Source, get_source  # noqa: E402
from sapnhap_dev.demo.generator import SOURCE_IDS, World, generate_world, insert_rows, mutate_world  # noqa: E402
from sapnhap_dev.embedded import Stack, free_port, read_mail, stack_signing_key, start_stack  # noqa: E402

FAULTS = ("kill9", "s3_down", "smtp_down", "platform_restart", "clear_rerun", "twin_run")
STAGES = ("extract", "transform", "validate", "backup", "load")
RUN_DATE0 = datetime(2025, 12, 1)
ATTEMPTS = 3  # the DAG's tasks: one try and two retries
# Legacy tables whose primary key is a surrogate: a second row with the same natural key fits.
DUP_TABLES = (("tq_sonduong_dancu", "residents"), ("hg_vixuyen_motcua", "dossiers"), ("hg_bacquang_sqlite", "residents"))
DELETE_TABLES = (("tq_sonduong_dancu", "residents"), ("tq_sonduong_dancu", "households"),
                 ("hg_vixuyen_motcua", "dossiers"), ("hg_bacquang_sqlite", "dossiers"), ("hg_bacquang_sqlite", "residents"))
BACKDATE_TABLES = (("tq_sonduong_dancu", "residents"), ("hg_vixuyen_motcua", "dossiers"), ("hg_bacquang_sqlite", "residents"))
RESTORED_SOURCE = "tq_sonduong_dancu"
BACKDATE = timedelta(days=20)  # far beyond the demo sources' 2-hour cursor_lookback


def has_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


# -- the legacy systems ---------------------------------------------------------------------------


class Legacy:
    """Direct SQL on the demo world's PostgreSQL and SQLite legacy systems (what their users do)."""

    def __init__(self, world: World) -> None:
        self.world = world

    def _connect(self, source: Source):  # noqa: ANN202 - psycopg or sqlite3 connection
        if source.kind == "sqlite":
            return sqlite3.connect(self.world.sqlite_path())
        return psycopg.connect(self.world.connections[source.conn_id])

    def _run(self, source: Source, query: str, rows: list[tuple] | None = None, fetch: bool = False) -> list:
        if source.kind == "sqlite":
            query = query.replace("%s", "?")
        conn = self._connect(source)
        try:
            cur = conn.cursor()
            if rows is not None:
                cur.executemany(query, rows)
                out = []
            else:
                cur.execute(query)
                out = cur.fetchall() if fetch else []
            columns = [d[0] for d in cur.description] if fetch and cur.description else []
            conn.commit()
        finally:
            conn.close()
        return [columns, out] if fetch else []

    def _stamp(self, source: Source, dataset: str, when: datetime) -> object:
        if source.kind == "sqlite":
            return when.strftime(source.datasets[dataset].timestamp_format)
        return when

    def keys(self, source_id: str, dataset: str) -> list:
        source = get_source(source_id)
        m = source.datasets[dataset]
        _, rows = self._run(source, f'SELECT "{m.primary_key[0]}" FROM "{m.table}" ORDER BY 1', fetch=True)
        return [r[0] for r in rows]

    def delete(self, rng: np.random.Generator, source_id: str, dataset: str, n: int) -> int:
        source = get_source(source_id)
        m = source.datasets[dataset]
        keys = self.keys(source_id, dataset)
        gone = [keys[i] for i in rng.choice(len(keys), min(n, len(keys)), replace=False)]
        self._run(source, f'DELETE FROM "{m.table}" WHERE "{m.primary_key[0]}" = %s', [(k,) for k in gone])
        return len(gone)

    def duplicate(self, rng: np.random.Generator, source_id: str, dataset: str, n: int, when: datetime) -> list:
        """n new rows copying existing rows (same natural key, new surrogate key); return their keys."""
        source = get_source(source_id)
        m = source.datasets[dataset]
        pk = m.primary_key[0]
        columns, rows = self._run(source, f'SELECT * FROM "{m.table}" ORDER BY "{pk}"', fetch=True)
        picks = [rows[i] for i in rng.choice(len(rows), min(n, len(rows)), replace=False)]
        at_pk, at_cursor = columns.index(pk), columns.index(m.cursor)
        top = max(int(r[at_pk]) for r in rows)
        new = []
        for i, row in enumerate(picks, start=1):
            row = list(row)
            row[at_pk] = top + 1000 + i
            row[at_cursor] = self._stamp(source, dataset, when)
            new.append(tuple(row))
        cols = ", ".join(f'"{c}"' for c in columns)
        marks = ", ".join("%s" for _ in columns)
        self._run(source, f'INSERT INTO "{m.table}" ({cols}) VALUES ({marks})', new)
        return [r[at_pk] for r in new]

    def touch(self, source_id: str, dataset: str, keys: list, when: datetime) -> int:
        """Update rows later (a changed name or address, a new cursor value)."""
        source = get_source(source_id)
        m = source.datasets[dataset]
        changed = m.columns.get("address_detail") or m.columns.get("procedure_name") or m.columns.get("full_name")
        extra = f', "{changed}" = coalesce("{changed}", \'\') || \' *\'' if changed else ""
        self._run(source, f'UPDATE "{m.table}" SET "{m.cursor}" = %s{extra} WHERE "{m.primary_key[0]}" = %s',
                  [(self._stamp(source, dataset, when), k) for k in keys])
        return len(keys)

    def backdate(self, source_id: str, dataset: str, n: int) -> int:
        """n new rows whose cursor value lies far behind the platform's committed cursor."""
        source = get_source(source_id)
        m = source.datasets[dataset]
        keys = insert_rows(self.world, source_id, dataset, n)["source_key"].astype(str).tolist()
        if source.kind == "sqlite":
            back = f"datetime(\"{m.cursor}\", '-{BACKDATE.days} days')"
        else:
            back = f"\"{m.cursor}\" - interval '{BACKDATE.days} days'"
        self._run(source, f'UPDATE "{m.table}" SET "{m.cursor}" = {back} WHERE CAST("{m.primary_key[0]}" AS TEXT) = %s',
                  [(k,) for k in keys])
        return len(keys)

    def _admin(self):  # noqa: ANN202
        return psycopg.connect(self.world.pg_dsn, autocommit=True)

    def snapshot(self, source_id: str) -> str:
        db = self.world.databases[source_id]
        copy = f"{db}_soakcopy"
        with self._admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{copy}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{copy}" TEMPLATE "{db}"')
        return copy

    def restore_from(self, source_id: str, copy: str) -> None:
        """The legacy team restores their database from an older copy (rows written since are gone)."""
        db = self.world.databases[source_id]
        with self._admin() as conn:
            conn.execute(f'DROP DATABASE "{db}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{db}" TEMPLATE "{copy}"')

    def drop_copy(self, copy: str) -> None:
        with self._admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{copy}" WITH (FORCE)')


# -- the platform's PostgreSQL --------------------------------------------------------------------


class Platform:
    """Restarts the embedded pgserver (platform and legacy databases share it)."""

    def __init__(self, stack: Stack) -> None:
        self.pgdata = stack.workdir / "pgdata"
        self.embedded = not os.environ.get("SAPNHAP_PLATFORM_URL") and self.pgdata.exists()

    def restart(self) -> None:
        import pgserver
        from pgserver._commands import pg_ctl
        from pgserver.postgres_server import PostmasterInfo

        server = pgserver.get_server(self.pgdata)
        pg_ctl(["-w", "-m", "fast", "restart"], pgdata=server.pgdata, user=server.system_user, timeout=60)
        # pgserver stops the postmaster it knows at exit: tell it the new one.
        server._postmaster_info = PostmasterInfo.read_from_pgdata(server.pgdata)


# -- one night ------------------------------------------------------------------------------------


@dataclass
class Fault:
    kind: str
    source_id: str
    dataset: str | None = None
    stage: str | None = None
    delay: float = 0.0


@dataclass
class Soak:
    args: argparse.Namespace
    stack: Stack
    world: World
    services: Services
    legacy: Legacy
    platform: Platform
    sources: list[Source]
    log: list[dict] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)
    source_failures: list[dict] = field(default_factory=list)
    pending_dups: list[tuple[str, str, list]] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)

    def connection(self, source: Source) -> str:
        return str(self.world.sqlite_path()) if source.kind == "sqlite" else self.world.connections[source.conn_id]

    def note(self, night: int, what: str, **info: object) -> None:
        entry = {"night": night, "what": what, **info}
        self.log.append(entry)
        if self.args.verbose or what in ("source failed for the night", "reconcile failed", "prepare failed"):
            print(f"[soak] night {night}: {what} {json.dumps(info, default=str, ensure_ascii=False)}", flush=True)


def _dead_s3(s3: S3Config) -> S3Config:
    return S3Config(bucket=s3.bucket, endpoint_url=f"http://127.0.0.1:{free_port()}", access_key="x",
                    secret_key="x", region=s3.region, sse=s3.sse, connect_timeout=1)


def _dead_smtp(smtp: SmtpConfig) -> SmtpConfig:
    return SmtpConfig(host="127.0.0.1", port=free_port(), from_addr=smtp.from_addr, timeout=5)


def _call_stage(services: Services, stage: str, source: Source, arg: object, *, conn: str, run_id: str,
                run_date: str) -> dict:
    if stage == "extract":
        return sync.extract_stage(services, source, str(arg), conn, run_id=run_id, run_date=run_date)
    fn = {"transform": sync.transform_stage, "validate": sync.validate_stage,
          "backup": sync.backup_stage, "load": sync.load_stage}[stage]
    return fn(services, source, arg)


def _stage_in_child(services: Services, stage: str, source: Source, arg: object, conn: str, run_id: str,
                    run_date: str) -> None:
    _call_stage(services, stage, source, arg, conn=conn, run_id=run_id, run_date=run_date)


def run_stage(soak: Soak, night: int, stage: str, source: Source, arg: object, *, run_id: str, run_date: str,
              fault: Fault | None) -> dict:
    """One task of the DAG: the fault (if it targets this stage) on the first try, then retries."""
    conn = soak.connection(source)
    dataset = arg if stage == "extract" else arg["dataset"]
    hit = fault is not None and fault.stage == stage and fault.dataset == dataset
    restarter = None
    if hit and fault.kind == "kill9":
        child = multiprocessing.get_context("fork").Process(
            target=_stage_in_child, args=(soak.services, stage, source, arg, conn, run_id, run_date))
        child.start()
        child.join(fault.delay)
        if child.exitcode is None:
            os.kill(child.pid, signal.SIGKILL)
            child.join(30)
        killed = child.exitcode == -signal.SIGKILL
        soak.counts["kill9"] += 1
        soak.counts["kill9_mid_stage"] += int(killed)
        soak.note(night, "fault kill9", source=source.id, dataset=dataset, stage=stage, delay=round(fault.delay, 2),
                  killed_mid_stage=killed, exitcode=child.exitcode)
    elif hit and fault.kind == "s3_down":
        dead = Services(platform_dsn=soak.services.platform_dsn, s3=_dead_s3(soak.services.s3),
                        smtp=soak.services.smtp, signing_key=soak.services.signing_key)
        try:
            _call_stage(dead, stage, source, arg, conn=conn, run_id=run_id, run_date=run_date)
            failed = None
        except Exception as exc:  # noqa: BLE001 - any failure is what the retry must survive
            failed = type(exc).__name__
        soak.counts["s3_down"] += 1
        soak.note(night, "fault s3_down", source=source.id, dataset=dataset, stage=stage, failed=failed)
    elif hit and fault.kind == "platform_restart":
        restarter = threading.Thread(target=lambda: (time.sleep(fault.delay), soak.platform.restart()))
        restarter.start()
        soak.counts["platform_restart"] += 1
        soak.note(night, "fault platform_restart", source=source.id, dataset=dataset, stage=stage,
                  delay=round(fault.delay, 2))
    error = None
    for attempt in range(1, ATTEMPTS + 1):
        try:
            out = _call_stage(soak.services, stage, source, arg, conn=conn, run_id=run_id, run_date=run_date)
            if restarter is not None:
                restarter.join()
            return out
        except Exception as exc:  # noqa: BLE001 - Airflow retries whatever a task raises
            error = exc
            soak.counts["stage_retries"] += 1
            soak.note(night, "retry", source=source.id, dataset=dataset, stage=stage, attempt=attempt,
                      error=f"{type(exc).__name__}: {str(exc)[:300]}")
            if restarter is not None:
                restarter.join()
            time.sleep(0.5)
    assert error is not None
    raise error


def run_chain(soak: Soak, night: int, source: Source, dataset: str, *, run_id: str, run_date: str,
              fault: Fault | None) -> dict:
    arg: object = dataset
    for stage in STAGES:
        arg = run_stage(soak, night, stage, source, arg, run_id=run_id, run_date=run_date, fault=fault)
    return arg  # type: ignore[return-value]


def run_source(soak: Soak, night: int, source: Source, *, run_id: str, run_date: str, fault: Fault | None) -> list:
    """A source's task group; a dataset that fails for good fails the source for the night, the others go on."""
    out = []
    for dataset in source.datasets:
        try:
            out.append(run_chain(soak, night, source, dataset, run_id=run_id, run_date=run_date, fault=fault))
        except Exception as exc:  # noqa: BLE001 - a failed source does not stop the night
            soak.source_failures.append({"night": night, "run_id": run_id, "source": source.id, "dataset": dataset,
                                         "error": f"{type(exc).__name__}: {str(exc)[:300]}"})
            soak.note(night, "source failed for the night", source=source.id, dataset=dataset,
                      error=f"{type(exc).__name__}: {str(exc)[:300]}")
    return out


def _twin_child(soak: Soak, night: int, source: Source, run_id: str, run_date: str, out: str) -> None:
    failures: list[str] = []
    for dataset in source.datasets:
        try:
            arg: object = dataset
            for stage in STAGES:
                arg = _call_stage(soak.services, stage, source, arg, conn=soak.connection(source), run_id=run_id,
                                  run_date=run_date)
        except Exception as exc:  # noqa: BLE001 - recorded, the parent reads it
            failures.append(f"{dataset}: {type(exc).__name__}: {str(exc)[:300]}")
    Path(out).write_text(json.dumps(failures))


def legacy_changes(soak: Soak, night: int, rng: np.random.Generator, forced: set[str], copy: str | None,
                   restore_night: int) -> None:
    """The legacy systems' day before night `night`: seeded random changes, plus the `forced` kinds."""
    world, legacy = soak.world, soak.legacy
    size = max(1, soak.args.size // 4)
    if copy is not None and night == restore_night:
        # First thing that day: what the platform loaded since night 1 is gone from the legacy system.
        legacy.restore_from(RESTORED_SOURCE, copy)
        soak.counts["legacy_restored_from_copy"] += 1
        soak.note(night, "legacy database restored from the copy of night 1", source=RESTORED_SOURCE)
        # In-system duplicates written since are gone too.
        soak.pending_dups = [p for p in soak.pending_dups if p[0] != RESTORED_SOURCE]
    changes = mutate_world(world, fraction=float(rng.uniform(0.01, 0.04)), seed=soak.args.seed * 1000 + night)
    by = changes["change"].value_counts().to_dict()
    soak.counts["legacy_inserts"] += by.get("insert", 0)
    soak.counts["legacy_updates"] += by.get("update", 0)
    when = world.clock - timedelta(minutes=30)
    mine = {sid for sid in SOURCE_IDS if any(s.id == sid for s in soak.sources)}

    def pick(tables: tuple) -> tuple[str, str] | None:
        ours = [t for t in tables if t[0] in mine]
        return ours[int(rng.integers(len(ours)))] if ours else None

    if (rng.random() < 0.6 or "delete" in forced) and (target := pick(DELETE_TABLES)):
        n = legacy.delete(rng, *target, int(rng.integers(1, size + 1)))
        soak.counts["legacy_deletes"] += n
        soak.note(night, "legacy delete", source=target[0], dataset=target[1], rows=n)
    # In-system duplicates of earlier nights are updated later: the row written second changes.
    still = []
    for sid, ds, keys in soak.pending_dups:
        if rng.random() < 0.7 or night == soak.args.nights:
            soak.counts["legacy_dup_updates"] += legacy.touch(sid, ds, keys, when)
            soak.note(night, "legacy duplicates updated", source=sid, dataset=ds, rows=len(keys))
        else:
            still.append((sid, ds, keys))
    soak.pending_dups = still
    # Before the legacy restore, duplicates go elsewhere: the restore would wipe them before their update.
    dup_tables = tuple(t for t in DUP_TABLES if copy is None or night >= restore_night or t[0] != RESTORED_SOURCE)
    if (rng.random() < 0.6 or "dup" in forced) and night < soak.args.nights and (target := pick(dup_tables)):
        keys = legacy.duplicate(rng, *target, int(rng.integers(1, size + 1)), when)
        soak.pending_dups.append((*target, keys))
        soak.counts["legacy_in_system_dups"] += len(keys)
        soak.note(night, "legacy in-system duplicates", source=target[0], dataset=target[1], rows=len(keys))
    if (rng.random() < 0.5 or "backdate" in forced) and (target := pick(BACKDATE_TABLES)):
        n = legacy.backdate(*target, int(rng.integers(1, size + 1)))
        soak.counts["legacy_backdated"] += n
        soak.note(night, "legacy back-dated rows", source=target[0], dataset=target[1], rows=n)


def plan_faults(rng: np.random.Generator, nights: int, sources: list[Source], platform: Platform) -> dict[int, list]:
    kinds = [k for k in FAULTS if k != "platform_restart" or platform.embedded]
    order = [str(k) for k in rng.permutation(kinds)]
    plan: dict[int, list[Fault]] = defaultdict(list)
    for i, kind in enumerate(order):
        plan[1 + i % nights].append(kind)
    for night in range(1, nights + 1):
        if rng.random() < 0.5:
            plan[night].append(str(rng.choice(kinds)))
    out: dict[int, list[Fault]] = {}
    for night in range(1, nights + 1):
        faults, used = [], set()
        for kind in plan[night]:
            if kind == "smtp_down":
                faults.append(Fault(kind, ""))
                continue
            free = [s for s in sources if s.id not in used]
            if not free:
                continue
            source = free[int(rng.integers(len(free)))]
            used.add(source.id)
            datasets = list(source.datasets)
            faults.append(Fault(kind, source.id, dataset=datasets[int(rng.integers(len(datasets)))],
                                stage=STAGES[int(rng.integers(len(STAGES)))], delay=float(rng.uniform(0.05, 1.0))))
        out[night] = faults
    return out


def send_reports(soak: Soak, night: int, run_id: str, smtp_down: bool) -> None:
    from sapnhap.reports import send_run_reports

    services = soak.services
    if smtp_down:
        services = Services(platform_dsn=services.platform_dsn, s3=services.s3, smtp=_dead_smtp(services.smtp),
                            signing_key=services.signing_key)
        soak.counts["smtp_down"] += 1
    for attempt in range(1, ATTEMPTS + 1):
        try:
            send_run_reports(services, run_id, soak.sources)
            return
        except Exception as exc:  # noqa: BLE001 - the report task fails; Airflow retries it
            soak.note(night, "report task failed", attempt=attempt, smtp_down=smtp_down,
                      error=f"{type(exc).__name__}: {str(exc)[:300]}")
            time.sleep(0.2)


def night_run(soak: Soak, night: int, run_id: str, faults: list[Fault]) -> None:
    run_date = (RUN_DATE0 + timedelta(days=night - 1)).date().isoformat()
    soak.runs.append(run_id)
    for attempt in range(1, ATTEMPTS + 1):
        try:
            sync.prepare_run(soak.services, run_id)
            break
        except Exception as exc:  # noqa: BLE001
            soak.note(night, "prepare failed", attempt=attempt, error=f"{type(exc).__name__}: {str(exc)[:300]}")
            if attempt == ATTEMPTS:
                raise
            time.sleep(1)
    by_source = {f.source_id: f for f in faults if f.source_id}
    for source in soak.sources:
        fault = by_source.get(source.id)
        twin = None
        if fault is not None and fault.kind == "twin_run":
            twin_id = f"{run_id}-twin"
            sync.prepare_run(soak.services, twin_id)
            out = soak.stack.workdir / f"twin-{twin_id}.json"
            twin = multiprocessing.get_context("fork").Process(
                target=_twin_child, args=(soak, night, source, twin_id, run_date, str(out)))
            twin.start()
            soak.counts["twin_run"] += 1
        run_source(soak, night, source, run_id=run_id, run_date=run_date, fault=fault)
        if twin is not None:
            twin.join(600)
            failures = json.loads(out.read_text()) if out.exists() else ["twin died"]
            soak.note(night, "fault twin_run", source=source.id, twin_exitcode=twin.exitcode, twin_failures=failures)
        if fault is not None and fault.kind == "clear_rerun":
            soak.counts["clear_rerun"] += 1
            soak.note(night, "fault clear_rerun", source=source.id)
            run_source(soak, night, source, run_id=run_id, run_date=run_date, fault=None)
    expected = [(s.id, d) for s in soak.sources for d in s.datasets]
    try:
        sync.reconcile_run(soak.services, run_id, expected)
    except Exception as exc:  # noqa: BLE001 - the DAG's reconcile fails the run; the report still goes
        soak.note(night, "reconcile failed", error=f"{type(exc).__name__}: {str(exc)[:300]}")
    send_reports(soak, night, run_id, smtp_down=any(f.kind == "smtp_down" for f in faults))


# -- verification, reports, restore ---------------------------------------------------------------


def verify_all(soak: Soak, run_id: str) -> list[dict]:
    from sapnhap.verify import verify_source

    results = []
    for source in soak.sources:
        try:
            results += verify_source(soak.services, source, soak.connection(source), run_id=run_id)
        except Exception as exc:  # noqa: BLE001 - one source's failure is a result, not the end
            results.append({"source_id": source.id, "dataset": "*", "error": f"{type(exc).__name__}: {exc}"})
    return results


def _verify_table(results: list[dict]) -> list[dict]:
    keep = ("source_id", "dataset", "status", "source_rows", "platform_rows", "missing", "extra", "different",
            "flagged_deleted", "resync_requested", "message", "error")
    return [{k: r.get(k) for k in keep if k in r} for r in results]


def verify_problems(results: list[dict]) -> list[dict]:
    """The results that do not prove the platform holds what the source holds.

    0 missing, 0 extra, 0 different proves it only for a dataset that was compared: one never
    loaded (every batch blocked, say) while its source holds rows is a failure, not a pass; so is
    one whose rows still lack their legacy hashes (``baseline``) or that could not be verified.
    """
    from sapnhap.verify import NOT_COUNTED

    def bad(r: dict) -> bool:
        if r.get("error") or r.get("missing") or r.get("extra") or r.get("different"):
            return True
        if r.get("status") == "not_loaded":  # fine only for a source that holds no row
            return bool(r.get("source_rows")) or str(r.get("message") or "").startswith(NOT_COUNTED)
        return r.get("status") != "ok"

    return [r for r in results if bad(r)]


def check_verify(soak: Soak) -> dict:
    if not has_module("sapnhap.verify"):
        return {"status": "skipped", "reason": "module sapnhap.verify is not on this branch yet"}
    first = verify_all(soak, "soak-verify-1")
    night_run(soak, soak.args.nights + 2, "soak-resync", [])
    final = verify_all(soak, "soak-verify-2")
    bad = verify_problems(final)
    return {"status": "failed" if bad else "passed", "before_resync": _verify_table(first),
            "after_resync": _verify_table(final), "not_zero": _verify_table(bad)}


def _news(soak: Soak) -> dict[str, set[str]]:
    """Per run: the owners whose sources had records inserted or updated by that night's run or its twin."""
    owners = {s.id: {o.strip().lower() for o in s.owners} for s in soak.sources}
    with psycopg.connect(soak.services.platform_dsn) as conn:
        rows = conn.execute(
            """SELECT run_id, source_id FROM ops.batches
               WHERE status = 'loaded' AND coalesce(inserted, 0) + coalesce(updated, 0) > 0""").fetchall()
    news: dict[str, set[str]] = defaultdict(set)
    for run_id, source_id in rows:
        news[run_id.removesuffix("-twin")] |= owners.get(source_id, set())
    return news


def check_reports(soak: Soak) -> dict:
    messages = read_mail(soak.stack.mail_dir) if soak.stack.mail_dir else []
    reports = [m for m in messages if m["X-Sapnhap-Run-Id"]]
    by_id = Counter(str(m["Message-ID"]) for m in reports)
    per_run_owner = Counter((str(m["X-Sapnhap-Run-Id"]), str(m["To"]).strip().lower()) for m in reports)
    news = _news(soak)
    expected = {(run, owner) for run, owners in news.items() for owner in owners if run in soak.runs}
    figures = {"messages": len(messages), "report_messages": len(reports), "distinct_message_ids": len(by_id),
               "nights_x_owners_with_news": len(expected)}
    if not has_module("sapnhap.reports.outbox"):
        # Without the outbox a report lost to an SMTP outage is never sent again: counted, not judged.
        missing = sorted(expected - set(per_run_owner))
        return {"status": "skipped", "reason": "module sapnhap.reports.outbox is not on this branch yet",
                **figures, "would_fail_missing": [list(x) for x in missing]}
    twice = sorted(k for k, n in by_id.items() if n > 1)
    doubled = sorted(k for k, n in per_run_owner.items() if n > 1)
    missing = sorted(expected - set(per_run_owner))
    ok = not (twice or doubled or missing)
    return {"status": "passed" if ok else "failed", **figures, "message_ids_delivered_twice": twice,
            "run_owner_with_several_reports": [list(x) for x in doubled],
            "run_owner_with_news_but_no_report": [list(x) for x in missing]}


def check_restore(soak: Soak) -> dict:
    if not has_module("sapnhap.restore"):
        return {"status": "skipped", "reason": "module sapnhap.restore is not on this branch yet"}
    from sapnhap.restore import backed_up_datasets, drop_scratch, restore_dataset

    results, bad = [], []
    for dataset in backed_up_datasets(soak.services):
        schema = f"soak_restore_{dataset}"
        try:
            report = restore_dataset(soak.services, dataset, target_schema=schema, compare=True)
            row = {"dataset": dataset, "batches": len(report.batches), "rows": report.rows,
                   "platform_rows": report.platform_rows, "matches_platform": report.matches_platform,
                   "plan": {k: report.plan.get(k) for k in ("insert", "update", "delete")}}
        except Exception as exc:  # noqa: BLE001 - a refused restore is a result
            row = {"dataset": dataset, "error": f"{type(exc).__name__}: {str(exc)[:500]}"}
        finally:
            drop_scratch(soak.services, schema)
        row["flagged_deleted_in_core"] = _flagged_deleted(soak, dataset)
        results.append(row)
        if not row.get("matches_platform"):
            bad.append(dataset)
    return {"status": "failed" if bad or not results else "passed", "datasets": results, "not_matching": bad}


def _flagged_deleted(soak: Soak, dataset: str) -> int | None:
    """Core rows verification flagged deleted in their source: a flag the backups do not carry."""
    with psycopg.connect(soak.services.platform_dsn) as conn:
        has = conn.execute("""SELECT 1 FROM information_schema.columns WHERE table_schema = 'core'
                              AND table_name = %s AND column_name = 'deleted_in_source_at'""", (dataset,)).fetchone()
        if not has:
            return None
        return conn.execute(
            f"SELECT count(*) FROM core.{dataset} WHERE deleted_in_source_at IS NOT NULL").fetchone()[0]  # noqa: S608


def platform_figures(soak: Soak) -> dict:
    with psycopg.connect(soak.services.platform_dsn) as conn:
        core = {}
        for dataset in sorted({d for s in soak.sources for d in s.datasets}):
            core[dataset] = conn.execute(f"SELECT count(*) FROM core.{dataset}").fetchone()[0]  # noqa: S608
        batches = dict(conn.execute("SELECT status, count(*) FROM ops.batches GROUP BY 1").fetchall())
        extracted = conn.execute("SELECT coalesce(sum(extracted), 0) FROM ops.reconciliation").fetchone()[0]
    return {"core_rows": core, "batches_by_status": batches, "records_extracted": int(extracted)}


# -- main -----------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict:
    workdir = args.workdir.resolve()
    if workdir.exists() and any(workdir.iterdir()) and not args.keep:
        import shutil

        shutil.rmtree(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with start_stack(workdir) as stack:
        services = Services(platform_dsn=stack.platform_dsn, s3=stack.s3, smtp=stack.smtp,
                            signing_key=os.environ.get("SAPNHAP_BACKUP_SIGNING_KEY") or stack_signing_key(workdir))
        world = generate_world(workdir / "world", seed=args.seed, size=args.size, pg_dsn=stack.admin_dsn(),
                               db_prefix="soak")
        soak = Soak(args, stack, world, services, Legacy(world), Platform(stack), [get_source(s) for s in args.sources])
        soak.counts["records_generated"] = int(world.ledger["source_id"].isin(args.sources).sum())
        rng = np.random.default_rng(args.seed)
        faults = plan_faults(rng, args.nights, soak.sources, soak.platform) if not args.no_faults else {}
        # Night 1 is the first full load; each kind of legacy change happens at least once after it.
        forced: dict[int, set[str]] = defaultdict(set)
        for i, kind in enumerate(str(k) for k in rng.permutation(["delete", "dup", "backdate"])):
            forced[2 + i % max(1, args.nights - 1)].add(kind)
        # Late enough that the platform loaded changes the restored copy does not hold.
        restore_night = max(3, args.nights // 2 + 1) if args.nights >= 3 else 2
        copy = None
        try:
            for night in range(1, args.nights + 1):
                night_rng = np.random.default_rng([args.seed, night])
                if night > 1:
                    legacy_changes(soak, night, night_rng, forced[night], copy, restore_night)
                if night == 1 and RESTORED_SOURCE in args.sources:
                    copy = soak.legacy.snapshot(RESTORED_SOURCE)
                tonight = faults.get(night, [])
                soak.note(night, "night", faults=[f.__dict__ for f in tonight])
                night_run(soak, night, f"soak-n{night:02d}", tonight)
                if night % 7 == 0 and has_module("sapnhap.verify"):
                    # The weekly verification (sapnhap_verify DAG): differences re-sync on the next night.
                    weekly = verify_all(soak, f"soak-verify-n{night:02d}")
                    soak.counts["weekly_verifications"] += 1
                    soak.note(night, "weekly verification", results=_verify_table(weekly))
                print(f"[soak] night {night}/{args.nights} done ({time.monotonic() - started:.0f}s): faults "
                      f"{[f.kind for f in tonight]}", flush=True)
            # The final clean sync: no legacy change, no fault; pending reports go out.
            night_run(soak, args.nights + 1, "soak-final", [])
            checks = {"verify": check_verify(soak), "reports": check_reports(soak), "restore": check_restore(soak)}
        finally:
            if copy is not None:
                soak.legacy.drop_copy(copy)
            world.drop_databases()
        summary = {
            "command": f"make soak ARGS=\"--nights {args.nights} --seed {args.seed} --size {args.size}"
                       + ("" if args.sources == list(SOURCE_IDS) else f" --sources {' '.join(args.sources)}") + "\"",
            "commit": _commit(), "nights": args.nights, "seed": args.seed, "size": args.size,
            "seconds": round(time.monotonic() - started),
            "counts": dict(soak.counts), "faults_planned": {n: [f.__dict__ for f in fs] for n, fs in faults.items()},
            "source_failures": soak.source_failures, "platform": platform_figures(soak), "checks": checks,
            "events": soak.log,
        }
    summary["outcome"] = "failed" if any(c["status"] == "failed" for c in checks.values()) else "passed"
    (workdir / "soak-summary.json").write_text(json.dumps(summary, indent=2, default=str, ensure_ascii=False))
    return summary


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nights", type=int, default=30)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--size", type=int, default=20, help="rows per legacy dataset of the demo world, roughly")
    parser.add_argument("--workdir", type=Path, default=ROOT / ".sapnhap" / "soak")
    parser.add_argument("--sources", nargs="+", default=list(SOURCE_IDS), choices=SOURCE_IDS,
                        help="legacy systems of the demo world to sync (default: all four)")
    parser.add_argument("--no-faults", action="store_true", help="legacy changes only (a baseline)")
    parser.add_argument("--keep", action="store_true", help="do not empty the workdir first")
    parser.add_argument("--verbose", action="store_true", help="print every event")
    return parser.parse_args(argv)


def _commit() -> str:
    if os.environ.get("SOAK_COMMIT"):
        return os.environ["SOAK_COMMIT"]
    try:
        return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM stops the embedded services and drops the legacy databases like Ctrl-C does.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        summary = run(args)
    except Exception:
        traceback.print_exc()
        return 2
    print("\n[soak] " + summary["command"])
    print(f"[soak] {summary['nights']} nights in {summary['seconds']}s; counts: {json.dumps(summary['counts'])}")
    print(f"[soak] sources failed for a night: {len(summary['source_failures'])}; platform: "
          f"{json.dumps(summary['platform'], default=str)}")
    for name, check in summary["checks"].items():
        print(f"[soak] check {name}: {check['status'].upper()} "
              + json.dumps({k: v for k, v in check.items() if k != "status"}, default=str, ensure_ascii=False)[:3000])
    print(f"[soak] outcome: {summary['outcome']}; details in {args.workdir / 'soak-summary.json'}")
    return 0 if summary["outcome"] == "passed" else 1


if __name__ == "__main__":
    sys.exit(main())
