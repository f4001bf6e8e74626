"""Head-of-line blocking on the real broker, and a retry budget that keeps latency in the SLA."""

import pytest

from eventlab import sla, streams
from eventlab._errors import EventlabError

pytestmark = pytest.mark.timeout(60)


async def test_without_a_budget_events_behind_the_poison_miss_the_sla(broker):
    """Retried for the whole window, the poison blocks every event behind it past the SLA."""
    run = await sla.head_of_line(broker.url, streams.stream_key("t-hol-none"), sla=0.5, budget=None)
    assert not run.latency["handled"].any()
    assert (run.latency["seconds"] > run.sla).all()
    assert run.dead == 0
    assert run.lag["lag"].max() >= len(run.latency)


async def test_a_budget_below_the_sla_dead_letters_the_poison_and_drains(broker):
    """retry_timeout < SLA, max_deliveries=1: poison dead-lettered, every event within the SLA."""
    stream = streams.stream_key("t-hol-budget")
    run = await sla.head_of_line(broker.url, stream, sla=0.5, budget=0.25)
    assert run.latency["handled"].all()
    assert run.worst <= run.sla
    assert run.worst >= 0.2  # they did wait for the budget: head-of-line blocking, bounded
    assert run.dead == 1
    chart = sla.chart([run])
    assert chart.to_dict()["hconcat"]


async def test_a_budget_not_below_the_sla_is_refused(broker):
    """A budget that could not keep the SLA is bad input, with a fix."""
    with pytest.raises(EventlabError, match="budget < sla"):
        await sla.head_of_line(broker.url, streams.stream_key("t-hol-bad"), sla=0.5, budget=0.5)


async def test_handling_time_adds_up_behind_the_poison(broker):
    """Events behind the poison wait for its budget and for their own handling: 10 x 30 ms more."""
    stream = streams.stream_key("t-hol-slow")
    run = await sla.head_of_line(
        broker.url, stream, sla=1.0, budget=0.2, behind=10, handle_seconds=0.03
    )
    assert run.latency["handled"].all()
    assert run.worst >= 0.1 + 10 * 0.03  # the budget is spent up to its last whole backoff
    assert run.worst <= run.sla
