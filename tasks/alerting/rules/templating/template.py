"""Alert label and annotation templates: Go ``text/template`` as Prometheus 2.42 runs it.

Prometheus expands each label and annotation value of a firing alert as a Go template named
``__alert_<rule>``, with the preamble ``{{$labels := .Labels}}{{$externalLabels :=
.ExternalLabels}}{{$externalURL := .ExternalURL}}{{$value := .Value}}`` and ``missingkey=zero``.
Rule authors use the whole language, so this module implements it rather than a look-alike:

* the lexer and parser of Go's ``text/template/parse`` (Go 1.19, which built Debian's Prometheus
  2.42): ``{{-``/``-}}`` trimming, comments, pipelines ``a | f | g``, parenthesised pipelines,
  ``(x).Field`` chains, Go number/char/string literals, ``$x := …`` and ``$x = …``;
* control structures ``if``/``else if``/``else``, ``range`` (maps in sorted key order, ``$k, $v :=``,
  ``else``, ``break``, ``continue``), ``with``/``else``, ``define``/``template``/``block``, with Go's
  variable scoping (a variable lives until the ``end`` of the structure that declares it; an invoked
  template sees only ``$``) and Go's truthiness (``""``, ``0``, ``nil``, empty map are false);
* Go's builtins ``and or not len index slice print printf println html js urlquery eq ne lt le gt
  ge`` with Go's rules — notably ``gt $value 1`` is an *error* ("incompatible types for comparison":
  ``$value`` is a float64 and ``1`` an int constant), and ``printf`` follows ``fmt`` (``%!d(float64=1.5)``,
  ``%!d(MISSING)``, ``%!(EXTRA …)``, widths, flags, ``%q``, ``%x`` …);
* Prometheus 2.42's functions (``template/template.go``): ``humanize*``, ``humanizeTimestamp``,
  ``toTime`` (a ``*time.Time``, with ``Unix``/``Format``/… methods), ``title toUpper toLower match
  reReplaceAll safeHtml stripPort stripDomain parseDuration args graphLink tableLink externalURL
  pathPrefix``. ``query`` (and ``first label value strvalue sortByLabel``, which only make sense on
  its results) need a PromQL engine in the template and are reported by :func:`check_template`
  as unsupported; executing them is an error, never a silently wrong string.

Values print as Go prints them (``1e+06``, ``+Inf``, ``map[a:b]``, ``<no value>`` for nil).
Errors are :class:`TemplateError` with a 1-based ``line``/``column`` (characters) in the template
text; :func:`expand` returns exactly what Prometheus writes into the alert instead, including its
``<error expanding template: …>`` text with Go's error message, so promtool can be the oracle.
"""

from __future__ import annotations

import ipaddress
import math
import re
import unicodedata
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tasks.alerting.rules.evaluate import format_value
from tasks.goregex import GoRegexError, GoRegexp, compile_go_regex
from tasks.timeparse import parse_prometheus_duration

__all__ = [
    "FUNCTIONS",
    "PREAMBLE",
    "UNSUPPORTED_FUNCTIONS",
    "Template",
    "TemplateError",
    "check_template",
    "expand",
    "expansion_error",
    "go_g4",
    "go_sprintf",
    "humanize",
    "humanize1024",
    "humanize_duration",
    "humanize_percentage",
    "render",
]

#: What Prometheus puts before every label/annotation template (rules/alerting.go).
PREAMBLE = (
    "{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}{{$externalURL := .ExternalURL}}{{$value := .Value}}"
)


class TemplateError(ValueError):
    """A template that does not parse or cannot be executed; ``line``/``column`` are 1-based.

    ``go_message`` is Go's own wording of the error for a template whose text starts after
    :data:`PREAMBLE` (a NUL-delimited ``NAME`` stands for the template's name), so :func:`expand` can reproduce the
    annotation Prometheus writes for a broken template."""

    def __init__(self, message: str, line: int, column: int, go_message: str = "") -> None:
        super().__init__(f"{line}:{column}: {message}")
        self.message = message
        self.line = line
        self.column = column
        self.go_message = go_message


# ---- Go values ---------------------------------------------------------------------------------------
#
# Go value          here
# nil / invalid     None
# bool int float64  bool int float
# string            str;  template.HTML: HTML (a str subclass: a different Go type)
# map[string]string dict; map[string]interface {} (from ``args``): ArgsMap
# *time.Time        GoTime
# uint8             GoByte (``index "abc" 1``)
# the alert data    AlertData (a struct)


class HTML(str):
    """Go's ``html/template.HTML`` (what ``safeHtml`` returns): prints as is, but is not a ``string``."""


class ArgsMap(dict[str, Any]):
    """``map[string]interface {}`` as built by Prometheus's ``args``."""


class GoByte(int):
    """A Go ``uint8`` (indexing a string yields a byte)."""


class QueryResult(list[Any]):
    """Prometheus's ``queryResult`` (only ever empty here: queries are not supported)."""


_MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
_DAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]


def _civil(days: int) -> tuple[int, int, int]:
    """Days since 1970-01-01 → proleptic Gregorian (year, month, day), any year."""
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    y = yoe + era * 400
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    return (y + 1 if m <= 2 else y), m, d


@dataclass(frozen=True)
class GoTime:
    """A ``*time.Time`` in UTC, ``ns`` nanoseconds after the Unix epoch (what ``toTime`` returns)."""

    ns: int

    def parts(self) -> tuple[int, int, int, int, int, int, int]:
        secs, frac = divmod(self.ns, 1_000_000_000)
        days, rem = divmod(secs, 86400)
        y, mo, d = _civil(days)
        return y, mo, d, rem // 3600, rem % 3600 // 60, rem % 60, frac

    def __str__(self) -> str:
        y, mo, d, h, mi, s, frac = self.parts()
        out = f"{_go_year(y)}-{mo:02d}-{d:02d} {h:02d}:{mi:02d}:{s:02d}"
        if frac:
            out += ("." + f"{frac:09d}").rstrip("0")
        return out + " +0000 UTC"

    def weekday(self) -> int:
        return (self.ns // 1_000_000_000 // 86400 + 4) % 7

    def format(self, layout: str) -> str:
        return _go_time_format(self, layout)


def _go_year(y: int) -> str:
    return f"{y:04d}" if y >= 0 else f"-{-y:04d}"


_LAYOUT_RE = re.compile(
    r"January|Jan|Monday|Mon|MST|2006|Z07:00:00|-07:00:00|Z07:00|-07:00|Z0700|-0700|Z07|-07|"
    r"[.,](?:0+|9+)(?!\d)|002|01|02|_2|03|04|05|06|15|PM|pm|1|2|3|4|5"
)


def _go_time_format(t: GoTime, layout: str) -> str:
    """``time.Time.Format`` for a UTC time: the standard layout elements of Go's reference time."""
    y, mo, d, h, mi, s, frac = t.parts()

    def one(m: re.Match[str]) -> str:
        tok = m.group()
        if tok[0] in ".," and len(tok) > 1:
            digits = f"{frac:09d}"[: len(tok) - 1]
            if tok[1] == "9":
                digits = digits.rstrip("0")
                return (tok[0] + digits) if digits else ""
            return tok[0] + digits
        table: dict[str, str] = {
            "January": _MONTHS[mo - 1],
            "Jan": _MONTHS[mo - 1][:3],
            "Monday": _DAYS[t.weekday()],
            "Mon": _DAYS[t.weekday()][:3],
            "MST": "UTC",
            "2006": _go_year(y),
            "06": f"{y % 100:02d}",
            "01": f"{mo:02d}",
            "1": str(mo),
            "02": f"{d:02d}",
            "_2": f"{d:2d}",
            "2": str(d),
            "002": f"{(t.ns // 1_000_000_000 // 86400 - _days_before_year(y)) + 1:03d}",
            "15": f"{h:02d}",
            "03": f"{(h % 12) or 12:02d}",
            "3": str((h % 12) or 12),
            "04": f"{mi:02d}",
            "4": str(mi),
            "05": f"{s:02d}",
            "5": str(s),
            "PM": "PM" if h >= 12 else "AM",
            "pm": "pm" if h >= 12 else "am",
        }
        if tok.startswith("Z"):
            return "Z"
        if tok.startswith("-07"):
            return {"-07:00:00": "+00:00:00", "-07:00": "+00:00", "-0700": "+0000", "-07": "+00"}[tok]
        return table[tok]

    return _LAYOUT_RE.sub(one, layout)


def _days_before_year(y: int) -> int:
    """Days from 1970-01-01 to January 1st of ``y``."""
    lo, hi = (y - 1970) * 366 - 800, (y - 1970) * 365 + 800
    while lo < hi:  # the first day whose year is >= y
        mid = (lo + hi) // 2
        if _civil(mid)[0] < y:
            lo = mid + 1
        else:
            hi = mid
    return lo


@dataclass
class AlertData:
    """The struct Prometheus passes as ``.`` (``template.AlertTemplateData`` in 2.42)."""

    Labels: dict[str, str]
    ExternalLabels: dict[str, str]
    ExternalURL: str
    Value: float


_STRUCT_TYPE = (
    "struct { Labels map[string]string; ExternalLabels map[string]string; ExternalURL string; Value float64 }"
)


def _type_name(x: object) -> str:
    """Go's ``reflect.Type.String()`` of a value (what ``%T`` and error messages print)."""
    if x is None:
        return "<nil>"
    if isinstance(x, bool):
        return "bool"
    if isinstance(x, GoByte):
        return "uint8"
    if isinstance(x, int):
        return "int"
    if isinstance(x, float):
        return "float64"
    if isinstance(x, HTML):
        return "template.HTML"
    if isinstance(x, str):
        return "string"
    if isinstance(x, ArgsMap):
        return "map[string]interface {}"
    if isinstance(x, Mapping):
        return "map[string]string"
    if isinstance(x, GoTime):
        return "*time.Time"
    if isinstance(x, AlertData):
        return _STRUCT_TYPE
    if isinstance(x, QueryResult):
        return "template.queryResult"
    return type(x).__name__


def _is_true(x: object) -> bool:
    """Go's ``isTrue``: zero values, empty strings and maps, and nil are false; structs are true."""
    if x is None:
        return False
    if isinstance(x, bool):
        return x
    if isinstance(x, int | float):
        return x != 0
    if isinstance(x, str | Mapping | list):
        return len(x) > 0
    return True


# ---- Go's fmt ------------------------------------------------------------------------------------------


def go_g4(v: float) -> str:
    """Go's ``fmt.Sprintf("%.4g", v)``: like C's, but ``+Inf``/``-Inf``/``NaN``."""
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return f"{v:.4g}"


def _go_quote(s: str, ascii_only: bool = False) -> str:
    """``strconv.Quote`` (``QuoteToASCII`` with ``ascii_only``)."""
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch == '"' or ch == "\\":
            out.append("\\" + ch)
        elif ch.isprintable() and not (ascii_only and o >= 0x80):
            out.append(ch)
        elif ch in "\a\b\f\n\r\t\v":
            out.append({"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}[ch])
        elif o < 0x20 or o == 0x7F:
            out.append(f"\\x{o:02x}")
        elif 0xDC80 <= o <= 0xDCFF:  # a byte that was not valid UTF-8 (surrogateescape)
            out.append(f"\\x{o - 0xDC00:02x}")
        elif o < 0x10000:
            out.append(f"\\u{o:04x}")
        else:
            out.append(f"\\U{o:08x}")
    out.append('"')
    return "".join(out)


def _go_quote_rune(r: int, ascii_only: bool = False) -> str:
    if r > 0x10FFFF or 0xD800 <= r <= 0xDFFF:
        r = 0xFFFD
    if r == ord("'"):
        return "'\\''"
    if r == ord('"'):
        return "'\"'"
    q = _go_quote(chr(r), ascii_only)
    return "'" + q[1:-1] + "'"


@dataclass
class _Flags:
    plus: bool = False
    minus: bool = False
    sharp: bool = False
    space: bool = False
    zero: bool = False
    plus_v: bool = False
    sharp_v: bool = False
    wid: int = 0
    wid_present: bool = False
    prec: int = 0
    prec_present: bool = False


def _pad(s: str, f: _Flags) -> str:
    if not f.wid_present or f.wid <= len(s):
        return s
    fill = f.wid - len(s)
    if f.minus:
        return s + " " * fill
    return ("0" if f.zero else " ") * fill + s


def _fmt_integer(u: int, base: int, verb: str, f: _Flags, signed: bool = True) -> str:
    negative = signed and u < 0
    a = abs(u)
    prec = 0
    if f.prec_present:
        prec = f.prec
        if prec == 0 and u == 0:
            return " " * f.wid if f.wid_present else ""
    elif f.zero and f.wid_present:
        prec = f.wid
        if negative or f.plus or f.space:
            prec -= 1
    digits = ""
    if base == 10:
        digits = str(a)
    elif base == 16:
        digits = f"{a:x}" if verb in "xv" else f"{a:X}"
    elif base == 8:
        digits = f"{a:o}"
    elif base == 2:
        digits = f"{a:b}"
    digits = digits.rjust(prec, "0")
    if f.sharp:
        if base == 2:
            digits = "0b" + digits
        elif base == 8 and not digits.startswith("0"):
            digits = "0" + digits
        elif base == 16:
            digits = ("0x" if verb in "xv" else "0X") + digits
    if verb == "O":
        digits = "0o" + digits
    if negative:
        digits = "-" + digits
    elif f.plus:
        digits = "+" + digits
    elif f.space:
        digits = " " + digits
    old, f.zero = f.zero, False
    try:
        return _pad(digits, f)
    finally:
        f.zero = old


def _strconv_float(v: float, verb: str, prec: int) -> str:
    """``strconv.FormatFloat(v, verb, prec, 64)`` for finite ``v`` (verb e E f g G x X; prec -1 is the
    shortest representation, which fmt uses only for g G x X and %v)."""
    if verb in "xX":
        return _hex_float(v, prec, verb == "X")
    if verb in "gG" and prec == -1:
        s = format_value(v)
        return s.upper() if verb == "G" else s
    if verb in "gG":
        s = f"{v:.{max(prec, 1)}g}"
        return s.upper() if verb == "G" else s
    s = f"{v:.{prec}{'e' if verb in 'eE' else 'f'}}"
    return s.upper() if verb == "E" else s


def _hex_float(v: float, prec: int, upper: bool) -> str:
    """``%x`` of a float64 (Go: ``0x1.8p+01``; shortest mantissa unless a precision is given)."""
    sign = "-" if math.copysign(1.0, v) < 0 else ""
    v = abs(v)
    if v == 0:
        mant, exp = 0, 0
    else:
        m, e = math.frexp(v)  # v = m × 2^e, 0.5 <= m < 1
        mant = int(m * (1 << 53))  # 53-bit integer, top bit set
        exp = e - 1
    # mantissa as 1.xxxxx: 52 fraction bits = 13 hex digits
    frac = mant & ((1 << 52) - 1) if v else 0
    hexdigits = f"{frac:013x}"
    if prec < 0:
        hexdigits = hexdigits.rstrip("0")
    else:
        if prec < 13:
            shift = (13 - prec) * 4
            full = (1 << 52) | frac if v else 0
            rounded = full >> shift
            rem = full & ((1 << shift) - 1)
            half = 1 << (shift - 1)
            if rem > half or (rem == half and rounded & 1):
                rounded += 1
            if rounded >> (52 - shift + 1):
                rounded >>= 1
                exp += 1
            frac = rounded & ((1 << (prec * 4)) - 1) if prec else 0
            hexdigits = f"{frac:0{prec}x}" if prec else ""
        else:
            hexdigits = hexdigits + "0" * (prec - 13)
    lead = "1" if v else "0"
    out = f"0x{lead}" + ("." + hexdigits if hexdigits else "") + f"p{'-' if exp < 0 else '+'}{abs(exp):02d}"
    out = sign + out
    return out.upper().replace("0X", "0X") if upper else out


def _fmt_float(v: float, verb: str, f: _Flags) -> str:
    if verb == "v":
        verb, prec = "g", -1
    elif verb in "bgGxX":
        prec = -1
    elif verb in "feEF":
        prec = 6
    else:
        raise _BadVerb
    if verb == "F":
        verb = "f"
    if verb == "b":
        raise _Unsupported("%b of a float")
    if f.prec_present:
        prec = f.prec
    if math.isnan(v) or math.isinf(v):
        num = "NaN" if math.isnan(v) else ("+Inf" if v > 0 else "-Inf")
        if num == "NaN" and (f.plus or f.space):
            num = ("+" if f.plus else " ") + num
        elif num == "+Inf" and f.space and not f.plus:
            num = " Inf"
        old, f.zero = f.zero, False
        try:
            return _pad(num, f)
        finally:
            f.zero = old
    num = _strconv_float(v, verb, prec)
    if f.sharp and verb != "b":
        raise _Unsupported("the # flag with a float verb")
    if not num.startswith("-"):
        num = "+" + num
    if f.space and num[0] == "+" and not f.plus:
        num = " " + num[1:]
    if f.plus or num[0] != "+":
        if f.zero and f.wid_present and f.wid > len(num):
            return num[0] + "0" * (f.wid - len(num)) + num[1:]
        return _pad(num, f)
    return _pad(num[1:], f)


def _fmt_string(s: str, verb: str, f: _Flags) -> str:
    if verb in "vs":
        if f.sharp_v:
            return _pad(_go_quote(s), f)
        if f.prec_present:
            s = s[: f.prec]
        return _pad(s, f)
    if verb in "xX":
        b = s.encode("utf-8", "surrogateescape")
        if f.prec_present:
            b = b[: f.prec]
        parts = []
        for i, byte in enumerate(b):
            piece = f"{byte:02x}" if verb == "x" else f"{byte:02X}"
            if f.space:
                if i > 0:
                    parts.append(" ")
                if f.sharp:
                    piece = ("0x" if verb == "x" else "0X") + piece
            parts.append(piece)
        out = "".join(parts)
        if f.sharp and not f.space and b:
            out = ("0x" if verb == "x" else "0X") + out
        return _pad(out, f)
    if verb == "q":
        if f.prec_present:
            s = s[: f.prec]
        if f.sharp and "`" not in s and all(c == "\t" or (c.isprintable() and c != "\ufeff") for c in s):
            return _pad("`" + s + "`", f)
        return _pad(_go_quote(s, ascii_only=f.plus), f)
    raise _BadVerb


class _BadVerb(Exception):
    pass


class _Unsupported(Exception):
    """A Go behaviour this implementation does not reproduce (an error, not a guess)."""


def _fmt_arg(x: Any, verb: str, f: _Flags, depth: int = 0) -> str:
    """``fmt``'s printArg/printValue of one template value with ``verb``."""
    try:
        return _fmt_arg_inner(x, verb, f, depth)
    except _BadVerb:
        return _bad_verb(x, verb, f, depth)


def _bad_verb(x: Any, verb: str, f: _Flags, depth: int) -> str:
    if x is None:
        return f"%!{verb}(<nil>)"
    return f"%!{verb}({_type_name(x)}={_fmt_arg(x, 'v', f, depth)})"


def _fmt_arg_inner(x: Any, verb: str, f: _Flags, depth: int) -> str:
    if x is None:
        if depth > 0 or verb in "Tv":
            return _pad("<nil>", f)
        raise _BadVerb
    if verb == "T":
        return _fmt_string(_type_name(x), "s", _Flags(minus=f.minus, wid=f.wid, wid_present=f.wid_present))
    if isinstance(x, bool):
        if verb in "tv":
            return _pad("true" if x else "false", f)
        raise _BadVerb
    if isinstance(x, int):
        signed = not isinstance(x, GoByte)
        if verb in "vd":
            return _fmt_integer(x, 10, verb, f, signed)
        if verb == "b":
            return _fmt_integer(x, 2, verb, f, signed)
        if verb in "oO":
            return _fmt_integer(x, 8, verb, f, signed)
        if verb in "xX":
            return _fmt_integer(x, 16, verb, f, signed)
        if verb == "c":
            r = x if 0 <= x <= 0x10FFFF and not 0xD800 <= x <= 0xDFFF else 0xFFFD
            return _pad(chr(r), f)
        if verb == "q":
            return _pad(_go_quote_rune(x, f.plus), f)
        if verb == "U":
            s = f"U+{x:04X}" if x >= 0 else f"U+{x & 0xFFFFFFFFFFFFFFFF:04X}"
            if f.sharp and 0 <= x <= 0x10FFFF and chr(x).isprintable():
                s += f" '{chr(x)}'"
            return _pad(s, f)
        raise _BadVerb
    if isinstance(x, float):
        return _fmt_float(x, verb, f)
    if isinstance(x, str):
        return _fmt_string(str(x), verb, f)
    if isinstance(x, GoTime):
        if verb in "vsxXq":
            return _fmt_string(str(x), verb, f)
        raise _Unsupported(f"%{verb} of a *time.Time")
    if isinstance(x, Mapping):
        if f.sharp_v:
            inner = ", ".join(
                f"{_fmt_arg(k, 'v', f, depth + 1)}:{_fmt_arg(v, 'v', f, depth + 1)}" for k, v in sorted(x.items())
            )
            return f"{_type_name(x)}{{{inner}}}"
        inner = " ".join(
            f"{_fmt_arg(k, verb, f, depth + 1)}:{_fmt_arg(v, verb, f, depth + 1)}" for k, v in sorted(x.items())
        )
        return f"map[{inner}]"
    if isinstance(x, AlertData):
        if f.sharp_v:
            raise _Unsupported("%#v of the template data")
        parts = [x.Labels, x.ExternalLabels, x.ExternalURL, x.Value]
        return "{" + " ".join(_fmt_arg(p, verb, f, depth + 1) for p in parts) + "}"
    if isinstance(x, QueryResult):
        return "[" + " ".join(_fmt_arg(p, verb, f, depth + 1) for p in x) + "]"
    raise _Unsupported(f"printing a {_type_name(x)}")


#: Go's ``fmt`` refuses widths and precisions beyond this (``tooLarge``): ``%!(BADWIDTH)`` from a
#: ``*`` argument, and a literal that grows past it ends the verb (``%!(NOVERB)``). Why it matters:
#: ``printf "%*d" 2000000000 1`` would otherwise build a 2 GB string inside an alert tick.
_FMT_NUM_MAX = 1_000_000


def _too_large(x: int) -> bool:
    return x > _FMT_NUM_MAX or x < -_FMT_NUM_MAX


def _parsenum(s: str, start: int, end: int) -> tuple[int, bool, int]:
    """Go's ``parsenum``: (number, found, index after); on overflow (0, False, end): the rest of the
    format is consumed, as Go does."""
    if start >= end:
        return 0, False, end
    num, found, i = 0, False, start
    while i < end and "0" <= s[i] <= "9":
        if _too_large(num):
            return 0, False, end
        num = num * 10 + ord(s[i]) - 0x30
        found = True
        i += 1
    return num, found, i


def _parse_arg_number(fmt: str, i: int) -> tuple[int, int, bool]:
    """Go's ``parseArgNumber`` on ``fmt[i:]`` (which starts with ``[``): (0-based index, width, ok)."""
    if len(fmt) - i < 3:
        return 0, 1, False
    close = fmt.find("]", i + 1)
    if close < 0:
        return 0, 1, False
    n, ok, newi = _parsenum(fmt, i + 1, close)
    if not ok or newi != close:
        return 0, close - i + 1, False
    return n - 1, close - i + 1, True


def _int_from_arg(args: list[Any], arg_num: int) -> tuple[int, bool, int]:
    """Go's ``intFromArg``: a ``*`` width or precision from an int argument within ±1e6."""
    if arg_num >= len(args):
        return 0, False, arg_num
    a = args[arg_num]
    if not isinstance(a, int) or isinstance(a, bool) or _too_large(a):
        return 0, False, arg_num + 1
    return a, True, arg_num + 1


def go_sprintf(fmt: str, args: list[Any]) -> str:
    """Go's ``fmt.Sprintf`` over template values (``%v %s %d %f %.2f %g %e %q %x %t %T %c %U %%`` …)."""
    out: list[str] = []
    end = len(fmt)
    arg_num = 0
    reordered = False
    i = 0
    while i < end:
        good_arg_num = True
        lasti = i
        while i < end and fmt[i] != "%":
            i += 1
        if i > lasti:
            out.append(fmt[lasti:i])
        if i >= end:
            break
        i += 1
        f = _Flags()
        while i < end:
            c = fmt[i]
            if c == "#":
                f.sharp = True
            elif c == "0":
                f.zero = not f.minus
            elif c == "+":
                f.plus = True
            elif c == "-":
                f.minus, f.zero = True, False
            elif c == " ":
                f.space = True
            else:
                break
            i += 1
        after_index = False

        def arg_number(n: int, i: int) -> tuple[int, int, bool]:
            """Go's ``argNumber``: an explicit ``[n]`` at ``i`` (1-based in the text)."""
            nonlocal reordered, good_arg_num
            if i >= end or fmt[i] != "[":
                return n, i, False
            reordered = True
            index, wid, ok = _parse_arg_number(fmt, i)
            if ok and 0 <= index < len(args):
                return index, i + wid, True
            good_arg_num = False
            return n, i + wid, ok

        arg_num, i, after_index = arg_number(arg_num, i)
        if i < end and fmt[i] == "*":
            i += 1
            f.wid, f.wid_present, arg_num = _int_from_arg(args, arg_num)
            if not f.wid_present:
                out.append("%!(BADWIDTH)")
            if f.wid < 0:
                f.wid, f.minus, f.zero = -f.wid, True, False
            after_index = False
        else:
            f.wid, f.wid_present, i = _parsenum(fmt, i, end)
            if after_index and f.wid_present:  # "%[3]2d"
                good_arg_num = False
        if i + 1 < end and fmt[i] == ".":
            i += 1
            if after_index:  # "%[3].2d"
                good_arg_num = False
            arg_num, i, after_index = arg_number(arg_num, i)
            if i < end and fmt[i] == "*":
                i += 1
                f.prec, f.prec_present, arg_num = _int_from_arg(args, arg_num)
                if f.prec < 0:
                    f.prec, f.prec_present = 0, False
                if not f.prec_present:
                    out.append("%!(BADPREC)")
                after_index = False
            else:
                f.prec, f.prec_present, i = _parsenum(fmt, i, end)
                if not f.prec_present:
                    f.prec, f.prec_present = 0, True
        if not after_index:
            arg_num, i, after_index = arg_number(arg_num, i)
        if i >= end:
            out.append("%!(NOVERB)")
            break
        verb = fmt[i]
        i += 1
        if verb == "%":
            out.append("%")
            continue
        if not good_arg_num:
            out.append(f"%!{verb}(BADINDEX)")
            continue
        if arg_num >= len(args):
            out.append(f"%!{verb}(MISSING)")
            continue
        if verb == "v":
            f.sharp_v, f.sharp = f.sharp, False
            f.plus_v, f.plus = f.plus, False
        out.append(_fmt_arg(args[arg_num], verb, f))
        arg_num += 1
    if not reordered and arg_num < len(args):
        extra = []
        for a in args[arg_num:]:
            extra.append("<nil>" if a is None else f"{_type_name(a)}={_fmt_arg(a, 'v', _Flags())}")
        out.append("%!(EXTRA " + ", ".join(extra) + ")")
    return "".join(out)


def _go_sprint(args: list[Any]) -> str:
    """``fmt.Sprint``: a space between operands when neither is a string."""
    out: list[str] = []
    prev_string = False
    for i, a in enumerate(args):
        is_string = isinstance(a, str)
        if i > 0 and not is_string and not prev_string:
            out.append(" ")
        out.append(_fmt_arg(a, "v", _Flags()))
        prev_string = is_string
    return "".join(out)


def _go_sprintln(args: list[Any]) -> str:
    return " ".join(_fmt_arg(a, "v", _Flags()) for a in args) + "\n"


def _print_value(x: Any) -> str:
    """How an action's result is written (``printableValue`` + ``fmt.Fprint``): nil is ``<no value>``."""
    if x is None:
        return "<no value>"
    return _fmt_arg(x, "v", _Flags())


def _eval_args(args: list[Any]) -> str:
    """``evalArgs`` of the escaping builtins: like ``fmt.Sprint`` with nil as ``<no value>``."""
    if len(args) == 1 and type(args[0]) is str:
        return str(args[0])
    return _go_sprint([HTML("<no value>") if a is None else a for a in args])


# ---- Prometheus's number formatting and functions ---------------------------------------------------


class _FuncError(Exception):
    """An error a template function returns: Go reports it as ``error calling NAME: MSG``."""


#: Unambiguous on purpose (``\d+(?:\.\d*)?``, not ``\d+\.?\d*``): these run on label values
#: (``humanize $labels.x``), and an ambiguous split backtracks quadratically on a long digit run.
#: Hex: underscores only between digits or after the prefix, as Go's ``underscoreOK``.
_GO_FLOAT_RE = re.compile(r"[+-]?(?:\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)")
_GO_HEXFLOAT_RE = re.compile(r"[+-]?0[xX](?:_?[0-9a-fA-F])*(?:\.(?:[0-9a-fA-F](?:_?[0-9a-fA-F])*)?)?[pP][+-]?\d+")
_GO_SPECIAL_RE = re.compile(r"[+-]?(?:inf|infinity)|nan", re.I)


def _parse_go_float(s: str) -> float:
    """``strconv.ParseFloat(s, 64)`` with Go's syntax and error messages."""
    if _GO_SPECIAL_RE.fullmatch(s):
        return float(s)
    if _GO_FLOAT_RE.fullmatch(s):
        v = float(s)
        if math.isinf(v):
            raise _FuncError(f"strconv.ParseFloat: parsing {_go_quote(s)}: value out of range")
        return v
    if _GO_HEXFLOAT_RE.fullmatch(s):
        sign = -1.0 if s.startswith("-") else 1.0
        body = s.lstrip("+-").replace("_", "")
        try:
            return sign * float.fromhex(body)
        except OverflowError:
            raise _FuncError(f"strconv.ParseFloat: parsing {_go_quote(s)}: value out of range") from None
        except ValueError:  # no mantissa digit: "0xp1"
            pass
    raise _FuncError(f"strconv.ParseFloat: parsing {_go_quote(s)}: invalid syntax")


def _to_float(x: object) -> float:
    """Prometheus's ``convertToFloat``: float64, string (``strconv.ParseFloat``) and ints."""
    if isinstance(x, bool) or x is None or not isinstance(x, int | float | str):
        raise _FuncError(f"can't convert {_type_name(x)} to float")
    if isinstance(x, str):
        if isinstance(x, HTML):
            raise _FuncError("can't convert template.HTML to float")
        return _parse_go_float(x)
    return float(x)


def _humanize(v: float) -> str:
    if v == 0 or math.isnan(v) or math.isinf(v):
        return go_g4(v)
    prefix = ""
    if abs(v) >= 1:
        for p in ("k", "M", "G", "T", "P", "E", "Z", "Y"):
            if abs(v) < 1000:
                break
            prefix = p
            v /= 1000
        return go_g4(v) + prefix
    for p in ("m", "u", "n", "p", "f", "a", "z", "y"):
        if abs(v) >= 1:
            break
        prefix = p
        v *= 1000
    return go_g4(v) + prefix


def _plain(fn: Callable[[Any], str]) -> Callable[[object], str]:
    """A function that raises ``ValueError`` (the public API) instead of the internal ``_FuncError``."""

    def wrapper(x: object) -> str:
        try:
            return fn(x)
        except _FuncError as exc:
            raise ValueError(str(exc)) from None

    wrapper.__doc__ = fn.__doc__
    return wrapper


def _humanize_any(x: object) -> str:
    """Prometheus ``humanize``: 1000-based SI prefixes, 4 significant digits (1234567 → ``1.235M``)."""
    return _humanize(_to_float(x))


def _humanize1024(x: object) -> str:
    """Prometheus ``humanize1024``: 1024-based prefixes ``ki Mi Gi …`` (1048576 → ``1Mi``)."""
    v = _to_float(x)
    if abs(v) <= 1 or math.isnan(v) or math.isinf(v):
        return go_g4(v)
    prefix = ""
    for p in ("ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"):
        if abs(v) < 1024:
            break
        prefix = p
        v /= 1024
    return go_g4(v) + prefix


def _humanize_duration(x: object) -> str:
    """Prometheus ``humanizeDuration``: seconds as ``1d 2h 3m 4s``, ``1.5s``, ``10ms``."""
    v = _to_float(x)
    if math.isnan(v) or math.isinf(v):
        return go_g4(v)
    if v == 0:
        return go_g4(v) + "s"
    if abs(v) >= 1:
        sign = ""
        if v < 0:
            sign, v = "-", -v
        whole = _go_int64(v)
        seconds = _go_rem(whole, 60)
        minutes = _go_rem(_go_quo(whole, 60), 60)
        hours = _go_rem(_go_quo(_go_quo(whole, 60), 60), 24)
        days = _go_quo(_go_quo(_go_quo(whole, 60), 60), 24)
        if days:
            return f"{sign}{days}d {hours}h {minutes}m {seconds}s"
        if hours:
            return f"{sign}{hours}h {minutes}m {seconds}s"
        if minutes:
            return f"{sign}{minutes}m {seconds}s"
        return f"{sign}{go_g4(v)}s"
    prefix = ""
    for p in ("m", "u", "n", "p", "f", "a", "z", "y"):
        if abs(v) >= 1:
            break
        prefix = p
        v *= 1000
    return f"{go_g4(v)}{prefix}s"


def _go_int64(v: float) -> int:
    """Go's ``int64(v)`` on amd64: truncation, and MinInt64 when ``v`` does not fit (1e21 → -2^63)."""
    if math.isnan(v) or not -(2.0**63) <= v < 2.0**63:
        return -(2**63)
    return int(v)


def _go_quo(a: int, b: int) -> int:
    """Go's integer division (truncates toward zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def _go_rem(a: int, b: int) -> int:
    return a - _go_quo(a, b) * b


def _humanize_percentage(x: object) -> str:
    """Prometheus ``humanizePercentage``: the ratio × 100 with 4 significant digits (0.1234 → ``12.34%``)."""
    return go_g4(_to_float(x) * 100) + "%"


humanize = _plain(_humanize_any)
humanize1024 = _plain(_humanize1024)
humanize_duration = _plain(_humanize_duration)
humanize_percentage = _plain(_humanize_percentage)


class _NaNOrInf(Exception):
    pass


def _float_to_time(v: float) -> GoTime:
    """Prometheus's ``floatToTime``: seconds → time, truncated to milliseconds (``model.Time``)."""
    if math.isnan(v) or math.isinf(v):
        raise _NaNOrInf
    ts = v * 1e9
    if ts > 9.223372036854775807e18 or ts < -9.223372036854775808e18:
        raise _FuncError(f"{format_value(v)} cannot be represented as a nanoseconds timestamp since it overflows int64")
    ns = int(ts)
    ms = abs(ns) // 1_000_000 * (1 if ns >= 0 else -1)  # Go's integer division truncates
    return GoTime(ms * 1_000_000)


def _to_time(x: object) -> GoTime:
    try:
        return _float_to_time(_to_float(x))
    except _NaNOrInf:
        raise _FuncError("value is NaN or Inf") from None


def _humanize_timestamp(x: object) -> str:
    v = _to_float(x)
    try:
        return str(_float_to_time(v))
    except _NaNOrInf:
        return go_g4(v)


def _go_upper(s: str) -> str:
    """``strings.ToUpper``: Go's one-rune case mapping (``ß`` stays ``ß``)."""
    return "".join(u if len(u := c.upper()) == 1 else c for c in s)


def _go_lower(s: str) -> str:
    """``strings.ToLower``: one rune per rune (``İ`` → ``i``)."""
    return "".join("i" if c == "\u0130" else (lo if len(lo := c.lower()) == 1 else c) for c in s)


def _is_separator(c: str) -> bool:
    """``strings.Title``'s word separator rule."""
    if ord(c) <= 0x7F:
        return not (c.isascii() and (c.isalnum() or c == "_"))
    cat = unicodedata.category(c)
    if cat.startswith("L") or cat == "Nd":
        return False
    return c.isspace()


def _go_title(s: str) -> str:
    """``strings.Title`` (Prometheus 2.42): upper-case (title-case) the first letter of each word."""
    out = []
    prev = " "
    for c in s:
        if _is_separator(prev):
            t = c.title()
            out.append(t if len(t) == 1 else c)
        else:
            out.append(c)
        prev = c
    return "".join(out)


def _split_host_port(hp: str) -> tuple[str, str] | None:
    """``net.SplitHostPort``; None where Go returns an error."""
    i = hp.rfind(":")
    if i < 0:
        return None
    j = k = 0
    if hp.startswith("["):
        end = hp.find("]")
        if end < 0 or end + 1 == len(hp) or end + 1 != i:
            return None
        host = hp[1:end]
        j, k = 1, end + 1
    else:
        host = hp[:i]
        if ":" in host:
            return None
    if "[" in hp[j:] or "]" in hp[k:]:
        return None
    return host, hp[i + 1 :]


def _is_ip(host: str) -> bool:
    if "%" in host:
        return False
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _strip_port(hp: str) -> str:
    parts = _split_host_port(hp)
    return hp if parts is None else parts[0]


def _strip_domain(hp: str) -> str:
    parts = _split_host_port(hp)
    host, port = (hp, "") if parts is None else parts
    if _is_ip(host):
        return hp
    host = host.split(".")[0]
    if port:
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return host


def _go_regexp(pattern: str, caller: str = "match") -> GoRegexp:
    """Compile a Go RE2 pattern (``tasks.goregex``); a bad one fails with Go's text for ``caller``:
    ``match`` is ``regexp.MatchString`` (returns the error), ``reReplaceAll`` is ``regexp.MustCompile``
    (panics with ``regexp: Compile(`PATTERN`): …``, which ``text/template`` reports as the error)."""
    try:
        return compile_go_regex(pattern)
    except GoRegexError as exc:
        if caller == "match":
            raise _FuncError(str(exc)) from None
        raise _FuncError(f"regexp: Compile({_go_regexp_quote(pattern)}): {exc}") from None


def _go_regexp_quote(s: str) -> str:
    """``regexp.quote``: backquoted when ``strconv.CanBackquote``, else ``strconv.Quote``."""
    if any(c == "`" or c == "\ufeff" or c == "\x7f" or (c < " " and c != "\t") for c in s):
        return _go_quote(s)
    return f"`{s}`"


def _re_replace_all(pattern: str, repl: str, text: str) -> str:
    """``regexp.MustCompile(pattern).ReplaceAllString(text, repl)`` (RE2: linear in ``text``)."""
    return _go_regexp(pattern, "reReplaceAll").replace_all(text, repl)


def _match(pattern: str, text: str) -> bool:
    return _go_regexp(pattern).search(text) is not None


def _query_escape(s: str) -> str:
    """Go's ``url.QueryEscape``."""
    return urllib.parse.quote_plus(s, safe="", encoding="utf-8", errors="surrogateescape")


def _parse_duration(d: str) -> float:
    try:
        return parse_prometheus_duration(d)
    except ValueError as exc:
        raise _FuncError(str(exc)) from None


def _len(x: Any) -> int:
    if x is None:
        raise _FuncError("len of nil pointer")
    if isinstance(x, str):
        return len(x.encode("utf-8", "surrogateescape"))
    if isinstance(x, Mapping | list):
        return len(x)
    t = "time.Time" if isinstance(x, GoTime) else _type_name(x)
    raise _FuncError(f"len of type {t}")


def _index(item: Any, *indexes: Any) -> Any:
    if item is None:
        raise _FuncError("index of untyped nil")
    for ix in indexes:
        if item is None:
            raise _FuncError("index of nil pointer")
        if isinstance(item, str) and not isinstance(item, HTML | GoByte):
            b = item.encode("utf-8", "surrogateescape")
            if ix is None:
                raise _FuncError("cannot index slice/array with nil")
            if isinstance(ix, bool) or not isinstance(ix, int):
                raise _FuncError(f"cannot index slice/array with type {_type_name(ix)}")
            if ix < 0 or ix > len(b):
                raise _FuncError(f"index out of range: {ix}")
            if ix == len(b):  # Go checks x > len, then reflect panics on x == len
                raise _FuncError("reflect: string index out of range")
            item = GoByte(b[ix])
        elif isinstance(item, Mapping):
            if ix is None:
                ix = ""
            if type(ix) is not str:
                raise _FuncError(f"value has type {_type_name(ix)}; should be string")
            item = item.get(ix, None if isinstance(item, ArgsMap) else "")
        else:
            t = "time.Time" if isinstance(item, GoTime) else _type_name(item)
            raise _FuncError(f"can't index item of type {t}")
    return item


def _slice(item: Any, *indexes: Any) -> Any:
    if item is None:
        raise _FuncError("slice of untyped nil")
    if len(indexes) > 3:
        raise _FuncError(f"too many slice indexes: {len(indexes)}")
    if not isinstance(item, str) or isinstance(item, HTML):
        raise _FuncError(f"can't slice item of type {_type_name(item)}")
    if len(indexes) == 3:
        raise _FuncError("cannot 3-index slice a string")
    b = item.encode("utf-8", "surrogateescape")
    idx = [0, len(b)]
    for k, ix in enumerate(indexes):
        if isinstance(ix, bool) or not isinstance(ix, int):
            raise _FuncError(f"cannot index slice/array with type {_type_name(ix)}")
        if ix < 0 or ix > len(b):
            raise _FuncError(f"index out of range: {ix}")
        idx[k] = ix
    if idx[0] > idx[1]:
        raise _FuncError(f"invalid slice index: {idx[0]} > {idx[1]}")
    return b[idx[0] : idx[1]].decode("utf-8", "surrogateescape")


_INT, _FLOAT, _STRING, _BOOL, _OTHER = range(5)


def _basic_kind(x: Any) -> int | None:
    if isinstance(x, bool):
        return _BOOL
    if isinstance(x, int):
        return _INT if not isinstance(x, GoByte) else 10
    if isinstance(x, float):
        return _FLOAT
    if isinstance(x, str):
        return _STRING
    return None


def _eq(a: Any, *bs: Any) -> bool:
    """Go's ``eq``: basic kinds must match (int vs float64 is an error), nil compares with nil."""
    if not bs:
        raise _FuncError("missing argument for comparison")
    k1 = _basic_kind(a)
    for b in bs:
        k2 = _basic_kind(b)
        truth = False
        if k1 != k2:
            if {k1, k2} == {_INT, 10}:
                truth = a >= 0 and b >= 0 and int(a) == int(b)
            elif a is not None and b is not None:
                raise _FuncError("incompatible types for comparison")
        elif k1 is not None:
            truth = a == b
        else:
            if a is None or b is None:
                truth = a is None and b is None
            elif isinstance(b, Mapping):
                raise _FuncError(f"non-comparable type {_fmt_arg(b, 'v', _Flags())}: {_type_name(b)}")
            else:
                truth = a is b
        if truth:
            return True
    return False


def _lt(a: Any, b: Any) -> bool:
    k1, k2 = _basic_kind(a), _basic_kind(b)
    if k1 is None or k2 is None:
        raise _FuncError("invalid type for comparison")
    if k1 != k2:
        if {k1, k2} == {_INT, 10}:
            return bool(a < b)
        raise _FuncError("incompatible types for comparison")
    if k1 == _BOOL:
        raise _FuncError("invalid type for comparison")
    return bool(a < b)


def _le(a: Any, b: Any) -> bool:
    return _lt(a, b) or _eq(a, b)


def _not_supported(name: str) -> Callable[..., Any]:
    def fn(*_args: Any) -> Any:
        raise _FuncError(f"{name} is not supported: cortex-perf templates run no PromQL queries")

    return fn


def _first(v: Any) -> Any:
    raise _FuncError("first() called on vector with no elements")


def _nil_sample(*_args: Any) -> Any:
    raise _FuncError("runtime error: invalid memory address or nil pointer dereference")


def _args(*xs: Any) -> ArgsMap:
    return ArgsMap({f"arg{i}": x for i, x in enumerate(xs)})


def _html_escape(s: str) -> str:
    return (
        s.replace("&", "&amp;")
        .replace("'", "&#39;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&#34;")
        .replace("\x00", "\ufffd")
    )


def _js_escape(s: str) -> str:
    out = []
    for c in s:
        o = ord(c)
        if c == "\\":
            out.append("\\\\")
        elif c == "'":
            out.append("\\'")
        elif c == '"':
            out.append('\\"')
        elif c in "<>&=" or o < 0x20:
            out.append(f"\\u00{o:02X}")
        elif o >= 0x80 and not c.isprintable():
            out.append(f"\\u{o:04X}")
        else:
            out.append(c)
    return "".join(out)


@dataclass(frozen=True)
class _Func:
    """A template function: Go parameter types (``any``, ``string``, ``sample``, ``result``), a
    variadic element type, and the Python implementation."""

    params: tuple[str, ...]
    variadic: str | None
    impl: Callable[..., Any]


def _build_functions(external_url: str | None) -> dict[str, _Func]:
    def url_part(path: bool) -> Callable[[], str]:
        def fn() -> str:
            if external_url is None:  # promtool runs with a nil external URL
                raise _FuncError("runtime error: invalid memory address or nil pointer dereference")
            return urllib.parse.urlsplit(external_url).path if path else external_url

        return fn

    f = _Func
    return {
        # Go builtins
        "and": f(("any",), "any", lambda *a: a),
        "or": f(("any",), "any", lambda *a: a),
        "not": f(("any",), None, lambda x: not _is_true(x)),
        "len": f(("any",), None, _len),
        "index": f(("any",), "any", _index),
        "slice": f(("any",), "any", _slice),
        "call": f(("any",), "any", lambda fn, *a: _raise(f"non-function of type {_type_name(fn)}")),
        "print": f((), "any", lambda *a: _go_sprint(list(a))),
        "printf": f(("string",), "any", lambda fmt, *a: go_sprintf(fmt, list(a))),
        "println": f((), "any", lambda *a: _go_sprintln(list(a))),
        "html": f((), "any", lambda *a: _html_escape(_eval_args(list(a)))),
        "js": f((), "any", lambda *a: _js_escape(_eval_args(list(a)))),
        "urlquery": f((), "any", lambda *a: _query_escape(_eval_args(list(a)))),
        "eq": f(("any",), "any", _eq),
        "ne": f(("any", "any"), None, lambda a, b: not _eq(a, b)),
        "lt": f(("any", "any"), None, _lt),
        "le": f(("any", "any"), None, _le),
        "gt": f(("any", "any"), None, lambda a, b: not _le(a, b)),
        "ge": f(("any", "any"), None, lambda a, b: not _lt(a, b)),
        # Prometheus 2.42 template/template.go
        "query": f(("string",), None, _not_supported("query")),
        "first": f(("result",), None, _first),
        "label": f(("string", "sample"), None, _nil_sample),
        "value": f(("sample",), None, _nil_sample),
        "strvalue": f(("sample",), None, _nil_sample),
        "sortByLabel": f(("string", "result"), None, lambda _l, v: QueryResult(v or [])),
        "args": f((), "any", _args),
        "reReplaceAll": f(("string", "string", "string"), None, lambda p, r, t: _re_replace_all(p, r, t)),
        "safeHtml": f(("string",), None, HTML),
        "match": f(("string", "string"), None, _match),
        "title": f(("string",), None, _go_title),
        "toUpper": f(("string",), None, _go_upper),
        "toLower": f(("string",), None, _go_lower),
        "graphLink": f(("string",), None, lambda e: f"/graph?g0.expr={_query_escape(e)}&g0.tab=0"),
        "tableLink": f(("string",), None, lambda e: f"/graph?g0.expr={_query_escape(e)}&g0.tab=1"),
        "stripPort": f(("string",), None, _strip_port),
        "stripDomain": f(("string",), None, _strip_domain),
        "humanize": f(("any",), None, _humanize_any),
        "humanize1024": f(("any",), None, _humanize1024),
        "humanizeDuration": f(("any",), None, _humanize_duration),
        "humanizePercentage": f(("any",), None, _humanize_percentage),
        "humanizeTimestamp": f(("any",), None, _humanize_timestamp),
        "toTime": f(("any",), None, _to_time),
        "pathPrefix": f((), None, url_part(True)),
        "externalURL": f((), None, url_part(False)),
        "parseDuration": f(("string",), None, _parse_duration),
    }


def _raise(msg: str) -> Any:
    raise _FuncError(msg)


_DEFAULT_FUNCS = _build_functions("")
#: Every function name a template may call (Go builtins and Prometheus 2.42's), as promtool knows them.
FUNCTIONS: dict[str, Any] = {name: fn.impl for name, fn in _DEFAULT_FUNCS.items()}
#: Functions that exist in Prometheus but need its query engine: :func:`check_template` rejects them.
UNSUPPORTED_FUNCTIONS = frozenset({"query", "first", "label", "value", "strvalue", "sortByLabel"})

# Methods of *time.Time a template may call: name → (parameter types, implementation).
_TIME_METHODS: dict[str, tuple[tuple[str, ...], Callable[..., Any]]] = {
    "Unix": ((), lambda t: t.ns // 1_000_000_000),
    "UnixMilli": ((), lambda t: t.ns // 1_000_000),
    "UnixMicro": ((), lambda t: t.ns // 1_000),
    "UnixNano": ((), lambda t: t.ns),
    "UTC": ((), lambda t: t),
    "String": ((), str),
    "Format": (("string",), lambda t, layout: t.format(layout)),
    "Year": ((), lambda t: t.parts()[0]),
    "Day": ((), lambda t: t.parts()[2]),
    "Hour": ((), lambda t: t.parts()[3]),
    "Minute": ((), lambda t: t.parts()[4]),
    "Second": ((), lambda t: t.parts()[5]),
    "Nanosecond": ((), lambda t: t.parts()[6]),
    "IsZero": ((), lambda t: t.ns == -62135596800 * 1_000_000_000),
}


# ---- lexer (text/template/parse/lex.go) ----------------------------------------------------------------

_SPACE = " \t\r\n"
_KEYWORDS = {
    "block",
    "break",
    "continue",
    "define",
    "else",
    "end",
    "if",
    "range",
    "nil",
    "template",
    "with",
}


@dataclass(frozen=True)
class _Tok:
    typ: str  # text left right space eof ident field var dot nil bool number char string rawstring
    #           pipe lparen rparen declare assign charitem complex, or a keyword
    val: str
    pos: int


def _is_alnum(c: str) -> bool:
    return c == "_" or c.isalpha() or unicodedata.category(c) == "Nd" if c else False


class _Lexer:
    def __init__(self, src: str, error: Callable[[int, str], Exception]) -> None:
        self.src = src
        self.error = error
        self.toks: list[_Tok] = []

    def run(self) -> list[_Tok]:
        src, n = self.src, len(self.src)
        i = 0
        trim_left = False
        while True:
            j = src.find("{{", i)
            text = src[i:] if j < 0 else src[i:j]
            start = i
            if trim_left:
                stripped = text.lstrip(_SPACE)
                start += len(text) - len(stripped)
                text = stripped
            trim = j >= 0 and src.startswith("-", j + 2) and j + 3 < n and src[j + 3] in _SPACE
            if trim:
                text = text.rstrip(_SPACE)
            if text:
                self.toks.append(_Tok("text", text, start))
            if j < 0:
                self.toks.append(_Tok("eof", "", n))
                return self.toks
            pos = j + 2 + (2 if trim else 0)
            if src.startswith("/*", pos):
                k = src.find("*/", pos + 2)
                if k < 0:
                    raise self.error(j, "unclosed comment")
                k += 2
                if src.startswith("}}", k):
                    i, trim_left = k + 2, False
                elif k + 1 < n and src[k] in _SPACE and src.startswith("-}}", k + 1):
                    i, trim_left = k + 4, True
                else:
                    raise self.error(j, "comment ends before closing delimiter")
                continue
            self.toks.append(_Tok("left", "{{", j))
            i, trim_left = self.inside(pos, j)

    def at_right(self, i: int) -> tuple[bool, bool]:
        src = self.src
        if i + 1 < len(src) and src[i] in _SPACE and src[i + 1] == "-" and src.startswith("}}", i + 2):
            return True, True
        return src.startswith("}}", i), False

    def at_terminator(self, i: int) -> bool:
        if i >= len(self.src):
            return True
        c = self.src[i]
        return c in _SPACE or c in ".,|:()" or self.src.startswith("}}", i)

    def inside(self, i: int, left: int) -> tuple[int, bool]:
        """Lex one action starting at ``i`` (its ``{{`` at ``left``); returns the index after ``}}``
        and whether it trims the following text."""
        src, n = self.src, len(self.src)
        paren = 0
        while True:
            delim, trim = self.at_right(i)
            if delim:
                if paren:
                    raise self.error(i, "unclosed left paren")
                if trim:
                    i += 2
                self.toks.append(_Tok("right", "}}", i))
                return i + 2, trim
            if i >= n:
                raise self.error(left, "unclosed action")
            c = src[i]
            if c in _SPACE:
                k = i
                while k < n and src[k] in _SPACE:
                    k += 1
                # a space right before "-}}" belongs to the trim marker
                if src.startswith("-}}", k) and k - 1 >= i:
                    if k - 1 > i:
                        self.toks.append(_Tok("space", src[i : k - 1], i))
                    i = k - 1
                    continue
                self.toks.append(_Tok("space", src[i:k], i))
                i = k
            elif c == "=":
                self.toks.append(_Tok("assign", "=", i))
                i += 1
            elif c == ":":
                if not src.startswith(":=", i):
                    raise self.error(i, "expected :=")
                self.toks.append(_Tok("declare", ":=", i))
                i += 2
            elif c == "|":
                self.toks.append(_Tok("pipe", "|", i))
                i += 1
            elif c == '"':
                k = i + 1
                while True:
                    if k >= n or src[k] == "\n":
                        raise self.error(i, "unterminated quoted string")
                    if src[k] == "\\":
                        k += 2
                        continue
                    if src[k] == '"':
                        break
                    k += 1
                self.toks.append(_Tok("string", src[i : k + 1], i))
                i = k + 1
            elif c == "`":
                k = src.find("`", i + 1)
                if k < 0:
                    raise self.error(i, "unterminated raw quoted string")
                self.toks.append(_Tok("rawstring", src[i : k + 1], i))
                i = k + 1
            elif c == "'":
                k = i + 1
                while True:
                    if k >= n or src[k] == "\n":
                        raise self.error(i, "unterminated character constant")
                    if src[k] == "\\":
                        k += 2
                        continue
                    if src[k] == "'":
                        break
                    k += 1
                self.toks.append(_Tok("char", src[i : k + 1], i))
                i = k + 1
            elif c == "$":
                k = i + 1
                while k < n and _is_alnum(src[k]):
                    k += 1
                if not self.at_terminator(k):
                    raise self.error(k, f"bad character {_go_rune(src[k])}")
                self.toks.append(_Tok("var", src[i:k], i))
                i = k
            elif c == "." and not (i + 1 < n and src[i + 1].isdigit()):
                if self.at_terminator(i + 1):
                    self.toks.append(_Tok("dot", ".", i))
                    i += 1
                    continue
                k = i + 1
                while k < n and _is_alnum(src[k]):
                    k += 1
                if not self.at_terminator(k):
                    raise self.error(k, f"bad character {_go_rune(src[k])}")
                self.toks.append(_Tok("field", src[i:k], i))
                i = k
            elif c in "+-.0123456789":
                k = self.scan_number(i)
                if k < n and src[k] in "+-":
                    k2 = self.scan_number(k)
                    if not src[k2 - 1 : k2] == "i":
                        raise self.error(i, f"bad number syntax: {_go_quote(src[i:k2])}")
                    self.toks.append(_Tok("complex", src[i:k2], i))
                    i = k2
                    continue
                self.toks.append(_Tok("number", src[i:k], i))
                i = k
            elif _is_alnum(c):
                k = i
                while k < n and _is_alnum(src[k]):
                    k += 1
                if not self.at_terminator(k):
                    raise self.error(k, f"bad character {_go_rune(src[k])}")
                word = src[i:k]
                if word in _KEYWORDS:
                    self.toks.append(_Tok(word, word, i))
                elif word in ("true", "false"):
                    self.toks.append(_Tok("bool", word, i))
                else:
                    self.toks.append(_Tok("ident", word, i))
                i = k
            elif c == "(":
                self.toks.append(_Tok("lparen", "(", i))
                paren += 1
                i += 1
            elif c == ")":
                self.toks.append(_Tok("rparen", ")", i))
                paren -= 1
                if paren < 0:
                    raise self.error(i, "unexpected right paren U+0029 ')'")
                i += 1
            elif ord(c) <= 0x7F and c.isprintable():
                self.toks.append(_Tok("charitem", c, i))
                i += 1
            else:
                raise self.error(i, f"unrecognized character in action: {_go_rune(c)}")

    def scan_number(self, i: int) -> int:
        src, n = self.src, len(self.src)
        start = i
        if i < n and src[i] in "+-":
            i += 1
        digits = "0123456789_"
        if i < n and src[i] == "0":
            i += 1
            if i < n and src[i] in "xX":
                i += 1
                digits = "0123456789abcdefABCDEF_"
            elif i < n and src[i] in "oO":
                i += 1
                digits = "01234567_"
            elif i < n and src[i] in "bB":
                i += 1
                digits = "01_"
        while i < n and src[i] in digits:
            i += 1
        if i < n and src[i] == ".":
            i += 1
            while i < n and src[i] in digits:
                i += 1
        if len(digits) == 11 and i < n and src[i] in "eE":
            i += 1
            if i < n and src[i] in "+-":
                i += 1
            while i < n and src[i] in "0123456789_":
                i += 1
        if len(digits) == 23 and i < n and src[i] in "pP":
            i += 1
            if i < n and src[i] in "+-":
                i += 1
            while i < n and src[i] in "0123456789_":
                i += 1
        if i < n and src[i] == "i":
            i += 1
        if i < n and _is_alnum(src[i]):
            raise self.error(start, f"bad number syntax: {_go_quote(src[start : i + 1])}")
        return i


def _go_rune(c: str) -> str:
    """Go's ``%#U`` of a rune: ``U+0021 '!'``."""
    return f"U+{ord(c):04X} '{c}'" if c.isprintable() else f"U+{ord(c):04X}"


# ---- parse tree (text/template/parse/node.go) ----------------------------------------------------------


@dataclass
class _Node:
    pos: int


@dataclass
class _Text(_Node):
    text: str

    def __str__(self) -> str:
        return _go_quote(self.text)


@dataclass
class _Dot(_Node):
    def __str__(self) -> str:
        return "."


@dataclass
class _Nil(_Node):
    def __str__(self) -> str:
        return "nil"


@dataclass
class _Bool(_Node):
    value: bool

    def __str__(self) -> str:
        return "true" if self.value else "false"


@dataclass
class _Number(_Node):
    text: str
    is_int: bool = False
    is_float: bool = False
    int_value: int = 0
    float_value: float = 0.0

    def __str__(self) -> str:
        return self.text


@dataclass
class _String(_Node):
    quoted: str
    text: str

    def __str__(self) -> str:
        return self.quoted


@dataclass
class _Field(_Node):
    idents: list[str]

    def __str__(self) -> str:
        return "".join("." + i for i in self.idents)


@dataclass
class _Variable(_Node):
    idents: list[str]

    def __str__(self) -> str:
        return ".".join(self.idents)


@dataclass
class _Identifier(_Node):
    name: str

    def __str__(self) -> str:
        return self.name


@dataclass
class _Chain(_Node):
    node: _Node
    fields: list[str]

    def __str__(self) -> str:
        s = f"({self.node})" if isinstance(self.node, _Pipe) else str(self.node)
        return s + "".join("." + f for f in self.fields)


@dataclass
class _Command(_Node):
    args: list[_Node]

    def __str__(self) -> str:
        return " ".join(f"({a})" if isinstance(a, _Pipe) else str(a) for a in self.args)


@dataclass
class _Pipe(_Node):
    decl: list[_Variable] = field(default_factory=list)
    is_assign: bool = False
    cmds: list[_Command] = field(default_factory=list)

    def __str__(self) -> str:
        s = ""
        if self.decl:
            s = ", ".join(str(v) for v in self.decl) + (" = " if self.is_assign else " := ")
        return s + " | ".join(str(c) for c in self.cmds)


@dataclass
class _List(_Node):
    nodes: list[_Node] = field(default_factory=list)

    def __str__(self) -> str:
        return "".join(str(n) for n in self.nodes)


@dataclass
class _Action(_Node):
    pipe: _Pipe

    def __str__(self) -> str:
        return f"{{{{{self.pipe}}}}}"


@dataclass
class _Branch(_Node):
    kind: str  # if range with
    pipe: _Pipe
    body: _List
    else_body: _List | None

    def __str__(self) -> str:
        s = f"{{{{{self.kind} {self.pipe}}}}}{self.body}"
        if self.else_body is not None:
            s += f"{{{{else}}}}{self.else_body}"
        return s + "{{end}}"


@dataclass
class _TemplateCall(_Node):
    name: str
    pipe: _Pipe | None

    def __str__(self) -> str:
        if self.pipe is None:
            return f"{{{{template {_go_quote(self.name)}}}}}"
        return f"{{{{template {_go_quote(self.name)} {self.pipe}}}}}"


@dataclass
class _Break(_Node):
    def __str__(self) -> str:
        return "{{break}}"


@dataclass
class _Continue(_Node):
    def __str__(self) -> str:
        return "{{continue}}"


@dataclass
class _End(_Node):
    pass


@dataclass
class _Else(_Node):
    pass


_GO_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\"}


def _go_unquote(text: str) -> str:
    """``strconv.Unquote`` of a Go string or char literal; raises ``ValueError`` ("invalid syntax")."""
    if text[0] == "`":
        return text[1:-1].replace("\r", "")
    quote = text[0]
    body = text[1:-1]
    out: list[str] = []
    i = 0
    while i < len(body):
        c = body[i]
        if c == quote or c == "\n":
            raise ValueError("invalid syntax")
        if c != "\\":
            out.append(c)
            i += 1
            continue
        if i + 1 >= len(body):
            raise ValueError("invalid syntax")
        e = body[i + 1]
        if e in _GO_ESCAPES:
            out.append(_GO_ESCAPES[e])
            i += 2
        elif e == quote:
            out.append(e)
            i += 2
        elif e in "xuU":
            width = {"x": 2, "u": 4, "U": 8}[e]
            hexs = body[i + 2 : i + 2 + width]
            if len(hexs) != width or not all(h in "0123456789abcdefABCDEF" for h in hexs):
                raise ValueError("invalid syntax")
            v = int(hexs, 16)
            if e == "x":
                out.append(chr(v) if v < 0x80 else chr(0xDC00 + v))  # a raw byte
            else:
                if v > 0x10FFFF or 0xD800 <= v <= 0xDFFF:
                    raise ValueError("invalid syntax")
                out.append(chr(v))
            i += 2 + width
        elif e in "01234567":
            octs = body[i + 1 : i + 4]
            if len(octs) != 3 or not all(o in "01234567" for o in octs) or int(octs, 8) > 255:
                raise ValueError("invalid syntax")
            v = int(octs, 8)
            out.append(chr(v) if v < 0x80 else chr(0xDC00 + v))
            i += 4
        else:
            raise ValueError("invalid syntax")
    s = "".join(out)
    # bytes given by \x / octal escapes form UTF-8 sequences
    if any(0xDC80 <= ord(ch) <= 0xDCFF for ch in s):
        s = s.encode("utf-8", "surrogateescape").decode("utf-8", "surrogateescape")
    if quote == "'" and len(s) != 1:
        raise ValueError("invalid syntax")
    return s


def _parse_go_int(text: str) -> int | None:
    """``strconv.ParseInt(text, 0, 64)``; None when it fails (syntax or range)."""
    t = text
    sign = 1
    if t[:1] in "+-":
        sign = -1 if t[0] == "-" else 1
        t = t[1:]
    base = 10
    body = t
    if len(t) > 1 and t[0] == "0":
        p = t[1].lower()
        if p in "xob":
            base = {"x": 16, "o": 8, "b": 2}[p]
            body = t[2:]
        else:
            base = 8
            body = t[1:]
    if "_" in body or (base != 10 and "_" in t):
        # underscores are only allowed between digits, with base 0 syntax
        if not re.fullmatch(r"_?[0-9a-fA-F]+(?:_[0-9a-fA-F]+)*", body):
            return None
        body = body.replace("_", "")
    if not body:
        return None
    try:
        v = sign * int(body, base)
    except ValueError:
        return None
    if not -(2**63) <= v < 2**63:
        return None
    return v


# ---- parser (text/template/parse/parse.go) -------------------------------------------------------------


class _Parser:
    def __init__(self, src: str, funcs: Mapping[str, object], error: Callable[[int, str], Exception]) -> None:
        self.src = src
        self.funcs = funcs
        self.error = error
        self.toks = _Lexer(src, error).run()
        self.i = 0
        self.vars: list[str] = ["$", "$labels", "$externalLabels", "$externalURL", "$value"]
        self.range_depth = 0
        self.templates: dict[str, _List] = {}
        self.identifiers: list[_Identifier] = []

    def next(self) -> _Tok:
        t = self.toks[self.i]
        if t.typ != "eof":
            self.i += 1
        return t

    def backup(self, k: int = 1) -> None:
        self.i -= k

    def peek(self) -> _Tok:
        return self.toks[self.i]

    def next_non_space(self) -> _Tok:
        t = self.next()
        while t.typ == "space":
            t = self.next()
        return t

    def peek_non_space(self) -> _Tok:
        while self.toks[self.i].typ == "space":
            self.i += 1
        return self.toks[self.i]

    def fail(self, pos: int, msg: str) -> Exception:
        return self.error(pos, msg)

    def unexpected(self, tok: _Tok, context: str) -> Exception:
        if tok.typ == "eof":
            return self.fail(tok.pos, f"unexpected EOF in {context}")
        shown = {"right": "}}", "left": "{{", "text": "text"}.get(tok.typ, tok.val)
        return self.fail(tok.pos, f"unexpected {_go_quote(shown) if tok.typ != 'text' else 'text'} in {context}")

    def expect(self, typ: str, context: str) -> _Tok:
        t = self.next_non_space()
        if t.typ != typ:
            raise self.unexpected(t, context)
        return t

    # top level
    def parse(self) -> _List:
        root = _List(0)
        while self.peek().typ != "eof":
            if self.peek().typ == "left":
                save = self.i
                delim = self.next()
                if self.next_non_space().typ == "define":
                    self.parse_definition(delim)
                    continue
                self.i = save
            n = self.text_or_action()
            if isinstance(n, _End | _Else):
                raise self.fail(n.pos, f"unexpected {{{{{'end' if isinstance(n, _End) else 'else'}}}}}")
            root.nodes.append(n)
        return root

    def add_template(self, name: str, body: _List, pos: int) -> None:
        old = self.templates.get(name)
        if old is not None and old.nodes and any(not (isinstance(x, _Text) and not x.text.strip()) for x in old.nodes):
            if body.nodes and any(not (isinstance(x, _Text) and not x.text.strip()) for x in body.nodes):
                raise self.fail(pos, f"template: multiple definition of template {_go_quote(name)}")
            return
        self.templates[name] = body

    def parse_definition(self, delim: _Tok) -> None:
        context = "define clause"
        tok = self.next_non_space()
        if tok.typ not in ("string", "rawstring"):
            raise self.unexpected(tok, context)
        name = self.unquote(tok)
        self.expect("right", context)
        saved_vars, self.vars = self.vars, ["$"]
        body, end = self.item_list()
        self.vars = saved_vars
        if not isinstance(end, _End):
            raise self.fail(end.pos, f"unexpected {{{{else}}}} in {context}")
        self.add_template(name, body, delim.pos)

    def unquote(self, tok: _Tok) -> str:
        try:
            return _go_unquote(tok.val)
        except ValueError:
            raise self.fail(tok.pos, "invalid syntax") from None

    def item_list(self) -> tuple[_List, _Node]:
        lst = _List(self.peek_non_space().pos)
        while self.peek_non_space().typ != "eof":
            n = self.text_or_action()
            if isinstance(n, _End | _Else):
                return lst, n
            lst.nodes.append(n)
        raise self.fail(len(self.src), "unexpected EOF")

    def text_or_action(self) -> _Node:
        tok = self.next_non_space()
        if tok.typ == "text":
            return _Text(tok.pos, tok.val)
        if tok.typ == "left":
            return self.action()
        raise self.unexpected(tok, "input")

    def action(self) -> _Node:
        tok = self.next_non_space()
        t = tok.typ
        if t == "block":
            return self.block_control(tok)
        if t == "break":
            return self.loop_control(tok, _Break)
        if t == "continue":
            return self.loop_control(tok, _Continue)
        if t == "else":
            if self.peek_non_space().typ == "if":
                return _Else(self.peek_non_space().pos)
            self.expect("right", "else")
            return _Else(tok.pos)
        if t == "end":
            self.expect("right", "end")
            return _End(tok.pos)
        if t in ("if", "range", "with"):
            return self.control(t)
        if t == "template":
            return self.template_control()
        if t == "define":
            raise self.fail(tok.pos, "unexpected <define> in command")
        self.backup()
        pos = self.peek_non_space().pos
        return _Action(pos, self.pipeline("command", "right"))

    def loop_control(self, tok: _Tok, cls: type[_Break] | type[_Continue]) -> _Node:
        word = tok.val
        nxt = self.next_non_space()
        if nxt.typ != "right":
            raise self.unexpected(nxt, f"{{{{{word}}}}}")
        if self.range_depth == 0:
            raise self.fail(tok.pos, f"{{{{{word}}}}} outside {{{{range}}}}")
        return cls(tok.pos)

    def control(self, kind: str) -> _Node:
        saved = len(self.vars)
        try:
            pipe = self.pipeline(kind, "right")
            if kind == "range":
                self.range_depth += 1
            body, nxt = self.item_list()
            if kind == "range":
                self.range_depth -= 1
            else_body: _List | None = None
            if isinstance(nxt, _Else):
                if kind == "if" and self.peek().typ == "if":
                    self.next()
                    else_body = _List(nxt.pos, [self.control("if")])
                else:
                    else_body, nxt2 = self.item_list()
                    if not isinstance(nxt2, _End):
                        raise self.fail(nxt2.pos, "expected end; found {{else}}")
            return _Branch(pipe.pos, kind, pipe, body, else_body)
        finally:
            del self.vars[saved:]

    def template_name(self, tok: _Tok, context: str) -> str:
        if tok.typ in ("string", "rawstring"):
            return self.unquote(tok)
        raise self.unexpected(tok, context)

    def template_control(self) -> _Node:
        context = "template clause"
        tok = self.next_non_space()
        name = self.template_name(tok, context)
        pipe = None
        if self.next_non_space().typ != "right":
            self.backup()
            pipe = self.pipeline(context, "right")
        return _TemplateCall(tok.pos, name, pipe)

    def block_control(self, block_tok: _Tok) -> _Node:
        context = "block clause"
        tok = self.next_non_space()
        name = self.template_name(tok, context)
        pipe = self.pipeline(context, "right")
        saved_vars, self.vars = self.vars, ["$"]
        saved_depth, self.range_depth = self.range_depth, 0
        body, end = self.item_list()
        self.vars, self.range_depth = saved_vars, saved_depth
        if not isinstance(end, _End):
            raise self.fail(end.pos, f"unexpected {{{{else}}}} in {context}")
        self.add_template(name, body, block_tok.pos)
        return _TemplateCall(tok.pos, name, pipe)

    def pipeline(self, context: str, end: str) -> _Pipe:
        pipe = _Pipe(self.peek_non_space().pos)
        while True:  # declarations
            v = self.peek_non_space()
            if v.typ != "var":
                break
            save = self.i
            self.next_non_space()
            after = self.peek()
            nxt = self.peek_non_space()
            if nxt.typ in ("assign", "declare"):
                pipe.is_assign = nxt.typ == "assign"
                self.next_non_space()
                pipe.decl.append(_Variable(v.pos, [v.val]))
                self.vars.append(v.val)
            elif nxt.typ == "charitem" and nxt.val == ",":
                self.next_non_space()
                pipe.decl.append(_Variable(v.pos, [v.val]))
                self.vars.append(v.val)
                if context == "range" and len(pipe.decl) < 2:
                    if self.peek_non_space().typ in ("var", "right", "rparen"):
                        continue
                    raise self.fail(nxt.pos, "range can only initialize variables")
                raise self.fail(nxt.pos, f"too many declarations in {context}")
            else:
                del after
                self.i = save
            break
        while True:
            tok = self.next_non_space()
            if tok.typ == end:
                if not pipe.cmds:
                    raise self.fail(tok.pos, f"missing value for {context}")
                for k, c in enumerate(pipe.cmds[1:]):
                    if isinstance(c.args[0], _Bool | _Dot | _Nil | _Number | _String):
                        raise self.fail(c.args[0].pos, f"non executable command in pipeline stage {k + 2}")
                return pipe
            if tok.typ in (
                "bool",
                "char",
                "complex",
                "dot",
                "field",
                "ident",
                "number",
                "nil",
                "rawstring",
                "string",
                "var",
                "lparen",
            ):
                self.backup()
                pipe.cmds.append(self.command())
            else:
                raise self.unexpected(tok, context)

    def command(self) -> _Command:
        cmd = _Command(self.peek_non_space().pos, [])
        while True:
            self.peek_non_space()
            while self.peek().typ == "space":
                self.next()
            op = self.operand()
            if op is not None:
                cmd.args.append(op)
            tok = self.next()
            if tok.typ == "space":
                continue
            if tok.typ in ("right", "rparen"):
                self.backup()
            elif tok.typ == "pipe":
                pass
            else:
                raise self.unexpected(tok, "operand")
            break
        if not cmd.args:
            raise self.fail(cmd.pos, "empty command")
        return cmd

    def operand(self) -> _Node | None:
        node = self.term()
        if node is None:
            return None
        if self.peek().typ == "field":
            chain_pos = self.peek().pos
            fields = []
            while self.peek().typ == "field":
                fields.append(self.next().val[1:])
            if isinstance(node, _Field):
                return _Field(chain_pos, node.idents + fields)
            if isinstance(node, _Variable):
                return _Variable(chain_pos, node.idents + fields)
            if isinstance(node, _Bool | _String | _Number | _Nil | _Dot):
                raise self.fail(chain_pos, f"unexpected . after term {_go_quote(str(node))}")
            return _Chain(chain_pos, node, fields)
        return node

    def term(self) -> _Node | None:
        tok = self.next_non_space()
        t = tok.typ
        if t == "ident":
            if tok.val not in self.funcs:
                raise self.fail(tok.pos, f"function {_go_quote(tok.val)} not defined")
            ident = _Identifier(tok.pos, tok.val)
            self.identifiers.append(ident)
            return ident
        if t == "dot":
            return _Dot(tok.pos)
        if t == "nil":
            return _Nil(tok.pos)
        if t == "var":
            if tok.val not in self.vars:
                raise self.fail(tok.pos, f"undefined variable {_go_quote(tok.val)}")
            return _Variable(tok.pos, [tok.val])
        if t == "field":
            return _Field(tok.pos, [tok.val[1:]])
        if t == "bool":
            return _Bool(tok.pos, tok.val == "true")
        if t in ("char", "number", "complex"):
            return self.number(tok)
        if t == "lparen":
            return self.pipeline("parenthesized pipeline", "rparen")
        if t in ("string", "rawstring"):
            return _String(tok.pos, tok.val, self.unquote(tok))
        self.backup()
        return None

    def number(self, tok: _Tok) -> _Number:
        text = tok.val
        n = _Number(tok.pos, text)
        if tok.typ == "char":
            try:
                r = ord(_go_unquote(text))
            except ValueError:
                raise self.fail(tok.pos, f"malformed character constant: {text}") from None
            n.is_int = n.is_float = True
            n.int_value, n.float_value = r, float(r)
            return n
        if tok.typ == "complex" or text.endswith("i"):
            raise self.fail(tok.pos, f"complex number {text} is not supported")
        iv = _parse_go_int(text)
        if iv is not None:
            n.is_int = n.is_float = True
            n.int_value, n.float_value = iv, float(iv)
            return n
        decimal = re.fullmatch(r"[+-]?[\d_]*(?:\.[\d_]*)?(?:[eE][+-]?[\d_]+)?", text)  # unambiguous: linear
        if text.lstrip("+-")[:2].lower() in ("0x",) or decimal:
            try:
                fv = _go_number_float(text)
            except ValueError:
                fv = None
            if fv is not None and not math.isinf(fv):
                if not any(ch in text for ch in ".eEpP"):
                    raise self.fail(tok.pos, f"integer overflow: {_go_quote(text)}")
                n.is_float, n.float_value = True, fv
                if fv == int(fv) and -(2**63) <= fv < 2**63:
                    n.is_int, n.int_value = True, int(fv)
                return n
            if fv is not None and not any(ch in text for ch in ".eEpP"):
                raise self.fail(tok.pos, f"integer overflow: {_go_quote(text)}")
        raise self.fail(tok.pos, f"illegal number syntax: {_go_quote(text)}")


def _go_number_float(text: str) -> float:
    """``strconv.ParseFloat`` for a template number literal (underscores only between digits)."""
    t = text
    if "_" in t:
        if re.search(r"__|_$|^[+-]?_|_\.|\._|_[eEpP]|[eEpP][+-]?_", t):
            raise ValueError(text)
        if t.lstrip("+-")[:2].lower() not in ("0x", "0b", "0o"):
            raise ValueError(text)
        t = t.replace("_", "")
    if t.lstrip("+-")[:2].lower() == "0x":
        sign = -1.0 if t.startswith("-") else 1.0
        body = t.lstrip("+-")
        if "p" not in body.lower():
            raise ValueError(text)
        return sign * float.fromhex(body)
    return float(t)


# ---- execution (text/template/exec.go) -----------------------------------------------------------------

_MISSING: Any = object()
_MAX_DEPTH = 1000


class _ExecError(Exception):
    def __init__(self, node: _Node | None, message: str) -> None:
        super().__init__(message)
        self.node = node
        self.message = message


class _BreakSignal(Exception):
    pass


class _ContinueSignal(Exception):
    pass


class _State:
    def __init__(self, tmpl: Template, funcs: Mapping[str, _Func], out: list[str]) -> None:
        self.tmpl = tmpl
        self.funcs = funcs
        self.out = out
        self.node: _Node | None = None
        self.vars: list[list[Any]] = []
        self.depth = 0

    def at(self, node: _Node) -> None:
        self.node = node

    def errorf(self, msg: str) -> _ExecError:
        return _ExecError(self.node, msg)

    def push(self, name: str, value: Any) -> None:
        self.vars.append([name, value])

    def mark(self) -> int:
        return len(self.vars)

    def pop(self, mark: int) -> None:
        del self.vars[mark:]

    def set_var(self, name: str, value: Any) -> None:
        for v in reversed(self.vars):
            if v[0] == name:
                v[1] = value
                return
        raise self.errorf(f"undefined variable: {name}")

    def set_top_var(self, n: int, value: Any) -> None:
        self.vars[len(self.vars) - n][1] = value

    def var_value(self, name: str) -> Any:
        for v in reversed(self.vars):
            if v[0] == name:
                return v[1]
        raise self.errorf(f"undefined variable: {name}")

    # walking
    def walk(self, dot: Any, node: _Node) -> None:
        self.at(node)
        if isinstance(node, _List):
            for n in node.nodes:
                self.walk(dot, n)
        elif isinstance(node, _Text):
            self.out.append(node.text)
        elif isinstance(node, _Action):
            val = self.eval_pipeline(dot, node.pipe)
            if not node.pipe.decl:
                self.at(node)
                try:
                    self.out.append(_print_value(val))
                except _Unsupported as exc:
                    raise self.errorf(f"not supported: {exc}") from None
        elif isinstance(node, _Branch):
            if node.kind == "range":
                self.walk_range(dot, node)
            else:
                mark = self.mark()
                try:
                    val = self.eval_pipeline(dot, node.pipe)
                    if _is_true(val):
                        self.walk(val if node.kind == "with" else dot, node.body)
                    elif node.else_body is not None:
                        self.walk(dot, node.else_body)
                finally:
                    self.pop(mark)
        elif isinstance(node, _TemplateCall):
            self.walk_template(dot, node)
        elif isinstance(node, _Break):
            raise _BreakSignal
        elif isinstance(node, _Continue):
            raise _ContinueSignal
        else:  # pragma: no cover - the parser makes no other nodes
            raise self.errorf(f"unknown node: {node}")

    def walk_range(self, dot: Any, r: _Branch) -> None:
        self.at(r)
        outer = self.mark()
        try:
            val = self.eval_pipeline(dot, r.pipe)
            mark = self.mark()
            if isinstance(val, Mapping | list):
                items: list[tuple[Any, Any]] = sorted(val.items()) if isinstance(val, Mapping) else list(enumerate(val))
                if items:
                    for key, elem in items:
                        if r.pipe.decl:
                            self.set_top_var(1, elem)
                        if len(r.pipe.decl) > 1:
                            self.set_top_var(2, key)
                        try:
                            self.walk(elem, r.body)
                        except _ContinueSignal:
                            pass
                        except _BreakSignal:
                            break
                        finally:
                            self.pop(mark)
                    return
            elif val is not None:
                raise self.errorf(f"range can't iterate over {_fmt_arg(val, 'v', _Flags())}")
            if r.else_body is not None:
                self.walk(dot, r.else_body)
        finally:
            self.pop(outer)

    def walk_template(self, dot: Any, t: _TemplateCall) -> None:
        self.at(t)
        body = self.tmpl.templates.get(t.name)
        if body is None:
            raise self.errorf(f"template {_go_quote(t.name)} not defined")
        if self.depth >= _MAX_DEPTH:
            raise self.errorf(f"exceeded maximum template depth ({_MAX_DEPTH})")
        dot = None if t.pipe is None else self.eval_pipeline(dot, t.pipe)  # no pipeline: dot is nil
        saved_vars, saved_depth = self.vars, self.depth
        self.vars = [["$", dot]]
        self.depth += 1
        try:
            self.walk(dot, body)
        finally:
            self.vars, self.depth = saved_vars, saved_depth

    # evaluation
    def eval_pipeline(self, dot: Any, pipe: _Pipe) -> Any:
        self.at(pipe)
        value = _MISSING
        for cmd in pipe.cmds:
            value = self.eval_command(dot, cmd, value)
        for v in pipe.decl:
            if pipe.is_assign:
                self.set_var(v.idents[0], value)
            else:
                self.push(v.idents[0], value)
        return value

    def not_a_function(self, args: list[_Node], final: Any) -> None:
        if len(args) > 1 or final is not _MISSING:
            raise self.errorf(f"can't give argument to non-function {args[0]}")

    def eval_command(self, dot: Any, cmd: _Command, final: Any) -> Any:
        first = cmd.args[0]
        if isinstance(first, _Field):
            return self.eval_field_node(dot, first, cmd.args, final)
        if isinstance(first, _Chain):
            return self.eval_chain_node(dot, first, cmd.args, final)
        if isinstance(first, _Identifier):
            return self.eval_function(dot, first, cmd, cmd.args, final)
        if isinstance(first, _Pipe):
            self.not_a_function(cmd.args, final)
            return self.eval_pipeline(dot, first)
        if isinstance(first, _Variable):
            return self.eval_variable_node(dot, first, cmd.args, final)
        self.at(first)
        self.not_a_function(cmd.args, final)
        if isinstance(first, _Bool):
            return first.value
        if isinstance(first, _Dot):
            return dot
        if isinstance(first, _Nil):
            raise self.errorf("nil is not a command")
        if isinstance(first, _Number):
            return self.ideal_constant(first)
        if isinstance(first, _String):
            return first.text
        raise self.errorf(f"can't evaluate command {first}")

    def ideal_constant(self, n: _Number) -> Any:
        self.at(n)
        t = n.text
        is_hex_int = len(t) > 2 and t[0] == "0" and t[1] in "xX" and not any(c in t for c in "pP")
        if n.is_float and not is_hex_int and not t.startswith("'") and any(c in t for c in ".eEpP"):
            return n.float_value
        if n.is_int:
            return n.int_value
        raise self.errorf(f"{t} overflows int")

    def eval_field_node(self, dot: Any, f: _Field, args: list[_Node], final: Any) -> Any:
        self.at(f)
        return self.eval_field_chain(dot, dot, f, f.idents, args, final)

    def eval_chain_node(self, dot: Any, chain: _Chain, args: list[_Node], final: Any) -> Any:
        self.at(chain)
        if not chain.fields:
            raise self.errorf("internal error: no fields in evalChainNode")
        if isinstance(chain.node, _Nil):
            raise self.errorf(f"indirection through explicit nil in {chain}")
        pipe = self.eval_arg(dot, "any", chain.node)
        return self.eval_field_chain(dot, pipe, chain, chain.fields, args, final)

    def eval_variable_node(self, dot: Any, v: _Variable, args: list[_Node] | None, final: Any) -> Any:
        self.at(v)
        value = self.var_value(v.idents[0])
        if len(v.idents) == 1:
            self.not_a_function(args or [v], final)
            return value
        return self.eval_field_chain(dot, value, v, v.idents[1:], args, final)

    def eval_field_chain(
        self, dot: Any, receiver: Any, node: _Node, idents: list[str], args: list[_Node] | None, final: Any
    ) -> Any:
        for name in idents[:-1]:
            receiver = self.eval_field(dot, name, node, None, _MISSING, receiver)
        return self.eval_field(dot, idents[-1], node, args, final, receiver)

    def eval_field(self, dot: Any, name: str, node: _Node, args: list[_Node] | None, final: Any, receiver: Any) -> Any:
        if receiver is None:
            return None
        if isinstance(receiver, GoTime) and name in _TIME_METHODS:
            params, impl = _TIME_METHODS[name]
            return self.eval_call(dot, _Func(params, None, impl), False, node, name, (args or [])[1:], final, receiver)
        has_args = (args is not None and len(args) > 1) or final is not _MISSING
        if isinstance(receiver, AlertData):
            if name in ("Labels", "ExternalLabels", "ExternalURL", "Value"):
                if has_args:
                    raise self.errorf(f"{name} has arguments but cannot be invoked as function")
                return getattr(receiver, name)
        elif isinstance(receiver, Mapping):
            if has_args:
                raise self.errorf(f"{name} is not a method but has arguments")
            return receiver.get(name, None if isinstance(receiver, ArgsMap) else "")
        raise self.errorf(f"can't evaluate field {name} in type {_type_name(receiver)}")

    def eval_function(self, dot: Any, node: _Identifier, cmd: _Node, args: list[_Node] | None, final: Any) -> Any:
        self.at(node)
        fn = self.funcs.get(node.name)
        if fn is None:
            raise self.errorf(f"{_go_quote(node.name)} is not a defined function")
        arg_nodes = args[1:] if args is not None else []
        return self.eval_call(dot, fn, node.name in _BUILTINS, cmd, node.name, arg_nodes, final)

    def eval_call(
        self,
        dot: Any,
        fn: _Func,
        is_builtin: bool,
        node: _Node,
        name: str,
        arg_nodes: list[_Node],
        final: Any,
        receiver: Any = _MISSING,
    ) -> Any:
        params = fn.params
        num_in = len(arg_nodes) + (0 if final is _MISSING else 1)
        if fn.variadic is not None:
            if num_in < len(params):
                raise self.errorf(f"wrong number of args for {name}: want at least {len(params)} got {len(arg_nodes)}")
        elif num_in != len(params):
            raise self.errorf(f"wrong number of args for {name}: want {len(params)} got {num_in}")
        if is_builtin and name in ("and", "or"):
            v: Any = None
            for a in arg_nodes:
                v = self.eval_arg(dot, "any", a)
                if _is_true(v) == (name == "or"):
                    return v
            if final is not _MISSING:
                v = final
            return v
        argv: list[Any] = []
        for k, a in enumerate(arg_nodes):
            typ = params[k] if k < len(params) else (fn.variadic or "any")
            argv.append(self.eval_arg(dot, typ, a))
        if final is not _MISSING:
            k = num_in - 1
            typ = params[k] if k < len(params) else (fn.variadic or "any")
            argv.append(self.validate_type(final, typ))
        try:
            if receiver is not _MISSING:
                return fn.impl(receiver, *argv)
            return fn.impl(*argv)
        except _FuncError as exc:
            self.at(node)
            raise self.errorf(f"error calling {name}: {exc}") from None
        except _Unsupported as exc:
            self.at(node)
            raise self.errorf(f"error calling {name}: not supported: {exc}") from None

    def validate_type(self, value: Any, typ: str) -> Any:
        if value is None:
            if typ in ("any", "sample", "result"):
                return None
            raise self.errorf(f"invalid value; expected {_GO_TYPES[typ]}")
        if typ == "any":
            return value
        ok = {
            "string": type(value) is str,
            "sample": False,
            "result": isinstance(value, QueryResult),
            "time": isinstance(value, GoTime),
        }[typ]
        if not ok:
            raise self.errorf(f"wrong type for value; expected {_GO_TYPES[typ]}; got {_type_name(value)}")
        return value

    def eval_arg(self, dot: Any, typ: str, n: _Node) -> Any:
        self.at(n)
        if isinstance(n, _Dot):
            return self.validate_type(dot, typ)
        if isinstance(n, _Nil):
            if typ in ("any", "sample", "result"):
                return None
            raise self.errorf(f"cannot assign nil to {_GO_TYPES[typ]}")
        if isinstance(n, _Field):
            return self.validate_type(self.eval_field_node(dot, n, [n], _MISSING), typ)
        if isinstance(n, _Variable):
            return self.validate_type(self.eval_variable_node(dot, n, None, _MISSING), typ)
        if isinstance(n, _Pipe):
            return self.validate_type(self.eval_pipeline(dot, n), typ)
        if isinstance(n, _Identifier):
            return self.validate_type(self.eval_function(dot, n, n, None, _MISSING), typ)
        if isinstance(n, _Chain):
            return self.validate_type(self.eval_chain_node(dot, n, [n], _MISSING), typ)
        if typ == "string":
            if isinstance(n, _String):
                return n.text
            raise self.errorf(f"expected string; found {n}")
        if typ == "any":
            if isinstance(n, _Bool):
                return n.value
            if isinstance(n, _Number):
                return self.ideal_constant(n)
            if isinstance(n, _String):
                return n.text
        raise self.errorf(f"can't handle {n} for arg of type {_GO_TYPES[typ]}")


_GO_TYPES = {
    "any": "interface {}",
    "string": "string",
    "sample": "*template.sample",
    "result": "template.queryResult",
    "time": "*time.Time",
}
_BUILTINS = frozenset(
    [
        "and",
        "call",
        "html",
        "index",
        "slice",
        "js",
        "len",
        "not",
        "or",
        "print",
        "printf",
        "println",
        "urlquery",
        "eq",
        "ge",
        "gt",
        "le",
        "lt",
        "ne",
    ]
)


# ---- public API ----------------------------------------------------------------------------------------


_NAME = "\x00NAME\x00"  # stands for the template's name in TemplateError.go_message


def _byte_col(src: str, pos: int) -> tuple[int, int]:
    """Go's location of ``pos`` in PREAMBLE + src: (line, 0-based byte column; on line 1 the
    preamble's bytes count)."""
    before = src[:pos]
    line = before.count("\n") + 1
    if line == 1:
        return 1, len((PREAMBLE + before).encode("utf-8", "surrogateescape"))
    return line, len(before[before.rfind("\n") + 1 :].encode("utf-8", "surrogateescape"))


def _go_context(node: _Node) -> str:
    """The node as Go's error context prints it (Go 1.19 does not shorten it)."""
    return str(node)


class Template:
    """A parsed template; :meth:`render` expands it for one alert."""

    def __init__(self, src: str) -> None:
        self.src = src

        def error(pos: int, msg: str) -> TemplateError:
            line, col = _line_col(src, pos)
            gline = src[:pos].count("\n") + 1
            go = f"error parsing template {_NAME}: template: {_NAME}:{gline}: {msg}"
            return TemplateError(msg, line, col, go)

        parser = _Parser(src, _DEFAULT_FUNCS, error)
        self.root = parser.parse()
        self.templates = parser.templates
        self.identifiers = parser.identifiers

    def render(
        self,
        labels: Mapping[str, str],
        value: float,
        *,
        external_labels: Mapping[str, str] | None = None,
        external_url: str | None = "",
    ) -> str:
        """Expand for one alert; ``external_url=None`` behaves like promtool (no external URL: the
        ``externalURL``/``pathPrefix`` functions fail, ``$externalURL`` is empty)."""
        data = AlertData(dict(labels), dict(external_labels or {}), external_url or "", float(value))
        funcs = _DEFAULT_FUNCS if external_url == "" else _build_functions(external_url)
        out: list[str] = []
        st = _State(self, funcs, out)
        st.push("$", data)
        st.push("$labels", data.Labels)
        st.push("$externalLabels", data.ExternalLabels)
        st.push("$externalURL", data.ExternalURL)
        st.push("$value", data.Value)
        try:
            st.walk(data, self.root)
        except _ExecError as exc:
            pos = exc.node.pos if exc.node is not None else 0
            line, col = _line_col(self.src, pos)
            gline, gcol = _byte_col(self.src, pos)
            ctx = _go_context(exc.node) if exc.node is not None else ""
            go = (
                f"error executing template {_NAME}: template: {_NAME}:{gline}:{gcol}: "
                f'executing "{_NAME}" at <{ctx}>: {exc.message}'
            )
            raise TemplateError(exc.message, line, col, go) from None
        except (_BreakSignal, _ContinueSignal):  # pragma: no cover - the parser confines them to range
            raise TemplateError("break/continue outside range", 1, 1) from None
        except RecursionError:
            raise TemplateError("template recursion too deep", 1, 1) from None
        return "".join(out)

    def unsupported(self) -> list[tuple[int, str]]:
        """(position, message) of every use of a function this implementation cannot run."""
        return [
            (i.pos, f'function "{i.name}" is not supported: it needs PromQL queries from templates')
            for i in self.identifiers
            if i.name in UNSUPPORTED_FUNCTIONS
        ]


def _line_col(src: str, pos: int) -> tuple[int, int]:
    line = src.count("\n", 0, pos) + 1
    return line, pos - (src.rfind("\n", 0, pos) + 1) + 1


def check_template(src: str) -> None:
    """Parse ``src`` as promtool does, and also reject what we cannot execute (``query`` and its
    helpers); raises :class:`TemplateError` with the position."""
    tmpl = Template(src)
    for pos, msg in tmpl.unsupported():
        line, col = _line_col(src, pos)
        raise TemplateError(msg, line, col)


def render(
    src: str,
    labels: Mapping[str, str],
    value: float,
    *,
    external_labels: Mapping[str, str] | None = None,
    external_url: str | None = "",
) -> str:
    """Expand one template string for an alert with ``labels`` and ``value``; raises TemplateError."""
    return Template(src).render(labels, value, external_labels=external_labels, external_url=external_url)


def expand(
    src: str,
    labels: Mapping[str, str],
    value: float,
    *,
    name: str,
    external_labels: Mapping[str, str] | None = None,
    external_url: str | None = "",
) -> str:
    """What Prometheus writes for a label/annotation template of alerting rule ``name``: the
    expansion, or ``<error expanding template: …>`` with Go's error text (template ``__alert_NAME``)."""
    try:
        return render(src, labels, value, external_labels=external_labels, external_url=external_url)
    except TemplateError as exc:
        return expansion_error(exc, name)


def expansion_error(exc: TemplateError, name: str) -> str:
    """``<error expanding template: …>`` with Go's error text for alerting rule ``name``, as Prometheus
    writes it in place of a label or annotation whose template failed."""
    msg = exc.go_message or str(exc)
    return f"<error expanding template: {msg.replace(_NAME, '__alert_' + name)}>"
