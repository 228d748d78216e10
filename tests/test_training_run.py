"""End to end on CPU with a tiny local model: SFT then GRPO through the env adapter, and resuming a run."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from training.train import results_table, run_training

ENV_ID = "recoverygym/SupportDesk-v0"


def tiny_run(output_dir: Path, *extra: str) -> list[str]:
    """Overrides for a run that takes seconds: a very small model, few tasks, short episodes."""
    return [
        f"run.output_dir={output_dir}",
        f"env.id={ENV_ID}",
        "model.name_or_path=tiny",
        "model.tiny.architecture=llama",
        "model.tiny.hidden_size=32",
        "model.tiny.vocab_size=1024",
        "model.tiny.tokenizer_episodes=20",
        "data.sft_tasks=16",
        "data.grpo_tasks=8",
        "eval.tasks=4",
        "eval.max_new_tokens=16",
        "eval.max_turns=2",
        "sft.max_steps=4",
        "sft.per_device_train_batch_size=4",
        "sft.max_length=4096",
        "sft.activation_checkpointing=false",
        "sft.report_to=[]",
        "grpo.max_steps=4",
        "grpo.num_generations=4",
        "grpo.per_device_train_batch_size=4",
        "grpo.max_completion_length=24",
        "grpo.activation_checkpointing=false",
        "grpo.report_to=[]",
        *extra,
    ]


class Interrupt(TrainerCallback):
    """Stops training with an exception right after ``at_step``, as a crash or a pre-empted job would."""

    def __init__(self, at_step: int):
        self.at_step = at_step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.at_step:
            raise KeyboardInterrupt(f"simulated interruption after step {self.at_step}")


class StepRecorder(TrainerCallback):
    def __init__(self):
        self.steps = []

    def on_step_end(self, args, state, control, **kwargs):
        self.steps.append(state.global_step)


def final_weights(run_dir: Path, stage: str) -> dict[str, torch.Tensor]:
    return load_file(run_dir / stage / "final" / "model.safetensors")


def interrupt_and_resume(run_dir: Path, overrides: list[str], at_step: int) -> tuple[dict, list[int]]:
    with pytest.raises(KeyboardInterrupt):
        run_training(None, overrides=overrides, callbacks=[Interrupt(at_step)])
    recorder = StepRecorder()
    results = run_training(None, overrides=overrides, callbacks=[recorder])
    return results, recorder.steps


@pytest.mark.parametrize("lora", [[], ["model.lora={r: 4, alpha: 8}"]], ids=["full", "lora"])
def test_resumed_sft_continues_from_the_saved_step_and_loses_nothing(tmp_path, lora):
    sft_only = ["run.stages=[sft]", "eval.points=[]", "sft.max_steps=6", "sft.save_steps=2", *lora]
    straight = tmp_path / "straight"
    run_training(None, overrides=tiny_run(straight, *sft_only))

    interrupted = tmp_path / "interrupted"
    results, steps = interrupt_and_resume(interrupted, tiny_run(interrupted, *sft_only), at_step=3)
    assert steps == [3, 4, 5, 6]
    assert results["stages"]["sft"]["resumed_from"].endswith("checkpoint-2")
    # The resumed run ends with exactly the weights of the run that was never interrupted: model, optimizer,
    # scheduler, RNG and data position all came back from the checkpoint.
    a, b = final_weights(straight, "sft"), final_weights(interrupted, "sft")
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], msg=name)
    base = load_file(interrupted / "base-model" / "model.safetensors")
    assert any(not torch.equal(base[n], b[n]) for n in b), "training changed nothing; the comparison proves nothing"


def test_resumed_grpo_continues_from_the_saved_step(tmp_path):
    grpo_only = ["run.stages=[grpo]", "eval.points=[]", "grpo.save_steps=2"]
    results, steps = interrupt_and_resume(tmp_path, tiny_run(tmp_path, *grpo_only), at_step=3)
    assert steps == [3, 4]
    assert results["stages"]["grpo"]["resumed_from"].endswith("checkpoint-2")
    state = json.loads((tmp_path / "grpo" / "checkpoint-4" / "trainer_state.json").read_text())
    assert [h["step"] for h in state["log_history"] if "loss" in h] == [1, 2, 3, 4]


def test_sft_then_grpo_end_to_end(tmp_path):
    """Build a tiny model, warm-start it on demonstrations, then GRPO through the env: the loss must move.

    GRPO's loss is zero when every rollout of a group earns the same reward. A model this small cannot solve unseen
    tickets in a test's time, so the warm start memorises the two GRPO tasks (short ones: three tool calls);
    sampled rollouts then sometimes follow the demonstration (score 1) and sometimes stray (lower checker score),
    and that spread gives a non-zero loss.
    """
    results = run_training(
        None,
        overrides=tiny_run(
            tmp_path,
            "model.tiny.hidden_size=64",
            "model.tiny.vocab_size=2048",
            "data.sft_tasks=2",
            "data.sft_noise=0",
            "data.grpo_tasks=2",
            "data.grpo_task_offset=0",
            "data.max_required_steps=3",
            "sft.max_steps=80",
            "sft.per_device_train_batch_size=2",
            "sft.learning_rate=5.0e-3",
            "grpo.max_steps=3",
            "grpo.num_generations=8",
            "grpo.per_device_train_batch_size=8",
            "grpo.max_completion_length=256",
            "grpo.temperature=1.0",
            "eval.points=[before, after]",
            "eval.splits=[seen]",
            "eval.tasks=2",
            "eval.max_new_tokens=64",
            "eval.max_turns=12",
            "sft.report_to=[tensorboard]",
            "grpo.report_to=[tensorboard]",
        ),
    )
    assert (tmp_path / "grpo" / "final" / "model.safetensors").is_file()
    assert (tmp_path / "results.json").is_file() and (tmp_path / "config.yaml").is_file()
    assert list((tmp_path / "grpo").rglob("events.out.tfevents.*")), "no tensorboard logs"
    grpo_logs = [h for h in results["stages"]["grpo"]["log_history"] if "loss" in h]
    assert len(grpo_logs) == 3
    assert any(h["reward_std"] > 0.0 for h in grpo_logs), grpo_logs
    assert any(h["loss"] != 0.0 for h in grpo_logs), grpo_logs
    before, after = results["eval"]["before"]["seen"], results["eval"]["after"]["seen"]
    assert before["mean_score"] == 0.0 and after["mean_score"] > 0.0
    assert after["folder"] == str(tmp_path / "eval" / "after" / "seen")


def test_training_evaluations_are_evaluation_folders_that_report_reads(tmp_path, capsys):
    """Training evaluates through the runner of recoverygym eval: each point and set is an ordinary evaluation folder
    (the runner's config, one record per episode with its whole trajectory), resumable and readable by
    ``recoverygym report``, which pairs "after" with "before" on the same tasks."""
    from training.evaluation import cli
    from training.evaluation.runner import load_episodes

    overrides = tiny_run(tmp_path, "run.stages=[sft]", "sft.max_steps=1", "eval.points=[before, after]",
                         "eval.splits=[heldout, train]", "eval.tasks=2", "eval.max_new_tokens=8")
    results = run_training(None, overrides=overrides)
    for point in ("before", "after"):
        for split in ("heldout", "train"):
            folder = tmp_path / "eval" / point / split
            config = json.loads((folder / "config.json").read_text())
            assert config["eval"]["splits"] == (["heldout"] if split == "heldout" else ["train"])
            assert config["eval"]["max_turns"] == 2 and config["policy"]["policy"] == "transformers"
            records = load_episodes(folder / "episodes.jsonl")
            assert len(records) == 2 and all(r["policy"] == f"{tmp_path.name}-{point}" for r in records)
            assert all(r["steps"] and r["prompt"] for r in records)
            summary = results["eval"][point][split]
            assert summary["tasks"] == 2 and summary["folder"] == str(folder)
            assert summary["success_rate"] == sum(r["success"] for r in records) / 2
    train = load_episodes(tmp_path / "eval" / "before" / "train" / "episodes.jsonl")
    assert all(r["task_seed"] >= 1_000_000 for r in train)
    assert "recoverygym report" in capsys.readouterr().out
    folders = [str(tmp_path / "eval" / p / "heldout") for p in ("before", "after")]
    assert cli.main(["report", *folders, "--out", str(tmp_path / "report")]) == 0
    report = (tmp_path / "report" / "report.md").read_text()
    assert f"{tmp_path.name}-before" in report and f"{tmp_path.name}-after" in report


def test_table_says_when_the_task_filter_applied_and_never_on_held_out():
    row = {"tasks": 4, "success_rate": 0.25, "mean_score": 0.5, "mean_tool_calls": 3.0}
    results = {"eval": {"after": {"train": row, "heldout": row}}, "config": {"data": {"max_required_steps": 6}}}
    lines = results_table(results).splitlines()
    assert lines[2].startswith("after training, unseen train-template tasks (only tasks of <= 6 calls)  4")
    assert lines[3].startswith("after training, held-out split  ")
    results["config"]["data"]["max_required_steps"] = None
    assert "only tasks" not in results_table(results)
    assert results_table({"eval": {}}).startswith("no evaluation in this run (eval.points is empty)")


def test_table_compares_each_point_with_before_on_the_same_tasks():
    def point(solved):
        episodes = [{"task_seed": k, "success": k in solved, "score": float(k in solved)} for k in range(6)]
        recovery = {"transient_error": {"events": 2, "handled": 1}, "rate_limit": {"events": 1, "handled": 1},
                    "rejected_call": {"events": 3, "handled": 0}, "all": {"events": 6, "handled": 2}}
        return {"tasks": 6, "success_rate": len(solved) / 6, "mean_score": len(solved) / 6, "mean_tool_calls": 1.0,
                "recovery": recovery, "episodes": episodes}

    results = {"eval": {"before": {"heldout": point({0})}, "after": {"heldout": point({1, 2, 3, 4, 5})}}}
    header, _, before, after = results_table(results).splitlines()
    assert header.endswith("faults handled  rejections handled  vs before: +/- tasks, p")
    # faults handled: 2 of the 3 that fired; rejections: 0 of 3; no last cell: nothing to compare "before" with
    assert len(before) < len(header) and before.split()[-2:] == ["2/3", "0/3"]
    del results["eval"]["before"]["heldout"]["recovery"]  # a results.json written before the recovery records
    assert results_table(results).splitlines()[2].split()[-2:] == ["-", "-"]
    assert after.endswith("+5/-1, p=0.22")  # 2 * (C(6,0) + C(6,1)) / 2^6 = 0.219
    results["eval"]["after"]["heldout"]["faults"] = {"rate_limit": 0.5}  # a resumed run evaluated otherwise
    assert results_table(results).splitlines()[3].endswith("  -")
    del results["eval"]["before"]
    assert results_table(results).splitlines()[2].endswith("  -")
    del results["eval"]["after"]["heldout"]["episodes"]  # a results.json written before episodes were kept
    results["eval"]["before"] = {"heldout": {**point(set()), "episodes": []}}
    assert results_table(results).splitlines()[3].endswith("  -")


def test_lora_trains_adapters_and_leaves_plain_merged_checkpoints(tmp_path):
    run_training(None, overrides=tiny_run(tmp_path, "model.lora={r: 4, alpha: 8}", "sft.max_steps=2",
                                          "sft.learning_rate=1.0e-2", "grpo.max_steps=2", "eval.points=[after]"))
    for stage in ("sft", "grpo"):
        checkpoint = tmp_path / stage / "checkpoint-2"
        assert (checkpoint / "adapter_model.safetensors").is_file(), "the trainer did not train LoRA adapters"
        assert not (checkpoint / "model.safetensors").exists()
        final = tmp_path / stage / "final"
        assert (final / "model.safetensors").is_file() and not (final / "adapter_config.json").exists()
    base = load_file(tmp_path / "base-model" / "model.safetensors")
    tuned = load_file(tmp_path / "sft" / "final" / "model.safetensors")
    assert base.keys() == tuned.keys()  # merged back into the base architecture, no lora_ weights left
    changed = {k for k in base if not torch.equal(base[k], tuned[k])}
    assert changed and all("proj" in k for k in changed), changed  # only the adapted linear layers moved


def launch_training(launcher: list[str], overrides: list[str], **env: str):
    """``python -m <launcher...> -m training.train configs/quickstart.yaml --set ...`` from the repository root, one
    thread per process (plus ``env``); asserts it succeeded and returns the finished process."""
    import os
    import subprocess
    import sys

    command = [sys.executable, "-m", *launcher, "-m", "training.train", "configs/quickstart.yaml",
               *[a for o in overrides for a in ("--set", o)]]
    done = subprocess.run(command, env=os.environ | {"OMP_NUM_THREADS": "1", **env}, capture_output=True,
                          text=True, timeout=600, cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def test_two_processes_train_together_and_only_the_main_one_builds_evaluates_and_writes(tmp_path):
    """The multi-GPU code path (DDP, main-process-only steps, barriers) on two CPU processes: torchrun is what
    ``accelerate launch`` runs for several GPUs; ``ACCELERATE_USE_CPU`` makes accelerate use gloo on the CPU."""
    overrides = tiny_run(tmp_path, "eval.points=[before, after]", "sft.max_steps=2",
                         "sft.per_device_train_batch_size=2", "grpo.max_steps=2",
                         "grpo.per_device_train_batch_size=2")  # x 2 processes = one group of 4
    done = launch_training(["torch.distributed.run", "--standalone", "--nproc_per_node", "2"], overrides,
                           ACCELERATE_USE_CPU="true")
    # With one process GRPOConfig would refuse the config: 2 rollouts per device cannot hold a group of 4.
    assert done.stdout.count("building a tiny llama model") == 1
    assert done.stdout.count("sft step 2/2") == 1 and done.stdout.count("grpo step 2/2") == 1
    printed = done.stdout + done.stderr  # what a newcomer reads, without --verbose:
    for noise in ("Tokenizing train dataset", "Loading weights", "FutureWarning", "pin_memory", "experimental",
                  "Setting accelerator to CPU"):
        assert noise not in printed, noise
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results["eval"]) == {"before", "after"} and results["final_model"].endswith("grpo/final")
    assert (tmp_path / "grpo" / "final" / "model.safetensors").is_file()


def zero_launch(zero: int, overrides: list[str]) -> str:
    """``accelerate launch`` of the quick start with the shipped ZeRO config on two CPU processes (gloo instead of
    NCCL); returns what it printed."""
    import socket

    with socket.socket() as probe:  # the configs' fixed port may still be held by the previous launch
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    launcher = ["accelerate.commands.launch", "--config_file", f"configs/accelerate/zero{zero}.yaml",
                "--num_processes", "2", "--mixed_precision", "no", "--main_process_port", str(port)]
    done = launch_training(launcher, [*overrides, "sft.ddp_backend=gloo", "grpo.ddp_backend=gloo"])
    assert "DeepSpeed" in done.stdout + done.stderr  # the launch really went through DeepSpeed
    return done.stdout


@pytest.mark.parametrize(("zero", "lora"), [(2, False), (3, False), (3, True)])
def test_deepspeed_zero_launch_trains_saves_whole_weights_and_evaluates(tmp_path, zero, lora):
    """Hidden size 320 makes the linear layers big enough (> 1e5 weights) for ZeRO-3 to shard them, so the final
    checkpoints must gather them (the LoRA merge included) and the main process's evaluations must load a whole
    model on its own."""
    extra = ["model.lora={r: 4, alpha: 8}"] if lora else []
    zero_launch(zero, tiny_run(tmp_path, "model.tiny.hidden_size=320", "eval.points=[after_sft, after]",
                               "eval.tasks=1", "sft.max_steps=2", "sft.per_device_train_batch_size=2",
                               "sft.learning_rate=1.0e-2", "grpo.max_steps=1", "grpo.per_device_train_batch_size=2",
                               *extra))
    checkpoint = tmp_path / "sft" / "checkpoint-2"
    assert (checkpoint / "global_step2").is_dir(), "not a DeepSpeed checkpoint"
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results["eval"]) == {"after_sft", "after"}
    base = load_file(tmp_path / "base-model" / "model.safetensors")
    for stage in ("sft", "grpo"):
        tuned = load_file(tmp_path / stage / "final" / "model.safetensors")
        # whole, not shards (DeepSpeed also writes the tied lm_head.weight out, hence not an equality of keys)
        assert all(tuned[k].shape == v.shape for k, v in base.items())
    changed = {k for k in base if not torch.equal(base[k], tuned[k])}
    assert changed and (not lora or all("proj" in k for k in changed)), changed


@pytest.mark.parametrize("zero", [2, 3])
def test_deepspeed_run_resumes_from_its_last_checkpoint_to_the_same_weights(tmp_path, zero):
    """A pre-empted multi-GPU job: its last checkpoint is DeepSpeed's (sharded optimizer state); resuming from it
    ends with exactly the weights of the uninterrupted run."""
    import shutil

    def sft(run_dir: Path) -> list[str]:
        return tiny_run(run_dir, "model.tiny.hidden_size=320", "run.stages=[sft]", "eval.points=[]",
                        "sft.max_steps=3", "sft.save_steps=1", "sft.per_device_train_batch_size=2",
                        "sft.learning_rate=1.0e-2")

    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    zero_launch(zero, sft(whole))
    shutil.copytree(whole, resumed)  # as if it had stopped after step 2
    shutil.rmtree(resumed / "sft" / "final")
    shutil.rmtree(resumed / "sft" / "checkpoint-3")
    printed = zero_launch(zero, sft(resumed))
    assert "resuming from" in printed and "checkpoint-2" in printed and "sft step 3/3" in printed, printed[-3000:]
    assert "sft step 1/3" not in printed, printed[-3000:]
    a = load_file(whole / "sft" / "final" / "model.safetensors")
    b = load_file(resumed / "sft" / "final" / "model.safetensors")
    assert {k for k in a if not torch.equal(a[k], b[k])} == set()


def test_a_stage_that_saves_no_weights_stops_and_says_why(tmp_path):
    """What ZeRO-3 without zero3_save_16bit_model leaves: a final folder with no weights for the next stage to trip
    on."""
    from types import SimpleNamespace

    from training.train import _save_final

    accelerator = SimpleNamespace(is_main_process=True, wait_for_everyone=lambda: None)
    trainer = SimpleNamespace(model=torch.nn.Linear(2, 2), accelerator=accelerator,
                              save_model=lambda path: Path(path).mkdir())  # a folder, no weights
    with pytest.raises(RuntimeError, match="zero3_save_16bit_model: true"):
        _save_final(trainer, None, tmp_path / "final")
    assert not (tmp_path / "final").exists()


def test_gpu_check_script_runs_both_phases_and_sends_back_no_weights(tmp_path):
    """scripts/gpu_check.sh is what a lent GPU machine runs; here on the CPU with a tiny model, so its plumbing
    (overrides, both phases, the figures it writes, weights left behind) is proven before a GPU session spends
    device time on it."""
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    sets = [o for o in tiny_run(tmp_path / "unused") if not o.startswith(("run.output_dir", "sft.max_steps",
                                                                             "grpo.max_steps", "eval.tasks"))]
    env = os.environ | {
        "OUT": str(tmp_path), "CONFIG": "configs/quickstart.yaml", "SETS": " ".join(sets),
        "SFT_STEPS": "2", "GRPO_STEPS": "1", "EVAL_TASKS": "2", "BENCH_SFT_STEPS": "1", "BENCH_STEPS": "2",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    done = subprocess.run(["bash", "scripts/gpu_check.sh"], env=env, capture_output=True, text=True, timeout=600,
                          cwd=root)
    assert done.returncode == 0, done.stdout[-3000:] + (tmp_path / "train.log").read_text()[-3000:]
    figures = json.loads((tmp_path / "bench_training.json").read_text())
    assert figures["device"] == "cpu" and figures["timed_steps"] == 1 and 0 < figures["share_env"] < 1
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert set(results["eval"]) == {"before", "after_sft", "after"}
    assert "training exit 0" in (tmp_path / "gpu_check.log").read_text()
    assert not list(tmp_path.rglob("*.safetensors"))  # nothing too big for the device tool's trip back
