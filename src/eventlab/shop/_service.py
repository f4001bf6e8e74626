"""The one way every shop service handles an event: read its own state, decide, write atomically.

A handler reads the order's state under the service's own prefix, plus whatever
else it decides on (inventory's stock levels), in one round trip; skips an event
id it has already processed; decides in Python; then one Lua call checks that
nothing it read has changed and, only then, writes its new state, its other
effects and the events it emits (XADD to the shop stream) — all or nothing. A
crash at any point leaves either nothing or everything; a redelivered event finds
its id in ``seen`` and has no second effect; a concurrent writer makes the check
fail and the handler decides again (optimistic concurrency, like WATCH/MULTI but
in two round trips instead of four).

The script touches keys in more than one hash slot (the order's key and the
stream): the shop runs on one Redis node, not on Redis Cluster.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, ClassVar

import redis.asyncio

from eventlab import schema
from eventlab.envelope import Event
from eventlab.shop import events

_dumps = json.JSONEncoder(separators=(",", ":")).encode

# KEYS: 1 the order's state, 2 the stream, 3.. keys named by index in ARGV.
# ARGV: expected state ('' = none), n checks + (key index, field, expected) each,
# new state, n writes + (op, key index, a, b) each, n events + (n fields, field/value…) each.
_APPLY = """
local cur = redis.call('GET', KEYS[1]) or ''
if cur ~= ARGV[1] then return 0 end
local i = 3
for _ = 1, tonumber(ARGV[2]) do
  if (redis.call('HGET', KEYS[tonumber(ARGV[i])], ARGV[i + 1]) or '') ~= ARGV[i + 2] then
    return 0
  end
  i = i + 3
end
redis.call('SET', KEYS[1], ARGV[i])
i = i + 1
local writes = tonumber(ARGV[i])
i = i + 1
for _ = 1, writes do
  local op, key = ARGV[i], KEYS[tonumber(ARGV[i + 1])]
  if op == 'hincrby' then
    redis.call('HINCRBY', key, ARGV[i + 2], ARGV[i + 3])
  elseif op == 'zadd' then
    redis.call('ZADD', key, ARGV[i + 3], ARGV[i + 2])
  else
    redis.call('ZREM', key, ARGV[i + 2])
  end
  i = i + 4
end
local outputs = tonumber(ARGV[i])
i = i + 1
for _ = 1, outputs do
  local n = tonumber(ARGV[i]) * 2
  redis.call('XADD', KEYS[2], '*', unpack(ARGV, i + 1, i + n))
  i = i + n + 1
end
return 1
"""


@dataclass(slots=True)
class Decision:
    """What one event makes a service do.

    Attributes:
        outputs: ``(type, data)`` of each event to emit, in order.
        writes: Other writes: ``("hincrby", key, field, n)``, ``("zadd", key, {member: score})``
            or ``("zrem", key, member)``.
        checks: ``(key, field, value read)`` of hash fields the decision relied on; the
            writes happen only if they still hold those values.
    """

    outputs: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    writes: list[tuple[Any, ...]] = field(default_factory=list)
    checks: list[tuple[str, str, str | None]] = field(default_factory=list)

    def emit(self, event_type: str, data: dict[str, Any]) -> None:
        """Emit one event."""
        self.outputs.append((event_type, data))


class Service:
    """Base of the four shop services: idempotent, atomic event handling.

    Args:
        client: An asyncio client.
        registry: The schema registry; events in are validated and upcast to the
            newest version registered when the service was built, events out stamped
            and validated.

    Introduced in lesson 06.
    """

    name: ClassVar[str] = ""
    handles: ClassVar[frozenset[str]] = frozenset()
    emits: ClassVar[tuple[str, ...]] = ()

    def __init__(self, client: redis.asyncio.Redis, registry: schema.Registry) -> None:
        """Bind to a broker (no round trip yet: building a service app needs no broker).

        The registry's current versions are read once, when the first event arrives:
        they are what this service emits and what it upcasts events in to.
        """
        self.client = client
        self.registry = registry
        # namespace() reads the environment and the state folder: resolve keys once, not per event
        self.stream = events.stream()
        self.prefix = events.key(self.name)
        self._known: dict[str, int] | None = None
        self._apply = client.register_script(_APPLY)

    @property
    def _versions(self) -> dict[str, int]:
        if self._known is None:
            self._known = {t: self.registry.latest(t) or 1 for t in events.SCHEMAS}
        return self._known

    def order_key(self, order_id: str) -> str:
        """Return this service's key for one order."""
        return f"{self.prefix}:order:{order_id}"

    def own(self, *parts: str) -> str:
        """Return a key under this service's prefix."""
        return ":".join((self.prefix, *parts))

    def read_commands(self, event: Event) -> list[tuple[str, tuple[Any, ...]]]:  # noqa: ARG002
        """Return ``(command, args)`` to read with the order's state (one round trip)."""
        return []

    def interpret(self, event: Event, results: list[Any]) -> dict[str, Any]:  # noqa: ARG002
        """Turn the results of :meth:`read_commands` into what :meth:`decide` reads."""
        return {}

    def decide(self, state: dict[str, Any], event: Event, reads: dict[str, Any]) -> Decision:
        """Update ``state`` in place and return what to emit and write (pure)."""
        raise NotImplementedError

    async def state(self, order_id: str) -> dict[str, Any]:
        """Return this service's state of one order (``{}`` if it has none)."""
        raw = await self.client.get(self.order_key(order_id))
        return dict(json.loads(raw)) if raw else {}

    async def handle(self, event: Event) -> list[Event]:
        """Handle one event; return the events it emitted (none for a duplicate or another type).

        Raises:
            eventlab.schema.SchemaError: The event does not match its dataschema, or
                no upcaster reads its version as the one this service knows (a permanent
                error: the runtime dead-letters it with the reason).
        """
        if event.type not in self.handles:
            return []
        # validate, then read an older version as the newest this service knows (upcasters)
        event = self.registry.upcast(event, to=self._versions.get(event.type))
        order_id = str(event.data["order_id"])
        key = self.order_key(order_id)
        commands = self.read_commands(event)
        while True:
            pipe = self.client.pipeline(transaction=False)
            pipe.get(key)
            for command, command_args in commands:
                getattr(pipe, command)(*command_args)
            raw, *results = await pipe.execute()
            state: dict[str, Any] = json.loads(raw) if raw else {"seen": [], "seq": 0}
            if event.id in state["seen"]:
                return []
            decision = self.decide(state, event, self.interpret(event, results))
            state["seen"].append(event.id)
            emitted: list[Event] = []
            for event_type, data in decision.outputs:
                state["seq"] += 1
                out = event.follow(
                    type=event_type,
                    source=self.name,
                    data=data,
                    subject=order_id,
                    dataschema=schema.format_uri(event_type, self._versions[event_type]),
                ).evolve(extensions={"seq": str(state["seq"])})
                emitted.append(self.registry.validate(out))
            keys, argv = self._script_args(key, raw or "", state, decision, emitted)
            if int(await self._apply(keys=keys, args=argv)):
                return emitted
            # something we read changed meanwhile (another consumer): decide again

    def _script_args(  # noqa: C901 - one branch per kind of write
        self,
        key: str,
        raw: str,
        state: dict[str, Any],
        decision: Decision,
        emitted: list[Event],
    ) -> tuple[list[str], list[Any]]:
        keys = [key, self.stream]

        def index(name: str) -> int:
            if name not in keys:
                keys.append(name)
            return keys.index(name) + 1

        args: list[Any] = [raw, len(decision.checks)]
        for name, hfield, value in decision.checks:
            args += [index(name), hfield, "" if value is None else value]
        args.append(_dumps(state))
        writes: list[Any] = []
        for op, name, *rest in decision.writes:
            if op == "zadd":
                for member, score in rest[0].items():
                    writes.append(["zadd", index(name), member, score])
            elif op == "zrem":
                writes.append(["zrem", index(name), rest[0], ""])
            else:
                writes.append(["hincrby", index(name), rest[0], rest[1]])
        args.append(len(writes))
        for write in writes:
            args += write
        args.append(len(emitted))
        for out in emitted:
            fields = out.to_fields()
            args.append(len(fields))
            for name, value in fields.items():
                args += [name, value]
        return keys, args
