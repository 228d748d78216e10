"""A recoverygym environment as an OpenEnv environment server, built on ``openenv``'s own classes.

``RecoveryGymEnvironment`` is an ``openenv`` ``MCPEnvironment``: the Gymnasium environment's tools are registered
as MCP tools (same names, descriptions and JSON schemas as ``env.tool_schemas()``), so an agent lists them with
OpenEnv's ``ListToolsAction`` and calls them with ``CallToolAction``. ``create_server_app`` hands it to OpenEnv's
``create_app`` (``HTTPEnvServer``): every WebSocket session gets its own environment instance, up to
``max_sessions`` at once. The protocol, sessions, capacity and error replies are OpenEnv's; this module only maps
an environment onto them.

Episode over the wire (what ``RecoveryGymClient`` sends)::

    reset {"task_seed": 7, "split": "heldout", "seed": 0, "faults": {"write_timeout": 0.2}}
        -> observation.prompt: the task prompt; metadata.info: the env's reset info (tools, task_seed, faults, ...)
    step CallToolAction(tool_name="find_customer", arguments={"email": "ana@example.com"})
        -> observation.result.data: the tool's observation text; reward, done;
           metadata: {"info": the env's step info, "terminated": ..., "truncated": ...}; at the end info has the
           checker's score, components and reasons
    state -> task_seed, split, turn, done and the checker's current verdict on the state (score, components, reasons)

Every call reaches ``env.step`` as the JSON action ``{"name": ..., "arguments": ...}``, as it does locally, so the
same reset options and calls give the same observations, rewards and info as ``gymnasium.make`` in-process. That
includes calls the environment rejects: an unknown tool name or a wrong argument is the environment's own error
observation and costs a turn (OpenEnv would otherwise answer an unknown name itself, without a turn).
"""

from __future__ import annotations

import functools
import inspect
import json
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from fastmcp import FastMCP
from fastmcp.client.client import CallToolResult
from fastmcp.tools import Tool, ToolResult
from mcp.types import TextContent
from openenv.core.env_server.http_server import create_app
from openenv.core.env_server.mcp_environment import MCPEnvironment
from openenv.core.env_server.mcp_types import CallToolAction, CallToolObservation, ToolError, ToolErrorType
from openenv.core.env_server.types import Action, ConcurrencyConfig, EnvironmentMetadata, Observation, State
from pydantic import Field

from training.adapter import make_env, parse_faults

__all__ = ["PromptObservation", "RecoveryGymEnvironment", "RecoveryGymState", "create_server_app"]

_RESET_OPTIONS = ("seed", "episode_id", "task_seed", "split", "faults")


class PromptObservation(Observation):
    """What ``reset`` returns: the task prompt (``metadata["info"]`` is the environment's reset info)."""

    prompt: str = Field(description="The first observation of the episode: role, policy and the request")


class RecoveryGymState(State):
    """The session's episode: which task, how far, and the checker's verdict on the current state."""

    env_id: str = ""
    task_seed: int | None = None
    split: str | None = None
    faults: dict[str, float] = Field(default_factory=dict, description="fault rates of the episode")
    turn: int = 0
    done: bool = False
    score: float | None = Field(default=None, description="the checker's score of the current state")
    components: dict[str, bool] = Field(default_factory=dict)
    reasons: list[str] = Field(default_factory=list)


class _SchemaTool(Tool):
    """The MCP tool as listed: the environment's exact schema; running it forwards to the session's environment."""

    forward: Callable[[dict[str, Any]], str] = Field(exclude=True)

    async def run(self, arguments: dict[str, Any]) -> ToolResult:
        text = self.forward(arguments)
        return ToolResult(content=text, structured_content={"result": text})


class RecoveryGymEnvironment(MCPEnvironment):
    """One session's environment: a ``gymnasium.make`` of ``env_id`` whose tools are this server's MCP tools.

    Args:
        env_id: A registered id (``recoverygym/SupportDesk-v0``) or ``module:id`` for one registered on import.
        faults: Default fault rates of the session's episodes; ``reset(faults=...)`` overrides them per episode.
        max_turns: Turn-limit override; None keeps the environment's own.
    """

    SUPPORTS_CONCURRENT_SESSIONS = True  # every session gets its own instance; nothing is shared

    def __init__(self, env_id: str, faults: Mapping[str, float] | None = None, max_turns: int | None = None):
        self.env_id = env_id
        self._default_faults = parse_faults(faults)
        self._max_turns = max_turns
        self._envs: dict[str, Any] = {}  # fault setting -> env, built on first use (as the TRL adapter does)
        self._env = self._env_for(self._default_faults)
        self._faults = self._default_faults
        self._episode_id: str | None = None
        self._started = False
        self._done = False
        self._outcome: tuple[float, bool, bool, dict[str, Any]] | None = None
        unwrapped = self._env.unwrapped
        self._description = type(unwrapped).description or type(unwrapped).__name__
        server = FastMCP(env_id, on_duplicate="replace")
        super().__init__(server)
        self._tool_names = set()
        for name, method in unwrapped.tool_methods().items():
            self._register(name, method, unwrapped.tool_specs()[name].schema["function"])

    # -- tools ------------------------------------------------------------------------------------------------------

    def _register(self, name: str, method: Callable, schema: Mapping[str, Any]) -> None:
        """Register ``name`` with OpenEnv's ``tool()`` (calls then run in-process), then list it with the exact
        schema the environment publishes (FastMCP would derive its own from the signature)."""
        forward = functools.partial(self._call, name)
        self.tool()(_forwarding_function(name, method, forward))
        self.mcp_server.add_tool(_SchemaTool(name=name, description=schema["description"],
                                             parameters=schema["parameters"], forward=forward))
        self._tool_names.add(name)

    def _call(self, name: str, arguments: Mapping[str, Any]) -> str:
        if not self._started:
            raise RuntimeError("no episode yet: reset() first (reset takes task_seed, split, seed and faults)")
        self._outcome = None
        action = json.dumps({"name": name, "arguments": dict(arguments)}, default=str)
        observation, reward, terminated, truncated, info = self._env.step(action)
        self._outcome = (float(reward), bool(terminated), bool(truncated), info)
        self._done = bool(terminated or truncated)
        return observation

    # -- OpenEnv's Environment API ----------------------------------------------------------------------------------

    def reset(self, seed: int | None = None, episode_id: str | None = None, task_seed: int | None = None,
              split: str = "train", faults: Mapping[str, float] | str | None = None,
              **options: Any) -> PromptObservation:
        """Start task ``task_seed`` of ``split``; ``seed`` seeds the fault draws, ``faults`` overrides the rates."""
        if options:
            raise ValueError(f"unknown reset option(s) {sorted(options)}; valid: {', '.join(_RESET_OPTIONS)}")
        self._faults = self._default_faults if faults is None else parse_faults(faults)
        self._env = self._env_for(self._faults)
        gym_options: dict[str, Any] = {"split": split}
        if task_seed is not None:
            gym_options["task_seed"] = task_seed
        prompt, info = self._env.reset(seed=seed, options=gym_options)
        self._episode_id = episode_id or str(uuid.uuid4())
        self._started = True
        self._done = False
        self._outcome = None
        return PromptObservation(prompt=prompt, done=False, reward=None, metadata={"info": info})

    def step(self, action: Action, timeout_s: float | None = None, **kwargs: Any) -> Observation:
        return self._with_outcome(self._unknown_tool(action) or super().step(action, timeout_s=timeout_s, **kwargs))

    async def step_async(self, action: Action, timeout_s: float | None = None, **kwargs: Any) -> Observation:
        unknown = self._unknown_tool(action)
        return self._with_outcome(unknown or await super().step_async(action, timeout_s=timeout_s, **kwargs))

    def _step_impl(self, action: Action, timeout_s: float | None = None, **kwargs: Any) -> Observation:
        raise ValueError(f"{type(action).__name__} is not an action of this server; send CallToolAction (call a tool) "
                         "or ListToolsAction (list them)")

    @property
    def state(self) -> RecoveryGymState:
        unwrapped = self._env.unwrapped
        if not self._started:
            return RecoveryGymState(env_id=self.env_id, faults=self._faults)
        check = unwrapped.check()
        return RecoveryGymState(
            episode_id=self._episode_id, step_count=unwrapped.turn, env_id=self.env_id,
            task_seed=unwrapped.task_seed, split=unwrapped.split, faults=self._faults, turn=unwrapped.turn,
            done=self._done,
            score=float(check.score), components=dict(check.components), reasons=list(check.reasons),
        )

    def get_metadata(self) -> EnvironmentMetadata:
        return EnvironmentMetadata(name=self.env_id, description=self._description, version="recoverygym")

    def close(self) -> None:
        for env in self._envs.values():
            env.close()
        self._envs.clear()
        super().close()

    # -- helpers ----------------------------------------------------------------------------------------------------

    def _env_for(self, faults: dict[str, float]):
        key = json.dumps(faults, sort_keys=True)
        if key not in self._envs:
            self._envs[key] = make_env(self.env_id, faults=faults, max_turns=self._max_turns)
        return self._envs[key]

    def _unknown_tool(self, action: Action) -> CallToolObservation | None:
        """A call of a name the environment has no tool for goes to the environment too (its error, a turn)."""
        if not isinstance(action, CallToolAction) or action.tool_name in self._tool_names:
            return None
        try:
            text = self._call(action.tool_name, action.arguments)
        except Exception as err:  # the same reply as a known tool's failure
            return _error_observation(action, err)
        return CallToolObservation(tool_name=action.tool_name, result=_text_result(text))

    def _with_outcome(self, observation: Observation) -> Observation:
        """Put the environment's reward, end of episode and info on the observation of a call that reached it."""
        if isinstance(observation, CallToolObservation) and self._outcome is not None:
            reward, terminated, truncated, info = self._outcome
            observation.reward = reward
            observation.done = terminated or truncated
            observation.metadata = {"info": info, "terminated": terminated, "truncated": truncated}
            self._outcome = None
        return observation


def _text_result(text: str) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content={"result": text},
                          meta=None, data=text, is_error=False)


def _error_observation(action: CallToolAction, err: Exception) -> CallToolObservation:
    return CallToolObservation(tool_name=action.tool_name, result=None,
                               error=ToolError(error_type=ToolErrorType.EXECUTION_ERROR, message=str(err)))


def _forwarding_function(name: str, method: Callable, forward: Callable[[dict[str, Any]], str]) -> Callable:
    """A function FastMCP reads as the tool (the method's signature without ``self``) that forwards to ``forward``.

    Its real signature is ``**arguments``: a wrong argument reaches the environment, whose message says what is
    valid, instead of failing as a Python ``TypeError`` first.
    """

    def call(**arguments: Any) -> str:
        return forward(arguments)

    functools.update_wrapper(call, method)
    signature = inspect.signature(method)
    call.__signature__ = signature.replace(parameters=list(signature.parameters.values())[1:])
    call.__name__ = name
    return call


def create_server_app(env_id: str, *, faults: Mapping[str, float] | None = None, max_turns: int | None = None,
                      max_sessions: int = 8, session_timeout: float | None = 300.0):
    """The FastAPI app of OpenEnv's ``HTTPEnvServer`` for ``env_id`` (``/ws`` sessions, ``/mcp``, ``/health``, ...).

    Args:
        env_id: The environment every session runs.
        faults: Default fault rates of every session (a reset may override them).
        max_turns: Turn-limit override for every episode.
        max_sessions: Concurrent sessions; one more is refused with OpenEnv's ``CAPACITY_REACHED``.
        session_timeout: Seconds after which OpenEnv reaps a session no socket is attached to (an MCP client that
            died without closing its HTTP session); None never reaps.
    """
    make_env(env_id, faults=parse_faults(faults), max_turns=max_turns).close()  # a bad id or fault fails here, once
    factory = functools.partial(RecoveryGymEnvironment, env_id, faults=parse_faults(faults), max_turns=max_turns)
    concurrency = ConcurrencyConfig(max_concurrent_envs=max_sessions, session_timeout=session_timeout)
    return create_app(factory, CallToolAction, CallToolObservation, env_name=env_id.replace("/", "_"),
                      concurrency_config=concurrency, state_cls=RecoveryGymState, mode="simulation",
                      reset_observation_cls=PromptObservation)
