"""Turn any registered recoverygym environment into a TRL ``environment_factory``.

TRL's ``GRPOTrainer(environment_factory=cls)`` builds instances with ``cls()``, exposes every public method except
``reset``/``get_reward`` as a tool (schema from the method's signature and docstring), calls ``reset(**row)`` with
the dataset row before each rollout and appends its return value to the prompt, and uses ``get_reward()`` as a
reward. The class built here has exactly the environment's tools: each one carries the environment method's name,
signature and docstring, so TRL derives the same JSON schema the environment publishes, and each call is forwarded
to ``env.step`` as JSON. Nothing about the domain is re-implemented here: argument checks, tool errors and faults
are the environment's own, and so is the reward (the checker's score of the final state).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = [
    "EpisodeRecord",
    "ToolEnvAdapter",
    "in_trl_order",
    "make_env",
    "make_environment_factory",
    "parse_actions",
    "parse_faults",
    "tool_schemas",
]

_EPISODE_OVER = "the episode is over ({why}); no further tool calls run. Reply with a short final message."


def parse_actions(actions: Any) -> list[str]:
    """A branch start's actions from a dataset row: a list of action strings, its JSON text, or None for none."""
    if actions is None:
        return []
    if isinstance(actions, str):
        actions = json.loads(actions)
    return [str(a) for a in actions]


def parse_faults(faults: Any) -> dict[str, float]:
    """Fault settings from a dataset row or config: a dict, its JSON text, or None/"" for none."""
    if faults is None or faults == "":
        return {}
    if isinstance(faults, str):
        faults = json.loads(faults)
    if not isinstance(faults, Mapping):
        raise TypeError(f"fault settings must be a mapping of fault kind to rate, got {type(faults).__name__}")
    return {str(k): float(v) for k, v in faults.items()}


def make_env(env_id: str, *, faults: Mapping[str, float] | None = None, max_turns: int | None = None):
    """``gymnasium.make`` of a recoverygym environment, with fault rates and an optional turn limit.

    The one place environments are built from settings: demonstrations, GRPO rollouts (through the adapter below)
    and every evaluation (``training.evaluation.runner``) call it.
    """
    import gymnasium

    import envs  # registers the recoverygym/* ids

    kwargs: dict[str, Any] = {}
    if faults:
        kwargs["faults"] = dict(faults)
    if max_turns is not None:
        kwargs["max_turns"] = max_turns
    try:
        return gymnasium.make(envs.resolve_env_id(env_id), **kwargs)  # module:id, or an installed package's id
    except gymnasium.error.Error as err:
        known = sorted(k for k in gymnasium.registry if k.startswith("recoverygym/"))
        raise ValueError(f"cannot make environment {env_id!r}: {err}. Registered recoverygym ids: {known}") from err


def in_trl_order(schemas: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Tool schemas in the order TRL renders an ``environment_factory``'s tools: by name.

    ``GRPOTrainer`` lists the class's tools with ``inspect.getmembers``, which sorts them by name, and passes them to
    ``apply_chat_template`` in that order. The demonstrations and every evaluation render the same order, so a model
    is trained and evaluated on the same prompt.
    """
    return sorted(schemas, key=lambda schema: schema["function"]["name"])


def tool_schemas(env) -> list[Mapping[str, Any]]:
    """The environment's tool schemas (equal to ``get_json_schema`` of each tool) in TRL's order."""
    return in_trl_order(env.unwrapped.tool_schemas())


class EpisodeRecord:
    """What happened in the current rollout: the calls made, their observations and the end of the episode."""

    __slots__ = ("calls", "done", "info", "reward", "task_seed")

    def __init__(self, task_seed: int | None = None) -> None:
        self.task_seed = task_seed
        self.calls: list[tuple[str, dict[str, Any], str]] = []
        self.done: str | None = None  # "terminated" or "truncated" once the env ended the episode
        self.reward: float | None = None
        self.info: dict[str, Any] = {}


class ToolEnvAdapter:
    """Base of the generated classes; one instance drives one rollout at a time and is reused after ``reset``.

    Only ``reset`` and ``get_reward`` are public here: TRL turns every other public method into a tool, so the
    subclass adds exactly the environment's tools and nothing else.
    """

    _env_id: str = ""
    _default_faults: dict[str, float] = {}
    _max_turns: int | None = None

    def __init__(self) -> None:
        self._envs: dict[str, Any] = {}  # one env per fault setting, built on first use
        self._env: Any = None
        self._episode = EpisodeRecord()

    def reset(self, task_seed: int, split: str = "train", seed: int | None = None, faults: Any = None,
              actions: Any = None, **row: Any):
        """Start the task of this dataset row; returns the environment's prompt for TRL to append to the user turn,
        or None for a branch start, whose ``prompt`` column already holds the whole conversation so far.

        Args:
            task_seed: Which task of the split; every rollout of a GRPO group gets the same row, hence the same task.
            split: ``"train"`` or ``"heldout"``.
            seed: Seed of the environment's fault draws (the same for a whole group, so faults are comparable).
            faults: Fault rates for this row, as a dict or JSON text; None uses the factory's defaults.
            actions: A branch start's actions so far (``training.branches``): the environment replays them through
                ``step`` with the row's seed and faults, so every rollout of the group continues from the same
                state and fault RNG; TRL keeps the row's multi-turn ``prompt`` as it is when this returns None.
            **row: Other dataset columns (``prompt``, ...), ignored.
        """
        rates = self._default_faults if faults is None else parse_faults(faults)
        key = json.dumps(rates, sort_keys=True)
        if key not in self._envs:
            self._envs[key] = make_env(self._env_id, faults=rates, max_turns=self._max_turns)
        self._env = self._envs[key]
        options: dict[str, Any] = {"task_seed": int(task_seed), "split": split}
        if actions is not None:
            options["actions"] = parse_actions(actions)
        observation, _ = self._env.reset(seed=seed, options=options)
        self._episode = EpisodeRecord(int(task_seed))
        return None if actions is not None else observation

    def get_reward(self) -> float:
        """The checker's score of the final state (the env's end-of-episode reward when the env ended it)."""
        if self._env is None:
            raise RuntimeError("get_reward() before reset(); TRL resets every environment before a rollout")
        if self._episode.reward is not None:
            return float(self._episode.reward)
        return float(self._env.unwrapped.check().score)

    def _call(self, name: str, arguments: dict[str, Any]) -> str:
        if self._env is None:
            raise RuntimeError(f"tool {name!r} called before reset()")
        if self._episode.done is not None:
            return _EPISODE_OVER.format(why=self._episode.done)
        action = json.dumps({"name": name, "arguments": arguments}, default=str)
        observation, reward, terminated, truncated, info = self._env.step(action)
        self._episode.calls.append((name, arguments, observation))
        self._episode.info = info
        if terminated or truncated:
            self._episode.done = "finished" if terminated else "turn limit reached"
            self._episode.reward = float(reward)
        return observation


def _forwarding_tool(name: str, function: Callable) -> Callable:
    """A method that looks like ``function`` to ``inspect`` and ``get_json_schema`` but forwards to ``env.step``.

    Its real signature is ``**arguments``: a wrong argument reaches the environment, whose message says what is
    valid, instead of failing as a Python ``TypeError`` before the environment sees it.
    """

    def forward(self: ToolEnvAdapter, **arguments: Any) -> str:
        return self._call(name, arguments)

    functools.update_wrapper(forward, function)  # name, docstring, annotations, __wrapped__ for the signature
    return forward


@functools.cache
def _factory(env_id: str, faults_key: str, max_turns: int | None) -> type[ToolEnvAdapter]:
    env = make_env(env_id, max_turns=max_turns)
    unwrapped = env.unwrapped
    tools = unwrapped.tool_methods()
    clash = {"reset", "get_reward"} & set(tools)
    if clash:
        raise ValueError(f"{env_id}: tools named {sorted(clash)} clash with TRL's environment methods; rename them")
    namespace: dict[str, Any] = {name: _forwarding_tool(name, fn) for name, fn in tools.items()}
    namespace.update(
        _env_id=env_id,
        _default_faults=json.loads(faults_key),
        _max_turns=max_turns,
        __doc__=f"TRL environment for {env_id}: {type(unwrapped).__doc__ or ''}".strip(),
        __module__=__name__,
    )
    env.close()
    return type(type(unwrapped).__name__, (ToolEnvAdapter,), namespace)


def make_environment_factory(
    env_id: str, *, faults: Mapping[str, float] | str | None = None, max_turns: int | None = None
) -> type[ToolEnvAdapter]:
    """The class to pass as ``GRPOTrainer(environment_factory=...)`` for a registered environment id.

    Args:
        env_id: A registered id such as ``recoverygym/SupportDesk-v0``.
        faults: Default fault rates, used when a dataset row carries no ``faults`` column.
        max_turns: Turn limit override; None keeps the environment's own.

    Returns:
        A class named after the environment (TRL names the reward column after it), whose public methods are the
        environment's tools.
    """
    return _factory(env_id, json.dumps(parse_faults(faults), sort_keys=True), max_turns)
