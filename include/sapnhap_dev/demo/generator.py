"""Deterministic demo world: the legacy systems of one merged province, with counted defects.

New Tuyên Quang (08) = old Tuyên Quang (08) + old Hà Giang (02). The world holds four legacy
systems of former districts, described by ``include/sources/<source_id>.yaml``:

- ``hg_vixuyen_motcua``    PostgreSQL, one-stop-shop dossiers and their processing steps (Vị Xuyên)
- ``tq_sonduong_dancu``    PostgreSQL, residents and households (Sơn Dương)
- ``hg_bacquang_sqlite``   SQLite file, dossiers and residents (Bắc Quang)
- ``tq_yenson_xa_exports`` folder of CSV/XLSX exports of the communes (Yên Sơn)

Every record written is one row of :attr:`World.ledger`, with at most one defect tag, so the
pipeline's tests can reconcile counts exactly. All people are invented (see ``names.py``).
The legacy column names, formats and value codes come from the source files themselves, so
the world and the registry cannot drift apart.

Time: the world is seen on the night of 2025-11-30 (every cursor value is before
``CLOCK_START``). Each call of :func:`mutate_world` or :func:`insert_rows` is one more night:
its cursor values are after all earlier ones, and its records are dated that day.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sqlite3
import sys
import unicodedata
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import numpy as np
import pandas as pd

from sapnhap.datasets import get_dataset
from sapnhap.sources import DEFAULT_SOURCES_DIR, DatasetMapping, Source, parse_source
from sapnhap_dev.demo import names

NEW_PROVINCE_CODE = "08"
OLD_PROVINCE_CODES = ("02", "08")
MERGER_DATE = np.datetime64("2025-07-01", "D")
# The world is generated "on the night of" this day; every cursor value is before CLOCK_START.
CLOCK_START = datetime(2025, 12, 1, 1, 0, 0)
UNKNOWN_COMMUNE_CODES = ("99999", "00000")
# Two-digit numbers that are not old province codes (CCCD prefix '0xx' check).
NOT_PROVINCE_CODES = ("03", "05", "09", "13", "99")

SOURCE_IDS = ("hg_vixuyen_motcua", "tq_sonduong_dancu", "hg_bacquang_sqlite", "tq_yenson_xa_exports")

DEFECTS = (
    "missing_code",
    "unknown_code",
    "split_with_rule",
    "split_no_rule",
    "dup_cross_system",
    "dup_in_system",
    "bad_date",
    "bad_citizen_id",
    "due_before_received",
    "steps_out_of_order",
    "unknown_status",
    "old_code_after_merger",
)
_COMMUNE_DEFECTS = ("missing_code", "unknown_code", "split_with_rule", "split_no_rule")
# Share of a dataset's rows that carry each defect (at least one row each).
DEFECT_RATE = 0.03

LEDGER_COLUMNS = [
    "source_id",
    "dataset",
    "source_key",
    "natural_key",
    "defect",
    "detail",
    "old_commune_code",
    "expected_new_commune_code",
    "related_key",
    "location",
]


@dataclass(frozen=True)
class _Layout:
    """Physical layout of one legacy table beyond the canonical mapping of the source file."""

    rows_per_size: float = 1.0
    surrogate_format: str = "{}"  # how a surrogate primary key (not canonical) is written
    typed: tuple[tuple[str, str], ...] = ()  # canonical column -> 'int' | 'timestamp' (others text)
    file_stem: str = ""  # export files: name prefix, e.g. "nhan_khau"


_LAYOUTS: dict[tuple[str, str], _Layout] = {
    ("hg_vixuyen_motcua", "dossiers"): _Layout(1.5, typed=(("updated_at", "timestamp"),)),
    ("hg_vixuyen_motcua", "dossier_steps"): _Layout(
        typed=(("step_no", "int"), ("started_at", "timestamp"), ("finished_at", "timestamp"), ("updated_at", "timestamp"))
    ),
    ("tq_sonduong_dancu", "households"): _Layout(0.5, typed=(("updated_at", "timestamp"),)),
    ("tq_sonduong_dancu", "residents"): _Layout(typed=(("updated_at", "timestamp"),)),
    ("hg_bacquang_sqlite", "dossiers"): _Layout(1.0),
    ("hg_bacquang_sqlite", "residents"): _Layout(0.4),  # households generated, not stored
    ("tq_yenson_xa_exports", "households"): _Layout(0.4, file_stem="ho_gia_dinh"),
    ("tq_yenson_xa_exports", "residents"): _Layout(surrogate_format="NK{:07d}", file_stem="nhan_khau"),
    ("tq_yenson_xa_exports", "dossiers"): _Layout(0.75, file_stem="ho_so"),
}

# Per source: prefix of dossier codes, prefix of household codes, province of birth most people have.
_DOSSIER_PREFIX = {"hg_vixuyen_motcua": "H02.030", "hg_bacquang_sqlite": "H02.034", "tq_yenson_xa_exports": "H08.075"}
_HOUSEHOLD_PREFIX = {"tq_sonduong_dancu": "HK076-", "hg_bacquang_sqlite": "BQHK", "tq_yenson_xa_exports": "HK075-"}
_UNKNOWN_STATUS = {"hg_vixuyen_motcua": "Chờ bổ sung", "hg_bacquang_sqlite": "PENDING_FEE", "tq_yenson_xa_exports": "Tạm dừng"}


# ----------------------------------------------------------------------------------------------
# Reference data: the one place the generator learns units, crosswalk targets and split rules.


@dataclass(frozen=True)
class _Units:
    communes: pd.DataFrame  # code, name, unit_type, district_code, province_code, is_split, new_commune_code
    old_province_codes: tuple[str, ...]
    rules: pd.DataFrame  # old_commune_code, match_kind, pattern, new_commune_code


_UNITS_CACHE: list[_Units] = []


def _units() -> _Units:
    """Old communes of old provinces 02 and 08, their crosswalk targets and the split rules."""
    if not _UNITS_CACHE:
        from sapnhap.reference import load_reference, load_split_rules

        ref = load_reference()
        communes = ref.old_communes(list(OLD_PROVINCE_CODES))
        communes = communes.rename(columns={"parent_code": "district_code"})[
            ["code", "name", "unit_type", "district_code", "province_code", "is_split", "new_commune_code"]
        ]
        communes = communes.astype(object).where(communes.notna(), None)
        communes["is_split"] = communes["is_split"].astype(bool)
        provinces = ref.old_units[ref.old_units["level"] == "province"]["code"]
        rules = load_split_rules(NEW_PROVINCE_CODE)[["old_commune_code", "match_kind", "pattern", "new_commune_code"]]
        _UNITS_CACHE.append(_Units(communes.reset_index(drop=True), tuple(sorted(provinces)), rules))
    return _UNITS_CACHE[0]


# ----------------------------------------------------------------------------------------------
# The world


@dataclass
class World:
    """A generated set of legacy systems and the ledger of every record written to them."""

    root: Path
    connections: dict[str, str]
    ledger: pd.DataFrame
    seed: int
    size: int
    pg_dsn: str
    db_prefix: str
    clock: datetime = CLOCK_START
    databases: dict[str, str] = field(default_factory=dict)  # source_id -> database name
    # Canonical frames as written (with internal columns), kept for mutate_world/insert_rows.
    tables: dict[tuple[str, str], pd.DataFrame] = field(default_factory=dict, repr=False)
    _cids: set[str] = field(default_factory=set, repr=False)
    # sapnhap_dev.demo.accounts.AccountSystems: the account/mail systems and their true people.
    account_systems: Any = field(default=None, repr=False)
    # sapnhap_dev.demo.documents.DocumentSystems: the document systems and their attached files.
    document_systems: Any = field(default=None, repr=False)
    # sapnhap_dev.demo.estate.EstateSystems: the reporting tools and portals of the old districts.
    estate_systems: Any = field(default=None, repr=False)
    _nights: int = 0

    def counts(self) -> pd.DataFrame:
        """Rows per source and dataset: total, clean, and one column per defect tag."""
        ledger = self.ledger.assign(defect=self.ledger["defect"].fillna("clean"))
        table = pd.crosstab([ledger["source_id"], ledger["dataset"]], ledger["defect"])
        table.insert(0, "rows", table.sum(axis=1))
        return table.reset_index().rename_axis(columns=None)

    def source(self, source_id: str) -> Source:
        """The source file of one of the world's legacy systems."""
        return _source(source_id)

    def sqlite_path(self) -> Path:
        return self.root / "hg_bacquang_sqlite.db"

    def export_dir(self) -> Path:
        return self.root / "tq_yenson_xa_exports"

    def drop_databases(self) -> None:
        """Drop the PostgreSQL databases of this world (tests call this when done)."""
        import psycopg

        with psycopg.connect(self.pg_dsn, autocommit=True) as conn:
            for db in self.databases.values():
                conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


@lru_cache(maxsize=16)
def _source(source_id: str) -> Source:
    return parse_source(DEFAULT_SOURCES_DIR / f"{source_id}.yaml")


def _substream(seed: int, *parts: str) -> np.random.Generator:
    """An independent random stream per (seed, part...): sources don't shift each other."""
    return np.random.default_rng([seed, *(zlib.crc32(p.encode()) for p in parts)])


# ----------------------------------------------------------------------------------------------
# Building blocks: dates, people, citizen ids, communes and addresses


def _dates(rng: np.random.Generator, n: int, start: str, end: str) -> np.ndarray:
    lo, hi = np.datetime64(start, "D"), np.datetime64(end, "D")
    return lo + rng.integers(0, int((hi - lo).astype(int)) + 1, n).astype("timedelta64[D]")


def _stamp(rng: np.random.Generator, days: np.ndarray, cap: datetime) -> np.ndarray:
    """Office-hours timestamps on the given days, strictly before `cap`."""
    seconds = rng.integers(7 * 3600, 17 * 3600, len(days)).astype("timedelta64[s]")
    out = days.astype("datetime64[s]") + seconds
    return np.minimum(out, np.datetime64(cap - timedelta(minutes=1), "s"))


def _years(days: np.ndarray) -> np.ndarray:
    return days.astype("datetime64[Y]").astype(int) + 1970


def _add_years(days: np.ndarray, rng: np.random.Generator, lo: int, hi: int) -> np.ndarray:
    return days + (rng.integers(lo * 365, hi * 365 + 1, len(days))).astype("timedelta64[D]")


class _Cids:
    """Makes valid, world-unique 12-digit citizen ids (CCCD)."""

    def __init__(self, used: set[str], provinces: Sequence[str]) -> None:
        self.used = used
        self.provinces = np.array(provinces, dtype=object)
        self._turns: dict[str, int] = {}

    def turn(self, what: str, n: int) -> int:
        """Where the next n variants of `what` start, so that across the world every variant
        of a defect appears once there are as many defective rows as variants."""
        start = self._turns.get(what, 0)
        self._turns[what] = start + n
        return start

    def make(self, rng: np.random.Generator, home: str, gender: np.ndarray, birth: np.ndarray) -> np.ndarray:
        n = len(gender)
        # Most people were born in the province of the system; some elsewhere in the country.
        prov = np.where(rng.random(n) < 0.75, home, self.provinces[rng.integers(0, len(self.provinces), n)])
        years = _years(birth)
        century = (years >= 2000).astype(int) * 2 + (gender == "nu").astype(int)
        head = pd.Series(prov, dtype=object).str.zfill(3) + pd.Series(century.astype(str), dtype=object) + pd.Series(
            (years % 100).astype(str), dtype=object
        ).str.zfill(2)
        head = head.to_numpy(dtype=object)
        out = np.empty(n, dtype=object)
        todo = np.arange(n)
        while len(todo):
            serial = pd.Series(rng.integers(0, 1_000_000, len(todo)).astype(str), dtype=object).str.zfill(6)
            cand = head[todo] + serial.to_numpy(dtype=object)
            first = ~pd.Series(cand).duplicated().to_numpy()
            used = self.used
            fresh = first & np.fromiter((c not in used for c in cand), dtype=bool, count=len(cand))
            out[todo[fresh]] = cand[fresh]
            self.used.update(cand[fresh].tolist())
            todo = todo[~fresh]
        return out


def _break_cids(rng: np.random.Generator, cids: np.ndarray, start: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Invalid variants of valid CCCDs, cycling through the three kinds; returns (ids, details)."""
    out = cids.copy()
    detail = np.empty(len(cids), dtype=object)
    for i, cid in enumerate(cids):
        kind = (start + i) % 3
        if kind == 0:
            out[i], detail[i] = cid[:-1], "11_digits"
        elif kind == 1:
            out[i], detail[i] = "0" + NOT_PROVINCE_CODES[rng.integers(0, len(NOT_PROVINCE_CODES))] + cid[3:], "bad_province_prefix"
        else:
            # Flip the gender bit: the digit no longer agrees with the recorded gender.
            out[i], detail[i] = cid[:3] + str(int(cid[3]) ^ 1) + cid[4:], "century_gender_mismatch"
    return out, detail


def _people(rng: np.random.Generator, cids: _Cids, home: str, birth: np.ndarray, gender: np.ndarray | None = None,
            family: np.ndarray | None = None) -> dict[str, np.ndarray]:
    n = len(birth)
    if gender is None:
        gender = np.where(rng.random(n) < 0.5, "nam", "nu").astype(object)
    if family is None:
        family = np.array(names.FAMILY_NAMES, dtype=object)[rng.integers(0, len(names.FAMILY_NAMES), n)]
    male = gender == "nam"

    def pick(male_list: Sequence[str], female_list: Sequence[str]) -> np.ndarray:
        m = np.array(male_list, dtype=object)[rng.integers(0, len(male_list), n)]
        f = np.array(female_list, dtype=object)[rng.integers(0, len(female_list), n)]
        return np.where(male, m, f)

    full = family + " " + pick(names.MIDDLE_MALE, names.MIDDLE_FEMALE) + " " + pick(names.GIVEN_MALE, names.GIVEN_FEMALE)
    return {"full_name": full, "gender": gender, "birth_date": birth, "citizen_id": cids.make(rng, home, gender, birth)}


def _plan(rng: np.random.Generator, n: int, tags: Sequence[str]) -> np.ndarray:
    """Assign each tag to DEFECT_RATE of n rows (at least one), disjointly; the rest get None."""
    out = np.full(n, None, dtype=object)
    if not tags or n == 0:
        return out
    k = max(1, round(DEFECT_RATE * n))
    k = min(k, max(1, n // (2 * len(tags))))
    perm = rng.permutation(n)
    for i, tag in enumerate(tags):
        out[perm[i * k : (i + 1) * k]] = tag
    return out


@dataclass
class _Ctx:
    """What the builders need to know about one source."""

    source: Source
    communes: pd.DataFrame
    rng: np.random.Generator
    cids: _Cids
    home: str  # province-of-birth prefix most residents have

    @property
    def clean(self) -> pd.DataFrame:
        return self.communes[~self.communes["is_split"]]

    @property
    def split_codes(self) -> list[str]:
        return self.communes.loc[self.communes["is_split"], "code"].tolist()

    def supports(self, tag: str) -> bool:
        if tag == "split_with_rule":
            rules = _units().rules
            return bool(rules["old_commune_code"].isin(self.split_codes).any())
        if tag == "split_no_rule":
            return bool(self.split_codes)
        return True


def _context(source_id: str, seed: int, cids: _Cids, purpose: str = "initial") -> _Ctx:
    source = _source(source_id)
    units = _units().communes
    mine = units[units["district_code"].isin(source.old_units.districts)]
    if source.old_units.communes:
        mine = mine[mine["code"].isin(source.old_units.communes)]
    home = "0" + source.old_units.province
    return _Ctx(source, mine.reset_index(drop=True), _substream(seed, source_id, purpose), cids, home)


def _clean_addresses(rng: np.random.Generator, unit_types: np.ndarray) -> np.ndarray:
    n = len(unit_types)
    urban = np.isin(unit_types, ["Thị trấn", "Phường"])
    village = "Thôn " + np.array(names.VILLAGE_STEMS, dtype=object)[rng.integers(0, len(names.VILLAGE_STEMS), n)]
    group = np.char.add("Tổ dân phố ", rng.integers(1, 16, n).astype(str)).astype(object)
    street = ("Số " + rng.integers(1, 200, n).astype(str).astype(object) + ", đường "
              + np.array(names.STREETS, dtype=object)[rng.integers(0, len(names.STREETS), n)] + ", " + group)
    out = np.where(urban, np.where(rng.random(n) < 0.4, street, group), village)
    return np.where(rng.random(n) < 0.08, None, out)


def _communes(ctx: _Ctx, tags: np.ndarray) -> dict[str, np.ndarray]:
    """Commune code, address detail, expected new commune and detail for rows with these tags."""
    rng, n = ctx.rng, len(tags)
    clean = ctx.clean
    pick = rng.integers(0, len(clean), n)
    code = clean["code"].to_numpy(dtype=object)[pick]
    address = _clean_addresses(rng, clean["unit_type"].to_numpy(dtype=object)[pick])
    expected = clean["new_commune_code"].to_numpy(dtype=object)[pick]
    detail = np.full(n, None, dtype=object)
    rules = _units().rules
    split = ctx.split_codes
    mine = rules[rules["old_commune_code"].isin(split)]
    rule_codes, rule_targets, rule_patterns = (mine[c].to_numpy(dtype=object) for c in ("old_commune_code", "new_commune_code", "pattern"))
    patterns_of = {c: mine.loc[mine["old_commune_code"] == c, "pattern"].tolist() for c in split}
    name_of = dict(zip(ctx.communes["code"], ctx.communes["name"], strict=True))
    for i in np.flatnonzero(pd.Series(tags, dtype=object).isin(_COMMUNE_DEFECTS).to_numpy()):
        tag = tags[i]
        if tag == "missing_code":
            code[i], expected[i] = (None if i % 2 else ""), None
            detail[i] = "null" if i % 2 else "empty"
        elif tag == "unknown_code":
            code[i], expected[i] = UNKNOWN_COMMUNE_CODES[i % len(UNKNOWN_COMMUNE_CODES)], None
            detail[i] = code[i]
        elif tag == "split_with_rule":
            r = int(rng.integers(0, len(rule_codes)))
            pattern = rule_patterns[r]
            commune = name_of[rule_codes[r]].replace("Xã ", "xã ", 1)
            # Same place, written three ways: as listed, inside a longer address, in capitals.
            address[i] = (pattern, f"Nhà số {int(rng.integers(1, 90))}, {pattern}, {commune}", pattern.upper())[i % 3]
            code[i], expected[i], detail[i] = rule_codes[r], rule_targets[r], pattern
        elif tag == "split_no_rule":
            code[i] = split[int(rng.integers(0, len(split)))]
            expected[i] = None
            patterns = patterns_of[code[i]]
            variant = i % 3
            if variant == 0:
                address[i], detail[i] = None, "no_address"
            elif variant == 1 and patterns:
                # A near miss: "Thôn Nà Lừa 2" is not "Thôn Nà Lừa" (rules match whole names).
                address[i], detail[i] = f"{patterns[i % len(patterns)]} 2", "near_miss"
            else:
                stems = names.UNCOVERED_VILLAGE_STEMS
                address[i], detail[i] = f"Thôn {stems[i % len(stems)]}", "uncovered_village"
    return {"old_commune_code": code, "address_detail": address, "_expected": expected, "_detail": detail}


def _bad_date_values(fmt: str, n: int, start: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unparseable or impossible dates in the style of `fmt`; returns (values, details)."""
    impossible = fmt.replace("%d", "31").replace("%m", "02").replace("%Y", "2024")
    month13 = fmt.replace("%d", "01").replace("%m", "13").replace("%Y", "2024")
    kinds = [(impossible, "impossible_day"), ("2024-13-01", "iso_month_13"), ("", "empty"), ("abc", "not_a_date"),
             (month13, "month_13")]
    kinds = [k for k in kinds if not (k[1] == "month_13" and k[0] == "2024-13-01")]
    values = np.array([kinds[(start + i) % len(kinds)][0] for i in range(n)], dtype=object)
    details = np.array([kinds[(start + i) % len(kinds)][1] for i in range(n)], dtype=object)
    return values, details


# ----------------------------------------------------------------------------------------------
# Datasets in canonical form (plus internal columns starting with "_")


_DOSSIER_TAGS = ("missing_code", "unknown_code", "split_with_rule", "split_no_rule", "bad_date", "bad_citizen_id",
                 "due_before_received", "unknown_status", "old_code_after_merger")


def _dossiers(ctx: _Ctx, n: int, seq_start: int, tags: np.ndarray, *, after: tuple[str, str] | None = None,
              cap: datetime = CLOCK_START) -> pd.DataFrame:
    rng = ctx.rng
    mapping = ctx.source.datasets["dossiers"]
    post = tags == "old_code_after_merger"
    received = _dates(rng, n, "2023-01-02", "2025-06-30")
    late = _dates(rng, n, *(after or ("2025-07-01", "2025-11-25")))
    received = np.where(post | (after is not None), late, received)
    proc = rng.integers(0, len(names.PROCEDURES), n)
    allowed = np.array([p[2] for p in names.PROCEDURES])[proc]
    due = received + (allowed * 7 // 5 + 1).astype("timedelta64[D]")
    status = np.array(["completed", "processing", "received", "returned", "cancelled"], dtype=object)[
        rng.choice(5, n, p=[0.6, 0.15, 0.1, 0.1, 0.05])
    ]
    done = np.isin(status, ["completed", "returned"])
    completed = np.where(done, received + rng.integers(0, allowed * 3 // 2 + 3).astype("timedelta64[D]"), np.datetime64("NaT"))
    # Not finished yet on the day the world is seen.
    future = ~np.isnat(completed) & (completed >= np.datetime64(cap.date(), "D"))
    status = np.where(future, "processing", status).astype(object)
    completed = np.where(future, np.datetime64("NaT"), completed)
    done = done & ~future
    applicant = _people(rng, ctx.cids, ctx.home, _dates(rng, n, "1950-01-01", "2005-12-31"))
    seq = np.arange(seq_start, seq_start + n)
    yymmdd = pd.Series(received).dt.strftime("%y%m%d").to_numpy(dtype=object)
    code = _DOSSIER_PREFIX[ctx.source.id] + "-" + yymmdd + "-" + pd.Series(seq.astype(str), dtype=object).str.zfill(6).to_numpy()
    last = np.where(done, completed, received).astype("datetime64[D]")
    updated = _stamp(rng, last + rng.integers(0, 3, n).astype("timedelta64[D]"), cap)
    frame = pd.DataFrame(
        {
            "_seq": seq,
            "dossier_code": code,
            "procedure_code": np.array([p[0] for p in names.PROCEDURES], dtype=object)[proc],
            "procedure_name": np.array([p[1] for p in names.PROCEDURES], dtype=object)[proc],
            "applicant_name": applicant["full_name"],
            "applicant_citizen_id": applicant["citizen_id"],
            "received_date": received,
            "due_date": due,
            "completed_date": completed,
            "status": status,
            "updated_at": updated,
            "_defect": tags,
            "_related": None,
            "_gender": applicant["gender"],
        }
    )
    for key, values in _communes(ctx, tags).items():
        frame[key] = values
    frame["_raw_received_date"] = None
    frame["_raw_status"] = None
    _apply_row_defects(ctx, frame, mapping, date_column="received_date", cid_column="applicant_citizen_id")
    bad = np.flatnonzero(tags == "due_before_received")
    frame.loc[bad, "due_date"] = frame.loc[bad, "received_date"] - pd.to_timedelta(rng.integers(1, 30, len(bad)), unit="D")
    frame.loc[bad, "_detail"] = "due_before_received"
    unknown = np.flatnonzero(tags == "unknown_status")
    frame.loc[unknown, "_raw_status"] = _UNKNOWN_STATUS[ctx.source.id]
    frame.loc[unknown, "_detail"] = _UNKNOWN_STATUS[ctx.source.id]
    return frame


def _apply_row_defects(ctx: _Ctx, frame: pd.DataFrame, mapping: DatasetMapping, *, date_column: str,
                       cid_column: str | None, cid_mask: np.ndarray | None = None) -> None:
    tags = frame["_defect"].to_numpy(dtype=object)
    bad = np.flatnonzero(tags == "bad_date")
    values, details = _bad_date_values(mapping.date_format, len(bad), ctx.cids.turn("bad_date", len(bad)))
    frame[f"_raw_{date_column}"] = frame.get(f"_raw_{date_column}", None)
    frame.loc[bad, f"_raw_{date_column}"] = values
    frame.loc[bad, "_detail"] = details
    if cid_column:
        wrong = np.flatnonzero(tags == "bad_citizen_id")
        cids = frame.loc[wrong, cid_column].to_numpy(dtype=object)
        ids, details = _break_cids(ctx.rng, cids, ctx.cids.turn("bad_citizen_id", len(wrong)))
        frame.loc[wrong, cid_column] = ids
        frame.loc[wrong, "_detail"] = details


def _steps(ctx: _Ctx, dossiers: pd.DataFrame, cap: datetime = CLOCK_START, out_of_order: bool = True,
           max_gap_hours: int = 30) -> pd.DataFrame:
    """Processing steps of dossiers (one dossier code once): started_at increasing unless a defect."""
    rng = ctx.rng
    dossiers = dossiers.drop_duplicates("dossier_code")
    n_steps = dossiers["status"].map({"received": 1, "processing": 3, "completed": 5, "returned": 4, "cancelled": 2})
    n_steps = n_steps.fillna(2).to_numpy(dtype=int)
    rows = np.repeat(np.arange(len(dossiers)), n_steps)
    step_no = np.arange(len(rows)) - np.repeat(np.cumsum(n_steps) - n_steps, n_steps) + 1
    gaps = rng.integers(1, max_gap_hours * 3600, len(rows)).astype("timedelta64[s]")
    gaps[step_no == 1] = np.timedelta64(0, "s")
    begin = dossiers["received_date"].to_numpy().astype("datetime64[s]") + np.timedelta64(8 * 3600, "s")
    cum = np.cumsum(gaps.astype(np.int64))
    offsets = cum - np.repeat(cum[np.cumsum(n_steps) - n_steps], n_steps)
    started = np.repeat(begin, n_steps) + offsets.astype("timedelta64[s]")
    last = np.r_[step_no[1:] == 1, True]
    finished = np.where(last, np.datetime64("NaT"), np.r_[started[1:], np.datetime64("NaT", "s")])
    status = np.repeat(dossiers["status"].to_numpy(dtype=object), n_steps)
    closed = last & np.isin(status, ["completed", "returned", "cancelled"])
    finished = np.where(closed, started + np.timedelta64(2 * 3600, "s"), finished)
    cap64 = np.datetime64(cap - timedelta(minutes=1), "s")
    started = np.minimum(started, cap64)
    finished = np.where(np.isnat(finished), finished, np.minimum(finished, cap64))
    tags = np.full(len(rows), None, dtype=object)
    detail = np.full(len(rows), None, dtype=object)
    if out_of_order:
        candidates = np.flatnonzero(step_no >= 2)
        k = min(len(candidates), max(1, round(DEFECT_RATE * len(dossiers))))
        chosen = rng.choice(candidates, k, replace=False) if k else np.array([], dtype=int)
        # The step says it started before the previous one did: clocks or back-dated entries.
        started[chosen] = started[chosen - 1] - rng.integers(3600, 72 * 3600, len(chosen)).astype("timedelta64[s]")
        tags[chosen] = "steps_out_of_order"
        detail[chosen] = "started_before_previous_step"
    updated = np.where(np.isnat(finished), started, np.maximum(started, finished))
    handlers = _people(rng, ctx.cids, ctx.home, _dates(rng, 20, "1970-01-01", "1995-12-31"))["full_name"]
    return pd.DataFrame(
        {
            "_seq": np.arange(1, len(rows) + 1),
            "dossier_code": dossiers["dossier_code"].to_numpy(dtype=object)[rows],
            "step_no": step_no,
            "step_name": np.array(names.STEP_NAMES, dtype=object)[np.minimum(step_no - 1, len(names.STEP_NAMES) - 1)],
            "handler": handlers[rng.integers(0, len(handlers), len(rows))],
            "started_at": started,
            "finished_at": finished,
            "updated_at": updated,
            "_defect": tags,
            "_detail": detail,
            "_related": None,
            "_expected": None,
            "old_commune_code": None,
        }
    )


_HOUSEHOLD_TAGS = ("missing_code", "unknown_code", "split_with_rule", "split_no_rule", "bad_date", "old_code_after_merger")
_RESIDENT_TAGS = ("bad_date", "bad_citizen_id")


def _population(ctx: _Ctx, n_households: int, seq_start: int, hh_tags: np.ndarray, *,
                after: tuple[str, str] | None = None, cap: datetime = CLOCK_START) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Households and their members. Household defects carry over to every member."""
    rng = ctx.rng
    n = n_households
    mapping = ctx.source.datasets.get("households")
    reg = _dates(rng, n, "2000-01-01", "2025-06-30")
    late = _dates(rng, n, *(after or ("2025-07-01", "2025-11-25")))
    reg = np.where((hh_tags == "old_code_after_merger") | (after is not None), late, reg)
    seq = np.arange(seq_start, seq_start + n)
    hh_code = _HOUSEHOLD_PREFIX[ctx.source.id] + pd.Series(seq.astype(str), dtype=object).str.zfill(6).to_numpy()
    households = pd.DataFrame({"_seq": seq, "household_code": hh_code, "registered_date": reg, "_defect": hh_tags,
                               "_related": None, "_raw_registered_date": None})
    for key, values in _communes(ctx, hh_tags).items():
        households[key] = values
    bad = np.flatnonzero(hh_tags == "bad_date")
    fmt = mapping.date_format if mapping else "%d/%m/%Y"
    values, details = _bad_date_values(fmt, len(bad), ctx.cids.turn("bad_date", len(bad)))
    households.loc[bad, "_raw_registered_date"] = values
    households.loc[bad, "_detail"] = details

    # Members: the head first, then a spouse most of the time, then others.
    size = rng.integers(1, 7, n)
    hh = np.repeat(np.arange(n), size)
    pos = np.arange(len(hh)) - np.repeat(np.cumsum(size) - size, size)
    m = len(hh)
    head_birth = _dates(rng, n, "1945-01-01", "1995-12-31")
    head_gender = np.where(rng.random(n) < 0.7, "nam", "nu").astype(object)
    others = np.array(["Con", "Con", "Con", "Bố", "Mẹ", "Cháu", "Con dâu"], dtype=object)
    relation = np.where(pos == 0, "Chủ hộ", others[rng.integers(0, len(others), m)])
    spouse = (pos == 1) & (rng.random(m) < 0.75)
    relation = np.where(spouse, np.where(head_gender[hh] == "nam", "Vợ", "Chồng"), relation).astype(object)
    hb = head_birth[hh]
    offsets = {"Chủ hộ": (0, 0), "Vợ": (-3, 6), "Chồng": (-6, 3), "Con": (20, 40), "Con dâu": (18, 38),
               "Bố": (-35, -20), "Mẹ": (-33, -18), "Cháu": (40, 60)}
    birth = hb.copy()
    for rel, (lo, hi) in offsets.items():
        idx = np.flatnonzero(relation == rel)
        birth[idx] = _add_years(hb[idx], rng, lo, hi)
    birth = np.minimum(birth, np.datetime64("2025-05-31"))
    gender = np.where(rng.random(m) < 0.5, "nam", "nu").astype(object)
    gender = np.where(pos == 0, head_gender[hh], gender)
    gender = np.where(np.isin(relation, ["Vợ", "Mẹ", "Con dâu"]), "nu", gender)
    gender = np.where(np.isin(relation, ["Chồng", "Bố"]), "nam", gender).astype(object)
    family = np.array(names.FAMILY_NAMES, dtype=object)[rng.integers(0, len(names.FAMILY_NAMES), n)][hh]
    inherits = np.isin(relation, ["Chủ hộ", "Con", "Cháu"])
    random_family = np.array(names.FAMILY_NAMES, dtype=object)[rng.integers(0, len(names.FAMILY_NAMES), m)]
    people = _people(rng, ctx.cids, ctx.home, birth, gender, np.where(inherits, family, random_family))
    households["head_citizen_id"] = people["citizen_id"][pos == 0]

    member_reg = np.maximum(reg[hh], birth)
    residents = pd.DataFrame(
        {
            **people,
            "household_code": hh_code[hh],
            "relation_to_head": relation,
            "old_commune_code": households["old_commune_code"].to_numpy(dtype=object)[hh],
            "address_detail": households["address_detail"].to_numpy(dtype=object)[hh],
            "registered_date": member_reg,
            "_expected": households["_expected"].to_numpy(dtype=object)[hh],
            "_defect": hh_tags[hh],
            "_detail": households["_detail"].to_numpy(dtype=object)[hh],
            "_related": None,
            "_raw_registered_date": households["_raw_registered_date"].to_numpy(dtype=object)[hh],
            "_raw_birth_date": None,
        }
    )
    # Row-level defects only on non-head members of clean households.
    free = np.flatnonzero((residents["_defect"].isna().to_numpy()) & (pos != 0))
    plan = _plan(rng, len(free), list(_RESIDENT_TAGS) if after is None else [])
    residents.loc[free, "_defect"] = plan
    rmap = ctx.source.datasets["residents"]
    _apply_row_defects(ctx, residents, rmap, date_column="birth_date", cid_column="citizen_id")
    residents.insert(0, "_seq", np.arange(1, m + 1))

    hh_updated = _stamp(rng, reg + rng.integers(0, 60, n).astype("timedelta64[D]"), cap)
    households["updated_at"] = hh_updated
    residents["updated_at"] = _stamp(rng, member_reg + rng.integers(0, 60, m).astype("timedelta64[D]"), cap)
    return households, residents


def _copy_rows(frame: pd.DataFrame, rows: np.ndarray, tag: str, related: np.ndarray, seq_start: int) -> pd.DataFrame:
    out = frame.iloc[rows].copy()
    out["_seq"] = np.arange(seq_start, seq_start + len(rows))
    out["_defect"] = tag
    out["_detail"] = None
    out["_related"] = related
    return out


def _clean_rows(frame: pd.DataFrame, extra: np.ndarray | None = None) -> np.ndarray:
    mask = frame["_defect"].isna().to_numpy().copy()
    if extra is not None:
        mask &= extra
    return np.flatnonzero(mask)


def _n_dups(n: int) -> int:
    return max(1, round(DEFECT_RATE * n))


# ----------------------------------------------------------------------------------------------
# Keys, rendering to legacy columns, writing


def _inverse_values(mapping: DatasetMapping, column: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for legacy, canonical in mapping.values.get(column, {}).items():
        out.setdefault(canonical, legacy)
    return out


def _typed(source_id: str, dataset: str) -> dict[str, str]:
    return dict(_LAYOUTS[(source_id, dataset)].typed)


def _surrogate(mapping: DatasetMapping) -> str | None:
    legacy = set(mapping.columns.values())
    extra = [c for c in mapping.primary_key if c not in legacy]
    return extra[0] if extra else None


def _surrogates(layout: _Layout, seq: pd.Series) -> np.ndarray:
    """Surrogate keys as the legacy system writes them ("{}" -> '17', "NK{:07d}" -> 'NK0000017')."""
    fmt = layout.surrogate_format
    if fmt == "{}":
        return seq.astype(str).to_numpy(dtype=object)
    prefix, _, spec = fmt.partition("{:")
    width = int(spec.rstrip("d}").lstrip("0") or 0)
    return (prefix + seq.astype(str).str.zfill(width)).to_numpy(dtype=object)


def _source_keys(source_id: str, dataset: str, frame: pd.DataFrame) -> np.ndarray:
    mapping = _source(source_id).datasets[dataset]
    layout = _LAYOUTS[(source_id, dataset)]
    legacy_to_canonical = {v: k for k, v in mapping.columns.items()}
    parts = []
    for col in mapping.primary_key:
        if col in legacy_to_canonical:
            parts.append(frame[legacy_to_canonical[col]].astype(str).to_numpy(dtype=object))
        else:
            parts.append(_surrogates(layout, frame["_seq"]))
    keys = parts[0]
    for p in parts[1:]:
        keys = keys + "|" + p
    return keys


def _render(source_id: str, dataset: str, frame: pd.DataFrame) -> pd.DataFrame:
    """Canonical frame -> the legacy table as the system stores it (column names, formats, codes)."""
    mapping = _source(source_id).datasets[dataset]
    ds = get_dataset(dataset)
    layout = _LAYOUTS[(source_id, dataset)]
    typed = dict(layout.typed)
    out: dict[str, pd.Series] = {}
    surrogate = _surrogate(mapping)
    if surrogate:
        keys = frame["_seq"].to_numpy() if layout.surrogate_format == "{}" else _surrogates(layout, frame["_seq"])
        out[surrogate] = pd.Series(keys, dtype=np.int64 if layout.surrogate_format == "{}" else object)
    for canonical, legacy in mapping.columns.items():
        values = frame[canonical]
        kind = ds.column(canonical).type
        # Typed columns stay numpy-typed (only PostgreSQL has them); the rest is text or None.
        if typed.get(canonical) == "timestamp":
            out[legacy] = pd.Series(pd.to_datetime(values).to_numpy().astype("datetime64[s]"))
            continue
        if typed.get(canonical) == "int":
            out[legacy] = pd.Series(values.to_numpy(dtype=np.int64))
            continue
        if kind in ("date", "timestamp"):
            fmt = mapping.date_format if kind == "date" else mapping.timestamp_format
            text = pd.to_datetime(values).dt.strftime(fmt)
            col = text.astype(object).where(text.notna(), None).to_numpy(dtype=object)
        elif canonical in mapping.values:
            inverse = _inverse_values(mapping, canonical)
            col = values.map(lambda v, inv=inverse: inv.get(v, v)).to_numpy(dtype=object)
        elif kind == "int":
            col = values.astype(str).to_numpy(dtype=object)
        else:
            col = values.to_numpy(dtype=object)
        raw = f"_raw_{canonical}"
        if raw in frame:
            override = frame[raw].to_numpy(dtype=object)
            has = pd.notna(override)
            col = np.where(has, override, col)
        col = np.array(col, dtype=object)
        col[pd.isna(col)] = None
        out[legacy] = pd.Series(col, dtype=object)
    return pd.DataFrame(out)


def _ledger_rows(source_id: str, dataset: str, frame: pd.DataFrame, location: np.ndarray | str) -> pd.DataFrame:
    ds = get_dataset(dataset)
    natural = frame[ds.natural_key[0]].astype(str).to_numpy(dtype=object)
    for col in ds.natural_key[1:]:
        natural = natural + "|" + frame[col].astype(str).to_numpy(dtype=object)
    commune = frame["old_commune_code"] if "old_commune_code" in frame else None
    return pd.DataFrame(
        {
            "source_id": source_id,
            "dataset": dataset,
            "source_key": _source_keys(source_id, dataset, frame),
            "natural_key": natural,
            "defect": frame["_defect"].to_numpy(dtype=object),
            "detail": frame["_detail"].to_numpy(dtype=object) if "_detail" in frame else None,
            "old_commune_code": None if commune is None else commune.to_numpy(dtype=object),
            "expected_new_commune_code": frame["_expected"].to_numpy(dtype=object) if "_expected" in frame else None,
            "related_key": frame["_related"].to_numpy(dtype=object),
            "location": location,
        },
        columns=LEDGER_COLUMNS,
    ).astype(object)


def _db_uri(pg_dsn: str, database: str) -> str:
    if "://" not in pg_dsn:
        from psycopg.conninfo import conninfo_to_dict

        params = conninfo_to_dict(pg_dsn)
        user = params.get("user", "postgres")
        password = f":{params['password']}" if params.get("password") else ""
        host = params.get("host", "127.0.0.1")
        port = params.get("port", "5432")
        if host.startswith("/"):
            # A unix-socket directory (the embedded pgserver): libpq and Airflow both read it percent-encoded.
            return f"postgresql://{user}{password}@{quote(host, safe='')}:{port}/{database}"
        return f"postgresql://{user}{password}@{host}:{port}/{database}"
    parts = urlsplit(pg_dsn)
    scheme = "postgresql" if parts.scheme in ("postgres", "postgresql") else parts.scheme
    return urlunsplit((scheme, parts.netloc, f"/{database}", parts.query, ""))


def _pg_ddl_type(typed: dict[str, str], canonical: str) -> str:
    return {"int": "INTEGER", "timestamp": "TIMESTAMP"}.get(typed.get(canonical, ""), "TEXT")


def _create_pg_table(conn, source_id: str, dataset: str) -> None:  # noqa: ANN001 - psycopg connection
    mapping = _source(source_id).datasets[dataset]
    typed = _typed(source_id, dataset)
    surrogate = _surrogate(mapping)
    cols = []
    if surrogate:
        cols.append(f'"{surrogate}" BIGINT NOT NULL')
    for canonical, legacy in mapping.columns.items():
        cols.append(f'"{legacy}" {_pg_ddl_type(typed, canonical)}')
    pk = ", ".join(f'"{c}"' for c in mapping.primary_key)
    conn.execute(f'CREATE TABLE "{mapping.table}" ({", ".join(cols)}, PRIMARY KEY ({pk}))')
    if mapping.cursor:
        conn.execute(f'CREATE INDEX ON "{mapping.table}" ("{mapping.cursor}")')


def _copy_pg(conn, table: str, legacy: pd.DataFrame) -> None:  # noqa: ANN001 - psycopg connection
    import pyarrow as pa
    import pyarrow.csv as pacsv

    arrays = {}
    for name in legacy.columns:
        column = legacy[name]
        if column.dtype == object:
            arrays[name] = pa.array(column.tolist(), pa.string())
        else:
            arrays[name] = pa.array(column, from_pandas=True)
    buf = io.BytesIO()
    # Every value quoted, NULLs left as unquoted empty fields: COPY keeps '' and NULL apart.
    options = pacsv.WriteOptions(include_header=False, quoting_style="all_valid")
    pacsv.write_csv(pa.table(arrays), buf, write_options=options)
    cols = ", ".join(f'"{c}"' for c in legacy.columns)
    with conn.cursor() as cur, cur.copy(f'COPY "{table}" ({cols}) FROM STDIN WITH (FORMAT csv)') as copy:
        copy.write(buf.getvalue())


def _sqlite_write(path: Path, source_id: str, dataset: str, legacy: pd.DataFrame, create: bool) -> None:
    mapping = _source(source_id).datasets[dataset]
    surrogate = _surrogate(mapping)
    with sqlite3.connect(path) as db:
        if create:
            cols = [f'"{surrogate}" INTEGER PRIMARY KEY'] if surrogate else []
            cols += [f'"{legacy_col}" TEXT' + (" PRIMARY KEY" if [legacy_col] == mapping.primary_key else "")
                     for legacy_col in mapping.columns.values()]
            db.execute(f'CREATE TABLE "{mapping.table}" ({", ".join(cols)})')
            if mapping.cursor:
                db.execute(f'CREATE INDEX "ix_{mapping.table}_cursor" ON "{mapping.table}" ("{mapping.cursor}")')
        marks = ", ".join("?" for _ in legacy.columns)
        cols_sql = ", ".join(f'"{c}"' for c in legacy.columns)
        rows = [tuple(None if v is None else (int(v) if isinstance(v, np.integer) else v) for v in row)
                for row in legacy.itertuples(index=False, name=None)]
        db.executemany(f'INSERT OR REPLACE INTO "{mapping.table}" ({cols_sql}) VALUES ({marks})', rows)


def _to_cp1258(text: str) -> bytes:
    """Encode Vietnamese text in Windows-1258: base letters precomposed, tone marks combining."""
    text = unicodedata.normalize("NFC", text)
    table: dict[str, bytes] = {}
    for ch in set(text):
        try:
            table[ch] = ch.encode("cp1258")
        except UnicodeEncodeError:
            decomposed = unicodedata.normalize("NFD", ch)
            base, marks = decomposed[0], decomposed[1:]
            tones = "".join(m for m in marks if m in "\u0300\u0301\u0303\u0309\u0323")
            shape = "".join(m for m in marks if m not in tones)
            table[ch] = (unicodedata.normalize("NFC", base + shape) + tones).encode("cp1258")
    return b"".join(table[ch] for ch in text)


def _write_csv(path: Path, legacy: pd.DataFrame, *, encoding: str, nfd: bool = False, bom: bool = False) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(["STT", *legacy.columns])
    writer.writerows((i, *row) for i, row in enumerate(legacy.itertuples(index=False, name=None), start=1))
    text = buf.getvalue()
    if nfd:
        # The values were typed into a tool that stores decomposed Unicode; its header is fixed text.
        header, _, body = text.partition("\r\n")
        text = header + "\r\n" + unicodedata.normalize("NFD", body)
    if encoding == "cp1258":
        path.write_bytes(_to_cp1258(text))
    else:
        path.write_bytes(("\ufeff" if bom else "").encode("utf-8") + text.encode("utf-8"))


_XLSX_PARTS = {
    "[Content_Types].xml": (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
        '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
        '<Default Extension="xml" ContentType="application/xml"/>'
        '<Override PartName="/xl/workbook.xml" '
        'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
        '<Override PartName="/xl/worksheets/sheet1.xml" '
        'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
        "</Types>"
    ),
    "_rels/.rels": (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        '<Relationship Id="rId1" '
        'Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" '
        'Target="xl/workbook.xml"/></Relationships>'
    ),
    "xl/_rels/workbook.xml.rels": (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        '<Relationship Id="rId1" '
        'Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" '
        'Target="worksheets/sheet1.xml"/></Relationships>'
    ),
}


def _xml_text(value: object) -> str:
    return str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _write_xlsx(path: Path, sheet: str, legacy: pd.DataFrame) -> None:
    """A minimal one-sheet XLSX with inline strings (openpyxl is too slow for 10^5 rows)."""
    import zipfile

    letters = [chr(65 + i) for i in range(len(legacy.columns))]  # fewer than 26 columns
    rows = [list(legacy.columns), *legacy.itertuples(index=False, name=None)]
    body = []
    for r, row in enumerate(rows, start=1):
        cells = "".join(
            f'<c r="{letters[c]}{r}" t="inlineStr"><is><t xml:space="preserve">{_xml_text(v)}</t></is></c>'
            for c, v in enumerate(row)
            if v is not None and v != ""
        )
        body.append(f'<row r="{r}">{cells}</row>')
    sheet_xml = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        '<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>'
        + "".join(body)
        + "</sheetData></worksheet>"
    )
    workbook = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        '<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
        'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">'
        f'<sheets><sheet name="{_xml_text(sheet)}" sheetId="1" r:id="rId1"/></sheets></workbook>'
    )
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, text in _XLSX_PARTS.items():
            zf.writestr(name, text)
        zf.writestr("xl/workbook.xml", workbook)
        zf.writestr("xl/worksheets/sheet1.xml", sheet_xml)


def _export_files(world: World, dataset: str, frame: pd.DataFrame, stamp: str, tag: str | None = None) -> np.ndarray:
    """Write export files of one dataset of the Yên Sơn folder; return each row's file name."""
    source_id = "tq_yenson_xa_exports"
    mapping = _source(source_id).datasets[dataset]
    layout = _LAYOUTS[(source_id, dataset)]
    folder = world.export_dir()
    folder.mkdir(parents=True, exist_ok=True)
    legacy = _render(source_id, dataset, frame)
    location = np.empty(len(frame), dtype=object)
    if dataset == "households" or tag is not None:
        groups = {tag or "075": np.arange(len(frame))}  # the district tool exports one file
    else:
        own = set(_source(source_id).old_units.communes)
        commune = frame["old_commune_code"].map(lambda c: c if isinstance(c, str) and c in own else "khac")
        groups = {c: np.flatnonzero((commune == c).to_numpy()) for c in sorted(set(commune))}
    for i, (group, rows) in enumerate(groups.items()):
        if not len(rows):
            continue
        part = legacy.iloc[rows].reset_index(drop=True)
        if dataset == "dossiers":
            name = f"{layout.file_stem}_{group}_{stamp}.xlsx"
            _write_xlsx(folder / name, mapping.sheet or "Sheet1", part)
        else:
            name = f"{layout.file_stem}_{group}_{stamp}.csv"
            # Some communes' export tools write decomposed Unicode, some a UTF-8 BOM.
            _write_csv(folder / name, part, encoding=mapping.encoding, nfd=(dataset == "residents" and i % 3 == 1),
                       bom=(dataset == "residents" and i % 4 == 2))
        location[rows] = name
    return location



# ----------------------------------------------------------------------------------------------
# Generation


def _build(seed: int, size: int, cids: _Cids) -> dict[tuple[str, str], pd.DataFrame]:
    """All canonical frames of the world, cross-system duplicates included."""
    t: dict[tuple[str, str], pd.DataFrame] = {}

    def rows(source_id: str, dataset: str) -> int:
        return max(20, round(_LAYOUTS[(source_id, dataset)].rows_per_size * size))

    # Vị Xuyên one-stop shop: dossiers (with in-system duplicates) and their steps.
    vx = _context("hg_vixuyen_motcua", seed, cids)
    n = rows(vx.source.id, "dossiers")
    dossiers = _dossiers(vx, n, 1, _plan(vx.rng, n, [x for x in _DOSSIER_TAGS if vx.supports(x)]))
    picks = vx.rng.choice(_clean_rows(dossiers), _n_dups(n), replace=False)
    related = "hg_vixuyen_motcua|" + dossiers["_seq"].to_numpy()[picks].astype(str).astype(object)
    dup = _copy_rows(dossiers, picks, "dup_in_system", related, n + 1)
    dup["updated_at"] = dup["updated_at"] + pd.Timedelta(hours=3)
    t[("hg_vixuyen_motcua", "dossiers")] = pd.concat([dossiers, dup], ignore_index=True)
    t[("hg_vixuyen_motcua", "dossier_steps")] = _steps(vx, dossiers)

    # Bắc Quang: its own dossiers plus "liên thông" copies of Vị Xuyên dossiers; residents.
    bq = _context("hg_bacquang_sqlite", seed, cids)
    n = rows(bq.source.id, "dossiers")
    own = _dossiers(bq, n, 1, _plan(bq.rng, n, [x for x in _DOSSIER_TAGS if bq.supports(x)]))
    picks = bq.rng.choice(_clean_rows(dossiers), _n_dups(n), replace=False)
    related = "hg_vixuyen_motcua|" + dossiers["_seq"].to_numpy()[picks].astype(str).astype(object)
    shared = _copy_rows(dossiers, picks, "dup_cross_system", related, n + 1)
    shared["updated_at"] = shared["updated_at"] + pd.Timedelta(days=1)
    t[("hg_bacquang_sqlite", "dossiers")] = pd.concat([own, shared], ignore_index=True)
    n_hh = rows(bq.source.id, "residents")
    _, bq_res = _population(bq, n_hh, 1, _plan(bq.rng, n_hh, ["missing_code", "unknown_code", "bad_date", "old_code_after_merger"]))
    bq_res = _with_in_system_dups(bq, bq_res)
    t[("hg_bacquang_sqlite", "residents")] = bq_res

    # Sơn Dương: households and residents, plus people who moved in from Bắc Quang.
    sd = _context("tq_sonduong_dancu", seed, cids)
    n_hh = rows(sd.source.id, "households")
    hh_tags = _plan(sd.rng, n_hh, [x for x in _HOUSEHOLD_TAGS if sd.supports(x)])
    sd_hh, sd_res = _population(sd, n_hh, 1, hh_tags)
    sd_res = _with_in_system_dups(sd, sd_res)
    sd_res = _with_movers(sd, sd_res, sd_hh, bq_res, "hg_bacquang_sqlite")
    t[("tq_sonduong_dancu", "households")] = sd_hh
    t[("tq_sonduong_dancu", "residents")] = sd_res

    # Yên Sơn exports: households, residents (some moved in from Sơn Dương), dossiers.
    ys = _context("tq_yenson_xa_exports", seed, cids)
    n_hh = rows(ys.source.id, "households")
    ys_hh, ys_res = _population(ys, n_hh, 1, _plan(ys.rng, n_hh, [x for x in _HOUSEHOLD_TAGS if ys.supports(x)]))
    ys_res = _with_in_system_dups(ys, ys_res)
    originals = sd_res[sd_res["_related"].isna()]
    ys_res = _with_movers(ys, ys_res, ys_hh, originals.reset_index(drop=True), "tq_sonduong_dancu")
    t[("tq_yenson_xa_exports", "households")] = ys_hh
    t[("tq_yenson_xa_exports", "residents")] = ys_res
    n = rows(ys.source.id, "dossiers")
    t[("tq_yenson_xa_exports", "dossiers")] = _dossiers(ys, n, 1, _plan(ys.rng, n, [x for x in _DOSSIER_TAGS if ys.supports(x)]))
    return t


def _with_in_system_dups(ctx: _Ctx, residents: pd.DataFrame) -> pd.DataFrame:
    """The same person entered twice (same CCCD, new record id), sometimes in capitals."""
    n = len(residents)
    picks = ctx.rng.choice(_clean_rows(residents, residents["relation_to_head"].to_numpy() != "Chủ hộ"), _n_dups(n), replace=False)
    related = ctx.source.id + "|" + _source_keys(ctx.source.id, "residents", residents.iloc[picks])
    dup = _copy_rows(residents, picks, "dup_in_system", related, n + 1)
    dup["full_name"] = np.where(np.arange(len(dup)) % 2 == 0, dup["full_name"].str.upper(), dup["full_name"])
    dup["updated_at"] = dup["updated_at"] + pd.Timedelta(days=2)
    return pd.concat([residents, dup], ignore_index=True)


def _with_movers(ctx: _Ctx, residents: pd.DataFrame, households: pd.DataFrame, origin: pd.DataFrame,
                 origin_id: str) -> pd.DataFrame:
    """People of another system who moved into a clean household here (same CCCD in both)."""
    rng = ctx.rng
    k = _n_dups(len(residents))
    picks = rng.choice(_clean_rows(origin, origin["relation_to_head"].to_numpy() != "Chủ hộ"), k, replace=False)
    target = households.iloc[rng.choice(_clean_rows(households), k)]
    related = origin_id + "|" + _source_keys(origin_id, "residents", origin.iloc[picks])
    moved = _copy_rows(origin, picks, "dup_cross_system", related, int(residents["_seq"].max()) + 1)
    moved["household_code"] = target["household_code"].to_numpy()
    moved["relation_to_head"] = "Khác"
    moved["old_commune_code"] = target["old_commune_code"].to_numpy()
    moved["address_detail"] = target["address_detail"].to_numpy()
    moved["_expected"] = target["_expected"].to_numpy()
    moved["_raw_registered_date"] = None
    moved["registered_date"] = np.maximum(moved["registered_date"].to_numpy(), _dates(rng, k, "2024-01-01", "2025-06-30"))
    moved["updated_at"] = _stamp(rng, moved["registered_date"].to_numpy().astype("datetime64[D]"), CLOCK_START)
    return pd.concat([residents, moved], ignore_index=True)


def _reset_postgres(world: World) -> None:
    import psycopg

    with psycopg.connect(world.pg_dsn, autocommit=True) as conn:
        for db in world.databases.values():
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{db}"')


def _write_table(world: World, source_id: str, dataset: str, frame: pd.DataFrame, *, create: bool, stamp: str,
                 tag: str | None = None) -> np.ndarray:
    """Write rows (inserts or full rows replacing older versions) to the legacy system; return locations."""
    source = _source(source_id)
    if source.kind == "files":
        return _export_files(world, dataset, frame, stamp, tag)
    legacy = _render(source_id, dataset, frame)
    mapping = source.datasets[dataset]
    if source.kind == "sqlite":
        _sqlite_write(world.sqlite_path(), source_id, dataset, legacy, create)
        return np.full(len(frame), mapping.table, dtype=object)
    import psycopg

    with psycopg.connect(world.connections[source.conn_id]) as conn:
        if create:
            _create_pg_table(conn, source_id, dataset)
            _copy_pg(conn, mapping.table, legacy)
        else:
            # Upsert through a staging table: COPY is the fast path for many rows.
            conn.execute(f'CREATE TEMP TABLE stage (LIKE "{mapping.table}") ON COMMIT DROP')
            _copy_pg(conn, "stage", legacy)
            cols = ", ".join(f'"{c}"' for c in legacy.columns)
            pk = ", ".join(f'"{c}"' for c in mapping.primary_key)
            sets = ", ".join(f'"{c}" = EXCLUDED."{c}"' for c in legacy.columns if c not in mapping.primary_key)
            conn.execute(f'INSERT INTO "{mapping.table}" ({cols}) SELECT {cols} FROM stage ON CONFLICT ({pk}) DO UPDATE SET {sets}')
    return np.full(len(frame), mapping.table, dtype=object)


def generate_world(root: Path, *, seed: int = 20250701, size: int = 200, pg_dsn: str, db_prefix: str = "legacy") -> World:
    """Create the legacy systems of the demo province under `root` and on the server of `pg_dsn`.

    PostgreSQL databases are named ``<db_prefix>_<source_id>`` and dropped first, so a rerun
    starts over. `size` scales the rows of every dataset roughly linearly. Returns the World
    with its connections and the ledger of every record written.
    """
    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    world = World(root=root, connections={}, ledger=pd.DataFrame(columns=LEDGER_COLUMNS), seed=seed, size=size,
                  pg_dsn=pg_dsn, db_prefix=db_prefix)
    for source_id in SOURCE_IDS:
        source = _source(source_id)
        if source.kind == "postgres":
            world.databases[source_id] = f"{db_prefix}_{source_id}"
            world.connections[source.conn_id] = _db_uri(pg_dsn, world.databases[source_id])
        elif source.kind == "sqlite":
            world.connections[source.conn_id] = f"sqlite:///{world.sqlite_path()}"
        else:
            world.connections[source.conn_id] = json.dumps({"conn_type": "fs", "extra": {"path": str(world.export_dir())}})
    world.sqlite_path().unlink(missing_ok=True)
    if world.export_dir().exists():
        for f in world.export_dir().iterdir():
            f.unlink()
    _reset_postgres(world)

    cids = _Cids(world._cids, _units().old_province_codes)
    world.tables = _build(seed, size, cids)
    stamp = (CLOCK_START - timedelta(days=1)).strftime("%Y%m%d")
    ledgers = []
    for (source_id, dataset), frame in world.tables.items():
        location = _write_table(world, source_id, dataset, frame, create=True, stamp=stamp)
        ledgers.append(_ledger_rows(source_id, dataset, frame, location))
    # The account and mail systems (issue 6) are written by their own module, same ledger.
    from sapnhap_dev.demo.accounts import generate_account_systems

    world.account_systems = generate_account_systems(world, seed, size, cids)
    ledgers.append(world.account_systems.ledger)
    # The document systems (issue 14), one per old district, by their own module too.
    from sapnhap_dev.demo.documents import generate_document_systems

    world.document_systems = generate_document_systems(world, seed, size)
    ledgers.append(world.document_systems.ledger)
    # The reporting tools and portals (issue 14): indicator values and portal pages, same ledger.
    from sapnhap_dev.demo.estate import generate_estate_systems

    world.estate_systems = generate_estate_systems(world, seed)
    ledgers.append(world.estate_systems.ledger)
    world.ledger = pd.concat(ledgers, ignore_index=True)
    return world


# ----------------------------------------------------------------------------------------------
# The next nights: updates and inserts


def _new_rows(world: World, source_id: str, dataset: str, n: int, rng: np.random.Generator,
              window: tuple[str, str], cap: datetime) -> pd.DataFrame:
    """n new clean records of a dataset (dated in `window`, so after the merger: old codes)."""
    cids = _Cids(world._cids, _units().old_province_codes)
    ctx = _context(source_id, world.seed, cids)
    ctx.rng = rng
    current = world.tables[(source_id, dataset)]
    seq = int(current["_seq"].max()) + 1
    tags = np.full(n, "old_code_after_merger", dtype=object)
    if dataset == "dossiers":
        return _dossiers(ctx, n, seq, tags, after=window, cap=cap)
    if dataset == "households":
        households, _ = _population(ctx, n, seq, tags, after=window, cap=cap)
        return households
    if dataset == "residents":
        # Newborns and new arrivals registered into existing clean households.
        # Every generated household has at least one member, so n households give >= n people.
        _, people = _population(ctx, n, 10**6 + seq, tags, after=window, cap=cap)
        people = people.iloc[:n].reset_index(drop=True)
        # Bắc Quang stores no households table: its residents' households serve as the pool.
        pool = world.tables.get((source_id, "households"), current)
        homes = pool.iloc[rng.choice(_clean_rows(pool), n)]
        people["household_code"] = homes["household_code"].to_numpy()
        people["relation_to_head"] = np.where(people["relation_to_head"] == "Chủ hộ", "Khác", people["relation_to_head"])
        people["old_commune_code"] = homes["old_commune_code"].to_numpy()
        people["address_detail"] = homes["address_detail"].to_numpy()
        people["_expected"] = homes["_expected"].to_numpy()
        people["_detail"] = None
        people["_raw_registered_date"] = None
        people["_raw_birth_date"] = None
        people["_seq"] = np.arange(seq, seq + n)
        return people
    raise ValueError(f"cannot insert rows into {source_id}.{dataset}")


def _night(world: World) -> tuple[datetime, tuple[str, str], str]:
    world._nights += 1
    day = (CLOCK_START + timedelta(days=world._nights - 1)).date()
    cap = datetime.combine(day, datetime.min.time()) + timedelta(days=1, hours=1)
    return cap, (day.isoformat(), day.isoformat()), day.strftime("%Y%m%d")


def _append(world: World, source_id: str, dataset: str, frame: pd.DataFrame, stamp: str, cap: datetime,
            tag: str) -> pd.DataFrame:
    location = _write_table(world, source_id, dataset, frame, create=False, stamp=stamp, tag=tag)
    key = (source_id, dataset)
    world.tables[key] = pd.concat([world.tables[key], frame], ignore_index=True)
    rows = _ledger_rows(source_id, dataset, frame, location)
    world.ledger = pd.concat([world.ledger, rows], ignore_index=True)
    world.clock = max(world.clock, cap)
    return rows


def insert_rows(world: World, source_id: str, dataset: str, n: int) -> pd.DataFrame:
    """Insert n new records into one legacy dataset (a new export file for files); return their ledger rows."""
    cap, window, stamp = _night(world)
    rng = _substream(world.seed, source_id, dataset, "insert", str(world._nights))
    frame = _new_rows(world, source_id, dataset, n, rng, window, cap)
    return _append(world, source_id, dataset, frame, stamp, cap, tag=f"them{world._nights}")


def mutate_world(world: World, *, fraction: float, seed: int) -> pd.DataFrame:
    """The next night's changes in every legacy system: update `fraction` of the rows of each
    dataset (their cursor moves forward; open dossiers get completed) and insert about as many
    new ones. Files sources get a new export file holding both. Returns one row per change:
    source_id, dataset, source_key, change ('update' | 'insert'), defect, updated_at.
    """
    cap, window, stamp = _night(world)
    changes = []
    for (source_id, dataset), frame in list(world.tables.items()):
        if dataset == "dossier_steps":
            continue
        rng = _substream(seed, source_id, dataset, "mutate", str(world._nights))
        n_upd = max(1, round(fraction * len(frame)))
        # Only one version of a key per night: a key written twice (in-system duplicates by
        # natural key) is still a distinct source key, so any row may be picked.
        rows = np.sort(rng.choice(len(frame), n_upd, replace=False))
        updated = frame.iloc[rows].copy()
        ts = np.datetime64(cap - timedelta(hours=1), "s") - rng.integers(0, 6 * 3600, n_upd).astype("timedelta64[s]")
        updated["updated_at"] = ts
        if dataset == "dossiers":
            opened = (updated["status"] == "processing").to_numpy() & updated["_raw_status"].isna().to_numpy()
            updated.loc[opened, "status"] = "completed"
            updated.loc[opened, "completed_date"] = np.datetime64(window[0])
        inserts = _new_rows(world, source_id, dataset, max(1, round(fraction * len(frame) / 2)), rng, window, cap)
        kind = _source(source_id).kind
        if kind == "files":
            both = pd.concat([updated, inserts], ignore_index=True)
            location = _export_files(world, dataset, both, stamp, tag="capnhat")
            updated_loc, insert_loc = location[: len(updated)], location[len(updated):]
        else:
            updated_loc = _write_table(world, source_id, dataset, updated, create=False, stamp=stamp)
            insert_loc = _write_table(world, source_id, dataset, inserts, create=False, stamp=stamp)
        table = world.tables[(source_id, dataset)]
        table.loc[table.index[rows], ["updated_at"]] = updated["updated_at"].to_numpy()
        if dataset == "dossiers":
            table.loc[table.index[rows], ["status", "completed_date"]] = updated[["status", "completed_date"]].to_numpy()
        world.tables[(source_id, dataset)] = pd.concat([table, inserts], ignore_index=True)
        new_ledger = _ledger_rows(source_id, dataset, inserts, insert_loc)
        world.ledger = pd.concat([world.ledger, new_ledger], ignore_index=True)
        for change, part, loc in (("update", updated, updated_loc), ("insert", inserts, insert_loc)):
            changes.append(pd.DataFrame({
                "source_id": source_id,
                "dataset": dataset,
                "source_key": _source_keys(source_id, dataset, part),
                "change": change,
                "defect": part["_defect"].to_numpy(dtype=object),
                "updated_at": pd.to_datetime(part["updated_at"]).to_numpy(),
                "location": loc,
            }))
        if source_id == "hg_vixuyen_motcua" and dataset == "dossiers":
            steps = _steps(_context(source_id, seed, _Cids(world._cids, _units().old_province_codes), "steps"), inserts,
                           cap=cap, out_of_order=False, max_gap_hours=2)
            old_steps = world.tables[(source_id, "dossier_steps")]
            steps["_seq"] = np.arange(1, len(steps) + 1) + int(old_steps["_seq"].max())
            loc = _write_table(world, source_id, "dossier_steps", steps, create=False, stamp=stamp)
            world.tables[(source_id, "dossier_steps")] = pd.concat([old_steps, steps], ignore_index=True)
            world.ledger = pd.concat([world.ledger, _ledger_rows(source_id, "dossier_steps", steps, loc)], ignore_index=True)
            changes.append(pd.DataFrame({
                "source_id": source_id, "dataset": "dossier_steps",
                "source_key": _source_keys(source_id, "dossier_steps", steps), "change": "insert",
                "defect": steps["_defect"].to_numpy(dtype=object),
                "updated_at": pd.to_datetime(steps["updated_at"]).to_numpy(), "location": loc,
            }))
    world.clock = max(world.clock, cap)
    return pd.concat(changes, ignore_index=True)


# ----------------------------------------------------------------------------------------------
# CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Generate the demo world of legacy systems (new Tuyên Quang, 08).")
    parser.add_argument("--root", type=Path, required=True, help="folder for the SQLite file and the export files")
    parser.add_argument("--size", type=int, default=200)
    parser.add_argument("--seed", type=int, default=20250701)
    parser.add_argument("--pg-dsn", required=True, help="admin DSN of the PostgreSQL server for the legacy databases")
    parser.add_argument("--db-prefix", default="legacy")
    parser.add_argument("--connections", type=Path, help="also write the connections as JSON to this file")
    args = parser.parse_args(argv)
    started = datetime.now()
    world = generate_world(args.root, seed=args.seed, size=args.size, pg_dsn=args.pg_dsn, db_prefix=args.db_prefix)
    seconds = (datetime.now() - started).total_seconds()
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(world.counts().to_string(index=False))
    print(f"\n{len(world.ledger)} records in {seconds:.1f}s")
    for conn_id, uri in world.connections.items():
        print(f"{conn_id}: {uri}")
    if args.connections:
        args.connections.write_text(json.dumps(world.connections, indent=2, ensure_ascii=False), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
