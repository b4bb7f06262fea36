"""The names kerasseq offers, as plain data: models, presets, tasks,
tokenizers, download modes.

This module imports nothing, so that a program can list what kerasseq
offers (e.g. a binary's `--help`) without loading Keras and TensorFlow,
which `import kerasseq` does (about 6 s). `experiments.common.options`
reads it from its file for that reason. Each name is defined here once:
the registry (`kerasseq.models.registry`) and the data modules
(`kerasseq.data.*`) take their lists from here, and the registry checks at
import that it builds exactly the models named here.
"""

# the built-in models of `kerasseq.models.MODELS`, in the registry's order
MODEL_NAMES = (
    "gpt",
    "transformer",
    "lstm",
    "mamba",
    "linear_attention",
    "bidirectional_linear_attention",
    "qlstm",
    "linear_rnn",
    "diag_rnn",
    "lru",
    "deltanet",
    "deltanet_negeig",
    "linformer",
    "bigbird",
    "longformer",
    "longformer_causal",
    "performer",
    "performer_causal",
    "gpt2",
    "distilgpt2",
    "recurrent_gpt2",
    "pythia",
)

# model sizes; a model's own arguments (heads, state size) follow the preset
PRESETS = {
    "tiny": {"hidden_dim": 64, "num_layers": 2},
    "small": {"hidden_dim": 128, "num_layers": 4},
    "base": {"hidden_dim": 512, "num_layers": 8},
}

# what `--download` may say: `auto` fetches what is missing, `never` reads
# only what is on this machine
DOWNLOAD_MODES = ("auto", "never")

TOKENIZERS = ("bytes", "gpt2", "wordpiece")

# the tasks of each data family
GLUE_TASKS = (
    "cola",
    "sst2",
    "mrpc",
    "stsb",
    "qqp",
    "mnli",
    "qnli",
    "rte",
    "wnli",
)
LRA_TASKS = ("listops", "text", "retrieval", "image", "pathfinder")
PIXEL_TASKS = ("smnist", "psmnist", "scifar")
SYNTHETIC_TASKS = ("bit_parity", "controlled_bit_parity", "dyck", "mqar")
SQUAD_VERSIONS = ("1.1", "2.0")
# how ListOps expressions become tokens: `lra` drops "]" as the tokenizer
# of LRA's published results did, `brackets` keeps it
LISTOPS_TOKENS = ("lra", "brackets")
# the difficulties of LRA's Pathfinder-32 release
PATHFINDER_DIFFICULTIES = (
    "curv_baseline",
    "curv_contour_length_9",
    "curv_contour_length_14",
)
