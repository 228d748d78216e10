"""``recoverygym train <config>``: supervised warm start, then GRPO on multi-turn environment rollouts.

The run folder (``run.output_dir``) holds everything a run makes::

    config.yaml            the resolved configuration
    base-model/            the locally built model (``model.name_or_path: tiny`` only)
    sft/checkpoint-N/      SFTTrainer checkpoints; sft/final/ once the stage finished
    grpo/checkpoint-N/     GRPOTrainer checkpoints; grpo/final/ is the trained model
    sft/runs, grpo/runs    tensorboard logs (TRL's report_to)
    eval/<point>/<set>/    each evaluation (point: before, after_sft, after; set: heldout, train, seen), an ordinary
                           evaluation folder (config.json, episodes.jsonl, results.json): `recoverygym report` reads it
    results.json           the evaluations' summaries, stage timings, final training metrics

Running the same command again continues an interrupted run: finished stages and evaluations are skipped and a
stage in progress resumes from its last checkpoint (model, optimizer, scheduler, RNG and data position).
This module is the only place that knows the order of the stages; everything else is TRL's.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from training.config import ConfigError, ExperimentConfig, load_config, trl_config

__all__ = [
    "build_trainer",
    "evaluate_model",
    "main",
    "prepare_base_model",
    "results_table",
    "run_training",
    "split_label",
]

POINT_LABELS = {"before": "before training", "after_sft": "after SFT", "after": "after training"}
SPLIT_LABELS = {
    "heldout": "held-out split",
    "train": "unseen train-template tasks",
    "seen": "SFT training tasks (seen)",
}


def split_label(split: str, max_required_steps: int | None = None) -> str:
    """How a table row names an evaluation split; says so when ``data.max_required_steps`` filtered its tasks."""
    label = SPLIT_LABELS[split]
    if split != "heldout" and max_required_steps is not None:
        label += f" (only tasks of <= {max_required_steps} calls)"
    return label


def _log(message: str) -> None:
    """A progress line, from the main process only (``RANK`` is set by ``accelerate launch`` and torchrun)."""
    if os.environ.get("RANK", "0") == "0":
        print(f"[recoverygym {time.strftime('%H:%M:%S')}] {message}", flush=True)


# ---------------------------------------------------------------------------------------------------------------
# Evaluation: the same runner, model policy, episode records and folders as ``recoverygym eval``


def evaluate_model(model, config: ExperimentConfig, *, split: str = "heldout", out_dir: str | Path,
                   name: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Evaluate ``model`` (a checkpoint folder, or a ``TransformersPolicy``) on one evaluation set, greedily.

    Runs ``training.evaluation.runner.run_eval`` with the set's ``eval_config``, so ``out_dir`` is an ordinary
    evaluation folder (``config.json``, ``episodes.jsonl``, ``results.json``) that ``recoverygym report`` reads and
    an interrupted evaluation resumes from. The model sees the prompt training rendered (tools in TRL's order, the
    transcript as GRPO builds it): ``tests/test_rendering.py``. An episode ends when the finishing tool runs or at the
    turn limit (``eval.max_turns``, else ``env.max_turns``, else the env's own); every action is one turn, an action
    without a valid tool call included.

    Returns the summary kept in ``results.json``: success rate, mean score, tool calls per episode and, per episode,
    its task seed and outcome (for the paired comparison with "before").
    """
    from training.config import eval_config
    from training.evaluation.metrics import recovery_behaviour
    from training.evaluation.model_policy import TransformersPolicy
    from training.evaluation.runner import load_episodes, run_eval

    runner_config = eval_config(config, split)
    if not isinstance(model, TransformersPolicy):
        model = _model_policy(str(model), config, name)
    out = Path(out_dir)
    run_eval(model, runner_config, out, progress=progress, command=f"recoverygym train (evaluation set {split})")
    episodes = load_episodes(out / "episodes.jsonl")
    n = len(episodes)
    faults = config.env.faults if config.eval.faults is None else config.eval.faults
    return {
        "tasks": n,
        "env_id": config.env.id,
        "split": split,
        "task_seeds": sorted({e["task_seed"] for e in episodes}),
        "faults": dict(faults),
        "max_turns": runner_config.max_turns,
        "folder": str(out),
        "success_rate": sum(e["success"] for e in episodes) / n if n else 0.0,
        "mean_score": sum(e["score"] for e in episodes) / n if n else 0.0,
        "mean_tool_calls": sum(e["turns"] - e["invalid_actions"] for e in episodes) / n if n else 0.0,
        "truncated": sum(e["truncated"] for e in episodes),
        "recovery": recovery_behaviour(episodes),
        "episodes": [
            {"task_seed": e["task_seed"], "sample": e["sample"], "success": e["success"], "score": e["score"]}
            for e in episodes
        ],
    }


def _model_policy(path: str, config: ExperimentConfig, name: str | None):
    """The greedy transformers policy ``recoverygym eval --policy model:PATH`` would build, on the run's device."""
    from accelerate import PartialState

    from training.evaluation.model_policy import TransformersPolicy

    device = PartialState().device
    return TransformersPolicy(
        path,
        max_new_tokens=config.eval.max_new_tokens,
        seed=config.run.seed,
        dtype=config.eval.dtype or config.model.dtype,
        device=None if device.type == "cpu" else device,
        name=name,
    )


# ---------------------------------------------------------------------------------------------------------------
# Stages


def prepare_base_model(config: ExperimentConfig, run_dir: Path) -> str:
    """The starting checkpoint: built locally (tiny), converted once (smollm2), or a hub id / folder."""
    from training.models import build_tiny_model, smollm2_path

    name = config.model.name_or_path
    if name == "smollm2":
        _log("SmolLM2-135M-Instruct: the packaged GGUF, converted on first use and cached ...")
        return str(smollm2_path())
    if name != "tiny":
        return name
    target = run_dir / "base-model"
    if (target / "config.json").is_file():
        return str(target)
    tiny = config.model.tiny
    _log(f"building a tiny {tiny.architecture} model (hidden {tiny.hidden_size}, {tiny.num_layers} layers) ...")
    texts = _transcripts(config, tiny.tokenizer_episodes)
    build_tiny_model(
        target,
        texts=texts,
        seed=config.run.seed,
        hidden_size=tiny.hidden_size,
        num_layers=tiny.num_layers,
        vocab_size=tiny.vocab_size,
        architecture=tiny.architecture,
    )
    return str(target)


def _transcripts(config: ExperimentConfig, episodes: int) -> list[str]:
    """Rendered training-split demonstrations (tool list included): the text the tiny tokenizer is trained on."""
    from transformers.utils.chat_template_utils import render_jinja_template

    from training.models import tool_chat_template

    data = _sft_data(config, _task_seeds(config, 0, episodes), only_successful=False)
    template = tool_chat_template()
    return [
        render_jinja_template([row["messages"]], tools=json.loads(row["tools"]), chat_template=template)[0][0]
        for row in data
    ]


def _task_seeds(config: ExperimentConfig, start: int, count: int) -> list[int]:
    """Training-split task seeds from ``start`` on that pass ``data.max_required_steps``."""
    from training.datasets import select_task_seeds

    return select_task_seeds(
        config.env.id, start=start, count=count, max_required_steps=config.data.max_required_steps
    )


def _sft_data(config: ExperimentConfig, task_seeds, *, only_successful: bool = True):
    from training.datasets import sft_dataset

    return sft_dataset(
        config.env.id,
        list(task_seeds),
        faults=config.env.faults,
        max_turns=config.env.max_turns,
        noise=config.data.sft_noise,
        noisy_share=config.data.sft_noisy_share,
        near_miss=config.data.sft_near_miss,
        seed=config.run.seed,
        only_successful=only_successful,
    )


def _peft_config(config: ExperimentConfig):
    lora = config.model.lora
    if lora is None:
        return None
    from peft import LoraConfig

    return LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        task_type="CAUSAL_LM",
    )


def _load(path: str, config: ExperimentConfig):
    from training.models import load_model_and_tokenizer

    return load_model_and_tokenizer(path, dtype=config.model.dtype)


def _last_checkpoint(stage_dir: Path, resume: bool) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    if not resume or not stage_dir.is_dir():
        return None
    return get_last_checkpoint(str(stage_dir))


def _save_final(trainer, tokenizer, final: Path) -> None:
    """Save the trained model as a plain checkpoint (LoRA merged), so the next stage or a user loads it directly.

    Written to a staging folder and renamed, so ``final/`` exists only once complete (resuming relies on that).
    """
    staging = final.with_name(final.name + ".partial")
    model = trainer.model
    if hasattr(model, "merge_and_unload"):  # peft: merge on the main process, ZeRO-3's shards gathered first
        peft_model = trainer.accelerator.unwrap_model(model)
        with _gathered(peft_model):
            if trainer.accelerator.is_main_process:
                peft_model.merge_and_unload().save_pretrained(staging)
    else:
        trainer.save_model(str(staging))  # gathers sharded weights under DeepSpeed/FSDP; writes on the main process
    if trainer.accelerator.is_main_process:
        if not any(staging.glob("*.safetensors")) and not any(staging.glob("pytorch_model*.bin")):
            raise RuntimeError(
                f"no model weights were written to {staging}: under DeepSpeed ZeRO-3 the sharded weights are only "
                "gathered into a checkpoint with zero3_save_16bit_model: true in the accelerate config "
                "(stage3_gather_16bit_weights_on_model_save in a DeepSpeed JSON), as configs/accelerate/zero3.yaml has"
            )
        tokenizer.save_pretrained(staging)
        staging.rename(final)
    trainer.accelerator.wait_for_everyone()


def _gathered(model):
    """Every parameter whole on every process for the duration (DeepSpeed ZeRO-3 shards them); otherwise nothing.

    Every process must enter it. Changes made inside are not written back to the shards: it is for saving.
    """
    from transformers.integrations.deepspeed import is_deepspeed_zero3_enabled

    if not is_deepspeed_zero3_enabled():
        return contextlib.nullcontext()
    import deepspeed

    return deepspeed.zero.GatheredParameters(list(model.parameters()), modifier_rank=None)


def build_trainer(stage: str, config: ExperimentConfig, start: str, *, callbacks: Sequence[Any] = (),
                  verbose: bool = False, data=None):
    """The TRL trainer of one stage (``sft`` or ``grpo``), starting from the checkpoint folder ``start``.

    SFT: ``trl.SFTTrainer`` on scripted demonstrations. GRPO: ``trl.GRPOTrainer`` with the environment adapter as
    ``environment_factory`` and one dataset row per training task (the env owns the reward). ``data`` replaces the
    dataset the config describes (``datasets.sft_dataset`` / ``grpo_dataset`` rows).
    """
    import trl
    from transformers.trainer_callback import PrinterCallback

    from training.adapter import make_environment_factory

    args = trl_config(config, stage)
    model, tokenizer = _load(start, config)
    common = dict(
        model=model,
        args=args,
        processing_class=tokenizer,
        peft_config=_peft_config(config),
        callbacks=[_StageProgress(stage, verbose), *callbacks],
    )
    if stage == "sft":
        if data is None:
            data = _sft_data(config, _task_seeds(config, 0, config.data.sft_tasks))
            _log(f"SFT on {len(data)} demonstrations ({config.data.sft_tasks} tasks, failed noisy ones dropped)")
        _check_sft_length(data, tokenizer, args.max_length)
        trainer = trl.SFTTrainer(train_dataset=data, **common)
    elif stage == "grpo":
        from training.datasets import grpo_dataset

        what = "tasks"
        if data is None and config.data.grpo_starts == "branches":
            data, what = grpo_branch_dataset(config), "branch starts"
        elif data is None:
            data = grpo_dataset(
                _task_seeds(config, config.data.grpo_task_offset, config.data.grpo_tasks),
                split="train",
                faults=config.env.faults,
                seed=config.run.seed,
            )
        factory = make_environment_factory(config.env.id, faults=config.env.faults, max_turns=config.env.max_turns)
        _log(f"GRPO on {len(data)} {what} x {args.num_generations} rollouts, environment {config.env.id}")
        trainer = trl.GRPOTrainer(train_dataset=data, environment_factory=factory, **common)
    else:
        raise ValueError(f"unknown stage {stage!r}; stages are 'sft' and 'grpo'")
    trainer.remove_callback(PrinterCallback)  # _StageProgress shows the steps instead
    return trainer


def grpo_branch_dataset(config: ExperimentConfig):
    """GRPO rows that start mid-episode (``data.grpo_starts: branches``): branch starts of the GRPO tasks from the
    ``branches`` section's scripted sources, under ``env.faults``, plus those cut from the model evaluation folders it
    names (``branches.episodes``); see ``training/branches.py``. Deterministic in ``run.seed``."""
    from training.branches import branch_dataset, episode_branches, scripted_branches

    seeds = _task_seeds(config, config.data.grpo_task_offset, config.data.grpo_tasks)
    rows = scripted_branches(config.env.id, seeds, split="train", faults=config.env.faults, config=config.branches,
                             seed=config.run.seed, max_turns=config.env.max_turns) if config.branches.sources else []
    scripted = len(rows)
    for folder in config.branches.episodes:
        recorded = episode_branches(folder, config.branches)
        wrong = sorted({(r["env_id"], r["split"]) for r in recorded} - {(config.env.id, "train")})
        if wrong:
            raise ConfigError(f"branches.episodes: {folder} holds episodes of {wrong}; GRPO trains on "
                              f"{config.env.id}'s train split only (the held-out split is never trained on)")
        rows += recorded
    _check_replays(rows[scripted:], config)
    _log(f"branch starts: {scripted} from scripted episodes ({', '.join(config.branches.sources) or 'none'}) of "
         f"{len(seeds)} tasks, {len(rows) - scripted} from model episodes ({len(config.branches.episodes)} folder(s))")
    return branch_dataset(rows)


def _check_replays(rows, config: ExperimentConfig) -> None:
    """Replay each model-recorded branch start under the run's environment settings before training: one recorded
    with a longer turn limit than ``env.max_turns`` (or by an environment that has changed since) fails here, not
    in the middle of GRPO."""
    from training.adapter import make_env, parse_faults
    from training.branches import replay

    envs: dict[str, Any] = {}  # one per fault setting
    for row in rows:
        if row["faults"] not in envs:
            envs[row["faults"]] = make_env(config.env.id, faults=parse_faults(row["faults"]),
                                           max_turns=config.env.max_turns)
        env = envs[row["faults"]]
        try:
            replay(row, env=env)
        except ValueError as err:
            raise ConfigError(f"branches.episodes: branch start {row['branch_id']} (task {row['task_seed']}) does "
                              f"not replay under env.max_turns={config.env.max_turns}: {err}") from err
    for env in envs.values():
        env.close()


def _check_sft_length(data, tokenizer, max_length: int | None) -> None:
    """Refuse a max_length that cuts demonstrations: TRL would silently drop or truncate the assistant turns."""
    if max_length is None:
        return
    longest = max(
        len(
            tokenizer.apply_chat_template(
                row["messages"], tools=json.loads(row["tools"]), tokenize=True, return_dict=False
            )
        )
        for row in data
    )
    if longest > max_length:
        raise ConfigError(
            f"sft.max_length={max_length} but demonstrations are up to {longest} tokens long (the tool list alone "
            f"is most of the prompt); set sft.max_length to at least {longest}"
        )


def _train_stage(stage: str, config: ExperimentConfig, start: str, run_dir: Path, callbacks,
                 verbose: bool = False) -> dict[str, Any]:
    """Run one stage, resuming from its last checkpoint if any; returns timing and the last logged metrics."""
    stage_dir = run_dir / stage
    resume_from = _last_checkpoint(stage_dir, config.run.resume)
    trainer = build_trainer(stage, config, start, callbacks=callbacks, verbose=verbose)
    if resume_from:
        _log(f"{stage}: resuming from {resume_from}")
    started = time.perf_counter()
    output = trainer.train(resume_from_checkpoint=resume_from)
    seconds = time.perf_counter() - started
    _save_final(trainer, trainer.processing_class, stage_dir / "final")
    logged = [h for h in trainer.state.log_history if "loss" in h]
    summary = {
        "seconds": round(seconds, 1),
        "global_step": trainer.state.global_step,
        "resumed_from": resume_from,
        "train_loss": output.training_loss,
        "last_log": logged[-1] if logged else {},
        "log_history": trainer.state.log_history,
    }
    if stage == "grpo":
        summary["grpo_rows"] = _grpo_rows(trainer.train_dataset)
    return summary


def _grpo_rows(data) -> dict[str, Any]:
    """What the GRPO rows were: whole episodes or branch starts, how many, and per branch source and event kind."""
    columns = data.column_names or ()
    out: dict[str, Any] = {"starts": "branches" if "actions" in columns else "whole", "rows": len(data)}
    if "branch_kind" in columns:
        out["by_source"] = dict(sorted(Counter(data["source"]).items()))
        out["by_kind"] = dict(sorted(Counter(data["branch_kind"]).items()))
    return out


class _StageProgress:
    """Where a stage is: one progress bar with the step, its ETA and the latest loss/reward (a line per logged step
    with ``--verbose``), then one line with the stage's time. Into a log file the bar is redrawn every 30 s."""

    KEYS = ("loss", "reward", "reward_std", "mean_token_accuracy", "tools/call_frequency")

    def __new__(cls, stage: str, verbose: bool = False):
        from transformers import TrainerCallback

        from training.evaluation.runner import _bar_timing

        class StageProgress(TrainerCallback):
            bar = None
            started = 0.0
            shown = ""

            def on_train_begin(self, args, state, control, **kwargs):
                self.started = time.perf_counter()
                if not verbose and state.is_world_process_zero:
                    from tqdm.auto import tqdm

                    self.bar = tqdm(total=state.max_steps, initial=state.global_step, desc=stage, unit="step",
                                    dynamic_ncols=True, **_bar_timing())

            def on_step_end(self, args, state, control, **kwargs):
                if self.bar is not None:
                    self.bar.update(state.global_step - self.bar.n)

            def on_log(self, args, state, control, logs=None, **kwargs):
                if not logs or "loss" not in logs:
                    return
                self.shown = " ".join(f"{k}={logs[k]:.4g}" for k in cls.KEYS if isinstance(logs.get(k), (int, float)))
                if self.bar is not None:
                    self.bar.set_postfix_str(self.shown.replace("tools/", ""), refresh=False)
                elif verbose:
                    _log(f"{stage} step {state.global_step}/{state.max_steps} {self.shown}")

            def on_train_end(self, args, state, control, **kwargs):
                if self.bar is not None:
                    self.bar.close()
                    self.bar = None
                seconds = time.perf_counter() - self.started
                _log(f"{stage} step {state.global_step}/{state.max_steps} done in {_duration(seconds)} {self.shown}")

        return StageProgress()


# ---------------------------------------------------------------------------------------------------------------
# The whole run


def _evaluate_point(point: str, path: str, config: ExperimentConfig, results: dict, results_file: Path) -> None:
    """Evaluate the checkpoint ``path`` once per evaluation set (on the main process) and record it under ``point``.

    Each set's episodes go to ``<run>/eval/<point>/<set>/``, an evaluation folder like any ``recoverygym eval`` writes.
    """
    from accelerate import PartialState

    state = PartialState()
    todo = [s for s in config.eval.splits if s not in results["eval"].get(point, {})]
    if point in config.eval.points and todo and state.is_main_process:
        _no_zero3_loading()
        run_dir = results_file.parent
        policy = _model_policy(path, config, f"{run_dir.name}-{point}")
        for split in todo:
            label = split_label(split, config.data.max_required_steps)
            folder = run_dir / "eval" / point / split
            _log(f"evaluating {POINT_LABELS[point]} on {label}: {folder}")
            started = time.perf_counter()
            summary = evaluate_model(policy, config, split=split, out_dir=folder, progress=True)
            summary["seconds"] = round(time.perf_counter() - started, 1)
            summary["model"] = path
            results["eval"].setdefault(point, {})[split] = summary
            rate, score = summary["success_rate"], summary["mean_score"]
            _log(f"{POINT_LABELS[point]}, {label}: success {rate:.1%}, mean score {score:.3f} "
                 f"({summary['tasks']} tasks, {_duration(summary['seconds'])})")
            _write_json(results_file, results)
        del policy
    state.wait_for_everyone()


def _duration(seconds: float) -> str:
    minutes, rest = divmod(int(round(seconds)), 60)
    return f"{minutes} min {rest} s" if minutes else f"{rest} s"


def _no_zero3_loading() -> None:
    """Let the main process load a whole model on its own under DeepSpeed ZeRO-3.

    A ZeRO-3 run leaves transformers' DeepSpeed config registered, and ``from_pretrained`` then partitions the
    weights across every process, waiting for the others, which are not loading (they wait at the barrier): it
    hangs. Dropping the registration makes it a plain load; the next stage's TRL config registers it again.
    """
    from transformers.integrations.deepspeed import unset_hf_deepspeed_config  # importable without deepspeed

    unset_hf_deepspeed_config()


def _write_json(path: Path, data: Any) -> None:
    staging = path.with_suffix(".tmp")
    staging.write_text(json.dumps(data, indent=2, default=str))
    staging.replace(path)


def results_table(results: dict[str, Any]) -> str:
    """The before/after table printed at the end of a run: one row per evaluation point and split.

    Handled: of the faults that fired and of the calls the environment rejected, how many the agent then handled,
    as the environment recorded it (``envs/core/recovery.py``).

    Rows of later points are also compared with "before" on the same task seeds: tasks solved now and not before /
    solved before and not now, and the exact sign test's p of that split (``metrics.paired_comparison``); "-" where
    there is no "before" to compare with under the same settings.
    """
    rows = [("evaluated", "tasks", "success", "mean score", "tool calls/episode", "faults handled",
             "rejections handled", "vs before: +/- tasks, p")]
    limit = results.get("config", {}).get("data", {}).get("max_required_steps")
    before = results["eval"].get("before", {})
    for point, label in POINT_LABELS.items():
        for split, e in results["eval"].get(point, {}).items():
            rows.append(
                (
                    f"{label}, {split_label(split, limit)}",
                    str(e["tasks"]),
                    f"{e['success_rate']:.1%}",
                    f"{e['mean_score']:.3f}",
                    f"{e['mean_tool_calls']:.1f}",
                    *_handled_cells(e.get("recovery")),
                    _versus(before.get(split), e) if point != "before" else "",
                )
            )
    if len(rows) == 1:
        return ("no evaluation in this run (eval.points is empty); evaluate the final model with "
                "`recoverygym eval --policy model:FINAL_MODEL ...` (docs/evaluation.md)")
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _handled_cells(behaviour: dict[str, Any] | None) -> tuple[str, str]:
    """``handled/events`` of the environment's recovery records (``metrics.recovery_behaviour``): over the faults
    that fired, and over the calls the environment rejected; "-" for a summary written before the records."""
    if behaviour is None:
        return "-", "-"
    faults = [s for kind, s in behaviour.items() if kind not in ("all", "rejected_call")]
    handled, events = sum(s["handled"] for s in faults), sum(s["events"] for s in faults)
    rejected = behaviour.get("rejected_call", {"handled": 0, "events": 0})
    return f"{handled}/{events}", f"{rejected['handled']}/{rejected['events']}"


def _versus(before: dict[str, Any] | None, after: dict[str, Any]) -> str:
    """``+a/-b, p=...``: tasks ``after`` solves and ``before`` did not, the reverse, and the sign test's p.

    "-" when there is nothing to pair: no "before", or one evaluated under other settings (a resumed run whose
    environment, faults or turn limit changed keeps its old "before").
    """
    from training.evaluation.metrics import paired_comparison

    same = ("env_id", "faults", "max_turns")
    if not before or any(before.get(key) != after.get(key) for key in same):
        return "-"

    def records(summary):
        return [{"env_id": "", "split": "", "fault_kind": "", **ep} for ep in summary.get("episodes", ())]

    paired = paired_comparison(records(before), records(after), resamples=0)
    if paired is None:
        return "-"
    return f"+{paired['better']}/-{paired['worse']}, p={paired['sign_test_p']:.2g}"


def run_training(
    config: str | Path | ExperimentConfig | None,
    *,
    overrides: Sequence[str] = (),
    callbacks: Sequence[Any] = (),
    verbose: bool = True,
) -> dict[str, Any]:
    """Run (or continue) the experiment described by ``config``; returns the results also written to results.json.

    Args:
        config: A YAML path, a loaded ``ExperimentConfig``, or None for the defaults (plus ``overrides``).
        overrides: ``section.key=value`` assignments applied on top of the YAML file (e.g. ``grpo.max_steps=10``).
        callbacks: Extra ``transformers.TrainerCallback`` objects for both trainers.
        verbose: A line per training step and the libraries' own output (progress bars of dataset preparation and
            weight loading, their warnings); False shows one progress bar per stage and quiets the libraries
            (``recoverygym train`` without ``--verbose``).
    """
    if not verbose:
        _quiet_libraries()
    from accelerate import PartialState
    from transformers import set_seed

    if not isinstance(config, ExperimentConfig):
        config = load_config(config, overrides)
    elif overrides:
        config = load_config(config.to_dict(), overrides)
    run_dir = Path(config.run.output_dir)
    results_file = run_dir / "results.json"
    if results_file.exists() and not config.run.resume:
        raise ConfigError(
            f"{run_dir} already holds a run; set run.resume=true to continue it or pick another run.output_dir"
        )
    state = PartialState()
    if state.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
        _write_config(run_dir / "config.yaml", config)
    state.wait_for_everyone()
    results = json.loads(results_file.read_text()) if results_file.exists() else {"eval": {}, "stages": {}}
    results["config"] = config.to_dict()
    set_seed(config.run.seed)
    started = time.perf_counter()

    with state.main_process_first():  # only the main process builds or converts the base model
        current = prepare_base_model(config, run_dir)
    _evaluate_point("before", current, config, results, results_file)
    for stage in config.run.stages:
        final = run_dir / stage / "final"
        if final.is_dir():
            _log(f"{stage}: already finished ({final}), skipping")
        else:
            set_seed(config.run.seed)
            results["stages"][stage] = _train_stage(stage, config, current, run_dir, callbacks, verbose)
            if state.is_main_process:
                _write_json(results_file, results)
        current = str(final)
        if stage == "sft" and "grpo" in config.run.stages:
            _evaluate_point("after_sft", current, config, results, results_file)
    _evaluate_point("after", current, config, results, results_file)
    if state.is_main_process:
        results = json.loads(results_file.read_text()) if results_file.exists() else results
        results["final_model"] = current
        results["seconds_this_invocation"] = round(time.perf_counter() - started, 1)
        _write_json(results_file, results)
        print("\n" + results_table(results) + "\n", flush=True)
        _log(f"run folder: {run_dir} (final model {current}, results {results_file})")
        if results["eval"]:
            _log(f"evaluation folders: {run_dir / 'eval'}/<point>/<set>; a report with plots and a trajectory viewer:")
            print("\n".join(f"  {command}" for command in _report_commands(results, run_dir)), flush=True)
    return results


def _report_commands(results: dict[str, Any], run_dir: Path) -> list[str]:
    """One ``recoverygym report`` command per evaluation set, "before" first (the paired baseline)."""
    import shlex

    sets = dict.fromkeys(split for point in POINT_LABELS for split in results["eval"].get(point, {}))
    commands = []
    for split in sets:
        folders = [str(run_dir / "eval" / p / split) for p in POINT_LABELS if split in results["eval"].get(p, {})]
        commands.append(shlex.join(["recoverygym", "report", *folders, "--out", str(run_dir / "report" / split)]))
    return commands


def _quiet_libraries() -> None:
    """What a newcomer should not have to read: the progress bars of dataset preparation and weight loading, TRL's
    notice that environment_factory is experimental, DeepSpeed's "no accelerator found" on a CPU, transformers' info
    and warning logs, and TRL's use of a property transformers deprecates. ``--verbose`` keeps them all."""
    import warnings

    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    import torch

    if not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")  # DeepSpeed would guess the same, with a warning
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    # TRL 1.16's generation context reads the model's is_gradient_checkpointing, which transformers 5.2x deprecates:
    # the libraries' business, not an argument of ours (ours use the current names).
    warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)


def _write_config(path: Path, config: ExperimentConfig) -> None:
    import yaml

    path.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))


def main(argv: Sequence[str] | None = None) -> int:
    """Command line of ``recoverygym train``; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="recoverygym train",
        description="Supervised warm start then GRPO on a recoverygym environment; evaluates before and after.",
    )
    parser.add_argument("config", help="experiment YAML, e.g. configs/quickstart.yaml")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one config value (YAML syntax), e.g. --set grpo.max_steps=10; repeatable",
    )
    parser.add_argument("--output-dir", help="run folder (same as --set run.output_dir=...)")
    parser.add_argument("--no-resume", action="store_true", help="refuse to continue an existing run folder")
    parser.add_argument("--verbose", action="store_true",
                        help="a line per training step, and the libraries' own progress bars and warnings")
    args = parser.parse_args(argv)
    overrides = list(args.overrides)
    if args.output_dir:
        overrides.append(f"run.output_dir={args.output_dir}")
    if args.no_resume:
        overrides.append("run.resume=false")
    try:
        run_training(args.config, overrides=overrides, verbose=args.verbose)
    except ConfigError as err:
        print(f"recoverygym train: {err}", file=sys.stderr)
        return 2
    finally:
        _end_process_group()
    return 0


def _end_process_group() -> None:
    """Take down torch.distributed's process group (DDP, DeepSpeed) before the interpreter does: left to exit-time
    teardown, a gloo/DeepSpeed process sometimes aborts (``terminate called without an active exception``) after
    the run has finished, and the launcher reports the run as failed."""
    if "torch" not in sys.modules:  # a config error before anything was imported
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":  # accelerate launch -m training.train CONFIG
    sys.exit(main())
