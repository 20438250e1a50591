"""Person matching across legacy account systems and mail directories (R5, R12, R18).

Rules, strongest first:

1. the same valid citizen ID (12 digits) is the same person;
2. without a shared citizen ID: the same accent-folded NFC name, the same birth date and the
   same unit (same new commune; for district staff the same old district; for a split commune
   not yet decided, the same old commune) is the same person, unless the group holds two
   different citizen IDs (then they are namesakes and nothing in the group is merged);
3. uncertain: the same name and birth date in different units, or the same name and unit
   where a record has no birth date (and no citizen ID to settle it). These pairs go to the
   review list and are NEVER merged automatically.

Everything is grouped with pandas and the components are found with a sparse graph: no
per-row Python on large inputs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from sapnhap.reference._text import fold_series

CITIZEN_ID_RE = r"^\d{12}$"
RECORD_COLUMNS = [
    "record_id", "kind", "source_id", "source_key", "full_name", "citizen_id", "birth_date", "unit_level",
    "old_commune_code", "unit_district_code", "new_province_code", "new_commune_code", "unit_key", "name_key",
    "updated_at",
]
PEOPLE_COLUMNS = [
    "person_id", "full_name", "name_key", "citizen_id", "birth_date", "unit_level", "unit_key", "new_province_code",
    "new_commune_code", "old_commune_code", "unit_district_code", "n_accounts", "n_mailboxes", "match_rule",
]
LINK_COLUMNS = ["record_id", "kind", "person_id", "match_rule", "source_id", "source_key"]
REVIEW_COLUMNS = ["review_id", "kind", "person_id_a", "person_id_b", "record_id_a", "record_id_b", "unit_key_a",
                  "unit_key_b", "reason_vi"]

REVIEW_REASONS_VI = {
    "same_name_birth_other_unit": "Trùng họ tên và ngày sinh nhưng khác đơn vị; không có số CCCD để xác định.",
    "same_name_unit_no_birth": "Trùng họ tên và đơn vị nhưng thiếu ngày sinh và số CCCD để xác định.",
    "namesakes_same_birth_unit": "Trùng họ tên, ngày sinh, đơn vị nhưng có hai số CCCD khác nhau; bản ghi không có CCCD chưa gán được.",
}


def _col(frame: pd.DataFrame, name: str) -> pd.Series:
    return frame[name] if name in frame.columns else pd.Series(None, index=frame.index, dtype=object)


def _text(values: pd.Series) -> pd.Series:
    out = values.astype("string").str.normalize("NFC").str.strip()
    return out.where(out != "", pd.NA)


def unit_key(frame: pd.DataFrame) -> pd.Series:
    """Where a record belongs after the merger, as one comparable key.

    ``c:<new commune>`` when the unit mapped to a new commune; ``d:<old district>`` for
    district-level staff (the district no longer exists); ``o:<old commune>`` for a commune
    whose new commune is not decided (split) or unknown.
    """
    level = _text(_col(frame, "unit_level"))
    new = _text(_col(frame, "new_commune_code"))
    old = _text(_col(frame, "old_commune_code"))
    district = _text(_col(frame, "unit_district_code"))
    key = ("o:" + old).where(old.notna(), "d:" + district)
    key = ("c:" + new).where(new.notna(), key)
    key = ("d:" + district).where((level == "district").fillna(False) & district.notna(), key)
    return key.astype(object).where(key.notna(), None)


def records_of(accounts: pd.DataFrame, mail: pd.DataFrame) -> pd.DataFrame:
    """Accounts and mailboxes as one frame of person records (see :data:`RECORD_COLUMNS`)."""
    acc = pd.DataFrame({
        "record_id": ("account:" + _text(accounts["system_code"]) + ":" + _text(accounts["username"])).astype(object),
        "kind": "account",
        "source_id": _col(accounts, "source_id"),
        "source_key": _col(accounts, "source_key"),
        "full_name": _col(accounts, "full_name"),
        "citizen_id": _col(accounts, "citizen_id"),
        "birth_date": _col(accounts, "birth_date"),
        "unit_level": _col(accounts, "unit_level"),
        "old_commune_code": _col(accounts, "old_commune_code"),
        "unit_district_code": _col(accounts, "unit_district_code"),
        "new_province_code": _col(accounts, "new_province_code"),
        "new_commune_code": _col(accounts, "new_commune_code"),
        "updated_at": _col(accounts, "updated_at"),
    })
    box = pd.DataFrame({
        "record_id": ("mail:" + _text(mail["address"]).str.lower()).astype(object),
        "kind": "mailbox",
        "source_id": _col(mail, "source_id"),
        "source_key": _col(mail, "source_key"),
        "full_name": _col(mail, "owner_full_name"),
        "citizen_id": _col(mail, "owner_citizen_id"),
        "birth_date": _col(mail, "owner_birth_date"),
        "unit_level": _col(mail, "unit_level"),
        "old_commune_code": _col(mail, "old_commune_code"),
        "unit_district_code": _col(mail, "unit_district_code"),
        "new_province_code": _col(mail, "new_province_code"),
        "new_commune_code": _col(mail, "new_commune_code"),
        "updated_at": _col(mail, "updated_at"),
    })
    rec = pd.concat([acc, box], ignore_index=True)
    for c in ("full_name", "citizen_id", "unit_level", "old_commune_code", "unit_district_code",
              "new_province_code", "new_commune_code"):
        rec[c] = _text(rec[c]).astype(object)
        rec[c] = rec[c].where(rec[c].notna(), None)
    cid = rec["citizen_id"].astype("string")
    # A malformed citizen ID identifies nobody: it is ignored for matching (the quality stage warned).
    rec["citizen_id"] = rec["citizen_id"].where(cid.str.fullmatch(CITIZEN_ID_RE).fillna(False).astype(bool), None)
    rec["birth_date"] = pd.to_datetime(rec["birth_date"], errors="coerce").dt.normalize()
    rec["updated_at"] = pd.to_datetime(rec["updated_at"], errors="coerce")
    rec["name_key"] = fold_series(rec["full_name"]).astype(object)
    rec["unit_key"] = unit_key(rec)
    if rec["record_id"].duplicated().any():
        dups = rec.loc[rec["record_id"].duplicated(keep=False), "record_id"].unique()[:5]
        raise ValueError(f"records repeat (same system/username or address): {list(dups)}")
    return rec[RECORD_COLUMNS]


def _star_edges(frame: pd.DataFrame, keys: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Edges linking every row of each group (by ``keys``) to the group's first row (index labels 0..n-1)."""
    pos = pd.Series(frame.index.to_numpy(dtype=np.int64), index=frame.index)
    first = pos.groupby([frame[k] for k in keys], sort=False, dropna=True).transform("first")
    ok = first.notna()
    return pos[ok].to_numpy(), first[ok].to_numpy(dtype=np.int64)


def _person_ids(anchor: pd.Series) -> pd.Series:
    """Stable person ids from each component's anchor text (citizen ID or first record id)."""
    hashed = pd.util.hash_pandas_object(anchor.astype(str), index=False, categorize=False).to_numpy()
    return pd.Series(np.char.add("P", np.char.mod("%016x", hashed)), index=anchor.index, dtype=object)


def _mode(frame: pd.DataFrame, by: str, col: str) -> pd.Series:
    """Most frequent non-null value of ``col`` per ``by`` (ties: the most recently updated record)."""
    sub = frame[[by, col, "updated_at"]].dropna(subset=[col])
    counts = sub.groupby([by, col], sort=False).agg(n=("updated_at", "size"), last=("updated_at", "max")).reset_index()
    counts = counts.sort_values([by, "n", "last", col], ascending=[True, False, False, True], na_position="last")
    return counts.drop_duplicates(by).set_index(by)[col]


def match_people(accounts: pd.DataFrame, mail: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Group the account and mailbox records of the same officials into people.

    ``accounts``: canonical accounts rows (system_code, username, citizen_id, full_name,
    birth_date, unit_level, old_commune_code, unit_district_code, with new_province_code and
    new_commune_code from the transform). ``mail``: canonical mail_directory rows (address,
    owner_full_name, owner_citizen_id, owner_birth_date, unit columns).

    Returns ``(people, links, review)``:
      people: one row per person (:data:`PEOPLE_COLUMNS`), person_id stable across runs;
      links: one row per record (``account:<system>:<username>`` or ``mail:<address>``) -> person_id,
        with the rule that linked it ('citizen_id', 'name_birth_unit' or 'single');
      review: uncertain pairs (:data:`REVIEW_COLUMNS`), never merged.
    """
    rec = records_of(accounts, mail).reset_index(drop=True)
    n = len(rec)
    rows_a, rows_b = [np.arange(n)], [np.arange(n)]
    has_cid = rec["citizen_id"].notna()
    a, b = _star_edges(rec[has_cid], ["citizen_id"])
    rows_a.append(a), rows_b.append(b)
    # Rule 2 only inside (name, birth, unit) groups holding at most one distinct citizen ID.
    keyed = rec[rec["birth_date"].notna() & rec["name_key"].ne("") & rec["unit_key"].notna()]
    group_cids = keyed.groupby(["name_key", "birth_date", "unit_key"])["citizen_id"].transform("nunique")
    safe = keyed[group_cids <= 1]
    a, b = _star_edges(safe, ["name_key", "birth_date", "unit_key"])
    rows_a.append(a), rows_b.append(b)
    ia, ib = np.concatenate(rows_a), np.concatenate(rows_b)
    graph = coo_matrix((np.ones(len(ia), dtype=np.int8), (ia, ib)), shape=(n, n))
    _, component = connected_components(graph, directed=False)
    rec["component"] = component

    # Rule that linked each record: citizen ID if its component shares one, else name/birth/unit.
    comp_size = rec.groupby("component")["record_id"].transform("size")
    comp_cid = rec.groupby("component")["citizen_id"].transform("first")
    cid_count = rec.groupby("component")["citizen_id"].transform("count")
    rule = np.where(comp_size == 1, "single", np.where((cid_count >= 2) & has_cid, "citizen_id", "name_birth_unit"))
    rec["match_rule"] = rule

    anchor = comp_cid.where(comp_cid.notna(), rec.groupby("component")["record_id"].transform("min"))
    rec["person_id"] = _person_ids("cid:" + anchor.astype(str)).where(comp_cid.notna(), _person_ids("rec:" + anchor.astype(str)))

    rule_rank = pd.Series(np.select([rec["match_rule"] == "citizen_id", rec["match_rule"] == "name_birth_unit"], [2, 1], 0),
                          index=rec.index)
    people = rec.assign(_acc=rec["kind"].eq("account"), _box=rec["kind"].eq("mailbox"), _rule=rule_rank).groupby(
        "person_id", sort=True
    ).agg(citizen_id=("citizen_id", "first"), n_accounts=("_acc", "sum"), n_mailboxes=("_box", "sum"), _rule=("_rule", "max"))
    for col in ("full_name", "name_key", "birth_date", "unit_key", "unit_level", "old_commune_code", "unit_district_code"):
        people[col] = _mode(rec, "person_id", col).reindex(people.index)
    # The person's new unit follows the unit key chosen above (records of one person may disagree).
    unit_rows = rec.drop_duplicates(["person_id", "unit_key"]).set_index(["person_id", "unit_key"])
    picked = unit_rows.reindex(pd.MultiIndex.from_arrays([people.index, people["unit_key"]]))
    people["new_province_code"] = picked["new_province_code"].to_numpy()
    people["new_commune_code"] = picked["new_commune_code"].to_numpy()
    people["old_commune_code"] = picked["old_commune_code"].to_numpy()
    people["unit_district_code"] = picked["unit_district_code"].to_numpy()
    people["unit_level"] = picked["unit_level"].to_numpy()
    people["match_rule"] = people["_rule"].map({2: "citizen_id", 1: "name_birth_unit", 0: "single"})
    people = people.reset_index()[PEOPLE_COLUMNS]
    people = people.astype(object).where(people.notna(), None)
    people["n_accounts"] = people["n_accounts"].astype(int)
    people["n_mailboxes"] = people["n_mailboxes"].astype(int)

    links = rec[LINK_COLUMNS].sort_values("record_id").reset_index(drop=True)
    review = _review(rec)
    return people, links, review


def _pairs(rec: pd.DataFrame, keys: list[str], mask: pd.Series, kind: str, need_other_unit: bool) -> pd.DataFrame:
    """Star pairs (group's first person vs each other person) inside groups of ``keys``."""
    sub = rec[mask].drop_duplicates(["person_id", *keys])
    if sub.empty:
        return pd.DataFrame(columns=REVIEW_COLUMNS)
    sub = sub.sort_values([*keys, "person_id"])
    cols = [c for c in ("person_id", "record_id", "unit_key", "citizen_id") if c not in keys]
    first = sub.groupby(keys, sort=False).head(1)[[*keys, *cols]].rename(columns={c: c + "_a" for c in cols})
    joined = sub.merge(first, on=keys, how="left")
    if "unit_key" in keys:
        joined["unit_key_a"] = joined["unit_key"]
    joined = joined[joined["person_id"] != joined["person_id_a"]]
    # Two known, different citizen IDs are two people: nothing to review.
    joined = joined[joined["citizen_id"].isna() | joined["citizen_id_a"].isna()]
    if need_other_unit:
        joined = joined[joined["unit_key"] != joined["unit_key_a"]]
    return pd.DataFrame({
        "kind": kind,
        "person_id_a": joined["person_id_a"].to_numpy(),
        "person_id_b": joined["person_id"].to_numpy(),
        "record_id_a": joined["record_id_a"].to_numpy(),
        "record_id_b": joined["record_id"].to_numpy(),
        "unit_key_a": joined["unit_key_a"].to_numpy(),
        "unit_key_b": joined["unit_key"].to_numpy(),
        "reason_vi": REVIEW_REASONS_VI[kind],
    })


def _review(rec: pd.DataFrame) -> pd.DataFrame:
    named = rec["name_key"].ne("") & rec["name_key"].notna()
    # Person-level citizen ID: a record without one may belong to a person who has one.
    person_cid = rec.groupby("person_id")["citizen_id"].transform("first")
    rec = rec.assign(citizen_id=person_cid)
    parts = [
        _pairs(rec, ["name_key", "birth_date"], named & rec["birth_date"].notna(), "same_name_birth_other_unit", True),
        _pairs(rec, ["name_key", "unit_key"], named & rec["unit_key"].notna(), "same_name_unit_no_birth", False),
    ]
    # Only pairs where one side lacks a birth date belong to the second kind.
    no_birth = set(rec.loc[rec["birth_date"].isna(), "person_id"]) - set(rec.loc[rec["birth_date"].notna(), "person_id"])
    second = parts[1]
    parts[1] = second[second["person_id_a"].isin(no_birth) | second["person_id_b"].isin(no_birth)]
    # Records left out of rule 2 because their group held two different citizen IDs.
    keyed = rec[rec["birth_date"].notna() & named & rec["unit_key"].notna()]
    nunique = keyed.groupby(["name_key", "birth_date", "unit_key"])["citizen_id"].transform("nunique")
    crowded = keyed[nunique >= 2]
    parts.append(_pairs(rec, ["name_key", "birth_date", "unit_key"], rec.index.isin(crowded.index),
                        "namesakes_same_birth_unit", False))
    review = pd.concat([p for p in parts if not p.empty], ignore_index=True) if any(not p.empty for p in parts) else \
        pd.DataFrame(columns=REVIEW_COLUMNS)
    if review.empty:
        return pd.DataFrame(columns=REVIEW_COLUMNS)
    lo = review[["person_id_a", "person_id_b"]].min(axis=1)
    hi = review[["person_id_a", "person_id_b"]].max(axis=1)
    review = review.assign(_lo=lo, _hi=hi).drop_duplicates(["_lo", "_hi", "kind"]).drop(columns=["_lo", "_hi"])
    review = review.sort_values(["kind", "person_id_a", "person_id_b"]).reset_index(drop=True)
    hashed = pd.util.hash_pandas_object(review["kind"] + review["person_id_a"] + review["person_id_b"], index=False).to_numpy()
    review["review_id"] = np.char.add("R", np.char.mod("%016x", hashed))
    return review[REVIEW_COLUMNS]
