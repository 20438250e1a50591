"""Province-scale benchmark of the nightly sync, measured against PostgreSQL's own COPY (issue 7).

    make bench ARGS="--quick"                                   # 200k rows, 20 sources, < 3 min
    make bench ARGS="--residents 5000000 --dossiers 5000000 --sources 300"

1. Generates (or reuses) a legacy landscape: ``--sources`` legacy systems spread over
   ``--servers`` legacy PostgreSQL servers (databases on one server; see ``province.py``), one
   YAML file per source in a temp sources directory (``SAPNHAP_SOURCES_DIR``).
2. Full nightly sync on a fresh platform database: ``prepare_run``, then per source the stage
   functions of :mod:`sapnhap.sync` (extract -> transform -> validate -> backup -> load),
   then reconcile + the owners' emails (report). Stages run as jobs on a process pool of
   ``--workers`` (2) processes, the way Airflow runs them as tasks:

   - an extract job holds one slot of its legacy server's pool (``server_pool`` of the source
     file, ``pool_slots`` slots; Airflow: ``@task(pool=source.pool)`` on extract, pools created
     from the registry by ``python -m sapnhap pools``); the other stages touch only the platform
     and the bucket, so they take no legacy-server slot (Airflow's ``default_pool``);
   - the pool of 2 worker processes is Airflow's ``parallelism`` / worker concurrency on this
     2-core machine; ready downstream stages go first, so a source's batch is loaded before
     more sources are extracted and the backlog (and the bucket) stays small.
3. Changes 1% of every source's rows (``--changed``) and runs the incremental sync.
4. Baselines on the same data and server: raw ``COPY`` of the final rows (the loaded core
   rows, the loaded columns) into a fresh table, and the naive pipeline (pandas ``read_sql``,
   per-row Python conversion, ``DataFrame.to_sql``) on a sample, extrapolated per row.

Prints per stage rows/s, task time and peak RSS of the worker processes, the end-to-end wall
time, and the ratios of the issue's targets. ``--profile DIR`` runs every job under cProfile
and prints the top functions per stage (timings are then inflated; use it to explain, not
to measure). PostgreSQL: ``SAPNHAP_BENCH_PG_URL``, else the machine's server on
127.0.0.1:5432 when reachable, else an embedded pgserver.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import json
import multiprocessing as mp
import os
import pstats
import resource
import sys
import tempfile
import threading
import time
from collections import defaultdict
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

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
            "maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "pid": os.getpid()}


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


# --------------------------------------------------------------------------- baselines


def raw_copy(platform_dsn: str, workdir: Path) -> dict:
    """COPY the loaded core rows (the loaded columns) out, then time COPY of them into fresh tables."""
    from sapnhap.datasets import get_dataset
    from sapnhap.load import target_columns

    out = {"rows": 0, "seconds": 0.0, "seconds_indexed": 0.0, "bytes": 0}
    with psycopg.connect(platform_dsn, autocommit=True) as conn:
        for name in ("residents", "dossiers"):
            ds = get_dataset(name)
            cols = sql.SQL(", ").join(sql.Identifier(c) for c in target_columns(ds))
            path = workdir / f"{name}.copy"
            with path.open("wb") as fh, conn.cursor().copy(
                sql.SQL("COPY (SELECT {} FROM core.{}) TO STDOUT").format(cols, sql.Identifier(name))
            ) as copy:
                for block in copy:
                    fh.write(block)
            out["bytes"] += path.stat().st_size
            out["rows"] += conn.execute(sql.SQL("SELECT count(*) FROM core.{}").format(sql.Identifier(name))).fetchone()[0]
            for indexed in (False, True):
                table = sql.Identifier(f"bench_raw_copy_{name}")
                conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))
                # Fresh table, same columns and types; the indexed variant adds the core table's keys.
                like = "INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES" if indexed else "INCLUDING DEFAULTS"
                conn.execute(sql.SQL("CREATE TABLE {} (LIKE core.{} " + like + ")").format(table, sql.Identifier(name)))
                t0 = time.perf_counter()
                with conn.transaction(), conn.cursor().copy(
                    sql.SQL("COPY {} ({}) FROM STDIN").format(table, cols)
                ) as copy, path.open("rb") as fh:
                    for block in iter(lambda fh=fh: fh.read(1 << 20), b""):
                        copy.write(block)
                out["seconds_indexed" if indexed else "seconds"] += time.perf_counter() - t0
                conn.execute(sql.SQL("DROP TABLE {}").format(table))
            path.unlink()
    return out


def naive(legacy_dsn: str, platform_dsn: str, sample: int) -> dict:
    """The naive pipeline on ``sample`` rows of each dataset of one source; seconds per row."""
    import hashlib
    import unicodedata

    import pandas as pd
    from sqlalchemy import create_engine

    from sapnhap.reference import load_reference

    targets = load_reference().old_commune_targets
    crosswalk = {r.old_commune_code: (r.new_commune_code, r.new_province_code) for r in targets.itertuples()}

    def engine_for(dsn: str):  # noqa: ANN202
        params = dict(p.split("=", 1) for p in dsn.replace("'", "").split(" ") if "=" in p and not p.startswith("path="))
        options = dsn.split("options='", 1)[1].rstrip("'") if "options='" in dsn else ""
        url = f"postgresql+psycopg://{params['user']}@{params['host']}:{params['port']}/{params['dbname']}"
        return create_engine(url, connect_args={"options": options} if options else {})

    def text(v: object) -> str | None:
        return None if v is None or (isinstance(v, float) and v != v) else unicodedata.normalize("NFC", str(v)).strip()

    def day(v: object):  # noqa: ANN202
        return None if v is None or v != v else dt.datetime.strptime(str(v)[:10], "%Y-%m-%d").date()

    legacy, platform = engine_for(legacy_dsn), engine_for(platform_dsn)
    t0 = time.perf_counter()
    frame = pd.read_sql(f"SELECT * FROM nhan_khau ORDER BY id_nhan_khau LIMIT {sample}", legacy)
    rows = []
    for _, r in frame.iterrows():
        code = (text(r["ma_xa_thuong_tru"]) or "").zfill(5)
        new = crosswalk.get(code)
        rec = {"citizen_id": text(r["so_dinh_danh"]), "full_name": text(r["ho_ten"]), "birth_date": day(r["ngay_sinh"]),
               "gender": {"Nam": "nam", "Nữ": "nu"}.get(text(r["gioi_tinh"])), "household_code": text(r["ma_ho"]),
               "relation_to_head": text(r["quan_he_chu_ho"]), "old_commune_code": code,
               "address_detail": text(r["dia_chi"]), "registered_date": day(r["ngay_dang_ky"]),
               "updated_at": r["thoi_diem_cap_nhat"], "source_key": str(r["id_nhan_khau"]),
               "new_commune_code": new[0] if new else None, "new_province_code": new[1] if new else None}
        rec["record_hash"] = hashlib.sha1(repr(sorted(rec.items())).encode()).hexdigest()[:16]
        rows.append(rec)
    out = pd.DataFrame(rows)
    out.to_sql("bench_naive_residents", platform, if_exists="replace", index=False)
    seconds = time.perf_counter() - t0
    legacy.dispose()
    platform.dispose()
    return {"rows": len(frame), "seconds": seconds, "per_row": seconds / max(len(frame), 1)}


# --------------------------------------------------------------------------- services


def _pg_admin() -> tuple[dict, object | None]:
    """host/port/user/password of the benchmark's PostgreSQL (and the pgserver to stop, if embedded)."""
    url = os.environ.get("SAPNHAP_BENCH_PG_URL")
    candidates = [url] if url else [MACHINE_PG]
    for candidate in candidates:
        try:
            psycopg.connect(candidate, connect_timeout=3).close()
        except psycopg.OperationalError:
            if url:
                raise
            continue
        p = urlparse(candidate)
        return dict(host=p.hostname, port=p.port or 5432, user=p.username or "postgres", password=p.password), None
    import pgserver

    server = pgserver.get_server(Path(tempfile.gettempdir()) / "sapnhap-bench-pgdata", cleanup_mode="stop")
    p = urlparse(server.get_uri())
    host = dict(x.split("=", 1) for x in p.query.split("&") if "=" in x).get("host")
    return dict(host=host, port=None, user=p.username or "postgres", password=None), server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--residents", type=int, default=5_000_000)
    parser.add_argument("--dossiers", type=int, default=5_000_000)
    parser.add_argument("--sources", type=int, default=300)
    parser.add_argument("--servers", type=int, default=None, help="legacy servers (default: sources / 30, at least 2)")
    parser.add_argument("--pool-slots", type=int, default=1, help="connections each legacy server allows")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--changed", type=float, default=0.01, help="share of rows changed before the incremental run")
    parser.add_argument("--naive-sample", type=int, default=5_000)
    parser.add_argument("--quick", action="store_true", help="100k residents + 100k dossiers over 20 sources")
    parser.add_argument("--regenerate", action="store_true", help="regenerate the legacy landscape even if it exists")
    parser.add_argument("--profile", type=Path, default=None, help="cProfile every job into this folder")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    if args.quick:
        args.residents, args.dossiers, args.sources = 100_000, 100_000, 20
    servers = args.servers or max(2, args.sources // 30)

    import province
    from sapnhap.services import S3Config, Services, SmtpConfig, libpq_dsn
    from sapnhap_dev.embedded import MailSink, free_port

    t_start = time.perf_counter()
    admin, pgserver_handle = _pg_admin()
    workdir = Path(tempfile.mkdtemp(prefix="sapnhap-bench-"))
    stoppers = [pgserver_handle.cleanup] if pgserver_handle else []
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
        with psycopg.connect(libpq_dsn(dbname="postgres", **admin), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(PLATFORM_DB)))
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(PLATFORM_DB)))
        services = Services(
            platform_dsn=libpq_dsn(dbname=PLATFORM_DB, **admin),
            s3=S3Config(endpoint_url=f"http://127.0.0.1:{s3_port}", access_key="bench", secret_key="bench"),
            smtp=SmtpConfig(host="127.0.0.1", port=smtp_port),
        )
        from sapnhap.platform import ensure_platform

        ensure_platform(services.platform_dsn)  # `python -m sapnhap migrate`: the nightly does no DDL

        t0 = time.perf_counter()
        plan = province.plan(args.residents, args.dossiers, args.sources, servers)
        land = province.build(admin, plan, workdir / "sources", reuse=not args.regenerate)
        gen_seconds = time.perf_counter() - t0
        print(f"[bench] {len(plan)} sources on {servers} legacy servers, {args.residents:,} residents + "
              f"{args.dossiers:,} dossiers; landscape ready in {gen_seconds:.1f} s; PostgreSQL {admin['host']}:{admin['port']}")
        os.environ["SAPNHAP_SOURCES_DIR"] = str(land.sources_dir)
        from sapnhap.sources import load_sources

        sources = load_sources(land.sources_dir)
        slots = {s.pool: s.pool_slots * args.pool_slots for s in sources}
        if args.profile:
            args.profile.mkdir(parents=True, exist_ok=True)
        pool = ProcessPoolExecutor(
            args.workers, mp_context=mp.get_context("spawn"), initializer=_init_worker,
            initargs=(str(land.sources_dir), services, land.connections, str(args.profile) if args.profile else None),
        )
        with pool:
            list(pool.map(time.sleep, [0.5] * args.workers))  # workers started and warm before the clock runs
            full = run_sync(pool, args.workers, sources, services, "full", slots)
            print_sync(full, args.workers)
            copy = raw_copy(services.platform_dsn, workdir)
            changed = province.mutate(admin, plan, args.changed)
            incr = run_sync(pool, args.workers, sources, services, "incremental", slots)
            print_sync(incr, args.workers)
        first = next(iter(land.connections.values()))
        nv = naive(first, services.platform_dsn, args.naive_sample)
    finally:
        for stop in reversed(stoppers):
            stop()

    naive_total = nv["per_row"] * full.extracted
    ratios = {
        "end_to_end_over_raw_copy": full.wall / copy["seconds"],
        "incremental_over_full": incr.wall / full.wall,
        "naive_over_ours": naive_total / full.wall,
    }
    print(f"\n== raw COPY of the {copy['rows']:,} loaded rows ({copy['bytes'] / 2**20:,.0f} MiB text) into a fresh table: "
          f"{copy['seconds']:.1f} s ({copy['rows'] / copy['seconds']:,.0f} rows/s); with the core table's keys "
          f"and indexes: {copy['seconds_indexed']:.1f} s")
    print(f"== naive pipeline (read_sql + per-row Python + to_sql): {nv['rows']:,} rows in {nv['seconds']:.1f} s "
          f"= {1 / nv['per_row']:,.0f} rows/s, extrapolated to {full.extracted:,} rows: {naive_total:,.0f} s")
    print(f"== incremental: {changed:,} legacy rows changed ({args.changed:.0%})")
    print("\n== ratios (targets: <= 4, <= 0.10, >= 30)")
    print(f"   end-to-end full sync / raw COPY : {ratios['end_to_end_over_raw_copy']:6.1f}  "
          f"({full.wall:,.1f} s / {copy['seconds']:,.1f} s)")
    print(f"   incremental / full              : {ratios['incremental_over_full']:6.2f}  "
          f"({incr.wall:,.1f} s / {full.wall:,.1f} s)")
    print(f"   naive / ours                    : {ratios['naive_over_ours']:6.1f}  ({naive_total:,.0f} s / {full.wall:,.1f} s)")
    print(f"   peak worker RSS                 : {max(full.worker_maxrss, incr.worker_maxrss) / 2**20:,.0f} MiB "
          f"(target < 2048); bench process (holds the in-memory S3) "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB")
    print(f"[bench] total {time.perf_counter() - t_start:,.0f} s")
    if args.profile:
        for stage in STAGES:
            files = sorted(str(p) for p in args.profile.glob(f"full-{stage}-*.prof"))
            if files:
                print(f"\n== profile of the full sync's {stage} stage (cumulative, top 25)")
                pstats.Stats(*files).sort_stats("cumulative").print_stats(25)
    if args.json:
        def stages(res: SyncResult) -> dict:
            return {k: v.__dict__ for k, v in res.stages.items()}

        args.json.write_text(json.dumps({
            "args": {k: str(v) for k, v in vars(args).items()}, "servers": servers,
            "full": {"wall": full.wall, "stages": stages(full), "worker_maxrss": full.worker_maxrss},
            "incremental": {"wall": incr.wall, "stages": stages(incr), "worker_maxrss": incr.worker_maxrss,
                            "changed": changed},
            "raw_copy": copy, "naive": nv, "ratios": ratios,
        }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
