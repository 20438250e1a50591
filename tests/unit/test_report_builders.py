"""The pure builders of the owner reports: content, masking, chart, attachment, skip rule."""

from __future__ import annotations

import re
import sys
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "include"))

from sapnhap.reports import (
    assemble_owner_reports,
    build_owner_email,
    pass_rates,
    read_quarantine_workbook,
    render_assessment_email,
    scrub_text,
    should_send,
)
from sapnhap.reports.attachment import COLUMNS
from sapnhap.sources import Source

RUN = "scheduled__2025-07-02T00:00:00+00:00"
CITIZEN_ID = "001203012345"
NAME = "Nguyễn Văn An"
TWELVE_DIGITS = re.compile(r"\b\d{12}\b")

MAPPINGS = {
    "residents": {"table": "nk", "primary_key": ["id"],
                  "columns": {"citizen_id": "so_dinh_danh", "full_name": "ho_ten", "birth_date": "ns", "gender": "gt"}},
    "households": {"table": "ho", "primary_key": ["ma_ho"], "columns": {"household_code": "ma_ho"}},
    "dossiers": {"table": "hs", "primary_key": ["id"], "columns": {"dossier_code": "ma_ho_so"}},
}


def make_source(source_id: str, owners: list[str], datasets: list[str], *, daily: bool = False) -> Source:
    return Source.model_validate({
        "id": source_id, "name": f"Hệ thống thử nghiệm {source_id}", "kind": "postgres", "conn_id": source_id,
        "old_units": {"province": "08"}, "owners": owners, "daily_confirmation": daily,
        "system_owner_vi": "UBND huyện Sơn Dương (cũ)", "quality": {"warn_ratio": 0.05, "block_ratio": 0.5},
        "datasets": {d: MAPPINGS[d] for d in datasets},
    })


def batch(source_id: str, dataset: str, **counts) -> dict:
    return {"run_id": RUN, "batch_id": f"{RUN}|{source_id}|{dataset}", "source_id": source_id, "dataset": dataset,
            "message": None, **counts}


def qrow(i: int, source_id: str, dataset: str, *, status: str = "open", first_run: str = RUN, last_run: str = RUN,
         column: str = "citizen_id", value: str = "001******345", **extra) -> dict:
    return {
        "quarantine_id": i, "source_id": source_id, "dataset": dataset, "source_key": f"K{i:04d}",
        "expectation": f"{column}.format", "column_name": column, "value_masked": value,
        "reason_vi": "Số CCCD không đúng 12 chữ số", "fix_vi": "Sửa số CCCD trên hệ thống cũ", "severity": "block",
        "status": status, "first_batch_id": f"{first_run}|{source_id}|{dataset}",
        "last_batch_id": f"{last_run}|{source_id}|{dataset}", "resolved_batch_id": None, "pii_values": [],
        "first_run_id": first_run, "last_run_id": last_run, "resolved_run_id": None, **extra,
    }


@pytest.fixture
def sources() -> list[Source]:
    return [
        make_source("src_alpha", ["a@tinh.gov.vn", "B@tinh.gov.vn"], ["residents", "households"]),
        make_source("src_beta", ["b@tinh.gov.vn"], ["dossiers"]),
    ]


@pytest.fixture
def run_rows() -> dict:
    quarantine = [qrow(i, "src_alpha", "residents") for i in range(1, 5)]
    # An upstream check that forgot to mask, and a reason that names the person.
    quarantine.append(qrow(5, "src_alpha", "residents", value=CITIZEN_ID,
                           reason_vi=f"Số CCCD của {NAME} bị trùng", pii_values=[CITIZEN_ID, NAME]))
    quarantine.append(qrow(6, "src_alpha", "residents", column="full_name", value=NAME, pii_values=[NAME]))
    quarantine.append(qrow(7, "src_alpha", "households", first_run="older_run", last_run="older_run",
                           column="household_code", value="H-01"))
    quarantine.append(qrow(8, "src_alpha", "households", status="resolved", first_run="older_run",
                           resolved_batch_id=f"{RUN}|src_alpha|households", resolved_run_id=RUN))
    return {
        "batches": [
            batch("src_alpha", "residents", status="loaded", extracted=120, inserted=90, updated=12, unchanged=9,
                  quarantined=6, warned=3, merged_in_batch=2, merged_cross_source=1, failed_ratio=0.05, decision="warn"),
            batch("src_alpha", "households", status="blocked", extracted=10, quarantined=6, failed_ratio=0.6,
                  decision="block"),
            # src_beta has no batch: its legacy server was unreachable.
        ],
        "reconciliation": [
            {"run_id": RUN, "source_id": "src_alpha", "dataset": "residents", "ok": True, "not_loaded_blocked": 0},
            {"run_id": RUN, "source_id": "src_alpha", "dataset": "households", "ok": True, "not_loaded_blocked": 4},
        ],
        "quarantine": quarantine,
        "history": [
            {"run_id": f"r{i:02d}", "started": datetime(2025, 6, i, tzinfo=UTC), "source_id": "src_alpha",
             "dataset": "residents", "status": "loaded", "extracted": 100, "quarantined": i}
            for i in range(1, 29)
        ],
        "cursors": [{"source_id": "src_beta", "dataset": "dossiers", "cursor_value": "2025-07-01 17:00:00",
                     "updated_at": datetime(2025, 7, 1, tzinfo=UTC)}],
        "run_started_at": datetime(2025, 7, 1, 19, 0, tzinfo=UTC),
    }


@pytest.fixture
def reports(sources, run_rows):
    return {r.owner: r for r in assemble_owner_reports(RUN, sources, **run_rows)}


def texts(msg: EmailMessage) -> list[str]:
    """Subject and every text part of a message."""
    out = [str(msg["Subject"])]
    out += [p.get_content() for p in msg.walk() if p.get_content_maintype() == "text"]
    return out


def attachment(msg: EmailMessage) -> list[dict]:
    parts = [p for p in msg.iter_attachments() if (p.get_filename() or "").endswith(".xlsx")]
    assert len(parts) == 1
    return read_quarantine_workbook(parts[0].get_content())


def test_one_report_per_owner_covering_all_their_sources(reports):
    assert set(reports) == {"a@tinh.gov.vn", "b@tinh.gov.vn"}  # B@ and b@ are one owner
    assert reports["a@tinh.gov.vn"].source_ids == ["src_alpha"]
    assert reports["b@tinh.gov.vn"].source_ids == ["src_alpha", "src_beta"]


def test_email_is_vietnamese_with_counts_and_block_explanation(reports):
    msg = build_owner_email(reports["a@tinh.gov.vn"], from_addr="sapnhap@tinh.gov.vn")
    subject, plain, html = texts(msg)
    assert msg["To"] == "a@tinh.gov.vn"
    assert "Kết quả đồng bộ dữ liệu ngày 02/07/2025" in subject
    assert "bị chặn" in subject
    for label in ("Trích xuất", "Nạp mới", "Cập nhật", "Không đổi", "Cách ly", "Trùng lặp đã gộp", "Bị chặn", "Đối soát"):
        assert label in plain and label in html
    for body in (plain, html):
        assert "Hộ gia đình: KHÔNG được nạp vào nền tảng đêm nay" in body
        assert "60%" in body and "ngưỡng chặn" in body and "50%" in body
        assert "Sửa số CCCD trên hệ thống cũ" in body  # fix_vi of the failed check
        assert "K0001" in body  # an example's source key
    assert "Trích xuất: 120 | Nạp mới: 90 | Cập nhật: 12 | Không đổi: 9 | Cách ly: 6" in plain
    assert "Trùng lặp đã gộp: 3 | Bị chặn: 0" in plain
    assert "Bị chặn: 4" in plain
    assert "1 lỗi cách ly trước đây đã được khắc phục" in plain


def test_source_without_batch_is_reported_as_failed_tonight(reports):
    report = reports["b@tinh.gov.vn"]
    beta = next(s for s in report.sources if s.source.id == "src_beta")
    assert beta.state == "failed"
    _, plain, html = texts(build_owner_email(report, from_addr="x@tinh.gov.vn"))
    for body in (plain, html):
        assert "Nguồn dữ liệu không đồng bộ được đêm nay" in body
        assert "thử lại vào đêm mai" in body and "không bỏ sót bản ghi nào" in body
        assert "2025-07-01 17:00:00" in body  # where the catch-up will start


def test_failed_batch_message_is_shown_masked(sources, run_rows):
    run_rows["batches"].append(batch("src_beta", "dossiers", status="extracted", extracted=40,
                                     message=f"transform failed on row of {CITIZEN_ID}"))
    report = {r.owner: r for r in assemble_owner_reports(RUN, sources, **run_rows)}["b@tinh.gov.vn"]
    _, plain, _ = texts(build_owner_email(report, from_addr="x@tinh.gov.vn"))
    assert "transform failed on row of 001******345" in plain
    assert "chưa kiểm tra và nạp" in plain


def test_no_unmasked_citizen_id_or_name_anywhere(reports):
    for report in reports.values():
        msg = build_owner_email(report, from_addr="x@tinh.gov.vn")
        for text in texts(msg):
            assert not TWELVE_DIGITS.search(text)
            assert NAME not in text
        for row in attachment(msg):
            for value in row.values():
                assert value is None or not TWELVE_DIGITS.search(str(value))
                assert value is None or NAME not in str(value)
        _, plain, _ = texts(msg)
        assert "001******345" in plain
        assert "N***** V** A*" in plain


def test_chart_is_an_inline_png_referenced_by_the_html(reports):
    msg = build_owner_email(reports["a@tinh.gov.vn"], from_addr="x@tinh.gov.vn")
    images = [p for p in msg.walk() if p.get_content_type() == "image/png"]
    assert len(images) == 1
    assert images[0].get_content().startswith(b"\x89PNG\r\n\x1a\n")
    cid = images[0]["Content-ID"].strip("<>")
    html = msg.get_body(("html",)).get_content()
    assert f'src="cid:{cid}"' in html


def test_attachment_rows_equal_the_open_quarantine_rows(reports, run_rows):
    msg = build_owner_email(reports["b@tinh.gov.vn"], from_addr="x@tinh.gov.vn")
    rows = attachment(msg)
    assert list(rows[0]) == list(COLUMNS)
    expected = sorted(q["quarantine_id"] for q in run_rows["quarantine"] if q["status"] == "open")
    assert sorted(r["quarantine_id"] for r in rows) == expected
    by_id = {q["quarantine_id"]: q for q in run_rows["quarantine"]}
    for r in rows:
        q = by_id[r["quarantine_id"]]
        assert (r["source_id"], r["dataset"], r["source_key"], r["expectation"], r["column"]) == (
            q["source_id"], q["dataset"], q["source_key"], q["expectation"], q["column_name"])
        assert r["first_seen_batch"] == q["first_batch_id"]
        assert r["fix_vi"] == q["fix_vi"]
        assert r["corrected_value"] is None
    # The row seen before tonight is in the workbook too: it is still open.
    assert 7 in {r["quarantine_id"] for r in rows}


def test_no_attachment_when_nothing_is_open(sources, run_rows):
    run_rows["quarantine"] = []
    report = assemble_owner_reports(RUN, sources, **run_rows)[0]
    msg = build_owner_email(report, from_addr="x@tinh.gov.vn")
    assert not list(msg.iter_attachments()) or all(p.get_content_type() == "image/png" for p in msg.iter_attachments())
    assert "Không còn bản ghi nào bị cách ly" in msg.get_body(("plain",)).get_content()


def quiet_rows() -> dict:
    """A night with nothing new: every dataset ran and extracted nothing."""
    return {
        "batches": [batch("src_gamma", "dossiers", status="loaded", extracted=0, decision="ok", failed_ratio=0.0)],
        "reconciliation": [{"run_id": RUN, "source_id": "src_gamma", "dataset": "dossiers", "ok": True,
                            "not_loaded_blocked": 0}],
        "quarantine": [qrow(1, "src_gamma", "dossiers", first_run="older", last_run="older", column="dossier_code",
                            value="HS-1")],
    }


def test_skip_rule_nothing_new_means_no_email():
    src = make_source("src_gamma", ["c@tinh.gov.vn"], ["dossiers"])
    (report,) = assemble_owner_reports(RUN, [src], **quiet_rows())
    send, reason = should_send(report)
    assert not send and "nothing new" in reason


def _verification(status: str, finished_at: datetime, **counts) -> dict:
    summary = {"ok": "Khớp hoàn toàn: 12 bản ghi ở hệ thống cũ đều có trên nền tảng.",
               "differences": "Thiếu 3, thừa 1 (đã đánh dấu đã xóa ở hệ thống cũ: 1), khác nội dung 2; "
                              "5 bản ghi sẽ được đồng bộ lại trong lần chạy tới."}[status]
    return {"source_id": "src_gamma", "dataset": "dossiers", "status": status, "finished_at": finished_at,
            "summary_vi": summary, **counts}


def test_a_verification_that_found_differences_is_news_and_is_in_the_email():
    src = make_source("src_gamma", ["c@tinh.gov.vn"], ["dossiers"])
    started = datetime(2025, 7, 5, 18, 0, tzinfo=UTC)
    found = _verification("differences", datetime(2025, 7, 5, 3, 0, tzinfo=UTC), missing=3, extra=1, different=2)
    (report,) = assemble_owner_reports(RUN, [src], **quiet_rows(), run_started_at=started, verifications=[found])
    send, reason = should_send(report)
    assert send and "verifications found differences" in reason
    msg = build_owner_email(report, from_addr="x@tinh.gov.vn")
    for part in ("plain", "html"):
        assert "Đối chiếu với hệ thống cũ" in msg.get_body((part,)).get_content()
        assert "Thiếu 3, thừa 1" in msg.get_body((part,)).get_content()
    # A clean verification, or an old finding already reported, is not news on a quiet night.
    for quiet in (_verification("ok", datetime(2025, 7, 5, 3, 0, tzinfo=UTC)),
                  _verification("differences", datetime(2025, 7, 1, 3, 0, tzinfo=UTC))):
        (report,) = assemble_owner_reports(RUN, [src], **quiet_rows(), run_started_at=started, verifications=[quiet])
        assert not should_send(report)[0]


def test_a_file_that_could_not_be_read_is_news_and_its_reason_is_in_the_email():
    src = make_source("src_gamma", ["c@tinh.gov.vn"], ["dossiers"])
    started = datetime(2025, 7, 5, 18, 0, tzinfo=UTC)
    bad = {"source_id": "src_gamma", "dataset": "dossiers", "kind": "export", "file_name": "xa_00691_thang6.csv",
           "reason_vi": "Tệp không có dòng tiêu đề.", "fix_vi": "Xuất lại tệp kèm dòng tiêu đề.",
           "first_seen": started, "last_seen": started}
    (report,) = assemble_owner_reports(RUN, [src], **quiet_rows(), run_started_at=started, quarantined_files=[bad])
    send, reason = should_send(report)
    assert send and "could not be read" in reason
    msg = build_owner_email(report, from_addr="x@tinh.gov.vn")
    for part in ("plain", "html"):
        body = msg.get_body((part,)).get_content()
        assert "xa_00691_thang6.csv" in body and "Tệp không có dòng tiêu đề." in body and "Xuất lại tệp" in body


def test_skip_rule_daily_confirmation_still_sends():
    src = make_source("src_gamma", ["c@tinh.gov.vn"], ["dossiers"], daily=True)
    (report,) = assemble_owner_reports(RUN, [src], **quiet_rows())
    assert should_send(report) == (True, "daily confirmation requested")
    assert "tất cả đạt" in str(build_owner_email(report, from_addr="x@tinh.gov.vn")["Subject"])


def test_skip_rule_failure_or_quarantine_change_sends():
    src = make_source("src_gamma", ["c@tinh.gov.vn"], ["dossiers"])
    failed = quiet_rows() | {"batches": [], "reconciliation": []}
    assert should_send(assemble_owner_reports(RUN, [src], **failed)[0])[0]
    resolved = quiet_rows()
    resolved["quarantine"][0].update(status="resolved", resolved_batch_id=f"{RUN}|src_gamma|dossiers", resolved_run_id=RUN)
    assert should_send(assemble_owner_reports(RUN, [src], **resolved)[0]) == (True, "1 quarantine rows opened or resolved")


def test_skip_rule_a_rerun_that_only_rereads_unchanged_rows_sends_nothing():
    src = make_source("src_gamma", ["c@tinh.gov.vn"], ["dossiers"])
    rerun = quiet_rows()
    rerun["batches"] = [batch("src_gamma", "dossiers", status="loaded", extracted=12, unchanged=12, decision="ok",
                              failed_ratio=0.0)]
    rerun["quarantine"][0].update(last_batch_id=f"{RUN}|src_gamma|dossiers", last_run_id=RUN)  # the same bad row, seen again
    send, reason = should_send(assemble_owner_reports(RUN, [src], **rerun)[0])
    assert not send and "nothing new" in reason


def test_pass_rates_ignore_runs_that_failed_or_extracted_nothing():
    history = [
        {"run_id": "r1", "source_id": "s", "dataset": "residents", "status": "loaded", "extracted": 200, "quarantined": 50},
        {"run_id": "r2", "source_id": "s", "dataset": "residents", "status": "extracted", "extracted": 200, "quarantined": 0},
        {"run_id": "r3", "source_id": "s", "dataset": "residents", "status": "loaded", "extracted": 0, "quarantined": 0},
        {"run_id": "r4", "source_id": "s", "dataset": "residents", "status": "blocked", "extracted": 10, "quarantined": 8},
    ]
    assert pass_rates(history) == {("s", "residents"): [("r1", 0.75), ("r4", pytest.approx(0.2))]}


def test_scrub_text_masks_ids_and_the_records_own_names():
    assert scrub_text(f"CCCD {CITIZEN_ID} của {NAME}", [NAME]) == "CCCD 001******345 của N***** V** A*"
    assert scrub_text("CMND 123456789") == "CMND *********"
    assert scrub_text("mã hồ sơ 000.00.12.H26-250701-0001, lúc 20250701123000") == (
        "mã hồ sơ 000.00.12.H26-250701-0001, lúc 20250701123000")
    assert scrub_text(None) is None


def test_assessment_email_reads_the_profile_leniently():
    src = make_source("src_alpha", ["a@tinh.gov.vn"], ["residents"])
    profile = {
        "row_count": 15234,
        "columns": ["so_dinh_danh", "ho_ten", "ma_xa"],
        "null_rates": {"so_dinh_danh": 0.012, "ho_ten": 0.0, "ma_xa": 0.25},
        "distinct_counts": {"so_dinh_danh": 15001, "ho_ten": 9800, "ma_xa": 30},
        "duplicate_keys": {"count": 2, "examples": [CITIZEN_ID, "008123456789"]},
        "code_coverage": {"ma_xa": {"coverage": 0.97, "unknown": ["99999"]}},
        "text_anomalies": {"encoding": {"tcvn3": 120, "vni": 3}, "ho_ten": {"examples": [NAME]}},
        "sampled_at": "2025-06-30",
    }
    msg = render_assessment_email(profile, src)
    assert msg["To"] == "a@tinh.gov.vn"
    for text in texts(msg):
        assert "Đánh giá hiện trạng dữ liệu" in text or "đánh giá hiện trạng dữ liệu" in text
        assert not TWELVE_DIGITS.search(text)
        assert NAME not in text
    plain = msg.get_body(("plain",)).get_content()
    assert "15.234" in plain and "1,2%" in plain and "97%" in plain
    assert "tcvn3 (120)" in plain and "vni (3)" in plain
    assert "Khóa trùng lặp: 2" in plain
    assert "sampled_at" in plain


def test_assessment_email_accepts_a_mapping_of_datasets_and_missing_keys():
    src = make_source("src_alpha", ["a@tinh.gov.vn"], ["residents", "households"])
    msg = render_assessment_email({"residents": {"row_count": 10}, "households": {"columns": {"ma_ho": "text"}}}, src)
    plain = msg.get_body(("plain",)).get_content()
    assert "NHÂN KHẨU" in plain and "HỘ GIA ĐÌNH" in plain
    assert "không phát hiện bảng mã cũ" in plain


def test_wire_bytes_keep_the_spaces_of_a_long_vietnamese_subject(reports):
    from email import message_from_bytes, policy

    from sapnhap.reports.mail import wire_bytes

    msg = build_owner_email(reports["b@tinh.gov.vn"], from_addr="x@tinh.gov.vn")
    parsed = message_from_bytes(wire_bytes(msg), policy=policy.default)
    assert parsed["Subject"] == msg["Subject"]
    sent_text = parsed.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert sent_text == msg.get_body(("plain",)).get_content()
    assert all(len(line) <= 998 for line in wire_bytes(msg).split(b"\r\n"))


def test_message_and_content_ids_never_hold_a_digit_run():
    from sapnhap.reports.mail import message_id

    ids = {message_id() for _ in range(5000)}
    assert len(ids) == 5000
    assert not any(ch.isdigit() for i in ids for ch in i.split("@")[0])


def test_checks_of_one_expectation_type_are_reported_under_their_own_reason(sources, run_rows):
    # Rows recorded with the GX type only (before check ids were stored): unknown and split codes.
    kinds = [("mapping_status.unknown_code", "Mã xã cũ không có trong danh mục", 3),
             ("mapping_status.review", "Xã cũ bị chia tách vào nhiều xã mới", 2)]
    rows, i = [], 100
    for _check, reason, n in kinds:
        for _ in range(n):
            i += 1
            rows.append(qrow(i, "src_alpha", "residents", column="mapping_status", value="x",
                             expectation="expect_column_values_to_not_be_in_set", reason_vi=reason))
    run_rows["quarantine"] = rows
    report = {r.owner: r for r in assemble_owner_reports(RUN, sources, **run_rows)}["a@tinh.gov.vn"]
    _, plain, _ = texts(build_owner_email(report, from_addr="x@tinh.gov.vn"))
    for _check, reason, n in kinds:
        line_index = plain.index(f"Lý do: {reason}")
        header = [ln for ln in plain[:line_index].splitlines() if ln.strip()][-1]
        assert f"{n} bản ghi" in header


def test_a_failed_stage_names_itself_and_an_extract_note_is_not_the_cause(sources, run_rows):
    run_rows["batches"].append(batch("src_beta", "dossiers", status="extracted", extracted=40,
                                     message="unmapped legacy columns: ghi_chu"))
    report = {r.owner: r for r in assemble_owner_reports(RUN, sources, **run_rows)}["b@tinh.gov.vn"]
    _, plain, _ = texts(build_owner_email(report, from_addr="x@tinh.gov.vn"))
    assert "unmapped legacy columns" not in plain and "Chưa ghi nhận được lỗi cụ thể" in plain

    run_rows["batches"][-1]["message"] = "failed at backup: BackupError: object storage unreachable"
    report = {r.owner: r for r in assemble_owner_reports(RUN, sources, **run_rows)}["b@tinh.gov.vn"]
    _, plain, _ = texts(build_owner_email(report, from_addr="x@tinh.gov.vn"))
    assert "Lỗi ở bước sao lưu (backup): BackupError: object storage unreachable" in plain


def test_warnings_are_counted_listed_and_attached(sources, run_rows):
    run_rows["warnings"] = [
        {"warning_id": 1, "batch_id": f"{RUN}|src_alpha|residents", "run_id": RUN, "source_id": "src_alpha",
         "dataset": "residents",
         "source_key": "K0900", "expectation": "old_code_after_merger", "column_name": "old_commune_code",
         "value_masked": "00703", "reason_vi": "Bản ghi phát sinh từ 01/07/2025 nhưng vẫn dùng mã xã cũ.",
         "fix_vi": "Cập nhật mã xã mới"},
    ]
    report = {r.owner: r for r in assemble_owner_reports(RUN, sources, **run_rows)}["a@tinh.gov.vn"]
    msg = build_owner_email(report, from_addr="x@tinh.gov.vn")
    _, plain, _ = texts(msg)
    assert "/ old_code_after_merger (cảnh báo): 1 bản ghi" in plain
    assert "Bản ghi phát sinh từ 01/07/2025 nhưng vẫn dùng mã xã cũ." in plain and "canh_bao" in plain
    part = next(p for p in msg.iter_attachments() if (p.get_filename() or "").endswith(".xlsx"))
    (row,) = read_quarantine_workbook(part.get_content(), "canh_bao")
    assert (row["source_key"], row["expectation"], row["value"]) == ("K0900", "old_code_after_merger", "00703")
