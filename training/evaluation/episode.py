"""What a policy sees and returns: an ``Episode`` in progress, its ``Turn`` history, and an ``Action``.

Policies act on a *batch* of episodes at once (``Policy.act(episodes) -> actions``) so that a model policy can
generate for many episodes in one forward pass; scripted policies simply loop. Policies keep no hidden state of
their own between calls: everything they need is in the episode (its history, its RNG, ``scratch``), which is what
makes an evaluation resumable and scripted runs reproducible whatever the batch size.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = ["Action", "Episode", "Policy", "Turn", "chat_messages"]


@dataclass(frozen=True, slots=True)
class Action:
    """One action chosen by a policy.

    Attributes:
        text: The action text sent to ``env.step`` (one tool call, JSON, optionally in ``<tool_call>`` tags).
        tokens: Tokens generated to produce it, all samples included (best-of-k counts k times).
        message: The assistant message to replay in later prompts, when the policy needs more than the text
            (an OpenAI-style message with ``tool_calls``); None means ``{"role": "assistant", "content": text}``.
        scripted: True when a wrapper (scaffolding) chose it without asking the model.
    """

    text: str
    tokens: int = 0
    message: dict[str, Any] | None = None
    scripted: bool = False


@dataclass(slots=True)
class Turn:
    """One step of an episode as recorded: the action, the environment's answer, and what happened."""

    turn: int
    action: str
    observation: str
    tool: str | None
    invalid_action: bool
    ok: bool
    tokens: int = 0
    scripted: bool = False
    faults: list[dict[str, Any]] = field(default_factory=list)
    message: dict[str, Any] | None = None
    outcome: str | None = None  # the environment's info["outcome"] (ok, rejected, fault, invalid); None: not stepped

    def to_record(self) -> dict[str, Any]:
        record = {
            "turn": self.turn,
            "action": self.action,
            "observation": self.observation,
            "tool": self.tool,
            "invalid_action": self.invalid_action,
            "ok": self.ok,
            "tokens": self.tokens,
            "scripted": self.scripted,
            "faults": self.faults,
        }
        if self.outcome is not None:
            record["outcome"] = self.outcome
        if self.message is not None:
            record["message"] = self.message
        return record


@dataclass(slots=True)
class Episode:
    """An episode in progress, as handed to a policy.

    Attributes:
        env: The environment (a Gymnasium env; scripted policies may use ``env.unwrapped``).
        prompt: The first observation.
        info: The info dict ``reset`` returned (``tools``, ``task_seed``, ``split``, ``required_steps`` ...).
        rng: The policy's own random stream for this episode, seeded from the episode seed (never the env's).
        history: The turns so far.
        scratch: Free space for stateless wrappers to keep per-episode counters (retries).
    """

    env: Any
    prompt: str
    info: dict[str, Any]
    rng: np.random.Generator
    history: list[Turn] = field(default_factory=list)
    scratch: dict[str, Any] = field(default_factory=dict)

    @property
    def tools(self) -> list[dict[str, Any]]:
        """The tool JSON schemas, in the format chat templates and OpenAI-compatible APIs take, in the order TRL
        renders them in training (by name: ``training.adapter.in_trl_order``), not the environment's declaration
        order, so an evaluated model sees the tool list it was trained on."""
        from training.adapter import in_trl_order

        return in_trl_order(self.info.get("tools") or [])

    @property
    def last_observation(self) -> str:
        return self.history[-1].observation if self.history else self.prompt

    def messages(self) -> list[dict[str, Any]]:
        """The conversation so far in chat format (see :func:`chat_messages`)."""
        return chat_messages(self.prompt, self.history)


def chat_messages(prompt: str, history: Sequence[Turn]) -> list[dict[str, Any]]:
    """The chat transcript: the prompt as the user turn, then each action and the tool's answer, as TRL's GRPO
    rollouts build it.

    Actions are replayed as the model wrote them (the raw text, ``<tool_call>`` tags included) so that a model sees
    its own tokens again, as a GRPO rollout appends the generated token ids unchanged; for a model that writes the
    chat template's own tool-call form (what the demonstrations teach) the rendering equals that of a structured
    ``tool_calls`` message. Every observation is a ``tool`` message named after the tool the environment ran (as
    TRL names it), error messages included, which ChatML templates render as ``<tool_response>``.
    """
    messages: list[dict[str, Any]] = [{"role": "user", "content": prompt}]
    for turn in history:
        messages.append(turn.message or {"role": "assistant", "content": turn.action})
        tool_message = {"role": "tool", "content": turn.observation}
        if turn.tool is not None:
            tool_message["name"] = turn.tool
        messages.append(tool_message)
    return messages


@runtime_checkable
class Policy(Protocol):
    """Chooses the next action for each of a batch of episodes.

    ``name`` labels results; ``config()`` returns everything needed to rebuild the policy (it goes into the
    results JSON).
    """

    name: str

    def act(self, episodes: Sequence[Episode]) -> list[Action]: ...

    def config(self) -> dict[str, Any]: ...


def tool_call_key(text: str) -> str | None:
    """A canonical identity of the single tool call in ``text`` (name + sorted arguments), or None if unparseable.

    Used to compare sampled actions (best-of-k votes, scaffold retries) without the environment's parser.
    """
    body = text
    if "<tool_call>" in text:
        body = text.split("<tool_call>", 1)[1].split("</tool_call>", 1)[0]
    try:
        payload = json.loads(body.strip())
    except (json.JSONDecodeError, RecursionError):
        return None
    if not isinstance(payload, dict) or not isinstance(payload.get("name"), str):
        return None
    arguments = payload.get("arguments", {})
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except (json.JSONDecodeError, RecursionError):
            return None
    if not isinstance(arguments, dict):
        return None
    return json.dumps({"name": payload["name"], "arguments": arguments}, sort_keys=True)
