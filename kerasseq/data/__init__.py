"""tf.data pipelines, one module per task family; each module is loaded
the first time it is used (`kerasseq.data.synthetic.make_dataset(...)`)."""

from kerasseq.lazy import lazy_submodules

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

__getattr__, __dir__ = lazy_submodules(__name__, _MODULES)
