#!/usr/bin/env python3
"""Write the demo's closing report as one HTML page: the report's text and
two plots over the run, the append rate and each projection's lag, with the
demo's milestones (rebuilds, promotions) marked.

    report_html.py DATA.json REPORT.txt OUT.html

DATA.json is demo.report_json(); REPORT.txt the closing report as printed.
The page is self-contained (inline SVG, no network) so it opens anywhere; a
small script checks on load that every plot was drawn and says so in the
page's data-plots attribute (scripts/check_demo_report.sh reads it).
"""
import html
import json
import sys

WIDTH, HEIGHT, LEFT, RIGHT, TOP, BOTTOM = 760, 260, 64, 16, 16, 36
COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
           "#e377c2", "#17becf"]


def scale(lo, hi, out_lo, out_hi):
    span = (hi - lo) or 1.0
    return lambda v: out_lo + (v - lo) * (out_hi - out_lo) / span


def nice_max(v):
    """The smallest of 1, 2, 5 times a power of ten at or above v."""
    if v <= 0:
        return 1.0
    p = 1.0
    while p * 10 <= v:
        p *= 10
    for m in (1, 2, 5, 10):
        if m * p >= v:
            return m * p
    return 10 * p


def plot(title, unit, series, milestones, t_max):
    """An SVG line plot of series {name: [(t, value)]} against seconds."""
    y_max = nice_max(max([v for pts in series.values() for _, v in pts] or [1]))
    x = scale(0, t_max or 1, LEFT, WIDTH - RIGHT)
    y = scale(0, y_max, HEIGHT - BOTTOM, TOP)
    out = [f'<svg class="plot" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
           f'aria-label="{html.escape(title)}">']
    for i in range(5):
        v = y_max * i / 4
        out.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(v):.1f}" '
                   f'y2="{y(v):.1f}" class="grid"/>')
        out.append(f'<text x="{LEFT - 6}" y="{y(v) + 4:.1f}" class="tick" '
                   f'text-anchor="end">{v:,.0f}</text>')
    for s in range(0, int(t_max) + 1, max(1, int(t_max // 8) or 1)):
        out.append(f'<text x="{x(s):.1f}" y="{HEIGHT - BOTTOM + 16}" class="tick" '
                   f'text-anchor="middle">{s}s</text>')
    out.append(f'<text x="{LEFT}" y="{HEIGHT - 4}" class="axis">{html.escape(unit)}'
               ' over the run (seconds)</text>')
    for m in milestones:
        out.append(f'<line x1="{x(m["t"]):.1f}" x2="{x(m["t"]):.1f}" y1="{TOP}" '
                   f'y2="{HEIGHT - BOTTOM}" class="milestone">'
                   f'<title>{html.escape(m["label"])} at {m["t"]}s</title></line>')
    for i, (name, pts) in enumerate(sorted(series.items())):
        colour = COLOURS[i % len(COLOURS)]
        points = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in pts)
        out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" '
                   f'points="{points}" data-series="{html.escape(name)}">'
                   f'<title>{html.escape(name)}</title></polyline>')
        if len(pts) == 1:  # a series sampled once shows as a dot
            out.append(f'<circle cx="{x(pts[0][0]):.1f}" cy="{y(pts[0][1]):.1f}" r="3" '
                       f'fill="{colour}"/>')
    out.append('</svg>')
    legend = " ".join(
        f'<span class="key"><span class="swatch" style="background:{COLOURS[i % len(COLOURS)]}">'
        f'</span>{html.escape(name)}</span>' for i, name in enumerate(sorted(series)))
    return (f'<section><h2>{html.escape(title)}</h2>{"".join(out)}'
            f'<div class="legend">{legend}</div></section>')


def main():
    data = json.load(open(sys.argv[1]))
    report = open(sys.argv[2]).read()
    samples = data["samples"]
    milestones = data["milestones"]
    t_max = max([s["t"] for s in samples] + [m["t"] for m in milestones] + [1])

    rate = []
    for prev, cur in zip(samples, samples[1:]):
        dt = cur["t"] - prev["t"]
        if dt > 0:
            rate.append((cur["t"], (cur["head"] - prev["head"]) / dt))
    lag = {}
    for s in samples:
        for name, p in s["projections"].items():
            lag.setdefault(name, []).append((s["t"], p.get("lag") or 0))

    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>pg_eventstore demo report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 820px; color: #222; }}
pre {{ background: #f6f8fa; padding: 1em; overflow-x: auto; font-size: 13px; }}
.plot {{ width: 100%; height: auto; background: #fff; border: 1px solid #ddd; }}
.grid {{ stroke: #eee; }} .tick, .axis {{ font-size: 11px; fill: #555; }}
.milestone {{ stroke: #999; stroke-dasharray: 4 3; }}
.legend {{ font-size: 13px; margin: .4em 0 1.5em; }}
.key {{ margin-right: 1.2em; white-space: nowrap; }}
.swatch {{ display: inline-block; width: .9em; height: .9em; margin-right: .3em; vertical-align: -1px; }}
ul.milestones {{ font-size: 13px; }}
</style></head>
<body data-plots="pending">
<h1>pg_eventstore demo</h1>
{plot("Append rate", "events per second", {"appends": rate}, milestones, t_max)}
{plot("Projection lag", "events behind the head", lag, milestones, t_max)}
<h2>Milestones (dashed lines)</h2>
<ul class="milestones">{"".join(f"<li>{m['t']}s: {html.escape(m['label'])}</li>" for m in milestones)}</ul>
<h2>Closing report</h2>
<pre>{html.escape(report)}</pre>
<script>
window.addEventListener("error", function (e) {{ console.error("report error: " + e.message); }});
document.addEventListener("DOMContentLoaded", function () {{
  var plots = document.querySelectorAll("svg.plot");
  // every plot has a line of several points (a series sampled once is a dot)
  var drawn = Array.prototype.every.call(plots, function (svg) {{
    return Array.prototype.some.call(svg.querySelectorAll("polyline"), function (l) {{
      return l.getAttribute("points").trim().split(" ").length > 1; }});
  }});
  document.body.setAttribute("data-plots", plots.length === 2 && drawn ? "ok" : "missing");
}});
</script>
</body></html>
"""
    with open(sys.argv[3], "w") as f:
        f.write(page)


if __name__ == "__main__":
    main()
