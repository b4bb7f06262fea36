"""Typed settings: each setting is written once, as a dataclass field.

A field made with `setting(default, help, ...)` carries its help text, its
allowed values or lower bound, and whether it holds a path. From those
fields `define_flags` defines the absl flags (name, type, default, help),
`from_flags` reads the parsed flags back into the dataclass, and
`check_settings` checks any instance (made from flags or in Python) with
the same rules and the same messages. `ExperimentConfig`
(`experiments/common/config.py`) and each binary's task options are such
dataclasses; `config.json` serialises them.

This module and `catalogue` load without Keras or TensorFlow, so that a
binary's `--help` answers at once.
"""

import dataclasses
import importlib.util
import os
import sys
import types

from absl import flags


def _load_catalogue():
    """`kerasseq.catalogue`, read from its file when kerasseq is not loaded
    yet: `import kerasseq` loads Keras and TensorFlow (about 6 s), and the
    catalogue needs neither. Registered under its own name, so a later
    `import kerasseq.catalogue` finds this same module."""
    name = "kerasseq.catalogue"
    if name in sys.modules:
        return sys.modules[name]
    # find_spec of a top-level package locates it without running it
    package = importlib.util.find_spec("kerasseq")
    path = os.path.join(package.submodule_search_locations[0], "catalogue.py")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


catalogue = _load_catalogue()


def setting(
    default,
    help_text,
    *,
    choices=None,
    minimum=None,
    maximum=None,
    path=False,
    flag=None,
    parse=None,
    flag_default=None,
):
    """A dataclass field that is also a command-line flag.

    Args:
        default: the default value (lists and dicts are copied per
            instance).
        help_text: the flag's help.
        choices: the allowed values (an enum flag).
        minimum: the smallest allowed number.
        maximum: the largest allowed number.
        path: a path flag (`~` is expanded).
        flag: the flag's name when it is not the field's.
        parse: for a field whose flag is a string spelling of it
            (`--model=gpt,lstm`), the function from that string to the
            value.
        flag_default: with `parse`, the flag's default string.

    A `default` of `dataclasses.MISSING` makes the field required; its
    flag's default is then given to `define_flags`.
    """
    metadata = {
        "help": help_text,
        "choices": None if choices is None else tuple(choices),
        "minimum": minimum,
        "maximum": maximum,
        "path": path,
        "flag": flag,
        "parse": parse,
        "flag_default": flag_default,
    }
    if isinstance(default, (list, dict)):
        return dataclasses.field(
            default_factory=lambda: type(default)(default), metadata=metadata
        )
    return dataclasses.field(default=default, metadata=metadata)


def settings(cls_or_instance):
    """The fields of a dataclass that are settings (made by `setting`)."""
    return [
        f for f in dataclasses.fields(cls_or_instance) if "help" in f.metadata
    ]


def flag_name(field):
    return field.metadata["flag"] or field.name


def _value_type(field):
    """`int` for a field annotated `int` or `int | None`, and so on."""
    annotation = field.type
    if isinstance(annotation, types.UnionType):
        (annotation,) = (a for a in annotation.__args__ if a is not type(None))
    return annotation


class PathParser(flags.ArgumentParser):
    """A path flag's value with `~` expanded (the shell leaves the `~` of
    `--data_dir=~/x` as it is)."""

    syntactic_help = "a path"

    def parse(self, argument):
        return None if argument is None else os.path.expanduser(argument)

    def flag_type(self):
        return "path"


def define_flags(cls, *, defaults=None, choices=None, skip=(), **kwargs):
    """Defines one absl flag per setting of the dataclass `cls`.

    Args:
        cls: a dataclass whose settings become flags.
        defaults: `{field: value}` replacing the fields' defaults (e.g. the
            binary's default task).
        choices: `{field: values}` replacing the fields' choices.
        skip: names of fields that get no flag here.
        **kwargs: passed to every `flags.DEFINE_*` (e.g. `flag_values`).
    """
    defaults, choices = defaults or {}, choices or {}
    for field in settings(cls):
        if field.name in skip:
            continue
        meta = field.metadata
        name, help_text = flag_name(field), meta["help"]
        allowed = choices.get(field.name, meta["choices"])
        if meta["parse"] is not None:
            default = defaults.get(field.name, meta["flag_default"])
            flags.DEFINE_string(name, default, help_text, **kwargs)
            continue
        default = defaults.get(field.name, _default(field))
        if default is dataclasses.MISSING:
            raise TypeError(f"define_flags needs a default for {name}.")
        if meta["path"]:
            flags.DEFINE(
                PathParser(),
                name,
                default,
                help_text,
                serializer=flags.ArgumentSerializer(),
                **kwargs,
            )
        elif allowed is not None:
            flags.DEFINE_enum(name, default, list(allowed), help_text, **kwargs)
        else:
            define = {
                bool: flags.DEFINE_bool,
                int: flags.DEFINE_integer,
                float: flags.DEFINE_float,
                str: flags.DEFINE_string,
                list: flags.DEFINE_multi_string,
            }[_value_type(field)]
            # bounds are checked by `check_settings`, with its messages
            define(name, default, help_text, **kwargs)


def _default(field):
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default


def from_flags(cls, flag_values, **values):
    """An instance of `cls` from the parsed flags; `values` give the
    fields that have no flag (or replace a flag's value)."""
    for field in settings(cls):
        name = flag_name(field)
        if field.name in values or name not in flag_values:
            continue
        value = flag_values[name].value
        parse = field.metadata["parse"]
        values[field.name] = value if parse is None else parse(value)
    return cls(**values)


def check_settings(instance):
    """Raises `ValueError` naming the flag, the value and what is allowed,
    for any setting of `instance` outside its type, choices or bound.
    `None` means "not given" and passes."""
    for field in settings(instance):
        value = getattr(instance, field.name)
        if value is None or field.metadata["parse"] is not None:
            continue
        name, meta = flag_name(field), field.metadata
        kind = _value_type(field)
        if kind in (int, float) and (
            isinstance(value, bool) or not isinstance(value, (int, float))
        ):
            raise ValueError(f"--{name} must be a number, got {value!r}.")
        if kind is int and not isinstance(value, int):
            raise ValueError(f"--{name} must be an integer, got {value!r}.")
        if meta["choices"] is not None and value not in meta["choices"]:
            raise ValueError(
                f"Unknown --{name}={value!r}; valid: "
                f"{', '.join(meta['choices'])}."
            )
        low, high = meta["minimum"], meta["maximum"]
        if (low is not None and value < low) or (
            high is not None and value > high
        ):
            raise ValueError(
                f"--{name} must be {_range(kind, low, high)}, got {value!r}."
            )


def _range(kind, low, high):
    """`"a positive integer"`, `"an integer >= 0"`, `"from 0 to 3"`."""
    if high is not None:
        return f"from {low} to {high}"
    if kind is int:
        return "a positive integer" if low == 1 else f"an integer >= {low}"
    return f">= {low}"


@dataclasses.dataclass
class TaskOptions:
    """A binary's own options (sequence lengths, example counts, ...): a
    dataclass of settings, subclassed by each binary. The config holds it
    as `task_args`, checked and completed for its task by `for_task`."""

    def __post_init__(self):
        check_settings(self)

    def for_task(self, task):
        """These options for `task`, checked against it, with the defaults
        that depend on the task filled in (a new instance)."""
        del task
        return self


@dataclasses.dataclass
class TokenizerOptions(TaskOptions):
    """The options of the binaries over text: which tokenizer, and where
    its files are."""

    tokenizer: str = setting(
        "bytes",
        "bytes: UTF-8 bytes, no files; gpt2: GPT-2's byte-level BPE (or "
        "GPT-NeoX's) from --tokenizer_dir; wordpiece: BERT's vocab.txt from "
        "--tokenizer_dir (classification only).",
        choices=catalogue.TOKENIZERS,
    )
    tokenizer_dir: str | None = setting(
        None,
        "--tokenizer=gpt2: directory with vocab.json + merges.txt, "
        "encoder.json + vocab.bpe, or a byte-level BPE tokenizer.json "
        "(GPT-NeoX's); --tokenizer=wordpiece: with vocab.txt.",
        path=True,
    )

    def make_tokenizer(self):
        """The tokenizer these options name (`tokenizers.make_tokenizer`)."""
        from kerasseq.data import tokenizers

        return tokenizers.make_tokenizer(self.tokenizer, self.tokenizer_dir)


@dataclasses.dataclass
class ExampleLimits(TaskOptions):
    """How many of a dataset's examples a run uses (all by default)."""

    num_train_examples: int | None = setting(
        None, "Use the first N training examples.", minimum=1
    )
    num_eval_examples: int | None = setting(
        None, "Use the first N examples of each eval split.", minimum=1
    )

    def limit(self, split):
        """The examples of `split` to use (`None`: all)."""
        if split == "train":
            return self.num_train_examples
        return self.num_eval_examples
