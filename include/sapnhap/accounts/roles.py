"""Re-mapping legacy roles onto the new units, from the declarative ``role_rules.yaml`` (R12).

Every (legacy account, legacy role) ends as exactly one of: an assignment of a new role with a
scope a rule gave it, or an orphan with a reason. Nothing is inferred beyond the rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from sapnhap.accounts.matching import unit_key
from sapnhap.accounts.units import complete_units

RULES_PATH = Path(__file__).with_name("role_rules.yaml")
SCOPES = ("commune", "district_communes", "province")
LEVELS = ("commune", "district")

ASSIGNMENT_COLUMNS = [
    "system_code", "username", "legacy_role", "rule_id", "new_role", "scope_level", "scope_code",
    "new_province_code", "old_reach", "new_reach", "widened", "widening",
]
ORPHAN_COLUMNS = ["system_code", "username", "legacy_role", "reason", "reason_vi", "unit_key"]

ORPHAN_REASONS_VI = {
    "no_rule": "Vai trò cũ không có quy tắc chuyển đổi; chưa cấp quyền mới.",
    "pending_decision": "Vai trò chờ quyết định của cấp có thẩm quyền.",
    "unit_undecided": "Xã cũ bị chia tách, chưa quyết định xã mới của tài khoản.",
    "unit_unknown": "Không xác định được đơn vị mới của tài khoản.",
    "disabled": "Tài khoản đã bị vô hiệu trên hệ thống cũ; không chuyển quyền.",
    "no_roles": "Tài khoản không có vai trò nào trên hệ thống cũ.",
}


class RoleRulesError(ValueError):
    """The rules file is invalid; the message names the rule and the field."""


@dataclass(frozen=True)
class RoleRules:
    """The rules as a frame: id, level, legacy_role, system_code (or None), new_role, scope, pending_vi."""

    table: pd.DataFrame
    version: int = 1


def load_role_rules(path: Path | None = None) -> RoleRules:
    """Read and check ``role_rules.yaml`` (or ``path``); raise :class:`RoleRulesError`."""
    path = Path(path or RULES_PATH)
    doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    rows = []
    for i, rule in enumerate(doc.get("rules") or []):
        where = f"{path.name}: rule {rule.get('id', i)}"
        for key in ("id", "level", "legacy_role"):
            if not rule.get(key):
                raise RoleRulesError(f"{where}: {key} is required")
        if rule["level"] not in LEVELS:
            raise RoleRulesError(f"{where}: level must be one of {LEVELS}")
        new_role = rule.get("new_role")
        if new_role is not None and rule.get("scope") not in SCOPES:
            raise RoleRulesError(f"{where}: scope must be one of {SCOPES}")
        if rule["level"] == "district" and rule.get("scope") == "commune":
            raise RoleRulesError(f"{where}: a district-level role has no commune of its own; use district_communes")
        if new_role is None and not rule.get("pending_vi"):
            raise RoleRulesError(f"{where}: a rule without new_role must say what decision is pending (pending_vi)")
        rows.append({
            "id": str(rule["id"]), "level": rule["level"], "legacy_role": str(rule["legacy_role"]).strip().lower(),
            "system_code": rule.get("system_code"), "new_role": new_role,
            "scope": rule.get("scope") if new_role is not None else None, "pending_vi": rule.get("pending_vi"),
        })
    table = pd.DataFrame(rows, columns=["id", "level", "legacy_role", "system_code", "new_role", "scope", "pending_vi"])
    if table["id"].duplicated().any():
        raise RoleRulesError(f"{path.name}: duplicate rule ids {sorted(table.loc[table['id'].duplicated(), 'id'])}")
    key = table[["level", "legacy_role", "system_code"]].astype(str)
    if key.duplicated().any():
        raise RoleRulesError(f"{path.name}: two rules for the same level, legacy role and system")
    return RoleRules(table=table, version=int(doc.get("version", 1)))


def explode_roles(accounts: pd.DataFrame) -> pd.DataFrame:
    """One row per (account, legacy role); roles are ';'-separated, trimmed, lower-cased."""
    base = accounts[["system_code", "username", "roles"]].copy()
    base["legacy_role"] = base["roles"].astype("string").str.lower().str.split(";")
    out = base.explode("legacy_role")
    out["legacy_role"] = out["legacy_role"].astype("string").str.strip()
    out = out[out["legacy_role"].notna() & (out["legacy_role"] != "")]
    return out.drop(columns="roles").drop_duplicates().reset_index(drop=True)


def _reach_tables(ref) -> tuple[pd.Series, pd.Series, pd.DataFrame]:  # noqa: ANN001 - Reference
    """Old communes covered by each new commune and province; new communes of each old district."""
    cw = ref.crosswalk[ref.crosswalk["old_unit_level"] == "commune"]
    per_commune = cw.groupby("new_commune_code")["old_commune_code"].nunique()
    per_province = cw.groupby("new_province_code")["old_commune_code"].nunique()
    # Whole communes only: a split commune's targets are candidates, not yet the district's.
    district_targets = cw[~cw["is_split"]][["old_district_code", "new_commune_code", "new_province_code"]].drop_duplicates()
    return per_commune, per_province, district_targets


def remap_roles(accounts: pd.DataFrame, rules: RoleRules, ref) -> tuple[pd.DataFrame, pd.DataFrame]:  # noqa: ANN001
    """Re-map every legacy role of ``accounts`` to new roles scoped to new units.

    ``accounts``: canonical accounts rows with the transform's new_province_code/new_commune_code
    (``status``, ``unit_level``, ``old_commune_code``, ``unit_district_code``, ``roles``).
    ``ref``: a :class:`sapnhap.reference.Reference` (how many old communes each new unit covers).

    Returns ``(new_accounts, orphans)``:
      new_accounts: one row per granted (account, legacy role, new role, scope unit)
        (:data:`ASSIGNMENT_COLUMNS`); ``old_reach``/``new_reach`` count the old communes the
        role covered before and covers now, ``widened`` when now more (``widening`` is
        'province' or 'merged_communes');
      orphans: one row per (account, legacy role) that got nothing (:data:`ORPHAN_COLUMNS`),
        with the reason; an account without any role is one row with legacy_role None.
    """
    acc = complete_units(accounts, ref)
    if "mapping_status" not in acc:
        acc["mapping_status"] = None
    acc["unit_key"] = unit_key(acc)
    roles = explode_roles(acc)
    info = acc[["system_code", "username", "status", "unit_level", "old_commune_code", "unit_district_code",
                "new_province_code", "new_commune_code", "mapping_status", "unit_key"]].copy()
    info = info.astype(object).where(info.notna(), None)
    roles = roles.merge(info, on=["system_code", "username"], how="left")

    table = rules.table
    specific = table[table["system_code"].notna()]
    generic = table[table["system_code"].isna()].drop(columns="system_code")
    keys = ["level", "legacy_role"]
    roles = roles.rename(columns={"unit_level": "level"})
    hit = roles.merge(specific, on=[*keys, "system_code"], how="left")
    fallback = roles.merge(generic, on=keys, how="left")
    specific_hit = hit["id"].notna()
    for col in ("id", "new_role", "scope", "pending_vi"):
        hit[col] = hit[col].where(specific_hit, fallback[col].to_numpy())
    roles = hit.rename(columns={"level": "unit_level"})

    reason = pd.Series(None, index=roles.index, dtype=object)
    disabled = roles["status"].eq("disabled")
    reason[disabled] = "disabled"
    reason[reason.isna() & roles["id"].isna()] = "no_rule"
    reason[reason.isna() & roles["new_role"].isna()] = "pending_decision"
    needs_commune = roles["scope"].eq("commune")
    undecided = roles["mapping_status"].eq("review")
    reason[reason.isna() & needs_commune & undecided] = "unit_undecided"
    reason[reason.isna() & needs_commune & roles["new_commune_code"].isna()] = "unit_unknown"
    reason[reason.isna() & roles["scope"].eq("province") & roles["new_province_code"].isna()] = "unit_unknown"

    granted = roles[reason.isna()]
    orphans = roles[reason.notna()].assign(reason=reason[reason.notna()])
    # Accounts that listed no role at all are accounted for as orphans too.
    without = acc[~acc.set_index(["system_code", "username"]).index.isin(
        pd.MultiIndex.from_frame(roles[["system_code", "username"]]))]
    extra = pd.DataFrame({"system_code": without["system_code"], "username": without["username"], "legacy_role": None,
                          "reason": np.where(without["status"].eq("disabled"), "disabled", "no_roles"),
                          "unit_key": without["unit_key"]})
    orphans = pd.concat([orphans[["system_code", "username", "legacy_role", "reason", "unit_key"]], extra], ignore_index=True)
    orphans["reason_vi"] = orphans["reason"].map(ORPHAN_REASONS_VI)
    pending = roles.loc[reason.eq("pending_decision"), ["system_code", "username", "legacy_role", "pending_vi"]]
    if not pending.empty:
        note = orphans.merge(pending, on=["system_code", "username", "legacy_role"], how="left")["pending_vi"]
        orphans["reason_vi"] = note.where(note.notna(), orphans["reason_vi"]).to_numpy()
    orphans = orphans[ORPHAN_COLUMNS].sort_values(["system_code", "username", "legacy_role"], na_position="first")

    new_accounts = _scope(granted, ref)
    return new_accounts.reset_index(drop=True), orphans.reset_index(drop=True)


def _scope(granted: pd.DataFrame, ref) -> pd.DataFrame:  # noqa: ANN001 - Reference
    per_commune, per_province, district_targets = _reach_tables(ref)
    old = ref.old_units
    communes_per_district = old[old["level"] == "commune"].groupby("parent_code")["code"].nunique()
    g = granted.copy()
    g["old_reach"] = np.where(g["unit_level"].eq("district"),
                              g["unit_district_code"].map(communes_per_district).fillna(0).to_numpy(), 1).astype(int)
    parts = []
    commune = g[g["scope"].eq("commune")].assign(scope_level="commune", scope_code=lambda f: f["new_commune_code"])
    parts.append(commune)
    province = g[g["scope"].eq("province")].assign(scope_level="province", scope_code=lambda f: f["new_province_code"])
    parts.append(province)
    spread = g[g["scope"].eq("district_communes")].drop(columns=["new_commune_code"]).merge(
        district_targets.rename(columns={"old_district_code": "unit_district_code", "new_province_code": "_np"}),
        on="unit_district_code", how="inner",
    )
    spread = spread.assign(scope_level="commune", scope_code=spread["new_commune_code"],
                           new_province_code=spread["new_province_code"].where(spread["new_province_code"].notna(), spread["_np"]))
    parts.append(spread.drop(columns=["_np"]))
    out = pd.concat(parts, ignore_index=True)
    out["new_reach"] = np.where(out["scope_level"].eq("province"), out["scope_code"].map(per_province),
                                out["scope_code"].map(per_commune)).astype(float)
    out["new_reach"] = out["new_reach"].fillna(0).astype(int)
    # Per account and role: the whole new reach (a district clerk spread over several communes).
    total = out.groupby(["system_code", "username", "legacy_role"])["new_reach"].transform("sum")
    out["widened"] = (total > out["old_reach"]) | out["scope_level"].eq("province")
    out["widening"] = np.where(out["scope_level"].eq("province"), "province",
                               np.where(out["widened"], "merged_communes", None))
    out = out.rename(columns={"id": "rule_id"})
    return out[ASSIGNMENT_COLUMNS].sort_values(["system_code", "username", "legacy_role", "scope_code"])
