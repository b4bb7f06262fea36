"""The tasks of the zero-shot evaluation, as lm-evaluation-harness (0.4.13)
defines them: the multiple-choice GLUE tasks (prompt and choices), the
SQuAD tasks scored by generation, and WikiText scored by rolling
log-likelihood. `experiments.common.zero_shot` scores them.
"""

import dataclasses
from collections.abc import Callable


@dataclasses.dataclass(frozen=True)
class ChoiceTask:
    """A multiple-choice task of lm-eval over a GLUE task's documents.

    Attributes:
        name: lm-eval's task name.
        glue_task: the `kerasseq.data.glue` task its documents come from.
        split: the evaluated split (the few-shot examples come from
            `"train"`).
        prompt: document -> the text before the answer.
        choices: the answers, indexed by label.
        metrics: lm-eval's metrics of the task (`acc`, `f1`, `mcc`).
    """

    name: str
    glue_task: str
    split: str
    prompt: Callable[[dict], str]
    choices: tuple
    metrics: tuple = ("acc",)

    kind = "multiple_choice"


def _mnli_prompt(doc):
    hypothesis = doc["hypothesis"].strip()
    if not hypothesis.endswith("."):
        hypothesis += "."
    return (
        f"{doc['premise']}\nQuestion: {hypothesis} True, False or "
        "Neither?\nAnswer:"
    )


def _entailment_prompt(doc):
    return (
        f"{doc['sentence1']}\nQuestion: {doc['sentence2']} True or "
        "False?\nAnswer:"
    )


# lm-eval's GLUE tasks (lm_eval/tasks/glue/<task>/default.yaml)
CHOICE_TASKS = {
    task.name: task
    for task in (
        ChoiceTask(
            "cola",
            "cola",
            "validation",
            lambda d: (
                f"{d['sentence']}\nQuestion: Does this sentence make "
                "sense?\nAnswer:"
            ),
            ("no", "yes"),
            ("mcc",),
        ),
        ChoiceTask(
            "sst2",
            "sst2",
            "validation",
            lambda d: (
                f"{d['sentence']}\nQuestion: Is this sentence positive "
                "or negative?\nAnswer:"
            ),
            ("negative", "positive"),
        ),
        ChoiceTask(
            "mrpc",
            "mrpc",
            "validation",
            lambda d: (
                f"Sentence 1: {d['sentence1']}\nSentence 2: "
                f"{d['sentence2']}\nQuestion: Do both sentences mean the same "
                "thing?\nAnswer:"
            ),
            ("no", "yes"),
            ("acc", "f1"),
        ),
        ChoiceTask(
            "qqp",
            "qqp",
            "validation",
            lambda d: (
                f"Question 1: {d['question1']}\nQuestion 2: "
                f"{d['question2']}\nQuestion: Do both questions ask the same "
                "thing?\nAnswer:"
            ),
            ("no", "yes"),
            ("acc", "f1"),
        ),
        ChoiceTask(
            "mnli",
            "mnli",
            "validation_matched",
            _mnli_prompt,
            ("True", "Neither", "False"),
        ),
        ChoiceTask(
            "mnli_mismatch",
            "mnli",
            "validation_mismatched",
            _mnli_prompt,
            ("True", "Neither", "False"),
        ),
        ChoiceTask(
            "qnli",
            "qnli",
            "validation",
            lambda d: (
                f"{d['question']}\n{d['sentence']}\nQuestion: Does this "
                "response answer the question?\nAnswer:"
            ),
            ("yes", "no"),
        ),
        ChoiceTask(
            "rte", "rte", "validation", _entailment_prompt, ("True", "False")
        ),
        ChoiceTask(
            "wnli", "wnli", "validation", _entailment_prompt, ("False", "True")
        ),
    )
}


@dataclasses.dataclass(frozen=True)
class GenerationTask:
    """A SQuAD task scored by greedy generation: lm-eval's `squadv2`
    prompt, the answer generated up to the first newline, scored by the
    official script of `version`.

    Attributes:
        name: the task's name in `--task`.
        version: the SQuAD version of the documents and of the scoring
            rules (`"1.1"` or `"2.0"`).
        metric_names: `squad_metrics.squad_scores`'s names (and
            `squad_metrics.squad_best_scores`') -> the task's.
        no_answer: whether each document also scores the continuation
            `" unanswerable"` after its prompt, as lm-eval's squadv2 does,
            whose probability gives the best scores over no-answer
            thresholds.
        note: what results.json says of the task where it departs from
            lm-eval, or `None`.
    """

    name: str
    version: str
    metric_names: dict
    no_answer: bool = False
    note: str | None = None

    kind = "generate_until"


# `squad_metrics.squad_scores`'s names -> lm-eval's (the HF `squad_v2`
# metric's)
_SQUAD_METRIC_NAMES = {
    "exact_match": "exact",
    "f1": "f1",
    "has_answer_exact_match": "HasAns_exact",
    "has_answer_f1": "HasAns_f1",
    "no_answer_exact_match": "NoAns_exact",
    "no_answer_f1": "NoAns_f1",
    "best_exact_match": "best_exact",
    "best_f1": "best_f1",
}
# what lm-eval's squadv2 scores as the no-answer continuation
NO_ANSWER = "unanswerable"

GENERATION_TASKS = {
    task.name: task
    for task in (
        # lm-eval's squadv2 (lm_eval/tasks/squadv2/task.py)
        GenerationTask("squadv2", "2.0", _SQUAD_METRIC_NAMES, no_answer=True),
        # SQuAD v1.1: lm-eval 0.4.13 has no such task (its squad_completion
        # is a cloze variant); squadv2's prompt and generation, the
        # official v1.1 script's exact match and F1
        GenerationTask(
            "squad",
            "1.1",
            {"exact_match": "exact_match", "f1": "f1"},
            note=(
                "lm-eval 0.4.13 has no SQuAD 1.1 task: the prompt, few-shot "
                "examples and greedy generation of its squadv2, scored by "
                "the official SQuAD 1.1 script's exact match and F1"
            ),
        ),
    )
}
ROLLING_TASKS = ("wikitext",)
TASKS = tuple(CHOICE_TASKS) + ROLLING_TASKS + tuple(GENERATION_TASKS)
