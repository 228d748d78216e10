"""A recoverygym environment as a verifiers environment: ``load_environment(env_id, split, faults, ...)``.

The result is a verifiers ``MultiTurnEnv`` (the classic ``vf.Environment`` API that ``env.evaluate`` and prime-rl's
environment workers drive) whose tools are the environment's own: ``tool_defs`` are ``env.tool_schemas()``
unchanged (in TRL's order, by name), and every tool call the model makes becomes one ``env.step`` of a Gymnasium
environment private to the rollout, as in ``recoverygym eval``. Calls the environment rejects (an unknown tool, a
wrong argument, arguments that are not JSON) get the environment's own error observation and cost a turn. The
rollout ends when the environment ends the episode (its finishing tool or its turn limit) or when the model replies
without a tool call. The reward is the checker's score of the final state; ``success``, the number of faults that
fired and each checker component of the task (``component_<name>``: 1 passed, 0 failed) are metrics.

    import verifiers as vf
    from openai import AsyncOpenAI
    from training.integrations.verifiers_env import load_environment

    env = load_environment("recoverygym/SupportDesk-v0", split="heldout", faults={"write_timeout": 0.2})
    client = vf.OpenAIChatCompletionsClient(AsyncOpenAI(base_url="http://127.0.0.1:8000/v1", api_key="none"))
    results = env.evaluate_sync(client, model="my-model", num_examples=10)

Through verifiers' own loader the module is the environment id:
``vf.load_environment("training.integrations.verifiers_env", gym_id="recoverygym/Spreadsheet-v0")`` (its first
parameter is itself called ``env_id``, hence ``gym_id``). Needs ``pip install 'recoverygym[verifiers]'``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import verifiers as vf
from datasets import Dataset

from training.adapter import make_env, parse_faults

__all__ = ["CheckerRubric", "RecoveryGymEnv", "load_environment"]

DEFAULT_ENV = "recoverygym/SupportDesk-v0"
_EPISODE_OVER = "the episode is over ({why}); no further tool calls run."


def load_environment(
    env_id: str = DEFAULT_ENV,
    split: str = "heldout",
    faults: Mapping[str, float] | str | None = None,
    num_tasks: int = 50,
    first_task: int = 0,
    seed: int = 0,
    max_turns: int | None = None,
    system_prompt: str | None = None,
    gym_id: str | None = None,
    **kwargs: Any,
) -> RecoveryGymEnv:
    """A verifiers environment over tasks ``first_task .. first_task + num_tasks - 1`` of ``split``.

    Args:
        env_id: A registered recoverygym id, or ``module:id`` for one registered on import.
        split: ``"train"`` or ``"heldout"``; both the training and the evaluation dataset hold this split's tasks.
        faults: Fault rates (a dict, or its JSON text as a command line passes it); None for none.
        num_tasks: How many tasks (dataset rows).
        first_task: The first task seed.
        seed: Fault seed of the first row; row i draws its faults from ``seed + i`` (every rollout of a row alike).
        max_turns: Turn-limit override of the environment; None keeps its own.
        system_prompt: An optional system message before the task prompt (the prompt already states the role).
        gym_id: Overrides ``env_id``; for ``vf.load_environment``, which cannot pass a parameter named ``env_id``.
        **kwargs: Passed to ``vf.MultiTurnEnv`` (``max_concurrent``, ``sampling_args``, ...).
    """
    return RecoveryGymEnv(gym_id or env_id, split=split, faults=parse_faults(faults), num_tasks=num_tasks,
                          first_task=first_task, seed=seed, max_turns=max_turns, system_prompt=system_prompt,
                          **kwargs)


class _Episode:
    """One rollout's Gymnasium environment and how its episode went."""

    __slots__ = ("ended", "env", "reward")

    def __init__(self, env: Any) -> None:
        self.env = env
        self.ended: str | None = None  # "finished" (the finishing tool) or "turn limit reached"
        self.reward: float | None = None

    def call(self, name: str, arguments: str | None) -> str:
        if self.ended is not None:
            return _EPISODE_OVER.format(why=self.ended)
        # the arguments as the model wrote them: text that is not JSON gets the environment's own parse error
        action = f'{{"name": {json.dumps(name)}, "arguments": {arguments.strip() if arguments else "{}"}}}'
        observation, reward, terminated, truncated, _ = self.env.step(action)
        if terminated or truncated:
            self.ended = "finished" if terminated else "turn limit reached"
            self.reward = float(reward)
        return observation

    def verdict(self) -> dict[str, Any]:
        unwrapped = self.env.unwrapped
        check = unwrapped.check()
        return {"score": self.reward if self.reward is not None else float(check.score),
                "success": bool(check.success), "components": dict(check.components), "reasons": list(check.reasons),
                "faults_fired": len(unwrapped.fault_log), "turns": int(unwrapped.turn), "ended": self.ended}


class RecoveryGymEnv(vf.MultiTurnEnv):
    """The verifiers environment ``load_environment`` returns; see the module docstring."""

    def __init__(self, gym_id: str, *, split: str, faults: dict[str, float], num_tasks: int, first_task: int,
                 seed: int, max_turns: int | None, system_prompt: str | None, **kwargs: Any):
        if num_tasks < 1:
            raise ValueError(f"num_tasks must be at least 1, got {num_tasks}")
        self.gym_id, self.split, self.faults, self.gym_max_turns = gym_id, split, dict(faults), max_turns
        probe = self._make()
        # by name, the order TRL renders an environment_factory's tools in: a model sees the prompt it was trained on
        schemas = sorted(probe.unwrapped.tool_schemas(), key=lambda schema: schema["function"]["name"])
        tool_defs = [vf.Tool(name=s["function"]["name"], description=s["function"]["description"],
                             parameters=s["function"]["parameters"]) for s in schemas]
        rows = []
        for i, task_seed in enumerate(range(first_task, first_task + num_tasks)):
            options = {"task_seed": task_seed, "split": split, "seed": seed + i}
            prompt, _ = probe.reset(seed=options["seed"], options={"task_seed": task_seed, "split": split})
            rows.append({"prompt": [{"role": "user", "content": prompt}], "answer": "",
                         "info": json.dumps(options)})
        probe.close()
        dataset = Dataset.from_list(rows)
        self._episodes: dict[str, _Episode] = {}
        kwargs.setdefault("env_args", {"env_id": gym_id, "split": split, "faults": self.faults,
                                       "num_tasks": num_tasks, "first_task": first_task, "seed": seed})
        # max_turns=-1: the environment's own turn limit ends the episode (every model turn with a call is a step)
        super().__init__(dataset=dataset, eval_dataset=dataset, tool_defs=tool_defs, rubric=CheckerRubric(),
                         system_prompt=system_prompt, max_turns=-1, **kwargs)

    def _make(self):
        return make_env(self.gym_id, faults=self.faults, max_turns=self.gym_max_turns)

    async def setup_state(self, state: vf.State) -> vf.State:
        options = state["info"]
        env = self._make()
        prompt, _ = env.reset(seed=options["seed"], options={"task_seed": options["task_seed"],
                                                             "split": options["split"]})
        if prompt != state["prompt"][-1].content:  # the row was built from the same reset: a mismatch is a bug
            raise vf.Error(f"{self.gym_id} task {options['task_seed']}: the prompt differs from the dataset row's")
        self._episodes[state["trajectory_id"]] = _Episode(env)
        return state

    async def env_response(self, messages: vf.Messages, state: vf.State, **kwargs: Any) -> vf.Messages:
        episode = self._episodes[state["trajectory_id"]]
        replies = [vf.ToolMessage(tool_call_id=call.id, content=episode.call(call.name, call.arguments))
                   for call in messages[-1].tool_calls or []]
        if episode.ended is not None:
            state["final_env_response"] = replies
        return replies

    @vf.stop
    async def replied_without_a_tool_call(self, state: vf.State) -> bool:
        """The model answered in text: the episode stops here and is scored as it stands."""
        if not state["trajectory"]:
            return False
        last = state["trajectory"][-1]["completion"][-1]
        return last.role == "assistant" and not getattr(last, "tool_calls", None)

    @vf.cleanup
    async def record_verdict(self, state: vf.State) -> None:
        """The checker's verdict for the rubric, then the rollout's environment is closed."""
        episode = self._episodes.pop(state["trajectory_id"], None)
        if episode is not None:
            state["recoverygym"] = episode.verdict()
            episode.env.close()


class CheckerRubric(vf.Rubric):
    """Reward: the checker's score of the final state. Metrics: success, faults fired, and each component."""

    def __init__(self, **kwargs: Any):
        super().__init__(funcs=[self.checker_score], weights=[1.0], **kwargs)
        self.add_metric(self.success)
        self.add_metric(self.faults_fired)

    async def checker_score(self, state: vf.State) -> float:
        return float(_verdict(state)["score"])

    async def success(self, state: vf.State) -> float:
        return float(_verdict(state)["success"])

    async def faults_fired(self, state: vf.State) -> float:
        return float(_verdict(state)["faults_fired"])

    # A task's components depend on the task (a spreadsheet task has one per goal), so they are added per rollout:
    # verifiers averages each metric over the rollouts that report it.
    async def score_rollout(self, state: vf.State) -> None:
        await super().score_rollout(state)
        state["metrics"].update(_component_metrics(state))

    async def score_group(self, states: list[vf.State]) -> None:
        await super().score_group(states)
        for state in states:
            state["metrics"].update(_component_metrics(state))


def _verdict(state: vf.State) -> dict[str, Any]:
    verdict = state.get("recoverygym")
    if verdict is None:  # the rollout failed before its environment started (an error is on the state)
        return {"score": 0.0, "success": False, "components": {}, "faults_fired": 0}
    return verdict


def _component_metrics(state: vf.State) -> dict[str, float]:
    return {f"component_{name}": float(ok) for name, ok in _verdict(state)["components"].items()}
