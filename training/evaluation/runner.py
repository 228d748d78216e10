"""Run a policy over environments x splits x fault kinds x tasks x samples, resumably, in batches.

Output folder layout::

    out/config.json      the exact evaluation and policy config (a resumed run must match it)
    out/episodes.jsonl   one record per finished episode, appended as episodes finish
    out/results.json     config, package versions, and the metrics per env, split and fault kind

Every episode has a key ``(env_id, split, fault_kind, task_seed, sample)`` and a seed derived from it and the run
seed, so an episode's result does not depend on which other episodes ran, in which order or batch: re-running an
interrupted evaluation skips the keys already in ``episodes.jsonl`` and gives the same results, and re-running it
with more tasks or samples (everything else the same) runs only the episodes it lacks.

An episode is what a GRPO rollout of ``recoverygym train`` is: the model policy sees the prompt training renders
(``Episode.tools``, ``chat_messages``), each turn's tool call is one environment step, a rejected call costs a turn
like any other, and the episode ends when the finishing tool runs, at the environment's turn limit, or at a turn
without a tool call (TRL ends a rollout there too). Scripted policies always make a call.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from training.adapter import make_env
from training.evaluation.episode import Episode, Policy, Turn, tool_call_key
from training.evaluation.metrics import summarize

__all__ = ["PROMPT_FORMAT", "EpisodeKey", "EvalConfig", "check_reproducible", "fault_dict", "fault_setting",
           "load_episodes", "run_eval", "task_seeds", "to_dataset", "write_results"]

FAULT_CHOICES = ("none", "all")

#: How a model policy is prompted and when its episode ends, recorded in ``config.json`` so that a folder is never
#: resumed under other rules. Absent (1): tools in the environment's declaration order, unnamed tool messages, and a
#: turn without a tool call cost a turn. 2: tools in TRL's order (by name) and tool messages named after the tool,
#: as SFT demonstrations and GRPO rollouts render them (tests/test_rendering.py), and a turn without a tool call
#: ends the episode, as it ends a GRPO rollout. Scripted policies always call a tool and render nothing: their
#: folders resume across the change.
PROMPT_FORMAT = 2


@dataclass(frozen=True)
class EvalConfig:
    """What to evaluate. Every field is recorded in ``config.json`` and ``results.json``.

    Attributes:
        env_ids: Registered environment ids, like ``recoverygym/SupportDesk-v0``.
        splits: Task splits to draw tasks from (``heldout`` for evaluation).
        fault_kinds: Fault settings, each ``none`` (no faults), ``all`` (every kind the env supports at
            ``fault_rate``), a single kind (``transient_error``, ``rate_limit``, ``write_timeout``, ``stale_read``,
            ``concurrent_edit``, ``seeded_error``), or kinds joined with ``+``, each optionally with its own rate
            (``transient_error=0.05+rate_limit=0.05``, what ``recoverygym train`` evaluates its ``env.faults``
            with); a setting with a kind an env does not support is skipped for that env and listed in the results.
        fault_rate: The rate of each enabled fault kind that names no rate of its own (per call; per episode for
            ``seeded_error``).
        tasks: Number of tasks per split: task seeds ``task_offset .. task_offset + tasks - 1``.
        task_offset: First task seed. 0 for the held-out split; a large one (``recoverygym train`` uses 1,000,000)
            for training-split tasks that no demonstration or GRPO prompt used.
        samples: Episodes per task (n in pass^k); k goes up to this.
        seed: Base seed; each episode's seed is derived from it and the episode key.
        max_turns: Turn limit per episode (the environment's: every action, valid or not, is one turn and the
            episode ends when the finishing tool runs or the limit is reached); None keeps each env's default.
        batch_size: Episodes in flight at once (what a model policy generates for together).
        max_required_steps: Keep only tasks the fault-free reference solves in at most this many calls: the
            ``tasks`` seeds are then the first that pass, from ``task_offset`` on. None (default) keeps every task.
        stop_without_tool_call: A turn without a tool call ends the episode, as it ends a GRPO rollout (default);
            False makes it cost a turn like a rejected call (the env answers with an error), which is not what
            training does but keeps a model that never calls a tool talking to the turn limit.
    """

    env_ids: tuple[str, ...]
    splits: tuple[str, ...] = ("heldout",)
    fault_kinds: tuple[str, ...] = ("none", "all")
    fault_rate: float = 0.2
    tasks: int = 20
    task_offset: int = 0
    samples: int = 4
    seed: int = 0
    max_turns: int | None = None
    batch_size: int = 16
    max_required_steps: int | None = None
    stop_without_tool_call: bool = True

    def __post_init__(self):
        for name in ("env_ids", "splits", "fault_kinds"):
            value = getattr(self, name)
            if isinstance(value, str):
                object.__setattr__(self, name, (value,))
            elif not isinstance(value, tuple):
                object.__setattr__(self, name, tuple(value))
            if not getattr(self, name):
                raise ValueError(f"EvalConfig.{name} is empty; give at least one")
        self._check_names()
        if not 0.0 <= self.fault_rate <= 1.0:
            raise ValueError(f"fault_rate is a probability in [0, 1], got {self.fault_rate}")
        for name in ("tasks", "samples", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"EvalConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.task_offset < 0:
            raise ValueError(f"task_offset is a task seed, >= 0, got {self.task_offset}")
        if self.max_turns is not None and self.max_turns < 1:
            raise ValueError(f"max_turns must be >= 1 or None (env default), got {self.max_turns}")
        if self.max_required_steps is not None and self.max_required_steps < 1:
            raise ValueError(f"max_required_steps must be >= 1 or None (every task), got {self.max_required_steps}")

    def _check_names(self) -> None:
        """Unknown env ids, splits and fault kinds fail here, before anything runs, naming the valid ones."""
        import envs
        from envs.core import FAULT_KINDS, SPLITS
        from envs.core.tools import suggest

        for setting in self.fault_kinds:
            parse_fault_setting(setting, self.fault_rate, FAULT_KINDS)
        # module:id or an installed package's id: resolve_env_id imports what registers it (or raises a ValueError
        # saying what to do); the registered id is kept, so episodes and their seeds do not depend on the spelling
        object.__setattr__(self, "env_ids", tuple(envs.resolve_env_id(name) for name in self.env_ids))
        for split in self.splits:
            if split not in SPLITS:
                raise ValueError(f"unknown split {split!r}{suggest(str(split), list(SPLITS))}; "
                                 f"valid: {', '.join(SPLITS)}")
        for name in ("env_ids", "splits", "fault_kinds"):
            value = getattr(self, name)
            if len(set(value)) != len(value):
                raise ValueError(f"EvalConfig.{name} lists an item twice: {list(value)}")

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


@dataclass(frozen=True, order=True)
class EpisodeKey:
    env_id: str
    split: str
    fault_kind: str
    task_seed: int
    sample: int

    def seed(self, base: int) -> int:
        """A seed for this episode that depends only on the key and the run's base seed."""
        text = f"{base}|{self.env_id}|{self.split}|{self.fault_kind}|{self.task_seed}|{self.sample}"
        return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")

    @classmethod
    def of(cls, record: dict[str, Any]) -> EpisodeKey:
        return cls(record["env_id"], record["split"], record["fault_kind"], record["task_seed"], record["sample"])


def parse_fault_setting(setting: str, rate: float, known: Sequence[str]) -> dict[str, float] | None:
    """The rates one fault setting names (``none``, ``all``: None, meaning every supported kind at ``rate``; a kind;
    ``a+b``; ``a=0.05+b=0.1``); raises ValueError naming the valid kinds for anything else."""
    from envs.core.tools import suggest

    if setting == "none":
        return {}
    if setting == "all":
        return None
    rates: dict[str, float] = {}
    for part in setting.split("+"):
        kind, sep, value = part.partition("=")
        if kind not in known:
            valid = [*FAULT_CHOICES, *known]
            raise ValueError(f"unknown fault setting {setting!r}: {kind!r} is not a fault kind{suggest(kind, valid)}; "
                             f"valid: {', '.join(valid)}, or kinds joined with '+' (kind=rate for a rate of its own)")
        try:
            rates[kind] = float(value) if sep else rate
        except ValueError:
            raise ValueError(f"fault setting {setting!r}: {value!r} is not a rate; write e.g. {kind}=0.05") from None
        if not 0.0 <= rates[kind] <= 1.0:
            raise ValueError(f"fault setting {setting!r}: the rate of {kind} must be in [0, 1], got {rates[kind]}")
    return rates


def fault_dict(kind: str, rate: float, supported: Sequence[str]) -> dict[str, float] | None:
    """The ``faults=`` mapping for one fault setting, or None when the env does not support one of its kinds."""
    from envs.core import FAULT_KINDS

    rates = parse_fault_setting(kind, rate, FAULT_KINDS)
    if rates is None:  # all
        return {k: rate for k in supported}
    return rates if all(k in supported for k in rates) else None


def fault_setting(faults: dict[str, float]) -> str:
    """The fault setting that enables exactly ``faults`` (kind -> rate): ``none``, or ``kind=rate+...`` by name."""
    return "+".join(f"{kind}={rate:g}" for kind, rate in sorted(faults.items()) if rate > 0) or "none"


def _supported_fault_kinds(env_id: str) -> tuple[str, ...]:
    env = make_env(env_id)
    try:
        return tuple(getattr(env.unwrapped, "fault_kinds", ()))
    finally:
        env.close()


def plan(config: EvalConfig) -> tuple[list[EpisodeKey], list[dict[str, str]]]:
    """All episode keys of a config in run order, and the (env, fault kind) pairs skipped as unsupported."""
    keys, skipped = [], []
    for env_id in config.env_ids:
        supported = _supported_fault_kinds(env_id)
        for kind in config.fault_kinds:
            if fault_dict(kind, config.fault_rate, supported) is None:
                skipped.append({"env_id": env_id, "fault_kind": kind,
                                "reason": f"{env_id} supports faults {', '.join(supported) or 'none'}"})
                continue
            for split in config.splits:
                for task in task_seeds(config, env_id, split):
                    keys.extend(EpisodeKey(env_id, split, kind, task, s) for s in range(config.samples))
    return keys, skipped


def task_seeds(config: EvalConfig, env_id: str, split: str) -> list[int]:
    """The task seeds a config evaluates on one env and split: ``tasks`` seeds from ``task_offset`` on, only those
    whose fault-free reference solution takes at most ``max_required_steps`` calls when that is set."""
    from training.datasets import select_task_seeds

    return select_task_seeds(env_id, split=split, start=config.task_offset, count=config.tasks,
                             max_required_steps=config.max_required_steps)


# ---------------------------------------------------------------------------------------------------------------
# Episode records on disk


def load_episodes(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Read an ``episodes.jsonl``; a final line cut short by an interruption is dropped (and cut from the file)."""
    path = Path(path)
    if not path.exists():
        return []
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        data = data[: data.rfind(b"\n") + 1]
        path.write_bytes(data)
    return [json.loads(line) for line in data.decode().splitlines() if line.strip()]


def is_error(observation: str) -> bool:
    """Whether an observation reports a failed call: ``envs.core`` starts every one with ``error`` (``error: ...``
    for a tool's own refusal or a malformed action, ``error 503``/``429``/``504``/``409`` for injected faults and
    a tool still rate-limited)."""
    return observation.lstrip().startswith("error")


@dataclass
class _Slot:
    key: EpisodeKey
    env: Any
    episode: Episode
    start: float
    fault_count: int = 0
    done: bool = False
    final_info: dict[str, Any] = field(default_factory=dict)
    terminated: bool = False
    truncated: bool = False
    stopped: bool = False  # ended by a turn without a tool call


def _start(key: EpisodeKey, config: EvalConfig, supported: dict[str, tuple[str, ...]]) -> _Slot:
    faults = fault_dict(key.fault_kind, config.fault_rate, supported[key.env_id])
    env = make_env(key.env_id, faults=faults, max_turns=config.max_turns)
    seed = key.seed(config.seed)
    prompt, info = env.reset(seed=seed, options={"task_seed": key.task_seed, "split": key.split})
    episode = Episode(env=env, prompt=prompt, info=info, rng=np.random.default_rng([seed, 1]))
    return _Slot(key, env, episode, time.perf_counter(), fault_count=len(info.get("faults") or ()))


def _step(slot: _Slot, action, stop_without_tool_call: bool = True) -> None:
    if stop_without_tool_call and tool_call_key(action.text) is None:
        _end_without_tool_call(slot, action)
        return
    obs, _reward, terminated, truncated, info = slot.env.step(action.text)
    faults = list(info.get("faults") or ())
    fired = faults[slot.fault_count :]
    slot.fault_count = len(faults)
    invalid = bool(info.get("invalid_action"))
    slot.episode.history.append(
        Turn(
            turn=int(info.get("turn", len(slot.episode.history) + 1)),
            action=action.text,
            observation=obs,
            tool=info.get("tool"),
            invalid_action=invalid,
            ok=not invalid and not fired and not is_error(obs),
            tokens=action.tokens,
            scripted=action.scripted,
            faults=fired,
            message=action.message,
            outcome=info.get("outcome"),
        )
    )
    if terminated or truncated:
        slot.done, slot.terminated, slot.truncated, slot.final_info = True, terminated, truncated, info


def _end_without_tool_call(slot: _Slot, action) -> None:
    """A turn without a tool call ends the episode, as it ends a GRPO rollout (TRL stops when a completion has no
    tool call); the environment is not stepped but stopped (``ToolEnv.stop``): the score is the checker's verdict on
    the state as it is, and what the recovery records still had open was not handled."""
    slot.episode.history.append(
        Turn(turn=len(slot.episode.history) + 1, action=action.text, observation="", tool=None, invalid_action=True,
             ok=False, tokens=action.tokens, scripted=action.scripted, message=action.message)
    )
    slot.done, slot.stopped = True, True
    slot.final_info = slot.env.unwrapped.stop()


def _record(slot: _Slot, policy: Policy, base_seed: int) -> dict[str, Any]:
    info, ep = slot.final_info, slot.episode
    history = ep.history
    return {
        **dataclasses.asdict(slot.key),
        "policy": policy.name,
        "seed": slot.key.seed(base_seed),
        "template": ep.info.get("template"),
        "required_steps": ep.info.get("required_steps"),
        "success": bool(info.get("success", False)),
        "score": float(info.get("score", 0.0)),
        "components": info.get("components", {}),
        "reasons": list(info.get("reasons", [])),
        "terminated": slot.terminated,
        "truncated": slot.truncated,
        "ended": "finished" if slot.terminated else "turn limit" if slot.truncated else "no tool call",
        "turns": len(history),
        "invalid_actions": sum(t.invalid_action for t in history),
        "scripted_actions": sum(t.scripted for t in history),
        "generated_tokens": sum(t.tokens for t in history),
        "faults": list(info.get("faults") or []),
        "recovery": list(info.get("recovery") or []),  # the environment's records: did the agent handle each event
        "tools": [t["function"]["name"] for t in ep.info.get("tools") or ()],  # declaration order, as ever
        "tool_kinds": {name: spec.kind for name, spec in slot.env.unwrapped.tool_specs().items()},
        "prompt": ep.prompt,
        "steps": [t.to_record() for t in history],
        "wall_s": round(time.perf_counter() - slot.start, 4),
    }


# ---------------------------------------------------------------------------------------------------------------
# The run


GROWABLE = ("tasks", "samples")  # raising these only adds episodes: every key's seed depends on the key alone


def _grows(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Whether ``new`` is ``old`` with more tasks and/or samples, so its episodes are a superset of ``old``'s."""
    def rest(doc):
        return doc | {"eval": {k: v for k, v in doc.get("eval", {}).items() if k not in GROWABLE}}

    return rest(old) == rest(new) and all(new["eval"].get(k, 0) >= old["eval"].get(k, 0) for k in GROWABLE)


def _check_resume(out: Path, config_doc: dict[str, Any], overwrite: bool) -> None:
    """Raise unless ``out`` is empty or holds an evaluation these settings continue; ``overwrite`` empties it."""
    path = out / "config.json"
    if overwrite:
        for name in ("config.json", "episodes.jsonl", "results.json"):
            (out / name).unlink(missing_ok=True)
    elif path.exists():
        old = json.loads(path.read_text())
        old.get("eval", {}).setdefault("task_offset", 0)  # folders written before the field existed
        old.get("eval", {}).setdefault("max_required_steps", None)
        old.get("eval", {}).setdefault("stop_without_tool_call", True)  # no scripted policy ever wrote no call
        if "prompt_format" not in old:  # written before PROMPT_FORMAT 2
            if _renders_prompts(old.get("policy", {})):
                raise ValueError(
                    f"{out} holds an evaluation of a model prompted with the earlier rendering (tools in the "
                    "environment's declaration order; a reply without a tool call cost a turn); this version "
                    "prompts and ends episodes as training does (tools by name; such a reply ends the episode), so "
                    "its episodes would not be comparable: pass --overwrite (overwrite=True) or another --out"
                )
            old["prompt_format"] = PROMPT_FORMAT  # scripted policies render no prompt: their episodes are unchanged
        if old != config_doc and not _grows(old, config_doc):
            changed = sorted(k for k in set(old) | set(config_doc) if old.get(k) != config_doc.get(k))
            raise ValueError(
                f"{out} holds an evaluation with a different config (differs in: {', '.join(changed)}); "
                "resume only with the same settings (or more --tasks / --samples, which adds the missing "
                "episodes), or pass --overwrite (overwrite=True) or another --out"
            )


def _renders_prompts(policy_doc: dict[str, Any]) -> bool:
    """Whether a recorded policy config prompts a model (itself or a wrapped ``inner`` one)."""
    if policy_doc.get("policy") in ("transformers", "openai"):
        return True
    inner = policy_doc.get("inner")
    return isinstance(inner, dict) and _renders_prompts(inner)


def _check_recorded(out: Path, records: Sequence[dict[str, Any]]) -> None:
    """Refuse to add episodes to a folder written before episodes carried the environment's recovery records: the
    recovery-behaviour metrics would count the old episodes' faults and rejections as never having happened."""
    old = sum("recovery" not in r for r in records)
    if old:
        raise ValueError(
            f"{out}: {old} of its {len(records)} episodes were recorded before episodes carried the environment's "
            "recovery records, so the handled-event counts would silently leave their events out: pass --overwrite "
            "(overwrite=True) or another --out"
        )


def check_reproducible(records: Sequence[dict[str, Any]], config: EvalConfig) -> None:
    """Raise unless the environments, in this process, give every finished task the prompt it was recorded with.

    Resuming and comparing runs both assume that task k of a split is the same task in every process. An
    environment whose task generator depends on anything but its seed (``PYTHONHASHSEED``-dependent set order, an
    unseeded RNG) would otherwise mix different tasks into one evaluation without a trace.
    """
    first: dict[tuple, dict[str, Any]] = {}
    for r in records:
        first.setdefault((r["env_id"], r["split"], r["fault_kind"], r["task_seed"]), r)
    supported = {env_id: _supported_fault_kinds(env_id) for env_id in {k[0] for k in first}}
    envs: dict[tuple[str, str], Any] = {}
    try:
        for (env_id, split, kind, task_seed), r in sorted(first.items(), key=lambda kv: tuple(map(str, kv[0]))):
            if (env_id, kind) not in envs:
                envs[env_id, kind] = make_env(env_id, faults=fault_dict(kind, config.fault_rate, supported[env_id]),
                                              max_turns=config.max_turns)
            prompt, _ = envs[env_id, kind].reset(seed=r["seed"], options={"task_seed": task_seed, "split": split})
            if prompt != r["prompt"]:
                raise ValueError(
                    f"{env_id} gives task {task_seed} of the {split} split (faults={kind}) another prompt in this "
                    "process than the one recorded in episodes.jsonl: its task generator depends on something other "
                    "than the seed (PYTHONHASHSEED-dependent set or dict order, an unseeded RNG), so resuming would "
                    "mix different tasks. Fix the environment, or start again with --overwrite"
                )
    finally:
        for env in envs.values():
            env.close()


def run_eval(policy: Policy, config: EvalConfig, out_dir: str | os.PathLike, *, progress: bool = True,
             overwrite: bool = False, command: str | None = None) -> dict[str, Any]:
    """Evaluate ``policy``, appending finished episodes to ``out_dir/episodes.jsonl``; returns the results dict.

    Keeps ``config.batch_size`` episodes in flight: each round asks the policy for one action per live episode,
    steps every env, and refills the slots of finished episodes from the queue.
    """
    out = Path(out_dir)
    config_doc = {"eval": config.to_dict(), "policy": policy.config(), "prompt_format": PROMPT_FORMAT}
    _check_resume(out, config_doc, overwrite)
    jsonl = out / "episodes.jsonl"
    finished = load_episodes(jsonl)
    done = {EpisodeKey.of(r) for r in finished}
    keys, skipped = plan(config)
    todo: Iterator[EpisodeKey] = iter([k for k in keys if k not in done])
    supported = {env_id: _supported_fault_kinds(env_id) for env_id in config.env_ids}
    remaining = len(keys) - len(done & set(keys))
    if finished and remaining:
        _check_recorded(out, finished)
        check_reproducible(finished, config)
    out.mkdir(parents=True, exist_ok=True)  # written only once the folder is known to take these episodes
    (out / "config.json").write_text(json.dumps(config_doc, indent=2, sort_keys=True))

    from tqdm.auto import tqdm

    started = time.perf_counter()
    bar = tqdm(total=len(keys), initial=len(keys) - remaining, desc=f"eval {policy.name}", unit="ep",
               disable=not progress, dynamic_ncols=True, **_bar_timing())
    slots: list[_Slot] = []
    turns = finished = wins = 0
    shown = time.perf_counter()
    with jsonl.open("a", encoding="utf-8") as sink:
        while True:
            while len(slots) < config.batch_size and (key := next(todo, None)) is not None:
                slots.append(_start(key, config, supported))
            if not slots:
                break
            for slot, action in zip(slots, policy.act([s.episode for s in slots]), strict=True):
                _step(slot, action, config.stop_without_tool_call)
            turns += len(slots)
            for slot in [s for s in slots if s.done]:
                record = _record(slot, policy, config.seed)
                sink.write(json.dumps(record) + "\n")
                sink.flush()
                slot.env.close()
                finished += 1
                wins += record["success"]
                bar.update(1)
            slots = [s for s in slots if not s.done]
            if time.perf_counter() - shown > 1.0:  # slow model turns: show that turns are being played
                shown = time.perf_counter()
                bar.set_postfix_str(f"{turns} turns, {len(slots)} in flight, {wins}/{finished} succeeded",
                                    refresh=sys.stderr.isatty())  # into a log file: shown at the next redraw
    bar.set_postfix_str(f"{turns} turns, {wins}/{finished} succeeded", refresh=True)
    bar.close()
    return write_results(out, config_doc, skipped=skipped, wall_s=time.perf_counter() - started, command=command)


def _bar_timing() -> dict[str, float]:
    """tqdm's redraw intervals: often on a terminal, every 30 s into a log file (each redraw is a line there; tqdm's
    monitor thread would otherwise redraw every ``maxinterval``, 10 s)."""
    if sys.stderr.isatty():
        return {"mininterval": 0.1}
    return {"mininterval": 30.0, "maxinterval": 30.0}


def package_versions() -> dict[str, str]:
    """Versions of Python, the platform, the packages that can change results, and the git commit."""
    versions = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in ("recoverygym", "gymnasium", "numpy", "torch", "transformers", "trl", "datasets"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    try:
        root = Path(__file__).resolve().parents[2]
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=5, check=False)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5, check=False)
        if commit.returncode == 0:
            versions["git_commit"] = commit.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return versions


def write_results(out: Path, config_doc: dict[str, Any], *, skipped=(), wall_s: float | None = None,
                  command: str | None = None) -> dict[str, Any]:
    """Compute the metrics of ``out/episodes.jsonl`` and write ``out/results.json``."""
    episodes = load_episodes(out / "episodes.jsonl")
    policy_name = episodes[0]["policy"] if episodes else None
    results = {
        "policy": policy_name,
        "config": config_doc,
        "command": command,
        "versions": package_versions(),
        "episodes": len(episodes),
        "skipped": list(skipped),
        "wall_s": wall_s,
        "summary": summarize(episodes) if episodes else [],
        "overall": summarize(episodes, keys=("env_id",)) if episodes else [],
    }
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    return results


def to_dataset(episodes: Sequence[dict[str, Any]]):
    """Trajectories as a ``datasets.Dataset``: one row per episode.

    Columns: the episode key, outcome and counts, ``reasons``, ``faults`` (JSON text), ``tools`` (names), and
    ``messages``: the chat transcript as ``{"role", "content"}`` strings, ready for SFT on successful episodes
    (e.g. ``ds.filter(lambda r: r["success"])``).
    """
    import datasets

    rows = []
    for ep in episodes:
        messages = [{"role": "user", "content": ep["prompt"]}]
        for step in ep["steps"]:
            messages.append({"role": "assistant", "content": step["action"]})
            messages.append({"role": "tool", "content": step["observation"]})
        rows.append({
            "env_id": ep["env_id"], "split": ep["split"], "fault_kind": ep["fault_kind"],
            "task_seed": ep["task_seed"], "sample": ep["sample"], "seed": ep["seed"], "policy": ep["policy"],
            "template": str(ep.get("template")), "required_steps": int(ep.get("required_steps") or 0),
            "success": ep["success"], "score": ep["score"], "turns": ep["turns"],
            "invalid_actions": ep["invalid_actions"], "generated_tokens": ep["generated_tokens"],
            "reasons": ep["reasons"], "faults": json.dumps(ep["faults"]), "tools": ep["tools"],
            "messages": messages,
        })
    return datasets.Dataset.from_list(rows)
