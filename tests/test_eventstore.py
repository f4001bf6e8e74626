"""The command side of event sourcing: one atomic check-and-append with an expected version."""

from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from eventlab import eventstore as es
from eventlab.envelope import Event


def redeemed(card, cents):
    """A CardRedeemed event for ``card``."""
    return Event(type="CardRedeemed", source="cards", subject=card, data={"amount": cents})


def test_append_on_a_stale_version_is_refused_and_appends_nothing(client):
    """Expected version 1 when the card is at 2: ConflictError, the stream unchanged."""
    card = es.open_card(client, "t-stale", cents=100)
    assert es.append(client, card, [redeemed("t-stale", 10)], expected_version=1) == 2
    with pytest.raises(es.ConflictError) as error:
        es.append(client, card, [redeemed("t-stale", 10)], expected_version=1)
    assert (error.value.expected, error.value.actual) == (1, 2)
    loaded = es.load(client, card)
    assert loaded.version == 2
    assert [e.extensions["version"] for e in loaded.events] == ["1", "2"]


def test_a_losing_writer_re_reads_and_decides_again(client):
    """Both decided on 100; the second re-reads 40 and refuses instead of overdrawing."""
    card = es.open_card(client, "t-race", cents=100)
    a, b = es.load(client, card), es.load(client, card)
    es.append(client, card, es.redeem(60)(a.events), expected_version=a.version)
    with pytest.raises(es.ConflictError):
        es.append(client, card, es.redeem(60)(b.events), expected_version=b.version)
    again = es.execute(client, card, es.redeem(60))
    assert again.refused == "balance 40 < 60"
    assert es.balance(es.load(client, card).events) == 40


def test_racing_threads_never_append_on_a_stale_version(broker, client):
    """Two writers x 15 redeems of 10 on 100: exactly 10 appended, balance 0, no stale version."""
    card = es.open_card(client, "t-threads", cents=100)

    def spend(_):
        own = redis.Redis.from_url(broker.url, decode_responses=True)
        try:
            return [es.execute(own, card, es.redeem(10)) for _ in range(15)]
        finally:
            own.close()

    with ThreadPoolExecutor(2) as pool:
        results = [r for batch in pool.map(spend, range(2)) for r in batch]
    assert sum(1 for r in results if r.appended) == 10
    assert es.balance(es.load(client, card).events) == 0
    assert es.stale_appends(client, card) == []


def test_without_the_check_the_stale_append_goes_through(client):
    """No check (check=False): the lesson's assertions fail — overdrawn, a version twice."""
    card = es.open_card(client, "t-unchecked", cents=100)
    a, b = es.load(client, card), es.load(client, card)
    es.append(client, card, es.redeem(60)(a.events), expected_version=a.version, check=False)
    es.append(client, card, es.redeem(60)(b.events), expected_version=b.version, check=False)
    assert es.stale_appends(client, card) == [2]
    assert es.balance(es.load(client, card).events) == -20
