"""Placeholder: the learned strategy lands from its own branch; until then it is P2C-EWMA."""

from __future__ import annotations

import random
from typing import Any

from tasks.config.routing import LearnedSettings
from tasks.routing.model import Query, Strategy, TargetState


class LearnedStrategy:
    name = "learned"

    def __init__(self, settings: LearnedSettings, fallback: Strategy, rng: random.Random) -> None:
        self.settings = settings
        self.fallback = fallback
        self.rng = rng
        self.model: Any = None
        self.last_explored = False

    def choose(self, query: Query, candidates: list[TargetState], now: float) -> TargetState:
        self.last_explored = False
        return self.fallback.choose(query, candidates, now)
