"""``chart.png`` of a benchmark report: events/s bars and, when measured, latency bars."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on a server

import matplotlib.pyplot as plt


def render_png(
    path: Path,
    throughput: list[tuple[str, float]],
    latency_ms: dict[str, dict[str, float | None]] | None = None,
) -> None:
    """Write the chart: events/s per measure, and p50/p99 latency per stage if given."""
    stages = {s: q for s, q in (latency_ms or {}).items() if q.get("p50") is not None}
    columns = 2 if stages else 1
    figure, axes = plt.subplots(1, columns, figsize=(6.5 * columns, 3.2), squeeze=False)
    left = axes[0][0]
    labels = [label for label, _ in throughput]
    values = [value for _, value in throughput]
    bars = left.barh(labels, values, color="#4a7fb5")
    left.bar_label(bars, labels=[f"{v:,.0f}" for v in values], padding=3)
    left.invert_yaxis()
    left.set_xlabel("events/s")
    left.set_title("throughput")
    left.set_xlim(0, max(values, default=1.0) * 1.3 or 1.0)
    if stages:
        right = axes[0][1]
        names = list(stages)
        positions = range(len(names))
        for offset, (quantile, colour) in enumerate((("p50", "#7fb54a"), ("p99", "#b54a4a"))):
            heights = [stages[s][quantile] or 0.0 for s in names]
            ys = [p + offset * 0.4 for p in positions]
            drawn = right.barh(ys, heights, height=0.4, color=colour, label=quantile)
            right.bar_label(drawn, labels=[f"{h:,.0f} ms" for h in heights], padding=3)
        right.set_yticks([p + 0.2 for p in positions], names)
        right.invert_yaxis()
        right.set_xlabel("ms from arrival")
        right.set_title("end-to-end latency")
        right.legend(loc="lower right")
        top = max((stages[s]["p99"] or 0.0) for s in names)
        right.set_xlim(0, top * 1.35 or 1.0)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
