"""The workbook attached to an owner's report: every open quarantine row of their sources.

The owner fixes the record in the legacy system, or writes the right value in
``corrected_value``; ``quarantine_id`` identifies the row when the workbook comes back.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

from openpyxl import Workbook, load_workbook
from openpyxl.cell import WriteOnlyCell

from sapnhap.reports.model import QuarantineRow

XLSX_TYPE = ("application", "vnd.openxmlformats-officedocument.spreadsheetml.sheet")
SHEET_ROWS = "cach_ly"
SHEET_HELP = "huong_dan"
SHEET_WARNINGS = "canh_bao"
# Warn-severity failures of the report's batches: the records were loaded; the owner checks them.
WARNING_COLUMNS: tuple[str, ...] = (
    "warning_id", "source_id", "dataset", "source_key", "expectation", "column", "value", "reason_vi", "fix_vi", "batch",
)
COLUMNS: tuple[str, ...] = (
    "quarantine_id",
    "source_id",
    "dataset",
    "source_key",
    "expectation",
    "column",
    "value",
    "reason_vi",
    "fix_vi",
    "first_seen_batch",
    "corrected_value",
)
COLUMN_HELP_VI: dict[str, str] = {
    "quarantine_id": "Mã dòng cách ly trên nền tảng (giữ nguyên, dùng để đối chiếu khi gửi lại tệp)",
    "source_id": "Mã hệ thống nguồn",
    "dataset": "Loại dữ liệu",
    "source_key": "Khóa bản ghi ở hệ thống cũ",
    "expectation": "Mã quy tắc kiểm tra không đạt",
    "column": "Trường dữ liệu bị lỗi",
    "value": "Giá trị hiện tại (dữ liệu cá nhân đã được che)",
    "reason_vi": "Lý do bị cách ly",
    "fix_vi": "Hướng dẫn khắc phục",
    "first_seen_batch": "Lô đồng bộ phát hiện lỗi lần đầu",
    "corrected_value": "Giá trị đúng (đơn vị điền nếu không sửa được trực tiếp trên hệ thống cũ)",
}
_WIDTHS = {"quarantine_id": 12, "source_key": 20, "expectation": 28, "value": 20, "reason_vi": 50, "fix_vi": 50,
           "first_seen_batch": 40, "corrected_value": 24}


def row_values(row: QuarantineRow) -> list[object]:
    """The attachment row of a quarantine row, in :data:`COLUMNS` order."""
    return [row.quarantine_id, row.source_id, row.dataset, row.source_key, row.expectation, row.column,
            row.value, row.reason_vi, row.fix_vi, row.first_batch_id, None]


def _text_cell(ws, value: object) -> WriteOnlyCell:  # noqa: ANN001 - openpyxl worksheet
    cell = WriteOnlyCell(ws, value=value)
    if isinstance(value, str) and value.startswith("="):
        # Legacy text must stay text: a value like "=HYPERLINK(...)" must not become a formula.
        cell.data_type = "s"
    return cell


def quarantine_workbook(rows: Sequence[QuarantineRow], warnings: Sequence[QuarantineRow] = ()) -> bytes:
    """An XLSX with one sheet of the rows (:data:`COLUMNS`), one explaining the columns, and the warnings.

    ``warnings`` (rows of ``ops.warnings``) go to a sheet of their own (:data:`WARNING_COLUMNS`)
    when there are any.
    """
    wb = Workbook(write_only=True)
    ws = wb.create_sheet(SHEET_ROWS)
    for i, name in enumerate(COLUMNS):
        ws.column_dimensions[chr(ord("A") + i)].width = _WIDTHS.get(name, 14)
    ws.freeze_panes = "A2"
    ws.append(list(COLUMNS))
    for r in rows:
        ws.append([_text_cell(ws, v) for v in row_values(r)])
    if warnings:
        warn_ws = wb.create_sheet(SHEET_WARNINGS)
        warn_ws.append(list(WARNING_COLUMNS))
        for w in warnings:
            values = [w.quarantine_id, w.source_id, w.dataset, w.source_key, w.expectation, w.column, w.value,
                      w.reason_vi, w.fix_vi, w.first_batch_id]
            warn_ws.append([_text_cell(warn_ws, v) for v in values])
    help_ws = wb.create_sheet(SHEET_HELP)
    help_ws.column_dimensions["A"].width = 20
    help_ws.column_dimensions["B"].width = 90
    help_ws.append(["Cột", "Ý nghĩa"])
    for name in COLUMNS:
        help_ws.append([name, COLUMN_HELP_VI[name]])
    help_ws.append([])
    help_ws.append(["Lưu ý", "Tệp chỉ chứa dữ liệu cá nhân đã được che (Nghị định 13/2023/NĐ-CP). "
                    "Không điền số CCCD hay họ tên đầy đủ vào tệp này; hãy sửa trực tiếp trên hệ thống cũ."])
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def read_quarantine_workbook(data: bytes, sheet: str = SHEET_ROWS) -> list[dict[str, object]]:
    """The rows of one sheet of a workbook made by :func:`quarantine_workbook` (or returned by an owner).

    A sheet the workbook does not have reads as no rows.
    """
    wb = load_workbook(io.BytesIO(data), read_only=True)
    if sheet not in wb.sheetnames:
        wb.close()
        return []
    ws = wb[sheet]
    rows = ws.iter_rows(values_only=True)
    header = [str(h) for h in next(rows)]
    out = []
    for r in rows:
        if any(v is not None for v in r):
            values = list(r) + [None] * (len(header) - len(r))
            out.append(dict(zip(header, values, strict=False)))
    wb.close()
    return out
