"""Every spreadsheet tool: what it does, and each of its error paths (a ToolError whose message says what to do)."""

from __future__ import annotations

import re

import numpy as np
import pytest

import envs.spreadsheet.env as spreadsheet_env
from envs.core.tools import ToolError
from envs.spreadsheet.env import SheetState, SpreadsheetEnv
from envs.spreadsheet.formulas import XlError
from envs.spreadsheet.templates import generate_task


@pytest.fixture
def env():
    """An env holding task 0 of the computed_column template, set up without the core's reset."""
    e = SpreadsheetEnv()
    task = generate_task(np.random.default_rng(0), "train", 0, template="computed_column")
    e.task, e.state = task, SheetState(task.book.copy(), [dict(r) for r in task.records])
    e._transcript = []
    return e


def sheet(env) -> str:
    return env.task.layout.sheet


def value(env, ref):
    return env.state.book.value(sheet(env), ref)


def contents(env) -> dict:
    """Every cell of every sheet as it is held (formula text, not the compiled formula)."""
    book = env.state.book
    return {(s.name, r, c): book.raw(s.name, r, c) for s in book.sheets.values() for r, c in s.cells}


ERRORS = [
    ("read_range", {"cells": "A1:Z700"}, "read at most"),
    ("read_range", {"cells": "Nope!A1"}, "no sheet named 'Nope'"),
    ("read_range", {"cells": "hello"}, "not a cell or range"),
    ("read_range", {"cells": "A0"}, "not a cell or range"),
    ("find", {"text": "  "}, "text is empty"),
    ("find", {"text": "x", "sheet": "Nope"}, "no sheet named"),
    ("write_values", {"cells": "A1", "values": []}, "non-empty list"),
    ("write_values", {"cells": "A1", "values": [[]]}, "non-empty list"),
    ("write_values", {"cells": "A1:B1", "values": [[1]]}, "same shape"),
    ("write_values", {"cells": "J2", "values": [["=A1"]]}, "use set_formula"),
    ("write_values", {"cells": "J2", "values": [[float("nan")]]}, "not a number"),
    ("write_values", {"cells": "XFD1", "values": [[1, 2]]}, "past the sheet's edge"),
    ("write_values", {"cells": "J2", "values": [["x" * 40_000]]}, "at most 32767"),
    ("set_formula", {"cell": "J2:J3", "formula": "=1"}, "takes one cell"),
    ("set_formula", {"cell": "J2", "formula": "=SUM(A1"}, "expected ',' or ')'"),
    ("set_formula", {"cell": "J2", "formula": "=" + "(" * 70 + "1" + ")" * 70}, "nests deeper than 64"),
    ("set_formula", {"cell": "J2", "formula": "=ROUND()"}, "takes 1 to 2 arguments"),
    ("fill", {"cells": "J2", "direction": "down"}, "nothing to fill"),
    ("fill", {"cells": "J2:J90000", "direction": "down"}, "more than 5000"),
    ("clear_range", {"cells": "Nope!A1:B2"}, "no sheet named"),
    ("insert_rows", {"sheet": "Nope", "before_row": 2}, "no sheet named"),
    ("insert_rows", {"sheet": "{sheet}", "before_row": 0}, "outside the sheet"),
    ("insert_rows", {"sheet": "{sheet}", "before_row": 2, "count": 0}, "between 1 and 1000"),
    ("delete_rows", {"sheet": "{sheet}", "first_row": 2, "count": 5000}, "between 1 and 1000"),
    ("insert_columns", {"sheet": "{sheet}", "before_column": "3"}, "not a column letter"),
    ("delete_columns", {"sheet": "{sheet}", "first_column": "ZZZZ"}, "not a column letter"),
    ("sort_range", {"cells": "A2:G9", "keys": []}, "keys is empty"),
    ("sort_range", {"cells": "A2:G9", "keys": ["Z"]}, "outside"),
    ("sort_range", {"cells": "A2:G9", "keys": ["B sideways"]}, "optionally with ' desc'"),
    ("add_sheet", {"name": "a/b"}, "cannot be a sheet name"),
    ("add_sheet", {"name": " "}, "cannot be a sheet name"),
    ("add_sheet", {"name": "x" * 40}, "cannot be a sheet name"),
    ("add_sheet", {"name": "{sheet_lower}"}, "already exists"),
]


@pytest.mark.parametrize(("name", "args", "message"), ERRORS, ids=[f"{n}-{m}" for n, _, m in ERRORS])
def test_tool_error_paths(env, name, args, message):
    args = {k: v.format(sheet=sheet(env), sheet_lower=sheet(env).lower()) if isinstance(v, str) else v
            for k, v in args.items()}
    before = env.state.book.copy()
    with pytest.raises(ToolError, match=re.escape(message)):
        getattr(env, name)(**args)
    for s in before.sheets.values():  # a failed call changes nothing
        assert env.state.book.sheets[s.name].cells.keys() == s.cells.keys()


def test_unknown_sheet_suggests_the_close_name(env):
    with pytest.raises(ToolError, match=r"did you mean"):
        env.read_range(f"{sheet(env)[:-1]}!A1")


def test_read_range_shows_formulas_results_and_odd_text(env):
    s = sheet(env)
    env.write_values(f"{s}!J2", [["  padded"], ["12"], [3]])
    env.set_formula(f"{s}!J5", "=J4*2")
    out = env.read_range(f"{s}!J1:J5")
    assert '"  padded"' in out and '"12"' in out and "=J4*2 -> 6" in out
    assert out.splitlines()[1] == "row | J"
    assert env.read_range("J:J").count("\n") >= 5  # a whole column is cut to the used rows


def test_write_values_types_values_and_reports_range(env):
    out = env.write_values("J2", [["a", 1.5], [True, None]])
    assert out.endswith(f"to {sheet(env)}!J2:K3")
    assert (value(env, "J2"), value(env, "K2"), value(env, "J3"), value(env, "K3")) == ("a", 1.5, True, None)


def test_set_formula_reports_value_and_error_detail(env):
    assert env.set_formula("J2", "1+2").endswith("=1+2 -> 3")
    out = env.set_formula("J3", "=SUMM(1)")
    assert "#NAME?" in out and "did you mean SUM" in out


def test_fill_down_and_right_move_relative_references(env):
    env.write_values("J2", [[1, 2]])
    env.set_formula("J3", "=J2*$K$2")
    env.fill("J3:J5", "down")
    assert env.state.book.raw(sheet(env), 5, 10) == "=J4*$K$2" and value(env, "J5") == 8.0
    env.fill("J3:L3", "right")
    assert env.state.book.raw(sheet(env), 3, 12) == "=L2*$K$2"


def test_clear_insert_delete_and_formulas_follow(env):
    s = sheet(env)
    env.set_formula("J1", "=SUM(A2:A3)+B3")
    env.insert_rows(s, 3, 2)
    assert env.state.book.raw(s, 1, 10) == "=SUM(A2:A5)+B5"
    env.delete_rows(s, 2, 1)
    assert env.state.book.raw(s, 1, 10) == "=SUM(A2:A4)+B4"
    env.insert_columns(s, "B", 1)
    assert env.state.book.raw(s, 1, 11) == "=SUM(A2:A4)+C4"
    env.delete_columns(s, "A", 1)
    assert env.state.book.raw(s, 1, 10) == "=SUM(#REF!)+B4"
    assert "cleared 1" in env.clear_range("J1:J9")


def test_sort_range_multi_key_with_blanks_last(env):
    env.write_values("J1", [["b", 2], ["a", 5], [None, 9], ["a", 7], ["B", 1]])
    env.sort_range("J1:K5", ["J", "K desc"])
    col = [(value(env, f"J{r}"), value(env, f"K{r}")) for r in range(1, 6)]
    assert col == [("a", 7), ("a", 5), ("b", 2), ("B", 1), (None, 9)]


def test_sort_range_refuses_more_than_100000_cells_of_the_used_range(env):
    env.write_values("XFD1", [["far"]])  # the used range is now 16384 columns wide
    before = contents(env)
    with pytest.raises(ToolError, match="covers 131072 cells of the used range; sort at most 100000"):
        env.sort_range("A2:XFD9", ["A"])
    assert contents(env) == before


def test_find_lists_values_and_formulas(env):
    env.set_formula("J2", "=SUM(A1:A2)")
    assert "J2" in env.find("sum(")
    assert env.find("no such text").startswith("no cell contains")


def test_add_sheet_and_list_sheets(env):
    env.add_sheet("Summary")
    out = env.list_sheets()
    assert "Summary: empty" in out and f"{sheet(env)}: A1:" in out


def test_finish_reads_nothing(env):
    assert "finished" in env.finish()


# -- values a cell cannot hold; what formulas may cost ---------------------------------------------------------------


@pytest.mark.parametrize("number", [10**400, -(10**400), 2**1100, float("inf"), float("-inf")],
                         ids=["1e400", "-1e400", "2^1100", "inf", "-inf"])
def test_write_values_refuses_a_number_no_cell_holds_and_writes_none_of_the_call(env, number):
    before = contents(env)
    with pytest.raises(ToolError, match=r"J3: .*(too large|not a number).*nothing was written"):
        env.write_values("J2", [[1], [number]])
    assert contents(env) == before  # J2 was not written either


def test_numbers_are_stored_as_doubles_so_nothing_overflows_later(env):
    """LibreOffice holds every number as an IEEE double: a big integer becomes the nearest double, and formulas over
    it give #NUM! where the result is past the doubles, instead of raising OverflowError later."""
    env.write_values("J2", [[2**60 + 1], [10**300], [1e308]])
    assert value(env, "J2") == float(2**60) and type(value(env, "J2")) is float
    assert "#NUM!" in env.set_formula("J5", "=J3*J3") and "#NUM!" in env.set_formula("J6", "=J4+J4")
    assert "1E+300" in env.read_range("J2:J6")
    assert isinstance(env.state.book.evaluate_all()[(sheet(env), 5, 10)], XlError)


def test_a_fill_whose_formulas_would_read_too_many_cells_is_refused_before_evaluating(env):
    """The fill of the issue (=SUMPRODUCT(AA1:AA5000,AA1:AA5000) down 5,000 rows: 25M cell reads, ~30 s) at a
    smaller size: refused with the reason, and nothing changed (the version neither, so the plan stays valid)."""
    env.set_formula("AB1", "=SUMPRODUCT(AA1:AA2000,AA1:AA2000)")
    before, version = contents(env), env.state.book.version
    with pytest.raises(ToolError, match=r"refused, nothing was changed: .* would read \d+ cells in all"):
        env.fill("AB1:AB2000")
    assert contents(env) == before and env.state.book.version == version
    assert "filled 9 cell(s)" in env.fill("AB1:AB10")  # a small fill of the same formula is fine


def test_a_value_write_that_stretches_whole_column_ranges_past_the_limit_is_refused(env):
    for r in range(2, 12):
        env.set_formula(f"J{r}", "=SUMPRODUCT(A:A,A:A)")  # cheap while the sheet's used range is a few rows
    with pytest.raises(ToolError, match="would read"):
        env.write_values("A1048576", [[1]])  # every A:A would then cover 1,048,576 cells
    assert value(env, "A1048576") is None


def test_formula_cells_past_the_limit_are_refused(env, monkeypatch):
    monkeypatch.setattr(spreadsheet_env, "MAX_FORMULAS", 12)
    env.set_formula("J2", "=A2")
    before = contents(env)
    with pytest.raises(ToolError, match="would hold 20 formula cells, and at most 12"):
        env.fill("J2:J21")
    assert contents(env) == before
    env.fill("J2:J13")


def test_a_refused_insert_puts_every_cell_and_formula_back(env, monkeypatch):
    """Inserting rows inside ranges grows them; past the limit the insert is undone: cells moved back, formulas on
    every sheet rewritten back."""
    s = sheet(env)
    env.add_sheet("Other")
    env.set_formula("J2", "=SUMPRODUCT(A2:A12,A2:A12)")
    env.set_formula("Other!A1", f"=SUM({s}!A2:A12)+{s}!B9")
    before, work = contents(env), env.state.book.work()
    monkeypatch.setattr(spreadsheet_env, "MAX_FORMULA_READS", work[1] + 10)
    with pytest.raises(ToolError, match="would read"):
        env.insert_rows(s, 5, 100)
    assert contents(env) == before and env.state.book.work() == work
    assert env.state.book.value("Other", "A1") == env.state.book.copy().value("Other", "A1")
    env.insert_rows(s, 5, 1)  # within the limit
    assert env.state.book.raw("Other", 1, 1) == f"=SUM({s}!A2:A13)+{s}!B10"


def test_a_write_with_thousands_of_readers_still_updates_every_one_of_them(env):
    """Past 64 readers a write drops the whole value cache instead of following each reader (which scanned every
    wide range once per reader: 3 s for one cell); what formulas show must be the same either way."""
    env.set_formula("AA2", "=SUM($A$1:$CZ$1)+AA1")  # AA(k) = (k - 1) * SUM(row 1) + AA1
    env.fill("AA2:AA3000")
    env.write_values("AA1", [[1]])
    row_sum = value(env, "AA2") - 1
    assert value(env, "AA3000") == 1 + 2999 * row_sum
    env.write_values("CZ1", [[2]])
    assert value(env, "AA3000") == 1 + 2999 * (row_sum + 2)
