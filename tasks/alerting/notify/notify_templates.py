"""Titles and bodies of group notifications, per receiver: defaults that read well in Slack
(markdown), in e-mail (HTML, escaped) and as plain text, and custom Jinja2 templates.

A *notification* is what the router hands to delivery: one receiver, one alert group (its key and
group labels), the group's alerts (firing and resolved), why it is sent (``initial``, ``update``,
``repeat``, ``escalation``, ``flapping`` …) and optional notes. :class:`Notification` is that
record; :func:`as_notification` also accepts any object or mapping with those fields, so the
router's own type needs no import from here.

Custom templates see the data Alertmanager's templates see, with snake_case names:

====================  ===============================  =====================================
here                  Alertmanager                     what
====================  ===============================  =====================================
``status``            ``.Status``                      ``firing`` if any alert fires, else ``resolved``
``receiver``          ``.Receiver``                    receiver name
``group_labels``      ``.GroupLabels``                 labels the group is keyed by
``common_labels``     ``.CommonLabels``                labels equal in every alert
``common_annotations`` ``.CommonAnnotations``          annotations equal in every alert
``alerts``            ``.Alerts``                      every alert; ``alerts.firing`` and
                                                       ``alerts.resolved`` as ``.Alerts.Firing``
``group_key``         ``.GroupKey``                    the group's key
``external_url``      ``.ExternalURL``                 link back to us (may be empty)
``reason``, ``notes``, ``possible_duplicate``  (ours)  why it is sent, router notes, re-send flag
====================  ===============================  =====================================

Each alert has ``status, labels, annotations, starts_at, ends_at, fingerprint, generator_url,
value`` (``.StartsAt`` → ``starts_at`` …); times are aware ``datetime`` objects.

Why a sandbox and StrictUndefined: templates come from config files, so they must not reach
Python internals (``SandboxedEnvironment``), and a typo such as ``{{ alert.lables }}`` must fail
loudly with the receiver and template named instead of sending an empty message. HTML receivers
render with autoescaping on, so a label value like ``<script>`` arrives as text, never markup.
"""

from __future__ import annotations

import functools
import html
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from tasks.alerting.model import Alert, Notification

__all__ = [
    "AlertList",
    "Notification",
    "NotificationLike",
    "NotifyTemplateError",
    "Rendered",
    "TemplatedReceiver",
    "as_notification",
    "check_receiver_templates",
    "render",
    "template_data",
]


class TemplatedReceiver(Protocol):
    """What rendering needs of a receiver; :class:`tasks.alerting.notify.receivers.Receiver` is one.

    Why a protocol and not ``Receiver`` itself: ``receivers`` compiles a receiver's templates when it
    parses one (:func:`check_receiver_templates`), so it imports this module; importing it back
    would close a cycle."""

    @property
    def name(self) -> str: ...
    @property
    def format(self) -> str: ...
    @property
    def title(self) -> str | None: ...
    @property
    def body(self) -> str | None: ...


STATUS_EMOJI = {"firing": "🔥", "resolved": "✅"}
DUPLICATE_NOTE = (
    "Possible duplicate: delivery of this notification was interrupted after it was handed to the "
    "channel and before it was recorded, so it is sent again and may already have arrived."
)


class NotifyTemplateError(ValueError):
    """A receiver's title/body template that does not compile or fails to render; the message names
    the receiver and which template."""


class NotificationLike(Protocol):
    """What delivery needs from a router's notification (attribute names as here; read-only, so any
    dataclass with these fields — e.g. the dispatcher's — satisfies it)."""

    @property
    def receiver(self) -> str: ...
    @property
    def group_key(self) -> str: ...
    @property
    def group_labels(self) -> Mapping[str, str]: ...
    @property
    def alerts(self) -> Sequence[Alert]: ...
    @property
    def reason(self) -> str: ...


def _get(obj: Any, key: str, default: Any = None) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(key, default)
    return getattr(obj, key, default)


def as_notification(obj: NotificationLike | Mapping[str, Any] | Notification) -> Notification:
    """Coerce a router notification (any object or mapping with ``receiver, group_key,
    group_labels, alerts, reason`` and optional ``notes``/``external_url``) into a
    :class:`Notification`; a missing or wrong field is a ``ValueError`` naming it."""
    if isinstance(obj, Notification):
        return obj
    receiver, group_key = _get(obj, "receiver"), _get(obj, "group_key")
    for fld, v in (("receiver", receiver), ("group_key", group_key)):
        if not isinstance(v, str) or not v:
            raise ValueError(f"notification.{fld}: expected a non-empty string, got {v!r}")
    gl = _get(obj, "group_labels") or {}
    if not isinstance(gl, Mapping):
        raise ValueError(f"notification.group_labels: expected a mapping, got {type(gl).__name__}")
    raw_alerts = _get(obj, "alerts")
    if raw_alerts is None or isinstance(raw_alerts, str | bytes | Mapping) or not isinstance(raw_alerts, Iterable):
        raise ValueError("notification.alerts: expected a list of alerts")
    alerts: list[Alert] = []
    for i, a in enumerate(raw_alerts):
        if isinstance(a, Alert):
            alerts.append(a)
        elif isinstance(a, Mapping):
            try:
                alerts.append(Alert.from_dict(a))
            except (KeyError, ValueError, TypeError) as e:
                raise ValueError(f"notification.alerts[{i}]: {e}") from None
        else:
            raise ValueError(f"notification.alerts[{i}]: expected an Alert, got {type(a).__name__}")
    if not alerts:
        raise ValueError("notification.alerts: a notification needs at least one alert")
    reason = _get(obj, "reason") or "initial"
    if not isinstance(reason, str):
        raise ValueError(f"notification.reason: expected a string, got {type(reason).__name__}")
    notes_raw = _get(obj, "notes") or ()
    notes = (notes_raw,) if isinstance(notes_raw, str) else tuple(str(n) for n in notes_raw)
    ext = _get(obj, "external_url") or ""
    return Notification(
        receiver=receiver,
        group_key=group_key,
        group_labels={str(k): str(v) for k, v in gl.items()},
        alerts=tuple(alerts),
        reason=reason,
        notes=notes,
        t=_get(obj, "t"),
        external_url=str(ext),
    )


# ---- template data ---------------------------------------------------------------------------------


class AlertList(list[dict[str, Any]]):
    """The alerts of a notification, with ``.firing`` and ``.resolved`` as Alertmanager's
    ``.Alerts.Firing`` / ``.Alerts.Resolved``."""

    @property
    def firing(self) -> list[dict[str, Any]]:
        return [a for a in self if a["status"] == "firing"]

    @property
    def resolved(self) -> list[dict[str, Any]]:
        return [a for a in self if a["status"] == "resolved"]


def _common(maps: list[Mapping[str, str]]) -> dict[str, str]:
    if not maps:
        return {}
    first = maps[0]
    return {k: v for k, v in sorted(first.items()) if all(m.get(k) == v for m in maps[1:])}


def template_data(n: Notification, receiver_name: str, *, possible_duplicate: bool = False) -> dict[str, Any]:
    """The variables templates see (see module docstring)."""
    alerts = AlertList(
        {
            "status": a.status,
            "labels": dict(sorted(a.labels.items())),
            "annotations": dict(sorted(a.annotations.items())),
            "starts_at": a.starts_at,
            "ends_at": a.ends_at,
            "fingerprint": a.fingerprint,
            "generator_url": a.generator,
            "value": a.value,
        }
        for a in n.alerts
    )
    return {
        "status": "firing" if alerts.firing else "resolved",
        "receiver": receiver_name,
        "group_key": n.group_key,
        "group_labels": dict(sorted(n.group_labels.items())),
        "common_labels": _common([a.labels for a in n.alerts]),
        "common_annotations": _common([a.annotations for a in n.alerts]),
        "alerts": alerts,
        "external_url": n.external_url,
        "reason": n.reason,
        "notes": list(n.notes),
        "possible_duplicate": possible_duplicate,
    }


# ---- the Jinja2 environment ------------------------------------------------------------------------


def _fmt_time(v: datetime | None) -> str:
    if v is None:
        return ""
    return v.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _http_url(v: object) -> str:
    """Only ``http(s)://`` links become links: a ``javascript:`` runbook URL from a rule file must
    not turn into a clickable script in an e-mail or chat message."""
    text = str(v or "").strip()
    return text if text.lower().startswith(("http://", "https://")) else ""


def _env(autoescape: bool) -> SandboxedEnvironment:
    env = SandboxedEnvironment(
        undefined=jinja2.StrictUndefined, autoescape=autoescape, trim_blocks=True, lstrip_blocks=True
    )
    env.filters["time"] = _fmt_time
    env.filters["label_pairs"] = lambda m: ", ".join(f"{k}={v}" for k, v in dict(m).items())
    env.filters["http_url"] = _http_url
    env.filters["label_values"] = lambda m: " ".join(str(v) for v in dict(m).values())
    return env


_ENVS = {False: _env(False), True: _env(True)}

# Title shared by every format: Alertmanager's default subject — ``[FIRING:2] <group label values>
# (<other common label values>)`` — plus our reason when it is not the first send.
_TITLE = (
    "{% if possible_duplicate %}(possible duplicate) {% endif %}"
    "[{{ status | upper }}{% if status == 'firing' %}:{{ alerts.firing | length }}{% endif %}] "
    "{{ group_labels | label_values }}"
    "{% set extra = common_labels | dictsort | rejectattr('0', 'in', group_labels) | list %}"
    "{% if extra %} ({% for k, v in extra %}{{ v }}{% if not loop.last %} {% endif %}{% endfor %}){% endif %}"
    "{% if reason not in ('initial', 'update') %} [{{ reason }}]{% endif %}"
)

_MARKDOWN_BODY = """\
{{ emoji[status] }} **{{ status | upper }}**{% if status == 'firing' %} ({{ alerts.firing | length }} firing\
{% if alerts.resolved %}, {{ alerts.resolved | length }} resolved{% endif %}){% endif %} · \
{{ group_labels | label_pairs }} · reason: {{ reason }}
{% if possible_duplicate %}
⚠️ _{{ duplicate_note }}_
{% endif %}
{% for section, items in [('Firing', alerts.firing), ('Resolved', alerts.resolved)] if items %}

**{{ section }}**
{% for a in items %}
{% set rb = a.annotations.get('runbook_url') | http_url %}
{% set summary = a.annotations.get('summary') %}
- {{ emoji[a.status] }} **{{ a.labels.alertname | default('alert') }}**\
{% if summary %}: {{ summary }}{% endif %}

{% if a.annotations.get('description') %}
  {{ a.annotations.get('description') }}
{% endif %}
  Labels: {% for k, v in a.labels.items() %}`{{ k }}={{ v }}`{% if not loop.last %} {% endif %}{% endfor %}

  Since {{ a.starts_at | time }}{% if a.status == 'resolved' %}, resolved {{ a.ends_at | time }}{% endif %}\
{% if rb %} · [Runbook]({{ rb }}){% endif %}\
{% if a.generator_url | http_url %} · [Source]({{ a.generator_url | http_url }}){% endif %}

{% endfor %}
{% endfor %}
{% if notes %}

**Notes**
{% for note in notes %}
- {{ note }}
{% endfor %}
{% endif %}
"""

_TEXT_BODY = """\
{{ status | upper }}{% if status == 'firing' %} ({{ alerts.firing | length }} firing\
{% if alerts.resolved %}, {{ alerts.resolved | length }} resolved{% endif %}){% endif %} - \
{{ group_labels | label_pairs }} - reason: {{ reason }}
{% if possible_duplicate %}
NOTE: {{ duplicate_note }}
{% endif %}
{% for section, items in [('Firing', alerts.firing), ('Resolved', alerts.resolved)] if items %}

{{ section }}:
{% for a in items %}
{% set rb = a.annotations.get('runbook_url') | http_url %}
{% set summary = a.annotations.get('summary') %}
* {{ a.labels.alertname | default('alert') }}{% if summary %}: {{ summary }}{% endif %}

{% if a.annotations.get('description') %}
  {{ a.annotations.get('description') }}
{% endif %}
  Labels: {{ a.labels | label_pairs }}
  Since {{ a.starts_at | time }}{% if a.status == 'resolved' %}, resolved {{ a.ends_at | time }}{% endif %}

{% if a.annotations.get('runbook_url') %}
  Runbook: {{ a.annotations.get('runbook_url') }}
{% endif %}
{% endfor %}
{% endfor %}
{% if notes %}

Notes:
{% for note in notes %}
* {{ note }}
{% endfor %}
{% endif %}
"""

_HTML_BODY = """\
<html><body style="font-family: sans-serif">
<h2 style="color: {{ '#c0392b' if status == 'firing' else '#27ae60' }}">{{ emoji[status] }} {{ status | upper }}\
{% if status == 'firing' %} ({{ alerts.firing | length }} firing{% if alerts.resolved %}, \
{{ alerts.resolved | length }} resolved{% endif %}){% endif %}</h2>
<p>Group: <code>{{ group_labels | label_pairs }}</code> &middot; reason: {{ reason }}</p>
{% if possible_duplicate %}
<p style="background: #fff3cd; padding: 6px"><strong>{{ duplicate_note }}</strong></p>
{% endif %}
{% for section, items in [('Firing', alerts.firing), ('Resolved', alerts.resolved)] if items %}
<h3>{{ section }}</h3>
<ul>
{% for a in items %}
{% set rb = a.annotations.get('runbook_url') | http_url %}
{% set summary = a.annotations.get('summary') %}
<li><strong>{{ a.labels.alertname | default('alert') }}</strong>\
{% if summary %}: {{ summary }}{% endif %}
{% if a.annotations.get('description') %}<br>{{ a.annotations.get('description') }}{% endif %}
<br><small>{% for k, v in a.labels.items() %}<code>{{ k }}={{ v }}</code> {% endfor %}</small>
<br><small>Since {{ a.starts_at | time }}{% if a.ends_at and a.status == 'resolved' %}, resolved \
{{ a.ends_at | time }}{% endif %}</small>
{% if rb %}<br><a href="{{ rb }}">Runbook</a>{% endif %}
</li>
{% endfor %}
</ul>
{% endfor %}
{% if notes %}
<h3>Notes</h3>
<ul>{% for note in notes %}<li>{{ note }}</li>{% endfor %}</ul>
{% endif %}
</body></html>
"""

DEFAULT_BODIES = {"markdown": _MARKDOWN_BODY, "text": _TEXT_BODY, "html": _HTML_BODY}
DEFAULT_TITLE = _TITLE


@dataclass(frozen=True)
class Rendered:
    """A rendered message: what goes to Apprise as ``title``/``body``/``body_format``."""

    title: str
    body: str
    format: str
    extras: dict[str, Any] = field(default_factory=dict)


@functools.lru_cache(maxsize=256)
def _compiled(source: str, autoescape: bool) -> jinja2.Template:
    """Compiling a template costs milliseconds; a tick renders the same few templates many times."""
    return _ENVS[autoescape].from_string(source)


def _compile(source: str, *, receiver: str, which: str, autoescape: bool) -> jinja2.Template:
    try:
        return _compiled(source, autoescape)
    except jinja2.TemplateSyntaxError as e:
        raise NotifyTemplateError(f"receiver {receiver!r}: {which} template: line {e.lineno}: {e.message}") from None


def check_receiver_templates(receiver: TemplatedReceiver) -> None:
    """Compile a receiver's custom templates (called when receivers are parsed)."""
    if receiver.title is not None:
        _compile(receiver.title, receiver=receiver.name, which="title", autoescape=False)
    if receiver.body is not None:
        _compile(receiver.body, receiver=receiver.name, which="body", autoescape=receiver.format == "html")


def _run(tpl: jinja2.Template, data: Mapping[str, Any], *, receiver: str, which: str) -> str:
    try:
        return tpl.render(**data)
    except jinja2.UndefinedError as e:
        raise NotifyTemplateError(f"receiver {receiver!r}: {which} template: {e.message}") from None
    except jinja2.exceptions.SecurityError as e:
        raise NotifyTemplateError(f"receiver {receiver!r}: {which} template: not allowed: {e}") from None
    except jinja2.TemplateError as e:
        raise NotifyTemplateError(f"receiver {receiver!r}: {which} template: {e}") from None
    except (TypeError, ValueError, AttributeError, KeyError, ZeroDivisionError) as e:
        raise NotifyTemplateError(f"receiver {receiver!r}: {which} template: {type(e).__name__}: {e}") from None


def render(
    notification: NotificationLike | Mapping[str, Any] | Notification,
    receiver: TemplatedReceiver,
    *,
    possible_duplicate: bool = False,
) -> Rendered:
    """Title and body of ``notification`` for ``receiver``: its custom templates if set, else the
    default for its format. The title is always plain text (an e-mail subject, a Slack title)."""
    n = as_notification(notification)
    data = template_data(n, receiver.name, possible_duplicate=possible_duplicate)
    data["emoji"] = STATUS_EMOJI
    data["duplicate_note"] = DUPLICATE_NOTE
    html_mode = receiver.format == "html"
    title_tpl = _compile(receiver.title or DEFAULT_TITLE, receiver=receiver.name, which="title", autoescape=False)
    body_src = receiver.body if receiver.body is not None else DEFAULT_BODIES[receiver.format]
    body_tpl = _compile(body_src, receiver=receiver.name, which="body", autoescape=html_mode)
    title = " ".join(_run(title_tpl, data, receiver=receiver.name, which="title").split())
    body = _run(body_tpl, data, receiver=receiver.name, which="body").strip() + "\n"
    if possible_duplicate and receiver.body is not None and "possible duplicate" not in body.lower():
        # A custom body that ignores the flag still has to say so: people must know.
        note = html.escape(DUPLICATE_NOTE) if html_mode else DUPLICATE_NOTE
        body = (f"<p><strong>{note}</strong></p>\n" if html_mode else f"{note}\n\n") + body
    if possible_duplicate and "possible duplicate" not in title.lower():
        title = f"(possible duplicate) {title}"
    return Rendered(title=title, body=body, format=receiver.format)
