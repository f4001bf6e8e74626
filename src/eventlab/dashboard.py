"""A live ipywidgets dashboard of streams and groups, with buttons that inject faults.

``show()`` displays a panel that an asyncio task refreshes about twice a second:
per stream and consumer group the stream length, lag (not yet delivered),
pending (delivered, not acknowledged), dead letters, a throughput sparkline of
events acknowledged per second, and each consumer with its pending count and
idle time. Buttons inject faults (pause the broker, kill a consumer, add
latency, partition, poison event, duplicate burst) and heal them all.

The panel is one HTML widget whose ``value`` is replaced on every tick: nothing
is appended to the cell's output, so a dashboard left running for an hour does
not flood the notebook (``clear_output()`` from a task races: docs/architecture.md,
"Charts offline").
Polling uses the asyncio client with a timeout, so a paused broker shows as
"not answering" instead of freezing the kernel. The task stops on
:meth:`Dashboard.close`, when the kernel stops, and when ``show()`` runs again;
until then the panel stays live after the lesson's last cell, for the learner
to play with. Saved in a notebook, it reads "re-run this cell to get the live
dashboard back" (see ``eventlab._jupyter``), never a widget whose model is gone.

Under the table a line says what the buttons act on: the consumer processes
still alive and the faults on the proxy. :meth:`Dashboard.press` clicks a
button from code (the lessons do, and assert the panel changed).

Introduced in lesson 05 (watching lag); lesson 10 uses the fault buttons.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import html
import inspect
import random
import re
import time
import weakref
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import ipywidgets as widgets
import redis
import redis.asyncio

from eventlab import streams as streams_mod
from eventlab.envelope import Event

__all__ = [
    "Action",
    "ConsumerStats",
    "Dashboard",
    "GroupStats",
    "Snapshot",
    "fault_actions",
    "show",
    "snapshot",
    "sparkline",
]

Action = Callable[[], Any]
"""A button's effect: a function or coroutine function of no arguments; its result is shown."""

_BARS = "▁▂▃▄▅▆▇█"
_DISCOVER_EVERY = 10  # ticks between SCANs for new streams: SCAN is the costly part
_LIVE: weakref.WeakSet[Dashboard] = weakref.WeakSet()


@dataclass(frozen=True, slots=True)
class ConsumerStats:
    """One consumer of a group (``XINFO CONSUMERS``).

    Attributes:
        name: The consumer name.
        pending: Entries delivered to it and not yet acknowledged.
        idle_seconds: Seconds since it last read or claimed.
    """

    name: str
    pending: int
    idle_seconds: float


@dataclass(frozen=True, slots=True)
class GroupStats:
    """One consumer group on one stream at one moment.

    Attributes:
        stream: The stream key.
        group: The group name.
        length: Entries in the stream (``XLEN``).
        lag: Entries not yet delivered to the group, or ``None`` when the server
            cannot tell (entries deleted or trimmed).
        pending: Entries delivered and not acknowledged.
        dead_letters: Entries in the stream's dead-letter stream (shared by its groups).
        entries_read: Entries the group has read so far, or ``None``.
        consumers: The group's consumers.
    """

    stream: str
    group: str
    length: int
    lag: int | None
    pending: int
    dead_letters: int
    entries_read: int | None
    consumers: tuple[ConsumerStats, ...] = ()

    @property
    def acknowledged(self) -> int | None:
        """Entries the group has read and acknowledged (``entries_read - pending``).

        A group that has read nothing yet reports no ``entries_read``; then
        ``length - lag`` (what it has read, if nothing was trimmed) stands in.
        """
        if self.entries_read is not None:
            return self.entries_read - self.pending
        if self.lag is not None:
            return self.length - self.lag - self.pending
        return None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the dashboard saw on one poll.

    Attributes:
        time: Wall-clock seconds (``time.time()``) when the poll finished.
        groups: One entry per (stream, group); streams without groups appear
            with ``group=""``.
        error: Why the poll failed (broker paused, gone, …), else ``None``.
    """

    time: float
    groups: tuple[GroupStats, ...] = ()
    error: str | None = None


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


async def discover(client: redis.asyncio.Redis) -> list[str]:
    """Return every stream of the current namespace except dead-letter streams."""
    found = [
        str(key)
        for pattern in streams_mod.key_patterns()
        async for key in client.scan_iter(match=pattern, _type="stream")
    ]
    return sorted(key for key in found if not key.endswith(":dlq"))


async def snapshot(client: redis.asyncio.Redis, streams: Sequence[str]) -> Snapshot:
    """Poll length, groups, dead letters and consumers of ``streams`` in two round trips.

    Args:
        client: An asyncio client (``decode_responses=True``).
        streams: Stream keys; a missing stream is skipped.

    Returns:
        A :class:`Snapshot` with ``error=None`` (connection errors propagate).
    """
    pipe = client.pipeline(transaction=False)
    for stream in streams:
        pipe.xlen(stream)
        pipe.xinfo_groups(stream)
        pipe.xlen(streams_mod.dlq_key(stream))
    replies = await pipe.execute(raise_on_error=False)
    found: list[tuple[str, int, list[dict[str, Any]], int]] = []
    for n, stream in enumerate(streams):
        length, groups, dead = replies[3 * n : 3 * n + 3]
        if isinstance(length, Exception) or isinstance(groups, Exception):
            continue  # the stream is gone (or never was): nothing to show
        found.append((stream, int(length), groups, 0 if isinstance(dead, Exception) else int(dead)))
    pipe = client.pipeline(transaction=False)
    for stream, _, groups, _ in found:
        for group in groups:
            pipe.xinfo_consumers(stream, group["name"])
    consumer_replies = iter(await pipe.execute(raise_on_error=False))
    rows: list[GroupStats] = []
    for stream, length, groups, dead in found:
        if not groups:
            rows.append(GroupStats(stream, "", length, None, 0, dead, None))
        for group in groups:
            reply = next(consumer_replies)
            consumers = (
                ()
                if isinstance(reply, Exception)
                else tuple(
                    ConsumerStats(str(c["name"]), int(c["pending"]), int(c["idle"]) / 1000.0)
                    for c in reply
                )
            )
            rows.append(
                GroupStats(
                    stream=stream,
                    group=str(group["name"]),
                    length=length,
                    lag=_int(group.get("lag")),
                    pending=int(group["pending"]),
                    dead_letters=dead,
                    entries_read=_int(group.get("entries-read")),
                    consumers=consumers,
                )
            )
    return Snapshot(time=time.time(), groups=tuple(rows))


def sparkline(values: Sequence[float]) -> str:
    """Draw ``values`` as block characters scaled to their maximum (``▁▃█``)."""
    if not values:
        return ""
    top = max(values)
    if top <= 0:
        return _BARS[0] * len(values)
    last = len(_BARS) - 1
    return "".join(_BARS[round(max(v, 0.0) / top * last)] for v in values)


@dataclass
class _Series:
    acked: int | None = None
    at: float = 0.0
    rates: deque[float] = field(default_factory=deque)


def _short(stream: str) -> str:
    # {lab:orders} (or an older lab:{orders}) -> orders: the namespace is the same on every row.
    ns = streams_mod.namespace()
    if stream.startswith(f"{{{ns}:") and stream.endswith("}"):
        return stream[len(ns) + 2 : -1]
    name = stream.removeprefix(f"{ns}:")
    return name[1:-1] if name.startswith("{") and name.endswith("}") else name


def _cell(value: object, field_: str) -> str:
    text = "-" if value is None else str(value)
    return f'<td class="el-{field_}">{html.escape(text)}</td>'


_STYLE = """<style>
.el-dash table{border-collapse:collapse;font-family:var(--jp-code-font-family,monospace);
font-size:12px}.el-dash th,.el-dash td{padding:2px 8px;text-align:right;
border-bottom:1px solid #ddd}.el-dash th{background:#f3f3f3}
.el-dash td.el-stream,.el-dash td.el-group,.el-dash td.el-consumers{text-align:left}
.el-dash td.el-spark{letter-spacing:-1px;color:#4c78a8}.el-dash .el-stale{color:#b00}
</style>"""
_HEAD = (
    "<tr><th>stream</th><th>group</th><th>length</th><th>lag</th><th>pending</th>"
    "<th>dead letters</th><th>acked/s</th><th>throughput</th>"
    "<th>consumers (pending, idle)</th></tr>"
)


class Dashboard:
    """The live panel: a widget, a polling task, and fault buttons.

    Build one with :func:`show` in a notebook. Tests and scripts may build it
    directly and call :meth:`refresh` themselves.

    Attributes:
        widget: The ipywidgets box to display.
        table: The HTML widget holding the stream/group table.
        status: The HTML widget with the last update time or error.
        buttons: Button label → button.
        last: The latest :class:`Snapshot`, or ``None`` before the first poll.
        ticks: Polls done so far.
    """

    def __init__(
        self,
        client: redis.asyncio.Redis,
        *,
        streams: Sequence[str] | None = None,
        interval: float = 0.5,
        timeout: float = 1.0,
        window: int = 40,
        actions: Mapping[str, Action] | None = None,
        title: str = "eventlab — streams and groups",
        describe: Callable[[], str] | None = None,
    ) -> None:
        """Create the widgets; nothing runs until :meth:`start` or :meth:`refresh`.

        Args:
            client: An asyncio client; the dashboard closes it in :meth:`close`.
            streams: Stream keys to watch; default every stream of the namespace
                (rediscovered every few seconds).
            interval: Seconds between polls.
            timeout: Seconds a poll may take before the broker counts as not answering.
            window: Throughput samples kept per group for the sparkline.
            actions: Button label → action; see :func:`show` for the default buttons.
            title: Heading shown above the table.
            describe: Returns the line shown under the table on every poll (what the
                buttons act on: processes alive, proxy faults); called off the loop.
        """
        if interval <= 0 or timeout <= 0:
            raise ValueError("interval and timeout must be positive seconds")
        self.client = client
        self.interval = interval
        self.timeout = timeout
        self.window = window
        self.last: Snapshot | None = None
        self.ticks = 0
        self._fixed = list(streams) if streams is not None else None
        self._streams: list[str] = list(streams or [])
        self._series: dict[tuple[str, str], _Series] = {}
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._busy: set[asyncio.Task[None]] = set()
        self.title = widgets.HTML(f"<b>{html.escape(title)}</b>")
        self.table = widgets.HTML(_STYLE + '<div class="el-dash">waiting for the first poll…</div>')
        self.status = widgets.HTML("")
        self.message = widgets.HTML("")
        self.message.add_class("el-message")
        self.faults = widgets.HTML("")
        self.faults.add_class("el-faults-line")
        self._describe = describe
        self.failures: list[str] = []
        self.buttons: dict[str, widgets.Button] = {}
        self._actions = dict(actions or {})
        for label, action in self._actions.items():
            button = widgets.Button(description=label, layout=widgets.Layout(width="auto"))
            button.on_click(lambda _b, a=action, n=label: self._on_click(n, a))
            self.buttons[label] = button
        self.widget = widgets.VBox(
            [
                self.title,
                self.table,
                self.faults,
                widgets.HBox(
                    list(self.buttons.values()), layout=widgets.Layout(flex_flow="row wrap")
                ),
                self.message,
                self.status,
            ]
        )
        self.widget.add_class("eventlab-dashboard")
        _LIVE.add(self)

    def __repr__(self) -> str:
        """Say whether it runs and how many polls it made (not the widget: show() displays it)."""
        state = "running" if self.running else "stopped"
        return f"<Dashboard {state}, {self.ticks} polls, {len(self._streams)} streams>"

    @property
    def running(self) -> bool:
        """Whether the polling task is alive."""
        return self._task is not None and not self._task.done()

    def rates(self, stream: str, group: str) -> list[float]:
        """Acknowledged events per second between consecutive polls, oldest first."""
        series = self._series.get((stream, group))
        return list(series.rates) if series else []

    async def refresh(self) -> Snapshot:
        """Poll the broker once and redraw; a slow or gone broker shows as an error line."""
        try:
            if self._fixed is None and self.ticks % _DISCOVER_EVERY == 0:
                self._streams = await asyncio.wait_for(discover(self.client), self.timeout)
            snap = await asyncio.wait_for(snapshot(self.client, self._streams), self.timeout)
        except (TimeoutError, redis.RedisError, OSError) as exc:
            reason = (
                "no answer" if isinstance(exc, TimeoutError) else str(exc) or type(exc).__name__
            )
            snap = Snapshot(
                time=time.time(),
                groups=self.last.groups if self.last else (),
                error=f"broker not answering ({reason}); paused or down?",
            )
        else:
            self._update_rates(snap)
        if self._describe is not None:
            line = await asyncio.to_thread(self._describe)
            self.faults.value = f'<span class="el-faults">{html.escape(line)}</span>'
        self.ticks += 1
        self.last = snap
        self._render(snap)
        return snap

    def _update_rates(self, snap: Snapshot) -> None:
        for row in snap.groups:
            series = self._series.setdefault(
                (row.stream, row.group), _Series(rates=deque(maxlen=self.window))
            )
            acked = row.acknowledged
            if series.acked is not None and acked is not None and snap.time > series.at:
                series.rates.append(max(0, acked - series.acked) / (snap.time - series.at))
            series.acked, series.at = acked, snap.time

    def _render(self, snap: Snapshot) -> None:
        body = []
        for row in snap.groups:
            rates = self.rates(row.stream, row.group)
            consumers = ", ".join(
                f"{c.name} ({c.pending}, {c.idle_seconds:.1f} s)" for c in row.consumers
            )
            body.append(
                "<tr>"
                + _cell(_short(row.stream), "stream")
                + _cell(row.group or "(no group)", "group")
                + _cell(row.length, "length")
                + _cell(row.lag, "lag")
                + _cell(row.pending, "pending")
                + _cell(row.dead_letters, "dead")
                + _cell(f"{rates[-1]:.0f}" if rates else None, "rate")
                + _cell(sparkline(rates), "spark")
                + _cell(consumers or "none", "consumers")
                + "</tr>"
            )
        if not body:
            body.append('<tr><td colspan="9">no streams yet</td></tr>')
        stale = ' el-stale"' if snap.error else '"'
        self.table.value = (
            f'{_STYLE}<div class="el-dash{stale}><table>{_HEAD}{"".join(body)}</table></div>'
        )
        clock = time.strftime("%H:%M:%S", time.localtime(snap.time))
        text = snap.error or f"live · {clock} · poll {self.ticks}"
        color = "#b00" if snap.error else "#666"
        self.status.value = (
            f'<span class="el-status" style="color:{color}">{html.escape(text)}</span>'
        )

    def start(self) -> None:
        """Start polling every ``interval`` seconds on the running event loop.

        Raises:
            RuntimeError: No event loop runs here (call it from a notebook or async code).
        """
        if self._closed:
            raise RuntimeError("this dashboard was closed; call eventlab.dashboard.show() again")
        if self.running:
            return
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                "Dashboard.start() needs a running event loop: call it in a notebook "
                "(JupyterLab runs one) or from async code"
            ) from None
        self._task = self._loop.create_task(self._run(), name="eventlab-dashboard")

    async def _run(self) -> None:
        while not self._closed:
            began = time.monotonic()
            await self.refresh()
            await asyncio.sleep(max(0.0, self.interval - (time.monotonic() - began)))

    def _on_click(self, label: str, action: Action) -> None:
        loop = self._loop
        if loop is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                loop = asyncio.new_event_loop()
                try:
                    loop.run_until_complete(self._act(label, action))
                finally:
                    loop.close()
                return
        # Comm messages may arrive on another thread than the loop's: hand over safely.
        loop.call_soon_threadsafe(self._spawn, label, action)

    def _spawn(self, label: str, action: Action) -> None:
        task = asyncio.get_running_loop().create_task(self._act(label, action))
        self._busy.add(task)
        task.add_done_callback(self._busy.discard)

    async def _act(self, label: str, action: Action) -> None:
        self.message.value = f"<i>{html.escape(label)}…</i>"
        try:
            if inspect.iscoroutinefunction(action):
                result = await action()
            else:
                # Blocking effects (killing a process, waiting for it) stay off the loop.
                result = await asyncio.to_thread(action)
                if inspect.isawaitable(result):
                    result = await result
        except Exception as exc:  # noqa: BLE001 - a failed fault must not stop the dashboard
            text = f"{label}: failed — {type(exc).__name__}: {exc}"
            self.failures.append(text)
            self.message.value = f'<span style="color:#b00">{html.escape(text)}</span>'
            return
        done = f"{label}: done" + ("" if result is None else f" — {result}")
        self.message.value = html.escape(done)

    async def press(self, label: str) -> str:
        """Click the button ``label`` from code, then poll once; return what it reported.

        Raises:
            KeyError: No such button.
            RuntimeError: The button's fault failed (the message says why).
        """
        action = self._actions[label]
        failed = len(self.failures)
        await self._act(label, action)
        await self.refresh()
        if len(self.failures) > failed:
            raise RuntimeError(self.failures[-1])
        return re.sub(r"<[^>]+>", "", self.message.value)

    def shown(self) -> str:
        """The numbers and lines the panel shows, without what moves by itself.

        Per row: stream, group, length, lag, pending, dead letters; then the
        line of what the buttons act on, and the error if the last poll failed.
        The clock, idle times and rates are left out, so two calls differ only
        when something happened.
        """
        snap = self.last
        rows = [
            f"{_short(row.stream)}/{row.group or '-'}: length {row.length} lag {row.lag} "
            f"pending {row.pending} dead {row.dead_letters}"
            for row in (snap.groups if snap is not None else ())
        ]
        rows.append(re.sub(r"<[^>]+>", "", self.faults.value))
        if snap is not None and snap.error:
            rows.append(snap.error)
        return " | ".join(rows)

    def close(self) -> None:
        """Stop polling, close the widgets and the client. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        _LIVE.discard(self)
        if self._task is not None and not self._task.done():
            self._task.cancel()
        loop = self._loop
        if loop is not None and loop.is_running() and not loop.is_closed():
            closing = loop.create_task(self.client.aclose())
            self._busy.add(closing)
        self.widget.close()
        children = (self.title, self.table, self.faults, self.status, self.message)
        for child in (*children, *self.buttons.values()):
            child.close()


def _close_all() -> None:
    for dash in list(_LIVE):
        with contextlib.suppress(Exception):
            dash.close()


# A kernel that stops (shutdown or restart) exits its process: stop polling first.
atexit.register(_close_all)


def show(
    client: redis.asyncio.Redis | None = None,
    *,
    streams: Sequence[str] | None = None,
    interval: float = 0.5,
    actions: Mapping[str, Action] | None = None,
    faults: bool = True,
    replace: bool = True,
    **fault_options: Any,
) -> Dashboard:
    """Display the live dashboard in the notebook and start refreshing it.

    Introduced in lesson 05; lesson 10 injects faults with its buttons.

    Args:
        client: An asyncio client; default one for the course broker (``broker.up()``).
        streams: Stream keys to watch; default every stream of the namespace.
        interval: Seconds between refreshes (0.5 is about twice a second).
        actions: Extra or replacement buttons: label → function of no arguments.
        faults: Add the default fault buttons (see ``fault_options``).
        replace: Close dashboards shown earlier in this kernel, so re-running
            the cell does not stack polling tasks.
        **fault_options: Passed to :func:`fault_actions`: ``broker``, ``stream``
            (where poison and duplicates go; default the one stream watched,
            if only one), ``consumers`` (processes a kill may pick; a list
            you extend later is seen), ``proxy``, ``pause_seconds``,
            ``latency_seconds``, ``burst``, ``seed``, ``history``.

    Returns:
        The running :class:`Dashboard`; call ``.close()`` to stop it.
    """
    from IPython.display import display  # noqa: PLC0415 - only needed in a notebook

    from eventlab import broker as broker_mod  # noqa: PLC0415

    if replace:
        _close_all()
    handle = fault_options.get("broker")
    if client is None:
        handle = handle or broker_mod.up()
        fault_options["broker"] = handle
        client = handle.async_client(socket_connect_timeout=1.0)
    if streams is not None and len(streams) == 1:
        # One watched stream: the obvious target of poison events and duplicates.
        fault_options.setdefault("stream", streams[0])
    buttons: dict[str, Action] = {}
    describe = None
    if faults:
        state = _Faults(**{**_FAULT_DEFAULTS, **fault_options})
        buttons.update(state.actions())
        describe = state.describe
    buttons.update(actions or {})
    dash = Dashboard(client, streams=streams, interval=interval, actions=buttons, describe=describe)
    display(_Saved(dash.widget))  # type: ignore[no-untyped-call]
    dash.start()
    return dash


class _Saved:
    """Displays a widget whose saved text asks for a re-run (a reload cannot bring it back)."""

    def __init__(self, widget: widgets.Widget) -> None:
        self.widget = widget

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        from eventlab._jupyter import DASHBOARD_GONE  # noqa: PLC0415

        bundle: dict[str, Any] = self.widget._repr_mimebundle_(**kwargs)
        bundle["text/plain"] = DASHBOARD_GONE
        return bundle


class _Faults:
    """The state behind the fault buttons: what is on, so Heal can undo it."""

    def __init__(
        self,
        *,
        broker: Any,
        stream: str | None,
        consumers: Sequence[Any] | Mapping[str, Any],
        proxy: Any,
        pause_seconds: float,
        latency_seconds: float,
        burst: int,
        seed: int,
        history: Any,
    ) -> None:
        self.broker = broker
        self.stream = stream
        # A list is kept, not copied: a consumer the notebook starts later can be killed too.
        self.consumers: list[Any] = (
            consumers
            if isinstance(consumers, list)
            else list(consumers.values() if isinstance(consumers, Mapping) else consumers)
        )
        self.proxy = proxy
        self.pause_seconds = pause_seconds
        self.latency_seconds = latency_seconds
        self.burst = burst
        self.rng = random.Random(seed)  # noqa: S311 - a repeatable demo, not cryptography
        self.history = history
        self.applied: list[Any] = []

    def _broker(self) -> Any:
        if self.broker is None:
            from eventlab import broker as broker_mod  # noqa: PLC0415

            self.broker = broker_mod.up()
        return self.broker

    def _proxy(self) -> Any:
        from eventlab import faults  # noqa: PLC0415

        return self.proxy if self.proxy is not None else faults.current()

    def _stream(self) -> str:
        if self.stream is None:
            raise ValueError("no stream given: show(stream=streams.stream_key('orders'))")
        return self.stream

    def pause(self) -> str:
        from eventlab import faults  # noqa: PLC0415

        handle = faults.pause_broker(self._broker(), self.pause_seconds, history=self.history)
        self.applied.append(handle)
        return f"broker frozen for {self.pause_seconds:g} s"

    def kill(self) -> str:
        from eventlab import faults  # noqa: PLC0415

        alive = [proc for proc in self.consumers if proc.alive]
        if not alive:
            raise ValueError("no live consumer process: show(consumers=[proc, ...])")
        proc = self.rng.choice(alive)
        faults.kill_consumer(proc, history=self.history)
        return f"killed {proc.name} (pid {proc.pid})"

    def latency(self) -> str:
        handle = self._proxy().latency(self.latency_seconds, history=self.history)
        self.applied.append(handle)
        return f"+{self.latency_seconds * 1000:.0f} ms on every reply through the proxy"

    def partition(self) -> str:
        handle = self._proxy().partition(history=self.history)
        self.applied.append(handle)
        return "proxy partitioned (bytes held until Heal)"

    def poison(self) -> str:
        from eventlab import faults  # noqa: PLC0415

        client = self._broker().client()
        try:
            entry = streams_mod.publish(client, self._stream(), faults.poison_event())
        finally:
            client.close()
        if self.history is not None:
            self.history.nemesis("poison", "start", entry=entry)
            self.history.nemesis("poison", "stop")
        return f"poison event {entry} on {_short(self._stream())}"

    def duplicate(self) -> str:
        from eventlab import faults  # noqa: PLC0415

        stream = self._stream()
        client = self._broker().client()
        try:
            # Re-publish recent events with their ids: what a producer retry does.
            recent = client.xrevrange(stream, count=self.burst)
            events = [Event.from_fields(fields) for _, fields in reversed(recent)]
            copies = faults.duplicate_burst(events, fraction=1.0, seed=self.rng.randrange(2**31))
            again = copies[1::2]
            streams_mod.publish_many(client, stream, again)
        finally:
            client.close()
        if self.history is not None:
            self.history.nemesis("duplicate-burst", "start", count=len(again))
            self.history.nemesis("duplicate-burst", "stop")
        return f"{len(again)} events re-published with their ids on {_short(stream)}"

    def _current_proxy(self) -> Any:
        from eventlab import faults  # noqa: PLC0415

        if self.proxy is not None:
            return self.proxy
        try:
            return faults.current()
        except faults.FaultError:
            return None

    def describe(self) -> str:
        """What the buttons act on now: consumer processes alive, faults on the proxy."""
        parts = []
        if self.consumers:
            alive = sum(1 for proc in self.consumers if proc.alive)
            parts.append(f"consumer processes alive: {alive} of {len(self.consumers)}")
        proxy = self._current_proxy()
        if proxy is not None:
            try:
                directions = proxy.status()["directions"]
            except Exception as exc:  # noqa: BLE001 - a closed proxy is shown, not raised
                parts.append(f"proxy: {exc}")
            else:
                on = []
                for name, fault in sorted(directions.items()):
                    if fault.get("latency"):
                        on.append(f"+{fault['latency'] * 1000:.0f} ms {name}")
                    if fault.get("partition"):
                        on.append(f"partitioned {name}")
                parts.append("proxy: " + (", ".join(on) or "no faults"))
        return " · ".join(parts) or "no consumer processes or fault proxy given"

    def actions(self) -> dict[str, Action]:
        """Button label → action."""
        return {
            f"Pause broker {self.pause_seconds:g} s": self.pause,
            "Kill a consumer": self.kill,
            "Add latency": self.latency,
            "Partition": self.partition,
            "Poison event": self.poison,
            "Duplicate burst": self.duplicate,
            "Heal": self.heal,
        }

    def heal(self) -> str:
        from eventlab import faults  # noqa: PLC0415

        undone = 0
        while self.applied:
            self.applied.pop().undo()
            undone += 1
        proxy = self.proxy
        if proxy is None:
            with contextlib.suppress(faults.FaultError):
                proxy = faults.current()
        if proxy is not None:
            proxy.heal(history=self.history)
        return f"healed ({undone} fault{'s' * (undone != 1)} undone, proxy cleared)"


def fault_actions(
    *,
    broker: Any = None,
    stream: str | None = None,
    consumers: Sequence[Any] | Mapping[str, Any] = (),
    proxy: Any = None,
    pause_seconds: float = 3.0,
    latency_seconds: float = 0.2,
    burst: int = 10,
    seed: int = 0,
    history: Any = None,
) -> dict[str, Action]:
    """Return the dashboard's fault buttons (label → action), all through ``eventlab.faults``.

    A button whose fault cannot apply here (no proxy, no consumer process, no
    stream) says why when pressed, with the fix, and the dashboard keeps running.

    Args:
        broker: The ``Broker`` to pause; default ``broker.up()`` at first use.
        stream: The stream key poison events and duplicate bursts go to.
        consumers: Consumer processes (``processes.Proc``, or name → Proc); a kill
            picks a live one, seeded.
        proxy: The fault proxy for latency and partition; default ``faults.current()``.
        pause_seconds: How long "Pause broker" freezes it.
        latency_seconds: What "Add latency" adds to every reply through the proxy.
        burst: Recent events re-published (same ids) by "Duplicate burst".
        seed: Seeds the choice of consumer to kill, so a demo repeats.
        history: A ``History`` that records each fault (for shaded charts).
    """
    return _Faults(
        broker=broker,
        stream=stream,
        consumers=consumers,
        proxy=proxy,
        pause_seconds=pause_seconds,
        latency_seconds=latency_seconds,
        burst=burst,
        seed=seed,
        history=history,
    ).actions()


_FAULT_DEFAULTS: dict[str, Any] = {
    "broker": None,
    "stream": None,
    "consumers": (),
    "proxy": None,
    "pause_seconds": 3.0,
    "latency_seconds": 0.2,
    "burst": 10,
    "seed": 0,
    "history": None,
}
