"""The documentation runs: every Python block of README.md, in order, and
every `>>>` example in the library's docstrings."""

import doctest
import importlib
import os
import pkgutil
import re

import keras
import numpy as np
import pytest

import kerasseq

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "hf")
# what the README leaves to the reader, made small, and its hub ids
# pointed at the test checkpoints (no network in tests); every key must
# still be in the README
README_SUBSTITUTIONS = {
    "num_examples=4_000": "num_examples=256",
    "model.fit(train, epochs=2)": "model.fit(train, epochs=1, verbose=0)",
    '"distilgpt2"': repr(os.path.join(FIXTURES, "gpt2")),
    '"bert-base-uncased"': repr(os.path.join(FIXTURES, "bert")),
}


def readme_blocks():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        text = f.read()
    return re.findall(r"```python\n(.*?)```", text, re.S)


def test_readme_python_blocks_run():
    source = "\n".join(readme_blocks())
    for old, new in README_SUBSTITUTIONS.items():
        assert old in source, f"the README no longer says {old}"
        source = source.replace(old, new)
    namespace = {"__name__": "readme"}
    exec(compile(source, "README.md", "exec"), namespace)
    # what the blocks promise
    assert namespace["lm"].__class__.__name__ == "CausalLM"
    assert namespace["classifier"].__class__.__name__ == "SequenceClassifier"
    assert np.asarray(namespace["o"]).shape == np.asarray(namespace["q"]).shape


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
