""".xlsx in and out through openpyxl: any episode's workbook can be saved and opened in Excel or LibreOffice, and
a task can start from a user's own file. Dates become serial numbers; formulas are written as text (with Excel's
``_xlfn.`` prefix on the functions Excel stores with one), so Excel and LibreOffice recalculate them on open.

Reading is lenient where Excel and LibreOffice are: part names written with backslashes or in another case than
the package's references to them, a shared-strings part that is declared but absent, links to absent parts, and
cell styles or drawings openpyxl cannot parse (then only the number formats are kept, which is what tells dates
apart, and drawings are dropped). A file that still cannot be read raises ``WorkbookFileError`` (a ValueError)
naming the file, the problem and what to do, never openpyxl's own exception.
"""

from __future__ import annotations

import datetime as _dt
import io
import posixpath
import warnings
import zipfile
from xml.etree import ElementTree

from envs.spreadsheet.compiler import Formula, compile_formula
from envs.spreadsheet.formulas import (
    ERROR_CODES,
    FormulaSyntaxError,
    XlError,
    with_xlfn_prefixes,
    without_xlfn_prefixes,
)
from envs.spreadsheet.workbook import Workbook, broken_formula, storable

_EPOCH = _dt.datetime(1899, 12, 30)
_RESAVE = "open it in Excel or LibreOffice and save it again as an Excel workbook (.xlsx)"
_CONTENT_TYPES = "[Content_Types].xml"
_MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_OLE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # how an .xls (OLE2 compound file) starts
_EMPTY_STRINGS = f'<?xml version="1.0" encoding="UTF-8"?><sst xmlns="{_MAIN}" count="0" uniqueCount="0"/>'.encode()


class WorkbookFileError(ValueError):
    """An .xlsx file that cannot be read: ``path``, ``problem`` and what to do are in the message."""

    def __init__(self, path: str, problem: str, remedy: str = _RESAVE):
        self.path, self.problem = path, problem
        super().__init__(f"cannot read {path}: {problem}; {remedy}")


def from_xlsx(source) -> Workbook:
    """Load a workbook from a path or file object; formulas we cannot parse are kept and show #NAME?.

    Raises ``WorkbookFileError`` for a file that is not a readable .xlsx (``FileNotFoundError`` if there is none).
    """
    name = str(source) if isinstance(source, str) or hasattr(source, "__fspath__") else getattr(
        source, "name", None) or "the workbook file object"
    if hasattr(source, "read"):
        data = source.read()
    else:
        with open(source, "rb") as f:
            data = f.read()
    if not zipfile.is_zipfile(io.BytesIO(data)):
        kind = "an old binary .xls workbook" if data[:8] == _OLE else "damaged, or not a workbook"
        raise WorkbookFileError(name, f"it is not an .xlsx file (an .xlsx is a zip archive; this is {kind})")
    try:
        data = _repair_package(data)
    except (zipfile.BadZipFile, ElementTree.ParseError, KeyError, ValueError, OSError) as err:
        raise WorkbookFileError(name, f"its zip archive or package index is damaged ({type(err).__name__}: "
                                      f"{str(err)[:200]})") from None
    book = _load(name, data)
    return _convert(name, book)


def _load(name: str, data: bytes):
    import openpyxl

    def load(payload: bytes):
        with warnings.catch_warnings():  # openpyxl warns about every feature it drops; we keep values and formulas
            warnings.simplefilter("ignore")
            return openpyxl.load_workbook(io.BytesIO(payload), data_only=False, keep_links=False)

    try:
        return load(data)
    except Exception as err:  # openpyxl raises KeyError, TypeError, ValueError... for what it cannot parse
        first = err
    plain = _cells_only(data)
    if plain is not None:  # the usual culprits: cell styles and drawings openpyxl is stricter about than Excel
        try:
            return load(plain)
        except Exception:  # noqa: BLE001 - report the first error, which is about the file as it is
            pass
    raise WorkbookFileError(name, f"openpyxl cannot parse it ({type(first).__name__}: {str(first)[:200]})") from None


def _convert(name: str, book) -> Workbook:
    sheets = book.worksheets  # chart sheets hold no cells
    wb = Workbook(tuple(ws.title for ws in sheets))
    for ws in sheets:
        s = wb.sheets[ws.title]
        cells = getattr(ws, "_cells", None)  # only the cells the file holds (iter_rows would fill the rectangle)
        for cell in (cells.values() if cells is not None else (c for row in ws.iter_rows() for c in row)):
            v = _cell_value(name, ws.title, cell)
            if v is None:
                continue
            key = (cell.row, cell.column)
            s.cells[key] = v
            if type(v) is Formula:
                s.formulas.add(key)
        s._extent = None
    return wb


def _cell_value(name: str, sheet: str, cell):
    v = cell.value
    if v is None:
        return None
    if cell.data_type == "f" or hasattr(v, "ref"):  # a formula; ArrayFormula / DataTableFormula carry a ref
        text = getattr(v, "text", v)
        if not isinstance(text, str):
            return broken_formula("=TABLE()", "a What-If data table, which this engine does not compute")
        text = without_xlfn_prefixes(text if text.startswith("=") else "=" + text)
        try:
            return compile_formula(text)
        except FormulaSyntaxError as e:
            return broken_formula(text, str(e))
    if cell.data_type == "e" and v in ERROR_CODES:
        return XlError(v, "the file holds this error value")
    if isinstance(v, _dt.datetime):
        v = (v - _EPOCH).total_seconds() / 86400
    elif isinstance(v, _dt.date):
        v = float((v - _EPOCH.date()).days)
    elif isinstance(v, _dt.time):
        v = (v.hour * 3600 + v.minute * 60 + v.second + v.microsecond / 1e6) / 86400
    elif isinstance(v, _dt.timedelta):
        v = v.total_seconds() / 86400
    elif not isinstance(v, bool | int | float | str):
        v = str(v)
    try:
        return storable(v)
    except ValueError as err:
        if isinstance(v, int | float):  # as LibreOffice: a number past the doubles reads as +-INF, shown as #NUM!
            return XlError("#NUM!", f"the file holds a number no cell can hold: {err}")
        raise WorkbookFileError(name, f"cell {sheet}!{cell.coordinate}: {err}",
                                "shorten that cell's text in Excel or LibreOffice and save again") from None


# ----------------------------------------------------------------------------------------------------------------
# Package repairs: what Excel and LibreOffice read but openpyxl does not.


def _repair_package(data: bytes) -> bytes:
    """Rename parts to the spelling the package's references use (OPC part names are case-insensitive, and some
    writers use backslashes), add an empty shared-strings part where one is declared but missing, and drop links to
    other absent parts. Returns ``data`` itself when nothing needs repairing."""
    zin = zipfile.ZipFile(io.BytesIO(data))
    infos = [i for i in zin.infolist() if not i.is_dir()]
    normal = {i.filename: i.filename.replace("\\", "/").lstrip("/") for i in infos}
    lower = {n.lower(): orig for orig, n in normal.items()}
    wanted = {_CONTENT_TYPES.lower(): _CONTENT_TYPES}  # lower-case part name -> the spelling referred to
    types = lower.get(_CONTENT_TYPES.lower())
    if types is not None:
        for el in ElementTree.fromstring(zin.read(types)):
            part = el.get("PartName")
            if el.tag.endswith("Override") and part:
                wanted.setdefault(part.lstrip("/").lower(), part.lstrip("/"))
    rels = {}  # rels part -> (parsed, [(relationship element, target part)])
    for orig, n in normal.items():
        if posixpath.basename(posixpath.dirname(n)) != "_rels" or not n.lower().endswith(".rels"):
            continue  # (a Mac's __MACOSX/._x.rels resource forks are not relationships)
        try:
            root = ElementTree.fromstring(zin.read(orig))
        except ElementTree.ParseError:
            continue  # openpyxl will say what is wrong with it, if it needs it
        base = posixpath.dirname(posixpath.dirname(n))  # xl/_rels/workbook.xml.rels -> xl
        links = []
        for el in root:
            target = el.get("Target")
            if not target or el.get("TargetMode") == "External":
                continue
            path = posixpath.normpath(target.lstrip("/") if target.startswith("/") else posixpath.join(base, target))
            wanted.setdefault(path.lower(), path)
            links.append((el, path))
        rels[orig] = (root, links)
    renamed = {orig: wanted.get(n.lower(), n) for orig, n in normal.items()}
    missing = [p for low, p in wanted.items() if low.endswith("sharedstrings.xml") and low not in lower]
    present = {n.lower() for n in renamed.values()} | {p.lower() for p in missing}
    payload = {}
    for orig, (root, links) in rels.items():  # a link to an absent part (a picture, a printer setting) goes
        dead = [el for el, path in links if path.lower() not in present]
        for el in dead:
            root.remove(el)
        if dead:
            payload[orig] = ElementTree.tostring(root, encoding="utf-8", xml_declaration=True)
    if all(orig == new for orig, new in renamed.items()) and not missing and not payload:
        return data
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in infos:
            zout.writestr(renamed[info.filename], payload.get(info.filename) or zin.read(info.filename))
        for part in missing:
            zout.writestr(part, _EMPTY_STRINGS)
    return out.getvalue()


def _cells_only(data: bytes) -> bytes | None:
    """The package reduced to what a task uses, for a second try: the styles part down to number formats (one plain
    style per cell format, in order, so every cell keeps the number format that tells dates apart), and no links to
    drawings (pictures, charts). None when there is nothing to reduce."""
    zin = zipfile.ZipFile(io.BytesIO(data))
    payload = {}
    part = next((n for n in zin.namelist() if n.lower() == "xl/styles.xml"), None)
    if part is not None:
        try:
            payload[part] = _plain_styles(ElementTree.fromstring(zin.read(part)))
        except ElementTree.ParseError:
            pass
    for n in zin.namelist():
        if n.startswith("xl/worksheets/_rels/") and n.endswith(".rels"):
            try:
                root = ElementTree.fromstring(zin.read(n))
            except ElementTree.ParseError:
                continue
            drawings = [el for el in root if (el.get("Type") or "").endswith("/drawing")]
            for el in drawings:
                root.remove(el)
            if drawings:
                payload[n] = ElementTree.tostring(root, encoding="utf-8", xml_declaration=True)
    if not payload:
        return None
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            zout.writestr(info, payload.get(info.filename) or zin.read(info.filename))
    return out.getvalue()


def _plain_styles(root: ElementTree.Element) -> bytes:
    ns = f"{{{_MAIN}}}"
    formats = [(f.get("numFmtId"), f.get("formatCode")) for f in root.iter(f"{ns}numFmt")
               if f.get("numFmtId", "").isdigit() and f.get("formatCode") is not None]
    xfs = root.find(f"{ns}cellXfs")
    ids = [xf.get("numFmtId", "0") for xf in (xfs if xfs is not None else [])]
    ids = [i if i.isdigit() else "0" for i in ids] or ["0"]
    styles = ElementTree.Element("styleSheet", xmlns=_MAIN)
    fmts = ElementTree.SubElement(styles, "numFmts", count=str(len(formats)))
    for fid, code in formats:
        ElementTree.SubElement(fmts, "numFmt", numFmtId=fid, formatCode=code)
    font = ElementTree.SubElement(ElementTree.SubElement(styles, "fonts", count="1"), "font")
    ElementTree.SubElement(font, "sz", val="11")
    ElementTree.SubElement(font, "name", val="Calibri")
    fill = ElementTree.SubElement(ElementTree.SubElement(styles, "fills", count="1"), "fill")
    ElementTree.SubElement(fill, "patternFill", patternType="none")
    ElementTree.SubElement(ElementTree.SubElement(styles, "borders", count="1"), "border")
    ElementTree.SubElement(ElementTree.SubElement(styles, "cellStyleXfs", count="1"), "xf", numFmtId="0")
    cell_xfs = ElementTree.SubElement(styles, "cellXfs", count=str(len(ids)))
    for fid in ids:
        ElementTree.SubElement(cell_xfs, "xf", numFmtId=fid, fontId="0", fillId="0", borderId="0", xfId="0")
    return ElementTree.tostring(styles, encoding="utf-8", xml_declaration=True)


# ----------------------------------------------------------------------------------------------------------------
# Writing.


def to_xlsx(wb: Workbook, target=None) -> bytes | None:
    """Save to a path or file object; with no target, return the .xlsx bytes."""
    import openpyxl

    book = openpyxl.Workbook()
    book.remove(book.active)
    for s in wb.sheets.values():
        ws = book.create_sheet(s.name)
        for (r, c), raw in s.cells.items():
            cell = ws.cell(row=r, column=c)
            if type(raw) is Formula:
                cell.value = with_xlfn_prefixes(raw.text)
            elif type(raw) is XlError:
                cell.value = raw.code  # openpyxl stores an error code as an error cell
            else:
                cell.value = raw
                if type(raw) is str:  # text, even when it reads like a formula or an error code
                    cell.data_type = "s"
    if target is None:
        buf = io.BytesIO()
        book.save(buf)
        return buf.getvalue()
    book.save(target)
    return None
