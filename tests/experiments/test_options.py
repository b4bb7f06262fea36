"""Typed settings: flags made from dataclass fields, read back, checked;
every binary's --help from them without loading TensorFlow."""

import dataclasses
import json
import os
import subprocess
import sys

import pytest
from absl import flags

from experiments import glue
from experiments import lra
from experiments import pixels
from experiments import squad
from experiments import synthetic
from experiments import textcls
from experiments import wikitext
from experiments.common import options
from experiments.common.config import ExperimentConfig
from experiments.common.config import parse_model_args
from experiments.common.options import setting

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))

# each binary and the dataclasses its flags are made from
BINARIES = {
    "glue": (glue.GlueOptions,),
    "lra": (lra.LraOptions,),
    "pixels": (pixels.PixelsOptions,),
    "squad": (squad.SquadOptions,),
    "synthetic": (synthetic.SyntheticOptions,),
    "textcls": (textcls.TextclsOptions,),
    "wikitext": (wikitext.WikitextOptions, wikitext.SampleOptions),
}


@dataclasses.dataclass
class Example(options.TaskOptions):
    count: int = setting(3, "A count.", minimum=1)
    rate: float = setting(0.5, "A rate.", minimum=0)
    name: str = setting("a", "A name.", choices=("a", "b"))
    where: str | None = setting(None, "A path.", path=True)
    flag: bool = setting(False, "A switch.")
    lengths: list | None = setting(None, "Repeatable.")
    level: int = setting(1, "A level.", minimum=0, maximum=3)


def _parse(cls, *argv):
    flag_values = flags.FlagValues()
    options.define_flags(cls, flag_values=flag_values)
    flag_values(["prog", *argv])
    return options.from_flags(cls, flag_values)


def test_flags_default_to_the_fields_and_read_back_typed():
    assert _parse(Example) == Example()
    parsed = _parse(
        Example,
        "--count=7",
        "--rate=0.25",
        "--name=b",
        "--where=~/data",
        "--flag",
        "--lengths=1,2",
        "--lengths=3,4",
        "--level=3",
    )
    assert parsed == Example(
        count=7,
        rate=0.25,
        name="b",
        where=os.path.expanduser("~/data"),
        flag=True,
        lengths=["1,2", "3,4"],
        level=3,
    )


@pytest.mark.parametrize(
    "values, message",
    [
        ({"count": 0}, "--count must be a positive integer, got 0."),
        ({"count": 2.5}, "--count must be an integer, got 2.5."),
        ({"count": True}, "--count must be a number, got True."),
        ({"rate": -1.0}, "--rate must be >= 0, got -1.0."),
        ({"name": "c"}, "Unknown --name='c'; valid: a, b."),
        ({"level": 4}, "--level must be from 0 to 3, got 4."),
    ],
)
def test_every_setting_is_checked_with_the_flag_named(values, message):
    with pytest.raises(ValueError) as error:
        Example(**values)
    assert str(error.value) == message


@pytest.mark.parametrize("argv", ["--count=0", "--rate=-1", "--level=4"])
def test_a_bad_flag_gets_the_same_message(argv):
    name, value = argv[2:].split("=")
    with pytest.raises(ValueError) as from_python:
        Example(**{name: type(getattr(Example(), name))(value)})
    with pytest.raises(ValueError) as from_flags:
        _parse(Example, argv)
    assert str(from_flags.value) == str(from_python.value)


def test_model_args_parse_typed_and_by_part():
    assert parse_model_args("num_layers=2, dropout=0.1,head.dropout=0.3") == {
        "num_layers": 2,
        "dropout": 0.1,
        "head": {"dropout": 0.3},
    }
    assert parse_model_args("pooling=max,tie_embeddings=false") == {
        "pooling": "max",
        "tie_embeddings": False,
    }
    with pytest.raises(ValueError, match="'neck.dropout'.*head.dropout"):
        parse_model_args("neck.dropout=0.1")


def test_the_run_record_serialises_the_task_options(tmp_path):
    config = ExperimentConfig(
        family="glue",
        task="rte",
        models=("gpt",),
        task_args=glue.GlueOptions(max_length=64, num_train_examples=10),
        workdir=str(tmp_path),
    )
    record = json.loads(config.to_json())
    assert record["task_args"] == {
        "tokenizer": "bytes",
        "tokenizer_dir": None,
        "num_train_examples": 10,
        "num_eval_examples": None,
        "max_length": 64,
    }
    assert record["models"] == ["gpt"] and record["batch_size"] == 32


def test_task_dependent_defaults_are_filled_for_the_task():
    config = ExperimentConfig(
        family="lra",
        task="image",
        models=("gpt",),
        task_args=lra.LraOptions(listops_max_depth=4),
    )
    args = config.task_args
    # LRA's image length and hold-out; the ListOps options do not apply
    assert (args.max_length, args.validation_size) == (1024, 5000)
    assert args.listops_max_depth is None and args.generate is None
    # resolving again changes nothing (dataclasses.replace re-checks)
    assert dataclasses.replace(config).task_args == args


def test_catalogue_is_one_module_read_before_or_after_kerasseq():
    code = (
        "import sys\n"
        "from experiments.common.options import catalogue\n"
        "assert not {'tensorflow', 'keras'} & set(sys.modules)\n"
        "import kerasseq.catalogue\n"
        "from kerasseq import models\n"
        "from kerasseq.data import glue, lra\n"
        "assert kerasseq.catalogue is catalogue\n"
        "assert models.MODEL_NAMES == tuple(models.MODELS) == "
        "catalogue.MODEL_NAMES\n"
        "assert glue.TASKS is catalogue.GLUE_TASKS\n"
        "assert lra.TASKS is catalogue.LRA_TASKS\n"
        "print('ok')\n"
    )
    assert _python(code).strip() == "ok"


def _python(code):
    """The output of `python -c code` in a new process (the repository
    root its folder); fails the test if it fails."""
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def _help(binary):
    """`python -m experiments.<binary> --help`, and whether TensorFlow was
    loaded to answer it."""
    code = (
        "import runpy, sys\n"
        f"sys.argv = ['experiments.{binary}', '--help']\n"
        "try:\n"
        f"    runpy.run_module('experiments.{binary}', run_name='__main__')\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('TENSORFLOW LOADED' if 'tensorflow' in sys.modules else '')\n"
    )
    return _python(code)


@pytest.mark.parametrize("binary", sorted(BINARIES))
def test_help_lists_every_setting_without_loading_tensorflow(binary):
    text = _help(binary)
    assert "TENSORFLOW LOADED" not in text
    expected = {
        options.flag_name(f) for f in options.settings(ExperimentConfig)
    }
    for cls in BINARIES[binary]:
        expected |= {options.flag_name(f) for f in options.settings(cls)}
    if binary in ("synthetic", "textcls"):  # they download nothing
        expected.discard("download")
    missing = sorted(
        name
        for name in expected
        if f"--{name}:" not in text and f"--[no]{name}:" not in text
    )
    assert not missing, missing
