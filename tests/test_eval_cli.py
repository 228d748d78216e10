"""The command line as a user meets it: help texts, progress bars, and Ctrl-C then the same command again."""

import json

import pytest

import envs  # noqa: F401  (registers the ids)
from training.evaluation import cli
from training.evaluation.policies import ReferencePolicy
from training.evaluation.runner import load_episodes

SUPPORT = "recoverygym/SupportDesk-v0"


@pytest.mark.parametrize("command, expected", [
    ("eval", ["--env ENV_ID", "--policy SPEC", "re-running the same", "noisy-reference[:P]", "scaffold+SPEC",
              "best-of-K+SPEC", "--temperature > 0", "examples:", "--threads", "--base-url"]),
    ("report", ["--viewer-clip CHARS", "viewer.html", "examples:", "recoverygym report runs/eval/* --out"]),
])
def test_help_explains_the_command(command, expected, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main([command, "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    for phrase in expected:
        assert phrase in text, phrase
    assert cli.main(["--help"]) == 0 and command in capsys.readouterr().out


def test_progress_bar_shows_episodes_and_turns(tmp_path, capsys):
    argv = ["eval", "--env", SUPPORT, "--policy", "reference", "--faults", "none", "--tasks", "2", "--samples", "1",
            "--out", str(tmp_path)]
    assert cli.main(argv) == 0
    err = capsys.readouterr().err
    assert "eval reference" in err and "2/2" in err and "turns" in err and "2/2 succeeded" in err
    assert cli.main([*argv, "--no-progress", "--overwrite"]) == 0
    assert "eval reference" not in capsys.readouterr().err


class _StopsAfter(ReferencePolicy):
    """The reference policy, but the user presses Ctrl-C on the ``stop_at``-th batch of actions."""

    def __init__(self, stop_at):
        super().__init__()
        self.calls, self.stop_at = 0, stop_at

    def act(self, episodes):
        self.calls += 1
        if self.calls == self.stop_at:
            raise KeyboardInterrupt
        return super().act(episodes)


def test_ctrl_c_keeps_finished_episodes_and_the_same_command_resumes(tmp_path, capsys, monkeypatch):
    argv = ["eval", "--env", SUPPORT, "--policy", "reference", "--faults", "none,all", "--tasks", "3", "--samples",
            "2", "--batch-size", "2", "--no-progress", "--out", str(tmp_path)]
    build = cli.make_policy
    monkeypatch.setattr(cli, "make_policy", lambda spec, args, cache=None: _StopsAfter(stop_at=25))
    assert cli.main(argv) == 130
    err = capsys.readouterr().err
    kept = load_episodes(tmp_path / "reference" / "episodes.jsonl")
    assert 0 < len(kept) < 12
    assert f"{len(kept)} finished episodes are kept" in err and "run the same command again to resume" in err

    monkeypatch.setattr(cli, "make_policy", build)
    assert cli.main(argv) == 0
    episodes = load_episodes(tmp_path / "reference" / "episodes.jsonl")
    assert episodes[: len(kept)] == kept  # nothing finished was played again or changed
    keys = {(e["fault_kind"], e["task_seed"], e["sample"]) for e in episodes}
    assert len(episodes) == len(keys) == 12 and all(e["success"] for e in episodes)
    results = json.loads((tmp_path / "reference" / "results.json").read_text())
    assert results["episodes"] == 12
