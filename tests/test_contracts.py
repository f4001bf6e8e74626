import json

from eventlab import schema, shop, streams, versions
from eventlab.cli import main as cli_main
from eventlab.shop import app as shop_app
from eventlab.shop import contracts, events


def test_document_is_asyncapi_3_from_the_faststream_apps():
    """The document is AsyncAPI 3.0: a send operation per emitted type, receive per consumed one."""
    doc = contracts.document()
    assert doc["asyncapi"] == "3.0.0"
    actions = {name: op["action"] for name, op in doc["operations"].items()}
    assert actions["storefront:OrderPlaced"] == "send"
    assert actions["billing:PaymentCaptured"] == "send"
    assert actions["billing:on:StockReserved"] == "receive"
    assert actions["orders:on:StepTimedOut"] == "receive"
    sent = {name.rpartition(":")[2] for name, a in actions.items() if a == "send"}
    assert sent == set(events.SCHEMAS)
    channel = doc["channels"]["courier:CourierAssigned"]
    assert channel["address"] == events.stream()
    assert channel["bindings"]["redis"]["method"] == "xadd"


def test_check_agrees_after_setup_and_names_each_disagreement(client):
    """After setup every message matches a registered version; an unregistered type is named."""
    registry = schema.Registry(client)
    doc = contracts.document()
    missing = contracts.check(doc, registry)
    assert all(not f.ok and "not in the registry" in f.problem for f in missing)
    shop.setup(client, registry=registry)
    findings = contracts.check(doc, registry)
    assert findings
    assert all(f.ok and f.version == 1 for f in findings)


def seeded(doc, event_type, change):
    """Return a copy of ``doc`` whose ``event_type`` payloads went through ``change``."""
    doc = json.loads(json.dumps(doc))
    for name, body in doc["components"]["schemas"].items():
        if f":{event_type}:" in f":{name}:":
            change(body)
    return doc


def add_required_currency(body):
    """A breaking change: a new required field without a default."""
    body["properties"]["currency"] = {"type": "string"}
    body["required"].append("currency")


def test_contracts_check_fails_on_a_seeded_breaking_change(client, broker, tmp_path, capsys):
    """`contracts check` exits 1 naming the rule broken; compatible changes pass with --register."""
    shop.setup(client)
    state = broker.state
    good = tmp_path / "good.json"
    good.write_text(json.dumps(contracts.document()))
    assert cli_main(["--state", str(state), "contracts", "check", "--doc", str(good)]) == 0
    assert "42 of 42 messages agree" in capsys.readouterr().out

    breaking = tmp_path / "breaking.json"
    breaking.write_text(
        json.dumps(seeded(contracts.document(), "PaymentCaptured", add_required_currency))
    )
    argv = ["--state", str(state), "contracts", "check", "--doc", str(breaking)]
    assert cli_main(argv) == 1
    out = capsys.readouterr().out
    assert "[FAIL] billing:PaymentCaptured: breaks BACKWARD" in out
    assert "required-field at /currency" in out
    assert cli_main([*argv, "--register"]) == 1  # a breaking change is never registered
    assert schema.Registry(client).versions("PaymentCaptured") == [1]

    def optional_note(body):
        body["properties"]["note"] = {"type": "string"}

    compatible = tmp_path / "compatible.json"
    compatible.write_text(json.dumps(seeded(contracts.document(), "OrderConfirmed", optional_note)))
    argv = ["--state", str(state), "contracts", "check", "--doc", str(compatible)]
    assert cli_main(argv) == 1
    assert "compatible but not registered yet" in capsys.readouterr().out
    assert cli_main([*argv, "--register"]) == 0
    assert schema.Registry(client).versions("OrderConfirmed") == [1, 2]


def test_contracts_gen_writes_the_document(tmp_path):
    """`eventlab contracts gen --out` writes the same document the API returns."""
    out = tmp_path / "asyncapi.json"
    assert cli_main(["contracts", "gen", "--out", str(out)]) == 0
    assert json.loads(out.read_text()) == contracts.document()


async def test_document_is_generated_from_the_apps_shop_up_runs(broker, client, monkeypatch):
    """`contracts check` checks the document of the apps `shop up` runs; declarations never read."""
    # `eventlab shop up` runs app.main(name, url) for each default service: build(name, url).app
    running = {name: shop_app.build(name, broker.url) for name in shop_app.DEFAULT_SERVICES}
    storefront = contracts.apps(broker.url)["storefront"]
    built = {"storefront": storefront, **{name: s.app for name, s in running.items()}}
    from_running = contracts.document(url=broker.url, built=built)
    checked = []
    monkeypatch.setattr(contracts, "check", lambda doc, _registry: checked.append(doc) or [])
    assert cli_main(["--state", str(broker.state), "contracts", "check"]) == 0
    assert checked == [from_running]
    for name in events.SERVICES:  # each service documents exactly what its handler consumes
        received = {
            op.rpartition(":")[2]
            for op, body in from_running["operations"].items()
            if body["action"] == "receive" and op.startswith(f"{name}:on:")
        }
        assert received == set(running[name].handler.handles), name

    # the documentation subscribers live on the running broker but never read: only the
    # reliable consumer joins the group, and it handles every event
    registry = shop.setup(client)
    placed = shop.place_order(
        client,
        registry=registry,
        customer="ann",
        items=[{"sku": "pear", "qty": 1}],
        total=100,
        saga="choreography",
    )
    orders = running["orders"]
    assert any(s.specification.include_in_schema for s in orders.broker.subscribers)
    await orders.app.start()
    try:
        assert await orders.reliable.drain(timeout=30)
    finally:
        await orders.app.stop()
    for service in running.values():
        await service.client.aclose()
    groups = streams.groups_frame(client, [shop.stream()]).set_index("group")
    assert groups.loc["orders", "consumers"] == 1
    accepted = [e for _, e in streams.replay(client, shop.stream()) if e.type == "OrderAccepted"]
    assert [e.subject for e in accepted] == [placed.subject]


def test_contracts_check_refuses_a_version_outside_a_live_consumers_range(
    client, broker, tmp_path, capsys
):
    """A compatible PaymentRefunded v2 is refused while live consumer orders accepts only v1..v1."""
    registry = schema.Registry(client)
    shop.setup(client, registry=registry)
    versions.declare(registry, "orders", versions.VersionRange("PaymentRefunded", 1, 1))

    def optional_note(body):
        body["properties"]["note"] = {"type": "string"}

    doc = seeded(contracts.document(), "PaymentRefunded", optional_note)
    changed = tmp_path / "refund-note.json"
    changed.write_text(json.dumps(doc))
    argv = ["--state", str(broker.state), "contracts", "check", "--doc", str(changed)]
    try:
        assert cli_main(argv) == 1
        out = capsys.readouterr().out
        assert "[FAIL] billing:PaymentRefunded: a new PaymentRefunded schema (v2)" in out
        assert "outside the range of live consumer orders (PaymentRefunded v1..v1)" in out
        [subscriber] = [
            f
            for f in contracts.check(doc, registry)
            if f.channel.startswith("orders:on:PaymentRefunded")
        ]
        assert "live consumer" not in subscriber.problem  # ranges gate producers only
        versions.declare(registry, "orders", versions.VersionRange("PaymentRefunded", 1, 2))
        [producer] = [
            f for f in contracts.check(doc, registry) if f.channel == "billing:PaymentRefunded"
        ]
        assert "live consumer" not in producer.problem
    finally:
        versions.forget(registry, "PaymentRefunded")
