"""Peak memory of one worker syncing ONE legacy table, from 200k to 5M rows (issue 12: "flat memory").

    .venv/bin/python bench/bench_memory.py                       # 200k, 1M, 5M residents in one source
    .venv/bin/python bench/bench_memory.py --sizes 200000 1000000 --one-frame   # the same as one chunk

For each size, one generated legacy PostgreSQL system (``province.py``: one schema, ``nhan_khau``,
generated inside the server) holds that many residents; a fresh platform database and a bucket
on a moto S3 server take them. A fresh worker process (spawned, so nothing of the bench process
counts) runs the in-process stages of ``sapnhap.sync`` on the one (source, residents) batch:
prepare, extract, transform, validate, backup, load, reconcile. It reports, per stage, the wall
time and the peak RSS of the stage (``VmHWM`` read from ``/proc/self/status``, reset before each
stage by writing ``5`` to ``/proc/self/clear_refs``), and the worker's peak over the whole batch.

``--chunk-rows`` sets ``SAPNHAP_CHUNK_ROWS`` (default: the product's default); ``--one-frame``
makes the batch one chunk whatever its size (the path every batch took before streaming).
PostgreSQL: ``SAPNHAP_BENCH_PG_URL``, else the machine's server on 127.0.0.1:5432 when reachable,
else an embedded pgserver (as ``bench_pipeline.py``). Memory is measured here, never asserted in
a test. The bench process itself (moto's in-memory bucket) is not a worker and is not reported.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "include"))
sys.path.insert(0, str(HERE))
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")

STAGES = ["extract", "transform", "validate", "backup", "load", "reconcile"]


def _hwm() -> int:
    """This process's RSS high-water mark in bytes (``VmHWM``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _reset_hwm() -> bool:
    """Reset the high-water mark to the current RSS (Linux >= 4.0); False when not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def worker(sources_dir: str, services, connection: str, source_id: str, chunk_rows: str | None, out) -> None:  # noqa: ANN001
    """One batch of one source through every stage, in this (fresh) process; results sent on ``out``."""
    os.environ["SAPNHAP_SOURCES_DIR"] = sources_dir
    os.environ["GX_ANALYTICS_ENABLED"] = "False"
    if chunk_rows:
        os.environ["SAPNHAP_CHUNK_ROWS"] = chunk_rows
    import logging

    logging.basicConfig(level=logging.WARNING)
    from sapnhap import sync
    from sapnhap.quality import validate_batch  # noqa: F401 - imported as a warm worker has it
    from sapnhap.reference import load_reference, load_split_rules
    from sapnhap.sources import get_source

    load_reference()
    load_split_rules()
    baseline = _hwm()
    source = get_source(source_id)
    run_id = f"mem_{dt.datetime.now():%Y%m%dT%H%M%S}"
    sync.prepare_run(services, run_id)
    figures: dict = {"baseline_rss": baseline, "stages": {}}
    resettable = _reset_hwm()
    batch = None
    for stage in STAGES:
        _reset_hwm()
        t0 = time.perf_counter()
        if stage == "extract":
            batch = sync.extract_stage(services, source, "residents", connection, run_id=run_id,
                                       run_date=dt.date.today().isoformat())
        elif stage == "reconcile":
            frame = sync.reconcile_run(services, run_id, [(source.id, "residents")])
            batch = {"reconciled": frame.to_dict(orient="records")}
        else:
            fn = {"transform": sync.transform_stage, "validate": sync.validate_stage, "backup": sync.backup_stage,
                  "load": sync.load_stage}[stage]
            batch = fn(services, source, batch)
        figures["stages"][stage] = {"seconds": time.perf_counter() - t0, "peak_rss": _hwm()}
        if stage == "backup":
            manifest = sync.Batch.from_xcom(batch)
            figures["parts"] = {name: len(obj.get("parts") or [obj]) for name, obj in manifest.objects.items()}
        if stage == "load":
            figures["load"] = {k: batch[k] for k in ("status", "extracted", "inserted", "quarantined",
                                                     "merged_in_batch", "blocked")}
    figures["hwm_resettable"] = resettable
    figures["peak_rss"] = max(s["peak_rss"] for s in figures["stages"].values())
    out.send(figures)
    out.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[200_000, 1_000_000, 5_000_000])
    parser.add_argument("--chunk-rows", type=int, default=None, help="SAPNHAP_CHUNK_ROWS for the worker")
    parser.add_argument("--one-frame", action="store_true", help="one chunk whatever the size (before streaming)")
    parser.add_argument("--db-prefix", default="sapnhap_mem")
    parser.add_argument("--json", type=Path, default=None, help="write every figure to this file")
    parser.add_argument("--keep", action="store_true", help="keep the generated legacy databases")
    args = parser.parse_args(argv)

    import psycopg
    from moto.server import ThreadedMotoServer

    import province
    from bench_pipeline import _fresh_db, _pg_admin
    from sapnhap.platform import ensure_platform
    from sapnhap.services import S3Config, Services
    from sapnhap_dev.embedded import free_port

    admin, pg_handle = _pg_admin()
    port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    chunk = str(10**12) if args.one_frame else (str(args.chunk_rows) if args.chunk_rows else None)
    results = []
    try:
        for size in args.sizes:
            prefix = f"{args.db_prefix}_{size}"
            workdir = Path(tempfile.mkdtemp(prefix=f"sapnhap-mem-{size}-"))
            t0 = time.perf_counter()
            land = province.build(admin, province.plan(size, 0, 1, 1, prefix=prefix), workdir / "sources",
                                  log=lambda m: print(m, flush=True))
            generated = time.perf_counter() - t0
            (src,) = land.sources
            s3 = S3Config(bucket=f"mem-{size}-{os.getpid()}", endpoint_url=f"http://127.0.0.1:{port}",
                          access_key="bench", secret_key="bench")
            from sapnhap import storage

            storage.ensure_bucket(s3)
            platform = _fresh_db(admin, f"{prefix}_platform")
            ensure_platform(platform)
            services = Services(platform_dsn=platform, s3=s3, smtp=None,
                                signing_key=os.environ.get("SAPNHAP_BACKUP_SIGNING_KEY") or "bench-memory-key")
            ctx = mp.get_context("spawn")
            receive, send = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=worker, args=(str(land.sources_dir), services,
                                                    land.connections[f"legacy_{src.source_id}"], src.source_id, chunk,
                                                    send))
            t1 = time.perf_counter()
            proc.start()
            figures = receive.recv()
            proc.join()
            figures.update(size=size, generated_s=generated, total_s=time.perf_counter() - t1,
                           chunk_rows=chunk or "default")
            results.append(figures)
            mib = 2**20
            print(f"\n== {size:,} rows, one source (chunk rows: {figures['chunk_rows']}): worker peak "
                  f"{figures['peak_rss'] / mib:,.0f} MiB (after imports {figures['baseline_rss'] / mib:,.0f} MiB), "
                  f"{figures['total_s']:,.0f} s; parts {figures.get('parts')}; load {figures.get('load')}", flush=True)
            for stage, s in figures["stages"].items():
                print(f"   {stage:<10}{s['seconds']:>9.1f} s {s['peak_rss'] / mib:>9,.0f} MiB", flush=True)
            with psycopg.connect(platform) as conn:
                core = conn.execute("SELECT count(*) FROM core.residents").fetchone()[0]
            print(f"   core.residents: {core:,} rows", flush=True)
            figures["core_rows"] = core
            if not args.keep:
                province.drop(admin, prefix)
    finally:
        moto.stop()
        if pg_handle is not None:
            pg_handle.cleanup()
    print("\nsize | chunk rows | worker peak RSS | after imports | total s")
    for f in results:
        print(f"{f['size']:,} | {f['chunk_rows']} | {f['peak_rss'] / 2**20:,.0f} MiB | "
              f"{f['baseline_rss'] / 2**20:,.0f} MiB | {f['total_s']:,.0f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
