"""The recovery experiment's one command (scripts/recovery_experiment.py) end to end on a very small model: every
step runs, resumes without redoing work, and summary.json and results.md come from the runs' own records."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("recovery_experiment", ROOT / "scripts" / "recovery_experiment.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _overrides(tmp_path: Path) -> list[str]:
    train = ["model.tiny.hidden_size=32", "model.tiny.vocab_size=1024", "model.tiny.tokenizer_episodes=20",
             "data.sft_tasks=8", "data.grpo_tasks=2", "sft.max_steps=2", "sft.per_device_train_batch_size=4",
             "sft.save_steps=1", "sft.report_to=[]", "grpo.report_to=[]"]
    return [f"output_dir={tmp_path / 'run'}", f"summary={tmp_path / 'doc' / 'summary.json'}",
            f"train_set={json.dumps(train)}", "grpo.max_steps=1", "grpo.num_generations=2",
            "grpo.per_device_train_batch_size=2", "grpo.max_completion_length=32", "grpo.save_steps=1",
            "grpo.max_tool_calling_iterations=2", "model_episodes=2", "heldout.tasks=3", "heldout.branch_per_task=2",
            "heldout.max_turns=8", "heldout.batch_size=4", "best_of_k=2", "max_new_tokens=12", "threads=1"]


def test_every_arm_runs_and_the_summary_comes_from_the_records(tmp_path, capsys):
    script = _script()
    overrides = [a for o in _overrides(tmp_path) for a in ("--set", o)]
    assert script.main(["configs/recovery-tiny.yaml", *overrides]) == 0
    doc = json.loads((tmp_path / "doc" / "summary.json").read_text())
    assert doc["env_id"] == "recoverygym/SupportDesk-v0" and doc["heldout"]["branch_starts"] >= 2
    assert set(doc["arms"]) == set(script.ARMS)
    for name, arm in doc["arms"].items():
        assert arm["status"] == "complete", (name, arm)
        counts = arm["primary_counts"]
        assert counts["branch_starts"] == doc["heldout"]["branch_starts"]
        assert arm["primary"] == pytest.approx(counts["handled"] / counts["branch_starts"])
        assert arm["episodes"] == 3 and 0.0 <= arm["success"] <= 1.0
        if name != "sft":
            assert set(arm["vs_sft"]) == {"primary", "success", "branch_success"}
            assert "p_holm" in arm["vs_sft"]["primary"]
    for name in ("grpo_branches", "grpo_whole"):
        assert doc["arms"][name]["grpo"]["steps"] == 1
    rows = json.loads((tmp_path / "run" / "grpo_branches" / "results.json").read_text())["stages"]["grpo"]
    assert rows["grpo_rows"]["starts"] == "branches" and rows["grpo_rows"]["rows"] >= 1
    assert "vs_grpo_whole" in doc["arms"]["grpo_branches"]
    # best-of-k pays k samples per turn
    assert doc["arms"]["best_of_k"]["tokens_per_episode"] > doc["arms"]["sft"]["tokens_per_episode"]
    results = (tmp_path / "doc" / "results.md").read_text()
    assert "| grpo_branches | complete |" in results and "Why GRPO moved" in results
    for part in ("branches", "heldout"):
        assert (tmp_path / "doc" / part / "report.md").is_file() and (tmp_path / "doc" / part / "viewer.html").is_file()

    # Run again: nothing is retrained or re-evaluated, and the summary's figures are the same.
    capsys.readouterr()
    assert script.main(["configs/recovery-tiny.yaml", *overrides]) == 0
    out = capsys.readouterr().out
    assert "sft: done" in out and "grpo_branches: done" in out and "grpo_whole: done" in out
    again = json.loads((tmp_path / "doc" / "summary.json").read_text())
    assert {k: {m: a.get(m) for m in ("primary", "success", "score")} for k, a in again["arms"].items()} == \
        {k: {m: a.get(m) for m in ("primary", "success", "score")} for k, a in doc["arms"].items()}

    # An arm whose branch starts are all in but whose whole episodes are not: the primary measure, nothing else.
    whole = tmp_path / "run" / "eval" / "scaffold" / "heldout" / "episodes.jsonl"
    whole.write_text(whole.read_text().splitlines(keepends=True)[0])
    assert script.main(["configs/recovery-tiny.yaml", *overrides, "--steps", "summary"]) == 0
    partial = json.loads((tmp_path / "doc" / "summary.json").read_text())["arms"]["scaffold"]
    assert partial["status"] == "primary only" and partial["episodes_done"] == 1
    assert partial["primary"] == doc["arms"]["scaffold"]["primary"]
    assert partial["success"] is None and partial["vs_sft"]["success"]["better"] is None
    assert partial["vs_sft"]["primary"] == doc["arms"]["scaffold"]["vs_sft"]["primary"]
    assert "| scaffold | primary only (" in (tmp_path / "doc" / "results.md").read_text()


def test_an_arm_not_evaluated_is_marked_so_never_filled_in(tmp_path):
    script = _script()
    overrides = [a for o in _overrides(tmp_path) + ["arms=[sft, scaffold]"] for a in ("--set", o)]
    assert script.main(["configs/recovery-tiny.yaml", *overrides, "--steps", "sft", "summary"]) == 0
    doc = json.loads((tmp_path / "doc" / "summary.json").read_text())
    assert all(arm == {"status": "not run"} for arm in doc["arms"].values())
    assert "| sft | not run |" in (tmp_path / "doc" / "results.md").read_text()


def test_settings_are_strict():
    script = _script()
    with pytest.raises(ValueError, match="unknown key"):
        script.load_settings("configs/recovery-tiny.yaml", ["heldout.taks=3"])
    with pytest.raises(ValueError, match="unknown arm"):
        script.load_settings("configs/recovery-tiny.yaml", ["arms=[sft, magic]"])
