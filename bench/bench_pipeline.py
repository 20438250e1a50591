"""The benchmark of issue 12: what users run, beside what they could run instead, in ONE run.

    make bench                          # default: 5M residents + 5M dossiers over 300 legacy sources
    make bench ARGS="--size mid"        # 200k + 200k over 6 sources: ~10 min on the 2-core machine (11 at load 4)
    make bench ARGS="--quick"           # 20k + 20k over 4 sources: a CI-like check of the whole harness

1. Generates (or reuses) a legacy landscape: ``--sources`` legacy systems (one schema and one
   login each) spread over ``--servers`` legacy PostgreSQL servers (databases on one server;
   see ``province.py``), one YAML file per source in a temp sources directory.
2. Full sync of the same sources by every method (``--methods``), each into a target of its own:

   - ``raw``: COPY out of the sources streamed into COPY into the platform server (the floor);
   - ``dlt``: dlt's ``sql_database`` source, pyarrow backend, incremental cursor, ``merge`` on
     the same keys (``baselines.py``);
   - ``naive``: pandas ``read_sql``, per-row Python, ``to_sql`` (``baselines.py``);
   - ``inprocess``: sapnhap's stage functions as jobs on a pool of ``--workers`` processes
     (one legacy-server slot per extract, downstream stages first), no Airflow;
   - ``airflow``: sapnhap's nightly DAG triggered on a running Airflow (scheduler, DAG
     processor, API server, LocalExecutor with parallelism ``--workers``, PostgreSQL metadata
     DB; ``airflow_stack.py``, with the product's settings of ``sapnhap.preload``): every task
     instance is its own process, forked warm by an executor worker, as in production.

3. Changes ``--changed`` (1%) of every source's rows, then the incremental sync of every method.
4. Prints one table: full and incremental seconds, the ratios against dlt and raw COPY, rows
   read, the peak RSS per worker (the RSS high-water mark of a worker process; under Airflow of
   any process under the executor), then where each target of issue 12's "Done when" stands,
   and the machine's load average during the run (the figures depend on it).

All methods run on ``--workers`` (2) processes. ``--profile DIR`` runs every in-process job under
cProfile and prints the top functions per stage (timings are then inflated; use it to explain,
not to measure). PostgreSQL: ``SAPNHAP_BENCH_PG_URL``, else the machine's server on
127.0.0.1:5432 when reachable, else an embedded pgserver. ``--json FILE`` writes every figure.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import json
import multiprocessing as mp
import os
import pstats
import sys
import tempfile
import threading
import time
from collections import defaultdict
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "include"))
sys.path.insert(0, str(HERE))
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")

import psycopg  # noqa: E402
from psycopg import sql  # noqa: E402

STAGES = ["extract", "transform", "validate", "backup", "load", "report"]
MACHINE_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
PLATFORM_DB = "sapnhap_bench_platform"


# --------------------------------------------------------------------------- worker side

_peak = {"rss": 0}
_ctx: dict = {}


def _sample_rss() -> None:
    import psutil

    proc = psutil.Process()
    while True:
        rss = proc.memory_info().rss
        if rss > _peak["rss"]:
            _peak["rss"] = rss
        time.sleep(0.02)


def _init_worker(sources_dir: str, services, connections: dict[str, str], profile_dir: str | None) -> None:  # noqa: ANN001
    os.environ["SAPNHAP_SOURCES_DIR"] = sources_dir
    os.environ["GX_ANALYTICS_ENABLED"] = "False"
    import logging

    logging.basicConfig(level=logging.WARNING)
    _ctx.update(services=services, connections=connections, profile_dir=profile_dir)
    # Warm the imports and reference caches once per worker, as a long-lived Airflow worker would.
    from sapnhap import sync  # noqa: F401
    from sapnhap.quality import validate_batch  # noqa: F401
    from sapnhap.reference import load_reference, load_split_rules

    load_reference()
    load_split_rules()
    threading.Thread(target=_sample_rss, daemon=True).start()


def _stage_call(stage: str, source_id: str, payload, run: dict):  # noqa: ANN001, ANN202
    from sapnhap import sync
    from sapnhap.sources import get_source, load_sources

    services = _ctx["services"]
    if stage == "report":
        from sapnhap.reports import send_run_reports

        sources = load_sources()
        expected = [(s.id, d) for s in sources for d in s.datasets]
        frame = sync.reconcile_run(services, run["run_id"], expected)
        sent = send_run_reports(services, run["run_id"], sources)
        return {"reconciled": len(frame), "emails": len(sent["sent"])}, int(frame["extracted"].sum())
    src = get_source(source_id)
    if stage == "extract":
        conn = _ctx["connections"][src.conn_id]
        out = [sync.extract_stage(services, src, d, conn, run_id=run["run_id"], run_date=run["run_date"])
               for d in src.datasets]
        return out, sum(b["rows"] for b in out)
    fn = {"transform": sync.transform_stage, "validate": sync.validate_stage,
          "backup": sync.backup_stage, "load": sync.load_stage}[stage]
    rows_key = {"transform": "rows", "validate": "transformed_rows", "backup": "transformed_rows", "load": "valid_rows"}
    rows = sum(b[rows_key[stage]] for b in payload)
    return [fn(services, src, b) for b in payload], rows


def _maxrss() -> int:
    from baselines import _maxrss as hwm

    return hwm()


def run_job(stage: str, source_id: str, payload, run: dict) -> dict:  # noqa: ANN001
    """Run one stage of one source (all its datasets) in this worker; time it and its peak RSS."""
    import psutil

    _peak["rss"] = psutil.Process().memory_info().rss
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    profiler = cProfile.Profile() if _ctx["profile_dir"] else None
    if profiler:
        profiler.enable()
    out, rows = _stage_call(stage, source_id, payload, run)
    if profiler:
        profiler.disable()
        profiler.dump_stats(Path(_ctx["profile_dir"]) / f"{run['label']}-{stage}-{source_id}.prof")
    wall = time.perf_counter() - t0
    rss = max(_peak["rss"], psutil.Process().memory_info().rss)
    return {"stage": stage, "source_id": source_id, "out": out, "rows": rows, "wall": wall,
            "cpu": time.process_time() - cpu0, "peak_rss": rss,
            "maxrss": _maxrss(), "pid": os.getpid()}


# --------------------------------------------------------------------------- parent side


@dataclass
class StageStats:
    rows: int = 0
    task_seconds: float = 0.0
    cpu_seconds: float = 0.0
    jobs: int = 0
    peak_rss: int = 0


@dataclass
class SyncResult:
    label: str
    wall: float
    stages: dict[str, StageStats] = field(default_factory=lambda: {s: StageStats() for s in STAGES})
    loads: list[dict] = field(default_factory=list)
    worker_maxrss: int = 0

    @property
    def extracted(self) -> int:
        return self.stages["extract"].rows


def run_sync(pool: ProcessPoolExecutor, workers: int, sources, services, label: str, slots: dict[str, int]) -> SyncResult:  # noqa: ANN001
    """One nightly run: prepare, every source through the stages, then reconcile + report."""
    from sapnhap.sync.prepare import prepare_run

    run = {"run_id": f"bench_{label}_{dt.datetime.now():%Y%m%dT%H%M%S}", "run_date": dt.date.today().isoformat(),
           "label": label}
    t0 = time.perf_counter()
    prepare_run(services, run["run_id"])
    result = SyncResult(label, 0.0)
    waiting = list(sources)  # sources not yet extracted, in registry order
    ready: list[tuple[str, str, object]] = []  # downstream jobs whose input is stored
    busy: dict[str, int] = defaultdict(int)  # legacy server pool -> slots in use
    running: dict[Future, tuple[str, str, str | None]] = {}
    nxt = {"extract": "transform", "transform": "validate", "validate": "backup", "backup": "load"}

    def submit_next() -> bool:
        if ready:
            stage, sid, payload = ready.pop(0)
            running[pool.submit(run_job, stage, sid, payload, run)] = (stage, sid, None)
            return True
        for i, src in enumerate(waiting):
            if busy[src.pool] < slots.get(src.pool, 1):
                busy[src.pool] += 1
                waiting.pop(i)
                running[pool.submit(run_job, "extract", src.id, None, run)] = ("extract", src.id, src.pool)
                return True
        return False

    def collect(fut: Future) -> dict:
        stage, sid, held = running.pop(fut)
        if held:
            busy[held] -= 1
        job = fut.result()  # a failing stage fails the benchmark: the figures would be meaningless
        st = result.stages[stage]
        st.rows += job["rows"]
        st.task_seconds += job["wall"]
        st.cpu_seconds += job["cpu"]
        st.jobs += 1
        st.peak_rss = max(st.peak_rss, job["peak_rss"])
        result.worker_maxrss = max(result.worker_maxrss, job["maxrss"])
        return job

    while waiting or ready or running:
        while len(running) < workers and submit_next():
            pass
        done, _ = wait(list(running), return_when=FIRST_COMPLETED)
        for fut in done:
            stage, sid, _ = running[fut]
            job = collect(fut)
            if stage in nxt:
                ready.append((nxt[stage], sid, job["out"]))
            else:
                result.loads.extend(job["out"])
    fut = pool.submit(run_job, "report", "-", None, run)
    running[fut] = ("report", "-", None)
    collect(fut)
    result.wall = time.perf_counter() - t0
    return result


def print_sync(res: SyncResult, workers: int) -> None:
    print(f"\n== {res.label} sync: {res.extracted:,} rows extracted, end-to-end wall {res.wall:,.1f} s "
          f"({res.extracted / res.wall:,.0f} rows/s on {workers} workers), worker max RSS {res.worker_maxrss / 2**20:,.0f} MiB")
    print(f"{'stage':<10}{'rows':>12}{'task s':>10}{'cpu s':>9}{'rows/s/worker':>15}{'share':>8}{'peak RSS MiB':>14}{'jobs':>6}")
    total = sum(s.task_seconds for s in res.stages.values()) or 1.0
    for name, s in res.stages.items():
        rate = s.rows / s.task_seconds if s.task_seconds else 0.0
        print(f"{name:<10}{s.rows:>12,}{s.task_seconds:>10.1f}{s.cpu_seconds:>9.1f}{rate:>15,.0f}"
              f"{s.task_seconds / total:>8.0%}{s.peak_rss / 2**20:>14,.0f}{s.jobs:>6}")
    counts = defaultdict(int)
    for load in res.loads:
        for k in ("inserted", "updated", "unchanged", "quarantined", "merged_in_batch", "merged_cross_source"):
            counts[k] += load.get(k, 0)
    print("   load outcome: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))


# --------------------------------------------------------------------------- the methods

METHODS = ("raw", "dlt", "naive", "inprocess", "airflow")
LABELS = {"raw": "raw COPY out + COPY in", "dlt": "dlt (sql_database, pyarrow, merge)",
          "naive": "naive (read_sql, per-row, to_sql)", "inprocess": "sapnhap in-process (2 workers)",
          "airflow": "sapnhap nightly DAG, scheduler + LocalExecutor"}
SIZES = {  # residents, dossiers, sources
    "default": (5_000_000, 5_000_000, 300),
    "mid": (200_000, 200_000, 6),
    "quick": (20_000, 20_000, 4),
    "tiny": (300, 300, 1),
}


def _pg_admin() -> tuple[dict, object | None]:
    """host/port/user/password of the benchmark's PostgreSQL (and the pgserver to stop, if embedded)."""
    from psycopg.conninfo import conninfo_to_dict

    url = os.environ.get("SAPNHAP_BENCH_PG_URL")
    candidate = url or MACHINE_PG
    try:
        psycopg.connect(candidate, connect_timeout=3).close()
    except psycopg.OperationalError:
        if url:
            raise
        import pgserver

        server = pgserver.get_server(Path(tempfile.gettempdir()) / "sapnhap-bench-pgdata", cleanup_mode="stop")
        candidate = server.get_uri()
    else:
        server = None
    p = conninfo_to_dict(candidate)
    port = int(p["port"]) if p.get("port") else None
    return dict(host=p.get("host"), port=port, user=p.get("user") or "postgres", password=p.get("password")), server


def _fresh_db(admin: dict, name: str) -> str:
    from sapnhap.services import libpq_dsn

    with psycopg.connect(libpq_dsn(dbname="postgres", **admin), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return libpq_dsn(dbname=name, **admin)


def _sapnhap_counts(platform_dsn: str, run_id: str | None = None) -> dict:
    """Rows the platform holds (core), and the records quarantined or merged instead; extracted by a run."""
    with psycopg.connect(platform_dsn) as conn:
        core = conn.execute("SELECT (SELECT count(*) FROM core.residents) + (SELECT count(*) FROM core.dossiers)").fetchone()[0]
        quarantined = conn.execute(
            # NOT EXISTS, not NOT IN: a NOT IN subplan larger than work_mem is scanned once per row
            # (48 s at 400k rows, after every run).
            "SELECT count(*) FROM (SELECT DISTINCT source_id, dataset, source_key FROM ops.quarantine q "
            "WHERE status = 'open' AND severity = 'block' AND NOT EXISTS "
            "(SELECT 1 FROM core.residents c WHERE q.dataset = 'residents' AND c.source_id = q.source_id "
            "AND c.source_key = q.source_key) AND NOT EXISTS "
            "(SELECT 1 FROM core.dossiers c WHERE q.dataset = 'dossiers' AND c.source_id = q.source_id "
            "AND c.source_key = q.source_key)) q").fetchone()[0]
        merged = conn.execute("SELECT count(*) FROM (SELECT DISTINCT source_id, dataset, source_key "
                              "FROM ops.merged_duplicates) m").fetchone()[0]
        extracted = None
        if run_id:
            extracted = conn.execute("SELECT coalesce(sum(extracted), 0) FROM ops.reconciliation WHERE run_id = %s",
                                     (run_id,)).fetchone()[0]
    return {"core": core, "quarantined": quarantined, "merged": merged, "extracted": extracted}


class Bench:
    """Everything one `make bench` run needs: the landscape, the services, a target per method."""

    def __init__(self, args: argparse.Namespace, admin: dict, land, workdir: Path, s3_endpoint: str, smtp) -> None:  # noqa: ANN001
        from sapnhap.services import S3Config, Services

        self.args, self.admin, self.land, self.workdir = args, admin, land, workdir
        prefix = args.db_prefix
        self.legacy = {s.source_id: land.connections[f"legacy_{s.source_id}"] for s in land.sources}
        self.schemas = {s.source_id: s.schema for s in land.sources}
        self.baseline_dsn = _fresh_db(admin, f"{prefix}_baselines")
        self.dlt_dsn = _fresh_db(admin, f"{prefix}_dlt")
        s3 = dict(endpoint_url=s3_endpoint, access_key="bench", secret_key="bench")
        from sapnhap_dev.embedded import stack_signing_key

        key = os.environ.get("SAPNHAP_BACKUP_SIGNING_KEY") or stack_signing_key(workdir)  # what Airflow's tasks use too
        self.services = {
            "inprocess": Services(platform_dsn=_fresh_db(admin, f"{prefix}_platform"),
                                  s3=S3Config(bucket="bench-inprocess", **s3), smtp=smtp, signing_key=key),
            "airflow": Services(platform_dsn=_fresh_db(admin, f"{prefix}_platform_af"),
                                s3=S3Config(bucket="bench-airflow", **s3), smtp=smtp, signing_key=key),
        }
        from sapnhap.platform import ensure_platform

        for services in self.services.values():
            ensure_platform(services.platform_dsn)  # `python -m sapnhap migrate`: the nightly does no DDL
        self.cursors: dict[str, dict] = {}
        self.pool: ProcessPoolExecutor | None = None
        self.airflow = None

    # ---------------------------------------------------------------- lifecycle

    def start(self, methods: list[str]) -> None:
        if "inprocess" in methods:
            self.pool = ProcessPoolExecutor(
                self.args.workers, mp_context=mp.get_context("spawn"), initializer=_init_worker,
                initargs=(str(self.land.sources_dir), self.services["inprocess"], self.land.connections,
                          str(self.args.profile) if self.args.profile else None),
            )
            list(self.pool.map(time.sleep, [0.5] * self.args.workers))  # workers started and warm
        if "airflow" in methods:
            self.airflow = self._airflow_stack()
            t0 = time.perf_counter()
            self.airflow.start(pools=self._pools())
            print(f"[bench] Airflow (scheduler, dag-processor, api-server, LocalExecutor parallelism "
                  f"{self.args.workers}) up and the nightly parsed in {time.perf_counter() - t0:.0f} s; "
                  f"logs in {self.airflow.home}")

    def stop(self) -> None:
        if self.pool:
            self.pool.shutdown()
        if self.airflow:
            self.airflow.stop()

    def _pools(self) -> dict:
        from sapnhap.runner import pools_of
        from sapnhap.sources import load_sources

        return pools_of(load_sources(self.land.sources_dir))

    def _airflow_stack(self):  # noqa: ANN202
        from airflow_stack import AirflowStack
        from sapnhap_dev.embedded import Stack, airflow_env

        services = self.services["airflow"]
        a = self.admin
        platform = {"host": a["host"], "port": a["port"], "login": a["user"], "password": a["password"],
                    "schema": f"{self.args.db_prefix}_platform_af"}
        stack = Stack(self.workdir, platform, services.s3, services.smtp, None)
        connections = {}
        for s in self.land.sources:
            user, password = self.land.logins[s.source_id]
            connections[f"legacy_{s.source_id}"] = json.dumps({
                "conn_type": "postgres", "host": a["host"], "port": a["port"], "login": user, "password": password,
                "schema": s.server})
        env = airflow_env(stack, connections, sources_dir=self.land.sources_dir)
        metadata = _fresh_db(self.admin, f"{self.args.db_prefix}_airflow")
        return AirflowStack.create(self.workdir / "airflow", env, metadata, executor="LocalExecutor",
                                   parallelism=self.args.workers, sources_dir=self.land.sources_dir)

    # ---------------------------------------------------------------- one sync of one method

    def run(self, method: str, label: str):  # noqa: ANN201
        import baselines

        since = self.cursors.get(method) if label == "incremental" else None
        if method == "raw":
            run = baselines.raw_copy(self.legacy, self.baseline_dsn, self.args.workers, label, since)
            self.cursors[method] = run.notes.pop("cursors")
        elif method == "naive":
            run = baselines.naive_sync(self.legacy, self.baseline_dsn, self.args.workers, label, since)
            self.cursors[method] = run.notes.pop("cursors")
        elif method == "dlt":
            legacy = {sid: (dsn, self.schemas[sid]) for sid, dsn in self.legacy.items()}
            run = baselines.dlt_sync(legacy, self.dlt_dsn, self.args.workers, label, str(self.workdir / "dlt"))
        elif method == "inprocess":
            from sapnhap.sources import load_sources

            sources = load_sources(self.land.sources_dir)
            slots = {s.pool: s.pool_slots * self.args.pool_slots for s in sources}
            res = run_sync(self.pool, self.args.workers, sources, self.services["inprocess"], label, slots)
            if self.args.verbose:
                print_sync(res, self.args.workers)
            counts = _sapnhap_counts(self.services["inprocess"].platform_dsn)
            run = baselines.MethodRun(LABELS[method], label, res.wall, res.extracted, counts["core"],
                                      res.worker_maxrss, {**counts, "stages": {k: v.__dict__ for k, v in res.stages.items()}})
        elif method == "airflow":
            run_id = f"bench_{label}_{dt.datetime.now():%Y%m%dT%H%M%S}"
            res = self.airflow.run_nightly(run_id)
            if res.state != "success":
                raise RuntimeError(f"the nightly run {run_id} under the scheduler {res.state}: failed tasks "
                                   f"{self.airflow.failed_tasks(run_id)}\n{self.airflow.task_log_tail()}")
            counts = _sapnhap_counts(self.services["airflow"].platform_dsn, run_id)
            run = baselines.MethodRun(LABELS[method], label, res.seconds, int(counts["extracted"]), counts["core"],
                                      res.peak_task_rss, {**counts, "task_instances": res.task_instances,
                                                          "wall_from_trigger": res.wall, "tasks": res.tasks})
            # Where the time of a run under the scheduler goes.
            print(f"   {label} run under the scheduler: {res.task_instances} task instances; per kind: instances, "
                  "seconds run (sum), mean seconds queued -> started")
            for kind, k in res.tasks.items():
                print(f"     {kind:<22}{k['instances']:>5}{k['seconds']:>9.1f} s{k['queued_to_start']:>8.1f} s")
        else:
            raise ValueError(method)
        run.method = LABELS[method]
        return run


IMPORT_PROBES = ("airflow.sdk", "pandas", "pyarrow", "great_expectations", "sapnhap.quality")


def import_probe() -> dict[str, float]:
    """Seconds a fresh Python process takes to import what a task instance imports (at this moment's load)."""
    import subprocess

    out = {}
    for module in IMPORT_PROBES:
        code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False,
                              env={**os.environ, "PYTHONPATH": str(HERE.parent / "include")})
        out[module] = float(proc.stdout.strip() or "nan")
    return out


def print_table(results: dict, methods: list[str], changed: int) -> dict:
    """The comparison table, and where each target of issue 12's "Done when" stands."""
    def get(m: str, label: str):  # noqa: ANN202
        return results.get((m, label))

    def ratio(a, b) -> str:  # noqa: ANN001
        return f"{a.wall / b.wall:8.1f}x" if a and b and b.wall else f"{'-':>9}"

    print(f"\n== one run, same legacy sources; incremental = {changed:,} legacy rows changed")
    head = (f"{'method':<47}{'full s':>9}{'incr s':>9}{'incr/full':>10}{'full/dlt':>9}{'full/COPY':>10}"
            f"{'incr/dlt':>9}{'incr/COPY':>10}{'rows full':>11}{'rows incr':>11}{'peak RSS/worker':>17}")
    print(head)
    print("-" * len(head))
    for m in methods:
        full, incr = get(m, "full"), get(m, "incremental")
        if not full:
            continue
        peak = max(full.worker_peak_rss, incr.worker_peak_rss if incr else 0)
        print(f"{LABELS[m]:<47}{full.wall:9.1f}{incr.wall if incr else float('nan'):9.1f}"
              f"{(incr.wall / full.wall if incr else float('nan')):10.2f}"
              f"{ratio(full, get('dlt', 'full'))}{ratio(full, get('raw', 'full')):>10}"
              f"{ratio(incr, get('dlt', 'incremental'))}{ratio(incr, get('raw', 'incremental')):>10}"
              f"{full.rows_in:>11,}{incr.rows_in if incr else 0:>11,}{peak / 2**20:>13,.0f} MiB")
    checks = {}
    dlt_f, dlt_i, raw_f, naive_f = get("dlt", "full"), get("dlt", "incremental"), get("raw", "full"), get("naive", "full")
    for m in ("airflow", "inprocess"):
        full, incr = get(m, "full"), get(m, "incremental")
        if not full or not incr:
            continue
        peak = max(full.worker_peak_rss, incr.worker_peak_rss)
        rows = [("full <= 2x dlt's full", full.wall / dlt_f.wall if dlt_f else None, 2.0, "<="),
                ("full <= 10x raw COPY", full.wall / raw_f.wall if raw_f else None, 10.0, "<="),
                ("incremental <= 10% of full", incr.wall / full.wall, 0.10, "<="),
                ("incremental <= 3x dlt's incremental", incr.wall / dlt_i.wall if dlt_i else None, 3.0, "<="),
                (">= 10x the naive pipeline (naive full / full)", naive_f.wall / full.wall if naive_f else None, 10.0, ">="),
                ("peak memory per worker < 1 GB (GiB)", peak / 2**30, 1.0, "<")]
        print(f"\n== issue 12 targets, {LABELS[m]}")
        checks[m] = {}
        for name, value, target, op in rows:
            if value is None:
                print(f"   {name:<48} not measured")
                continue
            met = value <= target if op == "<=" else value >= target if op == ">=" else value < target
            checks[m][name] = {"value": value, "target": target, "met": met}
            print(f"   {name:<48} {value:8.2f}  (target {op} {target:g})  {'met' if met else 'MISSED'}")
    return checks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default="default",
                        help="default: 5M + 5M rows over 300 sources; mid: 200k + 200k over 6 (~10 min); "
                             "quick: 20k + 20k over 4 (CI-like); tiny: 300 + 300 from 1 source (the harness test)")
    parser.add_argument("--quick", action="store_true", help="same as --size quick")
    parser.add_argument("--residents", type=int, default=None)
    parser.add_argument("--dossiers", type=int, default=None)
    parser.add_argument("--sources", type=int, default=None)
    parser.add_argument("--servers", type=int, default=None, help="legacy servers (default: sources / 30, at least 2)")
    parser.add_argument("--pool-slots", type=int, default=1, help="connections each legacy server allows")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--changed", type=float, default=0.01, help="share of rows changed before the incremental run")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated, of {', '.join(METHODS)}")
    parser.add_argument("--db-prefix", default="sapnhap_bench", help="databases <prefix>_* on the benchmark's server")
    parser.add_argument("--regenerate", action="store_true", help="regenerate the legacy landscape even if it exists")
    parser.add_argument("--keep", action="store_true", help="keep the targets' databases (default: dropped at the end)")
    parser.add_argument("--verbose", action="store_true", help="also print sapnhap's per-stage table")
    parser.add_argument("--profile", type=Path, default=None, help="cProfile every in-process job into this folder")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    size = SIZES["quick" if args.quick else args.size]
    args.residents = args.residents or size[0]
    args.dossiers = args.dossiers or size[1]
    args.sources = args.sources or size[2]
    servers = args.servers or max(2, args.sources // 30)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = set(methods) - set(METHODS)
    if unknown:
        parser.error(f"unknown methods: {', '.join(sorted(unknown))}")

    import province
    from sapnhap.services import SmtpConfig
    from sapnhap_dev.embedded import MailSink, free_port

    t_start = time.perf_counter()
    admin, pgserver_handle = _pg_admin()
    workdir = Path(tempfile.mkdtemp(prefix="sapnhap-bench-"))
    stoppers = [pgserver_handle.cleanup] if pgserver_handle else []
    results: dict = {}
    bench = None
    load = []
    sampling = {"on": True}

    def sample_load() -> None:
        while sampling["on"]:
            load.append(os.getloadavg()[0])
            time.sleep(5)

    threading.Thread(target=sample_load, daemon=True).start()
    try:
        from aiosmtpd.controller import Controller
        from moto.server import ThreadedMotoServer

        s3_port, smtp_port = free_port(), free_port()
        import logging

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access-log line per S3 request otherwise
        moto = ThreadedMotoServer(ip_address="127.0.0.1", port=s3_port, verbose=False)
        moto.start()
        stoppers.append(moto.stop)
        mail = Controller(MailSink(workdir / "mail"), hostname="127.0.0.1", port=smtp_port)
        mail.start()
        stoppers.append(mail.stop)

        t0 = time.perf_counter()
        plan = province.plan(args.residents, args.dossiers, args.sources, servers, prefix=args.db_prefix)
        land = province.build(admin, plan, workdir / "sources", reuse=not args.regenerate)
        print(f"[bench] {len(plan)} sources on {servers} legacy servers, {args.residents:,} residents + "
              f"{args.dossiers:,} dossiers; landscape ready in {time.perf_counter() - t0:.1f} s; "
              f"PostgreSQL {admin['host']}:{admin['port']}; methods: {', '.join(methods)}; workers {args.workers}")
        os.environ["SAPNHAP_SOURCES_DIR"] = str(land.sources_dir)
        bench = Bench(args, admin, land, workdir, f"http://127.0.0.1:{s3_port}",
                      SmtpConfig(host="127.0.0.1", port=smtp_port, from_addr="bench@example.org"))
        if args.profile:
            args.profile.mkdir(parents=True, exist_ok=True)
        bench.start(methods)
        changed = 0
        for label in ("full", "incremental"):
            if label == "incremental":
                changed = province.mutate(admin, plan, args.changed)
            for m in methods:
                run = bench.run(m, label)
                results[m, label] = run
                print(f"[bench] {label:<11} {LABELS[m]:<47} {run.wall:8.1f} s  {run.rows_in:>10,} rows read, "
                      f"target holds {run.rows_out:,}; peak RSS/worker {run.worker_peak_rss / 2**20:,.0f} MiB", flush=True)
    finally:
        sampling["on"] = False
        if bench:
            bench.stop()
        for stop in reversed(stoppers):
            stop()
    checks = print_table(results, methods, changed)
    imports = import_probe() if "airflow" in methods else {}
    if imports:
        print("\n== import time in a fresh process (each task instance under LocalExecutor/Celery pays what it imports): "
              + ", ".join(f"{m} {t:.1f} s" for m, t in imports.items()))
    loadavg = sum(load) / len(load) if load else 0.0
    print(f"\n[bench] machine load average during the run: mean {loadavg:.1f}, max {max(load, default=0):.1f} "
          f"({os.cpu_count()} cores); total {time.perf_counter() - t_start:,.0f} s")
    if args.profile:
        for stage in STAGES:
            files = sorted(str(p) for p in args.profile.glob(f"full-{stage}-*.prof"))
            if files:
                print(f"\n== profile of the in-process full sync's {stage} stage (cumulative, top 25)")
                pstats.Stats(*files).sort_stats("cumulative").print_stats(25)
    if args.json:
        args.json.write_text(json.dumps({
            "args": {k: str(v) for k, v in vars(args).items()}, "servers": servers, "changed": changed,
            "generated_rows": args.residents + args.dossiers,
            "runs": {f"{m}/{label}": run.__dict__ for (m, label), run in results.items()},
            "targets": checks, "load_average": {"mean": loadavg, "max": max(load, default=0)}, "imports": imports,
        }, indent=2, default=str))
    if not args.keep:
        with psycopg.connect(_fresh_dsn(admin), autocommit=True) as conn:
            for name in ("baselines", "dlt", "platform", "platform_af", "airflow"):
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(f"{args.db_prefix}_{name}")))
    return 0


def _fresh_dsn(admin: dict) -> str:
    from sapnhap.services import libpq_dsn

    return libpq_dsn(dbname="postgres", **admin)


if __name__ == "__main__":
    sys.exit(main())
