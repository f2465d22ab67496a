"""Charts drawn on the server as SVG: no chart library, no script, no inline style (the CSP forbids it).

A chart is a picture for sighted readers; the numbers are always in the data table that follows it
(`{{ table }}` beside every `{{ chart }}` in the templates), so the SVG is hidden from assistive
technology (`aria-hidden`). Colours come from classes in `static/charts.css`; a line's meaning is also
told by its pattern (solid, dashed, dotted) and a legend in words, never by colour alone.

- `bar_chart(rows)`: one horizontal bar per row, its label and value written beside it in HTML, so
  long Chinese names wrap at 360 px instead of shrinking with the drawing.
- `line_chart(lines, start=, end=, top=)`: lines over days, drawn in a box that stretches to the page's
  width (`preserveAspectRatio="none"` with non-scaling strokes); the axes' words are HTML around it.

Both return Markup; values are integers (fen, counts), texts are already formatted by the caller.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from markupsafe import Markup, escape

WIDTH, HEIGHT = 600, 200  # the line chart's drawing units (stretched to the page)


@dataclass(frozen=True)
class Bar:
    label: str
    value: int
    shown: str  # the value as the reader reads it: "¥1,234.50", "12 人", "30%"
    css: str = ""  # a class from charts.css for this bar (e.g. "target", "actual")


@dataclass(frozen=True)
class Line:
    label: str  # said in the legend
    points: Sequence[tuple[date, int]]
    css: str = "actual"  # actual (solid), projection (dashed), limit (dotted)


def bar_chart(rows: Sequence[Bar], *, top: int | None = None) -> Markup:
    """Horizontal bars scaled to *top* (default: the largest value); empty when there are no rows."""
    if not rows:
        return Markup("")
    top = top if top is not None else max(row.value for row in rows)
    parts = ['<div class="chart bar-chart" aria-hidden="true">']
    for row in rows:
        width = 0.0 if top <= 0 else max(0.0, min(100.0, 100 * row.value / top))
        parts.append(
            f'<div class="bar-row"><span class="bar-label">{escape(row.label)}</span>'
            '<svg class="bar-svg" viewBox="0 0 100 6" preserveAspectRatio="none" focusable="false">'
            '<rect class="bar-bg" x="0" y="0" width="100" height="6"></rect>'
            f'<rect class="bar-fill {escape(row.css)}" x="0" y="0" width="{width:.3f}" height="6"></rect></svg>'
            f'<span class="bar-value">{escape(row.shown)}</span></div>')
    parts.append("</div>")
    return Markup("".join(parts))


def _x(day: date, start: date, span: int) -> float:
    return WIDTH * (day - start).days / span


def _y(value: int, top: int) -> float:
    return HEIGHT - HEIGHT * min(max(value, 0), top) / top


def line_chart(lines: Sequence[Line], *, start: date, end: date, top: int, top_shown: str,
               start_shown: str, end_shown: str, today: date | None = None, today_shown: str = "") -> Markup:
    """Lines over the days *start*…*end*, from 0 up to *top* (said as *top_shown*), with the first and last
    day said under the box and, if given, a mark at *today*. Points outside the days are clipped."""
    span = max(1, (end - start).days)
    top = max(1, top)
    parts = ['<div class="chart line-chart" aria-hidden="true">',
             f'<p class="axis-top">{escape(top_shown)}</p>',
             f'<svg class="line-svg" viewBox="0 0 {WIDTH} {HEIGHT}" preserveAspectRatio="none" focusable="false">',
             f'<rect class="plot-bg" x="0" y="0" width="{WIDTH}" height="{HEIGHT}"></rect>']
    for fraction in (0.25, 0.5, 0.75):
        parts.append(f'<line class="grid" x1="0" x2="{WIDTH}" y1="{HEIGHT * fraction:.1f}" '
                     f'y2="{HEIGHT * fraction:.1f}" vector-effect="non-scaling-stroke"></line>')
    if today is not None and start <= today <= end:
        x = _x(today, start, span)
        parts.append(f'<line class="today" x1="{x:.1f}" x2="{x:.1f}" y1="0" y2="{HEIGHT}" '
                     'vector-effect="non-scaling-stroke"></line>')
    for line in lines:
        shown = [(day, value) for day, value in line.points if start <= day <= end]
        if not shown:
            continue
        if len(shown) == 1:  # one day is a dot, not a line
            day, value = shown[0]
            parts.append(f'<circle class="dot {escape(line.css)}" cx="{_x(day, start, span):.1f}" '
                         f'cy="{_y(value, top):.1f}" r="3" vector-effect="non-scaling-stroke"></circle>')
            continue
        coordinates = " ".join(f"{_x(day, start, span):.1f},{_y(value, top):.1f}" for day, value in shown)
        parts.append(f'<polyline class="line {escape(line.css)}" points="{coordinates}" '
                     'vector-effect="non-scaling-stroke"></polyline>')
    parts.append("</svg>")
    parts.append(f'<p class="axis-x"><span>{escape(start_shown)}</span>'
                 f'{f"<span>{escape(today_shown)}</span>" if today_shown else ""}'
                 f'<span>{escape(end_shown)}</span></p>')
    parts.append('<ul class="chart-legend">')
    for line in lines:
        parts.append(f'<li><svg class="legend-swatch" viewBox="0 0 40 10" focusable="false">'
                     f'<line class="line {escape(line.css)}" x1="0" x2="40" y1="5" y2="5"></line></svg>'
                     f'{escape(line.label)}</li>')
    parts.append("</ul></div>")
    return Markup("".join(parts))
