"""The actuator contract every plug-in shares, checked through the ``log`` actuator and a real state DB.

What could break: a decision applied twice, a failure that leaves the decision looking applied (so
the retry never happens), a dry run that changes something, a crashed claim that blocks forever,
and config errors that do not say which field is wrong (or that print a secret)."""

from __future__ import annotations

import json
import multiprocessing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar, Literal

import pytest

from tasks.actuators import (
    Action,
    ActionLedger,
    Actuator,
    ActuatorConfig,
    ActuatorConfigError,
    ActuatorError,
    CountActuator,
    ScaleAction,
    build_actuator,
    parse_actuator_config,
    record_result,
    register_actuator,
    unregister_actuator,
)
from tasks.actuators.log import LogActuator
from tasks.lake import Lake


@pytest.fixture
def ledger(tmp_path: Path) -> ActionLedger:
    return ActionLedger(str(tmp_path / "state.duckdb"), timeout_s=20)


def _decision(id: str = "d-1", to: int = 3, target: str = "api") -> ScaleAction:
    return ScaleAction.model_validate({"id": id, "target": target, "to": to, "from": 1, "reason": "cpu 0.9 > 0.6"})


class FlakyConfig(ActuatorConfig):
    kind: Literal["flaky"] = "flaky"


class FlakyActuator(CountActuator):
    """Fails the first ``failures`` times, then sets; counts real calls so double applies show."""

    kind = "flaky"
    config_model = FlakyConfig
    calls: ClassVar[list[int]] = []

    def __init__(self, config: FlakyConfig, *, ledger: ActionLedger, failures: int = 0, lie: bool = False) -> None:
        super().__init__(config, ledger=ledger)
        self.failures, self.lie, self.value = failures, lie, 0

    def _read(self, target: str) -> int:
        return self.value

    def _set(self, decision: ScaleAction, detail: dict[str, Any]) -> int:
        self.calls.append(decision.to)
        if self.failures:
            self.failures -= 1
            raise ConnectionError("backend down")
        self.value = decision.to - 1 if self.lie else decision.to
        return self.value


def test_log_actuator_records_once_and_reads_back_what_it_recorded(ledger: ActionLedger) -> None:
    act = build_actuator({"kind": "log", "initial": 2}, ledger=ledger)
    assert isinstance(act, LogActuator)
    assert act.current("api") == 2

    first = act.apply(_decision(to=5), dry_run=False)
    assert (first.status, first.observed, first.attempt, first.event_name) == ("applied", 5, 1, "action.applied")
    assert act.current("api") == 5
    assert act.current("other") == 2  # per target

    again = act.apply(_decision(to=5), dry_run=False)
    assert again.status == "skipped" and again.detail["reason"] == "already applied"
    assert again.ok and again.event_name is None
    row = ledger.get("log", "d-1")
    assert row is not None and (row.status, row.attempts, row.observed) == ("applied", 1, 5)


def test_dry_run_is_the_default_and_records_nothing(ledger: ActionLedger) -> None:
    act = build_actuator({}, ledger=ledger)  # kind defaults to log
    res = act.apply(_decision(to=9))
    assert res.status == "dry-run" and res.detail == {"would_set": 9}
    assert ledger.get("log", "d-1") is None
    assert act.current("api") == 1
    # the dry run did not use up the decision: a real apply still happens
    assert act.apply(_decision(to=9), dry_run=False).status == "applied"


def test_failure_is_recorded_and_the_retry_of_the_same_decision_applies(ledger: ActionLedger) -> None:
    FlakyActuator.calls.clear()
    act = FlakyActuator(FlakyConfig(kind="flaky"), ledger=ledger, failures=1)
    failed = act.apply(_decision(to=4), dry_run=False)
    assert failed.status == "failed" and not failed.ok and failed.event_name == "action.failed"
    assert failed.error == "ConnectionError: backend down"
    with pytest.raises(ActuatorError, match="backend down"):
        failed.raise_for_status()
    row = ledger.get("flaky", "d-1")
    assert row is not None and row.status == "failed" and row.error == "ConnectionError: backend down"

    retried = act.apply(_decision(to=4), dry_run=False)
    assert (retried.status, retried.attempt, retried.observed) == ("applied", 2, 4)
    assert act.apply(_decision(to=4), dry_run=False).status == "skipped"
    assert FlakyActuator.calls == [4, 4]  # twice set (fail, success), never a third time


def test_a_read_back_that_disagrees_is_a_failure_not_a_silent_half_apply(ledger: ActionLedger) -> None:
    act = FlakyActuator(FlakyConfig(kind="flaky"), ledger=ledger, lie=True)
    res = act.apply(_decision(to=6), dry_run=False)
    assert res.status == "failed" and res.observed == 5
    assert "read back 5 after setting 6" in (res.error or "")
    row = ledger.get("flaky", "d-1")
    assert row is not None and (row.status, row.observed) == ("failed", 5)


def test_a_claim_in_progress_blocks_a_second_applier_until_its_holder_is_gone(ledger: ActionLedger) -> None:
    FlakyActuator.calls.clear()
    act = FlakyActuator(FlakyConfig(kind="flaky"), ledger=ledger)
    verdict, _ = ledger.claim("flaky", _decision(), lease_s=300)  # another process is applying
    assert verdict == "claimed"
    busy = act.apply(_decision(), dry_run=False)
    assert busy.status == "skipped" and busy.detail["reason"] == "being applied by another process"
    assert FlakyActuator.calls == []

    # that claimant is gone (no heartbeat of this process runs for it) and its lease ran out: taken over
    with ledger.state.transaction() as con:
        con.execute("UPDATE actions SET lease_until = ?", [datetime.now(UTC) - timedelta(seconds=1)])
    took_over = act.apply(_decision(), dry_run=False)
    assert (took_over.status, took_over.attempt) == ("applied", 2)
    assert FlakyActuator.calls == [3]


def _apply_in_process(path: str, barrier: Any, out: Any) -> None:
    act = build_actuator({"kind": "log"}, ledger=ActionLedger(path, timeout_s=60))
    barrier.wait()
    out.put(act.apply(_decision(id="race"), dry_run=False).status)


def test_two_processes_racing_on_one_decision_apply_it_once(tmp_path: Path) -> None:
    path = str(tmp_path / "state.duckdb")
    ActionLedger(path).history()  # create the table first, so both race on the claim, not the DDL
    ctx = multiprocessing.get_context("spawn")
    barrier, out = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_apply_in_process, args=(path, barrier, out)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    assert sorted(out.get(timeout=5) for _ in procs) == ["applied", "skipped"]


def test_history_and_last_applied(ledger: ActionLedger) -> None:
    act = build_actuator({"kind": "log", "name": "shadow"}, ledger=ledger)
    act.apply(_decision(id="a", to=2), dry_run=False)
    act.apply(_decision(id="b", to=7), dry_run=False)
    act.apply(_decision(id="c", to=1, target="db"), dry_run=False)
    assert [r.decision_id for r in ledger.history("api")] == ["b", "a"]
    assert {r.actuator for r in ledger.history()} == {"shadow"}  # the ledger key is the config's name
    last = ledger.last_applied("shadow", "api")
    assert last is not None and last.to == 7


def test_unknown_kind_lists_the_known_ones() -> None:
    with pytest.raises(ActuatorConfigError) as err:
        parse_actuator_config({"kind": "helm"}, origin="scaling.targets.api.actuator")
    text = str(err.value)
    assert text.startswith("scaling.targets.api.actuator.kind: unknown actuator 'helm'")
    for kind in ("command", "kubernetes", "log", "prefect_pool", "process_pool", "webhook"):
        assert kind in text


@pytest.mark.parametrize(
    ("config", "field", "why"),
    [
        ({"kind": "log", "initial": -1}, "initial", "greater than or equal to 0"),
        ({"kind": "log", "colour": "red"}, "colour", "unknown field"),
        ({"kind": "command", "argv": []}, "argv", "must name a program"),
        ({"kind": "command", "argv": ["x", "{replicas}"]}, "argv", "unknown placeholder"),
        ({"kind": "command", "argv": ["x"], "timeout_s": 0}, "timeout_s", "greater than 0"),
        ({"kind": "webhook", "url": "ftp://h/x", "secret": "0123456789abcdef"}, "url", "http:// or https://"),
        ({"kind": "webhook", "url": "http://h/x"}, "secret", "Field required"),
        ({"kind": "kubernetes", "namespace": "Bad_NS"}, "namespace", "should match pattern"),
        ({"kind": "kubernetes", "resource": "daemonset"}, "resource", "must be one of"),
        ({"kind": "prefect_pool", "api_url": "localhost:4200"}, "api_url", "should match pattern"),
        ({"kind": "process_pool", "argv": ["w"]}, "pid_dir", "Field required"),
    ],
)
def test_bad_config_names_the_field(config: dict[str, Any], field: str, why: str) -> None:
    with pytest.raises(ActuatorConfigError) as err:
        parse_actuator_config(config, origin="actuator api")
    line = next(ln for ln in str(err.value).splitlines() if ln.strip().startswith(f"{field}:"))
    assert why in line


def test_secrets_are_never_printed(ledger: ActionLedger) -> None:
    secret = "hunter2-is-not-a-good-hmac-key"
    cfg = parse_actuator_config({"kind": "webhook", "url": "http://127.0.0.1:9/x", "secret": secret})
    assert secret not in repr(cfg) and secret not in str(cfg) and secret not in cfg.model_dump_json()
    k8s = parse_actuator_config({"kind": "kubernetes", "host": "https://k:6443", "token": secret})
    assert secret not in repr(k8s)
    # a short secret is refused without echoing it; a misspelt field holding one is not echoed either
    for bad in ({"secret": "tiny-secret"}, {"secret": secret, "secrte": secret}):
        with pytest.raises(ActuatorConfigError) as err:
            parse_actuator_config({"kind": "webhook", "url": "http://h/x", **bad})
        assert "tiny-secret" not in str(err.value) and secret not in str(err.value)
    # a failed apply's error does not carry it (nothing listens on port 9)
    res = build_actuator(cfg, ledger=ledger).apply(_decision(), dry_run=False)
    assert res.status == "failed" and secret not in (res.error or "")


def test_register_actuator_adds_a_kind_once() -> None:
    try:
        assert register_actuator(FlakyActuator) is FlakyActuator
        assert parse_actuator_config({"kind": "flaky"}).kind == "flaky"

        class Other(FlakyActuator):
            kind = "flaky"

        with pytest.raises(ValueError, match="already registered"):
            register_actuator(Other)
    finally:
        unregister_actuator("flaky")


def test_an_actuator_refuses_another_kinds_config(ledger: ActionLedger) -> None:
    with pytest.raises(ActuatorConfigError, match="LogActuator needs a LogConfig"):
        LogActuator(parse_actuator_config({"kind": "command", "argv": ["true"]}), ledger=ledger)


def test_decision_validation_names_the_field() -> None:
    with pytest.raises(ValueError, match="to"):
        ScaleAction.model_validate({"id": "x", "target": "api", "to": -1})
    d = _decision()
    assert d.payload()["from"] == 1 and d.payload()["to"] == 3 and d.mode == "dry-run"
    # what a webhook receiver gets: the fields scaling always sent, no more
    assert list(d.payload()) == ["id", "target", "to", "from", "kind", "reason", "policy", "mode"]


def test_results_become_action_events_in_the_lake(ledger: ActionLedger, tmp_path: Path) -> None:
    lake = Lake(str(tmp_path / "lake"))
    ok = FlakyActuator(FlakyConfig(kind="flaky"), ledger=ledger)
    bad = FlakyActuator(FlakyConfig(kind="flaky", name="flaky-b"), ledger=ledger, failures=1)
    applied = ok.apply(_decision(id="e1", to=2), dry_run=False)
    failed = bad.apply(_decision(id="e2", to=4, target="db"), dry_run=False)
    assert record_result(lake, ok.apply(_decision(id="e1", to=2)), to_prefect=False) is None  # dry run
    assert record_result(lake, ok.apply(_decision(id="e1", to=2), dry_run=False), to_prefect=False) is None  # skip
    record_result(lake, applied, to_prefect=False)
    record_result(lake, failed, to_prefect=False)
    events = lake.events()
    assert events["name"].to_list() == ["action.applied", "action.failed"]
    assert events["resource"].to_list() == ["cortex.scaling.api", "cortex.scaling.db"]
    payload = json.loads(events["payload"][1])
    assert (payload["status"], payload["error"], payload["to"]) == ("failed", "ConnectionError: backend down", 4)


def test_retries_back_off_exponentially_and_stop_at_the_first_success(ledger: ActionLedger) -> None:
    FlakyActuator.calls.clear()
    waits: list[float] = []
    act = FlakyActuator(FlakyConfig(kind="flaky"), ledger=ledger, failures=2)
    res = act.apply(_decision(to=4), dry_run=False, retries=5, backoff_s=0.5, sleep=waits.append)
    assert (res.status, res.attempt, res.observed) == ("applied", 3, 4)
    assert waits == [0.5, 1.0] and FlakyActuator.calls == [4, 4, 4]

    waits.clear()
    hopeless = FlakyActuator(FlakyConfig(kind="flaky", name="down"), ledger=ledger, failures=10)
    res = hopeless.apply(_decision(to=4), dry_run=False, retries=3, backoff_s=1, max_backoff_s=3, sleep=waits.append)
    assert (res.status, res.attempt) == ("failed", 4) and waits == [1, 2, 3]
    # a dry run or an applied action is never retried
    assert act.apply(_decision(to=4), dry_run=False, retries=3, sleep=waits.append).status == "skipped"
    assert act.apply(_decision(id="dry", to=4), retries=3, sleep=waits.append).status == "dry-run"
    assert waits == [1, 2, 3]


def test_an_action_of_another_kind_goes_through_the_same_ledger(ledger: ActionLedger, tmp_path: Path) -> None:
    """Generic over the action: a routing weight, keyed and recorded like a count."""

    class WeightConfig(ActuatorConfig):
        kind: Literal["weight"] = "weight"

    class WeightActuator(Actuator[Action, float]):
        kind = "weight"
        config_model = WeightConfig
        weights: ClassVar[dict[str, float]] = {}

        def _read(self, target: str) -> float:
            return self.weights.get(target, 1.0)

        def _set(self, action: Action, detail: dict[str, Any]) -> float:
            assert isinstance(action.to, float)
            self.weights[action.target] = action.to
            detail["backend"] = action.params["backend"]
            return self.weights[action.target]

    act = WeightActuator(WeightConfig(), ledger=ledger)
    shift = Action(id="w-1", area="routing", kind="weight", target="db-replica-2", to=0.25, params={"backend": "pg"})
    res = act.apply(shift, dry_run=False)
    assert (res.status, res.observed, res.detail) == ("applied", 0.25, {"backend": "pg"})
    assert act.apply(shift, dry_run=False).status == "skipped"
    row = ledger.get("weight", "w-1")
    assert row is not None and (row.kind, row.to, row.observed) == ("weight", 0.25, 0.25)
    lake = Lake(str(tmp_path / "lake"))
    record_result(lake, res, to_prefect=False)
    assert lake.events()["resource"].to_list() == ["cortex.routing.db-replica-2"]
    assert shift.payload()["params"] == {"backend": "pg"} and "area" not in shift.payload()
