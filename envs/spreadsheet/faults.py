"""The spreadsheet's domain faults: seeded mistakes (and when they are undone) and a coworker's concurrent edit.

The core draws *whether* a fault fires; these functions decide *what* it does here. Transient errors, rate limits,
write timeouts and stale reads need nothing domain-specific beyond the env's ``_read_back``.

Seeded mistakes (the episode starts after an earlier assistant's wrong edit, shown in the prompt's transcript):

- ``shifted_right``: the first write of the right solution went one column to the right (over a neighbouring
  column, or into empty cells that are now stray);
- ``shifted_down``: it went one row down (the first row left undone, one row past the table written);
- ``wrong_sort_key``: the table was sorted by the wrong column (sort tasks).

A coworker's concurrent edit changes the data between the agent's read and its next write: a value in a column
the agent is cleaning (so values typed from a stale read overwrite the coworker's change), otherwise a number
that live formulas must follow. The records (the truth the checker uses) change with it.

The reference plan is a diff from the current state (``plan.py``), so it repairs these without knowing which fired.
"""

from __future__ import annotations

import random

import numpy as np

from ..core import SeededError, ToolCall
from .compiler import Formula
from .formulas import col_letter, parse_ref
from .goals import InPlace, SortRows, rows_by_id
from .templates import FIRST, LAST, SheetTask
from .workbook import Workbook

_SHIFTABLE = {"write_values": "cells", "set_formula": "cell", "fill": "cells"}


def _shift_ref(text: str, drow: int, dcol: int) -> str:
    sheet, _, ref = text.rpartition("!")
    box = parse_ref(ref)
    a = f"{col_letter(box.c1 + dcol)}{box.r1 + drow}"
    if not box.is_cell:
        a += f":{col_letter(box.c2 + dcol)}{box.r2 + drow}"
    return f"{sheet}!{a}" if sheet else a


def seed_error(task: SheetTask, plan: list[ToolCall], rng: np.random.Generator) -> SeededError | None:
    """One earlier wrong edit, made from the start's reference ``plan`` (after a read of the table's top), or None
    when the task has none."""
    r = random.Random(int(rng.integers(2**63)))
    layout = task.layout
    read = ToolCall("read_range", {"cells": f"{layout.sheet}!A1:{col_letter(len(layout.roles))}{layout.first + 2}"})
    sort = next((g for g in task.goals if isinstance(g, SortRows)), None)
    first = next((c for c in plan if c.name in _SHIFTABLE), None)
    if sort is not None and (first is None or r.random() < 0.5):
        call = next(c for c in plan if c.name == "sort_range")
        wrong_role = r.choice([role for role in layout.roles if role not in {k for k, _ in sort.keys}])
        wrong = ToolCall("sort_range", {"cells": call.arguments["cells"], "keys": [layout.letter(wrong_role)]})
        return SeededError("wrong_sort_key", [wrong], [read])
    if first is None:
        return None
    kind = r.choice(("shifted_right", "shifted_down"))
    arg = _SHIFTABLE[first.name]
    drow, dcol = (0, 1) if kind == "shifted_right" else (1, 0)
    args = dict(first.arguments)
    args[arg] = _shift_ref(args[arg], drow, dcol)
    wrong = [ToolCall(first.name, args)]
    after = plan.index(first) + 1
    if first.name == "set_formula" and after < len(plan) and plan[after].name == "fill":
        filled = dict(plan[after].arguments)  # the formula was written for the right cell: its references are off too
        filled["cells"] = _shift_ref(filled["cells"], drow, dcol)
        wrong.append(ToolCall("fill", filled))
    return SeededError(kind, wrong, [read])


Cell = tuple[str, int, int]


def cell_content(book: Workbook, key: Cell) -> tuple | None:
    """What a cell holds, comparable across copies: ``("=", formula text)``, ``("v", value)``, or None if empty."""
    sheet = book.sheets.get(key[0])
    raw = sheet.cells.get(key[1:]) if sheet is not None else None
    return None if raw is None else ("=", raw.text) if isinstance(raw, Formula) else ("v", raw)


def mistaken_cells(start: Workbook, seeded: Workbook, solved: Workbook) -> dict[Cell, tuple | None]:
    """The cells a seeded mistake made wrong, with what it left there: changed from the start, and not to what the
    reference's solution from the start has (a shifted formula that happens to be right for its row is no mistake)."""
    keys = {(s.name, r, c) for book in (start, seeded) for s in book.sheets.values() for r, c in s.cells}
    return {k: cell_content(seeded, k) for k in keys
            if cell_content(seeded, k) not in (cell_content(start, k), cell_content(solved, k))}


def seeded_error_undone(book: Workbook, mistaken: dict[Cell, tuple | None]) -> bool:
    """Whether none of the mistake's wrong cells still holds what the mistake left (put back, or done right)."""
    return all(cell_content(book, k) != wrong for k, wrong in mistaken.items())


def concurrent_edit(state, task: SheetTask, rng: np.random.Generator) -> str | None:
    """A coworker changes one record in the table; None when no record can be found in it."""
    r = random.Random(int(rng.integers(2**63)))
    layout = task.layout
    where = rows_by_id(state, task)
    present = [rec for rec in state.records if rec["id"] in where]
    if not present:
        return None
    rec = r.choice(present)
    cleaning = [g.role for g in task.goals if isinstance(g, InPlace)]
    role = r.choice(cleaning) if cleaning else "n"
    old = rec[role]
    if role == "n":
        new = old + r.randint(1, 9)
    elif role == "cat":
        new = r.choice([c for c in task.cats if c != old] or [old])
    else:
        new = f"{r.choice(FIRST)} {r.choice(LAST)}"
    if new == old:
        return None
    rec[role] = new
    row = where[rec["id"]]
    state.book.set_cell(layout.sheet, row, layout.col(role), new)
    where = f"{layout.sheet}!{layout.letter(role)}{row}"
    note = f"a coworker changed {layout.header(role)} of {rec['id']} ({where}) to {new!r}"
    state.others.append(note)
    return note
