"""Server-rendered SVG charts of a consumer's usage: no script, no chart library, readable by
a screen reader (`role="img"`, a title and a description, and the figures as a table beside).

The markup is built from numbers and fixed labels only; every text is escaped.
"""

from dataclasses import dataclass
from html import escape

from markupsafe import Markup

# Status classes, bottom to top, with colours that keep 3:1 against the white plot and
# each other's neighbour (WCAG 1.4.11).
CLASS_COLOURS: tuple[tuple[str, str], ...] = (
    ("2xx", "#1f7a4d"),
    ("3xx", "#2b5fad"),
    ("4xx", "#b25e00"),
    ("5xx", "#b3261e"),
)
LINE_COLOURS = {"p50": "#1f7a4d", "p95": "#b25e00", "p99": "#b3261e"}

_WIDTH = 720
_HEIGHT = 220
_LEFT = 48
_BOTTOM = 28
_TOP = 12


@dataclass(frozen=True, slots=True)
class Bar:
    label: str
    by_class: dict[str, int]


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1
    for step in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 2500, 5000, 10000):
        if value <= step * 4:
            return step * 4
    magnitude = 10 ** (len(str(int(value))) - 1)
    return (int(value / magnitude) + 1) * magnitude


def _axes(top: float, *, unit: str = "") -> list[str]:
    plot_h = _HEIGHT - _BOTTOM - _TOP
    parts = []
    for i in range(5):
        value = top * i / 4
        y = _HEIGHT - _BOTTOM - plot_h * i / 4
        text = f"{value:g}{unit}"
        parts.append(
            f'<line x1="{_LEFT}" x2="{_WIDTH - 8}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
            f'<text x="{_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{escape(text)}</text>'
        )
    return parts


def stacked_bars(bars: list[Bar], *, title: str, chart_id: str, label_every: int = 1) -> Markup:
    """Requests per period, stacked by status class."""
    totals = [sum(bar.by_class.values()) for bar in bars]
    top = _nice_max(max(totals, default=0))
    plot_w = _WIDTH - _LEFT - 8
    plot_h = _HEIGHT - _BOTTOM - _TOP
    slot = plot_w / max(len(bars), 1)
    width = max(slot * 0.7, 1)
    parts = _axes(top)
    for index, bar in enumerate(bars):
        x = _LEFT + slot * index + (slot - width) / 2
        y = float(_HEIGHT - _BOTTOM)
        for name, colour in CLASS_COLOURS:
            count = bar.by_class.get(name, 0)
            if count <= 0:
                continue
            height = plot_h * count / top
            y -= height
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{width:.1f}" height="{height:.1f}" '
                f'fill="{colour}" data-class="{name}" data-count="{count}">'
                f"<title>{escape(bar.label)}: {count} requests, {name}</title></rect>"
            )
        if index % label_every == 0:
            parts.append(
                f'<text x="{x + width / 2:.1f}" y="{_HEIGHT - 10}" text-anchor="middle">'
                f"{escape(bar.label)}</text>"
            )
    total = sum(totals)
    description = f"{total} requests in all; " + ", ".join(
        f"{name}: {sum(bar.by_class.get(name, 0) for bar in bars)}" for name, _ in CLASS_COLOURS
    )
    return _svg(parts, title=title, description=description, chart_id=chart_id, total=total)


def latency_lines(
    points: list[tuple[str, dict[str, float | None]]], *, title: str, chart_id: str
) -> Markup:
    """Latency percentiles per period, one line each; periods without requests are gaps."""
    values = [v for _, latency in points for v in latency.values() if v is not None]
    top = _nice_max(max(values, default=0))
    plot_w = _WIDTH - _LEFT - 8
    plot_h = _HEIGHT - _BOTTOM - _TOP
    slot = plot_w / max(len(points), 1)
    parts = _axes(top, unit=" ms")
    for name, colour in LINE_COLOURS.items():
        segment: list[str] = []
        for index, (_, latency) in enumerate(points):
            value = latency.get(name)
            x = _LEFT + slot * index + slot / 2
            if value is None:
                if len(segment) > 1:
                    parts.append(_polyline(segment, colour))
                segment = []
                continue
            y = _HEIGHT - _BOTTOM - plot_h * value / top
            segment.append(f"{x:.1f},{y:.1f}")
            parts.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}">'
                f"<title>{escape(points[index][0])}: {name} ≤ {value:g} ms</title></circle>"
            )
        if len(segment) > 1:
            parts.append(_polyline(segment, colour))
    for index, (label, _) in enumerate(points):
        if index % 3 == 0:
            x = _LEFT + slot * index + slot / 2
            parts.append(
                f'<text x="{x:.1f}" y="{_HEIGHT - 10}" text-anchor="middle">{escape(label)}</text>'
            )
    description = "Latency percentiles (p50, p95, p99) per hour, in milliseconds"
    return _svg(parts, title=title, description=description, chart_id=chart_id, total=len(values))


def _polyline(points: list[str], colour: str) -> str:
    return f'<polyline points="{" ".join(points)}" fill="none" stroke="{colour}" stroke-width="2"/>'


def _svg(parts: list[str], *, title: str, description: str, chart_id: str, total: int) -> Markup:
    return Markup(
        f'<svg class="chart" viewBox="0 0 {_WIDTH} {_HEIGHT}" role="img" '
        f'aria-labelledby="{chart_id}-title {chart_id}-desc" id="{chart_id}" '
        f'data-total="{total}" xmlns="http://www.w3.org/2000/svg">'
        f'<title id="{chart_id}-title">{escape(title)}</title>'
        f'<desc id="{chart_id}-desc">{escape(description)}</desc>' + "".join(parts) + "</svg>"
    )
