"""Issue 6 end to end on real services: the demo world's account and mail systems go through the
spine (extract, transform, validate, backup, load) into a scratch platform, then the accounts
run builds people, accounts, roles, addresses, forwarding and directory, exports them to the
bucket and emails the permission reviews to an SMTP sink.
"""

from __future__ import annotations

import re
import uuid
from datetime import date
from email import message_from_bytes, policy
from pathlib import Path

import pandas as pd
import psycopg
import pytest

from sapnhap import storage
from sapnhap.accounts import parse_ldif
from sapnhap.accounts.pipeline import build_stage, export_stage, review_stage
from sapnhap.accounts.platform import read_table
from sapnhap.accounts.roles import load_role_rules
from sapnhap.services import Services
from sapnhap.sources import get_source
from sapnhap_dev.demo.accounts import ACCOUNT_SOURCE_IDS, COLLIDING_NAME

pytestmark = [pytest.mark.integration]

AS_OF = date(2025, 12, 1)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, pg_admin_dsn: str):
    from sapnhap_dev.demo.generator import generate_world

    w = generate_world(tmp_path_factory.mktemp("accworld"), seed=11, size=40, pg_dsn=pg_admin_dsn,
                       db_prefix=f"acc{uuid.uuid4().hex[:6]}")
    try:
        yield w
    finally:
        w.drop_databases()


@pytest.fixture
def loaded(world, platform_dsn: str, s3_config, smtp_sink) -> dict:
    """The account/mail sources synced into the scratch platform by the spine's own stages."""
    from sapnhap import sync

    smtp, folder = smtp_sink
    services = Services(platform_dsn=platform_dsn, s3=s3_config, smtp=smtp)
    run_id = "acc_test_run"
    sync.prepare_run(services, run_id)
    loads = []
    for source_id in ACCOUNT_SOURCE_IDS:
        source = get_source(source_id)
        connection = world.connections[source.conn_id]
        for dataset in source.datasets:
            batch = sync.extract_stage(services, source, dataset, connection, run_id=run_id, run_date=AS_OF.isoformat())
            batch = sync.transform_stage(services, source, batch)
            batch = sync.validate_stage(services, source, batch)
            batch = sync.backup_stage(services, source, batch)
            loads.append(sync.load_stage(services, source, batch))
    return {"services": services, "mail_dir": folder, "loads": loads}


def _messages(folder: Path) -> list:
    return [message_from_bytes(p.read_bytes(), policy=policy.default) for p in sorted(folder.glob("*.eml"))]


def test_accounts_run_end_to_end(world, loaded) -> None:
    services = loaded["services"]
    dsn = services.platform_dsn
    for load in loaded["loads"]:
        assert load["status"] == "loaded", load

    built = build_stage(services, run_id="acc_run_1", as_of=AS_OF)
    counts = built["counts"]
    assert counts["people"] > 0 and counts["new_accounts"] > 0 and counts["role_assignments"] > 0

    with psycopg.connect(dsn) as conn:
        core_accounts = conn.execute("SELECT system_code, username FROM core.accounts").fetchall()
        quarantined = conn.execute(
            "SELECT count(DISTINCT source_key) FROM ops.quarantine WHERE dataset = 'accounts' AND status = 'open'"
            " AND severity = 'block'"
        ).fetchone()[0]
        core_mail = {r[0] for r in conn.execute("SELECT address FROM core.mail_directory").fetchall()}
    ledger = world.ledger[world.ledger["dataset"] == "accounts"]
    # Every legacy account written is loaded or quarantined by the spine ...
    assert len(core_accounts) + quarantined == len(ledger)
    legacy = read_table(dsn, "legacy_accounts")
    # ... and every loaded one is mapped, merged or listed as orphaned, exactly once.
    assert len(legacy) == len(core_accounts)
    assert set(zip(legacy["system_code"], legacy["username"], strict=True)) == set(core_accounts)
    assert set(legacy["outcome"]) <= {"mapped", "merged", "orphaned"}
    orphaned = legacy[legacy["outcome"] == "orphaned"]
    orphan_rows = read_table(dsn, "orphaned_roles")
    assert set(zip(orphaned["system_code"], orphaned["username"], strict=True)) <= set(
        zip(orphan_rows["system_code"], orphan_rows["username"], strict=True))
    assert {"no_rule", "pending_decision", "unit_undecided"} <= set(orphan_rows["reason"])
    # Duplicate accounts of one official in one system are merged into one new account.
    assert legacy.loc[legacy["duplicate_in_system"], "outcome"].isin(["mapped", "merged"]).all()
    assert (legacy["outcome"] == "merged").any()

    # No account gains a scope that no rule gave it.
    assignments = read_table(dsn, "role_assignments")
    rules = load_role_rules().table.set_index("id")
    assert assignments["rule_id"].isin(rules.index).all()
    assert (assignments["new_role"] == assignments["rule_id"].map(rules["new_role"])).all()
    expected_level = assignments["rule_id"].map(rules["scope"]).map(
        {"commune": "commune", "district_communes": "commune", "province": "province"})
    assert (assignments["scope_level"] == expected_level).all()
    accounts = pd.DataFrame(core_accounts, columns=["system_code", "username"])
    with psycopg.connect(dsn) as conn:
        held = pd.DataFrame(conn.execute("SELECT system_code, username, roles FROM core.accounts").fetchall(),
                            columns=["system_code", "username", "roles"])
    listed = held.assign(legacy_role=held["roles"].str.lower().str.split(";")).explode("legacy_role")
    granted = assignments.merge(listed, on=["system_code", "username", "legacy_role"], how="left", indicator=True)
    assert (granted["_merge"] == "both").all(), "a role was granted that the legacy account did not hold"
    assert len(accounts) > 0
    assert assignments["widened"].any() and (assignments["widening"] == "province").any()

    # One address per person, unique; every old address forwards to exactly one new address.
    people = read_table(dsn, "people")
    assert people["address"].is_unique and people["person_id"].is_unique
    forwarding = read_table(dsn, "mail_forwarding")
    assert forwarding["old_address"].is_unique
    assert core_mail <= set(forwarding["old_address"])
    assert forwarding["new_address"].isin(people["address"]).all()
    assert (pd.to_datetime(forwarding["valid_to"]) > pd.to_datetime(forwarding["valid_from"])).all()
    # Two different Nguyễn Văn An in one new commune: two people, two addresses (a digit suffix).
    an = people[people["full_name"] == COLLIDING_NAME]
    assert len(an) >= 2 and an["address"].is_unique
    same_commune = an.groupby("new_commune_code")["address"].agg(list)
    clash = [a for a in same_commune if len(a) >= 2][0]
    assert any(re.match(r"^annv\d\.", a) for a in clash)
    # Uncertain matches are listed, never merged.
    review = read_table(dsn, "match_review")
    assert {"same_name_birth_other_unit", "same_name_unit_no_birth"} <= set(review["kind"])
    assert (review["person_id_a"] != review["person_id_b"]).all()
    assert review[["person_id_a", "person_id_b"]].stack().isin(people["person_id"]).all()

    # Exports to the bucket: CSV and LDIF (base64 for Vietnamese names), forwarding CSV.
    exported = export_stage(services, run_id="acc_run_1", as_of=AS_OF)
    keys = storage.list_keys(services.s3, f"exports/accounts/{AS_OF.isoformat()}/")
    assert {k.rsplit("/", 1)[1] for k in keys} == {"directory.csv", "directory.ldif", "mail_forwarding.csv"}
    ldif = storage.get_bytes(services.s3, exported["objects"]["directory_ldif"]["key"])
    entries = parse_ldif(ldif)
    persons = [e for e in entries if "inetOrgPerson" in e.get("objectClass", [])]
    assert len(persons) == len(people)
    assert {e["mail"][0] for e in persons} == set(people["address"])
    assert b"cn:: " in ldif  # non-ASCII values are base64 (RFC 2849)
    assert all(len(line) <= 76 for line in ldif.decode().splitlines())

    # Permission reviews: one per unit owner, masked (no 12-digit number, no full name).
    sent = review_stage(services, run_id="acc_run_1", as_of=AS_OF)["sent"]
    messages = _messages(loaded["mail_dir"])
    assert sent and len(messages) == len(sent)
    assert {m["To"] for m in messages} == {s["to"] for s in sent}
    assert any(m["To"].startswith("sonoivu@") for m in messages)
    names = set(people["full_name"].dropna()) | set(world.account_systems.people["full_name"])
    for m in messages:
        body = m.get_body(("html",)).get_content() + m.get_body(("plain",)).get_content()
        assert not re.search(r"(?<!\d)\d{12}(?!\d)", body), m["To"]
        leaked = [n for n in names if n in body]
        assert not leaked, (m["To"], leaked[:3])
        assert "Rà soát" in m["Subject"]
    # Through the outbox: stored before sending, one per (accounts run, owner, unit), sent once.
    with psycopg.connect(dsn) as conn:
        stored = conn.execute("SELECT kind, recipient, status, message_id FROM ops.outbox ORDER BY outbox_id").fetchall()
    assert [(k, st) for k, _, st, _ in stored] == [("permission_review", "sent")] * len(sent)
    assert sorted(m["Message-ID"] for m in messages) == sorted(mid for *_, mid in stored)
    # The review task retried (Airflow): nothing is sent twice.
    assert review_stage(services, run_id="acc_run_1", as_of=AS_OF)["sent"] == []
    assert len(_messages(loaded["mail_dir"])) == len(messages)

    # A rerun replaces the tables whole and gives the same result.
    again = build_stage(services, run_id="acc_run_2", as_of=AS_OF)
    assert again["counts"] == counts
    people2 = read_table(dsn, "people")
    assert set(zip(people2["person_id"], people2["address"], strict=True)) == set(
        zip(people["person_id"], people["address"], strict=True))
