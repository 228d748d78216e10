"""Benchmark the GRPO rollout-and-train loop: where does the wall time go?

Builds (or loads) a model, optionally gives it a short supervised warm start so its rollouts make real multi-turn
tool calls, then runs a few GRPO steps with timers around the environment adapter (reset, tool calls, reward),
``model.generate`` and the backward pass. Prints episodes/s and generated tokens/s of the rollouts, the step time,
and the share of wall time in each part; the environment's share should be negligible (under 2%).

    python scripts/bench_training.py                                 # tiny model, configs/quickstart.yaml
    python scripts/bench_training.py --config configs/smollm2.yaml --sft-steps 0 --steps 3
    python scripts/bench_training.py --json bench.json               # also write the figures as JSON

Timers wrap attributes of this process's objects only; no TRL code is copied or subclassed.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.adapter import ToolEnvAdapter  # noqa: E402
from training.config import load_config  # noqa: E402
from training.train import _train_stage, build_trainer, prepare_base_model  # noqa: E402

TIMES: dict[str, float] = defaultdict(float)
COUNTS: dict[str, int] = defaultdict(int)


def timed(name: str, function):
    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            TIMES[name] += time.perf_counter() - started
            COUNTS[name] += 1

    wrapper.__wrapped__ = function
    return wrapper


def instrument_env() -> None:
    """Time everything the adapter runs of the environment: reset, every tool call, the reward (checker)."""
    ToolEnvAdapter.reset = timed("env", ToolEnvAdapter.reset)
    ToolEnvAdapter._call = timed("env", ToolEnvAdapter._call)
    ToolEnvAdapter.get_reward = timed("env", ToolEnvAdapter.get_reward)


def instrument_trainer(trainer, eos_ids: set[int], pad_id: int) -> None:
    model = trainer.model
    generate = model.generate

    def counting_generate(*args, **kwargs):
        started = time.perf_counter()
        out = generate(*args, **kwargs)
        TIMES["generate"] += time.perf_counter() - started
        COUNTS["generate"] += 1
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

    model.generate = counting_generate
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
            for key in ("env", "generate", "backward"):
                step[key] = TIMES[key] - times.get(key, 0.0)
            for key in ("generated_tokens", "env"):
                step[f"n_{key}"] = COUNTS[key] - counts.get(key, 0)
            self.steps.append(step)

    return StepTimer()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="configs/quickstart.yaml")
    parser.add_argument("--sft-steps", type=int, default=150, help="supervised warm-start steps (0: none)")
    parser.add_argument("--steps", type=int, default=6, help="GRPO steps timed (the first is a warm-up)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config override")
    parser.add_argument("--output-dir", help="run folder (default: a temporary one)")
    parser.add_argument("--json", help="write the figures here too")
    args = parser.parse_args(argv)

    run_dir = Path(args.output_dir or tempfile.mkdtemp(prefix="bench-training-"))
    overrides = [
        f"run.output_dir={run_dir}",
        f"grpo.max_steps={args.steps}",
        "grpo.save_strategy=no",
        "grpo.report_to=[]",
        *args.overrides,
    ]
    if args.sft_steps:
        overrides += [f"sft.max_steps={args.sft_steps}", "sft.save_strategy=no", "sft.report_to=[]"]
    config = load_config(args.config, overrides)
    start = prepare_base_model(config, run_dir)
    if args.sft_steps:
        final = run_dir / "sft" / "final"
        if not final.is_dir():
            _train_stage("sft", config, start, run_dir, callbacks=[])
        start = str(final)

    instrument_env()
    timer = step_timer()
    trainer = build_trainer("grpo", config, start, callbacks=[timer])
    tokenizer = trainer.processing_class
    instrument_trainer(trainer, set(trainer.eos_token_ids), tokenizer.pad_token_id)
    trainer.train()

    steps = timer.steps[1:] if len(timer.steps) > 1 else timer.steps  # the first step pays one-off costs
    wall = sum(s["wall"] for s in steps)
    env, gen, back = (sum(s[k] for s in steps) for k in ("env", "generate", "backward"))
    episodes = len(steps) * trainer.args.generation_batch_size // trainer.args.steps_per_generation
    tokens = sum(s["n_generated_tokens"] for s in steps)
    figures = {
        "config": args.config,
        "model": config.model.name_or_path,
        "env": config.env.id,
        "device": str(trainer.accelerator.device),
        "timed_steps": len(steps),
        "rollouts_per_step": episodes // max(1, len(steps)),
        "step_time_s": wall / len(steps),
        "episodes_per_s": episodes / (gen + env) if gen + env else 0.0,
        "episodes_per_s_overall": episodes / wall,
        "generated_tokens_per_s": tokens / gen if gen else 0.0,
        "tool_calls_per_episode": sum(s["n_env"] for s in steps) / max(1, episodes) - 2,  # minus reset, reward
        "share_env": env / wall,
        "share_generate": gen / wall,
        "share_backward": back / wall,
        "share_other": 1 - (env + gen + back) / wall,
    }
    print(
        f"\nGRPO loop on {figures['device']}: {config.env.id}, model {config.model.name_or_path}, "
        f"{figures['rollouts_per_step']} rollouts/step, {len(steps)} timed steps"
    )
    print(f"  step time            {figures['step_time_s']:.2f} s")
    print(
        f"  episodes/s           {figures['episodes_per_s']:.2f} (rollout phase), "
        f"{figures['episodes_per_s_overall']:.2f} (whole loop)"
    )
    print(f"  generated tokens/s   {figures['generated_tokens_per_s']:.0f}")
    print(f"  tool calls/episode   {figures['tool_calls_per_episode']:.1f}")
    print(
        f"  wall-time share      env {figures['share_env']:.2%} | generation {figures['share_generate']:.1%} | "
        f"backward {figures['share_backward']:.1%} | other (logprob forwards, tokenising, optimizer) "
        f"{figures['share_other']:.1%}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
