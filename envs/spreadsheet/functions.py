"""Formula semantics: value coercion, operators, criteria, the function table, and the AST -> closure compiler.

Semantics follow LibreOffice Calc reading .xlsx (our ground truth, checked by tests/test_spreadsheet_libreoffice.py),
which differs from Excel in a few corners: TRUE concatenates as "1", SUM("3") is #VALUE!, a VLOOKUP column or
INDEX position past the table is #VALUE!, numbers compare equal within 2^-48 relative.
Where a function is not here, the formula shows ``#NAME?`` with the list of supported functions.
"""

from __future__ import annotations

import datetime as _dt
import math
import re
from collections.abc import Callable
from decimal import ROUND_DOWN, ROUND_HALF_UP, ROUND_UP, Decimal, InvalidOperation

from envs.spreadsheet.formulas import MAX_STRING, FormulaSyntaxError, RefBox, XlError

_EPOCH = _dt.date(1899, 12, 30)
_NUM_RE = re.compile(r"[+-]?(?:[0-9]{1,3}(?:,[0-9]{3})+|[0-9]*)(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?")
_ISO_RE = re.compile(r"([0-9]{4})-([0-9]{1,2})-([0-9]{1,2})")
_US_RE = re.compile(r"([0-9]{1,2})/([0-9]{1,2})/([0-9]{4})")


def err(code: str, detail: str = "") -> XlError:
    return XlError(code, detail)


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
            raise err("#N/A", "a lookup range must be one row or one column")
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


def num(v) -> float:
    v = single(v)
    t = type(v)
    if t is float or t is int:
        return v
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
    if x == int(x) and abs(x) < 1e15:
        return str(int(x))
    s = f"{x:.15g}"
    if "e" in s:
        mant, exp = s.split("e")
        e = int(exp)
        if -10 < e < 15:
            return format(Decimal(s), "f")
        return f"{mant.upper()}E{'+' if e >= 0 else '-'}{abs(e):03d}"
    return s


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
    v = single(v)
    t = type(v)
    if t is bool:
        return v
    if t is float or t is int:
        return v != 0
    if v is None:
        return False
    if t is str:
        if v.upper() in ("TRUE", "FALSE"):
            return v.upper() == "TRUE"
        raise err("#VALUE!", f"text {v[:30]!r} is not TRUE or FALSE")
    raise v


def check_num(x: float) -> float:
    if math.isinf(x) or math.isnan(x):
        raise err("#NUM!", "the result is too large")
    return x


def approx_eq(a: float, b: float) -> bool:
    return a == b or abs(a - b) <= max(abs(a), abs(b)) * 2.0**-48


def _rank(v) -> int:
    t = type(v)
    return 0 if t is float or t is int else 1 if t is str else 2


def compare(a, b) -> int:
    """-1, 0 or 1; numbers < text < booleans; text case-insensitive; blank is 0, "" or FALSE as the other side."""
    if a is None:
        a = "" if type(b) is str else False if type(b) is bool else 0.0
    if b is None:
        b = "" if type(a) is str else False if type(a) is bool else 0.0
    ra, rb = _rank(a), _rank(b)
    if ra != rb:
        return -1 if ra < rb else 1
    if ra == 1:
        a, b = a.lower(), b.lower()
    elif ra == 0 and approx_eq(a, b):
        return 0
    return 0 if a == b else -1 if a < b else 1


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
    if a == 0 and b < 0:
        raise err("#DIV/0!", "zero to a negative power")
    if a < 0 and b != int(b):
        inv = 1 / b
        if abs(inv - round(inv)) < 1e-9 and round(inv) % 2 == 1:
            return -((-a) ** b)
        raise err("#NUM!", "a negative number to a fractional power")
    try:
        return float(a) ** b
    except OverflowError:
        raise err("#NUM!", "the result is too large") from None


_ARITH = {"+": _add, "-": lambda a, b: _add(a, -b), "*": lambda a, b: a * b, "/": _div, "^": _pow}
_CMPS = {"=": lambda c: c == 0, "<>": lambda c: c != 0, "<": lambda c: c < 0, ">": lambda c: c > 0,
         "<=": lambda c: c <= 0, ">=": lambda c: c >= 0}


def _binary(op: str, fa, fb):
    if op in _ARITH:
        f = _ARITH[op]

        def arith(ctx):
            try:
                return check_num(f(num(fa(ctx)), num(fb(ctx))))
            except XlError as e:
                return e
        return arith
    if op == "&":
        def concat(ctx):
            try:
                s = text(fa(ctx)) + text(fb(ctx))
            except XlError as e:
                return e
            return s if len(s) <= MAX_STRING else err("#VALUE!", f"text longer than {MAX_STRING} characters")
        return concat
    test = _CMPS[op]

    def cmp(ctx):
        a, b = single(fa(ctx)), single(fb(ctx))
        if isinstance(a, XlError):
            return a
        if isinstance(b, XlError):
            return b
        return test(compare(a, b))
    return cmp


# ----------------------------------------------------------------------------------------------------------------
# The compiler: AST -> closure(ctx) -> value. Function arguments that are references stay lazy Rng objects.


def compile_ast(node, refs: list[RefBox], as_arg: bool = False) -> Callable:
    kind = node[0]
    if kind in ("num", "str", "bool"):
        value = node[1]
        return lambda ctx: value
    if kind == "blank":
        return lambda ctx: None
    if kind == "err":
        e = err(node[1], "an error written into the formula")
        return lambda ctx: e
    if kind == "name":
        e = err("#NAME?", f"unknown name {node[1]!r}; text needs double quotes, like \"{node[1]}\"")
        return lambda ctx: e
    if kind == "ref":
        box: RefBox = node[1]
        refs.append(box)
        sheet, r1, c1, r2, c2 = box.sheet, box.r1, box.c1, box.r2, box.c2
        if box.is_cell and not as_arg:
            return lambda ctx: ctx.book.cell_value(sheet or ctx.sheet, r1, c1)
        return lambda ctx: Rng(ctx.book, sheet or ctx.sheet, r1, c1, r2, c2)
    if kind == "neg":
        f = compile_ast(node[1], refs)

        def neg(ctx):
            try:
                return -num(f(ctx))
            except XlError as e:
                return e
        return neg
    if kind == "pct":
        f = compile_ast(node[1], refs)

        def pct(ctx):
            try:
                return num(f(ctx)) / 100
            except XlError as e:
                return e
        return pct
    if kind == "bin":
        return _binary(node[1], compile_ast(node[2], refs), compile_ast(node[3], refs))
    if kind == "call":
        return _compile_call(node[1], node[2], refs)
    raise AssertionError(f"unknown AST node {kind}")


def _compile_call(name: str, args: list, refs: list[RefBox]) -> Callable:
    from envs.spreadsheet.library import (
        FUNCTIONS,
        LAZY,
        MEMO,
        SCALAR_ARGS,
        suggest_function,
    )

    scalar = SCALAR_ARGS.get(name, lambda i: False)
    thunks = [compile_ast(a, refs, as_arg=not scalar(i)) for i, a in enumerate(args)]
    if name not in FUNCTIONS:
        e = err("#NAME?", f"unknown function {name}{suggest_function(name)}")
        return lambda ctx: e
    fn, lo, hi = FUNCTIONS[name]
    if not lo <= len(args) <= hi:
        want = f"{lo}" if lo == hi else f"{lo} to {hi}" if hi < 255 else f"at least {lo}"
        raise FormulaSyntaxError(f"{name} takes {want} argument{'s' if hi != 1 else ''}, got {len(args)}")
    if name in LAZY:
        def lazy(ctx):
            try:
                return fn(ctx, *thunks)
            except XlError as e:
                return e
        return lazy

    def call(ctx):
        try:
            values = [t(ctx) for t in thunks]
            for v in values:
                if type(v) is XlError:
                    raise v
            return fn(*values)
        except XlError as e:
            return e

    if name not in MEMO:
        return call

    def memo_call(ctx):  # aggregates over ranges: one computation per distinct arguments until the next change
        try:
            values = [t(ctx) for t in thunks]
        except XlError as e:
            return e
        key = (name, *[(v.sheet, v.r1, v.c1, v.r2, v.c2) if type(v) is Rng else (type(v), v) for v in values])
        memo = ctx.book._memo
        out = memo.get(key, memo)
        if out is memo:
            try:
                for v in values:
                    if type(v) is XlError:
                        raise v
                out = fn(*values)
            except XlError as e:
                out = e
            memo[key] = out
        return out
    return memo_call


# ----------------------------------------------------------------------------------------------------------------
# Criteria for SUMIF/COUNTIF/...: ">=5", "East", "e*", "<>", "" and so on.


def _wildcard(pattern: str) -> re.Pattern:
    out, i = [], 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "~" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 1
        elif ch == "*":
            out.append(".*")
        elif ch == "?":
            out.append(".")
        else:
            out.append(re.escape(ch))
        i += 1
    return re.compile("".join(out), re.IGNORECASE | re.DOTALL)


def criterion(c) -> tuple[Callable[[object], bool], bool]:
    """A predicate for a criterion value, and whether it matches blank cells."""
    c = single(c)
    if isinstance(c, XlError):
        raise c
    if c is None:
        c = 0.0
    if type(c) is not str:
        want = num(c) if type(c) is not bool else c
        if type(want) is bool:
            return (lambda v: type(v) is bool and v == want), False
        return (lambda v: (type(v) is float or type(v) is int) and approx_eq(v, want)), False
    op = next((o for o in ("<=", ">=", "<>", "<", ">", "=") if c.startswith(o)), "")
    operand = c[len(op):]
    x = text_to_number(operand) if operand.strip() else None
    if x is not None and operand.strip().upper() not in ("TRUE", "FALSE"):
        test = _CMPS[op or "="]

        def numeric(v):
            return (type(v) is float or type(v) is int) and test(compare(v, x))

        low = operand.strip().lower()
        if op == "<>":
            return (lambda v: not ((type(v) is float or type(v) is int) and approx_eq(v, x)
                                   or type(v) is str and v.strip().lower() == low)), True
        if op in ("", "="):  # LibreOffice: "12" matches the number 12 and the text "12"
            return (lambda v: numeric(v) or type(v) is str and v.strip().lower() == low), False
        return numeric, False
    if operand == "":
        if op in ("", "="):
            return (lambda v: v is None or v == ""), True
        if op == "<>":
            return (lambda v: v is not None and v != ""), False
    if op in ("", "=", "<>"):
        if any(ch in operand for ch in "*?~"):
            rx = _wildcard(operand)

            def hit(v):
                return type(v) is str and rx.fullmatch(v) is not None
        else:
            low = operand.lower()

            def hit(v):
                return type(v) is str and v.lower() == low
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


def serial_to_date(x: float) -> _dt.date:
    if not 0 <= x < 2_958_466:
        raise err("#NUM!", "not a date serial number")
    return _EPOCH + _dt.timedelta(days=int(x))


def round_decimal(x: float, digits: float, mode: str) -> float:
    d = int(digits)
    if d > 15:
        return x
    q = Decimal(1).scaleb(-d)
    rounding = {"half": ROUND_HALF_UP, "up": ROUND_UP, "down": ROUND_DOWN}[mode]
    try:
        return float(Decimal(f"{x:.15g}").quantize(q, rounding=rounding))
    except InvalidOperation:
        return x
