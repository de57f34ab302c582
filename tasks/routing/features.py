"""What the router knows of a query before it sends it: a small, bounded feature record.

Why so little: this runs on every request (the router's overhead budget is ≤ 1 ms p50), and the
same record is stored with every outcome so the learned model trains on exactly what it will see.
"""

from __future__ import annotations

import math
from typing import Any

from tasks.routing.model import Query

__all__ = ["query_features", "route_template"]

_MAX_SEGMENTS = 3
_MAX_SEGMENT_LEN = 64


def _is_id(segment: str) -> bool:
    """Numbers, UUIDs and long hex/alphanumeric tokens with digits stand for ids, not routes."""
    if segment.isdigit():
        return True
    if len(segment) >= 8 and any(c.isdigit() for c in segment):
        return all(c.isalnum() or c in "-_" for c in segment)
    return False


def route_template(path: str) -> str:
    """``/users/123/orders?x=1`` → ``/users/:id/orders``: at most 3 segments, ids folded."""
    segments = path.split("?", 1)[0].split("/")[1 : _MAX_SEGMENTS + 1]
    out = [":id" if _is_id(s) else s[:_MAX_SEGMENT_LEN] for s in segments]
    return "/" + "/".join(out)


def query_features(query: Query) -> dict[str, Any]:
    """The query's features (JSON-able), recorded with its outcome."""
    return {
        "method": query.method.upper(),
        "route": route_template(query.path),
        "kind": query.kind or "",
        "size": query.size,
        "log_size": round(math.log1p(max(query.size, 0)), 4),
        "text_len": len(query.text),
    }
