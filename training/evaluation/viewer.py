"""A static, self-contained HTML page of trajectories: transcripts with injected faults and the checker's verdict.

No server, no external assets: open ``viewer.html`` in a browser. Turns where a fault fired are marked in orange
with the fault's details, invalid actions in red, scaffold-inserted actions in grey; each episode ends with the
checker's score, components and reasons. Filters narrow by run, environment, outcome and fault kind.
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["pick_episodes", "write_viewer"]

_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}
h1{font-size:1.3em} .bar{position:sticky;top:0;background:#fafafa;padding:.5em 0;border-bottom:1px solid #ddd}
select{margin-right:1em}
details.ep{background:#fff;border:1px solid #ddd;border-radius:6px;margin:.6em 0;padding:.4em .8em}
details.ep>summary{cursor:pointer} .ok{color:#16794c;font-weight:600} .fail{color:#b42318;font-weight:600}
.badge{display:inline-block;border-radius:4px;padding:0 .4em;margin-left:.3em;font-size:.85em;background:#eee}
.badge.fault{background:#fdb022;color:#000} .badge.invalid{background:#f04438;color:#fff}
.badge.scripted{background:#98a2b3;color:#fff} .badge.err{background:#fecdca}
.turn{border-left:4px solid #d0d5dd;margin:.5em 0;padding:.2em .6em}
.turn.fault{border-color:#fdb022;background:#fffaeb} .turn.invalid{border-color:#f04438;background:#fef3f2}
.turn.err{border-color:#fda29b} pre{white-space:pre-wrap;word-break:break-word;margin:.2em 0;font-size:12.5px}
.act{background:#eef4ff;padding:.3em} .obs{background:#f9fafb;padding:.3em} .prompt{background:#f2f4f7;padding:.3em}
.verdict{border-radius:6px;padding:.5em;margin-top:.5em}
.verdict.ok{background:#ecfdf3} .verdict.fail{background:#fef3f2}
.reason{color:#b42318} .chip{display:inline-block;margin:.1em;padding:0 .4em;border-radius:4px;font-size:.85em}
.chip.t{background:#d1fadf} .chip.f{background:#fee4e2}
"""

_JS = """
function applyFilters(){
  const f={};document.querySelectorAll('select[data-key]').forEach(s=>f[s.dataset.key]=s.value);
  let shown=0;document.querySelectorAll('details.ep').forEach(d=>{
    let ok=true;for(const k in f){if(f[k]==='*')continue;
      const v=d.dataset[k]||'';if(k==='faults'?!v.split(' ').includes(f[k]):v!==f[k])ok=false;}
    d.style.display=ok?'':'none';if(ok)shown++;});
  document.getElementById('count').textContent=shown+' shown';
}
document.querySelectorAll('select[data-key]').forEach(s=>s.addEventListener('change',applyFilters));
applyFilters();
"""


def pick_episodes(episodes: Sequence[dict[str, Any]], max_episodes: int) -> list[dict[str, Any]]:
    """Up to ``max_episodes`` episodes, half failures and half successes where possible, faulted ones first."""
    def order(ep):
        return (not ep.get("faults"), ep["env_id"], ep["fault_kind"], ep["task_seed"], ep["sample"])

    fails = sorted((ep for ep in episodes if not ep["success"]), key=order)
    wins = sorted((ep for ep in episodes if ep["success"]), key=order)
    n_fail = min(len(fails), max(max_episodes // 2, max_episodes - len(wins)))
    return fails[:n_fail] + wins[: max_episodes - n_fail]


def _e(text: Any) -> str:
    return html.escape(str(text))


def _clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters with a marker (the viewer stays small; episodes.jsonl has it all)."""
    if limit <= 0 or len(text) <= limit:
        return text
    return text[:limit] + f"\n[... {len(text) - limit} more characters in episodes.jsonl]"


def _fault_text(fault: dict[str, Any]) -> str:
    rest = ", ".join(f"{k}={v}" for k, v in fault.items() if k not in ("kind", "turn"))
    return f"{fault['kind']}" + (f" ({rest})" if rest else "")


def _episode_html(label: str, ep: dict[str, Any], clip: int = 0) -> str:
    kinds = sorted({f["kind"] for f in ep.get("faults") or ()})
    outcome = "success" if ep["success"] else "failure"
    head = (
        f"<span class='{'ok' if ep['success'] else 'fail'}'>{'✔' if ep['success'] else '✘'} {ep['score']:.2f}</span> "
        f"{_e(label)} · {_e(ep['env_id'])} · {_e(ep['split'])} · task {ep['task_seed']} sample {ep['sample']} · "
        f"faults={_e(ep['fault_kind'])} · {ep['turns']} turns · {ep.get('required_steps')} required steps"
        + "".join(f"<span class='badge fault'>{_e(k)}</span>" for k in kinds)
        + (f"<span class='badge invalid'>{ep['invalid_actions']} invalid</span>" if ep["invalid_actions"] else "")
    )
    attrs = (f"data-run='{_e(label)}' data-env='{_e(ep['env_id'])}' data-outcome='{outcome}' "
             f"data-faults='{_e(' '.join(kinds) or 'none')}'")
    parts = [f"<details class='ep' {attrs}><summary>{head}</summary>",
             f"<div class='prompt'><b>prompt</b><pre>{_e(_clip(ep['prompt'], clip))}</pre></div>"]
    for fault in ep.get("faults") or ():
        if not fault.get("turn"):  # seeded errors exist before the first turn
            parts.append(f"<div class='turn fault'><span class='badge fault'>before turn 1: {_e(_fault_text(fault))}"
                         "</span></div>")
    for step in ep["steps"]:
        cls = "fault" if step.get("faults") else "invalid" if step["invalid_action"] else "" if step["ok"] else "err"
        badges = "".join(f"<span class='badge fault'>fault: {_e(_fault_text(f))}</span>" for f in step["faults"])
        if step["invalid_action"]:
            badges += "<span class='badge invalid'>invalid action</span>"
        elif not step["ok"] and not step.get("faults"):
            badges += "<span class='badge err'>tool error</span>"
        if step.get("scripted"):
            badges += "<span class='badge scripted'>scaffold</span>"
        tokens = f" · {step['tokens']} tokens" if step.get("tokens") else ""
        parts.append(
            f"<div class='turn {cls}'><b>turn {step['turn']}</b> · {_e(step.get('tool') or '-')}{tokens}{badges}"
            f"<pre class='act'>{_e(_clip(step['action'], clip))}</pre>"
            f"<pre class='obs'>{_e(_clip(step['observation'], clip))}</pre></div>"
        )
    components = (ep.get("components") or {}).items()
    chips = "".join(f"<span class='chip {'t' if v else 'f'}'>{_e(k)}</span>" for k, v in components)
    reasons = "".join(f"<li class='reason'>{_e(r)}</li>" for r in ep.get("reasons") or ())
    end = "terminated" if ep.get("terminated") else "turn limit" if ep.get("truncated") else ep.get("ended", "?")
    parts.append(
        f"<div class='verdict {'ok' if ep['success'] else 'fail'}'><b>checker</b>: score {ep['score']:.3f} "
        f"({end}) {chips}<ul>{reasons}</ul></div></details>"
    )
    return "\n".join(parts)


def _select(key: str, title: str, values: Sequence[str]) -> str:
    options = "".join(f"<option value='{_e(v)}'>{_e(v)}</option>" for v in values)
    return f"{title} <select data-key='{key}'><option value='*'>all</option>{options}</select>"


def write_viewer(runs: Sequence[Any], path: str | os.PathLike, *, max_episodes: int = 60, clip: int = 0) -> Path:
    """Write the trajectory viewer for ``runs`` (``report.Run`` objects, or ``(label, episodes)`` pairs).

    ``clip`` > 0 cuts prompts, actions and observations to that many characters, to keep the page small."""
    pairs = [(r.label, r.episodes) if hasattr(r, "episodes") else (r[0], r[1]) for r in runs]
    chosen = [(label, ep) for label, eps in pairs for ep in pick_episodes(eps, max_episodes)]
    total = sum(len(eps) for _, eps in pairs)
    envs = sorted({ep["env_id"] for _, ep in chosen})
    kinds = sorted({f["kind"] for _, ep in chosen for f in ep.get("faults") or ()} | {"none"})
    bar = " ".join([
        _select("run", "run", [label for label, _ in pairs]),
        _select("env", "env", envs),
        _select("outcome", "outcome", ["success", "failure"]),
        _select("faults", "fault fired", kinds),
        "<span id='count'></span>",
    ])
    body = "\n".join(_episode_html(label, ep, clip) for label, ep in chosen)
    meta = json.dumps({"episodes_shown": len(chosen), "episodes_total": total})
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>recoverygym trajectories</title>"
        f"<style>{_CSS}</style></head><body><h1>recoverygym trajectories</h1>"
        f"<p>{len(chosen)} of {total} episodes (up to {max_episodes} per run, failures and faulted episodes first). "
        "Orange: a fault fired on that turn; red: invalid action; grey badge: inserted by the scaffold.</p>"
        f"<div class='bar'>{bar}</div>{body}<script type='application/json' id='meta'>{meta}</script>"
        f"<script>{_JS}</script></body></html>"
    )
    path = Path(path)
    path.write_text(page, encoding="utf-8")
    return path
