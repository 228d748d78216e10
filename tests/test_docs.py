"""The README's commands and the files it names are true."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def bash_blocks(text: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", text, re.DOTALL)


def test_ci_runs_the_readme_test_command():
    blocks = bash_blocks(README)
    test_command = next(b.strip() for b in blocks if "pytest" in b)
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_command in ci, f"{test_command!r} is not a line of .ci/run"


def test_readme_main_command_names_a_real_config():
    main = next(b for b in bash_blocks(README) if "recoverygym train" in b)
    config = re.search(r"recoverygym train (\S+)", main).group(1)
    assert (ROOT / config).is_file()


def test_paths_named_in_the_docs_exist():
    docs = [README, *(p.read_text() for p in (ROOT / "docs").glob("*.md"))]
    named = {m for text in docs for m in re.findall(r"`((?:envs|training|configs|scripts|docs|tests)/[\w./-]+)`", text)}
    missing = sorted(p for p in named if "*" not in p and not (ROOT / p.rstrip("/")).exists())
    assert not missing, missing
