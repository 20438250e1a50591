"""The restore drill's email goes through the outbox: stored before it is sent, sent once, kept
until delivered; a mail outage neither hides the drill's result nor loses its email.
"""

from __future__ import annotations

import dataclasses

import psycopg
import pytest

from sapnhap.restore import RestoreError, restore_drill
from sapnhap.services import Services
from sapnhap_dev.embedded import free_port, read_mail

pytestmark = pytest.mark.integration

TEAM = "doi.du.lieu@test.example"


def _outbox(dsn: str) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT kind, recipient, status, attempts FROM ops.outbox ORDER BY outbox_id").fetchall()


def test_the_drill_mail_survives_an_smtp_outage_and_is_sent_once(services: Services, smtp_sink) -> None:
    down = dataclasses.replace(services, smtp=dataclasses.replace(services.smtp, port=free_port(), timeout=2))
    # Nothing backed up yet: the drill fails, and says so even though the mail server is down.
    with pytest.raises(RestoreError, match="no backups found"):
        restore_drill(down, recipients=[TEAM], run_id="drill-1")
    assert _outbox(services.platform_dsn) == [("restore_drill", TEAM, "pending", 1)]
    assert read_mail(smtp_sink[1]) == []

    # The next drill (the server is back) delivers the stored email; its own, identical, is not sent again.
    with pytest.raises(RestoreError, match="no backups found"):
        restore_drill(services, recipients=[TEAM], run_id="drill-1")
    mails = read_mail(smtp_sink[1])
    assert len(mails) == 1 and mails[0]["To"] == TEAM and "KHÔNG ĐẠT" in str(mails[0]["Subject"])
    assert "Không tìm thấy bản sao lưu" in mails[0].get_body(preferencelist=("plain",)).get_content()
    assert _outbox(services.platform_dsn) == [("restore_drill", TEAM, "sent", 2)]
    # The soak's report checks count owner reports by their run header: the drill's email has none.
    assert mails[0]["X-Sapnhap-Run-Id"] is None
