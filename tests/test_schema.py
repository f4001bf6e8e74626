import json

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventlab import schema
from eventlab.envelope import Event
from eventlab.schema import Compatibility, Registry, SchemaError, compatibility_problems

NAMES = ["a", "b", "c", "d"]
KINDS = ["string", "integer", "number", "boolean"]
ENUMS = {"string": ["x", "y", "z"], "integer": [1, 2, 3]}


def obj(props, required=(), *, closed=True):
    """An object schema, closed unless told."""
    out = {"type": "object", "properties": props, "required": list(required)}
    if closed:
        out["additionalProperties"] = False
    return out


# --- hypothesis strategies ---------------------------------------------------


def value_of(sub):
    """Values valid under a field schema."""
    if "enum" in sub:
        return st.sampled_from(sub["enum"])
    kind = sub["type"]
    return {
        "string": st.text(max_size=3),
        "integer": st.integers(-5, 5),
        "number": st.one_of(st.integers(-5, 5), st.floats(-5, 5, allow_nan=False)),
        "boolean": st.booleans(),
    }[kind]


@st.composite
def field(draw):
    """A field schema, maybe with enum and default."""
    kind = draw(st.sampled_from(KINDS))
    sub = {"type": kind}
    if kind in ENUMS and draw(st.booleans()):
        sub["enum"] = draw(st.lists(st.sampled_from(ENUMS[kind]), min_size=1, unique=True))
    if draw(st.booleans()):
        sub["default"] = draw(value_of(sub))
    return sub


@st.composite
def schemas(draw):
    """Object schemas over a few names."""
    names = draw(st.lists(st.sampled_from(NAMES), unique=True, max_size=4))
    props = {name: draw(field()) for name in names}
    required = [n for n in names if draw(st.booleans())]
    return obj(props, required, closed=draw(st.booleans()))


@st.composite
def instance(draw, writer):
    """An event valid under ``writer``."""
    data = {}
    for name, sub in writer["properties"].items():
        if name in writer["required"] or draw(st.booleans()):
            data[name] = draw(value_of(sub))
    if writer.get("additionalProperties", True) is not False and draw(st.booleans()):
        # an open writer may send any field, also one a reader declares
        unknown = [n for n in [*NAMES, "extra"] if n not in writer["properties"]]
        data[draw(st.sampled_from(unknown))] = draw(
            st.one_of(st.text(max_size=2), st.integers(), st.booleans())
        )
    return data


def readable(reader, data):
    """Whether a reader validates ``data`` after filling its defaults."""
    filled = schema._fill_defaults(reader, data)
    return jsonschema.Draft202012Validator(reader).is_valid(filled)


# --- property tests of the rules ----------------------------------------------


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.data(), schemas(), schemas())
def test_backward_compatible_means_new_readers_read_every_old_event(data, old, new):
    """Soundness: no BACKWARD problem → every old event validates under the new schema."""
    if compatibility_problems(new, [old], "BACKWARD"):
        return
    for _ in range(5):
        assert readable(new, data.draw(instance(old)))


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.data(), schemas(), schemas())
def test_forward_compatible_means_old_readers_read_every_new_event(data, old, new):
    """Soundness: no FORWARD problem → every new event validates under the old schema."""
    if compatibility_problems(new, [old], "FORWARD"):
        return
    for _ in range(5):
        assert readable(old, data.draw(instance(new)))


@settings(max_examples=200, deadline=None)
@given(st.data(), schemas(), schemas())
def test_a_reported_problem_has_a_witness_event(data, old, new):
    """Precision: when BACKWARD reports only data-level rules, some old event really fails."""
    problems = compatibility_problems(new, [old], "BACKWARD")
    if not problems or {p.rule for p in problems} - {"required-field", "closed-content"}:
        return
    # required-field/closed-content are witnessed by the old writer's minimal or maximal event
    minimal = dict.fromkeys(old["required"])
    maximal = dict.fromkeys(old["properties"])
    for sample in (minimal, maximal):
        for name in sample:
            sample[name] = data.draw(value_of(old["properties"][name]))
    if old.get("additionalProperties", True) is not False:
        maximal["zz"] = 1  # an open writer may send a field nobody declared
    assert not readable(new, minimal) or not readable(new, maximal)


@given(schemas(), st.sampled_from(list(Compatibility)))
def test_a_schema_is_compatible_with_itself(s, mode):
    """Registering the same schema again never breaks any mode."""
    assert compatibility_problems(s, [s], mode) == []


@given(schemas(), st.sampled_from(NAMES), st.sampled_from(KINDS))
def test_new_required_field_without_default_breaks_backward(s, name, kind):
    """Adding a required field with no default is always refused under BACKWARD."""
    if name in s["properties"]:
        return
    new = json.loads(json.dumps(s))
    new["properties"][name] = {"type": kind}
    new["required"].append(name)
    rules = {(p.rule, p.path) for p in compatibility_problems(new, [s], "BACKWARD")}
    assert ("required-field", f"/{name}") in rules


@given(schemas())
def test_removing_a_required_field_breaks_forward(s):
    """Dropping a required field old readers have no default for is refused under FORWARD."""
    if not s["required"]:
        return
    gone = s["required"][0]
    if "default" in s["properties"][gone]:
        return  # old readers fill a default in: removing it is safe
    new = json.loads(json.dumps(s))
    new["required"].remove(gone)
    del new["properties"][gone]
    rules = {(p.rule, p.path) for p in compatibility_problems(new, [s], "FORWARD")}
    assert ("required-field", f"/{gone}") in rules


@given(schemas(), schemas())
def test_full_is_backward_plus_forward_and_none_accepts_all(old, new):
    """FULL reports exactly the BACKWARD and FORWARD problems; NONE reports none."""
    full = compatibility_problems(new, [old], "FULL")
    both = compatibility_problems(new, [old], "BACKWARD") + compatibility_problems(
        new, [old], "FORWARD"
    )
    assert sorted(map(str, full)) == sorted(map(str, both))
    assert compatibility_problems(new, [old], "NONE") == []


@given(schemas(), schemas(), schemas(), st.sampled_from(["BACKWARD", "FORWARD", "FULL"]))
def test_transitive_checks_a_superset_of_latest_only(v1, v2, v3, mode):
    """A _TRANSITIVE mode finds every problem the plain mode finds, and maybe more."""
    plain = {str(p) for p in compatibility_problems(v3, [v1, v2], mode)}
    transitive = {str(p) for p in compatibility_problems(v3, [v1, v2], mode + "_TRANSITIVE")}
    assert plain <= transitive


# --- the rules, one example each ------------------------------------------------


def rules(new, old, mode):
    """The rule names a change breaks."""
    return sorted({p.rule for p in compatibility_problems(new, [old], mode)})


def test_closed_content_model_adding_and_removing_fields():
    """Closed model: adding a field breaks FORWARD only, removing one breaks BACKWARD only."""
    v1 = obj({"a": {"type": "string"}}, ["a"])
    v2 = obj({"a": {"type": "string"}, "b": {"type": "string"}}, ["a"])
    assert rules(v2, v1, "BACKWARD") == []
    assert rules(v2, v1, "FORWARD") == ["closed-content"]
    assert rules(v1, v2, "BACKWARD") == ["closed-content"]
    assert rules(v1, v2, "FORWARD") == []
    # open models accept unknown fields, but old events may carry any value under the new name
    open1 = obj(v1["properties"], ["a"], closed=False)
    open2 = obj(v2["properties"], ["a"], closed=False)
    assert rules(open2, open1, "FORWARD") == []
    assert rules(open2, open1, "BACKWARD") == ["open-content"]


def test_type_narrowing_and_widening():
    """Number → integer narrows (BACKWARD breaks); integer → number widens (FORWARD breaks)."""
    num = obj({"n": {"type": "number"}}, ["n"])
    integer = obj({"n": {"type": "integer"}}, ["n"])
    assert rules(integer, num, "BACKWARD") == ["type-narrowing"]
    assert rules(integer, num, "FORWARD") == []
    assert rules(num, integer, "BACKWARD") == []
    assert rules(num, integer, "FORWARD") == ["type-narrowing"]


def test_enum_removal_and_ranges():
    """Removing an enum value breaks BACKWARD, adding one FORWARD; a raised minimum narrows."""
    v1 = obj({"m": {"type": "string", "enum": ["card", "cash"]}}, ["m"])
    v2 = obj({"m": {"type": "string", "enum": ["card"]}}, ["m"])
    assert rules(v2, v1, "BACKWARD") == ["enum-removal"]
    assert rules(v1, v2, "FORWARD") == ["enum-removal"]
    low = obj({"q": {"type": "integer", "minimum": 0}}, ["q"])
    high = obj({"q": {"type": "integer", "minimum": 1}}, ["q"])
    assert rules(high, low, "BACKWARD") == ["range-narrowing"]
    assert rules(low, high, "BACKWARD") == []


def test_nested_objects_and_arrays_are_checked_with_paths():
    """A narrowed field inside an array of objects is reported at its path."""
    item = {"type": "object", "properties": {"qty": {"type": "number"}}, "required": ["qty"]}
    v1 = obj({"items": {"type": "array", "items": item}}, ["items"])
    narrowed = json.loads(json.dumps(v1))
    narrowed["properties"]["items"]["items"]["properties"]["qty"]["type"] = "integer"
    found = compatibility_problems(narrowed, [v1], "BACKWARD")
    assert [(p.rule, p.path) for p in found] == [("type-narrowing", "/items/[]/qty")]


# --- the registry on a real broker -------------------------------------------------

V1 = obj({"order_id": {"type": "string"}, "total": {"type": "number"}}, ["order_id", "total"])
V2 = obj(
    {
        "order_id": {"type": "string"},
        "total": {"type": "number"},
        "currency": {"type": "string", "default": "EUR"},
    },
    ["order_id", "total", "currency"],
)


def test_register_versions_and_refuse_a_breaking_change(client):
    """register() numbers versions, is idempotent, refuses a break naming each rule."""
    reg = Registry(client)
    assert reg.register("OrderPlaced", V1) == 1
    assert reg.register("OrderPlaced", V1) == 1
    assert reg.register("OrderPlaced", V2) == 2
    assert reg.register("OrderPlaced", V1) == 1  # already there: no v3
    bad = json.loads(json.dumps(V2))
    bad["properties"]["email"] = {"type": "string"}
    bad["required"].append("email")
    bad["properties"]["total"] = {"type": "integer"}
    with pytest.raises(SchemaError) as caught:
        reg.register("OrderPlaced", bad)
    assert {(p.rule, p.path) for p in caught.value.problems} == {
        ("required-field", "/email"),
        ("type-narrowing", "/total"),
    }
    assert "required-field" in str(caught.value)
    assert Registry(client).versions("OrderPlaced") == [1, 2]
    assert client.exists("{lab:@schema}:OrderPlaced")


def test_transitive_mode_checks_every_earlier_version(client):
    """Compatible with the latest but not with v1: BACKWARD passes, BACKWARD_TRANSITIVE fails."""
    v1 = obj({"a": {"type": "string"}}, ["a"])
    v2 = obj({"a": {"type": "string"}, "f": {"type": "string", "default": "x"}}, ["a", "f"])
    v3 = obj({"a": {"type": "string"}, "f": {"type": "string"}}, ["a", "f"])
    reg = Registry(client)
    reg.register("T", v1)
    reg.register("T", v2)
    with pytest.raises(SchemaError) as caught:
        reg.register("T", v3, mode="BACKWARD_TRANSITIVE")
    assert [(p.rule, p.against) for p in caught.value.problems] == [("required-field", 1)]
    assert reg.register("T", v3, mode="BACKWARD") == 3


def test_unsupported_keywords_are_refused(client):
    """Schemas outside the judged subset are refused rather than judged imprecisely."""
    with pytest.raises(SchemaError, match="unsupported keyword"):
        Registry(client).register("X", {"type": "object", "oneOf": [{}]})


def test_validate_stamp_defaults_and_unknown_schema(client):
    """validate() fills defaults, names bad data, and refuses unknown or foreign dataschemas."""
    reg = Registry(client)
    reg.register("OrderPlaced", V1)
    reg.register("OrderPlaced", V2)
    event = reg.stamp(
        Event(type="OrderPlaced", source="orders", data={"order_id": "o1", "total": 5})
    )
    assert event.dataschema == "OrderPlaced/v2"
    assert reg.validate(event).data["currency"] == "EUR"
    with pytest.raises(SchemaError, match="total"):
        reg.validate(event.evolve(data={"order_id": "o1", "total": "five"}))
    with pytest.raises(SchemaError, match="unknown dataschema"):
        reg.validate(event.evolve(dataschema="OrderPlaced/v9"))
    with pytest.raises(SchemaError, match="is for Other"):
        reg.validate(event.evolve(dataschema="Other/v1"))
    with pytest.raises(SchemaError, match="no dataschema"):
        reg.validate(event.evolve(dataschema=None))
    with pytest.raises(SchemaError, match="not '<EventType>/v<N>'"):
        reg.validate(event.evolve(dataschema="garbage"))


def test_upcaster_reads_v1_events_as_v2(client):
    """An upcaster turns a v1 event into a valid v2 event; the log keeps v1."""
    reg = Registry(client)
    reg.register("Paid", obj({"amount": {"type": "number"}}, ["amount"]), mode="NONE")
    reg.register(
        "Paid",
        obj({"cents": {"type": "integer"}, "currency": {"type": "string"}}, ["cents", "currency"]),
    )

    @reg.upcaster("Paid", 1)
    def _to_v2(data):
        return {"cents": round(data["amount"] * 100), "currency": "EUR"}

    old = Event(type="Paid", source="billing", data={"amount": 12.5}, dataschema="Paid/v1")
    new = reg.upcast(old)
    assert new.dataschema == "Paid/v2"
    assert new.data == {"cents": 1250, "currency": "EUR"}
    assert new.id == old.id
    reg2 = Registry(client)
    with pytest.raises(SchemaError, match="no upcaster"):
        reg2.upcast(old)
