"""Run the nightly sync on the embedded default and check that every record is accounted for.

Development only (``sapnhap_dev`` is not in the package the Airflow image runs).
``python -m sapnhap_dev demo`` (``make demo``): start the embedded services, generate the demo world (new Tuyên
Quang = old Tuyên Quang + old Hà Giang), run the nightly DAG with ``airflow dags test``,
reconcile the platform against what the generator wrote, and print where to look.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import psycopg

from sapnhap import storage
from sapnhap.airflow_support import dags_test_log_folder, write_dags_test_task_logs
from sapnhap.review_hitl import REVIEW_DAG_ID, waiting_reviews
from sapnhap.runner import pools_of
from sapnhap.sources import DEFAULT_SOURCES_DIR, Registry, load_registry, load_sources
from sapnhap_dev.embedded import PROJECT_ROOT, Stack, airflow, airflow_env, prepare_airflow, start_stack

DAG_ID = "sapnhap_nightly"
ACCOUNTS_DAG_ID = "sapnhap_accounts"
ESTATE_DAG_ID = "sapnhap_estate"


class NotAccountedError(RuntimeError):
    """Records the legacy systems hold are neither loaded, quarantined nor merged."""


@dataclass
class NightlyResult:
    state: str
    log: Path


def run_nightly(
    env: dict[str, str], log: Path, logical_date: str | None = None, dag_id: str = DAG_ID, conf: dict | None = None
) -> NightlyResult:
    """``airflow dags test`` a DAG (the nightly one by default, with ``conf`` as the run's params);
    return its state and where its log is."""
    args = ["dags", "test", dag_id] + ([logical_date] if logical_date else [])
    if conf is not None:
        args += ["--conf", json.dumps(conf)]
    proc = airflow(env, *args, log=log, check=False)
    # `dags test` runs the tasks in its own process: their logs are in its output only. Written
    # where the UI's log view reads them (`make airflow-ui`).
    write_dags_test_task_logs(log.read_text(encoding="utf-8", errors="replace"), dag_id, dags_test_log_folder(env))
    return NightlyResult("success" if proc.returncode == 0 else "failed", log)


def _outcome(record: tuple[str, str], loaded: set, quarantined: set, kept_in: dict) -> str:
    if record in loaded:
        return "loaded"
    seen = {record}
    kept = kept_in.get(record)
    while kept is not None and kept not in seen:
        if kept in loaded or kept in quarantined:
            return "merged"
        seen.add(kept)
        kept = kept_in.get(kept)
    return "quarantined" if record in quarantined else "missing"


def account_for(dsn: str, ledger: pd.DataFrame) -> pd.DataFrame:
    """Outcome of every record in ``ledger`` (source_id, dataset, source_key): loaded, quarantined, merged.

    A record is ``loaded`` when a core row carries its source key, ``merged`` when its latest
    merge (``ops.merged_duplicates``, by batch commit order) names a record that is itself
    loaded, quarantined or merged so (a merge into a record that vanished proves nothing),
    ``quarantined`` when it sits in quarantine, and ``missing`` otherwise.
    """
    outcomes = []
    with psycopg.connect(dsn) as conn:
        for dataset in sorted(ledger["dataset"].unique()):
            loaded = {tuple(r) for r in conn.execute(f"SELECT source_id, source_key FROM core.{dataset}").fetchall()}
            kept_in = {
                (r[0], r[1]): (r[2], r[3])
                for r in conn.execute(
                    """SELECT DISTINCT ON (m.source_id, m.source_key) m.source_id, m.source_key, m.kept_source_id,
                              m.kept_source_key
                       FROM ops.merged_duplicates m LEFT JOIN ops.batches b ON b.batch_id = m.batch_id
                       WHERE m.dataset = %s
                       ORDER BY m.source_id, m.source_key, b.committed_at DESC NULLS LAST, m.batch_id DESC""",
                    (dataset,),
                ).fetchall()
            }
            quarantined = {tuple(r) for r in conn.execute(
                "SELECT source_id, source_key FROM ops.quarantine WHERE dataset = %s AND status = 'open' AND severity = 'block'",
                (dataset,),
            ).fetchall()}

            sub = ledger[ledger["dataset"] == dataset][["source_id", "dataset", "source_key"]].copy()
            keys = zip(sub["source_id"], sub["source_key"].astype(str), strict=True)
            sub["outcome"] = [_outcome(k, loaded, quarantined, kept_in) for k in keys]
            outcomes.append(sub)
    return pd.concat(outcomes, ignore_index=True) if outcomes else pd.DataFrame()


def platform_summary(dsn: str) -> pd.DataFrame:
    """Rows per core table and per new commune scheme, for the closing printout."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            """SELECT source_id, dataset, sum(extracted), sum(loaded), sum(quarantined), sum(merged_duplicates),
                      sum(not_loaded_blocked), bool_and(ok)
               FROM ops.reconciliation GROUP BY source_id, dataset ORDER BY 1, 2"""
        ).fetchall()
    return pd.DataFrame(
        rows, columns=["source_id", "dataset", "extracted", "loaded", "quarantined", "merged", "blocked", "ok"]
    )


def private_tree(path: Path) -> None:
    """Make a folder and everything under it readable by this user only (0700 folders, 0600 files)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    for p in [path, *path.rglob("*")]:
        if not p.is_symlink():
            p.chmod(0o700 if p.is_dir() else 0o600)


def snapshot_bucket(stack: Stack, dest: Path) -> int:
    """Copy the bucket to a folder readable by this user only (the embedded S3 ends with the run).

    The copy holds every backup object: raw legacy rows with personal data (citizen IDs, names,
    birth dates, addresses), the manifests, the handover records and the GX data docs.
    """
    keys = storage.list_keys(stack.s3, "")
    private_tree(dest)
    old_umask = os.umask(0o077)  # no moment where a file is readable by others
    try:
        for key in keys:
            storage.get_file(stack.s3, key, dest / key)
    finally:
        os.umask(old_umask)
    private_tree(dest)  # folders and files an older demo left behind
    return len(keys)


def use_sources_dirs(extra: list[Path]) -> tuple[Registry, dict[str, str]]:
    """Point this process (and the Airflow it starts) at the demo's sources plus ``extra`` folders.

    Returns the registry and the Airflow connections the extra sources declare (``connection:``);
    a connection already in the environment (``AIRFLOW_CONN_<CONN_ID>``) is kept.
    """
    dirs = list(dict.fromkeys([DEFAULT_SOURCES_DIR, *(d.resolve() for d in extra)]))
    os.environ["SAPNHAP_SOURCES_DIR"] = os.pathsep.join(str(d) for d in dirs)
    registry = load_registry()
    connections = {
        s.conn_id: s.local_connection()
        for s in registry.sources
        if s.local_connection() and Path(s.path or "").parent != DEFAULT_SOURCES_DIR
        and "AIRFLOW_CONN_" + s.conn_id.upper() not in os.environ
    }
    return registry, connections


def run_demo(workdir: Path, *, size: int, seed: int, runs: int, sources_dirs: list[Path] | None = None) -> int:
    """The README's main command; returns a process exit code.

    ``sources_dirs``: the data team's own source YAMLs (and, for files/sqlite, their data), run
    by the nightly beside the demo's.
    """
    from sapnhap_dev.demo.generator import generate_world

    workdir = workdir.resolve()
    registry, own_connections = use_sources_dirs(sources_dirs or [])
    sources = list(registry.sources)
    for bad in registry.invalid:
        print(f"[sapnhap] source file disabled (the nightly shows a failing task for it): {bad.message}",
              file=sys.stderr)
    if sources_dirs:
        own = [s.id for s in sources if Path(s.path or "").parent != DEFAULT_SOURCES_DIR]
        print(f"[sapnhap] your sources, run beside the demo's: {', '.join(own) or 'none valid'}")
    print(f"[sapnhap] starting embedded services in {workdir}")
    with start_stack(workdir) as stack:
        print(f"[sapnhap] generating the demo world (size={size}, seed={seed})")
        world = generate_world(workdir / "world", seed=seed, size=size, pg_dsn=stack.admin_dsn(), db_prefix="legacy")
        connections = {**world.connections, **own_connections}
        env = airflow_env(stack, connections)
        # `make airflow-ui` reuses the demo world's legacy systems (their secrets stay in .sapnhap/, never committed).
        (workdir / "connections.json").write_text(json.dumps(connections, indent=2))
        print("[sapnhap] preparing Airflow (SQLite metadata DB, pools)")
        prepare_airflow(env, pools_of(sources))
        for n in range(1, runs + 1):
            log = workdir / f"nightly-run-{n}.log"
            print(f"[sapnhap] running the nightly DAG ({n}/{runs}); log: {log}")
            result = run_nightly(env, log)
            if result.state != "success":
                print(f"[sapnhap] the nightly sync FAILED; see {log}", file=sys.stderr)
                return 1
        # In production the accounts DAG runs on the asset the nightly loads emit; here, once, after them.
        log = workdir / "accounts-run.log"
        print(f"[sapnhap] re-mapping accounts, roles and mail to the new units; log: {log}")
        if run_nightly(env, log, dag_id=ACCOUNTS_DAG_ID).state != "success":
            print(f"[sapnhap] the accounts run FAILED; see {log}", file=sys.stderr)
            return 1
        # Likewise the estate DAG (core.indicator_values | core.portal_pages): indicators and redirects from core.
        log = workdir / "estate-run.log"
        print(f"[sapnhap] re-aggregating indicators and building the portal redirect map from the platform; log: {log}")
        if run_nightly(env, log, dag_id=ESTATE_DAG_ID).state != "success":
            print(f"[sapnhap] the estate run FAILED; see {log}", file=sys.stderr)
            return 1
        outcome = account_for(stack.platform_dsn, world.ledger)
        summary = platform_summary(stack.platform_dsn)
        # Every file the document systems hold must be in the bucket (attachments/, by sha256).
        from sapnhap.documents import account_for_attachments

        files = account_for_attachments(stack.s3, world.document_systems.attachments)
        from sapnhap_dev.demo.estate import published_estate

        estate = published_estate(stack.platform_dsn, stack.s3)
        snapshot = workdir / "bucket"
        objects = snapshot_bucket(stack, snapshot)
        mails = sorted(stack.mail_dir.glob("*.eml")) if stack.mail_dir else []
        print("\n[sapnhap] reconciliation per source and dataset (extracted = loaded + quarantined + merged + blocked):")
        print(summary.to_string(index=False))
        counts = outcome["outcome"].value_counts().to_dict()
        print(f"\n[sapnhap] demo records accounted for: {counts} of {len(outcome)} written by the generator")
        print(f"[sapnhap] documents' attached files in the bucket (attachments/, by sha256): {files}")
        print(f"[sapnhap] indicators re-aggregated to the new units from core.indicator_values ({estate['values']} old "
              f"values -> {estate['outputs']} outputs, {estate['status']}) and {estate['old_urls']} old portal URLs of "
              f"core.portal_pages redirected, each to one live URL: {estate['prefixes']} in the bucket")
        missing = outcome[outcome["outcome"] == "missing"]
        if not missing.empty or not bool(summary["ok"].all()):
            print(missing.head(20).to_string(index=False), file=sys.stderr)
            raise NotAccountedError(f"{len(missing)} generator records are not accounted for")
        if files["missing"]:
            raise NotAccountedError(f"{files['missing']} attached files of the document systems are not in the bucket")
        print("\n[sapnhap] the nightly sync succeeded. Where to look:")
        print(f"  platform (PostgreSQL): psql \"{stack.platform_dsn}\"  -> core.*, history.*, ops.*, registry.*")
        print(f"  backups (S3 bucket {stack.s3.bucket}, prefix backups/): {objects} objects, copied to {snapshot}")
        print(f"  emails to owners: {len(mails)} messages in {stack.mail_dir}")
        print("  accounts, roles, official addresses: accounts.* tables; directory exports under exports/accounts/")
        print("  handover records (biên bản bàn giao): handover/ in the bucket, ops.handover_records")
        print(f"  Airflow UI: make airflow-ui   (AIRFLOW_HOME={env['AIRFLOW_HOME']})")
    return 0


def restore_bucket_snapshot(stack: Stack, source: Path) -> int:
    """Upload a folder written by :func:`snapshot_bucket` back into the bucket; return objects uploaded.

    The embedded S3 lives in memory: without this, ``make airflow-ui`` would start with none of
    the demo's backups, Data Docs and handover records.
    """
    import mimetypes

    if not source.is_dir():
        return 0
    storage.ensure_bucket(stack.s3, retention_days=storage.retention_days_from_env())
    files = sorted(p for p in source.rglob("*") if p.is_file())
    for path in files:
        key = path.relative_to(source).as_posix()
        storage.put_file(stack.s3, key, path, mimetypes.guess_type(key)[0] or "application/octet-stream")
    return len(files)


def ui_env(env: dict[str, str], port: int) -> dict[str, str]:
    """What ``make airflow-ui`` adds to the demo's Airflow environment."""
    return {
        **env,
        "AIRFLOW__API__PORT": str(port),
        # The demo world is meant to run: the nightly at 01:00, the accounts DAG after the loads.
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
        "AIRFLOW__CORE__DEFAULT_TIMEZONE": "Asia/Ho_Chi_Minh",
        # Airflow 3.3's UI has no server-side default time zone (it follows the browser); the
        # Sáp nhập pages set it to Vietnam's. The API server's own process runs in it too.
        "TZ": "Asia/Ho_Chi_Minh",
    }


def stop_group(proc, grace: float = 60) -> None:  # noqa: ANN001 - subprocess.Popen started with start_new_session
    """SIGTERM the process group of ``proc`` (it leads it), SIGKILL what is left after ``grace`` seconds."""
    import os
    import signal
    import subprocess
    import time

    def alive() -> bool:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return False
        return True

    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10)):
        if not alive():
            break
        os.killpg(proc.pid, sig)
        deadline = time.monotonic() + wait
        while alive() and time.monotonic() < deadline:
            try:
                proc.wait(timeout=1)
            except subprocess.TimeoutExpired:
                pass
            time.sleep(0.5)


def run_ui(workdir: Path, *, port: int) -> int:
    """The Airflow UI on the demo's world: services stay up until Ctrl-C (``make airflow-ui``).

    Same platform (pgdata), bucket content (the demo's snapshot in ``bucket/``, written back on
    exit), mail folder (kept, new messages are added) and legacy connections as ``make demo``;
    every sapnhap DAG active; the "Sáp nhập" pages of ``plugins/``.
    """
    import os
    import signal
    import subprocess

    workdir = workdir.resolve()
    saved = workdir / "connections.json"
    connections = json.loads(saved.read_text()) if saved.exists() else {}
    if not connections:
        print("[sapnhap] no demo world yet: run `make demo` first to create the legacy systems", file=sys.stderr)
    embedded_s3 = not os.environ.get("SAPNHAP_S3_URL")
    snapshot = workdir / "bucket"
    with start_stack(workdir, keep_mail=True) as stack:
        if embedded_s3:
            print(f"[sapnhap] loading the demo's bucket from {snapshot}: {restore_bucket_snapshot(stack, snapshot)} objects")
        env = ui_env(airflow_env(stack, connections), port)
        prepare_airflow(env, pools_of(load_sources()))
        log = workdir / "airflow-ui-prepare.log"
        airflow(env, "dags", "reserialize", log=log)
        airflow(env, "dags", "unpause", "--treat-dag-id-as-regex", "-y", "^sapnhap_", log=log, check=False)
        if start_review_if_waiting(env, stack.platform_dsn):  # the demo's nights left records to decide
            print("[sapnhap] records wait for a decision: see Browse > Required Actions (sapnhap_review)")
        print(f"[sapnhap] Airflow UI on http://127.0.0.1:{port} (user admin; password in "
              f"{env['AIRFLOW_HOME']}/simple_auth_manager_passwords.json.generated). Ctrl-C stops everything.")
        print(f"[sapnhap] the data team's pages: http://127.0.0.1:{port}/sapnhap/tonight (or 'Sáp nhập' in the menu)")
        print(f"[sapnhap] platform: psql \"{stack.platform_dsn}\"; mail folder: {stack.mail_dir}")
        # Ctrl-C, or a plain `kill`, stops Airflow first, then saves the bucket, then stops the services.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.getsignal(signal.SIGINT))
        # Its own process group: `airflow standalone` does not stop its scheduler, API server and
        # workers when it is terminated, so the whole group is.
        proc = subprocess.Popen([str(Path(sys.executable).with_name("airflow")), "standalone"], env=env,
                                start_new_session=True)
        try:
            proc.wait()
        except KeyboardInterrupt:
            pass
        finally:
            stop_group(proc)
            if embedded_s3:
                print(f"[sapnhap] saving the bucket to {snapshot}: {snapshot_bucket(stack, snapshot)} objects")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sapnhap_dev", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the nightly sync end to end on the embedded default")
    demo.add_argument("--workdir", type=Path, default=PROJECT_ROOT / ".sapnhap")
    demo.add_argument("--size", type=int, default=200, help="rows per legacy dataset, roughly")
    demo.add_argument("--seed", type=int, default=20250701)
    demo.add_argument("--runs", type=int, default=2, help="nightly runs in a row (the second must change nothing)")
    demo.add_argument("--sources-dir", type=Path, action="append", default=[], dest="sources_dirs",
                      help="a folder of your own source YAMLs, run beside the demo's (repeatable)")
    ui = sub.add_parser("ui", help="the Airflow UI on the embedded services (after `demo`); Ctrl-C stops it")
    ui.add_argument("--workdir", type=Path, default=PROJECT_ROOT / ".sapnhap")
    ui.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)
    if args.command == "demo":
        return run_demo(args.workdir, size=args.size, seed=args.seed, runs=args.runs, sources_dirs=args.sources_dirs)
    if args.command == "ui":
        return run_ui(args.workdir, port=args.port)
    return 2


if __name__ == "__main__":
    sys.exit(main())


def start_review_if_waiting(env: dict[str, str], dsn: str) -> str | None:
    """``make airflow-ui``: start ``sapnhap_review`` once when records wait and no run of it is open.

    The demo's nights run with ``airflow dags test`` while the DAGs are paused, so their review
    events queued nothing; the UI's first scheduler loop then brings the Required Action to the
    inbox. Returns the new run's id, or None (nothing waits, or a run is already open).
    """
    if not waiting_reviews(dsn).records:
        return None
    lines = [x for x in airflow(env, "dags", "list-runs", REVIEW_DAG_ID, "-o", "json").stdout.splitlines() if x]
    runs = json.loads(lines[-1]) if lines and lines[-1].startswith("[") else []
    if any(r.get("state") in ("queued", "running") for r in runs):
        return None
    out = airflow(env, "dags", "trigger", REVIEW_DAG_ID, "-o", "json").stdout.splitlines()
    return str(json.loads(out[-1])[0]["dag_run_id"]) if out and out[-1].startswith("[") else ""
