"""Notification receivers: a name, where to send (Apprise URLs or an Apprise config file with tags),
how to format, and how hard to retry.

A receiver mapping in the alerting config looks like::

    - name: team-slack
      apprise: ["slack://T000/B000/XXXX", "json://hooks.example.com/alert"]
      tag: [oncall]                    # only with apprise_config: which of its URLs to use
      send_resolved: true              # default: Alertmanager's default for that kind of receiver
      format: markdown                 # markdown | html | text; default html for mailto://, else markdown
      title: "{{ status | upper }} {{ group_labels.alertname }}"   # Jinja2 (sandboxed), optional
      body: "..."                       # optional, defaults in notify_templates
      max_retries: 5                   # failed sends retried this many times, then the entry is dead
      retry_backoff: 30s               # first retry delay; doubles per attempt ...
      retry_backoff_max: 1h            # ... up to this cap

Why URLs are treated as secrets: Apprise URLs carry webhook tokens, bot tokens and SMTP passwords
in the user-info, path, host or query. ``Receiver``'s repr and every error here print them through
:func:`redact_url`, and :func:`redact_text` scrubs the same secrets out of error text returned by
the network layer, so a log line or a CLI table never leaks a token.

``send_resolved`` defaults follow Alertmanager per integration: ``email_configs`` and
``slack_configs`` default to ``false`` (so ``mailto://``/``mailtos://`` and ``slack://`` do here),
everything else follows ``webhook_configs`` (``true``), which is the integration a generic Apprise
URL is closest to; a receiver backed by an Apprise config file follows the webhook default too.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast
from urllib.parse import parse_qsl, quote, urlsplit

from tasks.alerting.notify.notify_templates import check_receiver_templates
from tasks.timeparse import parse_prometheus_duration

__all__ = [
    "FORMATS",
    "Receiver",
    "ReceiverError",
    "parse_receiver",
    "parse_receivers",
    "redact_text",
    "redact_url",
    "url_secrets",
]

Format = Literal["markdown", "html", "text"]
FORMATS: tuple[Format, ...] = ("markdown", "html", "text")

_ALLOWED_KEYS = frozenset(
    {
        "name",
        "apprise",
        "apprise_config",
        "tag",
        "send_resolved",
        "format",
        "title",
        "body",
        "max_retries",
        "retry_backoff",
        "retry_backoff_max",
        "timeout",
    }
)
_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")
_NAME_RE = re.compile(r"^[A-Za-z0-9_.\-]+$")
#: Schemes whose Alertmanager counterpart defaults ``send_resolved`` to false.
_NO_RESOLVED_SCHEMES = frozenset({"mailto", "mailtos", "slack"})
_HTML_SCHEMES = frozenset({"mailto", "mailtos"})
#: Query parameters whose values are addressing/options, not secrets (kept by ``redact_url``).
_SAFE_QUERY_KEYS = frozenset(
    {
        "from",
        "to",
        "cc",
        "bcc",
        "mode",
        "format",
        "method",
        "cto",
        "rto",
        "overflow",
        "name",
        "smtp",
        "reply",
        "verify",
        "priority",
        "retry",
        "wait",
        "optional",
        "tag",
    }
)
_MASK = "****"


class ReceiverError(ValueError):
    """A receiver definition that cannot be used; the message names the receiver and the field."""


# ---- secrets ---------------------------------------------------------------------------------------


def _looks_like_host(host: str) -> bool:
    """A real host name or address (kept) rather than a token in the host position (masked),
    as in ``slack://TOKENA/TOKENB/TOKENC`` or ``tgram://123456:ABC…/chat``."""
    if host in ("localhost",) or re.fullmatch(r"[\d.]+|\[[0-9a-fA-F:]+\]", host):
        return True
    return "." in host and all(re.fullmatch(r"[A-Za-z0-9\-]{1,63}", p) for p in host.split("."))


def _mask(part: str) -> str:
    """Keep a short prefix so people can tell two tokens apart, hide the rest."""
    return (part[:2] + _MASK) if len(part) > 6 else _MASK


def _secret_path_segment(seg: str) -> bool:
    """Path segments of 8+ characters are treated as tokens (webhook ids, bot tokens)."""
    return len(seg) >= 8


def url_secrets(url: str) -> list[str]:
    """The substrings of an Apprise URL that :func:`redact_url` hides (password, token-like host,
    long path segments, non-addressing query values), longest first, for scrubbing other text."""
    out: set[str] = set()
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
    except ValueError:
        return [url] if url else []
    userinfo, _, hostport = netloc.rpartition("@")
    if ":" in userinfo:
        pw = userinfo.split(":", 1)[1]
        if pw:
            out.add(pw)
    host = hostport.rsplit(":", 1)[0] if not hostport.startswith("[") else hostport
    if host and not _looks_like_host(host):
        out.add(host)
    for seg in parts.path.split("/"):
        if seg and _secret_path_segment(seg):
            out.add(seg)
    for k, v in parse_qsl(parts.query, keep_blank_values=False):
        if k.lower() not in _SAFE_QUERY_KEYS and v:
            out.add(v)
    # Percent-encoded forms too, so a URL echoed back encoded is scrubbed as well.
    out |= {quote(s, safe="") for s in list(out)}
    return sorted((s for s in out if len(s) >= 3), key=len, reverse=True)


def redact_url(url: str) -> str:
    """An Apprise URL safe to print: scheme, user, real host names, short path parts and
    addressing options kept; passwords, tokens and unknown query values masked.

    ``json://bot:s3cret@hooks.example.com/abcdef123456?token=xyz`` →
    ``json://bot:****@hooks.example.com/ab****?token=****``. Text that is not a URL at all is
    masked whole (it could be anything)."""
    m = _SCHEME_RE.match(url or "")
    if not m:
        return _MASK
    try:
        parts = urlsplit(url)
    except ValueError:
        return f"{m.group(1)}://{_MASK}"
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if ":" in userinfo:
        userinfo = userinfo.split(":", 1)[0] + ":" + _MASK
    host, colon, port = hostport.rpartition(":") if re.search(r":\d+$", hostport) else (hostport, "", "")
    if host and not _looks_like_host(host):
        host = _mask(host)
    netloc = f"{userinfo}{at}{host}{colon}{port}"
    path = "/".join(_mask(s) if s and _secret_path_segment(s) else s for s in parts.path.split("/"))
    query = "&".join(
        f"{k}={v if k.lower() in _SAFE_QUERY_KEYS else _MASK}"
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
    )
    frag = f"#{parts.fragment}" if parts.fragment else ""  # channel names (#general), not secrets
    return f"{parts.scheme}://{netloc}{path}" + (f"?{query}" if query else "") + frag


def redact_text(text: str, urls: Sequence[str]) -> str:
    """``text`` with every secret of ``urls`` (and each whole URL) replaced by its redacted form,
    for error messages that came back from Apprise, sockets or SMTP servers."""
    for url in sorted(urls, key=len, reverse=True):
        if url and url in text:
            text = text.replace(url, redact_url(url))
    for secret in (s for url in urls for s in url_secrets(url)):
        text = text.replace(secret, _MASK)
    return text


# ---- the receiver ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Receiver:
    """One parsed receiver. Build it with :func:`parse_receiver`; ``urls`` are secrets (see module
    docstring), so the repr shows them redacted."""

    name: str
    urls: tuple[str, ...] = field(default=(), repr=False)
    config_path: str | None = None
    tags: tuple[str, ...] = ()
    send_resolved: bool = True
    format: Format = "markdown"
    title: str | None = None
    body: str | None = None
    max_retries: int = 5
    retry_backoff_s: float = 30.0
    retry_backoff_max_s: float = 3600.0
    timeout_s: float = 10.0

    def __repr__(self) -> str:
        where = f"urls={[redact_url(u) for u in self.urls]!r}" if self.urls else f"config_path={self.config_path!r}"
        return (
            f"Receiver(name={self.name!r}, {where}, tags={list(self.tags)!r}, send_resolved={self.send_resolved}, "
            f"format={self.format!r}, max_retries={self.max_retries}, retry_backoff_s={self.retry_backoff_s:g})"
        )

    __str__ = __repr__

    def redacted_urls(self) -> list[str]:
        """The URLs as they may be shown to people."""
        return [redact_url(u) for u in self.urls]

    def redact(self, text: str) -> str:
        """Scrub this receiver's secrets from ``text`` (an error from the network layer)."""
        return redact_text(text, self.urls)

    def backoff_s(self, attempt: int) -> float:
        """Delay before retry number ``attempt`` (1-based): ``retry_backoff * 2**(attempt-1)``, capped.

        Deterministic on purpose (no jitter): the next attempt time is stored, shown by the CLI and
        asserted in tests; receivers are few, so retries never stampede one endpoint anyway."""
        return float(min(self.retry_backoff_max_s, self.retry_backoff_s * (2 ** max(0, attempt - 1))))


def _err(name: str, fld: str, msg: str) -> ReceiverError:
    return ReceiverError(f"receiver {name!r}: {fld}: {msg}")


def _str_list(name: str, fld: str, value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, Sequence) and all(isinstance(v, str) for v in value):
        return list(cast(Sequence[str], value))
    raise _err(name, fld, f"expected a string or a list of strings, got {type(value).__name__}")


def _seconds(name: str, fld: str, value: object) -> float:
    if isinstance(value, bool):
        raise _err(name, fld, "expected a duration like 30s or a number of seconds, got a boolean")
    if isinstance(value, int | float):
        secs = float(value)
    elif isinstance(value, str):
        try:
            secs = parse_prometheus_duration(value.strip())
        except ValueError as e:
            raise _err(name, fld, str(e)) from None
    else:
        raise _err(name, fld, f"expected a duration like 30s, got {type(value).__name__}")
    if secs < 0 or secs != secs:
        raise _err(name, fld, f"must not be negative, got {value!r}")
    return secs


def _check_url(name: str, index: int, url: str) -> None:
    """Refuse a URL Apprise cannot load, naming it only in redacted form."""
    fld = f"apprise[{index}]"
    if not _SCHEME_RE.match(url):
        raise _err(name, fld, f"{redact_url(url)} is not an Apprise URL (expected scheme://…)")
    # Imported here, not at the top: apprise takes ~0.4 s to import (measured), and parsing a
    # notification config needs it only when a receiver has URLs to check.
    import apprise

    inst = apprise.Apprise.instantiate(url, suppress_exceptions=True)
    if inst is None:
        raise _err(name, fld, f"Apprise cannot load {redact_url(url)} (unknown scheme or missing parts)")


def parse_receiver(raw: Mapping[str, Any], *, base_dir: str | os.PathLike[str] | None = None) -> Receiver:
    """Validate one receiver mapping (see module docstring) into a :class:`Receiver`.

    Templates are compiled here, so a syntax error surfaces when the config is loaded, not at
    3 a.m. when the first alert fires. ``base_dir`` resolves a relative ``apprise_config`` path."""
    if not isinstance(raw, Mapping):
        raise ReceiverError(f"receiver: expected a mapping, got {type(raw).__name__}")
    name = raw.get("name")
    if not isinstance(name, str) or not name or not _NAME_RE.match(name):
        raise ReceiverError(f"receiver {name!r}: name: expected a non-empty name of letters, digits, _ . -")
    unknown = sorted(set(raw) - _ALLOWED_KEYS)
    if unknown:
        raise _err(name, unknown[0], f"unknown field (allowed: {', '.join(sorted(_ALLOWED_KEYS))})")
    has_urls, has_cfg = raw.get("apprise") is not None, raw.get("apprise_config") is not None
    if has_urls == has_cfg:
        raise _err(name, "apprise", "give exactly one of apprise (URLs) or apprise_config (a file)")
    urls: list[str] = []
    config_path: str | None = None
    if has_urls:
        urls = _str_list(name, "apprise", raw["apprise"])
        if not urls:
            raise _err(name, "apprise", "no URLs given")
        for i, u in enumerate(urls):
            _check_url(name, i, u)
    else:
        cfg = raw["apprise_config"]
        if not isinstance(cfg, str) or not cfg:
            raise _err(name, "apprise_config", "expected a path or URL of an Apprise config file")
        if _SCHEME_RE.match(cfg) and not cfg.startswith("file://"):
            config_path = cfg
        else:
            p = cfg.removeprefix("file://")
            if base_dir is not None and not os.path.isabs(p):
                p = os.path.join(base_dir, p)
            if not os.path.isfile(p):
                raise _err(name, "apprise_config", f"file {p} does not exist")
            config_path = p
    tags = _str_list(name, "tag", raw["tag"]) if raw.get("tag") is not None else []
    if tags and not has_cfg:
        raise _err(name, "tag", "tags select URLs of an apprise_config file; with apprise URLs list only those wanted")
    scheme = _SCHEME_RE.match(urls[0]).group(1).lower() if urls else ""  # type: ignore[union-attr]
    schemes = {(_SCHEME_RE.match(u).group(1).lower()) for u in urls}  # type: ignore[union-attr]

    send_resolved = raw.get("send_resolved")
    if send_resolved is None:
        send_resolved = not (schemes and schemes <= _NO_RESOLVED_SCHEMES)
    elif not isinstance(send_resolved, bool):
        raise _err(name, "send_resolved", f"expected true or false, got {send_resolved!r}")

    fmt = raw.get("format")
    if fmt is None:
        fmt = "html" if scheme in _HTML_SCHEMES else "markdown"
    elif fmt not in FORMATS:
        raise _err(name, "format", f"expected one of {', '.join(FORMATS)}, got {fmt!r}")

    title, body = raw.get("title"), raw.get("body")
    for fld, tpl in (("title", title), ("body", body)):
        if tpl is not None and not isinstance(tpl, str):
            raise _err(name, fld, f"expected a template string, got {type(tpl).__name__}")

    max_retries = raw.get("max_retries", 5)
    if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
        raise _err(name, "max_retries", f"expected a whole number >= 0, got {max_retries!r}")
    backoff = _seconds(name, "retry_backoff", raw.get("retry_backoff", "30s"))
    backoff_max = _seconds(name, "retry_backoff_max", raw.get("retry_backoff_max", "1h"))
    if backoff_max < backoff:
        raise _err(name, "retry_backoff_max", f"{backoff_max:g}s is below retry_backoff ({backoff:g}s)")
    timeout = _seconds(name, "timeout", raw.get("timeout", "10s"))
    if timeout <= 0:
        raise _err(name, "timeout", "must be above zero")

    rec = Receiver(
        name=name,
        urls=tuple(urls),
        config_path=config_path,
        tags=tuple(tags),
        send_resolved=send_resolved,
        format=cast(Format, fmt),
        title=title,
        body=body,
        max_retries=max_retries,
        retry_backoff_s=backoff,
        retry_backoff_max_s=backoff_max,
        timeout_s=timeout,
    )
    check_receiver_templates(rec)
    return rec


def parse_receivers(
    raw: Sequence[Mapping[str, Any]], *, base_dir: str | os.PathLike[str] | None = None
) -> dict[str, Receiver]:
    """Parse a list of receiver mappings into ``{name: Receiver}``; duplicate names are an error."""
    if isinstance(raw, str | bytes) or not isinstance(raw, Sequence):
        raise ReceiverError(f"receivers: expected a list of receiver mappings, got {type(raw).__name__}")
    out: dict[str, Receiver] = {}
    for i, item in enumerate(raw):
        try:
            rec = parse_receiver(item, base_dir=base_dir)
        except ReceiverError as e:
            raise ReceiverError(f"receivers[{i}]: {e}") from None
        if rec.name in out:
            raise ReceiverError(f"receivers[{i}]: receiver {rec.name!r}: name: defined twice")
        out[rec.name] = rec
    return out
