"""The spreadsheet formula engine: values, errors, limits, hostile formulas, structure edits, .xlsx round trips.

Expected values here are LibreOffice's (checked against soffice by scripts/bench_formula_engines.py and
tests/test_spreadsheet_libreoffice.py).
"""

from __future__ import annotations

import io
import pickle
import re

import pytest

from envs.spreadsheet.compiler import compile_formula
from envs.spreadsheet.formulas import (
    FormulaSyntaxError,
    XlError,
    rewrite_refs,
)
from envs.spreadsheet.workbook import Workbook, move_box
from envs.spreadsheet.xlsx import from_xlsx, to_xlsx


def book_with(cells: dict[str, object], sheets=("S", "T")) -> Workbook:
    wb = Workbook(sheets)
    for ref, raw in cells.items():
        sheet, _, addr = ref.rpartition("!")
        wb.set_value(sheet or sheets[0], addr, raw)
    return wb


DATA = {"A1": 3, "A2": 7, "A3": "12", "A4": None, "A5": 1.5, "B1": "East", "B2": "west", "B3": "East ",
        "B4": "North", "B5": "east", "C1": "  alice  smith ", "T!A1": "k1", "T!B1": 10, "T!A2": "k2", "T!B2": 20}

CASES = [
    ("=SUM(A1:A5)", 11.5), ("=SUM(A:A)", 11.5), ('=SUM("3",1)', XlError("#VALUE!")), ("=A3+1", 13.0),
    ("=COUNT(A1:A5)", 3.0), ("=COUNTA(A1:A5)", 4.0), ("=COUNTBLANK(A1:A5)", 1.0), ("=AVERAGE(A1:A5)", 11.5 / 3),
    ('=SUMIF(B1:B5,"east",A1:A5)', 4.5), ('=COUNTIF(B1:B5,"e*")', 3.0), ('=COUNTIF(A1:A5,"12")', 1.0),
    ('=COUNTIF(A1:A5,">=3")', 2.0), ('=SUMIFS(A1:A5,B1:B5,"<>North",A1:A5,">2")', 10.0),
    ('=COUNTIF(A1:A5,"")', 1.0), ("=MIN(A1:A5)", 1.5), ("=MAX(B1:B5)", 0.0), ("=ROUND(2.675,2)", 2.68),
    ("=ROUND(1.005,2)", 1.01), ("=ROUND(-2.5,0)", -3.0), ("=ROUNDDOWN(-2.39,1)", -2.3), ("=-2^2", 4.0),
    ("=2^3^2", 64.0), ("=10%", 0.1), ("=0.1+0.2=0.3", True), ('="a"&1&TRUE', "a11"), ("=1/0", XlError("#DIV/0!")),
    ("=#REF!+1", XlError("#REF!")), ('=IFERROR(1/0,"x")', "x"), ('=IF(A4="","blank","full")', "blank"),
    ("=IF(1>2,5)", False), ("=AND(A1>1,A2<10)", True), ("=NOT(A1=3)", False), ("=TRIM(C1)", "alice smith"),
    ("=PROPER(TRIM(C1))", "Alice Smith"), ("=UPPER(B2)", "WEST"), ("=LEN(C1)", 15.0), ('=MID("abcdef",2,3)', "bcd"),
    ('=LEFT("abc",-1)', XlError("#VALUE!")), ('=VALUE(" 3.5 ")', 3.5), ('=VALUE("x")', XlError("#VALUE!")),
    ('=VLOOKUP("k2",T!A1:B2,2,FALSE)', 20.0), ('=VLOOKUP("zz",T!A1:B2,2,FALSE)', XlError("#N/A")),
    ('=VLOOKUP("k1",T!A1:B2,3,FALSE)', XlError("#VALUE!")), ('=INDEX(T!B1:B2,MATCH("k2",T!A1:A2,0))', 20.0),
    ("=DATE(2024,2,29)", 45351.0), ('=YEAR(DATEVALUE("2023-07-04"))', 2023.0), ('="z">5', True),
    ("=T!B1*2", 20.0), ("=SUMPRODUCT(A1:A2,T!B1:B2)", 170.0), ('=REPT("x",100000)', XlError("#VALUE!")),
    ('="1E5"+1', 100001.0), ('="-.5e1"+1', -4.0), ('="E5"+1', XlError("#VALUE!")),
    ('=VALUE("E-14")', XlError("#VALUE!")),
    ("=SUMM(A1)", XlError("#NAME?")), ("=foo", XlError("#NAME?")), ("=A1:A2", XlError("#VALUE!")),
]


@pytest.mark.parametrize(("formula", "want"), CASES)
def test_values_match_libreoffice(formula, want):
    wb = book_with({**DATA, "D1": formula})
    got = wb.value("S", "D1")
    if isinstance(want, float):
        assert got == pytest.approx(want, rel=1e-12)
    else:
        assert got == want and type(got) is type(want)


def test_error_detail_explains():
    wb = book_with({"A1": "=SUMM(1)", "A2": "=1/0"})
    assert "did you mean SUM" in wb.value("S", "A1").detail
    assert wb.value("S", "A2").detail == "division by zero"


@pytest.mark.parametrize(("formula", "message"), [
    ("=" + "(" * 100 + "1" + ")" * 100, "nests deeper than 64"),
    ("=" + "ABS(" * 10_000 + "1" + ")" * 10_000, "characters"),
    ("=" + "+".join(["1"] * 5000), "characters"),
    ("=SUM(1", "expected ',' or ')'"), ("=1+", "expected a value"), ("=", "empty"), ("=1 2", "expected an operator"),
    ("=ROUND()", "takes 1 to 2 arguments"), ("=A1:ZZZZ9", "unexpected"), ("=@A1", "unexpected character"),
    ("=SUM(" + ",".join(["1"] * 300) + ")", "at most 255"),
])
def test_hostile_or_malformed_formulas_are_clear_errors(formula, message):
    with pytest.raises(FormulaSyntaxError, match=re.escape(message)):
        compile_formula(formula)


def test_unary_minus_chain_is_not_recursion():
    wb = book_with({"A1": "=" + "-" * 4000 + "1"})
    assert wb.value("S", "A1") == 1.0


def test_whole_sheet_range_costs_only_filled_cells():
    wb = book_with({"A1": 2, "C9": 3, "T!B2": "=SUM(S!A1:XFD1048576)", "T!B3": '=COUNTIF(S!A1:XFD1048576,"")'})
    assert wb.value("T", "B2") == 5.0
    assert wb.value("T", "B3") == 1_048_576 * 16_384 - 2


@pytest.mark.parametrize("cells", [
    {"A1": "=B1+1", "B1": "=A1+1"}, {"A1": "=A1"}, {"A1": "=SUM(A1:A3)", "A2": 5},
    {"A1": "=T!A1", "T!A1": "=S!A1*2"},
])
def test_circular_references_are_errors(cells):
    wb = book_with(cells)
    v = wb.value("S", "A1")
    assert v == XlError("#VALUE!") and "circular" in v.detail


def test_cells_fed_by_a_cycle_get_its_error_but_others_do_not():
    wb = book_with({"A1": "=B1", "B1": "=A1", "C1": "=A1+1", "D1": "=2*3"})
    assert wb.value("S", "C1") == XlError("#VALUE!")
    assert wb.value("S", "D1") == 6.0


def test_long_dependency_chain_does_not_recurse():
    wb = Workbook(("S",))
    wb.set_cell("S", 1, 1, 1)
    for r in range(2, 20_001):
        wb.set_cell("S", r, 1, f"=A{r - 1}+1")
    assert wb.cell_value("S", 20_000, 1) == 20_000.0
    wb.set_cell("S", 1, 1, 5)  # the edit invalidates the whole chain
    assert wb.cell_value("S", 20_000, 1) == 20_004.0


def test_edits_recompute_only_what_depends_on_them():
    wb = book_with({"A1": 1, "A2": 2, "B1": "=A1*10", "B2": "=A2*10", "C1": "=SUM(B1:B2)",
                    "D1": "=SUMIF(A1:A2,1,B1:B2)"})
    assert (wb.value("S", "C1"), wb.value("S", "D1")) == (30.0, 10.0)
    wb.set_value("S", "A2", 5)
    assert ("S", 1, 2) in wb._values  # B1 does not read A2: kept
    assert (wb.value("S", "B2"), wb.value("S", "C1"), wb.value("S", "D1")) == (50.0, 60.0, 10.0)
    wb.set_value("S", "A1", 2)
    assert (wb.value("S", "C1"), wb.value("S", "D1")) == (70.0, 0.0)


def test_missing_sheet_reference_is_ref_error():
    wb = book_with({"A1": "=Nope!A1+1"})
    assert wb.value("S", "A1") == XlError("#REF!")


def test_fill_style_reference_moves():
    f = "=A2*$B$1+SUM(C$2:C2)+T!D2"
    moved = rewrite_refs(f, lambda b: move_box(b, 3, 1))
    assert moved == "=B5*$B$1+SUM(D$2:D5)+T!E5"
    assert rewrite_refs("=A1", lambda b: move_box(b, -1, 0)) == "=#REF!"


def test_insert_and_delete_rows_adjust_formulas_everywhere():
    wb = book_with({"A1": 1, "A2": 2, "A3": 3, "A4": "=SUM(A1:A3)", "B1": "=A3", "T!A1": "=S!A2*10"})
    wb.shift("S", "row", 2, 1)
    assert wb.raw("S", 5, 1) == "=SUM(A1:A4)" and wb.raw("S", 1, 2) == "=A4" and wb.raw("T", 1, 1) == "=S!A3*10"
    assert wb.cell_value("S", 5, 1) == 6.0
    wb.shift("S", "row", 3, -1)  # delete the row holding 2: T!A1 referred to it
    assert wb.raw("T", 1, 1) == "=#REF!*10" and wb.raw("S", 4, 1) == "=SUM(A1:A3)"
    assert wb.cell_value("S", 4, 1) == 4.0
    wb.shift("S", "column", 1, -1)
    assert wb.raw("S", 1, 1) == "=#REF!"


def test_xlsx_round_trip_keeps_values_and_formulas():
    wb = book_with({**DATA, "D1": "=SUM(A1:A5)", "D2": '=VLOOKUP("k1",T!A1:B2,2,FALSE)', "D3": "=1/0"})
    again = from_xlsx(io.BytesIO(to_xlsx(wb)))
    assert list(again.sheets) == ["S", "T"]
    for key in ("A3", "B3", "C1", "D1", "D2"):
        assert again.value("S", key) == wb.value("S", key)
    assert again.raw("S", 1, 4) == "=SUM(A1:A5)"


def test_unparseable_formula_from_a_file_is_kept_and_shows_name_error():
    import openpyxl

    book = openpyxl.Workbook()
    book.active["A1"] = "=LAMBDA(x,x+1)(2)"
    book.active["A2"] = "=FOO(1)+@BAR"
    buf = io.BytesIO()
    book.save(buf)
    wb = from_xlsx(io.BytesIO(buf.getvalue()))
    sheet = next(iter(wb.sheets))
    assert wb.value(sheet, "A1") == XlError("#NAME?") and wb.value(sheet, "A2") == XlError("#NAME?")
    assert wb.raw(sheet, 2, 1) == "=FOO(1)+@BAR"


def test_workbook_pickles_and_copies_independently():
    wb = book_with({"A1": 1, "B1": "=A1+1"})
    clone = pickle.loads(pickle.dumps(wb))
    copy = wb.copy()
    copy.set_value("S", "A1", 5)
    assert (wb.value("S", "B1"), clone.value("S", "B1"), copy.value("S", "B1")) == (2.0, 2.0, 6.0)


@pytest.mark.parametrize("formula", [
    '=SUBSTITUTE(REPT("a",30000),"a",REPT("b",30000))', "=CONCAT(A1:A40)", '=CONCATENATE(A1,A1,A1)',
    '=A1&A1', '=REPT(A1,2)',
])
def test_text_bombs_stop_at_the_cell_limit(formula):
    wb = Workbook(("S",))
    for r in range(1, 41):
        wb.set_cell("S", r, 1, "x" * 20_000)
    wb.set_cell("S", 1, 2, formula)
    assert wb.cell_value("S", 1, 2) == XlError("#VALUE!")


@pytest.mark.parametrize(("text", "stored"), [
    ('=MAXIFS(A1:A3,B1:B3,">1")+minifs(A1,B1,"<9")', '=_xlfn.MAXIFS(A1:A3,B1:B3,">1")+_xlfn.minifs(A1,B1,"<9")'),
    ('=IFNA(CONCAT("IFS(",A1),"x")&SUM(A1)', '=_xlfn.IFNA(_xlfn.CONCAT("IFS(",A1),"x")&SUM(A1)'),
    ("=_xlfn.IFNA(1,2)", "=_xlfn.IFNA(1,2)"), ("=SORT(A1:A3)", "=_xlfn._xlws.SORT(A1:A3)"),
    ("=IFS(TRUE,1)+TEXTJOIN(\",\",TRUE,A1:A2)", '=_xlfn.IFS(TRUE,1)+_xlfn.TEXTJOIN(",",TRUE,A1:A2)'),
    ("=FOO(1)+@BAR", "=FOO(1)+@BAR"),
])
def test_xlfn_prefixes_are_added_for_xlsx_and_removed_for_reading(text, stored):
    from envs.spreadsheet.formulas import with_xlfn_prefixes, without_xlfn_prefixes

    assert with_xlfn_prefixes(text) == stored
    assert with_xlfn_prefixes(stored) == stored
    assert without_xlfn_prefixes(stored) == without_xlfn_prefixes(text)


def test_prefixed_function_names_parse_as_the_function():
    wb = book_with({"A1": 5, "A2": 9, "B1": '=_xlfn.MAXIFS(A1:A2,A1:A2,">0")', "B2": "=_xlfn.IFNA(NA(),7)",
                    "B3": '=_xlfn.CONCAT("a",A1)', "B4": '=_XLFN.MINIFS(A1:A2,A1:A2,">0")'})
    assert [wb.value("S", f"B{r}") for r in range(1, 5)] == [9.0, 7.0, "a5", 5.0]
