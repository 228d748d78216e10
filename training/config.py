"""Experiment configuration: one YAML file, loaded strictly.

Our own sections (``run``, ``env``, ``model``, ``data``, ``eval``) map onto the frozen dataclasses below: an unknown
or misspelt key is an error that names it and suggests the nearest valid one. TRL's sections (``sft``, ``grpo``) are
passed unchanged to ``trl.SFTConfig`` / ``trl.GRPOConfig``, which validate their own fields; we only add the
suggestion to their "unexpected keyword" errors and fill in the few fields the run owns (output folders, seed,
logging). The ``eval`` section is split the same way: when and on which task sets the run evaluates is ours
(``TrainingEvalConfig``); what one evaluation is (tasks, turn limit, samples, batch) is
``training.evaluation.runner.EvalConfig``, the one definition ``recoverygym eval`` uses too, whose fields are passed to
it unchanged (``eval_config``).

PyYAML follows YAML 1.1, where ``1e-6`` (no dot) is a string: numbers written that way are converted, in our
sections by the field's type and in TRL's sections by their look.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training.branches import BranchConfig, eval_folder

__all__ = [
    "ConfigError",
    "DataConfig",
    "EnvConfig",
    "ExperimentConfig",
    "LoraSettings",
    "ModelConfig",
    "RunConfig",
    "TinyModelConfig",
    "TrainingEvalConfig",
    "eval_config",
    "load_config",
    "trl_config",
]

STAGES = ("sft", "grpo")
# Fields of TRL's configs that the run sets itself, so one YAML key cannot disagree with another.
RUN_OWNED_TRL_FIELDS = {"output_dir": "run.output_dir", "seed": "run.seed"}
# The same for training.evaluation.runner.EvalConfig: the eval section's other keys are its fields.
RUN_OWNED_EVAL_FIELDS = {
    "env_ids": "env.id",
    "fault_kinds": "eval.faults (or env.faults)",
    "fault_rate": "eval.faults (or env.faults)",
    "seed": "run.seed",
    "max_required_steps": "data.max_required_steps",
}
EVAL_POINTS = ("before", "after_sft", "after")
EVAL_SPLITS = ("heldout", "train", "seen")
TRAIN_SPLIT_OFFSET = 1_000_000  # first task seed of the ``train`` evaluation set unless eval.task_offset says otherwise


class ConfigError(ValueError):
    """A configuration file or value that cannot be used; the message says where and what would be valid."""


DTYPES = ("fast", "float32", "bfloat16", "float16", "auto")


def _check_dtype(key: str, value: str | None, default: str = "or leave it out for the default") -> None:
    if value is not None and value not in DTYPES:
        raise ConfigError(f"{key}={value!r}: use {', '.join(DTYPES)} ({default})")


def _suggest(word: str, options: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""


@dataclass(frozen=True)
class RunConfig:
    """Where the run lives and what it does."""

    output_dir: str = "runs/quickstart"
    """Run folder: base model, stage checkpoints, tensorboard logs, results.json."""
    seed: int = 0
    """Seed of model init, data order, fault draws and sampling."""
    stages: tuple[str, ...] = STAGES
    """Stages to run, in order: ``sft`` (supervised warm start) and/or ``grpo``."""
    resume: bool = True
    """Continue an interrupted run in ``output_dir`` from its last checkpoint (finished stages are skipped)."""

    def __post_init__(self) -> None:
        unknown = [s for s in self.stages if s not in STAGES]
        if unknown or not self.stages:
            raise ConfigError(f"run.stages={list(self.stages)!r}: each stage must be one of {list(STAGES)}")


@dataclass(frozen=True)
class EnvConfig:
    """The environment trained on."""

    id: str = "recoverygym/SupportDesk-v0"
    """A registered environment id."""
    faults: dict[str, float] = field(default_factory=dict)
    """Fault rates during training rollouts and demonstrations, e.g. ``{transient_error: 0.1}``."""
    max_turns: int | None = None
    """Turn limit override; None keeps the environment's own."""

    def __post_init__(self) -> None:
        if self.max_turns is not None and self.max_turns < 1:
            raise ConfigError(f"env.max_turns={self.max_turns}: must be at least 1, or null for the env's default")


@dataclass(frozen=True)
class TinyModelConfig:
    """Shape of the model built locally when ``model.name_or_path`` is ``tiny``."""

    hidden_size: int = 64
    num_layers: int = 2
    vocab_size: int = 2048
    architecture: str = "qwen2"
    """``qwen2`` (word-level tokenizer) or ``llama`` (line-level tokenizer: about 5x shorter sequences on CPU)."""
    tokenizer_episodes: int = 200
    """Reference-policy episodes whose rendered transcripts train the tokenizer."""

    def __post_init__(self) -> None:
        if self.architecture not in ("qwen2", "llama"):
            raise ConfigError(f"model.tiny.architecture={self.architecture!r}: use 'qwen2' or 'llama'")


@dataclass(frozen=True)
class LoraSettings:
    """LoRA through peft; absent means full fine-tuning."""

    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: str | list[str] = "all-linear"


@dataclass(frozen=True)
class ModelConfig:
    """The policy model."""

    name_or_path: str = "tiny"
    """``tiny`` (built locally), ``smollm2`` (SmolLM2-135M-Instruct, offline), or a hub id / local folder."""
    dtype: str | None = None
    """None: float32 on CPU, the checkpoint's dtype on GPU; or ``float32``, ``bfloat16``, ``float16``, ``fast``,
    ``auto``."""
    tiny: TinyModelConfig = field(default_factory=TinyModelConfig)
    lora: LoraSettings | None = None

    def __post_init__(self) -> None:
        _check_dtype("model.dtype", self.dtype)


@dataclass(frozen=True)
class DataConfig:
    """Task seeds and demonstrations; the heldout split is never trained on."""

    sft_tasks: int = 200
    """Training-split tasks given one scripted demonstration each (before dropping failed ones)."""
    sft_noise: float = 0.1
    """Per-step probability of a mistake in the noisy reference policy's demonstrations."""
    sft_noisy_share: float = 0.5
    """Share of demonstrations written by the noisy policy."""
    sft_near_miss: float = 0.0
    """Share of the noisy policy's mistakes that are near misses (the reference's own call with one argument wrong:
    a misspelt argument name, a typo in a value, another id from the screen) rather than random tool calls."""
    grpo_tasks: int = 64
    """Training-split tasks used as GRPO prompts (each rolled out ``grpo.num_generations`` times)."""
    grpo_task_offset: int = 100_000
    """First GRPO task seed, so GRPO sees tasks the demonstrations did not show."""
    grpo_starts: str = "whole"
    """Where GRPO rollouts start: ``whole`` episodes from the task prompt, or ``branches``: branch starts of the GRPO
    tasks (``training/branches.py``), right after a fault fired or a call was rejected, cut from the scripted
    episodes and model episodes the ``branches`` section names; every rollout of a group continues from that state."""
    max_required_steps: int | None = None
    """Keep only training-split tasks the reference solves in at most this many tool calls (without faults); None
    keeps every task. Applies to demonstrations, GRPO tasks and the ``train``/``seen`` evaluations, never to the
    held-out split. Task seeds that fail the filter are skipped, so ``sft_tasks`` etc. still count kept tasks."""

    def __post_init__(self) -> None:
        if not all(0.0 <= p <= 1.0 for p in (self.sft_noise, self.sft_noisy_share, self.sft_near_miss)):
            raise ConfigError("data.sft_noise, data.sft_noisy_share and data.sft_near_miss are probabilities: use "
                              "values in [0, 1]")
        if self.sft_tasks < 1 or self.grpo_tasks < 1:
            raise ConfigError("data.sft_tasks and data.grpo_tasks must be at least 1")
        if self.grpo_starts not in ("whole", "branches"):
            raise ConfigError(f"data.grpo_starts={self.grpo_starts!r}: use 'whole' (episodes from the task prompt) or "
                              "'branches' (branch starts, the branches section)")
        if self.max_required_steps is not None and self.max_required_steps < 1:
            raise ConfigError(f"data.max_required_steps={self.max_required_steps}: use a positive number, or null "
                              "for every task")


@dataclass(frozen=True)
class TrainingEvalConfig:
    """When the run evaluates and on which task sets; each (point, set) is one ``runner.EvalConfig`` evaluation.

    The ``eval`` section holds these fields plus any field of ``training.evaluation.runner.EvalConfig`` that the run
    does not set itself: ``tasks``, ``task_offset``, ``max_turns``, ``samples``, ``batch_size``, kept in ``runner`` and
    passed to it unchanged (it validates them; its defaults apply except ``samples``, 1 here, ``max_turns``,
    ``env.max_turns`` here, the limit training rollouts have, and ``task_offset``, see ``splits``). The run sets the
    environment (``env.id``), the faults (below), the seed (``run.seed``) and the task filter
    (``data.max_required_steps``, applied to the ``train`` and ``seen`` sets).
    """

    points: tuple[str, ...] = EVAL_POINTS
    """When to evaluate: ``before`` training, ``after_sft`` and ``after`` (the final model)."""
    splits: tuple[str, ...] = ("heldout",)
    """Task sets. ``heldout``: the env's held-out split from task 0 (task kinds training never shows; never
    filtered). ``train``: unseen task seeds of the training templates, from ``task_offset`` (default 1,000,000, disjoint
    from every seed SFT and GRPO use). ``seen``: the first SFT tasks again, to tell memorisation from
    generalisation."""
    faults: dict[str, float] | None = None
    """Fault rates during evaluation; None uses ``env.faults``."""
    max_new_tokens: int = 96
    """Token limit of one assistant turn (the model policy's generation budget)."""
    dtype: str | None = None
    """dtype of the evaluated model; None: ``model.dtype``. ``fast``: bfloat16 where the hardware computes it
    natively (GPUs, recent CPUs), else float32: 2x the float32 speed on such a CPU, and it changes some greedy
    transcripts (4 of 8 identical for SmolLM2; docs/evaluation.md); ``float32``, ``bfloat16``, ``float16``,
    ``auto``."""
    runner: dict[str, Any] = field(default_factory=dict)
    """The section's ``runner.EvalConfig`` fields, as given."""

    def __post_init__(self) -> None:
        unknown = [p for p in self.points if p not in EVAL_POINTS]
        if unknown:
            raise ConfigError(f"eval.points: unknown {unknown}; valid: {list(EVAL_POINTS)}")
        bad = [s for s in self.splits if s not in EVAL_SPLITS]
        if bad or not self.splits:
            raise ConfigError(f"eval.splits={list(self.splits)}: use 'heldout', 'train' (unseen seeds) or 'seen'")
        if self.max_new_tokens < 1:
            raise ConfigError(f"eval.max_new_tokens={self.max_new_tokens}: must be at least 1")
        _check_dtype("eval.dtype", self.dtype, "or leave it out for model.dtype")


@dataclass(frozen=True)
class ExperimentConfig:
    """A whole experiment: our sections plus TRL's ``sft`` and ``grpo`` sections as given."""

    run: RunConfig = field(default_factory=RunConfig)
    env: EnvConfig = field(default_factory=EnvConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    eval: TrainingEvalConfig = field(default_factory=TrainingEvalConfig)
    branches: BranchConfig = field(default_factory=BranchConfig)
    """Branch starts for ``data.grpo_starts: branches`` (``training.branches.BranchConfig``): scripted sources,
    model evaluation folders (``episodes``), event kinds, branch points per task, earlier turns kept, noise."""
    sft: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments of ``trl.SFTConfig``."""
    grpo: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments of ``trl.GRPOConfig``."""

    def to_dict(self) -> dict[str, Any]:
        """The config as its YAML file would hold it (the eval section flat, as written)."""
        data = _plain(dataclasses.asdict(self))
        data["eval"] = {**{k: v for k, v in data["eval"].items() if k != "runner"}, **data["eval"]["runner"]}
        return data


def eval_config(config: ExperimentConfig, split: str):
    """The ``training.evaluation.runner.EvalConfig`` of the evaluation set ``split`` (``heldout``, ``train``, ``seen``).

    Raises:
        ValueError: the runner's own message for a value it refuses (e.g. ``tasks: 0``).
    """
    from training.evaluation.runner import EvalConfig, fault_setting

    if split not in EVAL_SPLITS:
        raise ValueError(f"unknown evaluation set {split!r}; valid: {list(EVAL_SPLITS)}")
    faults = config.env.faults if config.eval.faults is None else config.eval.faults
    options = {"samples": 1, "max_turns": config.env.max_turns, **config.eval.runner}
    train_offset = options.pop("task_offset", TRAIN_SPLIT_OFFSET)
    return EvalConfig(
        env_ids=(config.env.id,),
        splits=("heldout" if split == "heldout" else "train",),
        fault_kinds=(fault_setting(faults),),
        seed=config.run.seed,
        task_offset=train_offset if split == "train" else 0,
        max_required_steps=None if split == "heldout" else config.data.max_required_steps,
        **options,
    )


# ---------------------------------------------------------------------------------------------------------------
# Strict conversion of YAML values into the dataclasses

_YAML11_FLOAT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)$")


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _number_like(value: Any) -> Any:
    """``"1e-6"`` (a string to YAML 1.1) as the float it was meant to be; anything else unchanged."""
    if isinstance(value, str) and _YAML11_FLOAT.match(value.strip()):
        return float(value)
    if isinstance(value, dict):
        return {k: _number_like(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_number_like(v) for v in value]
    return value


def _convert(value: Any, hint: Any, where: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping of {hint.__name__} keys, got {value!r}")
        return _build(hint, value, where)
    if origin is typing.Union or origin is types.UnionType:
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _convert(value, arg, where)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: {value!r} fits none of {hint}")
    if origin in (tuple, list):
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, Sequence):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        items = [_convert(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)] if args else list(value)
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return {str(k): _convert(v, args[1], f"{where}.{k}") if args else v for k, v in value.items()}
    if hint is Any:
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and _YAML11_FLOAT.match(value.strip()) and float(value).is_integer():
            return int(float(value))
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)  # YAML 1.1 reads 1e-6 as a string
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if hint is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    raise TypeError(f"config field {where} has an unsupported type {hint!r}")  # a bug in this module


def _build(cls: type, values: Mapping[str, Any], where: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in values.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in names:
            raise ConfigError(f"unknown key {path!r}{_suggest(str(key), names)}; valid keys here: {', '.join(names)}")
        if key in ("sft", "grpo") and cls is ExperimentConfig:
            kwargs[key] = _number_like(dict(value or {}))
            continue
        if key == "eval" and cls is ExperimentConfig:
            if not isinstance(value, Mapping):
                raise ConfigError(f"eval: expected a mapping of eval keys, got {value!r}")
            kwargs[key] = _build_eval(value, path)
            continue
        kwargs[key] = _convert(value, hints[key], path)
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{where or 'config'}: {err}") from err


def _build_eval(values: Mapping[str, Any], where: str) -> TrainingEvalConfig:
    """The eval section: our own keys, and ``runner.EvalConfig`` fields converted by that class's field types."""
    from training.evaluation.runner import EvalConfig

    own = [f.name for f in dataclasses.fields(TrainingEvalConfig) if f.name != "runner"]
    hints = typing.get_type_hints(EvalConfig)
    passed = [f.name for f in dataclasses.fields(EvalConfig) if f.name not in RUN_OWNED_EVAL_FIELDS]
    mine, runner = {}, {}
    for key, value in values.items():
        path = f"{where}.{key}"
        if key in own:
            mine[key] = value
        elif key in passed:
            runner[key] = _convert(value, hints[key], path)
        elif key in RUN_OWNED_EVAL_FIELDS:
            raise ConfigError(f"{path} is set by the run; set {RUN_OWNED_EVAL_FIELDS[key]} instead")
        else:
            names = own + passed
            raise ConfigError(f"unknown key {path!r}{_suggest(str(key), names)}; valid keys here: {', '.join(names)}")
    return _build(TrainingEvalConfig, {**mine, "runner": runner}, where)


def _set_override(data: dict[str, Any], assignment: str) -> None:
    """Apply ``section.key=value`` (value in YAML) to the raw config mapping."""
    import yaml

    if "=" not in assignment:
        raise ConfigError(f"override {assignment!r} must look like section.key=value, e.g. grpo.max_steps=10")
    path, raw = assignment.split("=", 1)
    keys = path.strip().split(".")
    node = data
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {assignment!r}: {key!r} is not a section")
    node[keys[-1]] = yaml.safe_load(raw)


def load_config(
    source: str | Path | Mapping[str, Any] | None = None, overrides: Sequence[str] = ()
) -> ExperimentConfig:
    """Read an experiment config from a YAML file (or a mapping), apply ``section.key=value`` overrides, validate.

    Raises:
        ConfigError: for an unknown key (with the nearest valid one), a value of the wrong type, or a TRL field
            TRL rejects.
    """
    import yaml

    if source is None:
        data: dict[str, Any] = {}
    elif isinstance(source, Mapping):
        data = dict(source)
    else:
        path = Path(source)
        if not path.is_file():
            raise ConfigError(f"config file {str(path)!r} not found")
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of sections, got {type(data).__name__}")
    data = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in data.items()}
    for assignment in overrides:
        _set_override(data, assignment)
    config = _build(ExperimentConfig, data, "")
    if "grpo" in config.run.stages and config.data.grpo_starts == "branches":
        _check_branch_sources(config.branches)
    for stage in config.run.stages:  # let TRL reject a misspelt key now, not after an hour of SFT
        trl_config(config, stage)
    for split in config.eval.splits:  # and the evaluation runner a value it refuses, before any training
        try:
            eval_config(config, split)
        except ValueError as err:
            raise ConfigError(f"eval: {err}") from err
    return config


def _check_branch_sources(branches: BranchConfig) -> None:
    """GRPO on branch starts needs a source of them, and every ``branches.episodes`` folder must exist."""
    if not branches.sources and not branches.episodes:
        raise ConfigError("data.grpo_starts is 'branches' but the branches section names no source: give "
                          "branches.sources (reference, noisy, near_miss) and/or branches.episodes (evaluation "
                          "folders)")
    for folder in branches.episodes:
        try:
            eval_folder(folder)
        except FileNotFoundError as err:
            raise ConfigError(f"branches.episodes: {folder!r} is no evaluation folder: {err}") from err


def _yaml11_words(cls: type, values: dict[str, Any]) -> dict[str, Any]:
    """``save_strategy: no`` reads as False in YAML 1.1: give the word back to fields that are not booleans."""
    types_by_name = {f.name: str(f.type) for f in dataclasses.fields(cls)}
    out = dict(values)
    for key, value in values.items():
        if isinstance(value, bool) and key in types_by_name and "bool" not in types_by_name[key]:
            out[key] = "yes" if value else "no"
    return out


def _has_accelerator() -> bool:
    import torch

    return torch.cuda.is_available() or (hasattr(torch, "xpu") and torch.xpu.is_available())


def native_bf16() -> bool:
    """What ``bf16: fast`` in an ``sft``/``grpo`` section means: bf16 autocast where the hardware computes bf16
    natively (a GPU that supports it; a CPU with AVX512-BF16 or AMX), else float32. A CPU without them emulates bf16:
    the first SmolLM2 SFT step took 580 s there against 55 s in float32 (AMD EPYC with AVX2 only, docs/training.md)."""
    import torch

    from training.models import fast_dtype

    return fast_dtype() == torch.bfloat16


def trl_config(config: ExperimentConfig, stage: str):
    """``trl.SFTConfig`` or ``trl.GRPOConfig`` from the ``sft``/``grpo`` section, with the run's own fields filled.

    The run sets ``output_dir`` (``<run.output_dir>/<stage>``) and ``seed``. Defaults that differ from TRL's:
    tensorboard logging, the run's own progress line instead of progress bars, assistant-only loss for SFT, and on a
    machine without an accelerator ``bf16: false`` and no pinned memory; ``bf16: fast`` is ``native_bf16()``. TRL's
    default of checkpointing activations is passed under transformers' current name (``activation_checkpointing``;
    ``gradient_checkpointing`` is its deprecated alias). Anything else is TRL's to validate.
    """
    import trl

    cls = {"sft": trl.SFTConfig, "grpo": trl.GRPOConfig}[stage]
    given = _yaml11_words(cls, dict(getattr(config, stage)))
    for key, owner in RUN_OWNED_TRL_FIELDS.items():
        if key in given:
            raise ConfigError(f"{stage}.{key} is set by the run; set {owner} instead")
    kwargs = {
        "output_dir": str(Path(config.run.output_dir) / stage),
        "seed": config.run.seed,
        "report_to": ["tensorboard"],
        "logging_steps": 1,
        "save_strategy": "steps",
        "disable_tqdm": True,
        **({"assistant_only_loss": True} if stage == "sft" else {}),
        **given,
    }
    names = {f.name for f in dataclasses.fields(cls)}
    if "activation_checkpointing" in names:
        if not {"gradient_checkpointing", "activation_checkpointing"} & set(given):  # TRL's default, current name
            kwargs["activation_checkpointing"] = next(f.default for f in dataclasses.fields(cls)
                                                      if f.name == "gradient_checkpointing")
    else:  # a transformers from before the rename (the lent GPU image has 5.17): the old names
        for new_name, old_name in (("activation_checkpointing", "gradient_checkpointing"),
                                   ("activation_checkpointing_kwargs", "gradient_checkpointing_kwargs")):
            if new_name in kwargs:
                kwargs[old_name] = kwargs.pop(new_name)
    if kwargs.get("bf16") == "fast":
        kwargs["bf16"] = native_bf16()
        if kwargs["bf16"] and not _has_accelerator():
            kwargs.setdefault("use_cpu", True)  # TRL allows bf16 on a CPU only with use_cpu
    elif kwargs.get("bf16") is True and not _has_accelerator() and not native_bf16():
        warnings.warn(f"{stage}.bf16: true on a CPU that emulates bfloat16 (no AVX512-BF16 or AMX): each step is "
                      "several times slower than in float32; set bf16: fast (bf16 only where native) or false",
                      stacklevel=2)
    if not _has_accelerator():
        if "bf16" not in given and "fp16" not in given:
            kwargs["bf16"] = False  # TRL defaults to bf16, which it refuses on a CPU unless use_cpu is set
        kwargs.setdefault("dataloader_pin_memory", False)  # nothing to pin for; torch warns every epoch
    try:
        return cls(**kwargs)
    except TypeError as err:
        match = re.search(r"unexpected keyword argument '(\w+)'", str(err))
        if not match:
            raise
        names = sorted(f.name for f in dataclasses.fields(cls))
        key = match.group(1)
        raise ConfigError(f"unknown key '{stage}.{key}'{_suggest(key, names)}: not a {cls.__name__} field") from err
    except ValueError as err:
        raise ConfigError(f"{stage}: {cls.__name__} rejected the section: {err}") from err
