"""LibreOffice's semantics where random single-function formulas found ours different: booleans are numbers,
CHAR, the intersection operator, dates, text order, numbers shown as text, criteria, SUMPRODUCT, error order.

Every expected value is LibreOffice 7.4's (``soffice --headless --convert-to xlsx``); the deliberate rejections
(``XlError.deliberate``) are the documented cases where we answer #N/A or #VALUE! on purpose instead.
"""

from __future__ import annotations

import pytest

from envs.spreadsheet.formulas import XlError, rewrite_refs
from envs.spreadsheet.workbook import Workbook, move_box

CELLS = {
    "A1": 5, "A2": 3, "A3": 1, "A4": 1, "A5": 9, "A6": 4, "A7": 2, "A8": 7,
    "B1": "abc", "B2": " 12 ", "B3": "12", "B4": "TRUE", "B5": "a", "B6": "x",
    "C1": True, "C2": False, "C3": True,
    "E1": 1, "E2": XlError("#N/A"), "E3": 2, "E4": XlError("#DIV/0!"), "E5": "a",
    "F1": 1, "F2": 2, "F3": 2, "F4": 4, "F5": 7, "F6": 9, "F7": 12, "F8": 20,
    "G1": 20, "G2": 12, "G3": 9, "G4": 7,
}


def value(formula: str, cells: dict = CELLS):
    wb = Workbook(("S",))
    for ref, raw in cells.items():
        wb.set_value("S", ref, raw)
    wb.set_value("S", "Z30", formula)  # below the data: no range meets the formula's row
    return wb.value("S", "Z30")


def check(formula: str, want) -> None:
    got = value(formula)
    if isinstance(want, float):  # a cell's own number may come back as the int it was written as
        assert type(got) in (float, int) and got == pytest.approx(want, rel=1e-13), (formula, got)
    else:
        assert got == want and type(got) is type(want), (formula, got)


BOOLEANS_ARE_NUMBERS = [
    ("=ISNUMBER(TRUE)", True), ("=ISNUMBER(C1)", True), ("=ISTEXT(TRUE)", False), ('=ISNUMBER("1")', False),
    ('=NOT("1")', False), ('=NOT("TRUE")', False), ('=NOT("x")', XlError("#VALUE!")), ('=IF("1",1,2)', 1.0),
    ('=IF("x",1,2)', XlError("#VALUE!")), ('=AND("1")', XlError("#VALUE!")), ("=AND(B1)", XlError("#VALUE!")),
    ("=AND(B1,TRUE)", True), ("=1=TRUE", True), ("=1<TRUE", False), ("=TRUE>1", False), ("=0=FALSE", True),
    ('="a"<TRUE', False), ("=SUM(C1:C3)", 2.0), ("=COUNT(C1:C3)", 3.0), ("=AVERAGE(C1:C3)", 2 / 3),
    ("=COUNTIF(C1:C3,TRUE)", 2.0), ("=COUNTIF(C1:C3,1)", 2.0), ('=COUNTIF(C1:C3,"TRUE")', 2.0),
    ("=SUMPRODUCT(C1:C3,C1:C3)", 2.0), ("=C1+C2", 1.0), ("=C1&C2", "10"), ("=MATCH(TRUE,C1:C3,0)", 1.0),
    ("=MATCH(1,C1:C3,0)", 1.0), ("=EXACT(TRUE,1)", True),
]

EMPTY_AND_EDGES = [
    ("=PRODUCT(D1:D3)", 0.0), ("=PRODUCT(D1:D3,2)", 2.0), ("=MEDIAN(D1:D3)", XlError("#VALUE!")),
    ("=MIN(D1:D3)", 0.0), ('=SEARCH("","abc")', XlError("#VALUE!")), ('=FIND("","abc")', XlError("#VALUE!")),
    ('=SEARCH("a","abc",3.9)', XlError("#VALUE!")), ('=SEARCH("a","abc",1.9)', 1.0),
    ('=LEFT("abc",-0.5)', XlError("#VALUE!")), ('=MID("abc",1.5,1)', "a"), ('=REPT("ab",0.9)', ""),
    ('=DATEVALUE("-5")', XlError("#VALUE!")), ('=DATEVALUE("1/2/2024")', 45293.0), ("=VALUE(D1)", 0.0),
    ("=0^-1", XlError("#NUM!")), ("=POWER(0,-2.7)", XlError("#NUM!")), ("=0.1^400", XlError("#NUM!")),
    ("=0.1^310", XlError("#NUM!")), ("=1e-200*1e-120", 1e-320), ("=1e-310", XlError("#VALUE!")),
    ('=VALUE("1e-320")', 0.0), ("=0^0", 1.0), ("=POWER(-8,1/3)", -2.0),
]

DATES = [
    ("=DAY(-0.5)", 30.0), ("=DAY(-1)", 29.0), ("=MONTH(-0.5)", 12.0), ("=YEAR(-0.5)", 1899.0),
    ("=DAY(-115859)", 14.0), ("=YEAR(2958466)", 10000.0), ("=DATE(20,1,1)", 43831.0), ("=DATE(29,1,1)", 47119.0),
    ("=DATE(30,1,1)", 10959.0), ("=DATE(99,1,1)", 36161.0), ("=DATE(100,1,1)", XlError("#VALUE!")),
    ("=DATE(1582,10,14)", XlError("#VALUE!")), ("=DATE(1582,10,15)", -115858.0), ("=DATE(1899,12,31)", 1.0),
    ("=DATE(2024,0,0)", 45260.0), ("=DATE(2024,-1,1)", 45231.0), ("=DATE(2024,1,32767)", 78058.0),
    ("=DATE(-5,1,1)", XlError("#VALUE!")), ('=DAY("2024-02-03")', 3.0),
]

CHAR_CASES = [
    ("=CHAR(65)", "A"), ("=CHAR(65.9)", "A"), ('=CHAR("66")', "B"), ("=CHAR(10)", "\n"), ("=CHAR(0)", "\x00"),
    ("=CHAR(127)", "\x7f"), ("=CHAR(256)", XlError("#VALUE!")), ("=CHAR(-1)", XlError("#VALUE!")),
    ("=CHAR(-0.5)", XlError("#VALUE!")),
    ("=CHAR(128)", "\u20ac"),  # Windows-1252, as Excel on Windows; LibreOffice uses the system's 8-bit encoding
]

TEXT_ORDER_AND_SHOWN_NUMBERS = [
    ('="<5">"1e999"', False), ('="a-b"<"ab"', True), ('="ab"<"a b"', False), ('="e"<"é"', True),
    ('="é"<"f"', True), ('="Z"<"ä"', False), ('="$"<"0"', True), ('="9"<"a"', True), ('="a"="A"', True),
    ('="x10"<"x9"', True), ('=""&1e-10', "0.0000000001"), ('=""&1e15', "1000000000000000"),
    ('=""&(1e15+1)', "1000000000000001"), ('=""&1e16', "1E+016"), ('=""&(2/3*1e-8)', "0.00000000666666666667"),
    ('=""&1.5e-12', "0.0000000000015"), ('=""&1e-15', "1E-015"), ('=""&(1/3)', "0.333333333333333"),
    ('=""&123456789012345678', "1.23456789012346E+017"), ('=""&(999999999999999.9)', "1000000000000000"),
    ('=LOWER(1e-10)', "0.0000000001"),
]

CRITERIA_AND_LOOKUPS = [
    ('=COUNTIF(F1:F8,"1*")', 2.0), ('=COUNTIF(F1:F8,"?")', 6.0), ('=COUNTIF(F1:F8,"<>*")', 0.0),
    ('=COUNTIF(C1:C3,"T*")', 2.0), ('=COUNTIF(E1:E5,"#N/A")', 1.0), ('=COUNTIF(E1:E5,"#*")', 2.0),
    ('=COUNTIF(E1:E5,"*")', 5.0), ('=MATCH("1*",F1:F8,0)', 1.0), ('=MATCH("#N/A",E1:E5,0)', 2.0),
    ('=COUNTIF(B1:B6,"12")', 1.0), ('=COUNTIF(B1:B6," 12 ")', 1.0), ('=COUNTIF(B1:B6,12)', 0.0),
    ("=MATCH(8,G1:G4,-1)", 3.0), ("=MATCH(9,G1:G4,-1)", 3.0), ("=MATCH(5,F1:F8,1)", 4.0),
    ("=MATCH(2,F1:F8,1)", 3.0), ("=MATCH(7,A1:B2)", XlError("#VALUE!")),
    ('=SUMIFS(F1:G8,B1:B8,"=abc")', XlError("#VALUE!")), ("=SUMIFS(5,A7,2)", 5.0), ("=SUMIFS(5,A7,7)", 0.0),
    ("=SUMIF(A7,2,5)", XlError("#VALUE!")),
]

SUMPRODUCT_CASES = [
    ("=SUMPRODUCT(2,3)", 6.0), ('=SUMPRODUCT("a")', 0.0), ('=SUMPRODUCT("3",2)', 0.0), ("=SUMPRODUCT(A1,2)", 10.0),
    ("=SUMPRODUCT(A1:A2,2)", XlError("#VALUE!")), ("=SUMPRODUCT(B1:B2,A1:A2)", 0.0),
    ("=SUMPRODUCT(E2:E3,E4:E5)", XlError("#DIV/0!")), ("=SUMPRODUCT(E4:E5,E2:E3)", XlError("#N/A")),
    ("=SUMPRODUCT(D1:D2,E2:E3)", XlError("#N/A")), ("=SUMPRODUCT(B1:B2,E2:E3)", 0.0),
    ("=SUMPRODUCT(E1:F4)", XlError("#N/A")), ("=SUMPRODUCT(1e308,10)", XlError("#NUM!")),
]

ERRORS_AND_THEIR_ORDER = [
    ("=MOD(NA(),1/0)", XlError("#N/A")), ("=MOD(1/0,NA())", XlError("#DIV/0!")), ('=MOD("x",NA())', XlError("#N/A")),
    ('=SUM("x",NA())', XlError("#N/A")), ('=SUM(E4,"x")', XlError("#VALUE!")), ('=SUM("x",E4)', XlError("#DIV/0!")),
    ("=MOD(F1:F8,D2)", XlError("#DIV/0!")), ("=COUNT(#DIV/0!,1.9,256,0.5)", 3.0), ('=COUNTA("a",#N/A,0.1)', 3.0),
    ("=COUNT(E1:E5)", 2.0), ("=COUNTA(E1:E5)", 5.0), ("=ISNUMBER(#DIV/0!)", False), ("=ISTEXT(1/0)", False),
    ("=ISBLANK(NA())", False), ("=ISNUMBER(A1:A3)", False), ("=IFERROR(A1:A8,A6)", 4.0),
    ("=IFNA(A1:A8,A6)", XlError("#VALUE!")), ("=CONCATENATE(1/0,NA())", XlError("#DIV/0!")),
]


@pytest.mark.parametrize(("formula", "want"), BOOLEANS_ARE_NUMBERS + EMPTY_AND_EDGES + DATES + CHAR_CASES
                         + TEXT_ORDER_AND_SHOWN_NUMBERS + CRITERIA_AND_LOOKUPS + SUMPRODUCT_CASES
                         + ERRORS_AND_THEIR_ORDER)
def test_values_match_libreoffice(formula, want):
    check(formula, want)


@pytest.mark.parametrize(("formula", "why"), [
    ("=MATCH(4,A1:A8,1)", "sorted ascending"), ("=MATCH(4,A1:A8,-1)", "sorted descending"),
    ("=VLOOKUP(4,A1:A8,1,TRUE)", "sorted ascending"), ('=MATCH("b",E1:E5,1)', "only texts"),
    ('=MATCH("*",B1:B6)', "exact lookups only"), ('=REPT("ab",16384)', "32767"),
])
def test_what_the_engine_does_not_model_is_a_deliberate_error_saying_what_to_do(formula, why):
    got = value(formula)
    assert isinstance(got, XlError) and got.deliberate and why in got.detail


INTERSECTIONS = [  # LibreOffice: the cells both references cover; none is #REF!
    ("=SUM(E23:F23 G23:H23)", XlError("#REF!")), ("=SUM(A1:B2 B2:C3)", " 12 "), ("=SUM(A1:A8 A2:A5 A3)", 1.0),
    ("=A1:A3 A2:C2", 3.0), ("=-A1:A3 A2", -3.0), ("=A1:A3 A2%", 0.03), ("=SUM(A1:A3 A2:A8)", 4.0),
    ("=SUM(S!A1:A3 S!A2)", 3.0), ("=A1 A1", 5.0), ("=SUM(S!A1:A3 T!A2)", XlError("#REF!")),
    ("=A1:B2 A2:C3", XlError("#VALUE!")),  # two cells shown as one value
]


@pytest.mark.parametrize(("formula", "want"), INTERSECTIONS)
def test_the_intersection_operator(formula, want):
    wb = Workbook(("S", "T"))
    for ref, raw in CELLS.items():
        wb.set_value("S", ref, raw)
    wb.set_value("T", "A2", 8)
    wb.set_value("S", "Z30", formula)
    got = wb.value("S", "Z30")
    if want == " 12 ":  # SUM of a reference to a text cell: 0
        want = 0.0
    assert got == want and (type(got) is type(want) or isinstance(want, float)), (formula, got)


def test_an_intersection_reads_its_cells_and_moves_with_fills():
    wb = Workbook(("S",))
    wb.set_value("S", "B2", 5)
    wb.set_value("S", "D4", "=SUM(A1:B2 B1:C3)")
    assert wb.value("S", "D4") == 5.0
    wb.set_value("S", "B2", 7)
    assert wb.value("S", "D4") == 7.0
    assert rewrite_refs("=SUM(A1:B2 B1:C3)", lambda b: move_box(b, 1, 0)) == "=SUM(A2:B3 B2:C4)"
