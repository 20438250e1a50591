"""The date-format evidence of a batch read in chunks adds up to the evidence of the batch read whole."""

from __future__ import annotations

import pandas as pd
import pytest

from sapnhap.dateproof import add_tallies, date_evidence, date_findings, date_tally, evidence_from, findings_from


@pytest.mark.parametrize("fmt", ["%d/%m/%Y", "%m/%d/%Y", None])
def test_chunks_give_the_evidence_and_verdict_of_one_frame(fmt) -> None:
    # Day-first dates, a few month-first ones, repeats and ambiguous ones spread over the chunks.
    values = pd.Series(
        [f"{d:02d}/{m:02d}/2024" for d in range(1, 29) for m in (1, 5, 11)]
        + ["03/25/2024", "04/26/2023", "05/27/2022", "01/02/2024"] * 3 + [None, "abc", "2024-05-01"],
        dtype="object",
    )
    whole = date_evidence(values, fmt)
    tally = None
    for start in range(0, len(values), 17):
        tally = add_tallies(tally, date_tally(values.iloc[start:start + 17]))
    assert evidence_from(tally, fmt) == whole
    assert whole["problem"] is not None or fmt is None  # the month-first dates contradict a configured order
    frame = pd.DataFrame({"birth_date": values})
    assert findings_from({"birth_date": tally}, {"birth_date": fmt}) == date_findings(frame, {"birth_date": fmt})
