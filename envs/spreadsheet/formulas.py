"""Excel formulas as data: values and errors, references, a tokenizer and a recursive-descent parser to a tuple AST
(``parse``); ``envs.spreadsheet.compiler`` compiles the AST to closures.

Why our own engine (the figures are in docs/spreadsheet-formulas.md): pycel turns a formula into Python source
and ``exec``s it, takes ~2 ms to recompute a 50x8 sheet after one edit and hangs on a 10k-long dependency
chain; ``formulas`` takes ~70 ms per edit; both disagree with LibreOffice on cases our tasks use (text numbers
in SUM, TRIM, wildcards in criteria). This engine never evaluates text as code: a formula is tokenized with one
regular expression, parsed into a small tuple AST, and compiled (``envs.spreadsheet.compiler``) into nested Python
closures over the function table in ``envs.spreadsheet.library``.

Hostile input is bounded by the same limits Excel has: formulas of at most 8,192 characters, nesting of at most
64 levels, strings of at most 32,767 characters. A run of one operator (``1+1+...+1``, ``1%%%``) is one flat node,
not a deep tree, and the tree is at most ``MAX_DEPTH`` levels deep, so neither compiling nor evaluating recurses
deeply. A formula that breaks a limit or does not parse raises ``FormulaSyntaxError`` with the position and a hint;
evaluation problems are error *values* (``XlError``).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "ERROR_CODES",
    "MAX_COL",
    "MAX_ROW",
    "FormulaSyntaxError",
    "RefBox",
    "XlError",
    "col_letter",
    "col_number",
    "format_ref",
    "parse",
    "parse_ref",
    "rewrite_refs",
    "with_xlfn_prefixes",
    "without_xlfn_prefixes",
]

MAX_ROW, MAX_COL = 1_048_576, 16_384
MAX_FORMULA_CHARS, MAX_NESTING, MAX_STRING = 8_192, 64, 32_767
MAX_DEPTH = 160  # levels of the parsed tree (operators, functions, parentheses): bounds compile/evaluate recursion
ERROR_CODES = ("#NULL!", "#DIV/0!", "#VALUE!", "#REF!", "#NAME?", "#NUM!", "#N/A")


class XlError(Exception):
    """A spreadsheet error value such as ``#DIV/0!``; ``detail`` says why (shown to the agent, not compared).

    It is an exception so functions can raise it to short-circuit, and a value stored in cells: two errors are
    equal when their codes are. ``deliberate`` marks a case where the engine rejects on purpose what LibreOffice
    computes (a limit such as the 32,767-character text cap, or an answer that depends on LibreOffice's
    implementation, such as an approximate MATCH over unsorted data); docs/spreadsheet-formulas.md lists them.
    """

    def __init__(self, code: str, detail: str = "", deliberate: bool = False):
        super().__init__(code)
        self.code, self.detail, self.deliberate = code, detail, deliberate

    def __eq__(self, other: object) -> bool:
        return isinstance(other, XlError) and other.code == self.code

    def __hash__(self) -> int:
        return hash(self.code)

    def __repr__(self) -> str:
        return f"XlError({self.code!r})"

    def __str__(self) -> str:
        return self.code

    def __reduce__(self):
        return (XlError, (self.code, self.detail, self.deliberate))


class FormulaSyntaxError(ValueError):
    """A formula that cannot be parsed or breaks a limit; the message says where and what is valid."""


# ----------------------------------------------------------------------------------------------------------------
# Cell addresses.


def col_number(letters: str) -> int:
    n = 0
    for ch in letters.upper():
        n = n * 26 + ord(ch) - 64
    return n


def col_letter(n: int) -> str:
    out = ""
    while n:
        n, rem = divmod(n - 1, 26)
        out = chr(65 + rem) + out
    return out


def quote_sheet(sheet: str) -> str:
    return sheet if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", sheet) and not _CELL_RE.fullmatch(sheet) else (
        "'" + sheet.replace("'", "''") + "'")


_SHEET = r"(?:'(?:[^']|'')+'|[A-Za-z_][A-Za-z0-9_.]*)"
_CELL = r"\$?[A-Za-z]{1,3}\$?[0-9]{1,7}"
_CELL_RE = re.compile(r"(\$?)([A-Za-z]{1,3})(\$?)([0-9]{1,7})")
_AREA = rf"{_CELL}(?::{_CELL})?|\$?[A-Za-z]{{1,3}}:\$?[A-Za-z]{{1,3}}|\$?[0-9]{{1,7}}:\$?[0-9]{{1,7}}"


@dataclass(frozen=True, slots=True)
class RefBox:
    """A rectangular reference: sheet (None = the formula's own sheet), corners, and which parts are absolute.

    ``abs`` holds four flags (col1, row1, col2, row2). A whole column ``A:A`` has rows 1..MAX_ROW.
    """

    sheet: str | None
    r1: int
    c1: int
    r2: int
    c2: int
    abs: tuple[bool, bool, bool, bool] = (False, False, False, False)
    kind: str = "cells"  # "cells", "cols" (A:C) or "rows" (1:3)

    @property
    def is_cell(self) -> bool:
        return self.kind == "cells" and self.r1 == self.r2 and self.c1 == self.c2

    def contains(self, row: int, col: int) -> bool:
        return self.r1 <= row <= self.r2 and self.c1 <= col <= self.c2


@functools.lru_cache(maxsize=65_536)
def parse_ref(text: str, default_sheet: str | None = None) -> RefBox:
    """Parse ``A1``, ``$B$2:C9``, ``Data!A:A`` or ``'My sheet'!3:5``; raises FormulaSyntaxError if it is not one."""
    m = re.fullmatch(rf"(?:({_SHEET})!)?({_AREA})", text.strip())
    if not m:
        raise FormulaSyntaxError(f"{text[:40]!r} is not a cell or range reference; write it like B2, A1:C10, "
                                 f"Data!A1:B5 or 'My Sheet'!A:A")
    sheet = m.group(1)
    if sheet is not None:
        sheet = sheet[1:-1].replace("''", "'") if sheet.startswith("'") else sheet
    return _area(m.group(2), sheet if sheet is not None else default_sheet)


def _area(text: str, sheet: str | None) -> RefBox:
    parts = text.split(":")
    if _CELL_RE.fullmatch(parts[0]):
        corners = [_CELL_RE.fullmatch(p).groups() for p in parts]
        (a1, c1, b1, r1), (a2, c2, b2, r2) = corners[0], corners[-1]
        box = RefBox(sheet, int(r1), col_number(c1), int(r2), col_number(c2),
                     (a1 == "$", b1 == "$", a2 == "$", b2 == "$"))
    elif parts[0].lstrip("$").isdigit():
        ra, rb = parts
        box = RefBox(sheet, int(ra.lstrip("$")), 1, int(rb.lstrip("$")), MAX_COL,
                     (True, ra.startswith("$"), True, rb.startswith("$")), "rows")
    else:
        ca, cb = parts
        box = RefBox(sheet, 1, col_number(ca.lstrip("$")), MAX_ROW, col_number(cb.lstrip("$")),
                     (ca.startswith("$"), True, cb.startswith("$"), True), "cols")
    if not (1 <= box.r1 <= MAX_ROW and 1 <= box.r2 <= MAX_ROW and 1 <= box.c1 <= MAX_COL and 1 <= box.c2 <= MAX_COL):
        raise FormulaSyntaxError(f"{text!r} is outside the sheet (columns A..XFD, rows 1..{MAX_ROW})")
    if box.r1 > box.r2 or box.c1 > box.c2:  # B5:A1 means A1:B5
        box = RefBox(sheet, min(box.r1, box.r2), min(box.c1, box.c2), max(box.r1, box.r2), max(box.c1, box.c2),
                     box.abs, box.kind)
    return box


def format_ref(box: RefBox, with_sheet: bool = True) -> str:
    """The text of a reference, keeping its $ marks."""
    a = ["$" if f else "" for f in box.abs]
    if box.kind == "cols":
        body = f"{a[0]}{col_letter(box.c1)}:{a[2]}{col_letter(box.c2)}"
    elif box.kind == "rows":
        body = f"{a[1]}{box.r1}:{a[3]}{box.r2}"
    else:
        body = f"{a[0]}{col_letter(box.c1)}{a[1]}{box.r1}"
        if not box.is_cell:
            body += f":{a[2]}{col_letter(box.c2)}{a[3]}{box.r2}"
    return f"{quote_sheet(box.sheet)}!{body}" if with_sheet and box.sheet is not None else body


# ----------------------------------------------------------------------------------------------------------------
# Tokenizer: one regular expression; every token keeps its text so formulas can be rewritten losslessly.

_TOKEN_RE = re.compile(
    rf"""(?P<ws>\s+)
    |(?P<str>"(?:[^"]|"")*")
    |(?P<err>\#NULL!|\#DIV/0!|\#VALUE!|\#REF!|\#NAME\?|\#NUM!|\#N/A)
    |(?P<func>[A-Za-z_][A-Za-z0-9_.]*(?=\())
    |(?P<sheeterr>{_SHEET}!\#REF!)
    |(?P<ref>(?:{_SHEET}!)?(?:{_AREA}))(?![A-Za-z0-9_(!])
    |(?P<bool>(?:TRUE|FALSE)(?![A-Za-z0-9_.(]))
    |(?P<num>(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)
    |(?P<op><>|<=|>=|[-+*/^&=<>%(),;])
    |(?P<name>[A-Za-z_][A-Za-z0-9_.]*)
    """,
    re.VERBOSE,
)


def tokenize(text: str) -> list[tuple[str, str]]:
    """Split formula text (without the leading '=') into (kind, text) tokens; raises on a character that fits none."""
    tokens, pos = [], 0
    while pos < len(text):
        m = _TOKEN_RE.match(text, pos)
        if m is None:
            raise FormulaSyntaxError(f"unexpected character {text[pos]!r} at position {pos + 1} of the formula")
        tokens.append((m.lastgroup, m.group()))
        pos = m.end()
    return tokens


# ----------------------------------------------------------------------------------------------------------------
# Parser: tokens -> tuple AST. Precedence (low to high): comparison, &, + -, * /, ^, unary -, %, intersection
# (a space between two references, as in Excel: ``A1:C3 B2:D4``).
# Nodes: ("num", x) ("str", s) ("bool", b) ("err", code[, detail]) ("ref", RefBox) ("neg", n) ("pct", n, count)
#        ("chain", (op, ...), [a, b, ...]) ("isect", [ref, ref, ...]) ("call", NAME, [args]) ("name", text)
# A chain holds a left-to-right run of operators of one precedence level: 1+2-3 is ("chain", ("+", "-"), [1, 2, 3]).

_CMP, _ADD, _MUL = ("=", "<>", "<", ">", "<=", ">="), ("+", "-"), ("*", "/")
_ISECT = ("op", " ")  # the intersection operator, made from whitespace between two references


def _with_intersections(tokens: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Drop whitespace, turning whitespace between two references into the intersection operator."""
    out: list[tuple[str, str]] = []
    for k, tok in enumerate(tokens):
        if tok[0] != "ws":
            out.append(tok)
        elif out and out[-1][0] == "ref" and k + 1 < len(tokens) and tokens[k + 1][0] == "ref":
            out.append(_ISECT)
    return out


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]], source: str):
        self.toks = _with_intersections(tokens) + [("end", "")]
        self.i, self.depth, self.source = 0, 0, source

    def peek(self) -> tuple[str, str]:
        return self.toks[self.i]

    def take(self) -> tuple[str, str]:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def fail(self, what: str) -> FormulaSyntaxError:
        kind, text = self.peek()
        seen = "the end of the formula" if kind == "end" else repr(text)
        return FormulaSyntaxError(f"{what}, found {seen} in {self.source[:80]!r}")

    def binary(self, ops, sub):
        """A run of operators of one level, as one flat node (a loop, not recursion: 1,000 '+' terms are shallow)."""
        node = sub()
        if not (self.peek()[0] == "op" and self.peek()[1] in ops):
            return node
        seen, operands = [], [node]
        while self.peek()[0] == "op" and self.peek()[1] in ops:
            seen.append(self.take()[1])
            operands.append(sub())
        return ("chain", tuple(seen), operands)

    def expr(self):
        return self.binary(_CMP, self.concat)

    def concat(self):
        return self.binary(("&",), self.additive)

    def additive(self):
        return self.binary(_ADD, self.multiplicative)

    def multiplicative(self):
        return self.binary(_MUL, self.power)

    def power(self):
        return self.binary(("^",), self.unary)

    def unary(self):
        negate = False
        while self.peek() in (("op", "-"), ("op", "+")):  # a loop, not recursion: '------1' is not deep
            negate ^= self.take()[1] == "-"
        node = self.reference()
        count = 0
        while self.peek() == ("op", "%"):
            self.take()
            count += 1
        if count:
            node = ("pct", node, count)
        return ("neg", node) if negate else node

    def reference(self):
        node = self.primary()
        if self.peek() != _ISECT:
            return node
        parts = [node]
        while self.peek() == _ISECT:
            self.take()
            parts.append(self.primary())
        return ("isect", parts)

    def nest(self):
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise FormulaSyntaxError(f"the formula nests deeper than {MAX_NESTING} levels (the Excel limit); "
                                     f"split it over helper cells")

    def primary(self):
        kind, text = self.take()
        if kind == "num":
            x = float(text)
            if x == float("inf"):  # LibreOffice: #VALUE!
                return ("err", "#VALUE!", f"the number {text[:24]} is larger than the largest number, 1.8E+308")
            if 0 < x < 2.2250738585072014e-308:  # LibreOffice: #VALUE! for a number below the smallest normal one
                return ("err", "#VALUE!", f"the number {text[:24]} is smaller than the smallest number, 2.2E-308")
            return ("num", x)
        if kind == "str":
            return ("str", text[1:-1].replace('""', '"'))
        if kind == "bool":
            return ("bool", text.upper() == "TRUE")
        if kind == "err":
            return ("err", text)
        if kind == "sheeterr":
            return ("err", "#REF!")
        if kind == "ref":
            return ("ref", parse_ref(text))
        if kind == "name":
            return ("name", text)
        if kind == "func":
            return self.call(_bare_name(text))
        if (kind, text) == ("op", "("):
            self.nest()
            node = self.expr()
            if self.take() != ("op", ")"):
                self.i -= 1
                raise self.fail("expected ')' to close '('")
            self.depth -= 1
            return node
        self.i -= 1
        raise self.fail("expected a value, reference, function or '('")

    def call(self, name: str):
        self.nest()
        self.take()  # "("
        args = []
        if self.peek() == ("op", ")"):
            self.take()
        else:
            while True:
                if self.peek() in (("op", ","), ("op", ";"), ("op", ")")):
                    args.append(("blank",))  # an omitted argument, as in IF(A1,,2)
                else:
                    args.append(self.expr())
                kind, text = self.take()
                if (kind, text) == ("op", ")"):
                    break
                if (kind, text) not in (("op", ","), ("op", ";")):
                    self.i -= 1
                    raise self.fail(f"expected ',' or ')' in the arguments of {name}")
            if len(args) > 255:
                raise FormulaSyntaxError(f"{name} has {len(args)} arguments; at most 255 are allowed")
        self.depth -= 1
        return ("call", name, args)


# ----------------------------------------------------------------------------------------------------------------
def parse(text: str):
    """The syntax tree of ``text`` (which starts with '='), a small tuple AST that ``envs.spreadsheet.compiler``
    compiles; raises FormulaSyntaxError with a hint when it is invalid or breaks a limit."""
    if len(text) > MAX_FORMULA_CHARS:
        raise FormulaSyntaxError(f"the formula has {len(text)} characters; at most {MAX_FORMULA_CHARS} are allowed")
    if not text.startswith("="):
        raise FormulaSyntaxError(f"a formula starts with '=', got {text[:40]!r}")
    parser = _Parser(tokenize(text[1:]), text)
    if parser.peek()[0] == "end":
        raise FormulaSyntaxError("the formula is empty; write an expression after '=', like =SUM(A1:A5)")
    ast = parser.expr()
    if parser.peek()[0] != "end":
        raise parser.fail("expected an operator or the end of the formula")
    if _depth(ast) > MAX_DEPTH:
        raise FormulaSyntaxError(f"the formula is nested more than {MAX_DEPTH} levels deep (operators, functions and "
                                 f"parentheses); split it over helper cells")
    return ast


def _depth(ast) -> int:
    """Levels of the tree, counted with an explicit stack (the tree may be as deep as the parser allowed)."""
    deepest, stack = 0, [(ast, 1)]
    while stack:
        node, d = stack.pop()
        deepest = max(deepest, d)
        kind = node[0]
        if kind == "chain":
            stack.extend((n, d + 1) for n in node[2])
        elif kind == "isect":
            stack.extend((n, d + 1) for n in node[1])
        elif kind == "call":
            stack.extend((n, d + 1) for n in node[2])
        elif kind in ("neg", "pct"):
            stack.append((node[1], d + 1))
    return deepest


def rewrite_refs(text: str, change: Callable[[RefBox], RefBox | None]) -> str:
    """Rewrite every reference in a formula with ``change`` (None turns it into ``#REF!``); the rest is kept as is.

    Used to fill a formula down/across (relative parts move) and to insert/delete rows and columns.
    """
    out = ["="]
    for kind, tok in tokenize(text[1:]):
        if kind == "ref":
            box = parse_ref(tok)
            new = change(box)
            out.append("#REF!" if new is None else format_ref(new))
        else:
            out.append(tok)
    return "".join(out)


# ----------------------------------------------------------------------------------------------------------------
# Excel's "future function" prefixes: in an .xlsx file, functions added after Excel 2007 are stored as
# ``_xlfn.MAXIFS(...)`` (FILTER and SORT as ``_xlfn._xlws.FILTER``); Excel and LibreOffice show #NAME? for the bare
# name in a file, and a file written by them holds the prefixed name. The parser reads both spellings.

_XLWS = frozenset({"FILTER", "SORT"})
_XLFN = frozenset("""
ACOT ACOTH AGGREGATE ARABIC ARRAYTOTEXT BASE BETA.DIST BETA.INV BINOM.DIST BINOM.DIST.RANGE BINOM.INV BITAND
BITLSHIFT BITOR BITRSHIFT BITXOR BYCOL BYROW CEILING.MATH CEILING.PRECISE CHISQ.DIST CHISQ.DIST.RT CHISQ.INV
CHISQ.INV.RT CHISQ.TEST CHOOSECOLS CHOOSEROWS COMBINA CONCAT CONFIDENCE.NORM CONFIDENCE.T COT COTH COVARIANCE.P
COVARIANCE.S CSC CSCH DAYS DECIMAL DROP ERF.PRECISE ERFC.PRECISE EXPAND EXPON.DIST F.DIST F.DIST.RT F.INV F.INV.RT
F.TEST FILTERXML FLOOR.MATH FLOOR.PRECISE FORECAST.ETS FORECAST.ETS.CONFINT FORECAST.ETS.SEASONALITY
FORECAST.ETS.STAT FORECAST.LINEAR FORMULATEXT GAMMA GAMMA.DIST GAMMA.INV GAMMALN.PRECISE GAUSS HSTACK HYPGEOM.DIST
IFNA IFS IMCOSH IMCOT IMCSC IMCSCH IMSEC IMSECH IMSINH IMTAN ISFORMULA ISOMITTED ISOWEEKNUM LAMBDA LET
LOGNORM.DIST LOGNORM.INV MAKEARRAY MAP MAXIFS MINIFS MODE.MULT MODE.SNGL MUNIT NEGBINOM.DIST NETWORKDAYS.INTL
NORM.DIST NORM.INV NORM.S.DIST NORM.S.INV NUMBERVALUE PDURATION PERCENTILE.EXC PERCENTILE.INC PERCENTRANK.EXC
PERCENTRANK.INC PERMUTATIONA PHI POISSON.DIST QUARTILE.EXC QUARTILE.INC QUERYSTRING RANDARRAY RANK.AVG RANK.EQ
REDUCE RRI SCAN SEC SECH SEQUENCE SHEET SHEETS SKEW.P SORTBY STDEV.P STDEV.S SWITCH T.DIST T.DIST.2T T.DIST.RT
T.INV T.INV.2T T.TEST TAKE TEXTAFTER TEXTBEFORE TEXTJOIN TEXTSPLIT TOCOL TOROW UNICHAR UNICODE UNIQUE VALUETOTEXT
VAR.P VAR.S VSTACK WEBSERVICE WEIBULL.DIST WORKDAY.INTL WRAPCOLS WRAPROWS XLOOKUP XMATCH XOR Z.TEST
""".split()) | _XLWS
_PREFIX_RE = re.compile(r"^(?:_xlfn\.|_xlws\.)+", re.IGNORECASE)


def _bare_name(func_token: str) -> str:
    """The function name of a call token, upper-cased and without ``_xlfn.``/``_xlws.`` prefixes."""
    return _PREFIX_RE.sub("", func_token).upper()


def _map_function_names(text: str, rename: Callable[[str], str]) -> str:
    body = text[1:] if text.startswith("=") else text
    try:
        tokens = tokenize(body)
    except FormulaSyntaxError:  # not a formula we parse: keep it as written (it shows #NAME? here anyway)
        return text
    out = "".join(rename(tok) if kind == "func" else tok for kind, tok in tokens)
    return ("=" if text.startswith("=") else "") + out


def with_xlfn_prefixes(text: str) -> str:
    """The formula text with Excel's ``_xlfn.`` prefix on every function Excel stores with one (MAXIFS, CONCAT, IFNA,
    IFS, TEXTJOIN, ...; FILTER and SORT get ``_xlfn._xlws.``), as an .xlsx file must hold them. References, strings
    and names already prefixed are left as they are; text that does not tokenize is returned unchanged."""

    def rename(tok: str) -> str:
        name = _bare_name(tok)
        if name not in _XLFN or _PREFIX_RE.match(tok):
            return tok
        return ("_xlfn._xlws." if name in _XLWS else "_xlfn.") + tok

    return _map_function_names(text, rename)


def without_xlfn_prefixes(text: str) -> str:
    """The formula text with ``_xlfn.``/``_xlws.`` prefixes removed (how a user reads and writes the formula)."""
    return _map_function_names(text, lambda tok: _PREFIX_RE.sub("", tok))
