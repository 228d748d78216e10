"""Hostile actions against every registered environment: the slowest steps, step-time percentiles and any exception.

A trainer runs millions of model-written actions, so one action that makes ``step()`` raise or take seconds is
bound to come. This script plays seeded episodes in which hostile actions (malformed JSON, wrong argument types,
huge and non-finite numbers, 1-10 MB strings, deep nesting, control characters, several calls in one action,
trailing text, valid calls with hostile values, hostile formulas) are mixed with the reference policy's actions so
that deep states are reached, times every ``step()``, and prints

- the step-time percentiles of each environment and the slowest steps found (environment, kind, ms, action);
- every exception ``step()`` raised, grouped by type and place, with the shortest action that raised it;
- steps cut off by ``--step-timeout`` (a hang) as exceptions of type ``StepTimeout``.

It measures and asserts nothing: tests/test_fuzz.py holds the properties, built from the same ``HostileActions``
generator below (there it draws from Hypothesis, here from a seeded numpy generator), so a slow step found here
can be replayed there.

    python scripts/bench_hostile.py                        # every environment, 60 s in all
    python scripts/bench_hostile.py --seconds 20 --env recoverygym/Spreadsheet-v0 --faults all --seed 3
"""

from __future__ import annotations

import argparse
import json
import math
import re
import signal
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere, without installing

import gymnasium  # noqa: E402

import envs  # noqa: E402
from envs.core import FaultConfig  # noqa: E402

# ---------------------------------------------------------------------------------------------------------------
# Where the choices come from: Hypothesis in the tests (so failures shrink), a numpy generator here.


class Draw(Protocol):
    def integer(self, lo: int, hi: int) -> int:
        """An integer in [lo, hi]; simpler (shrunk) answers are nearer ``lo``."""


class RandomDraw:
    """Choices from a seeded numpy generator."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)

    def integer(self, lo: int, hi: int) -> int:
        return int(self.rng.integers(lo, hi, endpoint=True))


def pick(draw: Draw, options: Sequence):
    return options[draw.integer(0, len(options) - 1)]


def rarely(draw: Draw, one_in: int) -> bool:
    """True one time in ``one_in``; shrinks to False."""
    return draw.integer(0, one_in - 1) == one_in - 1


# ---------------------------------------------------------------------------------------------------------------
# Hostile values, each as JSON text (``text``) with the value ``json.loads`` gives it (``value``); ``value`` is
# UNPARSEABLE where Python cannot read it at all (an integer of more than 4,300 digits).

UNPARSEABLE = object()


@dataclass(frozen=True, slots=True)
class Frag:
    text: str
    value: Any


def frag(value: Any, ensure_ascii: bool = True) -> Frag:
    return Frag(json.dumps(value, ensure_ascii=ensure_ascii), value)


def _decoded(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):  # over 4,300 digits, or nested past the recursion limit
        return UNPARSEABLE


def _number(text: str) -> Frag:
    return Frag(text, _decoded(text))


#: Number literals as JSON text: huge, tiny, non-finite (Python's json reads NaN/Infinity), long integers.
NUMBER_TEXTS = ("0", "-1", "1.5", "-0.0", "1e308", "-1e308", "1e999", "-1e999", "NaN", "Infinity", "-Infinity",
                "1e-400", "5e-324", "2147483648", "9223372036854775808", "1e10", "0.1e-7",
                "9" * 320, "-" + "9" * 320, "1" + "0" * 400, "1." + "0" * 5_000 + "1", "9" * 4_300, "9" * 5_000)
#: Sizes of big strings: 1-10 MB are drawn rarely (they cost tens of ms each).
BIG = (1_000_000, 3_000_000, 10_000_000)
SMALL = (0, 1, 2, 3, 40, 255, 256, 4_301, 8_193, 16_001, 32_768, 100_000)
ODD_STRINGS = ("", " ", "\t", "\n", "\x00", "\x00" * 3 + "x", "\x1b[2J\x1b[31mred", "\r\n\r\n", "\x7f\x08",
               "\u202eevil", "\ufeffBOM", "caf\u00e9", "\u65e5\u672c\u8a9e", "\U0001f4a5", "\ud800", "\udfff\ud800",
               "a\u0000b", "\u2028\u2029", "NaN", "null", "true", "-0", "1e999", "0x1F", "1,000", " 12 ", "12%",
               "</tool_call>", "<tool_call>", '"', "'", "\\", "{}", "[]", "{{x}}", "%s%n%d", "${jndi:x}", "../" * 20,
               "A1", "a1", "$A$1", "A0", "A-1", "ZZZ1", "XFD1048576", "XFE1", "A1048577", "A1:XFD1048576", "A:A",
               "1:1048576", "A1:A1", "B2:A1", "Sheet1!A1", "Sheet9!A1", "'Sheet1'!A1:B2", "'It''s'!A1", "!A1",
               "Sheet1!", "A1!B2!C3", "R1C1", "#REF!", "#N/A", "O-1", "O-", "C-0", "SKU-", "@", "a@b", "x" * 60 + "@y",
               "TRUE", "down", "right", "up", "left")
UNKNOWN_FUNCTIONS = ("CHAR", "XLOOKUP", "INDIRECT", "OFFSET", "_xlfn.MAXIFS", "_xlfn.CONCAT", "LAMBDA", "NOSUCH")


def _functions() -> tuple[str, ...]:
    try:  # the spreadsheet's own function list, when that environment is installed
        from envs.spreadsheet.library import FUNCTIONS
    except ImportError:  # pragma: no cover - another project's environments only
        return UNKNOWN_FUNCTIONS
    return tuple(sorted(FUNCTIONS)) + UNKNOWN_FUNCTIONS


FUNCTION_NAMES = _functions()
_FORMULA_ATOMS = ("1", "0", "-1", "1e308", "1e-308", "1e999", "10^308", "9" * 320, "0.5", "TRUE", "FALSE", '""',
                  '"x"', '"1e999"', '"*x*x*x*y"', '"?*~*"', '"abc"', '"=1"', "A1", "$B$2", "C3:D4", "A1:A5000",
                  "A:A", "1:1", "Sheet1!A1", "'No sheet'!A1", "ZZZ1", "#N/A", "#DIV/0!", "-1e10", "1e10", "1E+30")
#: Formulas that broke or stalled other engines (and ours): deep, long, huge numbers, wildcards, whole columns.
FORMULA_TEMPLATES = (
    "=1/0", "=" + "+".join(["1"] * 1_000), "=1" + "%" * 1_000, "=" + "-" * 1_000 + "1", "=" + "(" * 70 + "1" + ")" * 70,
    "=" + "(" * 5_000 + "1" + ")" * 5_000, "=" + "A1+" * 2_000 + "1", "=SUM(" + ",".join(["1"] * 255) + ")",
    "=SUM(" + ",".join(["1"] * 256) + ")", '=VALUE("1e999")', "=PRODUCT(1e308,1e308)", '=INT("1e999")',
    "=MOD(1e308,1e-308)", '=MOD(5,"1e999")', "=ROUND(1,-1e10)", "=DATE(1e300,1,1)", '=SEARCH("a","abc",1e30)',
    '=CHOOSE("1e999",1)', '=REPT("",10^308)', '=REPT("x",10^7)', '=REPT("x",32768)', "=SUM(A1:A2)*1e308",
    '=SEARCH("*x*x*x*y",REPT("x",200))', '=COUNTIF(A1:A50,"*x*x*x*x*x*y")', '=SEARCH("' + "*?" * 40 + '","x")',
    "=SUMPRODUCT(A1:A5000,A1:A5000)", "=SUM(A:A)*SUM(1:1)", "=A1", "=B1+A1", "=SQRT(-1)", "=POWER(10,400)",
    "=2^1024", "=-(2^1023)*2", '=MID("abc",1e308,1)', '=LEFT("a",-1)', '=TEXT(1e308,"0")', "=INDEX(A1:B2,1e10)",
    "=VLOOKUP(1,A1:B2,1e10,FALSE)", "=MATCH(1,A1:A5,-1)", "=SUM(E23:F23 G23:H23)", "=" + "9" * 400, "=1e999",
    "=DATE(2024,1e10,1)", "=YEAR(-1)", "=DAY(1e308)", "=ROUNDUP(1e308,300)", "=ROUNDDOWN(-1e308,-300)",
    '=SUBSTITUTE(REPT("a",1000),"a",REPT("b",1000))', '=CONCATENATE(REPT("x",20000),REPT("y",20000))', "=",
    "==1", "=SUM(", "=SUM(1,)", "=)", '="unterminated', "=A1:B2", "=1 2", "=@A1", "={1,2;3,4}", "=A1#", "=1e",
)


def formula(draw: Draw, depth: int = 0) -> str:
    """A random formula text (with '='), or one of the templates."""
    if depth == 0 and rarely(draw, 3):
        return pick(draw, FORMULA_TEMPLATES)
    return ("=" if depth == 0 else "") + _expression(draw, depth)


def _expression(draw: Draw, depth: int) -> str:
    kind = draw.integer(0, 3 if depth < 3 else 0)
    if kind == 0:
        return pick(draw, _FORMULA_ATOMS)
    if kind == 1:
        name = pick(draw, FUNCTION_NAMES)
        return f"{name}({','.join(_expression(draw, depth + 1) for _ in range(draw.integer(0, 4)))})"
    if kind == 2:
        op = pick(draw, ("+", "-", "*", "/", "^", "&", "=", "<>", "<", ">=", " "))
        return f"{_expression(draw, depth + 1)}{op}{_expression(draw, depth + 1)}"
    return pick(draw, ("-", "(", "+")) + _expression(draw, depth + 1) + pick(draw, ("", ")", "%"))


def big_string(draw: Draw) -> Frag:
    """A 1-10 MB JSON string, built as text (decoding it only to tell its type would cost more than the step)."""
    unit = pick(draw, ("x", "ab", "\\u00e9", "\\n", "=", "*"))  # JSON text: an escape decodes to one character
    return Frag('"' + unit * pick(draw, BIG) + '"', BIG_STRING)


class _BigString:
    """The decoded value of a multi-megabyte JSON string: ``fits`` needs to know only that it is a string."""


BIG_STRING = _BigString()


def hostile_string(draw: Draw, pool: Sequence[str], big: bool = True) -> Frag:
    kind = draw.integer(0, 6)
    if kind == 6:
        kind = 2  # formulas twice as often: the formula engine is where most of the work is
    if kind == 0 and pool:
        base = pick(draw, pool)
        mutate = pick(draw, ("{}", "{} ", " {}", "{}\x00", "{}\u00e9", "{}'", '{}"', "{}*", "{}?", "{}~", "{}{}",
                             "{}" + "x" * 5_000, "\n{}\n", "{}!A1", "'{}'"))
        return frag(mutate.replace("{}", base), ensure_ascii=rarely(draw, 2))
    if kind == 1:
        return frag(pick(draw, ODD_STRINGS), ensure_ascii=rarely(draw, 2))
    if kind == 2:
        return frag(formula(draw))
    if kind == 3:
        return frag(pick(draw, ("x", "=", "*", "\u00e9", "A1,", "\x00")) * pick(draw, SMALL if big else SMALL[:6]))
    if kind == 4 and big and rarely(draw, 6):
        return big_string(draw)
    return frag("".join(chr(draw.integer(0, 0x2FFF)) for _ in range(draw.integer(0, 12))), rarely(draw, 2))


def deep(draw: Draw) -> Frag:
    depth = pick(draw, (2, 50, 500, 990, 1_500, 5_000, 100_000))
    opener, closer = pick(draw, (("[", "]"), ('{"a":', "}")))
    text = opener * depth + "1" + closer * depth
    return Frag(text, _decoded(text))


def wrong_type(draw: Draw, schema: dict[str, Any]) -> Frag:
    """A value whose JSON type the schema does not allow."""
    kinds = schema.get("type", [])
    kinds = {kinds} if isinstance(kinds, str) else set(kinds)
    options = [f for t, f in _WRONG if t not in kinds and not (t == "integer" and "number" in kinds)
               and not (t == "null" and schema.get("nullable"))]
    return pick(draw, options) if options else frag({"unexpected": "object"})


_WRONG = (("integer", frag(12345)), ("string", frag("twelve")), ("boolean", frag(True)), ("null", frag(None)),
          ("array", frag([])), ("object", frag({})), ("array", frag(["x", 1, None])), ("object", frag({"a": [1]})),
          ("number", Frag("1e999", math.inf)), ("number", Frag("NaN", math.nan)), ("number", frag(0.5)),
          ("integer", Frag("9" * 320, int("9" * 320))), ("array", frag([[[]]])))


def hostile_number(draw: Draw) -> Frag:
    return _number(pick(draw, NUMBER_TEXTS))


def hostile_value(draw: Draw, schema: dict[str, Any], pool: Pool) -> Frag:
    """A value for an argument of ``schema``: plausible, hostile but of the right type, or of a wrong type."""
    kinds = schema.get("type", [])
    kinds = [kinds] if isinstance(kinds, str) else list(kinds)
    choice = draw.integer(0, 6)
    if choice == 0:
        return pool.plausible(draw, schema)
    if choice == 1:
        return wrong_type(draw, schema)
    if choice == 2 and rarely(draw, 3):
        return deep(draw)
    if "array" in kinds:
        return _hostile_array(draw, schema.get("items", {}), pool)
    if "integer" in kinds or "number" in kinds:
        if choice <= 4:
            return hostile_number(draw)
        return pool.plausible(draw, schema)
    if "enum" in schema:
        return pick(draw, (frag(schema["enum"][-1].upper()), frag(""), frag(schema["enum"][0] + " "),
                           hostile_string(draw, pool.strings)))
    if "formula" in schema.get("description", "").lower() and draw.integer(0, 1):
        return frag(formula(draw))
    return hostile_string(draw, pool.strings)


def _hostile_array(draw: Draw, items: dict[str, Any], pool: Pool, length: int | None = None) -> Frag:
    """A list of hostile items; now and then a long one (5,001 rows, 80 x 80) of short items repeated."""
    if length is None:
        length = pick(draw, (0, 1, 2, 3, 5, 80, 5_001)) if rarely(draw, 3) else draw.integer(0, 3)
    width = None
    if "array" in _kinds(items):
        width = pick(draw, (0, 1, 2, 3, 80)) if rarely(draw, 3) else draw.integer(0, 3)
    parts: list[Frag] = []
    for i in range(length):
        if i >= 4:  # a long list repeats its first items: drawing each would cost more than the step
            parts.append(parts[i % 4])
        elif width is not None:
            parts.append(_hostile_array(draw, items.get("items", {}), pool, width))
        elif length > 5:
            parts.append(pick(draw, (frag(1), frag("x"), frag(None), frag("=1/0"), Frag("1e308", 1e308))))
        else:
            parts.append(hostile_scalar(draw, items, pool))
    return _join_array(parts)


def _kinds(schema: dict[str, Any]) -> list[str]:
    kinds = schema.get("type", [])
    return [kinds] if isinstance(kinds, str) else list(kinds)


def hostile_scalar(draw: Draw, schema: dict[str, Any], pool: Pool) -> Frag:
    choice = draw.integer(0, 4)
    if choice == 0:
        return pool.plausible(draw, schema)
    if choice == 1:
        return hostile_number(draw)
    if choice == 2:  # no megabytes inside a list: a long list repeats its items
        return hostile_string(draw, pool.strings, big=False)
    return pick(draw, (frag(None), frag(True), frag(False), frag(formula(draw)), wrong_type(draw, schema)))


def _join_array(parts: list[Frag]) -> Frag:
    text = "[" + ", ".join(p.text for p in parts) + "]"
    values = [p.value for p in parts]
    return Frag(text, UNPARSEABLE if any(v is UNPARSEABLE for v in values) else values)


class Pool:
    """Plausible argument values: those of the reference's calls so far, and ids and cells seen in observations."""

    def __init__(self):
        self.strings: list[str] = []
        self.numbers: list[float | int] = [1, 0, 2, 10]

    def learn(self, arguments: dict[str, Any] | None = None, observation: str = "") -> None:
        for value in (arguments or {}).values():
            for v in value if isinstance(value, list) else [value]:
                for w in v if isinstance(v, list) else [v]:
                    if isinstance(w, str) and w not in self.strings and len(self.strings) < 400 and len(w) < 200:
                        self.strings.append(w)
                    elif isinstance(w, int | float) and not isinstance(w, bool) and len(self.numbers) < 100:
                        self.numbers.append(w)
        for token in _TOKEN_RE.findall(observation[:20_000])[:60]:
            if token not in self.strings and len(self.strings) < 400:
                self.strings.append(token)

    def plausible(self, draw: Draw, schema: dict[str, Any]) -> Frag:
        kinds = _kinds(schema)
        if "enum" in schema:
            return frag(pick(draw, schema["enum"]))
        kind = pick(draw, kinds) if kinds else "string"
        if kind == "string":
            return frag(pick(draw, self.strings) if self.strings else "x")
        if kind == "integer":
            return frag(pick(draw, [n for n in self.numbers if isinstance(n, int)] or [1]))
        if kind == "number":
            return frag(pick(draw, self.numbers))
        if kind == "boolean":
            return frag(bool(draw.integer(0, 1)))
        if kind == "array":
            items = schema.get("items", {})
            return _join_array([self.plausible(draw, items) for _ in range(draw.integer(0, 2))])
        if kind == "object":
            return frag({})
        return frag(None)


_TOKEN_RE = re.compile(r"[A-Za-z0-9][\w.@+$:!-]{1,40}")


# ---------------------------------------------------------------------------------------------------------------
# Whole actions.


@dataclass(frozen=True, slots=True)
class Hostile:
    """One hostile action: what kind it is, its text, and whether the parser must refuse it (None: no claim)."""

    kind: str
    text: str
    invalid: bool | None

    def summary(self, limit: int = 160) -> str:
        return summarize(self.text, limit)


def summarize(text: str, limit: int = 160) -> str:
    """The action text with long runs collapsed (``{'x'*1000000}``), cut to ``limit``, and its length."""
    head = text[:4_000]

    def run(m: re.Match) -> str:
        unit, n = m[1], len(m[0]) // len(m[1])
        if m.end() > len(head) - len(unit):  # the run goes on past the head: count it in the whole text
            rest = text[m.start():]
            n = (len(rest) - len(rest.lstrip(unit))) // len(unit)
        return f"{{{unit!r}*{n}}}"  # in braces: '{'1+'*999}1' is 999 times '1+', then '1'

    head = _RUN_RE.sub(run, head).replace("\n", "\\n").replace("\t", "\\t")  # one line per action
    head = head if len(head) <= limit else head[: limit - 3] + "..."
    return f"{head} ({len(text):,} chars)" if len(text) > 60 else repr(text)


_RUN_RE = re.compile(r"(.{1,8}?)\1{15,}", re.DOTALL)

KINDS = ("reference", "reference_hostile", "call", "reference", "reference_hostile", "call", "wrong_type",
         "malformed", "malformed", "multi", "trailing", "unknown", "string_arguments", "formula_fill", "finish")


class HostileActions:
    """Draws hostile actions for one environment (``env``, unwrapped) from its tool schemas.

    Call ``learn(observation)`` after each step so plausible values (ids, cells) come from what the agent would see.
    """

    def __init__(self, env):
        self.env = env
        self.specs = env.tool_specs()
        self.pool = Pool()
        self.pending: list[Hostile] = []  # the second half of a two-step kind, made by the next action()

    def learn(self, observation: str) -> None:
        self.pool.learn(observation=observation)

    def action(self, draw: Draw, kind: str | None = None) -> Hostile:
        if self.pending and kind is None:
            return self.pending.pop(0)
        kind = kind or pick(draw, KINDS)
        return getattr(self, "_" + kind)(draw)

    # -- kinds ------------------------------------------------------------------------------------------------------

    def _reference(self, draw: Draw) -> Hostile:
        call = self.env.reference_call()
        self.pool.learn(call.arguments)
        return Hostile("reference", call.to_json(), False)

    def _reference_hostile(self, draw: Draw) -> Hostile:
        """The reference's next call with one argument given a hostile value (or an extra argument)."""
        call = self.env.reference_call()
        self.pool.learn(call.arguments)
        spec = self.specs[call.name]
        args = {k: frag(v) for k, v in call.arguments.items()}
        if not spec.params or rarely(draw, 8):
            args[pick(draw, ("extra", spec.name, "Arguments", "__proto__"))] = hostile_value(draw, {}, self.pool)
        else:
            param = pick(draw, spec.params)
            args[param.name] = hostile_value(draw, param.schema, self.pool)
        return self._wrap(draw, "reference_hostile", frag(call.name), args, self._invalid(spec, args))

    def _call(self, draw: Draw) -> Hostile:
        """Any tool but the finishing one, each argument plausible or hostile, optional ones sometimes left out."""
        spec = pick(draw, [s for s in self.specs.values() if not s.finish] or list(self.specs.values()))
        args = {}
        for param in spec.params:
            if not param.required and draw.integer(0, 1):
                continue
            hostile = draw.integer(0, 2) == 2
            args[param.name] = (hostile_value(draw, param.schema, self.pool) if hostile
                                else self.pool.plausible(draw, param.schema))
        return self._wrap(draw, "call", frag(spec.name), args, self._invalid(spec, args))

    def _wrong_type(self, draw: Draw) -> Hostile:
        """Every argument plausible but one, which has a JSON type its schema does not allow."""
        specs = [s for s in self.specs.values() if s.params]
        if not specs:
            return self._unknown(draw)
        spec = pick(draw, specs)
        args = {p.name: self.pool.plausible(draw, p.schema) for p in spec.params if p.required}
        param = pick(draw, spec.params)
        args[param.name] = wrong_type(draw, param.schema)
        return self._wrap(draw, "wrong_type", frag(spec.name), args, True)

    def _unknown(self, draw: Draw) -> Hostile:
        """An unknown tool name, or an unknown argument name (near misses, reserved names, megabytes)."""
        spec = pick(draw, list(self.specs.values()))
        args = {p.name: self.pool.plausible(draw, p.schema) for p in spec.params if p.required}
        if draw.integer(0, 1):
            name = pick(draw, (spec.name + "s", spec.name.upper(), spec.name[:-1], "", " " + spec.name, "reset",
                               "get_reward", "__init__", "_run", "step", spec.name + "\u00e9"))
            if rarely(draw, 6):
                name = spec.name * (pick(draw, BIG) // len(spec.name))
            return self._wrap(draw, "unknown", frag(name, rarely(draw, 2)), args, name not in self.specs)
        arg = pick(draw, ("x", "self", "__class__", "kwargs", "cell ", "Cells", "\u00e9", "a" * 200))
        if rarely(draw, 6):
            arg = "q" * pick(draw, BIG)
        args[arg] = frag(1)
        return self._wrap(draw, "unknown", frag(spec.name), args, True)

    def _formula_fill(self, draw: Draw) -> Hostile:
        """Where the tools exist (set_formula, fill): a hostile formula, then the next action fills it far down or
        right (a fill recomputes every copy: where quadratic work hides)."""
        if not {"set_formula", "fill"} <= set(self.specs):
            return self._call(draw)
        column, row = pick(draw, (("H", 2), ("A", 1), ("AA", 1), ("XFD", 1)))
        cell = f"{column}{row}"
        text = json.dumps({"name": "set_formula", "arguments": {"cell": cell, "formula": formula(draw)}})
        n = pick(draw, (10, 1_000, 4_999, 1_048_575))
        down = draw.integer(0, 1) == 0
        target = f"{cell}:{column}{min(row + n, 1_048_576)}" if down else f"{cell}:XFD{row}"
        fill = json.dumps({"name": "fill", "arguments": {"cells": target, "direction": "down" if down else "right"}})
        self.pending.append(Hostile("formula_fill", fill, False))
        return Hostile("formula_fill", text, False)

    def _finish(self, draw: Draw) -> Hostile:
        spec = next(s for s in self.specs.values() if s.finish)
        return self._wrap(draw, "finish", frag(spec.name), {}, False)

    def _string_arguments(self, draw: Draw) -> Hostile:
        """"arguments" as a JSON string, as some chat APIs send it: the reference's, or broken, deep or huge."""
        if draw.integer(0, 1):
            call = self.env.reference_call()
            text = json.dumps({"name": call.name, "arguments": json.dumps(call.arguments)})
            return Hostile("string_arguments", text, False)
        name = json.dumps(pick(draw, list(self.specs)))
        inside = pick(draw, ("not json", "{", "[1, 2]", "null", "9" * 5_000, "[" * 100_000, "1e999", '{"a": 1}',
                             '{"a": 1} trailing', " "))
        return Hostile("string_arguments", f'{{"name": {name}, "arguments": {json.dumps(inside)}}}',
                       True if inside.strip() else None)  # blank arguments are no arguments: valid for some tools

    def _malformed(self, draw: Draw) -> Hostile:
        """Text that is not one well-formed tool call (every kind but 'garbage' must be refused)."""
        name = pick(draw, list(self.specs))
        good = self._reference(draw).text if draw.integer(0, 1) else json.dumps({"name": name, "arguments": {}})
        n = pick(draw, (1, 2, 3, 5, 1_000, 100_000))
        options = {
            "truncated": lambda: good[: draw.integer(1, len(good) - 1)],
            "python repr": lambda: repr(json.loads(good)),
            "trailing comma": lambda: good[:-1] + ",}",
            "single quotes": lambda: good.replace('"', "'"),
            "scalar": lambda: pick(draw, ("1e999", "9" * 5_000, "null", "[]", '"text"', "true", "NaN", "-",
                                          "[" + good + "]")),
            "bad name": lambda: '{"name": ' + pick(draw, ("1e999", "9" * 5_000, "null", '["x"]', '{"a": 1}', "NaN",
                                                          "true", '"\\ud800"')) + ', "arguments": {}}',
            "bad arguments": lambda: f'{{"name": {json.dumps(name)}, "arguments": '
                                     + pick(draw, ("[1, 2]", "1e999", "null", "9" * 5_000, "true", '"{"')) + "}",
            "deep": lambda: '{"name": ' + json.dumps(name) + ', "arguments": ' + deep(draw).text + "}",
            "brackets": lambda: pick(draw, ("[", "{", '{"', "<tool_call>", "</tool_call>")) * n,
            "empty": lambda: pick(draw, ("", " ", "\n\t", "<tool_call></tool_call>", "<tool_call>", "\x00")),
            "control": lambda: good.replace(": ", ":" + pick(draw, ("\x00", "\x0b", "\x1b", "\u2028", "\u00a0"))),
            "raw newline": lambda: good.replace('"name": "', '"name": "\n', 1),
            "utf-16": lambda: good.encode("utf-16").decode("latin-1"),
            "whitespace run": lambda: pick(draw, ("<tool_call>", "")) + good[:9] + pick(draw, (" ", "\n", "\t"))
                                      * pick(draw, (10, 1_000, 15_000)) + good[9:-1],
            "garbage": lambda: "".join(chr(draw.integer(0, 0x10FFFF) % 0xD800) for _ in range(draw.integer(1, 30))),
        }
        label = pick(draw, list(options))
        return Hostile("malformed", options[label](), None if label == "garbage" else True)

    def _multi(self, draw: Draw) -> Hostile:
        """Several calls in one action: in tags, one after another, as a JSON list, line by line."""
        calls = [self.action(draw, pick(draw, ("reference", "call", "finish"))).text for _ in range(draw.integer(2, 5))]
        bare = [_bare(c) for c in calls]
        how = draw.integer(0, 3)
        joined = ("".join(f"<tool_call>{b}</tool_call>" for b in bare), "".join(bare), "[" + ", ".join(bare) + "]",
                  "\n".join(bare))[how]
        return Hostile("multi", joined, True)

    def _trailing(self, draw: Draw) -> Hostile:
        """A call with text before or after it."""
        call = self.action(draw, pick(draw, ("reference", "call")))
        bare = _bare(call.text)
        tail = pick(draw, (" thanks!", "\n\nI have done it.", "}", "]", "\x00", " " + bare, "<|im_end|>",
                           "x" * pick(draw, (10, 100_000)), "\n" * pick(draw, (10, 15_000)) + "."))
        how = draw.integer(0, 3)
        if how == 0:  # bare JSON then text: not one JSON value
            return Hostile("trailing", bare + tail, True)
        claim = call.invalid if "tool_call>" not in bare else None
        if how == 1:  # in tags then text: the text outside the tags is ignored
            return Hostile("trailing", f"<tool_call>{bare}</tool_call>{tail}", claim)
        if how == 2:
            return Hostile("trailing", f"Sure, here it is:{tail}\n<tool_call>\n{bare}\n</tool_call>", claim)
        return Hostile("trailing", f"<tool_call>{bare}{tail}", None)  # an open tag: the text after it is the call

    # -- helpers ----------------------------------------------------------------------------------------------------

    def _wrap(self, draw: Draw, kind: str, name: Frag, args: dict[str, Frag], invalid: bool | None) -> Hostile:
        body = ", ".join(f"{json.dumps(k)}: {v.text}" for k, v in args.items())
        text = f'{{"name": {name.text}, "arguments": {{{body}}}}}'
        if any(v.value is UNPARSEABLE for v in args.values()):
            invalid = True
        elif not invalid and "tool_call>" in text:  # a tag inside a string value: where the call ends is unclear
            invalid = None
        how = draw.integer(0, 3)
        if how == 1:
            text = f"<tool_call>{text}</tool_call>"
        elif how == 2:
            text = f"<tool_call>\n{text}\n"  # models often leave the tag open at the end of a turn
        return Hostile(kind, text, invalid)

    @staticmethod
    def _invalid(spec, args: dict[str, Frag]) -> bool:
        """Whether the arguments break the tool's schema (checked here, independently of the environment)."""
        names = {p.name for p in spec.params}
        if any(k not in names for k in args) or any(p.required and p.name not in args for p in spec.params):
            return True
        return any(not fits(p.schema, args[p.name].value) for p in spec.params if p.name in args)


def _bare(text: str) -> str:
    """A call's JSON without the tags around it."""
    return text.removeprefix("<tool_call>").removesuffix("</tool_call>").strip()


def fits(schema: dict[str, Any], value: Any) -> bool:
    """Whether a decoded JSON value fits a tool-argument schema (types, nullable, enum, array items)."""
    if value is UNPARSEABLE:
        return False
    if value is None and schema.get("nullable"):
        return True
    kinds = _kinds(schema)
    checks = {"string": lambda v: isinstance(v, str | _BigString),
              "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
              "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
              "boolean": lambda v: isinstance(v, bool), "array": lambda v: isinstance(v, list),
              "object": lambda v: isinstance(v, dict), "null": lambda v: v is None}
    if kinds and not any(checks[k](value) for k in kinds):
        return False
    if "enum" in schema and value not in schema["enum"]:
        return False
    if "items" in schema and isinstance(value, list):
        return all(fits(schema["items"], v) for v in value)
    return True


# ---------------------------------------------------------------------------------------------------------------
# The benchmark.


class StepTimeout(Exception):
    """A step ran past ``--step-timeout`` (reported like an exception: it is a hang)."""


def _alarm(signum, frame):
    raise StepTimeout("step() ran past --step-timeout")


def _where(err: BaseException) -> str:
    frames = traceback.extract_tb(err.__traceback__)
    inside = [f for f in frames if "/envs/" in f.filename.replace("\\", "/")] or frames
    last = inside[-1] if inside else None
    return f"{Path(last.filename).name}:{last.lineno} {last.name}" if last else "?"


def bench(env_id: str, faults: FaultConfig | None, seed: int, seconds: float, examples: int, step_timeout: float):
    """Play hostile episodes on ``env_id`` for ``seconds`` or ``examples`` actions; return (step times, action-drawing
    times (the reference's planning), errors)."""
    env = gymnasium.make(env_id, faults=faults, disable_env_checker=True).unwrapped
    draw = RandomDraw(seed)
    times: list[tuple[float, str, str, str]] = []  # (seconds, kind, summary, split)
    planning: list[tuple[float, str, str]] = []  # (seconds to draw an action, the action before, split)
    errors: dict[tuple[str, str], list] = {}  # (type, where) -> [count, shortest action, message, kind]
    start = time.perf_counter()
    episode = 0
    use_alarm = hasattr(signal, "setitimer")
    if use_alarm:
        signal.signal(signal.SIGALRM, _alarm)
    while len(times) < examples and time.perf_counter() - start < seconds:
        split = ("train", "heldout")[episode % 2]
        obs, _ = env.reset(seed=seed * 100_003 + episode, options={"task_seed": draw.integer(0, 10**6), "split": split})
        episode += 1
        actions = HostileActions(env)
        actions.learn(obs)
        previous = ""
        for _ in range(draw.integer(1, 30)):
            if len(times) >= examples or time.perf_counter() - start >= seconds:
                break
            t0 = time.perf_counter()  # drawing an action asks the reference for its next call: the planner's time
            try:
                if use_alarm:
                    signal.setitimer(signal.ITIMER_REAL, max(0.01, step_timeout))
                hostile = actions.action(draw)
            except Exception as err:  # the reference itself failed: report it like a step
                _add_error(errors, err, Hostile("reference", "<reference_call()>", None), f" after {previous}")
                break
            finally:
                if use_alarm:
                    signal.setitimer(signal.ITIMER_REAL, 0)
            planning.append((time.perf_counter() - t0, previous, split))
            budget = max(0.01, min(step_timeout, seconds - (time.perf_counter() - start)))
            t0 = time.perf_counter()
            try:
                if use_alarm:
                    signal.setitimer(signal.ITIMER_REAL, budget)
                obs, _, terminated, truncated, _ = env.step(hostile.text)
            except Exception as err:
                dt = time.perf_counter() - t0
                if isinstance(err, StepTimeout) and budget < step_timeout:
                    break  # cut off by the end of the whole budget, not by --step-timeout: no finding
                _add_error(errors, err, hostile, _context(hostile, previous))
                times.append((dt, hostile.kind, hostile.summary() + _context(hostile, previous), split))
                break  # the env may be half-way through a change: start a new episode
            finally:
                if use_alarm:
                    signal.setitimer(signal.ITIMER_REAL, 0)
            summary = hostile.summary()
            times.append((time.perf_counter() - t0, hostile.kind, summary + _context(hostile, previous), split))
            previous = summary
            actions.learn(obs)
            if terminated or truncated:
                break
    return times, planning, errors


def _context(hostile: Hostile, previous: str) -> str:
    """The first half of a two-step kind (the formula a fill copies), shown with the second."""
    return f"\n{'':>44}after {previous}" if hostile.kind == "formula_fill" and '"fill"' in hostile.text else ""


def _add_error(errors: dict, err: BaseException, hostile: Hostile, context: str = "") -> None:
    key = (type(err).__name__, _where(err))
    entry = errors.setdefault(key, [0, hostile, str(err)[:200], hostile.kind, context])
    entry[0] += 1
    if len(hostile.text) < len(entry[1].text):
        entry[1], entry[2], entry[4] = hostile, str(err)[:200], context


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] + " Prints figures and exits 0; it asserts nothing.",
        epilog="Every choice comes from --seed: the same seed draws the same actions (step times vary with the "
               "machine). The budget is shared by the environments; a step that runs past --step-timeout is "
               "stopped and reported as a StepTimeout. tests/test_fuzz.py asserts the properties.")
    parser.add_argument("--env", action="append", default=None,
                        help="a registered environment id (repeat for several); default: every environment recoverygym "
                             f"ships ({', '.join(envs.ENVIRONMENTS)})")
    parser.add_argument("--seed", type=int, default=0, help="seed of every choice (default 0)")
    parser.add_argument("--examples", type=int, default=1_000_000,
                        help="at most this many hostile actions per environment (default: as many as the time allows)")
    parser.add_argument("--seconds", type=float, default=60.0, help="wall-clock budget for all environments (60)")
    parser.add_argument("--step-timeout", type=float, default=10.0,
                        help="stop a single step after this many seconds and report it as a hang (10)")
    parser.add_argument("--faults", choices=["none", "all"], default="all",
                        help="'all': every fault kind the environment declares at rate 0.2; 'none': no faults")
    parser.add_argument("--top", type=int, default=10, help="how many of the slowest steps to list (10)")
    args = parser.parse_args(argv)
    ids = args.env or list(envs.ENVIRONMENTS)
    unknown = [i for i in ids if i not in gymnasium.registry]
    if unknown:
        parser.error(f"unknown environment id(s) {unknown}; registered: {', '.join(envs.ENVIRONMENTS)} (import the "
                     "package that registers yours first)")
    print(f"bench_hostile: seed {args.seed}, {args.seconds:g} s budget, faults {args.faults}, python "
          f"{sys.version.split()[0]}")
    slowest, exit_errors = [], 0
    for i, env_id in enumerate(ids):
        cls = gymnasium.spec(env_id).make(disable_env_checker=True).unwrapped
        faults = FaultConfig(**{k: 0.2 for k in cls.fault_kinds}) if args.faults == "all" else None
        share = args.seconds / len(ids)
        times, planning, errors = bench(env_id, faults, args.seed + i, share, args.examples, args.step_timeout)
        ms = np.array([t[0] for t in times]) * 1e3
        if len(ms):
            p = np.percentile(ms, [50, 90, 99, 99.9])
            print(f"\n{env_id}: {len(ms):,} steps in {ms.sum() / 1e3:.1f} s of step(); ms per step: p50 {p[0]:.2f}, "
                  f"p90 {p[1]:.2f}, p99 {p[2]:.1f}, p99.9 {p[3]:.1f}, max {ms.max():.1f}")
        kinds: dict[str, list[float]] = {}
        for t in times:
            kinds.setdefault(t[1], []).append(t[0] * 1e3)
        print("  by kind (count, p50 ms, max ms): " + "; ".join(
            f"{k} {len(v)}, {np.median(v):.2f}, {max(v):.0f}" for k, v in sorted(kinds.items())))
        slowest += [(t[0], env_id, t[1], t[2], t[3]) for t in times]
        plan_ms = sorted(planning, key=lambda p: -p[0])
        if plan_ms:
            print(f"  reference_call() while drawing actions: {len(plan_ms):,} calls, max {plan_ms[0][0] * 1e3:.1f} ms"
                  + "".join(f"\n    {p[0] * 1e3:9.1f} ms ({p[2]}) after {p[1]}" for p in plan_ms[:3]))
        if errors:
            print(f"  exceptions from step() ({sum(e[0] for e in errors.values())} in {len(errors)} classes):")
            for (name, where), (count, hostile, message, kind, context) in sorted(errors.items(),
                                                                                   key=lambda e: -e[1][0]):
                print(f"    {count:>4} x {name} at {where}: {message}\n           shortest ({kind}): "
                      f"{hostile.summary(200)}{context}")
            exit_errors += len(errors)
        else:
            print("  no exceptions from step()")
    slowest.sort(key=lambda t: -t[0])
    print(f"\nslowest {args.top} steps:")
    for seconds, env_id, kind, summary, split in slowest[: args.top]:
        print(f"  {seconds * 1e3:9.1f} ms  {env_id.split('/')[-1]:<16} {split:<7} {kind:<17} {summary}")
    print(f"\n{exit_errors} exception class(es) found")
    return 0


if __name__ == "__main__":
    sys.exit(main())
