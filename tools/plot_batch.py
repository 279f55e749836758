#!/usr/bin/env python3
"""Chart of `sluice batch` throughput against batch size, as an SVG (no plotting library needed).
   tools/plot_batch.py OUT.svg SINGLE_RUN_TPS REPORT_B1.json REPORT_B8.json ...
Each report is `sluice batch --report` JSON; its batch size is read from the file name (..._bN.json)
or given as N=FILE. Plots generated tokens/s per batch size (bars) and the single-sequence
`sluice run` rate (a dashed line), with the value over each bar."""
import json
import re
import sys

out, single = sys.argv[1], float(sys.argv[2])
points = []
for arg in sys.argv[3:]:
    if "=" in arg:
        b, path = arg.split("=", 1)
    else:
        path = arg
        b = re.search(r"_b(\d+)\.json$", path).group(1)
    r = json.load(open(path))
    points.append((int(b), r["generated_tokens"] / r["seconds"]))
points.sort()
W, H, left, bottom, top = 560, 360, 70, 50, 40
plot_w, plot_h = W - left - 30, H - bottom - top
ymax = max([v for _, v in points] + [single]) * 1.15
bar_w = plot_w / len(points) * 0.6
svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
       f'<text x="{W / 2}" y="22" text-anchor="middle" font-size="14">sluice batch: generated tokens/s vs batch size</text>']
y = lambda v: top + plot_h * (1 - v / ymax)
for i in range(6):
    v = ymax * i / 5
    svg.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#ddd"/>')
    svg.append(f'<text x="{left - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{v:.1f}</text>')
for i, (b, v) in enumerate(points):
    cx = left + plot_w * (i + 0.5) / len(points)
    svg.append(f'<rect x="{cx - bar_w / 2:.1f}" y="{y(v):.1f}" width="{bar_w:.1f}" height="{top + plot_h - y(v):.1f}" fill="#3b78b5"/>')
    svg.append(f'<text x="{cx:.1f}" y="{y(v) - 5:.1f}" text-anchor="middle">{v:.2f}</text>')
    svg.append(f'<text x="{cx:.1f}" y="{top + plot_h + 18}" text-anchor="middle">batch {b}</text>')
svg.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y(single):.1f}" y2="{y(single):.1f}" stroke="#c0392b" stroke-dasharray="6,4"/>')
svg.append(f'<text x="{left + plot_w}" y="{y(single) - 6:.1f}" text-anchor="end" fill="#c0392b">sluice run (1 sequence): {single:.2f}</text>')
svg.append(f'<text x="18" y="{top + plot_h / 2}" transform="rotate(-90 18 {top + plot_h / 2})" text-anchor="middle">tokens/s</text>')
svg.append("</svg>")
open(out, "w").write("\n".join(svg) + "\n")
print(f"wrote {out}: " + ", ".join(f"batch {b}: {v:.2f} tok/s" for b, v in points) + f"; single run {single:.2f}")
