"""The ``recoverygym`` command's dispatch, help and errors (the subcommands have their own tests)."""

from __future__ import annotations

import subprocess
import sys

import pytest

import envs
from training.cli import main


def test_envs_lists_every_registered_environment(capsys):
    assert main(["envs"]) == 0
    out = capsys.readouterr().out
    for env_id in envs.ENVIRONMENTS:
        assert env_id in out
    assert "faults: transient_error" in out


def test_help_lists_the_commands(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("envs", "train", "eval", "report"))


def test_no_command_and_unknown_command_are_usage_errors(capsys):
    assert main([]) == 2
    assert main(["evl"]) == 2
    assert "did you mean 'eval'" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["train", "eval", "report"])
def test_subcommand_help_needs_no_torch(command):
    code = (f"import sys; from training.cli import main\n"
            f"try:\n    main([{command!r}, '--help'])\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
            f"assert 'torch' not in sys.modules, 'torch imported for --help'")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
