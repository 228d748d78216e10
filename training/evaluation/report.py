"""A Markdown report with matplotlib plots from one or more evaluation folders (one per policy or model).

``write_report([run_dir, ...], out_dir)`` writes ``out_dir/report.md``, its PNG plots and ``out_dir/viewer.html``
(the trajectories of every run). Metrics are recomputed from each run's ``episodes.jsonl``, so a report of an
interrupted run shows what finished.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.evaluation.metrics import (
    group_episodes,
    paired_comparison,
    success_by_required_steps,
    summarize,
    summarize_group,
    wilson_interval,
)
from training.evaluation.runner import load_episodes

__all__ = ["Run", "load_run", "overview_table", "paired_table", "prompt_mismatches", "write_report"]


@dataclass
class Run:
    """One evaluation folder: its label, config, versions and episodes."""

    label: str
    path: Path
    config: dict[str, Any]
    versions: dict[str, Any]
    episodes: list[dict[str, Any]]
    command: str | None = None

    @property
    def summary(self) -> list[dict[str, Any]]:
        return summarize(self.episodes)


def load_run(path: str | os.PathLike, label: str | None = None) -> Run:
    """Load an evaluation folder written by ``run_eval`` (``results.json`` optional, ``episodes.jsonl`` needed)."""
    path = Path(path)
    if path.is_file():
        path = path.parent
    episodes = load_episodes(path / "episodes.jsonl")
    if not episodes:
        raise FileNotFoundError(f"{path} has no finished episodes (episodes.jsonl); run `recoverygym eval` first")
    results = json.loads((path / "results.json").read_text()) if (path / "results.json").exists() else {}
    config = results.get("config") or json.loads((path / "config.json").read_text())
    return Run(label or episodes[0]["policy"], path, config, results.get("versions", {}), episodes,
               results.get("command"))


def _pct(x: float | None) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}"


def _num(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _short_env(env_id: str) -> str:
    return env_id.split("/")[-1]


# ---------------------------------------------------------------------------------------------------------------
# Plots


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _err(rate: float, ci: Sequence[float]) -> tuple[float, float]:
    """Error-bar lengths below and above ``rate`` (never negative)."""
    return max(0.0, rate - ci[0]), max(0.0, ci[1] - rate)


def _colour(i: int) -> tuple[float, float, float, float]:
    """Run ``i``'s colour: matplotlib's ten default colours, then their light variants, so up to 20 runs differ."""
    from matplotlib import colormaps

    return colormaps["tab20"]((2 * i + i // 10) % 20)  # tab20's even entries are the default ten


def _envs(runs: Sequence[Run]) -> list[str]:
    return sorted({ep["env_id"] for run in runs for ep in run.episodes})


def _setting_order(setting: tuple[str, str]) -> tuple:
    """Splits in order, then no faults, all faults, and each fault kind in ``FAULT_KINDS`` order."""
    from envs.core import FAULT_KINDS, SPLITS

    split, kind = setting
    kinds = ["none", "all", *FAULT_KINDS]
    return (list(SPLITS).index(split) if split in SPLITS else len(SPLITS), split,
            kinds.index(kind) if kind in kinds else len(kinds), kind)


def _legend_outside(fig, axes) -> None:
    """One legend for every panel: each run once, in the order the panels first show it, with a handle from a panel
    where it has data (an empty bar group's handle would show the default colour, not the run's)."""
    handles: dict[str, Any] = {}
    for ax in (ax for row in axes for ax in row):
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if label not in handles or (_empty(handles[label]) and not _empty(handle)):
                handles[label] = handle
    fig.legend(list(handles.values()), list(handles), fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))


def _empty(handle: Any) -> bool:
    return isinstance(handle, tuple) and len(handle) == 0  # a BarContainer with no bars


def plot_success(runs: Sequence[Run], path: Path) -> None:
    """Grouped bars: success rate per (split, fault setting), one bar per run, Wilson 95% error bars; a panel per
    env. A run at 0 shows only its error bar."""
    plt = _plt()
    envs = _envs(runs)
    settings = sorted({(r["split"], r["fault_kind"]) for run in runs for r in run.summary}, key=_setting_order)
    splits = {split for split, _ in settings}
    fig, axes = plt.subplots(len(envs), 1, figsize=(max(7, 0.22 * len(runs) * len(settings) + 3), 2.9 * len(envs)),
                             squeeze=False)
    width = 0.8 / len(runs)
    for (ax,), env in zip(axes, envs, strict=True):
        for i, run in enumerate(runs):
            rows = {(r["split"], r["fault_kind"]): r for r in run.summary if r["env_id"] == env}
            xs, ys, lo, hi = [], [], [], []
            for g, key in enumerate(settings):
                if key in rows:
                    r = rows[key]
                    xs.append(g + (i - (len(runs) - 1) / 2) * width)
                    ys.append(r["success_rate"])
                    below, above = _err(r["success_rate"], r["success_ci95"])
                    lo.append(below)
                    hi.append(above)
            ax.bar(xs, ys, width, yerr=[lo, hi] if xs else None, capsize=2, label=run.label, color=_colour(i))
        names = [kind if len(splits) == 1 else f"{split}\n{kind}" for split, kind in settings]
        ax.set_xticks(range(len(settings)), names, fontsize=8)
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("success rate")
        ax.set_title(f"{_short_env(env)}" + (f", {next(iter(splits))} split" if len(splits) == 1 else ""), fontsize=10)
    _legend_outside(fig, axes)
    fig.tight_layout()
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def plot_pass_k(runs: Sequence[Run], path: Path) -> None:
    """pass^k (solid) and pass@k (dashed) against k, one colour per run; a panel per env, for tasks without faults
    (top) and with faults (bottom: every fault setting pooled, each (task, setting) pair counting as one task)."""
    plt = _plt()
    envs = _envs(runs)
    rows = [("no faults", lambda ep: ep["fault_kind"] == "none"),
            ("with faults", lambda ep: ep["fault_kind"] != "none")]
    rows = [(title, keep) for title, keep in rows if any(keep(ep) for run in runs for ep in run.episodes)]
    fig, axes = plt.subplots(len(rows), len(envs), figsize=(max(6.5, 4.6 * len(envs) + 2.5), 3.2 * len(rows)),
                             squeeze=False)
    for (title, keep), ax_row in zip(rows, axes, strict=True):
        for ax, env in zip(ax_row, envs, strict=True):
            k_max = 1
            for i, run in enumerate(runs):
                eps = [ep for ep in run.episodes if ep["env_id"] == env and keep(ep)]
                if not eps:
                    continue
                r = summarize_group(eps)
                ks = list(r["pass_hat_k"])
                k_max = max(k_max, *ks)
                ax.plot(ks, list(r["pass_hat_k"].values()), "-o", color=_colour(i), markersize=4, label=run.label)
                ax.plot(ks, list(r["pass_at_k"].values()), "--", color=_colour(i), alpha=0.5)
            ax.set_xticks(range(1, k_max + 1))
            ax.set_xlabel("k")
            ax.set_ylabel("pass^k (solid), pass@k (dashed)", fontsize=8)
            ax.set_ylim(-0.02, 1.02)
            ax.set_title(f"{_short_env(env)}, {title}", fontsize=10)
    _legend_outside(fig, axes)
    fig.tight_layout()
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def plot_compounding(runs: Sequence[Run], path: Path) -> None:
    """Success rate against the number of steps a task requires (every fault setting pooled), with Wilson error
    bars; one panel per env."""
    plt = _plt()
    envs = _envs(runs)
    fig, axes = plt.subplots(1, len(envs), figsize=(max(5, 4.6 * len(envs) + 2), 3.6), squeeze=False)
    for ax, env in zip(axes[0], envs, strict=True):
        for i, run in enumerate(runs):
            eps = [ep for ep in run.episodes if ep["env_id"] == env]
            if not eps:
                continue
            curve = success_by_required_steps(eps)
            err = list(zip(*(_err(c["success_rate"], c["ci95"]) for c in curve.values()), strict=True))
            ax.errorbar(list(curve), [c["success_rate"] for c in curve.values()], yerr=err, marker="o", capsize=2,
                        label=run.label, color=_colour(i))
        ax.set_xlabel("required steps")
        ax.set_ylabel("success rate")
        ax.set_ylim(-0.02, 1.05)
        ax.set_title(_short_env(env), fontsize=10)
    _legend_outside(fig, axes)
    fig.tight_layout()
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def plot_recovery(runs: Sequence[Run], path: Path) -> bool:
    """Recovery rate per fault kind (success among episodes in which it fired), one bar per run, a panel per env.
    False if no fault fired."""
    envs = _envs(runs)
    stats = {(run.label, env): summarize_group(eps)["recovery"] for run in runs for env in envs
             if (eps := [ep for ep in run.episodes if ep["env_id"] == env])}
    kinds = sorted({k for s in stats.values() for k in s})
    if not kinds:
        return False
    plt = _plt()
    fig, axes = plt.subplots(1, len(envs), figsize=(max(6, (1.1 * len(kinds) + 1) * len(envs)), 3.6), squeeze=False)
    width = 0.8 / len(runs)
    for ax, env in zip(axes[0], envs, strict=True):
        for i, run in enumerate(runs):
            s = stats.get((run.label, env), {})
            xs = [g + (i - (len(runs) - 1) / 2) * width for g, k in enumerate(kinds) if k in s]
            ys = [s[k]["recovery_rate"] for k in kinds if k in s]
            err = [_err(s[k]["recovery_rate"], s[k]["recovery_rate_ci95"]) for k in kinds if k in s]
            ax.bar(xs, ys, width, yerr=list(zip(*err, strict=True)) if err else None, capsize=2, label=run.label,
                   color=_colour(i))
        ax.set_xticks(range(len(kinds)), [k.replace("_", "\n") for k in kinds], fontsize=8)
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("recovery rate")
        ax.set_title(_short_env(env), fontsize=10)
    _legend_outside(fig, axes)
    fig.tight_layout()
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return True


def plot_compute(runs: Sequence[Run], path: Path) -> bool:
    """Success rate against generated tokens per episode, one point per run: training vs test-time compute."""
    points = [(run.label, summarize(run.episodes, keys=())[0]) for run in runs]
    points = [(label, s) for label, s in points if s["tokens_per_episode"] > 0]
    if not points:
        return False
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for label, s in points:
        below, above = _err(s["success_rate"], s["success_ci95"])
        ax.errorbar([s["tokens_per_episode"]], [s["success_rate"]], yerr=[[below], [above]], marker="o", capsize=3,
                    label=label)
    ax.set_xscale("log")
    ax.set_xlabel("generated tokens per episode (log)")
    ax.set_ylabel("success rate")
    ax.set_ylim(-0.02, 1.05)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


# ---------------------------------------------------------------------------------------------------------------
# Markdown


def _rate_cell(episodes: Sequence[dict[str, Any]]) -> str:
    if not episodes:
        return "-"
    n, c = len(episodes), sum(bool(ep["success"]) for ep in episodes)
    lo, hi = wilson_interval(c, n)
    return f"{_pct(c / n)} [{_pct(lo)}, {_pct(hi)}] (n={n})"


def overview_table(runs: Sequence[Run]) -> list[str]:
    """One row per run: success % [95% CI] per env without faults, with faults (every fault setting pooled), and
    among the episodes in which a fault actually fired (the recovery rate over all kinds); then the run's
    invalid-action rate, how often it repeats a call the environment rejected (``repeated_rejections``) and generated
    tokens per episode over all its episodes."""
    envs = _envs(runs)
    header = "| policy | " + " | ".join(
        f"{_short_env(e)}: no faults | {_short_env(e)}: faults | {_short_env(e)}: a fault fired" for e in envs
    ) + " | invalid actions % | repeats a rejected call % | tokens / episode |"
    lines = [header, "|---|" + "---|" * (3 * len(envs)) + "---:|---:|---:|"]
    for run in runs:
        cells = []
        for env in envs:
            eps = [ep for ep in run.episodes if ep["env_id"] == env]
            cells += [_rate_cell([ep for ep in eps if ep["fault_kind"] == "none"]),
                      _rate_cell([ep for ep in eps if ep["fault_kind"] != "none"]),
                      _rate_cell([ep for ep in eps if ep.get("faults")])]
        total = summarize_group(run.episodes)
        cells += [_pct(total["invalid_action_rate"]), _pct(total["repeated_rejection_rate"]),
                  _num(total["tokens_per_episode"], 0)]
        lines.append(f"| {run.label} | " + " | ".join(cells) + " |")
    return lines


def _main_table(runs: Sequence[Run]) -> list[str]:
    lines = [
        (
            "| policy | env | split | faults | episodes | success % [95% CI] | mean score | pass^n | pass@n "
            "| invalid % | turns | tokens/ep | tokens/success |"
        ),
        "|---|---|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for run in runs:
        for r in run.summary:
            n = max(r["pass_hat_k"]) if r["pass_hat_k"] else None
            lo, hi = r["success_ci95"]
            lines.append(
                f"| {run.label} | {_short_env(r['env_id'])} | {r['split']} | {r['fault_kind']} | {r['episodes']} "
                f"| {_pct(r['success_rate'])} [{_pct(lo)}, {_pct(hi)}] | {r['mean_score']:.3f} "
                f"| {_pct(r['pass_hat_k'].get(n)) if n else '-'} (n={n}) | {_pct(r['pass_at_k'].get(n)) if n else '-'} "
                f"| {_pct(r['invalid_action_rate'])} | {r['mean_turns']:.1f} | {_num(r['tokens_per_episode'], 0)} "
                f"| {_num(r['tokens_per_success'], 0)} |"
            )
    return lines


def _recovery_table(runs: Sequence[Run]) -> list[str]:
    lines = [
        (
            "| policy | env | fault kind | episodes with fault | recovery % [95% CI] | faults fired | unrecovered "
            "| mean turns to recover |"
        ),
        "|---|---|---|---:|---|---:|---:|---:|",
    ]
    any_row = False
    for run in runs:
        for r in summarize(run.episodes, keys=("env_id",)):
            for kind, s in r["recovery"].items():
                any_row = True
                lo, hi = s["recovery_rate_ci95"]
                lines.append(
                    f"| {run.label} | {_short_env(r['env_id'])} | {kind} | {s['episodes_with_fault']} "
                    f"| {_pct(s['recovery_rate'])} [{_pct(lo)}, {_pct(hi)}] | {s['faults_fired']} "
                    f"| {s['unrecovered_faults']} | {_num(s['mean_turns_to_recover'], 2)} |"
                )
    return lines if any_row else ["No fault fired in these runs."]


def _behaviour_table(runs: Sequence[Run]) -> list[str]:
    """Per run, env and event kind: the environment's recovery records (``metrics.recovery_behaviour``)."""
    lines = [
        "| policy | env | event | events | handled % [95% CI] | mean turns to handle | episodes with it |",
        "|---|---|---|---:|---|---:|---:|",
    ]
    any_row = False
    for run in runs:
        for r in summarize(run.episodes, keys=("env_id",)):
            for kind, s in r["recovery_behaviour"].items():
                any_row = True
                lo, hi = s["handled_ci95"]
                lines.append(
                    f"| {run.label} | {_short_env(r['env_id'])} | {kind} | {s['events']} "
                    f"| {_pct(s['handled_rate'])} [{_pct(lo)}, {_pct(hi)}] | {_num(s['mean_turns_to_handle'], 2)} "
                    f"| {s['episodes_with_event']} |"
                )
    return lines if any_row else ["No fault fired and no call was rejected in these runs (or they predate the "
                                  "environment's recovery records)."]


def _comparison_table(runs: Sequence[Run]) -> list[str]:
    """Success per (env, split, fault kind) side by side, with the difference to the first run."""
    table: dict[tuple, dict[str, dict[str, Any]]] = {}
    for run in runs:
        for r in run.summary:
            table.setdefault((r["env_id"], r["split"], r["fault_kind"]), {})[run.label] = r
    base = runs[0].label
    header = "| env | split | faults | " + " | ".join(run.label for run in runs) + " |"
    lines = [header, "|---|---|---|" + "---:|" * len(runs)]
    for (env, split, kind), cells in sorted(table.items()):
        parts = []
        for run in runs:
            r = cells.get(run.label)
            if r is None:
                parts.append("-")
                continue
            text = f"{_pct(r['success_rate'])}"
            if run.label != base and base in cells:
                text += f" ({100 * (r['success_rate'] - cells[base]['success_rate']):+.1f})"
            parts.append(text)
        lines.append(f"| {_short_env(env)} | {split} | {kind} | " + " | ".join(parts) + " |")
    return lines


def _diff(value: float, ci: Sequence[float] | None, scale: float, digits: int) -> str:
    text = f"{scale * value:+.{digits}f}"
    return text if ci is None else f"{text} [{scale * ci[0]:+.{digits}f}, {scale * ci[1]:+.{digits}f}]"


def _conditions(run: Run) -> tuple:
    """What makes the same task seed a different task: the fault rate and the turn limit."""
    ev = run.config.get("eval", {})
    return ev.get("fault_rate"), ev.get("max_turns")


def paired_table(runs: Sequence[Run]) -> tuple[list[str], list[str]]:
    """Each run against the first on the tasks both ran, per env, split and fault kind (``paired_comparison``).

    Returns the table's lines (none if nothing pairs) and the labels of the runs left out because they ran under
    another fault rate or turn limit than the first.
    """
    base = group_episodes(runs[0].episodes)
    lines = [
        "| env | split | faults | run | tasks | success: better / worse / same | p | diff, points [95% CI] "
        "| score: better / worse | p | diff [95% CI] |",
        "|---|---|---|---|---:|---|---:|---|---|---:|---|",
    ]
    unpaired = [run.label for run in runs[1:] if _conditions(run) != _conditions(runs[0])]
    for run in runs[1:]:
        if run.label in unpaired:
            continue
        for key, episodes in group_episodes(run.episodes).items():
            paired = paired_comparison(base.get(key, ()), episodes)
            if paired is None:
                continue
            env, split, kind = key
            lines.append(
                f"| {_short_env(env)} | {split} | {kind} | {run.label} | {paired['tasks']} "
                f"| {paired['better']} / {paired['worse']} / {paired['same']} | {paired['sign_test_p']:.3g} "
                f"| {_diff(paired['success_diff'], paired['success_diff_ci95'], 100, 1)} "
                f"| {paired['score_better']} / {paired['score_worse']} | {paired['score_sign_test_p']:.3g} "
                f"| {_diff(paired['score_diff'], paired['score_diff_ci95'], 1, 3)} |"
            )
    return (lines if len(lines) > 2 else []), unpaired


def prompt_mismatches(runs: Sequence[Run]) -> list[tuple]:
    """The tasks ``(env_id, split, fault_kind, task_seed)`` that two runs saw with different prompts: comparing
    those runs compares different tasks (an environment that does not reproduce its tasks across processes)."""
    prompts: dict[tuple, set[str]] = {}
    for run in runs:
        for ep in run.episodes:
            key = (ep["env_id"], ep["split"], ep["fault_kind"], ep["task_seed"])
            prompts.setdefault(key, set()).add(ep["prompt"])
    return sorted(key for key, seen in prompts.items() if len(seen) > 1)


def write_report(run_dirs: Sequence[str | os.PathLike], out_dir: str | os.PathLike, *, title: str | None = None,
                 command: str | None = None, labels: Sequence[str] | None = None,
                 viewer_episodes: int = 60, viewer_clip: int = 0) -> Path:
    """Write ``out_dir/report.md`` with its plots and ``out_dir/viewer.html``; returns the report path."""
    from training.evaluation.viewer import write_viewer

    if not run_dirs:
        raise ValueError("write_report needs at least one evaluation folder (the --out of `recoverygym eval`)")
    runs = [load_run(p, labels[i] if labels else None) for i, p in enumerate(run_dirs)]
    seen: dict[str, int] = {}
    for run in runs:  # two runs of one policy with different settings need distinct labels
        if run.label in seen:
            seen[run.label] += 1
            run.label = f"{run.label} ({run.path.name})"
        else:
            seen[run.label] = 0
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plot_success(runs, out / "success_by_split_and_fault.png")
    plot_pass_k(runs, out / "pass_k.png")
    plot_compounding(runs, out / "compounding_error.png")
    has_recovery = plot_recovery(runs, out / "recovery_by_fault.png")
    has_compute = plot_compute(runs, out / "success_vs_tokens.png")
    write_viewer(runs, out / "viewer.html", max_episodes=viewer_episodes, clip=viewer_clip)

    md = [f"# {title or 'recoverygym evaluation report'}", ""]
    commands = list(dict.fromkeys(run.command for run in runs if run.command)) + ([command] if command else [])
    if commands:
        md += ["Made with:", "", "```", *commands, "```", ""]
    mismatched = prompt_mismatches(runs)
    if mismatched:
        envs = sorted({key[0] for key in mismatched})
        md += [f"**Warning**: {len(mismatched)} tasks were seen with different prompts by different runs "
               f"({', '.join(envs)}; first: {mismatched[0]}). Rows of those environments compare different tasks: "
               "the environment does not reproduce its tasks across processes.", ""]
    md += ["## Overview", "",
           ("Success % [95% Wilson interval] (episodes) on each environment: without faults; with faults (every "
            "fault setting pooled); and among the episodes in which at least one fault fired (recovery rate). "
            "Then invalid actions per turn; the share of calls the environment rejected (no fault to blame) that the "
            "agent repeated unchanged the next turn; and generated tokens per episode, over all of a run's episodes."),
           ""]
    md += overview_table(runs) + [""]
    md += ["## Runs", ""]
    for run in runs:
        ev = run.config.get("eval", {})
        md.append(
            f"- **{run.label}** (`{run.path.name}`): policy `{json.dumps(run.config.get('policy', {}))}`; "
            f"envs {', '.join(ev.get('env_ids', []))}; splits {', '.join(ev.get('splits', []))}; "
            f"faults {_fault_settings(ev)}; "
            f"{ev.get('tasks')} task(s) x {ev.get('samples')} sample(s); "
            f"max turns {ev.get('max_turns') or 'env default'}; "
            f"seed {ev.get('seed')}; {len(run.episodes)} episodes; versions: "
            + ", ".join(f"{k} {v}" for k, v in run.versions.items() if k != "platform")
        )
    md += ["", "Metric definitions: `docs/evaluation.md`. Trajectories: [viewer.html](viewer.html).", ""]
    md += ["## Success by split and fault kind", "", "![success](success_by_split_and_fault.png)", ""]
    md += _main_table(runs) + [""]
    if len(runs) > 1:
        md += [f"## Comparison (success %, difference to {runs[0].label} in points)", ""]
        md += _comparison_table(runs) + [""]
        paired, unpaired = paired_table(runs)
        if paired or unpaired:
            md += [f"### Paired on the same tasks, against {runs[0].label}", "",
                   ("Tasks both runs evaluated; per task, each run's success rate and mean score over its samples. "
                    "Better / worse / same: tasks on which the run's value is above, below or equal to the first "
                    "run's; p is the exact sign test's: the chance of a split at least this uneven if neither run "
                    "were better (for success with one sample per task, the exact McNemar test). Differences are "
                    "means over tasks, with 95% bootstrap intervals (10,000 resamples of the tasks); when few tasks "
                    "differ the intervals are too narrow, so read the sign test. One p per row and metric: among "
                    "many, some fall under 0.05 by chance."), ""]
            md += paired + [""]
            if unpaired:
                md += [f"Not paired (another fault rate or turn limit than {runs[0].label}, so the same task seed is "
                       f"not the same task): {', '.join(unpaired)}.", ""]
    md += ["## pass^k and pass@k", "",
           ("pass^k: chance that all k samples of a task succeed (reliability); pass@k: that at least one does "
            "(the oracle best-of-k, at k times the tokens)."), "", "![pass^k](pass_k.png)", ""]
    md += ["## Recovery", "",
           ("Handled: for every fault that fired and every call the environment rejected, whether the agent then "
            "handled it, as the environment recorded it (`envs/core/recovery.py`: a timed-out write read back before "
            "it was made again, a transient error retried, a rate limit waited out, a stale read refreshed, a seeded "
            "error undone, a rejected call not repeated unchanged)."), ""]
    md += _behaviour_table(runs) + [""]
    md += [("Recovery rate: success among the episodes in which a fault of the kind fired; turns to recover: to the "
            "next call that went through (`metrics.recovery_turns`)."), ""]
    if has_recovery:
        md += ["![recovery](recovery_by_fault.png)", ""]
    md += _recovery_table(runs) + [""]
    md += ["## Compounding errors: success against required steps", "", "![compounding](compounding_error.png)", ""]
    if has_compute:
        md += ["## Success against generated tokens", "", "![compute](success_vs_tokens.png)", ""]
    path = out / "report.md"
    path.write_text("\n".join(md))
    return path


def _fault_settings(ev: dict[str, Any]) -> str:
    """The run's fault settings, with the shared rate only where a setting uses it (``kind=rate`` ones do not)."""
    kinds = list(ev.get("fault_kinds", []))
    uses_rate = any(k != "none" and any("=" not in part for part in k.split("+")) for k in kinds)
    return ", ".join(kinds) + (f" at rate {ev.get('fault_rate')}" if uses_rate else "")
