"""Benchmark training on this machine: an SFT step in float32 against bf16, and where a GRPO step's time goes.

Two parts, each comparing settings in one run (ratios hold on a loaded machine; absolute seconds move with it):

* SFT (``--dtype-steps``): the median-length demonstration of ``--median-of`` training tasks (token count under the
  model's chat template), trained for that many steps once with ``sft.bf16=false`` (float32) and once with
  ``sft.bf16=true`` (TRL's mixed precision: float32 weights, bf16 autocast; on a machine without an accelerator with
  ``sft.use_cpu=true``, which TRL needs for it). The first step of each is not timed. On a CPU that emulates bf16
  (no AVX512-BF16 or AMX: ``training.models.cpu_supports_bf16``) the bf16 run is skipped (a SmolLM2 step took
  580 s there) unless ``--force-bf16``. Beside the step times it prints the floor this machine puts under a step:
  the step's FLOPs (TRL's ``compute_flops_per_token``, with causal attention) over the rate of a plain matrix
  product at the model's MLP shape, measured here in each dtype.
* GRPO (``--steps``): optionally after a short supervised warm start (``--sft-steps``) so rollouts make real
  multi-turn tool calls, a few GRPO steps with the config's settings, timed in parts: generation (``model.generate``),
  environment (reset, every tool call, the checker), forward (TRL's log-prob forwards, the loss's included),
  backward, and other (tokenising, parsing, rewards, optimizer). ``--compare`` runs the same steps again with the
  old settings (float32, transformers' growing cache: ``grpo.bf16=false``, ``grpo.cache_implementation=null``) and
  prints the ratios. The first step of each is not timed.

    python scripts/bench_training.py                                 # tiny model, configs/quickstart.yaml
    python scripts/bench_training.py --config configs/smollm2.yaml --sft-steps 0 --dtype-steps 3 --steps 2 \\
        --rollouts 4 --compare --threads 2
    python scripts/bench_training.py --dtype-steps 0 --json bench.json   # GRPO only; figures also as JSON

SmolLM2 without a warm start rarely calls a tool: its rollouts are one long turn up to
``grpo.max_completion_length``. Its float32 GRPO step (``--compare``) of 4 rollouts on a 2,600-token prompt was killed
for memory at 24 GB on a 23 GB machine, where the bf16 one ran. Timers wrap attributes of this process's objects only;
no TRL code is copied or subclassed.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.adapter import ToolEnvAdapter  # noqa: E402
from training.config import load_config  # noqa: E402
from training.train import build_trainer, prepare_base_model  # noqa: E402

TIMES: dict[str, float] = defaultdict(float)  # exclusive seconds: a timed call inside another is not counted twice
COUNTS: dict[str, int] = defaultdict(int)
_STACK: list[list] = []  # [started, seconds of timed calls inside]
PARTS = ("generate", "env", "forward", "backward")


def timed(name: str, function):
    def wrapper(*args, **kwargs):
        frame = [time.perf_counter(), 0.0]
        _STACK.append(frame)
        try:
            return function(*args, **kwargs)
        finally:
            _STACK.pop()
            total = time.perf_counter() - frame[0]
            TIMES[name] += total - frame[1]
            COUNTS[name] += 1
            if _STACK:
                _STACK[-1][1] += total

    wrapper.__wrapped__ = function
    return wrapper


def instrument_env() -> None:
    """Time everything the adapter runs of the environment: reset, every tool call, the reward (checker)."""
    for name in ("reset", "_call", "get_reward"):
        function = getattr(ToolEnvAdapter, name)
        if not hasattr(function, "__wrapped__"):
            setattr(ToolEnvAdapter, name, timed("env", function))


def instrument_trainer(trainer, eos_ids: set[int], pad_id: int) -> None:
    generate = timed("generate", trainer.model.generate)

    def counting_generate(*args, **kwargs):
        out = generate(*args, **kwargs)
        width = kwargs["input_ids"].shape[1] if "input_ids" in kwargs else args[0].shape[1]
        for row in out[:, width:].tolist():
            n = 0
            for token in row:
                if token == pad_id and token not in eos_ids:
                    break
                n += 1
                if token in eos_ids:
                    break
            COUNTS["generated_tokens"] += n
        return out

    trainer.model.generate = counting_generate
    trainer._get_per_token_logps_and_entropies = timed("forward", trainer._get_per_token_logps_and_entropies)
    trainer.accelerator.backward = timed("backward", trainer.accelerator.backward)


def step_timer():
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.steps: list[dict[str, float]] = []
            self._snapshot = None

        def on_step_begin(self, args, state, control, **kwargs):
            self._snapshot = (time.perf_counter(), dict(TIMES), dict(COUNTS))

        def on_step_end(self, args, state, control, **kwargs):
            started, times, counts = self._snapshot
            step = {"wall": time.perf_counter() - started}
            for key in PARTS:
                step[key] = TIMES[key] - times.get(key, 0.0)
            for key in ("generated_tokens", "env"):
                step[f"n_{key}"] = COUNTS[key] - counts.get(key, 0)
            self.steps.append(step)

    return StepTimer()


def _timed_steps(steps: list[dict]) -> list[dict]:
    return steps[1:] if len(steps) > 1 else steps  # the first step pays one-off costs


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


# ---------------------------------------------------------------------------------------------------------------
# SFT: float32 against bf16 on the median demonstration


def median_demonstration(config, start: str, count: int):
    """The training demonstration of median token length among the first ``count`` tasks, and that length."""
    from training.datasets import select_task_seeds, sft_dataset
    from training.models import load_model_and_tokenizer

    seeds = select_task_seeds(config.env.id, start=0, count=count, max_required_steps=config.data.max_required_steps)
    data = sft_dataset(config.env.id, seeds, faults=config.env.faults, max_turns=config.env.max_turns,
                       noise=config.data.sft_noise, noisy_share=config.data.sft_noisy_share,
                       near_miss=config.data.sft_near_miss, seed=config.run.seed)
    _, tokenizer = load_model_and_tokenizer(start)
    lengths = [len(tokenizer.apply_chat_template(row["messages"], tools=json.loads(row["tools"]), tokenize=True,
                                                 return_dict=False)) for row in data]
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    median = order[len(order) // 2]
    return data.select([median]), lengths[median], statistics.median(lengths)


def gemm_gflops(rows: int, inner: int, cols: int, dtype, device: str = "cpu", seconds: float = 1.0) -> float:
    """This machine's rate for one plain ``(rows x inner) @ (inner x cols)`` product in ``dtype``, GFLOP/s, over
    about ``seconds`` after a warm-up product (one product when that alone takes longer: emulated bf16)."""
    import torch

    a = torch.randn(rows, inner, dtype=dtype, device=device)
    b = torch.randn(inner, cols, dtype=dtype, device=device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    started = time.perf_counter()
    a @ b
    sync()
    repeats = max(1, min(1000, int(seconds / (time.perf_counter() - started))))
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    sync()
    return 2 * rows * inner * cols * repeats / (time.perf_counter() - started) / 1e9


def sft_step_flops(model_config, tokens: int) -> float:
    """Training FLOPs of one step on a ``tokens``-long sequence. TRL's estimate counts every token as attending
    to the whole sequence; the attention term is linear in that length, so half of it is the causal average."""
    from trl.trainer.utils import compute_flops_per_token

    return float(compute_flops_per_token(model_config, max(1, tokens // 2))) * tokens


def bench_sft(args, overrides: list[str], start: str) -> dict:
    import torch
    from datasets import concatenate_datasets
    from transformers import AutoConfig

    from training.config import _has_accelerator  # noqa: PLC0415 (private: the one place that knows)
    from training.models import cpu_supports_bf16

    config = load_config(args.config, overrides)
    one, tokens, median = median_demonstration(config, start, args.median_of)
    data = concatenate_datasets([one] * args.dtype_steps)
    settings = {"float32": ["sft.bf16=false"],
                "bf16 (autocast)": ["sft.bf16=true"] + ([] if _has_accelerator() else ["sft.use_cpu=true"])}
    skipped = None
    if not _has_accelerator() and not cpu_supports_bf16() and not args.force_bf16:
        skipped = "this CPU emulates bf16 (no AVX512-BF16 or AMX); --force-bf16 runs it anyway"
        del settings["bf16 (autocast)"]
    model_config = AutoConfig.from_pretrained(start)
    flops = sft_step_flops(model_config, tokens)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    shape = (tokens, model_config.hidden_size, model_config.intermediate_size)
    gemm = {str(dtype).removeprefix("torch."): gemm_gflops(*shape, dtype, device)
            for dtype in (torch.float32, torch.bfloat16)}
    runs = {}
    for label, sets in settings.items():
        config = load_config(args.config, [*overrides, f"sft.max_steps={args.dtype_steps}", *sets])
        timer = step_timer()
        trainer = build_trainer("sft", config, start, callbacks=[timer], data=data)
        trainer.train()
        steps = _timed_steps(timer.steps)
        losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
        runs[label] = {"step_s": sum(s["wall"] for s in steps) / len(steps), "timed_steps": len(steps),
                       "losses": losses, "device": str(trainer.accelerator.device)}
        del trainer
        gc.collect()
    for r in runs.values():
        r["achieved_gflops"] = flops / r["step_s"] / 1e9
    times = [r["step_s"] for r in runs.values()]
    return {"demonstration_tokens": tokens, "median_of": args.median_of, "median_tokens": median, "runs": runs,
            "speedup_bf16": times[0] / times[1] if len(times) == 2 else None, "bf16_skipped": skipped,
            "step_tflop": flops / 1e12, "gemm_shape": list(shape), "gemm_gflops": gemm,
            "step_floor_s": {dtype: flops / rate / 1e9 for dtype, rate in gemm.items()}}


# ---------------------------------------------------------------------------------------------------------------
# GRPO: a step broken down


def bench_grpo(args, overrides: list[str], start: str, label: str) -> dict:
    config = load_config(args.config, overrides)
    instrument_env()
    timer = step_timer()
    trainer = build_trainer("grpo", config, start, callbacks=[timer])
    instrument_trainer(trainer, set(trainer.eos_token_ids), trainer.processing_class.pad_token_id)
    trainer.train()
    steps = _timed_steps(timer.steps)
    wall = sum(s["wall"] for s in steps)
    env, gen, forward, back = (sum(s[k] for s in steps) for k in ("env", "generate", "forward", "backward"))
    episodes = len(steps) * trainer.args.generation_batch_size // trainer.args.steps_per_generation
    tokens = sum(s["n_generated_tokens"] for s in steps)
    figures = {
        "settings": label,
        "bf16": trainer.args.bf16,
        "cache_implementation": trainer.args.cache_implementation,
        "config": args.config,
        "model": config.model.name_or_path,
        "env": config.env.id,
        "device": str(trainer.accelerator.device),
        "timed_steps": len(steps),
        "rollouts_per_step": episodes // max(1, len(steps)),
        "step_time_s": wall / len(steps),
        "episodes_per_s": episodes / (gen + env) if gen + env else 0.0,
        "episodes_per_s_overall": episodes / wall,
        "generated_tokens_per_step": tokens / len(steps),
        "generated_tokens_per_s": tokens / gen if gen else 0.0,
        "tool_calls_per_episode": sum(s["n_env"] for s in steps) / max(1, episodes) - 2,  # minus reset, reward
        "seconds_generate": gen / len(steps),
        "seconds_env": env / len(steps),
        "seconds_forward": forward / len(steps),
        "seconds_backward": back / len(steps),
        "share_env": env / wall,
        "share_generate": gen / wall,
        "share_forward": forward / wall,
        "share_backward": back / wall,
        "share_other": 1 - (env + gen + forward + back) / wall,
    }
    del trainer
    gc.collect()  # the next setting's trainer needs the memory
    return figures


def _print_grpo(f: dict) -> None:
    print(f"\nGRPO loop on {f['device']}: {f['env']}, model {f['model']}, {f['rollouts_per_step']} rollouts/step, "
          f"{f['timed_steps']} timed steps; {f['settings']} (bf16={f['bf16']}, "
          f"cache_implementation={f['cache_implementation']})")
    print(f"  step time            {f['step_time_s']:.2f} s")
    print(f"  episodes/s           {f['episodes_per_s']:.2f} (rollout phase), {f['episodes_per_s_overall']:.2f} "
          "(whole loop)")
    print(f"  generated tokens/s   {f['generated_tokens_per_s']:.0f} ({f['generated_tokens_per_step']:.0f} a step)")
    print(f"  tool calls/episode   {f['tool_calls_per_episode']:.1f}")
    print(f"  seconds a step       generation {f['seconds_generate']:.2f} | env {f['seconds_env']:.3f} | forward "
          f"{f['seconds_forward']:.2f} | backward {f['seconds_backward']:.2f} | other "
          f"{f['step_time_s'] * f['share_other']:.2f}")
    print(f"  wall-time share      env {f['share_env']:.2%} | generation {f['share_generate']:.1%} | forward "
          f"(log-probs, loss) {f['share_forward']:.1%} | backward {f['share_backward']:.1%} | other (tokenising, "
          f"parsing, rewards, optimizer) {f['share_other']:.1%}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/quickstart.yaml", help="experiment YAML")
    parser.add_argument("--sft-steps", type=int, default=150,
                        help="supervised warm-start steps before the GRPO part (0: none)")
    parser.add_argument("--steps", type=int, default=6, help="GRPO steps per setting (the first is not timed; 0: "
                        "no GRPO part)")
    parser.add_argument("--rollouts", type=int, default=None,
                        help="rollouts per GRPO step: one task's group (num_generations = batch size); default: "
                        "the config's")
    parser.add_argument("--compare", action="store_true",
                        help="run the GRPO steps again with the old settings (float32, dynamic cache)")
    parser.add_argument("--dtype-steps", type=int, default=3,
                        help="SFT steps on the median demonstration, in float32 and in bf16 (the first of each is "
                        "not timed; 0: no SFT part)")
    parser.add_argument("--median-of", type=int, default=16, help="training tasks whose median demonstration is used")
    parser.add_argument("--force-bf16", action="store_true",
                        help="run the bf16 SFT steps even on a CPU that emulates bf16 (minutes a step)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config override; repeatable")
    parser.add_argument("--output-dir", help="run folder (default: a temporary one)")
    parser.add_argument("--json", help="write the figures here too")
    args = parser.parse_args(argv)

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    load_start = _load()
    run_dir = Path(args.output_dir or tempfile.mkdtemp(prefix="bench-training-"))
    common = [f"run.output_dir={run_dir}", "sft.save_strategy=no", "sft.report_to=[]", "grpo.save_strategy=no",
              "grpo.report_to=[]", *args.overrides]
    config = load_config(args.config, common)
    start = prepare_base_model(config, run_dir)
    figures: dict = {}
    if args.dtype_steps:
        sft = bench_sft(args, common, start)
        figures["sft_dtype"] = sft
        print(f"\nSFT step on the median demonstration ({sft['demonstration_tokens']:,} tokens; median of "
              f"{sft['median_of']} tasks {sft['median_tokens']:,.0f}), {args.dtype_steps} steps each, the first "
              "not timed:")
        for label, r in sft["runs"].items():
            print(f"  {label:>16}: {r['step_s']:6.2f} s a step on {r['device']}, {r['achieved_gflops']:.0f} GFLOP/s "
                  f"(losses {', '.join(f'{x:.3f}' for x in r['losses'])})")
        if sft["speedup_bf16"]:
            print(f"  speed-up of bf16 over float32: {sft['speedup_bf16']:.2f}x")
        if sft["bf16_skipped"]:
            print(f"  bf16 not run: {sft['bf16_skipped']}")
        rows, inner, cols = sft["gemm_shape"]
        rates = ", ".join(f"{rate:.0f} GFLOP/s in {dtype}" for dtype, rate in sft["gemm_gflops"].items())
        floors = ", ".join(f"{sec:.1f} s in {dtype}" for dtype, sec in sft["step_floor_s"].items())
        print(f"  the floor: {sft['step_tflop'] * 1000:,.0f} GFLOP a step; a plain ({rows}x{inner}) @ ({inner}x{cols}) "
              f"product runs at {rates}, so a step takes at least {floors}")
    if args.steps:
        grpo = [f"grpo.max_steps={args.steps}"]
        if args.rollouts:
            grpo += [f"grpo.num_generations={args.rollouts}", f"grpo.per_device_train_batch_size={args.rollouts}",
                     "grpo.gradient_accumulation_steps=1"]
        if args.sft_steps:
            final = run_dir / "sft" / "final"
            if not final.is_dir():
                from training.train import _train_stage  # noqa: PLC0415 (the run's own stage, resumable)

                warm = load_config(args.config, [*common, f"sft.max_steps={args.sft_steps}"])
                _train_stage("sft", warm, start, run_dir, callbacks=[])
            start = str(final)
        new = bench_grpo(args, [*common, *grpo], start, "config's settings")
        figures.update(new)
        _print_grpo(new)
        if args.compare:
            old = bench_grpo(args, [*common, *grpo, "grpo.bf16=false", "grpo.cache_implementation=null"], start,
                             "old settings")
            figures["grpo_old"] = old
            _print_grpo(old)
            ratio = {k: old[f"seconds_{k}"] / new[f"seconds_{k}"] for k in PARTS if new[f"seconds_{k}"]}
            ratio["step"] = old["step_time_s"] / new["step_time_s"]
            figures["grpo_speedup"] = ratio
            print("  speed-up of the config's settings over the old: "
                  + " | ".join(f"{k} {v:.2f}x" for k, v in ratio.items()))
    figures["load_average"] = {"start": load_start, "end": _load()}
    print(f"\nload average {load_start} at the start, {_load()} at the end")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
