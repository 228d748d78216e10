"""The checker: a pure function of (final state, task). Reads the state, never changes it.

Components: one per goal (its target cells have the right computed values; for a live goal, formulas that still
give the right values after the data is edited in a *copy* of the workbook), plus ``nothing_damaged`` (cells the
task did not ask to change are as they were, allowing for a coworker's edits) and ``no_stray_cells`` (no helper
cells left behind). Score: the fraction of goals met, or 0 when anything was damaged or left behind.

The live check (``perturbations``) changes every input the request names, one at a time (each data column a
correct formula reads, and parameter cells such as a rate or a lookup table), to values chosen so that every result
reading the input changes: a formula that types in an input's current value, or a constant, keeps today's result
and fails. The goals' edge cases then catch near misses random data seldom shows (a threshold off by a little, a
range that misses the first or last row, a lookup table that misses a row).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from types import SimpleNamespace

from envs.spreadsheet.compiler import Formula
from envs.spreadsheet.formulas import col_letter
from envs.spreadsheet.goals import (
    Dedupe,
    Goal,
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
            why = live_check(goal, state, task, records)
        components[f"goal{i}_{type(goal).__name__}"] = not why
        reasons += why
    damage = damage_reasons(state, task, records)
    strays = stray_reasons(state, task, records)
    components["nothing_damaged"] = not damage
    components["no_stray_cells"] = not strays
    reasons += damage + strays
    met = sum(components[k] for k in components if k.startswith("goal"))
    score = met / len(task.goals) if not damage and not strays else 0.0
    return score, components, reasons


@dataclass(frozen=True)
class Perturbation:
    """One data change of the live check: ``input`` (a role such as "n", or "params") given a new value in every
    row (every parameter cell), on top of the workbook as it is (``base`` None) or of perturbation ``base``.
    ``state`` is the changed copy of the workbook with ``records``; ``goal`` reads the new parameter values;
    ``unchanged`` lists targets reading the input whose expected value the search could not change (normally none)."""

    input: str
    base: int | None
    state: SimpleNamespace
    records: list
    goal: Goal
    unchanged: frozenset


ROUNDS = 64  # redraws per input; the tests show every template's inputs change every result in a few


def perturbations(goal, state, task, records) -> list[Perturbation]:
    """The data changes a live goal must survive, one per input the request names (``goal.inputs``), in order.

    Each changes one input alone, so a formula that ignores it (or types in its current value) keeps today's
    result, and each is chosen so that every result reading the input changes: values are drawn from a generator
    seeded by the task and the goal, and the rows whose results stayed the same are drawn again. An input that cannot
    change every result from the workbook as it is (a lookup table whose values are all equal) changes on top of the
    previous perturbation instead, which is itself checked."""
    inputs = goal.inputs(state, task, records)
    if not records or not inputs:
        return []
    index = next((i for i, g in enumerate(task.goals) if g is goal), -1)
    out: list[Perturbation] = []
    for name, targets in inputs.items():
        rng = random.Random(f"perturb/{task.template}/{task.split}/{task.task_seed}/{index}/{name}")
        tries = [(None, records, goal)] + ([(len(out) - 1, out[-1].records, out[-1].goal)] if out else [])
        best = None
        for base, base_records, base_goal in tries:
            new_records, new_goal, unchanged = _search(name, targets, state, task, base_records, base_goal, rng)
            if best is None or len(unchanged) < len(best[3]):
                best = (base, new_records, new_goal, unchanged)
            if not unchanged:
                break
        base, new_records, new_goal, unchanged = best
        out.append(Perturbation(name, base, _changed_state(state, task, records, goal, new_records, new_goal),
                                new_records, new_goal, frozenset(unchanged)))
    return out


def _search(name, targets, state, task, base_records, base_goal, rng):
    """New values of input ``name`` (each differs from its base value) that change every target; redraws the rows
    whose targets stayed the same (all rows for a total), keeping the best draw."""
    layout = task.layout
    before = base_goal.expected(state, task, base_records)
    where = rows_by_id(state, task)
    index_of_row = {where[rec["id"]]: i for i, rec in enumerate(base_records) if rec["id"] in where}
    new_records, new_goal, redraw = [dict(rec) for rec in base_records], base_goal, None
    best = None
    for _ in range(ROUNDS):
        if name == "params":
            new_goal = base_goal.with_param_values([_new_number(rng, v) for v in base_goal.param_values()])
        else:
            for i in range(len(new_records)) if redraw is None else sorted(redraw):
                new_records[i][name] = _new_value(rng, name, base_records[i][name], task)
        after = new_goal.expected(state, task, new_records)
        unchanged = {k for k in targets if same_value(after.get(k), before.get(k))}
        if best is None or len(unchanged) < len(best[2]):
            best = ([dict(rec) for rec in new_records], new_goal, unchanged)
        if not unchanged:
            break
        rows = {index_of_row.get(r) if s == layout.sheet else None for s, r, _ in unchanged}
        redraw = None if None in rows else rows
    return best


def _new_value(rng: random.Random, role: str, old, task):
    """A value for a data cell of ``role``, different from ``old``; wide ranges so a threshold can be crossed."""
    for _ in range(100):
        if role == "n":
            v = int(10 ** rng.uniform(0, 3.7)) - 1
        elif role == "x":
            v = max(0.01, round(10 ** rng.uniform(-2, 3.7), 2))
        elif role == "cat":
            v = rng.choice(task.cats + tuple(c for c in ("Other", "Other 2") if c not in task.cats)[:1])
        elif role == "code":
            v = rng.choice(task.codes)
        elif role == "date":
            v = f"{rng.randint(2019, 2027)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        else:
            raise ValueError(f"no perturbation for the role {role!r}")
        if v != old:
            return v
    return old


def _new_number(rng: random.Random, old: float) -> float:
    """A parameter value different from ``old``, within a factor of 10 of it."""
    for _ in range(100):
        v = round(abs(old) * 10 ** rng.uniform(-1, 1), 4) if old else round(rng.uniform(0.01, 10), 2)
        if v != old and v:
            return v
    return old + 1


def _changed_state(state, task, records, goal, new_records, new_goal) -> SimpleNamespace:
    """A copy of the workbook holding ``new_records``' values (each record in its row, found by id) and
    ``new_goal``'s parameter values."""
    layout, book = task.layout, state.book.copy()
    where = rows_by_id(state, task)
    for old, new in zip(records, new_records, strict=True):
        row = where.get(old["id"])
        for role in layout.roles if row is not None else ():
            if new[role] != old[role]:
                book.set_cell(layout.sheet, row, layout.col(role), new[role])
    if new_goal is not goal:
        for (s, r, c), v, was in zip(goal.param_cells, new_goal.param_values(), goal.param_values(), strict=True):
            if v != was and s in book.sheets:
                book.set_cell(s, r, c, v)
    return SimpleNamespace(book=book, records=new_records)


def _describe(name: str, goal, task) -> str:
    layout = task.layout
    if name != "params":
        return f"{layout.header(name)} (column {layout.letter(name)})"
    cells = [f"{s}!{col_letter(c)}{r}" for s, r, c in goal.param_cells]
    return cells[0] if len(cells) == 1 else f"{cells[0]}:{cells[-1].split('!')[1]}"


def live_check(goal, state, task, records) -> list[str]:
    """The first way the goal's formulas fail on changed data: each input changed alone, then the edge cases."""
    if not records:  # a task from a user's files: no data table to vary
        return []
    trials = [(f"after {_describe(p.input, goal, task)} changes", p.state, p.records, p.goal)
              for p in perturbations(goal, state, task, records)]
    trials += [(f"when {what}", _changed_state(state, task, records, goal, new, goal), new, goal)
               for what, new in goal.edge_cases(state, task, records)]
    for when, moved, new_records, moved_goal in trials:
        why = moved_goal.check(moved, task, new_records)
        if why:
            return [(f"the results do not follow the data: {when}, {why[0]} (use formulas that refer to the data, "
                     f"with $ where a reference must not move)")]
    return []


def _raw_matches(book, key, want) -> bool:
    s, r, c = key
    if s not in book.sheets:
        return False
    raw = book.sheets[s].cells.get((r, c))
    if isinstance(raw, Formula):
        return isinstance(want, str) and want == raw.text
    return same_value(raw, want)


def damage_reasons(state, task, records) -> list[str]:
    layout, book, out = task.layout, state.book, []
    for key, want in task.static.items():
        if not _raw_matches(book, key, want):
            out.append(f"{key[0]}!{col_letter(key[2])}{key[1]} was changed; it should still be {show(want)}")
    for j, head in enumerate(layout.headers, start=1):
        if not _raw_matches(book, (layout.sheet, 1, j), head):
            out.append(f"the header {layout.sheet}!{col_letter(j)}1 should still be {head!r}")
    if not any(isinstance(g, SortRows) or isinstance(g, Dedupe) and g.ordered for g in task.goals):
        owned = {g.role for g in task.goals if isinstance(g, InPlace)}
        for i, rec in enumerate(records):
            for role in layout.roles:
                key = (layout.sheet, layout.first + i, layout.col(role))
                if role not in owned and not _raw_matches(book, key, rec[role]):
                    out.append(f"{layout.sheet}!{col_letter(key[2])}{key[1]} was changed; it should still be "
                               f"{show(rec[role])}")
    return out[:8]


def stray_keys(state, task, records) -> set:
    """Non-blank cells that are neither the task's targets, nor the table, nor cells that must stay."""
    layout, book = task.layout, state.book
    allowed = set(task.static)
    allowed.update((layout.sheet, 1, j) for j in range(1, len(layout.roles) + 1))
    allowed.update((layout.sheet, r, j) for r in range(layout.first, layout.last(len(records)) + 1)
                   for j in range(1, len(layout.roles) + 1))
    for goal in task.goals:
        allowed.update(goal.expected(state, task, records))
        allowed.update(goal.formula_cells(state, task, records))
    return {(s.name, r, c) for s in book.sheets.values() for (r, c) in s.cells if (s.name, r, c) not in allowed}


def stray_reasons(state, task, records) -> list[str]:
    book = state.book
    return [f"{s}!{col_letter(c)}{r} holds {show(book.raw(s, r, c))}, which the task did not ask for; clear helper "
            f"or misplaced cells" for s, r, c in sorted(stray_keys(state, task, records))][:8]
