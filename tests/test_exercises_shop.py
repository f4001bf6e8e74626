"""Try-its of lessons 06-12: a typical wrong answer gets feedback that names the mistake."""

from __future__ import annotations

import pytest

from eventlab import course, exercises, faults, reservations, shop


@pytest.fixture
def lesson(broker, client):
    """A Lesson on the test broker (lesson id 99: keys apart from any real lesson's)."""
    return course.Lesson(id="99", broker=broker, client=client)


def _wrong(exercise_id, answer, lesson):
    feedback = exercises.judge(exercise_id, answer, lesson=lesson)
    assert feedback.status == "wrong", str(feedback)
    return feedback.message


class _NoRule(shop.Billing):
    def interpret(self, event, results):
        return super().interpret(event, results)


class _AtLeast500(shop.Billing):
    def interpret(self, event, results):
        reads = super().interpret(event, results)
        if reads:
            reads["declined"] = reads["declined"] or event.data["total"] >= 500
        return reads


def test_billing_without_the_rule_is_told_nothing_was_declined(lesson):
    """06: a billing that changes nothing hears that every order, large ones too, was confirmed."""
    assert "never declined" in _wrong("06-strict-billing", _NoRule, lesson)


def test_billing_with_an_inclusive_limit_is_told_which_order_ended_wrongly(lesson):
    """06: declining 500 itself names the 500-cent order that should have been confirmed."""
    message = _wrong("06-strict-billing", _AtLeast500, lesson)
    assert "500 cents ended 'cancelled'" in message


def test_refunding_a_declined_payment_is_named(lesson):
    """07: refunding after PaymentDeclined is the extra command the orchestrator never sent."""
    answer = {
        "StockRejected": [],
        "PaymentDeclined": ["ReleaseStock", "RefundPayment"],
        "CourierUnavailable": ["ReleaseStock", "RefundPayment"],
    }.get
    message = _wrong("07-compensations", answer, lesson)
    assert "after PaymentDeclined" in message
    assert "['RefundPayment']" in message


def test_required_currency_without_default_is_refused_with_its_rule(lesson):
    """08: a required field without a default is refused by the gate, rule named."""

    def add_currency(payload):
        props = {**payload["properties"], "currency": {"type": "string"}}
        return {**payload, "properties": props, "required": [*payload["required"], "currency"]}

    assert "required-field" in _wrong("08-currency", add_currency, lesson)


def test_counting_reservations_only_is_told_to_subtract_releases(lesson):
    """09: a projection that ignores StockReleased is told to subtract the released units."""

    def units_sold(event):
        if event.type != "StockReserved":
            return []
        return [("hincrby", item["sku"], int(item["qty"])) for item in event.data["items"]]

    assert "subtract them" in _wrong("09-units-sold", units_sold, lesson)


def test_returning_the_whole_story_is_told_about_correlation(lesson):
    """10: returning every event of the order (by correlation id) is named as such."""

    def causal_chain(events, event):
        return [e.type for e in events if e.correlationid == event.correlationid]

    assert "correlation id" in _wrong("10-causal-chain", causal_chain, lesson)


def test_a_drawn_schedule_is_told_the_windows_it_has(lesson):
    """11: a schedule drawn at random (not in order) is told which windows it has."""

    def my_plan():
        return faults.schedule(seed=11, faults=["latency", "partition"], cycles=3)

    assert "fault windows are" in _wrong("11-schedule", my_plan, lesson)


def test_a_script_without_the_customer_check_sells_twice_to_one_customer(lesson):
    """12: the plain reservation script (one unit, no customer set) lets one customer win twice."""
    one_unit = reservations.RESERVE.replace("tonumber(ARGV[2])", "1")
    assert "got" in _wrong("12-one-each", lambda: one_unit, lesson)
    assert "SISMEMBER" in _wrong("12-one-each", lambda: one_unit, lesson)
