"""The emails themselves: owner reports of a run, and the assessment of a source (R13).

Pure: these functions build :class:`email.message.EmailMessage` objects and send nothing.
Layout of an owner report::

    multipart/mixed
      multipart/alternative
        text/plain                 (the same report, without the chart)
        multipart/related
          text/html                (references the chart as cid:...)
          image/png                (pass rate of the last 30 runs)
      application/...sheet         (open quarantine rows; only when there are any)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from email import policy as email_policy
from email.message import EmailMessage
from email.utils import formatdate
from functools import lru_cache
from pathlib import Path
from typing import Any
from uuid import uuid4

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from sapnhap.datasets import DATASETS
from sapnhap.reports.attachment import XLSX_TYPE, quarantine_workbook
from sapnhap.reports.chart import LOCAL_TZ, pass_rate_chart
from sapnhap.reports.model import STATE_LABEL_VI, OwnerReport, scrub_text
from sapnhap.sources import Source

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"
SUBJECT_PREFIX = "[Nền tảng dữ liệu tỉnh]"
COUNT_KEYS = ("extracted", "inserted", "updated", "unchanged", "quarantined", "warned", "merged", "blocked")
COUNT_LABELS = ("Trích xuất", "Nạp mới", "Cập nhật", "Không đổi", "Cách ly", "Cảnh báo", "Trùng lặp đã gộp", "Bị chặn")
STATE_COLORS = {"ok": "#1b5e20", "warn": "#a15c00", "block": "#b00020", "failed": "#b00020"}


# How messages go on the wire. The default policy's header folding (CPython 3.11) puts the
# spaces of a long Vietnamese subject between encoded-words, where readers drop them
# ("1nguồn"); compat32 folding keeps them inside the encoded-words.
WIRE_POLICY = email_policy.compat32.clone(linesep="\r\n")


def wire_bytes(msg: EmailMessage) -> bytes:
    """The message as sent over SMTP (use this rather than ``bytes(msg)``)."""
    return msg.as_bytes(policy=WIRE_POLICY)


_DIGITS_TO_LETTERS = str.maketrans("0123456789", "ghijklmnop")


def message_id() -> str:
    """A unique message/content id of letters only: no digit run that could look like a citizen ID."""
    # Hex digits map to letters: a random hex id has 12 decimal digits in a row in ~7% of ids,
    # which a reader (and the PII check) would take for a citizen ID.
    return f"<{uuid4().hex.translate(_DIGITS_TO_LETTERS)}@sapnhap.report>"


def new_message(subject: str, from_addr: str, to: str, *, run_id: str | None = None) -> EmailMessage:
    """The headers every sapnhap email carries: subject, sender, recipients, date, a safe Message-ID."""
    msg = EmailMessage()
    msg["Subject"] = subject
    msg["From"] = from_addr
    msg["To"] = to
    msg["Date"] = formatdate(localtime=True)
    msg["Message-ID"] = message_id()
    if run_id is not None:
        msg["X-Sapnhap-Run-Id"] = run_id
    return msg


def fmt_int(value: object) -> str:
    """Vietnamese thousands separator: 12345 -> '12.345'."""
    return f"{int(value or 0):,}".replace(",", ".")


def fmt_pct(value: object) -> str:
    """Vietnamese percentage: 0.625 -> '62,5%', 0.5 -> '50%', None -> '—'."""
    if value is None:
        return "—"
    text = f"{100 * float(value):.1f}".rstrip("0").rstrip(".")
    return text.replace(".", ",") + "%"


@lru_cache(maxsize=1)
def templatetemplate_env() -> Environment:
    """The Jinja environment of every document sapnhap writes (emails, handover records)."""
    env = Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=select_autoescape(enabled_extensions=("html", "html.j2"), default_for_string=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["n"] = fmt_int
    env.filters["pct"] = fmt_pct
    return env


def render_template(name: str, **context: Any) -> str:
    """Render one template of ``include/sapnhap/templates``."""
    return templatetemplate_env().get_template(name).render(**context)


def run_label(started_at: datetime | None, run_id: str) -> str:
    """'ngày 02/07/2025' in local time, or the run id when the start is unknown."""
    if started_at is None:
        return f"lần chạy {run_id}"
    local = started_at.astimezone(LOCAL_TZ) if started_at.tzinfo else started_at
    return f"ngày {local:%d/%m/%Y}"


def owner_subject(report: OwnerReport) -> str:
    """Subject line: what needs the owner's attention first."""
    parts = []
    for state, label in (("failed", "không đồng bộ được"), ("block", "bị chặn, không nạp"), ("warn", "có cảnh báo")):
        n = report.count_in_state(state)
        if n:
            parts.append(f"{n} nguồn {label}")
    status = ", ".join(parts) if parts else "tất cả đạt"
    return f"{SUBJECT_PREFIX} Kết quả đồng bộ dữ liệu {run_label(report.run_started_at, report.run_id)}: {status}"


def attachment_name(report: OwnerReport) -> str:
    """A file name with no spaces or diacritics, unique per run."""
    run = re.sub(r"[^A-Za-z0-9_.-]+", "_", report.run_id).strip("_")[:60]
    return f"ban_ghi_cach_ly_{run}.xlsx"


def build_owner_email(
    report: OwnerReport,
    *,
    from_addr: str,
    chart_png: bytes | None = None,
) -> EmailMessage:
    """The report email of one owner for one run (HTML + plain text, inline chart, XLSX of open quarantine).

    ``chart_png`` defaults to :func:`pass_rate_chart` of the report's history.
    """
    if chart_png is None:
        chart_png = pass_rate_chart(report.history, {s.source.id: s.block_ratio for s in report.sources})
    subject = owner_subject(report)
    chart_cid = message_id()
    name = attachment_name(report) if report.open_rows or report.warning_rows else None
    open_by_source = {s.source.id: 0 for s in report.sources}
    for row in report.open_rows:
        open_by_source[row.source_id] = open_by_source.get(row.source_id, 0) + 1
    context = {
        "r": report,
        "subject": subject,
        "run_label": run_label(report.run_started_at, report.run_id),
        "chart_cid": chart_cid[1:-1],
        "attachment_name": name,
        "open_by_source": open_by_source,
        "count_keys": COUNT_KEYS,
        "count_labels": COUNT_LABELS,
        "state_labels": STATE_LABEL_VI,
        "colors": STATE_COLORS,
        "titles": {k: d.title_vi for k, d in DATASETS.items()} | _unknown_titles(report),
    }
    msg = new_message(subject, from_addr, report.owner, run_id=report.run_id)
    msg.set_content(render_template("owner_report.txt.j2", **context), cte="quoted-printable")
    msg.add_alternative(render_template("owner_report.html.j2", **context), subtype="html", cte="quoted-printable")
    msg.get_payload()[1].add_related(chart_png, "image", "png", cid=chart_cid, filename="ty_le_dat.png")
    if name:
        msg.add_attachment(quarantine_workbook(report.open_rows, report.warning_rows), maintype=XLSX_TYPE[0],
                           subtype=XLSX_TYPE[1], filename=name)
    return msg


def _unknown_titles(report: OwnerReport) -> dict[str, str]:
    return {c.dataset: c.dataset for s in report.sources for c in s.checks if c.dataset not in DATASETS}


# ---------------------------------------------------------------------------------------------
# Assessment (profiling) email, R13

MAX_ITEMS = 10
_PROFILE_KEYS = ("dataset", "row_count", "columns", "null_rates", "distinct_counts", "duplicate_keys",
                 "code_coverage", "text_anomalies")


def _mapping(value: object) -> dict[str, Any]:
    if value is None:
        return {}
    if hasattr(value, "to_dict") and not isinstance(value, Mapping):
        value = value.to_dict()
    if isinstance(value, Mapping):
        return {str(k): v for k, v in value.items()}
    return {}


def _pii_names(source: Source) -> set[str]:
    """Canonical and legacy column names of this source that hold personal data."""
    names = {c for ds in DATASETS.values() for c in ds.pii_columns}
    for dataset, mapping in source.datasets.items():
        pii = set(DATASETS[dataset].pii_columns)
        names |= {legacy for canonical, legacy in mapping.columns.items() if canonical in pii}
    return names


def _safe(value: object, path: tuple[str, ...], pii: set[str]) -> str:
    """A leaf value as text; masked as a name or citizen ID if any part of its path is a personal column."""
    text = str(value)
    if isinstance(value, str) and any(p in pii for p in path):
        from sapnhap.quality.masking import mask_citizen_id, mask_name

        text = (mask_citizen_id if text.strip().isdigit() else mask_name)([text])[0] or ""
    return scrub_text(text) or ""


def _flatten(value: object, pii: set[str], path: tuple[str, ...] = (), depth: int = 0) -> list[tuple[str, str]]:
    """(path, text) lines of a nested profile value, bounded in depth and items, masked."""
    if hasattr(value, "to_dict") and not isinstance(value, Mapping):
        value = value.to_dict()
    label = " › ".join(path)
    if isinstance(value, Mapping) and depth < 3:
        items = list(value.items())
        lines = [ln for k, v in items[:MAX_ITEMS] for ln in _flatten(v, pii, (*path, str(k)), depth + 1)]
        if len(items) > MAX_ITEMS:
            lines.append((label, f"… và {len(items) - MAX_ITEMS} mục khác"))
        return lines
    if isinstance(value, list | tuple | set) and not isinstance(value, str):
        items = list(value)
        shown = ", ".join(_safe(v, path, pii) for v in items[:MAX_ITEMS])
        more = f" … (tổng {len(items)})" if len(items) > MAX_ITEMS else ""
        return [(label, shown + more)]
    if isinstance(value, float):
        return [(label, f"{value:.4g}".replace(".", ","))]
    return [(label, _safe(value, path, pii))]


def _duplicates(value: object, pii: set[str]) -> tuple[int | None, list[str]]:
    """(count, a few masked example keys) from whatever shape ``duplicate_keys`` has."""
    if value is None:
        return None, []
    if isinstance(value, bool):
        return int(value), []
    if isinstance(value, int | float):
        return int(value), []
    if hasattr(value, "to_dict") and hasattr(value, "columns"):  # a DataFrame of duplicate keys
        rows = value.head(5).astype(str).agg(" | ".join, axis=1).tolist()
        return len(value), [_safe(r, ("key",), pii) for r in rows]
    if isinstance(value, Mapping):
        count = value.get("count", value.get("n"))
        examples = value.get("examples", value.get("keys", value.get("sample", [])))
        examples = list(examples)[:5] if isinstance(examples, list | tuple | set) else []
        return (int(count) if count is not None else len(examples)), [_safe(e, ("key",), pii) for e in examples]
    if isinstance(value, list | tuple | set):
        items = list(value)
        return len(items), [_safe(e, ("key",), pii) for e in items[:5]]
    return None, [_safe(value, ("key",), pii)]


def _coverage(value: object) -> list[dict[str, str]]:
    rows = []
    for column, v in _mapping(value).items():
        if isinstance(v, int | float):
            rows.append({"column": column, "coverage": fmt_pct(v), "details": ""})
            continue
        d = _mapping(v)
        ratio = next((d[k] for k in ("coverage", "ratio", "share", "covered") if isinstance(d.get(k), int | float)), None)
        details = "; ".join(f"{p}: {t}" for p, t in _flatten({k: x for k, x in d.items() if k != "coverage"}, set()))
        rows.append({"column": column, "coverage": fmt_pct(ratio), "details": details})
    return rows


def _columns(profile: Mapping[str, Any], pii: set[str]) -> list[dict[str, str]]:
    raw = profile.get("columns")
    info: dict[str, Any] = {}
    if isinstance(raw, Mapping) or hasattr(raw, "to_dict"):
        info = _mapping(raw)
    elif isinstance(raw, list | tuple):
        for c in raw:
            if isinstance(c, Mapping) and "name" in c:
                info[str(c["name"])] = {k: v for k, v in c.items() if k != "name"}
            else:
                info[str(c)] = None
    nulls = _mapping(profile.get("null_rates"))
    distinct = _mapping(profile.get("distinct_counts"))
    names = list(dict.fromkeys([*info, *nulls, *distinct]))
    rows = []
    for name in names:
        detail = info.get(name)
        rows.append({
            "name": name,
            "pii": "có" if name in pii else "",
            "type": "; ".join(t for _, t in _flatten(detail, pii)) if isinstance(detail, Mapping) else (str(detail) if detail else ""),
            "null_rate": fmt_pct(nulls[name]) if isinstance(nulls.get(name), int | float) else "—",
            "distinct": fmt_int(distinct[name]) if isinstance(distinct.get(name), int | float) else "—",
        })
    return rows


def _encodings(value: object) -> list[str]:
    """Every value found under a key mentioning 'encoding' (the encodings detected)."""
    found: list[str] = []

    def walk(v: object, key: str = "") -> None:
        if hasattr(v, "to_dict") and not isinstance(v, Mapping):
            v = v.to_dict()
        if isinstance(v, Mapping):
            for k, x in v.items():
                if "encoding" in str(k).lower() and isinstance(x, Mapping):
                    found.extend(f"{a} ({b})" for a, b in x.items())
                walk(x, str(k))
        elif isinstance(v, list | tuple | set):
            for x in v:
                walk(x, key)
        elif "encoding" in key.lower() and v is not None:
            found.append(str(v))

    walk(value)
    return list(dict.fromkeys(scrub_text(f) or "" for f in found))


def _assessment_part(name: str | None, profile: Mapping[str, Any], pii: set[str]) -> dict[str, Any]:
    dup_count, dup_examples = _duplicates(profile.get("duplicate_keys"), pii)
    anomalies = profile.get("text_anomalies")
    extra = {k: v for k, v in profile.items() if k not in _PROFILE_KEYS}
    row_count = profile.get("row_count")
    return {
        "dataset": name,
        "title": DATASETS[name].title_vi if name in DATASETS else (name or "Dữ liệu"),
        "row_count": fmt_int(row_count) if isinstance(row_count, int | float) else "—",
        "columns": _columns(profile, pii),
        "duplicates": dup_count,
        "duplicate_examples": dup_examples,
        "coverage": _coverage(profile.get("code_coverage")),
        "encodings": _encodings(anomalies) + _encodings(extra),
        "anomalies": _flatten(anomalies, pii) if anomalies else [],
        "extra": _flatten(extra, pii) if extra else [],
    }


def _profiles(profile: Mapping[str, Any]) -> list[tuple[str | None, Mapping[str, Any]]]:
    """One profile (with ``row_count``/``columns``) or a mapping dataset -> profile."""
    if any(k in profile for k in ("row_count", "columns", "null_rates")):
        return [(profile.get("dataset"), profile)]
    return [(str(k), v) for k, v in profile.items() if isinstance(v, Mapping)]


def render_assessment_email(profile: Mapping[str, Any], source: Source, *, from_addr: str = "sapnhap@platform.example",
                            to: list[str] | None = None) -> EmailMessage:
    """The assessment (profiling) report of a legacy source for its owners, in Vietnamese.

    ``profile`` is what :func:`sapnhap.quality.profile_frame` returns (keys ``row_count``,
    ``columns``, ``null_rates``, ``distinct_counts``, ``duplicate_keys``, ``code_coverage``,
    ``text_anomalies``), or a mapping dataset -> such a profile. Missing keys are shown as
    "—"; unknown keys are listed as they are. Values of personal columns are masked.
    """
    pii = _pii_names(source)
    parts = [_assessment_part(name, p, pii) for name, p in _profiles(profile)]
    subject = f"{SUBJECT_PREFIX} Đánh giá hiện trạng dữ liệu: {source.name}"
    context = {"source": source, "parts": parts, "subject": subject}
    msg = new_message(subject, from_addr, ", ".join(to if to is not None else source.owners))
    msg.set_content(render_template("assessment.txt.j2", **context), cte="quoted-printable")
    msg.add_alternative(render_template("assessment.html.j2", **context), subtype="html", cte="quoted-printable")
    return msg
