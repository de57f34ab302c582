"""The model registry: versions of each model on disk, their status in the state DB.

Shared by every domain that trains models (forecasting's forecasters, the router's latency/failure
model): one lineage per ``name``, one table, one promotion rule. A model is anything with
``save(directory)``; its **kind** (``model.kind``, else ``model.name``) picks the loader that reads
it back, from a small kind → loader table each domain fills with :func:`register_kind` when its
model module is imported (the registry imports no domain, so domains may all import it).

A retrain registers a **challenger**; it becomes the **champion** only when it beats the current
champion on held-out error (the same recent origins, unseen by either: every version is fitted on
the first 80 % of its window, so an older champion's training data ends before the challenger's
held-out part begins). Promotion emits ``model.promoted``; ``rollback`` re-promotes the previous
champion. Files live under ``<models_dir>/<name>/<version>/`` (the fitted model plus
``meta.json``: kind, features, training window, library versions, backtest scores), written to a
temporary directory and renamed into place, so a crash never leaves half a version.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol, Self, TypeVar

from tasks.config import Settings
from tasks.state import State, register_schema

__all__ = [
    "LIBRARIES",
    "STATUSES",
    "Loader",
    "ModelRegistry",
    "ModelVersion",
    "PromotionDecision",
    "RegistryError",
    "SavableModel",
    "library_versions",
    "loader_for",
    "model_kind",
    "register_kind",
]

register_schema(
    "model_versions",
    """CREATE TABLE IF NOT EXISTS model_versions (
        name VARCHAR NOT NULL,
        version VARCHAR NOT NULL,
        seq INTEGER NOT NULL,
        kind VARCHAR NOT NULL,
        status VARCHAR NOT NULL,
        created_at TIMESTAMPTZ NOT NULL,
        promoted_at TIMESTAMPTZ,
        train_start TIMESTAMPTZ,
        train_end TIMESTAMPTZ,
        score DOUBLE,
        path VARCHAR NOT NULL,
        meta JSON,
        note VARCHAR,
        PRIMARY KEY (name, version)
    )""",
)

STATUSES = ("challenger", "champion", "retired", "rejected")
LIBRARIES = ("xgboost", "statsmodels", "polars", "numpy", "duckdb")


class RegistryError(ValueError):
    """A registry operation that cannot be done (unknown model or version, nothing to roll back to)."""


class SavableModel(Protocol):
    """What the registry stores: a fitted model that writes itself into a directory."""

    def save(self, directory: Path) -> None: ...


#: Reads a saved model back from its version directory (a model class's ``load``).
Loader = Callable[[Path], Any]
_LOADERS: dict[str, Loader] = {}
M = TypeVar("M")


def register_kind(kind: str, loader: Loader) -> None:
    """Declare how models of ``kind`` are read back (each domain, when its model module loads)."""
    if not kind:
        raise ValueError("kind: must not be empty")
    _LOADERS[kind] = loader


def loader_for(kind: str) -> Loader | None:
    """The loader registered for ``kind`` (None when no imported domain declared it)."""
    return _LOADERS.get(kind)


def model_kind(model: object) -> str:
    """A model's kind: its ``kind`` attribute (router models), else its ``name`` (forecasters)."""
    kind = getattr(model, "kind", None) or getattr(model, "name", None)
    if not isinstance(kind, str) or not kind:
        raise RegistryError(f"{type(model).__name__} has neither a `kind` nor a `name` to register it under")
    return kind


@dataclass
class ModelVersion:
    name: str
    version: str
    seq: int
    kind: str
    status: str
    created_at: datetime
    path: str
    promoted_at: datetime | None = None
    train_start: datetime | None = None
    train_end: datetime | None = None
    score: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("created_at", "promoted_at", "train_start", "train_end"):
            if d[k] is not None:
                d[k] = d[k].astimezone(UTC).isoformat()
        return d


@dataclass
class PromotionDecision:
    promoted: bool
    challenger: ModelVersion
    champion: ModelVersion | None
    challenger_score: float
    champion_score: float | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "promoted": self.promoted,
            "challenger": self.challenger.version,
            "champion": self.champion.version if self.champion else None,
            "challenger_score": self.challenger_score,
            "champion_score": self.champion_score,
            "reason": self.reason,
        }


def library_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for lib in LIBRARIES:
        try:
            out[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            continue
    return out


_COLUMNS = "name, version, seq, kind, status, created_at, path, promoted_at, train_start, train_end, score, meta, note"


def _row_to_version(row: tuple[Any, ...]) -> ModelVersion:
    name, version, seq, kind, status, created_at, path, promoted_at, train_start, train_end, score, meta, note = row
    return ModelVersion(
        name=name,
        version=version,
        seq=seq,
        kind=kind,
        status=status,
        created_at=created_at,
        path=path,
        promoted_at=promoted_at,
        train_start=train_start,
        train_end=train_end,
        score=score,
        meta=json.loads(meta) if isinstance(meta, str) else (meta or {}),
        note=note,
    )


class ModelRegistry:
    """Registry of fitted models, one lineage per ``name`` (a metric group's forecaster, the router's model)."""

    def __init__(self, state: State, models_dir: str | Path) -> None:
        self.state = state
        self.models_dir = Path(models_dir)

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        return cls(State.from_settings(settings), Path(settings.data_dir) / "models")

    # ---- registering ------------------------------------------------------------------------
    def register(
        self,
        name: str,
        model: SavableModel,
        *,
        train_start: datetime | None,
        train_end: datetime | None,
        score: float | None,
        meta: dict[str, Any] | None = None,
        now: datetime | None = None,
    ) -> ModelVersion:
        """Save ``model`` as a new challenger version of ``name``; returns it."""
        if not name or "/" in name or name.startswith("."):
            raise RegistryError(f"name: {name!r} is not a valid model name")
        now = now or datetime.now(UTC)
        kind = model_kind(model)
        base = self.models_dir / name
        base.mkdir(parents=True, exist_ok=True)
        tmp = base / f".tmp-{uuid.uuid4().hex}"
        tmp.mkdir()
        try:
            model.save(tmp)
            full_meta = {
                "kind": kind,
                "train_start": train_start.isoformat() if train_start else None,
                "train_end": train_end.isoformat() if train_end else None,
                "libraries": library_versions(),
                **(meta or {}),
            }
            (tmp / "meta.json").write_text(json.dumps(full_meta, indent=1, default=str))
            with self.state.transaction() as con:
                seq = int(
                    con.execute(
                        "SELECT coalesce(max(seq), 0) + 1 FROM model_versions WHERE name = ?", [name]
                    ).fetchall()[0][0]
                )
                version = f"v{seq}"
                final = base / version
                if final.exists():  # left by a crash after rename but before commit: replace it
                    shutil.rmtree(final)
                os.rename(tmp, final)
                con.execute(
                    f"INSERT INTO model_versions ({_COLUMNS}) "
                    "VALUES (?, ?, ?, ?, 'challenger', ?, ?, NULL, ?, ?, ?, ?, NULL)",
                    [
                        name,
                        version,
                        seq,
                        kind,
                        now,
                        str(final),
                        train_start,
                        train_end,
                        score,
                        json.dumps(full_meta, default=str),
                    ],
                )
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return self.get(name, version)

    # ---- reading ------------------------------------------------------------------------------
    def get(self, name: str, version: str) -> ModelVersion:
        with self.state.transaction() as con:
            rows = con.execute(
                f"SELECT {_COLUMNS} FROM model_versions WHERE name = ? AND version = ?", [name, version]
            ).fetchall()
        if not rows:
            raise RegistryError(f"model {name!r} has no version {version!r}")
        return _row_to_version(rows[0])

    def champion(self, name: str) -> ModelVersion | None:
        with self.state.transaction() as con:
            rows = con.execute(
                f"SELECT {_COLUMNS} FROM model_versions WHERE name = ? AND status = 'champion'", [name]
            ).fetchall()
        return _row_to_version(rows[0]) if rows else None

    def history(self, name: str | None = None) -> list[ModelVersion]:
        """Every version, newest first (of one model, or of all)."""
        with self.state.transaction() as con:
            if name:
                rows = con.execute(
                    f"SELECT {_COLUMNS} FROM model_versions WHERE name = ? ORDER BY seq DESC", [name]
                ).fetchall()
            else:
                rows = con.execute(f"SELECT {_COLUMNS} FROM model_versions ORDER BY name, seq DESC").fetchall()
        return [_row_to_version(r) for r in rows]

    def names(self) -> list[str]:
        with self.state.transaction() as con:
            return [r[0] for r in con.execute("SELECT DISTINCT name FROM model_versions ORDER BY name").fetchall()]

    def load(self, name: str, version: str | None = None) -> tuple[ModelVersion, Any]:
        """The fitted model of ``version`` (default: the champion), read by its kind's loader."""
        mv = self.get(name, version) if version else self.champion(name)
        if mv is None:
            raise RegistryError(f"model {name!r} has no champion yet (train it first)")
        loader = self._loader(mv.kind)
        if loader is None:
            raise RegistryError(f"model {name!r} {mv.version}: unknown kind {mv.kind!r}")
        return mv, loader(Path(mv.path))

    def load_as(self, name: str, cls: type[M], version: str | None = None) -> tuple[ModelVersion, M]:
        """:meth:`load`, checked to be a ``cls`` (a domain's typed view of its own lineage)."""
        mv, model = self.load(name, version)
        if not isinstance(model, cls):
            raise RegistryError(f"model {name!r} {mv.version} is a {mv.kind!r}, not a {cls.__name__}")
        return mv, model

    def _loader(self, kind: str) -> Loader | None:
        return loader_for(kind)

    # ---- promotion ----------------------------------------------------------------------------
    def promote_if_better(
        self,
        name: str,
        version: str,
        *,
        challenger_score: float,
        champion_score: float | None,
        min_improvement: float = 0.0,
        now: datetime | None = None,
    ) -> PromotionDecision:
        """Promote the challenger when it beats the champion on held-out error (lower is better).

        Both scores must come from the same held-out origins. ``min_improvement`` (a fraction)
        keeps a challenger that is only as good as the champion from churning versions.
        """
        challenger = self.get(name, version)
        if challenger.status != "challenger":
            raise RegistryError(f"model {name!r} {version} is {challenger.status}, not a challenger")
        champion = self.champion(name)
        if champion is None:
            return self._promote(challenger, None, challenger_score, None, "first version of this model", now)
        if champion_score is None:
            return self._promote(
                challenger, champion, challenger_score, None, "champion could not be scored on this window", now
            )
        bar = champion_score * (1.0 - min_improvement)
        if challenger_score < bar:
            reason = f"held-out error {challenger_score:.4g} < champion's {champion_score:.4g}"
            return self._promote(challenger, champion, challenger_score, champion_score, reason, now)
        with self.state.transaction() as con:
            con.execute(
                "UPDATE model_versions SET status = 'rejected', note = ? WHERE name = ? AND version = ?",
                [
                    f"held-out error {challenger_score:.4g} ≥ champion {champion.version}'s {champion_score:.4g}",
                    name,
                    version,
                ],
            )
        return PromotionDecision(
            False,
            self.get(name, version),
            champion,
            challenger_score,
            champion_score,
            f"held-out error {challenger_score:.4g} does not beat the champion's {champion_score:.4g}",
        )

    def promote(self, name: str, version: str, *, reason: str, now: datetime | None = None) -> PromotionDecision:
        """Make challenger ``version`` the champion now: for a caller that judged it itself (the
        router flow compares against the live strategy, which the registry cannot score)."""
        challenger = self.get(name, version)
        if challenger.status != "challenger":
            raise RegistryError(f"model {name!r} {version} is {challenger.status}, not a challenger")
        return self._promote(challenger, self.champion(name), challenger.score or 0.0, None, reason, now)

    def reject(self, name: str, version: str, *, reason: str) -> ModelVersion:
        """Mark challenger ``version`` rejected with ``reason`` (it lost its backtest)."""
        challenger = self.get(name, version)
        if challenger.status != "challenger":
            raise RegistryError(f"model {name!r} {version} is {challenger.status}, not a challenger")
        with self.state.transaction() as con:
            con.execute(
                "UPDATE model_versions SET status = 'rejected', note = ? WHERE name = ? AND version = ?",
                [reason, name, version],
            )
        return self.get(name, version)

    def _promote(
        self,
        challenger: ModelVersion,
        champion: ModelVersion | None,
        challenger_score: float,
        champion_score: float | None,
        reason: str,
        now: datetime | None,
    ) -> PromotionDecision:
        now = now or datetime.now(UTC)
        with self.state.transaction() as con:
            con.execute(
                "UPDATE model_versions SET status = 'retired' WHERE name = ? AND status = 'champion'",
                [challenger.name],
            )
            con.execute(
                "UPDATE model_versions SET status = 'champion', promoted_at = ?, note = ? "
                "WHERE name = ? AND version = ?",
                [now, reason, challenger.name, challenger.version],
            )
        return PromotionDecision(
            True, self.get(challenger.name, challenger.version), champion, challenger_score, champion_score, reason
        )

    def rollback(self, name: str, *, now: datetime | None = None) -> ModelVersion:
        """Retire the champion and re-promote the one before it; returns the new champion."""
        now = now or datetime.now(UTC)
        current = self.champion(name)
        if current is None:
            raise RegistryError(f"model {name!r} has no champion to roll back")
        with self.state.transaction() as con:
            rows = con.execute(
                "SELECT version FROM model_versions WHERE name = ? AND status = 'retired' AND promoted_at IS NOT NULL "
                "AND seq < ? ORDER BY promoted_at DESC, seq DESC LIMIT 1",
                [name, current.seq],
            ).fetchall()
            if not rows:
                raise RegistryError(f"model {name!r}: no earlier champion to roll back to")
            previous = rows[0][0]
            con.execute(
                "UPDATE model_versions SET status = 'rejected', note = ? WHERE name = ? AND version = ?",
                [f"rolled back at {now.isoformat()}", name, current.version],
            )
            con.execute(
                "UPDATE model_versions SET status = 'champion', promoted_at = ?, note = ? "
                "WHERE name = ? AND version = ?",
                [now, f"restored by rollback from {current.version}", name, previous],
            )
        return self.get(name, previous)
