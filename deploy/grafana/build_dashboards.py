"""Build meterwax's Grafana dashboards (deploy/grafana/dashboards/*.json).

The JSON files are generated, not edited by hand: change this file and run
``python deploy/grafana/build_dashboards.py``. tests/deploy checks that the
files match it, that every query uses the ``${datasource}`` variable, and that
every metric they name is one meterwax exports.

The on-call dashboard draws each alerting SLI with its alert threshold; the
expressions and thresholds below are the ones in deploy/prometheus/alerts.yml
(tests/deploy checks that too).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

OUT = Path(__file__).resolve().parent / "dashboards"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
JOB = 'job="meterwax"'
GRID_WIDTH = 24

Panel = dict[str, Any]


def _target(expr: str, legend: str = "", ref: str = "A", instant: bool = False) -> dict[str, Any]:
    return {
        "refId": ref,
        "datasource": DATASOURCE,
        "expr": expr,
        "legendFormat": legend or "__auto",
        "range": not instant,
        "instant": instant,
    }


def _thresholds(threshold: float | None, base: str = "green", above: str = "red") -> dict[str, Any]:
    steps: list[dict[str, Any]] = [{"color": base, "value": None}]
    if threshold is not None:
        steps.append({"color": above, "value": threshold})
    return {"mode": "absolute", "steps": steps}


def timeseries(
    title: str,
    targets: list[tuple[str, str]],
    *,
    unit: str = "short",
    threshold: float | None = None,
    description: str = "",
    width: int = 12,
    stack: bool = False,
    bars: bool = False,
) -> Panel:
    """A time series panel; ``threshold`` is drawn as a red line (an alert threshold)."""
    custom: dict[str, Any] = {
        "drawStyle": "bars" if bars else "line",
        "fillOpacity": 60 if bars else 10,
        "lineWidth": 1,
        "showPoints": "never",
        "spanNulls": False,
        "stacking": {"mode": "normal" if stack else "none", "group": "A"},
        "thresholdsStyle": {"mode": "off" if threshold is None else "line"},
    }
    return {
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": [
            _target(expr, legend, chr(ord("A") + i)) for i, (expr, legend) in enumerate(targets)
        ],
        "fieldConfig": {
            "defaults": {
                "unit": unit,
                "min": 0,
                "color": {"mode": "palette-classic"},
                "thresholds": _thresholds(threshold),
                "custom": custom,
            },
            "overrides": [],
        },
        "options": {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
        "_width": width,
    }


def stat(
    title: str,
    expr: str,
    *,
    unit: str = "short",
    legend: str = "",
    description: str = "",
    thresholds: dict[str, Any] | None = None,
    mappings: list[dict[str, Any]] | None = None,
    decimals: int | None = None,
    width: int = 6,
) -> Panel:
    """A single-value panel (one value per series) with a sparkline."""
    defaults: dict[str, Any] = {
        "unit": unit,
        "color": {"mode": "thresholds"},
        "thresholds": thresholds or _thresholds(None, base="blue"),
        "mappings": mappings or [],
    }
    if decimals is not None:
        defaults["decimals"] = decimals
    return {
        "type": "stat",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": [_target(expr, legend)],
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "value",
            "graphMode": "area",
            "justifyMode": "auto",
            "orientation": "auto",
            "textMode": "auto",
        },
        "_width": width,
    }


def table(title: str, expr: str, *, description: str = "", width: int = 12) -> Panel:
    """A table of the label sets an instant query returns (e.g. firing alerts)."""
    return {
        "type": "table",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": [{**_target(expr, instant=True), "format": "table"}],
        "fieldConfig": {"defaults": {}, "overrides": []},
        "options": {"showHeader": True, "footer": {"show": False}},
        "transformations": [
            {"id": "organize", "options": {"excludeByName": {"Time": True, "Value": True}}}
        ],
        "_width": width,
    }


def row(title: str) -> Panel:
    """A section header spanning the dashboard's width."""
    return {"type": "row", "title": title, "collapsed": False, "panels": [], "_width": GRID_WIDTH}


def _layout(panels: list[Panel]) -> list[Panel]:
    """Give panels ids and grid positions, filling rows of 24 columns left to right."""
    placed: list[Panel] = []
    x = y = row_height = 0
    for panel_id, panel in enumerate(panels, start=1):
        width = panel.pop("_width")
        height = {"row": 1, "stat": 4}.get(panel["type"], 8)
        if x + width > GRID_WIDTH or panel["type"] == "row":
            x, y, row_height = 0, y + row_height, 0
        grid = {"h": height, "w": width, "x": x, "y": y}
        placed.append({"id": panel_id, "gridPos": grid, **panel})
        x += width
        row_height = max(row_height, height)
        if panel["type"] == "row":
            x, y, row_height = 0, y + height, 0
    return placed


def dashboard(
    uid: str,
    title: str,
    panels: list[Panel],
    *,
    description: str,
    time_from: str,
    refresh: str,
) -> dict[str, Any]:
    """A complete dashboard with the ``datasource`` variable every panel uses."""
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["meterwax"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "graphTooltip": 1,
        "refresh": refresh,
        "time": {"from": time_from, "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Data source",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                    "hide": 0,
                    "refresh": 1,
                    "regex": "",
                    "options": [],
                    "includeAll": False,
                    "multi": False,
                }
            ]
        },
        "annotations": {"list": []},
        "links": [
            {
                "title": "meterwax dashboards",
                "type": "dashboards",
                "tags": ["meterwax"],
                "asDropdown": True,
                "includeVars": True,
                "keepTime": True,
            }
        ],
        "panels": _layout(panels),
    }


def _rate(metric: str, window: str = "5m", selector: str = "") -> str:
    labels = f"{JOB},{selector}" if selector else JOB
    return f"rate({metric}{{{labels}}}[{window}])"


def _p50_p99(metric: str, by: str) -> list[tuple[str, str]]:
    """p50 and p99 of a histogram, one series per ``by`` label value."""
    return [(_quantile(q, metric, by=by), f"p{round(q * 100)} {{{{{by}}}}}") for q in (0.5, 0.99)]


def _quantile(q: float, metric: str, by: str = "", selector: str = "") -> str:
    group = f"le, {by}" if by else "le"
    buckets = _rate(metric + "_bucket", selector=selector)
    return f"histogram_quantile({q}, sum by ({group}) ({buckets}))"


def _net_amount(window: str) -> str:
    # A currency with no credits has no credit series: count it as zero, not as missing.
    amount = "meterwax_rated_amount_total"
    charge = f'sum by (currency) (increase({amount}{{{JOB},sign="charge"}}[{window}]))'
    credit = f'sum by (currency) (increase({amount}{{{JOB},sign="credit"}}[{window}]))'
    return f"{charge} - ({credit} or {charge} * 0)"


# The alerting SLIs: (title, expression, alert threshold, unit). Each expression
# is the left-hand side of the alert with the same name in alerts.yml.
SLIS: dict[str, tuple[str, str, float, str]] = {
    "IngestSuccessLow": (
        "Rejected share of consumed events",
        f"sum({_rate('meterwax_events_rejected_total', '10m')}) / "
        f"sum({_rate('meterwax_events_consumed_total', '10m')})",
        0.05,
        "percentunit",
    ),
    "DuplicateRateHigh": (
        "Duplicate share of consumed events",
        f"sum({_rate('meterwax_duplicates_total', '10m')}) / "
        f"sum({_rate('meterwax_events_consumed_total', '10m')})",
        0.1,
        "percentunit",
    ),
    "LateEventRateHigh": (
        "Late share of accepted events",
        f"sum({_rate('meterwax_late_events_total', '10m')}) / "
        f"sum({_rate('meterwax_events_accepted_total', '10m')})",
        0.05,
        "percentunit",
    ),
    "TooLateEvents": (
        "too_late rejections in 10 minutes",
        f'sum(increase(meterwax_events_rejected_total{{{JOB},reason="too_late"}}[10m]))',
        0,
        "short",
    ),
    "WatermarkLagHigh": (
        "Watermark lag (worst shard)",
        f"max(meterwax_watermark_lag_seconds{{{JOB}}})",
        900,
        "s",
    ),
    "ConsumerBacklogHigh": (
        "Consumer backlog (all partitions)",
        f"sum(meterwax_consumer_lag_messages{{{JOB}}})",
        1_000_000,
        "short",
    ),
    "EndToEndLatencyHigh": (
        "p99 event → live counter latency",
        _quantile(0.99, "meterwax_event_latency_seconds", selector='stage="live_counter"'),
        0.5,
        "s",
    ),
}


def executive() -> dict[str, Any]:
    """Business view: volume, money, quality, quotas."""
    consumed_1h = f"sum({_rate('meterwax_events_consumed_total', '1h')})"
    panels = [
        stat(
            "Events accepted",
            f"sum({_rate('meterwax_events_accepted_total')})",
            unit="suffix: ev/s",
            description="Events counted into windows per second (5-minute rate).",
        ),
        stat(
            "Ingest success (1h)",
            f"1 - sum({_rate('meterwax_events_rejected_total', '1h')}) / {consumed_1h}",
            unit="percentunit",
            decimals=2,
            description="Share of consumed messages that were not rejected. "
            "Below 95% an alert opens a ticket.",
            thresholds={
                "mode": "absolute",
                "steps": [
                    {"color": "red", "value": None},
                    {"color": "orange", "value": 0.95},
                    {"color": "green", "value": 0.99},
                ],
            },
        ),
        stat(
            "Duplicates (1h)",
            f"sum({_rate('meterwax_duplicates_total', '1h')}) / {consumed_1h}",
            unit="percentunit",
            decimals=2,
            description="Share of consumed messages dropped as duplicates (never billed twice).",
            thresholds=_thresholds(0.1, above="orange"),
        ),
        stat(
            "Quota events (24h)",
            f"sum by (kind) (increase(meterwax_quota_events_total{{{JOB}}}[24h]))",
            legend="{{kind}}",
            decimals=0,
            description="Thresholds, soft limits and hard limits reached by tenants.",
        ),
        timeseries(
            "Events per second",
            [
                (f"sum({_rate('meterwax_events_accepted_total')})", "accepted"),
                (f"sum({_rate('meterwax_duplicates_total')})", "duplicates"),
                (f"sum({_rate('meterwax_events_rejected_total')})", "rejected"),
            ],
            unit="suffix: ev/s",
            stack=True,
            description="Every consumed message is exactly one of these.",
        ),
        timeseries(
            "Rated amount per hour, by currency (charges − credits)",
            [(_net_amount("1h"), "{{currency}}")],
            description="Net amount rated per hour from the flow's counters. Indicative "
            "(floating point, includes later adjustments when they happen): invoices come "
            "from ClickHouse (`meterwax invoice`).",
        ),
        stat(
            "Rated amount (24h), by currency",
            _net_amount("24h"),
            legend="{{currency}}",
            decimals=2,
            width=12,
            description="Net amount rated over the last 24 hours; indicative, see the panel above.",
        ),
        stat(
            "Quota events per kind (7d)",
            f"sum by (kind) (increase(meterwax_quota_events_total{{{JOB}}}[7d]))",
            legend="{{kind}}",
            decimals=0,
            width=12,
        ),
        timeseries(
            "Ingest success",
            [
                (
                    f"1 - sum({_rate('meterwax_events_rejected_total', '10m')}) / "
                    f"sum({_rate('meterwax_events_consumed_total', '10m')})",
                    "ingest success",
                )
            ],
            unit="percentunit",
            width=8,
        ),
        timeseries(
            "Duplicate share",
            [(SLIS["DuplicateRateHigh"][1], "duplicates")],
            unit="percentunit",
            width=8,
        ),
        timeseries(
            "Quota events per hour, by kind",
            [
                (
                    f"sum by (kind) (increase(meterwax_quota_events_total{{{JOB}}}[1h]))",
                    "{{kind}}",
                )
            ],
            bars=True,
            stack=True,
            width=8,
        ),
    ]
    return dashboard(
        "meterwax-executive",
        "meterwax / Executive",
        panels,
        description="Usage volume, rated money, data quality and quota events.",
        time_from="now-7d",
        refresh="5m",
    )


def oncall(alert_names: list[str]) -> dict[str, Any]:
    """What the person on call needs: are we up, are the SLIs inside their alert thresholds."""
    firing = "|".join(alert_names)
    panels: list[Panel] = [
        stat(
            "Processes up",
            f"up{{{JOB}}}",
            legend="{{instance}}",
            width=12,
            thresholds={
                "mode": "absolute",
                "steps": [{"color": "red", "value": None}, {"color": "green", "value": 1}],
            },
            mappings=[
                {
                    "type": "value",
                    "options": {"0": {"text": "DOWN"}, "1": {"text": "UP"}},
                }
            ],
            description="One per `meterwax run` process. In a cluster one process down "
            "stops the whole flow.",
        ),
        table(
            "Firing meterwax alerts",
            "sum by (alertname, severity, sink) "
            f'(ALERTS{{alertstate="firing",alertname=~"{firing}"}})',
        ),
        row("SLIs against their alert thresholds (red line)"),
    ]
    for alert, (title, expr, threshold, unit) in SLIS.items():
        panels.append(
            timeseries(
                title,
                [(expr, alert)],
                unit=unit,
                threshold=threshold,
                width=8,
                description=f"Alert {alert} fires when this stays above the red line.",
            )
        )
    panels += [
        row("Freshness"),
        timeseries(
            "Watermark lag by shard",
            [(f"meterwax_watermark_lag_seconds{{{JOB}}}", "{{instance}} shard {{shard}}")],
            unit="s",
            threshold=900,
            description="Wall clock minus the event-time watermark, per shard. Normal: "
            "seconds (producer delay and batching), about window.idle_timeout when the input "
            "is quiet. Windows close when it passes their end + grace.",
        ),
        timeseries(
            "Consumer lag by partition",
            [
                (
                    f"sum by (topic, partition) (meterwax_consumer_lag_messages{{{JOB}}})",
                    "{{topic}}/{{partition}}",
                )
            ],
            description="Messages waiting in Kafka per input partition. One partition far "
            "behind the others holds the watermark back.",
        ),
        timeseries(
            "Event → effect latency",
            _p50_p99("meterwax_event_latency_seconds", "stage"),
            unit="s",
            description="From arrival in the input to the live counter in Redis, and to the "
            "event's row in the ClickHouse event log (sampled).",
        ),
        timeseries(
            "Consumer backlog growth",
            [(f"sum(deriv(meterwax_consumer_lag_messages{{{JOB}}}[15m]))", "messages/s")],
            threshold=0,
            description="Alert ConsumerBacklogGrowing fires when this stays above 0 for "
            "30 minutes with more than 10,000 messages waiting.",
        ),
        row("Sinks"),
        timeseries(
            "Sink failures",
            [
                (
                    f"sum by (sink) ({_rate('meterwax_sink_failures_total')})",
                    "{{sink}}",
                )
            ],
            unit="suffix: /s",
            description="Failed write attempts (each retry counts).",
        ),
        timeseries(
            "Time since last successful flush",
            [
                (
                    f"time() - max by (sink) (meterwax_last_sink_flush_timestamp_seconds{{{JOB}}})",
                    "{{sink}}",
                )
            ],
            unit="s",
            threshold=300,
            description="SinkStalled pages when clickhouse_windows, clickhouse_events or "
            "live_usage stay above 5 minutes while events are accepted or wait in Kafka. "
            "Dead letters, rejections and quota events are idle whenever there is nothing "
            "to write.",
        ),
    ]
    return dashboard(
        "meterwax-oncall",
        "meterwax / On-call",
        panels,
        description="Availability, SLIs against their alert thresholds, freshness and sinks.",
        time_from="now-6h",
        refresh="30s",
    )


def debug() -> dict[str, Any]:
    """Where the time goes and what the flow is doing, per process."""
    panels = [
        row("Hot path"),
        timeseries(
            "Metering step time per input batch",
            [
                (_quantile(0.5, "meterwax_meter_batch_seconds"), "p50"),
                (_quantile(0.9, "meterwax_meter_batch_seconds"), "p90"),
                (_quantile(0.99, "meterwax_meter_batch_seconds"), "p99"),
                (
                    f"sum({_rate('meterwax_meter_batch_seconds_sum')}) / "
                    f"sum({_rate('meterwax_meter_batch_seconds_count')})",
                    "mean",
                ),
            ],
            unit="s",
            description="Dedup, windows and rating for one batch (Redis calls included).",
        ),
        timeseries(
            "Events consumed by process",
            [
                (
                    f"sum by (instance) ({_rate('meterwax_events_consumed_total')})",
                    "{{instance}}",
                )
            ],
            unit="suffix: ev/s",
            description="How evenly the input partitions spread over the processes.",
        ),
        timeseries(
            "Redis latency by operation",
            _p50_p99("meterwax_redis_seconds", "operation"),
            unit="s",
        ),
        timeseries(
            "Redis round trips by operation",
            [
                (
                    f"sum by (operation) ({_rate('meterwax_redis_seconds_count')})",
                    "{{operation}}",
                )
            ],
            unit="suffix: /s",
        ),
        row("Sinks"),
        timeseries(
            "Sink batch write time by sink",
            [
                (_quantile(0.99, "meterwax_sink_batch_seconds", by="sink"), "p99 {{sink}}"),
                (
                    f"sum by (sink) ({_rate('meterwax_sink_batch_seconds_sum')}) / "
                    f"sum by (sink) ({_rate('meterwax_sink_batch_seconds_count')})",
                    "mean {{sink}}",
                ),
            ],
            unit="s",
            description="Retries included.",
        ),
        timeseries(
            "Sink rows by sink",
            [(f"sum by (sink) ({_rate('meterwax_sink_rows_total')})", "{{sink}}")],
            unit="suffix: rows/s",
        ),
        row("What the flow decides"),
        timeseries(
            "Rejections by reason",
            [
                (
                    f"sum by (reason) ({_rate('meterwax_events_rejected_total')})",
                    "{{reason}}",
                )
            ],
            unit="suffix: ev/s",
            stack=True,
            width=8,
        ),
        timeseries(
            "Duplicates by layer",
            [(f"sum by (layer) ({_rate('meterwax_duplicates_total')})", "{{layer}}")],
            unit="suffix: ev/s",
            stack=True,
            width=8,
            description="state: the flow's keyed state; redis: the idempotency sets.",
        ),
        timeseries(
            "Windows emitted by kind",
            [(f"sum by (kind) ({_rate('meterwax_windows_emitted_total')})", "{{kind}}")],
            unit="suffix: /s",
            stack=True,
            width=8,
            description="on_time: first emission when a window closes; adjustment: a new "
            "revision of a closed window (late events).",
        ),
        row("Process"),
        timeseries(
            "Resident memory by process",
            [(f"process_resident_memory_bytes{{{JOB}}}", "{{instance}}")],
            unit="bytes",
            width=8,
        ),
        timeseries(
            "CPU by process",
            [(f"rate(process_cpu_seconds_total{{{JOB}}}[5m])", "{{instance}}")],
            unit="suffix: cores",
            width=8,
        ),
        table(
            "Version by process",
            f"meterwax_build_info{{{JOB}}}",
            width=8,
        ),
    ]
    return dashboard(
        "meterwax-debug",
        "meterwax / Debug",
        panels,
        description="Batch and round-trip times, sinks, decisions by reason and layer, "
        "process resources.",
        time_from="now-3h",
        refresh="30s",
    )


def alert_names(rules_file: Path) -> list[str]:
    """Alert names in ``rules_file``, in file order."""
    groups = yaml.safe_load(rules_file.read_text(encoding="utf-8"))["groups"]
    return [rule["alert"] for group in groups for rule in group["rules"] if "alert" in rule]


def build() -> dict[str, str]:
    """Every dashboard file name and its JSON text."""
    rules = Path(__file__).resolve().parent.parent / "prometheus" / "alerts.yml"
    boards = {
        "meterwax-executive.json": executive(),
        "meterwax-oncall.json": oncall(alert_names(rules)),
        "meterwax-debug.json": debug(),
    }
    return {
        name: json.dumps(board, indent=2, ensure_ascii=False) + "\n"
        for name, board in boards.items()
    }


def main() -> int:
    """Write the dashboards next to this file."""
    OUT.mkdir(exist_ok=True)
    for name, text in build().items():
        (OUT / name).write_text(text, encoding="utf-8")
        print(f"wrote {OUT / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
