"""The building blocks of the quality suites: one GX expectation with the meta our reports read.

Shared by the generic checks every dataset gets (:mod:`sapnhap.quality.suites`: schema, required
fields, unreadable dates, the natural key, the unit mapping) and by the checks each dataset's own
file adds (``include/sapnhap/datasets/<dataset>.py``: statuses, date order, citizen IDs...).
Nothing here knows a dataset by name.

The dataset files import this module inside their check functions, not at their top: the
quality package imports the dataset registry, so a top-level import would be a cycle.
"""

from __future__ import annotations

from typing import Any

from great_expectations.expectations.row_conditions import Column as Col

from sapnhap.datasets import UNIT_LEVELS, Dataset

RAW_SUFFIX = "__raw"
HELPER_PREFIX = "_q_"
MAPPING_STATUSES = ("mapped", "review", "unknown_code", "missing_code")

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


def expectation(
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


def raw_is_null(column: str) -> dict:
    return Col(column + RAW_SUFFIX).is_null().dict()


def raw_not_null(column: str) -> dict:
    return Col(column + RAW_SUFFIX).is_not_null().dict()


def schema_checks(ds: Dataset, columns: list[str]) -> list[dict]:
    return [
        expectation(
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


def not_null(ds: Dataset, column: str, *, is_date: bool) -> dict:
    kwargs: dict[str, Any] = {"column": column}
    if is_date:
        # Unparsed dates have their own check with a different fix; do not report them twice.
        kwargs["row_condition"] = raw_is_null(column)
    lineage = column in LINEAGE_NOT_NULL or column == "mapping_status"
    return expectation(
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


def unparsed(ds: Dataset, column: str, kind: str, *, severity: str) -> dict:
    what = "số" if kind == "int" else "ngày/giờ"
    return expectation(
        "expect_column_values_to_not_be_null",
        {"column": column, "row_condition": raw_not_null(column)},
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


def unique(ds: Dataset) -> dict:
    key = list(ds.natural_key)
    if len(key) == 1:
        type_, kwargs = "expect_column_values_to_be_unique", {"column": key[0]}
    else:
        type_, kwargs = "expect_compound_columns_to_be_unique", {"column_list": key}
    return expectation(
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


def unit_checks() -> list[dict]:
    out = [
        expectation(
            "expect_column_values_to_be_in_set",
            {"column": "unit_scheme", "value_set": ["old", "new"]},
            check="enum.unit_scheme",
            severity="block",
            notes="R10: every record is marked as keyed by the old or the new unit scheme.",
            reason_vi="Không xác định được bản ghi thuộc danh mục đơn vị cũ hay mới.",
            fix_vi="Lỗi ở bước chuyển đổi; báo nhóm dữ liệu.",
            column="unit_scheme",
        ),
        expectation(
            "expect_column_values_to_be_in_set",
            {"column": "mapping_status", "value_set": list(MAPPING_STATUSES)},
            check="enum.mapping_status",
            severity="block",
            notes="The transform only produces these mapping statuses; anything else is a bug upstream.",
            reason_vi="Trạng thái chuyển đổi mã đơn vị không hợp lệ.",
            fix_vi="Lỗi ở bước chuyển đổi; báo nhóm dữ liệu.",
            column="mapping_status",
        ),
        expectation(
            "expect_column_values_to_not_be_in_set",
            {"column": "mapping_status", "value_set": ["unknown_code"]},
            check="mapping_status.unknown_code",
            severity="block",
            notes="The old commune code is not in the old-unit registry, so no new unit can be derived.",
            reason_vi="Mã xã cũ không có trong danh mục đơn vị hành chính trước 01/07/2025.",
            fix_vi="Sửa mã xã cũ trên hệ thống cũ theo danh mục của Tổng cục Thống kê.",
            column="old_commune_code",
        ),
        expectation(
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
        expectation(
            "expect_column_values_to_not_be_in_set",
            {"column": "mapping_status", "value_set": ["missing_code"]},
            check="mapping_status.missing_code",
            severity="block",
            notes="A record without an old commune code cannot be placed under any new unit.",
            reason_vi="Bản ghi không có mã xã cũ nên không xác định được đơn vị mới.",
            fix_vi="Bổ sung mã xã cũ (nơi tiếp nhận/thường trú) trên hệ thống cũ.",
            column="old_commune_code",
        ),
        expectation(
            "expect_column_values_to_match_regex",
            {"column": "old_commune_code", "regex": r"^\d{5}$"},
            check="format.old_commune_code",
            severity="block",
            notes="GSO commune codes have exactly 5 digits.",
            reason_vi="Mã xã cũ không đúng định dạng 5 chữ số.",
            fix_vi="Sửa mã xã cũ trên hệ thống cũ theo danh mục của Tổng cục Thống kê.",
            column="old_commune_code",
        ),
        expectation(
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
        expectation(
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
        expectation(
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


def citizen_id_checks(column: str, *, severity: str, with_birth: bool) -> list[dict]:
    out = [
        expectation(
            "expect_column_values_to_match_regex",
            {"column": column, "regex": r"^\d{12}$"},
            check=f"cccd.format.{column}",
            severity=severity,
            notes="A citizen identity number (CCCD) has exactly 12 digits.",
            reason_vi="Số CCCD không gồm đúng 12 chữ số.",
            fix_vi="Đối chiếu thẻ CCCD/CSDL quốc gia về dân cư và sửa trên hệ thống cũ.",
            column=column,
        ),
        expectation(
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
            expectation(
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
            expectation(
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


def step_no_check() -> dict:
    """Steps of a processing history (dossier steps, document steps) are numbered from 1."""
    return expectation(
        "expect_column_values_to_be_between",
        {"column": "step_no", "min_value": 1},
        check="range.step_no",
        severity="block",
        notes="Steps are numbered from 1; the order of the processing history depends on it.",
        reason_vi="Số thứ tự bước xử lý không hợp lệ (phải từ 1).",
        fix_vi="Sửa số thứ tự bước trên hệ thống cũ.",
        column="step_no",
    )


def after(column_a: str, column_b: str, *, check: str, notes: str, reason_vi: str, fix_vi: str,
          severity: str = "block") -> dict:
    """``column_a`` is on or after ``column_b`` where both are set (dates in order)."""
    return expectation(
        "expect_column_pair_values_a_to_be_greater_than_b",
        {"column_A": column_a, "column_B": column_b, "or_equal": True, "ignore_row_if": "either_value_is_missing"},
        check=check,
        severity=severity,
        notes=notes,
        reason_vi=reason_vi,
        fix_vi=fix_vi,
        column=column_a,
    )


def enum(column: str, values: tuple[str, ...], *, notes: str, reason_vi: str) -> dict:
    """``column`` holds one of the canonical ``values`` (the source file maps legacy values onto them)."""
    return expectation(
        "expect_column_values_to_be_in_set",
        {"column": column, "value_set": list(values)},
        check=f"enum.{column}",
        severity="block",
        notes=notes,
        reason_vi=reason_vi,
        fix_vi=f"Bổ sung ánh xạ giá trị trong tệp cấu hình nguồn (values.{column}) hoặc sửa trên hệ thống cũ.",
        column=column,
    )


def old_district_codes() -> list[str]:
    """Every district code of the old (pre-2025-07-01) registry, for the unit-code check."""
    from sapnhap.reference import load_reference

    old = load_reference().old_units
    return sorted(old.loc[old["level"] == "district", "code"].dropna().unique())


def unit_level_checks() -> list[dict]:
    """Accounts and mailboxes belong to an old commune or to an old district (its offices)."""
    return [
        expectation(
            "expect_column_values_to_be_in_set",
            {"column": "unit_level", "value_set": list(UNIT_LEVELS)},
            check="enum.unit_level",
            severity="block",
            notes="Commune-level and district-level units are re-mapped by different rules.",
            reason_vi="Cấp đơn vị không thuộc danh mục chuẩn (xã/huyện).",
            fix_vi="Bổ sung ánh xạ cấp đơn vị trong tệp cấu hình nguồn (values.unit_level).",
            column="unit_level",
        ),
        expectation(
            "expect_column_values_to_not_be_null",
            {"column": "unit_district_code", "row_condition": (Col("unit_level") == "district").dict()},
            check="not_null.unit_district_code",
            severity="block",
            notes="A district-level account has no commune: without its district nothing says where it belonged.",
            reason_vi="Tài khoản/hộp thư cấp huyện không có mã huyện cũ.",
            fix_vi="Bổ sung mã huyện cũ của đơn vị trên hệ thống cũ.",
            column="unit_district_code",
        ),
        expectation(
            "expect_column_values_to_be_in_set",
            {"column": "unit_district_code", "value_set": old_district_codes()},
            check="registry.unit_district_code",
            severity="block",
            notes="R11: the district must be a real pre-2025-07-01 district of the old registry.",
            reason_vi="Mã huyện cũ không có trong danh mục đơn vị hành chính trước 01/07/2025.",
            fix_vi="Sửa mã huyện cũ trên hệ thống cũ theo danh mục của Tổng cục Thống kê.",
            column="unit_district_code",
        ),
    ]


def district_unit_overrides(exps: list[dict]) -> list[dict]:
    """The generic unit checks, adapted to units that may be districts (accounts, mailboxes).

    A district-level row has no commune code by design (not ``missing_code``); a row of a split
    commune is not a data defect here but a permission decision, so it loads and the permission
    review lists it as pending (R12) instead of hiding it in quarantine.
    """
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
