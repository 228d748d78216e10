"""Branch starts: task rows that begin in the middle of an episode, right where something went wrong.

A branch start is a task (environment, split, task seed, fault rates, episode seed) plus the actions taken so far.
The environment replays them through ``step`` with the same fault RNG::

    obs, info = env.reset(seed=row["seed"], options={"task_seed": k, "split": sp, "actions": row["actions"]})

so its state, its fault draws and its transcript (``info["history"]``) are those of the recorded episode at that
turn. The model sees the earlier turns as real chat turns (``row["prompt"]``: the task prompt as the user turn, then
each assistant tool call and its ``tool`` result, the fault's or the refusal's error included), so a GRPO group
spends all its rollouts on one moment of trouble: every rollout continues from the same state (the adapter's
``reset(**row)`` replays the actions and returns None, and TRL keeps the row's multi-turn prompt as it is), and the
reward is the checker's score of the state the rollout leaves.

Branch points come from two sources (``BranchConfig``):

- *scripted*: the reference policy and its noisy and near-miss variants (``envs.policies``) play tasks under faults;
  each episode is cut right after a fault fired or a call was rejected;
- *episodes*: a model's own recorded episodes (``episodes.jsonl`` of an evaluation), the failed ones, cut at a turn
  where the model met a fault or a rejection, preferring the events the environment recorded as not handled: training
  spends its rollouts where this model actually breaks.

The same rows serve evaluation ("from this state, does the model recover?", ``evaluate_branches``) and supervised
training (``continuation_dataset``: the reference's continuation from the branch state, the loss on it alone).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from training.adapter import make_env, parse_actions, parse_faults

__all__ = [
    "REJECTED",
    "SCRIPTED_SOURCES",
    "BranchConfig",
    "branch_dataset",
    "branch_events",
    "branch_features",
    "branch_outcome",
    "branch_summary",
    "continuation_dataset",
    "episode_branches",
    "eval_folder",
    "evaluate_branches",
    "load_rows",
    "paired_branches",
    "replay",
    "rows_digest",
    "scripted_branches",
    "scripted_episode",
    "transcript",
    "write_branch_results",
    "write_rows",
]

#: The event kind of a call the environment refused (an invalid action, or a tool's own refusal) with no fault
#: behind it; the other event kinds are the fault kinds (``envs.core.FAULT_KINDS``).
REJECTED = "rejected_call"
SCRIPTED_SOURCES = ("reference", "noisy", "near_miss")
_REJECTED_OUTCOMES = ("rejected",)  # an invalid action (no valid call of any tool) is no event: nothing records it


@dataclass(frozen=True)
class BranchConfig:
    """Where branch points come from and which are kept.

    Attributes:
        sources: Scripted policies whose episodes are cut: ``reference`` (meets faults only), ``noisy`` (random calls
            with probability ``noise``) and ``near_miss`` (the reference's own call with one argument wrong).
        episodes: Evaluation folders (or ``episodes.jsonl`` files) of a model whose failed episodes are cut.
        kinds: Event kinds to cut at: fault kinds and ``rejected_call``; None cuts at every kind.
        per_task: Branch points kept per episode (spread over its events; the first event is always kept).
        keep_turns: Earlier exchanges (call and result) shown in the prompt, the latest ones; None shows all. Every
            action is replayed whatever is shown.
        noise: Mistake probability per step of the ``noisy`` and ``near_miss`` sources.
    """

    sources: tuple[str, ...] = SCRIPTED_SOURCES
    episodes: tuple[str, ...] = ()
    kinds: tuple[str, ...] | None = None
    per_task: int = 2
    keep_turns: int | None = None
    noise: float = 0.3

    def __post_init__(self) -> None:
        from envs.core import FAULT_KINDS
        from envs.core.tools import suggest

        for name in ("sources", "episodes", "kinds"):
            value = getattr(self, name)
            if isinstance(value, str):
                object.__setattr__(self, name, (value,))
            elif value is not None and not isinstance(value, tuple):
                object.__setattr__(self, name, tuple(value))
        for source in self.sources:
            if source not in SCRIPTED_SOURCES:
                raise ValueError(f"unknown branch source {source!r}{suggest(source, list(SCRIPTED_SOURCES))}; "
                                 f"scripted sources: {', '.join(SCRIPTED_SOURCES)} (a model's episodes go in "
                                 "'episodes': evaluation folders)")
        valid = [*FAULT_KINDS, REJECTED]
        for kind in self.kinds or ():
            if kind not in valid:
                raise ValueError(f"unknown branch event kind {kind!r}{suggest(kind, valid)}; valid: {', '.join(valid)}")
        if self.per_task < 1:
            raise ValueError(f"per_task is the number of branch points per episode, >= 1, got {self.per_task}")
        if self.keep_turns is not None and self.keep_turns < 0:
            raise ValueError(f"keep_turns must be >= 0 or None (all earlier turns), got {self.keep_turns}")
        if not 0.0 <= self.noise <= 1.0:
            raise ValueError(f"noise is a probability in [0, 1], got {self.noise}")


# ---------------------------------------------------------------------------------------------------------------
# Where an episode may be cut


def _outcome(step: Mapping[str, Any]) -> str:
    """A step's structured outcome (``ok``, ``rejected``, ``fault``, ``invalid``): the environment's
    ``info["outcome"]``, recorded with the step."""
    outcome = step.get("outcome")
    if isinstance(outcome, Mapping):
        outcome = outcome.get("kind") or outcome.get("status")
    if outcome is None:
        raise ValueError(f"step {step.get('turn')} has no recorded outcome (info['outcome']); record it with the "
                         "step, or re-run the evaluation with this version")
    return str(outcome)


def branch_events(steps: Sequence[Mapping[str, Any]], *, initial_faults: Sequence[Mapping[str, Any]] = (),
                  kinds: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """The points where an episode may be cut: ``{"turn", "kind", "tool"}``, a branch starting after ``turn``.

    An event is a fault that fired at a step (its kind) or a call a tool refused (``rejected_call``: outcome
    ``rejected``), the events the environment keeps a recovery record of (``info["recovery"]``); a seeded error
    (present before turn 1) is an event at turn 0. The episode's last step gives no branch point: nothing is left
    to do. A fault that hit a step recorded with ``"mistake": True`` (a scripted policy's deliberate wrong call) is
    skipped: the right answer to it is not to make that call again, which is not what "handled" means for a fault.
    ``kinds`` keeps only those event kinds.
    """
    events = []
    if any(f.get("kind") == "seeded_error" for f in initial_faults) and steps:
        events.append({"turn": 0, "kind": "seeded_error", "tool": None})
    for i, step in enumerate(steps[:-1]):
        turn = i + 1
        fired = [f for f in step.get("faults") or () if f.get("turn") == turn]
        if fired and step.get("mistake"):
            continue
        if fired:
            events.extend({"turn": turn, "kind": f["kind"], "tool": f.get("tool")} for f in fired[:1])
        elif _outcome(step) in _REJECTED_OUTCOMES:
            events.append({"turn": turn, "kind": REJECTED, "tool": step.get("tool")})
    if kinds is not None:
        events = [e for e in events if e["kind"] in kinds]
    return events


def _spread(events: Sequence[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    """``count`` events spread evenly over the list, the first always among them (deterministic)."""
    if len(events) <= count:
        return list(events)
    if count == 1:
        return [events[0]]
    picks = sorted({round(i * (len(events) - 1) / (count - 1)) for i in range(count)})
    return [events[i] for i in picks]


# ---------------------------------------------------------------------------------------------------------------
# The prompt: earlier turns as chat turns


def _assistant(action: str, structured: bool) -> dict[str, Any]:
    """An action as the assistant message a model sees: a structured tool call (rendered by the chat template, as
    SFT demonstrations are) when ``structured`` and the action is one well-formed call, else the text verbatim."""
    if structured:
        from training.datasets import parse_tool_call

        call = parse_tool_call(action)
        if call is not None:
            return {"role": "assistant", "content": "", "tool_calls": [call]}
    return {"role": "assistant", "content": action}


def transcript(prompt: str, steps: Sequence[Mapping[str, Any]], *, structured: bool,
               keep_turns: int | None = None) -> list[dict[str, Any]]:
    """The chat messages of a branch start: the task prompt as the user turn, then each earlier step's action (an
    assistant message) and observation (a ``tool`` message named after the tool the environment ran).

    ``structured`` renders each action as a ``tool_calls`` message (for scripted actions, which are bare JSON); a
    model's recorded actions go as it wrote them, with the message it recorded if any, exactly as the evaluation
    showed them to it (``training.evaluation.episode.chat_messages``). ``keep_turns`` keeps only the latest
    exchanges after the user turn.
    """
    messages: list[dict[str, Any]] = [{"role": "user", "content": prompt}]
    for step in steps:
        recorded = step.get("message")
        messages.append(dict(recorded) if recorded and not structured else _assistant(step["action"], structured))
        tool_message = {"role": "tool", "content": step["observation"]}
        if step.get("tool") is not None:
            tool_message["name"] = step["tool"]
        messages.append(tool_message)
    if keep_turns is not None:
        messages = messages[:1] + (messages[1:][-2 * keep_turns :] if keep_turns else [])
    return messages


def _row(*, env_id: str, task_seed: int, split: str, seed: int, faults: Mapping[str, float], prompt: str,
         steps: Sequence[Mapping[str, Any]], event: Mapping[str, Any], source: str, structured: bool,
         keep_turns: int | None) -> dict[str, Any]:
    cut = int(event["turn"])
    head = steps[:cut]
    row = {
        "prompt": transcript(prompt, head, structured=structured, keep_turns=keep_turns),
        "env_id": env_id,
        "task_seed": int(task_seed),
        "split": split,
        "seed": int(seed),
        "faults": json.dumps(dict(faults), sort_keys=True),
        "actions": [s["action"] for s in head],
        "branch_turn": cut,
        "branch_kind": event["kind"],
        "branch_tool": event.get("tool") or "",
        "source": source,
    }
    row["branch_id"] = _branch_id(row)
    return row


def _branch_id(row: Mapping[str, Any]) -> str:
    """A short stable name of a branch start: what it replays, not where it came from."""
    text = json.dumps([row["env_id"], row["split"], row["task_seed"], row["seed"], row["faults"], row["actions"]])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


# ---------------------------------------------------------------------------------------------------------------
# Sources


def _scripted_policy(source: str, noise: float):
    from envs.policies import NoisyReferencePolicy, ReferencePolicy

    if source == "reference":
        return ReferencePolicy()
    return NoisyReferencePolicy(noise, near_miss=1.0 if source == "near_miss" else 0.0)


def scripted_episode(env, policy, *, task_seed: int, split: str, seed: int) -> tuple[str, dict[str, Any], list[dict]]:
    """Play ``policy`` on one task; return the prompt, reset's info and the steps (action, observation, tool,
    outcome, the faults that fired at the step, and ``mistake``: the action was not the reference's next call) as
    the environment reported them."""
    rng = np.random.default_rng([seed, 7])  # the policy's own stream, never the env's
    observation, info = env.reset(seed=seed, options={"task_seed": int(task_seed), "split": split})
    prompt, steps, seen, done = observation, [], len(info.get("faults") or ()), False
    while not done:
        action = policy.act(env, observation, rng=rng)
        mistake = action != env.unwrapped.reference_action()  # asking the reference changes nothing
        observation, _, terminated, truncated, step_info = env.step(action)
        faults = list(step_info.get("faults") or ())
        steps.append({"turn": len(steps) + 1, "action": action, "observation": observation,
                      "tool": step_info.get("tool"), "outcome": step_info.get("outcome"), "faults": faults[seen:],
                      "mistake": mistake})
        seen = len(faults)
        done = terminated or truncated
    return prompt, info, steps


def scripted_branches(env_id: str, task_seeds: Iterable[int], *, split: str = "train",
                      faults: Mapping[str, float] | str | None = None, config: BranchConfig = BranchConfig(),
                      seed: int = 0, max_turns: int | None = None) -> list[dict[str, Any]]:
    """Branch-start rows from scripted episodes under ``faults``: every source plays every task (episode seed
    ``seed + i`` for the i-th task), and each episode is cut at up to ``config.per_task`` of its events.

    Rows are in task order, sources in ``config.sources`` order within a task; a row replays one prefix of a scripted
    episode, so the same arguments give the same rows.
    """
    rates = parse_faults(faults)
    env = make_env(env_id, faults=rates, max_turns=max_turns)
    rows, seen = [], set()
    try:
        for i, task_seed in enumerate(task_seeds):
            for source in config.sources:
                policy = _scripted_policy(source, config.noise)
                prompt, info, steps = scripted_episode(env, policy, task_seed=task_seed, split=split, seed=seed + i)
                events = branch_events(steps, initial_faults=info.get("faults") or (), kinds=config.kinds)
                for event in _spread(events, config.per_task):
                    row = _row(env_id=env_id, task_seed=task_seed, split=split, seed=seed + i, faults=rates,
                               prompt=prompt, steps=steps, event=event, source=source, structured=True,
                               keep_turns=config.keep_turns)
                    if row["branch_id"] not in seen:  # the reference and a noisy policy can share a prefix
                        seen.add(row["branch_id"])
                        rows.append(row)
    finally:
        env.close()
    return rows


def eval_folder(path: str | os.PathLike) -> tuple[Path, dict[str, Any]]:
    """The evaluation folder of ``path`` (the folder or its ``episodes.jsonl``) and its ``config.json``."""
    path = Path(path)
    folder = path.parent if path.name == "episodes.jsonl" else path
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{folder} is not an evaluation folder (no config.json beside episodes.jsonl); give "
                                "a folder written by `recoverygym eval` or by a training run's evaluation")
    return folder, json.loads(config_file.read_text())


def episode_branches(path: str | os.PathLike, config: BranchConfig = BranchConfig()) -> list[dict[str, Any]]:
    """Branch-start rows from a model's recorded episodes: its failed episodes, each cut at up to
    ``config.per_task`` turns where it met a fault or a rejection, those it did not handle first (then the rest, in
    turn order).

    Each episode is replayed from its recorded actions to learn, from the environment and never from the text, what
    every step's outcome was, which faults fired and which events the model then handled (the recovery records);
    a replay that does not give the recorded transcript (the environment changed since the evaluation) is an error.
    The prompt shows the model's actions as it wrote them, as the evaluation showed them.
    """
    from training.evaluation.runner import _supported_fault_kinds, fault_dict, load_episodes

    folder, eval_doc = eval_folder(path)
    settings = eval_doc["eval"]
    rows, supported, envs = [], {}, {}
    for record in load_episodes(folder / "episodes.jsonl"):
        if record["success"] or record.get("branch"):
            continue
        env_id = record["env_id"]
        if env_id not in supported:
            supported[env_id] = _supported_fault_kinds(env_id)
        faults = fault_dict(record["fault_kind"], settings["fault_rate"], supported[env_id]) or {}
        key = (env_id, json.dumps(faults, sort_keys=True))
        if key not in envs:
            envs[key] = make_env(env_id, faults=faults, max_turns=settings.get("max_turns"))
        steps, initial, recovery = _replayed(envs[key], record)
        events = branch_events(steps, initial_faults=initial, kinds=config.kinds)
        handled = {(r["turn"], r["kind"]): r["handled"] for r in recovery}
        events.sort(key=lambda e: (handled.get((e["turn"], e["kind"])) is not False, e["turn"]))
        for event in events[: config.per_task]:
            row = _row(env_id=env_id, task_seed=record["task_seed"], split=record["split"], seed=record["seed"],
                       faults=faults, prompt=record["prompt"], steps=steps, event=event,
                       source=f"episodes:{record.get('policy')}", structured=False, keep_turns=config.keep_turns)
            row["handled_in_episode"] = handled.get((event["turn"], event["kind"]))
            rows.append(row)
    for env in envs.values():
        env.close()
    return rows


def _replayed(env, record: Mapping[str, Any]) -> tuple[list[dict[str, Any]], list[dict], list[dict]]:
    """Replay a recorded episode's stepped actions: its steps as recorded, each with the environment's outcome and
    the faults that fired on it; the faults present at the start (a seeded error); the final recovery records."""
    stepped = [s for s in record["steps"] if not _unstepped(s, record)]
    if not stepped:
        return [], [], []
    actions = [s["action"] for s in stepped]
    _, info = env.reset(seed=int(record["seed"]), options={"task_seed": int(record["task_seed"]),
                                                          "split": record["split"], "actions": actions[:-1]})
    initial = [f for f in info["faults"] if not f.get("turn")]
    history = list(info["history"])
    seen = len(info["faults"])
    observation, _, terminated, truncated, last = env.step(actions[-1])
    if not (terminated or truncated):  # ended by a reply without a tool call: what is still open was not handled
        last = {**last, "recovery": env.unwrapped.stop()["recovery"]}
    history.append({"action": actions[-1], "observation": observation, "outcome": last["outcome"],
                    "faults": last["faults"][seen:]})
    for i, (recorded, replayed) in enumerate(zip(stepped, history, strict=True)):
        if recorded["observation"] != replayed["observation"]:
            raise ValueError(
                f"{record['env_id']} task {record['task_seed']} ({record['split']}): replaying the recorded actions "
                f"gives another observation at turn {i + 1} than the evaluation recorded; the environment changed "
                "since that evaluation. Re-run the evaluation with this version."
            )
    steps = [{**recorded, "outcome": replayed["outcome"], "faults": replayed["faults"]}
             for recorded, replayed in zip(stepped, history, strict=True)]
    return steps, initial, list(last["recovery"])


def _unstepped(step: Mapping[str, Any], record: Mapping[str, Any]) -> bool:
    """A recorded turn the environment never ran: the last turn of an episode ended by a reply without a tool call."""
    return record.get("ended") == "no tool call" and step is record["steps"][-1]


# ---------------------------------------------------------------------------------------------------------------
# Replay, datasets, files


def replay(row: Mapping[str, Any], *, env=None, max_turns: int | None = None) -> tuple[str, dict[str, Any]]:
    """Reset an environment to a branch start: task, faults and seed of ``row``, its ``actions`` replayed.

    Returns the environment's ``(observation after the last action, info)``; ``info["history"]`` is the replayed
    transcript and ``info["prompt"]`` the task prompt. ``env`` is reused when given (its faults must be the row's).
    """
    if env is None:
        env = make_env(row["env_id"], faults=parse_faults(row.get("faults")), max_turns=max_turns)
    return env.reset(seed=int(row["seed"]), options={"task_seed": int(row["task_seed"]), "split": row["split"],
                                                     "actions": parse_actions(row.get("actions"))})


def branch_features():
    """Arrow features of branch-start rows: the prompt as JSON per message (plain Arrow structs would merge the
    tool-call argument dicts across rows and fill missing keys with nulls)."""
    from datasets import Features, Json, List, Value

    return Features({
        "prompt": List(Json()),
        "env_id": Value("string"),
        "task_seed": Value("int64"),
        "split": Value("string"),
        "seed": Value("int64"),
        "faults": Value("string"),
        "actions": List(Value("string")),
        "branch_turn": Value("int64"),
        "branch_kind": Value("string"),
        "branch_tool": Value("string"),
        "source": Value("string"),
        "branch_id": Value("string"),
    })


def branch_dataset(rows: Sequence[Mapping[str, Any]]):
    """A ``datasets.Dataset`` of branch-start rows for ``GRPOTrainer`` (with the environment adapter)."""
    from datasets import Dataset

    if not rows:
        raise ValueError("no branch starts: the sources met no fault or rejection of the chosen kinds; raise the "
                         "fault rates or the noise, or allow more event kinds")
    features = branch_features()
    return Dataset.from_list([{k: row[k] for k in features} for row in rows], features=features)


def write_rows(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike) -> None:
    """Save branch-start rows as JSON lines (written to a temporary file, then renamed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_suffix(path.suffix + ".partial")
    staging.write_text("".join(json.dumps(dict(r)) + "\n" for r in rows))
    staging.replace(path)


def load_rows(path: str | os.PathLike) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def continuation_dataset(rows: Sequence[Mapping[str, Any]], *, max_turns: int | None = None,
                         only_successful: bool = True):
    """Supervised rows from branch starts: ``prompt`` is the branch start's messages, ``completion`` the reference
    policy's continuation from that state (tool calls, results, a final message), so with TRL's
    ``completion_only_loss`` the loss covers only what comes after the trouble, not the scripted mistakes before it.
    """
    from datasets import Dataset, Features, Json, List, Value

    from training.adapter import tool_schemas
    from training.datasets import FINAL_MESSAGE, parse_tool_call

    out, envs = [], {}
    for row in rows:
        key = (row["env_id"], row.get("faults") or "{}")
        if key not in envs:
            envs[key] = make_env(row["env_id"], faults=parse_faults(row.get("faults")), max_turns=max_turns)
        env = envs[key]
        replay(row, env=env)
        completion, reward, done = [], 0.0, False
        while not done:
            action = env.unwrapped.reference_action()
            observation, reward, terminated, truncated, info = env.step(action)
            done = terminated or truncated
            call = parse_tool_call(action)
            completion.append({"role": "assistant", "content": "", "tool_calls": [call]})
            completion.append({"role": "tool", "name": info.get("tool"), "content": observation})
        completion.append({"role": "assistant", "content": FINAL_MESSAGE})
        if only_successful and reward < 1.0:
            continue
        out.append({"prompt": row["prompt"], "completion": completion, "tools": json.dumps(tool_schemas(env)),
                    "branch_id": row["branch_id"], "score": float(reward)})
    for env in envs.values():
        env.close()
    features = Features({"prompt": List(Json()), "completion": List(Json()), "tools": Value("string"),
                         "branch_id": Value("string"), "score": Value("float64")})
    return Dataset.from_list(out, features=features)


def rows_digest(rows: Sequence[Mapping[str, Any]]) -> str:
    """A digest of a list of branch starts (what an evaluation of them is resumed against)."""
    return hashlib.sha256("".join(r["branch_id"] for r in rows).encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------------------------
# Evaluation from branch starts: "from this state, does the model recover?"


def _history(row: Mapping[str, Any], info: Mapping[str, Any], env) -> list:
    """The replayed turns as evaluation ``Turn``s (marked scripted: no policy chose them), each with the assistant
    message the row's prompt shows, so a model sees the prompt a GRPO rollout from this row sees."""
    from envs.core import ToolCall, parse_action
    from training.evaluation.episode import Turn

    history = list(info.get("history") or ())
    prompt = row["prompt"]
    shown = prompt[1::2] if len(prompt) == 1 + 2 * len(history) else None
    turns = []
    for i, step in enumerate(history):
        parsed = parse_action(step["action"], env.unwrapped.tool_specs())
        outcome = _outcome(step)
        turns.append(Turn(turn=i + 1, action=step["action"], observation=step["observation"],
                          tool=parsed.name if isinstance(parsed, ToolCall) else None,
                          invalid_action=outcome == "invalid", ok=outcome == "ok" and not step.get("faults"),
                          scripted=True, faults=[dict(f) for f in step.get("faults") or ()], outcome=outcome,
                          message=dict(shown[i]) if shown else _assistant(step["action"], True)))
    return turns


def branch_outcome(record: Mapping[str, Any]) -> bool | None:
    """Whether the event a branch started at was handled, from the environment's recovery record of it
    (``record["recovery"]``: kind and turn match the branch's); None when the environment recorded none."""
    branch = record.get("branch") or {}
    for entry in record.get("recovery") or ():
        if entry.get("turn") == branch.get("turn") and entry.get("kind") == branch.get("kind"):
            return bool(entry.get("handled"))
    return None


def evaluate_branches(policy, rows: Sequence[Mapping[str, Any]], out_dir: str | os.PathLike, *,
                      max_turns: int | None = None, batch_size: int = 16, progress: bool = True,
                      overwrite: bool = False) -> dict[str, Any]:
    """Play ``policy`` from every branch start, resumably; returns the results (also in ``out_dir/results.json``).

    Each episode replays its row's actions, then the policy plays on from there with the replayed turns as its
    history (the prompt a GRPO rollout from the row sees), until the finishing tool, the turn limit or a turn without
    a tool call, exactly as ``recoverygym eval`` plays. ``out_dir/episodes.jsonl`` holds one record per branch in
    the runner's format, plus ``branch`` (id, turn, kind, tool, source) and ``recovery`` (the environment's
    records); ``branch_outcome`` reads whether the branch's event was handled.
    """
    import time

    from tqdm.auto import tqdm

    from training.evaluation.episode import Episode
    from training.evaluation.runner import EpisodeKey, _record, _Slot, _step, fault_setting, load_episodes

    out = Path(out_dir)
    config_doc = {"branches": {"rows": len(rows), "digest": rows_digest(rows), "max_turns": max_turns},
                  "policy": policy.config()}
    config_file = out / "config.json"
    if overwrite:
        for name in ("config.json", "episodes.jsonl", "results.json"):
            (out / name).unlink(missing_ok=True)
    elif config_file.exists() and json.loads(config_file.read_text()) != config_doc:
        raise ValueError(f"{out} holds a branch evaluation of other rows or another policy; pass overwrite=True "
                         "or another folder")
    out.mkdir(parents=True, exist_ok=True)
    config_file.write_text(json.dumps(config_doc, indent=2, sort_keys=True))
    jsonl = out / "episodes.jsonl"
    done = {r["branch"]["id"] for r in load_episodes(jsonl)}
    todo = iter([(i, row) for i, row in enumerate(rows) if row["branch_id"] not in done])

    def start(index: int, row: Mapping[str, Any]) -> tuple[_Slot, Mapping[str, Any]]:
        env = make_env(row["env_id"], faults=parse_faults(row.get("faults")), max_turns=max_turns)
        observation, info = replay(row, env=env)
        key = EpisodeKey(row["env_id"], row["split"], fault_setting(parse_faults(row.get("faults"))),
                         int(row["task_seed"]), index)
        episode = Episode(env=env, prompt=info.get("prompt", ""), info=dict(info),
                          rng=np.random.default_rng([int(row["seed"]), 1]), history=_history(row, info, env))
        return _Slot(key, env, episode, time.perf_counter(), fault_count=len(info["faults"])), row

    started = time.perf_counter()
    bar = tqdm(total=len(rows), initial=len(done), desc=f"branches {policy.name}", unit="ep", disable=not progress)
    slots: list[tuple[_Slot, Mapping[str, Any]]] = []
    with jsonl.open("a", encoding="utf-8") as sink:
        while True:
            while len(slots) < batch_size and (item := next(todo, None)) is not None:
                slots.append(start(*item))
            if not slots:
                break
            for (slot, _), action in zip(slots, policy.act([s.episode for s, _ in slots]), strict=True):
                _step(slot, action)
            for slot, row in [s for s in slots if s[0].done]:
                record = _record(slot, policy, 0)
                record["seed"] = int(row["seed"])
                record["branch"] = {"id": row["branch_id"], "turn": int(row["branch_turn"]),
                                    "kind": row["branch_kind"], "tool": row.get("branch_tool") or None,
                                    "source": row.get("source")}
                sink.write(json.dumps(record) + "\n")
                sink.flush()
                slot.env.close()
                bar.update(1)
            slots = [s for s in slots if not s[0].done]
    bar.close()
    return write_branch_results(out, config_doc, wall_s=time.perf_counter() - started)


def branch_summary(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Per branch event kind and over all: branches, how many of their events were handled (with a Wilson
    interval), success and mean score of the episodes that followed."""
    from collections import defaultdict

    from training.evaluation.metrics import wilson_interval

    groups: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for r in records:
        groups[r["branch"]["kind"]].append(r)
        groups["all"].append(r)

    def one(group):
        outcomes = [branch_outcome(r) for r in group]
        known = [o for o in outcomes if o is not None]
        handled = sum(known)
        lo, hi = wilson_interval(handled, len(known))
        turns = [e.get("turns") for r in group for e in r.get("recovery") or ()
                 if e.get("turn") == r["branch"]["turn"] and e.get("kind") == r["branch"]["kind"] and e.get("handled")
                 and e.get("turns") is not None]
        successes = sum(bool(r["success"]) for r in group)
        slo, shi = wilson_interval(successes, len(group))
        return {"branches": len(group), "recorded": len(known), "handled": handled,
                "handled_rate": handled / len(known) if known else None, "handled_ci95": [lo, hi],
                "mean_turns_to_handle": sum(turns) / len(turns) if turns else None,
                "success_rate": successes / len(group), "success_ci95": [slo, shi],
                "mean_score": sum(float(r["score"]) for r in group) / len(group),
                "tokens_per_episode": sum(r.get("generated_tokens") or 0 for r in group) / len(group)}

    return {kind: one(group) for kind, group in sorted(groups.items())}


def write_branch_results(out: Path, config_doc: Mapping[str, Any], *, wall_s: float | None = None) -> dict[str, Any]:
    from training.evaluation.runner import load_episodes, package_versions

    records = load_episodes(out / "episodes.jsonl")
    results = {"policy": records[0]["policy"] if records else None, "config": dict(config_doc),
               "versions": package_versions(), "episodes": len(records), "wall_s": wall_s,
               "branches": branch_summary(records) if records else {}}
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    return results


def paired_branches(base: Sequence[Mapping[str, Any]], other: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """``other`` against ``base`` on the branch starts both played (paired by branch id): for the handled outcome
    and for success, how many branches ``other`` does better / worse on, and the exact sign test's p."""
    from training.evaluation.metrics import sign_test_p

    a = {r["branch"]["id"]: r for r in base}
    b = {r["branch"]["id"]: r for r in other}
    shared = sorted(set(a) & set(b))
    out: dict[str, Any] = {"branches": len(shared)}
    for name, value in (("handled", branch_outcome), ("success", lambda r: bool(r["success"]))):
        pairs = [(value(a[k]), value(b[k])) for k in shared]
        pairs = [(x, y) for x, y in pairs if x is not None and y is not None]
        better = sum(y and not x for x, y in pairs)
        worse = sum(x and not y for x, y in pairs)
        out[name] = {"pairs": len(pairs), "better": better, "worse": worse, "p": sign_test_p(better, worse)}
    return out
