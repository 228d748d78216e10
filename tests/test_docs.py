"""The README's commands and the files it names are true."""

from __future__ import annotations

import os
import re
import subprocess
import sys
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


def test_the_guides_example_environment_passes_the_contract_tests(tmp_path):
    """docs/adding-an-environment.md promises its Pantry example passes check_env and every contract test."""
    guide = (ROOT / "docs" / "adding-an-environment.md").read_text()
    module, try_it = re.findall(r"```python\n(.*?)```", guide, re.DOTALL)[:2]
    (tmp_path / "pantry.py").write_text(module)
    env = os.environ | {"PYTHONPATH": str(tmp_path), "RECOVERYGYM_CONTRACT_ENVS": "mylab/Pantry-v0=pantry:PantryEnv"}
    tried = subprocess.run([sys.executable, "-c", try_it], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert tried.returncode == 0, tried.stderr
    assert tried.stdout.startswith("1.0 "), tried.stdout
    contract = subprocess.run(
        [sys.executable, "-m", "pytest", str(ROOT / "tests" / "test_contract.py"), "-q", "-k", "Pantry",
         "-p", "no:cacheprovider"],
        env=env, capture_output=True, text=True, cwd=ROOT,
    )
    assert contract.returncode == 0, contract.stdout[-3000:]
    assert re.search(r"(\d+) passed", contract.stdout).group(1) != "0"
