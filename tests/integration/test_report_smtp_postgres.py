"""send_run_reports against a real PostgreSQL (scratch database) and a real SMTP server (aiosmtpd)."""

from __future__ import annotations

import json
import re
import socket
import sys
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import psycopg
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "include"))

from aiosmtpd.controller import Controller

from sapnhap.reports import ReportDeliveryError, read_quarantine_workbook, send_run_reports
from sapnhap.services import Services, SmtpConfig
from sapnhap.sources import Source

RUN = "scheduled__2025-07-02T19:00:00+00:00"
TWELVE_DIGITS = re.compile(r"\b\d{12}\b")
NAMES = ("Nguyễn Văn An", "Hoàng Thị Mai")
IDS = ("001203012345", "008187654321")

MAPPINGS = {
    "residents": {"table": "nhan_khau", "primary_key": ["id"],
                  "columns": {"citizen_id": "so_dinh_danh", "full_name": "ho_ten", "birth_date": "ngay_sinh",
                              "gender": "gioi_tinh"}},
    "households": {"table": "ho", "primary_key": ["ma_ho"], "columns": {"household_code": "ma_ho"}},
    "dossiers": {"table": "ho_so", "primary_key": ["id"], "columns": {"dossier_code": "ma_ho_so"}},
}


def make_source(source_id: str, owners: list[str], datasets: list[str]) -> Source:
    return Source.model_validate({
        "id": source_id, "name": f"Hệ thống thử nghiệm {source_id}", "kind": "postgres", "conn_id": source_id,
        "old_units": {"province": "08"}, "owners": owners, "quality": {"warn_ratio": 0.05, "block_ratio": 0.5},
        "datasets": {d: MAPPINGS[d] for d in datasets},
    })


SOURCES = [
    make_source("src_alpha", ["a@tinh.gov.vn"], ["residents", "households"]),
    make_source("src_beta", ["a@tinh.gov.vn", "b@tinh.gov.vn"], ["dossiers"]),
    make_source("src_gamma", ["c@tinh.gov.vn"], ["dossiers"]),
]


class KeepAll:
    """aiosmtpd handler that keeps every message it receives."""

    def __init__(self) -> None:
        self.received: list[tuple[list[str], EmailMessage]] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: ANN001, N802 - aiosmtpd hook
        msg = message_from_bytes(envelope.original_content or envelope.content, policy=policy.default)
        self.received.append((list(envelope.rcpt_tos), msg))
        return "250 Message accepted for delivery"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def smtp_server():
    handler = KeepAll()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


def _batch(conn, run_id, source_id, dataset, status, *, day: int, **counts):  # noqa: ANN001
    cols = ["batch_id", "run_id", "source_id", "dataset", "status", "created_at", *counts]
    values = [f"{run_id}|{source_id}|{dataset}", run_id, source_id, dataset, status,
              f"2025-06-{day:02d} 19:00:00+00" if day <= 30 else "2025-07-02 19:00:00+00", *counts.values()]
    conn.execute(f"INSERT INTO ops.batches ({', '.join(cols)}) VALUES ({', '.join(['%s'] * len(cols))})", values)


def _quarantine(conn, qid_key, source_id, dataset, *, column, value, status="open", first=RUN, last=RUN,  # noqa: ANN001
                resolved=None, payload=None, reason="Giá trị không hợp lệ"):
    conn.execute(
        """INSERT INTO ops.quarantine (source_id, dataset, source_key, record_hash, expectation, column_name,
               value_masked, reason_vi, fix_vi, severity, payload, status, first_batch_id, last_batch_id,
               resolved_batch_id)
           VALUES (%s, %s, %s, 'h', %s, %s, %s, %s, %s, 'block', %s::jsonb, %s, %s, %s, %s)""",
        (source_id, dataset, qid_key, f"{column}.format", column, value, reason,
         f"Sửa trường {column} trên hệ thống cũ", json.dumps(payload or {}), status,
         f"{first}|{source_id}|{dataset}", f"{last}|{source_id}|{dataset}",
         f"{resolved}|{source_id}|{dataset}" if resolved else None),
    )


def seed(dsn: str) -> None:
    with psycopg.connect(dsn) as conn:
        for day in range(1, 11):  # ten earlier nights
            run = f"scheduled__2025-06-{day:02d}"
            _batch(conn, run, "src_alpha", "residents", "loaded", day=day, extracted=100, quarantined=day, inserted=100 - day)
            _batch(conn, run, "src_beta", "dossiers", "loaded", day=day, extracted=50, quarantined=2, inserted=48)
            _batch(conn, run, "src_gamma", "dossiers", "loaded", day=day, extracted=0)
        conn.execute("INSERT INTO ops.runs (run_id, started_at) VALUES (%s, '2025-07-02 19:00:00+00')", (RUN,))
        # Tonight: alpha residents loaded with warnings; alpha households has no batch (legacy server down);
        # beta dossiers blocked; gamma extracted nothing.
        _batch(conn, RUN, "src_alpha", "residents", "loaded", day=31, extracted=40, inserted=30, updated=4,
               unchanged=2, quarantined=3, merged_in_batch=1, decision="warn", failed_ratio=0.075)
        _batch(conn, RUN, "src_beta", "dossiers", "blocked", day=31, extracted=20, quarantined=14,
               decision="block", failed_ratio=0.7)
        _batch(conn, RUN, "src_gamma", "dossiers", "loaded", day=31, extracted=0, decision="ok", failed_ratio=0.0)
        conn.execute(
            """INSERT INTO ops.reconciliation (run_id, batch_id, source_id, dataset, extracted, loaded, quarantined,
                   merged_duplicates, not_loaded_blocked, ok) VALUES
               (%s, %s, 'src_alpha', 'residents', 40, 36, 3, 1, 0, true),
               (%s, %s, 'src_beta', 'dossiers', 20, 0, 14, 0, 6, true)""",
            (RUN, f"{RUN}|src_alpha|residents", RUN, f"{RUN}|src_beta|dossiers"),
        )
        conn.execute("INSERT INTO ops.cursors (source_id, dataset, cursor_value, batch_id) VALUES "
                     "('src_alpha', 'households', '2025-06-30 23:59:59', 'scheduled__2025-06-10|src_alpha|households')")
        payload = {"citizen_id": IDS[0], "full_name": NAMES[0]}
        # value_masked left unmasked on purpose: the report must mask it anyway.
        _quarantine(conn, "NK-1", "src_alpha", "residents", column="citizen_id", value=IDS[0], payload=payload,
                    reason=f"Số CCCD của {NAMES[0]} không hợp lệ")
        _quarantine(conn, "NK-2", "src_alpha", "residents", column="full_name", value="H***** T** M**",
                    payload={"citizen_id": IDS[1], "full_name": NAMES[1]})
        _quarantine(conn, "NK-3", "src_alpha", "residents", column="birth_date", value="31/02/1990",
                    first="scheduled__2025-06-05", last="scheduled__2025-06-05")
        _quarantine(conn, "NK-4", "src_alpha", "residents", column="gender", value="x", status="resolved",
                    first="scheduled__2025-06-05", resolved=RUN)
        for i in range(14):
            _quarantine(conn, f"HS-{i}", "src_beta", "dossiers", column="received_date", value="00/00/0000")
        _quarantine(conn, "HS-OLD", "src_gamma", "dossiers", column="status", value="??",
                    first="scheduled__2025-06-01", last="scheduled__2025-06-01")


def open_rows(dsn: str, source_ids: list[str]) -> list[dict]:
    with psycopg.connect(dsn) as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return cur.execute(
            """SELECT quarantine_id, source_id, dataset, source_key, expectation, column_name, value_masked,
                      reason_vi, fix_vi, first_batch_id
               FROM ops.quarantine WHERE status = 'open' AND source_id = ANY(%s)""",
            (source_ids,),
        ).fetchall()


def text_of(msg: EmailMessage) -> str:
    return "\n".join([str(msg["Subject"])] + [p.get_content() for p in msg.walk() if p.get_content_maintype() == "text"])


def test_send_run_reports_one_email_per_owner(platform_dsn, smtp_server):
    handler, port = smtp_server
    seed(platform_dsn)
    services = Services(platform_dsn=platform_dsn, smtp=SmtpConfig(host="127.0.0.1", port=port,
                                                                  from_addr="sapnhap@tinh.gov.vn"))
    summary = send_run_reports(services, RUN, SOURCES)

    assert [s["to"] for s in summary["sent"]] == ["a@tinh.gov.vn", "b@tinh.gov.vn"]
    assert [s["to"] for s in summary["skipped"]] == ["c@tinh.gov.vn"]  # src_gamma: nothing new
    assert sorted(rcpts[0] for rcpts, _ in handler.received) == ["a@tinh.gov.vn", "b@tinh.gov.vn"]
    assert all(len(rcpts) == 1 for rcpts, _ in handler.received)

    owner_sources = {"a@tinh.gov.vn": ["src_alpha", "src_beta"], "b@tinh.gov.vn": ["src_beta"]}
    for rcpts, msg in handler.received:
        owner = rcpts[0]
        sent = next(s for s in summary["sent"] if s["to"] == owner)
        assert sent["sources"] == owner_sources[owner]
        assert msg["Subject"] == sent["subject"]
        assert "Kết quả đồng bộ dữ liệu ngày 03/07/2025" in msg["Subject"]
        assert "1 nguồn bị chặn, không nạp" in msg["Subject"]

        body = text_of(msg)
        assert not TWELVE_DIGITS.search(body)
        assert not any(n in body for n in NAMES)
        assert "Trích xuất" in body and "Nạp mới" in body and "Trùng lặp đã gộp" in body
        assert "KHÔNG được nạp vào nền tảng đêm nay" in body and "70%" in body and "50%" in body

        pngs = [p for p in msg.walk() if p.get_content_type() == "image/png"]
        assert len(pngs) == 1 and pngs[0].get_content().startswith(b"\x89PNG")
        assert f"cid:{pngs[0]['Content-ID'].strip('<>')}" in msg.get_body(("html",)).get_content()

        (xlsx,) = [p for p in msg.iter_attachments() if (p.get_filename() or "").endswith(".xlsx")]
        rows = read_quarantine_workbook(xlsx.get_content())
        expected = open_rows(platform_dsn, owner_sources[owner])
        assert sent["attachment_rows"] == len(rows) == len(expected)
        assert {r["quarantine_id"] for r in rows} == {e["quarantine_id"] for e in expected}
        by_id = {e["quarantine_id"]: e for e in expected}
        for r in rows:
            e = by_id[r["quarantine_id"]]
            assert (r["source_id"], r["dataset"], r["source_key"], r["expectation"], r["column"], r["fix_vi"],
                    r["first_seen_batch"]) == (e["source_id"], e["dataset"], e["source_key"], e["expectation"],
                                               e["column_name"], e["fix_vi"], e["first_batch_id"])
            assert not TWELVE_DIGITS.search(str(r["value"])) and not TWELVE_DIGITS.search(str(r["reason_vi"]))
            assert not any(n in str(r["reason_vi"]) for n in NAMES)

    a_body = text_of(next(m for rc, m in handler.received if rc == ["a@tinh.gov.vn"]))
    # src_alpha households had no batch tonight: told it failed and will be caught up.
    assert "Nguồn dữ liệu không đồng bộ được đêm nay" in a_body
    assert "không bỏ sót bản ghi nào" in a_body and "2025-06-30 23:59:59" in a_body
    assert "001******345" in a_body and "N***** V** A*" in a_body
    assert "1 lỗi cách ly trước đây đã được khắc phục" in a_body
    b_body = text_of(next(m for rc, m in handler.received if rc == ["b@tinh.gov.vn"]))
    assert "src_alpha" not in b_body


def test_smtp_failure_raises_a_clear_error(platform_dsn):
    seed(platform_dsn)
    port = free_port()  # nothing listens there
    services = Services(platform_dsn=platform_dsn, smtp=SmtpConfig(host="127.0.0.1", port=port, timeout=5))
    with pytest.raises(ReportDeliveryError, match=rf"SMTP 127\.0\.0\.1:{port}: sent 0 of 2 report emails"):
        send_run_reports(services, RUN, SOURCES)


def test_a_run_with_no_batches_at_all_reports_every_source_failed(platform_dsn, smtp_server):
    handler, port = smtp_server
    services = Services(platform_dsn=platform_dsn, smtp=SmtpConfig(host="127.0.0.1", port=port))
    summary = send_run_reports(services, "manual__empty", SOURCES[:1])
    assert [s["to"] for s in summary["sent"]] == ["a@tinh.gov.vn"]
    (_, msg), = handler.received
    assert "1 nguồn không đồng bộ được" in msg["Subject"]
    assert "Nguồn dữ liệu không đồng bộ được đêm nay" in text_of(msg)
    assert summary["sent"][0]["attachment_rows"] == 0
