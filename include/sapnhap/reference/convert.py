"""Convert old unit codes on records to new unit codes, vectorized.

A record from a split old commune is never assigned by its code alone: it needs a province
rule (village/street in the address detail) or a decision recorded by the data team;
otherwise it goes to review with its candidate new communes.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from sapnhap.reference import Reference
from sapnhap.reference._text import fold, fold_series

MERGER_DATE = pd.Timestamp("2025-07-01")

METHODS = ["direct", "rule", "decision", "province_only"]
STATUSES = ["mapped", "review", "unknown_code", "missing_code"]
_DIRECT, _RULE, _DECISION, _PROVINCE_ONLY = range(4)
_MAPPED, _REVIEW, _UNKNOWN, _MISSING = range(4)

RESULT_COLUMNS = [
    "new_province_code",
    "new_commune_code",
    "mapping_method",
    "mapping_status",
    "mapping_candidates",
    "crosswalk_version",
    "flag_old_code_after_merger",
]

# Slot for "no such code" in the code -> slot tables below; codes are at most 5 digits.
_NO_SLOT = -1
_MISSING_SLOT = -2


@dataclass(frozen=True)
class _Lookup:
    """Dense arrays indexed by integer code, built once per Reference."""

    commune_slot: np.ndarray  # int code -> slot of old commune (or _NO_SLOT)
    slot_new_commune: np.ndarray  # slot -> index into new_commune_codes (-1 when split)
    slot_new_province: np.ndarray  # slot -> index into new_province_codes (-1 unknown)
    slot_status: np.ndarray  # slot -> _MAPPED / _REVIEW / _UNKNOWN (registry unit not in crosswalk)
    slot_candidates: np.ndarray  # slot -> index into candidates (-1 when not split)
    slot_code: np.ndarray  # slot -> old commune code (str)
    district_new_province: np.ndarray  # int district code -> new province index
    district_special_zone: np.ndarray  # int district code -> new commune index (island districts)
    province_new_province: np.ndarray  # int province code -> new province index
    new_commune_codes: list[str]
    new_province_codes: list[str]
    candidates: list[str]
    candidate_sets: dict[str, frozenset[str]]


@functools.lru_cache(maxsize=8)
def _lookup(ref: Reference) -> _Lookup:
    targets = ref.old_commune_targets
    registry = ref.old_units
    registry_communes = registry.loc[registry["level"] == "commune", ["code", "province_code"]]
    extra = registry_communes[~registry_communes["code"].isin(targets["old_commune_code"])]
    new_units = ref.new_units
    new_commune_codes = sorted(new_units.loc[new_units["level"] == "commune", "code"].unique())
    new_province_codes = sorted(new_units.loc[new_units["level"] == "province", "code"].unique())
    commune_pos = {code: i for i, code in enumerate(new_commune_codes)}
    province_pos = {code: i for i, code in enumerate(new_province_codes)}
    old_to_new = ref.old_to_new_province

    slot_code = np.concatenate([targets["old_commune_code"].to_numpy(dtype=object), extra["code"].to_numpy(dtype=object)])
    n_slots = len(slot_code)
    commune_slot = np.full(100_000, _NO_SLOT, dtype=np.int32)
    commune_slot[slot_code.astype(np.int64)] = np.arange(n_slots, dtype=np.int32)

    slot_new_commune = np.full(n_slots, -1, dtype=np.int32)
    direct = ~targets["is_split"].to_numpy()
    slot_new_commune[: len(targets)][direct] = [commune_pos[c] for c in targets.loc[direct, "new_commune_code"]]
    new_province_of_slot = list(targets["new_province_code"]) + [old_to_new.get(p) for p in extra["province_code"]]
    slot_new_province = np.array([province_pos.get(p, -1) if p else -1 for p in new_province_of_slot], dtype=np.int32)
    slot_status = np.full(n_slots, _UNKNOWN, dtype=np.int8)
    slot_status[: len(targets)] = np.where(direct, _MAPPED, _REVIEW)
    candidates = sorted(targets.loc[~direct, "candidates"].unique())
    candidate_pos = {c: i for i, c in enumerate(candidates)}
    slot_candidates = np.full(n_slots, -1, dtype=np.int32)
    slot_candidates[: len(targets)][~direct] = [candidate_pos[c] for c in targets.loc[~direct, "candidates"]]

    districts = registry[registry["level"] == "district"]
    district_new_province = np.full(1_000, -1, dtype=np.int32)
    district_new_province[districts["code"].astype(int).to_numpy()] = [
        province_pos.get(old_to_new.get(p, ""), -1) for p in districts["province_code"]
    ]
    district_special_zone = np.full(1_000, -1, dtype=np.int32)
    islands = ref.island_districts
    district_special_zone[islands["old_district_code"].astype(int).to_numpy()] = [
        commune_pos[c] for c in islands["new_commune_code"]
    ]
    province_new_province = np.full(100, -1, dtype=np.int32)
    for old, new in old_to_new.items():
        province_new_province[int(old)] = province_pos[new]
    return _Lookup(
        commune_slot=commune_slot,
        slot_new_commune=slot_new_commune,
        slot_new_province=slot_new_province,
        slot_status=slot_status,
        slot_candidates=slot_candidates,
        slot_code=slot_code,
        district_new_province=district_new_province,
        district_special_zone=district_special_zone,
        province_new_province=province_new_province,
        new_commune_codes=new_commune_codes,
        new_province_codes=new_province_codes,
        candidates=candidates,
        candidate_sets={c: frozenset(c.split("|")) for c in candidates},
    )


def _normalize_code_text(values: np.ndarray, width: int) -> np.ndarray:
    """Return integer codes for distinct raw values (-2 for empty, -1 for not a code)."""
    out = np.full(len(values), _NO_SLOT, dtype=np.int64)
    for i, value in enumerate(values):  # distinct values only: a few thousand at most
        if value is None or (isinstance(value, float) and math.isnan(value)):
            out[i] = _MISSING_SLOT
            continue
        if isinstance(value, (int, np.integer)) or (isinstance(value, float) and value.is_integer()):
            number = int(value)
            out[i] = number if 0 <= number < 10**width else _NO_SLOT
            continue
        text = str(value).strip()
        if text == "":
            out[i] = _MISSING_SLOT
        elif text.isdigit() and len(text) <= width:
            out[i] = int(text)
    return out


def _encode(values: pd.Series, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Return (row_index, distinct): each row's position in `distinct`, the int codes of the
    distinct raw values (-2 missing, -1 not a code). No per-row Python.

    Strings are dictionary-encoded (pyarrow, or the categories of a categorical) so only
    distinct values are inspected; integer columns (codes that lost their leading zeros)
    index a table of all possible codes.
    """
    if isinstance(values.dtype, pd.CategoricalDtype):
        distinct = _normalize_code_text(values.cat.categories.to_numpy(dtype=object), width)
        distinct = np.append(distinct, _MISSING_SLOT)
        codes = values.cat.codes.to_numpy()
        return np.where(codes < 0, len(distinct) - 1, codes), distinct
    every_code = np.append(np.arange(10**width, dtype=np.int64), [_NO_SLOT, _MISSING_SLOT])
    if pd.api.types.is_integer_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype):
        numbers = values.to_numpy(dtype=np.int64, na_value=-10)
        index = np.where((numbers >= 0) & (numbers < 10**width), numbers, 10**width)
        return np.where(numbers == -10, 10**width + 1, index), every_code
    try:
        array = pa.array(values, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        # Mixed object columns (text and numbers): inspect distinct values only.
        codes, uniques = pd.factorize(values, use_na_sentinel=True)
        distinct = np.append(_normalize_code_text(np.asarray(uniques, dtype=object), width), _MISSING_SLOT)
        return np.where(codes < 0, len(distinct) - 1, codes), distinct
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if pa.types.is_floating(array.type):
        numbers = values.to_numpy(dtype=np.float64, na_value=np.nan)
        ok = np.isfinite(numbers) & (numbers >= 0) & (numbers < 10**width) & (numbers == np.floor(numbers))
        index = np.where(ok, np.nan_to_num(numbers).astype(np.int64), 10**width)
        return np.where(np.isnan(numbers), 10**width + 1, index), every_code
    if pa.types.is_integer(array.type):
        return _encode(pd.Series(array.to_pandas(), dtype="Int64"), width)
    if pa.types.is_null(array.type):
        return np.zeros(len(values), dtype=np.intp), np.array([_MISSING_SLOT], dtype=np.int64)
    if not (pa.types.is_string(array.type) or pa.types.is_large_string(array.type)):
        array = pc.cast(array, pa.string())
    encoded = pc.dictionary_encode(array)
    distinct = _normalize_code_text(np.asarray(encoded.dictionary.to_pylist(), dtype=object), width)
    distinct = np.append(distinct, _MISSING_SLOT)
    indices = encoded.indices
    if indices.null_count:
        indices = pc.fill_null(indices, len(distinct) - 1)
    return indices.to_numpy(zero_copy_only=False), distinct


def encode_codes(values: pd.Series, width: int) -> np.ndarray:
    """Return each row's code as an int64 (-2 missing, -1 not a code), without per-row Python."""
    index, distinct = _encode(values, width)
    return distinct[index]


def _rule_regex(pattern: str) -> str:
    # Whole phrase on word boundaries, not continued by a number ("Tổ dân phố 3" != "... 30",
    # "Thôn Nà Lừa" != "Thôn Nà Lừa 2").
    return r"(?<![0-9a-z])" + r"\s+".join(re.escape(word) for word in fold(pattern).split()) + r"(?![0-9a-z])(?!\s+\d)"


def _apply_rules(old_codes: np.ndarray, details: pd.Series, rules: pd.DataFrame, lookup: _Lookup) -> np.ndarray:
    """Return, for each review row, the new commune index a rule assigns (-1 if none or ambiguous)."""
    result = np.full(len(old_codes), -1, dtype=np.int64)
    if rules is None or rules.empty or len(old_codes) == 0:
        return result
    commune_pos = {code: i for i, code in enumerate(lookup.new_commune_codes)}
    rules = rules.assign(
        old_commune_code=rules["old_commune_code"].astype(str).str.zfill(5),
        new_commune_code=rules["new_commune_code"].astype(str).str.zfill(5),
    )
    _validate_targets(rules, lookup, "rule")
    rules = rules[rules["old_commune_code"].isin(set(old_codes))]
    if rules.empty:
        return result
    folded = fold_series(details.reset_index(drop=True)).fillna("")
    hit_rows: list[np.ndarray] = []
    hit_targets: list[np.ndarray] = []
    # One vectorized regex per rule over the rows of its commune: rules are few, rows many.
    for code, group in rules.groupby("old_commune_code"):
        positions = np.flatnonzero(old_codes == code)
        texts = folded.iloc[positions]
        for pattern, target in zip(group["pattern"], group["new_commune_code"], strict=True):
            matched = texts.str.contains(_rule_regex(pattern), regex=True).to_numpy(dtype=bool)
            hit_rows.append(positions[matched])
            hit_targets.append(np.full(int(matched.sum()), commune_pos[target], dtype=np.int64))
    rows = np.concatenate(hit_rows)
    targets = np.concatenate(hit_targets)
    if len(rows) == 0:
        return result
    hits = pd.DataFrame({"row": rows, "target": targets}).drop_duplicates()
    per_row = hits.groupby("row")["target"].agg(["nunique", "first"])
    # Two rules pointing to different communes for one record: ambiguous, left for review.
    unique = per_row[per_row["nunique"] == 1]
    result[unique.index.to_numpy()] = unique["first"].to_numpy()
    return result


def _validate_targets(table: pd.DataFrame, lookup: _Lookup, what: str) -> pd.Series:
    """Return a mask of rows whose new_commune_code is a candidate of their old commune.

    For rules an invalid target is a defect of the rules file and raises ValueError.
    """
    slots = lookup.commune_slot[pd.to_numeric(table["old_commune_code"], errors="coerce").fillna(-1).astype(int).clip(-1, 99_999)]
    cand_index = np.where(slots >= 0, lookup.slot_candidates[np.maximum(slots, 0)], -1)
    ok = np.array(
        [
            c >= 0 and target in lookup.candidate_sets[lookup.candidates[c]]
            for c, target in zip(cand_index, table["new_commune_code"], strict=True)
        ],
        dtype=bool,
    )
    if what == "rule" and not ok.all():
        bad = table.loc[~ok, ["old_commune_code", "pattern", "new_commune_code"]]
        raise ValueError(f"split rules whose old commune is not split or whose target is not a candidate:\n{bad}")
    return pd.Series(ok, index=table.index)


def _apply_decisions(
    keys: pd.Series, old_codes: np.ndarray, decisions: pd.DataFrame, lookup: _Lookup
) -> np.ndarray:
    """Return, for each review row, the new commune index the data team decided (-1 if none)."""
    result = np.full(len(old_codes), -1, dtype=np.int64)
    if decisions is None or decisions.empty or len(old_codes) == 0:
        return result
    table = decisions.assign(
        record_key=decisions["record_key"].astype(str),
        old_commune_code=decisions["old_commune_code"].astype(str).str.zfill(5),
        new_commune_code=decisions["new_commune_code"].astype(str).str.zfill(5),
    )
    # A decision whose target is no longer a candidate (e.g. after a new reference
    # version) is not applied: the record goes back to review.
    table = table[_validate_targets(table, lookup, "decision")]
    if "decided_at" in table.columns:
        table = table.sort_values("decided_at")
    table = table.drop_duplicates(["record_key", "old_commune_code"], keep="last")
    commune_pos = {code: i for i, code in enumerate(lookup.new_commune_codes)}
    table = table.assign(target=table["new_commune_code"].map(commune_pos))
    rows = pd.DataFrame({"record_key": keys.astype(str).to_numpy(), "old_commune_code": old_codes})
    merged = rows.merge(table[["record_key", "old_commune_code", "target"]], how="left", on=["record_key", "old_commune_code"])
    found = merged["target"].notna().to_numpy()
    result[found] = merged.loc[found, "target"].astype(np.int64).to_numpy()
    return result


def _record_dates(values: pd.Series) -> np.ndarray:
    """Return record dates as datetime64 (NaT if unparseable); dd/mm/yyyy strings accepted."""
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        return values.to_numpy(dtype="datetime64[ns]")
    # Legacy exports repeat few distinct dates: parse each distinct value once.
    codes, uniques = pd.factorize(values)
    parsed = pd.to_datetime(pd.Series(uniques, dtype=object).astype(str), dayfirst=True, errors="coerce", format="mixed")
    parsed_values = parsed.to_numpy(dtype="datetime64[ns]")
    return np.where(codes >= 0, parsed_values[np.maximum(codes, 0)], np.datetime64("NaT"))


def convert_codes(
    df: pd.DataFrame,
    ref: Reference,
    *,
    old_commune_col: str | None = "old_commune_code",
    old_district_col: str | None = None,
    old_province_col: str | None = None,
    address_detail_col: str | None = None,
    record_date_col: str | None = None,
    rules: pd.DataFrame | None = None,
    decisions: pd.DataFrame | None = None,
    record_key_col: str | None = None,
) -> pd.DataFrame:
    """Return a copy of `df` with the new unit codes of each record's old unit codes.

    Added columns (categoricals; missing values are NA):
      new_province_code, new_commune_code (NA when not resolved),
      mapping_method ('direct' | 'rule' | 'decision' | 'province_only' | NA),
      mapping_status ('mapped' | 'review' | 'unknown_code' | 'missing_code'),
      mapping_candidates ("02345|02350" for split communes left for review, else NA),
      crosswalk_version, flag_old_code_after_merger (bool: record date >= 2025-07-01 and the
      record still carries an old commune code).

    Split old communes are resolved only by `rules` (columns old_commune_code, match_kind,
    pattern, new_commune_code; matched in `address_detail_col`), then by `decisions`
    (record_key, old_commune_code, new_commune_code, decided_by, decided_at; matched on
    `record_key_col`); otherwise they stay 'review'. A record without a commune code but
    from an island district (Bạch Long Vĩ, Cồn Cỏ, Hoàng Sa, Lý Sơn, Côn Đảo) maps directly
    to its special zone. Old codes that lost their leading zeros (ints) are accepted.
    """
    lookup = _lookup(ref)
    n = len(df)
    if old_commune_col is None:
        row_index, distinct = np.zeros(n, dtype=np.intp), np.array([_MISSING_SLOT], dtype=np.int64)
    else:
        row_index, distinct = _encode(df[old_commune_col], 5)

    # Everything is decided once per distinct code, then taken row by row with numpy.
    d_slot = np.where(distinct >= 0, lookup.commune_slot[np.clip(distinct, 0, 99_999)], distinct)
    d_known = d_slot >= 0
    d_safe = np.maximum(d_slot, 0)
    d_status = np.where(d_known, lookup.slot_status[d_safe], np.where(d_slot == _MISSING_SLOT, _MISSING, _UNKNOWN))
    d_new_commune = np.where(d_known, lookup.slot_new_commune[d_safe], -1)
    d_new_province = np.where(d_known, lookup.slot_new_province[d_safe], -1)
    d_candidates = np.where(d_known & (d_status == _REVIEW), lookup.slot_candidates[d_safe], -1)
    d_method = np.where(d_status == _MAPPED, _DIRECT, np.where(d_new_province >= 0, _PROVINCE_ONLY, -1))

    status = d_status.astype(np.int8)[row_index]
    new_commune = d_new_commune.astype(np.int32)[row_index]
    new_province = d_new_province.astype(np.int16)[row_index]
    candidates = d_candidates.astype(np.int32)[row_index]
    method = d_method.astype(np.int8)[row_index]

    # Without a usable commune code the old district or province still gives the new province.
    if old_district_col is not None:
        districts = encode_codes(df[old_district_col], 3)
        dsafe = np.clip(districts, 0, 999)
        has_district = districts >= 0
        island = has_district & (lookup.district_special_zone[dsafe] >= 0) & (status == _MISSING)
        new_commune[island] = lookup.district_special_zone[dsafe][island]
        status[island] = _MAPPED
        method[island] = _DIRECT
        fill = (new_province < 0) & has_district
        new_province[fill] = lookup.district_new_province[dsafe][fill]
    if old_province_col is not None:
        provinces = encode_codes(df[old_province_col], 2)
        fill = (new_province < 0) & (provinces >= 0)
        new_province[fill] = lookup.province_new_province[np.clip(provinces, 0, 99)][fill]
    if old_district_col is not None or old_province_col is not None:
        method[(method < 0) & (new_province >= 0)] = _PROVINCE_ONLY

    review = np.flatnonzero(status == _REVIEW)
    if len(review):
        review_codes = lookup.slot_code[d_slot[row_index[review]]]
        if rules is not None and address_detail_col is not None:
            assigned = _apply_rules(review_codes, df[address_detail_col].iloc[review], rules, lookup)
            hit = assigned >= 0
            rows = review[hit]
            new_commune[rows] = assigned[hit]
            status[rows] = _MAPPED
            method[rows] = _RULE
            candidates[rows] = -1
            review, review_codes = review[~hit], review_codes[~hit]
        if decisions is not None and record_key_col is not None and len(review):
            assigned = _apply_decisions(df[record_key_col].iloc[review], review_codes, decisions, lookup)
            hit = assigned >= 0
            rows = review[hit]
            new_commune[rows] = assigned[hit]
            status[rows] = _MAPPED
            method[rows] = _DECISION
            candidates[rows] = -1

    if record_date_col is not None:
        dates = _record_dates(df[record_date_col])
        after = dates >= np.datetime64(MERGER_DATE.to_datetime64())
        flag = after & (distinct != _MISSING_SLOT)[row_index]
    else:
        flag = np.zeros(n, dtype=bool)

    out = df.copy(deep=False)
    index = out.index
    out["new_province_code"] = pd.Series(
        pd.Categorical.from_codes(new_province, categories=lookup.new_province_codes), index=index
    )
    out["new_commune_code"] = pd.Series(pd.Categorical.from_codes(new_commune, categories=lookup.new_commune_codes), index=index)
    out["mapping_method"] = pd.Series(pd.Categorical.from_codes(method, categories=METHODS), index=index)
    out["mapping_status"] = pd.Series(pd.Categorical.from_codes(status, categories=STATUSES), index=index)
    out["mapping_candidates"] = pd.Series(
        pd.Categorical.from_codes(candidates, categories=lookup.candidates), index=index
    )
    out["crosswalk_version"] = pd.Series(
        pd.Categorical.from_codes(np.zeros(n, dtype=np.int8), categories=[ref.version]), index=index
    )
    out["flag_old_code_after_merger"] = flag
    return out
