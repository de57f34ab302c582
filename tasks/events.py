"""Events: every decision, notification and failure is appended to the lake and, where a Prefect
API is reachable, emitted as a Prefect event so automations can react to it.

Prefect naming (DESIGN.md): event ``cortex.<name>`` (e.g. ``cortex.metrics.collected``) on the
resource ``cortex.<kind>.<id>``. The lake copy is the record of truth; the Prefect copy is
best-effort and never fails the caller.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from tasks.lake import Lake
from tasks.lake.schema import EVENT_NAMES, Event, SchemaError, now_utc
from tasks.redact import redact_tree

log = logging.getLogger("cortex_perf.events")


def prefect_api_reachable() -> bool:
    """True when events can go to a Prefect API: a configured URL, or inside a flow run."""
    if os.environ.get("PREFECT_API_URL"):
        return True
    try:
        # lazy: Prefect costs 2.5-4 s to import (measured 2026-12-07), and every lake write imports this module.
        from prefect.context import FlowRunContext

        return FlowRunContext.get() is not None
    except Exception:  # pragma: no cover - prefect import problems mean "no"
        return False


def _resource(resource: str) -> str:
    return resource if resource.startswith("cortex.") else f"cortex.{resource}"


def _payload(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The payload as stored: URL credentials masked, because the lake and Prefect keep events for
    months and show them to anyone who can read them (an error text may quote a scrape URL)."""
    return dict(redact_tree(dict(payload)))


def emit(
    lake: Lake,
    name: str,
    resource: str,
    payload: Mapping[str, Any] | None = None,
    *,
    ts: datetime | None = None,
    to_prefect: bool | None = None,
) -> Event:
    """Record event ``name`` about ``resource`` (e.g. ``flow.collect``) with a JSON payload.

    Written to the lake's events table first; then, if a Prefect API is reachable (or
    ``to_prefect=True``), emitted to Prefect. A Prefect failure is logged, never raised.
    """
    if name not in EVENT_NAMES:
        raise SchemaError(f"event name: unknown event {name!r} (known: {', '.join(sorted(EVENT_NAMES))})")
    ev = Event(name=name, resource=_resource(resource), payload=_payload(payload or {}), ts=ts or now_utc())
    lake.write_events([ev])
    if to_prefect if to_prefect is not None else prefect_api_reachable():
        emit_prefect(ev)
    return ev


def emit_many(
    lake: Lake,
    items: Sequence[tuple[str, str, Mapping[str, Any], datetime | None]],
    *,
    to_prefect: bool | None = None,
) -> list[Event]:
    """Record many events ``(name, resource, payload, ts)`` as ONE lake batch (one file, not one each).

    Why: a tick can produce hundreds of alert transitions; a file per event would swamp the lake
    with tiny files until the next compaction."""
    events = []
    for name, resource, payload, ts in items:
        if name not in EVENT_NAMES:
            raise SchemaError(f"event name: unknown event {name!r} (known: {', '.join(sorted(EVENT_NAMES))})")
        events.append(Event(name=name, resource=_resource(resource), payload=_payload(payload), ts=ts or now_utc()))
    if not events:
        return []
    lake.write_events(events)
    if to_prefect if to_prefect is not None else prefect_api_reachable():
        for ev in events:
            emit_prefect(ev)
    return events


def emit_prefect(ev: Event) -> bool:
    """Send one event to Prefect; returns whether it was handed to Prefect's events client."""
    try:
        from prefect.events import emit_event  # lazy: Prefect, see prefect_api_reachable

        payload = {k: _jsonable(v) for k, v in ev.payload.items()}
        res_id = ev.resource
        sent = emit_event(
            event=f"cortex.{ev.name}",
            resource={"prefect.resource.id": res_id, "prefect.resource.name": res_id.split(".", 2)[-1]},
            payload=payload,
            occurred=ev.ts,
        )
        return sent is not None
    except Exception as exc:  # never let observability break the work it observes
        log.warning("could not emit Prefect event %s: %s", ev.name, exc)
        return False


def _jsonable(v: Any) -> Any:
    if isinstance(v, datetime):
        return v.isoformat()
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple | set):
        return [_jsonable(x) for x in v]
    return v
