"""Procedural spreadsheet tasks: a data table from one of four domains, a few *components* (goals plus the mess or
the broken formulas that make them necessary), and the user's request.

Splits: ``train`` draws the 16 ``TRAIN_TEMPLATES`` (12 single skills and 4 multi-step combinations); ``heldout``
draws only what train never shows: two skills (``fix_absolute_ref``, ``group_share``) and two combinations
(``clean_categories+summary_table``, a cleaning skill train never applies to categories, and the three-step
``dedupe+computed_column+totals_row``). Task seeds of the two splits come from disjoint RNG streams (the core
seeds ``[env, split, k]``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from envs.spreadsheet.compiler import Formula
from envs.spreadsheet.formulas import col_letter
from envs.spreadsheet.goals import (
    CellFormula,
    Dedupe,
    Goal,
    InPlace,
    Layout,
    MatchBook,
    NewColumn,
    SortRows,
    Summary,
    TotalsRow,
    compute,
)
from envs.spreadsheet.workbook import Workbook
from envs.spreadsheet.xlsx import from_xlsx

Key = tuple[str, int, int]


@dataclass(frozen=True)
class Domain:
    sheet: str
    headers: dict[str, str]  # role -> header
    id_prefix: str
    cats: tuple[str, ...]
    codes: tuple[str, ...]
    lookup_sheet: str
    lookup_header: str
    lookup_values: tuple[float, ...]
    amount: str  # header of n * x


DOMAINS = (
    Domain("Sales", {"id": "Order", "date": "Date", "name": "Rep", "cat": "Region", "code": "Product", "n": "Qty",
                     "x": "Unit Price"}, "S-", ("East", "West", "North", "South", "Central"),
           ("P-101", "P-102", "P-103", "P-104", "P-105", "P-106"), "Products", "Discount",
           (0.05, 0.1, 0.15, 0.2, 0.25), "Revenue"),
    Domain("Inventory", {"id": "SKU", "date": "Received", "name": "Buyer", "cat": "Category", "code": "Supplier",
                         "n": "Units", "x": "Unit Cost"}, "K-", ("Tools", "Garden", "Kitchen", "Toys", "Office"),
           ("SUP-A", "SUP-B", "SUP-C", "SUP-D", "SUP-E"), "Suppliers", "Lead Days", (2.0, 5.0, 7.0, 10.0, 14.0, 21.0),
           "Stock Value"),
    Domain("Timesheet", {"id": "Entry", "date": "Day", "name": "Employee", "cat": "Team", "code": "Project",
                         "n": "Hours", "x": "Rate"}, "T-", ("Design", "Support", "Platform", "Data"),
           ("PRJ-1", "PRJ-2", "PRJ-3", "PRJ-4", "PRJ-5"), "Projects", "Budget", (1000.0, 2500.0, 4000.0, 7500.0),
           "Pay"),
    Domain("Expenses", {"id": "Claim", "date": "Date", "name": "Traveller", "cat": "Department", "code": "Account",
                        "n": "Nights", "x": "Nightly Rate"}, "E-", ("Finance", "Legal", "Marketing", "Research"),
           ("AC-10", "AC-20", "AC-30", "AC-40", "AC-50"), "Accounts", "Limit", (500.0, 750.0, 1000.0, 1500.0),
           "Hotel Cost"),
)
FIRST = ("Ann", "Ben", "Cara", "Dev", "Ella", "Finn", "Gina", "Hugo", "Ines", "Jon", "Kira", "Liam", "Maya", "Nils",
         "Omar", "Pia", "Raj", "Sara", "Tom", "Uma", "Vera", "Wes", "Yara", "Zoe")
LAST = ("Lee", "Park", "Novak", "Silva", "Brown", "Khan", "Meyer", "Rossi", "Young", "Costa", "Ward", "Ito", "Diaz",
        "Quinn", "Hale", "Moss")


@dataclass
class SheetTask:
    """One task: the initial workbook, the clean records, the goals, and the request."""

    template: str
    split: str
    task_seed: int
    layout: Layout
    records: tuple[dict, ...]
    book: Workbook
    goals: tuple[Goal, ...]
    static: dict[Key, Any]  # cells outside the table that must stay as they are
    message: str
    cats: tuple[str, ...]
    codes: tuple[str, ...]


@dataclass
class _Build:
    r: random.Random
    dom: Domain
    layout: Layout
    records: list[dict]
    mess: dict[tuple[int, int], Any] = field(default_factory=dict)  # (row, col) -> raw, over the clean table
    extra_rows: list[tuple[int, dict]] = field(default_factory=list)  # duplicates: (insert before index, record)
    static: dict[Key, Any] = field(default_factory=dict)
    goals: list[Goal] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    next_col: int = 0
    totals_extra: list[tuple[int, tuple]] = field(default_factory=list)  # computed columns a totals row also sums

    def h(self, role: str) -> str:
        return self.layout.header(role)

    def L(self, role: str) -> str:
        return self.layout.letter(role)

    def take_col(self) -> int:
        self.next_col += 1
        return self.next_col - 1

    @property
    def last(self) -> int:
        return self.layout.last(len(self.records))


def _amount_formula(b: _Build) -> str:
    return f"={b.L('n')}{{r}}*{b.L('x')}{{r}}"


def computed_column(b: _Build) -> None:
    col, L = b.take_col(), col_letter(b.next_col - 1)
    if b.r.random() < 0.5:
        b.goals.append(NewColumn(live=True, col=col, header=b.dom.amount, op="product", formula=_amount_formula(b)))
        b.lines.append(f"Add a column '{b.dom.amount}' in column {L} (header in {L}1): for every row, "
                       f"{b.h('n')} times {b.h('x')}. Use formulas, so it stays right when the data changes.")
        b.totals_extra.append((col, ("product", ())))
    else:
        rate = b.r.choice((0.05, 0.08, 0.1, 0.2))
        header = f"{b.dom.amount} incl. Tax"
        formula = f"=ROUND({b.L('n')}{{r}}*{b.L('x')}{{r}}*(1+{rate}),2)"
        b.goals.append(NewColumn(live=True, col=col, header=header, op="tax", params=(rate,), formula=formula))
        b.lines.append(f"Add a column '{header}' in column {L} (header in {L}1): for every row, {b.h('n')} times "
                       f"{b.h('x')} plus {rate:.0%} tax, rounded to 2 decimals. Use formulas.")
        b.totals_extra.append((col, ("tax", (rate,))))


def conditional_flag(b: _Build) -> None:
    col, L = b.take_col(), col_letter(b.next_col - 1)
    amounts = sorted(rec["n"] * rec["x"] for rec in b.records)
    threshold = float(round(amounts[len(amounts) // 2]))
    high, low = b.r.choice((("high", "low"), ("large", "small"), ("review", "ok"), ("yes", "no")))
    header = b.r.choice(("Flag", "Check", "Size"))
    formula = f'=IF({b.L("n")}{{r}}*{b.L("x")}{{r}}>{threshold:g},"{high}","{low}")'
    b.goals.append(NewColumn(live=True, col=col, header=header, op="flag", params=(threshold, high, low),
                             formula=formula))
    b.lines.append(f"Add a column '{header}' in column {L} (header in {L}1): \"{high}\" where {b.h('n')} times "
                   f"{b.h('x')} is more than {threshold:g}, otherwise \"{low}\". Use formulas.")


def lookup_column(b: _Build) -> None:
    dom, col = b.dom, b.take_col()
    L = col_letter(col)
    values = [b.r.choice(dom.lookup_values) for _ in dom.codes]
    codes = list(dom.codes)
    b.r.shuffle(codes)
    sheet = dom.lookup_sheet
    b.static[(sheet, 1, 1)], b.static[(sheet, 1, 2)] = b.h("code"), dom.lookup_header
    for i, (code, v) in enumerate(zip(codes, values, strict=True), start=2):
        b.static[(sheet, i, 1)], b.static[(sheet, i, 2)] = code, v
    params = tuple(zip(codes, values, strict=True))
    formula = f"=VLOOKUP({b.L('code')}{{r}},{sheet}!$A$2:$B${len(codes) + 1},2,FALSE)"
    b.goals.append(NewColumn(live=True, col=col, header=dom.lookup_header, op="lookup", params=params,
                             formula=formula, param_cells=tuple((sheet, i, 2) for i in range(2, len(codes) + 2))))
    b.lines.append(f"Add a column '{dom.lookup_header}' in column {L} (header in {L}1) that looks up each row's "
                   f"{b.h('code')} in the sheet '{sheet}' (codes in column A, values in column B). Use formulas.")


def totals_row(b: _Build) -> None:
    func = b.r.choice(("AVERAGE", "MAX", "MIN"))
    aggs = [(b.layout.col("n"), "SUM", "n"), (b.layout.col("x"), func, "x")]
    aggs += [(col, "SUM", source) for col, source in b.totals_extra]
    row = b.last + 1
    b.goals.append(TotalsRow(live=True, label_col=1, label="Total", aggs=tuple(aggs)))
    parts = [f"the sum of {b.h('n')} in {b.L('n')}", f"the {func.lower()} of {b.h('x')} in {b.L('x')}"]
    parts += [f"the sum of column {col_letter(col)} in {col_letter(col)}" for col, _ in b.totals_extra]
    b.lines.append(f"Add a totals row right under the table (row {row} once the table is as it should be): "
                   f"'Total' in column A, and formulas for " + ", ".join(parts) + ".")


def fix_ref_error(b: _Build) -> None:
    col = b.take_col()
    L, nL, xL = col_letter(col), b.L("n"), b.L("x")
    b.goals.append(NewColumn(live=True, col=col, header=b.dom.amount, op="product", formula=_amount_formula(b)))
    b.mess[(1, col)] = b.dom.amount
    rows = list(range(b.layout.first, b.last + 1))
    broken = set(b.r.sample(rows, k=min(len(rows), b.r.randint(2, 4))))
    for r in rows:
        b.mess[(r, col)] = f"=#REF!*{xL}{r}" if r in broken else f"={nL}{r}*{xL}{r}"
    b.lines.append(f"Column {L} ('{b.dom.amount}', meant to be {b.h('n')} times {b.h('x')} on each row) shows "
                   f"#REF! errors in some rows. Repair it so every row has a working formula.")


def fix_wrong_range(b: _Build) -> None:
    row, nL = b.last + 1, b.L("n")
    b.static[(b.layout.sheet, row, 1)] = "Total"
    b.mess[(row, b.layout.col("n"))] = f"=SUM({nL}{b.layout.first}:{nL}{b.last - b.r.randint(1, 3)})"
    b.goals.append(CellFormula(live=True, key=(b.layout.sheet, row, b.layout.col("n")), func="SUM", role="n"))
    b.lines.append(f"The total in {nL}{row} leaves out some rows of the table. Fix its formula so it adds up "
                   f"{b.h('n')} of every row.")


def fix_absolute_ref(b: _Build) -> None:
    col = b.take_col()
    L, xL = col_letter(col), b.L("x")
    label_col, rate_col = col + 2, col + 3
    rate = b.r.choice((0.1, 0.15, 0.2, 0.25))
    b.static[(b.layout.sheet, 1, label_col)], b.static[(b.layout.sheet, 1, rate_col)] = "Markup", rate
    R = col_letter(rate_col)
    header = f"{b.h('x')} with Markup"
    b.mess[(1, col)] = header
    for r in range(b.layout.first, b.last + 1):
        b.mess[(r, col)] = f"=ROUND({xL}{r}*(1+{R}{r - b.layout.first + 1}),2)"
    b.goals.append(NewColumn(live=True, col=col, header=header, op="rate", params=(rate,),
                             formula=f"=ROUND({xL}{{r}}*(1+${R}$1),2)", param_cells=((b.layout.sheet, 1, rate_col),)))
    b.lines.append(f"Column {L} ('{header}') should be {b.h('x')} plus the markup in {R}1, rounded to 2 decimals, "
                   f"but only the first row comes out right. Fix the formulas so every row uses {R}1.")


def group_share(b: _Build) -> None:
    col, f, last = b.take_col(), b.layout.first, b.last
    L, nL, cL = col_letter(col), b.L("n"), b.L("cat")
    header = f"Share of {b.h('cat')}"
    formula = f"=ROUND({nL}{{r}}/SUMIF(${cL}${f}:${cL}${last},{cL}{{r}},${nL}${f}:${nL}${last}),3)"
    b.goals.append(NewColumn(live=True, col=col, header=header, op="share", formula=formula))
    b.lines.append(f"Add a column '{header}' in column {L} (header in {L}1): each row's {b.h('n')} as a fraction of "
                   f"the total {b.h('n')} of its {b.h('cat')}, rounded to 3 decimals. Use formulas.")


def _messy(r: random.Random, text: str) -> str:
    style = r.choice(("upper", "lower", "spaces", "both"))
    out = text.upper() if style == "upper" else text.lower() if style in ("lower", "both") else text
    if style in ("spaces", "both"):
        out = " " * r.randint(0, 2) + out.replace(" ", " " * r.randint(1, 3)) + " " * r.randint(1, 2)
    return out if out != text else " " + text


def _clean(b: _Build, role: str, what: str) -> None:
    c = b.layout.col(role)
    rows = list(range(len(b.records)))
    for i in b.r.sample(rows, k=max(3, len(rows) // 3)):
        b.mess[(b.layout.first + i, c)] = _messy(b.r, b.records[i][role])
    b.goals.append(InPlace(role=role))
    b.lines.append(f"The {b.h(role)} column ({b.L(role)}) has stray spaces and inconsistent capitalisation. "
                   f"Clean it in place: single spaces, nothing before or after, each word capitalised ({what}). "
                   f"Type the cleaned values over the old ones.")


def clean_text(b: _Build) -> None:
    _clean(b, "name", "like 'Ann Lee'")


def clean_categories(b: _Build) -> None:
    _clean(b, "cat", f"like '{b.records[0]['cat']}'")


def clean_numbers(b: _Build) -> None:
    c = b.layout.col("n")
    rows = list(range(len(b.records)))
    for i in b.r.sample(rows, k=max(3, len(rows) // 3)):
        n = b.records[i]["n"]
        b.mess[(b.layout.first + i, c)] = b.r.choice((str(n), f" {n}", f"{n} "))
    b.goals.append(InPlace(role="n"))
    b.lines.append(f"Some {b.h('n')} values (column {b.L('n')}) are stored as text. Convert them to numbers in "
                   f"place.")


def dedupe(b: _Build, ordered: bool = True) -> None:
    for _ in range(b.r.randint(2, 4)):
        src = b.r.randrange(len(b.records) - 1)
        b.extra_rows.append((b.r.randint(src + 1, len(b.records)), b.records[src]))
    b.goals.append(Dedupe(ordered=ordered))
    b.lines.append(f"Some rows are repeated (same {b.h('id')}). Delete the repeated rows, keeping the first "
                   f"occurrence of each, and keep the other rows in their order.")


def sort_multi(b: _Build) -> None:
    second = b.r.choice(("n", "x", "date"))
    goal = SortRows(keys=(("cat", False), (second, True)), text=f"{b.h('cat')}, then {b.h(second)}")
    b.goals.append(goal)
    b.lines.append(f"Sort the table's rows by {b.h('cat')} (A to Z), then by {b.h(second)} (largest or latest "
                   f"first). Keep each row's cells together.")


def summary_table(b: _Build) -> None:
    cats = tuple(sorted({rec["cat"] for rec in b.records}))
    func = b.r.choice(("SUMIF", "AVERAGEIF"))
    count_h, value_h = "Count", f"{'Total' if func == 'SUMIF' else 'Average'} {b.h('n')}"
    b.goals.append(Summary(live=True, sheet="Summary", cat_header=b.h("cat"), cats=cats,
                           columns=(("Count", "COUNTIF", None), (value_h, func, "n"))))
    b.lines.append(f"Add a sheet named 'Summary' holding a table: A1 '{b.h('cat')}', B1 '{count_h}', "
                   f"C1 '{value_h}'; the {b.h('cat')} values {', '.join(cats)} in A2:A{len(cats) + 1} in this "
                   f"order; in columns B and C, formulas giving the number of rows and the "
                   f"{'total' if func == 'SUMIF' else 'average'} {b.h('n')} of each {b.h('cat')}.")


def date_parts(b: _Build) -> None:
    col, L = b.take_col(), col_letter(b.next_col - 1)
    part = b.r.choice(("year", "month"))
    header = part.capitalize()
    func = "YEAR" if part == "year" else "MONTH"
    b.goals.append(NewColumn(live=False, col=col, header=header, op=part,
                             formula=f"={func}(DATEVALUE({b.L('date')}{{r}}))"))
    b.lines.append(f"The {b.h('date')} column ({b.L('date')}) holds dates as text. Add a column '{header}' in "
                   f"column {L} (header in {L}1) with the {part} of each date as a number.")


COMPONENTS = {f.__name__: f for f in (
    computed_column, conditional_flag, lookup_column, totals_row, fix_ref_error, fix_wrong_range, fix_absolute_ref,
    group_share, clean_text, clean_categories, clean_numbers, dedupe, sort_multi, summary_table, date_parts)}
TRAIN_TEMPLATES = (
    "computed_column", "conditional_flag", "lookup_column", "totals_row", "fix_ref_error", "fix_wrong_range",
    "clean_text", "clean_numbers", "dedupe", "sort_multi", "summary_table", "date_parts",
    "clean_numbers+totals_row", "dedupe+sort_multi", "computed_column+totals_row", "clean_text+lookup_column",
)
HELDOUT_TEMPLATES = ("fix_absolute_ref", "group_share", "clean_categories+summary_table",
                     "dedupe+computed_column+totals_row")
TEMPLATES = {"train": TRAIN_TEMPLATES, "heldout": HELDOUT_TEMPLATES}


def _records(r: random.Random, dom: Domain, n: int) -> list[dict]:
    cats = r.sample(dom.cats, k=r.randint(3, min(4, len(dom.cats))))
    names = r.sample([f"{a} {b}" for a in FIRST for b in LAST], k=n)
    ids = sorted(r.sample(range(1000, 9999), k=n))
    out = []
    for i in range(n):
        day = r.randrange(0, 700)
        y, rest = (2023, day) if day < 365 else (2024, day - 365)
        month = min(12, rest // 31 + 1)
        out.append({"id": f"{dom.id_prefix}{ids[i]}", "date": f"{y}-{month:02d}-{rest % 28 + 1:02d}",
                    "name": names[i], "cat": r.choice(cats), "code": r.choice(dom.codes), "n": r.randint(1, 40),
                    "x": round(r.uniform(2, 90), 2)})
    return out


def build_task(template: str, split: str, task_seed: int, r: random.Random) -> SheetTask:
    dom = r.choice(DOMAINS)
    roles = ["date", "name", "cat", "code", "n", "x"]
    r.shuffle(roles)
    roles = ("id", *roles)
    layout = Layout(dom.sheet, roles, tuple(dom.headers[role] for role in roles))
    b = _Build(r, dom, layout, _records(r, dom, r.randint(8, 16)), next_col=len(roles) + 1)
    parts = template.split("+")
    for part in parts:
        if part == "dedupe":
            dedupe(b, ordered="sort_multi" not in parts)
        else:
            COMPONENTS[part](b)
    book = _render(b)
    message = _message(b, book)
    return SheetTask(template, split, task_seed, layout, tuple(dict(rec) for rec in b.records), book,
                     tuple(b.goals), dict(b.static), message, tuple(sorted({rec["cat"] for rec in b.records})),
                     dom.codes)


def _render(b: _Build) -> Workbook:
    layout = b.layout
    sheets = [layout.sheet] + sorted({s for s, _, _ in b.static if s != layout.sheet})
    book = Workbook(tuple(sheets))
    rows = [dict(rec) for rec in b.records]
    for inserted, (before, rec) in enumerate(sorted(b.extra_rows, key=lambda t: t[0])):
        rows.insert(before + inserted, dict(rec))
    for j, head in enumerate(layout.headers, start=1):
        book.set_cell(layout.sheet, 1, j, head)
    first_dupe = {}
    for i, rec in enumerate(rows):
        r = layout.first + i
        for j, role in enumerate(layout.roles, start=1):
            book.set_cell(layout.sheet, r, j, rec[role])
        first_dupe.setdefault(rec["id"], r)
    # mess is keyed by the clean table's rows; with duplicates inserted, map record index -> its first row
    index_row = {layout.first + k: first_dupe[rec["id"]] for k, rec in enumerate(b.records)}
    for (r, c), raw in b.mess.items():
        book.set_cell(layout.sheet, index_row.get(r, r), c, raw)
    for (s, r, c), raw in b.static.items():
        book.set_cell(s, r, c, raw)
    return book


def _message(b: _Build, book: Workbook) -> str:
    layout = b.layout
    n_rows = book.extent(layout.sheet)[0] - 1
    sheets = ", ".join(f"'{s}'" for s in book.sheets)
    steps = "\n".join(f"{i}. {line}" for i, line in enumerate(b.lines, start=1)) if len(b.lines) > 1 else b.lines[0]
    return (f"The workbook has the sheets {sheets}. The table on '{layout.sheet}' has its headers in row 1 "
            f"(columns A-{col_letter(len(layout.roles))}: {', '.join(layout.headers)}) and data below, about {n_rows} "
            f"rows.\n\n{steps}")


def task_from_xlsx(start, goal, request: str, task_seed: int = 0) -> SheetTask:
    """A task from a user's own files: the agent starts from ``start`` and must make the workbook compute what
    ``goal`` computes (cells holding formulas in ``goal`` must hold formulas). Paths or file objects."""
    book, target = from_xlsx(start), from_xlsx(goal)
    cells, formulas, raws = {}, {}, {}
    for s in target.sheets.values():
        for (r, c), raw in s.cells.items():
            key = (s.name, r, c)
            cells[key] = target.cell_value(s.name, r, c)
            if isinstance(raw, Formula):
                formulas[key] = raw.text
            else:
                raws[key] = raw
    layout = Layout(next(iter(book.sheets)), (), ())
    goal_ = MatchBook(live=bool(formulas), cells=cells, formulas=formulas, raws=raws)
    return SheetTask("from_xlsx", "train", task_seed, layout, (), book, (goal_,), {}, request, (), ())


def generate_task(rng: np.random.Generator, split: str, task_seed: int, template: str | None = None) -> SheetTask:
    """Task ``task_seed`` of ``split`` (all randomness from ``rng``); ``template`` forces one (for tests)."""
    if split not in TEMPLATES:
        raise ValueError(f"split must be one of {', '.join(TEMPLATES)}, got {split!r}")
    r = random.Random(int(rng.integers(2**63)))
    if template is None:
        template = r.choice(TEMPLATES[split])
    elif template not in TRAIN_TEMPLATES + HELDOUT_TEMPLATES:
        raise ValueError(f"unknown template {template!r}; templates: {', '.join(TRAIN_TEMPLATES + HELDOUT_TEMPLATES)}")
    return build_task(template, split, task_seed, r)


__all__ = ["DOMAINS", "HELDOUT_TEMPLATES", "TEMPLATES", "TRAIN_TEMPLATES", "SheetTask", "compute", "generate_task",
           "task_from_xlsx"]
