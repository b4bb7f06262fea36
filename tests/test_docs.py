"""The documentation runs: every Python block of README.md and of each
docs/*.md, in order (one namespace per document), and every `>>>` example in
the library's docstrings. Every `python -m experiments.X --flag` the
documents name is a binary that defines that flag."""

import doctest
import functools
import glob
import importlib
import os
import pkgutil
import re
import subprocess
import sys

import keras
import numpy as np
import pytest

import kerasseq

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "hf")
# what the documents leave to the reader, made small, and their hub ids
# pointed at the test checkpoints (no network in tests); every key must
# still be in its document
SUBSTITUTIONS = {
    "README.md": {
        "num_examples=4_000": "num_examples=256",
        "model.fit(train, epochs=2)": "model.fit(train, epochs=1, verbose=0)",
        '"distilgpt2"': repr(os.path.join(FIXTURES, "gpt2")),
        '"bert-base-uncased"': repr(os.path.join(FIXTURES, "bert")),
    },
    "docs/library.md": {
        '"bert-base-uncased"': repr(os.path.join(FIXTURES, "bert")),
    },
}
# what each document's blocks promise: name -> class name, or "shape of q"
PROMISES = {
    "README.md": {"lm": "CausalLM", "classifier": "SequenceClassifier"},
    "docs/library.md": {"lm": "CausalLM", "encoder": "SequenceBackbone"},
    "docs/kernels.md": {},
}


def _read(name):
    with open(os.path.join(ROOT, name), encoding="utf-8") as f:
        return f.read()


def documents():
    """README.md and every markdown file under docs/, relative to ROOT."""
    found = sorted(
        glob.glob(os.path.join(ROOT, "docs", "**", "*.md"), recursive=True)
    )
    return ["README.md"] + [os.path.relpath(p, ROOT) for p in found]


def python_blocks(name):
    return re.findall(r"```python\n(.*?)```", _read(name), re.S)


def test_every_document_with_python_is_run():
    with_python = [name for name in documents() if python_blocks(name)]
    assert sorted(with_python) == sorted(PROMISES)


@pytest.mark.parametrize("name", sorted(PROMISES))
def test_python_blocks_run(name):
    source = "\n".join(python_blocks(name))
    for old, new in SUBSTITUTIONS.get(name, {}).items():
        assert old in source, f"{name} no longer says {old}"
        source = source.replace(old, new)
    namespace = {"__name__": "docs"}
    exec(compile(source, name, "exec"), namespace)
    for variable, class_name in PROMISES[name].items():
        assert namespace[variable].__class__.__name__ == class_name
    if name == "docs/kernels.md":
        assert (
            np.asarray(namespace["o"]).shape == np.asarray(namespace["q"]).shape
        )


def test_readme_lists_every_registered_model():
    """The README's model tables name every `--model` the registry builds,
    and nothing else."""
    rows = re.findall(r"^\| `(\w+)`(?:, `(\w+)`)? \|", _read("README.md"), re.M)
    listed = {name for row in rows for name in row if name}
    assert listed == set(kerasseq.models.MODEL_NAMES)


def documented_commands(text):
    """`(binary, subcommand or None, [flag names])` of every `python -m
    experiments.X ...` in a markdown text: in code blocks (a line continued
    by `\\`) and in inline code (which may wrap across lines)."""
    text = re.sub(r"\\\n\s*", " ", text)
    pieces = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, re.S):
        pieces += block.split("\n")
    prose = re.sub(r"```[a-z]*\n.*?```", "", text, flags=re.S)
    pieces += [
        span.replace("\n", " ") for span in re.findall(r"`([^`]+)`", prose)
    ]
    commands = []
    for piece in pieces:
        for part in re.split(r"&&|;|\|", piece):
            match = re.search(r"python -m experiments\.(\w+)(.*)", part)
            if match:
                words = match.group(2).split()
                flags = re.findall(r"(?:^|\s)'?--(\w+)", match.group(2))
                subcommand = words[0] if words and words[0].isalpha() else None
                commands.append((match.group(1), subcommand, flags))
    return commands


@functools.cache
def defined_flags(binary):
    """The flags `python -m experiments.<binary> --helpfull` lists (the
    binaries load no TensorFlow for it: about 0.2 s each)."""
    run = subprocess.run(
        [sys.executable, "-m", f"experiments.{binary}", "--helpfull"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    names = set(re.findall(r"^\s+--(?:\[no\])?(\w+):", run.stdout, re.M))
    booleans = re.findall(r"^\s+--\[no\](\w+):", run.stdout, re.M)
    return names | {"no" + name for name in booleans} | {"help", "helpfull"}


def test_documented_commands_and_flags_exist():
    missing = []
    count = 0
    for name in documents():
        for binary, subcommand, flags in documented_commands(_read(name)):
            count += 1
            source = os.path.join("experiments", binary + ".py")
            if not os.path.exists(os.path.join(ROOT, source)):
                missing.append(f"{name}: experiments.{binary}")
                continue
            # `report document`, `benchmark ops`: main checks its argv
            # against a tuple of the subcommands' names
            if subcommand and f'"{subcommand}"' not in _read(source):
                missing.append(f"{name}: experiments.{binary} {subcommand}")
            for flag in set(flags) - defined_flags(binary):
                missing.append(f"{name}: experiments.{binary} --{flag}")
    assert count > 20, "the documents' commands were not found"
    assert not missing, "documents name what does not exist:\n" + "\n".join(
        missing
    )


def test_every_documented_flag_is_a_binarys_flag():
    """A `--flag` named in prose (`--eval_every`, ...) is one at least one
    binary defines."""
    binaries = [
        os.path.basename(path).removesuffix(".py")
        for path in glob.glob(os.path.join(ROOT, "experiments", "*.py"))
        if "__main__" in _read(os.path.relpath(path, ROOT))
    ]
    known = set().union(*(defined_flags(binary) for binary in binaries))
    unknown = [
        f"{name}: --{flag}"
        for name in documents()
        for flag in set(re.findall(r"(?<![\w-])--([a-z]\w+)", _read(name)))
        if flag not in known
    ]
    assert not unknown, "documents name flags no binary defines:\n" + "\n".join(
        unknown
    )


def documented_paths(name):
    """The repository paths document `name` names: `kerasseq/...`,
    `experiments/...`, `tests/...`, `docs/...` (two characters at least
    after the folder, not as a flag's value: "SST-2 docs/s" is a rate) and
    its relative links, each as a path from ROOT (may hold a `*`)."""
    text = _read(name)
    paths = re.findall(
        r"(?<![=\w/.])((?:kerasseq|experiments|tests|docs)/[\w./*-]+\w)", text
    )
    here = os.path.dirname(name)
    for link in re.findall(r"\]\(([^)#\s]+)", text):
        if "://" not in link:
            paths.append(os.path.normpath(os.path.join(here, link)))
    return paths


def test_documented_paths_exist():
    missing = [
        f"{name}: {path}"
        for name in documents()
        for path in documented_paths(name)
        if not glob.glob(os.path.join(ROOT, path))
    ]
    assert not missing, "documents name what does not exist:\n" + "\n".join(
        missing
    )


def test_documented_commands_parse_flags():
    text = """run `python -m
experiments.glue --task=sst2` or

```sh
python -m experiments.lra --task=listops \\
    --model=gpt && python -m experiments.report document '--title=a b'
```
"""
    assert documented_commands(text) == [
        ("lra", None, ["task", "model"]),
        ("report", "document", ["title"]),
        ("glue", None, ["task"]),
    ]


def _modules():
    names = []
    for info in pkgutil.walk_packages(kerasseq.__path__, "kerasseq."):
        names.append(info.name)
    return sorted(names)


def _as_tuple(match):
    dims = [d.strip() for d in match.group(1).split(",") if d.strip()]
    return repr(tuple(None if d == "None" else int(d) for d in dims))


class _ShapeChecker(doctest.OutputChecker):
    """Reads TensorFlow's `TensorShape([2, 5])` as the `(2, 5)` the
    docstrings write (what JAX and NumPy print)."""

    def check_output(self, want, got, optionflags):
        got = re.sub(r"TensorShape\(\[([^\]]*)\]\)", _as_tuple, got)
        return super().check_output(want, got, optionflags)


@pytest.mark.parametrize("module", _modules())
def test_docstring_examples(module):
    tests = doctest.DocTestFinder().find(
        importlib.import_module(module),
        extraglobs={"keras": keras, "np": np, "kerasseq": kerasseq},
    )
    runner = doctest.DocTestRunner(
        checker=_ShapeChecker(),
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
    )
    for test in tests:
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} failed examples in {module}"
