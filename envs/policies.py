"""Scripted policies that act on any recoverygym environment: baselines and demonstration writers.

Each has ``reset(seed)`` and ``act(env, observation) -> str`` (the action text). The reference policies read the
environment's privileged state through ``env.unwrapped``; they are baselines and teachers, not agents.
"""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np

__all__ = ["DoNothingPolicy", "NoisyReferencePolicy", "RandomPolicy", "ReferencePolicy", "random_call"]

_WORD = re.compile(r"[A-Za-z0-9][\w@.\-]*[A-Za-z0-9]|\d")


class ReferencePolicy:
    """The environment's reference policy: solves the task and recovers from every fault kind."""

    name = "reference"

    def reset(self, seed: int | None = None) -> None:
        pass

    def act(self, env: Any, observation: str) -> str:
        return env.unwrapped.reference_action()


def random_call(env: Any, observation: str, rng: np.random.Generator) -> str:
    """A uniformly random tool call whose text arguments are words seen on screen (so some are real ids)."""
    schemas = env.unwrapped.tool_schemas()
    schema = schemas[int(rng.integers(len(schemas)))]["function"]
    words = _WORD.findall(observation) or ["x"]
    arguments: dict[str, Any] = {}
    for name, spec in schema["parameters"].get("properties", {}).items():
        arguments[name] = _random_value(spec, rng, words)
    return json.dumps({"name": schema["name"], "arguments": arguments})


def _random_value(spec: dict[str, Any], rng: np.random.Generator, words: list[str]) -> Any:
    if "enum" in spec:
        return spec["enum"][int(rng.integers(len(spec["enum"])))]
    kind = spec.get("type")
    if kind == "integer":
        return int(rng.integers(0, 20))
    if kind == "number":
        return round(float(rng.uniform(0, 100)), 2)
    if kind == "boolean":
        return bool(rng.integers(2))
    if kind == "array":
        return [_random_value(spec.get("items", {"type": "string"}), rng, words)]
    return words[int(rng.integers(len(words)))]


class NoisyReferencePolicy(ReferencePolicy):
    """The reference policy, except that with probability ``p`` an action is a random tool call: a mistake the
    reference then recovers from (its plan is recomputed from the state the mistake left)."""

    def __init__(self, p: float = 0.1, seed: int | None = None):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be in [0, 1], got {p!r}")
        self.p = p
        self.name = f"noisy-{p:g}"
        self.reset(seed)

    def reset(self, seed: int | None = None) -> None:
        self.rng = np.random.default_rng(seed)

    def act(self, env: Any, observation: str) -> str:
        if self.rng.random() < self.p:
            return random_call(env, observation, self.rng)
        return env.unwrapped.reference_action()


class RandomPolicy(NoisyReferencePolicy):
    """Random tool calls only (a floor that any learned policy must beat)."""

    def __init__(self, seed: int | None = None):
        super().__init__(1.0, seed)
        self.name = "random"


class DoNothingPolicy(ReferencePolicy):
    """Calls the finishing tool at once (scores 0 on every task that needs any change)."""

    name = "do-nothing"

    def act(self, env: Any, observation: str) -> str:
        finish = next(s for s in env.unwrapped.tool_specs().values() if s.finish)
        arguments = {p.name: _random_value(p.schema, np.random.default_rng(0), ["done"]) for p in finish.params
                     if p.required}
        return json.dumps({"name": finish.name, "arguments": arguments})
