"""What one owner's nightly report says, assembled from ops rows as plain values.

Everything here is pure: the rows come in as dicts (as :mod:`sapnhap.reports.queries` reads
them from ``ops``), the reports come out as dataclasses the email templates render. Every
text that reaches a report passes through :func:`scrub_text`, so no full citizen ID or name
can reach an email even when an upstream stage forgot to mask it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from sapnhap.datasets import DATASETS
from sapnhap.sources import Source

State = Literal["ok", "warn", "block", "failed"]

# Worst first: the state of a source is the worst state of its datasets.
STATE_ORDER: tuple[State, ...] = ("failed", "block", "warn", "ok")
STATE_LABEL_VI: dict[str, str] = {
    "ok": "Đạt",
    "warn": "Có cảnh báo",
    "block": "Bị chặn – KHÔNG nạp đêm nay",
    "failed": "Không đồng bộ được đêm nay",
}
# Notes extract leaves on a batch that loads normally: never the cause of a failure.
EXTRACT_NOTES = ("unmapped legacy columns",)
STAGE_VI: dict[str, str] = {
    "assess": "đánh giá hiện trạng",
    "extract": "trích xuất",
    "transform": "chuyển đổi mã đơn vị",
    "validate": "kiểm tra chất lượng",
    "backup": "sao lưu",
    "load": "nạp vào nền tảng",
}
BATCH_STATUS_VI: dict[str, str] = {
    "failed": "lỗi, chưa nạp",
    "extracted": "mới trích xuất xong, chưa kiểm tra và nạp",
    "backed_up": "đã kiểm tra và sao lưu, chưa nạp",
    "loaded": "đã nạp",
    "blocked": "bị chặn, không nạp",
}
EXAMPLES_PER_CHECK = 3
MAX_MESSAGE_CHARS = 400

# 9 (old ID card) to 12 (citizen ID) digits standing alone: masked wherever they appear in text.
_ID_DIGITS = re.compile(r"(?<!\d)\d{9,12}(?!\d)")
_MIN_PII_LENGTH = 4


def _mask_one(kind: Literal["citizen_id", "name"], value: str) -> str:
    from sapnhap.quality.masking import mask_citizen_id, mask_name

    fn = mask_citizen_id if kind == "citizen_id" else mask_name
    return fn([value])[0]


def scrub_text(text: object, pii_values: Iterable[object] = ()) -> str | None:
    """Text safe for an email: known personal values and ID-like digit runs masked.

    ``pii_values`` are the record's own personal values (name, citizen ID): wherever one
    occurs in ``text`` it is replaced by its masked form. Any run of 9-12 digits is masked
    as a citizen ID. ``None`` stays ``None``.
    """
    if text is None:
        return None
    out = str(text)
    values = sorted({str(v).strip() for v in pii_values if v is not None and len(str(v).strip()) >= _MIN_PII_LENGTH},
                    key=len, reverse=True)
    for v in values:
        if v in out:
            out = out.replace(v, _mask_one("citizen_id" if v.isdigit() else "name", v))
    return _ID_DIGITS.sub(lambda m: _mask_one("citizen_id", m.group()), out)


def mask_value(dataset: str, column: str | None, value: object) -> str | None:
    """The reported value of a failing cell, masked again if the column holds personal data.

    Quarantine values are masked when recorded; masking is idempotent, so doing it again
    here costs nothing and protects against a check that forgot.
    """
    if value is None:
        return None
    text = str(value)
    ds = DATASETS.get(dataset)
    if ds is not None and column and column in ds.pii_columns:
        kind = "citizen_id" if ds.column(column).type == "citizen_id" else "name"
        text = _mask_one(kind, text)
    return text


def stage_failure_vi(message: str | None) -> str | None:
    """'Lỗi ở bước sao lưu: ...' for a batch message written by ``runs.record_stage_failure``, else None."""
    if not message or not message.startswith("failed at "):
        return None
    stage, _, detail = message[len("failed at "):].partition(": ")
    return f"Lỗi ở bước {STAGE_VI.get(stage, stage)} ({stage}): {detail}"


def mask_email(address: str) -> str:
    """``cntt.sonduong@x.vn`` -> ``c***@x.vn``: for logs."""
    local, _, domain = address.partition("@")
    return f"{local[:1]}***@{domain}"


@dataclass(frozen=True)
class QuarantineRow:
    """One failing (record, check) of ``ops.quarantine``, masked for the owner."""

    quarantine_id: int
    source_id: str
    dataset: str
    source_key: str
    expectation: str
    column: str | None
    value: str | None
    reason_vi: str
    fix_vi: str | None
    severity: str
    status: str
    first_batch_id: str
    last_batch_id: str
    resolved_batch_id: str | None = None
    # The runs of those batches (``ops.batches.run_id``; a batch id is never parsed for it).
    first_run_id: str | None = None
    last_run_id: str | None = None
    resolved_run_id: str | None = None

    @classmethod
    def from_ops(cls, row: dict[str, Any]) -> QuarantineRow:
        """Build from an ``ops.quarantine`` row; ``pii_values`` (optional) are the record's personal values."""
        pii = [v for v in (row.get("pii_values") or []) if v]
        column = row.get("column_name", row.get("column"))
        value = row.get("value_masked", row.get("value"))
        return cls(
            quarantine_id=int(row["quarantine_id"]),
            source_id=row["source_id"],
            dataset=row["dataset"],
            source_key=scrub_text(row["source_key"], pii) or "",
            expectation=row["expectation"],
            column=column,
            value=scrub_text(mask_value(row["dataset"], column, value), pii),
            reason_vi=scrub_text(row.get("reason_vi"), pii) or "",
            fix_vi=scrub_text(row.get("fix_vi"), pii),
            severity=row.get("severity") or "block",
            status=row.get("status") or "open",
            first_batch_id=row["first_batch_id"],
            last_batch_id=row["last_batch_id"],
            resolved_batch_id=row.get("resolved_batch_id"),
            first_run_id=row.get("first_run_id"),
            last_run_id=row.get("last_run_id"),
            resolved_run_id=row.get("resolved_run_id"),
        )

    @classmethod
    def from_warning(cls, row: dict[str, Any]) -> QuarantineRow:
        """Build from an ``ops.warnings`` row: a warn check failed, the record was loaded."""
        return cls.from_ops({
            **row,
            "quarantine_id": row["warning_id"],
            "severity": "warn",
            "status": "open",
            "first_batch_id": row["batch_id"],
            "last_batch_id": row["batch_id"],
            "first_run_id": row.get("run_id"),
            "last_run_id": row.get("run_id"),
        })


@dataclass
class CheckSummary:
    """One failed check of one dataset in this run: how many records, and a few examples."""

    source_id: str
    dataset: str
    expectation: str
    column: str | None
    severity: str
    reason_vi: str
    fix_vi: str | None
    count: int = 0
    new: int = 0
    examples: list[QuarantineRow] = field(default_factory=list)


@dataclass
class DatasetResult:
    """How one dataset of one source fared in this run."""

    source_id: str
    dataset: str
    title_vi: str
    state: State
    extracted: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    quarantined: int = 0
    warned: int = 0
    merged: int = 0
    blocked: int = 0
    failed_ratio: float | None = None
    decision: str | None = None
    batch_status: str | None = None
    message: str | None = None
    reconciled: bool | None = None
    cursor_value: str | None = None
    cursor_updated_at: datetime | None = None
    run_id: str | None = None
    batch_id: str | None = None

    @property
    def reconciliation_vi(self) -> str:
        if self.reconciled is None:
            return "Chưa đối soát"
        return "Khớp" if self.reconciled else "Lệch"

    @property
    def failure_vi(self) -> str:
        """Why this dataset did not sync, for a ``failed`` dataset."""
        if self.batch_status is None:
            reason = "Không có lô dữ liệu nào được ghi nhận đêm nay (thường do không kết nối được hệ thống cũ)."
        else:
            reason = f"Lô dữ liệu dừng ở trạng thái: {BATCH_STATUS_VI.get(self.batch_status, self.batch_status)}."
        stage_error = stage_failure_vi(self.message)
        if stage_error:
            reason += f" {stage_error}"
        elif self.message and not self.message.startswith(EXTRACT_NOTES):
            reason += f" Thông báo của hệ thống: {self.message}"
        else:
            # Extract's note (unmapped columns) is not why a later stage failed.
            reason += " Chưa ghi nhận được lỗi cụ thể của bước bị dừng; bộ phận vận hành đang kiểm tra nhật ký."
        return reason


@dataclass
class SourceResult:
    """One source of the owner in this run."""

    source: Source
    datasets: list[DatasetResult]
    checks: list[CheckSummary]
    resolved: int = 0
    # The latest source-vs-platform verification per dataset (``sapnhap.verify.verification_summary``).
    verifications: list[dict[str, Any]] = field(default_factory=list)
    # Export files and correction uploads that could not be read (``ops.quarantined_files``, still open).
    quarantined_files: list[dict[str, Any]] = field(default_factory=list)

    @property
    def state(self) -> State:
        states = {d.state for d in self.datasets} or {"failed"}
        return next(s for s in STATE_ORDER if s in states)

    @property
    def state_vi(self) -> str:
        return STATE_LABEL_VI[self.state]

    @property
    def block_ratio(self) -> float:
        return self.source.quality.block_ratio

    @property
    def warn_ratio(self) -> float:
        return self.source.quality.warn_ratio


@dataclass
class OwnerReport:
    """Everything one owner's email says about one run."""

    owner: str
    run_id: str
    run_started_at: datetime | None
    sources: list[SourceResult]
    open_rows: list[QuarantineRow]
    history: list[dict[str, Any]]
    quarantine_changes: int = 0
    # Batches of earlier runs no report to this owner covered (a killed run's, a report that never ran).
    earlier: list[DatasetResult] = field(default_factory=list)
    warning_rows: list[QuarantineRow] = field(default_factory=list)

    @property
    def source_ids(self) -> list[str]:
        return [s.source.id for s in self.sources]

    @property
    def extracted(self) -> int:
        return sum(d.extracted for s in self.sources for d in s.datasets)

    @property
    def changed(self) -> int:
        """Records new or changed in the platform tonight (re-read, unchanged rows are not news)."""
        return sum(d.inserted + d.updated for s in self.sources for d in s.datasets)

    @property
    def earlier_changed(self) -> int:
        """Records new or changed by earlier batches not reported before."""
        return sum(d.inserted + d.updated for d in self.earlier)

    @property
    def covered_batch_ids(self) -> list[str]:
        """The committed batches this report tells the owner about (tonight's and earlier unreported ones)."""
        ids = [d.batch_id for s in self.sources for d in s.datasets
               if d.batch_id and d.batch_status in ("loaded", "blocked")]
        return sorted({*ids, *(d.batch_id for d in self.earlier if d.batch_id)})

    @property
    def state(self) -> State:
        states = {s.state for s in self.sources} or {"ok"}
        return next(s for s in STATE_ORDER if s in states)

    def count_in_state(self, state: State) -> int:
        return sum(1 for s in self.sources if s.state == state)


def _int(row: dict[str, Any] | None, key: str) -> int:
    return int((row or {}).get(key) or 0)


def dataset_result(
    source: Source,
    dataset: str,
    batch: dict[str, Any] | None,
    reconciliation: dict[str, Any] | None = None,
    cursor: dict[str, Any] | None = None,
) -> DatasetResult:
    """The result of one dataset from its ``ops.batches`` row (``None``: no batch this run)."""
    ds = DATASETS.get(dataset)
    status = batch.get("status") if batch else None
    decision = batch.get("decision") if batch else None
    if status not in ("loaded", "blocked"):
        state: State = "failed"
    elif status == "blocked" or decision == "block":
        state = "block"
    elif decision == "warn":
        state = "warn"
    else:
        state = "ok"
    extracted = _int(batch, "extracted")
    quarantined = _int(batch, "quarantined")
    merged = _int(batch, "merged_in_batch") + _int(batch, "merged_cross_source")
    if reconciliation is not None:
        blocked = _int(reconciliation, "not_loaded_blocked")
    elif state == "block":
        blocked = max(extracted - quarantined - merged, 0)
    else:
        blocked = 0
    ratio = batch.get("failed_ratio") if batch else None
    return DatasetResult(
        source_id=source.id,
        dataset=dataset,
        title_vi=ds.title_vi if ds else dataset,
        state=state,
        extracted=extracted,
        inserted=_int(batch, "inserted"),
        updated=_int(batch, "updated"),
        unchanged=_int(batch, "unchanged"),
        quarantined=quarantined,
        warned=_int(batch, "warned"),
        merged=merged,
        blocked=blocked,
        failed_ratio=float(ratio) if ratio is not None else None,
        decision=decision,
        batch_status=status,
        message=scrub_text((batch.get("message") or "")[:MAX_MESSAGE_CHARS] or None) if batch else None,
        reconciled=bool(reconciliation["ok"]) if reconciliation is not None and reconciliation.get("ok") is not None else None,
        cursor_value=scrub_text(cursor.get("cursor_value")) if cursor else None,
        cursor_updated_at=cursor.get("updated_at") if cursor else None,
        run_id=batch.get("run_id") if batch else None,
        batch_id=batch.get("batch_id") if batch else None,
    )


def summarize_checks(rows: Sequence[QuarantineRow], run_id: str, examples: int = EXAMPLES_PER_CHECK) -> list[CheckSummary]:
    """Group the open rows seen in this run by (source, dataset, check, column, reason), with a few examples."""
    groups: dict[tuple, CheckSummary] = {}
    for r in rows:
        if r.status != "open" or r.last_run_id != run_id:
            continue
        # Grouped by the check (its id, and its reason for rows recorded with the GX type only):
        # two checks of one expectation type are two reasons.
        key = (r.source_id, r.dataset, r.expectation, r.column or "", r.severity, r.reason_vi)
        g = groups.get(key)
        if g is None:
            g = groups[key] = CheckSummary(r.source_id, r.dataset, r.expectation, r.column, r.severity, r.reason_vi, r.fix_vi)
        g.count += 1
        g.new += int(r.first_run_id == run_id)
        if len(g.examples) < examples:
            g.examples.append(r)
    return sorted(groups.values(), key=lambda g: (g.source_id, g.dataset, g.severity != "block", -g.count, g.expectation))


def _owners(sources: Sequence[Source]) -> dict[str, list[Source]]:
    by_owner: dict[str, list[Source]] = {}
    for s in sorted(sources, key=lambda s: s.id):
        for owner in dict.fromkeys(o.strip().lower() for o in s.owners):
            by_owner.setdefault(owner, []).append(s)
    return by_owner


def assemble_owner_reports(
    run_id: str,
    sources: Sequence[Source],
    *,
    batches: Sequence[dict[str, Any]],
    reconciliation: Sequence[dict[str, Any]] = (),
    quarantine: Sequence[dict[str, Any]] = (),
    history: Sequence[dict[str, Any]] = (),
    cursors: Sequence[dict[str, Any]] = (),
    run_started_at: datetime | None = None,
    warnings: Sequence[dict[str, Any]] = (),
    unreported: Mapping[str, Sequence[dict[str, Any]]] | None = None,
    verifications: Sequence[dict[str, Any]] = (),
    quarantined_files: Sequence[dict[str, Any]] = (),
) -> list[OwnerReport]:
    """One report per owner (owners compared case-insensitively), covering all that owner's sources.

    ``batches``/``reconciliation``: this run's ``ops.batches``/``ops.reconciliation`` rows;
    ``quarantine``: ``ops.quarantine`` rows of these sources that are open or were touched in
    this run; ``history``: per run, source and dataset, ``extracted`` and ``quarantined`` of
    the recent runs (for the chart); ``cursors``: ``ops.cursors`` rows; ``warnings``:
    ``ops.warnings`` rows of this run's batches; ``unreported``: owner -> committed batches of
    earlier runs no report to that owner covered (see ``queries.fetch_unreported_batches``);
    ``verifications``: the latest source-vs-platform verification per source and dataset;
    ``quarantined_files``: open ``ops.quarantined_files`` rows (with ``source_id``).
    """
    batch_by = {(b["source_id"], b["dataset"]): b for b in batches if b.get("run_id", run_id) == run_id}
    recon_by = {(r["source_id"], r["dataset"]): r for r in reconciliation if r.get("run_id", run_id) == run_id}
    cursor_by = {(c["source_id"], c["dataset"]): c for c in cursors}
    q_rows = [QuarantineRow.from_ops(q) for q in quarantine]
    w_rows = [QuarantineRow.from_warning(w) for w in warnings]
    by_id = {s.id: s for s in sources}

    results: dict[str, SourceResult] = {}
    for s in sources:
        # Declared datasets first, then any dataset a batch exists for (a mapping removed since).
        names = list(dict.fromkeys([*s.datasets, *(d for (sid, d) in batch_by if sid == s.id)]))
        datasets = [
            dataset_result(s, d, batch_by.get((s.id, d)), recon_by.get((s.id, d)), cursor_by.get((s.id, d)))
            for d in names
        ]
        mine = [r for r in q_rows if r.source_id == s.id]
        warned = [r for r in w_rows if r.source_id == s.id]
        resolved = sum(1 for r in mine if r.status == "resolved" and r.resolved_run_id == run_id)
        results[s.id] = SourceResult(source=s, datasets=datasets, checks=summarize_checks(mine + warned, run_id),
                                     resolved=resolved,
                                     verifications=[v for v in verifications if v["source_id"] == s.id],
                                     quarantined_files=[f for f in quarantined_files if f["source_id"] == s.id])

    reports = []
    for owner, owned in _owners(sources).items():
        ids = {s.id for s in owned}
        rows = [r for r in q_rows if r.source_id in ids]
        changes = sum(
            1 for r in rows
            # Seen again is not news: a rerun re-reads the cursor boundary and meets the same rows.
            if run_id in (r.first_run_id, r.resolved_run_id)
        )
        reports.append(
            OwnerReport(
                owner=owner,
                run_id=run_id,
                run_started_at=run_started_at,
                sources=[results[s.id] for s in owned],
                open_rows=[r for r in rows if r.status == "open"],
                history=[h for h in history if h["source_id"] in ids],
                quarantine_changes=changes,
                earlier=[
                    dataset_result(by_id[b["source_id"]], b["dataset"], b)
                    for b in (unreported or {}).get(owner, ())
                    if b["source_id"] in ids
                ],
                warning_rows=[r for r in w_rows if r.source_id in ids],
            )
        )
    return reports


VERIFICATION_NEWS_WINDOW = timedelta(hours=24)


def verification_is_news(verification: Mapping[str, Any], run_started_at: datetime | None) -> bool:
    """A verification that found a difference (or could not run) in the day before this run or since."""
    if verification.get("status") in ("ok", "not_loaded"):
        return False
    return _recent(verification.get("finished_at"), run_started_at)


def _recent(when: datetime | None, run_started_at: datetime | None) -> bool:
    return run_started_at is None or when is None or when >= run_started_at - VERIFICATION_NEWS_WINDOW


def should_send(report: OwnerReport) -> tuple[bool, str]:
    """Whether the owner gets an email tonight, and why (in English, for the run summary).

    Nothing new (no record inserted or updated, no failure or block, no quarantine row opened
    or resolved) means no email, unless one of the owner's sources asks for a daily
    confirmation.
    """
    if report.state in ("failed", "block"):
        return True, f"a source is {report.state}"
    if report.changed:
        return True, f"{report.changed} records new or changed"
    if report.earlier_changed or any(d.state == "block" for d in report.earlier):
        return True, f"{report.earlier_changed} records new or changed in earlier batches not reported before"
    if report.quarantine_changes:
        return True, f"{report.quarantine_changes} quarantine rows opened or resolved"
    files = [f for s in report.sources for f in s.quarantined_files if _recent(f.get("last_seen"), report.run_started_at)]
    if files:
        return True, f"{len(files)} files could not be read and were quarantined"
    found = [v for s in report.sources for v in s.verifications if verification_is_news(v, report.run_started_at)]
    if found:
        return True, f"{len(found)} source-vs-platform verifications found differences"
    if any(s.source.daily_confirmation for s in report.sources):
        return True, "daily confirmation requested"
    return False, "nothing new: no record new or changed, no failure, no quarantine change"
