"""Fault injection settings: which faults an episode may meet, and how often.

The core decides *whether* a fault fires, always from the episode's seeded RNG, and records every firing in
``info["faults"]``. Environments decide what a fault *does* in their domain through hooks on ``ToolEnv``
(``_seed_error``, ``_concurrent_edit``, ``_read_back``).

Kinds (rates are probabilities in [0, 1]):

- ``transient_error``: a call fails with a 503 and does nothing; an immediate retry succeeds.
- ``rate_limit``: a call fails with a 429 and a retry-after hint of 1-2 s; one turn is one simulated second, and the
  tool keeps answering 429 until the time has passed.
- ``write_timeout``: a write times out with a 504; it was applied with probability 1/2. A blind retry of a
  non-idempotent write double-applies it; reading back first is right.
- ``stale_read``: a read returns what it would have returned before the agent's latest write (replica lag) when that
  differs from the fresh answer; reading again returns fresh data.
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
from collections.abc import Mapping
from typing import Any

from .tools import suggest

__all__ = ["FAULT_KINDS", "PER_CALL_KINDS", "FaultConfig"]

PER_CALL_KINDS = ("transient_error", "rate_limit", "write_timeout", "stale_read", "concurrent_edit")
FAULT_KINDS = (*PER_CALL_KINDS, "seeded_error")


@dataclasses.dataclass(frozen=True, slots=True)
class FaultConfig:
    """Fault rates for an episode; all zero (the default) is a fault-free environment."""

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
    def all(cls, rate: float) -> FaultConfig:
        """Every fault kind at the same rate."""
        return cls(**dict.fromkeys(FAULT_KINDS, rate))

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

    def require_supported(self, supported: tuple[str, ...], env_name: str) -> None:
        unsupported = [kind for kind in self.active if kind not in supported]
        if unsupported:
            raise ValueError(f"{env_name} does not support fault kind(s) {', '.join(unsupported)}; "
                             f"it supports: {', '.join(supported)}")


def _check_kind(kind: Any) -> None:
    if kind not in FAULT_KINDS:
        hint = suggest(kind, list(FAULT_KINDS)) if isinstance(kind, str) else ""
        raise ValueError(f"unknown fault kind {kind!r}{hint}; valid kinds: {', '.join(FAULT_KINDS)}")
