"""Workbooks as files: what .xlsx saving writes (Excel's ``_xlfn.`` prefixes), and how loading a user's file fails
(``WorkbookFileError``: the file, the problem, what to do) or, where Excel and LibreOffice read it, succeeds.

The last test (marked ``network`` and ``libreoffice``) downloads the sdists of three projects whose test suites hold
real .xlsx files, loads every one as a task and compares every formula's value with LibreOffice's recalculation.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tarfile
import warnings
import zipfile
from pathlib import Path

import openpyxl
import pytest

from envs.spreadsheet import task_from_xlsx
from envs.spreadsheet.env import SpreadsheetEnv
from envs.spreadsheet.formulas import XlError, col_letter
from envs.spreadsheet.workbook import Workbook, storable
from envs.spreadsheet.xlsx import WorkbookFileError, _repair_package, from_xlsx, to_xlsx

SOFFICE = shutil.which("soffice") or shutil.which("libreoffice")
NO_SOFFICE = "LibreOffice (soffice) is not installed: apt-get install -y --no-install-recommends libreoffice-calc-nogui"
# Always recalculate on load (LibreOffice's default for .xlsx is to keep the file's cached values).
RECALC_ALWAYS = """<?xml version="1.0" encoding="UTF-8"?>
<oor:items xmlns:oor="http://openoffice.org/2001/registry" xmlns:xs="http://www.w3.org/2001/XMLSchema">
<item oor:path="/org.openoffice.Office.Calc/Formula/Load"><prop oor:name="OOXMLRecalcMode" oor:op="fuse">
<value>0</value></prop></item>
</oor:items>
"""


def recalculate(files: list[Path], out: Path, profile: Path) -> None:
    """One soffice call: every file recalculated and saved as .xlsx into ``out`` (CHAR() as in Excel: en_US)."""
    (profile / "user").mkdir(parents=True, exist_ok=True)
    (profile / "user" / "registrymodifications.xcu").write_text(RECALC_ALWAYS)
    env = {**os.environ, "LC_ALL": "en_US.UTF-8", "LANG": "en_US.UTF-8"}
    subprocess.run([SOFFICE, f"-env:UserInstallation=file://{profile}", "--headless", "--convert-to", "xlsx",
                    "--outdir", str(out), *map(str, files)], check=True, capture_output=True, timeout=600, env=env)


def read_values(path: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return openpyxl.load_workbook(path, data_only=True)


_EPOCH = dt.datetime(1899, 12, 30)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


def same(ours, theirs) -> bool:
    """Our value against LibreOffice's as openpyxl reads it back: a date-formatted number comes back as a datetime
    (kept to the millisecond), and control characters in text as _xHHHH_ escapes."""
    tol = 1e-12
    if isinstance(theirs, dt.datetime):
        theirs, tol = (theirs - _EPOCH).total_seconds() / 86400, 1e-8
    elif isinstance(theirs, dt.time):
        theirs, tol = (theirs.hour * 3600 + theirs.minute * 60 + theirs.second + theirs.microsecond / 1e6) / 86400, 1e-8
    elif isinstance(theirs, dt.date):
        theirs = float((theirs - _EPOCH.date()).days)
    if isinstance(ours, str):
        ours = _CONTROL.sub(lambda m: f"_x{ord(m[0]):04x}_", ours)
    if isinstance(ours, XlError):
        return theirs == ours.code
    if theirs is None:
        return ours is None or ours == ""
    if isinstance(ours, bool) or isinstance(theirs, bool):
        return ours == theirs and type(ours) is type(theirs)
    if isinstance(ours, float | int):
        return isinstance(theirs, float | int) and math.isclose(ours, theirs, rel_tol=tol, abs_tol=tol)
    return ours == theirs


# -- the workbook itself: what a cell holds, all-or-nothing changes, copies -----------------------------------------


@pytest.mark.parametrize(("raw", "held"), [(3, 3), (2**53, 2**53), (2**53 + 1, float(2**53)), (10**300, 1e300),
                                           (-2.5, -2.5), ("", None), ("x", "x"), (True, True), (None, None)])
def test_a_cell_holds_what_libreoffice_holds(raw, held):
    assert storable(raw) == held and type(storable(raw)) is type(held)


@pytest.mark.parametrize("raw", [10**309, -(10**5000), float("nan"), float("inf"), "x" * 32_768, [1], {"a": 1}],
                         ids=["1e309", "-1e5000", "nan", "inf", "32768 chars", "list", "dict"])
def test_what_no_cell_holds_is_a_value_error_saying_why(raw):
    with pytest.raises(ValueError, match="too large|finite|at most 32767|a cell holds text"):
        storable(raw)
    with pytest.raises(ValueError):
        Workbook().set_cell("Sheet1", 1, 1, raw)


def test_atomic_undoes_every_kind_of_change_and_the_version():
    wb = Workbook()
    wb.set_cell("Sheet1", 1, 1, 5)
    wb.set_cell("Sheet1", 2, 1, "=A1*2")
    before, version, value = {k: wb.raw("Sheet1", *k) for k in wb.sheets["Sheet1"].cells}, wb.version, 10.0
    assert wb.cell_value("Sheet1", 2, 1) == value
    with pytest.raises(RuntimeError), wb.atomic():
        wb.set_cell("Sheet1", 1, 1, 7)
        wb.add_sheet("New")
        wb.set_cell("New", 1, 1, "=Sheet1!A2")
        wb.shift("Sheet1", "row", 1, 3)
        wb.move_rows("Sheet1", [5, 4], 4, 1, 1)
        raise RuntimeError("part-way")
    assert {k: wb.raw("Sheet1", *k) for k in wb.sheets["Sheet1"].cells} == before
    assert list(wb.sheets) == ["Sheet1"] and wb.version == version and wb.cell_value("Sheet1", 2, 1) == value


def test_copies_and_pickles_keep_the_version():
    import pickle

    wb = Workbook()
    wb.set_cell("Sheet1", 1, 1, "=1+1")
    assert wb.version > 0
    assert wb.copy().version == wb.version == pickle.loads(pickle.dumps(wb)).version


# -- saving: Excel's prefixes ---------------------------------------------------------------------------------------

PREFIXED = ['=MAXIFS(B1:B4,A1:A4,"a")', '=MINIFS(B1:B4,A1:A4,"<>a")', '=CONCAT(A1,"-",B2)',
            "=IFNA(MATCH(\"z\",A1:A4,0),-1)", "=IFNA(1/0,2)"]


def _prefixed_book() -> Workbook:
    wb = Workbook()
    for r, (a, b) in enumerate([("a", 3), ("b", 9), ("a", 5), ("c", 1)], start=1):
        wb.set_cell("Sheet1", r, 1, a)
        wb.set_cell("Sheet1", r, 2, b)
    for r, formula in enumerate(PREFIXED, start=1):
        wb.set_cell("Sheet1", r, 4, formula)
    return wb


def test_functions_newer_than_excel_2007_are_saved_with_the_xlfn_prefix_and_read_back_without():
    wb = _prefixed_book()
    data = to_xlsx(wb)
    sheet_xml = zipfile.ZipFile(io.BytesIO(data)).read("xl/worksheets/sheet1.xml").decode()
    for name in ("MAXIFS", "MINIFS", "CONCAT", "IFNA"):
        assert f"_xlfn.{name}(" in sheet_xml
    again = from_xlsx(io.BytesIO(data))
    assert [again.raw("Sheet1", r, 4) for r in range(1, 6)] == PREFIXED  # the user reads the plain names
    assert again.evaluate_all() == wb.evaluate_all()
    assert [wb.cell_value("Sheet1", r, 4) for r in range(1, 6)] == [5, 1, "a-9", -1, XlError("#DIV/0!")]


@pytest.mark.libreoffice
@pytest.mark.skipif(SOFFICE is None, reason=NO_SOFFICE)
def test_libreoffice_computes_the_saved_xlfn_functions_as_we_do(tmp_path):
    wb = _prefixed_book()
    to_xlsx(wb, tmp_path / "prefixed.xlsx")
    recalculate([tmp_path / "prefixed.xlsx"], tmp_path / "out", tmp_path / "profile")
    theirs = read_values(tmp_path / "out" / "prefixed.xlsx")["Sheet1"]
    for (_, r, c), ours in wb.evaluate_all().items():
        assert same(ours, theirs.cell(row=r, column=c).value), (wb.raw("Sheet1", r, c), theirs.cell(r, c).value)


def test_text_that_reads_like_a_formula_or_an_error_stays_text_in_a_file():
    wb = Workbook()
    wb.sheets["Sheet1"].cells.update({(1, 1): "=not a formula", (2, 1): "#N/A"})
    again = from_xlsx(io.BytesIO(to_xlsx(wb)))
    assert again.raw("Sheet1", 1, 1) == "=not a formula" and again.cell_value("Sheet1", 2, 1) == "#N/A"


# -- loading: files Excel and LibreOffice read, and clear errors for the rest -----------------------------------------


def _plain_file() -> bytes:
    book = openpyxl.Workbook()
    ws = book.active
    ws["A1"], ws["A2"], ws["B1"] = 2, dt.date(2024, 3, 1), "=A1*10"
    buf = io.BytesIO()
    book.save(buf)
    return buf.getvalue()


def _rezip(data: bytes, rename=None, edit=None) -> bytes:
    """The package with parts renamed (``rename(name) -> name``) and their bytes edited (``edit[name](bytes)``)."""
    zin, out = zipfile.ZipFile(io.BytesIO(data)), io.BytesIO()
    with zipfile.ZipFile(out, "w") as zout:
        for name in zin.namelist():
            payload = zin.read(name)
            if edit and name in edit:
                payload = edit[name](payload)
            zout.writestr(rename(name) if rename else name, payload)
    return out.getvalue()


def _loads_as_the_plain_file(data: bytes, tmp_path: Path) -> None:
    path = tmp_path / "user.xlsx"
    path.write_bytes(data)
    wb = from_xlsx(path)
    assert wb.cell_value("Sheet", 1, 2) == 20.0
    assert wb.cell_value("Sheet", 2, 1) == 45352.0  # the date, as its serial number


def test_part_names_in_another_case_or_with_backslashes_are_read(tmp_path):
    """OPC part names are case-insensitive and some writers use backslashes (xlrd's apachepoi_49609.xlsx has
    ``[content_types].xml`` and ``xl\\worksheets\\sheet1.xml``); openpyxl raised KeyError."""
    renamed = _rezip(_plain_file(), rename=lambda n: n.lower().replace("xl/", "xl\\").replace("sheet1", "Sheet1"))
    with pytest.raises(KeyError):
        openpyxl.load_workbook(io.BytesIO(renamed))
    _loads_as_the_plain_file(renamed, tmp_path)


def test_a_declared_but_absent_shared_strings_part_is_read_as_empty(tmp_path):
    ct = "[Content_Types].xml"
    override = (b'<Override PartName="/xl/sharedStrings.xml" ContentType="application/vnd.openxmlformats-'
                b'officedocument.spreadsheetml.sharedStrings+xml" /></Types>')
    data = _rezip(_plain_file(), edit={ct: lambda b: b.replace(b"</Types>", override)})
    with pytest.raises(KeyError):
        openpyxl.load_workbook(io.BytesIO(data))
    _loads_as_the_plain_file(data, tmp_path)


def test_cell_styles_openpyxl_rejects_are_dropped_keeping_number_formats(tmp_path):
    """xlrd's self_evaluation_report_2014-05-19.xlsx has ``<xf builtinId="4"/>``: TypeError in openpyxl."""
    data = _rezip(_plain_file(), edit={"xl/styles.xml": lambda b: b.replace(
        b'<cellStyleXfs count="1"><xf ', b'<cellStyleXfs count="1"><xf builtinId="4" ')})
    with pytest.raises(TypeError):
        openpyxl.load_workbook(io.BytesIO(data))
    _loads_as_the_plain_file(data, tmp_path)


def test_numbers_past_the_doubles_and_error_cells_load_as_libreoffice_shows_them(tmp_path):
    sheet = "xl/worksheets/sheet1.xml"
    data = _rezip(_plain_file(), edit={sheet: lambda b: b.replace(b"<v>2</v>", b"<v>1e400</v>").replace(
        b"</sheetData>", b'<row r="5"><c r="A5" t="e"><v>#N/A</v></c></row></sheetData>')})
    path = tmp_path / "odd.xlsx"
    path.write_bytes(data)
    wb = from_xlsx(path)
    assert wb.cell_value("Sheet", 1, 1) == XlError("#NUM!") and wb.cell_value("Sheet", 1, 2) == XlError("#NUM!")
    assert wb.cell_value("Sheet", 5, 1) == XlError("#N/A")
    assert SpreadsheetEnv(tasks=[task_from_xlsx(path, path, "Keep it.")]).reset(seed=0)  # nothing overflows


NOT_WORKBOOKS = [
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(600), "an old binary .xls workbook"),
    (b"id,name\n1,Ann\n", "not an .xlsx file"),
    (None, "damaged"),  # a zip cut short
    ("zip without a workbook", "openpyxl cannot parse it"),
]


@pytest.mark.parametrize(("content", "problem"), NOT_WORKBOOKS, ids=[p for _, p in NOT_WORKBOOKS])
def test_a_file_that_cannot_be_read_names_itself_the_problem_and_the_remedy(tmp_path, content, problem):
    if content is None:
        content = _plain_file()[:700]
    elif isinstance(content, str):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr("notes.txt", "hello")
        content = buf.getvalue()
    path = tmp_path / "user's file.xlsx"
    path.write_bytes(content)
    for load in (lambda: from_xlsx(path), lambda: task_from_xlsx(path, path, "Keep it.")):
        with pytest.raises(WorkbookFileError, match=re.escape(problem)) as caught:
            load()
        assert str(path) in str(caught.value) and "save it again as an Excel workbook" in str(caught.value)
        assert isinstance(caught.value, ValueError) and caught.value.__cause__ is None


# -- real files from other projects' test suites, against LibreOffice ------------------------------------------------

# xlrd 2 dropped .xlsx support and its .xlsx test files; 1.2.0 is the last sdist that has them.
SDISTS = ("xlrd==1.2.0", "pyexcel-xlsx", "xlsx2csv")


def _download(dest: Path) -> list[Path]:
    try:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", *SDISTS,
                        "-d", str(dest)], check=True, capture_output=True, text=True, timeout=600)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as err:
        tail = (getattr(err, "stderr", None) or "")[-300:]
        pytest.skip(f"could not download {', '.join(SDISTS)} from PyPI (offline?): {tail}")
    files = []
    for sdist in sorted(dest.glob("*.tar.gz")):
        with tarfile.open(sdist) as tar:
            for member in tar.getmembers():
                if member.isfile() and member.name.lower().endswith((".xlsx", ".xlsm")):
                    target = dest / "files" / member.name.replace("/", "__")
                    target.parent.mkdir(exist_ok=True)
                    target.write_bytes(tar.extractfile(member).read())
                    files.append(target)
    return files


def _solve(task) -> bool:
    """Play the task (start == goal) through the env: look at each sheet, then the reference to the end."""
    env = SpreadsheetEnv(tasks=[task])
    env.reset(seed=0, options={"task_seed": 0})
    for name in env.state.book.sheets:
        env.step(json.dumps({"name": "read_range", "arguments": {"cells": f"'{name}'!A1:J40"}}))
    while True:
        _, reward, terminated, truncated, _ = env.step(env.reference_action())
        if terminated or truncated:
            return reward == 1.0


@pytest.mark.network
@pytest.mark.libreoffice
@pytest.mark.skipif(SOFFICE is None, reason=NO_SOFFICE)
def test_real_workbooks_from_other_projects_load_as_tasks_and_agree_with_libreoffice(tmp_path, capsys):
    files = _download(tmp_path)
    assert len(files) >= 40, [f.name for f in files]
    books, refused, unsolved = {}, [], []
    (tmp_path / "lo").mkdir()
    for path in files:
        try:
            task = task_from_xlsx(path, path, "Leave the workbook as it is, then finish.")
        except WorkbookFileError as err:
            assert str(path) in str(err)
            refused.append(str(err))
            continue
        if not _solve(task):
            unsolved.append(path.name)
        if task.book.evaluate_all():  # LibreOffice reads the package with our repairs (two have backslashed names)
            copy = tmp_path / "lo" / f"{path.stem}.{path.suffix.lstrip('.')}"
            copy.write_bytes(_repair_package(path.read_bytes()))
            books[copy] = task.book
    recalculate(list(books), tmp_path / "out", tmp_path / "profile")
    compared, wrong = 0, []
    for copy, wb in books.items():
        theirs = read_values(tmp_path / "out" / f"{copy.stem}.xlsx")
        for (sheet, r, c), ours in sorted(wb.evaluate_all().items()):
            compared += 1
            value = theirs[sheet].cell(row=r, column=c).value
            if not same(ours, value):
                wrong.append(f"{copy.name} {sheet}!{col_letter(c)}{r} {wb.raw(sheet, r, c)[:60]}: ours {ours!r}, "
                             f"LibreOffice {value!r}")
    with capsys.disabled():
        print(f"\n{len(files)} .xlsx/.xlsm files found, {len(files) - len(refused)} loaded, {len(refused)} refused "
              f"with a clear error; {compared} formula values compared, {compared - len(wrong)} agree with "
              "LibreOffice")
    assert not refused and not unsolved, (refused, unsolved)
    assert compared >= 100
    assert not wrong, f"{len(wrong)} of {compared} formula values disagree:\n" + "\n".join(wrong[:20])
