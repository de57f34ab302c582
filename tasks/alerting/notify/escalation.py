"""Escalation policies: who else to tell when an alert stays firing and nobody acknowledges it.

A policy is ordered steps ``{after, receiver}``: ``after`` is measured from the moment the group's
receiver was first told about the (still unacknowledged) firing alerts, so a step means "if nobody
acked within 15 minutes of the page, tell the next person". With ``repeat: true`` the policy starts
over ``repeat_after`` after its last step (default: the gap before the last step, or the last
step's ``after`` when there is one step), as PagerDuty repeats an escalation policy.

Policies attach to routes **by receiver name** (``escalation: {team-db: db-oncall}`` in the config):
the routing tree already decides which alerts reach which receiver with matchers, ``continue`` and
inheritance, so a second matcher language here would only let the two disagree. Every group routed
to that receiver follows the policy.

Steps are positions ``k·len(steps) + i`` (cycle ``k``, step ``i``); the dispatcher keeps the last
position sent. :func:`due_steps` is pure: given the episode start and the last position sent, it
returns the steps that came due by ``t`` — after a gap in ticks only the newest cycle's due steps,
each receiver once, so a flow that was down does not page everyone once per missed cycle.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from tasks.timeparse import parse_prometheus_duration

__all__ = ["EscalationPolicy", "EscalationStep", "due_steps", "parse_policies", "parse_policy"]


@dataclass(frozen=True)
class EscalationStep:
    after: timedelta
    receiver: str


@dataclass(frozen=True)
class EscalationPolicy:
    name: str
    steps: tuple[EscalationStep, ...]
    repeat: bool = False
    repeat_after: timedelta | None = None

    @property
    def cycle(self) -> timedelta:
        """Length of one pass through the steps when the policy repeats."""
        last = self.steps[-1].after
        if self.repeat_after is not None:
            return last + self.repeat_after
        gap = last - self.steps[-2].after if len(self.steps) > 1 else last
        return last + gap

    def step_at(self, pos: int) -> tuple[int, EscalationStep, timedelta]:
        """(step index, step, offset from the episode start) of position ``pos``."""
        k, i = divmod(pos, len(self.steps))
        step = self.steps[i]
        return i, step, step.after + k * self.cycle


def _duration(raw: Any, where: str) -> timedelta:
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        if raw < 0:
            raise ValueError(f"{where}: must not be negative")
        return timedelta(seconds=float(raw))
    if not isinstance(raw, str):
        raise ValueError(f"{where}: expected a duration like 15m, got {raw!r}")
    try:
        return timedelta(seconds=parse_prometheus_duration(raw.strip()))
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def parse_policy(raw: Mapping[str, Any], where: str = "escalation") -> EscalationPolicy:
    """Build a policy from ``{name, steps: [{after, receiver}], repeat, repeat_after}``.

    Errors name the field (``escalation.steps[1].after: …``). Steps must have strictly increasing
    ``after``; a repeating policy needs a positive cycle."""
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where}: expected a mapping, got {type(raw).__name__}")
    unknown = set(raw) - {"name", "steps", "repeat", "repeat_after"}
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {', '.join(sorted(map(str, unknown)))}")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"{where}.name: required, a non-empty string")
    where = f"{where}[{name}]" if where == "escalation" else where
    steps_raw = raw.get("steps")
    if not isinstance(steps_raw, Sequence) or isinstance(steps_raw, str) or not steps_raw:
        raise ValueError(f"{where}.steps: required, a non-empty list of {{after, receiver}}")
    steps: list[EscalationStep] = []
    for i, s in enumerate(steps_raw):
        w = f"{where}.steps[{i}]"
        if not isinstance(s, Mapping):
            raise ValueError(f"{w}: expected a mapping with after and receiver")
        extra = set(s) - {"after", "receiver"}
        if extra:
            raise ValueError(f"{w}: unknown field(s) {', '.join(sorted(map(str, extra)))}")
        if "after" not in s:
            raise ValueError(f"{w}.after: required (e.g. 0m, 15m)")
        after = _duration(s["after"], f"{w}.after")
        recv = s.get("receiver")
        if not isinstance(recv, str) or not recv.strip():
            raise ValueError(f"{w}.receiver: required, a receiver name")
        if steps and after <= steps[-1].after:
            raise ValueError(f"{w}.after: must be later than the previous step's ({steps[-1].after})")
        steps.append(EscalationStep(after, recv))
    repeat = raw.get("repeat", False)
    if not isinstance(repeat, bool):
        raise ValueError(f"{where}.repeat: expected true or false, got {repeat!r}")
    ra = raw.get("repeat_after")
    repeat_after = None if ra is None else _duration(ra, f"{where}.repeat_after")
    policy = EscalationPolicy(name.strip(), tuple(steps), repeat, repeat_after)
    if repeat and policy.cycle <= timedelta(0):
        raise ValueError(f"{where}.repeat_after: a repeating policy needs a positive cycle; set repeat_after")
    return policy


def parse_policies(raw: Any, where: str = "escalation") -> dict[str, EscalationPolicy]:
    """``{receiver: policy}`` from ``{receiver: {name, steps, …}}`` (policies keyed by the receiver
    whose groups they follow)."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where}: expected a mapping of receiver name to policy")
    out: dict[str, EscalationPolicy] = {}
    for recv, pol in raw.items():
        if not isinstance(recv, str) or not recv:
            raise ValueError(f"{where}: receiver names must be non-empty strings, got {recv!r}")
        out[recv] = parse_policy(pol, f"{where}.{recv}")
    return out


def due_steps(
    policy: EscalationPolicy, start: datetime, last_pos: int, t: datetime
) -> tuple[list[tuple[int, EscalationStep]], int]:
    """Steps due at ``t`` for an episode that began at ``start``, after position ``last_pos`` was sent.

    Returns ``([(step index, step), …], new last position)``. Without ``repeat`` positions stop at
    the last step. After a gap, positions of earlier cycles are skipped and each receiver appears
    once (the latest step wins)."""
    n = len(policy.steps)
    due: list[tuple[int, int, EscalationStep]] = []
    pos = last_pos + 1
    while policy.repeat or pos < n:
        i, step, offset = policy.step_at(pos)
        if start + offset > t:
            break
        due.append((pos, i, step))
        pos += 1
    if not due:
        return [], last_pos
    newest_cycle = due[-1][0] // n
    latest: dict[str, tuple[int, EscalationStep]] = {}
    for p, i, step in due:
        if p // n == newest_cycle:
            latest.pop(step.receiver, None)
            latest[step.receiver] = (i, step)
    return list(latest.values()), due[-1][0]
