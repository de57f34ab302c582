"""Go's ``fmt`` (``print.go``, ``format.go``) over template values: ``printf``, ``print``,
``println`` and how an action's result is written.

Why a port and not ``%``-formatting: Go's verbs, flags and error texts differ (``%!d(float64=1.5)``,
``%!d(MISSING)``, ``%!(EXTRA …)``, ``%q``, ``%x`` of floats), and promtool, the oracle, prints Go's."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tasks.alerting.rules.evaluate import format_value
from tasks.alerting.rules.templating.gotime import GoTime
from tasks.alerting.rules.templating.values import AlertData, GoByte, QueryResult, type_name

__all__ = [
    "Flags",
    "Unsupported",
    "fmt_arg",
    "go_g4",
    "go_quote",
    "go_sprint",
    "go_sprintf",
    "go_sprintln",
    "print_value",
]


def go_g4(v: float) -> str:
    """Go's ``fmt.Sprintf("%.4g", v)``: like C's, but ``+Inf``/``-Inf``/``NaN``."""
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return f"{v:.4g}"


def go_quote(s: str, ascii_only: bool = False) -> str:
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
    q = go_quote(chr(r), ascii_only)
    return "'" + q[1:-1] + "'"


@dataclass
class Flags:
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


def _pad(s: str, f: Flags) -> str:
    if not f.wid_present or f.wid <= len(s):
        return s
    fill = f.wid - len(s)
    if f.minus:
        return s + " " * fill
    return ("0" if f.zero else " ") * fill + s


def _fmt_integer(u: int, base: int, verb: str, f: Flags, signed: bool = True) -> str:
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


def _fmt_float(v: float, verb: str, f: Flags) -> str:
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
        raise Unsupported("%b of a float")
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
        raise Unsupported("the # flag with a float verb")
    if not num.startswith("-"):
        num = "+" + num
    if f.space and num[0] == "+" and not f.plus:
        num = " " + num[1:]
    if f.plus or num[0] != "+":
        if f.zero and f.wid_present and f.wid > len(num):
            return num[0] + "0" * (f.wid - len(num)) + num[1:]
        return _pad(num, f)
    return _pad(num[1:], f)


def _fmt_string(s: str, verb: str, f: Flags) -> str:
    if verb in "vs":
        if f.sharp_v:
            return _pad(go_quote(s), f)
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
        return _pad(go_quote(s, ascii_only=f.plus), f)
    raise _BadVerb


class _BadVerb(Exception):
    pass


class Unsupported(Exception):
    """A Go behaviour this implementation does not reproduce (an error, not a guess)."""


def fmt_arg(x: Any, verb: str, f: Flags, depth: int = 0) -> str:
    """``fmt``'s printArg/printValue of one template value with ``verb``."""
    try:
        return _fmt_arg_inner(x, verb, f, depth)
    except _BadVerb:
        return _bad_verb(x, verb, f, depth)


def _bad_verb(x: Any, verb: str, f: Flags, depth: int) -> str:
    if x is None:
        return f"%!{verb}(<nil>)"
    return f"%!{verb}({type_name(x)}={fmt_arg(x, 'v', f, depth)})"


def _fmt_arg_inner(x: Any, verb: str, f: Flags, depth: int) -> str:
    if x is None:
        if depth > 0 or verb in "Tv":
            return _pad("<nil>", f)
        raise _BadVerb
    if verb == "T":
        return _fmt_string(type_name(x), "s", Flags(minus=f.minus, wid=f.wid, wid_present=f.wid_present))
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
        raise Unsupported(f"%{verb} of a *time.Time")
    if isinstance(x, Mapping):
        if f.sharp_v:
            inner = ", ".join(
                f"{fmt_arg(k, 'v', f, depth + 1)}:{fmt_arg(v, 'v', f, depth + 1)}" for k, v in sorted(x.items())
            )
            return f"{type_name(x)}{{{inner}}}"
        inner = " ".join(
            f"{fmt_arg(k, verb, f, depth + 1)}:{fmt_arg(v, verb, f, depth + 1)}" for k, v in sorted(x.items())
        )
        return f"map[{inner}]"
    if isinstance(x, AlertData):
        if f.sharp_v:
            raise Unsupported("%#v of the template data")
        parts = [x.Labels, x.ExternalLabels, x.ExternalURL, x.Value]
        return "{" + " ".join(fmt_arg(p, verb, f, depth + 1) for p in parts) + "}"
    if isinstance(x, QueryResult):
        return "[" + " ".join(fmt_arg(p, verb, f, depth + 1) for p in x) + "]"
    raise Unsupported(f"printing a {type_name(x)}")


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
        f = Flags()
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
        out.append(fmt_arg(args[arg_num], verb, f))
        arg_num += 1
    if not reordered and arg_num < len(args):
        extra = []
        for a in args[arg_num:]:
            extra.append("<nil>" if a is None else f"{type_name(a)}={fmt_arg(a, 'v', Flags())}")
        out.append("%!(EXTRA " + ", ".join(extra) + ")")
    return "".join(out)


def go_sprint(args: list[Any]) -> str:
    """``fmt.Sprint``: a space between operands when neither is a string."""
    out: list[str] = []
    prev_string = False
    for i, a in enumerate(args):
        is_string = isinstance(a, str)
        if i > 0 and not is_string and not prev_string:
            out.append(" ")
        out.append(fmt_arg(a, "v", Flags()))
        prev_string = is_string
    return "".join(out)


def go_sprintln(args: list[Any]) -> str:
    return " ".join(fmt_arg(a, "v", Flags()) for a in args) + "\n"


def print_value(x: Any) -> str:
    """How an action's result is written (``printableValue`` + ``fmt.Fprint``): nil is ``<no value>``."""
    if x is None:
        return "<no value>"
    return fmt_arg(x, "v", Flags())
