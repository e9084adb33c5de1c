"""``show``'s tables of figures (system, GPUs, training metrics), fitted to the terminal.

Rich would squeeze every column alike and wrap a label over lines, so that at 80 columns "process
tree CPU", "process tree RSS" and four more all show as "process". Here the figures never wrap,
the label keeps at least :data:`LABEL_MIN` characters on one line (cut with an ellipsis past
that), and the trend column gives way first when the terminal is narrow.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.table import Table
from rich.text import Text

LABEL_MIN = 24  # "process tree processes", "CPU frequency (mean of..." stay apart
TREND_MIN = 10  # a narrower sparkline tells nothing
_PAD = 3  # a cell's padding and the border on its left


def figures_table(title: str, header: list[str], rows: list[list[Any]], width: int,
                  trend: str | None = None,
                  trends: Callable[[int], list[Text]] | None = None) -> Table:
    """``rows``: a label then the figures, as text; ``trends(width)``: one sparkline per row,
    drawn under the ``trend`` header when the terminal has room for one ``TREND_MIN`` wide."""
    labels = [str(r[0]) for r in rows]
    cols = [[str(c) for c in r[1:]] for r in rows]
    fig_w = [max(len(h), *(len(r[i]) for r in cols)) if cols else len(h)
             for i, h in enumerate(header[1:])]
    figs = sum(fig_w)
    want = max(len(header[0]), *(len(x) for x in labels)) if labels else len(header[0])
    least = min(want, LABEL_MIN)
    beside_trend = width - figs - _overhead(len(header) + 1) - max(TREND_MIN, len(trend or ""))
    spark = 0
    if trend is not None and trends is not None and beside_trend >= least:
        label_w = min(want, beside_trend)
        spark = min(40, width - figs - _overhead(len(header) + 1) - label_w)
    else:
        label_w = max(least, min(want, width - figs - _overhead(len(header))))
    t = Table(title=title, title_justify="left")
    t.add_column(header[0], no_wrap=True, overflow="ellipsis", min_width=label_w,
                 max_width=label_w)
    for h, w in zip(header[1:], fig_w):
        t.add_column(h, justify="right", no_wrap=True, min_width=w)
    lines = trends(spark) if spark and trends is not None else None
    if lines is not None:
        t.add_column(trend or "", no_wrap=True, overflow="crop", min_width=spark, max_width=spark)
    for i, r in enumerate(rows):
        label = r[0] if isinstance(r[0], Text) else Text(str(r[0]))
        t.add_row(label, *cols[i], *([lines[i]] if lines is not None else []))
    return t


def _overhead(columns: int) -> int:
    return _PAD * columns + 1  # a space either side of each cell, and the borders
