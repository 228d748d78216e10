"""Tools: the ``@tool`` marker, JSON-schema derivation, and parsing/validating a model's tool call.

A tool is an ordinary typed method with a Google-style docstring. Its JSON schema is derived from the signature
and docstring with the same rules as ``transformers.utils.get_json_schema`` (tests hold the two equal), so the
schema a model sees in its chat template can never drift from the code that runs.
"""

from __future__ import annotations

import difflib
import inspect
import json
import math
import re
import sys
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "ActionError",
    "ToolCall",
    "ToolError",
    "ToolSpec",
    "parse_action",
    "tool",
    "tool_schema",
]


class ToolError(Exception):
    """Raised by a tool that refuses a call (a mistake the agent made); ``prefix + message`` becomes the observation
    and the step's outcome is ``rejected``.

    Only ``ToolError`` is turned into an observation: any other exception is a bug in the environment and propagates.
    The message should say what was wrong and what is valid, e.g. ``unknown order 'O-99'; this customer has O-12``.
    ``prefix`` (``"error: "``) may be ``""`` for a refusal the domain words itself (``verification failed: ...``).
    """

    def __init__(self, message: str, *, prefix: str = "error: "):
        super().__init__(message)
        self.prefix = prefix


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One call of a tool by name with keyword arguments."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        """The action text an agent would emit for this call."""
        return json.dumps({"name": self.name, "arguments": self.arguments}, separators=(", ", ": "))

    def key(self) -> str:
        """A hashable identity: the same tool with the same arguments is the same call."""
        return self.name + json.dumps(self.arguments, sort_keys=True)

    def __str__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.arguments.items())
        return f"{self.name}({args})"


@dataclass(frozen=True, slots=True)
class ActionError:
    """An action that could not be turned into a valid tool call; ``message`` is shown to the agent."""

    message: str


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """What the environment knows about one tool method."""

    name: str
    function: Callable[..., str]
    write: bool
    finish: bool
    schema: dict[str, Any]
    params: tuple[_Param, ...]

    @property
    def kind(self) -> str:
        return "finish" if self.finish else "write" if self.write else "read"


def tool(function: Callable | None = None, *, write: bool = False, finish: bool = False):
    """Mark an environment method as a tool.

    ``@tool`` for a read-only tool, ``@tool(write=True)`` for one that changes state (write faults apply to it),
    ``@tool(finish=True)`` for the tool that ends the episode.
    """

    def mark(fn: Callable) -> Callable:
        fn.__recoverygym_tool__ = {"write": write or finish, "finish": finish}
        return fn

    return mark(function) if function is not None else mark


# ---------------------------------------------------------------------------------------------------------------
# Schema derivation: the rules of transformers.utils.get_json_schema, for the types tools use.

_DESCRIPTION_RE = re.compile(r"^(.*?)[\n\s]*(Args:|Returns:|Raises:|\Z)", re.DOTALL)
_ARGS_RE = re.compile(r"\n\s*Args:\n(.*?)[\n\s]*(Returns:|Raises:|\Z)", re.DOTALL)
_ARG_SPLIT_RE = re.compile(
    r"(?:^|\n)([ \t]*)(\w+):\s*(.*?)\s*(?=\n(?!\1[ \t])[ \t]*\w+:|\Z)",
    re.DOTALL,
)
_RETURNS_RE = re.compile(r"\n\s*Returns:\n\s*(.*?)[\n\s]*(Raises:|\Z)", re.DOTALL)
_CHOICES_RE = re.compile(r"\(choices:\s*(.*?)\)\s*$", re.IGNORECASE)
_SCALARS = {int: "integer", float: "number", str: "string", bool: "boolean", type(None): "null"}
_CONTAINERS = {list: "array", tuple: "array", dict: "object"}


def _type_schema(hint: Any) -> dict[str, Any]:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is None:
        if hint in _SCALARS:
            return {"type": _SCALARS[hint]}
        if hint in _CONTAINERS:
            return {"type": _CONTAINERS[hint]}
        if hint is Any:
            return {}
        raise TypeError(f"tool argument type {hint!r} has no JSON schema; use str, int, float, bool, list or Literal")
    if origin is typing.Union or origin is types.UnionType:
        subs = [_type_schema(a) for a in args if a is not type(None)]
        if len(subs) == 1:
            out = subs[0]
        elif all(s.keys() == {"type"} and isinstance(s["type"], str) for s in subs):
            names = sorted({s["type"] for s in subs})
            out = {"type": names[0] if len(names) == 1 else names}
        else:
            out = {"anyOf": subs}
        if type(None) in args:
            out["nullable"] = True
        return out
    if origin is Literal:
        kinds = list(dict.fromkeys(_SCALARS[type(a)] for a in args))
        return {"type": kinds[0] if len(kinds) == 1 else kinds, "enum": list(args)}
    if origin is list:
        return {"type": "array", "items": _type_schema(args[0])} if args else {"type": "array"}
    if origin is dict:
        out = {"type": "object"}
        if len(args) == 2:
            out["additionalProperties"] = _type_schema(args[1])
        return out
    raise TypeError(f"tool argument type {hint!r} has no JSON schema; use str, int, float, bool, list or Literal")


def tool_schema(function: Callable) -> dict[str, Any]:
    """The tool's JSON schema, equal to ``transformers.utils.get_json_schema(function)``."""
    name = function.__name__
    doc = inspect.getdoc(function)
    if not doc:
        raise TypeError(f"tool {name!r} has no docstring; a Google-style docstring is its description for the model")
    doc = doc.strip()
    match = _DESCRIPTION_RE.search(doc)
    description = match.group(1).strip() if match else None
    args_block = _ARGS_RE.search(doc)
    arg_docs: dict[str, str] = {}
    if args_block:
        lines = "\n".join(line for line in args_block.group(1).split("\n") if line.strip())
        arg_docs = {m[1]: re.sub(r"\s*\n+\s*", " ", m[2].strip()) for m in _ARG_SPLIT_RE.findall(lines)}
    returns = _RETURNS_RE.search(doc)

    hints = typing.get_type_hints(function)
    signature = inspect.signature(function)
    properties: dict[str, Any] = {}
    required = []
    for pname, param in list(signature.parameters.items())[1:]:  # skip self
        if pname not in hints:
            raise TypeError(f"tool {name!r}: argument {pname!r} needs a type hint")
        if param.default is inspect.Parameter.empty:
            required.append(pname)
    return_schema = None
    for pname, hint in hints.items():
        if pname == "return":
            try:
                return_schema = _type_schema(hint)
            except TypeError:
                pass
            continue
        schema = _type_schema(hint)
        if pname not in arg_docs:
            raise TypeError(f"tool {name!r}: the docstring's Args: section has no description for {pname!r}")
        desc = arg_docs[pname]
        choices = _CHOICES_RE.search(desc)
        if not choices and "(choices:" in desc.lower():
            # get_json_schema reads choices only at the very end: elsewhere they stay prose and no enum is made.
            raise TypeError(f"tool {name!r}: argument {pname!r} lists '(choices: ...)' before the end of its "
                            "description; move it to the end, or type the argument as a Literal")
        if choices:
            schema["enum"] = [c.strip() if isinstance(c, str) else c for c in json.loads(choices.group(1))]
            desc = desc[: choices.start()].strip()
        schema["description"] = desc
        properties[pname] = schema
    parameters: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        parameters["required"] = required
    out: dict[str, Any] = {"name": name, "description": description, "parameters": parameters}
    if return_schema is not None:
        if returns:
            return_schema["description"] = returns.group(1).strip()
        out["return"] = return_schema
    return {"type": "function", "function": out}


# ---------------------------------------------------------------------------------------------------------------
# Argument validation: a wrong call becomes an observation that says what was expected.


@dataclass(frozen=True, slots=True)
class _Param:
    name: str
    schema: dict[str, Any]
    required: bool


_JSON_TYPE_CHECKS: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
    "null": lambda v: v is None,
}
_JSON_TYPE_NAMES = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "array": "a list",
    "object": "an object",
    "null": "null",
}


def _short(value: Any, limit: int = 60) -> str:
    """At most ``limit`` characters showing ``value``; its cost does not grow with the value's size."""
    text = repr(value[: limit + 1]) if isinstance(value, str) else _preview(value, limit + 1)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _preview(value: Any, budget: int) -> str:
    """JSON text of ``value``, stopped once it is longer than ``budget`` characters."""
    if isinstance(value, list | dict):
        items = value.items() if isinstance(value, dict) else value
        parts, size = [], 2
        for item in items:
            part = (f"{json.dumps(item[0])}: {_preview(item[1], budget - size)}" if isinstance(value, dict)
                    else _preview(item, budget - size))
            parts.append(part)
            size += len(part) + 2
            if size > budget:
                break
        text = ", ".join(parts)
        return f"{{{text}}}" if isinstance(value, dict) else f"[{text}]"
    return json.dumps(value)[: budget + 1]


def _value_error(schema: dict[str, Any], value: Any, where: str) -> str | None:
    """Return why ``value`` does not fit ``schema``, or None when it fits."""
    if value is None and schema.get("nullable"):
        return None
    kinds = schema.get("type")
    if kinds is not None:
        kinds = [kinds] if isinstance(kinds, str) else kinds
        if not any(_JSON_TYPE_CHECKS[k](value) for k in kinds):
            wanted = " or ".join(_JSON_TYPE_NAMES[k] for k in kinds)
            return f"{where} must be {wanted}, got {type(value).__name__} {_short(value)}"
    if "enum" in schema and value not in schema["enum"]:
        return f"{where} must be one of {', '.join(map(json.dumps, schema['enum']))}; got {_short(value)}"
    if "items" in schema and isinstance(value, list):
        for i, item in enumerate(value):
            if (err := _value_error(schema["items"], item, f"{where}[{i}]")) is not None:
                return err
    return None


def collect_params(schema: dict[str, Any]) -> tuple[_Param, ...]:
    parameters = schema["function"]["parameters"]
    required = set(parameters.get("required", ()))
    return tuple(_Param(n, s, n in required) for n, s in parameters["properties"].items())


def suggest(word: str, options: list[str]) -> str:
    """`` (did you mean 'x'?)`` when a close option exists, else an empty string.

    Its work is bounded whatever the length of ``word``: difflib's ratio is ``2 * matches / (len(a) + len(b))``, so
    a word more than 2.33 times as long as every option can never reach the 0.6 cutoff, and is not compared at all.
    """
    options = [o for o in options if len(word) <= _SUGGEST_SPAN * len(o)]
    close = difflib.get_close_matches(word, options, n=1, cutoff=_SUGGEST_CUTOFF) if options else []
    return f" (did you mean {close[0]!r}?)" if close else ""


_SUGGEST_CUTOFF = 0.6
_SUGGEST_SPAN = 2 / _SUGGEST_CUTOFF - 1  # the longest word, per option character, that can still reach the cutoff


def validate_arguments(spec: ToolSpec, arguments: dict[str, Any]) -> str | None:
    """Return an error message for arguments that do not fit the tool's signature, or None."""
    names = [p.name for p in spec.params]
    for given in arguments:
        if given not in names:
            valid = ", ".join(names) if names else "none"
            return f"{spec.name} has no argument {given[:60]!r}{suggest(given, names)}; its arguments are: {valid}"
    for param in spec.params:
        if param.name not in arguments:
            if param.required:
                return f"{spec.name} is missing required argument {param.name!r} ({param.schema['description']})"
            continue
        if (err := _value_error(param.schema, arguments[param.name], f"argument {param.name!r}")) is not None:
            return f"{spec.name}: {err}"
    return None


# ---------------------------------------------------------------------------------------------------------------
# Action parsing: JSON, bare or inside <tool_call>...</tool_call> as ChatML-style models emit it.

_OPEN, _CLOSE = "<tool_call>", "</tool_call>"
_BLANKS = re.compile(r"\s*")
_FORMAT_HINT = 'write one tool call as <tool_call>{"name": "<tool>", "arguments": {...}}</tool_call>'


# JSON as the action's text: every number a finite double, nesting bounded, and no input that makes ``json`` raise
# anything but a refusal. A model's text can hold a 5,000-digit integer (Python refuses to convert it: ValueError),
# ``1e999`` or ``NaN`` (non-finite floats no tool can use, and ``int(1e999)`` raises OverflowError downstream), or
# ``[[[[...`` deep enough to exhaust the stack in whatever walks the value next.

MAX_DEPTH = 32  # nesting of arrays and objects in one tool call; tools need 3
_FLOAT_DIGITS = len(str(int(sys.float_info.max)))  # 309: a longer integer literal cannot be a finite double


@dataclass(frozen=True, slots=True)
class _Unparsable:
    where: str = ""  # " (at character n)" for invalid JSON
    message: str = ""  # why valid JSON was refused; empty for invalid JSON


class _Refused(ValueError):
    """Raised from inside ``json.loads`` by the number hooks below."""


def _parse_int(literal: str) -> int:
    if len(literal) > _FLOAT_DIGITS + 1 or abs(value := int(literal)) > sys.float_info.max:
        raise _Refused(f"the number {literal[:20]}... is too large: numbers must be finite and at most "
                       f"{sys.float_info.max:.4g} in magnitude")
    return value


def _parse_float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise _Refused(f"the number {literal[:20]} is too large: numbers must be finite and at most "
                       f"{sys.float_info.max:.4g} in magnitude")
    return value


def _parse_constant(name: str) -> float:
    raise _Refused(f"{name} is not a JSON number; numbers must be finite")


_DECODER = json.JSONDecoder(parse_int=_parse_int, parse_float=_parse_float, parse_constant=_parse_constant)


def _loads(text: str) -> Any:
    """``json.loads(text)``, or ``_Unparsable`` for text that is not JSON or holds what no tool call can."""
    try:
        value = _DECODER.decode(text)
    except _Refused as err:
        return _Unparsable(message=str(err))
    except json.JSONDecodeError as err:
        return _Unparsable(where=f" (at character {err.pos})")
    except ValueError:  # what json documents for any other text it cannot decode
        return _Unparsable()
    except RecursionError:  # json.loads recurses once per nesting level
        return _Unparsable(message=f"the tool call is nested too deeply (at most {MAX_DEPTH} levels)")
    if _too_deep(value):
        return _Unparsable(message=f"the tool call is nested too deeply (at most {MAX_DEPTH} levels)")
    return value


def _too_deep(value: Any) -> bool:
    """Whether ``value`` nests arrays and objects more than ``MAX_DEPTH`` levels (checked without recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        for child in children:
            if isinstance(child, list | dict):
                if depth >= MAX_DEPTH:
                    return True
                stack.append((child, depth + 1))
    return False


def _tool_call_blocks(action: str, most: int = 2) -> list[str]:
    """The stripped text of the first ``most`` ``<tool_call>`` blocks; an unclosed block runs to the end.

    A block closes at the first ``</tool_call>`` after the JSON value it opens with, so a string argument may hold
    the tags (a reply quoting them). Found with ``str.find`` and one JSON scan, in time linear in the action: the
    regex ``<tool_call>\\s*(.*?)\\s*(</tool_call>|\\Z)`` this replaces (the same blocks where no JSON string holds
    a tag) backtracked quadratically over a long run of spaces (40,000 took 19 s).
    """
    blocks, pos = [], 0
    while len(blocks) < most and (start := action.find(_OPEN, pos)) != -1:  # at most 2 JSON scans: linear
        start += len(_OPEN)
        end = action.find(_CLOSE, _json_end(action, start))
        if end == -1:
            blocks.append(action[start:].strip())
            break
        blocks.append(action[start:end].strip())
        pos = end + len(_CLOSE)
    return blocks


def _json_end(text: str, start: int) -> int:
    """Where the JSON value beginning at ``text[start:]`` (after blanks) ends; ``start`` if none begins there."""
    try:
        return _DECODER.raw_decode(text, _BLANKS.match(text, start).end())[1]
    except (ValueError, RecursionError):  # not JSON (or refused): the block ends at the next closing tag
        return start


def parse_action(action: Any, tools: dict[str, ToolSpec]) -> ToolCall | ActionError:
    """Turn an agent's action text into a validated ``ToolCall``, or an ``ActionError`` that explains the problem.

    Never raises on any input: malformed JSON, unknown tools, wrong argument types and huge strings all become
    error messages the agent can act on.
    """
    if not isinstance(action, str):
        return ActionError(f"an action must be text, got {type(action).__name__}; {_FORMAT_HINT}")
    text = action.strip()
    bare = _loads(text) if text[:1] == "{" else None  # a bare call whose strings may mention the tags
    blocks = [] if isinstance(bare, dict) else _tool_call_blocks(action)
    if len(blocks) > 1:
        return ActionError(f"found {action.count(_OPEN)} <tool_call> tags; make exactly one tool call per turn")
    text = blocks[0] if blocks else text
    if not text:
        return ActionError(f"no tool call found; {_FORMAT_HINT}")
    payload = bare if not blocks and bare is not None else _loads(text)
    if isinstance(payload, _Unparsable):
        if payload.message:
            return ActionError(payload.message)
        kind = "invalid JSON in the tool call" if blocks or text[:1] in "{[" else "no tool call found"
        return ActionError(f"{kind}{payload.where}; {_FORMAT_HINT}")
    if not isinstance(payload, dict) or "name" not in payload:
        return ActionError(f'a tool call is a JSON object with "name" and "arguments"; {_FORMAT_HINT}')
    name, arguments = payload["name"], payload.get("arguments", {})
    if isinstance(arguments, str):  # some chat APIs send arguments as a JSON string
        arguments = _loads(arguments) if arguments.strip() else {}
        if isinstance(arguments, _Unparsable):
            return ActionError('"arguments" is a string that is not valid JSON; give an object of argument values'
                               + (f" ({arguments.message})" if arguments.message else ""))
    if not isinstance(name, str) or name not in tools:
        shown = name[:60] if isinstance(name, str) else _short(name)
        hint = suggest(name, list(tools)) if isinstance(name, str) else ""
        return ActionError(f"unknown tool {shown!r}{hint}; available tools: {', '.join(tools)}")
    if not isinstance(arguments, dict):
        return ActionError(f'"arguments" must be an object mapping argument names to values, got {_short(arguments)}')
    if (err := validate_arguments(tools[name], arguments)) is not None:
        return ActionError(err)
    return ToolCall(name, arguments)

