"""A classified document's summary (trích yếu) never reaches a reader without clearance (R16)."""

from __future__ import annotations

import pandas as pd

from sapnhap.documents import CLASSIFIED_SUMMARY_VI, mask_classified_failures, mask_summary
from sapnhap.quality.masking import mask_classified

SECRET = "Về việc phương án bảo vệ mục tiêu quan trọng"


def test_only_a_normal_documents_text_shows() -> None:
    levels = ["normal", "confidential", "secret", "top_secret", None, "normal"]
    texts = ["Về việc A", SECRET, SECRET, SECRET, SECRET, None]
    assert mask_classified(texts, levels, "***").tolist() == ["Về việc A", "***", "***", "***", "***", None]
    assert mask_summary(pd.Series(texts), pd.Series(levels)).tolist()[:2] == ["Về việc A", CLASSIFIED_SUMMARY_VI]


def test_failures_on_a_classified_summary_show_neither_its_value_nor_its_text() -> None:
    rows = pd.DataFrame({"_row_id": [1, 2, 3], "summary": ["Về việc A", SECRET, SECRET + " (2)"],
                         "security_level": ["normal", "secret", "confidential"]})
    failures = pd.DataFrame({
        "_row_id": [1, 2, 3, 3], "column": ["summary", "summary", "summary", "number_symbol"],
        "value": ["Về việc A", SECRET, SECRET + " (2)", "12/CV-VP"],
        "reason_vi": ["Trích yếu 'Về việc A' quá dài.", f"Trích yếu '{SECRET}' quá dài.", "x", f"Trùng số ({SECRET} (2))"],
    })
    masked = mask_classified_failures(failures, rows)
    assert masked["value"].tolist() == ["Về việc A", CLASSIFIED_SUMMARY_VI, CLASSIFIED_SUMMARY_VI, "12/CV-VP"]
    assert masked["reason_vi"].tolist()[0] == "Trích yếu 'Về việc A' quá dài."
    assert not any(SECRET in t for t in masked["reason_vi"])
    # Nothing classified: the rows come back as they were.
    plain = rows.assign(security_level="normal")
    assert mask_classified_failures(failures, plain).equals(failures)
