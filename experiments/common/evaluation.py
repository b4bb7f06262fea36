"""What `experiments.evaluate` does: loads each model, reads each task's
documents, scores them at each shot count (`zero_shot`), and writes the
results, the samples and the comparison table."""

import json
import os

import keras

from experiments.common import console
from experiments.common import lm_scorer
from experiments.common import results as results_lib
from experiments.common import standard_errors
from experiments.common import zero_shot
from experiments.common import zero_shot_tasks
from kerasseq.data import glue
from kerasseq.data import squad
from kerasseq.data import tokenizers
from kerasseq.data import wikitext
from kerasseq.data.errors import DataFormatError
from kerasseq.data.errors import DataNotFoundError
from kerasseq.models import CausalLM
from kerasseq.pretrained import CheckpointError
from kerasseq.pretrained import from_hf
from kerasseq.pretrained.hf import resolve


class UsageError(ValueError):
    """Something the user can fix: a model, a tokenizer, the data."""


def run(settings):
    """Evaluates every model of `settings` (an `EvaluateOptions`) on every
    task and shot count; returns `{model: results}`."""
    from experiments.common.config import check_workdir_writable

    try:
        check_workdir_writable(settings.workdir)
    except ValueError as error:
        raise UsageError(str(error)) from error
    base = os.path.join(settings.workdir, "evaluate")
    everything, rows = {}, []
    documents = {}  # task -> (docs, train docs), read once for all models
    for source in settings.init_from:
        name = model_label(source)
        model, tokenizer = load_model(source, settings.tokenizer_dir)
        max_length = settings.max_length or default_max_length(model)
        scorer = lm_scorer.Scorer(model, max_length, settings.batch_size)
        run_dir = os.path.join(base, name)
        console.say(settings, f"{name}: evaluating in {run_dir}")
        results = {
            "model": name,
            "source": source,
            "max_length": max_length,
            "convention": "lm-evaluation-harness 0.4.13",
            "limit": settings.limit,
            "tasks": {},
            "provenance": results_lib.provenance(),
        }
        for task in settings.task:
            if task not in documents:
                documents[task] = read_documents(task, settings)
            docs, train_docs = documents[task]
            # WikiText is scored by rolling log-likelihood: no examples
            shots = (0,) if task == "wikitext" else settings.num_fewshot
            for k in shots:
                console.say(settings, f"{name}: {task}, {k}-shot")
                metrics, samples = score(
                    task, k, scorer, tokenizer, docs, train_docs, settings
                )
                metrics["documents"] = len(docs)
                results["tasks"].setdefault(task, {})[f"{k}-shot"] = metrics
                _write_samples(
                    os.path.join(run_dir, f"{k}shot", f"samples_{task}.jsonl"),
                    samples,
                )
                rows += _rows(name, task, k, metrics)
        _write_json(os.path.join(run_dir, "results.json"), results)
        everything[name] = results
    table = os.path.join(base, "comparison")
    results_lib.write_and_print_table(rows, table)
    console.say(settings, f"results in {base}; table in {table}.md")
    return everything


def score(task, k, scorer, tokenizer, docs, train_docs, settings):
    """One task at `k` shots: `(metrics, samples)`."""
    end_id = tokenizer.end_id
    try:
        if task in zero_shot_tasks.CHOICE_TASKS:
            return zero_shot.score_choices(
                zero_shot_tasks.CHOICE_TASKS[task],
                scorer,
                tokenizer,
                docs,
                train_docs,
                k,
                end_id,
                bootstrap_iters=settings.bootstrap_iters,
            )
        if task == "wikitext":
            return zero_shot.score_rolling(
                scorer, tokenizer, [d["page"] for d in docs], end_id
            )
        return zero_shot.score_generation(
            scorer,
            tokenizer,
            docs,
            train_docs,
            k,
            end_id,
            settings.max_gen_toks,
            task=task,
        )
    except ValueError as error:
        raise UsageError(f"{task}: {error}") from error


def _rows(name, task, k, metrics):
    """The table's rows of one task at `k` shots, one per metric as
    lm-eval prints them: its value and standard error (`±`: lm-eval's, or
    N/A)."""
    rows = []
    for key, value in metrics.items():
        if isinstance(value, float) and not key.endswith("_stderr"):
            stderr = metrics.get(f"{key}_stderr", standard_errors.NOT_AVAILABLE)
            rows.append(
                {
                    "model": name,
                    "task": task,
                    "shots": k,
                    "metric": key,
                    "value": round(value, 4),
                    "±": (
                        round(stderr, 4)
                        if isinstance(stderr, float)
                        else stderr
                    ),
                }
            )
    return rows


# === Models ===


def model_label(source):
    """A model's name in results: its directory's or file's name (a run's
    `model.keras` by its run directory), or the hub id with `/` as `--`."""
    path = source.rstrip("/")
    if path.endswith(".keras"):
        path = os.path.dirname(path) or path
    if os.path.exists(path):
        return os.path.basename(os.path.abspath(path))
    return path.replace("/", "--")


def load_model(source, tokenizer_dir=None):
    """The `CausalLM` of `source` and its tokenizer.

    A checkpoint's tokenizer is its byte-level BPE: `vocab.json` +
    `merges.txt` (GPT-2) or, where those are absent, `tokenizer.json`
    (GPT-NeoX's: Pythia, Mamba), from `tokenizer_dir` if given, else from
    the checkpoint's directory (a hub id's downloaded snapshot).

    Raises:
        UsageError: no such model, not a causal LM, or no tokenizer.
    """
    keras_file = source
    if os.path.isdir(source):
        keras_file = os.path.join(source, "model.keras")
    try:
        if keras_file.endswith(".keras") and os.path.exists(keras_file):
            model = keras.saving.load_model(keras_file)
            run_dir = os.path.dirname(keras_file)
            tokenizer = _run_tokenizer(run_dir, tokenizer_dir)
        else:
            model = from_hf(source, task="causal_lm")
            directory = tokenizer_dir or resolve(source)
            try:
                tokenizer = tokenizers.make_tokenizer("gpt2", directory)
            except DataNotFoundError as error:
                hint = "" if tokenizer_dir else "; give --tokenizer_dir"
                raise UsageError(
                    f"--init_from={source!r}: {str(error).rstrip('.')}{hint}."
                ) from error
    except (CheckpointError, DataNotFoundError, DataFormatError) as error:
        raise UsageError(f"--init_from={source!r}: {error}") from error
    if not isinstance(model, CausalLM):
        raise UsageError(
            f"--init_from={source!r} is a {type(model).__name__}, not a "
            "causal language model (CausalLM)."
        )
    return model, tokenizer


def _run_tokenizer(run_dir, tokenizer_dir):
    """The tokenizer a kerasseq run trained with (its config.json's), or
    GPT-2's from `tokenizer_dir`."""
    if tokenizer_dir:
        return tokenizers.make_tokenizer("gpt2", tokenizer_dir)
    path = os.path.join(run_dir, "config.json")
    try:
        with open(path) as f:
            task_args = json.load(f).get("task_args") or {}
    except (OSError, json.JSONDecodeError) as error:
        raise UsageError(
            f"No tokenizer for the model in {run_dir}: its config.json "
            f"cannot be read ({error}); give --tokenizer_dir."
        ) from error
    name = task_args.get("tokenizer")
    if name is None:
        raise UsageError(f"{path} records no tokenizer; give --tokenizer_dir.")
    return tokenizers.make_tokenizer(name, task_args.get("tokenizer_dir"))


def default_max_length(model):
    """lm-eval's context length for a model: its position table's length,
    or 2048 where it has none."""
    backbone = model.backbone
    if backbone.position_embedding is not None:
        return backbone.max_sequence_length
    return lm_scorer.DEFAULT_MAX_LENGTH


# === Documents ===


def read_documents(task, settings):
    """`(docs, train_docs)` of a task, as lm-eval's datasets name their
    fields; `docs` cut to `settings.limit`.

    Raises:
        UsageError: the data is missing or malformed.
    """
    try:
        if task in zero_shot_tasks.CHOICE_TASKS:
            spec = zero_shot_tasks.CHOICE_TASKS[task]
            docs = _glue_docs(spec.glue_task, spec.split, settings)
            train = _glue_docs(spec.glue_task, "train", settings)
        elif task == "wikitext":
            raw = wikitext.read_split(
                settings.data_dir, "test", settings.download
            )
            docs = [{"page": p} for p in zero_shot.wikitext_documents(raw)]
            train = []
        else:
            version = zero_shot_tasks.GENERATION_TASKS[task].version
            docs = _squad_docs(version, "validation", settings)
            train = _squad_docs(version, "train", settings)
    except (DataNotFoundError, DataFormatError) as error:
        raise UsageError(str(error)) from error
    return docs[: settings.limit] if settings.limit else docs, train


def _glue_docs(task, split, settings):
    spec = glue.task_spec(task)
    examples = glue.load_glue(task, split, settings.data_dir, settings.download)
    columns = [examples.texts_a] + (
        [examples.texts_b] if examples.texts_b is not None else []
    )
    return [
        {
            **dict(zip(spec.tfds_features, texts, strict=True)),
            "label": int(label),
            "idx": i,
        }
        for i, (*texts, label) in enumerate(
            zip(*columns, examples.labels, strict=True)
        )
    ]


def _squad_docs(version, split, settings):
    examples, _ = squad.load_squad(
        version, split, settings.data_dir, settings.download
    )
    return [
        {
            "id": e.id,
            "title": e.title,
            "context": e.context,
            "question": e.question,
            "answers": {"text": list(e.answers)},
        }
        for e in examples
    ]


# === Files ===


def _write_json(path, value):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(value, f, indent=2, sort_keys=True)
    os.replace(tmp, path)


def _write_samples(path, samples):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for sample in samples:
            f.write(json.dumps(sample, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
