"""Formula semantics: value coercion, the operators' arithmetic and comparisons, criteria, ranges and context.

The function table is ``envs.spreadsheet.library`` (and ``library_text``); ``envs.spreadsheet.compiler`` turns a
parsed formula into closures over both. The layers import downwards only: formulas (syntax) <- functions
(semantics) <- library (functions by name) <- compiler <- workbook.

Semantics follow LibreOffice Calc reading .xlsx (our ground truth, checked by tests/test_spreadsheet_libreoffice.py),
which differs from Excel in a few corners: a boolean is the number 1 or 0 (TRUE concatenates as "1", counts in
SUM over a range, equals 1), SUM("3") is #VALUE!, a VLOOKUP column or INDEX position past the table is #VALUE!,
numbers compare equal within 2^-48 relative.
Where a function is not here, the formula shows ``#NAME?`` with the list of supported functions.

Every number that enters a function is finite (text such as "1e999" reads as the largest number, 1.8E+308, as
LibreOffice reads it; a huge integer from a cell is #NUM!), every number a function or operator returns is checked
(#NUM! when it is not finite), and integer arguments go through ``integer()``, which truncates as LibreOffice does
and answers #VALUE! outside the range LibreOffice accepts: no Python OverflowError escapes an evaluation.
"""

from __future__ import annotations

import datetime as _dt
import functools
import math
import re
import unicodedata
from decimal import ROUND_DOWN, ROUND_HALF_UP, ROUND_UP, Decimal, InvalidOperation

from envs.spreadsheet.formulas import MAX_STRING, XlError

_MAX_FLOAT, _MIN_NORMAL = 1.7976931348623157e308, 2.2250738585072014e-308
INT16, INT32 = (-32_768, 32_767), (-2_147_483_648, 2_147_483_647)
_EPOCH = _dt.date(1899, 12, 30)
_NUM_RE = re.compile(r"[+-]?(?:[0-9]{1,3}(?:,[0-9]{3})+|[0-9]*)(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?")
_ISO_RE = re.compile(r"([0-9]{4})-([0-9]{1,2})-([0-9]{1,2})")
_US_RE = re.compile(r"([0-9]{1,2})/([0-9]{1,2})/([0-9]{4})")


def err(code: str, detail: str = "", deliberate: bool = False) -> XlError:
    return XlError(code, detail, deliberate)


class Ctx:
    """Where a formula runs: the workbook (for cell values) and the formula's own sheet, row and column."""

    __slots__ = ("book", "col", "row", "sheet")

    def __init__(self, book, sheet: str, row: int, col: int):
        self.book, self.sheet, self.row, self.col = book, sheet, row, col


class Rng:
    """A reference passed to a function: read lazily, so a whole-sheet range costs only its filled cells."""

    __slots__ = ("book", "c1", "c2", "r1", "r2", "sheet")

    def __init__(self, book, sheet, r1, c1, r2, c2):
        self.book, self.sheet, self.r1, self.c1, self.r2, self.c2 = book, sheet, r1, c1, r2, c2

    @property
    def rows(self) -> int:
        return self.r2 - self.r1 + 1

    @property
    def cols(self) -> int:
        return self.c2 - self.c1 + 1

    def get(self, i: int, j: int):
        return self.book.cell_value(self.sheet, self.r1 + i, self.c1 + j)

    def key(self) -> tuple:
        return (self.sheet, self.r1, self.c1, self.r2, self.c2)

    def filled(self) -> list[tuple[int, int, object]]:
        """(i, j, value) for every non-blank cell, row by row; memoised until the workbook changes."""
        memo, key = self.book._memo, ("filled", self.sheet, self.r1, self.c1, self.r2, self.c2)
        out = memo.get(key)
        if out is None:
            r1, c1 = self.r1, self.c1
            out = memo[key] = [(r - r1, c - c1, v) for r, c, v in
                               self.book.filled_cells(self.sheet, r1, c1, self.r2, self.c2)]
        return out

    def dense(self):
        """(i, j, value) for every cell up to the sheet's used extent (cells past it are all blank)."""
        max_r, max_c = self.book.extent(self.sheet)
        for r in range(self.r1, min(self.r2, max_r) + 1):
            for c in range(self.c1, min(self.c2, max_c) + 1):
                yield r - self.r1, c - self.c1, self.book.cell_value(self.sheet, r, c)

    def dense_area(self) -> int:
        max_r, max_c = self.book.extent(self.sheet)
        return max(0, min(self.r2, max_r) - self.r1 + 1) * max(0, min(self.c2, max_c) - self.c1 + 1)

    def vector(self) -> list:
        """The values of a one-row or one-column range, clipped to the used extent."""
        if self.rows != 1 and self.cols != 1:
            raise err("#VALUE!", "a lookup range must be one row or one column")
        max_r, max_c = self.book.extent(self.sheet)
        if self.cols == 1:
            return [self.get(i, 0) for i in range(min(self.rows, max(0, max_r - self.r1 + 1)))]
        return [self.get(0, j) for j in range(min(self.cols, max(0, max_c - self.c1 + 1)))]


# ----------------------------------------------------------------------------------------------------------------
# Coercion.


def single(v):
    """A reference used as one value: a one-cell range gives its value (blank counts as blank), others #VALUE!."""
    if type(v) is Rng:
        if v.r1 == v.r2 and v.c1 == v.c2:
            return v.get(0, 0)
        raise err("#VALUE!", "a multi-cell range where one value is expected; aggregate it, e.g. SUM(A1:A5)")
    return v


def text_to_number(s: str):
    t = s.strip()
    if not t:
        return None
    pct = t.endswith("%")
    body = t[:-1].strip() if pct else t
    mantissa = body.partition("e")[0].partition("E")[0]
    if _NUM_RE.fullmatch(body) and any(ch.isdigit() for ch in mantissa):  # "E5" is text, not 0 x 10^5
        x = float(body.replace(",", ""))
        if math.isinf(x):  # LibreOffice reads "1e999" as the largest number, and "1e-320" as 0
            x = math.copysign(_MAX_FLOAT, x)
        elif abs(x) < _MIN_NORMAL:
            x = 0.0
        return x / 100 if pct else x
    if (m := _ISO_RE.fullmatch(t)) or (m := _US_RE.fullmatch(t)):
        y, mo, d = (int(g) for g in m.groups()) if m.re is _ISO_RE else (int(m[3]), int(m[1]), int(m[2]))
        try:
            return float((_dt.date(y, mo, d) - _EPOCH).days)
        except ValueError:
            return None
    if t.upper() in ("TRUE", "FALSE"):
        return 1.0 if t.upper() == "TRUE" else 0.0
    return None


def finite(v) -> float:
    """A cell's number as a float: an integer too large for a float (a user's 10**400) is #NUM!, not OverflowError."""
    if type(v) is float:
        return v
    try:
        return float(v)
    except OverflowError:
        raise err("#NUM!", "the number is larger than the largest number, 1.8E+308") from None


def num(v) -> float:
    v = single(v)
    t = type(v)
    if t is float:
        return v
    if t is int:
        return finite(v)
    if t is bool:
        return 1.0 if v else 0.0
    if v is None:
        return 0.0
    if t is str:
        x = text_to_number(v)
        if x is None:
            raise err("#VALUE!", f"text {v[:30]!r} is not a number")
        return x
    raise v  # an XlError


def number_text(x: float) -> str:
    """A number as text the way LibreOffice writes one (its General format): integers below 2^53 in full, other
    numbers with 15 significant digits, fixed-point (at most 20 decimals) for exponents -14..14, else 1.5E-016."""
    if x == int(x) and abs(x) < 2.0**53:
        return str(int(x))
    mant, _, exp = f"{x:.14e}".partition("e")
    e, r = int(exp), float(f"{x:.14e}")  # r may round past the largest float to inf (1.79769313486232E+308)
    if abs(r) < 2.0**53 and r == int(r):
        return str(int(r))
    if -15 < e < 15:
        fixed = f"{r:.{min(20, 14 - e)}f}"
        return fixed.rstrip("0").rstrip(".") if "." in fixed else fixed
    mant = mant.rstrip("0").rstrip(".")
    return f"{mant}E{'+' if e >= 0 else '-'}{abs(e):03d}"


def text(v) -> str:
    v = single(v)
    t = type(v)
    if t is str:
        return v
    if t is float or t is int:
        return number_text(v)
    if t is bool:
        return "1" if v else "0"  # LibreOffice: a boolean is the number 1 or 0
    if v is None:
        return ""
    raise v


def truth(v) -> bool:
    """A condition (IF, NOT): LibreOffice reads it as a number, so the text "1" or "TRUE" is true and "x" #VALUE!."""
    v = single(v)
    if type(v) is bool:
        return v
    if type(v) is str and text_to_number(v) is None:
        raise err("#VALUE!", f"text {v[:30]!r} is not a number or TRUE/FALSE")
    return num(v) != 0


def integer(v, bounds: tuple[int, int] = INT32, what: str = "the number", floor: bool = False) -> int:
    """An integer argument as LibreOffice takes one: truncated toward zero, or rounded down with ``floor`` (text
    counts and positions: LEFT("a",-0.5) is #VALUE!), after rounding away float noise (0.99999999999999989 is 1),
    and #VALUE! outside ``bounds`` (LibreOffice's 16- or 32-bit argument range)."""
    x = num(v)
    x = approx_floor(x) if x >= 0 or floor else -approx_floor(-x)
    lo, hi = bounds
    if not lo <= x <= hi:
        raise err("#VALUE!", f"{what} must be a whole number from {lo} to {hi}, got {number_text(x)}")
    return int(x)


def approx_value(x: float) -> float:
    """LibreOffice's rtl::math::approxValue: a non-integer below 2^41 rounded to 15 significant digits."""
    if x == 0 or not math.isfinite(x) or abs(x) > 2.0**41 or x == int(x):
        return x
    return float(f"{x:.15g}")


def approx_floor(x: float) -> float:
    """LibreOffice's approxFloor (INT, MOD, integer arguments): floor after dropping float noise; keeps +-inf."""
    if not math.isfinite(x):
        return x
    return float(math.floor(approx_value(x)))


def approx_sub(a: float, b: float) -> float:
    """LibreOffice's approxSub: a - b, but 0 when a and b have one sign and agree within 2^-48 relative."""
    if ((a < 0 and b < 0) or (a > 0 and b > 0)) and approx_eq(a, b):
        return 0.0
    return a - b


def check_num(x: float) -> float:
    if math.isinf(x) or math.isnan(x):
        raise err("#NUM!", "the result is too large")
    return x


def approx_eq(a: float, b: float) -> bool:
    """Equal within 2^-48 relative, as LibreOffice compares numbers (never true of a finite and an infinite one)."""
    if a == b:
        return True
    d = abs(a - b)
    return d <= max(abs(a), abs(b)) * 2.0**-48 and d != math.inf


def fsum(values) -> float:
    """The exactly rounded sum; inf (so #NUM!) only when the sum itself is too large, not a partial sum (SUM of
    1e308, 1e308 and -1e308 is 1e308, as in LibreOffice)."""
    values = list(values)
    try:
        return math.fsum(values)
    except OverflowError:
        return math.fsum(v * 0.5 for v in values) * 2


def is_number(v) -> bool:
    """A number as LibreOffice sees one: a float, an int, or a boolean (TRUE is 1 with a boolean format)."""
    t = type(v)
    return t is float or t is int or t is bool


# The order of ASCII punctuation and symbols in the Unicode collation (CLDR root), which LibreOffice compares with:
# whitespace < punctuation and symbols (this order) < other symbols < currency < digits < letters.
_PUNCTUATION = "_-,;:!?.'\"()[]{}@*/\\&#%`^+<=>|~"


def _primary(ch: str) -> tuple[int, int]:
    if ch.isspace() or unicodedata.category(ch) == "Cc":
        return (0, ord(ch))
    k = _PUNCTUATION.find(ch)
    if k >= 0:
        return (1, k)
    if ch.isdigit():
        return (4, unicodedata.digit(ch, 0))
    if ch.isalpha():
        return (5, ord(ch))
    category = unicodedata.category(ch)
    if category == "Sc":
        return (3, -1 if ch == "$" else ord(ch))
    return (2, ord(ch)) if category[0] in "PS" else (6, ord(ch))


@functools.lru_cache(maxsize=65_536)
def text_order_key(s: str) -> tuple:
    """How LibreOffice orders and equates texts: case-insensitively by the Unicode collation, so punctuation sorts
    before digits and digits before letters ("<5" < "1"), accents count after the letters ("e" < "é" < "f"), and
    compatibility forms after their plain forms ("ss" < "ß"). Levels: base characters, accents, forms."""
    primary, accents, forms = [], [], []
    for ch in s.lower():
        decomposed = unicodedata.normalize("NFKD", ch)
        base = [c for c in decomposed if not unicodedata.combining(c)] or [ch]
        primary.extend(_primary(c) for c in base)
        accents.extend(ord(c) for c in decomposed if unicodedata.combining(c))
        accents.append(0)
        forms.append(0 if decomposed == ch or unicodedata.normalize("NFD", ch) == decomposed else 1)
    return tuple(primary), tuple(accents), tuple(forms)


def compare(a, b) -> int:
    """-1, 0 or 1; numbers (booleans are 1 and 0) < text; text case-insensitive; blank is 0 or "" as the other side."""
    if a is None:
        a = "" if type(b) is str else 0.0
    if b is None:
        b = "" if type(a) is str else 0.0
    ea, eb = type(a) is XlError, type(b) is XlError
    if ea or eb:  # errors after everything (no formula compares them: errors propagate first)
        if ea != eb:
            return 1 if ea else -1
        return 0 if a.code == b.code else -1 if a.code < b.code else 1
    sa, sb = type(a) is str, type(b) is str
    if sa != sb:
        return 1 if sa else -1
    if sa:
        if a == b:
            return 0
        ka, kb = text_order_key(a), text_order_key(b)
        return 0 if ka == kb else -1 if ka < kb else 1
    a, b = finite(a), finite(b)
    if approx_eq(a, b):
        return 0
    return -1 if a < b else 1


# ----------------------------------------------------------------------------------------------------------------
# Operators.


def _add(a, b):
    r = a + b
    return 0.0 if r != 0 and abs(r) < abs(a) * 2.0**-48 else r  # LibreOffice snaps 0.3-0.1-0.2 to 0


def _div(a, b):
    if b == 0:
        raise err("#DIV/0!", "division by zero")
    return a / b


def _pow(a, b):
    if a == 0 and b < 0:  # LibreOffice: #NUM!
        raise err("#NUM!", "zero to a negative power")
    if a < 0 and b != int(b):
        inv = 1 / b
        if not (math.isfinite(inv) and abs(inv - round(inv)) < 1e-9 and round(inv) % 2 == 1):
            raise err("#NUM!", "a negative number to a fractional power")
        r = -((-a) ** b)
    else:
        try:
            r = float(a) ** b
        except OverflowError:
            raise err("#NUM!", "the result is too large") from None
    if abs(r) < _MIN_NORMAL and a != 0:  # LibreOffice: an underflowing power is #NUM!, not 0
        raise err("#NUM!", "the result is too small (below 2.2E-308)")
    return r


_ARITH = {"+": _add, "-": lambda a, b: _add(a, -b), "*": lambda a, b: a * b, "/": _div, "^": _pow}
_CMPS = {"=": lambda c: c == 0, "<>": lambda c: c != 0, "<": lambda c: c < 0, ">": lambda c: c > 0,
         "<=": lambda c: c <= 0, ">=": lambda c: c >= 0}


def too_long() -> XlError:
    return err("#VALUE!", f"text longer than {MAX_STRING} characters (the cell limit)", deliberate=True)


def round_decimal(x: float, digits: float, mode: str) -> float:
    d = int(digits)
    if d > 15 or x == 0:
        return x
    q = Decimal(1).scaleb(-d)
    rounding = {"half": ROUND_HALF_UP, "up": ROUND_UP, "down": ROUND_DOWN}[mode]
    try:
        return float(Decimal(f"{x:.15g}").quantize(q, rounding=rounding))
    except InvalidOperation:
        return x
