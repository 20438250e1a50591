"""The Great Expectations suites of the quality stage, one per dataset and stage.

The committed JSON files in ``expectations/`` are what runs; this module generates them from
the canonical dataset schemas so the two cannot drift (a unit test compares them). Every dataset
gets the generic checks built here from its schema (columns, required fields, unreadable values,
the natural key, the unit mapping); its own checks are in its file,
``include/sapnhap/datasets/<dataset>.py`` (``transformed_checks``, optionally ``raw_checks``),
built from :mod:`sapnhap.quality.checks`. Regenerate after changing a check, and bump
:data:`SUITE_VERSION`::

    PYTHONPATH=include python -m sapnhap.quality.suites

Every expectation carries ``notes`` (why it exists) and ``meta``:

- ``check``: a stable id of the check (``mapping_status.review``), used in quarantine reports;
- ``severity``: ``block`` (row goes to quarantine) or ``warn`` (reported, still loaded);
- ``reason_vi`` / ``fix_vi``: what the data owner reads in the report;
- ``column``: the canonical column the report names; ``value_column``: where the reported
  value is read (the raw text for unparsed dates);
- ``requires``: registry inputs the check needs (``new_codes``, ``old_codes``,
  ``province_prefixes``); without them the check is skipped and reported as skipped.

Cross-column and grouped checks run on helper columns (prefixed ``_q_``) that
:mod:`sapnhap.quality.helpers` derives before the single GX run.
"""

from __future__ import annotations

import json
from pathlib import Path

from sapnhap.datasets import DATASETS, Dataset, dataset_file, get_dataset
from sapnhap.quality.checks import (
    H_NEW_IN_FORCE,
    H_OLD_IN_REGISTRY,
    H_PREV_STEP_STARTED,
    HELPER_PREFIX,
    LINEAGE_ALL,
    LINEAGE_NOT_NULL,
    LINEAGE_UNIT,
    MAPPING_STATUSES,
    RAW_SUFFIX,
    expectation,
    h_cccd,
    not_null,
    schema_checks,
    unique,
    unit_checks,
    unparsed,
)

# Names the quality stage reads from here (sapnhap.quality.helpers); they live in checks.
__all__ = [
    "H_NEW_IN_FORCE",
    "H_OLD_IN_REGISTRY",
    "H_PREV_STEP_STARTED",
    "HELPER_PREFIX",
    "LINEAGE_ALL",
    "LINEAGE_NOT_NULL",
    "LINEAGE_UNIT",
    "MAPPING_STATUSES",
    "RAW_SUFFIX",
    "SUITE_VERSION",
    "STAGES",
    "build_suite",
    "dump_suite",
    "expectation",
    "h_cccd",
    "load_suite",
    "raw_suite",
    "suite_path",
    "transformed_suite",
    "write_suites",
]

SUITE_VERSION = "1.2.0"
STAGES = ("raw", "transformed")
DEFAULT_SUITE_DIR = Path(__file__).resolve().parents[3] / "expectations"


def transformed_suite(dataset: str) -> dict:
    """The suite for a transformed batch of ``dataset``, as the JSON-ready dict.

    The generic checks of its schema, then what its file adds (``transformed_checks``).
    """
    ds = get_dataset(dataset)
    lineage = list(LINEAGE_ALL) + (list(LINEAGE_UNIT) if ds.has_unit else [])
    exps: list[dict] = schema_checks(ds, ds.column_names + [c for c in lineage if c not in ds.column_names])
    for col in ds.columns:
        if col.required:
            exps.append(not_null(ds, col.name, is_date=col.type in ("date", "timestamp", "int")))
    for col in LINEAGE_NOT_NULL + (("mapping_status",) if ds.has_unit else ()):
        exps.append(not_null(ds, col, is_date=False))
    for col in ds.columns:
        if col.type in ("date", "timestamp", "int"):
            # updated_at only drives incremental extraction; an unreadable one loses no business data.
            severity = "warn" if col.name == "updated_at" else "block"
            exps.append(unparsed(ds, col.name, "int" if col.type == "int" else "date", severity=severity))
    exps.append(unique(ds))
    if ds.has_unit:
        exps += unit_checks()
    return _suite(ds, "transformed", dataset_file(dataset).transformed_checks(exps))


def raw_suite(dataset: str) -> dict:
    """The suite for a raw extract renamed to canonical columns (values still legacy text).

    Used by the assessment run (R13) and as an early signal: every check warns, none blocks;
    blocking happens on the transformed batch. A dataset's file may add its own (``raw_checks``).
    """
    ds = get_dataset(dataset)
    exps: list[dict] = []
    for col in ds.columns:
        if col.required or col.name in ds.natural_key:
            exps.append(schema_checks(ds, [col.name])[0])
            exps.append(not_null(ds, col.name, is_date=False))
    for col in ds.columns:
        if col.type in ("date", "timestamp"):
            exps.append(expectation(
                "expect_column_values_to_match_regex",
                {"column": col.name, "regex": r"^\s*(?:\d{1,2}[/.\-]\d{1,2}[/.\-]\d{4}|\d{4}-\d{2}-\d{2})(?:[ T]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?\s*$"},
                check=f"raw_format.{col.name}",
                severity="warn",
                notes="Legacy dates are expected as dd/mm/yyyy (or ISO); other text will not parse.",
                reason_vi=f"Giá trị '{col.name}' không theo định dạng ngày dd/mm/yyyy.",
                fix_vi="Sửa giá trị trên hệ thống cũ hoặc khai báo đúng định dạng ngày trong tệp cấu hình nguồn.",
                column=col.name,
            ))
        elif col.type == "citizen_id":
            exps.append(expectation(
                "expect_column_values_to_match_regex",
                {"column": col.name, "regex": r"^[\s.\-]*(?:\d[\s.\-]*){12}$"},
                check=f"raw_format.{col.name}",
                severity="warn",
                notes="After removing spaces, dots and dashes a citizen ID must have 12 digits.",
                reason_vi="Số CCCD không gồm đúng 12 chữ số.",
                fix_vi="Đối chiếu thẻ CCCD/CSDL quốc gia về dân cư và sửa trên hệ thống cũ.",
                column=col.name,
            ))
        elif col.type == "code5":
            exps.append(expectation(
                "expect_column_values_to_match_regex",
                {"column": col.name, "regex": r"^\s*\d{1,5}\s*$"},
                check=f"raw_format.{col.name}",
                severity="warn",
                notes="Commune codes are up to 5 digits (leading zeros may have been lost by spreadsheets).",
                reason_vi="Mã xã cũ không phải dãy số tối đa 5 chữ số.",
                fix_vi="Sửa mã xã cũ trên hệ thống cũ theo danh mục của Tổng cục Thống kê.",
                column=col.name,
            ))
    key = unique(ds)
    key["meta"]["severity"] = "warn"
    key["severity"] = "warning"
    exps.append(key)
    own = getattr(dataset_file(dataset), "raw_checks", None)
    if own is not None:
        exps = own(exps)
    for e in exps:
        e["meta"]["severity"] = "warn"
        e["severity"] = "warning"
    return _suite(ds, "raw", exps)


def _suite(ds: Dataset, stage: str, expectations: list[dict]) -> dict:
    checks = [e["meta"]["check"] for e in expectations]
    duplicated = {c for c in checks if checks.count(c) > 1}
    if duplicated:
        raise ValueError(f"{ds.name}.{stage}: duplicate check ids {sorted(duplicated)}")
    return {
        "name": f"{ds.name}.{stage}",
        "meta": {
            "suite_version": SUITE_VERSION,
            "dataset": ds.name,
            "stage": stage,
            "title_vi": ds.title_vi,
        },
        "notes": (
            f"Data-quality checks of the {stage} {ds.name} batch. Generated by sapnhap.quality.suites; "
            "edit the generator, bump SUITE_VERSION, regenerate."
        ),
        "expectations": expectations,
    }


def build_suite(dataset: str, stage: str = "transformed") -> dict:
    """The generated suite dict of ``dataset`` at ``stage`` ('raw' or 'transformed')."""
    if stage == "transformed":
        return transformed_suite(dataset)
    if stage == "raw":
        return raw_suite(dataset)
    raise ValueError(f"unknown stage {stage!r}; known: {', '.join(STAGES)}")


def suite_path(dataset: str, stage: str = "transformed", suite_dir: Path | None = None) -> Path:
    return Path(suite_dir or DEFAULT_SUITE_DIR) / f"{dataset}.{stage}.json"


def load_suite(dataset: str, stage: str = "transformed", suite_dir: Path | None = None) -> dict:
    """Read the committed suite JSON of ``dataset`` at ``stage``."""
    path = suite_path(dataset, stage, suite_dir)
    if not path.exists():
        raise FileNotFoundError(f"no expectation suite {path}; generate it with python -m sapnhap.quality.suites")
    return json.loads(path.read_text(encoding="utf-8"))


def dump_suite(suite: dict) -> str:
    return json.dumps(suite, ensure_ascii=False, indent=2) + "\n"


def write_suites(suite_dir: Path | None = None) -> list[Path]:
    """(Re)generate every suite JSON file; returns the paths written."""
    directory = Path(suite_dir or DEFAULT_SUITE_DIR)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name in sorted(DATASETS):
        for stage in STAGES:
            path = suite_path(name, stage, directory)
            path.write_text(dump_suite(build_suite(name, stage)), encoding="utf-8")
            written.append(path)
    return written


if __name__ == "__main__":
    for p in write_suites():
        print(p)
