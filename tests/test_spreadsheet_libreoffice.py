"""Our formula values agree with LibreOffice's: on a few hundred generated task workbooks, and on random
single-function formulas over every function of the library.

1. For each of 120 tasks: the task's starting workbook, the workbook the reference plan leaves, and a 'Checks' sheet
   of random formulas over the table (aggregates with criteria, lookups, text and date functions, rounding, errors).
2. One workbook of random formulas, each one function of ``FUNCTIONS`` (or one operator) with arguments drawn from
   numbers, texts, booleans, blanks, cells, ranges and errors, over a data block holding all of those.
Each set of files is recalculated by ONE ``soffice --headless --convert-to xlsx`` call; every formula cell is
compared. Skipped, with the reason, where LibreOffice is not installed (``apt-get install libreoffice-calc-nogui``).
"""

from __future__ import annotations

import math
import random
import re
import shutil
import subprocess

import numpy as np
import openpyxl
import pytest

from envs.spreadsheet.env import SheetState, SpreadsheetEnv
from envs.spreadsheet.formulas import ERROR_CODES, XlError, col_letter, col_number
from envs.spreadsheet.plan import reference_plan
from envs.spreadsheet.templates import HELDOUT_TEMPLATES, TRAIN_TEMPLATES, generate_task
from envs.spreadsheet.workbook import Workbook
from envs.spreadsheet.xlsx import to_xlsx

pytestmark = pytest.mark.libreoffice
SOFFICE = shutil.which("soffice") or shutil.which("libreoffice")


def _random_formulas(r: random.Random, task, n_rows: int) -> list[str]:
    layout = task.layout
    last = layout.first + n_rows - 1

    def col(role):
        L = layout.letter(role)
        return f"{layout.sheet}!${L}${layout.first}:${L}${last}"

    def cell(role):
        return f"{layout.sheet}!{layout.letter(role)}{r.randint(layout.first, last)}"

    cat, code = r.choice(task.cats), r.choice(task.codes)
    op = r.choice(("", ">", "<=", "<>", ">="))
    forms = [
        f"=SUM({col('n')})", f"=AVERAGE({col('x')})", f'=SUMIF({col("cat")},"{cat}",{col("n")})',
        f'=COUNTIF({col("n")},"{op}{r.randint(1, 40)}")', f'=AVERAGEIF({col("cat")},"{cat[:2]}*",{col("x")})',
        f'=SUMIFS({col("x")},{col("cat")},"<>{cat}",{col("n")},">{r.randint(1, 30)}")',
        f'=COUNTIFS({col("code")},"{code}",{col("x")},"<{r.randint(5, 90)}")', f"=MAX({col('n')})-MIN({col('x')})",
        f"=ROUND({cell('x')}*{cell('n')}/7,{r.randint(-1, 3)})", f"=ROUNDUP({cell('x')}/3,1)",
        f'=IF({cell("n")}>{r.randint(1, 40)},"big","small")', f"=AND({cell('n')}>5,{cell('x')}<50)",
        f"=IFERROR({cell('n')}/({cell('n')}-{cell('n')}),\"div\")", f"=PROPER({cell('name')})",
        f"=UPPER(LEFT({cell('name')},3))&LEN({cell('name')})", f'=MID({cell("date")},6,2)&"/"&RIGHT({cell("date")},2)',
        f"=YEAR(DATEVALUE({cell('date')}))*100+MONTH(DATEVALUE({cell('date')}))", f"=VALUE(LEFT({cell('date')},4))+0.5",
        f'=MATCH("{code}",{col("code")},0)', f"=INDEX({col('x')},{r.randint(1, n_rows)})",
        f'=VLOOKUP("{cat}",{layout.sheet}!${layout.letter("cat")}${layout.first}:${col_letter(len(layout.roles))}${last},2,FALSE)',
        f'=COUNTIF({col("name")},"*a*")', f"=SUMPRODUCT({col('n')},{col('x')})",
        f"=MOD({cell('n')},7)-INT(-{cell('x')})",
        f"={cell('n')}&\"\"&{cell('x')}", f"=TRIM(\"  {cat}   x \")", f'=SUBSTITUTE({cell("date")},"-","")',
        f"=NOT(ISERROR(MATCH(\"{cat}\",{col('cat')},0)))", f"={cell('x')}^2-{cell('n')}%", "=1/0+1", "=NA()",
    ]
    return r.sample(forms, k=12)


def _workbooks(count: int):
    """(name, Workbook) pairs: each task's start, its solved state, with a sheet of random formulas."""
    env = SpreadsheetEnv()
    templates = TRAIN_TEMPLATES + HELDOUT_TEMPLATES
    for k in range(count):
        template = templates[k % len(templates)]
        split = "heldout" if template in HELDOUT_TEMPLATES else "train"
        task = generate_task(np.random.default_rng([5, k]), split, k, template=template)
        env.task, env.state = task, SheetState(task.book.copy(), [dict(rec) for rec in task.records])
        start = task.book.copy()
        for call in reference_plan(env)[:-1]:
            getattr(env, call.name)(**call.arguments)
        solved = env.state.book
        r = random.Random(k)
        checks = solved.add_sheet("Checks")
        for i, formula in enumerate(_random_formulas(r, task, len(task.records)), start=1):
            solved.set_cell(checks.name, i, 1, formula)
        yield f"t{k:03d}_start", start
        yield f"t{k:03d}_solved", solved


def _same(ours, theirs) -> bool:
    if isinstance(ours, XlError):
        return theirs == ours.code
    if theirs is None:
        return ours is None or ours == ""
    if isinstance(ours, bool) or isinstance(theirs, bool):
        return ours == theirs and type(ours) is type(theirs)
    if isinstance(ours, float | int):
        return isinstance(theirs, float | int) and math.isclose(ours, theirs, rel_tol=1e-12, abs_tol=1e-12)
    return ours == theirs


needs_soffice = pytest.mark.skipif(SOFFICE is None, reason="LibreOffice (soffice) is not installed: "
                                   "apt-get install -y --no-install-recommends libreoffice-calc-nogui")


def recalculate(books: dict, tmp_path) -> dict:
    """Save each workbook, let LibreOffice recalculate them all in one call, and open its results (values only)."""
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    for name, wb in books.items():
        to_xlsx(wb, src / f"{name}.xlsx")
    profile = tmp_path / "profile"
    subprocess.run([SOFFICE, f"-env:UserInstallation=file://{profile}", "--headless", "--convert-to", "xlsx",
                    "--outdir", str(out), *sorted(map(str, src.glob("*.xlsx")))],
                   check=True, capture_output=True, timeout=600)
    return {name: openpyxl.load_workbook(out / f"{name}.xlsx", data_only=True) for name in books}


@needs_soffice
def test_formula_values_agree_with_libreoffice(tmp_path):
    books = dict(_workbooks(120))
    recalculated = recalculate(books, tmp_path)
    compared, wrong = 0, []
    for name, wb in books.items():
        theirs = recalculated[name]
        for (sheet, r, c), ours in wb.evaluate_all().items():
            value = theirs[sheet].cell(row=r, column=c).value
            compared += 1
            if not _same(ours, value):
                wrong.append(f"{name} {sheet}!{col_letter(c)}{r} {wb.raw(sheet, r, c)}: ours {ours!r}, "
                             f"LibreOffice {value!r}")
    assert compared > 2000
    assert not wrong, f"{len(wrong)} of {compared} formula cells disagree:\n" + "\n".join(wrong[:20])


# ----------------------------------------------------------------------------------------------------------------
# 2. Random single-function formulas over every function of the library.

DATA = {  # column letter -> 8 values (None is blank); formulas live below row 20, so no range meets their row
    "A": [3, -2.5, 0, 100000, 7, 0.5, 12, -1],
    "B": ["abc", "x", " 12 ", "TRUE", "a*c", "Hello World", "b", "ABC"],
    "C": [True, False, 5, "5", None, 2.5, "text", True],
    "D": [None] * 8,
    "E": [1, XlError("#N/A"), 2, XlError("#DIV/0!"), "a", 3, XlError("#VALUE!"), 4],
    "F": [1, 2, 2, 4, 7, 9, 12, 20],
    "G": [20, 12, 9, 7, 4, 2, 2, 1],
    "H": ["apple", "banana", "cherry", "date", "fig", "grape", "kiwi", "lemon"],
}
ATOMS = {
    "number": ["0", "1", "-1", "2", "3", "7", "2.5", "-2.7", "0.5", "1.9", "-0.5", "10", "100", "256", "65", "2.675",
               "1e10", "1e-10", "45000", "32767", "1e308", "0.1"],
    "text": ['""', '"abc"', '"a*c"', '"b?"', '"~*"', '"12"', '" 3.5 "', '"TRUE"', '"2024-02-29"', '"x"', '"ABC"',
             '"a"', '"Hello World"', '">2"', '"<=3"', '"<>x"', '"=abc"', '"*"', '"1e999"', '"-5"', '"a  b c "',
             '"b*"', '">=apple"', '"<5"'],
    "bool": ["TRUE", "FALSE"],
    "blank": [f"D{i}" for i in range(1, 9)],
    "cell": [f"{col}{i}" for col in "ABCEFGH" for i in range(1, 9)],
    "range": ["A1:A8", "B1:B8", "C1:C8", "D1:D8", "E1:E8", "F1:F8", "G1:G8", "H1:H8", "A1:C4", "A1:H1", "A2:B3",
              "F1:G8", "H1:H4", "F2:F5"],
    "error": ["#N/A", "#DIV/0!", "#VALUE!", "1/0", "NA()"],
}
KIND_WEIGHTS = {"number": 5, "text": 4, "bool": 1, "blank": 1, "cell": 3, "range": 2, "error": 1}
#: Argument positions that take a range (a criteria range, a lookup table...): drawn as ranges 4 times in 5.
RANGE_AT = {
    "SUMIF": {0, 2}, "COUNTIF": {0}, "AVERAGEIF": {0, 2}, "COUNTBLANK": {0}, "MATCH": {1}, "VLOOKUP": {1},
    "INDEX": {0}, "ROW": {0}, "COLUMN": {0}, "SUMPRODUCT": set(range(255)), "CONCAT": set(range(255)),
    **{f: {0, 1, 3, 5, 7} for f in ("SUMIFS", "AVERAGEIFS", "MAXIFS", "MINIFS")}, "COUNTIFS": {0, 2, 4, 6},
}
#: Functions whose result is TRUE/FALSE: LibreOffice's type must match ours. Other results may come back as a
#: boolean where we give 1 or 0 (LibreOffice gives MAX of boolean cells the boolean format).
LOGICAL = {"AND", "OR", "NOT", "ISBLANK", "ISNUMBER", "ISTEXT", "ISERROR", "ISNA", "ISERR", "EXACT", "TRUE", "FALSE"}
OPERATORS = ("+", "-", "*", "/", "^", "&", "=", "<>", "<", ">", "<=", ">=")


def _atom(r: random.Random, kind: str | None = None) -> str:
    kinds = list(KIND_WEIGHTS)
    kind = kind or r.choices(kinds, weights=[KIND_WEIGHTS[k] for k in kinds])[0]
    return r.choice(ATOMS[kind])


def random_function_formulas(seed: int, per_function: int) -> list[str]:
    """``per_function`` formulas for every function in the library, and as many for the operators (seeded)."""
    from envs.spreadsheet.library import FUNCTIONS

    r, out = random.Random(seed), []
    for name in sorted(FUNCTIONS):
        _, lo, hi = FUNCTIONS[name]
        for _ in range(per_function):
            n = r.randint(lo, min(hi, lo + 3))
            args = [_atom(r, "range") if k in RANGE_AT.get(name, ()) and r.random() < 0.8 else _atom(r)
                    for k in range(n)]
            out.append(f"={name}({','.join(args)})")
    for _ in range(per_function * 3):
        out.append(f"={_atom(r)}{r.choice(OPERATORS)}{_atom(r)}")
    return out


def _lo_text(v):
    """LibreOffice's text as openpyxl reads it: control characters come back as _xHHHH_ escapes."""
    return re.sub(r"_x([0-9A-Fa-f]{4})_", lambda m: chr(int(m[1], 16)), v) if isinstance(v, str) else v


def _error_codes_of_arguments(formula: str) -> set[str]:
    """The error codes the formula's arguments carry: error literals, NA(), 1/0, cells holding errors."""
    codes = {code for code in ("#N/A", "#DIV/0!", "#VALUE!") if code in formula}
    codes |= {"#N/A"} if "NA()" in formula else set()
    codes |= {"#DIV/0!"} if "1/0" in formula else set()
    for col, values in DATA.items():
        for i, v in enumerate(values, start=1):
            if isinstance(v, XlError) and re.search(rf"\b{col}{i}\b", formula):
                codes.add(v.code)
        if any(isinstance(v, XlError) for v in values) and re.search(rf"\b{col}[1-8]:{col}[1-8]\b", formula):
            codes |= {v.code for v in values if isinstance(v, XlError)}
    return codes


def verdict(formula: str, ours, theirs) -> str:
    """'agree', 'deliberate' (a documented rejection or difference: see docs/spreadsheet-formulas.md), 'order'
    (both are errors, and one of them is an argument's own error: which of several problems is shown depends on
    LibreOffice's evaluation order, which we do not model) or 'differ'."""
    theirs = _lo_text(theirs)
    name = formula[1:].partition("(")[0] if "(" in formula else ""
    if isinstance(ours, XlError):
        if theirs == ours.code:
            return "agree"
        if ours.deliberate:
            return "deliberate"
        carried = _error_codes_of_arguments(formula)
        both = isinstance(theirs, str) and theirs in ERROR_CODES
        return "order" if both and (ours.code in carried or theirs in carried) else "differ"
    if theirs is None:
        return "agree" if ours is None or ours == "" else "differ"
    if isinstance(ours, bool) or isinstance(theirs, bool):
        if type(ours) is type(theirs) or (name not in LOGICAL and not isinstance(ours, str)
                                           and not isinstance(theirs, str)):
            return "agree" if float(ours) == float(theirs) else "differ"
        return "differ"
    if isinstance(ours, float | int):
        ok = isinstance(theirs, float | int) and math.isclose(ours, theirs, rel_tol=1e-13, abs_tol=1e-300)
        return "agree" if ok else "differ"
    if name == "CHAR" and len(ours) == 1 and ord(ours) >= 128 and theirs == "\ufffd":
        return "deliberate"  # LibreOffice uses the system's 8-bit encoding (none on UTF-8); we use Windows-1252
    return "agree" if ours == theirs else "differ"


def function_workbook(formulas: list[str]) -> Workbook:
    wb = Workbook(("S",))
    for col, values in DATA.items():
        for i, v in enumerate(values, start=1):
            wb.set_cell("S", i, col_number(col), v)
    for i, f in enumerate(formulas, start=20):
        wb.set_cell("S", i, 10, f)
    return wb


@needs_soffice
def test_random_single_function_formulas_agree_with_libreoffice(tmp_path):
    """python -m pytest tests/test_spreadsheet_libreoffice.py -k single_function -s prints the counts."""
    formulas = random_function_formulas(seed=15, per_function=30)
    wb = function_workbook(formulas)
    theirs = recalculate({"functions": wb}, tmp_path)["functions"]["S"]
    counts, wrong = {"agree": 0, "deliberate": 0, "order": 0, "differ": 0}, []
    for i, f in enumerate(formulas, start=20):
        ours, lo = wb.cell_value("S", i, 10), theirs.cell(row=i, column=10).value
        v = verdict(f, ours, lo)
        counts[v] += 1
        if v == "differ":
            wrong.append(f"{f}: ours {ours!r}, LibreOffice {lo!r}")
    print(f"\n{len(formulas)} formulas: {counts}")
    assert counts["agree"] >= 0.9 * len(formulas)
    assert not wrong, f"{len(wrong)} of {len(formulas)} disagree:\n" + "\n".join(wrong[:40])
