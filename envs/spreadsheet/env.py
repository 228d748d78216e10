"""``SpreadsheetEnv``: edit a workbook with live formulas until it does what the user asked.

Tools are typed methods with Google-style docstrings (their JSON schemas are derived from them). Read tools never
change state. A mistake by the agent raises ``ToolError``, whose message (what was wrong, what is valid) is the
observation; any other exception is a bug in the environment. A write tool does all it says or nothing, and refuses
a change after which evaluating every formula would cost more than ``MAX_FORMULAS`` / ``MAX_FORMULA_READS`` allow,
so no step (the checker's included) evaluates more.

The docstrings are the model's whole manual, read on every turn, so they say what a solver needs once (cell
references are explained in ``ROLE``) and limits only an error message can teach are left to the error messages.
Tools have no return annotation: each returns its observation text, and ``"return": {"type": "string"}`` in every
schema would tell a model nothing (``scripts/count_prompt_tokens.py`` measures the prompt).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from ..core import CheckResult, FaultConfig, SeededError, ToolCall, ToolEnv, ToolError, tool
from ..core.tools import suggest
from . import faults
from .checker import check_task
from .compiler import Formula
from .formulas import (
    MAX_COL,
    MAX_ROW,
    FormulaSyntaxError,
    RefBox,
    XlError,
    col_letter,
    col_number,
    parse_ref,
    rewrite_refs,
)
from .functions import number_text
from .plan import reference_plan
from .templates import SheetTask, generate_task
from .workbook import Workbook, move_box, row_compare, storable

ROLE = ("You are a spreadsheet assistant. Do the user's request below in their workbook, one tool call per turn. "
        "Change nothing else, leave no helper cells, then call finish. Cells are written like B2, A1:C9, B:B or "
        "Sheet!A1; without a sheet name, the first sheet.")
MAX_READ, MAX_WRITE, MAX_SORT = 600, 5_000, 100_000
# What evaluating every formula may cost (``Workbook.work``): a call that would go past either is refused, so no
# step (the checker's at the end included) evaluates more. A formula costs ~20 us, a cell its ranges read ~1.5 us.
MAX_FORMULAS, MAX_FORMULA_READS = 10_000, 1_000_000
# What one fill may write in formula text (the source formulas' characters x copies): each copy is rewritten,
# compiled and evaluated, at a cost that grows with its length, so a long formula filled far is refused before any
# of that work (the longest fill in the reference plans of 300 tasks per split writes 660).
MAX_FILL_CHARS = 250_000


def _atomic(fn):
    """A write tool does all it says or nothing: a ToolError (or a bug) part-way undoes every change it made, and a
    call that leaves the formulas more to evaluate than the limits allow is refused (``_within_limits``)."""

    @functools.wraps(fn)
    def run(self, *args, **kwargs):
        book = self._book
        with book.atomic():
            self._work_before = book.work()
            out = fn(self, *args, **kwargs)
            self._within_limits()
        return out

    return run


@dataclass
class SheetState:
    """What the agent can change: the workbook; plus the truth of the data table (which a coworker may edit)."""

    book: Workbook
    records: list[dict]
    others: list[str] = field(default_factory=list)  # edits made by someone else, for info

    def copy(self) -> SheetState:
        return SheetState(self.book.copy(), [dict(r) for r in self.records], list(self.others))


def _display(v) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "TRUE" if v else "FALSE"
    if isinstance(v, float | int):
        return number_text(v)
    if isinstance(v, XlError):
        return v.code
    text = str(v)
    looks_odd = (text != text.strip() or "  " in text or not text or "|" in text or "\n" in text
                 or _is_number_text(text) or not text.isascii())
    return json.dumps(text) if looks_odd else text


def _ascii(text: str) -> str:
    """Observations are printable ASCII: other characters (from a user's own file) are shown as escapes."""
    return text if text.isascii() else text.encode("ascii", "backslashreplace").decode()


def _is_number_text(text: str) -> bool:
    try:
        float(text.strip().replace(",", ""))
    except ValueError:
        return False
    return True


class SpreadsheetEnv(ToolEnv):
    """Edit a workbook (values and live formulas) to do what the user asked: computed columns, repairs of broken
    formulas, cleaning, de-duplication, lookups, sorting and summary tables.

    ## Action space
    One tool call per step as JSON text (``ToolEnv``): 14 tools to list sheets, read a range, find text, write values,
    set a formula, fill, clear, insert or delete rows and columns, sort, add a sheet, and ``finish`` (finishes).

    ## Observation space
    Text: first the role and the user's request (and an earlier assistant's transcript when a mistake was seeded);
    then each tool's answer (a table, what was written and what the formulas now show) or its refusal.

    ## Rewards
    At the end, ``check_task``'s score of the final workbook: the fraction of the request's goals met (live goals
    must keep giving right answers when their inputs change), or 0 when a cell the request did not ask to change was
    damaged or a helper cell left behind.

    ## Starting state
    A generated workbook (a data table from one of four domains with the mess or broken formulas the request is
    about) and the request, from the split's templates (``templates.py``), the same for every seed given
    ``task_seed``; or your own ``tasks``. Faults: every kind; a seeded mistake is an earlier edit one column right
    or one row down, or a sort by the wrong column (``faults.py``).

    ## Episode end
    Terminated by ``finish``; truncated after ``3 * required_steps + 10`` turns (``max_turns``).

    ## Arguments
    As ``ToolEnv`` (``faults``, ``max_turns``, ``render_mode``), plus ``tasks``: tasks of your own
    (``task_from_xlsx``); task ``k`` of either split is then ``tasks[k % len(tasks)]``.
    """

    description = "spreadsheet editing with live formulas: computed columns, fixes, cleaning, lookups, summaries"
    task_family = "SpreadsheetEnv"  # seeds the tasks: keep it when renaming or subclassing
    seeded_error_heading = "Earlier work on this request, by the assistant before you (check it):"
    state: SheetState
    task: SheetTask

    def __init__(self, faults: FaultConfig | Mapping[str, float] | None = None, max_turns: int | None = None,
                 render_mode: str | None = None, tasks: Sequence[SheetTask] | None = None):
        """As ``ToolEnv``, plus ``tasks``: your own tasks (``task_from_xlsx``) instead of generated ones; task
        ``k`` of either split is then ``tasks[k % len(tasks)]``. E.g.
        ``gymnasium.make("recoverygym/Spreadsheet-v0", tasks=[task_from_xlsx("in.xlsx", "goal.xlsx", "...")])``.
        """
        super().__init__(faults=faults, max_turns=max_turns, render_mode=render_mode)
        if tasks is not None and (not tasks or not all(isinstance(t, SheetTask) for t in tasks)):
            raise ValueError("tasks must be a non-empty sequence of SheetTask (see envs.spreadsheet.task_from_xlsx)")
        self.tasks = tuple(tasks or ())

    # -- the core's hooks -----------------------------------------------------------------------------------------

    def _generate_task(self, rng: np.random.Generator, split: str, task_seed: int) -> SheetTask:
        if self.tasks:
            return self.tasks[task_seed % len(self.tasks)]
        return generate_task(rng, split, task_seed)

    def _setup(self, task: SheetTask) -> None:
        self.state = SheetState(task.book.copy(), [dict(r) for r in task.records])

    def _prompt(self) -> str:
        return f"{ROLE}\n\nRequest:\n{self.task.message}"

    def _check(self) -> CheckResult:
        score, components, reasons = check_task(self.state, self.task)
        return CheckResult(score, components, reasons)

    def _reference_plan(self) -> list[ToolCall]:
        plan = reference_plan(self)
        if self.turn == 0:  # a careful agent looks at the table before it changes anything
            plan.insert(0, self._first_look())
        return plan

    def _first_look(self) -> ToolCall:
        """Read the first sheet's used range (as much of it as one read_range shows)."""
        sheet = self.task.layout.sheet
        max_r, max_c = self.state.book.extent(sheet)
        cols = max(1, min(max_c, 26))
        rows = max(1, min(max_r, MAX_READ // cols))
        return ToolCall("read_range", {"cells": f"{sheet}!A1:{col_letter(cols)}{rows}"})

    def _seed_error(self, rng: np.random.Generator) -> SeededError | None:
        return faults.seed_error(self.task, self.start_plan, rng)

    def _apply_seeded_error(self, error: SeededError) -> list[tuple[ToolCall, str]]:
        start = self.state.book.copy()
        transcript = super()._apply_seeded_error(error)
        solved = self.scratch_copy()  # the reference's solution from the untouched start
        solved.state = SheetState(start.copy(), [dict(r) for r in self.task.records])
        for call in self.start_plan[:-1]:
            getattr(solved, call.name)(**call.arguments)
        self._mistaken = faults.mistaken_cells(start, self.state.book, solved.state.book)
        return transcript

    def _seeded_error_undone(self) -> bool:
        return faults.seeded_error_undone(self.state.book, self._mistaken)

    def _concurrent_edit(self, rng: np.random.Generator) -> str | None:
        return faults.concurrent_edit(self.state, self.task, rng)

    def _read_back(self, call: ToolCall) -> ToolCall:
        """A read of what ``call`` wrote (at most 40 rows by 12 columns), else of the top of its sheet."""
        target = call.arguments.get("cells") or call.arguments.get("cell")
        if isinstance(target, str):
            try:
                sheet, box = self._range(target)
            except ToolError:
                sheet = None
            if sheet is not None:
                rows = min(box.r2, box.r1 + 39) if box.kind != "rows" else box.r1 + 39
                cols = min(box.c2, box.c1 + 11) if box.kind != "cols" else box.c1 + 11
                if call.name == "write_values":
                    values = call.arguments.get("values") or [[None]]
                    rows = box.r1 + min(len(values), 40) - 1
                    width = max(len(v) for v in values if isinstance(v, list)) if values else 1
                    cols = box.c1 + min(width, 12) - 1
                cells = f"{sheet}!{col_letter(box.c1)}{box.r1}:{col_letter(cols)}{rows}"
                return ToolCall("read_range", {"cells": cells})
        if call.name == "add_sheet":
            return ToolCall("list_sheets", {})
        sheet = call.arguments.get("sheet")
        try:
            name = self._sheet_name(sheet) if isinstance(sheet, str) else self.task.layout.sheet
        except ToolError:
            name = self.task.layout.sheet
        max_r, max_c = self._book.extent(name)
        cells = f"{name}!A1:{col_letter(max(1, min(max_c, 12)))}{max(1, min(max_r, 40))}"
        return ToolCall("read_range", {"cells": cells})

    # -- helpers --------------------------------------------------------------------------------------------------

    @property
    def _book(self) -> Workbook:
        return self.state.book

    def _sheet_name(self, name: str) -> str:
        try:
            return self._book.sheet(name.strip().strip("'")).name
        except KeyError:
            names = list(self._book.sheets)
            raise ToolError(f"no sheet named {name[:40]!r}{suggest(name, names)}; the sheets are "
                            f"{', '.join(names)}") from None

    def _range(self, cells: str) -> tuple[str, RefBox]:
        text = cells.strip()
        sheet = None
        if "!" in text:
            sheet, text = text.rsplit("!", 1)
            sheet = self._sheet_name(sheet)
        try:
            box = parse_ref(text)
        except FormulaSyntaxError as err:
            raise ToolError(f"{cells[:40]!r} is not a cell or range: {err}") from None
        return sheet or next(iter(self._book.sheets)), box

    def _clip(self, sheet: str, box: RefBox) -> RefBox:
        """A whole-column or whole-row range cut to the part of the sheet in use."""
        max_r, max_c = self._book.extent(sheet)
        r2 = min(box.r2, max(max_r, box.r1)) if box.kind == "cols" or box.r2 - box.r1 > 5_000 else box.r2
        c2 = min(box.c2, max(max_c, box.c1)) if box.kind == "rows" or box.c2 - box.c1 > 200 else box.c2
        return RefBox(box.sheet, box.r1, box.c1, r2, c2)

    def _where(self, sheet: str, r: int, c: int) -> str:
        return f"{sheet}!{col_letter(c)}{r}"

    def _cell_text(self, sheet: str, r: int, c: int) -> str:
        raw = self._book.sheets[sheet].cells.get((r, c))
        if isinstance(raw, Formula):
            v = self._book.cell_value(sheet, r, c)
            return f"{raw.text.encode('ascii', 'backslashreplace').decode()} -> {_display(v)}"
        return _display(raw)

    def _errors_note(self, sheet: str, cells) -> str:
        bad = []
        for r, c in cells:
            v = self._book.cell_value(sheet, r, c)
            if isinstance(v, XlError):
                bad.append(f"{col_letter(c)}{r} {v.code}" + (f" ({v.detail})" if v.detail else ""))
        return f"; {len(bad)} cell(s) show errors: " + "; ".join(bad[:3]) if bad else ""

    def _within_limits(self) -> None:
        """Refuse (ToolError: the enclosing ``_atomic`` undoes the call) a change that grows the formulas' work past
        the limits; a workbook that starts past them (a user's file) can still be edited where that adds none."""
        formulas, reads = self._book.work()
        before_formulas, before_reads = self._work_before
        if formulas > MAX_FORMULAS and formulas > before_formulas:
            raise ToolError(f"refused, nothing was changed: the workbook would hold {formulas} formula cells, and at "
                            f"most {MAX_FORMULAS} can be evaluated; compute over ranges in fewer cells")
        if reads > MAX_FORMULA_READS and reads > before_reads:
            raise ToolError(f"refused, nothing was changed: the workbook's formulas would read {reads} cells in all "
                            f"(each reference counted within its sheet's used range), at most {MAX_FORMULA_READS}; "
                            "use fewer or smaller ranges, e.g. one total instead of a range in every row")

    def _set(self, sheet: str, r: int, c: int, raw) -> None:
        try:
            self._book.set_cell(sheet, r, c, raw)
        except FormulaSyntaxError as err:
            raise ToolError(f"{self._where(sheet, r, c)}: {err}") from None
        except ValueError as err:
            raise ToolError(f"{self._where(sheet, r, c)}: {err}") from None

    # -- read tools -----------------------------------------------------------------------------------------------

    @tool
    def list_sheets(self):
        """List the sheets with their used ranges and first rows."""
        lines = []
        for s in self._book.sheets.values():
            max_r, max_c = s.extent()
            if not max_r:
                lines.append(f"{s.name}: empty")
                continue
            head = " | ".join(self._cell_text(s.name, 1, c) for c in range(1, min(max_c, 30) + 1))
            lines.append(f"{s.name}: A1:{col_letter(max_c)}{max_r} ({len(s.cells)} filled cells); row 1: {head}")
        return _ascii("\n".join(lines))

    @tool
    def read_range(self, cells: str):
        """Read cells; a formula shows as '=formula -> value', text with odd spaces or digits in quotes.

        Args:
            cells: A cell or range.
        """
        sheet, box = self._range(cells)
        box = self._clip(sheet, box)
        n = (box.r2 - box.r1 + 1) * (box.c2 - box.c1 + 1)
        if n > MAX_READ:
            raise ToolError(f"{cells[:40]!r} covers {n} cells; read at most {MAX_READ} at a time (list_sheets shows "
                            f"each sheet's used range)")
        header = "row | " + " | ".join(col_letter(c) for c in range(box.c1, box.c2 + 1))
        lines = [f"{sheet}!{col_letter(box.c1)}{box.r1}:{col_letter(box.c2)}{box.r2}", header]
        for r in range(box.r1, box.r2 + 1):
            lines.append(f"{r} | " + " | ".join(self._cell_text(sheet, r, c) for c in range(box.c1, box.c2 + 1)))
        return _ascii("\n".join(lines))

    @tool
    def find(self, text: str, sheet: str | None = None):
        """Find cells whose value or formula contains text, ignoring case.

        Args:
            text: Like 'SUM('.
            sheet: Default: all sheets.
        """
        needle = text.strip().lower()
        if not needle:
            raise ToolError("text is empty; give some text to look for, like 'Total'")
        names = [self._sheet_name(sheet)] if sheet else list(self._book.sheets)
        hits = []
        for name in names:
            for r, c in sorted(self._book.sheets[name].cells):
                shown = self._cell_text(name, r, c)
                if needle in shown.lower():
                    hits.append(f"{self._where(name, r, c)}: {shown}")
        if not hits:
            return f"no cell contains {text[:60]!r}"
        more = f"\n... and {len(hits) - 30} more" if len(hits) > 30 else ""
        return _ascii(f"{len(hits)} cell(s):\n" + "\n".join(hits[:30]) + more)

    # -- write tools ----------------------------------------------------------------------------------------------

    @tool(write=True)
    @_atomic
    def write_values(self, cells: str, values: list[list[str | float | bool | None]]):
        """Write values (not formulas) row by row; numbers unquoted ("12" is text), null empties a cell.

        Args:
            cells: The top-left cell, or a range of the values' shape.
            values: Rows, like [["East", 12]].
        """
        sheet, box = self._range(cells)
        if not values or not all(isinstance(row, list) and row for row in values):
            raise ToolError('values must be a non-empty list of non-empty rows, like [["East", 12]]')
        width = max(len(row) for row in values)
        n = sum(len(row) for row in values)
        if not box.is_cell and (box.r2 - box.r1 + 1, box.c2 - box.c1 + 1) != (len(values), width):
            raise ToolError(f"{cells[:40]!r} is {box.r2 - box.r1 + 1} x {box.c2 - box.c1 + 1} cells but values are "
                            f"{len(values)} x {width}; give just the top-left cell, or a range of the same shape")
        if n > MAX_WRITE or box.r1 + len(values) - 1 > MAX_ROW or box.c1 + width - 1 > MAX_COL:
            raise ToolError(f"{n} values starting at {cells[:20]!r} is too many or runs past the sheet's edge")
        if sum(len(v) for row in values for v in row if isinstance(v, str)) > 1_000_000:
            raise ToolError("values hold more than 1,000,000 characters of text; write less per call")
        for i, row in enumerate(values):
            for j, v in enumerate(row):
                if isinstance(v, str) and v.startswith("=") and len(v) > 1:
                    raise ToolError(f"{v[:40]!r} is a formula; write_values types values only, use set_formula")
                try:
                    storable(v)
                except ValueError as err:
                    raise ToolError(f"{self._where(sheet, box.r1 + i, box.c1 + j)}: {err}; nothing was written"
                                    ) from None
        for i, row in enumerate(values):
            for j, v in enumerate(row):
                self._set(sheet, box.r1 + i, box.c1 + j, v)
        end = f"{col_letter(box.c1 + width - 1)}{box.r1 + len(values) - 1}"
        return f"wrote {n} value(s) to {sheet}!{col_letter(box.c1)}{box.r1}:{end}"

    @tool(write=True)
    @_atomic
    def set_formula(self, cell: str, formula: str):
        """Put a formula into one cell; shows its result.

        Args:
            cell: One cell.
            formula: Like '=SUM(B2:B9)'.
        """
        sheet, box = self._range(cell)
        if not box.is_cell:
            raise ToolError(f"{cell[:40]!r} is a range; set_formula takes one cell (then use fill to copy it)")
        text = formula.strip()
        if not text.startswith("="):
            text = "=" + text
        self._set(sheet, box.r1, box.c1, text)
        self._within_limits()  # before anything is evaluated
        note = self._errors_note(sheet, [(box.r1, box.c1)])
        return f"{self._where(sheet, box.r1, box.c1)}: {self._cell_text(sheet, box.r1, box.c1)}{note}"

    @tool(write=True)
    @_atomic
    def fill(self, cells: str, direction: Literal["down", "right"] = "down"):
        """Copy the first row down over the range (or first column right); relative references move, $ ones stay.

        Args:
            cells: Source included, like 'H2:H20'.
            direction: Which way.
        """
        sheet, box = self._range(cells)
        down = direction == "down"
        span = box.r2 - box.r1 if down else box.c2 - box.c1
        if span < 1:
            raise ToolError(f"{cells[:40]!r} has nothing to fill {direction}; give a range like 'H2:H20' that starts "
                            f"with the cell to copy")
        if span * ((box.c2 - box.c1 + 1) if down else (box.r2 - box.r1 + 1)) > MAX_WRITE:
            raise ToolError(f"filling {cells[:40]!r} would write more than {MAX_WRITE} cells")
        cells_src = [(box.r1, c) for c in range(box.c1, box.c2 + 1)] if down else [
            (r, box.c1) for r in range(box.r1, box.r2 + 1)]
        sources = self._book.sheets[sheet].cells
        chars = span * sum(len(raw.text) for raw in map(sources.get, cells_src) if isinstance(raw, Formula))
        if chars > MAX_FILL_CHARS:
            raise ToolError(f"refused, nothing was changed: filling {cells[:40]!r} would write {chars:,} characters of "
                            f"formulas ({span} copies), at most {MAX_FILL_CHARS:,}; fill a shorter formula or fewer "
                            "cells, or compute over a range in one cell")
        written = []
        for r0, c0 in cells_src:
            raw = self._book.sheets[sheet].cells.get((r0, c0))
            for k in range(1, span + 1):
                r, c = (r0 + k, c0) if down else (r0, c0 + k)
                value = raw
                if isinstance(raw, Formula):
                    value = rewrite_refs(raw.text, lambda b, dr=r - r0, dc=c - c0: move_box(b, dr, dc))
                self._set(sheet, r, c, value)
                written.append((r, c))
        self._within_limits()  # before anything is evaluated
        last = written[-1]
        sample = f"{self._where(sheet, *last)}: {self._cell_text(sheet, *last)}"
        return (f"filled {len(written)} cell(s) {direction} from {self._where(sheet, *cells_src[0])}; last one "
                f"{sample}{self._errors_note(sheet, written)}")

    @tool(write=True)
    @_atomic
    def clear_range(self, cells: str):
        """Empty cells.

        Args:
            cells: A cell or range.
        """
        sheet, box = self._range(cells)
        box = self._clip(sheet, box)
        s = self._book.sheets[sheet]
        keys = [k for k in list(s.cells) if box.contains(*k)]
        for r, c in keys:
            self._book.set_cell(sheet, r, c, None)
        where = f"{sheet}!{col_letter(box.c1)}{box.r1}:{col_letter(box.c2)}{box.r2}"
        return f"cleared {len(keys)} filled cell(s) in {where}"

    def _shift(self, sheet: str, axis: str, at: int, count: int, verb: str) -> str:
        name = self._sheet_name(sheet)
        if not 1 <= count <= 1_000:
            raise ToolError(f"count must be between 1 and 1000, got {count}")
        limit = MAX_ROW if axis == "row" else MAX_COL
        if not 1 <= at <= limit:
            raise ToolError(f"{axis} {at} is outside the sheet (1..{limit})")
        self._book.shift(name, axis, at, count if verb == "inserted" else -count)
        where = f"{at}" if axis == "row" else col_letter(at)
        return f"{verb} {count} {axis}(s) at {name} {axis} {where}; formulas that refer to cells after it were adjusted"

    @tool(write=True)
    @_atomic
    def insert_rows(self, sheet: str, before_row: int, count: int = 1):
        """Insert empty rows above before_row.

        Args:
            sheet: Sheet name.
            before_row: Row number.
            count: How many.
        """
        return self._shift(sheet, "row", before_row, count, "inserted")

    @tool(write=True)
    @_atomic
    def delete_rows(self, sheet: str, first_row: int, count: int = 1):
        """Delete rows from first_row down; references to them become #REF!.

        Args:
            sheet: Sheet name.
            first_row: Row number.
            count: How many.
        """
        return self._shift(sheet, "row", first_row, count, "deleted")

    def _column(self, letter: str) -> int:
        text = letter.strip().upper()
        if not text.isalpha() or len(text) > 3 or col_number(text) > MAX_COL:
            raise ToolError(f"{letter[:20]!r} is not a column letter like 'C' or 'AB'")
        return col_number(text)

    @tool(write=True)
    @_atomic
    def insert_columns(self, sheet: str, before_column: str, count: int = 1):
        """Insert empty columns left of before_column.

        Args:
            sheet: Sheet name.
            before_column: Like 'C'.
            count: How many.
        """
        return self._shift(sheet, "column", self._column(before_column), count, "inserted")

    @tool(write=True)
    @_atomic
    def delete_columns(self, sheet: str, first_column: str, count: int = 1):
        """Delete columns from first_column right; references to them become #REF!.

        Args:
            sheet: Sheet name.
            first_column: Like 'C'.
            count: How many.
        """
        return self._shift(sheet, "column", self._column(first_column), count, "deleted")

    @tool(write=True)
    @_atomic
    def sort_range(self, cells: str, keys: list[str]):
        """Sort a range's rows (leave the header out) by columns.

        Args:
            cells: Like 'A2:H40'.
            keys: Column letters by priority, ' desc' for largest first, like ['C', 'F desc'].
        """
        sheet, box = self._range(cells)
        box = self._clip(sheet, box)
        if not keys:
            raise ToolError("keys is empty; give at least one column, like ['C'] or ['C', 'F desc']")
        if box.r2 - box.r1 > 10_000:
            raise ToolError("sort at most 10000 rows at a time")
        if (box.r2 - box.r1 + 1) * (box.c2 - box.c1 + 1) > MAX_SORT:
            raise ToolError(f"{cells[:40]!r} covers {(box.r2 - box.r1 + 1) * (box.c2 - box.c1 + 1)} cells of the used "
                            f"range; sort at most {MAX_SORT} cells at a time (only the table's columns)")
        order_keys = []
        for key in keys:
            parts = key.strip().split()
            desc = len(parts) == 2 and parts[1].lower() in ("desc", "descending")
            if not parts or len(parts) > 2 or (len(parts) == 2 and not desc and parts[1].lower() not in (
                    "asc", "ascending")):
                raise ToolError(f"sort key {key[:30]!r} should be a column letter, optionally with ' desc', "
                                "like 'F desc'")
            c = self._column(parts[0])
            if not box.c1 <= c <= box.c2:
                raise ToolError(f"column {parts[0].upper()} is outside {cells[:40]!r}; sort by a column of the range")
            order_keys.append((c - box.c1, desc))
        rows = [tuple(self._book.cell_value(sheet, r, c) for c in range(box.c1, box.c2 + 1))
                for r in range(box.r1, box.r2 + 1)]
        by_keys = functools.cmp_to_key(lambda a, b: row_compare(rows[a], rows[b], order_keys))
        order = sorted(range(len(rows)), key=by_keys)
        self._book.move_rows(sheet, [box.r1 + k for k in order], box.r1, box.c1, box.c2)
        return (f"sorted {len(rows)} row(s) of {sheet}!{col_letter(box.c1)}{box.r1}:{col_letter(box.c2)}{box.r2} by "
                + ", ".join(k.strip() for k in keys))

    @tool(write=True)
    @_atomic
    def add_sheet(self, name: str):
        """Add an empty sheet at the end.

        Args:
            name: Sheet name.
        """
        clean = name.strip()
        if not clean or len(clean) > 31 or any(ch in clean for ch in "[]:*?/\\'") or not clean.isprintable():
            raise ToolError(f"{name[:40]!r} cannot be a sheet name: use 1-31 characters without []:*?/\\ or quotes")
        if any(clean.lower() == s.lower() for s in self._book.sheets):
            raise ToolError(f"a sheet named {clean!r} already exists; the sheets are {', '.join(self._book.sheets)}")
        if len(self._book.sheets) >= 50:
            raise ToolError("the workbook already has 50 sheets")
        self._book.add_sheet(clean)
        return f"added sheet {clean!r}; the sheets are now {', '.join(self._book.sheets)}"

    @tool(finish=True)
    def finish(self):
        """The workbook is done; ends the episode."""
        return "finished; the workbook will be checked"
