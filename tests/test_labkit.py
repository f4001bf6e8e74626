"""eventlab._labkit: the lab fault helpers really kill a process at the step they name.

The graders' atomicity checks (labs 03 and 04a) are only as good as these
clients: if a crash became a no-op, a non-atomic answer would score full marks.
Each helper runs in a forked child against the real broker.
"""

from __future__ import annotations

import pytest

from eventlab import _labkit as kit

STREAM = "lab:{kit}"
GROUP = "g"


@pytest.fixture
def pending(client):
    """Three entries read by consumer "c" and not acknowledged; returns their ids."""
    client.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    for n in range(3):
        client.xadd(STREAM, {"n": str(n)})
    return [entry_id for entry_id, _ in kit.read_new(client, STREAM, GROUP, "c", count=10)]


def _dead_letter_then_ack(url: str, entry_id: str, atomic: bool) -> None:  # noqa: FBT001
    client = kit.crash_between(url, first="XADD", then="XACK")
    if atomic:
        pipe = client.pipeline(transaction=True)
        pipe.xadd(STREAM + ":dlq", {"original_id": entry_id})
        pipe.xack(STREAM, GROUP, entry_id)
        pipe.execute()
    else:
        client.xadd(STREAM + ":dlq", {"original_id": entry_id})
        client.xack(STREAM, GROUP, entry_id)


def _ack_each(url: str, ids: list[str], crash_at: int, only_acks: bool) -> None:  # noqa: FBT001
    client = kit.crashing_client(url, crash_at=crash_at, only_acks=only_acks)
    for entry_id in ids:
        client.xack(STREAM, GROUP, entry_id)


def _run(target, *args) -> int | None:
    worker = kit.fork(target, *args)
    assert worker.join(10.0), "the forked worker did not finish"
    return worker.exitcode


def test_crash_between_kills_a_dead_letter_and_ack_sent_as_two_steps(broker, client, pending):
    """XADD then XACK in two round trips: the process is SIGKILLed before the XACK is sent."""
    code = _run(_dead_letter_then_ack, broker.url, pending[0], False)  # noqa: FBT003
    assert code == -9
    assert client.xlen(STREAM + ":dlq") == 1  # the first step reached the server
    assert kit.pending_count(client, STREAM, GROUP) == 3  # the second never did


def test_crash_between_spares_one_multi_exec(broker, client, pending):
    """XADD and XACK in one MULTI/EXEC never open the window: the process exits normally."""
    code = _run(_dead_letter_then_ack, broker.url, pending[0], True)  # noqa: FBT003
    assert code == 0
    assert client.xlen(STREAM + ":dlq") == 1
    assert kit.pending_count(client, STREAM, GROUP) == 2


@pytest.mark.parametrize(("crash_at", "acked"), [(1, 0), (2, 1), (3, 2)])
def test_crashing_client_dies_before_its_nth_ack(broker, client, pending, crash_at, acked):
    """crash_at=N: the first N-1 acks reach the server, the Nth is never sent (SIGKILL)."""
    code = _run(_ack_each, broker.url, pending, crash_at, True)  # noqa: FBT003
    assert code == -9
    assert kit.pending_count(client, STREAM, GROUP) == 3 - acked


def test_crashing_client_at_zero_never_crashes(broker, client, pending):
    """crash_at=0 is the control: every ack is sent and the process exits normally."""
    assert _run(_ack_each, broker.url, pending, 0, True) == 0  # noqa: FBT003
    assert kit.pending_count(client, STREAM, GROUP) == 0


def test_crashing_client_counting_every_command(broker, client, pending):
    """only_acks=False counts every command sent, the connection's handshake included."""
    probe = kit.crashing_client(broker.url, crash_at=0, only_acks=False)
    probe.ping()
    handshake = probe.connection_pool.connection_class.sent - 1  # type: ignore[attr-defined]
    probe.close()
    code = _run(_ack_each, broker.url, pending, handshake + 2, False)  # noqa: FBT003
    assert code == -9
    assert kit.pending_count(client, STREAM, GROUP) == 2  # one ack sent, the second never


@pytest.mark.parametrize("transaction", [False, True])
def test_read_entries_same_on_a_node_and_in_a_cluster_transaction(client, cluster, transaction):
    """XREADGROUP's entries read alike from a plain reply and a cluster transaction's raw map."""
    stream = "{kit-read}:s"
    on_cluster = cluster.broker.client(decode_responses=True)
    found = []
    try:
        for target in (client, on_cluster):
            target.xgroup_create(stream, GROUP, id="0", mkstream=True)
            target.xadd(stream, {"n": "1", "page": "a"}, id="1-1")
            pipe = target.pipeline(transaction=transaction)
            pipe.xreadgroup(GROUP, "c", {stream: ">"}, count=10)
            found.append(kit.read_entries(pipe.execute()[0]))
            target.delete(stream)
    finally:
        on_cluster.close()
    assert found == [[("1-1", {"n": "1", "page": "a"})]] * 2
