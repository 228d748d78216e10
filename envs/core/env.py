"""``ToolEnv``: the Gymnasium environment every recoverygym domain subclasses.

A subclass supplies a task generator, the state, typed ``@tool`` methods, a checker and a privileged reference plan,
plus the domain side of two faults (a seeded mistake, a colleague's edit). The core supplies the rest: the text
spaces, action parsing and validation, turn limits, rewards from the checker, fault injection and its log
(``faults.py``), the seeded mistake's transcript, the reference policy that recovers from every fault
(``reference.py``), the record of whether the agent handled each fault (``recovery.py``) and branch starts.

Episode protocol::

    obs, info = env.reset(seed=0, options={"task_seed": 7, "split": "heldout"})   # obs: the task prompt
    obs, reward, terminated, truncated, info = env.step('{"name": "lookup_order", "arguments": {"order_id": "O-1"}}')

The reward is 0 until the episode ends (the finishing tool was called: ``terminated``; the turn limit was reached:
``truncated``), then the checker's score of the final state.
"""

from __future__ import annotations

import copy
import re
import string
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import gymnasium
import numpy as np

from .faults import FAULT_KINDS, FaultConfig, FaultInjector, SeededError
from .outcomes import INVALID, OK, REJECTED, CallResult
from .recovery import RecoveryLog
from .reference import ReferenceTracker
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
_GENERIC_KINDS = ("transient_error", "rate_limit", "write_timeout", "stale_read")  # need no domain hook


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
    """Base class of a tool-using environment; a domain subclasses it (``docs/adding-an-environment.md``).

    ## Action space
    ``Text(16000)`` over printable ASCII: one tool call as JSON, ``{"name": ..., "arguments": {...}}``, bare or
    inside ``<tool_call>...</tool_call>``. The tools and their JSON schemas are in ``reset``'s ``info["tools"]``.

    ## Observation space
    ``Text(16000)`` over printable ASCII: after ``reset`` the task prompt, after ``step`` the tool's answer (or an
    ``error ...`` line: a refused call, an invalid action, an injected fault).

    ## Rewards
    0 on every step but the last; when the episode ends, the checker's score of the final state, in [0, 1] (1 is
    success). The path does not count: a correct final state scores 1 whatever faults happened on the way.

    ## Starting state
    ``reset(seed, options={"task_seed": k, "split": "train" | "heldout"})`` builds task ``k`` of the split, the same
    whatever the seed (``task_family`` seeds it), then, when drawn, a seeded mistake (also from the task seed).
    ``options["actions"]`` starts from a branch point: the actions are replayed through ``step``.

    ## Episode end
    Terminated when the finishing tool answers; truncated after ``max_turns`` steps.

    ## Info
    ``reset``: ``tools``, ``task_seed``, ``split``, ``template``, ``required_steps``, ``max_turns``, ``faults``,
    ``recovery`` (and ``history``, ``prompt`` for a branch start). ``step``: ``tool``, ``invalid_action``,
    ``turn``, ``outcome`` (``ok``, ``rejected``, ``fault``, ``invalid``), ``fault`` (the kind that answered, or
    None), ``faults`` (every fault so far), ``recovery`` (``recovery.py``); at the end also ``success``, ``score``,
    ``components`` and ``reasons``.

    ## Arguments
    - ``faults``: fault rates, a ``FaultConfig`` or a mapping of kind to rate (``EnvClass.all_faults(rate)``: every
      kind the environment supports); None for none.
    - ``max_turns``: the turn limit; by default ``3 * required_steps + 10`` of each task.
    - ``render_mode``: None or ``"ansi"`` (``render()`` returns the latest observation).
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi"], "render_fps": 1}
    #: One line shown by ``recoverygym envs``.
    description: ClassVar[str] = ""
    #: What seeds the tasks: task k of a split is the same for every class with the same family. A subclass inherits
    #: it (so one that only adds a tool keeps every task); by default the name of the first class that subclasses
    #: ``ToolEnv``. Set it, and renaming the class keeps the tasks too.
    task_family: ClassVar[str | None] = None
    #: Fault kinds this environment implements (a non-zero rate for another is an error). By default every kind it
    #: can: the four that need no domain hook, plus ``concurrent_edit`` and ``seeded_error`` when it implements
    #: ``_concurrent_edit`` and ``_seed_error``.
    fault_kinds: ClassVar[tuple[str, ...]] = _GENERIC_KINDS
    #: The line above a seeded mistake's transcript in the prompt.
    seeded_error_heading: ClassVar[str] = "Earlier work on this task, by someone before you (check it):"

    _tool_specs: ClassVar[dict[str, ToolSpec]]
    _fault_kinds_derived: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.task_family is None:
            cls.task_family = cls.__name__
        if "fault_kinds" in cls.__dict__:
            cls.fault_kinds = tuple(cls.fault_kinds)
            unknown = [k for k in cls.fault_kinds if k not in FAULT_KINDS]
            if unknown:
                raise TypeError(f"{cls.__name__}.fault_kinds has unknown kind(s) {unknown}; valid: {FAULT_KINDS}")
            cls._fault_kinds_derived = False
        elif cls._fault_kinds_derived:
            hooks = {"concurrent_edit": "_concurrent_edit", "seeded_error": "_seed_error"}
            cls.fault_kinds = _GENERIC_KINDS + tuple(k for k, hook in hooks.items()
                                                     if getattr(cls, hook) is not getattr(ToolEnv, hook))
        for kind, hook in (("concurrent_edit", "_concurrent_edit"), ("seeded_error", "_seed_error")):
            if kind in cls.fault_kinds and getattr(cls, hook) is getattr(ToolEnv, hook):
                raise TypeError(f"{cls.__name__} declares fault kind {kind!r} but does not implement {hook}")

    def __init__(self, faults: FaultConfig | Mapping[str, float] | None = None, max_turns: int | None = None,
                 render_mode: str | None = None):
        self.faults = FaultConfig.from_dict(faults)
        self.faults.require_supported(self.fault_kinds, type(self).__name__)
        if max_turns is not None and (not isinstance(max_turns, int) or max_turns < 1):
            raise ValueError(f"max_turns must be a positive integer or None, got {max_turns!r}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or one of {self.metadata['render_modes']}, got {render_mode!r}")
        self.fixed_max_turns = max_turns  # None: each task's own limit
        self.render_mode = render_mode
        self.observation_space = gymnasium.spaces.Text(MAX_OBSERVATION, min_length=0, charset=CHARSET_TEXT)
        self.action_space = gymnasium.spaces.Text(MAX_ACTION, min_length=0, charset=CHARSET_TEXT)
        self._tools = self.tool_specs()
        self._family_crc = zlib.crc32(str(self.task_family).encode())
        self._done = True
        self._last = ""

    @classmethod
    def all_faults(cls, rate: float) -> FaultConfig:
        """Every fault kind this environment supports, at ``rate``: the one way to ask for "all faults"."""
        return FaultConfig.all(rate, cls.fault_kinds)

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
        """Task ``task_seed`` of ``split``, drawn only from ``rng``; it must have a ``template`` and pickle."""
        raise NotImplementedError

    def _setup(self, task: Any) -> None:
        """Build ``self.state`` from the task; the state needs an independent ``copy()``."""
        raise NotImplementedError

    def _prompt(self) -> str:
        """The first observation: role, policy and the request (the core adds a seeded mistake's transcript)."""
        raise NotImplementedError

    def _check(self) -> CheckResult:
        """The checker: a pure function of ``self.state`` and ``self.task``."""
        raise NotImplementedError

    def _reference_plan(self) -> list[ToolCall]:
        """Calls that solve the task from the *current* state, ending with the finishing tool."""
        raise NotImplementedError

    def _seed_error(self, rng: np.random.Generator) -> SeededError | None:
        """An earlier wrong action for this task (the core runs and shows it), or None if none fits the task."""
        return None

    def _concurrent_edit(self, rng: np.random.Generator) -> str | None:
        """Let someone else change the state; return a description, or None if nothing sensible can change."""
        return None

    def _read_back(self, call: ToolCall) -> ToolCall | None:
        """The read that shows whether the write ``call`` took effect (None: the reference just re-plans)."""
        return None

    def _seeded_error_undone(self) -> bool:
        """Whether the seeded mistake (``self.seeded_error``) is undone in the current state. By default: the state
        passes the checker (then judged once, at the end); a cheap domain test is judged after every change."""
        return self._check().success

    # -- services a domain may call or extend -----------------------------------------------------------------------

    def scratch_copy(self) -> ToolEnv:
        """A copy of this env whose tools act on a copy of its state: plan or experiment on it, the episode stays as
        it is. Runs the tools directly (no faults, no turn)."""
        twin = copy.copy(self)
        twin.state = self.state.copy()
        return twin

    def _apply_seeded_error(self, error: SeededError) -> list[tuple[ToolCall, str]]:
        """Run a seeded mistake's context and calls through the tools; return the transcript the prompt shows."""
        return [(call, self._execute(self._tools[call.name], call).observation)
                for call in (*error.context, *error.calls)]

    # -- public API -------------------------------------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        """Start task ``options["task_seed"]`` of ``options["split"]``; see the class docstring.

        ``options["actions"]``, a list of action strings, starts from a branch point: they are replayed through
        ``step`` (the same faults fire, the same bookkeeping is kept), and ``reset`` returns the observation after the
        last one, with ``info["history"]`` (one ``{"action", "observation", "outcome", "faults"}`` per action, the
        faults that fired on it) and ``info["prompt"]`` (the first observation). An action that ends the episode is a
        ``ValueError``.
        """
        super().reset(seed=seed)
        split, task_seed, actions = self._reset_options(options)
        self.task = self._generate_task(np.random.default_rng([self._family_crc, SPLITS[split], task_seed]), split,
                                        task_seed)
        self.task_seed, self.split = task_seed, split
        self._setup(self.task)
        if not callable(getattr(self.state, "copy", None)):
            raise TypeError(f"{type(self).__name__}: the state ({type(self.state).__name__}) needs a copy() method "
                            "that returns an independent copy (faults and the reference plan on copies)")
        self.turn = 0
        self.seeded_transcript: list[tuple[ToolCall, str]] = []
        self.start_plan = self._reference_plan()  # from the task's start, before any seeded mistake
        if not self.start_plan:
            raise RuntimeError(f"{type(self).__name__}._reference_plan() returned no calls")
        self.required_steps = len(self.start_plan)
        self.max_turns = self.fixed_max_turns or 3 * self.required_steps + 10
        self._faults = FaultInjector(self.faults)
        self.fault_log = self._faults.log
        error_rng = np.random.default_rng([self._family_crc, SPLITS[split], task_seed, 1])
        self.seeded_error = self._faults.seed_error(self, error_rng)
        self._reference = ReferenceTracker(None if self.seeded_error else self.start_plan, self)
        self._recovery = RecoveryLog(type(self)._seeded_error_undone is not ToolEnv._seeded_error_undone)
        if self.seeded_error is not None:
            self._recovery.seeded(self.seeded_error)
        self._done = False
        self._last = sanitize(self._prompt() + self._earlier_work())
        info = {"tools": self.tool_schemas(), "task_seed": task_seed, "split": split,
                "template": self.task.template, "required_steps": self.required_steps, "max_turns": self.max_turns,
                "faults": [dict(f) for f in self.fault_log], "recovery": self._recovery.copy_records()}
        if actions is None:
            return self._last, info
        return self._replay(actions, info)

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        if self._done:
            raise RuntimeError("the episode has ended; call reset() before step()")
        self.turn += 1
        parsed = parse_action(action, self._tools)
        terminated = False
        if isinstance(parsed, ActionError):
            result, tool_name = CallResult("error: " + parsed.message, INVALID), None
        else:
            tool_name, spec, before = parsed.name, self._tools[parsed.name], len(self.fault_log)
            result = self._faults.call(self, spec, parsed)
            fired = self.fault_log[before] if len(self.fault_log) > before else None
            terminated = spec.finish and result.fault is None
            self._reference.observe(self, parsed, result)
            self._recovery.observe(self, parsed, result, fired)
        truncated = not terminated and self.turn >= self.max_turns
        observation = result.observation
        info: dict[str, Any] = {"tool": tool_name, "invalid_action": tool_name is None, "turn": self.turn,
                                "outcome": result.outcome, "fault": result.fault,
                                "faults": [dict(f) for f in self.fault_log]}
        reward = 0.0
        if terminated or truncated:
            self._done = True
            self._recovery.close(self)
            check = self._check()
            reward = float(check.score)
            info.update(success=check.success, score=reward, components=dict(check.components),
                        reasons=list(check.reasons))
            if truncated:
                observation += f"\n[turn limit of {self.max_turns} reached: the episode is over]"
        info["recovery"] = self._recovery.copy_records()
        self._last = sanitize(observation)
        return self._last, reward, terminated, truncated, info

    def render(self) -> str | None:
        return self._last if self.render_mode == "ansi" else None

    def check(self) -> CheckResult:
        """The checker's verdict on the current state (no side effects)."""
        return self._check()

    def stop(self) -> dict[str, Any]:
        """End the episode where it stands, without a finishing call: what an agent's turn without a tool call is
        (TRL ends a rollout there; ``recoverygym eval`` does the same). Closes the recovery records (what is still
        open was not handled) and returns the final info a last ``step`` would carry: ``success``, ``score``,
        ``components``, ``reasons``, ``faults``, ``recovery``. ``step`` after it raises, as after any end."""
        if self._done:
            raise RuntimeError("the episode has ended; call reset() before stop()")
        self._done = True
        self._recovery.close(self)
        check = self._check()
        return {"success": check.success, "score": float(check.score), "components": dict(check.components),
                "reasons": list(check.reasons), "faults": [dict(f) for f in self.fault_log],
                "recovery": self._recovery.copy_records()}

    def reference_action(self) -> str:
        """The next action of the privileged reference policy, as action text: it solves the task from the current
        state and recovers from every fault (``reference.py``). Asking changes nothing: the reference's state follows
        the actions taken, whoever took them."""
        return self.reference_call().to_json()

    def reference_call(self) -> ToolCall:
        """The reference's next call (see ``reference_action``)."""
        return self._reference.next_call(self)

    def read_back(self, call: ToolCall) -> ToolCall | None:
        """The read that shows whether the write ``call`` took effect, as the reference makes it after a 504 or 409
        (the domain's ``_read_back``); None when the domain has none."""
        return self._read_back(call)

    # -- internals --------------------------------------------------------------------------------------------------

    def _reset_options(self, options: dict[str, Any] | None) -> tuple[str, int, list[str] | None]:
        options = dict(options or {})
        split = options.pop("split", "train")
        if split not in SPLITS:
            raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
        task_seed = options.pop("task_seed", None)
        if task_seed is None:
            task_seed = int(self.np_random.integers(2**31))
        if isinstance(task_seed, bool) or not isinstance(task_seed, int | np.integer) or task_seed < 0:
            raise ValueError(f"task_seed must be a non-negative integer, got {task_seed!r}")
        actions = options.pop("actions", None)
        if options:
            raise ValueError(f"unknown reset option(s) {sorted(options)}; valid: split, task_seed, actions")
        if actions is not None and (isinstance(actions, str) or not isinstance(actions, Sequence)
                                    or not all(isinstance(a, str) for a in actions)):
            raise ValueError(f"actions must be a list of action strings (the episode's actions so far), got "
                             f"{type(actions).__name__}")
        return split, int(task_seed), None if actions is None else list(actions)

    def _replay(self, actions: list[str], info: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """A branch start: ``actions`` through ``step``, none of which may end the episode."""
        prompt, observation, history = self._last, self._last, []
        for i, action in enumerate(actions):
            before = len(self.fault_log)
            observation, _, terminated, truncated, step_info = self.step(action)
            if terminated or truncated:
                why = "calls the finishing tool" if terminated else f"reaches the turn limit of {self.max_turns}"
                raise ValueError(f"options['actions'][{i}] {why}, which ends the episode; a branch start must leave "
                                 f"the episode running: give only the actions before it")
            history.append({"action": action, "observation": observation, "outcome": step_info["outcome"],
                            "faults": step_info["faults"][before:]})
        info.update(faults=[dict(f) for f in self.fault_log], recovery=self._recovery.copy_records(),
                    history=history, prompt=prompt)
        return observation, info

    def _earlier_work(self) -> str:
        """The seeded mistake's transcript, as the prompt shows it."""
        if not self.seeded_transcript:
            return ""
        lines = "\n".join(f"> {call}\n< {result}" for call, result in self.seeded_transcript)
        return f"\n\n{self.seeded_error_heading}\n{lines}"

    def _execute(self, spec: ToolSpec, call: ToolCall) -> CallResult:
        """Run the tool itself (no faults). A ``ToolError`` is a refusal: ``error: <message>``, outcome ``rejected``."""
        try:
            answer = spec.function(self, **call.arguments)
        except ToolError as err:
            return CallResult(f"{err.prefix}{err}", REJECTED)
        return CallResult(answer if isinstance(answer, str) else str(answer), OK, applied=spec.write)

    def _on_state(self, state: Any, run: Callable[[], Any]) -> tuple[Any, Any]:
        """``run()`` with ``self.state`` replaced by ``state``; returns its result and the state it left."""
        live, self.state = self.state, state
        try:
            return run(), self.state
        finally:
            self.state = live

    def _plan_on(self, state: Any, turn: int) -> list[ToolCall]:
        """``_reference_plan()`` as it would have answered in ``state`` at ``turn``."""
        live_turn, self.turn = self.turn, turn
        try:
            return self._on_state(state, self._reference_plan)[0]
        finally:
            self.turn = live_turn
