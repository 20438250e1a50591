"""A batch id is built from its run, source and dataset; SQL never parses it back (issue 12): a
query that needs a batch's run joins ``ops.batches`` on ``batch_id`` and reads ``run_id``."""

from __future__ import annotations

import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "include" / "sapnhap"
PARSING = re.compile(r"split_part\(\s*(coalesce\()?\s*\w*batch_id")


def test_no_query_parses_a_batch_id() -> None:
    offenders = [
        f"{path.relative_to(PACKAGE)}:{n}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if PARSING.search(line)
    ]
    assert offenders == []
