"""Build the project's versioned reference dataset from the official raw files.

Run::

    python -m sapnhap.reference.importer \\
        --nso ../shared/reference/nso_bang_chuyen_doi_dvhc_2025.xlsx \\
        --old-units ../shared/reference/old_units_2025-01-04.csv \\
        --new-units ../shared/reference/new_units_2026-07.sql \\
        --out include/sapnhap/reference/data

It writes three dataset versions (each a directory that is never edited afterwards):

- ``gso-2025.01``: old provinces/districts/communes (scheme "old"), as of 2025-01-04,
  valid until 2025-06-30;
- ``nso-2025.07``: new provinces/communes (scheme "new") effective 2025-07-01 and the NSO
  crosswalk old commune -> new commune, with the reviewed errata applied;
- ``vpd-2026.07``: the new-units list generated 2026-07-12 (later resolutions), with the
  crosswalk re-keyed to its codes.

If a version directory already exists with different content the importer refuses to
overwrite it: a later official file must get a new version id.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import hashlib
import io
import json
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openpyxl
import pandas as pd
import yaml

from sapnhap.reference._text import fold, normalize_name, unit_type_of
from sapnhap.storage import sha256_file

NSO_SHEET = "Tổng hợp_không merge "
OLD_VERSION = "gso-2025.01"
NSO_VERSION = "nso-2025.07"
VPD_VERSION = "vpd-2026.07"

OLD_VALID_TO = "2025-06-30"
NEW_VALID_FROM = "2025-07-01"
# The 2026-07 list carries no effective date of its own; the date it was generated is the
# earliest date we can vouch for.
VPD_VALID_FROM = "2026-07-12"
NSO_VALID_TO = "2026-07-11"

UNIT_COLUMNS = [
    "scheme",
    "level",
    "code",
    "name",
    "unit_type",
    "parent_code",
    "province_code",
    "valid_from",
    "valid_to",
]
# Old units carry where they are attested: the GSO list, or only the NSO table (units
# created between 2025-01-04 and 2025-06-30).
OLD_UNIT_COLUMNS = [*UNIT_COLUMNS, "source"]
CROSSWALK_COLUMNS = [
    "old_province_code",
    "old_district_code",
    "old_commune_code",
    "old_commune_name",
    "old_unit_level",
    "new_province_code",
    "new_commune_code",
    "new_commune_name",
    "note",
    "is_split",
    "n_targets",
    "errata",
]

ERRATA_PATH = Path(__file__).with_name("errata.yaml")
_CODE_IN_PARENS = re.compile(r"^(.*?)\s*\((\d+)\)\s*$")

# Notes in the table are free text with typos and stray spaces; these are the reviewed
# spellings they fold to (key: folded text).
_NOTE_FIXES = {
    "nhap mot phan": "Nhập một phần",
    "nhap toan bo": "Nhập toàn bộ",
    "giu nguyen": "Giữ nguyên",
    "nhap mot phan dien tich": "Nhập một phần diện tích",
    "nhap mot phan dien tich toan bo dan so": "Nhập một phần diện tích, toàn bộ dân số",
    "nhap mot phan dan so": "Nhập một phần dân số",
    "nhap toan bo dien tich": "Nhập toàn bộ diện tích",
    "doi ten": "Đổi tên",
    "doi loai hinh": "Đổi loại hình",
}


def pad_code(value: Any, width: int) -> str | None:
    """Return a GSO code as a zero-padded string ('1558' or 1558 -> '01558'), None if empty."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    if not text:
        return None
    if not text.isdigit():
        raise ValueError(f"not a GSO code: {value!r}")
    return text.zfill(width)


def split_name_code(value: Any) -> tuple[str | None, str | None]:
    """Parse a 'Name (code)' cell into (name, code); (None, None) if empty."""
    text = normalize_name(value)
    if text is None:
        return None, None
    match = _CODE_IN_PARENS.match(text)
    if not match:
        raise ValueError(f"expected 'Name (code)', got {value!r}")
    return match.group(1).strip(), match.group(2)


def normalize_note(value: Any) -> str | None:
    """Return the reviewed spelling of a crosswalk note (typos and extra spaces fixed)."""
    text = normalize_name(value)
    if text is None:
        return None
    text = text.replace("Nhâp", "Nhập")
    return _NOTE_FIXES.get(fold(text), text)


# ---------------------------------------------------------------------------------------
# Raw readers


@dataclass
class NsoTable:
    """Rows of the NSO flat sheet and what the reader skipped."""

    rows: pd.DataFrame
    skipped_section_rows: int = 0
    skipped_rows_without_old_code: list[dict[str, Any]] = field(default_factory=list)
    new_codes_stored_as_numbers: int = 0
    old_codes_stored_as_numbers: int = 0


def read_nso_table(path: Path) -> NsoTable:
    """Read the flat NSO sheet into one row per (old commune, new commune) pair.

    Section titles and blank lines are skipped; rows without an old commune code (the
    island districts and an unnamed coastal area) are set aside for errata/provenance.
    """
    workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
    sheet = workbook[NSO_SHEET]
    records: list[dict[str, Any]] = []
    result = NsoTable(rows=pd.DataFrame())
    for index, raw in enumerate(sheet.iter_rows(values_only=True)):
        if index < 2:  # two header rows
            continue
        cells = list(raw[:8]) + [None] * (8 - len(raw[:8]))
        new_province, new_name, new_code, old_name, old_code, note, old_district, old_province = cells
        if new_code is None or normalize_name(new_name) is None:
            result.skipped_section_rows += 1
            continue
        if old_code is None or str(old_code).strip() == "":
            result.skipped_rows_without_old_code.append(
                {
                    "sheet_row": index + 1,
                    "new_commune_code": pad_code(new_code, 5),
                    "new_commune_name": normalize_name(new_name),
                    "old_name": normalize_name(old_name),
                    "old_district": normalize_name(old_district),
                    "old_province": normalize_name(old_province),
                }
            )
            continue
        result.new_codes_stored_as_numbers += not isinstance(new_code, str)
        result.old_codes_stored_as_numbers += not isinstance(old_code, str)
        _, new_province_code = split_name_code(new_province)
        old_district_name, old_district_code = split_name_code(old_district)
        _, old_province_code = split_name_code(old_province)
        records.append(
            {
                "sheet_row": index + 1,
                "old_province_code": pad_code(old_province_code, 2),
                "old_district_code": pad_code(old_district_code, 3),
                "old_district_name": old_district_name,
                "old_commune_code": pad_code(old_code, 5),
                "old_commune_name": normalize_name(old_name),
                "old_unit_level": "commune",
                "new_province_code": pad_code(new_province_code, 2),
                "new_province_name": split_name_code(new_province)[0],
                "new_commune_code": pad_code(new_code, 5),
                "new_commune_name": normalize_name(new_name),
                "note_raw": "" if note is None else str(note),
                "note": normalize_note(note),
            }
        )
    workbook.close()
    result.rows = pd.DataFrame.from_records(records)
    return result


def read_old_units(path: Path) -> pd.DataFrame:
    """Read the GSO old-unit list (2025-01-04) into the unit table (scheme 'old')."""
    raw = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    raw.columns = ["province", "province_code", "district", "district_code", "commune", "commune_code", "level", "name_en"]
    for column in ("province", "district", "commune"):
        raw[column] = raw[column].map(normalize_name)
    provinces = raw.drop_duplicates("province_code")[["province_code", "province"]]
    districts = raw.drop_duplicates("district_code")[["district_code", "district", "province_code"]]
    communes = raw[raw["commune_code"] != ""]
    frames = [
        pd.DataFrame(
            {
                "level": "province",
                "code": provinces["province_code"],
                "name": provinces["province"],
                "unit_type": provinces["province"].map(unit_type_of),
                "parent_code": None,
                "province_code": provinces["province_code"],
            }
        ),
        pd.DataFrame(
            {
                "level": "district",
                "code": districts["district_code"],
                "name": districts["district"],
                "unit_type": districts["district"].map(unit_type_of),
                "parent_code": districts["province_code"],
                "province_code": districts["province_code"],
            }
        ),
        pd.DataFrame(
            {
                "level": "commune",
                "code": communes["commune_code"],
                "name": communes["commune"],
                "unit_type": communes["level"].map(normalize_name),
                "parent_code": communes["district_code"],
                "province_code": communes["province_code"],
            }
        ),
    ]
    units = pd.concat(frames, ignore_index=True)
    units.insert(0, "scheme", "old")
    # The list is a snapshot: units existed before 2025-01-04, from dates it does not give.
    units["valid_from"] = None
    units["valid_to"] = OLD_VALID_TO
    units["source"] = "gso-2025-01-04"
    return units[OLD_UNIT_COLUMNS]


def add_table_only_old_communes(old_units: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """Append old communes that the NSO table names but the 2025-01-04 list lacks.

    They were created between the list date and 2025-06-30 (e.g. wards of Mộc Châu, re-coded
    wards of Hồ Chí Minh City); the table is their only attestation.
    """
    known = set(old_units.loc[old_units["level"] == "commune", "code"])
    pairs = rows[(rows["old_unit_level"] == "commune") & ~rows["old_commune_code"].isin(known)]
    added = pairs.drop_duplicates("old_commune_code")
    frame = pd.DataFrame(
        {
            "scheme": "old",
            "level": "commune",
            "code": added["old_commune_code"],
            "name": added["old_commune_name"],
            "unit_type": added["old_commune_name"].map(unit_type_of),
            "parent_code": added["old_district_code"],
            "province_code": added["old_province_code"],
            "valid_from": None,
            "valid_to": OLD_VALID_TO,
            "source": "nso-2025",
        }
    )
    units = pd.concat([old_units, frame], ignore_index=True)
    order = units["level"].map({"province": 0, "district": 1, "commune": 2})
    return (
        units.assign(_order=order).sort_values(["_order", "code"]).drop(columns="_order").reset_index(drop=True)
    )


_SQL_VALUE = re.compile(r"'((?:[^']|'')*)'|(-?\d+)|(NULL)")
_SQL_TUPLE = re.compile(r"^\((.*)\)[,;]\s*$")


def _sql_values(text: str) -> list[str | None]:
    values: list[str | None] = []
    for quoted, number, null in _SQL_VALUE.findall(text):
        if null:
            values.append(None)
        elif number:
            values.append(number)
        else:
            values.append(quoted.replace("''", "'"))
    return values


def read_new_units_sql(path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Parse the vietnamese-provinces-database SQL dump into (provinces, wards) frames."""
    tables: dict[str, list[list[str | None]]] = {"provinces": [], "wards": []}
    current: str | None = None
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        head = re.match(r"INSERT INTO (\w+)\(", stripped)
        if head:
            current = head.group(1) if head.group(1) in tables else None
            continue
        if current and (match := _SQL_TUPLE.match(stripped)):
            tables[current].append(_sql_values(match.group(1)))
            if stripped.endswith(";"):
                current = None
    provinces = pd.DataFrame(
        tables["provinces"],
        columns=["code", "name", "name_en", "full_name", "full_name_en", "code_name", "administrative_unit_id"],
    )
    wards = pd.DataFrame(
        tables["wards"],
        columns=["code", "name", "name_en", "full_name", "full_name_en", "code_name", "province_code", "administrative_unit_id"],
    )
    return provinces, wards


# ---------------------------------------------------------------------------------------
# Errata


def load_errata(path: Path = ERRATA_PATH) -> list[dict[str, Any]]:
    """Return the reviewed errata entries (id, what, reason, action)."""
    entries = yaml.safe_load(path.read_text(encoding="utf-8"))
    for entry in entries:
        missing = {"id", "what", "reason", "action"} - set(entry)
        if missing:
            raise ValueError(f"erratum {entry.get('id')!r} lacks {sorted(missing)}")
    return entries


def apply_errata(rows: pd.DataFrame, errata: list[dict[str, Any]]) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """Apply the errata to the NSO rows; return (rows, applied list with row counts).

    Raises ValueError when an erratum matches a different number of rows than reviewed.
    """
    rows = rows.copy()
    rows["errata"] = ""
    applied: list[dict[str, Any]] = []
    for entry in errata:
        action = entry["action"]
        kind = action["kind"]
        expected = action.get("expected_matches")
        if kind == "add":
            added = pd.DataFrame(action["rows"])
            added["old_commune_code"] = None
            added["old_commune_name"] = None
            added["old_unit_level"] = "district"
            added["errata"] = entry["id"]
            count = len(added)
            rows = pd.concat([rows, added], ignore_index=True)
        else:
            mask = pd.Series(True, index=rows.index)
            for column, value in action["match"].items():
                mask &= rows[column] == value
            if kind == "rename_new_unit":
                mask &= rows["new_commune_name"] != action["set"]["new_commune_name"]
            count = int(mask.sum())
            if kind in ("set", "rename_new_unit"):
                for column, value in action["set"].items():
                    rows.loc[mask, column] = value
            elif kind != "annotate":
                raise ValueError(f"erratum {entry['id']}: unknown action kind {kind!r}")
            rows.loc[mask, "errata"] = (rows.loc[mask, "errata"] + "," + entry["id"]).str.lstrip(",")
        if expected is not None and count != expected:
            raise ValueError(f"erratum {entry['id']} matched {count} rows, reviewed for {expected}")
        applied.append({"id": entry["id"], "kind": kind, "what": entry["what"], "rows": count})
    return rows, applied


# ---------------------------------------------------------------------------------------
# Building the versions


def build_crosswalk(rows: pd.DataFrame) -> pd.DataFrame:
    """Return the crosswalk table (one row per old unit -> new commune pair), sorted."""
    crosswalk = rows.copy()
    commune_rows = crosswalk["old_unit_level"] == "commune"
    targets = (
        crosswalk[commune_rows].groupby("old_commune_code")["new_commune_code"].nunique().rename("n_targets")
    )
    crosswalk["n_targets"] = crosswalk["old_commune_code"].map(targets).fillna(1).astype(int)
    crosswalk["is_split"] = crosswalk["n_targets"] > 1
    crosswalk["errata"] = crosswalk["errata"].replace("", None)
    crosswalk = crosswalk.sort_values(
        ["old_province_code", "old_district_code", "old_commune_code", "new_commune_code"], na_position="first"
    )
    return crosswalk[CROSSWALK_COLUMNS].reset_index(drop=True)


def build_nso_new_units(rows: pd.DataFrame, sql_provinces: pd.DataFrame) -> pd.DataFrame:
    """Return the new provinces and communes of the NSO 2025 table (scheme 'new')."""
    communes = rows.drop_duplicates("new_commune_code")[["new_commune_code", "new_commune_name", "new_province_code"]]
    province_names = sql_provinces.set_index("code")["full_name"].map(normalize_name)
    provinces = pd.DataFrame({"code": sorted(rows["new_province_code"].unique())})
    provinces["name"] = provinces["code"].map(province_names)
    units = pd.concat(
        [
            pd.DataFrame(
                {
                    "level": "province",
                    "code": provinces["code"],
                    "name": provinces["name"],
                    "unit_type": provinces["name"].map(unit_type_of),
                    "parent_code": None,
                    "province_code": provinces["code"],
                }
            ),
            pd.DataFrame(
                {
                    "level": "commune",
                    "code": communes["new_commune_code"],
                    "name": communes["new_commune_name"],
                    "unit_type": communes["new_commune_name"].map(unit_type_of),
                    "parent_code": communes["new_province_code"],
                    "province_code": communes["new_province_code"],
                }
            ),
        ],
        ignore_index=True,
    )
    units.insert(0, "scheme", "new")
    units["valid_from"] = NEW_VALID_FROM
    units["valid_to"] = None
    return _sort_units(units)


def _sort_units(units: pd.DataFrame) -> pd.DataFrame:
    order = units["level"].map({"province": 0, "district": 1, "commune": 2})
    return (
        units.assign(_order=order)
        .sort_values(["_order", "code", "valid_from"], na_position="first")
        .drop(columns="_order")[UNIT_COLUMNS]
        .reset_index(drop=True)
    )


_VPD_TYPES = {"1": "Thành phố", "2": "Tỉnh", "3": "Phường", "4": "Xã", "5": "Đặc khu"}


def build_vpd_version(
    nso_units: pd.DataFrame, nso_crosswalk: pd.DataFrame, sql_provinces: pd.DataFrame, sql_wards: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame, list[dict[str, Any]]]:
    """Return (new_units, crosswalk, changes) for the 2026-07 new-units list.

    Units whose code, type or (accent-folded) name differ from the NSO list get
    valid_from 2026-07-12; the NSO units they replace stay with valid_to 2026-07-11.
    NSO codes absent from the 2026 list are re-keyed to the 2026 unit with the same
    folded name in the same province (e.g. Xã Ba Chẽ 06970 -> 06978).
    """
    wards = pd.DataFrame(
        {
            "level": "commune",
            "code": sql_wards["code"],
            "name": sql_wards["full_name"].map(normalize_name),
            "unit_type": sql_wards["administrative_unit_id"].map(_VPD_TYPES),
            "parent_code": sql_wards["province_code"],
            "province_code": sql_wards["province_code"],
        }
    )
    # Names written as "xã Bắc Sơn" carry the type in lower case; the type column is canonical.
    stem = wards["name"].str.split(" ", n=1).str[1]
    prefix_ok = wards["name"].map(unit_type_of) == wards["unit_type"]
    wards.loc[~prefix_ok & wards["name"].map(unit_type_of).notna(), "name"] = wards["unit_type"] + " " + stem
    provinces = pd.DataFrame(
        {
            "level": "province",
            "code": sql_provinces["code"],
            "name": sql_provinces["full_name"].map(normalize_name),
            "unit_type": sql_provinces["administrative_unit_id"].map(_VPD_TYPES),
            "parent_code": None,
            "province_code": sql_provinces["code"],
        }
    )
    current = pd.concat([provinces, wards], ignore_index=True)
    current.insert(0, "scheme", "new")

    nso = nso_units.set_index(["level", "code"])
    key_nso = nso["name"].map(fold) + "|" + nso["unit_type"].fillna("")
    cur = current.set_index(["level", "code"])
    key_cur = cur["name"].map(fold) + "|" + cur["unit_type"].fillna("")
    same = key_cur.reindex(key_nso.index) == key_nso
    unchanged_index = same[same].index
    current["valid_from"] = [
        NEW_VALID_FROM if (level, code) in unchanged_index else VPD_VALID_FROM
        for level, code in zip(current["level"], current["code"], strict=True)
    ]
    current["valid_to"] = None
    retired = nso_units.set_index(["level", "code"]).drop(index=unchanged_index).reset_index()
    retired["valid_to"] = NSO_VALID_TO
    units = _sort_units(pd.concat([current, retired], ignore_index=True))

    changes: list[dict[str, Any]] = []
    recode: dict[str, str] = {}
    current_communes = current[current["level"] == "commune"]
    for row in retired.itertuples():
        if row.level != "commune":
            continue
        successor = current_communes[current_communes["code"] == row.code]
        if successor.empty:
            same_name = current_communes[
                (current_communes["province_code"] == row.province_code)
                & (current_communes["name"].map(fold) == fold(row.name))
                & ~current_communes["code"].isin(nso_units["code"])
            ]
            if len(same_name) != 1:
                raise ValueError(f"NSO unit {row.code} {row.name} has no unique successor in the 2026-07 list")
            successor = same_name
            recode[row.code] = successor["code"].iloc[0]
        changes.append(
            {
                "old_code": row.code,
                "old_name": row.name,
                "old_unit_type": row.unit_type,
                "new_code": successor["code"].iloc[0],
                "new_name": successor["name"].iloc[0],
                "new_unit_type": successor["unit_type"].iloc[0],
            }
        )

    crosswalk = nso_crosswalk.copy()
    crosswalk["new_commune_code"] = crosswalk["new_commune_code"].replace(recode)
    names = current_communes.set_index("code")["name"]
    crosswalk["new_commune_name"] = crosswalk["new_commune_code"].map(names)
    if crosswalk["new_commune_name"].isna().any():
        raise ValueError("crosswalk targets missing from the 2026-07 list")
    return units, crosswalk, changes


# ---------------------------------------------------------------------------------------
# Writing


def _csv_gz_bytes(frame: pd.DataFrame) -> tuple[bytes, str]:
    """Return (gzip bytes, sha256 of the CSV text) written deterministically."""
    text = frame.to_csv(index=False, lineterminator="\n")
    raw = text.encode("utf-8")
    buffer = io.BytesIO()
    # mtime=0 and no file name: the same table always gives the same bytes.
    with gzip.GzipFile(fileobj=buffer, mode="wb", compresslevel=9, mtime=0, filename="") as handle:
        handle.write(raw)
    return buffer.getvalue(), hashlib.sha256(raw).hexdigest()


def write_version(out: Path, version: str, tables: dict[str, pd.DataFrame], provenance: dict[str, Any]) -> Path:
    """Write one version directory; refuse to change an existing one with other content."""
    target = out / version
    outputs: dict[str, dict[str, Any]] = {}
    blobs: dict[str, bytes] = {}
    for name, frame in tables.items():
        blob, csv_sha = _csv_gz_bytes(frame)
        blobs[f"{name}.csv.gz"] = blob
        outputs[f"{name}.csv.gz"] = {"rows": len(frame), "csv_sha256": csv_sha}
    provenance = {**provenance, "version": version, "files": outputs}
    if target.exists():
        old = json.loads((target / "provenance.json").read_text(encoding="utf-8"))
        if old.get("files") != outputs:
            raise FileExistsError(
                f"{target} exists with different content; a new official file needs a new version id"
            )
        return target
    target.mkdir(parents=True)
    for name, blob in blobs.items():
        (target / name).write_bytes(blob)
    (target / "provenance.json").write_text(
        json.dumps(provenance, ensure_ascii=False, indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )
    return target


def _source(path: Path, what: str, origin: str, licence: str) -> dict[str, str]:
    return {"file": path.name, "sha256": sha256_file(path), "what": what, "origin": origin, "licence": licence}


def run(nso: Path, old_units_path: Path, new_units_path: Path, out: Path, import_date: str | None = None) -> dict[str, Any]:
    """Import the raw files into `out`; return a summary (versions, counts)."""
    imported_at = import_date or dt.date.today().isoformat()
    importer = {"module": "sapnhap.reference.importer", "imported_at": imported_at}
    nso_source = _source(
        nso,
        "Bảng chuyển đổi ĐVHC mới - cũ (final), sheet 'Tổng hợp_không merge '",
        "National Statistics Office, danhmuchanhchinh.nso.gov.vn",
        "public government data",
    )
    old_source = _source(
        old_units_path,
        "GSO list of provinces/districts/communes as of 2025-01-04",
        "GSO list as republished in the VietnamProvinces project's seed data",
        "public government data",
    )
    new_source = _source(
        new_units_path,
        "New provinces (34) and communes with codes and types, generated 2026-07-12",
        "vietnamese-provinces-database project",
        "MIT",
    )

    old_units = read_old_units(old_units_path)
    table = read_nso_table(nso)
    errata = load_errata()
    rows, applied = apply_errata(table.rows, errata)
    _check_against_old_units(rows, old_units)
    crosswalk = build_crosswalk(rows)
    old_units = add_table_only_old_communes(old_units, rows)
    sql_provinces, sql_wards = read_new_units_sql(new_units_path)
    nso_units = build_nso_new_units(rows, sql_provinces)
    vpd_units, vpd_crosswalk, vpd_changes = build_vpd_version(nso_units, crosswalk, sql_provinces, sql_wards)

    commune_pairs = crosswalk[crosswalk["old_unit_level"] == "commune"]
    targets = commune_pairs.drop_duplicates("old_commune_code")["n_targets"].value_counts().sort_index()
    gso_communes = old_units[(old_units["level"] == "commune") & (old_units["source"] == "gso-2025-01-04")]
    in_registry = set(gso_communes["code"])
    in_crosswalk = set(commune_pairs["old_commune_code"])
    figures = {
        "pairs_in_sheet": len(table.rows),
        "distinct_old_commune_codes_in_sheet": int(table.rows["old_commune_code"].nunique()),
        "distinct_new_commune_codes_in_sheet": int(table.rows["new_commune_code"].nunique()),
        "new_codes_stored_as_numbers": table.new_codes_stored_as_numbers,
        "old_codes_stored_as_numbers": table.old_codes_stored_as_numbers,
        "skipped_section_or_blank_rows": table.skipped_section_rows,
        "rows_without_old_commune_code": table.skipped_rows_without_old_code,
        "crosswalk_commune_pairs": len(commune_pairs),
        "crosswalk_district_rows": int((crosswalk["old_unit_level"] == "district").sum()),
        "distinct_old_commune_codes": len(in_crosswalk),
        "old_communes_by_n_targets": {str(k): int(v) for k, v in targets.items()},
        "old_registry_communes_not_in_crosswalk": sorted(in_registry - in_crosswalk),
        "crosswalk_old_codes_not_in_registry": sorted(in_crosswalk - in_registry),
        "notes": {str(k): int(v) for k, v in commune_pairs["note"].value_counts().items()},
    }

    written = []
    old_levels = old_units["level"].value_counts()
    written.append(
        write_version(
            out,
            OLD_VERSION,
            {"old_units": old_units},
            {
                "kind": "old_units",
                "scheme": "old",
                "effective_from": None,
                "effective_to": OLD_VALID_TO,
                "as_of": "2025-01-04",
                "sources": [old_source, nso_source],
                "source_notes": "Units with source 'nso-2025' are named only by the NSO table (created after "
                "2025-01-04); all others come from the GSO list.",
                "importer": importer,
                "counts": {str(k): int(v) for k, v in old_levels.items()},
                "counts_by_source": {
                    f"{source}/{level}": int(n)
                    for (source, level), n in old_units.groupby(["source", "level"]).size().items()
                },
            },
        )
    )
    nso_levels = nso_units["level"].value_counts()
    written.append(
        write_version(
            out,
            NSO_VERSION,
            {"new_units": nso_units, "crosswalk": crosswalk},
            {
                "kind": "crosswalk",
                "scheme": "new",
                "effective_from": NEW_VALID_FROM,
                "effective_to": NSO_VALID_TO,
                "old_units_version": OLD_VERSION,
                "decisions": [
                    "Nghị quyết 202/2025/QH15 về sắp xếp đơn vị hành chính cấp tỉnh (12/6/2025)",
                    (
                        "Nghị quyết của Ủy ban Thường vụ Quốc hội về sắp xếp đơn vị hành chính cấp xã "
                        "của từng tỉnh, thành phố năm 2025 (hiệu lực 01/7/2025)"
                    ),
                ],
                "sources": [nso_source, new_source],
                "source_notes": "Province names from the 2026-07 SQL list (the sheet gives them in capitals).",
                "importer": importer,
                "errata_file": "include/sapnhap/reference/errata.yaml",
                "errata_applied": applied,
                "figures": figures,
                "counts": {str(k): int(v) for k, v in nso_levels.items()},
                "special_zones": int((nso_units["unit_type"] == "Đặc khu").sum()),
            },
        )
    )
    current = vpd_units[vpd_units["valid_to"].isna()]
    written.append(
        write_version(
            out,
            VPD_VERSION,
            {"new_units": vpd_units, "crosswalk": vpd_crosswalk},
            {
                "kind": "crosswalk",
                "scheme": "new",
                "effective_from": VPD_VALID_FROM,
                "effective_to": None,
                "effective_from_reason": "date the list was generated; it states no effective date",
                "old_units_version": OLD_VERSION,
                "based_on": NSO_VERSION,
                "decisions": ["Nghị quyết của Ủy ban Thường vụ Quốc hội năm 2026 sửa đổi đơn vị hành chính cấp xã"],
                "sources": [nso_source, new_source],
                "importer": importer,
                "errata_file": "include/sapnhap/reference/errata.yaml",
                "errata_applied": applied,
                "changes_from_nso_2025": vpd_changes,
                "counts": {str(k): int(v) for k, v in current["level"].value_counts().items()},
                "special_zones": int((current["unit_type"] == "Đặc khu").sum()),
            },
        )
    )
    versions = {
        "current": NSO_VERSION,
        "current_reason": "The NSO table is the official crosswalk; moving to a later version is a data-team "
        "decision taken after its dry-run impact report.",
        "versions": [
            {"version": OLD_VERSION, "kind": "old_units", "scheme": "old", "effective_from": None, "effective_to": OLD_VALID_TO},
            {
                "version": NSO_VERSION,
                "kind": "crosswalk",
                "scheme": "new",
                "effective_from": NEW_VALID_FROM,
                "effective_to": NSO_VALID_TO,
                "old_units_version": OLD_VERSION,
            },
            {
                "version": VPD_VERSION,
                "kind": "crosswalk",
                "scheme": "new",
                "effective_from": VPD_VALID_FROM,
                "effective_to": None,
                "old_units_version": OLD_VERSION,
            },
        ],
    }
    _merge_versions_file(out / "versions.json", versions)
    return {"written": [str(p) for p in written], "figures": figures, "errata_applied": applied}


def _merge_versions_file(path: Path, versions: dict[str, Any]) -> None:
    """Add this import's versions to versions.json, keeping versions listed there before."""
    if path.exists():
        existing = json.loads(path.read_text(encoding="utf-8"))
        known = {entry["version"] for entry in versions["versions"]}
        versions["versions"] = [e for e in existing["versions"] if e["version"] not in known] + versions["versions"]
        versions["versions"].sort(key=lambda e: (e["effective_from"] or "", e["version"]))
        versions["current"] = existing.get("current", versions["current"])
        versions["current_reason"] = existing.get("current_reason", versions["current_reason"])
    path.write_text(json.dumps(versions, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def _check_against_old_units(rows: pd.DataFrame, old_units: pd.DataFrame) -> None:
    """Fail if a crosswalk row's district or province disagrees with the GSO list."""
    communes = old_units[old_units["level"] == "commune"].set_index("code")
    pairs = rows[rows["old_unit_level"] == "commune"]
    known = pairs["old_commune_code"].isin(communes.index)
    checked = pairs[known]
    wrong_district = checked["old_district_code"] != checked["old_commune_code"].map(communes["parent_code"])
    wrong_province = checked["old_province_code"] != checked["old_commune_code"].map(communes["province_code"])
    bad = checked[wrong_district | wrong_province]
    if not bad.empty:
        raise ValueError(
            "crosswalk rows disagree with the GSO list (add a reviewed erratum):\n"
            + bad[["sheet_row", "old_commune_code", "old_commune_name", "old_district_code", "old_province_code"]].to_string()
        )


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the process exit code."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nso", type=Path, required=True)
    parser.add_argument("--old-units", type=Path, required=True)
    parser.add_argument("--new-units", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--import-date", help="ISO date written to provenance (default: today)")
    args = parser.parse_args(argv)
    summary = run(args.nso, args.old_units, args.new_units, args.out, args.import_date)
    json.dump(summary, sys.stdout, ensure_ascii=False, indent=2, default=str)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
