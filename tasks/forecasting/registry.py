"""The forecasters' view of the shared model registry (``tasks.registry``).

The registry itself is shared with the router's model; this module keeps forecasting's callers on
one import and types ``load`` as a :class:`Forecaster`. Kinds resolve through ``MODELS`` at call
time (so a forecaster added to the catalogue, even by a test, loads without registering twice),
then through the shared kind → loader table.
"""

from __future__ import annotations

from tasks.forecasting import MODELS
from tasks.forecasting.base import Forecaster
from tasks.registry import (
    LIBRARIES,
    STATUSES,
    Loader,
    ModelVersion,
    PromotionDecision,
    RegistryError,
    library_versions,
    register_kind,
)
from tasks.registry import ModelRegistry as SharedRegistry

__all__ = [
    "LIBRARIES",
    "STATUSES",
    "ModelRegistry",
    "ModelVersion",
    "PromotionDecision",
    "RegistryError",
    "library_versions",
]

for _kind, _cls in MODELS.items():
    register_kind(_kind, _cls.load)


class ModelRegistry(SharedRegistry):
    """The shared registry whose ``load`` returns a forecaster."""

    def load(self, name: str, version: str | None = None) -> tuple[ModelVersion, Forecaster]:
        mv, model = super().load(name, version)
        if not isinstance(model, Forecaster):
            raise RegistryError(f"model {name!r} {mv.version} is a {mv.kind!r}, not a forecaster")
        return mv, model

    def history(self, name: str | None = None) -> list[ModelVersion]:
        """Forecasters' versions only: the shared registry also holds other domains' models (the
        router's, ``meta.domain = routing``), which have no place in ``forecast history`` or the
        forecast-accuracy report (their score is not a MASE)."""
        return [v for v in super().history(name) if v.meta.get("domain", "forecasting") == "forecasting"]

    def _loader(self, kind: str) -> Loader | None:
        cls = MODELS.get(kind)
        return cls.load if cls is not None else super()._loader(kind)
