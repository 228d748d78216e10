"""The checker: a pure function of (final state, task). Reads the state, never changes it.

Components: one per goal (its target cells have the right computed values; for a live goal, formulas that still
give the right values after the data is edited in a *copy* of the workbook), plus ``nothing_damaged`` (cells the
task did not ask to change are as they were, allowing for a coworker's edits) and ``no_stray_cells`` (no helper
cells left behind). Score: the fraction of goals met, or 0 when anything was damaged or left behind.
"""

from __future__ import annotations

from types import SimpleNamespace

from envs.spreadsheet.formulas import Formula, col_letter
from envs.spreadsheet.goals import (
    Dedupe,
    InPlace,
    SortRows,
    rows_by_id,
    same_value,
    show,
)


def check_task(state, task) -> tuple[float, dict[str, bool], list[str]]:
    records = state.records
    components: dict[str, bool] = {}
    reasons: list[str] = []
    for i, goal in enumerate(task.goals, start=1):
        why = goal.check(state, task, records)
        if goal.live and not why:
            why = _live_check(goal, state, task, records)
        components[f"goal{i}_{type(goal).__name__}"] = not why
        reasons += why
    damage = _damage(state, task, records)
    strays = _strays(state, task, records)
    components["nothing_damaged"] = not damage
    components["no_stray_cells"] = not strays
    reasons += damage + strays
    met = sum(components[k] for k in components if k.startswith("goal"))
    score = met / len(task.goals) if not damage and not strays else 0.0
    return score, components, reasons


def _perturbed(state, task, records):
    """A copy of the workbook whose data changed (numbers, codes, categories), with the matching records."""
    lay, book = task.layout, state.book.copy()
    where = rows_by_id(state, task)
    new_records = []
    for i, rec in enumerate(records):
        new = dict(rec)
        new["n"] = rec["n"] + 1 + i % 3
        new["x"] = round(rec["x"] * 1.1 + 0.37, 2)
        if rec["code"] in task.codes:
            new["code"] = task.codes[(task.codes.index(rec["code"]) + 1 + i) % len(task.codes)]
        if rec["cat"] in task.cats and i % 2:
            new["cat"] = task.cats[(task.cats.index(rec["cat"]) + 1) % len(task.cats)]
        new_records.append(new)
        row = where.get(rec["id"])
        if row is not None:
            for role in ("n", "x", "code", "cat"):
                book.set_cell(lay.sheet, row, lay.col(role), new[role])
    return SimpleNamespace(book=book, records=new_records), new_records


def _live_check(goal, state, task, records) -> list[str]:
    if not records:  # a task from a user's files: no data table to vary
        return []
    moved, new_records = _perturbed(state, task, records)
    why = goal.check(moved, task, new_records)
    if not why:
        return []
    return [(f"the results do not follow the data: after the data changes, {why[0]} (use formulas that refer to "
             f"the data, with $ where a reference must not move)")]


def _raw_matches(book, key, want) -> bool:
    s, r, c = key
    if s not in book.sheets:
        return False
    raw = book.sheets[s].cells.get((r, c))
    if isinstance(raw, Formula):
        return isinstance(want, str) and want == raw.text
    return same_value(raw, want)


def _damage(state, task, records) -> list[str]:
    lay, book, out = task.layout, state.book, []
    for key, want in task.static.items():
        if not _raw_matches(book, key, want):
            out.append(f"{key[0]}!{col_letter(key[2])}{key[1]} was changed; it should still be {show(want)}")
    for j, head in enumerate(lay.headers, start=1):
        if not _raw_matches(book, (lay.sheet, 1, j), head):
            out.append(f"the header {lay.sheet}!{col_letter(j)}1 should still be {head!r}")
    if not any(isinstance(g, SortRows) or isinstance(g, Dedupe) and g.ordered for g in task.goals):
        owned = {g.role for g in task.goals if isinstance(g, InPlace)}
        for i, rec in enumerate(records):
            for role in lay.roles:
                key = (lay.sheet, lay.first + i, lay.col(role))
                if role not in owned and not _raw_matches(book, key, rec[role]):
                    out.append(f"{lay.sheet}!{col_letter(key[2])}{key[1]} was changed; it should still be "
                               f"{show(rec[role])}")
    return out[:8]


def stray_keys(state, task, records) -> set:
    """Non-blank cells that are neither the task's targets, nor the table, nor cells that must stay."""
    lay, book = task.layout, state.book
    allowed = set(task.static)
    allowed.update((lay.sheet, 1, j) for j in range(1, len(lay.roles) + 1))
    allowed.update((lay.sheet, r, j) for r in range(lay.first, lay.last(len(records)) + 1)
                   for j in range(1, len(lay.roles) + 1))
    for goal in task.goals:
        allowed.update(goal.expected(state, task, records))
        allowed.update(goal.formula_cells(state, task, records))
    return {(s.name, r, c) for s in book.sheets.values() for (r, c) in s.cells if (s.name, r, c) not in allowed}


def _strays(state, task, records) -> list[str]:
    book = state.book
    return [f"{s}!{col_letter(c)}{r} holds {show(book.raw(s, r, c))}, which the task did not ask for; clear helper "
            f"or misplaced cells" for s, r, c in sorted(stray_keys(state, task, records))][:8]
