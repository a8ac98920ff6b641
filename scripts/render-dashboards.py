#!/usr/bin/env python3
"""Draws each Grafana dashboard of grafana/dashboards as an SVG picture from
a real Prometheus (the pictures of docs/observability.md), without Grafana:
every panel at its grid position, time series as lines over the last
--minutes, stat panels as their last value, each panel's thresholds as a
dashed red line. Standard library only.

  scripts/render-dashboards.py --prometheus http://127.0.0.1:9090 \\
      [--minutes 10] [--out docs/observability] grafana/dashboards/*.json
"""

import argparse
import html
import json
import math
import os
import re
import sys
import time
import urllib.parse
import urllib.request

COLUMN, ROW, WIDTH = 52, 30, 24 * 52
COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
           "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]


def query_range(prometheus, expr, start, end, step):
    params = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": step})
    with urllib.request.urlopen(f"{prometheus}/api/v1/query_range?{params}", timeout=30) as response:
        body = json.load(response)
    if body.get("status") != "success":
        raise RuntimeError(f"{expr}: {body}")
    return body["data"]["result"]


def substitute(expr):
    expr = expr.replace("$__rate_interval", "1m").replace("$__interval", "15s")
    expr = re.sub(r'instance\s*=~\s*"\$instance"', 'instance=~".*"', expr)
    return expr.replace("$instance", ".*")


def legend(template, labels):
    if not template or template == "__auto":
        return ",".join(f"{k}={v}" for k, v in labels.items() if k != "__name__") or "value"
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), template)


def thresholds(panel):
    steps = (panel.get("fieldConfig", {}).get("defaults", {}).get("thresholds", {}) or {}).get("steps", [])
    return [step["value"] for step in steps if step.get("value") is not None and step.get("color") in ("red", "dark-red", "#d62728")]


def fmt(value):
    if value is None or math.isnan(value):
        return "–"
    magnitude = abs(value)
    if magnitude >= 1e9:
        return f"{value / 1e9:.1f}G"
    if magnitude >= 1e6:
        return f"{value / 1e6:.1f}M"
    if magnitude >= 1e3:
        return f"{value / 1e3:.1f}k"
    if magnitude >= 10 or magnitude == 0:
        return f"{value:.0f}"
    if magnitude >= 0.01:
        return f"{value:.2f}"
    return f"{value:.4f}"


def panels_of(dashboard):
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def render(dashboard, prometheus, minutes):
    end = time.time()
    start = end - minutes * 60
    step = max(1, int(minutes * 60 / 120))
    boxes, bottom = [], 0
    for panel in panels_of(dashboard):
        grid = panel.get("gridPos", {})
        x, y, w, h = (grid.get(key, 0) for key in ("x", "y", "w", "h"))
        bottom = max(bottom, (y + h) * ROW)
        left, top, width, height = x * COLUMN + 4, y * ROW + 4, w * COLUMN - 8, h * ROW - 8
        title = html.escape(panel.get("title", ""))
        if panel.get("type") == "row":
            boxes.append(f'<text x="{left}" y="{top + 18}" font-size="15" font-weight="bold">{title}</text>')
            continue
        boxes.append(f'<rect x="{left}" y="{top}" width="{width}" height="{height}" fill="#fbfbfb" stroke="#ccc"/>')
        boxes.append(f'<text x="{left + 6}" y="{top + 15}" font-size="12" font-weight="bold">{title}</text>')
        series = []
        for target in panel.get("targets", []):
            if not target.get("expr"):
                continue
            for result in query_range(prometheus, substitute(target["expr"]), start, end, step):
                points = [(float(t), float(v)) for t, v in result["values"] if v not in ("NaN", "+Inf", "-Inf")]
                series.append((legend(target.get("legendFormat"), result["metric"]), points))
        if panel.get("type") in ("stat", "gauge"):
            last = [points[-1][1] for _, points in series if points]
            value = sum(last) if last else None
            red = thresholds(panel)
            colour = "#d62728" if value is not None and red and value >= min(red) else "#2ca02c"
            boxes.append(f'<text x="{left + width / 2}" y="{top + height / 2 + 14}" font-size="28" '
                         f'text-anchor="middle" fill="{colour}">{fmt(value)}</text>')
            continue
        plot_left, plot_top = left + 44, top + 24
        plot_width, plot_height = width - 52, height - 44 - 12 * min(3, max(1, (len(series) + 3) // 4))
        values = [v for _, points in series for _, v in points] + thresholds(panel)
        low, high = (min(values + [0]), max(values + [0])) if values else (0, 1)
        if high == low:
            high = low + 1
        sx = lambda t: plot_left + (t - start) / (end - start) * plot_width
        sy = lambda v: plot_top + plot_height - (v - low) / (high - low) * plot_height
        boxes.append(f'<line x1="{plot_left}" y1="{plot_top + plot_height}" x2="{plot_left + plot_width}" '
                     f'y2="{plot_top + plot_height}" stroke="#999"/>')
        for value in (low, (low + high) / 2, high):
            boxes.append(f'<text x="{plot_left - 4}" y="{sy(value) + 4}" font-size="9" text-anchor="end">{fmt(value)}</text>')
        for red in thresholds(panel):
            boxes.append(f'<line x1="{plot_left}" y1="{sy(red)}" x2="{plot_left + plot_width}" y2="{sy(red)}" '
                         'stroke="#d62728" stroke-dasharray="4 3"/>')
        if not series:
            boxes.append(f'<text x="{plot_left + plot_width / 2}" y="{plot_top + plot_height / 2}" font-size="11" '
                         'text-anchor="middle" fill="#999">no data</text>')
        for index, (name, points) in enumerate(series[:10]):
            colour = COLOURS[index % len(COLOURS)]
            if points:
                path = " ".join(f"{sx(t):.1f},{sy(v):.1f}" for t, v in points)
                boxes.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="1.5"/>')
            lx = left + 6 + (index % 4) * (width - 12) / 4
            ly = top + height - 8 - 12 * (min(3, max(1, (len(series) + 3) // 4)) - 1 - index // 4)
            boxes.append(f'<text x="{lx}" y="{ly}" font-size="9" fill="{colour}">■ {html.escape(name[:28])}</text>')
    title = html.escape(dashboard.get("title", ""))
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(end))
    head = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{bottom + 40}" '
            f'font-family="sans-serif"><rect width="100%" height="100%" fill="white"/>'
            f'<text x="4" y="22" font-size="18" font-weight="bold">{title}</text>'
            f'<text x="{WIDTH - 4}" y="22" font-size="11" text-anchor="end">last {minutes} min, {stamp}</text>'
            f'<g transform="translate(0,32)">')
    return head + "".join(boxes) + "</g></svg>\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prometheus", required=True)
    parser.add_argument("--minutes", type=int, default=10)
    parser.add_argument("--out", default="docs/observability")
    parser.add_argument("dashboards", nargs="+")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    for path in args.dashboards:
        with open(path, encoding="utf-8") as file:
            dashboard = json.load(file)
        name = os.path.splitext(os.path.basename(path))[0]
        target = os.path.join(args.out, f"{name}.svg")
        with open(target, "w", encoding="utf-8") as file:
            file.write(render(dashboard, args.prometheus.rstrip("/"), args.minutes))
        print(f"render-dashboards: {target}")


if __name__ == "__main__":
    sys.exit(main())
