"""The national unit registry and crosswalk: old (pre-2025-07-01) units to new units.

The committed, versioned dataset lives in ``data/<version>/`` (built by
``python -m sapnhap.reference.importer``). Codes are only meaningful with their scheme:
old 26740 (Phường Bến Nghé) and new 26740 (Phường Sài Gòn) are different units.

Public API::

    ref = load_reference()                  # current version (data/versions.json)
    ref.old_units, ref.new_units, ref.crosswalk
    ref.old_communes(["02", "08"])          # old communes with is_split and candidates
    ref.new_province_of_old_province("02")  # -> "08"
    load_split_rules("08")                  # village/street rules for split communes
"""

from __future__ import annotations

import functools
import gzip
import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml

DATA_DIR = Path(__file__).with_name("data")
RULES_DIR = Path(__file__).with_name("rules")

SPLIT_RULE_COLUMNS = ["province_code", "old_commune_code", "match_kind", "pattern", "new_commune_code", "demo"]

__all__ = [
    "DATA_DIR",
    "RULES_DIR",
    "Reference",
    "available_versions",
    "load_reference",
    "load_split_rules",
    "split_rules_demo_villages",
]


# eq=False: identity semantics, so a Reference can key caches without comparing DataFrames.
@dataclass(frozen=True, eq=False)
class Reference:
    """One version of the unit registry and crosswalk.

    Attributes:
        version: crosswalk version id (e.g. "nso-2025.07").
        old_units: old provinces/districts/communes (scheme "old").
        new_units: new provinces/communes (scheme "new"), incl. units a later version retired
            (valid_to set).
        crosswalk: one row per (old commune, new commune) pair, plus district-level rows for
            the island districts (old_unit_level "district", old_commune_code empty).
        old_units_version: id of the old-unit dataset this crosswalk refers to.
        effective_from / effective_to: ISO dates the version is in force (to may be None).
        provenance: the version's provenance.json.
    """

    version: str
    old_units: pd.DataFrame = field(repr=False)
    new_units: pd.DataFrame = field(repr=False)
    crosswalk: pd.DataFrame = field(repr=False)
    old_units_version: str = ""
    effective_from: str | None = None
    effective_to: str | None = None
    provenance: dict = field(default_factory=dict, repr=False, compare=False)

    @functools.cached_property
    def old_commune_targets(self) -> pd.DataFrame:
        """One row per old commune code of the crosswalk.

        Columns: old_commune_code, old_province_code, old_district_code, new_province_code,
        n_targets, is_split, new_commune_code (the target when not split, else None),
        candidates ("02345|02350", sorted).
        """
        pairs = self.crosswalk[self.crosswalk["old_unit_level"] == "commune"]
        grouped = pairs.groupby("old_commune_code", sort=True)
        table = grouped.agg(
            old_province_code=("old_province_code", "first"),
            old_district_code=("old_district_code", "first"),
            new_province_code=("new_province_code", "first"),
            n_targets=("n_targets", "first"),
            candidates=("new_commune_code", lambda codes: "|".join(sorted(set(codes)))),
        ).reset_index()
        table["is_split"] = table["n_targets"] > 1
        table["new_commune_code"] = table["candidates"].where(~table["is_split"], None)
        return table

    def old_communes(self, province_codes: list[str]) -> pd.DataFrame:
        """Return the old communes of the given OLD provinces.

        Columns: the unit columns (code, name, unit_type, parent_code, province_code, ...)
        plus new_province_code, n_targets, is_split, new_commune_code (None if split) and
        candidates ("a|b" of the new codes; None for a unit the crosswalk does not list).
        """
        units = self.old_units
        communes = units[(units["level"] == "commune") & units["province_code"].isin([str(c).zfill(2) for c in province_codes])]
        targets = self.old_commune_targets.drop(columns=["old_province_code", "old_district_code"])
        merged = communes.merge(targets, left_on="code", right_on="old_commune_code", how="left")
        merged = merged.drop(columns="old_commune_code")
        merged["is_split"] = merged["is_split"].astype("boolean").fillna(False).astype(bool)
        merged["n_targets"] = merged["n_targets"].fillna(0).astype(int)
        return merged.reset_index(drop=True)

    @functools.cached_property
    def old_to_new_province(self) -> dict[str, str]:
        """Map each old province code to its new province code."""
        pairs = self.crosswalk[["old_province_code", "new_province_code"]].drop_duplicates()
        if pairs["old_province_code"].duplicated().any():
            raise ValueError(f"{self.version}: an old province maps to several new provinces")
        return dict(zip(pairs["old_province_code"], pairs["new_province_code"], strict=True))

    def new_province_of_old_province(self, code: str) -> str:
        """Return the new province code an old province was merged into (KeyError if unknown)."""
        return self.old_to_new_province[str(code).zfill(2)]

    @functools.cached_property
    def island_districts(self) -> pd.DataFrame:
        """District-level crosswalk rows: old island district -> special zone."""
        rows = self.crosswalk[self.crosswalk["old_unit_level"] == "district"]
        return rows[["old_province_code", "old_district_code", "new_province_code", "new_commune_code", "new_commune_name"]]

    def current_new_units(self) -> pd.DataFrame:
        """Return the new units in force in this version (valid_to empty)."""
        return self.new_units[self.new_units["valid_to"].isna()].reset_index(drop=True)


def _read_table(path: Path) -> pd.DataFrame:
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        frame = pd.read_csv(handle, dtype=str, keep_default_na=False, na_values=[""])
    # Empty CSV cells mean "no value"; keep them as None rather than NaN strings.
    frame = frame.astype(object).where(frame.notna(), None)
    return frame


def _versions_index(data_dir: Path = DATA_DIR) -> dict:
    return json.loads((data_dir / "versions.json").read_text(encoding="utf-8"))


def available_versions(data_dir: Path = DATA_DIR) -> list[dict]:
    """Return the dataset versions listed in data/versions.json (with effective dates)."""
    return _versions_index(data_dir)["versions"]


@functools.lru_cache(maxsize=8)
def load_reference(version: str | None = None, data_dir: Path = DATA_DIR) -> Reference:
    """Load (once per process) a crosswalk version of the committed reference dataset.

    version: a crosswalk version id ("nso-2025.07", "vpd-2026.07"); None means the
    version marked current in data/versions.json. Returns a frozen `Reference`.
    """
    index = _versions_index(data_dir)
    version = version or index["current"]
    entries = {entry["version"]: entry for entry in index["versions"]}
    if version not in entries or entries[version]["kind"] != "crosswalk":
        crosswalks = [v for v, e in entries.items() if e["kind"] == "crosswalk"]
        raise KeyError(f"unknown crosswalk version {version!r}; known: {crosswalks}")
    entry = entries[version]
    folder = data_dir / version
    old_folder = data_dir / entry["old_units_version"]
    crosswalk = _read_table(folder / "crosswalk.csv.gz")
    crosswalk["n_targets"] = crosswalk["n_targets"].astype(int)
    crosswalk["is_split"] = crosswalk["is_split"].map({"True": True, "False": False}).astype(bool)
    return Reference(
        version=version,
        old_units=_read_table(old_folder / "old_units.csv.gz"),
        new_units=_read_table(folder / "new_units.csv.gz"),
        crosswalk=crosswalk,
        old_units_version=entry["old_units_version"],
        effective_from=entry["effective_from"],
        effective_to=entry["effective_to"],
        provenance=json.loads((folder / "provenance.json").read_text(encoding="utf-8")),
    )


def load_split_rules(province_code: str | None = None, rules_dir: Path = RULES_DIR) -> pd.DataFrame:
    """Load split-commune rules from rules/<province>.yaml (all provinces when None).

    Returns columns province_code, old_commune_code, match_kind ('village'|'street'),
    pattern, new_commune_code, demo (True for the demo world's invented rules).
    """
    paths = sorted(rules_dir.glob("*.yaml")) if province_code is None else [rules_dir / f"{province_code}.yaml"]
    records: list[dict] = []
    for path in paths:
        if not path.exists():
            continue
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for rule in document.get("rules", []):
            if rule["match_kind"] not in ("village", "street"):
                raise ValueError(f"{path.name}: match_kind must be 'village' or 'street', got {rule['match_kind']!r}")
            records.append(
                {
                    "province_code": str(document["province_code"]).zfill(2),
                    "old_commune_code": str(rule["old_commune_code"]).zfill(5),
                    "match_kind": rule["match_kind"],
                    "pattern": rule["pattern"],
                    "new_commune_code": str(rule["new_commune_code"]).zfill(5),
                    "demo": bool(document.get("demo", False)),
                }
            )
    return pd.DataFrame.from_records(records, columns=SPLIT_RULE_COLUMNS)


def split_rules_demo_villages(old_commune_code: str) -> dict[str, str]:
    """Return {village or street name: new_commune_code} of the rules for one old commune."""
    rules = load_split_rules()
    rows = rules[rules["old_commune_code"] == str(old_commune_code).zfill(5)]
    return dict(zip(rows["pattern"], rows["new_commune_code"], strict=True))
