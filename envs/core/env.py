"""``ToolEnv``: the Gymnasium environment every recoverygym domain subclasses.

A subclass supplies a task generator, the state, typed ``@tool`` methods, a checker and a privileged reference plan.
The core supplies the rest: the text spaces, action parsing and validation, turn limits, rewards from the checker,
fault injection with its bookkeeping, and a reference policy that recovers from every fault kind.

Episode protocol::

    obs, info = env.reset(seed=0, options={"task_seed": 7, "split": "heldout"})   # obs: the task prompt
    obs, reward, terminated, truncated, info = env.step('{"name": "lookup_order", "arguments": {"order_id": "O-1"}}')

The reward is 0 until the episode ends (the finishing tool was called: ``terminated``; the turn limit was reached:
``truncated``), then the checker's score of the final state.
"""

from __future__ import annotations

import re
import string
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import gymnasium
import numpy as np

from .faults import FaultConfig
from .tools import ActionError, ToolCall, ToolError, ToolSpec, collect_params, parse_action, tool_schema

__all__ = ["CHARSET", "MAX_OBSERVATION", "SPLITS", "CheckResult", "ToolEnv"]

#: Every character an observation or action may hold: printable ASCII, newline and tab.
CHARSET = frozenset(string.printable) - frozenset("\r\x0b\x0c")
CHARSET_TEXT = "".join(sorted(CHARSET))
#: Observations longer than this are truncated with a marker.
MAX_OBSERVATION = 16_000
MAX_ACTION = 16_000
SPLITS = {"train": 0, "heldout": 1}
_OUTSIDE_CHARSET = re.compile(r"[^\t\n\x20-\x7e]")


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The checker's verdict on a final state: ``score`` in [0, 1], named pass/fail ``components``, and ``reasons``
    (human-readable, one per failed component)."""

    score: float
    components: dict[str, bool] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)

    @property
    def success(self) -> bool:
        return self.score == 1.0


def sanitize(text: str, limit: int = MAX_OBSERVATION) -> str:
    """Make ``text`` a valid observation: printable ASCII (other characters become '?') of at most ``limit``."""
    if not text.isascii():
        text = text.encode("ascii", "replace").decode()
    if _OUTSIDE_CHARSET.search(text):
        text = _OUTSIDE_CHARSET.sub("?", text)
    if len(text) > limit:
        marker = f"\n[... {len(text) - limit} more characters truncated]"
        text = text[: limit - len(marker)] + marker
    return text


class ToolEnv(gymnasium.Env[str, str]):
    """Base class of a tool-using environment. See the module docstring and ``docs/adding-an-environment.md``.

    Args:
        faults: Fault rates (a ``FaultConfig`` or a mapping of kind to rate); None for no faults.
        max_turns: Turn limit; by default ``3 * required_steps + 10`` of each task.
        render_mode: None or ``"ansi"`` (``render()`` returns the latest exchange as text).
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi"], "render_fps": 1}
    #: One line shown by ``recoverygym envs``.
    description: ClassVar[str] = ""
    #: Fault kinds this environment implements; a non-zero rate for any other kind is an error.
    fault_kinds: ClassVar[tuple[str, ...]] = ("transient_error", "rate_limit", "write_timeout")

    _tool_specs: ClassVar[dict[str, ToolSpec]]

    def __init__(self, faults: FaultConfig | Mapping[str, float] | None = None, max_turns: int | None = None,
                 render_mode: str | None = None):
        self.faults = FaultConfig.from_dict(faults)
        self.faults.require_supported(self.fault_kinds, type(self).__name__)
        if max_turns is not None and (not isinstance(max_turns, int) or max_turns < 1):
            raise ValueError(f"max_turns must be a positive integer or None, got {max_turns!r}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or one of {self.metadata['render_modes']}, got {render_mode!r}")
        self.max_turns_setting = max_turns
        self.render_mode = render_mode
        self.observation_space = gymnasium.spaces.Text(MAX_OBSERVATION, min_length=0, charset=CHARSET_TEXT)
        self.action_space = gymnasium.spaces.Text(MAX_ACTION, min_length=0, charset=CHARSET_TEXT)
        self._tools = self.tool_specs()
        self._name_crc = zlib.crc32(type(self).__name__.encode())
        self._done = True
        self._last = ""

    # -- tools ------------------------------------------------------------------------------------------------------

    @classmethod
    def tool_specs(cls) -> dict[str, ToolSpec]:
        """The environment's tools in declaration order (base classes first), computed once per class."""
        if "_tool_specs" not in cls.__dict__:
            specs: dict[str, ToolSpec] = {}
            for klass in reversed(cls.__mro__):
                for name, fn in vars(klass).items():
                    marker = getattr(fn, "__recoverygym_tool__", None)
                    if marker is None:
                        specs.pop(name, None)  # overridden by a non-tool
                        continue
                    schema = tool_schema(fn)
                    specs[name] = ToolSpec(name, fn, marker["write"], marker["finish"], schema, collect_params(schema))
            if not any(s.finish for s in specs.values()):
                raise TypeError(f"{cls.__name__} has no finishing tool; mark one with @tool(finish=True)")
            cls._tool_specs = specs
        return cls._tool_specs

    @classmethod
    def tool_methods(cls) -> dict[str, Any]:
        """Tool name -> unbound method, in declaration order."""
        return {name: spec.function for name, spec in cls.tool_specs().items()}

    @classmethod
    def tool_schemas(cls) -> list[dict[str, Any]]:
        """The tools' JSON schemas (equal to ``transformers.utils.get_json_schema`` of each method)."""
        return [spec.schema for spec in cls.tool_specs().values()]

    # -- hooks a domain implements ----------------------------------------------------------------------------------

    def _generate_task(self, rng: np.random.Generator, split: str, task_seed: int) -> Any:
        """Task ``task_seed`` of ``split``, drawn only from ``rng``; must have ``required_steps`` and ``template``."""
        raise NotImplementedError

    def _setup(self, task: Any) -> None:
        """Build ``self.state`` (which must have ``copy()`` if the env supports stale reads) from the task."""
        raise NotImplementedError

    def _prompt(self) -> str:
        """The first observation: role, policy, the request, and the earlier transcript of a seeded error."""
        raise NotImplementedError

    def _check(self) -> CheckResult:
        """The checker: a pure function of ``self.state`` and ``self.task``."""
        raise NotImplementedError

    def _reference_plan(self) -> list[ToolCall]:
        """Calls that solve the task from the *current* state, ending with the finishing tool."""
        raise NotImplementedError

    def _seed_error(self, rng: np.random.Generator) -> tuple[str, str, list] | None:
        """Apply an earlier wrong action; return (kind, description, transcript), or None if none fits the task."""
        return None

    def _concurrent_edit(self, rng: np.random.Generator) -> str | None:
        """Let someone else change the state; return a description, or None if nothing sensible can change."""
        return None

    def _read_back(self, call: ToolCall) -> ToolCall | None:
        """The read that shows whether the write ``call`` took effect (None: the reference just re-plans)."""
        return None

    # -- public API -------------------------------------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        super().reset(seed=seed)
        options = dict(options or {})
        split = options.pop("split", "train")
        if split not in SPLITS:
            raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
        task_seed = options.pop("task_seed", None)
        if task_seed is None:
            task_seed = int(self.np_random.integers(2**31))
        if isinstance(task_seed, bool) or not isinstance(task_seed, int | np.integer) or task_seed < 0:
            raise ValueError(f"task_seed must be a non-negative integer, got {task_seed!r}")
        if options:
            raise ValueError(f"unknown reset option(s) {sorted(options)}; valid: split, task_seed")
        task_seed = int(task_seed)
        task_rng = np.random.default_rng([self._name_crc, SPLITS[split], task_seed])
        self.task = self._generate_task(task_rng, split, task_seed)
        self.task_seed, self.split = task_seed, split
        self._setup(self.task)

        self.turn = 0
        self.fault_log: list[dict[str, Any]] = []
        self._done = False
        self._blocked: dict[str, int] = {}  # tool -> turn at which its rate limit ends
        self._immune: set[str] = set()
        self._snapshot: Any = None  # the state before the latest write, for stale reads
        self._edited = False
        self._plan: list[ToolCall] | None = None  # the reference plan, computed when first asked for
        self._recovery: list[ToolCall] = []  # reference calls to make before the plan resumes

        if self.faults.seeded_error > 0.0:  # from the task seed: every rollout of a task starts from one state
            error_rng = np.random.default_rng([self._name_crc, SPLITS[split], task_seed, 1])
            if error_rng.random() < self.faults.seeded_error:
                before = self.state.copy() if self.faults.stale_read else None
                seeded = self._seed_error(error_rng)
                if seeded is not None:
                    self._snapshot = before  # a stale read can hide the earlier mistake
                    kind, description, _ = seeded
                    self.fault_log.append({"kind": "seeded_error", "turn": 0, "tool": None, "variant": kind,
                                           "description": description})
        self.max_turns = self.max_turns_setting or 3 * self.required_steps + 10
        self._last = sanitize(self._prompt())
        info = {"tools": self.tool_schemas(), "task_seed": task_seed, "split": split,
                "template": self.task.template, "required_steps": self.required_steps, "max_turns": self.max_turns,
                "faults": [dict(f) for f in self.fault_log]}
        return self._last, info

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        if self._done:
            raise RuntimeError("the episode has ended; call reset() before step()")
        self.turn += 1
        parsed = parse_action(action, self._tools)
        terminated = False
        if isinstance(parsed, ActionError):
            observation, tool_name = "error: " + parsed.message, None
        else:
            tool_name = parsed.name
            observation, terminated = self._call(parsed)
        truncated = not terminated and self.turn >= self.max_turns
        info: dict[str, Any] = {"tool": tool_name, "invalid_action": tool_name is None, "turn": self.turn,
                                "faults": [dict(f) for f in self.fault_log]}
        reward = 0.0
        if terminated or truncated:
            self._done = True
            result = self._check()
            reward = float(result.score)
            info.update(success=result.success, score=reward, components=dict(result.components),
                        reasons=list(result.reasons))
            if truncated:
                observation += f"\n[turn limit of {self.max_turns} reached: the episode is over]"
        self._last = sanitize(observation)
        return self._last, reward, terminated, truncated, info

    def render(self) -> str | None:
        return self._last if self.render_mode == "ansi" else None

    def check(self) -> CheckResult:
        """The checker's verdict on the current state (no side effects)."""
        return self._check()

    @property
    def required_steps(self) -> int:
        return int(self.task.required_steps)

    def reference_action(self) -> str:
        """The next action of the privileged reference policy, as action text: it solves the task from the current
        state and recovers from every fault (retries transient errors and rate limits, re-reads after a stale read,
        reads back after a write timeout or a conflict, then re-plans)."""
        return self.reference_call().to_json()

    def reference_call(self) -> ToolCall:
        if self._recovery:
            return self._recovery[0]
        if not self._plan:
            self._plan = self._reference_plan()
            if not self._plan:
                raise RuntimeError(f"{type(self).__name__}._reference_plan() returned no calls")
        return self._plan[0]

    # -- one tool call, with faults ---------------------------------------------------------------------------------

    def _call(self, call: ToolCall) -> tuple[str, bool]:
        """Run a validated call through fault injection; return (observation, terminated)."""
        spec = self._tools[call.name]
        f = self.faults
        blocked_until = self._blocked.get(call.name)
        if blocked_until is not None and self.turn < blocked_until:
            return self._retry_later(call, f"error 429: rate limit for {call.name}; retry after "
                                           f"{blocked_until - self.turn} s (one turn takes 1 s)")
        self._blocked.pop(call.name, None)
        immune = False
        if self._immune:
            key = call.key()
            immune = key in self._immune
            self._immune.discard(key)
        rng = self.np_random
        if not immune:
            if f.rate_limit and rng.random() < f.rate_limit:
                wait = int(rng.integers(1, 3))
                self._blocked[call.name] = self.turn + wait
                self._record("rate_limit", call, retry_after=wait)
                return self._retry_later(call, f"error 429: rate limit exceeded for {call.name}; nothing was done. "
                                               f"Retry after {wait} s (one turn takes 1 s).")
            if f.transient_error and rng.random() < f.transient_error:
                self._record("transient_error", call)
                return self._retry_later(call, f"error 503: the {call.name} service is temporarily unavailable; "
                                               "nothing was done. Try again.")
        if spec.finish:
            observation = self._run(spec, call)
            return observation, True
        if spec.write:
            return self._write(spec, call, immune), False
        if not immune and f.stale_read and self._snapshot is not None and rng.random() < f.stale_read:
            fresh = self._run(spec, call)
            live, self.state = self.state, self._snapshot
            try:
                stale = self._run(spec, call)
            finally:
                self.state = live
            if stale != fresh:
                self._snapshot = None
                self._record("stale_read", call)
                return self._retry_later(call, stale)
            observation = fresh
        else:
            observation = self._run(spec, call)
        self._advance(call)
        return observation, False

    def _write(self, spec: ToolSpec, call: ToolCall, immune: bool) -> str:
        f, rng = self.faults, self.np_random
        if not immune and f.concurrent_edit and not self._edited and rng.random() < f.concurrent_edit:
            before = self.state.copy() if f.stale_read else None
            what = self._concurrent_edit(rng)
            if what is not None:
                self._edited = True
                self._snapshot = before
                self._record("concurrent_edit", call, description=what)
                self._recover_by_reading(call)
                return ("error 409: conflict: the records changed since you last saw them (someone else is working "
                        "on this too); nothing was applied. Read the current state before writing again.")
        if not immune and f.write_timeout and rng.random() < f.write_timeout:
            applied = bool(rng.random() < 0.5)
            if applied:  # a write that fails validation is not applied either way
                self._snapshot_before_write()
                applied = not _rejected(self._run(spec, call))
            self._record("write_timeout", call, applied=applied)
            if self._plan and self._plan[0] == call:  # the reference's own write: the read-back tells it whether
                if applied:  # the plan's next call is this one again or the one after
                    self._plan.pop(0)
                self._recover_by_reading(call, replan=False)
            else:
                self._recover_by_reading(call)
            return ("error 504: the request timed out; it may or may not have been applied. Check the current state "
                    "before retrying.")
        self._snapshot_before_write()
        observation = self._run(spec, call)
        self._advance(call, write=not _rejected(observation))  # a rejected write changed nothing
        return observation

    def _run(self, spec: ToolSpec, call: ToolCall) -> str:
        """The tool's answer; a ``ToolError`` (the call was refused and changed nothing) as ``error: <message>``."""
        try:
            result = spec.function(self, **call.arguments)
        except ToolError as err:
            return f"error: {err}"
        return result if isinstance(result, str) else str(result)

    def _snapshot_before_write(self) -> None:
        if self.faults.stale_read:
            self._snapshot = self.state.copy()

    def _record(self, kind: str, call: ToolCall, **details: Any) -> dict[str, Any]:
        fault = {"kind": kind, "turn": self.turn, "tool": call.name, **details}
        self.fault_log.append(fault)
        self._immune.add(call.key())
        return fault

    # -- reference-policy bookkeeping -------------------------------------------------------------------------------

    def _retry_later(self, call: ToolCall, observation: str) -> tuple[str, bool]:
        """A call that failed without effect: the reference makes it again (if it was the reference's call)."""
        if self._recovery and self._recovery[0] == call:
            pass
        elif self._plan and self._plan[0] == call:
            pass
        elif not self._tools[call.name].write:
            self._recovery.insert(0, call)
        return observation, False

    def _recover_by_reading(self, call: ToolCall, replan: bool = True) -> None:
        """After a write of unknown outcome, or a conflict: read back, then (re-)plan from what is there."""
        if replan:
            self._plan = None
        read = self._read_back(call)
        self._recovery = [read] if read is not None else []

    def _advance(self, call: ToolCall, write: bool = False) -> None:
        if self._recovery and self._recovery[0] == call:
            self._recovery.pop(0)
        elif self._plan and self._plan[0] == call:
            self._plan.pop(0)
        elif write:  # an off-plan change: the plan is stale
            self._plan = None


def _rejected(observation: str) -> bool:
    """Whether ``ToolEnv._run`` answered with a refusal: the tool raised ``ToolError`` and changed nothing."""
    return observation.startswith("error: ")
