"""The pass-rate chart of an owner's report: one line per source and dataset, last 30 runs."""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sapnhap.datasets import DATASETS

LOCAL_TZ = ZoneInfo("Asia/Ho_Chi_Minh")
COMPLETED = ("loaded", "blocked")


def pass_rates(history: Sequence[dict[str, Any]]) -> dict[tuple[str, str], list[tuple[str, float]]]:
    """Per (source, dataset): (run_id, pass rate) for runs that completed with rows extracted.

    Pass rate = (extracted - quarantined) / extracted. Runs that extracted nothing or did not
    complete have no rate (a failed run has no quarantine, so it would look perfect).
    """
    out: dict[tuple[str, str], list[tuple[str, float]]] = {}
    for h in history:
        extracted = int(h.get("extracted") or 0)
        if extracted <= 0 or h.get("status") not in COMPLETED:
            continue
        rate = (extracted - int(h.get("quarantined") or 0)) / extracted
        out.setdefault((h["source_id"], h["dataset"]), []).append((h["run_id"], rate))
    return out


def _run_axis(history: Sequence[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """Run ids in order and their labels (local date of their first batch)."""
    started: dict[str, datetime | None] = {}
    for h in history:
        at = h.get("started")
        prev = started.get(h["run_id"])
        if h["run_id"] not in started or (at is not None and (prev is None or at < prev)):
            started[h["run_id"]] = at
    runs = sorted(started, key=lambda r: (started[r] is None, started[r] or datetime.min, r))
    labels = []
    for r in runs:
        at = started[r]
        if at is None:
            labels.append(r[-8:])
        else:
            labels.append((at.astimezone(LOCAL_TZ) if at.tzinfo else at).strftime("%d/%m"))
    return runs, labels


def pass_rate_chart(history: Sequence[dict[str, Any]], thresholds: dict[str, float] | None = None) -> bytes:
    """A PNG of the pass rate (%) per source/dataset over the runs in ``history``.

    ``thresholds``: source id -> block ratio; drawn as a dashed line at 1 - ratio. Renders a
    "no data" chart rather than failing when there is nothing to plot.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.0, 3.0), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    runs, labels = _run_axis(history)
    position = {r: i for i, r in enumerate(runs)}
    series = pass_rates(history)
    for (source_id, dataset), points in sorted(series.items()):
        xs = [position[r] for r, _ in points]
        ys = [100 * v for _, v in points]
        title = DATASETS[dataset].title_vi if dataset in DATASETS else dataset
        ax.plot(xs, ys, marker="o", markersize=3, linewidth=1.5, label=f"{source_id} – {title}")
    for source_id, ratio in sorted((thresholds or {}).items()):
        if any(s == source_id for s, _ in series):
            ax.axhline(100 * (1 - ratio), color="#b00020", linestyle="--", linewidth=0.8)
    if not series:
        ax.text(0.5, 0.5, "Chưa có dữ liệu trong 30 lần chạy gần nhất", ha="center", va="center",
                transform=ax.transAxes, fontsize=10, color="#555555")
    ax.set_ylim(0, 105)
    ax.set_ylabel("Tỷ lệ bản ghi đạt (%)", fontsize=8)
    ax.set_title("Tỷ lệ bản ghi đạt kiểm tra – 30 lần đồng bộ gần nhất", fontsize=10)
    if runs:
        step = max(1, len(runs) // 10)
        ax.set_xticks(range(0, len(runs), step), labels[::step], fontsize=7)
    ax.tick_params(axis="y", labelsize=7)
    ax.grid(True, linewidth=0.3)
    if series:
        ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
