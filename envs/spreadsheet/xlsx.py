""".xlsx in and out through openpyxl: any episode's workbook can be saved and opened in Excel or LibreOffice, and
a task can start from a user's own file. Dates become serial numbers; formulas are written as text, so Excel and
LibreOffice recalculate them on open.
"""

from __future__ import annotations

import datetime as _dt
import io

from envs.spreadsheet.formulas import (
    Formula,
    FormulaSyntaxError,
    XlError,
    parse_formula,
)
from envs.spreadsheet.workbook import Workbook, broken_formula

_EPOCH = _dt.datetime(1899, 12, 30)


def from_xlsx(source) -> Workbook:
    """Load a workbook from a path or file object; formulas we cannot parse are kept and show #NAME?."""
    import openpyxl

    book = openpyxl.load_workbook(source, data_only=False)
    wb = Workbook(tuple(book.sheetnames))
    for ws in book.worksheets:
        s = wb.sheets[ws.title]
        for row in ws.iter_rows():
            for cell in row:
                v = cell.value
                if v is None:
                    continue
                if hasattr(v, "text"):  # ArrayFormula / DataTableFormula
                    v = v.text
                if isinstance(v, _dt.datetime):
                    v = (v - _EPOCH).total_seconds() / 86400
                elif isinstance(v, _dt.date):
                    v = float((v - _EPOCH.date()).days)
                elif isinstance(v, _dt.time):
                    v = (v.hour * 3600 + v.minute * 60 + v.second) / 86400
                if isinstance(v, str) and v.startswith("=") and len(v) > 1:
                    try:
                        v = parse_formula(v)
                    except FormulaSyntaxError as e:
                        v = broken_formula(v, str(e))
                    s.formulas.add((cell.row, cell.column))
                s.cells[(cell.row, cell.column)] = v
        s._extent = None
    return wb


def to_xlsx(wb: Workbook, target=None) -> bytes | None:
    """Save to a path or file object; with no target, return the .xlsx bytes."""
    import openpyxl

    book = openpyxl.Workbook()
    book.remove(book.active)
    for s in wb.sheets.values():
        ws = book.create_sheet(s.name)
        for (r, c), raw in s.cells.items():
            if type(raw) is Formula:
                ws.cell(row=r, column=c, value=raw.text)
            elif type(raw) is XlError:
                ws.cell(row=r, column=c, value=raw.code)
            else:
                ws.cell(row=r, column=c, value=raw)
    if target is None:
        buf = io.BytesIO()
        book.save(buf)
        return buf.getvalue()
    book.save(target)
    return None

