import json

from eventlab import contracts, schema, shop
from eventlab.cli import main as cli_main
from eventlab.shop import events


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
    assert "40 of 40 messages agree" in capsys.readouterr().out

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
