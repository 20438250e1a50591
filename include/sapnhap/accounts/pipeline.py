"""The stages of the accounts run, as plain functions the ``sapnhap_accounts`` DAG calls.

    build (platform core.* -> accounts.*, one transaction) -> export (bucket) -> review emails

Stages pass the run id and object keys, never data.
"""

from __future__ import annotations

import io
import logging
from datetime import date

import pandas as pd

from sapnhap import storage
from sapnhap.services import Services

log = logging.getLogger(__name__)

EXPORT_PREFIX = "exports/accounts"


def build_stage(services: Services, *, run_id: str, as_of: date) -> dict:
    """Match, re-map and give addresses from the platform's current accounts and mailboxes; store them."""
    from sapnhap.accounts.build import build_account_set
    from sapnhap.accounts.directory import load_policy
    from sapnhap.accounts.platform import read_inputs, store_account_set
    from sapnhap.accounts.roles import load_role_rules
    from sapnhap.reference import load_reference

    ref = load_reference()
    rules = load_role_rules()
    accounts, mail = read_inputs(services.platform_dsn)
    account_set = build_account_set(accounts, mail, ref, as_of=as_of, rules=rules, policy=load_policy())
    written = store_account_set(services.platform_dsn, account_set, run_id=run_id, as_of=as_of,
                                crosswalk_version=ref.version, rules_version=rules.version)
    counts = account_set.counts()
    log.info("accounts run %s: %s", run_id, counts)
    return {"run_id": run_id, "as_of": as_of.isoformat(), "written": written, "counts": counts}


def _csv(frame: pd.DataFrame) -> bytes:
    buf = io.StringIO()
    frame.to_csv(buf, index=False, lineterminator="\r\n")
    return b"\xef\xbb\xbf" + buf.getvalue().encode("utf-8")


def export_stage(services: Services, *, run_id: str, as_of: date) -> dict:
    """Write the directory (CSV, LDIF) and the forwarding map (CSV) to ``exports/accounts/<date>/``."""
    from sapnhap.accounts.directory import DIRECTORY_COLUMNS, FORWARDING_COLUMNS, directory_csv, directory_ldif
    from sapnhap.accounts.platform import read_table

    directory = read_table(services.platform_dsn, "directory")[DIRECTORY_COLUMNS]
    directory = directory.sort_values(["new_province_code", "new_commune_code", "address"], na_position="first")
    forwarding = read_table(services.platform_dsn, "mail_forwarding")[FORWARDING_COLUMNS].sort_values("old_address")
    prefix = f"{EXPORT_PREFIX}/{as_of.isoformat()}/"
    storage.ensure_bucket(services.s3)
    objects = {
        "directory_csv": storage.put_bytes(services.s3, prefix + "directory.csv", directory_csv(directory), "text/csv"),
        "directory_ldif": storage.put_bytes(services.s3, prefix + "directory.ldif", directory_ldif(directory),
                                            "text/x-ldif"),
        "forwarding_csv": storage.put_bytes(services.s3, prefix + "mail_forwarding.csv", _csv(forwarding), "text/csv"),
    }
    for obj in objects.values():
        storage.verify_object(services.s3, obj.as_dict())
    return {"run_id": run_id, "objects": {k: v.as_dict() for k, v in objects.items()}}


def review_stage(services: Services, *, run_id: str, as_of: date) -> dict:
    """Email the permission review of every new unit to its owner."""
    from sapnhap.accounts.report import send_permission_reviews

    return send_permission_reviews(services, run_id=run_id, as_of=as_of.strftime("%d/%m/%Y"))
