"""Compare Excel-formula engines for the spreadsheet environment: correctness, speed, safety.

Produces the figures in docs/spreadsheet-formulas.md. Run it in a venv that has the candidate libraries
(they are NOT project dependencies; pycel pins networkx<3, so keep them out of the project venv)::

    python -m venv --system-site-packages /tmp/benchvenv
    /tmp/benchvenv/bin/pip install formulas pycel xlcalculator openpyxl
    apt-get install -y --no-install-recommends libreoffice-calc-nogui      # ground truth
    PYTHONPATH=. /tmp/benchvenv/bin/python scripts/bench_formula_engines.py --out /tmp/bench

Three measurements, each engine run in its own subprocess so one crash or hang cannot hide the others:

* correctness: ~100 formulas over the functions our task templates use, each compared with the value
  LibreOffice computes when it recalculates the same .xlsx (``soffice --headless --convert-to xlsx``);
* speed: a 50x8 workbook (4 data columns, 4 formula columns incl. a SUMIF per row, a totals row): load and
  first full evaluation, then the cost of one cell edit followed by reading every formula cell (what the
  environment does each step), and the cost of setting a brand-new formula;
* safety: hostile formulas (a whole-sheet range, 10k-deep nesting, circular references, a 1e9-char string,
  a 10k-long dependency chain), each in a subprocess with a 20 s timeout and a 4 GiB memory cap.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import openpyxl

ENGINES = ("ours", "formulas", "pycel", "xlcalculator")

# ----------------------------------------------------------------------------------------------------------------
# Correctness workbook: a Data sheet, a Lookup sheet, and one formula per row of sheet Calc (column A).

DATA = [
    ("Name", "Region", "Qty", "Price", "Code", "Joined"),
    ("  alice smith ", "East", 3, 2.5, "A", "2024-01-15"),
    ("BOB JONES", "West", 7, 1.25, "B", "2023-12-01"),
    ("carol  white", "east", 12, 4.0, "C", "2024-02-29"),
    ("Dan O'Neil", "North", "12", 3.75, "A", "2022-07-04"),
    ("eve", "West", None, 10.0, "E", "2021-03-09"),
    ("Frank", "South", 5, 0.5, "D", "2024-05-05"),
    ("grace hopper", "East", 9, 2.0, "B", "2020-10-10"),
    ("Heidi", "West", 1, 100.0, "C", "2019-01-31"),
    ("ivan", "North", 4, 3.0, "Z", "2024-12-24"),
    ("Judy", "East", 6, 1.5, "D", "2018-06-15"),
]
LOOKUP = [("Code", "Rate", None, "Min", "Grade"), ("A", 0.1, None, 0, "F"), ("B", 0.2, None, 10, "D"),
          ("C", 0.3, None, 20, "C"), ("D", 0.4, None, 50, "B"), ("E", 0.5, None, 100, "A")]

CASES = [
    "=SUM(Data!C2:C11)", "=SUM(Data!C2:C11,5,Data!D2)", "=SUM(Data!C:C)", "=SUM(Data!C2:D11)",
    "=SUM(\"3\",1)", "=SUM(Data!E2:E11)",
    '=SUMIF(Data!B2:B11,"East",Data!C2:C11)', '=SUMIF(Data!C2:C11,">5")', '=SUMIF(Data!B2:B11,"<>East",Data!D2:D11)',
    '=SUMIF(Data!B2:B11,"e*",Data!C2:C11)', '=SUMIF(Data!D2:D11,">=2.5",Data!C2:C11)', "=SUMIF(Data!C2:C11,12)",
    '=SUMIFS(Data!C2:C11,Data!B2:B11,"East",Data!D2:D11,">=2")', '=SUMIFS(Data!D2:D11,Data!B2:B11,"West")',
    '=COUNTIF(Data!B2:B11,"West")', '=COUNTIF(Data!B2:B11,"w*")', '=COUNTIF(Data!C2:C11,">=5")',
    '=COUNTIF(Data!A2:A11,"*o*")', '=COUNTIF(Data!C2:C11,"12")', '=COUNTIFS(Data!B2:B11,"East",Data!C2:C11,">3")',
    "=COUNT(Data!C2:C11)", "=COUNTA(Data!C2:C11)", "=COUNTBLANK(Data!C2:C11)",
    "=AVERAGE(Data!C2:C11)", '=AVERAGEIF(Data!B2:B11,"West",Data!D2:D11)',
    '=AVERAGEIFS(Data!D2:D11,Data!B2:B11,"East",Data!C2:C11,">4")', '=AVERAGEIF(Data!B2:B11,"Mars",Data!D2:D11)',
    "=MIN(Data!C2:C11)", "=MAX(Data!D2:D11)", "=MIN(Data!C2:C11,-1)", "=MAX(Data!F2:F11)",
    "=ROUND(2.675,2)", "=ROUND(-2.5,0)", "=ROUND(1234.5,-2)", "=ROUND(Data!D5*1.175,2)", "=ROUNDUP(2.301,1)",
    "=ROUNDDOWN(-2.39,1)", "=ROUND(0.1+0.2,15)",
    '=IF(Data!C2>5,"big","small")', '=IF(Data!C6="","blank","filled")', "=IF(Data!C2,1,0)", '=IF(1>2,"no")',
    "=AND(Data!C2>1,Data!D2<3)", "=OR(Data!C2>10,Data!D2>10)", "=NOT(Data!C2=3)", "=AND(TRUE,1)",
    '=IFERROR(1/0,"x")', '=IFERROR(VLOOKUP("zz",Lookup!A2:B6,2,FALSE),"none")', "=IFERROR(5,0)",
    '=VLOOKUP("B",Lookup!A2:B6,2,FALSE)', '=VLOOKUP("c",Lookup!A2:B6,2,FALSE)', "=VLOOKUP(35,Lookup!D2:E6,2,TRUE)",
    "=VLOOKUP(Data!E4,Lookup!$A$2:$B$6,2,FALSE)", "=VLOOKUP(5,Lookup!D2:E6,2)", '=VLOOKUP("zz",Lookup!A2:B6,2,FALSE)',
    '=VLOOKUP("A",Lookup!A2:B6,3,FALSE)',
    '=INDEX(Lookup!B2:B6,MATCH("C",Lookup!A2:A6,0))', "=INDEX(Lookup!A2:B6,3,2)", "=MATCH(60,Lookup!D2:D6,1)",
    '=MATCH("E",Lookup!A2:A6,0)', "=INDEX(Lookup!A2:B6,9,1)", '=MATCH("q",Lookup!A2:A6,0)',
    "=TRIM(Data!A2)", '=TRIM("  a   b  ")', "=UPPER(Data!A3)", "=LOWER(Data!A3)", "=PROPER(Data!A4)",
    '=PROPER("hello wORLD o\'neil x-ray")', "=LEN(Data!A2)", '=LEFT("spreadsheet",6)', '=RIGHT("spreadsheet",5)',
    '=MID("spreadsheet",3,4)', '=LEFT("abc")', '=MID("abc",5,2)', '=LEFT("abc",-1)',
    '=VALUE("12")', '=VALUE(" 3.5 ")', '=VALUE("abc")', "=VALUE(Data!C5)", '=VALUE("1e3")',
    '="a"&1&TRUE', "=Data!A6&\"-\"&Data!B6", '="x"&1.5&"y"', "=Data!C5+1", "=Data!C6+1", '="3"*"4"',
    '=CONCATENATE("a","b",1)', "=1/0", "=#REF!+1", "=Data!C2/Data!C6", "=SUM(Lookup!A2:B6)",
    "=-2^2", "=2^3^2", "=10%", "=5+3*2-1", "=MOD(-3,2)", "=ABS(-4.5)", "=INT(-2.5)", '="1"<2', '="a"="A"',
    '="b">"A"', "=TRUE+1", "=1=1.0", "=0.1+0.2=0.3", "=SUMPRODUCT(Data!D2:D4,Lookup!B2:B4)",
    "=SUM(B2:B4)*$C$1", "=B3*C$1+$B2", "=Calc!B2+Calc!B3",
    "=DATE(2024,2,29)", "=YEAR(DATE(2024,2,29))", "=MONTH(45000)", "=DAY(45000)", "=DATE(2023,14,1)",
    "=SUM(Data!C2:C11)/COUNT(Data!C2:C11)", "=MAX(Data!C2:C11)-MIN(Data!C2:C11)", "=ROUND(AVERAGE(Data!D2:D11),3)",
    "=ISBLANK(Data!C6)", "=ISNUMBER(Data!C5)", "=ISTEXT(Data!C5)", "=ISERROR(1/0)", "=NA()", "=ISNA(NA())",
    '=SUBSTITUTE("a-b-c","-","+")', '=EXACT("a","A")', '=REPT("ab",3)', '=FIND("b","abcb")', '=SEARCH("B","abcb")',
    '=FIND("z","abc")',
]


def build_correctness_workbook(path: Path) -> list[str]:
    """Write the correctness workbook; returns the formula in each Calc row (row 2 onward)."""
    wb = openpyxl.Workbook()
    calc = wb.active
    calc.title = "Calc"
    data, lookup = wb.create_sheet("Data"), wb.create_sheet("Lookup")
    for row in DATA:
        data.append(list(row))
    for row in LOOKUP:
        lookup.append(list(row))
    calc["B1"], calc["C1"] = "n", 10
    for i, v in enumerate((4, 5.5, -2), start=2):
        calc.cell(row=i, column=2, value=v)
    for i, formula in enumerate(CASES, start=2):
        calc.cell(row=i, column=1, value=formula)
    wb.save(path)
    return list(CASES)


def build_speed_workbook(path: Path, rows: int = 50) -> None:
    """The ~50x8 workbook: id, region, qty, price; revenue, with tax, flag, region total; a totals row."""
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Sales"
    ws.append(["Id", "Region", "Qty", "Price", "Revenue", "WithTax", "Flag", "RegionTotal"])
    regions = ("East", "West", "North", "South")
    last = rows + 1
    for r in range(2, last + 1):
        ws.append([f"S-{r:03d}", regions[r % 4], (r * 7) % 23 + 1, round(1.5 + (r * 13) % 17 * 0.25, 2),
                   f"=C{r}*D{r}", f"=ROUND(E{r}*1.2,2)", f'=IF(E{r}>40,"high","low")',
                   f"=SUMIF($B$2:$B${last},B{r},$E$2:$E${last})"])
    ws.append(["Total", None, f"=SUM(C2:C{last})", None, f"=SUM(E2:E{last})", f"=AVERAGE(F2:F{last})",
               f'=COUNTIF(G2:G{last},"high")', f"=MAX(H2:H{last})"])
    wb.save(path)


HOSTILE = {
    "whole_sheet_range": "=SUM(Data!A1:XFD1048576)",
    "whole_column": "=SUM(Data!C:C)",
    "deep_parens_10k": "=" + "(" * 10_000 + "1" + ")" * 10_000,
    "deep_calls_10k": "=" + "ABS(" * 10_000 + "1" + ")" * 10_000,
    "circular_pair": "=Calc!B1+1",  # B1 holds =A1+1
    "self_reference": "=A1",
    "string_bomb": '=REPT("x",1000000000)',
    "chain_10k": "=Data!A1+1",  # Data!A1..A10000 each refer to the cell above
}


def build_hostile_workbook(path: Path, name: str) -> None:
    wb = openpyxl.Workbook()
    calc = wb.active
    calc.title = "Calc"
    data = wb.create_sheet("Data")
    for r in range(1, 11):
        data.cell(row=r, column=3, value=r)
    calc["A1"] = HOSTILE[name]
    if name == "circular_pair":
        calc["B1"] = "=A1+1"
    if name == "chain_10k":
        data["A1"] = 1
        for r in range(2, 10_001):
            data.cell(row=r, column=1, value=f"=A{r - 1}+1")
        calc["A1"] = "=Data!A10000+1"
    wb.save(path)


# ----------------------------------------------------------------------------------------------------------------
# Engine adapters: load(path), get(sheet, cell) -> plain value (errors as '#DIV/0!'-style strings),
# set(sheet, cell, value), set_formula(sheet, cell, formula).


def _plain(value):
    """Normalise a library value to None/bool/int/float/str, errors as their '#CODE' string."""
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        value = value.tolist()
    while isinstance(value, (list, tuple)):
        value = value[0] if value else None
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    name = type(value).__name__
    if "Error" in name or "Xl" in name:
        return str(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


class Ours:
    def load(self, path):
        from envs.spreadsheet.xlsx import from_xlsx

        self.wb = from_xlsx(path)

    def get(self, sheet, cell):
        return _plain(self.wb.value(sheet, cell))

    def set(self, sheet, cell, value):
        self.wb.set_value(sheet, cell, value)

    def set_formula(self, sheet, cell, formula):
        self.wb.set_value(sheet, cell, formula)


class Formulas:
    def load(self, path):
        import formulas

        self.name = Path(path).name
        self.model = formulas.ExcelModel().loads(str(path)).finish()
        self.solution = self.model.calculate()
        self.inputs = {}

    def _key(self, sheet, cell):
        return f"'[{self.name}]{sheet.upper()}'!{cell}"

    def get(self, sheet, cell):
        key = self._key(sheet, cell)
        if key not in self.solution:
            return None
        return _plain(self.solution[key].value)

    def set(self, sheet, cell, value):
        self.inputs[self._key(sheet, cell)] = value
        self.solution = self.model.calculate(inputs=self.inputs)

    def set_formula(self, sheet, cell, formula):
        # formulas cannot add a formula to a finished model; compile it alone (the cheaper part of a rebuild)
        import formulas

        func = formulas.Parser().ast(formula)[1].compile()
        self.solution = self.model.calculate(inputs=self.inputs)
        return func


class Pycel:
    def load(self, path):
        from pycel import ExcelCompiler

        self.xl = ExcelCompiler(filename=str(path))

    def get(self, sheet, cell):
        return _plain(self.xl.evaluate(f"{sheet}!{cell}"))

    def set(self, sheet, cell, value):
        self.xl.set_value(f"{sheet}!{cell}", value)

    def set_formula(self, sheet, cell, formula):
        # pycel has no API to add a formula; the only route is editing the openpyxl book and recompiling
        from pycel import ExcelCompiler

        book = self.xl.excel.workbook
        book[sheet][cell] = formula
        self.xl = ExcelCompiler(excel=book)


class XlCalculator:
    def load(self, path):
        from xlcalculator import Evaluator, ModelCompiler

        self.model = ModelCompiler().read_and_parse_archive(str(path))
        self.ev = Evaluator(self.model)

    def get(self, sheet, cell):
        return _plain(self.ev.evaluate(f"{sheet}!{cell}"))

    def set(self, sheet, cell, value):
        self.ev.set_cell_value(f"{sheet}!{cell}", value)

    def set_formula(self, sheet, cell, formula):
        raise NotImplementedError("xlcalculator has no API to set a formula at run time")


ADAPTERS = {"ours": Ours, "formulas": Formulas, "pycel": Pycel, "xlcalculator": XlCalculator}


# ----------------------------------------------------------------------------------------------------------------
# Workers (run in subprocesses).


def _safe_get(engine, sheet, cell):
    try:
        return engine.get(sheet, cell)
    except Exception as err:  # noqa: BLE001 - an exception is a measured outcome here
        return f"EXCEPTION {type(err).__name__}: {str(err)[:80]}"


def work_correctness(engine_name: str, path: str) -> dict:
    engine = ADAPTERS[engine_name]()
    t0 = time.perf_counter()
    engine.load(path)
    values = [_safe_get(engine, "Calc", f"A{i}") for i in range(2, len(CASES) + 2)]
    return {"values": values, "seconds": time.perf_counter() - t0}


def _formula_cells(rows=50):
    last = rows + 1
    cells = [f"{c}{r}" for r in range(2, last + 1) for c in "EFGH"]
    return cells + [f"{c}{last + 1}" for c in "CEFGH"]


def work_speed(engine_name: str, path: str, edits: int) -> dict:
    engine = ADAPTERS[engine_name]()
    cells = _formula_cells()
    t0 = time.perf_counter()
    engine.load(path)
    first = [engine.get("Sales", c) for c in cells]
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i in range(edits):
        engine.set("Sales", f"C{2 + i % 50}", (i * 5) % 31 + 1)
        after = [engine.get("Sales", c) for c in cells]
    edit_s = (time.perf_counter() - t0) / edits
    out = {"load_and_eval_ms": load_s * 1e3, "edit_and_read_all_ms": edit_s * 1e3, "check": after[-4:],
           "n_formula_cells": len(cells), "first_total": first[-4]}
    try:
        n = max(1, edits // 10)
        t0 = time.perf_counter()
        for i in range(n):
            engine.set_formula("Sales", f"I{2 + i % 50}", f"=E{2 + i % 50}*2+SUM(C2:C{10 + i % 40})")
            after = [engine.get("Sales", c) for c in [*cells, f"I{2 + i % 50}"]]
        out["new_formula_and_read_all_ms"] = (time.perf_counter() - t0) / n * 1e3
    except Exception as err:  # noqa: BLE001
        out["new_formula_and_read_all_ms"] = f"unsupported: {type(err).__name__}: {str(err)[:60]}"
    return out


def work_hostile(engine_name: str, path: str) -> dict:
    engine = ADAPTERS[engine_name]()
    t0 = time.perf_counter()
    try:
        engine.load(path)
        value = engine.get("Calc", "A1")
    except BaseException as err:  # noqa: BLE001 - RecursionError, MemoryError etc. are outcomes
        value = f"EXCEPTION {type(err).__name__}: {str(err)[:80]}"
    return {"value": value if isinstance(value, (str, float, bool, type(None))) else repr(value),
            "seconds": time.perf_counter() - t0}


def _limit_memory():
    cap = 4 * 1024**3
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))


def run_worker(args: list[str], timeout: float) -> dict:
    cmd = [sys.executable, __file__, "--worker", *args]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=timeout,
                              preexec_fn=_limit_memory,
                              env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    except subprocess.TimeoutExpired:
        return {"outcome": f"HANG (killed after {timeout:.0f} s)"}
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["?"])[-1][:100]
        return {"outcome": f"CRASH rc={proc.returncode}: {tail}", "wall_s": wall}
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["wall_s"] = wall
    return result


# ----------------------------------------------------------------------------------------------------------------
# Ground truth and comparison.


def libreoffice_values(paths: list[Path], outdir: Path) -> dict[Path, openpyxl.Workbook]:
    """Recalculate all files in ONE soffice call; return each recalculated workbook (cached values)."""
    soffice = shutil.which("soffice")
    if soffice is None:
        raise SystemExit("soffice not found: apt-get install -y --no-install-recommends libreoffice-calc-nogui")
    outdir.mkdir(parents=True, exist_ok=True)
    profile = Path(tempfile.mkdtemp(prefix="lo-profile-"))
    subprocess.run([soffice, f"-env:UserInstallation=file://{profile}", "--headless", "--convert-to", "xlsx",
                    "--outdir", str(outdir), *map(str, paths)], check=True, capture_output=True, timeout=600)
    shutil.rmtree(profile, ignore_errors=True)
    return {p: openpyxl.load_workbook(outdir / p.name, data_only=True) for p in paths}


def same(got, want) -> bool:
    if want is None:
        want = ""
    if got is None:
        got = "" if isinstance(want, str) else 0.0
    if isinstance(want, bool) or isinstance(got, bool):
        return type(got) is type(want) and got == want
    if isinstance(want, (int, float)):
        return isinstance(got, float) and math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-12)
    return isinstance(got, str) and got == want


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "bench_formula_engines")
    parser.add_argument("--engines", default=",".join(ENGINES))
    parser.add_argument("--edits", type=int, default=200)
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        kind, engine, path, *rest = args.worker
        if kind == "correctness":
            result = work_correctness(engine, path)
        elif kind == "speed":
            result = work_speed(engine, path, int(rest[0]))
        else:
            result = work_hostile(engine, path)
        print(json.dumps(result, default=repr))
        return

    engines = args.engines.split(",")
    args.out.mkdir(parents=True, exist_ok=True)
    report: dict = {"engines": engines}

    correct_path = args.out / "correctness.xlsx"
    build_correctness_workbook(correct_path)
    truth_book = libreoffice_values([correct_path], args.out / "lo")[correct_path]["Calc"]
    truth = [truth_book.cell(row=i, column=1).value for i in range(2, len(CASES) + 2)]
    report["correctness"] = {}
    for engine in engines:
        res = run_worker(["correctness", engine, str(correct_path)], timeout=300)
        if "values" not in res:
            report["correctness"][engine] = {"outcome": res["outcome"]}
            continue
        wrong = [{"formula": f, "libreoffice": t, "engine": g}
                 for f, t, g in zip(CASES, truth, res["values"], strict=True) if not same(g, t)]
        report["correctness"][engine] = {"agree": len(CASES) - len(wrong), "of": len(CASES), "wrong": wrong}
        print(f"correctness {engine:13s} {len(CASES) - len(wrong):3d}/{len(CASES)}", flush=True)

    speed_path = args.out / "speed.xlsx"
    build_speed_workbook(speed_path)
    report["speed"] = {}
    for engine in engines:
        res = run_worker(["speed", engine, str(speed_path), str(args.edits)], timeout=600)
        report["speed"][engine] = res
        print(f"speed {engine:13s} {json.dumps(res, default=repr)[:300]}", flush=True)

    report["hostile"] = {}
    for name in HOSTILE:
        path = args.out / f"hostile_{name}.xlsx"
        build_hostile_workbook(path, name)
        for engine in engines:
            res = run_worker(["hostile", engine, str(path)], timeout=20)
            report["hostile"].setdefault(name, {})[engine] = res
            print(f"hostile {name:18s} {engine:13s} {json.dumps(res, default=repr)[:200]}", flush=True)

    (args.out / "report.json").write_text(json.dumps(report, indent=1, default=repr))
    print(f"wrote {args.out / 'report.json'}")


if __name__ == "__main__":
    main()
