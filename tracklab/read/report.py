"""The self-contained HTML report of a run (``tracklab report``): header, diagnosis, summary
tables and SVG charts with a hover readout, inline CSS and script, nothing fetched.

The charts draw the panels of :func:`tracklab.read.trends.panels`; the tables are those of
:func:`tracklab.read.show.summarize`.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable
from typing import Any

from tracklab.read.payloads import StatRow
from tracklab.read.runs import RunView
from tracklab.read.trends import panels
from tracklab.textfmt import number

_COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
           "#17becf", "#7f7f7f", "#bcbd22"]
_W, _H, _L, _R, _T, _B = 760, 180, 72, 14, 10, 24  # chart size and margins, in SVG units


def _fmt(v: Any, unit: str = "") -> str:
    """A value as text with its unit (the CLI's formatting; an en dash when missing)."""
    return "–" if v is None else number(v, unit)


def _elapsed(s: float) -> str:
    return f"{s:g} s" if s < 120 else f"{s / 60:g} min" if s < 7200 else f"{s / 3600:g} h"


def _ticks(lo: float, hi: float, steps: Iterable[float] | None = None) -> list[float]:
    raw = (hi - lo) / 6 or 1.0
    if steps is None:
        mag = 10 ** math.floor(math.log10(raw))
        steps = [m * mag for m in (1, 2, 2.5, 5, 10)]
    step = next((s for s in steps if s >= raw), raw)
    first = math.ceil(lo / step - 1e-9) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


_TIME_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600,
               43200, 86400, 172800, 604800]


def _chart(panel: dict[str, Any], x0: float, x1: float, n: int) -> str:
    from html import escape

    unit, lines = panel["unit"], panel["series"]
    if panel["axis"] == "step":
        xs = [x for s in lines for x in s["x"]]
        x0, x1 = (min(xs), max(xs)) if xs else (0, 1)
    x1 = x1 if x1 > x0 else x0 + 1
    ys = [y for s in lines for y in s["y"] if y is not None]
    lo, hi = (min(ys), max(ys)) if ys else (0.0, 1.0)
    if unit == "%":
        lo, hi = min(lo, 0.0), max(hi, 100.0)
    elif not panel["training"] and lo >= 0:
        lo = 0.0
    pad = (hi - lo) * 0.05 or abs(hi) * 0.1 or 1.0
    hi += pad
    lo = lo if lo == 0 or unit == "%" else lo - pad
    pw, ph = _W - _L - _R, _H - _T - _B

    def sx(x: float) -> float:
        return _L + (x - x0) / (x1 - x0) * pw

    def sy(y: float) -> float:
        return _T + ph - (y - lo) / (hi - lo) * ph

    out = [f'<svg class="plot" viewBox="0 0 {_W} {_H}" role="img" '
           f'aria-label="{escape(panel["title"])}">']
    scale, shown = 1.0, unit
    if unit in ("B", "B/s"):  # ticks at round numbers of the unit that fits: 2 GiB, not 1.9
        for shown in ("B", "KiB", "MiB", "GiB", "TiB"):
            if max(abs(lo), abs(hi)) < 1024 * scale or shown == "TiB":
                break
            scale *= 1024
        shown += unit[1:]
    for y in (t * scale for t in _ticks(lo / scale, hi / scale)):
        text = f"{round(y / scale, 10):g}" + ("%" if unit == "%" else f" {shown}" if shown
                                               else "")
        out.append(f'<line class="grid" x1="{_L}" x2="{_W - _R}" y1="{sy(y):.1f}" '
                   f'y2="{sy(y):.1f}"/><text class="yl" x="{_L - 6}" y="{sy(y) + 4:.1f}">'
                   f'{escape(text)}</text>')
    timed = panel["axis"] == "time"
    for x in _ticks(x0, x1, _TIME_STEPS if timed else None):
        out.append(f'<line class="grid" x1="{sx(x):.1f}" x2="{sx(x):.1f}" y1="{_T}" '
                   f'y2="{_T + ph}"/><text class="xl" x="{sx(x):.1f}" y="{_H - 6}">'
                   f'{escape(_elapsed(x) if timed else f"{x:g}")}</text>')
    kx, ky = pw / (x1 - x0), ph / (hi - lo)
    bx, by = _L - x0 * kx, _T + ph + lo * ky
    data, legend = [], []
    for i, s in enumerate(lines):
        color = _COLORS[i % len(_COLORS)]
        d, pen = [], "M"
        for x, y in zip(s["x"], s["y"]):
            if y is None:
                pen = "M"
                continue
            d.append("%s%.1f,%.1f" % (pen, bx + x * kx, by - y * ky))  # noqa: UP031 - hot
            pen = "L"
        if len(d) == 1:
            cx, cy = d[0][1:].split(",")
            out.append(f'<circle class="dot" cx="{cx}" cy="{cy}" r="3" fill="{color}"/>')
        elif d:
            out.append(f'<path class="line" stroke="{color}" d="{" ".join(d)}"/>')
        # the hover's data, written by hand: json.dumps of dicts costs twice as much here
        data.append(f'{{"label":{json.dumps(s["label"])},"x":[{_numbers(s["x"], "%.10g")}],'
                    f'"y":[{_numbers(s["y"], "%.6g")}]}}')
        legend.append(f'<span><i style="background:{color}"></i>{escape(s["label"])}</span>')
    out.append(f'<rect class="frame" x="{_L}" y="{_T}" width="{pw}" height="{ph}"/>'
               f'<line class="cursor" x1="0" x2="0" y1="{_T}" y2="{_T + ph}" '
               f'visibility="hidden"/></svg>')
    meta = (f'{{"W":{_W},"l":{_L},"w":{pw},"x0":{x0!r},"x1":{x1!r},"unit":{json.dumps(unit)},'
            f'"axis":"{panel["axis"]}","series":[{",".join(data)}]}}')
    title = panel["title"] + (f" ({unit})" if unit in ("W", "°C") else "")
    return (f'<figure class="chart" data-points="{escape(meta)}">'
            f'<h3>{escape(title)}</h3>{"".join(out)}<div class="legend">{"".join(legend)}</div>'
            f'<figcaption class="tip">&nbsp;</figcaption></figure>')


def _numbers(values: list[Any], form: str) -> str:
    return ",".join("null" if v is None else form % v for v in values)


def _finding(f: Any) -> tuple[str, str, str]:
    def get(*names: str) -> Any:
        for n in names:
            v = f.get(n) if isinstance(f, dict) else getattr(f, n, None)
            if v:
                return v
        return ""

    if isinstance(f, str):
        return "", f, ""
    return (str(get("severity", "level")), str(get("message", "title", "summary") or f),
            str(get("evidence", "detail", "details")))


def _table(head: list[str], rows: list[list[str]]) -> str:
    from html import escape

    th = "".join(f"<th>{escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _stat_cells(row: StatRow) -> list[Any]:
    """A table row's min, mean, max and last (the columns after its label)."""
    return [row.get("min"), row.get("mean"), row.get("max"), row.get("last")]


def report_html(view: RunView, n: int = 400) -> str:
    """One self-contained HTML page (inline CSS, SVG and script; nothing is fetched): the
    header, the diagnosis when :mod:`tracklab.read.diagnose` exists, the tables and the charts
    (``n`` points a series). After its script has run, ``<html data-charts-drawn="N">``."""
    from html import escape

    from tracklab._version import __version__
    from tracklab.read.show import summarize

    data = summarize(view)
    info = data["info"]
    charts = panels(view, n=n)
    x1 = charts["end"] - charts["start"]
    status = info["status"] + ("" if info["exit_code"] is None else f" · exit {info['exit_code']}")
    command = info["command"]
    kv = [("project", info["project"]), ("status", status),
          ("command", " ".join(map(str, command)) if isinstance(command, list) else command),
          ("host", info["host"]), ("nodes", ", ".join(info["nodes"])),
          ("started", time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info["started_at"]))),
          ("duration", _fmt(info["duration"], "s")), ("samples", f"{data['samples']:,}"),
          ("config", ", ".join(f"{k}={v}" for k, v in info["config"].items())),
          ("tags", ", ".join(info["tags"])), ("notes", info["notes"])]
    parts = [f"<header><h1>{escape(str(info['name']))} <small>{escape(info['id'])}</small></h1>"
             f"<p class=\"status s-{escape(info['status'])}\">{escape(status)}</p>"
             + _table(["", ""], [[k, str(v)] for k, v in kv if v]).replace(
                 "<thead><tr><th></th><th></th></tr></thead>", "") + "</header>"]
    findings = data["diagnosis"]
    if findings is not None:
        items = "".join(f"<li><b>{escape(sev)}</b> {escape(msg)}"
                        + (f"<div class=\"ev\">{escape(ev)}</div>" if ev else "") + "</li>"
                        for sev, msg, ev in map(_finding, findings))
        parts.append(f"<section id=\"diagnosis\"><h2>Diagnosis</h2>"
                     f"{f'<ul>{items}</ul>' if items else '<p>nothing to report</p>'}</section>")
    stat_head = ["metric", "min", "mean", "max", "last"]
    tables = []
    if data["system"]:
        tables.append("<h3>System</h3>" + _table(stat_head, [
            [r["label"], *(_fmt(v, r["unit"]) for v in _stat_cells(r))]
            for r in data["system"]]))
    for g in data["gpus"]:
        name = f" · {g['name']}" if g.get("name") else ""
        tables.append(f"<h3>GPU {g['id']}{name}</h3>"
                      + _table(stat_head, [[r["label"], *(_fmt(v, r["unit"])
                                                          for v in _stat_cells(r))]
                                           for r in g["rows"]]))
    if data["metrics"]:
        tables.append("<h3>Training metrics</h3>" + _table(
            ["metric", "last", "min", "mean", "max", "count", "last step"],
            [[k, _fmt(s["last"]), _fmt(s["min"]), _fmt(s["mean"]), _fmt(s["max"]),
              f"{s['count']:,}", str(s["last_step"])] for k, s in data["metrics"].items()]))
    parts.append("<section id=\"tables\"><h2>Summary</h2>"
                 + ("".join(tables) or "<p>nothing recorded yet</p>") + "</section>")
    figs = [_chart(p, 0.0, x1, n) for p in charts["panels"]]
    parts.append("<section id=\"charts\"><h2>Charts</h2><p class=\"note\">x: time since the start"
                 " of the run; hover a chart to read its values.</p>"
                 + ("".join(figs) or "<p>no series to draw</p>") + "</section>")
    made = time.strftime("%Y-%m-%d %H:%M:%S")
    return (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>tracklab · {escape(str(info['name']))} ({escape(info['id'])})</title>"
            f"<style>{_CSS}</style></head><body>{''.join(parts)}"
            f"<footer>tracklab {__version__} · report made {made}</footer>"
            f"<script>{_JS}</script></body></html>\n")


_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px auto;
max-width:820px;padding:0 12px;color:#222;background:#fff}
h1{font-size:22px;margin:0}h1 small{color:#888;font-weight:normal;font-size:14px}
h2{font-size:17px;border-bottom:1px solid #ddd;padding-bottom:3px;margin-top:28px}
h3{font-size:14px;margin:16px 0 4px}
table{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums}
td,th{padding:2px 8px;border-bottom:1px solid #eee;text-align:right}
td:first-child,th:first-child{text-align:left}header td{text-align:left}
header td:first-child{color:#666;width:90px}
.status{font-weight:600;margin:4px 0 8px}.s-finished{color:#2a7d2a}.s-running{color:#1769aa}
.s-failed,.s-crashed,.s-killed,.s-oom-killed{color:#c62828}
.s-interrupted,.s-terminated{color:#b26a00}
#diagnosis li{margin:4px 0}#diagnosis .ev{color:#555;font-size:13px}
figure{margin:14px 0}svg.plot{width:100%;height:auto;display:block}
.grid{stroke:#eee;stroke-width:1}.frame{fill:none;stroke:#bbb}
.line{fill:none;stroke-width:1.5;stroke-linejoin:round}
.cursor{stroke:#555;stroke-dasharray:3 3}
.yl{font-size:11px;fill:#666;text-anchor:end}.xl{font-size:11px;fill:#666;text-anchor:middle}
.legend{font-size:12px;color:#444}.legend span{margin-right:14px;white-space:nowrap}
.legend i{display:inline-block;width:12px;height:3px;margin-right:4px;vertical-align:middle}
.tip{font-size:12px;color:#333;min-height:1.4em}.note{color:#777;font-size:12px}
footer{margin:32px 0 8px;color:#999;font-size:12px}
"""

_JS = """
(function () {
  function fmt(v, unit) {
    if (v === null || v === undefined) return '-';
    if (unit === 'B' || unit === 'B/s') {
      var u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'], i = 0;
      while (Math.abs(v) >= 1024 && i < 4) { v /= 1024; i++; }
      return (i ? v.toFixed(1) : v.toFixed(0)) + ' ' + u[i] + (unit === 'B/s' ? '/s' : '');
    }
    var a = Math.abs(v);
    var t = a >= 1000 ? Math.round(v).toLocaleString('en') : (a >= 10 || v === 0) ?
      v.toFixed(1) : String(Number(v.toPrecision(4)));
    return unit === '%' ? t + '%' : unit ? t + ' ' + unit : t;
  }
  function clock(s) {
    var h = Math.floor(s / 3600), m = Math.floor(s % 3600 / 60), x = Math.floor(s % 60);
    return (h ? h + ':' + (m < 10 ? '0' : '') : '') + m + ':' + (x < 10 ? '0' : '') + x;
  }
  function nearest(xs, x) {
    var lo = 0, hi = xs.length - 1;
    if (hi < 0) return -1;
    while (hi - lo > 1) { var mid = (lo + hi) >> 1; if (xs[mid] < x) lo = mid; else hi = mid; }
    return Math.abs(xs[lo] - x) <= Math.abs(xs[hi] - x) ? lo : hi;
  }
  var drawn = 0;
  Array.prototype.forEach.call(document.querySelectorAll('figure.chart'), function (fig) {
    var d = JSON.parse(fig.getAttribute('data-points'));
    var svg = fig.querySelector('svg'), cur = svg.querySelector('.cursor');
    var tip = fig.querySelector('.tip');
    if (svg.querySelector('path.line, circle.dot')) drawn++;
    svg.addEventListener('mousemove', function (ev) {
      var r = svg.getBoundingClientRect(), vx = (ev.clientX - r.left) / r.width * d.W;
      if (vx < d.l || vx > d.l + d.w) return;
      var x = d.x0 + (vx - d.l) / d.w * (d.x1 - d.x0);
      cur.setAttribute('x1', vx); cur.setAttribute('x2', vx);
      cur.setAttribute('visibility', 'visible');
      var out = [d.axis === 'step' ? 'step ' + Math.round(x) : 'at ' + clock(x)];
      d.series.forEach(function (s) {
        var i = nearest(s.x, x);
        if (i >= 0) out.push(s.label + ': ' + fmt(s.y[i], d.unit));
      });
      tip.textContent = out.join('   ');
    });
    svg.addEventListener('mouseleave', function () {
      cur.setAttribute('visibility', 'hidden'); tip.innerHTML = '&nbsp;';
    });
  });
  document.documentElement.setAttribute('data-charts-drawn', String(drawn));
})();
"""
