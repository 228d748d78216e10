"""The formula compiler: a parsed formula (``envs.spreadsheet.formulas.parse``) into nested Python closures over the
operators (``envs.spreadsheet.functions``) and the function table (``envs.spreadsheet.library``).

``compile_formula(text)`` is the one entry point: the same text compiles once and the ``Formula`` is shared by every
cell that holds it. A formula's value is ``formula.run(ctx)``; an evaluation problem is an error *value*
(``XlError``), never an exception, and a float operation that overflows is ``#NUM!``, as LibreOffice shows it.

This module sits above the function table, so nothing imports in a cycle: formulas (syntax) <- functions
(semantics) <- library (functions by name) <- compiler <- workbook.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from envs.spreadsheet.formulas import MAX_STRING, FormulaSyntaxError, RefBox, XlError, parse
from envs.spreadsheet.functions import (
    _ARITH,
    _CMPS,
    Rng,
    check_num,
    compare,
    err,
    num,
    single,
    text,
    too_long,
)
from envs.spreadsheet.library import FUNCTIONS, LAZY, MEMO, PASS_ERRORS, SCALAR_ARGS, suggest_function

__all__ = ["Formula", "compile_ast", "compile_formula"]


@dataclass(frozen=True, slots=True)
class Formula:
    """A compiled formula: its text (with '='), its closure, and the references it reads."""

    text: str
    run: Callable[[Any], Any]
    refs: tuple[RefBox, ...]


_CACHE: dict[str, Formula] = {}


def compile_formula(text: str) -> Formula:
    """Parse and compile ``text`` (which starts with '='); raises FormulaSyntaxError with a hint when it is invalid
    (a function called with the wrong number of arguments included)."""
    cached = _CACHE.get(text)
    if cached is not None:
        return cached
    refs: list[RefBox] = []
    formula = Formula(text, compile_ast(parse(text), refs), tuple(refs))
    if len(_CACHE) > 50_000:
        _CACHE.clear()
    _CACHE[text] = formula
    return formula


# ----------------------------------------------------------------------------------------------------------------
# Operators


def _apply(op: str, a, b):
    """One binary operator on two evaluated operands (errors raise)."""
    if op in _ARITH:
        return check_num(_ARITH[op](num(a), num(b)))
    if op == "&":
        s = text(a) + text(b)
        if len(s) > MAX_STRING:
            raise too_long()
        return s
    a, b = single(a), single(b)
    if type(a) is XlError:
        raise a
    if type(b) is XlError:
        raise b
    return _CMPS[op](compare(a, b))


def _chain(ops: tuple[str, ...], fs: list[Callable]) -> Callable:
    """A left-to-right run of operators of one level (1+2-3), evaluated in a loop."""
    first, rest = fs[0], list(zip(ops, fs[1:], strict=True))

    def chain(ctx):
        try:
            acc = first(ctx)
            for op, f in rest:
                acc = _apply(op, acc, f(ctx))
            return acc
        except XlError as e:
            return e
        except ArithmeticError:  # a float operation overflowed: what LibreOffice shows as #NUM!
            return err("#NUM!", "the result is too large")
    return chain


def _intersect(fs: list[Callable]) -> Callable:
    """The intersection operator: the cells two references share (LibreOffice: #REF! when they share none)."""
    def isect(ctx):
        out = None
        for f in fs:
            v = f(ctx)
            if type(v) is XlError:
                return v
            if type(v) is not Rng:
                return err("#VALUE!", "the intersection operator (a space) needs references on both sides")
            if out is None:
                out = v
                continue
            if v.sheet != out.sheet:
                return err("#REF!", "an intersection of references on different sheets shares no cell")
            r1, c1, r2, c2 = max(out.r1, v.r1), max(out.c1, v.c1), min(out.r2, v.r2), min(out.c2, v.c2)
            if r1 > r2 or c1 > c2:
                return err("#REF!", "the references of the intersection (a space) share no cell")
            out = Rng(out.book, out.sheet, r1, c1, r2, c2)
        return out
    return isect


# ----------------------------------------------------------------------------------------------------------------
# AST -> closure(ctx) -> value. Function arguments that are references stay lazy Rng objects.


def compile_ast(node, refs: list[RefBox], as_arg: bool = False) -> Callable:
    kind = node[0]
    if kind in ("num", "str", "bool"):
        value = node[1]
        return lambda ctx: value
    if kind == "blank":
        return lambda ctx: None
    if kind == "err":
        e = err(node[1], node[2] if len(node) > 2 else "an error written into the formula")
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
        f, count = compile_ast(node[1], refs), node[2]

        def pct(ctx):
            try:
                x = num(f(ctx))
            except XlError as e:
                return e
            for _ in range(count):  # 1%%% divides by 100 three times (underflows to 0, never overflows)
                if x == 0:
                    break
                x /= 100
            return x
        return pct
    if kind == "chain":
        return _chain(node[1], [compile_ast(n, refs) for n in node[2]])
    if kind == "isect":
        return _intersect([compile_ast(n, refs, as_arg=True) for n in node[1]])
    if kind == "call":
        return _compile_call(node[1], node[2], refs)
    raise AssertionError(f"unknown AST node {kind}")


def _raise_error_argument(values: list) -> None:
    """An error argument is the function's result: the first one, as in LibreOffice (before any other check)."""
    for v in values:
        if type(v) is XlError:
            raise v


def _checked(v):
    """A function's result: a float must be finite (inf or nan is #NUM!, as LibreOffice shows an overflow)."""
    if type(v) is float and not math.isfinite(v):
        raise err("#NUM!", "the result is too large")
    return v


def _compile_call(name: str, args: list, refs: list[RefBox]) -> Callable:
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
                return _checked(fn(ctx, *thunks))
            except XlError as e:
                return e
            except ArithmeticError:
                return err("#NUM!", f"{name}: the result is too large")
        return lazy

    passes = name in PASS_ERRORS

    def call(ctx):
        try:
            values = [t(ctx) for t in thunks]
            if not passes:
                _raise_error_argument(values)
            return _checked(fn(*values))
        except XlError as e:
            return e
        except ArithmeticError:  # OverflowError from a float operation: a number past 1.8E+308
            return err("#NUM!", f"{name}: the result is too large")

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
                if not passes:
                    _raise_error_argument(values)
                out = _checked(fn(*values))
            except XlError as e:
                out = e
            except ArithmeticError:
                out = err("#NUM!", f"{name}: the result is too large")
            memo[key] = out
        return out
    return memo_call
