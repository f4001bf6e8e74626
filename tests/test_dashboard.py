"""The live dashboard polls the real broker, redraws one widget, and runs fault buttons."""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from collections.abc import Callable

import pytest

from eventlab import dashboard, faults, streams
from eventlab.envelope import Event

STREAM = streams.stream_key("orders")


def _events(n: int) -> list[Event]:
    return [Event(type="OrderPlaced", source="orders", data={"n": i}) for i in range(n)]


def _cells(dash: dashboard.Dashboard, field: str) -> list[str]:
    return re.findall(rf'<td class="el-{field}">([^<]*)</td>', dash.table.value)


@pytest.fixture
async def aclient(broker, client):
    """An asyncio client on the FLUSHALLed session broker."""
    del client  # requested for its FLUSHALL
    c = broker.async_client()
    yield c
    await c.aclose()


def _read(client, group: str, consumer: str, count: int) -> list[str]:
    reply = client.xreadgroup(group, consumer, {STREAM: ">"}, count=count)
    return [entry_id for _, rows in reply for entry_id, _ in rows]


async def test_snapshot_reports_length_lag_pending_dead_letters_and_consumers(client, aclient):
    """snapshot(): XLEN, XINFO GROUPS lag/pending, the DLQ length and each consumer's pending."""
    streams.create_group(client, STREAM, "billing", start="0")
    streams.create_group(client, STREAM, "inventory", start="0")
    streams.publish_many(client, STREAM, _events(10))
    ids = _read(client, "billing", "billing-1", 4)
    client.xack(STREAM, "billing", *ids[:1])
    client.xadd(streams.dlq_key(STREAM), {"reason": "poison"})
    snap = await dashboard.snapshot(aclient, [STREAM, streams.stream_key("missing")])
    assert snap.error is None
    rows = {row.group: row for row in snap.groups}
    assert set(rows) == {"billing", "inventory"}
    billing = rows["billing"]
    assert (billing.length, billing.lag, billing.pending, billing.dead_letters) == (10, 6, 3, 1)
    assert billing.entries_read == 4
    assert billing.acknowledged == 1
    assert [(c.name, c.pending) for c in billing.consumers] == [("billing-1", 3)]
    assert billing.consumers[0].idle_seconds >= 0
    inventory = rows["inventory"]
    assert (inventory.lag, inventory.pending, inventory.consumers) == (10, 0, ())


async def test_refresh_redraws_the_table_and_measures_acknowledged_throughput(client, aclient):
    """refresh(): numbers in the HTML follow the broker; acked/s comes from consecutive polls."""
    streams.create_group(client, STREAM, "billing", start="0")
    streams.publish_many(client, STREAM, _events(5))
    dash = dashboard.Dashboard(aclient, interval=0.5)
    await dash.refresh()
    assert _cells(dash, "length") == ["5"]
    assert _cells(dash, "lag") == ["5"]
    assert _cells(dash, "group") == ["billing"]
    assert dash.rates(STREAM, "billing") == []
    first = dash.table.value
    streams.publish_many(client, STREAM, _events(5))
    ids = _read(client, "billing", "billing-1", 8)
    client.xack(STREAM, "billing", *ids)
    await dash.refresh()
    assert dash.table.value != first
    assert _cells(dash, "length") == ["10"]
    assert _cells(dash, "lag") == ["2"]
    assert _cells(dash, "pending") == ["0"]
    assert "billing-1 (0, " in _cells(dash, "consumers")[0]
    (rate,) = dash.rates(STREAM, "billing")
    assert rate > 0
    assert _cells(dash, "spark") == [dashboard.sparkline([rate])]
    assert "poll 2" in dash.status.value
    dash.close()


async def test_dashboard_discovers_namespace_streams_but_not_dead_letters(client, aclient):
    """Without streams=, every stream of the namespace is shown; <stream>:dlq is not a row."""
    streams.publish_many(client, STREAM, _events(2))
    client.xadd(streams.dlq_key(STREAM), {"reason": "x"})
    client.xadd("other:{x}", {"a": "1"})
    dash = dashboard.Dashboard(aclient)
    snap = await dash.refresh()
    assert [(row.stream, row.group, row.dead_letters) for row in snap.groups] == [(STREAM, "", 1)]
    assert _cells(dash, "stream") == ["orders"]
    dash.close()


async def _until(condition: Callable[[], bool], *, timeout: float = 20.0) -> bool:
    """Poll ``condition`` on the running loop until it holds or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


async def test_start_polls_in_the_background_and_close_stops_it(client, aclient):
    """start() polls on the running loop without appending output; close() ends the task."""
    streams.publish_many(client, STREAM, _events(1))
    dash = dashboard.Dashboard(aclient, interval=0.05)
    dash.start()
    assert dash.running
    assert await _until(lambda: dash.ticks >= 3), f"only {dash.ticks} polls in 20 s"
    task = dash._task
    dash.close()
    assert task is not None
    assert await _until(task.done), "the polling task did not end after close()"
    assert not dash.running
    assert dash.widget.comm is None  # the widget was closed for the frontend too
    dash.close()  # a second close is harmless
    with pytest.raises(RuntimeError, match="closed"):
        dash.start()


def test_start_outside_an_event_loop_says_where_to_call_it(broker):
    """Outside a running loop (a plain script), start() explains it needs a notebook or async."""
    dash = dashboard.Dashboard(broker.async_client())
    with pytest.raises(RuntimeError, match="needs a running event loop"):
        dash.start()
    dash.close()


async def test_a_paused_broker_shows_as_not_answering_and_polling_recovers(fresh_broker):
    """A frozen broker gives an error line within the timeout, then numbers come back."""
    handle = fresh_broker()
    sync = handle.client()
    streams.publish_many(sync, STREAM, _events(3))
    dash = dashboard.Dashboard(handle.async_client(), streams=[STREAM], timeout=0.3)
    await dash.refresh()
    handle.pause(5)
    try:
        snap = await dash.refresh()
        assert snap.error is not None
        assert "not answering" in dash.status.value
        assert _cells(dash, "length") == ["3"]  # the last numbers stay, marked stale
        assert "el-stale" in dash.table.value
    finally:
        handle.resume()
    dash.timeout = 2.0
    snap = await dash.refresh()
    assert snap.error is None
    assert "live" in dash.status.value
    dash.close()
    sync.close()


def test_sparkline_scales_to_the_maximum():
    """sparkline(): lowest bar for 0, highest for the maximum, empty for no samples."""
    assert dashboard.sparkline([]) == ""
    assert dashboard.sparkline([0, 0]) == "▁▁"
    assert dashboard.sparkline([0, 5, 10]) == "▁▅█"


async def test_buttons_run_actions_and_report_failures_without_stopping(aclient):
    """A button runs its action off the loop and shows its result; a failing one shows why."""
    calls: list[str] = []

    def ok() -> str:
        calls.append("ok")
        return "it worked"

    def broken() -> None:
        raise faults.FaultError("no fault proxy is running", fix="call faults.start(broker)")

    dash = dashboard.Dashboard(aclient, actions={"Do it": ok, "Break": broken})
    dash.start()
    dash.buttons["Do it"].click()
    assert await _until(lambda: "done" in dash.message.value), dash.message.value
    assert calls == ["ok"]
    assert dash.message.value == "Do it: done — it worked"
    dash.buttons["Break"].click()
    assert await _until(lambda: "failed" in dash.message.value), dash.message.value
    assert "Break: failed — FaultError: no fault proxy is running — fix: call faults.start" in (
        dash.message.value
    )
    assert dash.running
    dash.close()


def test_fault_buttons_pause_the_broker_and_heal_resumes_it(fresh_broker):
    """'Pause broker' freezes the real broker through eventlab.faults; 'Heal' resumes it at once."""
    handle = fresh_broker()
    actions = dashboard.fault_actions(broker=handle, pause_seconds=30)
    assert list(actions) == [
        "Pause broker 30 s",
        "Kill a consumer",
        "Add latency",
        "Partition",
        "Poison event",
        "Duplicate burst",
        "Heal",
    ]
    assert actions["Pause broker 30 s"]() == "broker frozen for 30 s"
    assert not handle.ping(timeout=0.3)
    assert "1 fault undone" in actions["Heal"]()
    assert handle.ping(timeout=2.0)


def test_fault_buttons_poison_and_duplicate_burst_write_to_the_stream(broker, client):
    """'Poison event' appends a Poison event; 'Duplicate burst' re-publishes recent ids."""
    sent = _events(5)
    streams.publish_many(client, STREAM, sent)
    actions = dashboard.fault_actions(broker=broker, stream=STREAM, burst=3)
    assert actions["Duplicate burst"]().startswith("3 events re-published")
    ids = [event.id for _, event in streams.replay(client, STREAM)]
    assert ids == [e.id for e in sent] + [e.id for e in sent[2:]]
    assert actions["Poison event"]().startswith("poison event ")
    _, last = streams.replay(client, STREAM)[-1]
    assert last.type == "Poison"


def test_fault_buttons_without_what_they_need_say_what_to_pass(broker):
    """Kill without consumers, latency without a proxy, poison without a stream: clear errors."""
    actions = dashboard.fault_actions(broker=broker)
    with pytest.raises(ValueError, match="show\\(consumers="):
        actions["Kill a consumer"]()
    with pytest.raises(ValueError, match="show\\(stream="):
        actions["Poison event"]()
    faults.stop()
    with pytest.raises(faults.FaultError, match="no fault proxy"):
        actions["Add latency"]()


def test_fault_buttons_add_latency_and_partition_on_the_proxy(broker):
    """'Add latency' and 'Partition' switch the proxy's faults on; 'Heal' clears both."""
    proxy = faults.start(broker, record=False)
    try:
        actions = dashboard.fault_actions(broker=broker, proxy=proxy, latency_seconds=0.25)
        actions["Add latency"]()
        actions["Partition"]()
        directions = proxy.status()["directions"]
        assert directions["downstream"]["latency"] == 0.25
        assert {d["partition"] for d in directions.values()} == {"hold"}
        actions["Heal"]()
        directions = proxy.status()["directions"]
        assert {d["latency"] for d in directions.values()} == {0.0}
        assert {d["partition"] for d in directions.values()} == {None}
    finally:
        faults.stop()


def test_kill_a_consumer_kills_a_real_process(broker):
    """'Kill a consumer' SIGKILLs one of the given consumer processes."""
    from eventlab import processes  # noqa: PLC0415

    proc = processes.spawn("time:sleep", args=["30"], name="billing-1")
    try:
        actions = dashboard.fault_actions(broker=broker, consumers={"billing-1": proc})
        assert actions["Kill a consumer"]().startswith("killed billing-1")
        assert not proc.alive
    finally:
        proc.kill()


def test_a_running_dashboard_lets_the_kernel_shut_down_cleanly(broker, tmp_path):
    """In a real ipykernel, a polling dashboard stops with the kernel: prompt exit, no errors."""
    import os  # noqa: PLC0415

    from jupyter_client.manager import KernelManager  # noqa: PLC0415

    log = (tmp_path / "kernel.log").open("w")
    manager = KernelManager(kernel_name="python3")
    env = {**os.environ, "REDIS_URL": broker.url, "IPYTHONDIR": str(tmp_path / "ipython")}
    manager.start_kernel(env=env, stdout=log, stderr=log)
    kernel = manager.client()
    kernel.start_channels()
    try:
        kernel.wait_for_ready(timeout=60)
        printed: list[str] = []
        code = (
            "import asyncio, time\nfrom eventlab import dashboard\n"
            "dash = dashboard.show(faults=False)\n"
            # wait for two polls, however slow the machine, rather than a fixed time
            "deadline = time.monotonic() + 30\n"
            "while dash.ticks < 2 and time.monotonic() < deadline:\n"
            "    await asyncio.sleep(0.05)\n"
            "print(dash.running, dash.ticks >= 2)"
        )
        reply = kernel.execute_interactive(
            code,
            timeout=60,
            output_hook=lambda msg: printed.append(msg["content"].get("text", "")),
        )
        assert reply["content"]["status"] == "ok"
        assert "".join(printed).strip() == "True True"
        manager.request_shutdown()
        deadline = time.monotonic() + 15
        while manager.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not manager.is_alive(), "the kernel did not exit by itself"
    finally:
        kernel.stop_channels()
        if manager.has_kernel:
            manager.shutdown_kernel(now=True)
        log.close()
    text = (tmp_path / "kernel.log").read_text()
    assert "Traceback" not in text
    assert "Task was destroyed" not in text


async def test_press_shows_what_each_button_changed_and_raises_on_failure(broker, client):
    """press(): poison moves the length, latency and heal move the faults line; failures raise."""
    from eventlab import processes  # noqa: PLC0415

    streams.create_group(client, STREAM, "billing", start="0")
    proxy = faults.start(broker, record=False)
    consumers = [processes.spawn("time:sleep", args=["30"], name="billing-1")]
    try:
        state = dashboard._Faults(**{**dashboard._FAULT_DEFAULTS, "broker": broker})
        state.stream, state.proxy, state.consumers = STREAM, proxy, consumers
        dash = dashboard.Dashboard(
            broker.async_client(),
            streams=[STREAM],
            actions=state.actions(),
            describe=state.describe,
        )
        await dash.refresh()
        assert "consumer processes alive: 1 of 1 · proxy: no faults" in dash.shown()
        seen = [dash.shown()]
        for label in ("Poison event", "Add latency", "Heal"):
            await dash.press(label)
            seen.append(dash.shown())
        assert "length 1 " in seen[1]
        assert "proxy: +200 ms downstream" in seen[2]
        assert seen[3].endswith("proxy: no faults")
        assert all(a != b for a, b in itertools.pairwise(seen))
        await dash.press("Kill a consumer")
        assert "alive: 0 of 1" in dash.shown()
        with pytest.raises(RuntimeError, match="no live consumer process"):
            await dash.press("Kill a consumer")
        consumers.append(
            processes.spawn("tests._consumer_demo:counter", args=[broker.url, STREAM, "g", "d"])
        )
        await dash.refresh()
        assert "alive: 1 of 2" in dash.shown()  # a list the notebook extends is seen
        dash.close()
    finally:
        for p in consumers:
            p.kill()
        proxy.close()


def test_a_saved_dashboard_reads_as_a_request_to_rerun(broker):
    """show()'s output keeps the live widget for the page, and text asking for a re-run."""
    from eventlab._jupyter import DASHBOARD_GONE, WIDGET_MIME  # noqa: PLC0415

    dash = dashboard.Dashboard(broker.async_client())
    bundle = dashboard._Saved(dash.widget)._repr_mimebundle_()
    assert bundle["text/plain"] == DASHBOARD_GONE
    assert bundle[WIDGET_MIME]["model_id"] == dash.widget.model_id
    dash.close()
