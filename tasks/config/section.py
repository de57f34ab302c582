"""What every settings section shares: strict models and one duration rule.

Why a module of its own: the section modules (``settings``, ``scaling``) each build on it, and the
settings module composes them all; with the base here neither imports the other's internals.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from tasks.timeparse import parse_duration

__all__ = ["Section", "check_duration"]


class Section(BaseModel):
    """A settings section: unknown fields are errors, assignments are validated."""

    # allow_inf_nan=False: every number here is a size, a duration or a ratio; ``.inf`` or ``.nan``
    # from YAML would pass ``gt=0`` (inf) and turn into a loop that never sleeps or never ends.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


def check_duration(v: str) -> str:
    """``v`` when it is a positive duration such as ``5m``; a ``ValueError`` saying so otherwise."""
    try:
        if parse_duration(v).total_seconds() <= 0:
            raise ValueError
    except ValueError:
        raise ValueError(f"{v!r} is not a positive duration like 5m, 1h or 14d") from None
    return v
