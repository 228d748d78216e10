"""Text and date functions of the spreadsheet engine (the table of all functions is in ``library.py``)."""

from __future__ import annotations

import datetime as _dt

from envs.spreadsheet.formulas import MAX_STRING
from envs.spreadsheet.functions import (
    _EPOCH,
    Rng,
    _wildcard,
    err,
    num,
    serial_to_date,
    single,
    text,
    text_to_number,
)

# --- text


def _cap(s: str) -> str:
    if len(s) > MAX_STRING:
        raise err("#VALUE!", f"text longer than {MAX_STRING} characters")
    return s


def TRIM(s):
    return " ".join(p for p in text(s).split(" ") if p)


def UPPER(s):
    return text(s).upper()


def LOWER(s):
    return text(s).lower()


def PROPER(s):
    out, prev = [], False
    for ch in text(s):
        out.append(ch.lower() if prev else ch.upper())
        prev = ch.isalpha()
    return "".join(out)


def LEN(s):
    return float(len(text(s)))


def LEFT(s, n=1.0):
    n = num(n)
    if n < 0:
        raise err("#VALUE!", "LEFT with a negative count")
    return text(s)[: int(n)]


def RIGHT(s, n=1.0):
    n, t = num(n), text(s)
    if n < 0:
        raise err("#VALUE!", "RIGHT with a negative count")
    return t[len(t) - int(n):] if int(n) else ""


def MID(s, start, n):
    start, n = int(num(start)), int(num(n))
    if start < 1 or n < 0:
        raise err("#VALUE!", "MID needs start >= 1 and a count >= 0")
    return text(s)[start - 1: start - 1 + n]


def VALUE(s):
    v = single(s)
    if type(v) in (float, int):
        return v
    x = text_to_number(text(v))
    if x is None:
        raise err("#VALUE!", f"{text(v)[:30]!r} is not a number")
    return x


def CONCATENATE(*args):
    return _joined(text(a) for a in args)


def _joined(pieces) -> str:
    """Join texts, stopping as soon as the result would pass the cell limit (never builds a huge string)."""
    parts, size = [], 0
    for piece in pieces:
        size += len(piece)
        if size > MAX_STRING:
            raise err("#VALUE!", f"text longer than {MAX_STRING} characters")
        parts.append(piece)
    return "".join(parts)


def _range_texts(a):
    if type(a) is not Rng:
        yield text(a)
        return
    max_r, max_c = a.book.extent(a.sheet)
    for i in range(min(a.rows, max(0, max_r - a.r1 + 1))):
        for j in range(min(a.cols, max(0, max_c - a.c1 + 1))):
            yield text(a.get(i, j))


def CONCAT(*args):
    return _joined(t for a in args for t in _range_texts(a))


def SUBSTITUTE(s, old, new, which=None):
    s, old, new = text(s), text(old), text(new)
    if not old:
        return s
    if which is None:
        if len(s) + s.count(old) * (len(new) - len(old)) > MAX_STRING:
            raise err("#VALUE!", f"SUBSTITUTE result would be longer than {MAX_STRING} characters")
        return s.replace(old, new)
    k, pos = int(num(which)), -1
    for _ in range(k):
        pos = s.find(old, pos + 1)
        if pos < 0:
            return s
    return _cap(s[:pos] + new + s[pos + len(old):])


def EXACT(a, b):
    return text(a) == text(b)


def REPT(s, n):
    s, n = text(s), int(num(n))
    if n < 0 or len(s) * n > MAX_STRING:
        raise err("#VALUE!", f"REPT result would be longer than {MAX_STRING} characters")
    return s * n


def FIND(needle, hay, start=1.0):
    pos = text(hay).find(text(needle), int(num(start)) - 1)
    if pos < 0 or num(start) < 1:
        raise err("#VALUE!", "FIND: text not found")
    return float(pos + 1)


def SEARCH(needle, hay, start=1.0):
    rx, hay, s = _wildcard(text(needle)), text(hay), int(num(start))
    m = rx.search(hay, s - 1) if s >= 1 else None
    if m is None:
        raise err("#VALUE!", "SEARCH: text not found")
    return float(m.start() + 1)


# --- dates (serial numbers, 1899-12-30 = 0)


def DATE(y, m, d):
    y, m, d = int(num(y)), int(num(m)), int(num(d))
    if 0 <= y < 1900:
        y += 1900
    y, m = y + (m - 1) // 12, (m - 1) % 12 + 1
    try:
        serial = (_dt.date(y, m, 1) - _EPOCH).days + d - 1
    except ValueError:
        raise err("#NUM!", "DATE outside the supported years") from None
    return float(serial)


def DATEVALUE(s):
    x = text_to_number(text(s)) if type(single(s)) is str else None
    if x is None or "-" not in text(s) and "/" not in text(s):
        raise err("#VALUE!", f"{text(s)[:30]!r} is not a date like 2024-01-31")
    return x


def YEAR(x):
    return float(serial_to_date(num(x)).year)


def MONTH(x):
    return float(serial_to_date(num(x)).month)


def DAY(x):
    return float(serial_to_date(num(x)).day)
