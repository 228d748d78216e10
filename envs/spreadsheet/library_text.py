"""Text and date functions of the spreadsheet engine (the table of all functions is in ``library.py``).

Counts and positions are 32-bit integers as in LibreOffice (``integer()``: truncated, #VALUE! outside the range),
and no text result grows past the 32,767-character cell limit (#VALUE!, checked before the text is built).
"""

from __future__ import annotations

from envs.spreadsheet.formulas import MAX_STRING
from envs.spreadsheet.functions import (
    _ISO_RE,
    _US_RE,
    INT16,
    Rng,
    err,
    finite,
    integer,
    num,
    number_text,
    single,
    text,
    text_to_number,
    too_long,
    wildcard,
)

_COUNT = (0, 2_147_483_647)  # LibreOffice's range for a count or position in text
_POSITION = (1, 2_147_483_647)

# --- text


def _cap(s: str) -> str:
    if len(s) > MAX_STRING:
        raise too_long()
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
    return text(s)[: integer(n, _COUNT, "LEFT's count", floor=True)]


def RIGHT(s, n=1.0):
    n, t = integer(n, _COUNT, "RIGHT's count", floor=True), text(s)
    return t[max(0, len(t) - n):] if n else ""


def MID(s, start, n):
    start, n = (integer(start, _POSITION, "MID's start", floor=True),
                integer(n, _COUNT, "MID's count", floor=True))
    return text(s)[start - 1: start - 1 + n]


def VALUE(s):
    v = single(s)
    if type(v) is float or type(v) is int:
        return finite(v)
    if v is None:  # a blank cell is 0
        return 0.0
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
            raise too_long()
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
    if which is not None:
        which = integer(which, _POSITION, "SUBSTITUTE's occurrence", floor=True)
    if not old:
        return s
    if which is None:
        if len(s) + s.count(old) * (len(new) - len(old)) > MAX_STRING:
            raise too_long()
        return s.replace(old, new)
    pos = -1
    for _ in range(min(which, len(s) + 1)):  # at most one occurrence per character
        pos = s.find(old, pos + 1)
        if pos < 0:
            return s
    return _cap(s[:pos] + new + s[pos + len(old):])


def EXACT(a, b):
    return text(a) == text(b)


def REPT(s, n):
    s, n = text(s), integer(n, _COUNT, "REPT's count", floor=True)
    if len(s) * n > MAX_STRING:
        raise too_long()
    return s * n


def _start(needle: str, hay: str, start, fname: str) -> int:
    """The 0-based start of a FIND/SEARCH; LibreOffice: #VALUE! for empty search text or a start past the text."""
    s = integer(start, _POSITION, f"{fname}'s start", floor=True)
    if not needle:
        raise err("#VALUE!", f"{fname} for empty text finds nothing")
    if s > len(hay):
        raise err("#VALUE!", f"{fname}: the start {s} is past the end of the text")
    return s - 1


def FIND(needle, hay, start=1.0):
    needle, hay = text(needle), text(hay)
    pos = hay.find(needle, _start(needle, hay, start, "FIND"))
    if pos < 0:
        raise err("#VALUE!", "FIND: text not found")
    return float(pos + 1)


def SEARCH(needle, hay, start=1.0):
    needle, hay = text(needle), text(hay)
    pos = wildcard(needle).search(hay, _start(needle, hay, start, "SEARCH"))
    if pos < 0:
        raise err("#VALUE!", "SEARCH: text not found")
    return float(pos + 1)


def CHAR(n):
    """The character of a code 0..255: ASCII below 128, then Windows-1252 (what Excel on Windows shows;
    LibreOffice uses the system's 8-bit encoding, which on a UTF-8 system is no character at all)."""
    x = num(n)
    if not 0 <= x < 256:  # checked before truncating, as LibreOffice: CHAR(-0.5) is #VALUE!
        raise err("#VALUE!", f"CHAR's code must be from 0 to 255, got {number_text(x)}")
    code = integer(x, (0, 255), "CHAR's code")
    if code < 128:
        return chr(code)
    try:
        return bytes([code]).decode("cp1252")
    except UnicodeDecodeError:  # the five codes Windows-1252 leaves undefined: the Latin-1 control character
        return chr(code)


# --- dates: serial numbers, 1899-12-30 = 0, on the proleptic Gregorian calendar, years -32768..32767 as in
# LibreOffice (which has no year 0: the year before 1 is -1).

_ORDINAL_OF_EPOCH = 693_594  # days from 0001-01-01 (day 1) to 1899-12-30, LibreOffice's day count base


def _days_from_civil(y: int, m: int, d: int) -> int:
    """Day number (0001-01-01 = 1) of an astronomical-year Gregorian date (Hinnant's algorithm, any year)."""
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146_097 + doe - 719_468 + 719_163


def _civil_from_days(n: int) -> tuple[int, int, int]:
    z = n - 719_163 + 719_468
    era = z // 146_097
    doe = z - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + (3 if mp < 10 else -9)
    return yoe + era * 400 + (m <= 2), m, d


_MAX_DAY = _days_from_civil(32_767, 12, 31)
_MIN_DAY = _days_from_civil(-32_767, 1, 1)  # LibreOffice's year -32768
_GREGORIAN_START = _days_from_civil(1582, 10, 15)


def DATE(y, m, d):
    """LibreOffice's DATE: 16-bit arguments, years 0-29 are 2000-2029 and 30-99 are 1930-1999, months and days
    past their range roll over, and the date must be on the Gregorian calendar (1582-10-15 or later)."""
    d, m, y = integer(d, INT16, "DATE's day"), integer(m, INT16, "DATE's month"), integer(y, INT16, "DATE's year")
    if y < 0:
        raise err("#VALUE!", "DATE's year must be 0 or more")
    if y < 100:
        y += 2000 if y < 30 else 1900
    y, m = y + (m - 1) // 12, (m - 1) % 12 + 1
    day = min(max(_days_from_civil(y, m, 1) + d - 1, _MIN_DAY), _MAX_DAY)
    if day < _GREGORIAN_START:
        raise err("#VALUE!", "DATE before 1582-10-15, where the Gregorian calendar starts")
    return float(day - _ORDINAL_OF_EPOCH)


def DATEVALUE(s):
    t = text(s).strip()
    x = text_to_number(t) if type(single(s)) is str and (_ISO_RE.fullmatch(t) or _US_RE.fullmatch(t)) else None
    if x is None:
        raise err("#VALUE!", f"{t[:30]!r} is not a date like 2024-01-31")
    return x


def _date_of(x) -> tuple[int, int, int]:
    """(year, month, day) of a serial number as LibreOffice reads it: truncated to a 32-bit day count (which
    wraps around as in LibreOffice) and held to the years -32768..32767."""
    day = _ORDINAL_OF_EPOCH + integer(x, what="a date serial number")
    if day > 2_147_483_647:
        day -= 2**32
    y, m, d = _civil_from_days(min(max(day, _MIN_DAY), _MAX_DAY))
    return (y if y > 0 else y - 1), m, d


def YEAR(x):
    return float(_date_of(x)[0])


def MONTH(x):
    return float(_date_of(x)[1])


def DAY(x):
    return float(_date_of(x)[2])
