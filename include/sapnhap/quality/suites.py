"""The Great Expectations suites of the quality stage, one per dataset and stage.

The committed JSON files in ``expectations/`` are what runs; this module generates them from
the canonical dataset schemas so the two cannot drift (a unit test compares them). Regenerate
after changing a check, and bump :data:`SUITE_VERSION`::

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
from typing import Any

from great_expectations.expectations.row_conditions import Column as Col

from sapnhap.datasets import (
    ACCOUNT_STATUSES,
    DOCUMENT_DIRECTIONS,
    DOCUMENT_STATUSES,
    DOSSIER_STATUSES,
    SECURITY_LEVELS,
    UNIT_LEVELS,
    Dataset,
    get_dataset,
)
from sapnhap.documents import (
    H_ISSUED_DATE_PLAUSIBLE,
    H_NUMBER_PER_ISSUER_YEAR,
    H_OTHER_AGENCY_STATUS,
    H_OWN_AGENCY_STATUS,
)

SUITE_VERSION = "1.2.0"
STAGES = ("raw", "transformed")
DEFAULT_SUITE_DIR = Path(__file__).resolve().parents[3] / "expectations"
RAW_SUFFIX = "__raw"
HELPER_PREFIX = "_q_"
MAPPING_STATUSES = ("mapped", "review", "unknown_code", "missing_code")
GENDERS = ("nam", "nu")

# Lineage every transformed row carries (see sapnhap.transform); unit datasets carry the unit
# mapping columns too.
LINEAGE_ALL = ("_row_id", "source_id", "source_key", "record_hash", "unit_scheme")
LINEAGE_UNIT = (
    "old_province_code",
    "old_district_code",
    "new_province_code",
    "new_commune_code",
    "mapping_method",
    "mapping_status",
    "crosswalk_version",
    "flag_old_code_after_merger",
)
# _row_id is checked before GX runs (validate_batch raises): failing rows are named by it.
LINEAGE_NOT_NULL = ("source_id", "source_key", "record_hash")

# Helper columns derived by sapnhap.quality.helpers.
H_NEW_IN_FORCE = "_q_new_commune_code_in_force"
H_OLD_IN_REGISTRY = "_q_old_commune_code_in_registry"
H_PREV_STEP_STARTED = "_q_prev_step_started_at"


def h_cccd(column: str, part: str) -> str:
    """Name of a citizen-ID helper column, e.g. ``_q_citizen_id_gender_digit``."""
    return f"{HELPER_PREFIX}{column}_{part}"


def _exp(
    type_: str,
    kwargs: dict[str, Any],
    *,
    check: str,
    severity: str,
    notes: str,
    reason_vi: str,
    fix_vi: str,
    column: str,
    value_column: str | None = None,
    requires: tuple[str, ...] = (),
) -> dict[str, Any]:
    if severity not in ("block", "warn"):
        raise ValueError(f"severity is block or warn, not {severity!r}")
    meta: dict[str, Any] = {
        "check": check,
        "severity": severity,
        "reason_vi": reason_vi,
        "fix_vi": fix_vi,
        "column": column,
        "value_column": value_column or column,
    }
    if requires:
        meta["requires"] = list(requires)
    return {
        "type": type_,
        "kwargs": kwargs,
        "meta": meta,
        "notes": notes,
        # GX's own severity, so Data Docs and GX actions rank failures the same way we do.
        "severity": "critical" if severity == "block" else "warning",
    }


def _raw_is_null(column: str) -> dict:
    return Col(column + RAW_SUFFIX).is_null().dict()


def _raw_not_null(column: str) -> dict:
    return Col(column + RAW_SUFFIX).is_not_null().dict()


def _schema(ds: Dataset, columns: list[str]) -> list[dict]:
    return [
        _exp(
            "expect_column_to_exist",
            {"column": c},
            check=f"schema.{c}",
            severity="block",
            notes=(
                f"The transform guarantees every canonical and lineage column of {ds.name}; a missing "
                "column means a broken source mapping or transform, and the batch cannot be loaded."
            ),
            reason_vi=f"Lô dữ liệu thiếu cột bắt buộc '{c}'.",
            fix_vi="Kiểm tra ánh xạ cột trong tệp cấu hình nguồn (include/sources/<nguồn>.yaml) và bước chuyển đổi.",
            column=c,
        )
        for c in columns
    ]


def _not_null(ds: Dataset, column: str, *, is_date: bool) -> dict:
    kwargs: dict[str, Any] = {"column": column}
    if is_date:
        # Unparsed dates have their own check with a different fix; do not report them twice.
        kwargs["row_condition"] = _raw_is_null(column)
    lineage = column in LINEAGE_NOT_NULL or column == "mapping_status"
    return _exp(
        "expect_column_values_to_not_be_null",
        kwargs,
        check=f"not_null.{column}",
        severity="block",
        notes=(
            f"{column} is required lineage (R3): without it a loaded record cannot be traced to its source."
            if lineage
            else f"{column} is a required field of {ds.name}; the platform cannot use a record without it."
        ),
        reason_vi=f"Thiếu giá trị bắt buộc ở cột '{column}'.",
        fix_vi=(
            "Lỗi ở bước chuyển đổi (truy vết nguồn gốc); báo nhóm dữ liệu."
            if lineage
            else f"Bổ sung '{column}' cho bản ghi trên hệ thống cũ rồi đồng bộ lại."
        ),
        column=column,
    )


def _unparsed(ds: Dataset, column: str, kind: str, *, severity: str) -> dict:
    what = "số" if kind == "int" else "ngày/giờ"
    return _exp(
        "expect_column_values_to_not_be_null",
        {"column": column, "row_condition": _raw_not_null(column)},
        check=f"parse.{column}",
        severity=severity,
        notes=(
            f"The legacy text of {column} could not be parsed with the source's format; loading it as "
            "empty would silently lose data (R1), so the original text is kept in "
            f"{column}{RAW_SUFFIX} and the row is reported."
        ),
        reason_vi=f"Giá trị '{column}' ở hệ thống cũ không đọc được thành {what} hợp lệ.",
        fix_vi=(
            "Sửa giá trị trên hệ thống cũ (định dạng dd/mm/yyyy) hoặc khai báo đúng định dạng "
            "trong tệp cấu hình nguồn."
            if kind != "int"
            else "Sửa giá trị trên hệ thống cũ thành số nguyên."
        ),
        column=column,
        value_column=column + RAW_SUFFIX,
    )


def _unique(ds: Dataset) -> dict:
    key = list(ds.natural_key)
    if len(key) == 1:
        type_, kwargs = "expect_column_values_to_be_unique", {"column": key[0]}
    else:
        type_, kwargs = "expect_compound_columns_to_be_unique", {"column_list": key}
    return _exp(
        type_,
        kwargs,
        check="unique." + "+".join(key),
        severity="block",
        notes=(
            f"The natural key ({', '.join(key)}) must identify one record (R5: no duplication). The "
            "transform already merges exact repeats, so what is left here are conflicting copies."
        ),
        reason_vi=f"Trùng khoá ({', '.join(key)}) trong cùng lô dữ liệu.",
        fix_vi="Xác định bản ghi đúng trên hệ thống cũ và huỷ/sửa bản ghi trùng.",
        column=key[0] if len(key) == 1 else "+".join(key),
        value_column=key[0],
    )


def _unit_checks() -> list[dict]:
    out = [
        _exp(
            "expect_column_values_to_be_in_set",
            {"column": "unit_scheme", "value_set": ["old", "new"]},
            check="enum.unit_scheme",
            severity="block",
            notes="R10: every record is marked as keyed by the old or the new unit scheme.",
            reason_vi="Không xác định được bản ghi thuộc danh mục đơn vị cũ hay mới.",
            fix_vi="Lỗi ở bước chuyển đổi; báo nhóm dữ liệu.",
            column="unit_scheme",
        ),
        _exp(
            "expect_column_values_to_be_in_set",
            {"column": "mapping_status", "value_set": list(MAPPING_STATUSES)},
            check="enum.mapping_status",
            severity="block",
            notes="The transform only produces these mapping statuses; anything else is a bug upstream.",
            reason_vi="Trạng thái chuyển đổi mã đơn vị không hợp lệ.",
            fix_vi="Lỗi ở bước chuyển đổi; báo nhóm dữ liệu.",
            column="mapping_status",
        ),
        _exp(
            "expect_column_values_to_not_be_in_set",
            {"column": "mapping_status", "value_set": ["unknown_code"]},
            check="mapping_status.unknown_code",
            severity="block",
            notes="The old commune code is not in the old-unit registry, so no new unit can be derived.",
            reason_vi="Mã xã cũ không có trong danh mục đơn vị hành chính trước 01/07/2025.",
            fix_vi="Sửa mã xã cũ trên hệ thống cũ theo danh mục của Tổng cục Thống kê.",
            column="old_commune_code",
        ),
        _exp(
            "expect_column_values_to_not_be_in_set",
            {"column": "mapping_status", "value_set": ["review"]},
            check="mapping_status.review",
            severity="block",
            notes=(
                "The old commune was split across several new communes; the record's address did not "
                "decide which one, and guessing silently is a defect."
            ),
            reason_vi="Xã cũ bị chia tách vào nhiều xã mới; chưa xác định được xã mới của bản ghi.",
            fix_vi="Bổ sung thôn/xóm/tổ dân phố, đường phố cho bản ghi hoặc ghi quyết định ánh xạ thủ công.",
            column="old_commune_code",
        ),
        _exp(
            "expect_column_values_to_not_be_in_set",
            {"column": "mapping_status", "value_set": ["missing_code"]},
            check="mapping_status.missing_code",
            severity="block",
            notes="A record without an old commune code cannot be placed under any new unit.",
            reason_vi="Bản ghi không có mã xã cũ nên không xác định được đơn vị mới.",
            fix_vi="Bổ sung mã xã cũ (nơi tiếp nhận/thường trú) trên hệ thống cũ.",
            column="old_commune_code",
        ),
        _exp(
            "expect_column_values_to_match_regex",
            {"column": "old_commune_code", "regex": r"^\d{5}$"},
            check="format.old_commune_code",
            severity="block",
            notes="GSO commune codes have exactly 5 digits.",
            reason_vi="Mã xã cũ không đúng định dạng 5 chữ số.",
            fix_vi="Sửa mã xã cũ trên hệ thống cũ theo danh mục của Tổng cục Thống kê.",
            column="old_commune_code",
        ),
        _exp(
            "expect_column_values_to_be_in_set",
            {"column": H_OLD_IN_REGISTRY, "value_set": [True]},
            check="registry.old_commune_code",
            severity="block",
            notes="R11: old codes must be real pre-2025-07-01 units of the old registry.",
            reason_vi="Mã xã cũ không có trong danh mục đơn vị hành chính cũ (trước 01/07/2025).",
            fix_vi="Sửa mã xã cũ trên hệ thống cũ theo danh mục của Tổng cục Thống kê.",
            column="old_commune_code",
            requires=("old_codes",),
        ),
        _exp(
            "expect_column_values_to_be_in_set",
            {"column": H_NEW_IN_FORCE, "value_set": [True]},
            check="registry.new_commune_code",
            severity="block",
            notes=(
                "R15: the new commune code must be a unit of the new registry in force on the record "
                "date (on 2025-07-01 for older records); units retired by later resolutions do not count."
            ),
            reason_vi="Mã xã mới không có hiệu lực trong danh mục đơn vị mới tại ngày của bản ghi.",
            fix_vi="Kiểm tra phiên bản bảng chuyển đổi (crosswalk) và danh mục đơn vị mới; báo nhóm dữ liệu.",
            column="new_commune_code",
            requires=("new_codes",),
        ),
        _exp(
            "expect_column_values_to_be_in_set",
            {"column": "flag_old_code_after_merger", "value_set": [False]},
            check="old_code_after_merger",
            severity="warn",
            notes=(
                "A record dated on/after 2025-07-01 still uses an old commune code: the legacy system "
                "keeps running; the record is loaded under its mapped new unit but the owner is told."
            ),
            reason_vi="Bản ghi phát sinh từ 01/07/2025 nhưng vẫn dùng mã xã cũ.",
            fix_vi="Cập nhật hệ thống cũ sang mã đơn vị mới hoặc chuyển nghiệp vụ sang hệ thống mới.",
            column="old_commune_code",
        ),
    ]
    return out


def _citizen_id_checks(column: str, *, severity: str, with_birth: bool) -> list[dict]:
    out = [
        _exp(
            "expect_column_values_to_match_regex",
            {"column": column, "regex": r"^\d{12}$"},
            check=f"cccd.format.{column}",
            severity=severity,
            notes="A citizen identity number (CCCD) has exactly 12 digits.",
            reason_vi="Số CCCD không gồm đúng 12 chữ số.",
            fix_vi="Đối chiếu thẻ CCCD/CSDL quốc gia về dân cư và sửa trên hệ thống cũ.",
            column=column,
        ),
        _exp(
            "expect_column_values_to_be_in_set",
            {"column": h_cccd(column, "province_known"), "value_set": [True]},
            check=f"cccd.province.{column}",
            severity=severity,
            notes="The first 3 digits are the province of birth: '0' + a real (old or new) province code.",
            reason_vi="3 chữ số đầu của số CCCD không phải mã tỉnh nơi đăng ký khai sinh hợp lệ.",
            fix_vi="Đối chiếu thẻ CCCD/CSDL quốc gia về dân cư và sửa trên hệ thống cũ.",
            column=column,
            requires=("province_prefixes",),
        ),
    ]
    if with_birth:
        out += [
            _exp(
                "expect_column_pair_values_to_be_equal",
                {
                    "column_A": h_cccd(column, "gender_digit"),
                    "column_B": h_cccd(column, "expected_gender_digit"),
                    "ignore_row_if": "either_value_is_missing",
                },
                check=f"cccd.gender_century.{column}",
                severity=severity,
                notes=(
                    "The 4th digit encodes century and gender: 0/1 male/female born 1900-1999, "
                    "2/3 born 2000-2099; it must agree with gender and birth_date."
                ),
                reason_vi="Chữ số thứ 4 của số CCCD không khớp với giới tính và năm sinh.",
                fix_vi="Kiểm tra lại số CCCD, giới tính và ngày sinh trên hệ thống cũ.",
                column=column,
            ),
            _exp(
                "expect_column_pair_values_to_be_equal",
                {
                    "column_A": h_cccd(column, "year_digits"),
                    "column_B": h_cccd(column, "expected_year_digits"),
                    "ignore_row_if": "either_value_is_missing",
                },
                check=f"cccd.birth_year.{column}",
                severity=severity,
                notes="Digits 5-6 are the last two digits of the birth year.",
                reason_vi="Chữ số thứ 5-6 của số CCCD không khớp với năm sinh.",
                fix_vi="Kiểm tra lại số CCCD và ngày sinh trên hệ thống cũ.",
                column=column,
            ),
        ]
    return out


def _step_no_check() -> dict:
    """Steps of a processing history (dossier steps, document steps) are numbered from 1."""
    return _exp(
        "expect_column_values_to_be_between",
        {"column": "step_no", "min_value": 1},
        check="range.step_no",
        severity="block",
        notes="Steps are numbered from 1; the order of the processing history depends on it.",
        reason_vi="Số thứ tự bước xử lý không hợp lệ (phải từ 1).",
        fix_vi="Sửa số thứ tự bước trên hệ thống cũ.",
        column="step_no",
    )


def _after(column_a: str, column_b: str, *, check: str, notes: str, reason_vi: str, fix_vi: str,
           severity: str = "block") -> dict:
    return _exp(
        "expect_column_pair_values_a_to_be_greater_than_b",
        {"column_A": column_a, "column_B": column_b, "or_equal": True, "ignore_row_if": "either_value_is_missing"},
        check=check,
        severity=severity,
        notes=notes,
        reason_vi=reason_vi,
        fix_vi=fix_vi,
        column=column_a,
    )


def _dataset_checks(ds: Dataset) -> list[dict]:
    if ds.name == "dossiers":
        return [
            _exp(
                "expect_column_values_to_be_in_set",
                {"column": "status", "value_set": list(DOSSIER_STATUSES)},
                check="enum.status",
                severity="block",
                notes="Statuses are mapped to the canonical set per source; an unmapped status cannot be reported on.",
                reason_vi="Trạng thái hồ sơ không thuộc danh mục chuẩn.",
                fix_vi="Bổ sung ánh xạ trạng thái trong tệp cấu hình nguồn (values.status).",
                column="status",
            ),
            _after(
                "due_date", "received_date", check="order.due_date",
                notes="A dossier cannot be due before it was received (R17 processing history).",
                reason_vi="Ngày hẹn trả sớm hơn ngày tiếp nhận.",
                fix_vi="Sửa ngày tiếp nhận hoặc ngày hẹn trả trên hệ thống cũ.",
            ),
            _after(
                "completed_date", "received_date", check="order.completed_date",
                notes="A dossier cannot be completed before it was received.",
                reason_vi="Ngày trả kết quả sớm hơn ngày tiếp nhận.",
                fix_vi="Sửa ngày tiếp nhận hoặc ngày trả kết quả trên hệ thống cũ.",
            ),
            _exp(
                "expect_column_values_to_not_be_null",
                {
                    "column": "completed_date",
                    "row_condition": ((Col("status") == "completed") & Col("completed_date" + RAW_SUFFIX).is_null()).dict(),
                },
                check="completed_has_date",
                severity="warn",
                notes="A completed dossier should say when its result was returned; loaded anyway, the date is informative.",
                reason_vi="Hồ sơ đã hoàn thành nhưng không có ngày trả kết quả.",
                fix_vi="Bổ sung ngày trả kết quả trên hệ thống cũ.",
                column="completed_date",
            ),
            *_citizen_id_checks("applicant_citizen_id", severity="warn", with_birth=False),
        ]
    if ds.name == "dossier_steps":
        return [
            _step_no_check(),
            _after(
                "started_at", H_PREV_STEP_STARTED, check="order.step_started_at",
                notes=(
                    "R17: the processing history must be in time order: a step cannot start before the "
                    "previous step (by step_no) of the same dossier."
                ),
                reason_vi="Bước xử lý bắt đầu trước bước liền trước của cùng hồ sơ.",
                fix_vi="Sửa thời điểm bắt đầu hoặc số thứ tự bước trên hệ thống cũ.",
            ),
            _after(
                "finished_at", "started_at", check="order.step_finished_at",
                notes="A step cannot finish before it started.",
                reason_vi="Thời điểm kết thúc bước xử lý sớm hơn thời điểm bắt đầu.",
                fix_vi="Sửa thời điểm bắt đầu/kết thúc bước trên hệ thống cũ.",
            ),
        ]
    if ds.name == "documents":
        return _document_checks()
    if ds.name == "document_steps":
        return _document_step_checks()
    if ds.name == "residents":
        return [
            _exp(
                "expect_column_values_to_be_in_set",
                {"column": "gender", "value_set": list(GENDERS)},
                check="enum.gender",
                severity="block",
                notes="Genders are mapped to 'nam'/'nu' per source; the CCCD check depends on it.",
                reason_vi="Giới tính không thuộc danh mục chuẩn (nam/nu).",
                fix_vi="Bổ sung ánh xạ giới tính trong tệp cấu hình nguồn (values.gender) hoặc sửa trên hệ thống cũ.",
                column="gender",
            ),
            *_citizen_id_checks("citizen_id", severity="block", with_birth=True),
        ]
    if ds.name == "households":
        return _citizen_id_checks("head_citizen_id", severity="warn", with_birth=False)
    if ds.name == "accounts":
        return [
            _exp(
                "expect_column_values_to_be_in_set",
                {"column": "status", "value_set": list(ACCOUNT_STATUSES)},
                check="enum.status",
                severity="block",
                notes="Account statuses are mapped per source; the permission review depends on knowing which accounts are live.",
                reason_vi="Trạng thái tài khoản không thuộc danh mục chuẩn (active/locked/disabled).",
                fix_vi="Bổ sung ánh xạ trạng thái trong tệp cấu hình nguồn (values.status).",
                column="status",
            ),
            _exp(
                "expect_column_values_to_match_regex",
                {"column": "system_code", "regex": r"^[a-z][a-z0-9_]{2,62}$"},
                check="format.system_code",
                severity="block",
                notes=(
                    "system_code is half of the province-wide natural key; a legacy value left unmapped "
                    "('MOTCUA') could collide with another district's application of the same name."
                ),
                reason_vi="Mã ứng dụng chưa được ánh xạ sang mã toàn tỉnh.",
                fix_vi="Bổ sung ánh xạ mã ứng dụng trong tệp cấu hình nguồn (values.system_code).",
                column="system_code",
            ),
            _exp(
                "expect_column_values_to_match_regex",
                {"column": "username", "regex": r"^\S+$"},
                check="format.username",
                severity="block",
                notes="A user name with blanks is a data-entry error; it would not log in anywhere.",
                reason_vi="Tên đăng nhập rỗng hoặc có khoảng trắng.",
                fix_vi="Sửa tên đăng nhập trên hệ thống cũ.",
                column="username",
            ),
            *_unit_level_checks(),
            *_citizen_id_checks("citizen_id", severity="warn", with_birth=False),
        ]
    if ds.name == "mail_directory":
        return [
            _exp(
                "expect_column_values_to_match_regex",
                {"column": "address", "regex": EMAIL_REGEX},
                check="format.address",
                severity="block",
                notes="R18: the forwarding map is keyed by the old address; a malformed one cannot receive mail.",
                reason_vi="Địa chỉ thư điện tử không đúng định dạng.",
                fix_vi="Sửa địa chỉ thư trên hệ thống thư điện tử cũ.",
                column="address",
            ),
            _exp(
                "expect_column_values_to_match_regex",
                {"column": "aliases", "regex": "^" + EMAIL_REGEX[1:-1] + "(?:;" + EMAIL_REGEX[1:-1] + ")*$"},
                check="format.aliases",
                severity="warn",
                notes="Aliases also get forwarded; a malformed one is reported but the mailbox still loads.",
                reason_vi="Bí danh thư điện tử không đúng định dạng (các địa chỉ phân cách bằng ';').",
                fix_vi="Sửa bí danh trên hệ thống thư điện tử cũ.",
                column="aliases",
            ),
            *_unit_level_checks(),
            # Format only: the province-prefix helper (sapnhap.quality.helpers) knows the citizen-ID
            # columns of the older datasets; owner_citizen_id would be skipped there.
            *_citizen_id_checks("owner_citizen_id", severity="warn", with_birth=False)[:1],
        ]
    return []


def _enum(column: str, values: tuple[str, ...], *, notes: str, reason_vi: str) -> dict:
    return _exp(
        "expect_column_values_to_be_in_set",
        {"column": column, "value_set": list(values)},
        check=f"enum.{column}",
        severity="block",
        notes=notes,
        reason_vi=reason_vi,
        fix_vi=f"Bổ sung ánh xạ giá trị trong tệp cấu hình nguồn (values.{column}) hoặc sửa trên hệ thống cũ.",
        column=column,
    )


def _document_checks() -> list[dict]:
    """Documents (R16): numbering, dates and the agencies of the new structure."""
    return [
        _enum("direction", DOCUMENT_DIRECTIONS,
              notes="Incoming and outgoing documents are registered and re-mapped differently (whose unit a document is).",
              reason_vi="Loại sổ văn bản (đến/đi) không thuộc danh mục chuẩn."),
        _enum("security_level", SECURITY_LEVELS,
              notes="The security level decides who may read a document on the platform; an unmapped level cannot be enforced.",
              reason_vi="Độ mật của văn bản không thuộc danh mục chuẩn."),
        _enum("status", DOCUMENT_STATUSES,
              notes="Statuses are mapped to the canonical set per source; follow-up of direction reports on them.",
              reason_vi="Trạng thái xử lý văn bản không thuộc danh mục chuẩn."),
        _exp(
            "expect_column_values_to_be_unique",
            {"column": H_NUMBER_PER_ISSUER_YEAR},
            check="unique.number_per_issuer_year",
            severity="block",
            notes=(
                "Decree 30/2020 numbers documents per issuing agency and calendar year: one number and symbol of one "
                "issuer in one year is one document (an incoming one once per receiving unit). Two records sharing it "
                "are a double registration or a typing error, and lookup by number would return the wrong one. Checked "
                "within the batch (the first sync reads every document)."
            ),
            reason_vi="Trùng số, ký hiệu văn bản của cùng cơ quan ban hành trong cùng năm.",
            fix_vi="Đối chiếu sổ đăng ký văn bản, sửa số/ký hiệu hoặc huỷ bản đăng ký trùng trên hệ thống cũ.",
            column="number_symbol",
        ),
        _after(
            "received_date", "issued_date", check="order.received_date",
            notes="A document cannot arrive before it was issued.",
            reason_vi="Ngày đến sớm hơn ngày ban hành văn bản.",
            fix_vi="Sửa ngày ban hành hoặc ngày đến trên hệ thống cũ.",
        ),
        _exp(
            "expect_column_values_to_not_be_null",
            {"column": "received_date",
             "row_condition": ((Col("direction") == "incoming") & Col("received_date" + RAW_SUFFIX).is_null()).dict()},
            check="incoming_has_received_date",
            severity="warn",
            notes="An incoming document should say when it arrived (processing deadlines count from it); loaded anyway.",
            reason_vi="Văn bản đến không có ngày đến.",
            fix_vi="Bổ sung ngày đến trong sổ văn bản đến của hệ thống cũ.",
            column="received_date",
        ),
        _exp(
            "expect_column_values_to_be_in_set",
            {"column": H_ISSUED_DATE_PLAUSIBLE, "value_set": [True]},
            check="plausible.issued_date",
            severity="block",
            notes="An issue date before 1945-09-02 or after tomorrow is a typing error; the archive and deadlines depend on it.",
            reason_vi="Ngày ban hành văn bản không hợp lý (trước 02/09/1945 hoặc sau ngày hiện tại).",
            fix_vi="Sửa ngày ban hành trên hệ thống cũ.",
            column="issued_date",
        ),
        _exp(
            "expect_column_values_to_not_be_in_set",
            {"column": H_OWN_AGENCY_STATUS, "value_set": ["unknown", "missing"]},
            check="agency.own_unit",
            severity="block",
            notes=(
                "R16: a document belongs to its issuer (outgoing) or its receiver (incoming); without a row of the "
                "province's agency crosswalk in force on its date it cannot be placed in the new structure, and "
                "guessing the successor silently is a defect. It waits until the province adds the row."
            ),
            reason_vi="Cơ quan ban hành (văn bản đi) hoặc nơi nhận (văn bản đến) theo cơ cấu cũ chưa có trong bảng chuyển đổi cơ quan của tỉnh tại ngày văn bản.",
            fix_vi="Đề nghị Sở Nội vụ bổ sung cơ quan vào bảng chuyển đổi cơ quan (agencies_<tỉnh>.csv), hoặc sửa mã cơ quan trên hệ thống cũ.",
            column="issuer_code",
        ),
        _exp(
            "expect_column_values_to_not_be_in_set",
            {"column": H_OTHER_AGENCY_STATUS, "value_set": ["unknown"]},
            check="agency.other_unit",
            severity="warn",
            notes=(
                "The other side of a document (who sent an incoming one, who receives an outgoing one) may be outside "
                "the province; it is kept under its old name and the owner is told, so the province can add it."
            ),
            reason_vi="Cơ quan gửi/nơi nhận phía bên kia của văn bản chưa có trong bảng chuyển đổi cơ quan của tỉnh.",
            fix_vi="Nếu là cơ quan trong tỉnh, đề nghị bổ sung vào bảng chuyển đổi cơ quan; nếu ngoài tỉnh, không cần xử lý.",
            column="receiver_code",
        ),
    ]


def _document_step_checks() -> list[dict]:
    """The processing history of a document: numbered, in time order, by a unit of the new structure."""
    return [
        _step_no_check(),
        _after(
            "acted_at", H_PREV_STEP_STARTED, check="order.step_acted_at",
            notes=(
                "R16: the processing history must be in time order for follow-up of direction: a step cannot happen "
                "before the previous step (by step_no) of the same document."
            ),
            reason_vi="Bước xử lý văn bản diễn ra trước bước liền trước của cùng văn bản.",
            fix_vi="Sửa thời điểm hoặc số thứ tự bước xử lý trên hệ thống cũ.",
        ),
        _exp(
            "expect_column_values_to_not_be_in_set",
            {"column": "unit_agency_status", "value_set": ["unknown"]},
            check="agency.step_unit",
            severity="block",
            notes=(
                "Each step names the unit that acted; re-mapped through the province's agency crosswalk by the step's "
                "time. A unit with no row in force waits for the province rather than being guessed."
            ),
            reason_vi="Đơn vị xử lý theo cơ cấu cũ chưa có trong bảng chuyển đổi cơ quan của tỉnh tại thời điểm xử lý.",
            fix_vi="Đề nghị Sở Nội vụ bổ sung đơn vị vào bảng chuyển đổi cơ quan (agencies_<tỉnh>.csv), hoặc sửa mã đơn vị trên hệ thống cũ.",
            column="unit_code",
        ),
    ]


# Lower-case only: the platform compares addresses as lower-case text.
EMAIL_REGEX = r"^[a-z0-9](?:[a-z0-9._+-]*[a-z0-9])?@[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)+$"


def _old_district_codes() -> list[str]:
    """Every district code of the old (pre-2025-07-01) registry, for the unit-code check."""
    from sapnhap.reference import load_reference

    old = load_reference().old_units
    return sorted(old.loc[old["level"] == "district", "code"].dropna().unique())


def _unit_level_checks() -> list[dict]:
    """Accounts and mailboxes belong to an old commune or to an old district (its offices)."""
    return [
        _exp(
            "expect_column_values_to_be_in_set",
            {"column": "unit_level", "value_set": list(UNIT_LEVELS)},
            check="enum.unit_level",
            severity="block",
            notes="Commune-level and district-level units are re-mapped by different rules.",
            reason_vi="Cấp đơn vị không thuộc danh mục chuẩn (xã/huyện).",
            fix_vi="Bổ sung ánh xạ cấp đơn vị trong tệp cấu hình nguồn (values.unit_level).",
            column="unit_level",
        ),
        _exp(
            "expect_column_values_to_not_be_null",
            {"column": "unit_district_code", "row_condition": (Col("unit_level") == "district").dict()},
            check="not_null.unit_district_code",
            severity="block",
            notes="A district-level account has no commune: without its district nothing says where it belonged.",
            reason_vi="Tài khoản/hộp thư cấp huyện không có mã huyện cũ.",
            fix_vi="Bổ sung mã huyện cũ của đơn vị trên hệ thống cũ.",
            column="unit_district_code",
        ),
        _exp(
            "expect_column_values_to_be_in_set",
            {"column": "unit_district_code", "value_set": _old_district_codes()},
            check="registry.unit_district_code",
            severity="block",
            notes="R11: the district must be a real pre-2025-07-01 district of the old registry.",
            reason_vi="Mã huyện cũ không có trong danh mục đơn vị hành chính trước 01/07/2025.",
            fix_vi="Sửa mã huyện cũ trên hệ thống cũ theo danh mục của Tổng cục Thống kê.",
            column="unit_district_code",
        ),
    ]


def _unit_overrides(ds: Dataset, exps: list[dict]) -> list[dict]:
    """Accounts and mailboxes: the generic unit checks, adapted to units that may be districts.

    A district-level row has no commune code by design (not ``missing_code``); a row of a split
    commune is not a data defect here but a permission decision, so it loads and the permission
    review lists it as pending (R12) instead of hiding it in quarantine.
    """
    if ds.name not in ("accounts", "mail_directory"):
        return exps
    out = []
    for e in exps:
        check = e["meta"]["check"]
        if check == "mapping_status.missing_code":
            e = {**e, "kwargs": {**e["kwargs"], "row_condition": (Col("unit_level") == "commune").dict()}}
        elif check == "mapping_status.review":
            e = {**e, "meta": {**e["meta"], "severity": "warn",
                               "reason_vi": "Xã cũ bị chia tách; đơn vị mới của tài khoản/hộp thư chờ quyết định.",
                               "fix_vi": "Xem báo cáo rà soát phân quyền và ghi quyết định đơn vị mới."},
                 "severity": "warning",
                 "notes": e["notes"] + " For accounts the decision belongs to the permission review: loaded, reported."}
        out.append(e)
    return out


def transformed_suite(dataset: str) -> dict:
    """The suite for a transformed batch of ``dataset``, as the JSON-ready dict."""
    ds = get_dataset(dataset)
    lineage = list(LINEAGE_ALL) + (list(LINEAGE_UNIT) if ds.has_unit else [])
    exps: list[dict] = _schema(ds, ds.column_names + [c for c in lineage if c not in ds.column_names])
    for col in ds.columns:
        if col.required:
            exps.append(_not_null(ds, col.name, is_date=col.type in ("date", "timestamp", "int")))
    for col in LINEAGE_NOT_NULL + (("mapping_status",) if ds.has_unit else ()):
        exps.append(_not_null(ds, col, is_date=False))
    for col in ds.columns:
        if col.type in ("date", "timestamp", "int"):
            # updated_at only drives incremental extraction; an unreadable one loses no business data.
            severity = "warn" if col.name == "updated_at" else "block"
            exps.append(_unparsed(ds, col.name, "int" if col.type == "int" else "date", severity=severity))
    exps.append(_unique(ds))
    if ds.has_unit:
        exps += _unit_checks()
    exps += _dataset_checks(ds)
    return _suite(ds, "transformed", _unit_overrides(ds, exps))


def raw_suite(dataset: str) -> dict:
    """The suite for a raw extract renamed to canonical columns (values still legacy text).

    Used by the assessment run (R13) and as an early signal: every check warns, none blocks;
    blocking happens on the transformed batch.
    """
    ds = get_dataset(dataset)
    exps: list[dict] = []
    for col in ds.columns:
        if col.required or col.name in ds.natural_key:
            e = _schema(ds, [col.name])[0]
            exps.append(e)
            exps.append(_not_null(ds, col.name, is_date=False))
    for col in ds.columns:
        if col.type in ("date", "timestamp"):
            exps.append(_exp(
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
            exps.append(_exp(
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
            exps.append(_exp(
                "expect_column_values_to_match_regex",
                {"column": col.name, "regex": r"^\s*\d{1,5}\s*$"},
                check=f"raw_format.{col.name}",
                severity="warn",
                notes="Commune codes are up to 5 digits (leading zeros may have been lost by spreadsheets).",
                reason_vi="Mã xã cũ không phải dãy số tối đa 5 chữ số.",
                fix_vi="Sửa mã xã cũ trên hệ thống cũ theo danh mục của Tổng cục Thống kê.",
                column=col.name,
            ))
    unique = _unique(ds)
    unique["meta"]["severity"] = "warn"
    unique["severity"] = "warning"
    exps.append(unique)
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
    from sapnhap.datasets import DATASETS

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
