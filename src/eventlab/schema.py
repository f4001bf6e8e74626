"""A schema registry in the broker: JSON Schema per (event type, version), modes, upcasters.

Every event type has numbered schema versions (``OrderPlaced/v1``, ``OrderPlaced/v2``)
stored under ``{<namespace>:@schema}:<type>``. :meth:`Registry.register` checks a new
version against the earlier ones under the type's compatibility mode and refuses
it with one :class:`Problem` per rule broken:

- **BACKWARD**: consumers on the *new* schema read events written under the old one.
- **FORWARD**: consumers still on the *old* schema read events written under the new one.
- **FULL**: both. The ``_TRANSITIVE`` forms check against *every* earlier version,
  the plain forms only against the latest. **NONE** checks nothing.

The rules, stated from a reader reading a writer's events (BACKWARD: reader = new;
FORWARD: reader = old):

- ``required-field``: the reader requires a field the writer may omit, and the reader
  has no ``default`` for it (a new required field without default breaks BACKWARD;
  removing a required field breaks FORWARD).
- ``closed-content``: the writer may send a field the reader does not declare, and the
  reader's object is closed (``additionalProperties: false``) — so in a closed content
  model removing a field breaks BACKWARD and adding one breaks FORWARD.
- ``open-content``: the writer's object is open and may send a field the reader constrains.
- ``type-narrowing``: the reader accepts fewer types than the writer sends
  (``number`` → ``integer``; ``integer`` → ``number`` is a widening).
- ``enum-removal``: the writer may send an enum value (or ``const``) the reader lacks.
- ``range-narrowing``: a tighter ``minimum``/``maximum``/``minLength``/``maxLength``.

Schemas use a well-defined subset of JSON Schema (see :data:`KEYWORDS`); anything
else is refused at registration rather than judged imprecisely. ``format`` is an
annotation only (as in jsonschema's default validator).

Introduced in lesson 08.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal

import redis

from eventlab import streams
from eventlab._errors import EventlabError
from eventlab.envelope import Event

if TYPE_CHECKING:
    import jsonschema

__all__ = [
    "KEYWORDS",
    "Compatibility",
    "Problem",
    "Registry",
    "SchemaError",
    "compatibility_problems",
    "format_uri",
    "parse_uri",
    "reader_problems",
]

KEYWORDS = frozenset(
    {
        "$schema",
        "$id",
        "title",
        "description",
        "examples",
        "format",
        "default",
        "type",
        "properties",
        "required",
        "additionalProperties",
        "enum",
        "const",
        "items",
        "minimum",
        "maximum",
        "minLength",
        "maxLength",
    }
)
"""The JSON Schema keywords the registry judges precisely; others are refused."""

_TYPES = frozenset({"object", "array", "string", "number", "integer", "boolean", "null"})
_URI = re.compile(r"^(?P<type>[A-Za-z0-9_.\-]+)/v(?P<version>[1-9][0-9]*)$")

Direction = Literal["backward", "forward"]


class Compatibility(StrEnum):
    """Which evolutions a type allows (Confluent's names and meanings)."""

    BACKWARD = "BACKWARD"
    BACKWARD_TRANSITIVE = "BACKWARD_TRANSITIVE"
    FORWARD = "FORWARD"
    FORWARD_TRANSITIVE = "FORWARD_TRANSITIVE"
    FULL = "FULL"
    FULL_TRANSITIVE = "FULL_TRANSITIVE"
    NONE = "NONE"

    @property
    def directions(self) -> tuple[Direction, ...]:
        """The directions this mode checks: backward, forward, both or none."""
        if self is Compatibility.NONE:
            return ()
        if self.value.startswith("BACKWARD"):
            return ("backward",)
        if self.value.startswith("FORWARD"):
            return ("forward",)
        return ("backward", "forward")

    @property
    def transitive(self) -> bool:
        """Whether every earlier version is checked, not only the latest."""
        return self.value.endswith("_TRANSITIVE")


@dataclass(frozen=True, slots=True)
class Problem:
    """One compatibility rule a schema change breaks.

    Attributes:
        rule: ``required-field``, ``closed-content``, ``open-content``,
            ``type-narrowing``, ``enum-removal`` or ``range-narrowing``.
        direction: ``"backward"`` (new readers, old events) or ``"forward"``
            (old readers, new events).
        path: Where in the data, as a JSON-pointer-like path (``/items/[]/sku``).
        detail: The reason in one sentence.
        against: The version compared with, when known.
    """

    rule: str
    direction: Direction
    path: str
    detail: str
    against: int | None = None

    def __str__(self) -> str:
        """Render ``[BACKWARD vs v1] required-field at /email: ...``."""
        versus = f" vs v{self.against}" if self.against is not None else ""
        return (
            f"[{self.direction.upper()}{versus}] {self.rule} at {self.path or '/'}: {self.detail}"
        )


class SchemaError(EventlabError, ValueError):
    """A schema or an event that the registry refuses.

    Attributes:
        reason: The one-line reason (also what a dead letter records).
        problems: Each compatibility rule broken, when a registration was refused.
    """

    def __init__(self, reason: str, *, fix: str, problems: Iterable[Problem] = ()) -> None:
        """Store the reason and the problems."""
        super().__init__(reason, fix=fix)
        self.reason = reason
        self.problems = list(problems)


def format_uri(event_type: str, version: int) -> str:
    """Return the ``dataschema`` of an event type at a version: ``"OrderPlaced/v2"``."""
    return f"{event_type}/v{version}"


def parse_uri(uri: str) -> tuple[str, int]:
    """Split ``"OrderPlaced/v2"`` into ``("OrderPlaced", 2)``.

    Raises:
        SchemaError: ``uri`` is not ``<Type>/v<N>``.
    """
    match = _URI.match(uri or "")
    if match is None:
        raise SchemaError(
            f"dataschema {uri!r} is not '<EventType>/v<N>'",
            fix="publish with dataschema=schema.format_uri(type, version)",
        )
    return match["type"], int(match["version"])


# --- the rules -------------------------------------------------------------


def _types(schema: Mapping[str, Any]) -> frozenset[str] | None:
    """The JSON types a schema admits (``None``: any)."""
    if "type" not in schema:
        return None
    kind = schema["type"]
    return frozenset([kind] if isinstance(kind, str) else kind)


def _accepts(reader: frozenset[str] | None, kind: str) -> bool:
    if reader is None:
        return True
    return kind in reader or (kind == "integer" and "number" in reader)


def _key(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _values(schema: Mapping[str, Any]) -> list[Any] | None:
    if "const" in schema:
        return [schema["const"]]
    if "enum" in schema:
        return list(schema["enum"])
    return None


def _closed(schema: Mapping[str, Any]) -> bool:
    return schema.get("additionalProperties", True) is False


def _unconstrained(schema: Mapping[str, Any]) -> bool:
    return not (set(schema) & (KEYWORDS - {"$schema", "$id", "title", "description", "examples"}))


_WORDS: dict[tuple[str, Direction], str] = {
    ("required-field", "backward"): (
        "new required field {name!r} has no default, and events written before lack it"
    ),
    ("required-field", "forward"): (
        "required field {name!r} was removed or made optional, but older consumers require it"
    ),
    ("closed-content", "backward"): (
        "field {name!r} was removed, but older events carry it and the closed content model "
        "(additionalProperties: false) rejects it"
    ),
    ("closed-content", "forward"): (
        "field {name!r} was added, and older consumers have a closed content model "
        "(additionalProperties: false) that rejects it"
    ),
    ("open-content", "backward"): (
        "new field {name!r} is constrained, but older events come from an open content model "
        "and may carry any value under that name"
    ),
    ("open-content", "forward"): (
        "field {name!r} was dropped from a now-open content model; older consumers still "
        "constrain it and may reject what new events put there"
    ),
}


def reader_problems(  # noqa: C901, PLR0912 - one branch per rule keeps the rules readable
    reader: Mapping[str, Any],
    writer: Mapping[str, Any],
    *,
    direction: Direction,
    path: str = "",
    against: int | None = None,
) -> list[Problem]:
    """Return every way data valid under ``writer`` can fail to validate under ``reader``.

    Defaults in ``reader`` count as filled in before validation (as
    :meth:`Registry.validate` does). ``direction`` only words the problems.
    """
    problems: list[Problem] = []

    def add(rule: str, where: str, detail: str) -> None:
        problems.append(Problem(rule, direction, where, detail, against))

    if _unconstrained(reader):
        return problems
    r_types, w_types = _types(reader), _types(writer)
    shown = path or "/"
    if r_types is not None:
        lost = sorted(w for w in (w_types or _TYPES) if not _accepts(r_types, w))
        if lost:
            if direction == "backward":
                detail = (
                    f"type narrowed: older events may hold {lost}, readers accept {sorted(r_types)}"
                )
            else:
                detail = (
                    f"type changed: new events may hold {lost}, "
                    f"older consumers accept only {sorted(r_types)}"
                )
            add("type-narrowing", shown, detail)
    r_values, w_values = _values(reader), _values(writer)
    if r_values is not None:
        allowed = {_key(v) for v in r_values}
        if w_values is None:
            add("enum-removal", shown, f"readers allow only {r_values}, writers send any value")
        else:
            missing = [v for v in w_values if _key(v) not in allowed]
            if missing:
                word = "removed" if direction == "backward" else "added"
                add("enum-removal", shown, f"enum value(s) {word}: {missing}")
    for low in ("minimum", "minLength"):
        if low in reader and (low not in writer or writer[low] < reader[low]):
            add("range-narrowing", shown, f"{low} {writer.get(low)} → {reader[low]}")
    for high in ("maximum", "maxLength"):
        if high in reader and (high not in writer or writer[high] > reader[high]):
            add("range-narrowing", shown, f"{high} {writer.get(high)} → {reader[high]}")
    if (r_types is None or "object" in r_types) and (w_types is None or "object" in w_types):
        r_props: Mapping[str, Any] = reader.get("properties", {})
        w_props: Mapping[str, Any] = writer.get("properties", {})
        w_required = set(writer.get("required", []))
        for name in reader.get("required", []):
            if name not in w_required and "default" not in r_props.get(name, {}):
                add(
                    "required-field",
                    f"{path}/{name}",
                    _WORDS["required-field", direction].format(name=name),
                )
        for name, w_sub in w_props.items():
            if name in r_props:
                problems.extend(
                    reader_problems(
                        r_props[name],
                        w_sub,
                        direction=direction,
                        path=f"{path}/{name}",
                        against=against,
                    )
                )
            elif _closed(reader):
                add(
                    "closed-content",
                    f"{path}/{name}",
                    _WORDS["closed-content", direction].format(name=name),
                )
            elif isinstance(reader.get("additionalProperties"), Mapping):
                problems.extend(
                    reader_problems(
                        reader["additionalProperties"],
                        w_sub,
                        direction=direction,
                        path=f"{path}/{name}",
                        against=against,
                    )
                )
        if _closed(reader) and not _closed(writer):
            add(
                "closed-content",
                f"{path}/*",
                "writers have an open content model (any extra field), readers a closed one",
            )
        if not _closed(writer):
            for name, r_sub in r_props.items():
                if name not in w_props and not _unconstrained(r_sub):
                    add(
                        "open-content",
                        f"{path}/{name}",
                        _WORDS["open-content", direction].format(name=name),
                    )
    if (r_types is None or "array" in r_types) and "items" in reader:
        problems.extend(
            reader_problems(
                reader["items"],
                writer.get("items", {}),
                direction=direction,
                path=f"{path}/[]",
                against=against,
            )
        )
    return problems


def compatibility_problems(
    new: Mapping[str, Any],
    earlier: Mapping[int, Mapping[str, Any]] | Iterable[Mapping[str, Any]],
    mode: Compatibility | str,
) -> list[Problem]:
    """Return every rule ``new`` breaks against ``earlier`` versions under ``mode``.

    Args:
        new: The candidate schema.
        earlier: The registered versions, oldest first (a mapping version → schema,
            or a sequence numbered from 1).
        mode: The compatibility mode; non-transitive modes check the latest only.
    """
    mode = Compatibility(mode)
    versions = dict(earlier) if isinstance(earlier, Mapping) else dict(enumerate(earlier, 1))
    if not versions or mode is Compatibility.NONE:
        return []
    numbers = sorted(versions)
    if not mode.transitive:
        numbers = numbers[-1:]
    problems: list[Problem] = []
    for number in numbers:
        old = versions[number]
        for direction in mode.directions:
            if direction == "backward":
                problems += reader_problems(new, old, direction="backward", against=number)
            else:
                problems += reader_problems(old, new, direction="forward", against=number)
    return problems


def _check_shape(schema: Any, path: str = "") -> None:
    """Refuse schemas outside the subset the rules judge precisely."""
    fix = f"use only these keywords: {', '.join(sorted(KEYWORDS))}"
    if not isinstance(schema, Mapping):
        raise SchemaError(f"schema at {path or '/'} is not an object", fix=fix)
    unknown = sorted(set(schema) - KEYWORDS)
    if unknown:
        raise SchemaError(f"unsupported keyword(s) {unknown} at {path or '/'}", fix=fix)
    kinds = _types(schema)
    if kinds is not None and not kinds <= _TYPES:
        raise SchemaError(f"unknown type(s) {sorted(kinds - _TYPES)} at {path or '/'}", fix=fix)
    for name, sub in dict(schema.get("properties", {})).items():
        _check_shape(sub, f"{path}/{name}")
    extra = schema.get("additionalProperties", True)
    if not isinstance(extra, bool):
        _check_shape(extra, f"{path}/*")
    if "items" in schema:
        _check_shape(schema["items"], f"{path}/[]")
    import jsonschema  # noqa: PLC0415 - 2 s to import: only where a schema is checked

    try:
        jsonschema.Draft202012Validator.check_schema(dict(schema))
    except jsonschema.SchemaError as exc:
        raise SchemaError(f"invalid JSON Schema at {path or '/'}: {exc.message}", fix=fix) from exc


def _fill_defaults(schema: Mapping[str, Any], data: Any) -> Any:
    """Return ``data`` with missing properties that have a ``default`` filled in."""
    if isinstance(data, dict) and "properties" in schema:
        out = dict(data)
        for name, sub in schema["properties"].items():
            if name not in out and "default" in sub:
                out[name] = copy.deepcopy(sub["default"])
            elif name in out:
                out[name] = _fill_defaults(sub, out[name])
        return out
    if isinstance(data, list) and isinstance(schema.get("items"), Mapping):
        return [_fill_defaults(schema["items"], item) for item in data]
    return data


# --- the registry ------------------------------------------------------------

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


class Registry:
    """Schemas stored in the broker, plus this process's upcasters.

    Keys: ``{<namespace>:@schema}:<type>`` (hash version → JSON schema),
    ``{<namespace>:@schema}:<type>:mode`` (its compatibility mode) and
    ``{<namespace>:@schema}:types`` (set of registered types): one hash tag, so a
    registration's one transaction stays in one Redis Cluster slot (``@`` keeps it
    apart from any stream's name). Registered schemas
    never change, so this object caches them; :meth:`validate` touches the
    broker only for a version it has not seen yet.

    Args:
        client: A sync client (``decode_responses=True``).
        default_mode: The mode for types that have none set (Confluent's default: BACKWARD).

    Introduced in lesson 08.
    """

    def __init__(
        self, client: redis.Redis, *, default_mode: Compatibility | str = Compatibility.BACKWARD
    ) -> None:
        """Bind to a broker."""
        self.client = client
        self.default_mode = Compatibility(default_mode)
        self._cache: dict[tuple[str, int], dict[str, Any]] = {}
        self._validators: dict[tuple[str, int], jsonschema.Draft202012Validator] = {}
        self._upcasters: dict[tuple[str, int], Upcaster] = {}

    # keys
    def _key(self, event_type: str) -> str:
        return f"{{{streams.namespace()}:@schema}}:{event_type}"

    def schema_key(self, event_type: str) -> str:
        """Return the hash holding ``event_type``'s schemas (version → JSON), for a look.

        Introduced in lesson 08 (the registry is plain data in the broker).
        """
        return self._key(event_type)

    def _types_key(self) -> str:
        return f"{{{streams.namespace()}:@schema}}:types"

    # modes
    def mode(self, event_type: str) -> Compatibility:
        """Return the compatibility mode of ``event_type``."""
        value = self.client.get(self._key(event_type) + ":mode")
        return Compatibility(str(value)) if value else self.default_mode

    def set_mode(self, event_type: str, mode: Compatibility | str) -> None:
        """Set the compatibility mode later registrations of ``event_type`` must pass."""
        self.client.set(self._key(event_type) + ":mode", Compatibility(mode).value)

    # reading
    def types(self) -> list[str]:
        """Return every registered event type, sorted."""
        return sorted(str(t) for t in self.client.smembers(self._types_key()))

    def schemas(self, event_type: str) -> dict[int, dict[str, Any]]:
        """Return every version of ``event_type``: version → schema, oldest first."""
        raw: dict[str, str] = self.client.hgetall(self._key(event_type))  # type: ignore[assignment]
        found = {int(v): json.loads(s) for v, s in raw.items()}
        for version, schema in found.items():
            self._cache[event_type, version] = schema
        return dict(sorted(found.items()))

    def versions(self, event_type: str) -> list[int]:
        """Return the registered version numbers of ``event_type`` (empty if none)."""
        return list(self.schemas(event_type))

    def latest(self, event_type: str) -> int | None:
        """Return the newest version number of ``event_type``, or ``None``."""
        found = self.versions(event_type)
        return found[-1] if found else None

    def get(self, event_type: str, version: int) -> dict[str, Any]:
        """Return one schema.

        Raises:
            SchemaError: No such (type, version) in the registry.
        """
        cached = self._cache.get((event_type, version))
        if cached is not None:
            return cached
        raw = self.client.hget(self._key(event_type), str(version))
        if raw is None:
            raise SchemaError(
                f"unknown dataschema {format_uri(event_type, version)!r}: not in the registry",
                fix="register the schema first (Registry.register) or publish a known version",
            )
        schema: dict[str, Any] = json.loads(str(raw))
        self._cache[event_type, version] = schema
        return schema

    # writing
    def check(
        self,
        event_type: str,
        schema: Mapping[str, Any],
        *,
        mode: Compatibility | str | None = None,
    ) -> list[Problem]:
        """Return the problems registering ``schema`` would hit (a dry run).

        Raises:
            SchemaError: ``schema`` uses keywords outside :data:`KEYWORDS` or is invalid.
        """
        _check_shape(schema)
        chosen = Compatibility(mode) if mode is not None else self.mode(event_type)
        return compatibility_problems(schema, self.schemas(event_type), chosen)

    def register(
        self,
        event_type: str,
        schema: Mapping[str, Any],
        *,
        mode: Compatibility | str | None = None,
    ) -> int:
        """Add ``schema`` as the next version of ``event_type``; return its version.

        Registering a schema equal to a registered version returns that version (idempotent).
        ``mode``, if given, becomes the type's mode before the check.

        Raises:
            SchemaError: The schema breaks the type's compatibility mode; ``problems``
                holds one entry per rule broken, and nothing is stored.
        """
        _check_shape(schema)
        if mode is not None:
            self.set_mode(event_type, mode)
        chosen = self.mode(event_type)
        body = json.dumps(schema, sort_keys=True)
        key = self._key(event_type)
        with self.client.pipeline(transaction=True) as pipe:
            while True:
                try:
                    pipe.watch(key)  # type: ignore[no-untyped-call]
                    raw: dict[str, str] = pipe.hgetall(key)  # type: ignore[assignment]
                    earlier = {int(v): json.loads(s) for v, s in raw.items()}
                    same = [v for v, e in earlier.items() if json.dumps(e, sort_keys=True) == body]
                    if same:  # already registered (as Confluent does): that version, no new one
                        pipe.unwatch()
                        return max(same)
                    problems = compatibility_problems(schema, earlier, chosen)
                    if problems:
                        pipe.unwatch()
                        listed = "; ".join(str(p) for p in problems)
                        raise SchemaError(
                            f"{event_type}: schema refused under {chosen.value} ({listed})",
                            fix="add a default, keep the field, or register under a new event type",
                            problems=problems,
                        )
                    version = max(earlier, default=0) + 1
                    pipe.multi()
                    pipe.hset(key, str(version), body)
                    pipe.sadd(self._types_key(), event_type)
                    pipe.execute()
                except redis.WatchError:
                    continue  # another registration won the race: check again against it
                self._cache[event_type, version] = json.loads(body)
                return version

    def delete(self, event_type: str) -> None:
        """Forget every version of ``event_type`` (for resetting a lesson)."""
        self.client.delete(self._key(event_type), self._key(event_type) + ":mode")
        self.client.srem(self._types_key(), event_type)
        for cached in [k for k in self._cache if k[0] == event_type]:
            self._cache.pop(cached, None)
            self._validators.pop(cached, None)

    # events
    def stamp(self, event: Event) -> Event:
        """Return ``event`` with ``dataschema`` set to its type's latest version, if unset."""
        if event.dataschema:
            return event
        version = self.latest(event.type)
        if version is None:
            raise SchemaError(
                f"no schema registered for {event.type!r}",
                fix="register one with Registry.register before publishing",
            )
        return event.evolve(dataschema=format_uri(event.type, version))

    def validate(self, event: Event) -> Event:
        """Check ``event.data`` against its ``dataschema``; return it with defaults filled in.

        Raises:
            SchemaError: ``dataschema`` is missing, malformed, names another type, is
                unknown to the registry, or ``data`` does not validate; ``reason`` says which.
        """
        if not event.dataschema:
            raise SchemaError(
                f"{event.type} event {event.id} has no dataschema",
                fix="publish with Registry.stamp(event) or set dataschema",
            )
        event_type, version = parse_uri(event.dataschema)
        if event_type != event.type:
            raise SchemaError(
                f"dataschema {event.dataschema!r} is for {event_type}, "
                f"but the event is {event.type}",
                fix="set dataschema to the event's own type",
            )
        schema = self.get(event_type, version)
        validator = self._validators.get((event_type, version))
        if validator is None:
            import jsonschema  # noqa: PLC0415 - 2 s to import: only once something validates

            validator = jsonschema.Draft202012Validator(schema)
            self._validators[event_type, version] = validator
        data = _fill_defaults(schema, event.data)
        if validator.is_valid(data):
            return event if data == event.data else event.evolve(data=data)
        errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
        if errors:
            listed = "; ".join(
                f"/{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors[:5]
            )
            raise SchemaError(
                f"{event.type} event {event.id} does not match {event.dataschema} ({listed})",
                fix="fix the producer, or dead-letter and redrive after the fix",
            )
        return event if data == event.data else event.evolve(data=data)

    # upcasting
    def upcaster(self, event_type: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
        """Decorate ``fn(data) -> data`` that turns ``from_version`` data into the next version."""

        def decorate(fn: Upcaster) -> Upcaster:
            self._upcasters[event_type, from_version] = fn
            return fn

        return decorate

    def add_upcaster(self, event_type: str, from_version: int, fn: Upcaster) -> None:
        """Register ``fn(data) -> data`` that turns ``from_version`` data into the next version."""
        self._upcasters[event_type, from_version] = fn

    def upcast(self, event: Event, *, to: int | None = None) -> Event:
        """Return ``event`` read as version ``to`` (default: the latest), via the upcasters.

        Old events stay as they are in the log; consumers read them as new.
        Missing fields with a ``default`` in the target schema are filled in.

        Raises:
            SchemaError: An upcaster for a step is missing, or the result does not validate.
        """
        current = self.validate(event)
        event_type, version = parse_uri(current.dataschema or "")
        target = to if to is not None else (self.latest(event_type) or version)
        data = current.data
        while version < target:
            step = self._upcasters.get((event_type, version))
            if step is None:
                raise SchemaError(
                    f"no upcaster for {format_uri(event_type, version)} → v{version + 1}",
                    fix=f"add one with registry.upcaster({event_type!r}, {version})",
                )
            data = step(copy.deepcopy(data))
            version += 1
        if version == parse_uri(current.dataschema or "")[1]:
            return current
        return self.validate(current.evolve(data=data, dataschema=format_uri(event_type, version)))
