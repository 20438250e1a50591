"""Indicator values (số liệu chỉ tiêu báo cáo, R19): the schema and the checks of its batches.

One value of a standardized indicator (``include/sapnhap/indicators/catalogue.yaml``) for an old
commune and a reporting period, from a legacy reporting system. Values are kept as reported
(text, decimal point) and checked numeric; a ratio carries its numerator and denominator. The
helper columns the checks read are derived by :mod:`sapnhap.indicators`.

Adding a dataset is adding a file like this one and registering it in ``sapnhap/datasets/__init__.py``
(see docs/architecture.md, "A dataset in one file").
"""

from __future__ import annotations

from sapnhap.datasets.schema import Column, Dataset

NUMBER_REGEX = r"^-?\d+(?:\.\d+)?$"
PERIOD_REGEX = r"^\d{4}(?:-Q[1-4]|-(?:0[1-9]|1[0-2]))?$"

INDICATOR_VALUES = Dataset(
    name="indicator_values",
    title_vi="Số liệu chỉ tiêu báo cáo",
    natural_key=("indicator_code", "period", "old_commune_code"),
    record_date="reported_date",
    # A split commune's value is allocated by the province's declared weights when published
    # (sapnhap.indicators), never by a decision per record: it loads under its old commune.
    split_review=False,
    columns=(
        Column("indicator_code", "text", required=True, description="Mã chỉ tiêu (danh mục chỉ tiêu chuẩn)"),
        Column("period", "text", required=True, description="Kỳ báo cáo: 2025, 2025-Q3 hoặc 2025-07"),
        Column("old_commune_code", "code5", required=True, description="Mã xã cũ"),
        Column("value", "text", required=True, description="Giá trị (số, dấu chấm thập phân)"),
        Column("numerator", "text", description="Tử số (chỉ tiêu tỷ lệ)"),
        Column("denominator", "text", description="Mẫu số (chỉ tiêu tỷ lệ)"),
        Column("reported_date", "date", required=True, description="Ngày báo cáo"),
        Column("updated_at", "timestamp", description="Cập nhật lần cuối ở hệ thống cũ"),
    ),
)

DATASET = INDICATOR_VALUES


def transformed_checks(generic: list[dict]) -> list[dict]:
    """The transformed suite of indicator values: the generic checks without the split-commune
    review (not a defect here), then its own: a catalogued indicator, a period, a number, a
    non-negative count, ratio parts present and in agreement."""
    # Imported here: the quality package imports this registry (a cycle at import time), and
    # reading a schema should not load Great Expectations.
    from great_expectations.expectations.row_conditions import Column as Col

    from sapnhap.indicators import H_RATIO_CONSISTENT, H_VALUE_NUMBER, load_catalogue
    from sapnhap.quality.checks import expectation as _exp

    catalogue = load_catalogue()
    additive = sorted(c for c, i in catalogue.items() if i.kind == "additive")
    ratios = sorted(c for c, i in catalogue.items() if i.kind == "ratio")
    return [
        *[e for e in generic if e["meta"]["check"] != "mapping_status.review"],
        _exp(
            "expect_column_values_to_be_in_set",
            {"column": "indicator_code", "value_set": sorted(catalogue)},
            check="catalogue.indicator_code",
            severity="block",
            notes=("Only an indicator of the province's catalogue (indicators/catalogue.yaml) says how its value moves "
                   "to the new units (summed, recomputed, carried); an unknown code cannot be re-aggregated."),
            reason_vi="Mã chỉ tiêu không có trong danh mục chỉ tiêu chuẩn của tỉnh.",
            fix_vi="Sửa mã chỉ tiêu trên hệ thống báo cáo cũ, hoặc đề nghị bổ sung chỉ tiêu vào danh mục (catalogue.yaml).",
            column="indicator_code",
        ),
        _exp(
            "expect_column_values_to_match_regex",
            {"column": "period", "regex": PERIOD_REGEX},
            check="format.period",
            severity="block",
            notes="A period is a year (2025), a quarter (2025-Q3) or a month (2025-07); values of one period are summed together.",
            reason_vi="Kỳ báo cáo không đúng định dạng (2025, 2025-Q3 hoặc 2025-07).",
            fix_vi="Sửa kỳ báo cáo trên hệ thống báo cáo cũ.",
            column="period",
        ),
        _exp(
            "expect_column_values_to_match_regex",
            {"column": "value", "regex": NUMBER_REGEX},
            check="number.value",
            severity="block",
            notes="A value that is not a number (a comma decimal, a note typed in the cell) cannot be summed or divided.",
            reason_vi="Giá trị chỉ tiêu không phải là số (dùng dấu chấm thập phân, không ghi chữ).",
            fix_vi="Sửa giá trị trên hệ thống báo cáo cũ.",
            column="value",
        ),
        _exp(
            "expect_column_values_to_be_between",
            {"column": H_VALUE_NUMBER, "min_value": 0,
             "row_condition": Col("indicator_code").is_in(additive).dict()},
            check="range.value",
            severity="block",
            notes="Additive indicators count people or dossiers: a negative count is an error, and summed it would hide others.",
            reason_vi="Giá trị của chỉ tiêu cộng dồn (số người, số hồ sơ) nhỏ hơn 0.",
            fix_vi="Sửa giá trị trên hệ thống báo cáo cũ.",
            column="value",
        ),
        *[_exp(
            "expect_column_values_to_not_be_null",
            {"column": part, "row_condition": Col("indicator_code").is_in(ratios).dict()},
            check=f"not_null.{part}",
            severity="block",
            notes="A ratio is recomputed from its parts for the new units, never averaged: a ratio without them cannot be checked.",
            reason_vi=f"Chỉ tiêu tỷ lệ thiếu {'tử số' if part == 'numerator' else 'mẫu số'}.",
            fix_vi="Bổ sung tử số và mẫu số của chỉ tiêu tỷ lệ trên hệ thống báo cáo cũ.",
            column=part,
        ) for part in ("numerator", "denominator")],
        _exp(
            "expect_column_values_to_be_in_set",
            {"column": H_RATIO_CONSISTENT, "value_set": [True]},
            check="ratio.consistent",
            severity="block",
            notes=("A ratio must equal numerator / denominator x scale (within rounding: half a percent of the scale), "
                   "with a positive denominator and a numerator not above it for a share; otherwise one of the three is wrong."),
            reason_vi="Giá trị tỷ lệ không khớp với tử số / mẫu số (hoặc mẫu số bằng 0, tử số lớn hơn mẫu số).",
            fix_vi="Đối chiếu và sửa tử số, mẫu số hoặc giá trị trên hệ thống báo cáo cũ.",
            column="value",
        ),
    ]
