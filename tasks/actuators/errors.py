"""The two ways an action goes wrong: the system refused or could not be reached, or the config is bad.

Why two classes: an :class:`ActuatorError` is recorded as a failed action and retried with the
same id; an :class:`ActuatorConfigError` is a mistake in ``cortex-perf.yaml`` that no retry
fixes, reported at load time naming each bad field (``problems``, one ``field: message`` line
each, so ``config check`` lists them beside every other setting's problems).
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["ActuatorConfigError", "ActuatorError"]


class ActuatorError(RuntimeError):
    """Setting or reading a value failed; the message says what, where and why (never a secret)."""


class ActuatorConfigError(ValueError):
    """An actuator's configuration is invalid; the message names every bad field.

    ``problems``: the same, one ``<origin>.<field>: <what is wrong>`` line per field."""

    def __init__(self, message: str, problems: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.problems: list[str] = list(problems) or [message]
