"""Query features: a cheap, bounded classification of a request, recorded with every outcome.

Why these: backends differ per *kind* of query (a route, a declared kind, a big body, a long
prompt), so the learned strategy needs a description of the query that is the same at training and
at decision time. ``query_features`` runs on every request, so it is bounded and linear: the path
becomes a route template (ids, numbers, UUIDs and hex tokens replaced, first 3 segments), the body
size a log, and a text body at most ``TEXT_CHARS`` characters split into at most ``MAX_TOKENS``
tokens hashed into ``TEXT_BUCKETS`` buckets with CRC-32 (deterministic across processes, unlike
``hash()``). Measured on this box: see BENCHMARKS.md ("router: learned strategy").

The target's live state at decision time (``pending``, ``ewma_ms``) is not a query feature: the
Router adds those two keys for the chosen target (``LIVE_KEYS``), so training sees what the model
saw. :func:`encode_query` turns a feature record into the model's numeric query columns.
"""

from __future__ import annotations

import math
import re
import zlib
from collections import Counter
from collections.abc import Mapping
from typing import Any

import numpy as np

from tasks.routing.model import Query

__all__ = [
    "CATEGORY_BUCKETS",
    "LIVE_KEYS",
    "MAX_TOKENS",
    "QUERY_COLUMNS",
    "TEXT_BUCKETS",
    "TEXT_CHARS",
    "encode_query",
    "query_features",
    "route_template",
]

TEXT_CHARS = 1024  # tokens are read from the head of the body only (the cost is per character)
MAX_TOKENS = 128
TEXT_BUCKETS = 8
#: hashed one-hot buckets for the categorical fields (method, route, kind)
CATEGORY_BUCKETS = 64
#: keys the Router adds to ``Decision.features`` for the chosen target, at decision time (before
#: its own request counts as pending): requests in flight and its peak-EWMA latency in ms.
LIVE_KEYS = ("pending", "ewma_ms")

_SEGMENTS = 3
_TOKEN = re.compile(r"\w+")  # linear; \w is Unicode-aware
_NUMBER = re.compile(r"^[+-]?\d+(?:\.\d+)?$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$")
_HEX = re.compile(r"^[0-9a-fA-F]{16,}$")
_DIGITS = re.compile(r"\d")
_NUMERIC = ("size_log2", "text_len_log2", "text_tokens_log2", *(f"text_h{i}" for i in range(TEXT_BUCKETS)))
#: the numeric query columns, after the hashed categorical buckets
QUERY_COLUMNS = (*(f"cat_{i}" for i in range(CATEGORY_BUCKETS)), *_NUMERIC)


def _segment(seg: str) -> str:
    if _NUMBER.match(seg) or _UUID.match(seg) or _HEX.match(seg):
        return ":id"
    # a token mixing letters with 4+ digits is an id too (user42, ord-20260101)
    if len(_DIGITS.findall(seg)) >= 4:
        return ":id"
    return seg[:40]


def route_template(path: str) -> str:
    """``/users/42/orders/9f1c…/items`` → ``/users/:id/orders``: the path's shape, not its ids.

    Only the first 3 segments, each at most 40 characters; the query string is dropped."""
    path = path.split("?", 1)[0].split("#", 1)[0][:1024]
    segs = [s for s in path.split("/") if s][:_SEGMENTS]
    return "/" + "/".join(_segment(s) for s in segs)


def _crc(text: str) -> int:
    return zlib.crc32(text.encode("utf-8", "surrogatepass"))


#: The last query's record: the learned strategy and the router both ask for the same query's
#: features within one ``route`` call (7–40 µs each); a strong reference, so identity is safe.
_last: tuple[Query, dict[str, Any]] | None = None


def query_features(query: Query) -> dict[str, Any]:
    """The query's feature record (JSON-able): what the learned model sees of the request.

    Callers must not mutate the record (copy it first): the last one is shared."""
    global _last
    last = _last
    if last is not None and last[0] is query:
        return last[1]
    feats = _compute(query)
    _last = (query, feats)
    return feats


def _compute(query: Query) -> dict[str, Any]:
    full = query.text or ""
    text = full[:TEXT_CHARS]
    buckets = [0] * TEXT_BUCKETS
    tokens = _TOKEN.findall(text.lower())[:MAX_TOKENS] if text else []
    n = len(tokens)
    for tok, count in Counter(tokens).items():  # hash each distinct token once (C-speed counting)
        buckets[_crc(tok) % TEXT_BUCKETS] += count
    return {
        "method": query.method.upper()[:16],
        "route": route_template(query.path),
        "kind": (query.kind or "")[:100],
        "size_log2": round(math.log2(1 + max(query.size, 0)), 4),
        "text_len_log2": round(math.log2(1 + len(full)), 4),
        "text_tokens_log2": round(math.log2(1 + n), 4),
        **{f"text_h{i}": round(b / n, 4) if n else 0.0 for i, b in enumerate(buckets)},
    }


def encode_query(features: Mapping[str, Any], out: np.ndarray | None = None) -> np.ndarray:
    """The numeric query columns (``QUERY_COLUMNS``) of a feature record, as float32.

    Categorical fields go to hashed one-hot buckets (``field=value``, CRC-32): bounded width,
    no vocabulary to keep in step between training and serving. Missing keys read as empty/0, so
    records written by an older version still encode."""
    row = out if out is not None else np.zeros(len(QUERY_COLUMNS), dtype=np.float32)
    row[:CATEGORY_BUCKETS] = 0.0
    for name in ("method", "route", "kind"):
        row[_crc(f"{name}={features.get(name) or ''}") % CATEGORY_BUCKETS] += 1.0
    for i, name in enumerate(_NUMERIC):
        v = features.get(name, 0.0)
        row[CATEGORY_BUCKETS + i] = float(v) if isinstance(v, int | float) and math.isfinite(v) else 0.0
    return row
