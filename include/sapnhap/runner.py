"""``python -m sapnhap``: the data team's commands on a deployed platform.

- ``migrate``: apply the platform migrations as its owner, then grant the least-privilege roles;
- ``restore``: rebuild a dataset of the platform from the verified backups;
- ``pools``: the Airflow pools of the source registry (for ``airflow pools import``).

The demo and the Airflow UI on embedded services are development commands:
``python -m sapnhap_dev demo|ui`` (``make demo``, ``make airflow-ui``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from sapnhap.services import Services
from sapnhap.sources import load_sources


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sapnhap", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("pools", help="print the Airflow pools of the source registry (for `airflow pools import`)")
    migrate = sub.add_parser("migrate", help="apply the platform migrations as its owner (SAPNHAP_PLATFORM_URL), "
                             "then grant the least-privilege roles")
    migrate.add_argument("--to", default="head", help="the revision to reach (default: the newest)")
    migrate.add_argument("--check", action="store_true", help="only check the platform is at this code's revision")
    migrate.add_argument("--repair", action="store_true",
                         help="replay every migration to recreate what was dropped (e.g. a core table, before a restore)")
    restore = sub.add_parser("restore", help="rebuild a dataset of the platform from the verified backups")
    restore.add_argument("--dataset", required=True)
    restore.add_argument("--source", help="only this legacy system's part of the dataset")
    restore.add_argument("--as-of-run", help="replay the batches up to and including this run")
    restore.add_argument("--into", default="core", help="core (default), or a scratch schema to inspect")
    restore.add_argument("--confirm", action="store_true",
                         help="write into core; without it a restore into core prints its plan and writes nothing")
    args = parser.parse_args(argv)
    if args.command == "migrate":
        return run_migrate(args.to, check=args.check, repair=args.repair)
    if args.command == "restore":
        return run_restore(args.dataset, source_id=args.source, as_of_run=args.as_of_run, target_schema=args.into,
                           confirm=args.confirm)
    if args.command == "pools":
        print(json.dumps(pools_of(load_sources()), indent=2))
        return 0
    return 2


def run_migrate(revision: str, *, check: bool, repair: bool = False) -> int:
    """``python -m sapnhap migrate``: the platform of ``SAPNHAP_PLATFORM_URL`` (its owner's account)."""
    from sapnhap.migrations import SchemaVersionError, check_schema, current
    from sapnhap.platform import ensure_platform
    from sapnhap.services import postgres_dsn_from_url

    url = os.environ.get("SAPNHAP_PLATFORM_URL")
    if not url:
        print("[sapnhap] set SAPNHAP_PLATFORM_URL to the platform, as its owner (see .env.example)", file=sys.stderr)
        return 2
    dsn = postgres_dsn_from_url(url)
    if check:
        try:
            print(f"[sapnhap] platform schema at revision {check_schema(dsn)}: up to date")
        except SchemaVersionError as exc:
            print(f"[sapnhap] {exc}", file=sys.stderr)
            return 1
        return 0
    before = current(dsn)
    after = ensure_platform(dsn, revision, repair=repair)
    print(f"[sapnhap] platform schema: {before or 'none'} -> {after}")
    return 0


def run_restore(dataset: str, *, source_id: str | None, as_of_run: str | None, target_schema: str,
                confirm: bool = False, services: Services | None = None) -> int:
    """``python -m sapnhap restore``: platform from ``SAPNHAP_PLATFORM_URL``, bucket from ``SAPNHAP_S3_URL``,
    signing key from ``SAPNHAP_BACKUP_SIGNING_KEY``.

    Prints the report (with the plan) as JSON. Exit 0: restored, or (into core without
    ``confirm``) planned with nothing written; 1: refused, with every missing or damaged backup
    listed; 2: settings missing.
    """
    import os

    from sapnhap.restore import RestoreError, restore_dataset
    from sapnhap.services import postgres_dsn_from_url, s3_from_url

    if services is None:
        missing = [v for v in ("SAPNHAP_PLATFORM_URL", "SAPNHAP_S3_URL") if not os.environ.get(v)]
        if missing:
            print(f"[sapnhap] set {' and '.join(missing)} (see .env.example)", file=sys.stderr)
            return 2
        services = Services(platform_dsn=postgres_dsn_from_url(os.environ["SAPNHAP_PLATFORM_URL"]),
                            s3=s3_from_url(os.environ["SAPNHAP_S3_URL"]))
    try:
        report = restore_dataset(services, dataset, source_id=source_id, as_of_run=as_of_run,
                                 target_schema=target_schema, confirm=confirm)
    except RestoreError as exc:
        print(f"[sapnhap] {exc}", file=sys.stderr)
        return 1
    print(json.dumps(report.as_dict(), ensure_ascii=False, indent=2, default=str))
    if not report.applied:
        print(f"[sapnhap] {report.message}. Nothing was written; run again with --confirm to apply this plan.",
              file=sys.stderr)
    return 0


def pools_of(sources: list) -> dict[str, dict]:
    """One pool per legacy server connection, sized by the sources' ``pool_slots``."""
    pools: dict[str, dict] = {}
    for s in sources:
        slots = max(s.pool_slots, pools.get(s.pool, {}).get("slots", 0))
        pools[s.pool] = {"slots": slots, "description": f"connections to {s.conn_id}", "include_deferred": False}
    return pools


if __name__ == "__main__":
    sys.exit(main())
