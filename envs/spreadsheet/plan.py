"""The privileged reference plan: the calls that take the *current* state to a state the checker accepts.

The plan is computed by running the tools on a scratch copy of the environment, phase by phase: make the table's
rows the records again (remove repeated and empty rows, put back rows a wrong deletion lost), repair cells that must
not have changed and clear stray cells (a seeded mistake, a misplaced write), then every goal not met yet, then
``finish``. Because it plans from any state, the core can re-plan after a coworker's
edit or a fault; because each goal plans only the cells still wrong (``goals.py``), a re-plan redoes nothing.
"""

from __future__ import annotations

from envs.core.tools import ToolCall
from envs.spreadsheet.checker import damage_reasons, live_check, stray_keys, stray_reasons
from envs.spreadsheet.compiler import Formula
from envs.spreadsheet.formulas import col_letter
from envs.spreadsheet.goals import Dedupe, InPlace, SortRows, rows_by_id, same_value, table_rows


def _runs(keys) -> list[tuple[str, int, int, int]]:
    """Group cells into vertical runs: (sheet, column, first row, last row)."""
    out = []
    for s, r, c in sorted(keys, key=lambda k: (k[0], k[2], k[1])):
        if out and out[-1][0] == s and out[-1][1] == c and out[-1][3] == r - 1:
            out[-1] = (s, c, out[-1][2], r)
        else:
            out.append((s, c, r, r))
    return out


def _rows_move(task) -> bool:
    """Whether the task sorts the table, so records are found by id rather than by their original place."""
    return any(isinstance(g, SortRows) for g in task.goals)


def _repairs(env) -> list[ToolCall]:
    """Restore damaged cells (values typed back, formulas re-set) and clear strays."""
    task, state = env.task, env.state
    book, layout = state.book, task.layout
    want = dict(task.static)
    want.update(((layout.sheet, 1, j), h) for j, h in enumerate(layout.headers, start=1))
    # Each record's row: found by its id where a sort moves rows, else its place (table_rows ran first, so row i
    # holds record i).
    owned = {g.role for g in task.goals if isinstance(g, InPlace)}
    found = rows_by_id(state, task) if _rows_move(task) else None
    for i, rec in enumerate(state.records):
        row = layout.first + i if found is None else found.get(rec["id"])
        for role in layout.roles:
            if role not in owned and row is not None:
                want[(layout.sheet, row, layout.col(role))] = rec[role]
    wrong = {}
    for (s, r, c), v in want.items():
        raw = book.sheets[s].cells.get((r, c)) if s in book.sheets else None
        ok = (raw.text == v) if isinstance(raw, Formula) else same_value(raw, v)
        if not ok:
            wrong[(s, r, c)] = v
    calls = []
    for s in sorted({s for s, _, _ in wrong} - set(book.sheets)):
        calls.append(ToolCall("add_sheet", {"name": s}))
    for s, c, r1, r2 in _runs(wrong):
        values = [[wrong[(s, r, c)]] for r in range(r1, r2 + 1)]
        if any(isinstance(v[0], str) and v[0].startswith("=") for v in values):
            calls += [ToolCall("set_formula", {"cell": f"{s}!{col_letter(c)}{r}", "formula": wrong[(s, r, c)]})
                      for r in range(r1, r2 + 1)]
        else:
            calls.append(ToolCall("write_values", {"cells": f"{s}!{col_letter(c)}{r1}", "values": values}))
    for s, c, r1, r2 in _runs(stray_keys(state, task, state.records)):
        calls.append(ToolCall("clear_range", {"cells": f"{s}!{col_letter(c)}{r1}:{col_letter(c)}{r2}"}))
    return calls


def _goal_met(env, goal) -> bool:
    state, task = env.state, env.task
    if goal.check(state, task, state.records):
        return False
    return not (goal.live and live_check(goal, state, task, state.records))


def _delete_runs(batch: list[ToolCall]):
    """The batch's calls as ``(first_row, count, calls)`` for each run of ``delete_rows`` calls that delete
    contiguous rows of one sheet bottom up (at most 1,000 rows, a delete's limit), ``(None, call, [])`` for any other
    call. The planner deletes repeated rows one call each, bottom up; simulating each of those on the scratch copy
    rewrote every formula once per row (quadratic); deleting the run at once moves cells and references the same."""
    group: list[ToolCall] = []
    first = total = 0
    for call in batch:
        a = call.arguments
        if call.name == "delete_rows" and set(a) == {"sheet", "first_row", "count"}:
            if (group and a["sheet"] == group[0].arguments["sheet"] and a["first_row"] + a["count"] == first
                    and total + a["count"] <= 1_000):
                group.append(call)
                first, total = a["first_row"], total + a["count"]
                continue
            if group:
                yield first, total, group
            group, first, total = [call], a["first_row"], a["count"]
            continue
        if group:
            yield first, total, group
            group = []
        yield None, call, []
    if group:
        yield first, total, group


def reference_plan(env) -> list[ToolCall]:
    """Every call the reference policy makes from the env's current state, ending with ``finish``."""
    twin = env.scratch_copy()  # the tools run on a copy of the state; the episode is untouched
    calls: list[ToolCall] = []

    def run(batch):
        for first, count, group in _delete_runs(batch):
            if group:  # one shift for the whole run: the same rows and references as one delete per row
                twin.delete_rows(sheet=group[0].arguments["sheet"], first_row=first, count=count)
                calls.extend(group)
                continue
            call = count
            getattr(twin, call.name)(**call.arguments)  # a ToolError here is a bug in the planner: let it raise
            calls.append(call)

    run(table_rows(twin, ordered=not _rows_move(env.task)))  # dedupes, too
    run(_repairs(twin))
    for goal in env.task.goals:
        if not isinstance(goal, Dedupe) and not _goal_met(twin, goal):
            run(goal.plan(twin))
    state, task = twin.state, twin.task
    if damage_reasons(state, task, state.records) or stray_reasons(state, task, state.records):
        run(_repairs(twin))
    calls.append(ToolCall("finish", {}))
    return calls
