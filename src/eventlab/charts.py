"""Altair charts of the frames that metrics, history and the checker produce.

Every chart is a function of a pandas DataFrame and returns an Altair chart, so
a test can look at ``chart.to_dict()`` and a lesson can simply display it. Time
runs along the x axis as *seconds since the start of the run* (``origin``), the
unit learners reason in; fault windows from ``History.fault_windows()`` are
shaded behind lag, throughput, outcome and convergence lines.

Data is aggregated in pandas before it reaches Altair (counts per time bin, a
histogram, thinned samples), so specs stay small and a 100,000-event run does
not trip Altair's row limit or bloat a saved notebook.

Rendering (docs/charts.md): importing this module calls :func:`enable`, which
selects Altair's ``svg`` renderer. It draws the chart in the kernel with
vl-convert and sends a static SVG, so charts show in JupyterLab 4.6 with no
network and survive reopening a saved notebook. JupyterLab 4.6 cannot render
Altair 6's ``vegalite.v6`` mime type, and Altair's default renderer loads Vega
from a CDN (docs/architecture.md, "Charts offline").

Introduced in lesson 02 (lag), used through lesson 11 (convergence after heal).
"""

from __future__ import annotations

import base64
import functools
import importlib.util
import io
import re
from collections.abc import Collection, Sequence
from html import unescape
from pathlib import Path
from typing import Any

import altair as alt
import numpy as np
import pandas as pd

from eventlab.metrics import EVENT_COLUMNS, LAG_COLUMNS

__all__ = [
    "FAULT_COLUMNS",
    "FONT",
    "LAG_COLUMNS",
    "METRICS_COLUMNS",
    "RENDERER",
    "bin_width",
    "convergence",
    "embed_font",
    "enable",
    "lag",
    "latency",
    "latency_percentiles",
    "outcomes",
    "throughput",
    "waterfall",
]

RENDERER = "svg"
"""The Altair renderer eventlab selects: static SVG drawn in the kernel, no network."""

FONT = "DejaVu Sans"
"""The one font every chart is laid out with and drawn with (shipped in ``eventlab/_fonts``).

vl-convert measures each label with it to place it, and the SVG embeds the
glyphs it uses (an ``@font-face`` subset), so a browser draws the same widths:
no label is clipped because the browser picked a wider font than the layout.
"""

_FONT_DIR = Path(__file__).parent / "_fonts"
_FONT_FILES = {"normal": "DejaVuSans.ttf", "bold": "DejaVuSans-Bold.ttf"}

METRICS_COLUMNS = tuple(c for c in EVENT_COLUMNS if c != "causationid")
"""Columns of ``metrics.frame()`` the charts read (one row per handled delivery)."""


FAULT_COLUMNS = ("start", "end", "fault")
"""Columns of ``History.fault_windows()`` (one row per injected fault)."""

CONVERGENCE_COLUMNS = ("time", "disagreeing")
"""Columns of the convergence checker's ``"convergence"`` frame."""

_MAX_POINTS = 600  # per series: enough for a smooth line, small enough for a notebook
_FEW_POINTS = 40  # below this, dots on a line help; above, they clutter
_FAULT_OPACITY = 0.18
_WIDTH = 560
_HEIGHT = 220


def enable() -> None:
    """Select the offline ``svg`` renderer for every Altair chart in this kernel.

    Called when ``eventlab.charts`` is imported, so a lesson needs no setup.
    Calling it again is harmless.

    Raises:
        ImportError: vl-convert-python is missing (it draws the SVG).
    """
    if importlib.util.find_spec("vl_convert") is None:
        raise ImportError(
            "eventlab.charts draws charts offline with vl-convert-python: "
            "pip install 'vl-convert-python>=1.9'"
        )
    alt.renderers.register(RENDERER, _svg_renderer)
    alt.renderers.enable(RENDERER)


@functools.cache
def _register_fonts() -> None:
    import vl_convert  # noqa: PLC0415 - checked by enable()

    vl_convert.register_font_directory(str(_FONT_DIR))


@functools.cache
def _font_face(weight: str, chars: str) -> str:
    """An ``@font-face`` rule with the glyphs of ``chars`` from the shipped font, as WOFF."""
    from fontTools import subset  # noqa: PLC0415 - only when a chart is drawn
    from fontTools.ttLib import TTFont  # noqa: PLC0415

    font = TTFont(_FONT_DIR / _FONT_FILES[weight])
    options = subset.Options()
    options.layout_features = ["*"]  # kerning as vl-convert measured it
    subsetter = subset.Subsetter(options)
    subsetter.populate(text=chars)
    subsetter.subset(font)
    font.flavor = "woff"  # zlib-compressed: about half the size of the TrueType subset
    out = io.BytesIO()
    font.save(out)
    data = base64.b64encode(out.getvalue()).decode()
    return (
        f"@font-face{{font-family:'{FONT}';font-weight:{weight};"
        f"src:url(data:font/woff;base64,{data}) format('woff')}}"
    )


_TEXT = re.compile(r"<text\b([^>]*)>(.*?)</text>", re.DOTALL)


def embed_font(svg: str) -> str:
    """Return ``svg`` with the glyphs its text uses embedded as ``@font-face`` rules.

    An SVG shown as an image cannot load fonts from outside itself; embedding
    makes every browser draw the font the layout was measured with.
    """
    used: dict[str, set[str]] = {"normal": set(), "bold": set()}
    for attributes, body in _TEXT.findall(svg):
        weight = "bold" if re.search(r'font-weight="(bold|[6-9]00)"', attributes) else "normal"
        used[weight].update(unescape(re.sub(r"<[^>]+>", "", body)))
    rules = "".join(
        _font_face(weight, "".join(sorted(chars))) for weight, chars in used.items() if chars
    )
    if not rules:
        return svg
    head = svg.index(">", svg.index("<svg")) + 1
    return f"{svg[:head]}<defs><style>{rules}</style></defs>{svg[head:]}"


def _svg_renderer(spec: dict[str, Any], **metadata: Any) -> dict[str, str]:
    """Altair's ``svg`` renderer, laid out and drawn with :data:`FONT` (embedded)."""
    from altair.vegalite.v6.display import svg_renderer  # noqa: PLC0415 - Altair's own

    _register_fonts()
    config = {**spec.get("config", {}), "font": FONT}
    bundle: dict[str, str] = svg_renderer({**spec, "config": config}, **metadata)
    bundle["image/svg+xml"] = embed_font(bundle["image/svg+xml"])
    return bundle


def _require(frame: pd.DataFrame, columns: Collection[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{what} needs columns {', '.join(missing)}; got {', '.join(map(str, frame.columns))}"
        )


def _utc(values: pd.Series) -> pd.Series:
    return pd.to_datetime(values, utc=True)


def _origin(*times: pd.Series | None) -> pd.Timestamp:
    starts = [_utc(t).min() for t in times if t is not None and len(t)]
    starts = [s for s in starts if not pd.isna(s)]
    return min(starts) if starts else pd.Timestamp(0, tz="UTC")


def _seconds(values: pd.Series, origin: pd.Timestamp) -> pd.Series:
    return (_utc(values) - origin).dt.total_seconds()


def _span(seconds: pd.Series) -> float:
    return float(seconds.max() - seconds.min()) if len(seconds) else 0.0


def _series_label(frame: pd.DataFrame) -> pd.Series:
    # "{lab:orders}" (or an older "lab:{orders}") reads as "orders": one namespace per chart.
    stream = (
        frame["stream"]
        .astype(str)
        .str.replace(r"^\{[^:{}]+:([^{}]+)\}$", r"\1", regex=True)
        .str.replace(r"^[^:{}]+:\{(.+)\}$", r"\1", regex=True)
    )
    return stream + " · " + frame["group"].astype(str)


def _thin(frame: pd.DataFrame, keys: list[str], values: list[str]) -> pd.DataFrame:
    """Keep at most ``_MAX_POINTS`` rows per series, each bucket's maximum (peaks stay)."""
    if frame.empty or frame.groupby(keys).size().max() <= _MAX_POINTS:
        return frame
    span = float(frame["seconds"].max() - frame["seconds"].min()) or 1.0
    step = span / (_MAX_POINTS - 1)  # buckets 0 .. _MAX_POINTS - 1
    bucket = ((frame["seconds"] - frame["seconds"].min()) // step).astype("int64")
    agg: dict[str, Any] = {"seconds": "first", **dict.fromkeys(values, "max")}
    thinned = frame.assign(_bucket=bucket).groupby([*keys, "_bucket"], as_index=False).agg(agg)
    return thinned.drop(columns="_bucket")


def _fault_layer(
    faults: pd.DataFrame | None, origin: pd.Timestamp, until: float
) -> alt.Chart | None:
    if faults is None or faults.empty:
        return None
    _require(faults, FAULT_COLUMNS, "fault windows")
    start = _seconds(faults["start"], origin)
    # A fault still active when the run ended has no end: shade to the last sample.
    end = _seconds(faults["end"], origin).fillna(max(until, float(start.max())))
    data = pd.DataFrame({"start": start, "end": end, "fault": faults["fault"].astype(str)})
    shade: alt.Chart = (
        alt.Chart(data)
        .mark_rect(opacity=_FAULT_OPACITY)
        .encode(
            x="start:Q",
            x2="end:Q",
            color=alt.Color("fault:N", title="fault", scale=alt.Scale(scheme="set2")),
            tooltip=[
                "fault:N",
                alt.Tooltip("start:Q", format=".1f"),
                alt.Tooltip("end:Q", format=".1f"),
            ],
        )
    )
    return shade


def _with_faults(
    chart: alt.Chart | alt.LayerChart,
    faults: pd.DataFrame | None,
    origin: pd.Timestamp,
    until: float,
    title: str,
) -> alt.Chart | alt.LayerChart:
    shade = _fault_layer(faults, origin, until)
    size = {"title": title, "width": _WIDTH, "height": _HEIGHT}
    if shade is None:
        alone: alt.Chart | alt.LayerChart = chart.properties(**size)
        return alone
    # Fault colours and series colours are different things: give each its own legend.
    layered = alt.LayerChart(layer=[shade, chart]).resolve_scale(color="independent")
    result: alt.LayerChart = layered.properties(**size)
    return result


def _x_seconds() -> alt.X:
    return alt.X("seconds:Q", title="seconds since start")


def lag(
    frame: pd.DataFrame,
    *,
    faults: pd.DataFrame | None = None,
    origin: pd.Timestamp | None = None,
    title: str = "Lag and pending per group",
) -> alt.Chart | alt.LayerChart:
    """Chart lag (not yet delivered) and pending (delivered, not acked) over time per group.

    Introduced in lesson 05 (a slow consumer falls behind); lesson 11 shades faults.

    Args:
        frame: ``metrics.lag_frame()``: ``time, stream, group, length, lag, pending``.
        faults: ``History.fault_windows()`` (``start, end, fault``), shaded behind the lines.
        origin: Time zero of the x axis; default the earliest sample or fault.
        title: Chart title.

    Returns:
        A solid line per group for lag, a dashed one for pending.
    """
    _require(frame, LAG_COLUMNS, "lag()")
    if origin is None:
        origin = _origin(frame["time"], None if faults is None else faults["start"])
    data = pd.DataFrame(
        {
            "seconds": _seconds(frame["time"], origin),
            "series": _series_label(frame),
            "lag": pd.to_numeric(frame["lag"], errors="coerce").astype("float64"),
            "pending": pd.to_numeric(frame["pending"], errors="coerce").astype("float64"),
        }
    )
    data = _thin(data, ["series"], ["lag", "pending"])
    long = data.melt(
        id_vars=["seconds", "series"],
        value_vars=["lag", "pending"],
        var_name="measure",
        value_name="events",
    ).dropna(subset=["events"])
    lines = (
        alt.Chart(long)
        .mark_line(interpolate="step-after")
        .encode(
            x=_x_seconds(),
            y=alt.Y("events:Q", title="events"),
            color=alt.Color("series:N", title="stream · group"),
            strokeDash=alt.StrokeDash("measure:N", title="measure", sort=["lag", "pending"]),
            tooltip=["series:N", "measure:N", "events:Q", alt.Tooltip("seconds:Q", format=".2f")],
        )
    )
    until = float(data["seconds"].max()) if len(data) else 0.0
    return _with_faults(lines, faults, origin, until, title)


def _ok(frame: pd.DataFrame, outcomes_: Collection[str]) -> pd.DataFrame:
    return frame[frame["outcome"].isin(list(outcomes_))]


_MAX_CHART_ROWS = 2_000  # well under Altair's 5,000-row limit, and small in a notebook
_BIN_LADDER = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 86400)


def bin_width(span: float, *, labels: int = 1, requested: float = 1.0) -> float:
    """Return the bin width (seconds) a chart over ``span`` seconds uses.

    ``requested`` when the chart stays under 2,000 rows (bins times ``labels``), else
    the next round width (2 s, 5 s, 10 s, … 1 h, …) that does: a two-hour run
    at 1-second bins would be 7,200 rows per line and hit Altair's 5,000-row
    limit (``MaxRowsError``), so long runs are drawn with wider bins instead.
    Rates stay in events per second whatever the width.
    """
    if requested <= 0:
        raise ValueError("bin_seconds must be a positive number of seconds")
    budget = max(1, _MAX_CHART_ROWS // max(1, labels))
    if span / requested + 1 <= budget:
        return requested
    for width in _BIN_LADDER:
        if width > requested and span / width + 1 <= budget:
            return float(width)
    return float(np.ceil(span / (budget - 1))) if budget > 1 else max(span, requested)


def _binned_counts(
    seconds: pd.Series,
    labels: pd.Series,
    *,
    bin_seconds: float,
    categories: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Count rows per (time bin, label), with zero rows so lines drop to 0 when idle."""
    if bin_seconds <= 0:
        raise ValueError("bin_seconds must be a positive number of seconds")
    if seconds.empty:
        return pd.DataFrame({"seconds": [], "label": [], "count": []})
    bins = np.floor(seconds.to_numpy(dtype="float64") / bin_seconds).astype("int64")
    counts = pd.crosstab(bins, labels.to_numpy())
    if categories is not None:
        counts = counts.reindex(columns=list(categories), fill_value=0)
    full = range(int(bins.min()), int(bins.max()) + 1)
    counts = counts.reindex(full, fill_value=0)
    counts.index.name = "bin"
    counts.columns.name = "label"
    long = counts.reset_index().melt(id_vars="bin", var_name="label", value_name="count")
    long["seconds"] = long["bin"].astype("float64") * bin_seconds
    return long[["seconds", "label", "count"]]


def throughput(
    frame: pd.DataFrame,
    *,
    bin_seconds: float = 1.0,
    by: str = "group",
    faults: pd.DataFrame | None = None,
    origin: pd.Timestamp | None = None,
    title: str = "Throughput (events handled per second)",
) -> alt.Chart | alt.LayerChart:
    """Chart events handled successfully per second, one line per group (or other column).

    Introduced in lesson 02 (scaling a group out); lesson 05 compares producers.

    Args:
        frame: ``metrics.frame()``; rows with outcome ``ok`` are counted at ``handled``.
        bin_seconds: Width of a time bin; the y axis is events per second either way.
            Widened for long runs so the chart stays small (:func:`bin_width`).
        by: The column whose values get one line each (``group``, ``consumer``, ``stream``).
        faults: Fault windows to shade.
        origin: Time zero of the x axis; default the first handled event or fault.
        title: Chart title.
    """
    _require(frame, METRICS_COLUMNS, "throughput()")
    _require(frame, [by], "throughput()")
    done = _ok(frame, {"ok"})
    if origin is None:
        origin = _origin(done["handled"], None if faults is None else faults["start"])
    at = _seconds(done["handled"], origin)
    names = done[by].astype(str)
    bin_seconds = bin_width(_span(at), labels=names.nunique(), requested=bin_seconds)
    counts = _binned_counts(at, names, bin_seconds=bin_seconds)
    counts["rate"] = counts["count"] / bin_seconds
    lines = (
        alt.Chart(counts)
        .mark_line(point=len(counts) < _FEW_POINTS)
        .encode(
            x=_x_seconds(),
            y=alt.Y("rate:Q", title="events / s"),
            color=alt.Color("label:N", title=by),
            tooltip=["label:N", alt.Tooltip("rate:Q", format=".1f"), "seconds:Q"],
        )
    )
    until = float(counts["seconds"].max()) + bin_seconds if len(counts) else 0.0
    return _with_faults(lines, faults, origin, until, title)


def latency_percentiles(
    frame: pd.DataFrame,
    *,
    quantiles: Sequence[float] = (0.5, 0.95, 0.99),
    outcomes_: Collection[str] = ("ok",),
) -> dict[str, float]:
    """Return emit→handle latency percentiles in milliseconds: ``{"p50": …, "p95": …}``.

    Introduced in lesson 10 (end-to-end latency percentiles).

    Args:
        frame: ``metrics.frame()``.
        quantiles: Fractions between 0 and 1.
        outcomes_: Which outcomes count (duplicates and retries are not end-to-end).

    Raises:
        ValueError: No row has one of ``outcomes_``.
    """
    millis = _latency_ms(frame, outcomes_)
    if millis.empty:
        raise ValueError(f"no handled events with outcome in {sorted(outcomes_)}")
    return {_pname(q): float(millis.quantile(q)) for q in quantiles}


def _pname(q: float) -> str:
    if not 0 < q < 1:
        raise ValueError(f"quantile {q} must be between 0 and 1")
    return f"p{q * 100:g}"


def _latency_ms(frame: pd.DataFrame, outcomes_: Collection[str]) -> pd.Series:
    _require(frame, METRICS_COLUMNS, "latency")
    done = _ok(frame, outcomes_)
    millis = (_utc(done["handled"]) - _utc(done["emitted"])).dt.total_seconds() * 1000.0
    return millis.dropna().astype("float64")


def latency(
    frame: pd.DataFrame,
    *,
    bins: int = 40,
    quantiles: Sequence[float] = (0.5, 0.95, 0.99),
    outcomes_: Collection[str] = ("ok",),
    title: str = "Emit → handle latency",
) -> alt.LayerChart:
    """Chart the emit→handle latency distribution with p50/p95/p99 marked.

    Introduced in lesson 10 (observability).

    Args:
        frame: ``metrics.frame()``; latency is ``handled - emitted`` in milliseconds.
        bins: Histogram bars (computed in pandas, so the spec stays small).
        quantiles: Percentiles drawn as labelled rules.
        outcomes_: Which outcomes count (default successfully handled events).
        title: Chart title.
    """
    if bins <= 0:
        raise ValueError("bins must be a positive count")
    millis = _latency_ms(frame, outcomes_)
    if millis.empty:
        hist = pd.DataFrame({"start": [], "end": [], "events": []})
        marks = pd.DataFrame({"name": [], "ms": [], "label": []})
    else:
        counts, edges = np.histogram(millis.to_numpy(), bins=bins)
        hist = pd.DataFrame({"start": edges[:-1], "end": edges[1:], "events": counts})
        values = latency_percentiles(frame, quantiles=quantiles, outcomes_=outcomes_)
        marks = pd.DataFrame(
            {
                "name": list(values),
                "ms": list(values.values()),
                "label": [f"{name} {ms:.1f} ms" for name, ms in values.items()],
            }
        )
    bars = (
        alt.Chart(hist)
        .mark_bar(color="#4c78a8")
        .encode(
            x=alt.X("start:Q", bin="binned", title="latency (ms)"),
            x2="end:Q",
            y=alt.Y("events:Q", title="events"),
            tooltip=[
                alt.Tooltip("start:Q", format=".1f"),
                alt.Tooltip("end:Q", format=".1f"),
                "events:Q",
            ],
        )
    )
    rules = alt.Chart(marks).mark_rule(color="#e45756", strokeDash=[4, 3]).encode(x="ms:Q")
    labels = (
        alt.Chart(marks)
        .mark_text(align="left", dx=3, baseline="top", color="#e45756")
        .encode(
            x="ms:Q",
            y=alt.value(0),
            yOffset=alt.YOffset("name:N", scale=alt.Scale(range=[0, 40])),
            text="label:N",
        )
    )
    chart: alt.LayerChart = alt.LayerChart(layer=[bars, rules, labels]).properties(
        title=title, width=_WIDTH, height=_HEIGHT
    )
    return chart


def _pick_trace(frame: pd.DataFrame) -> str:
    """The correlation id with the most hops (the earliest one on a tie)."""
    if frame.empty:
        raise ValueError("waterfall() got an empty frame: no trace to draw")
    sizes = frame.groupby("correlationid").agg(hops=("id", "size"), first=("emitted", "min"))
    sizes = sizes.sort_values(["hops", "first"], ascending=[False, True])
    return str(sizes.index[0])


def waterfall(
    frame: pd.DataFrame,
    correlationid: str | None = None,
    *,
    title: str | None = None,
) -> alt.LayerChart:
    """Chart one correlation id across services: each hop's queue time and handling time.

    A hop is one delivery of one event to one group (a retry is another hop).
    Its *queue* bar runs from ``emitted`` to ``received`` and its *handling* bar
    from ``received`` to ``handled``; hops are ordered by emission, so causation
    reads top to bottom. Introduced in lesson 10 (one order traced across four
    services).

    Args:
        frame: ``metrics.frame()``.
        correlationid: The trace to draw; default the one with the most hops.
        title: Chart title; default names the correlation id.

    Raises:
        ValueError: No row carries ``correlationid``.
    """
    _require(frame, METRICS_COLUMNS, "waterfall()")
    if correlationid is None:
        correlationid = _pick_trace(frame)
    trace = frame[frame["correlationid"].astype(str) == str(correlationid)]
    if trace.empty:
        raise ValueError(f"no handled event has correlationid {correlationid!r}")
    trace = trace.assign(
        emitted=_utc(trace["emitted"]),
        received=_utc(trace["received"]),
        handled=_utc(trace["handled"]),
    ).sort_values(["emitted", "received", "attempt"], kind="stable")
    origin = trace["emitted"].min()
    retry = np.where(
        trace["attempt"].astype("int64") > 1, " (attempt " + trace["attempt"].astype(str) + ")", ""
    )
    hop = [
        f"{n}. {group} ← {type_}{again}"
        for n, (group, type_, again) in enumerate(
            zip(trace["group"].astype(str), trace["type"].astype(str), retry, strict=True),
            start=1,
        )
    ]

    def ms(col: str) -> np.ndarray[Any, np.dtype[np.float64]]:
        values: np.ndarray[Any, np.dtype[np.float64]] = (
            (trace[col] - origin).dt.total_seconds() * 1000.0
        ).to_numpy(dtype="float64")
        return values

    common = {
        "hop": hop,
        "event": trace["id"].astype(str).to_numpy(),
        "outcome": trace["outcome"].astype(str).to_numpy(),
    }
    queued = pd.DataFrame(
        {
            **common,
            "phase": "queued",
            "start": ms("emitted"),
            "end": ms("received"),
        }
    )
    handling = pd.DataFrame(
        {
            **common,
            "phase": "handling",
            "start": ms("received"),
            "end": ms("handled"),
        }
    )
    bars_data = pd.concat([queued, handling], ignore_index=True)
    bars_data["ms"] = bars_data["end"] - bars_data["start"]
    y = alt.Y("hop:N", sort=hop, title=None, axis=alt.Axis(labelLimit=320))
    bars = (
        alt.Chart(bars_data)
        .mark_bar(height=14)
        .encode(
            x=alt.X("start:Q", title="ms since the first event was emitted"),
            x2="end:Q",
            y=y,
            color=alt.Color(
                "phase:N",
                title="phase",
                sort=["queued", "handling"],
                scale=alt.Scale(domain=["queued", "handling"], range=["#bab0ac", "#4c78a8"]),
            ),
            tooltip=["hop:N", "phase:N", alt.Tooltip("ms:Q", format=".1f"), "outcome:N", "event:N"],
        )
    )
    totals = bars_data.groupby("hop", as_index=False, sort=False).agg(end=("end", "max"))
    totals["label"] = totals["end"].map(lambda v: f"{v:.1f} ms")
    labels = alt.Chart(totals).mark_text(align="left", dx=4).encode(x="end:Q", y=y, text="label:N")
    chart: alt.LayerChart = alt.LayerChart(layer=[bars, labels]).properties(
        title=title or f"Trace {correlationid}",
        width=_WIDTH,
        height=max(60, 24 * len(hop)),
    )
    return chart


def convergence(
    frame: pd.DataFrame,
    *,
    faults: pd.DataFrame | None = None,
    origin: pd.Timestamp | None = None,
    title: str = "Aggregates where a projection disagrees with the log",
) -> alt.Chart | alt.LayerChart:
    """Chart how many aggregates disagree with the log over time, faults shaded.

    A dotted rule marks the moment the count reached zero for good (converged),
    when it did. Introduced in lesson 06 (time to converge); lesson 11 adds faults.

    Args:
        frame: The convergence checker's ``frames["convergence"]``: ``time, disagreeing``.
        faults: ``History.fault_windows()``, shaded behind the line.
        origin: Time zero of the x axis; default the first sample or fault.
        title: Chart title.
    """
    _require(frame, CONVERGENCE_COLUMNS, "convergence()")
    if origin is None:
        origin = _origin(frame["time"], None if faults is None else faults["start"])
    data = pd.DataFrame(
        {
            "seconds": _seconds(frame["time"], origin),
            "disagreeing": pd.to_numeric(frame["disagreeing"]).astype("int64"),
        }
    ).sort_values("seconds")
    data = _thin(data.assign(series="all"), ["series"], ["disagreeing"]).drop(columns="series")
    line = (
        alt.Chart(data)
        .mark_area(interpolate="step-after", line=True, opacity=0.35, color="#e45756")
        .encode(
            x=_x_seconds(),
            y=alt.Y("disagreeing:Q", title="aggregates disagreeing"),
            tooltip=[alt.Tooltip("seconds:Q", format=".2f"), "disagreeing:Q"],
        )
    )
    layers: list[alt.Chart] = [line]
    converged = _converged_at(data)
    if converged is not None:
        mark = pd.DataFrame({"seconds": [converged], "label": [f"converged at {converged:.1f} s"]})
        rule = alt.Chart(mark).mark_rule(strokeDash=[2, 2], color="#54a24b").encode(x="seconds:Q")
        text = (
            alt.Chart(mark)
            .mark_text(align="left", dx=4, dy=-6, color="#54a24b")
            .encode(x="seconds:Q", y=alt.value(0), text="label:N")
        )
        layers += [rule, text]
    chart = alt.LayerChart(layer=layers) if len(layers) > 1 else line
    until = float(data["seconds"].max()) if len(data) else 0.0
    return _with_faults(chart, faults, origin, until, title)


def _converged_at(data: pd.DataFrame) -> float | None:
    """Seconds at which ``disagreeing`` became 0 and stayed 0, if it ever disagreed."""
    if data.empty or data["disagreeing"].iloc[-1] != 0 or not (data["disagreeing"] > 0).any():
        return None
    last_bad = int(np.flatnonzero(data["disagreeing"].to_numpy() > 0)[-1])
    return float(data["seconds"].iloc[last_bad + 1])


def outcomes(
    frame: pd.DataFrame,
    *,
    show: Sequence[str] = ("retry", "dead"),
    bin_seconds: float = 1.0,
    faults: pd.DataFrame | None = None,
    origin: pd.Timestamp | None = None,
    title: str = "Retries and dead letters",
) -> alt.Chart | alt.LayerChart:
    """Chart retries and dead letters (or any outcomes) per time bin, stacked.

    Introduced in lesson 04 (retries that respect limits, then the dead-letter stream).

    Args:
        frame: ``metrics.frame()``; rows are counted at ``handled``.
        show: Outcomes to draw (``ok``, ``retry``, ``dead``, ``duplicate``).
        bin_seconds: Width of a bar in seconds; widened for long runs so the chart
            stays small (:func:`bin_width`).
        faults: Fault windows to shade.
        origin: Time zero; default the first handled event (of any outcome) or fault.
        title: Chart title.
    """
    _require(frame, METRICS_COLUMNS, "outcomes()")
    if origin is None:
        origin = _origin(frame["handled"], None if faults is None else faults["start"])
    rows = _ok(frame, show)
    at = _seconds(rows["handled"], origin)
    bin_seconds = bin_width(_span(at), labels=len(show), requested=bin_seconds)
    counts = _binned_counts(
        at, rows["outcome"].astype(str), bin_seconds=bin_seconds, categories=list(show)
    )
    counts["end"] = counts["seconds"] + bin_seconds
    palette = {"ok": "#54a24b", "retry": "#f58518", "dead": "#e45756", "duplicate": "#b279a2"}
    bars = (
        alt.Chart(counts)
        .mark_bar()
        .encode(
            # Pre-binned in pandas: "binned" keeps the bars vertical and stacked.
            x=alt.X("seconds:Q", bin="binned", title="seconds since start"),
            x2="end:Q",
            y=alt.Y("count:Q", title="events", stack="zero"),
            color=alt.Color(
                "label:N",
                title="outcome",
                sort=list(show),
                scale=alt.Scale(domain=list(show), range=[palette.get(o, "#9d755d") for o in show]),
            ),
            tooltip=["label:N", "count:Q", "seconds:Q"],
        )
    )
    until = float(counts["end"].max()) if len(counts) else 0.0
    return _with_faults(bars, faults, origin, until, title)


enable()
