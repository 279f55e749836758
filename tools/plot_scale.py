#!/usr/bin/env python3
"""Seconds per token against memory cap, as an SVG (no plotting library needed).
   tools/plot_scale.py OUT.svg RESULTS.csv
RESULTS.csv has a header and rows: model,cap_gib,engine,s_per_token,disk_bound_s,note
  engine: sluice or llama.cpp; disk_bound_s: bytes read per token / raw O_DIRECT GB/s of that run
  (sluice rows), empty for llama.cpp; note: free text (e.g. "timed out after 1 token").
Each model gets a colour: sluice is a solid line with dots, llama.cpp a dashed line with squares
(an open square marks a lower bound: a run stopped by its timeout), the disk bound a dotted line.
The y axis is logarithmic."""
import csv
import math
import sys

out, path = sys.argv[1], sys.argv[2]
rows = list(csv.DictReader(open(path)))
models = []
for r in rows:
    if r["model"] not in models:
        models.append(r["model"])
colours = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"]
values = [float(r["s_per_token"]) for r in rows] + [float(r["disk_bound_s"]) for r in rows if r["disk_bound_s"]]
caps = sorted({float(r["cap_gib"]) for r in rows})
ylo = 10 ** math.floor(math.log10(min(values) * 0.8))
yhi = 10 ** math.ceil(math.log10(max(values) * 1.25))
xlo, xhi = 0, max(caps) * 1.15
W, H, left, right, bottom, top = 720, 440, 70, 190, 50, 40
pw, ph = W - left - right, H - top - bottom
X = lambda v: left + pw * (v - xlo) / (xhi - xlo)
Y = lambda v: top + ph * (1 - (math.log10(v) - math.log10(ylo)) / (math.log10(yhi) - math.log10(ylo)))
svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
       f'<rect width="{W}" height="{H}" fill="white"/>',
       f'<text x="{left + pw / 2}" y="22" text-anchor="middle" font-size="14">Seconds per token (batch 1, cold cache) against memory cap</text>']
d = ylo
while d <= yhi * 1.0001:
    for m in (1, 2, 5):
        v = d * m
        if ylo <= v <= yhi:
            svg.append(f'<line x1="{left}" x2="{left + pw}" y1="{Y(v):.1f}" y2="{Y(v):.1f}" stroke="#ddd"/>')
            svg.append(f'<text x="{left - 6}" y="{Y(v) + 4:.1f}" text-anchor="end">{v:g}</text>')
    d *= 10
for c in caps:
    svg.append(f'<line x1="{X(c):.1f}" x2="{X(c):.1f}" y1="{top + ph}" y2="{top + ph + 5}" stroke="black"/>')
    svg.append(f'<text x="{X(c):.1f}" y="{top + ph + 18}" text-anchor="middle">{c:g} GiB</text>')
svg.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="black"/>')
svg.append(f'<text x="{left + pw / 2}" y="{H - 8}" text-anchor="middle">memory cap (tools/memcap.sh)</text>')
svg.append(f'<text transform="translate(16,{top + ph / 2}) rotate(-90)" text-anchor="middle">seconds per token (log)</text>')


def polyline(points, colour, dash):
    if len(points) > 1:
        pts = " ".join(f"{X(x):.1f},{Y(y):.1f}" for x, y in points)
        svg.append(f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-width="2" stroke-dasharray="{dash}"/>')


ly = top + 10
for i, model in enumerate(models):
    colour = colours[i % len(colours)]
    mine = [r for r in rows if r["model"] == model]
    sl = sorted((float(r["cap_gib"]), float(r["s_per_token"])) for r in mine if r["engine"] == "sluice")
    ll = sorted((float(r["cap_gib"]), float(r["s_per_token"]), r.get("note", "")) for r in mine if r["engine"] != "sluice")
    db = sorted((float(r["cap_gib"]), float(r["disk_bound_s"])) for r in mine if r["engine"] == "sluice" and r["disk_bound_s"])
    polyline(sl, colour, "")
    polyline([(x, y) for x, y, _ in ll], colour, "7,4")
    polyline(db, colour, "2,3")
    for x, y in sl:
        svg.append(f'<circle cx="{X(x):.1f}" cy="{Y(y):.1f}" r="4" fill="{colour}"/>')
        svg.append(f'<text x="{X(x) + 7:.1f}" y="{Y(y) + 4:.1f}" fill="{colour}">{y:.3g}</text>')
    for x, y, note in ll:
        bound = "timed out" in note or "lower bound" in note
        fill = "white" if bound else colour
        svg.append(f'<rect x="{X(x) - 4:.1f}" y="{Y(y) - 4:.1f}" width="8" height="8" fill="{fill}" stroke="{colour}" stroke-width="2"/>')
        svg.append(f'<text x="{X(x) + 7:.1f}" y="{Y(y) + 4:.1f}" fill="{colour}">{"≥" if bound else ""}{y:.3g}</text>')
    for x, y in db:
        svg.append(f'<line x1="{X(x) - 8:.1f}" x2="{X(x) + 8:.1f}" y1="{Y(y):.1f}" y2="{Y(y):.1f}" stroke="{colour}" stroke-width="2"/>')
    lx = left + pw + 15
    svg.append(f'<text x="{lx}" y="{ly}" fill="{colour}" font-weight="bold">{model}</text>')
    ly += 16
    for label, dash in (("sluice", ""), ("llama.cpp (mmap)", "7,4"), ("disk bound", "2,3")):
        svg.append(f'<line x1="{lx}" x2="{lx + 28}" y1="{ly - 4}" y2="{ly - 4}" stroke="{colour}" stroke-width="2" stroke-dasharray="{dash}"/>')
        svg.append(f'<text x="{lx + 34}" y="{ly}">{label}</text>')
        ly += 15
    ly += 8
svg.append(f'<text x="{left + pw + 15}" y="{ly + 6}" font-size="10">open square: stopped by</text>')
svg.append(f'<text x="{left + pw + 15}" y="{ly + 18}" font-size="10">its timeout (lower bound)</text>')
svg.append("</svg>")
open(out, "w").write("\n".join(svg) + "\n")
