"""The Colab notebook runs top to bottom: each `python -m experiments...`
command in it is run here as written, on the CPU and small (the
`OVERRIDES` come after its own flags, and the last value of a flag wins),
with TensorFlow Datasets mocked in every process it starts (`large`: each
command imports TensorFlow and compiles a model, about 4 minutes)."""

import json
import os
import shlex

import pytest

from tests.experiments.binaries import ROOT
from tests.experiments.binaries import run_binary

pytestmark = pytest.mark.large

NOTEBOOK = os.path.join(ROOT, "experiments", "notebooks", "tpu_colab.ipynb")
# one device, float32 (bfloat16 is slow to compile on a CPU), two steps,
# the smallest models in one process, small generated data; the
# notebook's own values are still parsed and checked
OVERRIDES = [
    "--strategy=default",
    "--mixed_precision=none",
    "--steps=2",
    "--eval_every=2",
    "--preset=tiny",
    "--batch_size=4",
    "--nofresh_process",
]
FAMILY_OVERRIDES = {
    "lra": ["--num_generated=60", "--max_length=64", "--listops_min_length=5"]
}
# run in every Python process of the command (the binaries train each
# model in a fresh one): TFDS mocked with nothing prepared, and the
# network taken as reachable, so that the download path runs end to end
SITECUSTOMIZE = """
import tensorflow_datasets as tfds

from kerasseq.data import download

download.unreachable = lambda urls, timeout=None: None
# held for the process's life (a context manager collected is exited)
MOCK = tfds.testing.mock_data(num_examples=12)
MOCK.__enter__()
"""


def notebook_lines(path=NOTEBOOK):
    """The shell lines (`!...`) of the notebook's code cells, with their
    backslash continuations joined."""
    with open(path) as f:
        cells = json.load(f)["cells"]
    lines = []
    for cell in cells:
        if cell["cell_type"] != "code":
            continue
        text = "".join(cell["source"]).replace("\\\n", " ")
        lines += [
            line.strip()[1:]
            for line in text.splitlines()
            if line.strip().startswith("!")
        ]
    return lines


def test_the_notebook_has_the_commands_it_says():
    commands = [
        line for line in notebook_lines() if line.startswith("python -m ")
    ]
    assert [shlex.split(c)[2] for c in commands] == [
        "experiments.glue",
        "experiments.lra",
    ]


def test_every_notebook_command_runs(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = {"PYTHONPATH": f"{site}{os.pathsep}{ROOT}"}
    work = tmp_path / "colab"
    work.mkdir()
    for line in notebook_lines():
        args = shlex.split(line)
        if args[:2] == ["python", "-m"]:
            family = args[2].split(".")[1]
            extra = OVERRIDES + FAMILY_OVERRIDES.get(family, [])
            result = run_binary(family, *args[3:], *extra, env=env, cwd=work)
            assert result.returncode == 0, (line, result.stderr[-3000:])
        elif args[0] == "cat":
            # the files the last cell shows
            for path in args[1:]:
                assert (work / path).is_file(), path
    # what each command did: SST-2 from TFDS, ListOps generated
    sst2 = json.loads((work / "runs/sst2/mamba/results.json").read_text())
    assert sst2["data"]["train"]["examples"] == 12
    listops_dir = work / "runs" / "listops" / "data"
    assert (listops_dir / "listops_generator.json").is_file()
    for model in ("mamba", "lru", "gpt"):
        assert (work / "runs" / "listops" / model / "model.keras").is_file()
