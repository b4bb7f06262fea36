"""ListOps: nested list operations over digits (Long Range Arena).

An example is an expression such as `[MAX 2 9 [MIN 4 7 ] 0 ]` and its
value, a digit 0-9 (10 classes). The operators are

    [MIN  minimum of the arguments
    [MAX  maximum
    [MED  median, rounded down (the mean of the middle two, truncated)
    [SM   sum modulo 10

and `]` closes the innermost list.

The generator follows LRA's rules: from the root down, a node is a leaf (a
uniform digit) with probability 0.75 and a list otherwise; a node at
`max_depth` is always a leaf. A list draws its operator uniformly and
`randint(2, max_args)` children (both bounds included). An expression's
length counts one per digit and two per list (operator and `]`); only
expressions with `min_length <= length <= max_length` are kept (LRA keeps
the strictly-between ones; inclusive bounds here make every kept example fit
in `max_length` tokens), and each expression occurs once across all splits.

Files use the format of LRA's release (`listops-1000/basic_*.tsv`): a
header line `Source<TAB>Target`, then one expression per line, written with
the parentheses of LRA's binary tree form (`( ( [MAX 2 ) 9 ) ] )` for
`[MAX 2 9 ]`), and its value. Parentheses carry no information and are
dropped when tokenizing, as LRA's input pipeline does.

Two tokenizations share one id table (0 padding, digits 1-10, `[MIN`,
`[MAX`, `[MED`, `[SM` 11-14, `]` 15; 16 ids either way):

    lra       LRA's pipeline as it made the paper's published table: TFDS's
              alphanumeric `Tokenizer` splits on every non-word character,
              so `[MAX` becomes `MAX` and `]` is dropped: `[MAX 2 [MIN 3
              4 ] 5 ]` and `[MAX 2 [MIN 3 4 5 ] ]` are one sequence.
              The ids are those its `TokenTextEncoder` gives with the 14
              tokens in the order above (LRA took the order from a Python
              set); 15 is that encoder's out-of-vocabulary id.
    brackets  `]` kept, as LRA's pipeline does since March 2021 (it renames
              `]` to `X` before tokenizing) and S4's ListOps loader does.

Either way an expression is cut at `max_length` tokens after the
tokenization, as LRA cuts its encoded ids.
"""

import os

import numpy as np

from kerasseq import catalogue
from kerasseq.data.errors import DataFormatError
from kerasseq.data.errors import DataNotFoundError
from kerasseq.data.sources import find_file
from kerasseq.data.sources import progress_bar
from kerasseq.ops.checks import check_choice
from kerasseq.ops.checks import check_int

OPERATORS = ("[MIN", "[MAX", "[MED", "[SM")
CLOSE = "]"
DIGITS = tuple(str(d) for d in range(10))
# token id 0 is padding
VOCABULARY = ("<pad>",) + DIGITS + OPERATORS + (CLOSE,)
TOKEN_IDS = {token: i for i, token in enumerate(VOCABULARY)}
NUM_CLASSES = 10
LEAF_PROBABILITY = 0.75
TOKENIZATIONS = catalogue.LISTOPS_TOKENS
# the published results each tokenization reproduces the input of
PUBLISHED_WITH = {
    "lra": "LRA's published table (Tay et al., 2021, Table 1; its README's "
    "leaderboard): LRA's pipeline until March 2021, which drops ']'",
    "brackets": "LRA's pipeline since March 2021 (']' renamed 'X' and "
    "kept) and S4's ListOps loader (Gu et al., 2022)",
}

SPLIT_FILES = {
    "train": "basic_train.tsv",
    "val": "basic_val.tsv",
    "test": "basic_test.tsv",
}
HEADER = "Source\tTarget"


def apply(operator, values):
    """The value of one list: `operator` (e.g. `"[MAX"`) over digits."""
    if operator == "[MIN":
        return min(values)
    if operator == "[MAX":
        return max(values)
    if operator == "[MED":
        return int(np.median(values))
    if operator == "[SM":
        return sum(values) % 10
    raise ValueError(
        f"Unknown ListOps operator {operator!r}, expected one of "
        f"{list(OPERATORS)}."
    )


def _random_tree(rng, depth, max_depth, max_args):
    """Draws one expression: returns `(tree, length)`, where a tree is a
    digit or `(operator, [children])`."""
    if depth < max_depth and rng.random() >= LEAF_PROBABILITY:
        operator = OPERATORS[rng.integers(len(OPERATORS))]
        children, length = [], 2
        for _ in range(rng.integers(2, max_args + 1)):
            child, child_length = _random_tree(
                rng, depth + 1, max_depth, max_args
            )
            children.append(child)
            length += child_length
        return (operator, children), length
    return int(rng.integers(10)), 1


def _value(tree):
    if isinstance(tree, int):
        return tree
    operator, children = tree
    return apply(operator, [_value(child) for child in children])


def _source(tree):
    """LRA's string form: each list is a left-nested binary tree,
    `( ( ( op a ) b ) ] )`."""
    if isinstance(tree, int):
        return str(tree)
    operator, children = tree
    text = f"( {operator} {_source(children[0])} )"
    for child in children[1:]:
        text = f"( {text} {_source(child)} )"
    return f"( {text} {CLOSE} )"


def check_settings(max_depth, max_args, min_length, max_length):
    """Raises `ValueError` for generator settings that give no data."""
    for name, value, minimum in (
        ("max_depth", max_depth, 1),
        ("max_args", max_args, 2),
        ("min_length", min_length, 1),
        ("max_length", max_length, 1),
    ):
        check_int(name, value, minimum)
    if min_length > max_length:
        raise ValueError(
            f"min_length={min_length} is above max_length={max_length}."
        )
    if min_length > 1 and max_depth == 1:
        raise ValueError(
            f"max_depth=1 only gives single digits (length 1), but "
            f"min_length={min_length}."
        )


def generate(
    sizes,
    seed,
    max_depth=10,
    max_args=10,
    min_length=500,
    max_length=2000,
    progress=False,
):
    """Draws disjoint splits of ListOps expressions.

    Args:
        sizes: dict split name -> number of examples, e.g.
            `{"train": 96000, "val": 2000, "test": 2000}` (LRA's sizes).
        seed: int; equal arguments give equal data on every machine.
        max_depth: lists nest at most this deep (the root is depth 1).
        max_args: most children of one list (at least 2).
        min_length, max_length: bounds on the expression length (digits,
            operators and `]`), both included.
        progress: show a progress bar on stderr.

    Returns:
        dict split name -> list of `(source, value)` pairs, `source` in
        LRA's parenthesised form.
    """
    check_settings(max_depth, max_args, min_length, max_length)
    for split, size in sizes.items():
        check_int(f"sizes[{split!r}]", size, 0)
    rng = np.random.default_rng(seed)
    total = sum(sizes.values())
    seen, examples = set(), []
    draws, max_draws = 0, 1000 * total + 100_000
    bar = progress_bar(total, "listops", progress)
    while len(examples) < total:
        draws += 1
        if draws > max_draws:
            raise ValueError(
                f"Found only {len(examples)} of {total} distinct ListOps "
                f"expressions in {max_draws} draws with max_depth="
                f"{max_depth}, max_args={max_args}, lengths {min_length}.."
                f"{max_length}; widen the bounds or ask for fewer."
            )
        tree, length = _random_tree(rng, 1, max_depth, max_args)
        if not min_length <= length <= max_length:
            continue
        source = _source(tree)
        if source in seen:
            continue
        seen.add(source)
        examples.append((source, _value(tree)))
        bar.update()
    bar.close()
    splits, start = {}, 0
    for split, size in sizes.items():
        splits[split] = examples[start : start + size]
        start += size
    return splits


def tokens(source):
    """The tokens of an expression, parentheses dropped."""
    return [t for t in source.split() if t not in ("(", ")")]


def write_tsv(path, examples):
    """Writes `(source, value)` pairs in LRA's TSV format."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(HEADER + "\n")
        for source, value in examples:
            f.write(f"{source}\t{value}\n")
    os.replace(tmp, path)


def read_tsv(path):
    """Reads one of LRA's ListOps TSV files.

    Returns:
        `(sources, labels)`: a list of token lists (parentheses dropped)
        and an int64 array of values.

    Raises:
        DataFormatError: naming the file and line of the first malformed
            row (wrong header, field count, value or token).
    """
    sources, labels = [], []
    with open(path) as f:
        header = f.readline().rstrip("\n")
        if header != HEADER:
            raise DataFormatError(
                f"{path}:1: expected the header {HEADER!r}, got {header!r}."
            )
        for number, line in enumerate(f, start=2):
            line = line.rstrip("\n")
            if not line.strip():
                continue
            fields = line.split("\t")
            if len(fields) != 2:
                raise DataFormatError(
                    f"{path}:{number}: expected 2 tab-separated fields "
                    f"(Source, Target), got {len(fields)}: {line[:80]!r}."
                )
            source, target = fields
            if target.strip() not in DIGITS:
                raise DataFormatError(
                    f"{path}:{number}: expected a Target digit 0-9, got "
                    f"{target!r}."
                )
            row = tokens(source)
            unknown = sorted(set(row) - set(TOKEN_IDS))
            if unknown:
                raise DataFormatError(
                    f"{path}:{number}: unknown token(s) {unknown[:5]}; "
                    f"ListOps tokens are {list(VOCABULARY[1:])} and "
                    "parentheses."
                )
            sources.append(row)
            labels.append(int(target))
    return sources, np.asarray(labels, np.int64)


def split_path(data_dir, split):
    """Where a split's TSV is: `data_dir/basic_<split>.tsv`, or below
    `data_dir/listops-1000/` as in LRA's release; `None` if absent."""
    return find_file(data_dir, SPLIT_FILES[split], ("listops-1000",))


def missing_message(data_dir):
    names = ", ".join(SPLIT_FILES.values())
    place = f"in --data_dir={data_dir!r}" if data_dir else "(no --data_dir)"
    return (
        f"No ListOps data {place}: expected {names} in --data_dir or in "
        "listops-1000/ below it (LRA's release), or pass "
        "--generate to draw them with the built-in generator (without "
        "--data_dir they are drawn into WORKDIR/listops/data)."
    )


def load(data_dir, split):
    """Token lists and values of one split from `data_dir`."""
    if split not in SPLIT_FILES:
        raise ValueError(
            f"Unknown ListOps split {split!r}, expected one of "
            f"{list(SPLIT_FILES)}."
        )
    path = split_path(data_dir, split) if data_dir else None
    if path is None:
        raise DataNotFoundError(missing_message(data_dir))
    return read_tsv(path)


def encode(sources, max_length, tokenization="lra"):
    """Token lists (as `tokens` gives them) -> `(token_ids, padding_mask)`,
    `(N, max_length)` arrays.

    Args:
        sources: list of token lists.
        max_length: columns; longer expressions are cut, after the
            tokenization (as LRA's pipeline cuts its ids).
        tokenization: `"lra"` (drops `]`, as LRA's published results) or
            `"brackets"` (keeps it); see the module's docstring.
    """
    check_choice("tokenization", tokenization, TOKENIZATIONS)
    dropped = (CLOSE,) if tokenization == "lra" else ()
    ids = np.zeros((len(sources), max_length), np.int32)
    for row, source in enumerate(sources):
        kept = [t for t in source if t not in dropped][:max_length]
        values = [TOKEN_IDS[t] for t in kept]
        ids[row, : len(values)] = values
    return ids, ids != 0
