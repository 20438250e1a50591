"""The benchmark's harness (``make bench``) at a tiny size: every method syncs every generated row.

Not timed: it checks that each method the table compares (raw COPY, dlt, the naive pipeline,
sapnhap in-process and sapnhap's nightly DAG under the scheduler with LocalExecutor) read every
row of the same generated legacy sources in the full sync and every changed row in the
incremental one, and that the targets hold them all.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))


def test_every_method_of_the_benchmark_syncs_every_generated_row(pg_admin_dsn: str, tmp_path: Path) -> None:
    import province
    from conftest import pg_url

    prefix = f"sapnhap_bh_{uuid.uuid4().hex[:6]}"
    out = tmp_path / "bench.json"
    env = {**os.environ, "SAPNHAP_BENCH_PG_URL": pg_url(pg_admin_dsn), "PYTHONPATH": str(ROOT / "include")}
    p = conninfo_to_dict(pg_admin_dsn)
    admin = dict(host=p.get("host"), port=p.get("port"), user=p.get("user") or "postgres", password=p.get("password"))
    try:
        proc = subprocess.run(
            [sys.executable, str(ROOT / "bench" / "bench_pipeline.py"), "--size", "tiny", "--db-prefix", prefix,
             "--json", str(out)],
            env=env, capture_output=True, text=True, timeout=1200, check=False,
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    finally:
        province.drop(admin, prefix)
    figures = json.loads(out.read_text())
    generated, changed = figures["generated_rows"], figures["changed"]
    runs = figures["runs"]
    assert generated == 600 and changed > 0
    assert sorted(runs) == sorted(f"{m}/{label}" for m in ("raw", "dlt", "naive", "inprocess", "airflow")
                                  for label in ("full", "incremental"))
    for method in ("raw", "dlt", "naive", "inprocess", "airflow"):
        full, incr = runs[f"{method}/full"], runs[f"{method}/incremental"]
        assert full["rows_in"] == generated, (method, full)
        assert incr["rows_in"] >= changed, (method, incr)
        assert full["worker_peak_rss"] > 0 and incr["worker_peak_rss"] > 0, method
    # The baselines read exactly the changed rows; the merging ones still hold every row.
    for method in ("raw", "dlt", "naive"):
        assert runs[f"{method}/incremental"]["rows_in"] == changed, method
        assert runs[f"{method}/full"]["rows_out"] == generated, method
    assert runs["raw/incremental"]["rows_out"] == changed
    assert runs["dlt/incremental"]["rows_out"] == runs["naive/incremental"]["rows_out"] == generated
    # sapnhap: every generated record is loaded, quarantined (the landscape's defects) or merged, in both modes.
    for method in ("inprocess", "airflow"):
        for label in ("full", "incremental"):
            notes = runs[f"{method}/{label}"]["notes"]
            assert notes["core"] + notes["quarantined"] + notes["merged"] == generated, (method, label, notes)
            assert notes["quarantined"] > 0, "the generated defects reach quarantine"
    assert runs["airflow/full"]["notes"]["task_instances"] >= 5 + 4  # plan, 4 leaves; extract + process per dataset
