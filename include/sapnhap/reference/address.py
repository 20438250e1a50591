"""Old-style address text -> old unit codes -> new unit codes.

Handles "Thôn Nà Lừa, Xã Việt Lâm, Huyện Vị Xuyên, Tỉnh Hà Giang" and its variants: no
diacritics, decomposed Unicode (NFD), abbreviations (P., Q., TT., TX., TP., H., X.),
missing levels. Names collide across the country (there are dozens of "Xã Tân An"), so a
commune is resolved only inside its district or province; an address that stays ambiguous
is reported, never guessed.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import pandas as pd

from sapnhap.reference import Reference
from sapnhap.reference._text import fold
from sapnhap.reference.convert import convert_codes

# Folded leading words -> (level, canonical type). Longest first.
_PREFIXES: list[tuple[tuple[str, ...], str, str]] = [
    (("thanh", "pho"), "city", "Thành phố"),
    (("thi", "tran"), "commune", "Thị trấn"),
    (("thi", "xa"), "district", "Thị xã"),
    (("dac", "khu"), "commune", "Đặc khu"),
    (("phuong",), "commune", "Phường"),
    (("huyen",), "district", "Huyện"),
    (("quan",), "district", "Quận"),
    (("tinh",), "province", "Tỉnh"),
    (("xa",), "commune", "Xã"),
    (("tp",), "city", "Thành phố"),
    (("tt",), "commune", "Thị trấn"),
    (("tx",), "district", "Thị xã"),
    (("p",), "commune", "Phường"),
    (("q",), "district", "Quận"),
    (("h",), "district", "Huyện"),
    (("x",), "commune", "Xã"),
    (("t",), "province", "Tỉnh"),
]
_PROVINCE_ALIASES = {"hcm": "ho chi minh", "tphcm": "ho chi minh", "hn": "ha noi", "sai gon": "ho chi minh"}
_LEVELS = ("province", "district", "commune")


def _stem(folded_words: list[str]) -> str:
    # "Phường 04" and "P.4" name the same ward.
    return " ".join(str(int(w)) if w.isdigit() else w for w in folded_words)


def _classify(part: str) -> tuple[str | None, str | None, str]:
    """Return (level or 'city' or None, canonical type, folded stem) of one address part."""
    words = fold(part).split()
    # "P.4", "Q1", "TP.HCM": a glued abbreviation followed by a number or name.
    if len(words) == 1 and (m := re.fullmatch(r"(p|q|tp|tx|tt)(\d+|hcm)", words[0])):
        words = [m.group(1), m.group(2)]
    for prefix, level, unit_type in _PREFIXES:
        if tuple(words[: len(prefix)]) == prefix and len(words) > len(prefix):
            return level, unit_type, _stem(words[len(prefix) :])
    return None, None, _stem(words)


def parse_address(text: str | None) -> dict:
    """Split an address into detail and administrative parts.

    Returns a dict: detail (street/village part as written, or None), and for each of
    province, district, commune: <level>_type (canonical type word or None) and
    <level>_name (folded name stem, e.g. "viet lam", or None).
    """
    result: dict = {"detail": None}
    for level in _LEVELS:
        result[f"{level}_type"] = None
        result[f"{level}_name"] = None
    if text is None or (isinstance(text, float) and np.isnan(text)):
        return result
    text = unicodedata.normalize("NFC", str(text))
    parts = [p.strip() for p in re.split(r"[,;\n]| - ", text) if p.strip()]
    assigned: set[str] = set()
    cut = len(parts)
    for position in range(len(parts) - 1, -1, -1):
        level, unit_type, stem = _classify(parts[position])
        rightmost = position == len(parts) - 1
        if level == "city":
            level = "province" if rightmost and "province" not in assigned else "district"
        if level is None:
            # An unprefixed part names the next level down, until the commune is found.
            pending = [lv for lv in _LEVELS if lv not in assigned]
            if not pending or "commune" in assigned:
                break
            level = pending[0]
        if level in assigned or any(lower in assigned for lower in _LEVELS[_LEVELS.index(level) + 1 :]):
            break
        assigned.add(level)
        result[f"{level}_type"] = unit_type
        result[f"{level}_name"] = _PROVINCE_ALIASES.get(stem, stem) if level == "province" else stem
        cut = position
        if level == "commune":
            break
    detail = ", ".join(parts[:cut])
    result["detail"] = detail or None
    return result


@dataclass(frozen=True)
class _NameIndex:
    provinces: dict[str, list[str]]
    districts: dict[tuple[str, str], list[str]]  # (province, stem) -> codes
    districts_any: dict[str, list[str]]
    communes: dict[tuple[str, str], list[str]]  # (district, stem) -> codes
    communes_in_province: dict[tuple[str, str], list[str]]
    communes_any: dict[str, list[str]]
    unit_type: dict[tuple[str, str], str]  # (level, code) -> type
    parent: dict[tuple[str, str], str]


def _name_stem(name: str) -> str:
    _, _, stem = _classify(name)
    return stem


@functools.lru_cache(maxsize=4)
def _name_index(ref: Reference) -> _NameIndex:
    units = ref.old_units
    provinces: dict[str, list[str]] = defaultdict(list)
    districts: dict[tuple[str, str], list[str]] = defaultdict(list)
    districts_any: dict[str, list[str]] = defaultdict(list)
    communes: dict[tuple[str, str], list[str]] = defaultdict(list)
    communes_in_province: dict[tuple[str, str], list[str]] = defaultdict(list)
    communes_any: dict[str, list[str]] = defaultdict(list)
    unit_type: dict[tuple[str, str], str] = {}
    parent: dict[tuple[str, str], str] = {}
    for row in units.itertuples(index=False):  # once per Reference, ~11k units
        stem = _name_stem(row.name)
        unit_type[(row.level, row.code)] = row.unit_type
        if row.level == "province":
            provinces[stem].append(row.code)
        elif row.level == "district":
            districts[(row.province_code, stem)].append(row.code)
            districts_any[stem].append(row.code)
            parent[("district", row.code)] = row.province_code
        else:
            communes[(row.parent_code, stem)].append(row.code)
            communes_in_province[(row.province_code, stem)].append(row.code)
            communes_any[stem].append(row.code)
            parent[("commune", row.code)] = row.parent_code
    return _NameIndex(
        dict(provinces), dict(districts), dict(districts_any), dict(communes), dict(communes_in_province),
        dict(communes_any), unit_type, parent
    )


def _prefer_type(codes: list[str], level: str, wanted: str | None, index: _NameIndex) -> list[str]:
    """Among same-name units keep those of the written type (Phường vs Xã), if that decides."""
    if len(codes) <= 1 or wanted is None:
        return codes
    typed = [c for c in codes if index.unit_type.get((level, c)) == wanted]
    return typed or codes


def resolve_address(parsed: dict, ref: Reference) -> dict:
    """Resolve a parsed address to old codes through the parent chain.

    Returns old_province_code, old_district_code, old_commune_code (None where unknown) and
    address_status: 'resolved' (commune found), 'partial' (only province/district),
    'ambiguous' (several units match: not guessed) or 'unparsed'.
    """
    index = _name_index(ref)
    out = {"old_province_code": None, "old_district_code": None, "old_commune_code": None, "address_status": "unparsed"}
    province = district = None
    ambiguous = False
    if parsed["province_name"]:
        codes = index.provinces.get(parsed["province_name"], [])
        if len(codes) == 1:
            province = codes[0]
        elif len(codes) > 1:
            ambiguous = True
    if parsed["district_name"]:
        if province:
            codes = index.districts.get((province, parsed["district_name"]), [])
        else:
            codes = index.districts_any.get(parsed["district_name"], [])
        codes = _prefer_type(codes, "district", parsed["district_type"], index)
        if len(codes) == 1:
            district = codes[0]
            province = province or index.parent[("district", district)]
        elif len(codes) > 1:
            ambiguous = True
    commune = None
    if parsed["commune_name"]:
        if district:
            codes = index.communes.get((district, parsed["commune_name"]), [])
        elif province:
            codes = index.communes_in_province.get((province, parsed["commune_name"]), [])
        else:
            # No parent given: only a name unique in the whole country is taken.
            codes = index.communes_any.get(parsed["commune_name"], [])
        codes = _prefer_type(codes, "commune", parsed["commune_type"], index)
        if len(codes) == 1:
            commune = codes[0]
            district = district or index.parent[("commune", commune)]
            province = province or index.parent[("district", district)]
        elif len(codes) > 1:
            ambiguous = True
    out.update(old_province_code=province, old_district_code=district, old_commune_code=commune)
    if commune:
        out["address_status"] = "resolved"
    elif ambiguous:
        out["address_status"] = "ambiguous"
    elif province or district:
        out["address_status"] = "partial"
    return out


def convert_addresses(
    addresses: pd.Series,
    ref: Reference,
    *,
    rules: pd.DataFrame | None = None,
    decisions: pd.DataFrame | None = None,
    record_keys: pd.Series | None = None,
    record_dates: pd.Series | None = None,
) -> pd.DataFrame:
    """Convert old address texts to old and new unit codes.

    Each distinct text is parsed once (legacy extracts repeat addresses heavily), then the
    codes go through `convert_codes` with the detail part as address detail, so split
    communes are resolved by village/street rules or decisions, or left for review.
    Returns a DataFrame aligned with `addresses`: address_detail, old_province_code,
    old_district_code, old_commune_code, address_status, plus the convert_codes columns.
    """
    codes, uniques = pd.factorize(addresses, use_na_sentinel=True)
    parsed_rows = []
    for text in uniques:
        parsed = parse_address(text)
        parsed_rows.append({"address_detail": parsed["detail"], **resolve_address(parsed, ref)})
    columns = ["address_detail", "old_province_code", "old_district_code", "old_commune_code", "address_status"]
    empty = {"address_detail": None, "old_province_code": None, "old_district_code": None,
             "old_commune_code": None, "address_status": "unparsed"}  # fmt: skip
    table = pd.DataFrame([*parsed_rows, empty], columns=columns)
    frame = table.iloc[np.where(codes < 0, len(uniques), codes)].reset_index(drop=True)
    frame.index = addresses.index
    if record_keys is not None:
        frame["record_key"] = record_keys.to_numpy()
    if record_dates is not None:
        frame["record_date"] = record_dates.to_numpy()
    out = convert_codes(
        frame,
        ref,
        old_commune_col="old_commune_code",
        old_district_col="old_district_code",
        old_province_col="old_province_code",
        address_detail_col="address_detail",
        record_date_col="record_date" if record_dates is not None else None,
        rules=rules,
        decisions=decisions,
        record_key_col="record_key" if record_keys is not None else None,
    )
    return out
