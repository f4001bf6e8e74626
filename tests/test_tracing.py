"""The virtual-clock order flow: same numbers every run, slow consumers show in the tail."""

from __future__ import annotations

import uuid

import pytest

from eventlab import charts, tracing
from eventlab.charts import METRICS_COLUMNS
from eventlab.envelope import Event


def _run(broker, client, *, billing_batch: int, orders: int = 80, interval: float = 0.002):
    prefix = f"{{tracing-test-{uuid.uuid4().hex[:8]}}}"  # one hash slot, as a cluster needs
    steps = {name: tracing.batch_step(100) for name in tracing.SERVICES}
    steps["billing"] = tracing.batch_step(billing_batch)
    gateways = {name: tracing.Gateway(0.002) for name in tracing.SERVICES}
    gateways["billing"] = tracing.Gateway(0.020, declined=frozenset({"order-3"}))
    try:
        trace = tracing.run(
            broker.url, prefix, orders=orders, interval=interval, steps=steps, gateways=gateways
        )
    finally:
        keys = list(client.scan_iter(match=prefix + ":*"))
        if keys:
            client.delete(*keys)
    return trace, gateways


def test_same_flow_same_numbers(broker, client):
    """Virtual time: two runs of one flow give the same times to converge, whatever the load."""
    first, _ = _run(broker, client, billing_batch=100)
    second, _ = _run(broker, client, billing_batch=100)
    assert sorted(tracing.converge_times(first)) == sorted(tracing.converge_times(second))


def test_one_order_per_call_queues_and_batching_does_not(broker, client):
    """Billing at one order per 20 ms call misses 150 ms at p99; batched, it meets it."""
    slow, gateways = _run(broker, client, billing_batch=1)
    fast, _ = _run(broker, client, billing_batch=100)
    assert tracing.p99(slow) > 1.0
    assert tracing.p99(fast) < 0.150
    assert gateways["billing"].calls == 80
    assert set(gateways["billing"].handled.values()) == {1}


def test_trace_is_a_metrics_frame(broker, client):
    """One row per hop (a declined order stops at billing), drawable as a waterfall."""
    trace, _ = _run(broker, client, billing_batch=100, orders=10)
    assert set(METRICS_COLUMNS) <= set(trace.columns)
    assert len(trace) == 10 * 4 - 1  # order-3 is declined: no courier hop
    assert (trace["received"] >= trace["emitted"]).all()
    assert (trace["handled"] > trace["received"]).all()
    charts.waterfall(trace)


def test_gateway_bounds_its_batch():
    """A call over max_batch is refused; declined orders come back False; cost is per call."""
    gateway = tracing.Gateway(0.02, item_seconds=0.001, declined=frozenset({"b"}), max_batch=2)
    assert gateway.call(["a", "b"]) == {"a": True, "b": False}
    assert gateway.seconds == pytest.approx(0.022)
    with pytest.raises(tracing.FlowError, match="at most 2"):
        gateway.call(["a", "b", "c"])


def test_an_event_without_its_cause_is_refused(broker, client):
    """A step that emits events of its own (not event.follow) breaks the trace: FlowError."""

    def rogue(client, inbox, outbox, group, _gateway):
        reply = client.xreadgroup(group, group, {inbox: ">"}, count=10)
        for _, batch in reply or []:
            for entry_id, _ in batch:
                made_up = Event(type="PaymentCaptured", source="billing", data={"order": "x"})
                client.xadd(outbox, made_up.to_fields())
                client.xack(inbox, group, entry_id)

    prefix = f"tracing-test-{uuid.uuid4().hex[:8]}"
    steps = {name: tracing.batch_step(100) for name in tracing.SERVICES}
    steps["billing"] = rogue
    gateways = {name: tracing.Gateway(0.001) for name in tracing.SERVICES}
    try:
        with pytest.raises(tracing.FlowError, match="answers no event"):
            tracing.run(broker.url, prefix, orders=3, interval=0.01, steps=steps, gateways=gateways)
    finally:
        client.delete(*client.scan_iter(match=prefix + ":*"))


def test_counted_client_counts_round_trips(broker, client):
    """A command is one round trip, a whole MULTI pipeline one more; other clients count 0."""
    counted = tracing.counted_client(broker.url)
    key = f"tracing-test-{uuid.uuid4().hex[:8]}"
    try:
        counted.set(key, 1)
        pipe = counted.pipeline(transaction=True)
        for _ in range(50):
            pipe.incr(key)
        pipe.execute()
        assert tracing.round_trips(counted) == 2
        assert tracing.round_trips(client) == 0
    finally:
        client.delete(key)
        counted.close()


def test_flow_on_a_cluster_gives_the_single_node_numbers(broker, client, cluster):
    """On a cluster the flow gives the same virtual times; a prefix without hash tag is refused."""
    on_node, _ = _run(broker, client, billing_batch=1, orders=20)
    on_cluster_client = cluster.broker.client()
    try:
        on_cluster, _ = _run(cluster.broker, on_cluster_client, billing_batch=1, orders=20)
    finally:
        on_cluster_client.close()
    assert sorted(tracing.converge_times(on_cluster)) == sorted(tracing.converge_times(on_node))
    with pytest.raises(tracing.FlowError, match="hash tag"):
        tracing.run(cluster.broker.url, "untagged", orders=1, interval=0.01, steps={}, gateways={})


def test_counted_client_counts_on_a_cluster(cluster):
    """On a cluster, commands to keys on different nodes each count one round trip."""
    counted = tracing.counted_client(cluster.broker.url)
    keys = [f"tracing-test-{uuid.uuid4().hex[:8]}-{n}" for n in range(6)]
    try:
        for key in keys:
            counted.set(key, 1)
        pipe = counted.pipeline(transaction=True)
        for _ in range(20):
            pipe.incr(keys[0])
        pipe.execute()
        assert tracing.round_trips(counted) == len(keys) + 1
    finally:
        counted.delete(*keys)
        counted.close()
