"""Text and date functions of the spreadsheet engine, and the text matching they and the criteria functions share
(wildcards, criteria); the table of all functions is in ``library.py``.

Counts and positions are 32-bit integers as in LibreOffice (``integer()``: truncated, #VALUE! outside the range),
and no text result grows past the 32,767-character cell limit (#VALUE!, checked before the text is built).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

from envs.spreadsheet.formulas import MAX_STRING, XlError
from envs.spreadsheet.functions import (
    _CMPS,
    _ISO_RE,
    _US_RE,
    INT16,
    Rng,
    approx_eq,
    compare,
    err,
    finite,
    integer,
    is_number,
    num,
    number_text,
    single,
    text,
    text_to_number,
    too_long,
)

_COUNT = (0, 2_147_483_647)  # LibreOffice's range for a count or position in text
_POSITION = (1, 2_147_483_647)

# --- wildcards and criteria: SUMIF/COUNTIF/... (">=5", "East", "e*", "<>", ""), SEARCH, exact lookups


def _fold(s: str) -> str:
    """Lower case with one character per character, so positions in the folded text are positions in ``s``."""
    low = s.lower()
    if len(low) == len(s):
        return low
    return "".join(c.lower() if len(c.lower()) == 1 else c for c in s)


_REGEX_BUDGET = 2_000_000  # piece length x text length above which a '?' piece is searched with bit-parallel Shift-And


class _Piece:
    """Text between two '*' of a wildcard pattern: literal characters and '?' (None), always of one length."""

    __slots__ = ("chars", "lit", "masks", "rx")

    def __init__(self, chars: list[str | None]):
        self.chars = chars
        self.lit = "".join(chars) if None not in chars else None
        self.rx = None if self.lit is not None else re.compile(
            "".join("." if c is None else re.escape(c) for c in chars), re.DOTALL)
        self.masks = None

    def __len__(self) -> int:
        return len(self.chars)

    def at(self, t: str, k: int) -> bool:
        if self.lit is not None:
            return t.startswith(self.lit, k)
        return self.rx.match(t, k) is not None

    def find(self, t: str, pos: int, end: int) -> int:
        """The leftmost k >= pos where the piece fits inside t[pos:end], or -1."""
        m = len(self.chars)
        if m == 0:
            return pos if pos <= end else -1
        if self.lit is not None:
            return t.find(self.lit, pos, end)
        if m * (end - pos) <= _REGEX_BUDGET:  # a fixed-length regex: at most m steps per start, usually far fewer
            hit = self.rx.search(t, pos, end)
            return -1 if hit is None else hit.start()
        return self._shift_and(t, pos, end)

    def _shift_and(self, t: str, pos: int, end: int) -> int:
        """Bit-parallel search (Baeza-Yates-Gonnet): one step per character of the text, whatever the piece."""
        if self.masks is None:
            anyc = sum(1 << j for j, c in enumerate(self.chars) if c is None)
            masks: dict[str, int] = {}
            for j, c in enumerate(self.chars):
                if c is not None:
                    masks[c] = masks.get(c, anyc) | (1 << j)
            self.masks = (anyc, masks)
        anyc, masks = self.masks
        get, top, state, m = masks.get, 1 << (len(self.chars) - 1), 0, len(self.chars)
        for i in range(pos, end):
            state = ((state << 1) | 1) & get(t[i], anyc)
            if state & top:
                return i - m + 1
        return -1


class Wildcard:
    """A criteria/SEARCH pattern: '*' is any run of characters, '?' any one, '~' makes the next character literal
    (a '~' at the end is itself). Case-insensitive, and matched without backtracking: the pieces between stars are
    placed greedily, leftmost first, which is exact for such patterns, so the work is about linear in the text
    (``=SEARCH("*x*x*x*y",REPT("x",200))`` is a few string scans, not 27 s of regex backtracking)."""

    __slots__ = ("pieces",)

    def __init__(self, pattern: str):
        pieces: list[list[str | None]] = [[]]
        i = 0
        while i < len(pattern):
            ch = pattern[i]
            if ch == "~" and i + 1 < len(pattern):
                pieces[-1].append(_fold(pattern[i + 1]))
                i += 2
                continue
            if ch == "*":
                pieces.append([])
            else:
                pieces[-1].append(None if ch == "?" else _fold(ch))
            i += 1
        self.pieces = [_Piece(p) for p in pieces]

    def fullmatch(self, text: str) -> bool:
        t, ps = _fold(text), self.pieces
        n, first, last = len(text), ps[0], ps[-1]
        if len(ps) == 1:
            return len(first) == n and first.at(t, 0)
        if len(first) + len(last) > n or not first.at(t, 0) or not last.at(t, n - len(last)):
            return False
        pos, end = len(first), n - len(last)
        for piece in ps[1:-1]:
            k = piece.find(t, pos, end)
            if k < 0:
                return False
            pos = k + len(piece)
        return True

    def search(self, text: str, start: int = 0) -> int:
        """The leftmost position >= start where a match begins, or -1. A later start never helps the pieces after
        the first one, so the first one's leftmost place is the only candidate."""
        t, ps = _fold(text), self.pieces
        s = ps[0].find(t, start, len(t))
        if s < 0:
            return -1
        pos = s + len(ps[0])
        for piece in ps[1:]:
            k = piece.find(t, pos, len(t))
            if k < 0:
                return -1
            pos = k + len(piece)
        return s


@functools.lru_cache(maxsize=1024)
def wildcard(pattern: str) -> Wildcard:
    return Wildcard(pattern)


def has_wildcards(s: str) -> bool:
    return "*" in s or "?" in s or "~" in s


def shown_text(v) -> str:
    """A cell's value as the text a spreadsheet shows (what wildcard criteria match): numbers in the General
    format, TRUE/FALSE, an error's code."""
    t = type(v)
    if t is str:
        return v
    if t is bool:
        return "TRUE" if v else "FALSE"
    if t is XlError:
        return v.code
    return number_text(finite(v))


def criterion(c) -> tuple[Callable[[object], bool], bool]:
    """A predicate for a criterion value, and whether it matches blank cells."""
    c = single(c)
    if isinstance(c, XlError):
        raise c
    if c is None:
        c = 0.0
    if type(c) is not str:  # a number or a boolean (TRUE is 1): matches numbers and booleans of that value
        want = num(c)
        return (lambda v: is_number(v) and approx_eq(finite(v), want)), False
    op = next((o for o in ("<=", ">=", "<>", "<", ">", "=") if c.startswith(o)), "")
    operand = c[len(op):]
    x = text_to_number(operand) if operand.strip() else None
    if x is not None:
        test = _CMPS[op or "="]

        def numeric(v):
            return is_number(v) and test(compare(v, x))

        low = operand.lower()
        if op == "<>":
            return (lambda v: not (is_number(v) and approx_eq(finite(v), x)
                                   or type(v) is str and v.lower() == low)), True
        if op in ("", "="):  # LibreOffice: "12" matches the number 12 and the text "12" (not " 12 ")
            return (lambda v: numeric(v) or type(v) is str and v.lower() == low), False
        return numeric, False
    if operand == "":
        if op in ("", "="):
            return (lambda v: v is None or v == ""), True
        if op == "<>":
            return (lambda v: v is not None and v != ""), False
    if op in ("", "=", "<>"):
        if has_wildcards(operand):
            pattern = wildcard(operand)

            def hit(v):  # LibreOffice matches every cell by its text: 12 matches "1*", TRUE "T*", #N/A "#*"
                return v is not None and pattern.fullmatch(shown_text(v))
        else:
            low = operand.lower()

            def hit(v):  # an error cell matches its code: "#N/A" counts #N/A cells
                return (type(v) is str and v.lower() == low) or (type(v) is XlError and v.code.lower() == low)
        return ((lambda v: not hit(v)), True) if op == "<>" else (hit, False)
    test = _CMPS[op]
    return (lambda v: type(v) is str and test(compare(v, operand))), False


def matches(rng: Rng, crit) -> list[tuple[int, int]]:
    """Offsets (i, j) of cells of ``rng`` that meet the criterion (blank cells past the used extent excluded)."""
    crit = single(crit)
    key = ("match", rng.sheet, rng.r1, rng.c1, rng.r2, rng.c2, type(crit), crit)
    out = rng.book._memo.get(key)
    if out is None:
        pred, blank_ok = criterion(crit)
        cells = rng.dense() if blank_ok else rng.filled()
        out = rng.book._memo[key] = [(i, j) for i, j, v in cells if pred(v)]
    return out


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
