"""What a task asks for, as *goals*: each knows its target cells, how to judge them, and how to reach them.

A goal's expected values are computed from the task's records (the clean truth of the data table, which a
coworker's concurrent edit may change) and from where each record sits in the *final* workbook (found by its id),
so an agent may solve a task any equivalent way. A live goal also needs formulas that stay right when the data
changes: the checker edits the data in a copy of the workbook and compares again, each input the goal names
(``inputs``: data columns by role, parameter cells) in turn, then the goal's ``edge_cases``.

``plan(env)`` returns the tool calls that reach the goal from the env's current state; the reference planner
runs them on a scratch copy goal after goal (``plan.py``). Plans are diffs: a cell that already holds what the call
would write is left alone, so a re-plan after a fault (a conflict, a timed-out write that went through) does not
redo work already done.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass
from typing import Any

from envs.core.tools import ToolCall
from envs.spreadsheet.formulas import XlError, col_letter, rewrite_refs
from envs.spreadsheet.functions import number_text, round_decimal
from envs.spreadsheet.workbook import move_box, row_compare

Key = tuple[str, int, int]


@dataclass(frozen=True)
class Layout:
    """Where the data table lives: sheet, column order (roles), header texts; header in row 1, data from row 2."""

    sheet: str
    roles: tuple[str, ...]
    headers: tuple[str, ...]
    first: int = 2

    def col(self, role: str) -> int:
        return self.roles.index(role) + 1

    def letter(self, role: str) -> str:
        return col_letter(self.col(role))

    def header(self, role: str) -> str:
        return self.headers[self.roles.index(role)]

    def last(self, n_records: int) -> int:
        return self.first + n_records - 1


def same_value(got: Any, want: Any) -> bool:
    """Computed-value equality: numbers within 1e-9 relative, text exact, errors by code, blank == ''."""
    if isinstance(want, float | int) and not isinstance(want, bool):
        return isinstance(got, float | int) and not isinstance(got, bool) and math.isclose(
            got, want, rel_tol=1e-9, abs_tol=1e-9)
    if want is None or want == "":
        return got is None or got == ""
    if isinstance(want, XlError):
        return got == want
    return type(got) is type(want) and got == want


def show(v: Any) -> str:
    if v is None:
        return "blank"
    if isinstance(v, bool):
        return "TRUE" if v else "FALSE"
    if isinstance(v, float | int):
        return number_text(v)
    return repr(v) if isinstance(v, str) else str(v)


def compute(op: str, params: tuple, rec: dict, records) -> Any:
    """The value of a per-row formula for one record; ops are data so tasks pickle."""
    amount = rec["n"] * rec["x"] if "n" in rec and "x" in rec else None
    if op == "product":
        return amount
    if op == "tax":
        return round_decimal(amount * (1 + params[0]), 2, "half")
    if op == "flag":
        threshold, high, low = params
        return high if amount > threshold else low
    if op == "lookup":
        return dict(params)[rec["code"]]
    if op == "share":
        total = math.fsum(r["n"] for r in records if r["cat"] == rec["cat"])
        return round_decimal(rec["n"] / total, 3, "half") if total else XlError("#DIV/0!")
    if op == "year":
        return float(int(rec["date"][:4]))
    if op == "month":
        return float(int(rec["date"][5:7]))
    if op == "rate":
        return round_decimal(rec["x"] * (1 + params[0]), 2, "half")
    raise ValueError(f"unknown op {op!r}")


# What each per-row op reads: data columns by role, and "params", the goal's parameter cells (a rate in one cell, a
# lookup table's values). The checker changes each input in turn and needs every result that reads it to change.
OP_INPUTS = {"product": ("n", "x"), "tax": ("n", "x"), "flag": ("n", "x"), "lookup": ("params", "code"),
             "share": ("n", "cat"), "year": ("date",), "month": ("date",), "rate": ("params", "x")}


def aggregate(func: str, values: list) -> Any:
    if func == "SUM":
        return math.fsum(values)
    if func == "AVERAGE":
        return math.fsum(values) / len(values) if values else XlError("#DIV/0!")
    if func == "MAX":
        return max(values, default=0.0)
    if func == "MIN":
        return min(values, default=0.0)
    if func == "COUNT":
        return float(len(values))
    raise ValueError(f"unknown aggregate {func!r}")


def rows_by_id(state, task) -> dict[Any, int]:
    """Row of each record id in the current table (first occurrence)."""
    layout, book = task.layout, state.book
    col, out = layout.col("id"), {}
    max_row = book.extent(layout.sheet)[0]
    for r in range(layout.first, max_row + 1):
        v = book.cell_value(layout.sheet, r, col)
        if v is not None and v not in out:
            out[v] = r
    return out


def formula_calls(book, sheet: str, col: int, r1: int, r2: int, formula: str) -> list[ToolCall]:
    """``set_formula`` in row ``r1`` and ``fill`` down to ``r2``, each left out when the cells already hold what it
    would write."""
    c = col_letter(col)
    calls = []
    if sheet not in book.sheets or book.raw(sheet, r1, col) != formula:
        calls.append(ToolCall("set_formula", {"cell": f"{sheet}!{c}{r1}", "formula": formula}))
    filled = not calls and all(
        book.raw(sheet, r, col) == rewrite_refs(formula, lambda b, d=r - r1: move_box(b, d, 0))
        for r in range(r1 + 1, r2 + 1))
    if r2 > r1 and not filled:
        calls.append(ToolCall("fill", {"cells": f"{sheet}!{c}{r1}:{c}{r2}", "direction": "down"}))
    return calls


def record_at(state, task, records, row: int):
    """The record whose id is in ``row`` of the table, or None."""
    v = state.book.cell_value(task.layout.sheet, row, task.layout.col("id"))
    return next((rec for rec in records if rec["id"] == v), None)


@dataclass
class Goal:
    """Base: target cells with expected values; ``live`` means each target must be a formula that stays right."""

    live: bool = False
    text: str = ""

    def expected(self, state, task, records) -> dict[Key, Any]:
        raise NotImplementedError

    def formula_cells(self, state, task, records) -> set[Key]:
        """Targets that must hold formulas when the goal is live (default: every non-header target)."""
        return set(self.expected(state, task, records))

    def inputs(self, state, task, records) -> dict[str, set[Key]]:
        """Each input the request names (a data column's role, or "params" for the goal's parameter cells), with
        the targets whose expected value reads it: a formula that ignores the input, or types in its current
        value, gives the same result when only that input changes, so the checker changes each in turn."""
        return {}

    def edge_cases(self, state, task, records) -> list[tuple[str, list[dict]]]:
        """Data a formula that is nearly right gets wrong, as ``(what it is, records)``: values either side of a
        threshold the request names, the largest value in the first or last row of a MAX (a range that misses a
        row). Random changes of the data seldom hit these."""
        return []

    def check(self, state, task, records) -> list[str]:
        want = self.expected(state, task, records)
        reasons = []
        for (s, r, c), v in want.items():
            got = state.book.cell_value(s, r, c) if s in state.book.sheets else None
            if not same_value(got, v):
                reasons.append(f"{s}!{col_letter(c)}{r} is {show(got)}, expected {show(v)}")
        if self.live:
            for s, r, c in sorted(self.formula_cells(state, task, records)):
                raw = state.book.raw(s, r, c) if s in state.book.sheets else None
                if not (isinstance(raw, str) and raw.startswith("=")):
                    reasons.append(f"{s}!{col_letter(c)}{r} must be a live formula, not a typed value")
        return reasons

    def plan(self, env) -> list[ToolCall]:
        raise NotImplementedError


@dataclass
class NewColumn(Goal):
    """A column of one formula per row (added, or repaired), with its header."""

    col: int = 0
    header: str = ""
    op: str = "product"  # see compute()
    params: tuple = ()
    formula: str = ""  # with {r} for the row, e.g. "=F{r}*G{r}"
    param_cells: tuple = ()  # cells holding the params' values ("rate": the rate; "lookup": the table's values)

    def param_values(self) -> tuple:
        """The values the parameter cells hold, in ``param_cells`` order."""
        return tuple(v for _, v in self.params) if self.op == "lookup" else tuple(self.params)

    def with_param_values(self, values) -> NewColumn:
        """This goal as it reads when the parameter cells hold ``values`` instead."""
        params = (tuple((code, v) for (code, _), v in zip(self.params, values, strict=True)) if self.op == "lookup"
                  else tuple(values))
        return dataclasses.replace(self, params=params)

    def inputs(self, state, task, records):
        rows = self.formula_cells(state, task, records)
        return {name: rows for name in OP_INPUTS[self.op] if name != "params" or self.param_cells}

    def edge_cases(self, state, task, records):
        new = [dict(rec) for rec in records]
        if self.op == "flag" and len(records) >= 3:
            threshold = self.params[0]
            for rec, amount in zip(new, (threshold, threshold + 0.01, threshold - 0.01), strict=False):
                rec["n"], rec["x"] = 1, round(amount, 2)
            return [(f"amounts are {threshold:g} and a cent either side", new)]
        if self.op == "lookup" and self.params:  # a table range that misses a row shows only when its code is used
            codes = [code for code, _ in self.params]
            for i, rec in enumerate(new):
                rec["code"] = codes[i % len(codes)]
            return [("every code of the lookup table is used", new)]
        return []

    def expected(self, state, task, records):
        layout = task.layout
        out: dict[Key, Any] = {(layout.sheet, 1, self.col): self.header}
        for r in range(layout.first, layout.last(len(records)) + 1):
            rec = record_at(state, task, records, r)
            out[(layout.sheet, r, self.col)] = (compute(self.op, self.params, rec, records) if rec is not None
                                             else "<row data damaged>")
        return out

    def formula_cells(self, state, task, records):
        return {k for k in self.expected(state, task, records) if k[1] != 1}

    def plan(self, env):
        layout, n, book = env.task.layout, len(env.state.records), env.state.book
        calls = []
        if book.cell_value(layout.sheet, 1, self.col) != self.header:
            calls.append(ToolCall("write_values", {"cells": f"{layout.sheet}!{col_letter(self.col)}1",
                                                   "values": [[self.header]]}))
        formula = self.formula.format(r=layout.first)
        return calls + formula_calls(book, layout.sheet, self.col, layout.first, layout.last(n), formula)


@dataclass
class InPlace(Goal):
    """Clean one column of the table where it is: its cells must hold the clean values (typed, not formulas)."""

    role: str = ""

    def expected(self, state, task, records):
        layout = task.layout
        c = layout.col(self.role)
        out = {}
        for r in range(layout.first, layout.last(len(records)) + 1):
            rec = record_at(state, task, records, r)
            out[(layout.sheet, r, c)] = rec[self.role] if rec is not None else "<row data damaged>"
        return out

    def check(self, state, task, records):
        reasons = super().check(state, task, records)
        for s, r, c in self.expected(state, task, records):
            raw = state.book.raw(s, r, c)
            if isinstance(raw, str) and raw.startswith("="):
                reasons.append(f"{s}!{col_letter(c)}{r} holds a formula; the cleaned value must be typed in place")
        return reasons

    def plan(self, env):
        layout, records, book = env.task.layout, env.state.records, env.state.book
        c = layout.col(self.role)
        want = {r: record_at(env.state, env.task, records, r)[self.role]
                for r in range(layout.first, layout.last(len(records)) + 1)}
        wrong = [r for r, v in want.items() if not same_value(book.raw(layout.sheet, r, c), v)]
        if not wrong:
            return []
        values = [[want[r]] for r in range(wrong[0], wrong[-1] + 1)]  # one write spanning the cells still wrong
        return [ToolCall("write_values", {"cells": f"{layout.sheet}!{col_letter(c)}{wrong[0]}", "values": values})]


@dataclass
class TotalsRow(Goal):
    """A label and aggregate formulas in the row right under the table."""

    label_col: int = 1
    label: str = "Total"
    aggs: tuple = ()  # (col, FUNC, source): source is a role name, or (op, params) of a computed column

    def row(self, records, task) -> int:
        return task.layout.last(len(records)) + 1

    def expected(self, state, task, records):
        layout, row = task.layout, self.row(records, task)
        out: dict[Key, Any] = {(layout.sheet, row, self.label_col): self.label}
        for col, func, source in self.aggs:
            values = [rec[source] if isinstance(source, str) else compute(*source, rec, records) for rec in records]
            out[(layout.sheet, row, col)] = aggregate(func, values)
        return out

    def formula_cells(self, state, task, records):
        layout, row = task.layout, self.row(records, task)
        return {(layout.sheet, row, col) for col, _, _ in self.aggs}

    def inputs(self, state, task, records):
        layout, row, out = task.layout, self.row(records, task), {}
        for col, _, source in self.aggs:
            for name in (source,) if isinstance(source, str) else OP_INPUTS[source[0]]:
                if name != "params":  # a computed column's rate is a constant in its formula
                    out.setdefault(name, set()).add((layout.sheet, row, col))
        return out

    def edge_cases(self, state, task, records):
        where = rows_by_id(state, task)
        at_row = {where[rec["id"]]: i for i, rec in enumerate(records) if rec["id"] in where}
        out = []
        for _, func, source in self.aggs:
            if func not in ("MAX", "MIN") or not isinstance(source, str) or not at_row:
                continue
            values = [rec[source] for rec in records]
            extreme = max(values) + 1 if func == "MAX" else round(min(values) / 2, 2)
            extreme = extreme if extreme != min(values) else min(values) - 1
            for end, row in (("first", min(at_row)), ("last", max(at_row))):
                new = [dict(rec) for rec in records]
                new[at_row[row]][source] = extreme
                word = "largest" if func == "MAX" else "smallest"
                out.append((f"the {end} row holds the {word} {task.layout.header(source)}", new))
        return out

    def plan(self, env):
        layout, records = env.task.layout, env.state.records
        row, last = self.row(records, env.task), layout.last(len(records))
        book, calls = env.state.book, []
        if book.raw(layout.sheet, row, self.label_col) != self.label:
            calls.append(ToolCall("write_values", {"cells": f"{layout.sheet}!{col_letter(self.label_col)}{row}",
                                                   "values": [[self.label]]}))
        for col, func, _ in self.aggs:
            c = col_letter(col)
            formula = f"={func}({c}{layout.first}:{c}{last})"
            if book.raw(layout.sheet, row, col) != formula:
                calls.append(ToolCall("set_formula", {"cell": f"{layout.sheet}!{c}{row}", "formula": formula}))
        return calls


@dataclass
class Summary(Goal):
    """A summary table on its own sheet: one row per category, conditional aggregates in formulas."""

    sheet: str = "Summary"
    cat_header: str = ""
    cats: tuple[str, ...] = ()
    columns: tuple = ()  # (header, FUNC "COUNTIF"/"SUMIF"/"AVERAGEIF", role or None)

    def expected(self, state, task, records):
        out: dict[Key, Any] = {(self.sheet, 1, 1): self.cat_header}
        for j, (header, func, role) in enumerate(self.columns, start=2):
            out[(self.sheet, 1, j)] = header
            for i, cat in enumerate(self.cats, start=2):
                vals = [rec[role] if role else 1 for rec in records if rec["cat"] == cat]
                out[(self.sheet, i, j)] = (float(len(vals)) if func == "COUNTIF" else math.fsum(vals) if func == "SUMIF"
                                           else math.fsum(vals) / len(vals) if vals else XlError("#DIV/0!"))
        for i, cat in enumerate(self.cats, start=2):
            out[(self.sheet, i, 1)] = cat
        return out

    def formula_cells(self, state, task, records):
        return {(self.sheet, i, j) for i in range(2, len(self.cats) + 2) for j in range(2, len(self.columns) + 2)}

    def inputs(self, state, task, records):
        out: dict[str, set[Key]] = {}
        for j, (_, _, role) in enumerate(self.columns, start=2):
            for name in ("cat", role) if role else ("cat",):
                out.setdefault(name, set()).update((self.sheet, i, j) for i in range(2, len(self.cats) + 2))
        return out

    def plan(self, env):
        layout, n, book = env.task.layout, len(env.state.records), env.state.book
        calls = []
        if self.sheet not in book.sheets:
            calls.append(ToolCall("add_sheet", {"name": self.sheet}))
        head = [self.cat_header] + [h for h, _, _ in self.columns]
        labels = {(1, j): h for j, h in enumerate(head, start=1)} | {(i, 1): c for i, c in enumerate(self.cats, 2)}
        if self.sheet not in book.sheets or any(book.raw(self.sheet, r, c) != v for (r, c), v in labels.items()):
            calls.append(ToolCall("write_values", {"cells": f"{self.sheet}!A1",
                                                   "values": [head] + [[c] for c in self.cats]}))
        cat_rng = f"{layout.sheet}!${layout.letter('cat')}${layout.first}:${layout.letter('cat')}${layout.last(n)}"
        for j, (_, func, role) in enumerate(self.columns, start=2):
            if func == "COUNTIF":
                formula = f"=COUNTIF({cat_rng},$A2)"
            else:
                val = f"{layout.sheet}!${layout.letter(role)}${layout.first}:${layout.letter(role)}${layout.last(n)}"
                formula = f"={func}({cat_rng},$A2,{val})"
            calls += formula_calls(book, self.sheet, j, 2, len(self.cats) + 1, formula)
        return calls


def _row_tuple(state, task, r):
    layout = task.layout
    return tuple(state.book.cell_value(layout.sheet, r, layout.col(role)) for role in layout.roles)


def _rec_tuple(task, rec):
    return tuple(rec[role] for role in task.layout.roles)


@dataclass
class Dedupe(Goal):
    """Remove repeated rows (same id), keeping each first occurrence, in the original order (``ordered``; a
    combination with a sort checks the rows through the sort goal instead)."""

    ordered: bool = True

    def expected(self, state, task, records):
        if not self.ordered:
            return {}
        layout = task.layout
        return {(layout.sheet, layout.first + i, layout.col(role)): rec[role]
                for i, rec in enumerate(records) for role in layout.roles}

    def plan(self, env):
        return table_rows(env, self.ordered)


def table_rows(env, ordered: bool) -> list[ToolCall]:
    """Calls that make the data table's rows the records again: type back an id overwritten by mistake (the row's
    other cells still say whose it is); delete repeated rows and empty rows inside the table, bottom up; then put
    back any record a wrong deletion lost, typed in from the records, where it belongs (its place in the original
    order when ``ordered``, else after the other rows, for the sort that follows). A record whose only row is out of
    order is deleted and put back the same way. Nothing when the rows are right."""
    layout, book, records = env.task.layout, env.state.book, env.state.records
    if not records:  # a task from a user's files: no data table
        return []
    index = {rec["id"]: i for i, rec in enumerate(records)}
    seen, drop, rows, blank, unknown = set(), [], [], [], []  # rows: (row, record index), first occurrences
    for r in range(layout.first, book.extent(layout.sheet)[0] + 1):
        v = book.cell_value(layout.sheet, r, layout.col("id"))
        if v in seen:
            drop.append(r)
        elif v is None:
            blank.append(r)
        else:
            seen.add(v)
            if v in index:
                rows.append((r, index[v]))
            else:
                unknown.append(r)
    calls = []
    for r, i in _damaged_ids(env, unknown, [i for i in range(len(records)) if records[i]["id"] not in seen]):
        calls.append(ToolCall("write_values", {"cells": f"{layout.sheet}!{layout.letter('id')}{r}",
                                               "values": [[records[i]["id"]]]}))
        rows.append((r, i))
    rows.sort()
    if rows:  # empty rows inside the table (a stray insert) go too
        drop += [r for r in blank if r < rows[-1][0] and not any(
            book.cell_value(layout.sheet, r, c) is not None for c in range(1, len(layout.roles) + 1))]
    keep = _in_order(rows) if ordered else rows
    drop += sorted({r for r, _ in rows} - {r for r, _ in keep})
    calls += [ToolCall("delete_rows", {"sheet": layout.sheet, "first_row": r, "count": 1})
              for r in sorted(drop, reverse=True)]
    kept = {i for _, i in keep}
    lost = [i for i in range(len(records)) if i not in kept]
    if ordered:  # runs of consecutive records, each at its place: row `first + i` holds record i
        runs = [(run[0], run) for run in _consecutive(lost)]
    else:
        runs = [(len(keep), lost)] if lost else []
    for start, run in runs:
        row = layout.first + start
        calls.append(ToolCall("insert_rows", {"sheet": layout.sheet, "before_row": row, "count": len(run)}))
        calls.append(ToolCall("write_values", {"cells": f"{layout.sheet}!A{row}",
                                               "values": [list(_rec_tuple(env.task, records[i])) for i in run]}))
    return calls


def _damaged_ids(env, unknown: list[int], missing: list[int]) -> list[tuple[int, int]]:
    """``(row, record index)`` for rows whose id is no record's but whose other cells are mostly a missing record's:
    an id overwritten by mistake, to be typed back rather than the record put in again."""
    layout, book, records = env.task.layout, env.state.book, env.state.records
    others = [role for role in layout.roles if role != "id"]
    found = []
    for r in unknown:
        score = {i: sum(same_value(book.cell_value(layout.sheet, r, layout.col(role)), records[i][role])
                        for role in others)
                 for i in missing}
        best = max(score, key=score.get, default=None)
        if best is not None and 2 * score[best] > len(others):
            found.append((r, best))
            missing = [i for i in missing if i != best]
    return found


def _consecutive(numbers: list[int]) -> list[list[int]]:
    """Split ascending ``numbers`` into runs of consecutive ones: [1, 2, 5] -> [[1, 2], [5]]."""
    return [[n for _, n in run] for _, run in itertools.groupby(enumerate(numbers), lambda t: t[1] - t[0])]


def _in_order(rows: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The longest subsequence of ``(row, record index)`` pairs, in row order, whose record indices increase (the
    earliest on ties): the rows that can stay where they are."""
    if all(a[1] < b[1] for a, b in itertools.pairwise(rows)):
        return rows
    best: list[list[tuple[int, int]]] = []  # best[k]: the longest increasing subsequence ending at rows[k]
    for k, (r, i) in enumerate(rows):
        before = [best[j] for j in range(k) if rows[j][1] < i]
        best.append(max(before, key=len, default=[]) + [(r, i)])
    return max(best, key=len, default=[])


@dataclass
class SortRows(Goal):
    """Sort the table's rows by keys (role, descending); rows with equal keys may come in any order."""

    keys: tuple[tuple[str, bool], ...] = ()  # (role, descending)


    def expected(self, state, task, records):
        return {}

    def check(self, state, task, records):
        layout = task.layout
        rows = [_row_tuple(state, task, r) for r in range(layout.first, layout.last(len(records)) + 1)]
        want = sorted(_rec_tuple(task, rec) for rec in records)
        reasons = []
        if sorted(rows, key=repr) != sorted(want, key=repr):
            reasons.append(f"the table's rows {layout.first}-{layout.last(len(records))} are not the original records "
                           f"(a row was changed, lost or duplicated)")
        for a, b in itertools.pairwise(rows):
            if row_compare(a, b, [(layout.roles.index(role), desc) for role, desc in self.keys]) > 0:
                reasons.append(f"rows are not sorted by {self.text}: {a[0]} comes before {b[0]}")
                break
        return reasons

    def plan(self, env):
        layout, n = env.task.layout, len(env.state.records)
        width = col_letter(max(len(layout.roles), env.state.book.extent(layout.sheet)[1]))
        keys = [f"{layout.letter(role)}{' desc' if desc else ''}" for role, desc in self.keys]
        cells = f"{layout.sheet}!A{layout.first}:{width}{layout.last(n)}"
        return [ToolCall("sort_range", {"cells": cells, "keys": keys})]


@dataclass
class CellFormula(Goal):
    """One cell that must hold a (repaired) formula with the right value."""

    key: Key = ("", 0, 0)
    func: str = "SUM"
    role: str = "n"

    def expected(self, state, task, records):
        return {self.key: aggregate(self.func, [rec[self.role] for rec in records])}

    def inputs(self, state, task, records):
        return {self.role: {self.key}}

    def plan(self, env):
        s, r, c = self.key
        layout, n = env.task.layout, len(env.state.records)
        L = layout.letter(self.role)
        formula = f"={self.func}({L}{layout.first}:{L}{layout.last(n)})"
        return [ToolCall("set_formula", {"cell": f"{s}!{col_letter(c)}{r}", "formula": formula})]


@dataclass
class MatchBook(Goal):
    """Make the workbook compute what a goal workbook computes (a task built from a user's two .xlsx files):
    every cell of the goal holds the same value, and cells that hold formulas there must hold formulas here."""

    cells: dict = None  # (sheet, row, col) -> goal value
    formulas: dict = None  # (sheet, row, col) -> goal formula text (what the reference plan writes)
    raws: dict = None  # (sheet, row, col) -> goal raw value for typed cells

    def expected(self, state, task, records):
        return dict(self.cells)

    def formula_cells(self, state, task, records):
        return set(self.formulas)

    def plan(self, env):
        book, calls = env.state.book, []
        for s in sorted({k[0] for k in self.cells} - set(book.sheets)):
            calls.append(ToolCall("add_sheet", {"name": s}))
        for (s, r, c), text in sorted(self.formulas.items()):
            if s not in book.sheets or book.raw(s, r, c) != text:
                calls.append(ToolCall("set_formula", {"cell": f"{s}!{col_letter(c)}{r}", "formula": text}))
        for (s, r, c), v in sorted(self.raws.items(), key=lambda kv: kv[0]):
            if s not in book.sheets or not same_value(book.raw(s, r, c), v) or isinstance(book.raw(s, r, c), str) and (
                    str(book.raw(s, r, c)).startswith("=")):
                calls.append(ToolCall("write_values", {"cells": f"{s}!{col_letter(c)}{r}", "values": [[v]]}))
        return calls


GOAL_TYPES = (MatchBook, NewColumn, InPlace, TotalsRow, Summary, Dedupe, SortRows, CellFormula)
__all__ = ["GOAL_TYPES", "OP_INPUTS", "Goal", "Layout", "aggregate", "compute", "rows_by_id", "same_value", "show"]
