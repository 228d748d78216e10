"""The client of ``recoverygym serve``, and a TRL ``environment_factory`` whose rollouts run on a server.

``RecoveryGymClient`` is OpenEnv's own ``MCPToolClient`` (async; ``.sync()`` for blocking use) with the server's
state type::

    from training.integrations.openenv_client import RecoveryGymClient
    from openenv.core.env_server.mcp_types import CallToolAction

    with RecoveryGymClient("http://127.0.0.1:8000").sync() as env:
        first = env.reset(task_seed=7, split="heldout", seed=0, faults={"write_timeout": 0.2})
        print(first.observation.prompt)                      # the task prompt
        result = env.step(CallToolAction(tool_name="find_customer", arguments={"email": "ana@example.com"}))
        print(result.observation.result["data"], result.reward, result.done, result.observation.metadata["info"])

``remote_environment_factory(url, env_id)`` is the class for ``GRPOTrainer(environment_factory=...)``: the same
tools (names, signatures, docstrings, so the same schemas) as ``training.adapter.make_environment_factory``, but
each call goes to the server. Every instance holds one session, so the server's ``--max-sessions`` must cover
TRL's generation batch (``per_device_train_batch_size`` x gradient accumulation, per process).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from typing import Any

from openenv.core.client_types import StepResult
from openenv.core.env_server.mcp_types import CallToolAction
from openenv.core.mcp_client import MCPToolClient

from training.adapter import make_env, parse_faults
from training.integrations.openenv_server import RecoveryGymState

__all__ = ["RecoveryGymClient", "RemoteToolEnv", "remote_environment_factory"]

_EPISODE_OVER = "the episode is over ({why}); no further tool calls run. Reply with a short final message."


class RecoveryGymClient(MCPToolClient):
    """OpenEnv client of one session on a ``recoverygym serve`` server.

    ``reset(task_seed=7, split="heldout", seed=0, faults={...})`` starts an episode (the server checks the
    options: an unknown one is an error naming the valid ones); the result's ``observation.prompt`` is the prompt
    and ``observation.metadata["info"]`` the environment's reset info. ``step(CallToolAction(...))`` returns the
    tool's observation text (``observation.result["data"]``), the environment's reward, ``done`` and its info
    (``observation.metadata``); ``state()`` returns a ``RecoveryGymState`` with the checker's verdict on the current
    state. ``list_tools`` and ``call_tool`` are OpenEnv's (``call_tool`` goes through the server's MCP endpoint and
    returns only the text).
    """

    def _parse_state(self, payload: dict[str, Any]) -> RecoveryGymState:
        return RecoveryGymState.model_validate(payload)


class RemoteToolEnv:
    """Base of the classes ``remote_environment_factory`` builds: one server session per instance, reused.

    As ``training.adapter.ToolEnvAdapter``: only ``reset`` and ``get_reward`` are public here, because TRL turns
    every other public method into a tool, and the subclass adds exactly the environment's tools.
    """

    _url: str = ""
    _env_id: str = ""
    _default_faults: dict[str, float] | None = None
    _client_options: dict[str, Any] = {}

    def __init__(self) -> None:
        self._client = RecoveryGymClient(self._url, **self._client_options).sync()
        self._client.connect()
        self._started = False
        self._done: str | None = None
        self._reward: float | None = None

    def reset(self, task_seed: int, split: str = "train", seed: int | None = None, faults: Any = None, **row: Any):
        """Start the task of this dataset row on the server; returns the prompt for TRL to append to the user turn.

        Args:
            task_seed: Which task of the split; every rollout of a GRPO group gets the same row, hence the same task.
            split: ``"train"`` or ``"heldout"``.
            seed: Seed of the environment's fault draws.
            faults: Fault rates for this row, as a dict or JSON text; None uses the factory's defaults.
            **row: Other dataset columns (``prompt``, ...), ignored.
        """
        options: dict[str, Any] = {"task_seed": int(task_seed), "split": split, "seed": seed}
        rates = self._default_faults if faults is None else parse_faults(faults)
        if rates is not None:
            options["faults"] = rates
        result = self._client.reset(**options)
        self._started, self._done, self._reward = True, None, None
        return result.observation.prompt

    def get_reward(self) -> float:
        """The checker's score of the final state (the env's end-of-episode reward when the env ended it)."""
        if not self._started:
            raise RuntimeError("get_reward() before reset(); TRL resets every environment before a rollout")
        if self._reward is not None:
            return self._reward
        return float(self._client.state().score)

    def _call(self, name: str, arguments: dict[str, Any]) -> str:
        if not self._started:
            raise RuntimeError(f"tool {name!r} called before reset()")
        if self._done is not None:
            return _EPISODE_OVER.format(why=self._done)
        result: StepResult = self._client.step(CallToolAction(tool_name=name, arguments=arguments))
        observation = result.observation
        if observation.error is not None:  # the server could not run the call (not a tool error: those are text)
            raise RuntimeError(f"{name}: {observation.error.message}")
        if result.done:
            self._done = "finished" if observation.metadata.get("terminated") else "turn limit reached"
            self._reward = float(result.reward)
        return observation.result["data"]

    def __del__(self) -> None:
        client = getattr(self, "_client", None)
        if client is not None:
            try:
                client.close()
            except Exception:  # interpreter shutdown: the server reaps the session
                pass


def _forwarding_tool(name: str, function: Callable) -> Callable:
    def forward(self: RemoteToolEnv, **arguments: Any) -> str:
        return self._call(name, arguments)

    functools.update_wrapper(forward, function)  # name, docstring, signature: the schema TRL derives is the env's
    return forward


@functools.cache
def _factory(url: str, env_id: str, faults_key: str, options_key: str) -> type[RemoteToolEnv]:
    env = make_env(env_id)
    unwrapped = env.unwrapped
    tools = unwrapped.tool_methods()
    clash = {"reset", "get_reward"} & set(tools)
    if clash:
        raise ValueError(f"{env_id}: tools named {sorted(clash)} clash with TRL's environment methods; rename them")
    namespace: dict[str, Any] = {name: _forwarding_tool(name, fn) for name, fn in tools.items()}
    namespace.update(
        _url=url, _env_id=env_id, _default_faults=json.loads(faults_key), _client_options=json.loads(options_key),
        __doc__=f"TRL environment for {env_id} served at {url}: {type(unwrapped).__doc__ or ''}".strip(),
        __module__=__name__,
    )
    env.close()
    return type(type(unwrapped).__name__, (RemoteToolEnv,), namespace)


def remote_environment_factory(url: str, env_id: str, *, faults: Mapping[str, float] | str | None = None,
                               message_timeout_s: float = 60.0) -> type[RemoteToolEnv]:
    """The class to pass as ``GRPOTrainer(environment_factory=...)`` for ``env_id`` served at ``url``.

    Args:
        url: The server, e.g. ``http://127.0.0.1:8000`` (``recoverygym serve`` prints it).
        env_id: The id the server runs; its tools are read from the local registration (the client has recoverygym
            installed), so TRL sees the same tool schemas as with the in-process adapter.
        faults: Default fault rates, used when a dataset row carries no ``faults`` column (None: the server's).
        message_timeout_s: How long a call may wait for the server.
    """
    faults_key = json.dumps(parse_faults(faults) if faults is not None else None)
    options = json.dumps({"message_timeout_s": message_timeout_s})
    return _factory(url, env_id, faults_key, options)  # faults None: reset sends none, the server's --faults apply
