"""The spreadsheet checker, table-driven: equivalent solutions pass, typed values fail live goals, damage and
stray cells fail, and the reference plan solves every template from the start (without the core's loop)."""

from __future__ import annotations

import numpy as np
import pytest

from envs.spreadsheet.checker import check_task
from envs.spreadsheet.env import SheetState, SpreadsheetEnv
from envs.spreadsheet.formulas import col_letter
from envs.spreadsheet.goals import NewColumn, Summary
from envs.spreadsheet.plan import reference_plan
from envs.spreadsheet.templates import HELDOUT_TEMPLATES, TRAIN_TEMPLATES, generate_task

ALL = TRAIN_TEMPLATES + HELDOUT_TEMPLATES


def fresh(template: str, k: int = 0) -> SpreadsheetEnv:
    env = SpreadsheetEnv()
    split = "heldout" if template in HELDOUT_TEMPLATES else "train"
    task = generate_task(np.random.default_rng([11, k]), split, k, template=template)
    env.task, env.state = task, SheetState(task.book.copy(), [dict(r) for r in task.records])
    env._transcript = []
    return env


def solve(env) -> None:
    for call in reference_plan(env):
        getattr(env, call.name)(**call.arguments)


def score(env) -> tuple[float, list[str]]:
    s, _, reasons = check_task(env.state, env.task)
    return s, reasons


@pytest.mark.parametrize("template", ALL)
def test_start_scores_zero_and_reference_solves(template):
    for k in range(8):
        env = fresh(template, k)
        assert score(env)[0] == 0.0, "a do-nothing episode must not score"
        solve(env)
        assert score(env) == (1.0, [])


def test_there_are_at_least_twelve_templates_and_splits_are_disjoint():
    assert len(ALL) >= 12 and not set(TRAIN_TEMPLATES) & set(HELDOUT_TEMPLATES)


def column_goal(env) -> NewColumn:
    return next(g for g in env.task.goals if isinstance(g, NewColumn))


def test_equivalent_formula_is_equally_right():
    env = fresh("computed_column")
    solve(env)
    goal, layout = column_goal(env), env.task.layout
    n, x, c = layout.letter("n"), layout.letter("x"), goal.col
    s = layout.sheet
    for r in range(layout.first, layout.last(len(env.state.records)) + 1):
        text = env.state.book.raw(s, r, c)
        swapped = f"={x}{r}*{n}{r}" if goal.op == "product" else text.replace(f"{n}{r}*{x}{r}", f"{x}{r}*{n}{r}")
        env.state.book.set_cell(s, r, c, swapped)
    assert score(env) == (1.0, [])


def test_lookup_by_index_match_is_equally_right():
    env = fresh("lookup_column", 3)
    solve(env)
    goal, layout = column_goal(env), env.task.layout
    sheet = next(s for s in env.state.book.sheets if s != layout.sheet)
    k = len(env.task.codes) + 1
    for r in range(layout.first, layout.last(len(env.state.records)) + 1):
        env.state.book.set_cell(layout.sheet, r, goal.col,
                                f"=INDEX({sheet}!B2:B{k},MATCH({layout.letter('code')}{r},{sheet}!A2:A{k},0))")
    assert score(env) == (1.0, [])


def test_typed_values_fail_a_live_goal():
    env = fresh("computed_column")
    solve(env)
    goal, layout = column_goal(env), env.task.layout
    for r in range(layout.first, layout.last(len(env.state.records)) + 1):
        env.state.book.set_cell(layout.sheet, r, goal.col, env.state.book.cell_value(layout.sheet, r, goal.col))
    s, reasons = score(env)
    assert s == 0.0 and any("must be a live formula" in why for why in reasons)


def test_constant_formulas_fail_the_data_change_test():
    env = fresh("summary_table", 2)
    solve(env)
    goal = next(g for g in env.task.goals if isinstance(g, Summary))
    for i in range(2, len(goal.cats) + 2):  # =3 instead of =COUNTIF(...): right value today, wrong tomorrow
        env.state.book.set_cell(goal.sheet, i, 2, f"={env.state.book.cell_value(goal.sheet, i, 2):g}")
    s, reasons = score(env)
    assert s == 0.0 and any("do not follow the data" in why for why in reasons)


def test_relative_reference_that_should_be_absolute_fails():
    env = fresh("fix_absolute_ref", 1)
    s, reasons = score(env)
    assert s == 0.0 and reasons


@pytest.mark.parametrize(("edit", "reason"), [
    (lambda env, layout: env.state.book.set_cell(layout.sheet, layout.first + 1, layout.col("x"), 0.5), "was changed"),
    (lambda env, layout: env.state.book.set_cell(layout.sheet, 1, 1, "ID"), "header"),
    (lambda env, layout: env.state.book.set_cell(layout.sheet, 40, 3, "note"), "did not ask for"),
    (lambda env, layout: env.state.book.add_sheet("Scratch") and env.state.book.set_cell("Scratch", 1, 1, 1),
     "did not ask for"),
])
def test_damage_and_stray_cells_score_zero(edit, reason):
    env = fresh("computed_column", 4)
    solve(env)
    edit(env, env.task.layout)
    s, reasons = score(env)
    assert s == 0.0 and any(reason in why for why in reasons)


def test_empty_extra_sheet_is_not_damage():
    env = fresh("computed_column", 5)
    solve(env)
    env.add_sheet("Notes")
    assert score(env) == (1.0, [])


def test_partial_credit_for_multi_step_tasks():
    env = fresh("computed_column+totals_row", 1)
    plan = reference_plan(env)
    first_goal_calls = 3 if plan[0].name == "write_values" else 2
    for call in plan[:first_goal_calls]:
        getattr(env, call.name)(**call.arguments)
    assert score(env)[0] == 0.5


def test_sorted_ties_may_come_in_any_order():
    env = fresh("sort_multi", 2)
    solve(env)
    assert score(env)[0] == 1.0
    layout = env.task.layout
    first, second = layout.first, layout.first + 1
    row_a = [env.state.book.raw(layout.sheet, first, c) for c in range(1, len(layout.roles) + 1)]
    row_b = [env.state.book.raw(layout.sheet, second, c) for c in range(1, len(layout.roles) + 1)]
    for c, (a, b) in enumerate(zip(row_a, row_b, strict=True), start=1):  # swap two rows: order now wrong or a tie
        env.state.book.set_cell(layout.sheet, first, c, b)
        env.state.book.set_cell(layout.sheet, second, c, a)
    keys = [layout.roles.index(role) for role, _ in next(g for g in env.task.goals if hasattr(g, "keys")).keys]
    tie = all(row_a[i] == row_b[i] for i in keys)
    assert (score(env)[0] == 1.0) == tie


def test_task_from_a_users_own_xlsx_files():
    import io

    from envs.spreadsheet.templates import task_from_xlsx
    from envs.spreadsheet.xlsx import to_xlsx

    env = fresh("lookup_column", 2)
    start = to_xlsx(env.state.book)
    solve(env)
    goal = to_xlsx(env.state.book)
    user = SpreadsheetEnv()
    task = task_from_xlsx(io.BytesIO(start), io.BytesIO(goal), "Add the lookup column.")
    user.task, user.state = task, SheetState(task.book.copy(), [])
    user._transcript = []
    assert score(user)[0] == 0.0
    solve(user)
    assert score(user) == (1.0, [])
    layout = env.task.layout
    col = column_goal(env).col
    book = user.state.book
    book.set_cell(layout.sheet, layout.first, col, book.cell_value(layout.sheet, layout.first, col))
    s, reasons = score(user)
    assert s == 0.0 and "must be a live formula" in reasons[0]


def test_a_users_xlsx_task_runs_through_gymnasium_make(tmp_path):
    import gymnasium

    import envs  # noqa: F401
    from envs.core import FaultConfig
    from envs.spreadsheet import task_from_xlsx
    from envs.spreadsheet.xlsx import to_xlsx

    env = fresh("computed_column", 4)
    to_xlsx(env.state.book, tmp_path / "start.xlsx")
    solve(env)
    to_xlsx(env.state.book, tmp_path / "goal.xlsx")
    task = task_from_xlsx(tmp_path / "start.xlsx", tmp_path / "goal.xlsx", env.task.message)
    user = gymnasium.make("recoverygym/Spreadsheet-v0", tasks=[task], faults=FaultConfig(transient_error=0.3))
    for k in range(3):
        obs, info = user.reset(seed=k, options={"task_seed": k})
        assert env.task.message in obs and info["required_steps"] > 1
        while True:
            obs, reward, terminated, truncated, info = user.step(user.unwrapped.reference_action())
            if terminated or truncated:
                break
        assert terminated and reward == 1.0, info["reasons"]
    idle = gymnasium.make("recoverygym/Spreadsheet-v0", tasks=[task])
    idle.reset(seed=0)
    _, reward, terminated, _, info = idle.step('{"name": "finish", "arguments": {}}')
    assert terminated and reward == 0.0 and not info["success"]
    with pytest.raises(ValueError, match="task_from_xlsx"):
        gymnasium.make("recoverygym/Spreadsheet-v0", tasks=[])


def _hard_code_rate(env, goal):  # =ROUND(F2*(1+0.15),2) instead of $K$1: right today, wrong when K1 changes
    (s, r, c), = goal.param_cells
    rate = env.state.book.cell_value(s, r, c)
    return {k: env.state.book.raw(*k).replace(f"${col_letter(c)}${r}", f"{rate:g}") for k in _rows(env, goal)}


def _hard_code_table(env, goal):  # IF(code="P-101",0.05,IF(...)): the table's values typed into the formula
    layout, text = env.task.layout, '"?"'
    for code, value in goal.params:
        text = f'IF({{c}}="{code}",{value:g},{text})'
    return {k: "=" + text.format(c=f"{layout.letter('code')}{k[1]}") for k in _rows(env, goal)}


def _constants(env, goal):
    return {k: f'="{env.state.book.cell_value(*k)}"' for k in _rows(env, goal)}


def _rows(env, goal):
    return sorted(goal.formula_cells(env.state, env.task, env.state.records))


@pytest.mark.parametrize(("template", "k", "edit", "changed"), [
    ("fix_absolute_ref", 0, _hard_code_rate, lambda env, goal: f"after {env.task.layout.sheet}!"),
    ("lookup_column", 1, _hard_code_table, lambda env, goal: f"after {goal.param_cells[0][0]}!B2:B"),
    ("conditional_flag", 18, _constants, lambda env, goal: "changes"),  # the old single change flipped no flag
    ("conditional_flag", 24, _constants, lambda env, goal: "changes"),
])
def test_a_formula_that_types_in_an_input_fails_naming_the_input(template, k, edit, changed):
    env = fresh(template, k)
    solve(env)
    goal = column_goal(env)
    for key, text in edit(env, goal).items():
        env.state.book.set_cell(*key, text)
    s, reasons = score(env)
    assert s == 0.0 and reasons[0].startswith("the results do not follow the data: ") and changed(env, goal) in (
        reasons[0]), reasons
