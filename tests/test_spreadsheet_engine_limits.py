"""The formula engine on hostile input: huge and non-finite numbers, long operator runs, deep trees, huge counts.

Every case is an error *value* or a number, never a Python exception out of the evaluation, and the expected
values are LibreOffice 7.4's (recalculated with ``soffice --headless --convert-to xlsx``; see
docs/spreadsheet-formulas.md).
"""

from __future__ import annotations

import math

import pytest

from envs.spreadsheet.compiler import compile_formula
from envs.spreadsheet.formulas import MAX_DEPTH, FormulaSyntaxError, XlError
from envs.spreadsheet.functions import fsum, integer, num, text_to_number
from envs.spreadsheet.workbook import Workbook

BIG = 1.7976931348623157e308  # LibreOffice reads text past the float range as the largest number


def value(formula: str, cells: dict | None = None):
    wb = Workbook(("S",))
    for ref, raw in (cells or {}).items():
        wb.set_value("S", ref, raw)
    wb.set_value("S", "Z1", formula)
    return wb.value("S", "Z1")


HUGE_NUMBERS = [  # (formula, LibreOffice's value)
    ('=VALUE("1e999")', BIG), ("=PRODUCT(1e308,1e308)", XlError("#NUM!")), ('=INT("1e999")', BIG),
    ("=MOD(1e308,1e-308)", XlError("#VALUE!")), ('=MOD(5,"1e999")', 5.0), ("=MOD(-5,1e308)", XlError("#VALUE!")),
    ("=MOD(1e16,7)", 0.0), ("=MOD(0.3,0.1)", 0.0), ("=MOD(-1,3)", 2.0), ("=MOD(1,-3)", -2.0),
    ("=ROUND(1,-1e10)", XlError("#VALUE!")), ("=ROUND(1,1e10)", XlError("#VALUE!")), ("=ROUND(1.5,-32768)", 0.0),
    ("=ROUND(1.5,32768)", XlError("#VALUE!")), ('=ROUND(2.5,"1e999")', XlError("#VALUE!")),
    ("=ROUND(1234.5,-2.9)", 1200.0), ("=DATE(1e300,1,1)", XlError("#VALUE!")),
    ("=DATE(2024,1e10,1)", XlError("#VALUE!")),
    ("=DATE(2024,1,32768)", XlError("#VALUE!")), ("=DATE(32767,12,31)", 11274306.0), ("=DATE(10000,1,1)", 2958466.0),
    ('=SEARCH("a","abc",1e30)', XlError("#VALUE!")), ('=CHOOSE("1e999",1)', XlError("#VALUE!")),
    ("=CHOOSE(1.9,1,2)", 1.0), ('=REPT("",10^308)', XlError("#VALUE!")), ('=REPT("ab",1e10)', XlError("#VALUE!")),
    ('=REPT("",2^31-1)', ""), ('=LEFT("abc",3e9)', XlError("#VALUE!")), ('=LEFT("abc",1e9)', "abc"),
    ('=MID("abc",1e30,1)', XlError("#VALUE!")), ('=SUBSTITUTE("aaa","a","b",1e30)', XlError("#VALUE!")),
    ('=SUBSTITUTE("aaa","a","b",65536)', "aaa"), ("=INDEX(A1:A2,1e30)", XlError("#VALUE!")),
    ("=VLOOKUP(1,A1:A2,1e30,FALSE)", XlError("#VALUE!")), ("=YEAR(1e300)", XlError("#VALUE!")),
    ("=YEAR(2^31)", XlError("#VALUE!")), ("=YEAR(5e8)", 32767.0), ("=YEAR(-1e6)", -839.0), ("=YEAR(-200000)", 1352.0),
    ("=DAY(2^31-1)", 1.0), ("=YEAR(2^31-1)", -32768.0), ("=POWER(10,400)", XlError("#NUM!")),
    ("=10^308*10", XlError("#NUM!")), ("=1e308+1e308-1e308", XlError("#NUM!")), ("=SUM(1e308,1e308,-1e308)", 1e308),
    ("=SUM(A1:A2)", XlError("#NUM!")), ("=A1+A2", XlError("#NUM!")), ("=AVERAGE(A1:A2)", XlError("#NUM!")),
    ("=SUM(A1:A2 A2)", 1e308), ("=1e999", XlError("#VALUE!")), ("=INT(1e300)", 1e300), ("=SQRT(1e308)", 1e154),
    ('=COUNTIF(A1:A2,">1e999")', 0.0), ('="1e999"+0', BIG), ("=INT(0.99999999999999994)", 1.0),
]


@pytest.mark.parametrize(("formula", "want"), HUGE_NUMBERS)
def test_huge_numbers_answer_as_libreoffice(formula, want):
    got = value(formula, {"A1": 1e308, "A2": 1e308})
    if isinstance(want, float):
        assert type(got) is float and got == pytest.approx(want, rel=1e-15)
    else:
        assert got == want and type(got) is type(want)


def test_every_number_entering_the_engine_is_finite():
    assert text_to_number("1e999") == BIG and text_to_number("-1e999") == -BIG
    with pytest.raises(XlError) as caught:
        num(10**400)  # an integer no float can hold, as a cell could be given one
    assert caught.value.code == "#NUM!"
    with pytest.raises(XlError):
        integer(1e30)
    assert integer(-2.9) == -2 and integer(0.9999999999999999) == 1
    assert fsum([1e308, 1e308, -1e308]) == 1e308 and math.isinf(fsum([1e308, 1e308]))


@pytest.mark.parametrize(("formula", "want"), [
    ("=" + "+".join(["1"] * 1000), 1000.0), ("=" + "+".join(["1"] * 4000), 4000.0),
    ("=" + "-".join(["1"] * 1000), -998.0), ("=" + "*".join(["1"] * 2000), 1.0), ("=1" + "^1" * 2000, 1.0),
    ("=1" + "%" * 1000, 0.0), ("=2" + "%" * 100, 2e-200), ("=2" + "%" * 4000, 0.0),
    ("=LEN(" + "&".join(['"a"'] * 1000) + ")", 1000.0), ("=" + "=".join(["1"] * 1000), True),
    ("=" + "+".join(["A1"] * 2000), 2000.0), ("=" + "+".join(["1*1"] * 1500), 1500.0),
    ("=" + " ".join(["A1"] * 2000), 1.0),
])
def test_long_operator_runs_are_flat_not_recursive(formula, want):
    """LibreOffice computes these; ours raised RecursionError in compile_ast from about 1,000 terms."""
    got = value(formula, {"A1": 1})
    assert got == pytest.approx(want, rel=1e-12) and isinstance(got, bool) == isinstance(want, bool)


def test_the_tree_depth_is_capped_below_the_recursion_limit():
    unit = "1=1&1+1*1^-("  # seven tree levels (=, &, +, *, ^, unary minus, %) per parenthesis
    deep = "=" + unit * 30 + "1" + ")%" * 30  # 30 nestings (Excel allows 64), 210 levels
    with pytest.raises(FormulaSyntaxError, match=f"nested more than {MAX_DEPTH} levels"):
        compile_formula(deep)
    assert value("=" + unit * 20 + "1" + ")%" * 20) is False  # 140 levels: computed


def test_text_results_stop_at_the_cell_limit_and_say_it_is_deliberate():
    got = value('=REPT("ab",16384)')  # LibreOffice builds 32,768 characters; we keep Excel's 32,767 limit
    assert got == XlError("#VALUE!") and got.deliberate and "32767" in got.detail
    assert value('=LEN(REPT("a",32767))') == 32767.0
