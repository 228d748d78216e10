"""Our formula values agree with LibreOffice's on a few hundred generated workbooks.

For each of 120 tasks: the task's starting workbook, the workbook the reference plan leaves, and a 'Checks' sheet
of random formulas over the table (aggregates with criteria, lookups, text and date functions, rounding, errors).
All files are recalculated by ONE ``soffice --headless --convert-to xlsx`` call; every formula cell is compared.
Skipped, with the reason, where LibreOffice is not installed (``apt-get install libreoffice-calc-nogui``).
"""

from __future__ import annotations

import math
import random
import shutil
import subprocess

import numpy as np
import openpyxl
import pytest

from envs.spreadsheet.env import SheetState, SpreadsheetEnv
from envs.spreadsheet.formulas import XlError, col_letter
from envs.spreadsheet.plan import reference_plan
from envs.spreadsheet.templates import HELDOUT_TEMPLATES, TRAIN_TEMPLATES, generate_task
from envs.spreadsheet.xlsx import to_xlsx

pytestmark = pytest.mark.libreoffice
SOFFICE = shutil.which("soffice") or shutil.which("libreoffice")


def _random_formulas(r: random.Random, task, n_rows: int) -> list[str]:
    lay = task.layout
    last = lay.first + n_rows - 1

    def col(role):
        L = lay.letter(role)
        return f"{lay.sheet}!${L}${lay.first}:${L}${last}"

    def cell(role):
        return f"{lay.sheet}!{lay.letter(role)}{r.randint(lay.first, last)}"

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
        f'=VLOOKUP("{cat}",{lay.sheet}!${lay.letter("cat")}${lay.first}:${col_letter(len(lay.roles))}${last},2,FALSE)',
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


@pytest.mark.skipif(SOFFICE is None, reason="LibreOffice (soffice) is not installed: "
                    "apt-get install -y --no-install-recommends libreoffice-calc-nogui")
def test_formula_values_agree_with_libreoffice(tmp_path):
    books = dict(_workbooks(120))
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    for name, wb in books.items():
        to_xlsx(wb, src / f"{name}.xlsx")
    profile = tmp_path / "profile"
    subprocess.run([SOFFICE, f"-env:UserInstallation=file://{profile}", "--headless", "--convert-to", "xlsx",
                    "--outdir", str(out), *sorted(map(str, src.glob("*.xlsx")))],
                   check=True, capture_output=True, timeout=600)
    compared, wrong = 0, []
    for name, wb in books.items():
        theirs = openpyxl.load_workbook(out / f"{name}.xlsx", data_only=True)
        for (sheet, r, c), ours in wb.evaluate_all().items():
            value = theirs[sheet].cell(row=r, column=c).value
            compared += 1
            if not _same(ours, value):
                wrong.append(f"{name} {sheet}!{col_letter(c)}{r} {wb.raw(sheet, r, c)}: ours {ours!r}, "
                             f"LibreOffice {value!r}")
    assert compared > 2000
    assert not wrong, f"{len(wrong)} of {compared} formula cells disagree:\n" + "\n".join(wrong[:20])
