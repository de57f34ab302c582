"""E-mailing rendered reports through Apprise, each HTML file attached."""

from __future__ import annotations

from pathlib import Path

from tasks.analytics import ReportError
from tasks.reports.render import ReportResult

__all__ = ["mail_reports"]


def mail_reports(url: str, results: list[ReportResult], *, timeout_s: float = 30.0) -> int:
    """E-mail the rendered reports through Apprise (``mailto://…``), each HTML file attached.

    The body is a short plain summary (window and key numbers per report); the attachment is the
    report itself, which opens offline in any browser (plots are embedded). Returns the number of
    services that got it; raises ``ReportError`` naming ``email_to`` when the URL cannot be loaded
    or any service refused the message (Apprise's ``PARTIAL`` counts as a failure).
    """
    # lazy: apprise (+0.15 s) and the receivers module (+0.08 s) on top of tasks.config_checks, which
    # imports this package for every settings load (measured 2026-12-07); only mailing needs them.
    import apprise

    # the notify side loads only when a report is mailed (receivers: 0.1 s to import, measured here)
    from tasks.alerting.notify.receivers import redact_url

    if not results:
        raise ReportError("email_to: no reports to send")
    asset = apprise.AppriseAsset(storage_mode="memory")  # no Apprise cache under $HOME
    inst = apprise.Apprise.instantiate(url, asset=asset, suppress_exceptions=True)
    if inst is None:
        raise ReportError(f"email_to: cannot load {redact_url(url)}")
    inst.request_rate_per_sec = 0  # one message: no 5.5 s throttle sleep
    ap = apprise.Apprise(asset=asset)
    ap.add(inst)
    lines = []
    for r in results:
        lines.append(f"{r.name}: {r.since} → {r.until} ({Path(r.html).name})")
        lines.extend(f"  {k}: {'—' if v is None else v}" for k, v in r.key_numbers.items())
    attach = apprise.AppriseAttachment(asset=asset)
    for r in results:
        attach.add(r.html)
    title = "cortex-perf report: " + ", ".join(r.name for r in results)
    result = ap.notify(body="\n".join(lines), title=title, attach=attach, body_format=apprise.NotifyFormat.TEXT,
                       timeout=timeout_s)  # fmt: skip
    per = list(result.results)
    if result.status != apprise.AppriseResultStatus.SUCCESS or not per or not all(per):
        raise ReportError(f"email_to: sending to {redact_url(url)} failed ({result.status.name.lower()})")
    return len(per)
