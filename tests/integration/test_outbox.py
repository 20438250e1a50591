"""The owners' outbox against real PostgreSQL and a real SMTP server (aiosmtpd): nothing lost, nothing doubled."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from aiosmtpd.controller import Controller

from sapnhap.reports import ReportDeliveryError, send_run_reports
from sapnhap.reports.outbox import report_key, stable_message_id
from sapnhap.services import Services, SmtpConfig
from sapnhap.sources import Source
from sapnhap_dev.embedded import MailSink, free_port, read_mail

pytestmark = pytest.mark.integration

TWELVE_DIGITS = re.compile(r"\d{12}")
OWNERS = ["a@tinh.gov.vn", "b@tinh.gov.vn", "c@tinh.gov.vn", "d@tinh.gov.vn"]


def make_source(source_id: str, owners: list[str]) -> Source:
    return Source.model_validate({
        "id": source_id, "name": f"Hệ thống thử nghiệm {source_id}", "kind": "postgres", "conn_id": source_id,
        "old_units": {"province": "08"}, "owners": owners, "quality": {"warn_ratio": 0.05, "block_ratio": 0.5},
        "datasets": {"dossiers": {"table": "hs", "primary_key": ["id"], "columns": {"dossier_code": "ma_ho_so"}}},
    })


SOURCES = [make_source(f"src_{o[0]}", [o]) for o in OWNERS]


def run_id(night: int) -> str:
    return f"scheduled__2025-07-{night:02d}T18:00:00+00:00"


def load_night(dsn: str, night: int, *, inserted: int = 5, sources: list[Source] = SOURCES) -> None:
    """Record a committed batch per source for a night (as load_stage leaves it), and the run."""
    at = datetime.now(UTC) - timedelta(days=3) + timedelta(hours=night)
    run = run_id(night)
    with psycopg.connect(dsn) as conn:
        conn.execute("INSERT INTO ops.runs (run_id, started_at) VALUES (%s, %s) ON CONFLICT DO NOTHING", (run, at))
        for s in sources:
            conn.execute(
                """INSERT INTO ops.batches (batch_id, run_id, source_id, dataset, status, extracted, inserted, decision,
                       failed_ratio, created_at, committed_at)
                   VALUES (%s, %s, %s, 'dossiers', 'loaded', %s, %s, 'ok', 0, %s, %s)""",
                (f"{run}|{s.id}|dossiers", run, s.id, inserted, inserted, at, at),
            )


class FlakySink(MailSink):
    """A mail sink that accepts ``accept`` messages, then answers 421 (service closing) until reset."""

    def __init__(self, folder: Path, accept: int | None = None) -> None:
        super().__init__(folder)
        self.accept = accept
        self.taken = 0

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: ANN001, N802 - aiosmtpd hook
        if self.accept is not None and self.taken >= self.accept:
            return "421 4.3.2 Service not available, closing transmission channel"
        self.taken += 1
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def flaky_smtp(tmp_path: Path):
    sink = FlakySink(tmp_path / "mail")
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield sink, SmtpConfig(host="127.0.0.1", port=port, from_addr="sapnhap@test.example", timeout=5)
    finally:
        controller.stop()


def outbox_rows(dsn: str) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT run_id, recipient, status, attempts, last_error IS NOT NULL FROM ops.outbox ORDER BY run_id, recipient"
        ).fetchall()


def received(folder: Path) -> list[tuple[str, str, str]]:
    """(recipient, Message-ID, run id) of every message the sink took."""
    return [(str(m["To"]), str(m["Message-ID"]), str(m["X-Sapnhap-Run-Id"])) for m in read_mail(folder)]


def test_smtp_down_loses_nothing_and_the_next_send_delivers_one_copy(platform_dsn, smtp_sink) -> None:
    smtp, folder = smtp_sink
    load_night(platform_dsn, 1)
    down = Services(platform_dsn=platform_dsn, smtp=SmtpConfig(host="127.0.0.1", port=free_port(), timeout=3))
    with pytest.raises(ReportDeliveryError, match="sent 0 of 4 report emails"):
        send_run_reports(down, run_id(1), SOURCES)
    # Stored before sending: every owner's report waits in the outbox.
    assert [(r[1], r[2]) for r in outbox_rows(platform_dsn)] == [(o, "pending") for o in OWNERS]

    # The next night's report task sends last night's reports too, then tonight's: one copy each.
    load_night(platform_dsn, 2)
    up = Services(platform_dsn=platform_dsn, smtp=smtp)
    summary = send_run_reports(up, run_id(2), SOURCES)
    assert summary["delivered"] == 8 and summary["pending"] == 0
    got = received(folder)
    assert sorted((to, run) for to, _, run in got) == sorted((o, run_id(n)) for o in OWNERS for n in (1, 2))
    assert len({mid for _, mid, _ in got}) == 8
    for to, mid, run in got:
        assert mid == stable_message_id(report_key(run, to))
        assert re.fullmatch(r"<[a-z]+@sapnhap\.report>", mid) and not TWELVE_DIGITS.search(mid)

    # A rerun of either report task sends nothing again.
    send_run_reports(up, run_id(1), SOURCES)
    send_run_reports(up, run_id(2), SOURCES)
    assert len(read_mail(folder)) == 8
    assert {r[2] for r in outbox_rows(platform_dsn)} == {"sent"}


def test_partial_send_resumes_where_it_stopped(platform_dsn, flaky_smtp) -> None:
    sink, smtp = flaky_smtp
    load_night(platform_dsn, 1)
    services = Services(platform_dsn=platform_dsn, smtp=smtp)
    sink.accept = 2  # the server takes two reports, then closes the channel
    with pytest.raises(ReportDeliveryError, match="sent 2 of 4 report emails"):
        send_run_reports(services, run_id(1), SOURCES)
    first = received(sink.folder)
    assert len(first) == 2
    assert [r[2] for r in outbox_rows(platform_dsn)].count("sent") == 2

    sink.accept = None  # the retry of the task
    send_run_reports(services, run_id(1), SOURCES)
    got = received(sink.folder)
    assert sorted(to for to, _, _ in got) == OWNERS  # each owner exactly once
    assert got[:2] == first
    assert {r[2] for r in outbox_rows(platform_dsn)} == {"sent"}


def test_a_batch_loaded_by_a_run_whose_report_never_ran_is_in_the_next_report(platform_dsn, smtp_sink) -> None:
    smtp, folder = smtp_sink
    services = Services(platform_dsn=platform_dsn, smtp=smtp)
    load_night(platform_dsn, 1, sources=SOURCES[:1])
    send_run_reports(services, run_id(1), SOURCES[:1])
    load_night(platform_dsn, 2, inserted=7, sources=SOURCES[:1])  # the run was killed before its report
    load_night(platform_dsn, 3, inserted=0, sources=SOURCES[:1])  # nothing new tonight
    summary = send_run_reports(services, run_id(3), SOURCES[:1])
    assert [s["to"] for s in summary["sent"]] == ["a@tinh.gov.vn"]  # night 2's news is worth an email
    mails = read_mail(folder)
    assert [str(m["X-Sapnhap-Run-Id"]) for m in mails] == [run_id(1), run_id(3)]
    body = mails[1].get_body(("plain",)).get_content()
    assert "chưa được báo cáo" in body and run_id(2) in body and "Nạp mới: 7" in body
    assert run_id(1) not in body  # already reported

    # Covered once: the next night does not report night 2 again.
    load_night(platform_dsn, 4, inserted=0, sources=SOURCES[:1])
    summary = send_run_reports(services, run_id(4), SOURCES[:1])
    assert summary["sent"] == [] and len(read_mail(folder)) == 2
