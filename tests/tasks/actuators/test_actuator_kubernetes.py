"""The ``kubernetes`` actuator through the official client against a local API server stand-in.

No cluster runs here, so a real HTTP server on 127.0.0.1 speaks the part of the API the actuator
uses — ``GET``/``PATCH /apis/apps/v1/namespaces/N/{deployments,statefulsets}/D/scale`` with
autoscaling/v1 ``Scale`` objects and ``Status`` errors, as the API server does — and checks the
bearer token and the patch content type. What could break: the wrong path or patch type, a 403 or
404 passing as applied, a server that rewrites ``spec.replicas`` (an admission webhook), the token
leaking into an error."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from localhttp import JsonHandler, LocalServer

from tasks.actuators import ActionLedger, ActuatorError, ScaleAction, build_actuator
from tasks.actuators.kubernetes import KubernetesActuator

TOKEN = "k8s-bearer-token-for-tests"
PREFIX = "/apis/apps/v1/namespaces/"


class ApiServer:
    """Scale subresources of a few workloads: ``{(resource, ns, name): [spec replicas, status replicas]}``."""

    def __init__(self) -> None:
        self.workloads: dict[tuple[str, str, str], list[int]] = {
            ("deployments", "shop", "api"): [3, 3],
            ("statefulsets", "shop", "db"): [1, 1],
        }
        self.requests: list[tuple[str, str, str, Any]] = []  # method, path, content type, body
        self.max_replicas: int | None = None  # an admission policy that caps spec.replicas
        outer = self

        class Handler(JsonHandler):
            def _key(self) -> tuple[str, str, str] | None:
                path = self.path.split("?", 1)[0]
                if not path.startswith(PREFIX) or not path.endswith("/scale"):
                    return None
                parts = path[len(PREFIX) :].split("/")
                if len(parts) != 4:
                    return None
                ns, resource, name, _ = parts
                return resource, ns, name

            def _auth(self) -> bool:
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    self._status(401, "Unauthorized", "Unauthorized")
                    return False
                return True

            def do_GET(self) -> None:
                outer.requests.append(("GET", self.path, "", None))
                if self._auth():
                    self._scale(self._key())

            def do_PATCH(self) -> None:
                ctype = self.headers.get("Content-Type", "")
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append(("PATCH", self.path, ctype, body))
                if not self._auth():
                    return
                key = self._key()
                if key is not None and key[2] == "locked":
                    return self._status(403, "Forbidden", 'cannot patch resource "deployments/scale"')
                if ctype != "application/merge-patch+json":
                    return self._status(415, "UnsupportedMediaType", f"unsupported patch type {ctype}")
                if key in outer.workloads:
                    want = int(body["spec"]["replicas"])
                    if outer.max_replicas is not None:
                        want = min(want, outer.max_replicas)
                    outer.workloads[key][0] = want  # status follows later, when pods exist
                self._scale(key)

            def _scale(self, key: tuple[str, str, str] | None) -> None:
                if key is None or key not in outer.workloads:
                    name = key[2] if key else "?"
                    return self._status(404, "NotFound", f'deployments.apps "{name}" not found')
                spec, status = outer.workloads[key]
                self._send(
                    200,
                    {
                        "kind": "Scale",
                        "apiVersion": "autoscaling/v1",
                        "metadata": {"name": key[2], "namespace": key[1], "resourceVersion": "42"},
                        "spec": {"replicas": spec} if spec else {},  # omitempty, as the API server does
                        "status": {"replicas": status, "selector": f"app={key[2]}"},
                    },
                )

            def _status(self, code: int, reason: str, message: str) -> None:
                self._send(
                    code,
                    {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message, "reason": reason},
                )

        self.http = LocalServer(Handler)
        self.server, self.url = self.http.server, self.http.url


@pytest.fixture
def api() -> Iterator[ApiServer]:
    s = ApiServer()
    yield s
    s.http.close()


@pytest.fixture
def ledger(tmp_path: Any) -> ActionLedger:
    return ActionLedger(str(tmp_path / "state.duckdb"))


def _act(api: ApiServer, ledger: ActionLedger, **extra: Any) -> KubernetesActuator:
    cfg = {"kind": "kubernetes", "host": api.url, "token": TOKEN, "namespace": "shop"} | extra
    act = build_actuator(cfg, ledger=ledger)
    assert isinstance(act, KubernetesActuator)
    return act


def _d(id: str, to: int, target: str = "api") -> ScaleAction:
    return ScaleAction(id=id, target=target, to=to)


def test_reads_and_patches_a_deployments_scale_subresource(api: ApiServer, ledger: ActionLedger) -> None:
    act = _act(api, ledger)
    assert act.current("api") == 3
    res = act.apply(_d("d1", 7), dry_run=False)
    assert (res.status, res.observed) == ("applied", 7), res.error
    assert res.detail == {"workload": "deployment/shop/api", "status_replicas": 3}
    assert api.workloads[("deployments", "shop", "api")] == [7, 3]
    method, path, ctype, body = api.requests[-1]
    assert (method, path.split("?")[0], ctype, body) == (
        "PATCH",
        "/apis/apps/v1/namespaces/shop/deployments/api/scale",
        "application/merge-patch+json",
        {"spec": {"replicas": 7}},
    )
    assert act.current("api") == 7
    # idempotent: no second PATCH for the same decision
    patches = sum(1 for r in api.requests if r[0] == "PATCH")
    assert act.apply(_d("d1", 7), dry_run=False).status == "skipped"
    assert sum(1 for r in api.requests if r[0] == "PATCH") == patches
    act.close()  # releases its ApiClient; a later call opens a new one
    assert act.current("api") == 7


def test_statefulset_and_a_workload_name_other_than_the_target(api: ApiServer, ledger: ActionLedger) -> None:
    act = _act(api, ledger, resource="statefulset", workload="db")
    assert act.current("database") == 1
    assert act.apply(_d("d1", 3, target="database"), dry_run=False).status == "applied"
    assert api.workloads[("statefulsets", "shop", "db")] == [3, 1]
    assert api.requests[-1][1].startswith("/apis/apps/v1/namespaces/shop/statefulsets/db/scale")


def test_scale_to_zero_reads_back_an_omitted_replicas_as_zero(api: ApiServer, ledger: ActionLedger) -> None:
    res = _act(api, ledger).apply(_d("d0", 0), dry_run=False)
    assert (res.status, res.observed) == ("applied", 0), res.error


def test_a_rewritten_replica_count_is_a_failure(api: ApiServer, ledger: ActionLedger) -> None:
    api.max_replicas = 5
    res = _act(api, ledger).apply(_d("d1", 9), dry_run=False)
    assert res.status == "failed" and res.observed == 5 and "read back 5 after setting 9" in (res.error or "")
    row = ledger.get("kubernetes", "d1")
    assert row is not None and row.status == "failed"


@pytest.mark.parametrize(
    ("target", "token", "status"),
    [("missing", TOKEN, "HTTP 404 Not Found"), ("locked", TOKEN, "HTTP 403 Forbidden"), ("api", "wrong", "HTTP 401")],
)
def test_api_errors_are_recorded_with_status_and_no_token(
    api: ApiServer, ledger: ActionLedger, target: str, token: str, status: str
) -> None:
    res = _act(api, ledger, token=token).apply(_d("d1", 2, target=target), dry_run=False)
    assert res.status == "failed" and status in (res.error or ""), res.error
    assert f"shop/{target} scale" in (res.error or "")
    assert TOKEN not in (res.error or "") and "wrong" not in (res.error or "")


def test_unreachable_api_server_and_current_errors(ledger: ActionLedger) -> None:
    act = build_actuator({"kind": "kubernetes", "host": "http://127.0.0.1:9", "timeout_s": 2}, ledger=ledger)
    res = act.apply(_d("d1", 2), dry_run=False)
    assert res.status == "failed" and "patch deployment default/api scale" in (res.error or "")
    with pytest.raises(ActuatorError, match="read deployment default/api scale"):
        act.current("api")


def test_kubeconfig_file_is_honoured(api: ApiServer, ledger: ActionLedger, tmp_path: Any) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "local", "cluster": {"server": api.url}}],
                "users": [{"name": "me", "user": {"token": TOKEN}}],
                "contexts": [{"name": "test", "context": {"cluster": "local", "user": "me", "namespace": "shop"}}],
                "current-context": "test",
            }
        )
    )
    act = build_actuator(
        {"kind": "kubernetes", "kubeconfig": str(kubeconfig), "context": "test", "namespace": "shop"}, ledger=ledger
    )
    assert act.current("api") == 3
    with pytest.raises(ActuatorError, match="no Kubernetes API configured"):
        build_actuator({"kind": "kubernetes", "kubeconfig": str(tmp_path / "absent")}, ledger=ledger).current("api")
