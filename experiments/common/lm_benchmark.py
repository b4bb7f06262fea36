r"""`python -m experiments.benchmark lm`: a language model's inference speed
in kerasseq against transformers on the same CPU, with the same weights.

    python -m experiments.benchmark lm --models=gpt2,mamba \
        --data_dir=glue_data --tokenizer_dir=.venv/share/gpt2 \
        --peer_python=/path/to/a/venv/with/torch/bin/python

For each model (`gpt2`, `mamba`, `pythia`) at the size of its smallest
released checkpoint (`--lm_size=released`: GPT-2 124M, mamba-130m,
pythia-160m; `tiny` for tests), it measures:

- **scoring**: documents/s of 0-shot SST-2 as `experiments.evaluate`
  scores it (lm-eval's prompt, both choices of every document of the
  validation split, `--score_batch_size` requests per forward pass); both
  frameworks score the same token ids (the prompts are tokenized once, by
  kerasseq), so tokenization is not timed;
- **generation**: greedy decoding of `--new_tokens` tokens after a prompt
  of each of `--prompt_len` lengths (32 and 1,024 tokens), for each of
  `--generate_batch` batch sizes (1 and 8), on fixed random ids: the time
  to the first token (the prompts' prefill), the decode rate of the tokens
  after it and tokens/s overall (both counting every sequence of the
  batch), and the bytes of the decoding state the model carries per
  sequence after the last token (kerasseq: its key/value caches, allocated
  at a bucket length, or its recurrent states; transformers: its cache
  object, which grows by the token).

Each number is the median of `--lm_repeats` calls after a first one, whose
time (XLA's compile for kerasseq) is reported apart. The peer runs under
`--peer_python` (PyTorch and transformers are no dependency of kerasseq):
its script `experiments/peers/transformers_lm.py` first writes a seeded
random checkpoint that both sides load, so that the same model is timed
and the answers can be compared: the largest difference of a request's
log-likelihood, and how many greedy tokens agree. Without the peer,
kerasseq builds the model from the same configuration and measures alone.
Each measurement runs in its own subprocess.
"""

import json
import os
import sys
import time

from absl import app
from absl import flags

from experiments import peers
from experiments.common import lm_tables
from experiments.common.parsing import parse_lengths

FLAGS = flags.FLAGS

flags.DEFINE_string(
    "lm_size",
    "released",
    "lm: `released` (each model's smallest released "
    "checkpoint's size) or `tiny` (for tests).",
)
flags.DEFINE_string(
    "data_dir",
    None,
    "lm: GLUE's release folders (SST-2/dev.tsv); without "
    "it TensorFlow Datasets' copy (downloaded the first time).",
)
flags.DEFINE_string(
    "tokenizer_dir",
    None,
    "lm: GPT-2's BPE files (vocab.json + merges.txt "
    "or encoder.json + vocab.bpe), e.g. .venv/share/gpt2.",
)
flags.DEFINE_string(
    "peer_python",
    sys.executable,
    "lm, accelerator: a Python with torch (lm: and transformers; "
    "accelerator: and fla, mamba-ssm) for the peers; each missing peer "
    "is skipped with a line.",
)
flags.DEFINE_integer("documents", 0, "lm: SST-2 documents scored (0: all).")
flags.DEFINE_integer("score_batch_size", 8, "lm: requests per forward pass.")
flags.DEFINE_string(
    "prompt_len",
    "32,1024",
    "lm: comma list of prompt lengths (tokens before decoding).",
)
flags.DEFINE_string(
    "generate_batch",
    "1,8",
    "lm: comma list of batch sizes (prompts decoded together).",
)
flags.DEFINE_integer("new_tokens", 32, "lm: tokens generated per prompt.")
flags.DEFINE_integer("lm_repeats", 3, "lm: timed calls per measurement.")

LM_MODELS = ("gpt2", "mamba", "pythia")
PEER_SCRIPT = os.path.join(
    os.path.dirname(os.path.dirname(__file__)), "peers", "transformers_lm.py"
)
# Hugging Face configurations: the smallest released checkpoints' sizes
# (gpt2, state-spaces/mamba-130m-hf, EleutherAI/pythia-160m) with a 2,048
# position table for GPT-2, so that it reads a 1,024-token prompt and
# continues it; `tiny` for tests. The vocabulary is GPT-2's (the prompts are
# tokenized with it; the released Mamba and Pythia tables are a little
# larger).
VOCABULARY = 50257
SIZES = {
    "released": {
        "gpt2": {"n_layer": 12, "n_embd": 768, "n_head": 12},
        "mamba": {"num_hidden_layers": 24, "hidden_size": 768},
        "pythia": {
            "num_hidden_layers": 12,
            "hidden_size": 768,
            "num_attention_heads": 12,
            "intermediate_size": 3072,
        },
    },
    "tiny": {
        "gpt2": {"n_layer": 2, "n_embd": 64, "n_head": 4},
        "mamba": {"num_hidden_layers": 2, "hidden_size": 64},
        "pythia": {
            "num_hidden_layers": 2,
            "hidden_size": 64,
            "num_attention_heads": 4,
            "intermediate_size": 256,
        },
    },
}


def hf_config(name, size):
    """The Hugging Face `config.json` of `name` at `size`."""
    sizes = SIZES[size][name]
    if name == "gpt2":
        return {
            "model_type": "gpt2",
            "vocab_size": VOCABULARY,
            "n_positions": 2048,
            **sizes,
        }
    if name == "mamba":
        return {
            "model_type": "mamba",
            "vocab_size": VOCABULARY,
            "state_size": 16,
            "expand": 2,
            "conv_kernel": 4,
            **sizes,
        }
    return {
        "model_type": "gpt_neox",
        "vocab_size": VOCABULARY,
        "max_position_embeddings": 2048,
        "rotary_pct": 0.25,
        "use_parallel_residual": True,
        "tie_word_embeddings": False,
        **sizes,
    }


def _checkpoint_dir(name):
    return os.path.join(
        os.path.abspath(FLAGS.output_dir),
        "lm_checkpoints",
        f"{name}_{FLAGS.lm_size}",
    )


# === kerasseq's side (in its own subprocess) ===


def _model(name):
    """kerasseq's model: the peer's checkpoint if there is one, else built
    from the same configuration (random weights)."""
    from kerasseq.pretrained import from_hf
    from kerasseq.pretrained.hf import Checkpoint
    from kerasseq.pretrained.hf import build_checked
    from kerasseq.pretrained.hf import converter

    directory = _checkpoint_dir(name)
    if os.path.exists(os.path.join(directory, "config.json")):
        return from_hf(directory, task="causal_lm"), directory
    config = hf_config(name, FLAGS.lm_size)
    checkpoint = Checkpoint("(no checkpoint)", config, {})
    module = converter(config["model_type"])
    arguments = module.model_arguments(checkpoint, "causal_lm")
    architecture = {"gpt2": "gpt2", "mamba": "mamba", "pythia": "pythia"}
    model = build_checked(
        checkpoint, architecture[name], "causal_lm", arguments, {}
    )
    return model, None


def sst2_requests(tokenizer, count):
    """The (context ids, continuation ids) requests of 0-shot SST-2 over
    the first `count` validation documents (all: 0), and how many
    documents they cover."""
    from experiments.common import lm_scorer
    from experiments.common import zero_shot
    from experiments.common import zero_shot_tasks
    from kerasseq.data import glue

    examples = glue.load_glue("sst2", "validation", FLAGS.data_dir)
    task = zero_shot_tasks.CHOICE_TASKS["sst2"]
    sentences = list(examples.texts_a)[: count or None]
    requests = []
    for sentence in sentences:
        context = task.prompt({"sentence": sentence})
        for choice in task.choices:
            requests.append(
                lm_scorer.encode_pair(
                    tokenizer,
                    context,
                    zero_shot.TARGET_DELIMITER + choice,
                    tokenizer.end_id,
                )
            )
    return requests, len(sentences)


def prompt_ids(batch_size, length):
    """Fixed prompts: `(batch_size, length)` random token ids."""
    import numpy as np

    rng = np.random.default_rng(0)
    return rng.integers(0, VOCABULARY, (batch_size, length)).astype("int32")


def generation_settings():
    """The (batch size, prompt length) pairs generation is timed at; a
    usage error for a flag that is not a comma list of positive ints."""
    return [
        (batch, length)
        for batch in parse_lengths(FLAGS.generate_batch, "generate_batch")
        for length in parse_lengths(FLAGS.prompt_len, "prompt_len")
    ]


def _timed(function, *args):
    """`function(*args)`'s result, its first call's time and the median
    of `--lm_repeats` more."""
    import statistics

    start = time.perf_counter()
    result = function(*args)
    first = time.perf_counter() - start
    times = []
    for _ in range(FLAGS.lm_repeats):
        start = time.perf_counter()
        result = function(*args)
        times.append(time.perf_counter() - start)
    return result, first, statistics.median(times)


def measure_kerasseq(name, requests_file):
    """kerasseq's timings of `name` (run in a subprocess of its own)."""
    import keras

    from experiments.common import lm_scorer
    from experiments.common.evaluation import default_max_length
    from kerasseq.models import count_parameters

    model, _ = _model(name)
    with open(requests_file) as f:
        requests = json.load(f)
    scorer = lm_scorer.Scorer(
        model, default_max_length(model), FLAGS.score_batch_size
    )
    scored, score_first, score_s = _timed(scorer.loglikelihoods, requests)
    generation = []
    for batch_size, length in generation_settings():
        prompt = prompt_ids(batch_size, length)
        _, first_generate, one_s = _timed(model.generate, prompt, 1)
        generated, _, all_s = _timed(model.generate, prompt, FLAGS.new_tokens)
        generation.append(
            {
                "batch_size": batch_size,
                "prompt_len": length,
                "first_token_s": one_s,
                "first_generate_s": first_generate,
                "generate_s": all_s,
                "state_bytes": _state_bytes(model, batch_size, length),
                "generated": generated[:, length:].tolist(),
            }
        )
    return {
        "framework": f"kerasseq ({keras.backend.backend()})",
        "parameters": count_parameters(model)["total"],
        "score_first_s": score_first,
        "score_s": score_s,
        "scores": [s for s, _ in scored],
        "generation": generation,
    }


def _state_bytes(model, batch_size, prompt_len):
    """Bytes of the decoding state `generate` carries for `batch_size`
    prompts of `prompt_len` tokens: the key/value caches at the bucket
    length it allocates (`cache_length`), the recurrent mixers' states."""
    import keras
    import numpy as np

    from kerasseq.models.generation import cache_length

    backbone = model.backbone
    total = prompt_len + FLAGS.new_tokens
    states = backbone.get_initial_state(
        batch_size,
        max_length=cache_length(total, backbone.max_sequence_length),
    )
    return sum(
        int(np.prod(x.shape))
        * np.dtype(keras.backend.standardize_dtype(x.dtype)).itemsize
        for x in keras.tree.flatten(states)
    )


# === The peer ===


def _run_peer(command, spec, run_json):
    path = os.path.join(FLAGS.output_dir, f"lm_peer_{command}.json")
    with open(path, "w") as f:
        json.dump(spec, f)
    argv = [FLAGS.peer_python, PEER_SCRIPT, command, f"--spec={path}"]
    return run_json(argv, {"framework": "transformers"})


def main(names, run_json, environment, save):
    """Measures `names` on both sides and saves the table.

    `run_json(argv, labels)`, `environment()` and `save(kind, env, rows,
    table)` are `experiments.benchmark`'s (its subprocess runner, machine
    notes and writer)."""
    if FLAGS._measure:
        name, requests_file = FLAGS._measure.split(":", 1)
        print(json.dumps(measure_kerasseq(name, requests_file)))
        return
    if FLAGS.lm_size not in SIZES:
        raise app.UsageError(
            f"--lm_size={FLAGS.lm_size!r}: allowed: {', '.join(SIZES)}."
        )
    if FLAGS.new_tokens < 2:
        raise app.UsageError(
            f"--new_tokens={FLAGS.new_tokens}: need at least 2 new tokens "
            "(the decode rate is measured after the first)."
        )
    settings = generation_settings()
    from kerasseq.data import tokenizers
    from kerasseq.data.errors import DataFormatError
    from kerasseq.data.errors import DataNotFoundError

    try:
        tokenizer = tokenizers.make_tokenizer("gpt2", FLAGS.tokenizer_dir)
        requests, documents = sst2_requests(tokenizer, FLAGS.documents)
    except (ValueError, DataNotFoundError, DataFormatError) as error:
        raise app.UsageError(str(error)) from error
    os.makedirs(FLAGS.output_dir, exist_ok=True)
    requests_file = os.path.abspath(
        os.path.join(FLAGS.output_dir, "lm_requests.json")
    )
    with open(requests_file, "w") as f:
        json.dump(requests, f)
    missing = peers.missing(FLAGS.peer_python, ("torch", "transformers"))
    if missing:
        print(f"transformers: skipped: {missing}", flush=True)
    rows = []
    for name in names:
        spec = {
            "config": hf_config(name, FLAGS.lm_size),
            "checkpoint": _checkpoint_dir(name),
            "seed": 0,
            "requests_file": requests_file,
            "batch_size": FLAGS.score_batch_size,
            "max_length": 2048,
            "prompts": [
                prompt_ids(batch_size, length).tolist()
                for batch_size, length in settings
            ],
            "new_tokens": FLAGS.new_tokens,
            "repeats": FLAGS.lm_repeats,
        }
        if not missing and not os.path.exists(
            os.path.join(spec["checkpoint"], "config.json")
        ):
            created = _run_peer("create", spec, run_json)
            if "error" in created:
                rows.append({"model": name, **created})
                continue
        argv = [
            sys.executable,
            "-m",
            "experiments.benchmark",
            "lm",
            f"--_measure={name}:{requests_file}",
            f"--output_dir={FLAGS.output_dir}",
            f"--lm_size={FLAGS.lm_size}",
            f"--prompt_len={FLAGS.prompt_len}",
            f"--generate_batch={FLAGS.generate_batch}",
            f"--new_tokens={FLAGS.new_tokens}",
            f"--lm_repeats={FLAGS.lm_repeats}",
            f"--score_batch_size={FLAGS.score_batch_size}",
        ]
        ours = run_json(argv, {"framework": "kerasseq"})
        if "error" in ours:
            rows.append({"model": name, **ours})
        else:
            rows.append(
                lm_tables.summarize(name, ours, documents, FLAGS.new_tokens)
            )
        lm_tables.progress(rows[-1], FLAGS.new_tokens)
        if missing:
            continue
        theirs = _run_peer("measure", spec, run_json)
        if "error" in theirs:
            rows.append({"model": name, **theirs})
        else:
            rows.append(
                lm_tables.summarize(
                    name,
                    theirs,
                    documents,
                    FLAGS.new_tokens,
                    None if "error" in ours else ours,
                )
            )
        lm_tables.progress(rows[-1], FLAGS.new_tokens)
    env = environment()
    env.update(
        lm_size=FLAGS.lm_size,
        sst2_documents=documents,
        score_requests=len(requests),
        prompt_len=list(dict.fromkeys(length for _, length in settings)),
        generate_batch=list(dict.fromkeys(batch for batch, _ in settings)),
        new_tokens=FLAGS.new_tokens,
        peer=missing or "transformers via " + FLAGS.peer_python,
    )
    save("lm", env, rows, lm_tables.table(rows, FLAGS.new_tokens))
