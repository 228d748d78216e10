"""GRPO with TRL against a running ``recoverygym serve``: the quick-start model, rollouts on the server, on the CPU.

The same GRPO stage as ``recoverygym train configs/quickstart.yaml`` (its config, dataset rows and TRL settings),
except that ``environment_factory`` is ``remote_environment_factory``: every tool call of every rollout goes over
OpenEnv's WebSocket protocol to the server, which runs the environment. First start the server (same environment
and faults as the config; enough sessions for TRL's generation batch, 8 here)::

    recoverygym serve recoverygym/SupportDesk-v0 --port 8000 --faults transient_error=0.05,rate_limit=0.05 \\
        --max-sessions 16 &
    python scripts/example_openenv_trl.py --url http://127.0.0.1:8000 --sft-steps 150 --steps 2

It builds the quick start's tiny model (or reuses ``<output-dir>/base-model``), optionally warms it up with a
short in-process SFT (so that it writes tool calls at all), runs ``--steps`` GRPO steps with the rollouts on the
server, and prints each step's reward and tool-call frequency as TRL logged them. A few steps show the plumbing,
not learning.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="the server recoverygym serve printed")
    parser.add_argument("--config", default="configs/quickstart.yaml")
    parser.add_argument("--steps", type=int, default=3, help="GRPO steps")
    parser.add_argument("--output-dir", default="runs/openenv-trl")
    parser.add_argument("--sft-steps", type=int, default=0,
                        help="a short supervised warm start first (in-process, as the quick start's), so that the "
                             "model writes tool calls the server then runs; 0 starts GRPO from the untrained model")
    parser.add_argument("--start", help="start from this checkpoint folder instead of the base model (e.g. the "
                                            "sft-final folder an earlier --sft-steps run saved in --output-dir)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="config override as in recoverygym train, e.g. --set grpo.num_generations=4")
    args = parser.parse_args(argv)

    import trl

    from training.config import load_config, trl_config
    from training.datasets import grpo_dataset, select_task_seeds
    from training.integrations.openenv_client import remote_environment_factory
    from training.models import load_model_and_tokenizer
    from training.train import build_trainer, prepare_base_model

    overrides = [f"grpo.max_steps={args.steps}", f"run.output_dir={args.output_dir}", "grpo.save_steps=1000",
                 f"sft.max_steps={max(args.sft_steps, 1)}", "sft.save_steps=1000", *args.overrides]
    config = load_config(args.config, overrides=overrides)
    run_dir = Path(config.run.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    start = args.start or prepare_base_model(config, run_dir)
    if args.sft_steps:
        print(f"SFT warm start, {args.sft_steps} steps (in-process) ...", flush=True)
        sft = build_trainer("sft", config, start)
        sft.train()
        start = str(run_dir / "sft-final")
        sft.save_model(start)
        sft.processing_class.save_pretrained(start)
    model, tokenizer = load_model_and_tokenizer(start)
    seeds = select_task_seeds(config.env.id, start=config.data.grpo_task_offset, count=config.data.grpo_tasks,
                              max_required_steps=config.data.max_required_steps)
    data = grpo_dataset(seeds, split="train", faults=config.env.faults, seed=config.run.seed)
    factory = remote_environment_factory(args.url, config.env.id)
    trainer = trl.GRPOTrainer(model=model, processing_class=tokenizer, args=trl_config(config, "grpo"),
                              train_dataset=data, environment_factory=factory)
    print(f"GRPO on {len(data)} tasks of {config.env.id}, rollouts on {args.url}, {args.steps} steps", flush=True)
    began = time.perf_counter()
    trainer.train()
    for entry in trainer.state.log_history:
        if "reward" in entry:
            print(f"step {entry['step']}: reward {entry['reward']:.3f} (std {entry.get('reward_std', 0):.3f}), "
                  f"tool calls per completion {entry.get('tools/call_frequency', 0):.2f}, "
                  f"failed {entry.get('tools/failure_frequency', 0):.2f}, "
                  f"completion length {entry.get('completions/mean_length', 0):.0f} tokens")
    print(f"{args.steps} GRPO steps in {time.perf_counter() - began:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
