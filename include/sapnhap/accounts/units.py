"""Unit helpers of the accounts work: district-level rows, new unit names, mail slugs."""

from __future__ import annotations

import pandas as pd

from sapnhap.reference._text import UNIT_TYPE_PREFIXES, fold_series


def complete_units(frame: pd.DataFrame, ref) -> pd.DataFrame:  # noqa: ANN001 - Reference
    """Fill ``new_province_code`` (and ``old_province_code``) of rows that name only their old district.

    The nightly transform maps units by commune code; staff of a former district have none,
    so their new province comes from the district's old province here.
    """
    out = frame.copy()
    old = ref.old_units
    districts = old[old["level"] == "district"].set_index("code")["province_code"]
    district = out["unit_district_code"].astype("string")
    old_province = district.map(districts)
    if "old_province_code" in out:
        out["old_province_code"] = out["old_province_code"].where(out["old_province_code"].notna(), old_province)
    else:
        out["old_province_code"] = old_province
    new_province = old_province.map(ref.old_to_new_province)
    current = out["new_province_code"] if "new_province_code" in out else pd.Series(None, index=out.index, dtype=object)
    out["new_province_code"] = current.astype(object).where(current.notna(), new_province.astype(object))
    for col in ("new_province_code", "old_province_code", "new_commune_code"):
        if col in out:
            out[col] = out[col].astype(object).where(out[col].notna(), None)
    return out


def commune_slugs(ref) -> pd.DataFrame:  # noqa: ANN001 - Reference
    """New communes in force with their mail slug: 'Xã Vị Xuyên' -> 'vixuyen'.

    Columns: code, name, province_code, slug. Two communes of one province with the same slug
    (a Xã and a Phường of one name) both get their code appended, so slugs stay unique.
    """
    units = ref.current_new_units()
    communes = units[units["level"] == "commune"][["code", "name", "province_code"]].copy()
    bare = communes["name"].astype("string")
    for prefix in UNIT_TYPE_PREFIXES:
        bare = bare.str.replace(rf"^{prefix}\s+", "", regex=True)
    communes["slug"] = fold_series(bare).str.replace(" ", "", regex=False).astype(object)
    clash = communes.duplicated(["province_code", "slug"], keep=False)
    communes.loc[clash, "slug"] = communes.loc[clash, "slug"] + communes.loc[clash, "code"]
    return communes.reset_index(drop=True)


def province_names(ref) -> pd.Series:  # noqa: ANN001 - Reference
    units = ref.current_new_units()
    return units[units["level"] == "province"].set_index("code")["name"]
