"""Contracts: the shop's AsyncAPI 3.0 document, from its faststream apps, vs the registry.

Each running service's faststream ``RedisBroker`` (built by
:func:`eventlab.shop.app.build`, the app ``eventlab shop up`` runs) declares what
it emits as publishers and what it consumes as subscribers, each with the JSON
Schema of the event's ``data`` (from :data:`eventlab.shop.events.SCHEMAS`, the
code's truth). faststream's ``AsyncAPI`` turns those apps into one AsyncAPI 3.0 document;
:func:`check` compares every message in it with the schema registry — the
deploy-time gate: a schema the code sends that the registry does not hold, or
that breaks the type's compatibility mode, fails the check with the reasons.

``eventlab contracts gen`` prints the document; ``eventlab contracts check``
exits 1 when document and registry disagree.

Introduced in lesson 08.
"""

from __future__ import annotations

import argparse
import contextlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import unquote

from faststream import FastStream
from faststream.redis import RedisBroker, StreamSub
from faststream.specification import AsyncAPI
from pydantic import WithJsonSchema

from eventlab import broker as broker_mod
from eventlab import schema
from eventlab.shop import events

__all__ = ["Finding", "apps", "check", "declare", "document", "register_cli"]

_STOREFRONT = "storefront"


def _payload(event_type: str) -> Any:
    """A type whose JSON Schema is the registry schema of ``event_type`` (faststream reads it)."""
    return Annotated[dict[str, Any], WithJsonSchema(dict(events.SCHEMAS[event_type]))]


def _emits(name: str) -> tuple[str, ...]:
    if name == _STOREFRONT:
        return ("OrderPlaced",)
    from eventlab.shop.app import SERVICE_CLASSES  # noqa: PLC0415 - the app imports contracts

    return SERVICE_CLASSES[name].emits if name in SERVICE_CLASSES else ()


def _handles(name: str) -> list[str]:
    from eventlab.shop.app import SERVICE_CLASSES  # noqa: PLC0415

    return sorted(SERVICE_CLASSES[name].handles) if name in SERVICE_CLASSES else []


async def _described_only(*args: Any, **kwargs: Any) -> None:
    """Start nothing: the service's :class:`eventlab.consumer.Reliable` consumes the stream."""


def declare(broker: RedisBroker, name: str) -> None:
    """Declare on ``broker`` what service ``name`` emits and consumes, for the AsyncAPI document.

    A publisher per event type it emits, and a subscriber per event type it
    handles (in its consumer group), each with the type's JSON Schema. The
    subscribers describe and never read: the running service consumes through one
    reliable subscription (at-least-once, reclaim, dead letters) that faststream's
    own subscribers do not provide, so their ``start`` does nothing — a faststream
    subscriber reading the same group would steal entries from it.
    :func:`eventlab.shop.app.build` calls this on every service's broker.
    """
    for event_type in _emits(name):
        broker.publisher(
            stream=events.stream(),
            title=f"{name}:{event_type}",
            description=f"{name} emits {event_type} (dataschema {event_type}/v<N>)",
            schema=_payload(event_type),
        )
    for event_type in _handles(name):
        sub = broker.subscriber(
            stream=StreamSub(events.stream(), group=name, consumer=name),
            title=f"{name}:on:{event_type}",
        )
        sub(_subscriber_for(event_type))
        sub.start = _described_only  # type: ignore[method-assign]


def _subscriber_for(event_type: str) -> Callable[..., Any]:
    payload = _payload(event_type)

    async def receive(body: dict[str, Any]) -> None:
        """Documentation only: never called (see :func:`declare`)."""

    # postponed annotations are strings; faststream must see the real payload type
    receive.__annotations__["body"] = payload
    return receive


def apps(url: str = "redis://localhost:6379") -> dict[str, FastStream]:
    """Return the shop's faststream apps: the ones ``eventlab shop up`` runs, plus the storefront.

    Each service's app is :func:`eventlab.shop.app.build` ``(name, url).app`` — the
    very app a service process runs — so the document describes what runs. The
    storefront is not a service (orders are placed by the caller of
    :func:`eventlab.shop.place_order`); its app only declares that it sends
    ``OrderPlaced``. Building needs no broker: nothing connects until an app runs.
    """
    from eventlab.shop.app import DEFAULT_SERVICES, build  # noqa: PLC0415 - the app imports us

    storefront = RedisBroker(url, logger=None)  # type: ignore[arg-type]
    declare(storefront, _STOREFRONT)
    out: dict[str, FastStream] = {_STOREFRONT: FastStream(storefront, logger=None)}
    for name in DEFAULT_SERVICES:
        out[name] = build(name, url).app
    return out


def document(
    *,
    url: str = "redis://localhost:6379",
    version: str = "1.0.0",
    built: Mapping[str, FastStream] | None = None,
) -> dict[str, Any]:
    """Return the shop's AsyncAPI 3.0 document (a JSON-ready dict) generated by faststream.

    Args:
        url: The broker URL the apps are built with (the document's server).
        version: The document's ``info.version``.
        built: Generate from these apps (name → app) instead of :func:`apps` ``(url)``.
    """
    chosen = built if built is not None else apps(url)
    brokers = [app.broker for app in chosen.values() if app.broker is not None]
    spec = AsyncAPI(
        *brokers,
        title="eventlab shop",
        version=version,
        description="Four services that agree through events on one Redis stream.",
        schema_version="3.0.0",
    ).to_specification()
    return dict(json.loads(spec.to_json()))


@dataclass(frozen=True, slots=True)
class Finding:
    """What :func:`check` found for one message of the document.

    Attributes:
        channel: The document's channel (``billing:PaymentCaptured``).
        event_type: The event type.
        ok: Whether the registry holds this exact schema.
        version: The matching registered version, if any.
        problem: Why not, in one line (empty when ``ok``).
    """

    channel: str
    event_type: str
    ok: bool
    version: int | None
    problem: str = ""


def _resolve(doc: Mapping[str, Any], ref: str) -> Any:
    node: Any = doc
    for part in ref.removeprefix("#/").split("/"):
        node = node[unquote(part).replace("~1", "/").replace("~0", "~")]
    return node


def _payloads(doc: Mapping[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    found: list[tuple[str, str, dict[str, Any]]] = []
    for channel_name, channel in sorted(doc.get("channels", {}).items()):
        event_type = channel_name.rpartition(":")[2]
        for message in channel.get("messages", {}).values():
            body = _resolve(doc, message["$ref"]) if "$ref" in message else message
            payload = body.get("payload", {})
            if "$ref" in payload:
                payload = _resolve(doc, payload["$ref"])
            clean = {k: v for k, v in payload.items() if k != "title"}
            found.append((channel_name, event_type, clean))
    return found


def check(doc: Mapping[str, Any], registry: schema.Registry) -> list[Finding]:
    """Compare every message schema in ``doc`` with the registry; one finding per channel."""
    findings: list[Finding] = []
    for channel, event_type, payload in _payloads(doc):
        versions = registry.schemas(event_type)
        same = [v for v, s in versions.items() if s == payload]
        if same:
            findings.append(Finding(channel, event_type, ok=True, version=same[-1]))
            continue
        if not versions:
            problem = f"{event_type} is not in the registry"
        else:
            mode = registry.mode(event_type)
            broken = schema.compatibility_problems(payload, versions, mode)
            if broken:
                problem = f"breaks {mode.value}: " + "; ".join(str(p) for p in broken)
            else:
                problem = f"a new {event_type} schema, compatible but not registered yet"
        findings.append(Finding(channel, event_type, ok=False, version=None, problem=problem))
    return findings


# -- the eventlab command --------------------------------------------------------------


def _cmd_gen(args: argparse.Namespace) -> int:
    text = json.dumps(document(), indent=2, sort_keys=True)
    if args.out:
        Path(args.out).write_text(text + "\n")
        print(f"wrote {args.out}")  # noqa: T201 - a command prints
    else:
        print(text)  # noqa: T201
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    handle = broker_mod.up(state=args.state)
    doc = json.loads(Path(args.doc).read_text()) if args.doc else document(url=handle.url)
    client = handle.client()
    try:
        registry = schema.Registry(client)
        if args.register:
            for _, event_type, payload in _payloads(doc):
                with contextlib.suppress(schema.SchemaError):  # reported below as a finding
                    registry.register(event_type, payload)
        findings = check(doc, registry)
    finally:
        client.close()
    bad = [f for f in findings if not f.ok]
    for finding in findings:
        if args.verbose or not finding.ok:
            mark = "[OK]  " if finding.ok else "[FAIL]"
            detail = f"v{finding.version}" if finding.ok else finding.problem
            print(f"{mark} {finding.channel}: {detail}")  # noqa: T201
    print(  # noqa: T201
        f"contracts: {len(findings) - len(bad)} of {len(findings)} messages agree with the registry"
    )
    return 1 if bad else 0


def register_cli(sub: Any) -> None:
    """Add ``eventlab contracts gen|check`` (called by :mod:`eventlab.cli`)."""
    contracts = sub.add_parser(
        "contracts", help="AsyncAPI document of the shop; check it against the registry"
    )
    inner = contracts.add_subparsers(dest="contracts_command", required=True, metavar="ACTION")
    gen = inner.add_parser("gen", help="print (or write) the AsyncAPI 3.0 document")
    gen.add_argument("--out", default=None, help="write to this file")
    gen.set_defaults(handler=_cmd_gen)
    chk = inner.add_parser("check", help="exit 1 if the document and the registry disagree")
    chk.add_argument("--doc", default=None, help="an AsyncAPI JSON file (default: generate it)")
    chk.add_argument(
        "--register", action="store_true", help="register compatible new schemas first"
    )
    chk.add_argument("-v", "--verbose", action="store_true", help="list agreeing messages too")
    chk.set_defaults(handler=_cmd_check)
