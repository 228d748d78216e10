"""Policies to evaluate: scripted baselines, and wrappers that add scaffolding or best-of-k sampling to a model.

Model policies live in ``model_policy.py`` (transformers, imported lazily) and ``openai_policy.py`` (any
OpenAI-compatible chat endpoint). ``make_policy(spec)`` builds any of them from a command-line string.

Scripted baselines may look inside the environment (``env.unwrapped.reference_action()``); they draw randomness
only from the episode's own ``rng``, so their results depend on the seeds alone, never on batching.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

from training.evaluation.episode import Action, Episode, Policy, tool_call_key

__all__ = [
    "SCRIPTED_POLICIES",
    "BestOfKPolicy",
    "DoNothingPolicy",
    "NoisyReferencePolicy",
    "RandomPolicy",
    "ReferencePolicy",
    "ScaffoldPolicy",
    "random_action",
    "tool_kinds",
]


def tool_kinds(env: Any) -> dict[str, str]:
    """Map each tool name of ``env`` to ``"read"``, ``"write"`` or ``"finish"`` (from the ``@tool`` marker)."""
    kinds = {}
    for name, fn in env.unwrapped.tool_methods().items():
        mark = getattr(fn, "__recoverygym_tool__", {})
        kinds[name] = "finish" if mark.get("finish") else "write" if mark.get("write") else "read"
    return kinds


def _as_call(name: str, arguments: dict[str, Any]) -> str:
    return "<tool_call>" + json.dumps({"name": name, "arguments": arguments}) + "</tool_call>"


_ID_RE = re.compile(r"\b[A-Z]{1,4}-[A-Z0-9]{1,8}\b|\b[A-Z]{1,2}\d{1,4}\b|[\w.+-]+@[\w-]+\.[\w.]+")


def _random_value(schema: dict[str, Any], rng, words: Sequence[str]) -> Any:
    if "enum" in schema:
        return schema["enum"][int(rng.integers(len(schema["enum"])))]
    kind = schema.get("type", "string")
    kind = kind[0] if isinstance(kind, list) else kind
    if kind == "integer":
        return int(rng.integers(0, 100))
    if kind == "number":
        return float(rng.integers(0, 10000)) / 100
    if kind == "boolean":
        return bool(rng.integers(2))
    if kind == "array":
        return [_random_value(schema.get("items", {}), rng, words)]
    if kind == "object":
        return {}
    return words[int(rng.integers(len(words)))] if words else "x"


def random_action(episode: Episode) -> str:
    """A syntactically valid call of a uniformly chosen tool with random arguments of the right types.

    String arguments are drawn from the id-like words seen so far in the episode (``O-1042``, ``B7``, e-mail
    addresses), so random actions sometimes hit real objects, as a random agent that reads the screen would.
    """
    rng = episode.rng
    text = episode.prompt + " " + " ".join(t.observation for t in episode.history[-3:])
    words = sorted(set(_ID_RE.findall(text)))
    tool = episode.tools[int(rng.integers(len(episode.tools)))]["function"]
    props = tool.get("parameters", {}).get("properties", {})
    return _as_call(tool["name"], {name: _random_value(s, rng, words) for name, s in props.items()})


class _Scripted:
    name = "scripted"

    def act(self, episodes: Sequence[Episode]) -> list[Action]:
        return [Action(self._act(ep)) for ep in episodes]

    def _act(self, episode: Episode) -> str:
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        return {"policy": self.name}


class ReferencePolicy(_Scripted):
    """The environment's privileged reference plan, with its generic fault recovery: the ceiling (should score 1)."""

    name = "reference"

    def _act(self, episode: Episode) -> str:
        return episode.env.unwrapped.reference_action()


class NoisyReferencePolicy(_Scripted):
    """The reference policy, but each action is replaced by a random one with probability ``p``.

    Measures how well the task and its checker tolerate (and the env's reference recovers from) off-plan actions.
    """

    def __init__(self, p: float = 0.2):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"noisy reference: p is a probability in [0, 1], got {p}")
        self.p = p
        self.name = f"noisy-reference-{p:g}"

    def _act(self, episode: Episode) -> str:
        if episode.rng.random() < self.p:
            return random_action(episode)
        return episode.env.unwrapped.reference_action()

    def config(self) -> dict[str, Any]:
        return {"policy": "noisy-reference", "p": self.p}


class RandomPolicy(_Scripted):
    """Random valid-looking tool calls (see :func:`random_action`): the floor (should score 0)."""

    name = "random"

    def _act(self, episode: Episode) -> str:
        return random_action(episode)


class DoNothingPolicy(_Scripted):
    """Calls the finish tool at once without changing anything: a no-op must never score."""

    name = "do-nothing"

    def _act(self, episode: Episode) -> str:
        kinds = tool_kinds(episode.env)
        finish = [t["function"] for t in episode.tools if kinds.get(t["function"]["name"]) == "finish"]
        if not finish:
            return _as_call(episode.tools[0]["function"]["name"], {})
        params = finish[0].get("parameters", {})
        required = params.get("required", [])
        args = {n: _random_value(s, episode.rng, ["done"]) for n, s in params.get("properties", {}).items()
                if n in required}
        return _as_call(finish[0]["name"], args)


SCRIPTED_POLICIES = {
    "reference": ReferencePolicy,
    "noisy-reference": NoisyReferencePolicy,
    "random": RandomPolicy,
    "do-nothing": DoNothingPolicy,
}


# ---------------------------------------------------------------------------------------------------------------
# Scaffolding: hand-written recovery around any model policy

RETRYABLE_ERROR = re.compile(r"\b(?:503|429)\b|retry after|temporarily unavailable|rate limit", re.IGNORECASE)


class ScaffoldPolicy:
    """Hand-written recovery rules around a model: the baseline that learned recovery has to beat.

    Two rules, applied before the model is asked:

    1. *Retry on error*: when the last observation is a retryable error (a 503 or 429, matched by
       ``retry_pattern``), re-send the same action, up to ``max_retries`` times in a row.
    2. *Re-read after every write*: after a write tool answered (or timed out), issue the read that verifies it,
       from the environment's ``_read_back(call)`` hook (the domain's own "how do I check this write" knowledge,
       what an engineer writing a scaffold for that API would hard-code).

    Scripted actions cost no generated tokens and are marked ``scripted`` in the trajectory.
    """

    def __init__(self, inner: Policy, *, max_retries: int = 5, read_after_write: bool = True,
                 retry_pattern: re.Pattern[str] = RETRYABLE_ERROR):
        self.inner = inner
        self.max_retries = max_retries
        self.read_after_write = read_after_write
        self.retry_pattern = retry_pattern
        self.name = f"scaffold({inner.name})"

    def config(self) -> dict[str, Any]:
        return {"policy": "scaffold", "max_retries": self.max_retries, "read_after_write": self.read_after_write,
                "retry_pattern": self.retry_pattern.pattern, "inner": self.inner.config()}

    def act(self, episodes: Sequence[Episode]) -> list[Action]:
        actions: list[Action | None] = [self._rule(ep) for ep in episodes]
        ask = [i for i, a in enumerate(actions) if a is None]
        if ask:
            for i, action in zip(ask, self.inner.act([episodes[i] for i in ask]), strict=True):
                actions[i] = action
        return actions  # type: ignore[return-value]

    def _rule(self, episode: Episode) -> Action | None:
        if not episode.history:
            return None
        last = episode.history[-1]
        retries = episode.scratch.get("scaffold_retries", 0)
        if not last.invalid_action and self.retry_pattern.search(last.observation) and retries < self.max_retries:
            episode.scratch["scaffold_retries"] = retries + 1
            return Action(last.action, scripted=True)
        episode.scratch["scaffold_retries"] = 0
        wrote = not last.invalid_action and tool_kinds(episode.env).get(last.tool or "") == "write"
        if self.read_after_write and wrote:
            read = self._read_back(episode, last.action)
            if read is not None:
                return Action(read, scripted=True)
        return None

    @staticmethod
    def _read_back(episode: Episode, action: str) -> str | None:
        key = tool_call_key(action)
        hook = getattr(episode.env.unwrapped, "_read_back", None)
        if key is None or hook is None:
            return None
        from envs.core import ToolCall

        payload = json.loads(key)
        call = hook(ToolCall(payload["name"], payload["arguments"]))
        return None if call is None else _as_call(call.name, dict(call.arguments))


# ---------------------------------------------------------------------------------------------------------------
# Best-of-k: spend test-time compute instead of training


class BestOfKPolicy:
    """Sample ``k`` actions per turn and play the most frequent valid tool call (self-consistency voting).

    This is a deployable policy, not an oracle: no checker is consulted. Its token cost is the sum over all
    ``k`` samples. The oracle counterpart, "any of k independent episodes succeeds", is pass@k in the metrics
    (at k times the tokens of one episode). The inner policy must sample (temperature > 0), or all k agree.
    Ties go to the candidate sampled first; when no candidate parses, the first raw sample is played.
    """

    def __init__(self, inner: Policy, k: int):
        if k < 1:
            raise ValueError(f"best-of-k needs k >= 1, got {k}")
        self.inner = inner
        self.k = k
        self.name = f"best-of-{k}({inner.name})"

    def config(self) -> dict[str, Any]:
        return {"policy": "best-of-k", "k": self.k, "inner": self.inner.config()}

    def act(self, episodes: Sequence[Episode]) -> list[Action]:
        samples = self.inner.act([ep for ep in episodes for _ in range(self.k)])
        out = []
        for i in range(len(episodes)):
            group = samples[i * self.k : (i + 1) * self.k]
            keys = [tool_call_key(a.text) for a in group]
            votes = Counter(k for k in keys if k is not None)
            best = group[0]
            if votes:
                top = max(votes.values())
                best = next(a for a, key in zip(group, keys, strict=True) if key is not None and votes[key] == top)
            out.append(Action(best.text, tokens=sum(a.tokens for a in group), message=best.message))
        return out
