"""The spreadsheet functions: each a plain Python function over values (``Rng`` for references).

``FUNCTIONS[name] = (function, min_args, max_args)``. Functions in ``LAZY`` get ``(ctx, *thunks)`` and decide
what to evaluate (IF, IFERROR, ISERROR...); the others get evaluated arguments, and an error argument has already
been propagated. To add a function: write it here, add it to the table, and add a case to
scripts/bench_formula_engines.py so LibreOffice checks it.
"""

from __future__ import annotations

import difflib
import math

from envs.spreadsheet.formulas import XlError
from envs.spreadsheet.functions import (
    INT16,
    Rng,
    _pow,
    approx_floor,
    approx_sub,
    check_num,
    compare,
    err,
    finite,
    fsum,
    integer,
    is_number,
    num,
    number_text,
    round_decimal,
    single,
    text,
    text_to_number,
    truth,
)
from envs.spreadsheet.library_text import (
    CHAR,
    CONCAT,
    CONCATENATE,
    DATE,
    DATEVALUE,
    DAY,
    EXACT,
    FIND,
    LEFT,
    LEN,
    LOWER,
    MID,
    MONTH,
    PROPER,
    REPT,
    RIGHT,
    SEARCH,
    SUBSTITUTE,
    TRIM,
    UPPER,
    VALUE,
    YEAR,
    criterion,
    has_wildcards,
    matches,
    shown_text,
    wildcard,
)


def _numbers(args, direct_text: bool = False):
    """Numbers among the arguments: in references only numbers count (booleans too: LibreOffice stores TRUE as 1);
    direct booleans and texts convert. Arguments are met last first, as LibreOffice meets them, so of a text
    argument and an error cell the one LibreOffice shows is shown."""
    for a in reversed(args):
        if type(a) is Rng:
            for _, _, v in a.filled():
                t = type(v)
                if t is float:
                    yield v
                elif t is int or t is bool:
                    yield finite(v)
                elif t is XlError:
                    raise v
        elif a is None:
            yield 0.0
        elif type(a) is str and not direct_text:
            raise err("#VALUE!", f"text {a[:30]!r} given directly to a numeric function")
        else:
            yield num(a)


def SUM(*args):
    return fsum(_numbers(args))


def PRODUCT(*args):
    values = list(_numbers(args))
    return math.prod(values) if values else 0.0  # LibreOffice: the product of no numbers is 0


def COUNT(*args):  # error arguments are not numbers: not counted, not propagated
    n = 0
    for a in args:
        if type(a) is Rng:
            n += sum(1 for _, _, v in a.filled() if is_number(v))
        elif type(a) in (float, int, bool) or (type(a) is str and text_to_number(a) is not None):
            n += 1
    return float(n)


def COUNTA(*args):  # an error argument is a value: counted
    return float(sum(sum(1 for _ in a.filled()) if type(a) is Rng else 1 for a in args))


def COUNTBLANK(rng):
    if type(rng) is not Rng:
        raise err("#VALUE!", "COUNTBLANK needs a range")
    filled = sum(1 for _, _, v in rng.filled() if v != "")
    return float(rng.rows * rng.cols - filled)


def AVERAGE(*args):
    values = list(_numbers(args))
    if not values:
        raise err("#DIV/0!", "AVERAGE of no numbers")
    return fsum(values) / len(values)


def MIN(*args):
    values = list(_numbers(args))
    return min(values) if values else 0.0


def MAX(*args):
    values = list(_numbers(args))
    return max(values) if values else 0.0


def MEDIAN(*args):
    values = sorted(_numbers(args))
    if not values:
        raise err("#VALUE!", "MEDIAN of no numbers")
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def _need_range(a, fname):
    if type(a) is not Rng:
        raise err("#VALUE!", f"{fname} needs a cell range here, like B2:B20")
    return a


class _One:
    """A single value where the *IFS functions take the range to sum: LibreOffice reads it as a 1 x 1 range."""

    rows = cols = 1

    def __init__(self, value):
        self.value = value

    def get(self, i: int, j: int):
        return self.value


def _values_range(a):
    return a if type(a) is Rng else _One(a)


def _if_cells(fname, sum_rng, pairs, same_shape: bool = True):
    """Cells of ``sum_rng`` (aligned with the first criteria range) where every (range, criterion) pair matches.
    The *IFS functions need every range of one shape (#VALUE! otherwise); SUMIF and AVERAGEIF take the shape of
    the criteria range from the top-left cell of their sum range (``same_shape=False``)."""
    first = _need_range(pairs[0][0], fname)
    for rng in [_need_range(rng, fname) for rng, _ in pairs[1:]] + ([sum_rng] if same_shape else []):
        if rng.rows != first.rows or rng.cols != first.cols:
            raise err("#VALUE!", f"{fname}: all ranges must have the same shape ({first.rows} x {first.cols} here)")
    hits = matches(first, pairs[0][1])
    for rng, crit in pairs[1:]:
        pred, _ = criterion(crit)
        hits = [(i, j) for i, j in hits if pred(rng.get(i, j))]
    for i, j in hits:
        yield sum_rng.get(i, j)


def _sum_values(values):
    out = []
    for v in values:
        if is_number(v):
            out.append(finite(v))
        elif type(v) is XlError:
            raise v
    return out


def SUMIF(rng, crit, sum_rng=None):
    target = _need_range(sum_rng if sum_rng is not None else rng, "SUMIF")
    return fsum(_sum_values(_if_cells("SUMIF", target, [(rng, crit)], same_shape=False)))


def SUMIFS(sum_rng, *pairs):
    return fsum(_sum_values(_if_cells("SUMIFS", _values_range(sum_rng), _pairs(pairs, "SUMIFS"))))


def _pairs(flat, fname):
    if len(flat) % 2:
        raise err("#VALUE!", f"{fname} needs criteria in pairs: range, criterion")
    return list(zip(flat[::2], flat[1::2], strict=True))


def COUNTIF(rng, crit):
    rng = _need_range(rng, "COUNTIF")
    _, blank_ok = criterion(crit)
    n = len(matches(rng, crit))
    if blank_ok:  # blank cells past the used extent also match
        n += rng.rows * rng.cols - rng.dense_area()
    return float(n)


def COUNTIFS(*pairs):
    pairs = _pairs(pairs, "COUNTIFS")
    return float(sum(1 for _ in _if_cells("COUNTIFS", pairs[0][0], pairs)))


def AVERAGEIF(rng, crit, avg_rng=None):
    target = _need_range(avg_rng if avg_rng is not None else rng, "AVERAGEIF")
    values = _sum_values(_if_cells("AVERAGEIF", target, [(rng, crit)], same_shape=False))
    if not values:
        raise err("#DIV/0!", "no cells meet the criterion")
    return fsum(values) / len(values)


def AVERAGEIFS(avg_rng, *pairs):
    values = _sum_values(_if_cells("AVERAGEIFS", _values_range(avg_rng), _pairs(pairs, "AVERAGEIFS")))
    if not values:
        raise err("#DIV/0!", "no cells meet the criteria")
    return fsum(values) / len(values)


def MAXIFS(rng, *pairs):
    values = _sum_values(_if_cells("MAXIFS", _values_range(rng), _pairs(pairs, "MAXIFS")))
    return max(values) if values else 0.0


def MINIFS(rng, *pairs):
    values = _sum_values(_if_cells("MINIFS", _values_range(rng), _pairs(pairs, "MINIFS")))
    return min(values) if values else 0.0


_NOT_A_NUMBER = object()  # a text element of SUMPRODUCT: LibreOffice's "element NaN", skipped by the sum


def _sumproduct_element(v):
    if is_number(v):
        return finite(v)
    if v is None:
        return 0.0
    if type(v) is str:
        return _NOT_A_NUMBER
    return v  # an XlError


def SUMPRODUCT(*arrays):
    """LibreOffice's SUMPRODUCT: arguments are matrices (a single value is 1 x 1) of one shape, multiplied element
    by element starting from the last; text is "not a number" (its products are skipped), a blank is 0, and the
    first error left in the products (column by column) is the result."""
    shapes = {(a.rows, a.cols) if type(a) is Rng else (1, 1) for a in arrays}
    if len(shapes) > 1:
        raise err("#VALUE!", "SUMPRODUCT's arguments must all have the same shape")
    rngs = [a for a in arrays if type(a) is Rng]
    rows, cols = shapes.pop()
    if rngs:  # cells past every sheet's used extent are blank: their products are 0
        rows = min(rows, 1 + max(r.book.extent(r.sheet)[0] - r.r1 for r in rngs))
        cols = min(cols, 1 + max(r.book.extent(r.sheet)[1] - r.c1 for r in rngs))
    cells = [(i, j) for j in range(max(0, cols)) for i in range(max(0, rows))]  # column-major, as LibreOffice

    def elements(a):
        return [_sumproduct_element(a.get(i, j) if type(a) is Rng else a) for i, j in cells]

    acc = elements(arrays[-1])
    for a in reversed(arrays[:-1]):
        for k, x in enumerate(elements(a)):
            y = acc[k]
            if x is _NOT_A_NUMBER:
                acc[k] = _NOT_A_NUMBER
            elif type(y) is float:
                acc[k] = y * x if type(x) is float else x
    for y in acc:
        if type(y) is XlError:
            raise y
    return fsum(y for y in acc if type(y) is float)


def ROUND(x, digits=0.0):
    return round_decimal(num(x), integer(digits, INT16, "ROUND's digits"), "half")


def ROUNDUP(x, digits=0.0):
    return round_decimal(num(x), integer(digits, INT16, "ROUNDUP's digits"), "up")


def ROUNDDOWN(x, digits=0.0):
    return round_decimal(num(x), integer(digits, INT16, "ROUNDDOWN's digits"), "down")


def INT(x):
    return approx_floor(num(x))


def ABS(x):
    return abs(num(x))


def SQRT(x):
    x = num(x)
    if x < 0:
        raise err("#VALUE!", "square root of a negative number")
    return math.sqrt(x)


def MOD(a, b):
    """LibreOffice's MOD: a - floor(a/b)*b with its float-noise rounding, and #VALUE! when that is not a remainder
    (the quotient is too large to have one, as in MOD(1e308,1e-308))."""
    b = num(b)  # LibreOffice checks the divisor first
    if b == 0:
        raise err("#DIV/0!", "MOD by zero")
    a = num(a)
    r = approx_sub(a, approx_floor(a / b) * b)
    if (b > 0 and 0 <= r < b) or (b < 0 and b < r <= 0):
        return r
    raise err("#VALUE!", "MOD: the quotient is too large for a remainder")


def POWER(a, b):
    return check_num(_pow(num(a), num(b)))


# --- logic (IF, IFERROR, ISERROR... are lazy: they get ctx and thunks)


def IF(ctx, cond, then=None, other=None):
    c = cond(ctx)
    if type(c) is XlError:
        return c
    if truth(c):
        return single(then(ctx)) if then is not None else True
    return single(other(ctx)) if other is not None else False


def IFERROR(ctx, value, fallback):
    v = _one(value(ctx))
    return single(fallback(ctx)) if type(v) is XlError else v


def IFNA(ctx, value, fallback):
    v = _one(value(ctx))
    return single(fallback(ctx)) if type(v) is XlError and v.code == "#N/A" else v


def _is(ctx, thunk, test):
    try:
        v = single(thunk(ctx))
    except XlError as e:
        v = e
    return test(v)


def ISERROR(ctx, x):
    return _is(ctx, x, lambda v: type(v) is XlError)


def ISNA(ctx, x):
    return _is(ctx, x, lambda v: type(v) is XlError and v.code == "#N/A")


def ISERR(ctx, x):
    return _is(ctx, x, lambda v: type(v) is XlError and v.code != "#N/A")


def CHOOSE(ctx, index, *options):
    i = integer(index(ctx), INT16, "CHOOSE's index")
    if not 1 <= i <= len(options):
        raise err("#VALUE!", f"CHOOSE index {i} is outside 1..{len(options)}")
    return single(options[i - 1](ctx))


def _logic(args, fname):
    seen = []
    for a in args:
        if type(a) is Rng:
            for _, _, v in a.filled():
                if type(v) is XlError:
                    raise v
                if type(v) in (bool, float, int):
                    seen.append(bool(v))
        elif type(a) is str:  # LibreOffice: text given directly to AND/OR is #VALUE!, even "TRUE"
            raise err("#VALUE!", f"{fname} got the text {a[:30]!r}; give it conditions or TRUE/FALSE")
        elif a is not None:
            seen.append(truth(a))
    if not seen:
        raise err("#VALUE!", f"{fname} found no logical values")
    return seen


def AND(*args):
    return all(_logic(args, "AND"))


def OR(*args):
    return any(_logic(args, "OR"))


def NOT(x):
    return not truth(x)


def _one(x):
    """The value an IS function tests; a multi-cell range is an error value (so the answer is FALSE)."""
    try:
        return single(x)
    except XlError as e:
        return e


def ISBLANK(x):
    return _one(x) is None


def ISNUMBER(x):
    return is_number(_one(x))  # LibreOffice: TRUE is a number


def ISTEXT(x):
    return type(_one(x)) is str


def NA():
    raise err("#N/A", "NA()")


# --- lookup


def _lookup_eq(want):
    """Exact match (MATCH 0, VLOOKUP FALSE): a wildcard text matches any cell by its shown text, as in criteria;
    a text matches texts and the error cells it names ("#N/A")."""
    if type(want) is str and has_wildcards(want):
        pattern = wildcard(want)
        return lambda v: v is not None and pattern.fullmatch(shown_text(v))
    if type(want) is str:
        low = want.lower()
        return lambda v: (type(v) is str and compare(v, want) == 0) or (type(v) is XlError and v.code.lower() == low)
    return lambda v: v is not None and _rank_same(v, want) and compare(v, want) == 0


def _rank_same(a, b):
    return (type(a) is str) == (type(b) is str)  # numbers and booleans are one kind


def _approx_pos(values, want, descending=False):
    """The last position whose value is <= want (>= want when descending), over data sorted that way. LibreOffice
    answers unsorted or mixed data with a binary search whose result depends on its implementation: such data is
    rejected on purpose (#N/A, deliberate) with what to do instead."""
    kind = type(want) is str
    if kind and has_wildcards(want):
        raise err("#N/A", "wildcards (* ? ~) work in exact lookups only: give match type 0 or FALSE",
                  deliberate=True)
    present = [v for v in values if v is not None]
    order = "descending" if descending else "ascending"
    if any(type(v) is XlError or (type(v) is str) != kind for v in present):
        raise err("#N/A", f"an approximate lookup needs a range of only {'texts' if kind else 'numbers'}, sorted "
                  f"{order}; use exact match (0 or FALSE) for other data", deliberate=True)
    if any(compare(a, b) == (1 if descending else -1) for a, b in zip(present[1:], present[:-1], strict=True)):
        raise err("#N/A", f"an approximate lookup needs the range sorted {order}; sort it, or use exact match "
                  f"(0 or FALSE)", deliberate=True)
    best = None
    for k, v in enumerate(values):
        if v is None or not _rank_same(v, want):
            continue
        c = compare(v, want)
        if c == 0 or (c < 0) != descending:
            best = k
            if c == 0 and not descending:
                continue
        else:
            break
    return best


def MATCH(want, rng, mode=1.0):
    want, mode = single(want), num(mode)
    values = _need_range(rng, "MATCH").vector()
    if mode == 0:
        eq = _lookup_eq(want)
        pos = next((k for k, v in enumerate(values) if eq(v)), None)
    else:
        pos = _approx_pos(values, want, descending=mode < 0)
    if pos is None:
        raise err("#N/A", f"{text(want)[:30]!r} was not found")
    return float(pos + 1)


def VLOOKUP(want, table, col, approximate=True):
    want, col = single(want), integer(col, what="VLOOKUP's column")
    table = _need_range(table, "VLOOKUP")
    if not 1 <= col <= table.cols:
        raise err("#VALUE!", f"column {col} is outside the table's 1..{table.cols}")
    first = Rng(table.book, table.sheet, table.r1, table.c1, table.r2, table.c1).vector()
    if truth(approximate):
        pos = _approx_pos(first, want)
    else:
        eq = _lookup_eq(want)
        pos = next((k for k, v in enumerate(first) if eq(v)), None)
    if pos is None:
        raise err("#N/A", f"{text(want)[:30]!r} was not found in the first column")
    return table.get(pos, col - 1)


def INDEX(rng, row, col=None):
    rng = _need_range(rng, "INDEX")
    r, c = integer(row, what="INDEX's row"), integer(col, what="INDEX's column") if col is not None else 0
    if col is None and rng.rows == 1:
        r, c = 1, r
    c = c or (1 if rng.cols == 1 else 0)
    if not (1 <= r <= rng.rows and 1 <= c <= rng.cols):
        raise err("#VALUE!", f"position ({r}, {c}) is outside the range's {rng.rows} x {rng.cols}")
    return rng.get(r - 1, c - 1)


def ROW(ctx, ref=None):
    return float(ctx.row if ref is None else _need_range(ref(ctx), "ROW").r1)


def COLUMN(ctx, ref=None):
    return float(ctx.col if ref is None else _need_range(ref(ctx), "COLUMN").c1)

_ANY = 255
FUNCTIONS = {
    "SUM": (SUM, 1, _ANY), "PRODUCT": (PRODUCT, 1, _ANY), "COUNT": (COUNT, 1, _ANY), "COUNTA": (COUNTA, 1, _ANY),
    "COUNTBLANK": (COUNTBLANK, 1, 1), "AVERAGE": (AVERAGE, 1, _ANY), "MIN": (MIN, 1, _ANY), "MAX": (MAX, 1, _ANY),
    "MEDIAN": (MEDIAN, 1, _ANY), "SUMIF": (SUMIF, 2, 3), "SUMIFS": (SUMIFS, 3, _ANY), "COUNTIF": (COUNTIF, 2, 2),
    "COUNTIFS": (COUNTIFS, 2, _ANY), "AVERAGEIF": (AVERAGEIF, 2, 3), "AVERAGEIFS": (AVERAGEIFS, 3, _ANY),
    "MAXIFS": (MAXIFS, 3, _ANY), "MINIFS": (MINIFS, 3, _ANY), "SUMPRODUCT": (SUMPRODUCT, 1, _ANY),
    "ROUND": (ROUND, 1, 2), "ROUNDUP": (ROUNDUP, 1, 2), "ROUNDDOWN": (ROUNDDOWN, 1, 2), "INT": (INT, 1, 1),
    "ABS": (ABS, 1, 1), "SQRT": (SQRT, 1, 1), "MOD": (MOD, 2, 2), "POWER": (POWER, 2, 2),
    "IF": (IF, 1, 3), "IFERROR": (IFERROR, 2, 2), "IFNA": (IFNA, 2, 2), "ISERROR": (ISERROR, 1, 1),
    "ISNA": (ISNA, 1, 1), "ISERR": (ISERR, 1, 1), "CHOOSE": (CHOOSE, 2, _ANY), "AND": (AND, 1, _ANY),
    "OR": (OR, 1, _ANY), "NOT": (NOT, 1, 1), "ISBLANK": (ISBLANK, 1, 1), "ISNUMBER": (ISNUMBER, 1, 1),
    "ISTEXT": (ISTEXT, 1, 1), "NA": (NA, 0, 0), "TRUE": (lambda: True, 0, 0), "FALSE": (lambda: False, 0, 0),
    "MATCH": (MATCH, 2, 3), "VLOOKUP": (VLOOKUP, 3, 4), "INDEX": (INDEX, 2, 3), "ROW": (ROW, 0, 1),
    "COLUMN": (COLUMN, 0, 1), "TRIM": (TRIM, 1, 1), "UPPER": (UPPER, 1, 1), "LOWER": (LOWER, 1, 1),
    "PROPER": (PROPER, 1, 1), "LEN": (LEN, 1, 1), "LEFT": (LEFT, 1, 2), "RIGHT": (RIGHT, 1, 2), "MID": (MID, 3, 3),
    "VALUE": (VALUE, 1, 1), "CONCATENATE": (CONCATENATE, 1, _ANY), "CONCAT": (CONCAT, 1, _ANY),
    "SUBSTITUTE": (SUBSTITUTE, 3, 4), "EXACT": (EXACT, 2, 2), "REPT": (REPT, 2, 2), "FIND": (FIND, 2, 3),
    "SEARCH": (SEARCH, 2, 3), "DATE": (DATE, 3, 3), "DATEVALUE": (DATEVALUE, 1, 1), "YEAR": (YEAR, 1, 1),
    "MONTH": (MONTH, 1, 1), "DAY": (DAY, 1, 1), "CHAR": (CHAR, 1, 1),
}
MEMO = frozenset({"SUM", "COUNT", "COUNTA", "AVERAGE", "MIN", "MAX", "SUMIF", "SUMIFS", "COUNTIF", "COUNTIFS",
                  "AVERAGEIF", "AVERAGEIFS", "MAXIFS", "MINIFS", "SUMPRODUCT", "VLOOKUP", "MATCH", "INDEX"})
# Arguments that are single values even when written as a cell reference: compiled to the cell's value, so the
# memo key of SUMIF($B$2:$B$51,B7,...) is the value of B7, not its position.
SCALAR_ARGS = {
    "SUMIF": lambda i: i == 1, "COUNTIF": lambda i: i == 1, "AVERAGEIF": lambda i: i == 1,
    "SUMIFS": lambda i: i >= 2 and i % 2 == 0, "AVERAGEIFS": lambda i: i >= 2 and i % 2 == 0,
    "MAXIFS": lambda i: i >= 2 and i % 2 == 0, "MINIFS": lambda i: i >= 2 and i % 2 == 0,
    "COUNTIFS": lambda i: i % 2 == 1, "VLOOKUP": lambda i: i != 1, "MATCH": lambda i: i != 1,
    "INDEX": lambda i: i != 0,
}
LAZY = frozenset({"IF", "IFERROR", "IFNA", "ISERROR", "ISNA", "ISERR", "CHOOSE", "ROW", "COLUMN"})
# Functions that look at error arguments (the others show their first error argument, as LibreOffice does).
PASS_ERRORS = frozenset({"COUNT", "COUNTA", "ISNUMBER", "ISTEXT", "ISBLANK"})


def suggest_function(name: str) -> str:
    close = difflib.get_close_matches(name, list(FUNCTIONS), n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return f"{hint}; supported functions: {', '.join(sorted(FUNCTIONS))}"


__all__ = ["FUNCTIONS", "LAZY", "number_text", "suggest_function"]
