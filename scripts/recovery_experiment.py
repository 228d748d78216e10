"""The recovery experiment of docs/results/recovery/PLAN.md, every arm, resumably, in one command.

    python scripts/recovery_experiment.py configs/recovery-cpu.yaml      # 2 CPU cores: hours, resumable
    python scripts/recovery_experiment.py configs/recovery-gpu.yaml      # one GPU
    python scripts/recovery_experiment.py configs/recovery-tiny.yaml     # the whole pipeline on the tiny model
    python scripts/recovery_experiment.py --power                        # the plan's power table

Steps, each skipped or resumed when its output exists (run the same command again after an interruption):

1. ``sft``: the warm start (``recoverygym train`` of ``train_config``, SFT stage only);
2. ``episodes``: the warm start's own episodes on training-split tasks under the GRPO faults (the ``episodes``
   source of the branch arm's rows: where this model breaks);
3. ``grpo``: GRPO from the warm start, on branch starts (``grpo_branches``) and on whole episodes (``grpo_whole``),
   with the same budget (the ``grpo`` section);
4. ``eval``: every arm on the held-out branch starts (the primary measure) and on whole held-out episodes;
5. ``summary``: ``summary.json`` from the records the steps wrote; an arm whose evaluations are missing or
   incomplete is marked so, never filled in.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

ARMS = ("sft", "grpo_branches", "grpo_whole", "scaffold", "best_of_k")
STEPS = ("sft", "episodes", "grpo", "eval", "summary")
PRIMARY = ("handled rate at held-out branch starts: the share of held-out branch starts whose event (a fault on the "
           "reference's call, a rejected call, a seeded error) the environment's recovery record marks handled at "
           "the end of the episode the arm plays from there (training.branches.branch_outcome)")


@dataclass(frozen=True)
class HeldoutSettings:
    """The held-out evaluation (PLAN.md): branch starts for the primary measure, whole episodes beside them."""

    tasks: int = 20
    fault_rate: float = 0.2
    max_turns: int = 20
    branch_sources: tuple[str, ...] = ("reference", "near_miss")
    branch_per_task: int = 3
    branch_noise: float = 0.3
    branch_seed: int = 10_000
    batch_size: int = 16


@dataclass(frozen=True)
class ExperimentSettings:
    """One YAML file (configs/recovery-*.yaml); see the module docstring."""

    output_dir: str
    train_config: str
    """A ``recoverygym train`` config: environment, model and the SFT stage of the warm start."""
    train_set: tuple[str, ...] = ()
    """``section.key=value`` overrides of ``train_config`` for every stage."""
    grpo_faults: float = 0.2
    """Every fault kind at this rate in the GRPO rollouts of both arms and in the warm start's recorded episodes."""
    grpo: dict[str, Any] = field(default_factory=dict)
    """TRL ``GRPOConfig`` keys over ``train_config``'s: the one budget of both GRPO arms."""
    branches: dict[str, Any] = field(default_factory=dict)
    """The training config's ``branches`` section for ``grpo_branches`` (sources, per_task, kinds, noise, ...)."""
    model_episodes: int = 16
    """Training-split GRPO tasks on which the warm start's own episodes are recorded for branch points (0: none)."""
    heldout: HeldoutSettings = field(default_factory=HeldoutSettings)
    arms: tuple[str, ...] = ARMS
    best_of_k: int = 4
    temperature: float = 0.7
    """Sampling temperature of best-of-k (the other arms are greedy)."""
    max_new_tokens: int = 128
    threads: int | None = None
    """torch threads for evaluation (None: torch's default)."""
    summary: str | None = None
    """Also write the summary here (e.g. docs/results/recovery/summary.json)."""

    def __post_init__(self) -> None:
        unknown = [a for a in self.arms if a not in ARMS]
        if unknown:
            raise ValueError(f"unknown arm(s) {unknown}; valid: {', '.join(ARMS)}")
        if self.best_of_k < 2:
            raise ValueError(f"best_of_k must be at least 2, got {self.best_of_k}")


def load_settings(path: str | Path, overrides: list[str] = ()) -> ExperimentSettings:
    """Strict: an unknown key is an error naming the valid ones."""
    import yaml

    data = yaml.safe_load(Path(path).read_text()) or {}
    for assignment in overrides:
        key, _, value = assignment.partition("=")
        target = data
        *parents, last = key.split(".")
        for part in parents:
            target = target.setdefault(part, {})
        target[last] = yaml.safe_load(value)
    return _build(ExperimentSettings, data, "experiment")


def _build(cls, values: dict[str, Any], where: str):
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; valid: {', '.join(fields)}")
    kwargs = {}
    for name, value in values.items():
        if name == "heldout":
            value = _build(HeldoutSettings, value or {}, f"{where}.heldout")
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[name] = value
    return cls(**kwargs)


# ---------------------------------------------------------------------------------------------------------------
# The steps


class Experiment:
    def __init__(self, settings: ExperimentSettings, config_path: str):
        from training.config import load_config

        self.s = settings
        self.config_path = config_path
        self.out = Path(settings.output_dir)
        self.train = load_config(settings.train_config, list(settings.train_set))
        self.env_id = self.train.env.id

    # -- paths --------------------------------------------------------------------------------------------------

    @property
    def sft_final(self) -> Path:
        return self.out / "sft" / "sft" / "final"

    def arm_model(self, arm: str) -> Path:
        return self.out / arm / "grpo" / "final" if arm.startswith("grpo") else self.sft_final

    def faults(self, rate: float) -> dict[str, float]:
        from training.evaluation.runner import _supported_fault_kinds, fault_dict

        return fault_dict("all", rate, _supported_fault_kinds(self.env_id))

    def _train(self, output: Path, extra: list[str]) -> dict[str, Any]:
        from training.train import run_training

        overrides = [*self.s.train_set, f"run.output_dir={output}", "eval.points=[]", *extra]
        _log(f"recoverygym train {self.s.train_config} " + " ".join(f"--set {shlex.quote(o)}" for o in overrides))
        return run_training(self.s.train_config, overrides=overrides, verbose=False)

    # -- 1. warm start --------------------------------------------------------------------------------------------

    def sft(self) -> None:
        if self.sft_final.is_dir():
            _log(f"sft: done ({self.sft_final})")
            return
        self._train(self.out / "sft", ["run.stages=[sft]"])

    # -- 2. the warm start's own episodes -------------------------------------------------------------------------

    @property
    def episodes_dir(self) -> Path:
        return self.out / "sft-train-episodes"

    def episodes(self) -> None:
        if not self.s.model_episodes or "grpo_branches" not in self.s.arms:
            return
        from training.evaluation.runner import EvalConfig, fault_setting, run_eval

        config = EvalConfig(
            env_ids=(self.env_id,), splits=("train",), fault_kinds=(fault_setting(self.faults(self.s.grpo_faults)),),
            tasks=self.s.model_episodes, task_offset=self.train.data.grpo_task_offset, samples=1,
            seed=self.train.run.seed, max_turns=self.s.heldout.max_turns, batch_size=self.s.heldout.batch_size,
            max_required_steps=self.train.data.max_required_steps)
        run_eval(self._policy("sft"), config, self.episodes_dir, progress=True,
                 command="scripts/recovery_experiment.py (the warm start's own training-split episodes)")

    # -- 3. GRPO arms ----------------------------------------------------------------------------------------------

    def grpo(self) -> None:
        faults = json.dumps(self.faults(self.s.grpo_faults))
        budget = [f"grpo.{k}={json.dumps(v)}" for k, v in self.s.grpo.items()]
        for arm, starts in (("grpo_branches", "branches"), ("grpo_whole", "whole")):
            if arm not in self.s.arms:
                continue
            if self.arm_model(arm).is_dir():
                _log(f"{arm}: done ({self.arm_model(arm)})")
                continue
            extra = ["run.stages=[grpo]", f"model.name_or_path={self.sft_final}", f"env.faults={faults}", *budget,
                     f"data.grpo_starts={starts}"]
            if starts == "branches":
                extra += [f"branches.{k}={json.dumps(v)}" for k, v in self.s.branches.items()]
                if self.s.model_episodes:
                    extra.append(f"branches.episodes={json.dumps([str(self.episodes_dir)])}")
            self._train(self.out / arm, extra)

    # -- 4. evaluations ------------------------------------------------------------------------------------------

    def heldout_rows(self) -> list[dict[str, Any]]:
        from training.branches import BranchConfig, scripted_branches

        h = self.s.heldout
        config = BranchConfig(sources=h.branch_sources, per_task=h.branch_per_task, noise=h.branch_noise)
        return scripted_branches(self.env_id, range(h.tasks), split="heldout", faults=self.faults(h.fault_rate),
                                 config=config, seed=h.branch_seed, max_turns=h.max_turns)

    def whole_config(self):
        from training.evaluation.runner import EvalConfig

        h = self.s.heldout
        return EvalConfig(env_ids=(self.env_id,), splits=("heldout",), fault_kinds=("all",), fault_rate=h.fault_rate,
                          tasks=h.tasks, samples=1, seed=0, max_turns=h.max_turns, batch_size=h.batch_size)

    def _policy(self, arm: str):
        from training.evaluation.model_policy import TransformersPolicy
        from training.evaluation.policies import BestOfKPolicy, ScaffoldPolicy

        if self.s.threads:
            import torch

            torch.set_num_threads(self.s.threads)
        sample, wrapped = arm == "best_of_k", arm in ("scaffold", "best_of_k")
        model = TransformersPolicy(str(self.arm_model(arm)), max_new_tokens=self.s.max_new_tokens,
                                   temperature=self.s.temperature if sample else 0.0, seed=self.train.run.seed,
                                   dtype=self.train.eval.dtype or self.train.model.dtype,
                                   name="sft" if wrapped else arm)
        if arm == "scaffold":
            return ScaffoldPolicy(model)
        if arm == "best_of_k":
            return BestOfKPolicy(model, self.s.best_of_k)
        return model

    def evaluate(self) -> None:
        from training.branches import evaluate_branches
        from training.evaluation.runner import run_eval

        rows = self.heldout_rows()
        _log(f"{len(rows)} held-out branch starts")
        for arm in self.s.arms:
            if not self.arm_model(arm).is_dir():
                _log(f"{arm}: no model yet ({self.arm_model(arm)}); not evaluated")
                continue
            policy = self._policy(arm)
            folder = self.out / "eval" / arm
            _log(f"{arm}: held-out branch starts -> {folder / 'branches'}")
            evaluate_branches(policy, rows, folder / "branches", max_turns=self.s.heldout.max_turns,
                              batch_size=self.s.heldout.batch_size)
            _log(f"{arm}: whole held-out episodes -> {folder / 'heldout'}")
            run_eval(policy, self.whole_config(), folder / "heldout",
                     command=f"scripts/recovery_experiment.py {self.config_path} (arm {arm})")
            del policy

    # -- 5. summary -----------------------------------------------------------------------------------------------

    def summary(self, command: str) -> dict[str, Any]:
        from training.evaluation.runner import load_episodes, plan

        rows = self.heldout_rows()
        planned_whole = len(plan(self.whole_config())[0])
        arms: dict[str, Any] = {}
        loaded = {}
        for arm in ARMS:
            folder = self.out / "eval" / arm
            branch = load_episodes(folder / "branches" / "episodes.jsonl")
            whole = load_episodes(folder / "heldout" / "episodes.jsonl")
            if arm not in self.s.arms or not (branch or whole):
                arms[arm] = {"status": "not run"}
                continue
            progress = {"branch_episodes_done": len(branch), "branch_starts": len(rows), "episodes_done": len(whole),
                        "episodes_planned": planned_whole}
            if len(branch) < len(rows):
                arms[arm] = {"status": "incomplete", **progress}
                continue
            whole_done = len(whole) >= planned_whole
            loaded[arm] = (branch, whole if whole_done else None)
            # the primary measure needs the branch starts only; the whole episodes' figures only when all are in
            arms[arm] = _arm_summary(branch, whole if whole_done else None) | (
                {"status": "complete"} if whole_done else {"status": "primary only", **progress})
            if arm.startswith("grpo"):
                arms[arm]["grpo"] = _grpo_diagnostics(self.out / arm / "results.json")
        _compare(arms, loaded)
        doc = {
            "primary_measure": PRIMARY,
            "plan": "docs/results/recovery/PLAN.md",
            "config": self.config_path,
            "env_id": self.env_id,
            "heldout": dataclasses.asdict(self.s.heldout) | {"branch_starts": len(rows)},
            "arms": arms,
            "commands": [command, *_stage_commands(self)],
            "written": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        self.out.mkdir(parents=True, exist_ok=True)
        for path in filter(None, [self.out / "summary.json", self.s.summary]):
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text(json.dumps(doc, indent=2) + "\n")
        self.write_results(doc, Path(self.s.summary).parent if self.s.summary else self.out)
        return doc

    def write_results(self, doc: dict[str, Any], folder: Path) -> None:
        """``folder/results.md``: the tables of ``doc``; ``folder/branches/`` and ``folder/heldout/``: the report
        (plots) and trajectory viewer of every evaluated arm's branch-start and whole held-out episodes."""
        from training.evaluation.report import write_report

        folder.mkdir(parents=True, exist_ok=True)
        (folder / "results.md").write_text(results_markdown(doc))
        for part, title in (("branches", "held-out branch starts"), ("heldout", "whole held-out episodes")):
            arms = [a for a in ARMS if (self.out / "eval" / a / part / "episodes.jsonl").is_file()]
            if arms:
                write_report([self.out / "eval" / a / part for a in arms], folder / part, labels=arms,
                             title=f"Recovery experiment ({self.config_path}): {title}",
                             command=f"python scripts/recovery_experiment.py {self.config_path} --steps summary",
                             viewer_episodes=20)


def _arm_summary(branch: list[dict], whole: list[dict] | None) -> dict[str, Any]:
    """An arm's figures; the whole-episode ones are None until every whole held-out episode is in."""
    from training.branches import branch_summary
    from training.evaluation.metrics import summarize_group

    b = branch_summary(branch)
    w = summarize_group(whole) if whole else dict.fromkeys(
        ("episodes", "success_rate", "success_ci95", "mean_score", "tokens_per_episode", "recovery_behaviour"))
    return {
        "episodes": w["episodes"],
        "success": w["success_rate"],
        "success_ci95": w["success_ci95"],
        "score": w["mean_score"],
        "primary": b["all"]["handled_rate"],
        "primary_ci95": b["all"]["handled_ci95"],
        "primary_counts": {"handled": b["all"]["handled"], "branch_starts": b["all"]["recorded"]},
        "branch_success": b["all"]["success_rate"],
        "branch_score": b["all"]["mean_score"],
        "by_kind": {kind: {k: v[k] for k in ("branches", "handled", "handled_rate", "handled_ci95",
                                             "mean_turns_to_handle", "success_rate")}
                    for kind, v in b.items() if kind != "all"},
        "tokens_per_episode": w["tokens_per_episode"],
        "branch_tokens_per_episode": b["all"]["tokens_per_episode"],
        "whole_episode_recovery": w["recovery_behaviour"],
    }


def _compare(arms: dict[str, Any], loaded: dict[str, tuple[list, list]]) -> None:
    """``vs_sft`` for every complete arm (and ``vs_grpo_whole`` for the branch arm), with Holm-adjusted p over the
    arms' primary comparisons with ``sft``."""
    from training.branches import paired_branches
    from training.evaluation.metrics import paired_comparison

    def versus(base: str, arm: str) -> dict[str, Any]:
        primary = paired_branches(loaded[base][0], loaded[arm][0])
        both = loaded[base][1] is not None and loaded[arm][1] is not None
        whole = (paired_comparison(loaded[base][1], loaded[arm][1], resamples=0) or {}) if both else {}
        return {"primary": {k: primary["handled"][k] for k in ("better", "worse", "p")} | {
                    "pairs": primary["handled"]["pairs"]},
                "success": {"better": whole.get("better"), "worse": whole.get("worse"), "p": whole.get("sign_test_p"),
                            "tasks": whole.get("tasks")},
                "branch_success": {k: primary["success"][k] for k in ("better", "worse", "p")}}

    if "sft" not in loaded:
        return
    others = [a for a in loaded if a != "sft"]
    for arm in others:
        arms[arm]["vs_sft"] = versus("sft", arm)
    if "grpo_branches" in loaded and "grpo_whole" in loaded:
        arms["grpo_branches"]["vs_grpo_whole"] = versus("grpo_whole", "grpo_branches")
    ps = sorted((arms[a]["vs_sft"]["primary"]["p"], a) for a in others)
    running = 0.0
    for i, (p, arm) in enumerate(ps):  # Holm's step-down adjustment
        running = max(running, min(1.0, p * (len(ps) - i)))
        arms[arm]["vs_sft"]["primary"]["p_holm"] = running


def _cell(rate: float | None, ci: list[float] | None = None) -> str:
    if rate is None:
        return "-"
    return f"{rate:.1%}" + (f" [{ci[0]:.1%}, {ci[1]:.1%}]" if ci else "")


def _versus_cell(v: dict[str, Any] | None, holm: bool = False) -> str:
    if not v or v.get("better") is None:
        return "-"
    text = f"+{v['better']}/-{v['worse']}, p={v['p']:.3g}"
    return text + (f" (Holm {v['p_holm']:.3g})" if holm and "p_holm" in v else "")


def _fmt(values: dict[str, Any], key: str, fmt: str = "{:.3f}") -> str:
    return "-" if values.get(key) is None else fmt.format(values[key])


def results_markdown(doc: dict[str, Any]) -> str:
    """The summary's tables: the primary measure and the secondary ones per arm, per event kind, GRPO diagnostics."""
    arms = doc["arms"]
    lines = [f"# Recovery experiment: `{doc['config']}`", "",
             f"Written by `python scripts/recovery_experiment.py {doc['config']} --steps summary` at {doc['written']} "
             f"from the runs' own records ([summary.json](summary.json); plan: `{doc['plan']}`). Environment "
             f"`{doc['env_id']}`, {doc['heldout']['tasks']} held-out tasks, {doc['heldout']['branch_starts']} "
             f"held-out branch starts, faults at rate {doc['heldout']['fault_rate']}.", "",
             f"Primary measure: {doc['primary_measure']}.", "",
             "| arm | status | handled at branch starts [95% CI] | vs sft: +/-, p | success from branch starts "
             "| whole episodes: success [95% CI] | vs sft: +/- tasks, p | mean score | tokens / episode |",
             "|---|---|---|---|---:|---|---|---:|---:|"]
    for name, a in arms.items():
        done = (f" ({a['branch_episodes_done']}/{a['branch_starts']} branch starts, {a['episodes_done']}/"
                f"{a['episodes_planned']} episodes)" if "branch_starts" in a else "")
        if a.get("primary") is None:
            lines.append(f"| {name} | {a.get('status')}{done} | - | - | - | - | - | - | - |")
            continue
        vs = a.get("vs_sft") or {}
        lines.append(f"| {name} | {a['status']}{done} | {_cell(a['primary'], a['primary_ci95'])} "
                     f"({a['primary_counts']['handled']}/{a['primary_counts']['branch_starts']}) "
                     f"| {_versus_cell(vs.get('primary'), holm=True)} | {_cell(a['branch_success'])} "
                     f"| {_cell(a['success'], a['success_ci95'])} | {_versus_cell(vs.get('success'))} "
                     f"| {_fmt(a, 'score')} | {_fmt(a, 'tokens_per_episode', '{:.0f}')} |")
    if "vs_grpo_whole" in arms.get("grpo_branches", {}):
        v = arms["grpo_branches"]["vs_grpo_whole"]
        lines += ["", f"Ablation, grpo_branches against grpo_whole: handled at branch starts "
                      f"{_versus_cell(v['primary'])}; whole-episode success {_versus_cell(v['success'])}."]
    kinds = sorted({k for a in arms.values() for k in (a.get("by_kind") or {})})
    complete = [n for n, a in arms.items() if a.get("primary") is not None]
    if kinds and complete:
        lines += ["", "Handled per event kind at the branch starts (handled/branches, mean turns to handle):", "",
                  "| event | " + " | ".join(complete) + " |", "|---|" + "---:|" * len(complete)]
        for kind in kinds:
            cells = []
            for n in complete:
                k = arms[n]["by_kind"].get(kind)
                turns = k and k.get("mean_turns_to_handle")
                cells.append("-" if not k else f"{k['handled']}/{k['branches']}"
                             + (f" ({turns:.1f})" if turns is not None else ""))
            lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    grpo = [(n, arms[n]["grpo"]) for n in complete if arms[n].get("grpo")]
    if grpo:
        lines += ["", "Why GRPO moved or did not (per optimizer step, means over the run):", "",
                  "| arm | steps | seconds | reward | reward std in a group | groups with zero spread | steps with "
                  "non-zero loss | KL | tool calls / rollout |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for n, g in grpo:
            cells = [_fmt(g, "seconds", "{:.0f}"), _fmt(g, "mean_reward"), _fmt(g, "mean_reward_std"),
                     _fmt(g, "frac_reward_zero_std", "{:.0%}"), str(g["steps_with_nonzero_loss"]), _fmt(g, "mean_kl"),
                     _fmt(g, "tool_calls_per_rollout", "{:.2f}")]
            lines.append(f"| {n} | {g['steps']} | " + " | ".join(cells) + " |")
    lines += ["", "Plots and trajectories: [branch starts](branches/report.md) ([viewer](branches/viewer.html)), "
                  "[whole episodes](heldout/report.md) ([viewer](heldout/viewer.html)).", ""]
    return "\n".join(lines)


def _grpo_diagnostics(results_file: Path) -> dict[str, Any] | None:
    """Why GRPO moved or did not: per-step reward spread within groups, groups with no spread, loss, KL."""
    if not results_file.is_file():
        return None
    stage = json.loads(results_file.read_text()).get("stages", {}).get("grpo", {})
    steps = [h for h in stage.get("log_history", ()) if "loss" in h]
    if not steps:
        return None

    def mean(key):
        values = [h[key] for h in steps if isinstance(h.get(key), (int, float))]
        return sum(values) / len(values) if values else None

    return {"steps": len(steps), "seconds": stage.get("seconds"), "mean_reward": mean("reward"),
            "mean_reward_std": mean("reward_std"), "frac_reward_zero_std": mean("frac_reward_zero_std"),
            "steps_with_nonzero_loss": sum(h["loss"] != 0 for h in steps), "mean_kl": mean("kl"),
            "tool_calls_per_rollout": mean("tools/call_frequency"),
            "mean_completion_length": mean("completions/mean_length")}


def _stage_commands(experiment: Experiment) -> list[str]:
    return [f"python scripts/recovery_experiment.py {experiment.config_path} --steps {step}" for step in STEPS]


# ---------------------------------------------------------------------------------------------------------------
# Power


def power_table(sizes=(60, 95, 100, 120, 300, 491), rates=((0.45, 0.60), (0.45, 0.65), (0.30, 0.45), (0.70, 0.85)),
                sims: int = 4000, seed: int = 0) -> list[dict[str, Any]]:
    """Power of the plan's paired sign test (two-sided, alpha 0.05, better > worse) by simulation, the two arms'
    outcomes independent given the branch start (which understates power when arms agree on easy branches)."""
    import numpy as np

    from training.evaluation.metrics import sign_test_p

    rng = np.random.default_rng(seed)
    table = []
    for n in sizes:
        for p0, p1 in rates:
            x, y = rng.random((sims, n)) < p0, rng.random((sims, n)) < p1
            better, worse = (y & ~x).sum(1), (x & ~y).sum(1)
            hits = sum(b > w and sign_test_p(int(b), int(w)) < 0.05 for b, w in zip(better, worse, strict=True))
            table.append({"branch_starts": n, "sft_rate": p0, "arm_rate": p1, "power": hits / sims})
    return table


def _log(message: str) -> None:
    print(f"[recovery {time.strftime('%H:%M:%S')}] {message}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", nargs="?", help="configs/recovery-cpu.yaml, -gpu.yaml or -tiny.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override an experiment setting (YAML value), e.g. --set heldout.tasks=10; repeatable")
    parser.add_argument("--steps", nargs="+", choices=STEPS, default=list(STEPS), help="which steps to run")
    parser.add_argument("--power", action="store_true", help="print the power table of the plan and exit")
    args = parser.parse_args(argv)
    if args.power:
        print(f"{'branch starts':>13} {'sft rate':>8} {'arm rate':>8} {'power':>6}")
        for row in power_table():
            print(f"{row['branch_starts']:>13} {row['sft_rate']:>8.2f} {row['arm_rate']:>8.2f} {row['power']:>6.2f}")
        return 0
    if not args.config:
        parser.error("give an experiment config, e.g. configs/recovery-cpu.yaml (or --power)")
    settings = load_settings(args.config, args.overrides)
    experiment = Experiment(settings, args.config)
    command = shlex.join(["python", "scripts/recovery_experiment.py", *(argv if argv is not None else sys.argv[1:])])
    for step in STEPS:
        if step not in args.steps:
            continue
        _log(f"step {step}")
        if step == "summary":
            doc = experiment.summary(command)
            print(json.dumps({arm: {k: v for k, v in a.items() if k in ("status", "primary", "success", "score")}
                              for arm, a in doc["arms"].items()}, indent=2))
        elif step == "eval":
            experiment.evaluate()
        else:
            getattr(experiment, step)()
    return 0


if __name__ == "__main__":
    sys.exit(main())
