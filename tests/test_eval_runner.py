"""The evaluation runner end to end on the real environments: determinism, resume, report, viewer, CLI."""

import json
import os
import subprocess
import sys

import gymnasium
import numpy as np
import pytest

import envs  # noqa: F401  (registers the ids)
from training.evaluation import cli
from training.evaluation.episode import Episode
from training.evaluation.policies import (
    DoNothingPolicy,
    NoisyReferencePolicy,
    RandomPolicy,
    ReferencePolicy,
)
from training.evaluation.report import write_report
from training.evaluation.runner import EvalConfig, load_episodes, run_eval, to_dataset

ENV_IDS = sorted(k for k in gymnasium.registry if k.startswith("recoverygym/"))
SUPPORT = "recoverygym/SupportDesk-v0"


def _config(env_ids=ENV_IDS, **kw):
    defaults = {"env_ids": tuple(env_ids), "splits": ("heldout",), "fault_kinds": ("none", "all"),
                "fault_rate": 0.3, "tasks": 3, "samples": 2, "seed": 0}
    return EvalConfig(**(defaults | kw))


def _strip(records):
    return [{k: v for k, v in r.items() if k != "wall_s"} for r in records]


def test_registry_has_environments():
    assert SUPPORT in ENV_IDS and len(ENV_IDS) >= 2


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_reference_succeeds_and_do_nothing_and_random_fail(env_id, tmp_path):
    config = _config([env_id])
    ref = run_eval(ReferencePolicy(), config, tmp_path / "ref", progress=False)
    assert ref["episodes"] == 12
    assert all(row["success_rate"] == 1.0 for row in ref["summary"]), ref["summary"]
    for policy in (DoNothingPolicy(), RandomPolicy()):
        res = run_eval(policy, config, tmp_path / policy.name, progress=False)
        assert all(row["success_rate"] == 0.0 for row in res["summary"]), (policy.name, res["summary"])


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_reference_recovers_from_every_fault_kind(env_id, tmp_path):
    kinds = ("all", "transient_error", "rate_limit", "write_timeout", "stale_read", "concurrent_edit", "seeded_error")
    res = run_eval(ReferencePolicy(), _config([env_id], fault_kinds=kinds, fault_rate=0.5, tasks=4, samples=1),
                   tmp_path, progress=False)
    recovery = res["overall"][0]["recovery"]
    # a stale read needs a read after a write that changed its answer, which the reference plan rarely makes
    assert {"transient_error", "rate_limit", "write_timeout", "concurrent_edit", "seeded_error"} <= set(recovery)
    for kind, stats in recovery.items():
        assert stats["recovery_rate"] == 1.0 and stats["unrecovered_faults"] == 0, (kind, stats)
    # a tool still rate-limited answers 429 without a new fault: that turn is not a successful call, so waiting
    # out a retry-after of 2 s takes more than one turn
    steps = [step for ep in load_episodes(tmp_path / "episodes.jsonl") for step in ep["steps"]]
    blocked = [step for step in steps if step["observation"].startswith("error 429") and not step["faults"]]
    assert blocked and not any(step["ok"] for step in blocked)
    assert recovery["rate_limit"]["mean_turns_to_recover"] > 1.0
    # every other step is a successful call, except a stale read: no error, but a fault fired
    assert all(step["ok"] for step in steps if not step["observation"].startswith("error") and not step["faults"])


@pytest.mark.parametrize("near_miss", [0.0, 1.0])
def test_scripted_runs_are_deterministic_whatever_the_batch_size(near_miss, tmp_path):
    config = _config(batch_size=1)
    runs = []
    for name, cfg in (("a", config), ("b", _config(batch_size=5)), ("c", config)):
        run_eval(NoisyReferencePolicy(0.3, near_miss=near_miss), cfg, tmp_path / name, progress=False)
        runs.append(_strip(load_episodes(tmp_path / name / "episodes.jsonl")))
    def key(r):
        return (r["env_id"], r["fault_kind"], r["task_seed"], r["sample"])

    assert sorted(runs[0], key=key) == sorted(runs[1], key=key) == sorted(runs[2], key=key)
    assert any(r["faults"] for r in runs[0]), "fault_rate 0.3 should fire some faults"
    # another seed draws other faults and noise
    run_eval(NoisyReferencePolicy(0.3, near_miss=near_miss), _config(seed=1), tmp_path / "d", progress=False)
    assert sorted(_strip(load_episodes(tmp_path / "d" / "episodes.jsonl")), key=key) != sorted(runs[0], key=key)


def test_near_miss_reference_slips_on_the_reference_call_and_recovers(tmp_path, capsys):
    out = tmp_path / "eval"
    code = cli.main(["eval", "--env", SUPPORT, "--policy", "near-miss-reference:0.3", "--policy", "noisy-reference:0.3",
                     "--tasks", "6", "--samples", "1", "--faults", "none", "--out", str(out), "--no-progress"])
    assert code == 0
    near = json.loads((out / "near-miss-reference-0.3" / "results.json").read_text())
    noisy = json.loads((out / "noisy-reference-0.3" / "results.json").read_text())
    assert near["config"]["policy"] == {"policy": "noisy-reference", "p": 0.3, "near_miss": 1.0}
    assert noisy["config"]["policy"] == {"policy": "noisy-reference", "p": 0.3}  # as before near misses existed
    episodes = load_episodes(out / "near-miss-reference-0.3" / "episodes.jsonl")
    assert any(not step["ok"] for ep in episodes for step in ep["steps"]), "p=0.3 should make rejected calls"
    assert any(ep["success"] for ep in episodes)

    # a slip is the reference's own call with one argument changed
    env = gymnasium.make(SUPPORT)
    prompt, info = env.reset(seed=0, options={"task_seed": 0, "split": "heldout"})
    episode = Episode(env=env, prompt=prompt, info=info, rng=np.random.default_rng(0))
    reference = json.loads(env.unwrapped.reference_action())
    slip = json.loads(NoisyReferencePolicy(1.0, near_miss=1.0).act([episode])[0].text)
    assert slip["name"] == reference["name"] and slip != reference


class _Interrupting:
    """Delegates to a policy and raises KeyboardInterrupt on its ``stop_at``-th call."""

    def __init__(self, inner, stop_at):
        self.inner, self.stop_at, self.calls = inner, stop_at, 0
        self.name = inner.name

    def act(self, episodes):
        self.calls += 1
        if self.calls == self.stop_at:
            raise KeyboardInterrupt
        return self.inner.act(episodes)

    def config(self):
        return self.inner.config()


def test_resume_after_interruption_skips_finished_episodes(tmp_path):
    config = _config([SUPPORT], batch_size=3)
    run_eval(ReferencePolicy(), config, tmp_path / "full", progress=False)
    full = _strip(load_episodes(tmp_path / "full" / "episodes.jsonl"))

    out = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        run_eval(_Interrupting(ReferencePolicy(), stop_at=12), config, out, progress=False)
    first = load_episodes(out / "episodes.jsonl")
    assert 0 < len(first) < len(full)
    with (out / "episodes.jsonl").open("a") as f:
        f.write('{"env_id": "recoverygym/Supp')  # a line cut short by the interruption

    starts = []
    policy = ReferencePolicy()
    inner_act = policy.act

    def counting(episodes):
        starts.extend((e.info["task_seed"], e.info.get("split")) for e in episodes if not e.history)
        return inner_act(episodes)

    policy.act = counting
    run_eval(policy, config, out, progress=False)
    resumed = load_episodes(out / "episodes.jsonl")
    assert resumed[: len(first)] == first  # finished episodes untouched
    assert len(starts) == len(full) - len(first)  # and not played again
    def key(r):
        return (r["fault_kind"], r["task_seed"], r["sample"])

    assert sorted(_strip(resumed), key=key) == sorted(full, key=key)

    with pytest.raises(ValueError, match="different config"):
        run_eval(ReferencePolicy(), _config([SUPPORT], samples=3), out, progress=False)


def test_resume_refuses_an_environment_that_no_longer_gives_the_recorded_tasks(tmp_path):
    config = _config([SUPPORT], fault_kinds=("none",), batch_size=2)
    with pytest.raises(KeyboardInterrupt):
        run_eval(_Interrupting(ReferencePolicy(), stop_at=20), config, tmp_path, progress=False)
    lines = (tmp_path / "episodes.jsonl").read_text().splitlines()
    record = json.loads(lines[0])
    record["prompt"] = record["prompt"].replace("Ticket", "Tickets", 1)  # as if task 0 came out differently now
    (tmp_path / "episodes.jsonl").write_text("\n".join([json.dumps(record), *lines[1:]]) + "\n")
    with pytest.raises(ValueError, match="another prompt in this process"):
        run_eval(ReferencePolicy(), config, tmp_path, progress=False)
    assert (tmp_path / "episodes.jsonl").read_text().splitlines()[0] == json.dumps(record)  # nothing lost


def test_resume_refuses_episodes_recorded_before_recovery_records(tmp_path):
    """Old episodes carry no recovery records; mixed with new ones the handled-event counts would leave their
    events out without a word, so adding episodes to such a folder is refused and nothing in it is touched."""
    config = _config([SUPPORT], fault_kinds=("all",), tasks=2, samples=1)
    run_eval(ReferencePolicy(), config, tmp_path, progress=False)
    lines = (tmp_path / "episodes.jsonl").read_text().splitlines()
    old = [json.dumps({k: v for k, v in json.loads(line).items() if k != "recovery"}) for line in lines]
    (tmp_path / "episodes.jsonl").write_text("\n".join(old) + "\n")
    config_before = (tmp_path / "config.json").read_text()
    with pytest.raises(ValueError, match="2 of its 2 episodes were recorded before .* pass --overwrite"):
        run_eval(ReferencePolicy(), _config([SUPPORT], fault_kinds=("all",), tasks=3, samples=1), tmp_path,
                 progress=False)
    assert (tmp_path / "episodes.jsonl").read_text().splitlines() == old
    assert (tmp_path / "config.json").read_text() == config_before  # a refused run leaves the folder as it was
    run_eval(ReferencePolicy(), config, tmp_path, progress=False)  # nothing to add: the folder is read as it is


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_a_run_in_another_process_plays_the_same_episodes(env_id, tmp_path):
    """What resuming an interrupted evaluation relies on: task k is the same task in every process."""
    runs = []
    for hash_seed in ("1", "2"):
        out = tmp_path / hash_seed
        argv = ["eval", "--env", env_id, "--policy", "noisy-reference:0.3", "--tasks", "12", "--samples", "1",
                "--faults", "none", "--out", str(out), "--no-progress"]
        code = f"import sys; from training.evaluation import cli; sys.exit(cli.main({argv!r}))"
        subprocess.run([sys.executable, "-c", code], check=True, env=os.environ | {"PYTHONHASHSEED": hash_seed},
                       capture_output=True)
        runs.append(_strip(load_episodes(out / "noisy-reference-0.3" / "episodes.jsonl")))
    assert runs[0] == runs[1]


def test_report_pairs_only_runs_under_the_first_runs_fault_rate_and_turn_limit(tmp_path):
    from training.evaluation.report import load_run, paired_table

    env = ["recoverygym/SupportDesk-v0"]
    run_eval(ReferencePolicy(), _config(env, samples=1), tmp_path / "a", progress=False)
    run_eval(DoNothingPolicy(), _config(env, samples=1), tmp_path / "b", progress=False)
    run_eval(DoNothingPolicy(), _config(env, samples=1, max_turns=5), tmp_path / "c", progress=False)
    runs = [load_run(tmp_path / "a"), load_run(tmp_path / "b"), load_run(tmp_path / "c", label="capped")]
    lines, unpaired = paired_table(runs)
    assert unpaired == ["capped"]
    assert len(lines) == 2 + 2 and not any("capped" in line for line in lines)  # header, rule, b: none and all


def test_report_viewer_and_dataset_from_a_small_run(tmp_path):
    config = _config(fault_kinds=("none", "all"), fault_rate=0.4)
    folders = []
    for policy in (ReferencePolicy(), NoisyReferencePolicy(0.5), DoNothingPolicy()):
        run_eval(policy, config, tmp_path / policy.name, progress=False)
        folders.append(tmp_path / policy.name)
    results = json.loads((folders[0] / "results.json").read_text())
    assert results["config"]["eval"]["tasks"] == 3 and results["config"]["policy"] == {"policy": "reference"}
    assert {"python", "gymnasium", "numpy"} <= set(results["versions"])

    report = write_report(folders, tmp_path / "report", command="pytest")
    text = report.read_text()
    assert "Warning" not in text  # every run saw the same prompt for each task
    for heading in ("Overview", "Success by split and fault kind", "Comparison", "Paired on the same tasks",
                    "pass^k", "Recovery", "Compounding"):
        assert heading in text
    # the reference solves every task, do-nothing none: all 3 tasks of each env and fault setting are worse
    section = text.split("### Paired")[1].split("\n## ")[0]
    paired = [line.split(" | ") for line in section.splitlines() if "| do-nothing |" in line]
    assert len(paired) == 2 * len(ENV_IDS) and all(cells[5] == "0 / 3 / 0" for cells in paired)
    assert all(cells[6] == "0.25" and cells[7] == "-100.0 [-100.0, -100.0]" for cells in paired)
    assert all(cells[8:10] == ["0 / 3", "0.25"] for cells in paired)  # do-nothing scores 0, the reference 1
    assert "| reference |" in text and "| do-nothing |" in text
    for png in ("success_by_split_and_fault.png", "pass_k.png", "compounding_error.png", "recovery_by_fault.png"):
        assert (tmp_path / "report" / png).read_bytes()[:4] == b"\x89PNG"
    viewer = (tmp_path / "report" / "viewer.html").read_text()
    assert "class='badge fault'" in viewer  # injected faults highlighted
    assert "class='reason'" in viewer  # failed episodes show the checker's reasons
    episodes = load_episodes(folders[2] / "episodes.jsonl")
    assert all(ep["reasons"] for ep in episodes if not ep["success"])

    episodes = [json.loads(line) for line in (folders[1] / "episodes.jsonl").read_text().splitlines()]
    episodes[0]["prompt"] += " (another task)"
    (folders[1] / "episodes.jsonl").write_text("".join(json.dumps(ep) + "\n" for ep in episodes))
    assert "**Warning**: 1 tasks were seen with different prompts" in write_report(folders, tmp_path / "r2").read_text()

    ds = to_dataset(load_episodes(folders[0] / "episodes.jsonl"))
    assert ds.num_rows == 2 * 3 * 2 * len(ENV_IDS)
    assert ds[0]["messages"][0]["role"] == "user" and ds[0]["messages"][1]["role"] == "assistant"


def test_cli_eval_then_report(tmp_path, capsys):
    out = tmp_path / "eval"
    code = cli.main(["eval", "--env", SUPPORT, "--policy", "reference", "--policy", "do-nothing", "--tasks", "2",
                     "--samples", "2", "--faults", "none,transient_error", "--out", str(out), "--no-progress",
                     "--dataset", str(tmp_path / "ds")])
    assert code == 0
    printed = capsys.readouterr().out
    assert "success 100.0%" in printed and "success   0.0%" in printed
    assert (out / "reference" / "results.json").exists() and (tmp_path / "ds" / "do-nothing").is_dir()
    code = cli.main(["report", str(out / "reference"), str(out / "do-nothing"), "--out", str(tmp_path / "rep")])
    assert code == 0 and (tmp_path / "rep" / "report.md").exists()
    with pytest.raises(SystemExit):
        cli.main(["eval", "--env", SUPPORT, "--policy", "refrence", "--out", str(out)])
    assert "unknown policy spec 'refrence'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--env", "recoverygym/SuportDesk-v0"], "did you mean 'recoverygym/SupportDesk-v0'"),
        (["--split", "test"], "unknown split 'test'; valid: train, heldout"),
        (["--faults", "none,transient"], "did you mean 'transient_error'"),
        (["--tasks", "0"], "tasks must be >= 1"),
        (["--task-offset", "-1"], "task_offset is a task seed, >= 0"),
        (["--policy", "noisy-reference:lots"], "noisy-reference:0.2"),
        (["--policy", "best-of-4+openai:some-model"], "--temperature is 0 (greedy)"),
        (["--policy", "model:./no/such/checkpoint"], "no such folder"),
        (["--policy", "random", "--policy", "random"], "same folder"),
    ],
)
def test_cli_bad_input_is_a_clear_error_before_anything_runs(args, message, tmp_path, capsys):
    base = {"--env": SUPPORT, "--policy": "reference", "--out": str(tmp_path / "out"), "--tasks": "1"}
    argv = ["eval", *[x for k, v in base.items() if k not in args for x in (k, v)], *args, "--no-progress"]
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_cli_refuses_to_mix_configs_in_one_folder_and_keeps_what_is_there(tmp_path, capsys):
    out = tmp_path / "eval"
    argv = ["eval", "--env", SUPPORT, "--policy", "random", "--tasks", "2", "--samples", "1", "--faults", "none",
            "--out", str(out), "--no-progress"]
    assert cli.main(argv) == 0
    before = (out / "random" / "episodes.jsonl").read_bytes()
    assert cli.main([*argv, "--seed", "3"]) == 2
    assert "different config (differs in: eval)" in capsys.readouterr().err
    assert (out / "random" / "episodes.jsonl").read_bytes() == before
    assert cli.main(argv) == 0  # the same command again: everything is done, nothing is re-run
    assert (out / "random" / "episodes.jsonl").read_bytes() == before


def test_more_tasks_or_samples_in_a_folder_adds_only_the_missing_episodes(tmp_path, capsys):
    def argv(out, tasks, samples):
        return ["eval", "--env", SUPPORT, "--policy", "noisy-reference:0.3", "--tasks", str(tasks), "--samples",
                str(samples), "--faults", "none,all", "--out", str(out), "--no-progress"]

    assert cli.main(argv(tmp_path / "grown", 2, 1)) == 0
    folder = tmp_path / "grown" / "noisy-reference-0.3"
    first = (folder / "episodes.jsonl").read_text()
    assert cli.main(argv(tmp_path / "grown", 4, 2)) == 0
    grown = (folder / "episodes.jsonl").read_text()
    assert grown.startswith(first)  # the first run's episodes were kept, not re-run
    assert cli.main(argv(tmp_path / "fresh", 4, 2)) == 0
    fresh = load_episodes(tmp_path / "fresh" / "noisy-reference-0.3" / "episodes.jsonl")

    def key(r):
        return r["fault_kind"], r["task_seed"], r["sample"]

    assert sorted(_strip(load_episodes(folder / "episodes.jsonl")), key=key) == sorted(_strip(fresh), key=key)
    results = json.loads((folder / "results.json").read_text())
    assert results["episodes"] == 16 and results["config"]["eval"]["tasks"] == 4
    assert cli.main(argv(tmp_path / "grown", 3, 2)) == 2  # fewer tasks than the folder holds: refused
    assert "different config" in capsys.readouterr().err
    assert (folder / "episodes.jsonl").read_text() == grown


def test_evaluation_package_imports_without_torch():
    code = ("import sys; import training.evaluation.cli, training.evaluation.runner, training.evaluation.report, "
            "training.evaluation.viewer, training.evaluation.policies, training.evaluation.openai_policy, "
            "training.evaluation.model_policy; assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_up_to_twenty_runs_get_distinct_colours_the_first_ten_matplotlibs_own():
    from matplotlib.colors import to_rgba

    from training.evaluation.report import _colour

    assert [_colour(i) for i in range(10)] == [to_rgba(f"C{i}") for i in range(10)]
    assert len({_colour(i) for i in range(20)}) == 20


def test_shared_legend_takes_each_runs_colour_from_a_panel_where_it_has_bars():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_rgba

    from training.evaluation.report import _legend_outside

    fig, axes = plt.subplots(2, 1, squeeze=False)
    for (ax,), runs in zip(axes, (("a",), ("a", "b")), strict=True):  # run b has no bars in the first panel
        for i, label in enumerate(("a", "b")):
            ax.bar([0.0] if label in runs else [], [1.0] if label in runs else [], label=label, color=f"C{i}")
    _legend_outside(fig, axes)
    legend = fig.legends[0]
    assert [t.get_text() for t in legend.get_texts()] == ["a", "b"]
    assert [h.get_facecolor() for h in legend.legend_handles] == [to_rgba("C0"), to_rgba("C1")]
    plt.close(fig)


def test_task_offset_evaluates_those_seeds_and_old_folders_still_resume(tmp_path, capsys):
    out = tmp_path / "eval"
    argv = ["eval", "--env", SUPPORT, "--policy", "reference", "--split", "train", "--tasks", "3", "--task-offset",
            "1000000", "--samples", "1", "--faults", "none", "--out", str(out), "--no-progress"]
    assert cli.main(argv) == 0
    records = load_episodes(out / "reference" / "episodes.jsonl")
    assert sorted(r["task_seed"] for r in records) == [1_000_000, 1_000_001, 1_000_002]
    env = gymnasium.make(SUPPORT)
    prompt, _ = env.reset(options={"task_seed": 1_000_001, "split": "train"})
    assert next(r["prompt"] for r in records if r["task_seed"] == 1_000_001) == prompt

    # A folder written before task_offset existed (no such key in its config.json) resumes as offset 0.
    argv0 = [a for a in argv if a not in ("--task-offset", "1000000")]
    argv0[argv0.index("--out") + 1] = str(tmp_path / "old")
    assert cli.main(argv0) == 0
    config_path = tmp_path / "old" / "reference" / "config.json"
    doc = json.loads(config_path.read_text())
    del doc["eval"]["task_offset"]
    config_path.write_text(json.dumps(doc))
    before = (tmp_path / "old" / "reference" / "episodes.jsonl").read_bytes()
    assert cli.main(argv0) == 0
    assert (tmp_path / "old" / "reference" / "episodes.jsonl").read_bytes() == before


def test_a_folder_from_before_prompt_format_2_resumes_for_scripted_policies_only(tmp_path, capsys):
    """Scripted policies render no prompt and always call a tool, so their old folders resume unchanged; a model's
    old folder was prompted otherwise (tools in declaration order) and is refused with the way out."""
    argv = ["eval", "--env", SUPPORT, "--policy", "reference", "--tasks", "2", "--samples", "1", "--faults", "none",
            "--out", str(tmp_path), "--no-progress"]
    assert cli.main(argv) == 0
    config_path = tmp_path / "reference" / "config.json"
    doc = json.loads(config_path.read_text())
    assert doc["prompt_format"] == 2
    del doc["prompt_format"]
    del doc["eval"]["max_required_steps"]  # nor had max_required_steps
    config_path.write_text(json.dumps(doc))
    before = (tmp_path / "reference" / "episodes.jsonl").read_bytes()
    assert cli.main(argv) == 0
    assert (tmp_path / "reference" / "episodes.jsonl").read_bytes() == before
    assert json.loads(config_path.read_text())["prompt_format"] == 2  # migrated

    doc["policy"] = {"policy": "scaffold", "inner": {"policy": "transformers", "model": "m"}}
    config_path.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="earlier rendering .* pass --overwrite"):
        run_eval(ReferencePolicy(), _config([SUPPORT], fault_kinds=("none",), tasks=2, samples=1),
                 tmp_path / "reference", progress=False)


class _Says:
    """A model that calls the reference's tool for ``calls`` turns, then replies in plain text."""

    name = "says"

    def __init__(self, calls, text="All done, thank you!"):
        self.calls, self.text = calls, text

    def act(self, episodes):
        from training.evaluation.episode import Action

        return [Action("<tool_call>" + ep.env.unwrapped.reference_action() + "</tool_call>")
                if len(ep.history) < self.calls else Action(self.text) for ep in episodes]

    def config(self):
        return {"policy": self.name, "calls": self.calls}


@pytest.mark.parametrize("text", ["All done, thank you!", '<tool_call>{"name": "find_customer", "argu</tool_call>'])
def test_a_turn_without_a_tool_call_ends_the_episode_as_in_a_grpo_rollout(tmp_path, text):
    """TRL ends a rollout at a completion without a (parseable) tool call; so does an evaluation episode, scored by the
    checker on the state as it is. A call the env rejects (here an unknown tool) is a turn like any other."""
    config = _config([SUPPORT], fault_kinds=("none",), tasks=2, samples=1, splits=("train",))
    run_eval(_Says(2, text), config, tmp_path / "says", progress=False)
    for record in load_episodes(tmp_path / "says" / "episodes.jsonl"):
        assert record["ended"] == "no tool call" and not record["terminated"] and not record["truncated"]
        assert record["turns"] == 3 and record["steps"][-1]["action"] == text and record["invalid_actions"] == 1
        assert record["score"] < 1.0 and record["reasons"]  # the checker's verdict on two calls of a longer plan
    run_eval(_Says(1, '{"name": "no_such_tool", "arguments": {}}'), _config([SUPPORT], fault_kinds=("none",),
             tasks=1, samples=1, max_turns=3), tmp_path / "unknown", progress=False)
    (record,) = load_episodes(tmp_path / "unknown" / "episodes.jsonl")
    assert record["ended"] == "turn limit" and record["turns"] == 3 and record["invalid_actions"] == 2
    talking = _config([SUPPORT], fault_kinds=("none",), tasks=1, samples=1, max_turns=4, stop_without_tool_call=False)
    run_eval(_Says(1, text), talking, tmp_path / "talking", progress=False)  # the opt-out: text costs a turn
    (record,) = load_episodes(tmp_path / "talking" / "episodes.jsonl")
    assert record["ended"] == "turn limit" and record["turns"] == 4 and record["steps"][-1]["observation"]


def test_fault_settings_combine_kinds_with_rates_of_their_own(tmp_path):
    from training.evaluation.runner import fault_dict, fault_setting

    supported = ("transient_error", "rate_limit", "write_timeout")
    assert fault_dict("transient_error+rate_limit", 0.2, supported) == {"transient_error": 0.2, "rate_limit": 0.2}
    assert fault_dict("rate_limit=0.05+write_timeout", 0.3, supported) == {"rate_limit": 0.05, "write_timeout": 0.3}
    assert fault_dict("rate_limit+seeded_error", 0.2, supported) is None  # one kind unsupported: skipped
    assert fault_setting({"transient_error": 0.05, "rate_limit": 0.1}) == "rate_limit=0.1+transient_error=0.05"
    assert fault_setting({}) == fault_setting({"rate_limit": 0.0}) == "none"
    with pytest.raises(ValueError, match=r"'rate_limt' is not a fault kind \(did you mean 'rate_limit'\?\)"):
        _config([SUPPORT], fault_kinds=("transient_error+rate_limt",))
    with pytest.raises(ValueError, match="rate of rate_limit must be in"):
        _config([SUPPORT], fault_kinds=("rate_limit=2",))
    res = run_eval(ReferencePolicy(), _config([SUPPORT], fault_kinds=("transient_error=0.5+rate_limit=0.5",), tasks=2,
                                              samples=1), tmp_path, progress=False)
    kinds = {f["kind"] for r in load_episodes(tmp_path / "episodes.jsonl") for f in r["faults"]}
    assert kinds == {"transient_error", "rate_limit"} and res["summary"][0]["success_rate"] == 1.0


def test_max_required_steps_keeps_only_short_tasks_counting_kept_ones(tmp_path):
    config = _config([SUPPORT], splits=("train",), fault_kinds=("none",), tasks=4, samples=1, task_offset=10,
                     max_required_steps=4)
    run_eval(ReferencePolicy(), config, tmp_path, progress=False)
    records = load_episodes(tmp_path / "episodes.jsonl")
    assert len(records) == 4 and all(r["required_steps"] <= 4 for r in records)
    assert min(r["task_seed"] for r in records) >= 10 and max(r["task_seed"] for r in records) > 13  # some skipped


def test_environments_are_built_in_one_place():
    import training.adapter
    import training.evaluation.runner

    assert training.evaluation.runner.make_env is training.adapter.make_env
