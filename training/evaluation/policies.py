"""Policies to evaluate: scripted baselines, and wrappers that add scaffolding or best-of-k sampling to a model.

Model policies live in ``model_policy.py`` (transformers, imported lazily) and ``openai_policy.py`` (any
OpenAI-compatible chat endpoint). ``cli.make_policy(spec)`` builds any of them from a command-line string.

The scripted baselines are ``envs.policies``' own (one definition each), run on the batch interface by
``ScriptedPolicy``: they may look inside the environment (``env.unwrapped.reference_action()``) and draw randomness
only from the episode's own ``rng``, so their results depend on the seeds alone, never on batching or on which other
episodes ran.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

from envs import policies as env_policies
from training.evaluation.episode import Action, Episode, Policy, tool_call_key

__all__ = [
    "SCRIPTED_POLICIES",
    "BestOfKPolicy",
    "DoNothingPolicy",
    "NoisyReferencePolicy",
    "RandomPolicy",
    "ReferencePolicy",
    "ScaffoldPolicy",
    "ScriptedPolicy",
    "tool_kinds",
]


def tool_kinds(env: Any) -> dict[str, str]:
    """Map each tool name of ``env`` to ``"read"``, ``"write"`` or ``"finish"``."""
    return {name: spec.kind for name, spec in env.unwrapped.tool_specs().items()}


class ScriptedPolicy:
    """An ``envs.policies`` policy on the batch interface: each episode's action is the inner policy's
    ``act(env, last observation, rng=episode.rng)``.

    Randomness comes from the episode's own RNG, never the inner policy's, so what an episode gets does not depend on
    the episodes played before it (nor on batching or resuming).
    """

    def __init__(self, inner: Any):
        self.inner = inner
        self.name = inner.name

    def act(self, episodes: Sequence[Episode]) -> list[Action]:
        return [Action(self.inner.act(ep.env, ep.last_observation, rng=ep.rng)) for ep in episodes]

    def config(self) -> dict[str, Any]:
        return {"policy": self.name}


class ReferencePolicy(ScriptedPolicy):
    """The environment's privileged reference plan, with its generic fault recovery: the ceiling (should score 1)."""

    def __init__(self):
        super().__init__(env_policies.ReferencePolicy())


class NoisyReferencePolicy(ScriptedPolicy):
    """``envs.policies.NoisyReferencePolicy``: the reference, but each action is replaced by a mistake with
    probability ``p`` (with probability ``near_miss`` a near miss, the reference's own call with one argument wrong,
    otherwise a random call). Measures how well the task and its checker tolerate (and the env's reference recovers
    from) off-plan actions."""

    def __init__(self, p: float = 0.2, near_miss: float = 0.0):
        super().__init__(env_policies.NoisyReferencePolicy(p, near_miss=near_miss))
        self.p, self.near_miss = p, near_miss

    def config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"policy": "noisy-reference", "p": self.p}
        if self.near_miss:  # absent at 0, so folders written before near misses existed still resume
            config["near_miss"] = self.near_miss
        return config


class RandomPolicy(ScriptedPolicy):
    """A uniformly random tool with arguments of the right types, text drawn from words on screen (the floor)."""

    def __init__(self):
        super().__init__(env_policies.RandomPolicy())


class DoNothingPolicy(ScriptedPolicy):
    """Calls the finish tool at once without changing anything: a no-op must never score."""

    def __init__(self):
        super().__init__(env_policies.DoNothingPolicy())


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
        from envs.core import ToolCall, parse_action

        env = episode.env.unwrapped
        hook = getattr(env, "_read_back", None)
        call = parse_action(action, env.tool_specs())  # the call exactly as the env understood and ran it
        if hook is None or not isinstance(call, ToolCall):
            return None
        read = hook(call)
        return None if read is None else "<tool_call>" + read.to_json() + "</tool_call>"


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
