"""Faults: which an episode may meet (``FaultConfig``), and how each kind is injected (``FaultInjector``).

The core decides *whether* a fault fires, always from the episode's seeded RNG, and records every firing in
``info["faults"]``. Environments decide what a fault *does* in their domain through hooks on ``ToolEnv``
(``_seed_error``, ``_concurrent_edit``, ``_read_back``). Everything about one kind, from its draw to the observation
the agent sees, is in ``FaultInjector`` below; adding a kind means adding its rate to ``FaultConfig`` and its method
there.

Kinds (rates are probabilities in [0, 1]):

- ``transient_error``: a call fails with a 503 and does nothing; an immediate retry succeeds.
- ``rate_limit``: a call fails with a 429 and a retry-after hint of 1-2 s; one turn is one simulated second, and the
  tool keeps answering 429 until the time has passed.
- ``write_timeout``: a write times out with a 504; it was applied with probability 1/2. A blind retry of a
  non-idempotent write double-applies it; reading back first is right.
- ``stale_read``: a read returns what it would have returned before the latest change (the agent's write, a seeded
  mistake or a colleague's edit: replica lag) when that differs from the fresh answer; reading again returns fresh
  data.
- ``concurrent_edit``: just before one of the agent's writes, someone else changes the state (a colleague, a
  coworker); the write is rejected with a 409 conflict and nothing applied. Retrying without re-reading can
  repeat what the other person already did or overwrite it. At most once per episode.
- ``seeded_error``: per episode, not per call: the episode starts after an earlier wrong action, present in the
  state and shown in the prompt's transcript. Drawn from the task seed, so every rollout of a task agrees.

A call that has just met a fault is immune to new per-call faults the next time the same call is made, so a policy
that recovers correctly always makes progress, even at rate 1.0.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .outcomes import FAULT, OK, CallResult
from .tools import ToolCall, ToolSpec, suggest

if TYPE_CHECKING:
    from .env import ToolEnv

__all__ = ["FAULT_KINDS", "PER_CALL_KINDS", "FaultConfig", "FaultInjector", "SeededError"]

PER_CALL_KINDS = ("transient_error", "rate_limit", "write_timeout", "stale_read", "concurrent_edit")
FAULT_KINDS = (*PER_CALL_KINDS, "seeded_error")


@dataclasses.dataclass(frozen=True, slots=True)
class FaultConfig:
    """Fault rates for an episode; all zero (the default) is a fault-free environment.

    For "every kind this environment supports at rate r" use ``EnvClass.all_faults(r)``.
    """

    transient_error: float = 0.0
    rate_limit: float = 0.0
    write_timeout: float = 0.0
    stale_read: float = 0.0
    concurrent_edit: float = 0.0
    seeded_error: float = 0.0

    def __post_init__(self) -> None:
        for kind in FAULT_KINDS:
            rate = getattr(self, kind)
            if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0.0 <= rate <= 1.0:
                raise ValueError(f"fault rate {kind}={rate!r} must be a number between 0 and 1")
            object.__setattr__(self, kind, float(rate))

    @classmethod
    def all(cls, rate: float, kinds: Sequence[str] = FAULT_KINDS) -> FaultConfig:
        """Every kind of ``kinds`` (all six by default) at ``rate``. ``EnvClass.all_faults(rate)`` passes the kinds
        that environment supports."""
        for kind in kinds:
            _check_kind(kind)
        return cls(**dict.fromkeys(kinds, rate))

    @classmethod
    def only(cls, kind: str, rate: float) -> FaultConfig:
        """One fault kind at ``rate``, the others off."""
        _check_kind(kind)
        return cls(**{kind: rate})

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | FaultConfig | None) -> FaultConfig:
        """Build from a mapping such as a YAML section; an unknown kind is an error naming the nearest valid one."""
        if values is None:
            return cls()
        if isinstance(values, FaultConfig):
            return values
        if not isinstance(values, Mapping):
            raise TypeError(f"faults must be a mapping of fault kind to rate, got {type(values).__name__}")
        for kind in values:
            _check_kind(kind)
        return cls(**values)

    def to_dict(self) -> dict[str, float]:
        return {kind: getattr(self, kind) for kind in FAULT_KINDS}

    @property
    def active(self) -> tuple[str, ...]:
        """The kinds with a non-zero rate."""
        return tuple(kind for kind in FAULT_KINDS if getattr(self, kind) > 0.0)

    def require_supported(self, supported: Sequence[str], env_name: str) -> None:
        unsupported = [kind for kind in self.active if kind not in supported]
        if unsupported:
            raise ValueError(f"{env_name} does not support fault kind(s) {', '.join(unsupported)}; "
                             f"it supports: {', '.join(supported)} (EnvClass.all_faults(rate) turns on just those)")


def _check_kind(kind: Any) -> None:
    if kind not in FAULT_KINDS:
        hint = suggest(kind, list(FAULT_KINDS)) if isinstance(kind, str) else ""
        raise ValueError(f"unknown fault kind {kind!r}{hint}; valid kinds: {', '.join(FAULT_KINDS)}")


@dataclasses.dataclass(frozen=True)
class SeededError:
    """An earlier wrong action, as ``_seed_error`` describes it; the core runs it and shows it.

    Args:
        variant: The mistake's name, like ``"double_refund"`` (recorded in ``info["faults"]``).
        calls: The wrong calls, run in order through the tools (a ``ToolError`` becomes an ``error: ...`` line: a
            failed call can be part of a mistake).
        context: Calls the earlier agent made first (a lookup, a verification); run and shown, not part of the
            mistake.
        description: One line for ``info["faults"]``; by default the wrong calls, ``"; "``-joined.
    """

    variant: str
    calls: tuple[ToolCall, ...]
    context: tuple[ToolCall, ...] = ()
    description: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "calls", tuple(self.calls))
        object.__setattr__(self, "context", tuple(self.context))
        if not self.calls or not all(isinstance(c, ToolCall) for c in (*self.context, *self.calls)):
            raise TypeError("SeededError needs at least one wrong call, and every call (and context call) must be a "
                            "ToolCall")
        if not self.description:
            object.__setattr__(self, "description", "; ".join(str(c) for c in self.calls))


_MESSAGES = {
    "transient_error": "error 503: the {tool} service is temporarily unavailable; nothing was done. Try again.",
    "rate_limit": "error 429: rate limit exceeded for {tool}; nothing was done. Retry after {wait} s (one turn takes "
                  "1 s).",
    "rate_limited": "error 429: rate limit for {tool}; retry after {wait} s (one turn takes 1 s)",
    "write_timeout": "error 504: the request timed out; it may or may not have been applied. Check the current state "
                     "before retrying.",
    "concurrent_edit": "error 409: conflict: the records changed since you last saw them (someone else is working on "
                       "this too); nothing was applied. Read the current state before writing again.",
}


class FaultInjector:
    """One episode's faults: their draws, their effects, the log, and the state they need between calls.

    ``call`` runs one validated tool call, drawing per-call faults in a fixed order (rate limit, transient error;
    then for a write, concurrent edit and write timeout; for a read, stale read), so a seed replays exactly.
    """

    def __init__(self, config: FaultConfig):
        self.config = config
        self.log: list[dict[str, Any]] = []
        self.blocked: dict[str, int] = {}  # tool -> turn at which its rate limit ends
        self.immune: set[str] = set()  # calls that just met a fault: the next identical call meets none
        self.snapshot: Any = None  # the state before the latest change, which a stale read shows
        self.edited = False  # a concurrent edit happened (at most one per episode)
        #: After a write timeout: (the state had the write not been applied, the state had it been applied).
        self.timeout_states: tuple[Any, Any] | None = None

    # -- per episode ------------------------------------------------------------------------------------------------

    def seed_error(self, env: ToolEnv, rng: np.random.Generator) -> SeededError | None:
        """Draw (from ``rng``, seeded by the task) and apply the episode's seeded error; return it, or None."""
        rate = self.config.seeded_error
        if not rate or rng.random() >= rate:
            return None
        before = env.state.copy() if self.config.stale_read else None
        error = env._seed_error(rng)
        if error is None:
            return None
        if not isinstance(error, SeededError):
            raise TypeError(f"{type(env).__name__}._seed_error must return a SeededError (or None), got "
                            f"{type(error).__name__}; e.g. SeededError('double_refund', [ToolCall(...), ...])")
        env.seeded_transcript = env._apply_seeded_error(error)
        self.snapshot = before  # a stale read can hide the earlier mistake
        self.log.append({"kind": "seeded_error", "turn": 0, "tool": None, "variant": error.variant,
                         "description": error.description})
        return error

    # -- per call ---------------------------------------------------------------------------------------------------

    def call(self, env: ToolEnv, spec: ToolSpec, call: ToolCall) -> CallResult:
        """Run ``call`` (already validated against ``spec``) with whatever fault fires."""
        f, rng = self.config, env.np_random
        until = self.blocked.get(call.name)
        if until is not None and env.turn < until:  # still limited: no new draw, no new record
            return CallResult(_MESSAGES["rate_limited"].format(tool=call.name, wait=until - env.turn), FAULT,
                              "rate_limit")
        self.blocked.pop(call.name, None)
        immune = False
        if self.immune:
            key = call.key()
            immune = key in self.immune
            self.immune.discard(key)
        if immune:
            return self._run(env, spec, call)
        if f.rate_limit and rng.random() < f.rate_limit:
            return self._rate_limit(env, call, rng)
        if f.transient_error and rng.random() < f.transient_error:
            return self._fire(env, call, "transient_error", _MESSAGES["transient_error"].format(tool=call.name))
        if spec.finish:
            return env._execute(spec, call)
        if spec.write:
            if f.concurrent_edit and not self.edited and rng.random() < f.concurrent_edit:
                result = self._concurrent_edit(env, call, rng)
                if result is not None:
                    return result
            if f.write_timeout and rng.random() < f.write_timeout:
                return self._write_timeout(env, spec, call, rng)
        elif f.stale_read and self.snapshot is not None and rng.random() < f.stale_read:
            return self._stale_read(env, spec, call)
        return self._run(env, spec, call)

    def _run(self, env: ToolEnv, spec: ToolSpec, call: ToolCall) -> CallResult:
        if spec.write and not spec.finish:
            self._before_change(env)
        return env._execute(spec, call)

    def _before_change(self, env: ToolEnv) -> None:
        if self.config.stale_read:
            self.snapshot = env.state.copy()

    def _fire(self, env: ToolEnv, call: ToolCall, kind: str, observation: str, **details: Any) -> CallResult:
        """Record a per-call fault and make the next identical call immune to new ones."""
        self.log.append({"kind": kind, "turn": env.turn, "tool": call.name, **details})
        self.immune.add(call.key())
        return CallResult(observation, FAULT, kind, applied=bool(details.get("applied", False)))

    def _rate_limit(self, env: ToolEnv, call: ToolCall, rng: np.random.Generator) -> CallResult:
        wait = int(rng.integers(1, 3))
        self.blocked[call.name] = env.turn + wait
        return self._fire(env, call, "rate_limit", _MESSAGES["rate_limit"].format(tool=call.name, wait=wait),
                          retry_after=wait)

    def _concurrent_edit(self, env: ToolEnv, call: ToolCall, rng: np.random.Generator) -> CallResult | None:
        before = env.state.copy() if self.config.stale_read else None
        what = env._concurrent_edit(rng)
        if what is None:  # nothing sensible to change: no fault
            return None
        self.edited = True
        self.snapshot = before
        return self._fire(env, call, "concurrent_edit", _MESSAGES["concurrent_edit"], description=what)

    def _write_timeout(self, env: ToolEnv, spec: ToolSpec, call: ToolCall, rng: np.random.Generator) -> CallResult:
        applied = bool(rng.random() < 0.5)
        before = env.state.copy()
        if applied:  # a write that fails validation is not applied either way
            if self.config.stale_read:
                self.snapshot = before
            applied = env._execute(spec, call).outcome == OK
            self.timeout_states = (before, env.state.copy())
        else:  # the state the agent must tell apart from this one: the write applied
            self.timeout_states = (before, env._on_state(before.copy(), lambda: env._execute(spec, call))[1])
        return self._fire(env, call, "write_timeout", _MESSAGES["write_timeout"], applied=applied)

    def _stale_read(self, env: ToolEnv, spec: ToolSpec, call: ToolCall) -> CallResult:
        fresh = env._execute(spec, call)
        stale, _ = env._on_state(self.snapshot, lambda: env._execute(spec, call))
        if stale.observation == fresh.observation:
            return fresh
        self.snapshot = None
        return self._fire(env, call, "stale_read", stale.observation)
