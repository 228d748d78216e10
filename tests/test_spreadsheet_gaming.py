"""Checker gaming, table-driven over every template and both splits: the reference's formulas pass; the same
formulas with any input reference hard-coded to its current value, constant formulas of today's results, and typed
values fail; and each of the checker's data changes changes every result that reads the changed input.

The hard-coded variants are built generically from the reference's formula text (``tokenize``/``parse_ref``): a
single-cell reference becomes its current value; a range becomes the value of the innermost call that reads it.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from envs.spreadsheet.checker import check_task, perturbations
from envs.spreadsheet.compiler import Formula
from envs.spreadsheet.env import SheetState, SpreadsheetEnv
from envs.spreadsheet.formulas import XlError, col_letter, parse_ref, tokenize
from envs.spreadsheet.goals import same_value
from envs.spreadsheet.plan import reference_plan
from envs.spreadsheet.templates import HELDOUT_TEMPLATES, TRAIN_TEMPLATES, generate_task

ALL = TRAIN_TEMPLATES + HELDOUT_TEMPLATES
SPLITS = ("train", "heldout")
SEEDS = range(4)


def solved(template: str, split: str, k: int) -> SpreadsheetEnv:
    env = SpreadsheetEnv()
    task = generate_task(np.random.default_rng([23, len(split), k]), split, k, template=template)
    env.task, env.state = task, SheetState(task.book.copy(), [dict(r) for r in task.records])
    env._transcript = []
    for call in reference_plan(env):
        getattr(env, call.name)(**call.arguments)
    return env


def live_goals(env):
    return [(i, g) for i, g in enumerate(env.task.goals, start=1) if g.live]


def literal(v) -> str:
    """Formula text for a value, as a user would type it into the formula."""
    if isinstance(v, bool):
        return "TRUE" if v else "FALSE"
    if isinstance(v, float | int):
        return repr(float(v)) if v >= 0 else f"({float(v)!r})"
    if v is None:
        return "0"
    if isinstance(v, XlError):
        return v.code
    return '"' + str(v).replace('"', '""') + '"'


def _call_span(tokens, j: int) -> tuple[int, int]:
    """Token indices (first, last) of the innermost function call whose parentheses enclose token ``j``."""
    depth = 0
    for i in range(j - 1, -1, -1):
        kind, text = tokens[i]
        if text == ")":
            depth += 1
        elif text == "(":
            if depth == 0:
                start = i - 1 if i > 0 and tokens[i - 1][0] == "func" else i
                break
            depth -= 1
    else:
        return 0, len(tokens) - 1
    depth = 0
    for end in range(start + 1, len(tokens)):
        if tokens[end][1] == "(":
            depth += 1
        elif tokens[end][1] == ")":
            depth -= 1
            if depth == 0:
                return start, end
    return start, len(tokens) - 1


def hard_coded(book, key, text: str, which: set[int] | None, own: set) -> str:
    """``text`` with input references (those not pointing into the goal's ``own`` cells) hard-coded; ``which``
    picks the input references by index (None: all of them)."""
    sheet = key[0]
    tokens = tokenize(text[1:])
    refs = []
    for j, (kind, tok) in enumerate(tokens):
        if kind == "ref":
            box = parse_ref(tok, sheet)
            cells = {(box.sheet, r, c) for r in range(box.r1, min(box.r2, 200) + 1)
                     for c in range(box.c1, min(box.c2, 50) + 1)}
            if not cells & own:
                refs.append((j, box))
    replace: dict[tuple[int, int], str] = {}
    for n, (j, box) in enumerate(refs):
        if which is not None and n not in which:
            continue
        if box.is_cell:
            span, value = (j, j), book.cell_value(box.sheet, box.r1, box.c1)
        else:  # the innermost call that reads the range, evaluated where the formula is
            span = _call_span(tokens, j)
            probe = book.copy()
            probe.set_cell(*key, "=" + "".join(t for _, t in tokens[span[0]:span[1] + 1]))
            value = probe.cell_value(*key)
        if not any(a <= span[0] and span[1] <= b for a, b in replace):
            replace = {s: t for s, t in replace.items() if not (span[0] <= s[0] and s[1] <= span[1])}
            replace[span] = literal(value)
    out, i = [], 0
    for (a, b), lit in sorted(replace.items()):
        out += [t for _, t in tokens[i:a]] + [lit]
        i = b + 1
    out += [t for _, t in tokens[i:]]
    return "=" + "".join(out)


def formula_cells(env, goal) -> dict:
    book = env.state.book
    keys = goal.formula_cells(env.state, env.task, env.state.records)
    return {k: book.raw(*k) for k in sorted(keys) if isinstance(book.sheets[k[0]].cells.get(k[1:]), Formula)}


def variants(env, goal):
    """(name, {cell: new raw}) for every gaming variant of one goal's solved cells."""
    book, cells = env.state.book, formula_cells(env, goal)
    own = set(goal.expected(env.state, env.task, env.state.records)) | set(cells)
    yield "typed values", {k: book.cell_value(*k) for k in cells}
    yield "constant formulas", {k: "=" + literal(book.cell_value(*k)) for k in cells}
    yield "every input hard-coded", {k: hard_coded(book, k, t, None, own) for k, t in cells.items()}
    n_refs = max(len([1 for kind, tok in tokenize(t[1:]) if kind == "ref"]) for t in cells.values())
    for n in range(n_refs):
        changed = {k: hard_coded(book, k, t, {n}, own) for k, t in cells.items()}
        changed = {k: t for k, t in changed.items() if t != cells[k]}
        if changed:
            yield f"input reference {n + 1} hard-coded", changed


CASES = [(t, s, k) for t in ALL for s in SPLITS for k in SEEDS]


@pytest.mark.parametrize("template", ALL)
def test_reference_passes_and_every_gaming_variant_fails(template):
    tried = 0
    for split in SPLITS:
        for k in SEEDS:
            env = solved(template, split, k)
            score, _, reasons = check_task(env.state, env.task)
            assert (score, reasons) == (1.0, []), (split, k)
            for i, goal in live_goals(env):
                for name, change in variants(env, goal):
                    trial = env.state.copy()
                    for key, raw in change.items():
                        trial.book.set_cell(*key, raw)
                    score, components, reasons = check_task(trial, env.task)
                    component = f"goal{i}_{type(goal).__name__}"
                    assert not components[component] and score < 1.0, (
                        f"{template} {split} task {k}: {name} passes ({next(iter(change.values()))!r})")
                    tried += 1
    live = any(g.live for g in solved(template, "train", 0).task.goals)
    assert tried > 0 or not live


@pytest.mark.parametrize("template", ALL)
def test_each_data_change_changes_every_result_that_reads_it(template):
    for split in SPLITS:
        for k in SEEDS:
            env = solved(template, split, k)
            state, task, records = env.state, env.task, env.state.records
            for _, goal in live_goals(env):
                inputs = goal.inputs(state, task, records)
                steps = perturbations(goal, state, task, records)
                assert [p.input for p in steps] == list(inputs), "every named input is changed, in turn"
                for p in steps:
                    base = steps[p.base] if p.base is not None else None
                    base_goal, base_records = (base.goal, base.records) if base else (goal, records)
                    before = base_goal.expected(state, task, base_records)
                    after = p.goal.expected(p.state, task, p.records)
                    same = [key for key in inputs[p.input] if same_value(after[key], before[key])]
                    assert not same, f"{template} {split} task {k}: changing {p.input} leaves {same[:3]} as they were"
                    if p.input == "params":
                        assert all(a != b for a, b in zip(p.goal.param_values(), base_goal.param_values(),
                                                          strict=True))
                    else:
                        assert all(a[p.input] != b[p.input] for a, b in zip(p.records, base_records, strict=True))


def _shift_end(text: str, end: str) -> str:
    """A range's first row one lower (``first``) or its last row one higher (``last``): it misses a table row."""
    if end == "first":
        return re.sub(r"\(([A-Z$]+)(\d+):", lambda m: f"({m.group(1)}{int(m.group(2)) + 1}:", text, count=1)
    return re.sub(r":([A-Z$]+)(\d+)\)", lambda m: f":{m.group(1)}{int(m.group(2)) - 1})", text, count=1)


def _scale_threshold(factor: float):
    return lambda text: re.sub(r">([\d.]+)", lambda m: f">{float(m.group(1)) * factor:g}", text)


# Near misses a policy optimiser would keep if they paid: (template, what, goal type, which cells, rewrite).
NEAR_MISSES = [
    ("totals_row", "MAX/MIN missing the table's first row", "TotalsRow", {"MAX", "MIN"},
     lambda t: _shift_end(t, "first")),
    ("totals_row", "MAX/MIN missing the table's last row", "TotalsRow", {"MAX", "MIN"},
     lambda t: _shift_end(t, "last")),
    ("conditional_flag", "threshold 10% too high", "NewColumn", None, _scale_threshold(1.1)),
    ("conditional_flag", "threshold 10% too low", "NewColumn", None, _scale_threshold(0.9)),
    ("conditional_flag", ">= where the request says more than", "NewColumn", None, lambda t: t.replace(">", ">=")),
    ("lookup_column", "a lookup table missing its last row", "NewColumn", None,
     lambda t: re.sub(r"\$B\$(\d+)", lambda m: f"$B${int(m.group(1)) - 1}", t)),
]


@pytest.mark.parametrize(("template", "what", "kind", "funcs", "rewrite"), NEAR_MISSES,
                         ids=[f"{t}: {w}" for t, w, *_ in NEAR_MISSES])
def test_near_miss_formulas_fail(template, what, kind, funcs, rewrite):
    split = "heldout" if template in HELDOUT_TEMPLATES else "train"
    tried = 0
    for k in range(12):
        env = solved(template, split, k)
        i, goal = next((i, g) for i, g in live_goals(env) if type(g).__name__ == kind)
        cells = formula_cells(env, goal)
        if funcs is not None:
            cells = {key: t for key, t in cells.items() if t[1:].split("(")[0] in funcs}
        trial = env.state.copy()
        for key, text in cells.items():
            trial.book.set_cell(*key, rewrite(text))
        if not cells:
            continue
        _, components, reasons = check_task(trial, env.task)
        assert not components[f"goal{i}_{kind}"], f"task {k}: {what} passes ({rewrite(next(iter(cells.values())))})"
        tried += 1
    assert tried >= 4


SINGLE_LIVE = [t for t in TRAIN_TEMPLATES + HELDOUT_TEMPLATES
               if "+" not in t and any(g.live for g in solved(t, "train", 0).task.goals)]


@pytest.mark.parametrize("template", SINGLE_LIVE)
def test_an_episode_that_types_todays_results_as_constant_formulas_earns_nothing(template):
    """Through the env's own step(): copy the reference's results as ``="high"``-style constants, then finish."""
    split = "heldout" if template in HELDOUT_TEMPLATES else "train"
    for k in range(3):
        task = generate_task(np.random.default_rng([29, k]), split, k, template=template)
        ref, env = SpreadsheetEnv(tasks=[task]), SpreadsheetEnv(tasks=[task])
        ref.reset(seed=0, options={"task_seed": 0})
        while True:
            _, reward, terminated, truncated, _ = ref.step(ref.reference_action())
            if terminated or truncated:
                break
        assert reward == 1.0
        env.reset(seed=0, options={"task_seed": 0})
        start = env.state.book
        for s, sheet in ref.state.book.sheets.items():
            if s not in start.sheets:
                env.step(json.dumps({"name": "add_sheet", "arguments": {"name": s}}))
            for (r, c), raw in sorted(sheet.cells.items()):
                cell = f"{s}!{col_letter(c)}{r}"
                if isinstance(raw, Formula):
                    value = ref.state.book.cell_value(s, r, c)
                    action = {"name": "set_formula", "arguments": {"cell": cell, "formula": "=" + literal(value)}}
                elif s not in start.sheets or start.raw(s, r, c) != raw:
                    action = {"name": "write_values", "arguments": {"cells": cell, "values": [[raw]]}}
                else:
                    continue
                env.step(json.dumps(action))
        _, reward, terminated, _, info = env.step(json.dumps({"name": "finish", "arguments": {}}))
        assert terminated and reward == 0.0 and any("do not follow the data" in why for why in info["reasons"]), (
            k, reward, info["reasons"])
