"""The spreadsheet's domain faults: seeded mistakes, a coworker's concurrent edit, and read-backs of writes.

The core draws *whether* a fault fires; these functions decide *what* it does here. Transient errors, rate limits,
write timeouts and stale reads need nothing domain-specific beyond ``read_back``.

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
from typing import TYPE_CHECKING

import numpy as np

from ..core.tools import ToolCall, ToolError
from .formulas import col_letter, parse_ref
from .goals import InPlace, SortRows, rows_by_id
from .plan import reference_plan
from .templates import FIRST, LAST

if TYPE_CHECKING:
    from .env import SpreadsheetEnv

FAULT_KINDS = ("transient_error", "rate_limit", "write_timeout", "stale_read", "concurrent_edit", "seeded_error")
_SHIFTABLE = {"write_values": "cells", "set_formula": "cell", "fill": "cells"}


def _shift_ref(text: str, drow: int, dcol: int) -> str:
    sheet, _, ref = text.rpartition("!")
    box = parse_ref(ref)
    a = f"{col_letter(box.c1 + dcol)}{box.r1 + drow}"
    if not box.is_cell:
        a += f":{col_letter(box.c2 + dcol)}{box.r2 + drow}"
    return f"{sheet}!{a}" if sheet else a


def _run(env: SpreadsheetEnv, call: ToolCall) -> tuple[ToolCall, str]:
    try:
        return call, getattr(env, call.name)(**call.arguments)
    except ToolError as err:  # a mistake can be a failed call too; the transcript shows what the agent saw
        return call, f"error: {err}"


def seed_error(env: SpreadsheetEnv, rng: np.random.Generator) -> tuple[str, str, list[tuple[ToolCall, str]]] | None:
    """Apply one earlier wrong edit; return (kind, description, transcript), or None when the task has none."""
    r = random.Random(int(rng.integers(2**63)))
    plan = reference_plan(env)
    lay = env.task.layout
    read = ToolCall("read_range", {"cells": f"{lay.sheet}!A1:{col_letter(len(lay.roles))}{lay.first + 2}"})
    transcript = [_run(env, read)]
    sort = next((g for g in env.task.goals if isinstance(g, SortRows)), None)
    first = next((c for c in plan if c.name in _SHIFTABLE), None)
    if sort is not None and (first is None or r.random() < 0.5):
        call = next(c for c in plan if c.name == "sort_range")
        wrong_role = r.choice([role for role in lay.roles if role not in {k for k, _ in sort.keys}])
        wrong = ToolCall("sort_range", {"cells": call.arguments["cells"], "keys": [lay.letter(wrong_role)]})
        transcript.append(_run(env, wrong))
        env._transcript = transcript
        return "wrong_sort_key", str(wrong), transcript
    if first is None:
        return None
    kind = r.choice(("shifted_right", "shifted_down"))
    arg = _SHIFTABLE[first.name]
    drow, dcol = (0, 1) if kind == "shifted_right" else (1, 0)
    args = dict(first.arguments)
    args[arg] = _shift_ref(args[arg], drow, dcol)
    if first.name == "set_formula":  # the formula was written for the right cell, so its references are off too
        nxt = plan[plan.index(first) + 1] if plan.index(first) + 1 < len(plan) else None
        if nxt is not None and nxt.name == "fill":
            filled = dict(nxt.arguments)
            filled["cells"] = _shift_ref(filled["cells"], drow, dcol)
            transcript += [_run(env, ToolCall("set_formula", args)), _run(env, ToolCall("fill", filled))]
            env._transcript = transcript
            return kind, f"{ToolCall('set_formula', args)}; {ToolCall('fill', filled)}", transcript
    wrong = ToolCall(first.name, args)
    transcript.append(_run(env, wrong))
    env._transcript = transcript
    return kind, str(wrong), transcript


def concurrent_edit(env: SpreadsheetEnv, rng: np.random.Generator) -> str | None:
    """A coworker changes one record in the table; None when no record can be found in it."""
    r = random.Random(int(rng.integers(2**63)))
    task, state = env.task, env.state
    lay = task.layout
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
    state.book.set_cell(lay.sheet, row, lay.col(role), new)
    note = f"a coworker changed {lay.header(role)} of {rec['id']} ({lay.sheet}!{lay.letter(role)}{row}) to {new!r}"
    state.others.append(note)
    return note


def read_back(env: SpreadsheetEnv, call: ToolCall) -> ToolCall:
    """The read that shows whether ``call`` (a write) took effect."""
    lay = env.task.layout
    target = call.arguments.get("cells") or call.arguments.get("cell")
    if isinstance(target, str):
        try:
            sheet, box = env._range(target)
        except ToolError:
            sheet = None
        if sheet is not None:
            rows = min(box.r2, box.r1 + 39) if box.kind != "rows" else box.r1 + 39
            cols = min(box.c2, box.c1 + 11) if box.kind != "cols" else box.c1 + 11
            if call.name == "write_values":
                values = call.arguments.get("values") or [[None]]
                rows = box.r1 + min(len(values), 40) - 1
                cols = box.c1 + min(max(len(v) for v in values if isinstance(v, list)) if values else 1, 12) - 1
            return ToolCall("read_range", {"cells": f"{sheet}!{col_letter(box.c1)}{box.r1}:{col_letter(cols)}{rows}"})
    if call.name == "add_sheet":
        return ToolCall("list_sheets", {})
    sheet = call.arguments.get("sheet") if isinstance(call.arguments.get("sheet"), str) else lay.sheet
    try:
        name = env._sheet_name(sheet)
    except ToolError:
        name = lay.sheet
    max_r, max_c = env.state.book.extent(name)
    rows = max(1, min(max_r, 40))
    cols = max(1, min(max_c, 12))
    return ToolCall("read_range", {"cells": f"{name}!A1:{col_letter(cols)}{rows}"})
