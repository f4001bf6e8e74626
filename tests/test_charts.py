"""Charts are functions of the contract frames; their specs are checked with to_dict()."""

from __future__ import annotations

import base64
import importlib.util
import io
import re
from pathlib import Path
from typing import Any

import altair as alt
import pandas as pd
import pytest
import vl_convert as vlc
from fontTools.ttLib import TTFont

from eventlab import charts


def _load_frames() -> Any:
    # The browser test's notebook imports the same module from its own folder.
    path = Path(__file__).parent / "browser" / "chart_frames.py"
    spec = importlib.util.spec_from_file_location("chart_frames", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_frames = _load_frames()
T0 = _frames.T0
convergence_frame = _frames.convergence_frame
fault_windows = _frames.fault_windows
lag_frame = _frames.lag_frame
metrics_frame = _frames.metrics_frame


def _layers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for layer in spec.get("layer", [spec]):
        out.extend(_layers(layer) if "layer" in layer else [layer])
    return out


def _mark(layer: dict[str, Any]) -> str:
    mark = layer["mark"]
    return mark if isinstance(mark, str) else mark["type"]


def _data(spec: dict[str, Any], mark: str, *, nth: int = 0) -> pd.DataFrame:
    """The rows behind the ``nth`` layer drawn with ``mark``."""
    layers = [layer for layer in _layers(spec) if _mark(layer) == mark]
    layer = layers[nth]
    name = (layer.get("data") or spec["data"])["name"]
    return pd.DataFrame(spec["datasets"][name])


def _handled(rows: list[tuple[float, str, str, float]]) -> pd.DataFrame:
    """A metrics frame from (handled seconds, group, outcome, latency ms) tuples."""
    records = []
    for n, (at, group, outcome, millis) in enumerate(rows):
        handled = T0 + pd.Timedelta(seconds=at)
        emitted = handled - pd.Timedelta(milliseconds=millis)
        records.append(
            {
                "id": f"e{n}",
                "type": "OrderPlaced",
                "correlationid": f"c{n}",
                "causationid": f"c{n}",
                "source": "orders",
                "stream": "lab:{orders}",
                "group": group,
                "consumer": f"{group}-1",
                "emitted": emitted,
                "received": emitted,
                "handled": handled,
                "attempt": 1,
                "outcome": outcome,
            }
        )
    return pd.DataFrame(records)


def test_import_enables_the_offline_svg_renderer():
    """Importing eventlab.charts selects the svg renderer, which returns SVG, not a CDN page."""
    alt.renderers.enable("default")
    charts.enable()
    assert alt.renderers.active == "svg" == charts.RENDERER
    bundle = alt.renderers.get()(charts.lag(lag_frame()).to_dict())
    bundle = bundle[0] if isinstance(bundle, tuple) else bundle
    assert list(bundle) == ["image/svg+xml"]
    assert bundle["image/svg+xml"].startswith("<svg")
    assert "cdn.jsdelivr" not in bundle["image/svg+xml"]


def test_every_chart_draws_to_svg_with_marks():
    """Each chart's spec is valid Vega-Lite v6: vl-convert draws it with marks and fault shading."""
    frame, faults = metrics_frame(), fault_windows()
    drawn = {
        "lag": charts.lag(lag_frame(), faults=faults),
        "throughput": charts.throughput(frame, faults=faults),
        "latency": charts.latency(frame),
        "waterfall": charts.waterfall(frame),
        "convergence": charts.convergence(convergence_frame(), faults=faults),
        "outcomes": charts.outcomes(frame, faults=faults),
    }
    for name, chart in drawn.items():
        svg = vlc.vegalite_to_svg(chart.to_dict())
        assert 'class="marks"' in svg, name
        assert "mark-" in svg, name
    assert "partition" in vlc.vegalite_to_svg(drawn["lag"].to_dict())


def test_lag_chart_draws_lag_and_pending_per_group_with_faults_shaded():
    """lag(): a series per stream·group, lag and pending as measures, faults as rects (s)."""
    spec = charts.lag(lag_frame(), faults=fault_windows()).to_dict()
    shade = _data(spec, "rect")
    assert shade[["start", "end"]].to_numpy().tolist() == [[5.0, 8.0], [12.0, 15.0]]
    assert shade["fault"].tolist() == ["pause", "partition"]
    lines = _data(spec, "line")
    assert set(lines["series"]) == {"orders · billing", "orders · inventory"}
    assert set(lines["measure"]) == {"lag", "pending"}
    billing = lines[(lines["series"] == "orders · billing") & (lines["measure"] == "lag")]
    assert billing["events"].max() == 180
    assert billing.loc[billing["events"].idxmax(), "seconds"] == 8.0
    assert spec["resolve"]["scale"]["color"] == "independent"


def test_lag_chart_without_faults_is_a_single_chart():
    """With no fault windows the chart has no shading layer."""
    spec = charts.lag(lag_frame()).to_dict()
    assert "layer" not in spec
    assert _mark(spec) == "line"


def test_lag_thins_long_runs_but_keeps_peaks():
    """10,000 samples per group become at most 600 points, and the peak survives."""
    times = T0 + pd.to_timedelta(range(10_000), unit="ms")
    lags = [0] * 10_000
    lags[7_777] = 999
    frame = pd.DataFrame(
        {
            "time": times,
            "stream": "s",
            "group": "g",
            "length": 1,
            "lag": lags,
            "pending": 0,
        }
    )
    lines = _data(charts.lag(frame).to_dict(), "line")
    assert len(lines[lines["measure"] == "lag"]) <= 600
    assert lines["events"].max() == 999


def test_throughput_counts_ok_events_per_second_per_group_with_idle_zeros():
    """throughput(): ok rows per bin / bin width; an idle second shows as 0; retries not counted."""
    rows = [(0.1, "a", "ok", 1)] * 4 + [(0.5, "a", "retry", 1)] + [(2.2, "a", "ok", 1)] * 2
    rows += [(0.3, "b", "ok", 1)]
    spec = charts.throughput(_handled(rows)).to_dict()
    data = _data(spec, "line").sort_values(["label", "seconds"])
    a = data[data["label"] == "a"]
    assert a["seconds"].tolist() == [0.0, 1.0, 2.0]
    assert a["rate"].tolist() == [4.0, 0.0, 2.0]
    half = _data(charts.throughput(_handled(rows), bin_seconds=0.5).to_dict(), "line")
    assert half[(half["label"] == "a") & (half["seconds"] == 0.0)]["rate"].item() == 8.0


def test_latency_marks_p50_p95_p99_at_the_pandas_quantiles():
    """latency(): a histogram of handled - emitted in ms with rules at exact quantiles."""
    rows = [(1.0, "a", "ok", float(ms)) for ms in range(1, 101)] + [(1.0, "a", "dead", 5000.0)]
    frame = _handled(rows)
    assert charts.latency_percentiles(frame) == pytest.approx(
        {"p50": 50.5, "p95": 95.05, "p99": 99.01}
    )
    spec = charts.latency(frame, bins=10).to_dict()
    hist = _data(spec, "bar")
    assert hist["events"].sum() == 100  # the dead letter is not an end-to-end latency
    assert len(hist) == 10
    rules = _data(spec, "rule")
    assert rules["name"].tolist() == ["p50", "p95", "p99"]
    assert rules["ms"].tolist() == pytest.approx([50.5, 95.05, 99.01])
    assert rules["label"].tolist()[0] == "p50 50.5 ms"


def test_latency_percentiles_refuses_a_frame_with_nothing_handled():
    """No ok rows: a clear error instead of NaN percentiles."""
    with pytest.raises(ValueError, match="no handled events"):
        charts.latency_percentiles(_handled([(1.0, "a", "dead", 3.0)]))


def test_waterfall_shows_each_hop_queue_and_handling_time_in_order():
    """waterfall(): per hop a 'queued' bar emitted→received, a 'handling' bar received→handled."""
    frame = metrics_frame(orders=5, seed=3)
    trace_id = frame["correlationid"].iloc[0]
    trace = frame[frame["correlationid"] == trace_id].sort_values("emitted")
    spec = charts.waterfall(frame, trace_id).to_dict()
    bars = _data(spec, "bar")
    assert set(bars["phase"]) == {"queued", "handling"}
    assert len(bars) == 2 * len(trace)
    hops = bars[bars["phase"] == "queued"]["hop"].tolist()
    assert hops[0].startswith("1. inventory ← OrderPlaced")
    assert [h.split(". ")[1].split(" ←")[0] for h in hops][:1] == ["inventory"]
    first = trace.iloc[0]
    queued = bars[(bars["phase"] == "queued")].iloc[0]
    handling = bars[(bars["phase"] == "handling")].iloc[0]
    assert queued["start"] == 0.0
    expected_queue = (first["received"] - first["emitted"]).total_seconds() * 1000
    expected_handling = (first["handled"] - first["received"]).total_seconds() * 1000
    assert queued["ms"] == pytest.approx(expected_queue)
    assert handling["ms"] == pytest.approx(expected_handling)
    assert spec["title"] == f"Trace {trace_id}"


def test_waterfall_picks_the_longest_trace_and_rejects_unknown_ids():
    """Without an id the trace with most hops (earliest on a tie) is drawn; unknown ids fail."""
    frame = metrics_frame(orders=10, seed=1)
    sizes = frame.groupby("correlationid").agg(hops=("id", "size"), first=("emitted", "min"))
    most = sizes[sizes["hops"] == sizes["hops"].max()]
    longest = most["first"].idxmin()  # a tie goes to the earliest trace
    assert charts.waterfall(frame).to_dict()["title"] == f"Trace {longest}"
    with pytest.raises(ValueError, match="no handled event has correlationid 'nope'"):
        charts.waterfall(frame, "nope")


def test_convergence_shades_faults_and_marks_when_disagreement_ended():
    """convergence(): step area of disagreeing aggregates; a rule where it reached 0 for good."""
    spec = charts.convergence(convergence_frame(), faults=fault_windows()).to_dict()
    area = _data(spec, "area")
    assert area["disagreeing"].max() == 9
    rule = _data(spec, "rule")
    assert rule["seconds"].tolist() == [17.0]
    assert rule["label"].tolist() == ["converged at 17.0 s"]
    assert _data(spec, "rect")["fault"].tolist() == ["pause", "partition"]


def test_convergence_without_reaching_zero_has_no_converged_mark():
    """A run still disagreeing at its end is not called converged."""
    frame = convergence_frame()
    frame.loc[frame.index[-1], "disagreeing"] = 1
    spec = charts.convergence(frame).to_dict()
    assert not [layer for layer in _layers(spec) if _mark(layer) == "rule"]


def test_outcomes_counts_retries_and_dead_letters_per_bin_with_zeros():
    """outcomes(): stacked counts per bin for each requested outcome, zero-filled."""
    rows = [(0.2, "a", "retry", 1), (0.4, "a", "retry", 1), (0.6, "a", "ok", 1)]
    rows += [(2.5, "a", "dead", 1)]
    spec = charts.outcomes(_handled(rows)).to_dict()
    data = _data(spec, "bar").pivot_table(index="seconds", columns="label", values="count")
    assert data.to_dict("index") == {
        0.0: {"dead": 0, "retry": 2},
        1.0: {"dead": 0, "retry": 0},
        2.0: {"dead": 1, "retry": 0},
    }


def test_missing_columns_are_named_in_the_error():
    """A frame that breaks the contract fails loudly, naming what is missing."""
    with pytest.raises(ValueError, match=r"lag\(\) needs columns pending"):
        charts.lag(lag_frame().drop(columns="pending"))
    with pytest.raises(ValueError, match="fault windows needs columns fault"):
        charts.lag(lag_frame(), faults=fault_windows().drop(columns="fault"))
    with pytest.raises(ValueError, match="bin_seconds must be a positive"):
        charts.throughput(metrics_frame(), bin_seconds=0)


def test_fault_without_an_end_is_shaded_to_the_last_sample():
    """A fault still active at the end of the run (end NaT) is shaded to the last sample."""
    faults = fault_windows()
    faults.loc[1, "end"] = pd.NaT
    shade = _data(charts.lag(lag_frame(), faults=faults).to_dict(), "rect")
    assert shade["end"].tolist() == [8.0, 20.0]


async def test_charts_draw_real_frames_from_metrics_history_and_checker(broker, client):
    """Real frames: a two-service run with a dead letter, lag samples, a fault, a convergence."""
    from datetime import UTC, datetime  # noqa: PLC0415

    from eventlab import checker, streams  # noqa: PLC0415
    from eventlab.consumer import Effects, PermanentError, Reliable  # noqa: PLC0415
    from eventlab.envelope import Event  # noqa: PLC0415
    from eventlab.history import History  # noqa: PLC0415
    from eventlab.metrics import Metrics  # noqa: PLC0415

    orders, payments = streams.stream_key("orders"), streams.stream_key("payments")
    placed = [Event(type="OrderPlaced", source="orders", data={"n": n}) for n in range(30)]
    placed.append(Event(type="OrderPlaced", source="orders", data={"poison": True}))
    metrics, history = Metrics(), History()
    reliable = Reliable(broker.url, metrics=metrics)

    # publishing to another stream spans two hash slots: one broker only
    @reliable.subscriber(orders, group="billing", start="0", batch=10, cluster_safe=False)
    async def bill(event: Event, effects: Effects) -> None:
        if event.data.get("poison"):
            raise PermanentError("cannot bill a poison order")
        effects.publish(payments, event.follow(type="PaymentCaptured", source="billing", data={}))

    @reliable.subscriber(payments, group="courier", start="0", batch=10)
    async def ship(event: Event) -> None:
        del event

    metrics.sample(client, [orders])  # before the events: no group yet, no row
    with history.fault("pause"):
        streams.publish_many(client, orders, placed)
        metrics.sample(client, [orders])
    async with reliable:
        assert await reliable.drain(timeout=20)
    metrics.sample(client, [orders, payments])
    now = pd.Timestamp(datetime.now(UTC))
    verdict = checker.convergence(
        pd.DataFrame({"time": [now - pd.Timedelta(seconds=1), now], "disagreeing": [4, 0]}),
        heal=now - pd.Timedelta(seconds=1),
        within=5,
    )

    frame, lags, faults = metrics.frame(), metrics.lag_frame(), history.fault_windows()
    assert (frame["outcome"] == "dead").sum() == 1
    trace = placed[0].correlationid
    drawn = {
        "lag": charts.lag(lags, faults=faults),
        "throughput": charts.throughput(frame, faults=faults),
        "latency": charts.latency(frame),
        "waterfall": charts.waterfall(frame, trace),
        "convergence": charts.convergence(verdict.frames["convergence"], faults=faults),
        "outcomes": charts.outcomes(frame, faults=faults),
    }
    for name, chart in drawn.items():
        assert 'class="marks"' in vlc.vegalite_to_svg(chart.to_dict()), name
    hops = _data(drawn["waterfall"].to_dict(), "bar")
    assert sorted(set(hops["hop"])) == ["1. billing ← OrderPlaced", "2. courier ← PaymentCaptured"]
    assert (hops["ms"] >= 0).all()
    assert _data(drawn["outcomes"].to_dict(), "bar").groupby("label")["count"].sum()["dead"] == 1
    assert _data(drawn["lag"].to_dict(), "rect")["fault"].tolist() == ["pause"]
    rules = _data(drawn["latency"].to_dict(), "rule")
    assert rules["name"].tolist() == ["p50", "p95", "p99"]
    assert (rules["ms"] > 0).all()
    assert _data(drawn["throughput"].to_dict(), "line").groupby("label")[
        "count"
    ].sum().to_dict() == {
        "billing": 30,
        "courier": 30,
    }


def test_long_runs_are_binned_by_span_so_charts_stay_small():
    """A 3-hour frame draws without MaxRowsError: bins widen, rates stay per second."""
    hours = 3 * 3600
    rows = [(float(t), g, "ok", 1.0) for t in range(0, hours, 20) for g in ("a", "b", "c")]
    rows += [(float(t), "a", o, 1.0) for t in range(5, hours, 60) for o in ("retry", "dead")]
    frame = _handled(rows)
    line = _data(charts.throughput(frame).to_dict(), "line")
    assert len(line) <= 2_000
    width = charts.bin_width(hours - 20, labels=3)
    assert width > 1.0
    a = line[line["label"] == "a"]
    # one event every 20 s is 0.05 events/s, whatever the bin width
    assert a["rate"].iloc[1:-1].mean() == pytest.approx(0.05, rel=0.05)
    bars = _data(charts.outcomes(frame).to_dict(), "bar")
    assert len(bars) <= 2_000
    assert bars["count"].sum() == len([r for r in rows if r[2] in {"retry", "dead"}])
    # a short run keeps the bin width asked for
    assert charts.bin_width(300.0, labels=4) == 1.0
    assert charts.bin_width(300.0, labels=2, requested=0.5) == 0.5


def test_svg_embeds_every_glyph_of_its_text_in_the_font_it_was_laid_out_with():
    """The SVG names charts.FONT and embeds a font face holding every character it draws."""
    frame = pd.DataFrame({"x": ["orders → billing", "ünïcode · µs"], "y": [1, 2]})
    chart = alt.Chart(frame).mark_bar().encode(x="y:Q", y="x:N").properties(title="Bold title")
    svg = alt.renderers.get()(chart.to_dict())["image/svg+xml"]
    assert f'font-family="{charts.FONT}"' in svg
    assert "sans-serif" not in svg
    faces = re.findall(r"font-weight:(\w+);src:url\(data:font/woff;base64,([^)]+)\)", svg)
    assert {weight for weight, _ in faces} == {"normal", "bold"}
    drawn = set("".join(re.findall(r"<text[^>]*>([^<]*)</text>", svg))) - {" "}
    covered: set[str] = set()
    for _, data in faces:
        font = TTFont(io.BytesIO(base64.b64decode(data)))
        covered |= {chr(code) for code in font.getBestCmap()}
    assert "→" in drawn
    assert drawn <= covered


def test_embed_font_leaves_an_svg_without_text_alone():
    """An SVG with no text gets no font (nothing to draw)."""
    blank = '<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"><rect/></svg>'
    assert charts.embed_font(blank) == blank
