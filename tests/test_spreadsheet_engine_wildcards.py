"""Wildcards (``*``, ``?``, ``~``) in criteria, SEARCH and exact lookups: LibreOffice's answers, no backtracking.

The old engine compiled patterns to regular expressions, so ``=SEARCH("*x*x*x*y",REPT("x",200))`` backtracked
for 27 s. The matcher places the pieces between stars greedily; these tests check it against a brute-force
matcher and count its work, which is at most one search per piece whatever the text.
"""

from __future__ import annotations

import functools
import random

import pytest

from envs.spreadsheet import library_text
from envs.spreadsheet.formulas import XlError
from envs.spreadsheet.library_text import Wildcard
from envs.spreadsheet.workbook import Workbook


def _tokens(pattern: str) -> list:
    out, i = [], 0
    while i < len(pattern):
        if pattern[i] == "~" and i + 1 < len(pattern):
            out.append(("lit", pattern[i + 1].lower()))
            i += 2
            continue
        out.append({"*": ("star",), "?": ("any",)}.get(pattern[i], ("lit", pattern[i].lower())))
        i += 1
    return out


def brute_fullmatch(pattern: str, text: str, open_end: bool = False) -> bool:
    """Dynamic programming over (pattern position, text position): the definition, slowly. ``open_end``: the
    match may stop before the end of the text (what SEARCH asks)."""
    toks, t = _tokens(pattern) + ([("star",)] if open_end else []), text.lower()

    @functools.cache
    def ok(i: int, j: int) -> bool:
        if i == len(toks):
            return j == len(t)
        kind = toks[i][0]
        if kind == "star":
            return ok(i + 1, j) or (j < len(t) and ok(i, j + 1))
        if j == len(t):
            return False
        return (kind == "any" or toks[i][1] == t[j]) and ok(i + 1, j + 1)

    return ok(0, 0)


def brute_search(pattern: str, text: str, start: int = 0) -> int:
    return next((s for s in range(start, len(text) + 1) if brute_fullmatch(pattern, text[s:], open_end=True)), -1)


def test_matcher_agrees_with_the_definition_on_random_patterns():
    r = random.Random(15)
    for _ in range(3000):
        pattern = "".join(r.choice("ab*?~") for _ in range(r.randint(0, 7)))
        text = "".join(r.choice("abAB~*?") for _ in range(r.randint(0, 9)))
        w = Wildcard(pattern)
        assert w.fullmatch(text) == brute_fullmatch(pattern, text), (pattern, text)
        if pattern:
            start = r.randint(0, len(text))
            assert w.search(text, start) == brute_search(pattern, text, start), (pattern, text, start)


def test_each_piece_is_searched_at_most_once(monkeypatch):
    calls = []
    real = library_text._Piece.find
    monkeypatch.setattr(library_text._Piece, "find", lambda self, *a: calls.append(1) or real(self, *a))
    pattern = "*x" * 40 + "*y"
    for text in ("x" * 300, "x" * 5000 + "y", "ab" * 10_000):
        calls.clear()
        Wildcard(pattern).search(text)
        assert len(calls) <= pattern.count("*") + 1
        calls.clear()
        Wildcard(pattern).fullmatch(text)
        assert len(calls) <= pattern.count("*") + 1


def test_long_question_mark_pieces_use_the_bit_parallel_search():
    piece = "?a" * 4000 + "b"  # a regex would try ~4,000 steps at each of 32,000 starts
    w = Wildcard(piece)
    assert w.search("a" * 32_000) == -1
    assert w.search("a" * 31_000 + "b") == 31_000 - 8_000
    assert w.fullmatch("c" + "a" * 7999 + "b")


def sheet_value(formula: str, cells: dict):
    wb = Workbook(("S",))
    for ref, raw in cells.items():
        wb.set_value("S", ref, raw)
    wb.set_value("S", "Z1", formula)
    return wb.value("S", "Z1")


CELLS = {"B1": "a", "B2": "c", "B3": "b", "B4": "a~", "B5": "a~b", "B6": "x" * 300, "B7": "ab*c", "B8": "AXB"}


@pytest.mark.parametrize(("formula", "want"), [  # LibreOffice 7.4's values
    ('=SEARCH("*x*x*x*y",REPT("x",200))', XlError("#VALUE!")), ('=SEARCH("*x*x*x*x*x*x*x*y",B6)', XlError("#VALUE!")),
    ('=COUNTIF(B1:B8,"*x*x*x*x*x*x*y")', 0.0), ('=COUNTIF(B1:B8,"*x*x*x*x*x*x*x")', 1.0),
    ('=SEARCH("*","abc")', 1.0), ('=SEARCH("*","")', XlError("#VALUE!")), ('=SEARCH("?","")', XlError("#VALUE!")),
    ('=SEARCH("~*","a*b")', 2.0), ('=SEARCH("b*","abc")', 2.0), ('=SEARCH("c?","abc")', XlError("#VALUE!")),
    ('=SEARCH("a~","a~b")', 1.0), ('=SEARCH("~","a~b")', 2.0), ('=SEARCH("~a","xab")', 2.0),
    ('=SEARCH("*b","aab")', 1.0), ('=SEARCH("?b","aab")', 2.0), ('=SEARCH("a*b*c","xxaxxbxxc")', 3.0),
    ('=SEARCH("","abc")', XlError("#VALUE!")), ('=SEARCH("a","abc",4)', XlError("#VALUE!")),
    ('=COUNTIF(B1:B8,"~")', 0.0), ('=COUNTIF(B1:B8,"*~")', 1.0), ('=COUNTIF(B1:B8,"a~~b")', 1.0),
    ('=COUNTIF(B1:B8,"a?b")', 2.0), ('=COUNTIF(B1:B8,"*~**")', 1.0), ('=MATCH("a?b",B1:B8,0)', 5.0),
    ('=VLOOKUP("A*",B1:B8,1,FALSE)', "a"),
])
def test_wildcard_values_match_libreoffice(formula, want):
    got = sheet_value(formula, CELLS)
    assert got == want and type(got) is type(want)
