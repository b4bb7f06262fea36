"""tf.data pipelines, one module per task family; each module is loaded
the first time it is used (`kerasseq.data.synthetic.make_dataset(...)`)."""

import importlib

_MODULES = (
    "batching",
    "download",
    "errors",
    "glue",
    "glue_sources",
    "gpt2_tokenizer",
    "listops",
    "lra",
    "pathfinder",
    "pathfinder_drawing",
    "pixels",
    "sources",
    "squad",
    "squad_sources",
    "synthetic",
    "synthetic_tasks",
    "textcls",
    "tokenizer_base",
    "tokenizers",
    "wikitext",
)


def __getattr__(name):
    if name in _MODULES:
        return importlib.import_module(f"kerasseq.data.{name}")
    raise AttributeError(f"module 'kerasseq.data' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_MODULES))
