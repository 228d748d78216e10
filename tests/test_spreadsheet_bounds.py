"""Bounded work in a step (issue 15, item 2): the reference's re-plan after a long off-plan fill, and a fill of a
long formula. Work is counted (calls of ``rewrite_refs``), never timed."""

from __future__ import annotations

import json

import pytest

import envs.spreadsheet.env as sheet_env
import envs.spreadsheet.workbook as workbook
from envs.core.tools import ToolCall
from envs.spreadsheet.env import MAX_FILL_CHARS, SpreadsheetEnv
from envs.spreadsheet.formulas import rewrite_refs
from envs.spreadsheet.plan import _delete_runs
from envs.spreadsheet.workbook import Formula, Workbook


def J(name, **arguments):
    return json.dumps({"name": name, "arguments": arguments})


@pytest.fixture
def rewrites(monkeypatch):
    """Counts every rewrite of a formula's references, in the workbook and in the fill tool."""
    count = {"n": 0}

    def counted(text, change):
        count["n"] += 1
        return rewrite_refs(text, change)

    monkeypatch.setattr(workbook, "rewrite_refs", counted)
    monkeypatch.setattr(sheet_env, "rewrite_refs", counted)
    return count


def test_replan_after_a_long_fill_rewrites_each_formula_a_bounded_number_of_times(rewrites):
    env = SpreadsheetEnv()
    env.reset(seed=0)
    rows = 1200
    env.step(J("set_formula", cell="A2", formula="=A1"))
    env.step(J("fill", cells=f"A2:A{rows}", direction="down"))
    rewrites["n"] = 0
    call = env.reference_call()
    plan = env._reference_plan()
    deletes = [c for c in plan if c.name == "delete_rows"]
    assert len(deletes) >= rows - 2  # the plan still deletes the repeated rows one call each, bottom up
    # One delete per row on the scratch copy rewrote every remaining formula each time: ~rows**2 / 2 (720,000)
    # rewrites per plan; a shift per run of rows rewrites each formula at most once per 1,000 rows.
    assert rewrites["n"] <= 4 * rows
    assert call.name != "finish"


def test_delete_runs_group_contiguous_bottom_up_deletes_only():
    d = [ToolCall("delete_rows", {"sheet": "S", "first_row": r, "count": 1}) for r in (9, 8, 7, 5, 4)]
    other = ToolCall("write_values", {"cells": "S!A1", "values": [[1]]})
    elsewhere = ToolCall("delete_rows", {"sheet": "T", "first_row": 3, "count": 1})
    out = list(_delete_runs([*d[:3], other, *d[3:], elsewhere]))
    assert [(first, count, len(group)) for first, count, group in out if group] == [(7, 3, 3), (4, 2, 2), (3, 1, 1)]
    assert [count for first, count, group in out if not group] == [other]
    many = [ToolCall("delete_rows", {"sheet": "S", "first_row": r, "count": 1}) for r in range(2500, 0, -1)]
    assert [count for _, count, _ in _delete_runs(many)] == [1000, 1000, 500]  # a delete's limit


def test_one_delete_of_a_run_moves_cells_and_references_like_one_delete_per_row():
    formulas = ["=A5", "=A6", "=A4", "=SUM(A3:A8)", "=SUM(A5:A6)", "=SUM(A6:A9)", "=SUM(A1:A5)", "=A$6+$A7",
                "=SUM(5:6)", "=SUM(A:A)", "=Other!A6", "=SUM(A4:A7)*A9"]

    def book():
        b = Workbook(("Sheet1", "Other"))
        for r in range(1, 12):
            b.set_cell("Sheet1", r, 1, r)
        for i, text in enumerate(formulas, start=1):
            b.set_cell("Sheet1", i, 2, text)
            b.set_cell("Other", i, 1, text.replace("Other!", "Sheet1!"))
        return b

    one_by_one, at_once = book(), book()
    for r in (7, 6, 5):
        one_by_one.shift("Sheet1", "row", r, -1)
    at_once.shift("Sheet1", "row", 5, -3)

    def texts(b):
        return {(s.name, k): (v.text if isinstance(v, Formula) else v) for s in b.sheets.values() for k, v in
                s.cells.items()}

    assert texts(one_by_one) == texts(at_once)
    assert one_by_one.evaluate_all() == at_once.evaluate_all()


@pytest.mark.parametrize("term, terms", [("1", 4_000), ("A1", 1_300)])
def test_a_fill_of_a_long_formula_is_refused_before_any_copy_is_made(rewrites, term, terms):
    env = SpreadsheetEnv()
    env.reset(seed=0)
    env.step(J("set_formula", cell="Z1", formula="=" + "+".join([term] * terms)))
    assert isinstance(env.state.book.sheets["Inventory"].cells[(1, 26)], Formula)  # one long formula is allowed
    before = dict(env.state.book.sheets["Inventory"].cells)
    rewrites["n"] = 0
    obs, *_ = env.step(J("fill", cells="Z1:Z5000", direction="down"))
    assert "refused, nothing was changed" in obs and f"{MAX_FILL_CHARS:,}" in obs
    assert rewrites["n"] == 0  # no copy was rewritten, compiled or evaluated
    assert env.state.book.sheets["Inventory"].cells == before


def test_a_fill_within_the_budget_is_made(rewrites):
    env = SpreadsheetEnv()
    env.reset(seed=0)
    text = "=" + "+".join(["Z1"] * 10)  # 40 characters: 100 copies are 4,000, well within the budget
    env.step(J("set_formula", cell="AA1", formula=text))
    obs, *_ = env.step(J("fill", cells="AA1:AA101", direction="down"))
    assert obs.startswith("filled 100 cell(s)")
    assert rewrites["n"] == 100
