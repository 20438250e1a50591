"""The new account set of a run: people, accounts, roles, forwarding and directory, as frames.

``build_account_set`` is pure (DataFrames in, DataFrames out); :mod:`sapnhap.accounts.platform`
stores the result and :mod:`sapnhap.accounts.report` tells the unit owners.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import date

import numpy as np
import pandas as pd

from sapnhap.accounts.directory import assign_addresses, build_directory, forwarding_map, load_policy
from sapnhap.accounts.matching import match_people
from sapnhap.accounts.roles import RoleRules, load_role_rules, remap_roles
from sapnhap.accounts.units import complete_units

LEGACY_OUTCOMES = ("mapped", "merged", "orphaned")


@dataclass
class AccountSet:
    """Everything the accounts run produces (each frame is one platform table of schema ``accounts``)."""

    people: pd.DataFrame
    links: pd.DataFrame
    match_review: pd.DataFrame
    legacy_accounts: pd.DataFrame
    new_accounts: pd.DataFrame
    role_assignments: pd.DataFrame
    orphaned_roles: pd.DataFrame
    mail_forwarding: pd.DataFrame
    directory: pd.DataFrame

    def frames(self) -> dict[str, pd.DataFrame]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def counts(self) -> dict[str, int]:
        out = {name: len(frame) for name, frame in self.frames().items()}
        out.update({f"legacy_{k}": int((self.legacy_accounts["outcome"] == k).sum()) for k in LEGACY_OUTCOMES})
        out["widened_assignments"] = int(self.role_assignments["widened"].sum()) if len(self.role_assignments) else 0
        out["dormant_accounts"] = int(self.legacy_accounts["dormant"].sum()) if len(self.legacy_accounts) else 0
        return out


def report_unit(frame: pd.DataFrame) -> pd.Series:
    """The new unit whose owner reviews a row: its new commune, else its new province ('p:08')."""
    commune = frame["new_commune_code"].astype("string")
    at_commune = commune.notna() & frame["unit_level"].ne("district")
    province = "p:" + frame["new_province_code"].astype("string")
    return ("c:" + commune).where(at_commune, province).astype(object)


def build_account_set(accounts: pd.DataFrame, mail: pd.DataFrame, ref, *, as_of: date,  # noqa: ANN001 - Reference
                      rules: RoleRules | None = None, policy: dict | None = None) -> AccountSet:
    """Match people, re-map roles, give addresses, forward old mail, list the directory.

    ``accounts`` / ``mail``: rows of ``core.accounts`` / ``core.mail_directory`` (canonical
    columns and lineage). ``as_of``: the run date (dormancy and the forwarding period start).
    """
    rules = rules or load_role_rules()
    policy = policy or load_policy()
    accounts = complete_units(accounts, ref)
    mail = complete_units(mail, ref)
    people, links, review = match_people(accounts, mail)
    reserved = pd.DataFrame({"address": mail["address"].str.strip().str.lower(),
                             "person_id": ("mail:" + mail["address"].str.strip().str.lower()).map(
                                 links.set_index("record_id")["person_id"])})
    people = assign_addresses(people, ref, policy, reserved=reserved)
    people["report_unit"] = report_unit(people)

    granted, orphans = remap_roles(accounts, rules, ref)
    acc = accounts.assign(record_id="account:" + accounts["system_code"] + ":" + accounts["username"])
    acc = acc.merge(links[["record_id", "person_id"]], on="record_id", how="left")
    acc = acc.merge(people[["person_id", "address", "report_unit"]], on="person_id", how="left")
    acc["new_username"] = acc["address"].str.split("@").str[0]
    n_granted = granted.groupby(["system_code", "username"]).size().rename("n_granted")
    acc = acc.join(n_granted, on=["system_code", "username"])
    acc["n_granted"] = acc["n_granted"].fillna(0).astype(int)
    last_login = pd.to_datetime(acc["last_login"], errors="coerce")
    cutoff = pd.Timestamp(as_of) - pd.Timedelta(days=int(policy.get("dormant_days", 180)))
    acc["dormant"] = (last_login.isna() | (last_login < cutoff)) & acc["status"].ne("disabled")

    # One new account per person: the legacy accounts with granted roles fold into it; the
    # first (active, most recently used) is 'mapped', the others 'merged'.
    live = acc[acc["n_granted"] > 0].assign(_inactive=acc["status"].ne("active"), _login=last_login.fillna(pd.Timestamp.min))
    live = live.sort_values(["person_id", "_inactive", "_login", "record_id"], ascending=[True, True, False, True])
    primary = ~live.duplicated("person_id")
    acc["outcome"] = "orphaned"
    acc.loc[live.index[primary], "outcome"] = "mapped"
    acc.loc[live.index[~primary], "outcome"] = "merged"
    acc["merged_into"] = acc["new_username"].where(acc["outcome"] == "merged", None)
    same_system = acc.duplicated(["person_id", "system_code"], keep=False)
    acc["duplicate_in_system"] = same_system & acc["person_id"].notna()
    orphan_reasons = orphans.groupby(["system_code", "username"])["reason"].agg(lambda r: ";".join(sorted(set(r))))
    acc = acc.join(orphan_reasons.rename("orphan_reasons"), on=["system_code", "username"])
    legacy = acc[["system_code", "username", "source_id", "source_key", "person_id", "new_username", "outcome",
                  "merged_into", "duplicate_in_system", "status", "last_login", "dormant", "unit_level",
                  "old_commune_code", "unit_district_code", "new_province_code", "new_commune_code", "report_unit",
                  "roles", "orphan_reasons", "full_name"]].copy()

    assignments = granted.merge(acc[["system_code", "username", "person_id", "new_username"]],
                                on=["system_code", "username"], how="left")
    assignments["scoped_role"] = assignments["new_role"] + "@" + assignments["scope_level"].str[0] + ":" + assignments["scope_code"]
    mapped = acc[acc["outcome"] != "orphaned"]
    new_accounts = mapped.assign(_active=mapped["status"].eq("active"), _login=last_login[mapped.index]).groupby(
        "new_username", sort=True
    ).agg(person_id=("person_id", "first"), any_active=("_active", "max"), last_login=("_login", "max"),
          n_legacy_accounts=("record_id", "size"))
    roles_text = assignments.drop_duplicates(["new_username", "scoped_role"]).sort_values("scoped_role") \
        .groupby("new_username")["scoped_role"].agg(";".join)
    new_accounts["roles"] = roles_text.reindex(new_accounts.index)
    new_accounts["status"] = np.where(new_accounts["any_active"], "active", "locked")
    new_accounts["dormant"] = new_accounts["last_login"].isna() | (new_accounts["last_login"] < cutoff)
    new_accounts = new_accounts.reset_index().merge(
        people[["person_id", "address", "new_province_code", "new_commune_code", "report_unit"]], on="person_id", how="left"
    ).drop(columns=["any_active"])
    widened = assignments.groupby("new_username")["widened"].any()
    new_accounts["widened"] = new_accounts["new_username"].map(widened).fillna(False).astype(bool)

    mail_fw = forwarding_map(people, links, mail, valid_from=as_of, days=int(policy.get("forwarding_days", 365)))
    directory = build_directory(people, ref)
    orphans = orphans.merge(acc[["system_code", "username", "person_id", "report_unit"]], on=["system_code", "username"],
                            how="left")
    return AccountSet(
        people=people, links=links, match_review=review, legacy_accounts=legacy.reset_index(drop=True),
        new_accounts=new_accounts, role_assignments=assignments.reset_index(drop=True),
        orphaned_roles=orphans.reset_index(drop=True), mail_forwarding=mail_fw, directory=directory,
    )
