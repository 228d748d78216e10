"""Workbook state: sheets of raw cells (values or ``Formula``), lazy evaluation in dependency order, .xlsx in/out.

Evaluation is lazy and cached: a write clears the value cache, and reading a formula cell first evaluates the
formula cells it depends on with an explicit stack (never Python recursion, so a 10k-long chain of references
is fine), which also finds circular references and gives their cells ``#VALUE!`` as LibreOffice does.

Every value that enters a cell passes ``storable``: numbers are IEEE doubles, as in LibreOffice, so a number no
double holds is refused rather than stored to overflow later. ``work`` bounds what evaluating every formula can
cost (a pure function of the cells), and ``atomic`` undoes a group of changes that fails part-way.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace

from envs.spreadsheet.compiler import Formula, compile_formula
from envs.spreadsheet.formulas import (
    MAX_COL,
    MAX_ROW,
    MAX_STRING,
    FormulaSyntaxError,
    RefBox,
    XlError,
    col_letter,
    parse_ref,
    rewrite_refs,
)
from envs.spreadsheet.functions import Ctx, Rng

Value = None | bool | int | float | str | XlError
_MISSING = object()
_FAST_DEPTH = 30  # formula-to-formula recursion allowed before switching to the explicit-stack evaluator
_BATCH = 64  # readers a write forgets one by one (and value writes per ``atomic`` block) before it drops every value


class _Restart(Exception):
    """Unwinds a recursive evaluation that met a cycle or grew too deep (never an agent-visible error)."""


def storable(raw):
    """The value a cell stores for ``raw`` (a value, not formula text), or ValueError saying why no cell holds it.

    Numbers are IEEE doubles as in LibreOffice: an integer beyond 2**53 becomes the nearest double, one beyond the
    largest double (about 1.8E+308) and infinities or NaN are refused (LibreOffice keeps such input as text).
    """
    t = type(raw)
    if t is int:
        if -_EXACT <= raw <= _EXACT:
            return raw
        try:
            return float(raw)
        except OverflowError:  # str(raw) itself may be refused past 4300 digits, so give the size in digits
            digits = int(raw.bit_length() * 0.30103) + 1
            raise ValueError(f"a number of about {digits} digits is too large: a cell holds numbers up to about "
                             f"1.8E+308 (IEEE doubles, as in LibreOffice); write it as text if you mean the digits"
                             ) from None
    if t is float:
        if not math.isfinite(raw):
            raise ValueError(f"{raw} is not a number a cell can hold: numbers must be finite, up to about 1.8E+308")
        return raw
    if t is str:
        if len(raw) > MAX_STRING:
            raise ValueError(f"text of {len(raw)} characters; a cell holds at most {MAX_STRING}")
        return raw if raw else None
    if raw is None or t is bool or t is XlError:
        return raw
    if isinstance(raw, numbers.Integral) and not isinstance(raw, bool):  # numpy's, say
        return storable(int(raw))
    if isinstance(raw, numbers.Real):
        return storable(float(raw))
    if isinstance(raw, str):
        return storable(str(raw))
    raise ValueError(f"a cell holds text, a number, TRUE/FALSE or nothing, not {t.__name__}")


_EXACT = 2**53


def addr(row: int, col: int) -> str:
    return f"{col_letter(col)}{row}"


def broken_formula(text: str, why: str) -> Formula:
    """A formula we could not parse (from a user's file): kept as text, shows #NAME? with the reason."""
    e = XlError("#NAME?", why)
    return Formula(text, lambda ctx: e, ())


class Sheet:
    """One sheet: ``cells[(row, col)]`` holds a value or a ``Formula``; blank cells are absent."""

    __slots__ = ("_extent", "cells", "formulas", "name")

    def __init__(self, name: str):
        self.name, self.cells, self.formulas, self._extent = name, {}, set(), (0, 0)

    def extent(self) -> tuple[int, int]:
        if self._extent is None:
            self._extent = (max((r for r, _ in self.cells), default=0), max((c for _, c in self.cells), default=0))
        return self._extent

    def __getstate__(self):  # formulas are closures: pickle their text, compile again on load (cached by text)
        cells = {k: _FormulaText(v.text) if type(v) is Formula else v for k, v in self.cells.items()}
        return (self.name, cells)

    def __setstate__(self, state):
        self.name, cells = state
        for k, v in cells.items():
            if type(v) is _FormulaText:
                try:
                    cells[k] = compile_formula(v.text)
                except FormulaSyntaxError as e:
                    cells[k] = broken_formula(v.text, str(e))
        self.cells, self._extent = cells, None
        self.formulas = {k for k, v in cells.items() if type(v) is Formula}


class _FormulaText:
    __slots__ = ("text",)

    def __init__(self, text: str):
        self.text = text

    def __getstate__(self):
        return self.text

    def __setstate__(self, text):
        self.text = text


class Workbook:
    """Sheets in order, with evaluation. Cells are addressed by (sheet name, row, col), all 1-based."""

    def __init__(self, sheet_names: tuple[str, ...] = ("Sheet1",)):
        self.sheets: dict[str, Sheet] = {name: Sheet(name) for name in sheet_names}
        self._values: dict[tuple[str, int, int], Value] = {}
        self._memo: dict = {}  # range reads and aggregate results, valid until the next change
        self._index = None  # who reads which cell: built on demand, dropped when a formula changes
        self._active: set = set()
        self._journal: list | None = None  # inside ``atomic``: how to undo each change so far
        self._batch = 0  # value writes so far inside ``atomic``
        self._work: tuple[int, tuple[int, int]] | None = None  # (version, work()) for the latest version asked
        self.version = 0  # bumped by every change; kept by copies and pickles (the env compares it)

    # --- state -------------------------------------------------------------------------------------------------

    def __getstate__(self):  # caches are dropped: they are a function of the cells
        return {"sheets": self.sheets, "version": self.version}

    def __setstate__(self, state):
        self.__init__(())
        self.sheets = state["sheets"]
        self.version = state.get("version", 0)

    def copy(self) -> Workbook:
        """An independent copy (formulas are immutable and shared), at the same version."""
        out = Workbook(())
        for name, sheet in self.sheets.items():
            s = out.sheets[name] = Sheet(name)
            s.cells, s.formulas, s._extent = dict(sheet.cells), set(sheet.formulas), sheet._extent
        out.version = self.version
        return out

    @contextmanager
    def atomic(self):
        """Group changes: if an exception leaves the block, every cell, sheet and the version are as before it.

        Nested blocks join the outermost one. Within a block, after many value writes the value cache is dropped
        once instead of following each write's readers (a 5,000-cell write costs no more than one formula write).
        """
        if self._journal is not None:
            yield
            return
        self._journal, version, self._batch = [], self.version, 0
        try:
            yield
        except BaseException:
            self._undo(self._journal, version)
            raise
        finally:
            self._journal = None

    def _undo(self, journal: list, version: int) -> None:
        if not journal:  # refused before it changed anything
            return
        for entry in reversed(journal):
            kind, sheet = entry[0], entry[1]
            if kind == "cell":
                _, _, key, old = entry
                if old is _MISSING:
                    sheet.cells.pop(key, None)
                else:
                    sheet.cells[key] = old
                if type(old) is Formula:
                    sheet.formulas.add(key)
                else:
                    sheet.formulas.discard(key)
            elif kind == "cells":
                _, _, sheet.cells, sheet.formulas = entry
            elif kind == "sheet":
                self.sheets.pop(sheet, None)
        for s in self.sheets.values():
            s._extent = None
        self._values.clear()
        self._memo.clear()
        self._index, self._work = None, None
        self.version = version

    def _log(self, sheet: Sheet, key: tuple[int, int]) -> None:
        if self._journal is not None:
            self._journal.append(("cell", sheet, key, sheet.cells.get(key, _MISSING)))

    def work(self) -> tuple[int, int]:
        """(formula cells, cells their references cover): a bound on the work of evaluating every formula, a pure
        function of the cells. A range counts the part of it inside its sheet's used extent (what functions read;
        a range read more than once, as in a filled =SUM($B$2:$B$9), counts each time), a one-cell reference 1."""
        if self._work is not None and self._work[0] == self.version:
            return self._work[1]
        formulas = area = 0
        extents: dict[str, tuple[int, int]] = {}
        for s in self.sheets.values():
            formulas += len(s.formulas)
            cells = s.cells
            for key in s.formulas:
                for box in cells[key].refs:
                    if box.is_cell:
                        area += 1
                        continue
                    target = self._resolve(box.sheet or s.name)
                    if target is None:
                        continue
                    max_r, max_c = extents.get(target.name) or extents.setdefault(target.name, target.extent())
                    area += max(0, min(box.r2, max_r) - box.r1 + 1) * max(0, min(box.c2, max_c) - box.c1 + 1)
        self._work = (self.version, (formulas, area))
        return formulas, area

    def sheet(self, name: str) -> Sheet:
        s = self.sheets.get(name)
        if s is None:
            for real in self.sheets:  # sheet names are case-insensitive in spreadsheets
                if real.lower() == name.lower():
                    return self.sheets[real]
            raise KeyError(name)
        return s

    def add_sheet(self, name: str) -> Sheet:
        self.sheets[name] = Sheet(name)
        if self._journal is not None:
            self._journal.append(("sheet", name))
        self._changed(formulas=True)
        return self.sheets[name]

    def _changed(self, formulas: bool, key=None) -> None:
        self.version += 1
        self._memo.clear()
        if not self._values:  # nothing computed yet, nothing to forget
            if formulas:
                self._index = None
            return
        if self._journal is not None and not formulas:
            self._batch += 1
            if self._batch > _BATCH:  # many value writes in one call: forget everything once
                formulas = True
        if formulas or key is None:
            self._values.clear()
            self._index = None
        else:
            self._forget_readers(key)

    def set_cell(self, sheet: str, row: int, col: int, raw) -> None:
        """Store a value, or a formula when ``raw`` is text starting with '=' (raises FormulaSyntaxError); a value
        no cell can hold raises ValueError (see ``storable``)."""
        s = self.sheet(sheet)
        if type(raw) is str and raw.startswith("=") and len(raw) > 1:
            raw = compile_formula(raw)
        elif type(raw) is not Formula:
            raw = storable(raw)
        key = (row, col)
        self._log(s, key)
        was_formula = key in s.formulas
        if raw is None:
            s.cells.pop(key, None)
            s._extent = None
        else:
            s.cells[key] = raw
            if s._extent is not None and (row > s._extent[0] or col > s._extent[1]):
                s._extent = (max(row, s._extent[0]), max(col, s._extent[1]))
        is_formula = type(raw) is Formula
        if is_formula:
            s.formulas.add(key)
        else:
            s.formulas.discard(key)
        self._changed(formulas=is_formula or was_formula, key=(s.name, row, col))

    def raw(self, sheet: str, row: int, col: int):
        """What the cell holds: a value, or the formula text."""
        raw = self.sheet(sheet).cells.get((row, col))
        return raw.text if type(raw) is Formula else raw

    # --- evaluation --------------------------------------------------------------------------------------------

    def cell_value(self, sheet: str, row: int, col: int) -> Value:
        s = self.sheets.get(sheet)
        if s is None:
            try:
                s = self.sheet(sheet)
            except KeyError:
                return XlError("#REF!", f"there is no sheet {sheet!r}")
        raw = s.cells.get((row, col))
        if type(raw) is not Formula:
            return raw
        key = (s.name, row, col)
        v = self._values.get(key, _MISSING)
        return self._evaluate(key) if v is _MISSING else v

    def value(self, sheet: str, ref: str) -> Value:
        box = parse_ref(ref)
        return self.cell_value(sheet, box.r1, box.c1)

    def set_value(self, sheet: str, ref: str, raw) -> None:
        box = parse_ref(ref)
        self.set_cell(sheet, box.r1, box.c1, raw)

    def extent(self, sheet: str) -> tuple[int, int]:
        s = self.sheets.get(sheet)
        return s.extent() if s is not None else (0, 0)

    def filled_cells(self, sheet: str, r1: int, c1: int, r2: int, c2: int) -> Iterator[tuple[int, int, Value]]:
        s = self.sheets.get(sheet)
        if s is None:
            raise XlError("#REF!", f"there is no sheet {sheet!r}")
        max_r, max_c = s.extent()
        r2, c2 = min(r2, max_r), min(c2, max_c)
        if (r2 - r1 + 1) * (c2 - c1 + 1) <= 2 * len(s.cells):
            cells = s.cells
            for r in range(r1, r2 + 1):
                for c in range(c1, c2 + 1):
                    if (r, c) in cells:
                        v = self.cell_value(s.name, r, c)
                        if v is not None:
                            yield r, c, v
        else:
            for (r, c) in sorted(k for k in s.cells if r1 <= k[0] <= r2 and c1 <= k[1] <= c2):
                yield r, c, self.cell_value(s.name, r, c)

    def _evaluate(self, key) -> Value:
        """Fast path: evaluate by plain recursion through the formulas. A cycle, or a chain deeper than
        ``_FAST_DEPTH``, unwinds to the outermost call, which redoes it in dependency order with a stack."""
        active = self._active
        if key in active or len(active) >= _FAST_DEPTH:
            raise _Restart
        active.add(key)
        try:
            v = self._compute(key)
        except (_Restart, RecursionError):
            if len(active) > 1:
                raise
            v = self._evaluate_ordered(key)
        finally:
            active.discard(key)
        self._values[key] = v
        return v

    def _precedents_of(self, key) -> list:
        sheet_name, row, col = key
        formula = self.sheets[sheet_name].cells[(row, col)]
        prec = []
        for box in formula.refs:
            target = self._resolve(box.sheet or sheet_name)
            if target is None:
                continue
            formulas = target.formulas
            if box.is_cell:
                if (box.r1, box.c1) in formulas:
                    prec.append((target.name, box.r1, box.c1))
                continue
            max_r, max_c = target.extent()
            r2, c2 = min(box.r2, max_r), min(box.c2, max_c)
            if (r2 - box.r1 + 1) * (c2 - box.c1 + 1) < len(formulas):  # scan the smaller of the range and formulas
                prec.extend((target.name, r, c) for r in range(box.r1, r2 + 1) for c in range(box.c1, c2 + 1)
                            if (r, c) in formulas)
            else:
                prec.extend((target.name, r, c) for r, c in formulas if box.contains(r, c))
        return prec

    def _resolve(self, name: str) -> Sheet | None:
        try:
            return self.sheet(name)
        except KeyError:
            return None

    def _evaluate_ordered(self, key) -> Value:
        """Evaluate ``key`` after every formula it depends on, in post-order with an explicit stack."""
        values, state = self._values, {key: 1}  # 1 = on the stack, 2 = done
        stack = [(key, iter(self._precedents_of(key)))]
        circular: dict = {}
        while stack:
            k, it = stack[-1]
            for p in it:
                if p in values:
                    continue
                seen = state.get(p)
                if seen is None:
                    state[p] = 1
                    stack.append((p, iter(self._precedents_of(p))))
                    break
                if seen == 1:  # a cycle: every cell from p to the top of the stack is on it
                    ring = [s[0] for s in stack[[s[0] for s in stack].index(p):]]
                    path = " -> ".join(f"{s}!{addr(r, c)}" for s, r, c in ring + [p])
                    for member in ring:
                        circular[member] = XlError("#VALUE!", f"circular reference: {path}")
            else:
                stack.pop()
                state[k] = 2
                if k in circular:
                    values[k] = circular[k]
                elif k != key:
                    saved, self._active = self._active, set()
                    try:
                        values[k] = self._compute(k)
                    except _Restart:
                        values[k] = XlError("#VALUE!", "references nest too deeply")
                    finally:
                        self._active = saved
        if key in circular:
            return circular[key]
        saved, self._active = self._active, set()
        try:
            return self._compute(key)
        except _Restart:
            return XlError("#VALUE!", "references nest too deeply")
        finally:
            self._active = saved

    # --- invalidation: a value edit forgets only the formulas that (transitively) read the cell ------------------

    def _build_index(self) -> None:
        single, cols, wide = {}, {}, []
        for s in self.sheets.values():
            for (r, c) in s.formulas:
                fk = (s.name, r, c)
                for box in s.cells[(r, c)].refs:
                    target = self._resolve(box.sheet or s.name)
                    if target is None:
                        continue
                    if box.is_cell:
                        single.setdefault((target.name, box.r1, box.c1), []).append(fk)
                    elif box.c2 - box.c1 < 64:
                        for col in range(box.c1, box.c2 + 1):
                            cols.setdefault((target.name, col), []).append((box.r1, box.r2, fk))
                    else:
                        wide.append((target.name, box, fk))
        self._index = (single, cols, wide)

    def _forget_readers(self, key) -> None:
        if self._index is None:
            self._build_index()
        single, cols, wide = self._index
        values, todo, forgotten = self._values, [key], 0
        while todo:
            k = todo.pop()
            sheet, row, col = k
            readers = list(single.get(k, ()))
            readers.extend(fk for r1, r2, fk in cols.get((sheet, col), ()) if r1 <= row <= r2)
            readers.extend(fk for s, box, fk in wide if s == sheet and box.contains(row, col))
            for fk in readers:
                if values.pop(fk, _MISSING) is not _MISSING:
                    todo.append(fk)
                    forgotten += 1
            if forgotten > _BATCH:  # following every reader costs more than computing them again when read
                values.clear()
                return

    def _compute(self, key) -> Value:
        sheet_name, row, col = key
        formula = self.sheets[sheet_name].cells[(row, col)]
        try:
            v = formula.run(Ctx(self, sheet_name, row, col))
            if type(v) is Rng:
                if v.r1 != v.r2 or v.c1 != v.c2:
                    return XlError("#VALUE!", "a formula cell shows one value; aggregate the range, e.g. SUM(A1:A5)")
                v = v.get(0, 0)
            if v is None:
                return 0.0
            return v
        except XlError as e:
            return e

    def evaluate_all(self) -> dict[tuple[str, int, int], Value]:
        """Every formula cell's value (used by the checker and the LibreOffice comparison)."""
        return {(s.name, r, c): self.cell_value(s.name, r, c) for s in self.sheets.values() for r, c in s.formulas}

    # --- structure ---------------------------------------------------------------------------------------------

    def rewrite_all(self, change_for: Callable[[str], Callable[[RefBox], RefBox | None]]) -> None:
        """Rewrite every formula's references; ``change_for(own_sheet)`` gives the change for one sheet's formulas."""
        for s in self.sheets.values():
            change = change_for(s.name)
            for key in list(s.formulas):
                text = rewrite_refs(s.cells[key].text, change)
                if text != s.cells[key].text:
                    self._log(s, key)
                    try:
                        s.cells[key] = compile_formula(text)
                    except FormulaSyntaxError as e:
                        s.cells[key] = broken_formula(text, str(e))
        self._changed(formulas=True)

    def shift(self, sheet: str, axis: str, at: int, count: int) -> None:
        """Insert (count > 0) or delete (count < 0) rows or columns at index ``at``, adjusting every formula."""
        s = self.sheet(sheet)
        limit = MAX_ROW if axis == "row" else MAX_COL
        moved = {}
        for (r, c), raw in s.cells.items():
            i = r if axis == "row" else c
            if count < 0 and at <= i < at - count:
                continue
            if i >= at:
                i += count
            if i > limit:
                continue
            moved[(i, c) if axis == "row" else (r, i)] = raw
        if self._journal is not None:
            self._journal.append(("cells", s, s.cells, s.formulas))
        s.cells = moved
        s.formulas = {k for k, v in moved.items() if type(v) is Formula}
        s._extent = None
        self.rewrite_all(lambda own: _shift_refs(s.name, own, axis, at, count, limit))

    def move_rows(self, sheet: str, order: list[int], r1: int, c1: int, c2: int) -> None:
        """Rearrange rows ``r1..`` so new row r1+k gets old row order[k] (cells c1..c2 only), like a sort."""
        s = self.sheet(sheet)
        old = {(r, c): s.cells.get((r, c)) for r in range(r1, r1 + len(order)) for c in range(c1, c2 + 1)}
        for k, src in enumerate(order):
            for c in range(c1, c2 + 1):
                raw = old[(src, c)]
                if type(raw) is Formula and src != r1 + k:
                    raw = raw.text
                    raw = rewrite_refs(raw, lambda b, d=r1 + k - src: move_box(b, d, 0))
                self.set_cell(s.name, r1 + k, c, raw)


def _sort_rank(v) -> int:
    t = type(v)
    return 0 if t is float or t is int else 1 if t is str else 2 if t is bool else 3


def row_compare(a: tuple, b: tuple, keys: list[tuple[int, bool]]) -> int:
    """Spreadsheet sort order by keys (index, descending): numbers < text (case-insensitive) < TRUE/FALSE < errors;
    blank cells go last whichever the direction."""
    for idx, desc in keys:
        x, y = a[idx], b[idx]
        xb, yb = x is None or x == "", y is None or y == ""
        if xb or yb:
            if xb != yb:
                return 1 if xb else -1
            continue
        rx, ry = _sort_rank(x), _sort_rank(y)
        if rx != ry:
            c = -1 if rx < ry else 1
        else:
            if rx == 1:
                x, y = x.lower(), y.lower()
            elif rx == 3:
                x, y = x.code, y.code
            c = 0 if x == y else -1 if x < y else 1
        if c:
            return -c if desc else c
    return 0


def move_box(box: RefBox, drow: int, dcol: int) -> RefBox | None:
    """The reference after copying its formula by (drow, dcol): relative parts move, absolute parts stay."""
    a_c1, a_r1, a_c2, a_r2 = box.abs
    r1 = box.r1 if a_r1 or box.kind == "cols" else box.r1 + drow
    r2 = box.r2 if a_r2 or box.kind == "cols" else box.r2 + drow
    c1 = box.c1 if a_c1 or box.kind == "rows" else box.c1 + dcol
    c2 = box.c2 if a_c2 or box.kind == "rows" else box.c2 + dcol
    if not (1 <= min(r1, r2) and max(r1, r2) <= MAX_ROW and 1 <= min(c1, c2) and max(c1, c2) <= MAX_COL):
        return None
    return replace(box, r1=r1, r2=r2, c1=c1, c2=c2)


def _shift_refs(target: str, own: str, axis: str, at: int, count: int, limit: int):
    def change(box: RefBox) -> RefBox | None:
        if (box.sheet or own).lower() != target.lower() or (box.kind == ("cols" if axis == "row" else "rows")):
            return box
        lo, hi = (box.r1, box.r2) if axis == "row" else (box.c1, box.c2)
        if count > 0:
            lo, hi = lo + count if lo >= at else lo, hi + count if hi >= at else hi
            if lo > limit:
                return None
            hi = min(hi, limit)
        else:
            gone_lo, gone_hi = at, at - count - 1
            if gone_lo <= lo and hi <= gone_hi:
                return None
            new_lo = lo if lo < gone_lo else max(gone_lo, lo + count) if lo > gone_hi else gone_lo
            new_hi = hi if hi < gone_lo else hi + count if hi > gone_hi else gone_lo - 1
            lo, hi = new_lo, new_hi
        return replace(box, r1=lo, r2=hi) if axis == "row" else replace(box, c1=lo, c2=hi)
    return change
