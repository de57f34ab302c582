"""The ``kubernetes`` actuator: patches a Deployment's or StatefulSet's ``scale`` subresource.

Why the scale subresource: it is what ``kubectl scale`` and the HPA use — it needs only the
``update`` verb on ``deployments/scale`` (a narrow RBAC grant), touches nothing but
``spec.replicas``, and reads back ``spec.replicas`` (desired, which we treat as the current count,
as the HPA does) and ``status.replicas`` (pods that exist now). The official ``kubernetes``
client speaks to the API server, so kubeconfig, in-cluster service accounts and bearer tokens all
work.

Guarantees: the count is absolute (a JSON merge patch of ``spec.replicas``), so a retry after a
failure is harmless; the PATCH answer's ``spec.replicas`` must equal the decision or the action
is a recorded failure (e.g. an admission webhook that rewrote it); API errors carry the HTTP status
and reason, never the token.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, SecretStr

from tasks.actuators.action import ScaleAction
from tasks.actuators.base import ActuatorConfig, CountActuator
from tasks.actuators.errors import ActuatorError
from tasks.actuators.ledger import ActionLedger

__all__ = ["KubernetesActuator", "KubernetesConfig"]


class KubernetesConfig(ActuatorConfig):
    """Which workload (``resource``, ``namespace``, ``workload`` — default: the target's name) and how to reach the API.

    Connection: ``host`` (+ ``token``, ``ca_cert``/``verify_ssl``) when set; otherwise the
    ``kubeconfig`` file (and ``context``) when set; otherwise in-cluster, then ``~/.kube/config``."""

    kind: Literal["kubernetes"] = "kubernetes"
    resource: Literal["deployment", "statefulset"] = "deployment"
    namespace: str = Field("default", pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)
    workload: str | None = Field(None, pattern=r"^[a-z0-9]([-.a-z0-9]*[a-z0-9])?$", max_length=253)
    host: str | None = Field(None, pattern=r"^https?://")
    token: SecretStr | None = None
    ca_cert: str | None = None
    verify_ssl: bool = True
    kubeconfig: str | None = None
    context: str | None = None
    timeout_s: float = Field(15.0, gt=0, le=300)


class KubernetesActuator(CountActuator):
    kind = "kubernetes"
    config_model = KubernetesConfig
    config: KubernetesConfig

    def __init__(self, config: KubernetesConfig, *, ledger: ActionLedger, api_client: Any = None) -> None:
        super().__init__(config, ledger=ledger)
        self._api_client = api_client  # injectable: a kubernetes.client.ApiClient
        self._owns_client = api_client is None

    def close(self) -> None:
        if self._owns_client and self._api_client is not None:
            self._api_client.close()
            self._api_client = None

    def _api(self) -> Any:
        # The kubernetes client is imported where it is used, in this module's three methods: it
        # takes ~1.3 s to import here (measured), and every command that loads the settings imports
        # this module to validate a kubernetes target's config.
        from kubernetes import client

        if self._api_client is None:
            self._api_client = client.ApiClient(self._configuration())
        return client.AppsV1Api(self._api_client)

    def _configuration(self) -> Any:
        from kubernetes import client, config

        c = self.config
        cfg = client.Configuration()
        if c.host:
            cfg.host = c.host.rstrip("/")
            if c.token is not None:
                cfg.api_key = {"authorization": c.token.get_secret_value()}
                cfg.api_key_prefix = {"authorization": "Bearer"}
            cfg.verify_ssl = c.verify_ssl
            if c.ca_cert:
                cfg.ssl_ca_cert = c.ca_cert
            return cfg
        try:
            if c.kubeconfig or c.context:
                config.load_kube_config(config_file=c.kubeconfig, context=c.context, client_configuration=cfg)
            else:
                try:
                    config.load_incluster_config(client_configuration=cfg)
                except config.ConfigException:
                    config.load_kube_config(client_configuration=cfg)
        except (config.ConfigException, OSError) as exc:
            why = f"no Kubernetes API configured (host, kubeconfig or in-cluster): {exc}"
            raise ActuatorError(f"{self.name}: {why}") from None
        return cfg

    def _ref(self, target: str) -> tuple[str, str]:
        return self.config.workload or target, self.config.namespace

    def _call(self, what: str, target: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        from kubernetes.client.exceptions import ApiException

        name, ns = self._ref(target)
        where = f"{self.name}: {what} {self.config.resource} {ns}/{name} scale"
        try:
            return fn(*args, _request_timeout=self.config.timeout_s, **kwargs)
        except ApiException as exc:
            raise ActuatorError(f"{where}: HTTP {exc.status} {exc.reason}".rstrip()) from None
        except Exception as exc:  # urllib3 connection errors and the like
            raise ActuatorError(f"{where}: {type(exc).__name__}: {exc}") from None

    def _read_scale(self, target: str) -> Any:
        api = self._api()
        name, ns = self._ref(target)
        fn = (
            api.read_namespaced_deployment_scale
            if self.config.resource == "deployment"
            else api.read_namespaced_stateful_set_scale
        )
        return self._call("read", target, fn, name, ns)

    def _read(self, target: str) -> int:
        scale = self._read_scale(target)
        return _spec_replicas(scale)

    def _set(self, action: ScaleAction, detail: dict[str, Any]) -> int:
        api = self._api()
        name, ns = self._ref(action.target)
        fn = (
            api.patch_namespaced_deployment_scale
            if self.config.resource == "deployment"
            else api.patch_namespaced_stateful_set_scale
        )
        body = {"spec": {"replicas": action.to}}
        scale = self._call("patch", action.target, fn, name, ns, body, _content_type="application/merge-patch+json")
        detail.update({"workload": f"{self.config.resource}/{ns}/{name}"})
        if scale.status is not None and scale.status.replicas is not None:
            detail["status_replicas"] = int(scale.status.replicas)
        return _spec_replicas(scale)


def _spec_replicas(scale: Any) -> int:
    # an absent spec.replicas means 0 in the API's JSON (omitempty)
    return int(scale.spec.replicas or 0) if scale.spec is not None else 0
