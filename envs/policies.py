"""Scripted policies that act on any recoverygym environment: baselines and demonstration writers.

Each has ``reset(seed)`` and ``act(env, observation, rng=None) -> str`` (the action text); a policy that draws
randomness draws it from ``rng`` when given one, else from its own generator. The reference policies read the
environment's privileged state through ``env.unwrapped``; they are baselines and teachers, not agents.
``training.evaluation.policies`` runs these same policies on its batch interface.
"""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np

__all__ = [
    "DoNothingPolicy",
    "NoisyReferencePolicy",
    "RandomPolicy",
    "ReferencePolicy",
    "near_miss_call",
    "random_call",
]

_WORD = re.compile(r"[A-Za-z0-9][\w@.\-]*[A-Za-z0-9]|\d")


class ReferencePolicy:
    """The environment's reference policy: solves the task and recovers from every fault kind."""

    name = "reference"

    def reset(self, seed: int | None = None) -> None:
        pass

    def act(self, env: Any, observation: str, rng: np.random.Generator | None = None) -> str:
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


def near_miss_call(env: Any, observation: str, rng: np.random.Generator) -> str:
    """The reference's next call with one argument wrong: in a quarter of cases its name misspelt, otherwise its
    value (a typo or another on-screen word in a text argument, a nearby integer, another enum value, a flipped flag,
    one list item changed).

    These are the mistakes a model makes that the environment rejects with a specific message (``no customer with
    email ...``, ``no argument 'sku' (did you mean 'skus'?)``) or, when the wrong value happens to be valid, lets
    through to be undone later. A call with no arguments, or the finishing call (which would end the episode on the
    mistake), is replaced by a random call instead.
    """
    action = env.unwrapped.reference_action()
    try:
        call = json.loads(action)
        spec = env.unwrapped.tool_specs()[call["name"]]
        arguments = dict(call["arguments"])
    except (ValueError, KeyError, TypeError):
        return random_call(env, observation, rng)
    names = sorted(arguments)
    if spec.finish or not names:
        return random_call(env, observation, rng)
    name = names[int(rng.integers(len(names)))]
    misspelt = _typo(name, rng) if rng.random() < 0.25 else name
    if misspelt not in arguments:  # a real misspelling (one that hits another argument changes a value instead)
        arguments = {misspelt if k == name else k: v for k, v in arguments.items()}
    else:
        properties = spec.schema["function"]["parameters"].get("properties", {})
        arguments[name] = _near_miss_value(arguments[name], properties.get(name, {}), rng, _WORD.findall(observation))
    return json.dumps({"name": call["name"], "arguments": arguments})


def _near_miss_value(value: Any, spec: dict[str, Any], rng: np.random.Generator, words: list[str]) -> Any:
    others = [v for v in spec.get("enum", ()) if v != value]
    if others:
        return others[int(rng.integers(len(others)))]
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        step = int(rng.choice([-2, -1, 1, 2]))
        return value + step if value + step >= 0 else value - step
    if isinstance(value, float):
        return round(value * float(rng.choice([0.5, 0.9, 1.1, 2.0])), 2) if value else 1.0
    if isinstance(value, list) and value:
        i = int(rng.integers(len(value)))
        return [*value[:i], _near_miss_value(value[i], spec.get("items", {}), rng, words), *value[i + 1 :]]
    if isinstance(value, str) and value:
        others = [w for w in words if w != value]
        if others and rng.random() < 0.5:
            return others[int(rng.integers(len(others)))]
        return _typo(value, rng)
    return value


def _typo(text: str, rng: np.random.Generator) -> str:
    """One character dropped, doubled, or swapped with its neighbour (never the text unchanged)."""
    i = int(rng.integers(len(text)))
    kind = int(rng.integers(3)) if len(text) > 1 else 1
    if kind == 0:
        return text[:i] + text[i + 1 :]
    if kind == 1:
        return text[: i + 1] + text[i:]
    i = min(i, len(text) - 2)
    if text[i] == text[i + 1]:
        return text[: i + 1] + text[i:]
    return text[:i] + text[i + 1] + text[i] + text[i + 2 :]


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
    """The reference policy, except that with probability ``p`` an action is a mistake the reference then recovers
    from (its plan is recomputed from the state the mistake left).

    A mistake is a near miss (``near_miss_call``: the reference's own call with one argument wrong) with probability
    ``near_miss``, otherwise a random tool call (``random_call``). This is the one definition of the noisy policy:
    the warm start's demonstrations and the evaluation baselines (``noisy-reference``, ``near-miss-reference``) both
    use it. Randomness comes from ``rng`` when ``act`` is given one (the evaluation passes each episode's own, so an
    episode's actions do not depend on the episodes played before it), otherwise from the policy's own generator,
    seeded by ``reset(seed)``; the draws are the same either way.
    """

    def __init__(self, p: float = 0.2, seed: int | None = None, near_miss: float = 0.0):
        if not 0.0 <= p <= 1.0 or not 0.0 <= near_miss <= 1.0:
            raise ValueError(f"noisy reference: p and near_miss are probabilities in [0, 1], got {p!r} and "
                             f"{near_miss!r}")
        self.p, self.near_miss = p, near_miss
        if near_miss == 1.0:
            self.name = f"near-miss-reference-{p:g}"
        else:
            self.name = f"noisy-reference-{p:g}" + (f"-near{near_miss:g}" if near_miss else "")
        self.reset(seed)

    def reset(self, seed: int | None = None) -> None:
        self.rng = np.random.default_rng(seed)

    def act(self, env: Any, observation: str, rng: np.random.Generator | None = None) -> str:
        rng = self.rng if rng is None else rng
        if rng.random() < self.p:
            if self.near_miss and rng.random() < self.near_miss:
                return near_miss_call(env, observation, rng)
            return random_call(env, observation, rng)
        return env.unwrapped.reference_action()


class RandomPolicy(ReferencePolicy):
    """Random tool calls only (``random_call``): a floor that any learned policy must beat."""

    name = "random"

    def __init__(self, seed: int | None = None):
        self.reset(seed)

    def reset(self, seed: int | None = None) -> None:
        self.rng = np.random.default_rng(seed)

    def act(self, env: Any, observation: str, rng: np.random.Generator | None = None) -> str:
        return random_call(env, observation, self.rng if rng is None else rng)


class DoNothingPolicy(ReferencePolicy):
    """Calls the finishing tool at once (scores 0 on every task that needs any change)."""

    name = "do-nothing"

    def act(self, env: Any, observation: str, rng: np.random.Generator | None = None) -> str:
        finish = next(s for s in env.unwrapped.tool_specs().values() if s.finish)
        arguments = {p.name: _random_value(p.schema, np.random.default_rng(0), ["done"]) for p in finish.params
                     if p.required}
        return json.dumps({"name": finish.name, "arguments": arguments})
