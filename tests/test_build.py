"""BUILD must name every Python file: Bazel cannot fetch its rules offline
here, so this test is the check that the targets stay complete."""

import ast
import glob
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _targets():
    """Evaluates BUILD with stand-ins for the Bazel rules."""
    targets = []

    def rule(kind):
        def record(**kwargs):
            targets.append({"kind": kind, **kwargs})

        return record

    env = {
        "load": lambda *args: None,
        "package": lambda **kwargs: None,
        "py_library": rule("py_library"),
        "py_binary": rule("py_binary"),
        "py_test": rule("py_test"),
    }
    with open(os.path.join(ROOT, "BUILD")) as f:
        source = f.read()
    ast.parse(source)  # Starlark here is a subset of Python syntax
    exec(compile(source, "BUILD", "exec"), env)
    return targets


def _python_files(*patterns):
    files = set()
    for pattern in patterns:
        files.update(glob.glob(os.path.join(ROOT, pattern), recursive=True))
    return {os.path.relpath(f, ROOT) for f in files}


def test_every_python_file_has_a_target():
    listed = [src for t in _targets() for src in t.get("srcs", [])]
    on_disk = _python_files(
        "kerasseq/**/*.py", "experiments/**/*.py", "tests/**/*.py"
    )
    missing = sorted(on_disk - set(listed))
    assert not missing, f"files without a BUILD target: {missing}"
    stale = sorted(set(listed) - on_disk)
    assert not stale, f"BUILD lists files that do not exist: {stale}"
    assert len(listed) == len(set(listed)), "a file is listed twice"


def test_every_binary_and_test_file_has_its_own_target():
    targets = _targets()
    binaries = {t["main"] for t in targets if t["kind"] == "py_binary"}
    tests = {t["main"] for t in targets if t["kind"] == "py_test"}
    assert binaries == _python_files("experiments/*.py") - {
        "experiments/__init__.py"
    }
    assert tests == _python_files("tests/**/test_*.py")


def test_large_tests_are_tagged_large():
    for target in _targets():
        if target["kind"] != "py_test":
            continue
        with open(os.path.join(ROOT, target["main"])) as f:
            marked = bool(
                re.search(
                    r"^(@pytest\.mark\.large|pytestmark = \[?\s*"
                    r"pytest\.mark\.large)",
                    f.read(),
                    re.M,
                )
            )
        assert marked == ("large" in target["tags"]), target["main"]


@pytest.mark.parametrize("kind", ["py_library", "py_binary", "py_test"])
def test_target_names_are_unique(kind):
    names = [t["name"] for t in _targets() if t["kind"] == kind]
    assert len(names) == len(set(names))


def test_the_package_imports_from_any_folder(tmp_path):
    """`make run` / `make test` install kerasseq (editable): a script in
    another folder imports it and runs the binaries, with no PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import importlib.util, kerasseq; "
            "print(kerasseq.__file__); "
            "print(importlib.util.find_spec('experiments.glue').origin)",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    package, binary = result.stdout.split()
    assert package == os.path.join(ROOT, "kerasseq", "__init__.py")
    assert binary == os.path.join(ROOT, "experiments", "glue.py")
