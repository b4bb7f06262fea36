"""GPT-2's byte-level BPE (`GPT2Tokenizer`), read from GPT-2's two files or
from a Hugging Face `tokenizer.json` of the same kind (GPT-NeoX's).

`make_tokenizer("gpt2", directory)` in `kerasseq.data.tokenizers` is how
the pipelines make one.
"""

import dataclasses
import json
import os
import unicodedata

from kerasseq.data.errors import DataFormatError
from kerasseq.data.errors import DataNotFoundError
from kerasseq.data.tokenizer_base import Tokenizer

# the two names GPT-2's files go by
GPT2_FILE_NAMES = (
    ("vocab.json", "merges.txt"),
    ("encoder.json", "vocab.bpe"),
)
GPT2_END_OF_TEXT = "<|endoftext|>"
# a Hugging Face tokenizers file, read where GPT-2's two files are absent
TOKENIZER_JSON = "tokenizer.json"


def _byte_alphabet():
    """GPT-2's printable stand-in for each byte: bytes that are printable
    Latin-1 characters stand for themselves; the others (controls, space,
    and a few more) take the characters from U+0100 on, in byte order."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    alphabet, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            alphabet[byte] = chr(byte)
        else:
            alphabet[byte] = chr(256 + extra)
            extra += 1
    return alphabet


# GPT-2's pre-tokenizer (OpenAI's pattern, as Hugging Face's tokenizers
# apply it): contractions, a letter run, a digit run or a run of other
# symbols (each with one leading space), whitespace; BPE merges only within
# these pieces. tokenizers' `ByteLevel` pre-tokenizer (GPT-NeoX's) uses the
# same pattern
_GPT2_PIECES = (
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+"
    r"|\s+(?!\S)|\s+"
)
# the Unicode normalizers of tokenizer.json that kerasseq applies
_NORMALIZERS = ("NFC", "NFD", "NFKC", "NFKD")


@dataclasses.dataclass(frozen=True)
class AddedToken:
    """A token found in the text as it is, before the pre-tokenizer and
    BPE see it (`added_tokens` of a Hugging Face `tokenizer.json`).

    Attributes:
        content: its text.
        id: its id.
        normalized: whether it is looked for in the normalized text
            (after the pieces around the tokens that are not normalized
            were normalized), as tokenizers does; else in the raw text.
    """

    content: str
    id: int
    normalized: bool = False


class GPT2Tokenizer(Tokenizer):
    """GPT-2's byte-level BPE, as OpenAI's encoder and Hugging Face's
    `GPT2TokenizerFast` apply it, and the same kind of tokenizer read from a
    Hugging Face `tokenizer.json` (GPT-NeoX's, used by Pythia and Mamba).

    The added tokens (`<|endoftext|>`, and any others) are found in the
    text first, the longest at the leftmost place; the text between them
    is normalized (if the tokenizer has a normalizer: GPT-NeoX's is NFC),
    cut into pieces by GPT-2's pattern, and each piece's UTF-8 bytes are
    merged by the rules in order of rank.

    (keras-hub's `GPT2Tokenizer`, used before, departs from it: `"a\\n\\nb"`
    gave 64, 628, 65 for 64, 198, 198, 65, and `" 'ts"` split `'t`.)

    Args:
        vocabulary: dict token string -> id (`vocab.json`/`encoder.json`,
            or `tokenizer.json`'s `model.vocab`), tokens in GPT-2's byte
            alphabet.
        merges: list of merge rules, each `"a b"` (`merges.txt`/
            `vocab.bpe` without the `#version` line) or a pair `("a", "b")`.
        added_tokens: `AddedToken`s; `None`: `end_token` alone, from the
            vocabulary.
        end_token: the token that ends a text (`end_id`).
        normalizer: `None`, or the Unicode normalization applied to the
            text between added tokens (`"NFC"`, `"NFD"`, `"NFKC"`,
            `"NFKD"`).
        ignore_merges: tokenizers' BPE option: a piece that is a token of
            the vocabulary as a whole is that token, merges or not.

    Example:

    >>> tokenizer = GPT2Tokenizer.from_directory(  # doctest: +SKIP
    ...     "path/to/gpt2")
    >>> tokenizer.encode("Hello world")  # doctest: +SKIP
    [15496, 995]
    """

    name = "gpt2"

    def __init__(
        self,
        vocabulary,
        merges,
        added_tokens=None,
        end_token=GPT2_END_OF_TEXT,
        normalizer=None,
        ignore_merges=False,
    ):
        import regex  # \p{L} and look-ahead, which `re` lacks

        if normalizer is not None and normalizer not in _NORMALIZERS:
            raise ValueError(
                f"Received an invalid value for argument `normalizer`, "
                f"expected None or one of {', '.join(_NORMALIZERS)}, got "
                f"{normalizer!r}."
            )
        if added_tokens is None:
            added_tokens = (
                [AddedToken(end_token, vocabulary[end_token])]
                if end_token in vocabulary
                else []
            )
        added_ids = {t.content: t.id for t in added_tokens}
        if end_token not in added_ids and end_token not in vocabulary:
            raise DataFormatError(
                f"The byte-level BPE vocabulary has no {end_token!r} token "
                f"({len(vocabulary)} tokens, {len(added_tokens)} added)."
            )
        self._vocabulary = vocabulary
        self._ranks = {}
        for rank, rule in enumerate(merges):
            pair = tuple(rule.split(" ") if isinstance(rule, str) else rule)
            if len(pair) != 2:
                raise DataFormatError(
                    f"Merge rule {rank + 1} is {rule!r}; expected two "
                    "symbols ('a b' or ['a', 'b'])."
                )
            self._ranks[pair] = rank
        self._pattern = regex.compile(_GPT2_PIECES)
        self._normalizer = normalizer
        self._ignore_merges = ignore_merges
        # added tokens looked for in the raw text, then in the normalized
        # text between those
        self._raw_added = self._added_table(
            [t for t in added_tokens if not t.normalized], regex
        )
        self._normalized_added = self._added_table(
            [
                AddedToken(self._normalize(t.content), t.id, True)
                for t in added_tokens
                if t.normalized
            ],
            regex,
        )
        self._alphabet = _byte_alphabet()
        self._cache = {}
        ids = list(vocabulary.values()) + [t.id for t in added_tokens]
        self.vocabulary_size = max(ids) + 1
        self.end_id = added_ids.get(end_token, vocabulary.get(end_token))
        self.pad_id = self.end_id
        to_byte = {char: byte for byte, char in self._alphabet.items()}
        self._bytes = [b""] * self.vocabulary_size
        added_by_id = {t.id: t.content for t in added_tokens}
        for token, token_id in vocabulary.items():
            if token_id in added_by_id or token == end_token:
                continue
            try:
                self._bytes[token_id] = bytes(to_byte[c] for c in token)
            except KeyError as error:
                raise DataFormatError(
                    f"Byte-level BPE vocabulary token {token!r} (id "
                    f"{token_id}) has the character {error.args[0]!r}, which "
                    "stands for no byte."
                ) from None
        for token_id, content in added_by_id.items():
            self._bytes[token_id] = content.encode("utf-8")
        if end_token not in added_ids:
            self._bytes[self.end_id] = end_token.encode("utf-8")

    @staticmethod
    def _added_table(tokens, regex):
        """`(pattern, {content: id})` finding `tokens`, the longest at the
        leftmost place; `None` for no tokens."""
        tokens = [t for t in tokens if t.content]
        if not tokens:
            return None
        contents = sorted({t.content for t in tokens}, key=len, reverse=True)
        pattern = regex.compile("|".join(regex.escape(c) for c in contents))
        return pattern, {t.content: t.id for t in tokens}

    def _normalize(self, text):
        if self._normalizer is None:
            return text
        return unicodedata.normalize(self._normalizer, text)

    @staticmethod
    def _split_added(text, table):
        """`text` as `(piece, id)` pairs: the added tokens of `table` with
        their ids, the text between them with `None`."""
        if table is None:
            return [(text, None)] if text else []
        pattern, ids = table
        parts, done = [], 0
        for match in pattern.finditer(text):
            if match.start() > done:
                parts.append((text[done : match.start()], None))
            parts.append((match.group(), ids[match.group()]))
            done = match.end()
        if done < len(text):
            parts.append((text[done:], None))
        return parts

    @classmethod
    def from_directory(cls, directory):
        """Reads `vocab.json` + `merges.txt`, or `encoder.json` +
        `vocab.bpe`, from `directory`; where neither pair is there, its
        `tokenizer.json` (`from_tokenizer_json`)."""
        for vocab_name, merges_name in GPT2_FILE_NAMES:
            vocab_path = os.path.join(directory, vocab_name)
            merges_path = os.path.join(directory, merges_name)
            if os.path.exists(vocab_path) and os.path.exists(merges_path):
                break
        else:
            json_path = os.path.join(directory, TOKENIZER_JSON)
            if os.path.exists(json_path):
                return cls.from_tokenizer_json(
                    json_path, _configured_end_token(directory)
                )
            names = ", ".join(f"{v} + {m}" for v, m in GPT2_FILE_NAMES)
            raise DataNotFoundError(
                f"No byte-level BPE tokenizer in {directory!r}: expected "
                f"{names} or {TOKENIZER_JSON}."
            )
        vocabulary = _read_json(vocab_path)
        with open(merges_path, encoding="utf-8") as f:
            lines = f.read().split("\n")
        merges = [
            line for line in lines if line and not line.startswith("#version")
        ]
        for number, rule in enumerate(merges, start=1):
            if len(rule.split(" ")) != 2:
                raise DataFormatError(
                    f"{merges_path}: merge rule {number} is {rule!r}; "
                    "expected two symbols separated by one space."
                )
        return cls(vocabulary, merges)

    @classmethod
    def from_tokenizer_json(cls, path, end_token=None):
        """Reads a Hugging Face `tokenizer.json` holding a byte-level BPE
        (GPT-2's, GPT-NeoX's): `model` of type `BPE` (its `vocab`, its
        `merges` as `"a b"` strings or `["a", "b"]` pairs), the `ByteLevel`
        pre-tokenizer without a prefix space, no normalizer or a Unicode
        one (GPT-NeoX: NFC), and its `added_tokens`.

        Args:
            path: the file.
            end_token: the token that ends a text (the checkpoint's
                `eos_token`); default `<|endoftext|>`.

        Raises:
            DataFormatError: not JSON, or a tokenizer of another kind
                (the message names the field and what kerasseq reads).
        """
        root = _read_json(path)
        model = root.get("model") if isinstance(root, dict) else None
        kind = (
            "byte-level BPE (GPT-2's or GPT-NeoX's: model.type BPE, "
            "pre_tokenizer ByteLevel)"
        )
        if not isinstance(model, dict) or model.get("type", "BPE") != "BPE":
            found = model.get("type") if isinstance(model, dict) else model
            raise DataFormatError(
                f"{path}: model.type is {found!r}; kerasseq reads {kind}."
            )
        pre = root.get("pre_tokenizer") or {}
        if not (
            pre.get("type") == "ByteLevel"
            and not pre.get("add_prefix_space", False)
            and pre.get("use_regex", True)
        ):
            raise DataFormatError(
                f"{path}: pre_tokenizer is {json.dumps(pre)}; kerasseq "
                f"reads {kind} without add_prefix_space."
            )
        normalizer = root.get("normalizer")
        if normalizer is not None:
            normalizer = normalizer.get("type")
            if normalizer not in _NORMALIZERS:
                raise DataFormatError(
                    f"{path}: normalizer {normalizer!r}; kerasseq applies "
                    f"none or one of {', '.join(_NORMALIZERS)}."
                )
        for field in ("continuing_subword_prefix", "end_of_word_suffix"):
            if model.get(field):
                raise DataFormatError(
                    f"{path}: model.{field} is {model[field]!r}; kerasseq "
                    f"reads {kind} without one."
                )
        if model.get("dropout"):
            raise DataFormatError(
                f"{path}: model.dropout is {model['dropout']!r}; kerasseq "
                "reads BPE without dropout."
            )
        vocabulary = model.get("vocab")
        merges = model.get("merges")
        if not isinstance(vocabulary, dict) or not isinstance(merges, list):
            raise DataFormatError(
                f"{path}: model.vocab (an object) or model.merges (a list) "
                "is missing."
            )
        added = []
        for i, token in enumerate(root.get("added_tokens") or []):
            flags = [
                f for f in ("lstrip", "rstrip", "single_word") if token.get(f)
            ]
            if flags:
                raise DataFormatError(
                    f"{path}: added_tokens[{i}] ({token.get('content')!r}) "
                    f"sets {', '.join(flags)}, which kerasseq does not apply."
                )
            added.append(
                AddedToken(
                    token["content"],
                    int(token["id"]),
                    bool(token.get("normalized", not token.get("special"))),
                )
            )
        return cls(
            vocabulary,
            merges,
            added_tokens=added,
            end_token=end_token or GPT2_END_OF_TEXT,
            normalizer=normalizer,
            ignore_merges=bool(model.get("ignore_merges", False)),
        )

    def encode_batch(self, texts):
        return [self._encode(text) for text in texts]

    def _encode(self, text):
        ids = []
        for raw, raw_id in self._split_added(text, self._raw_added):
            if raw_id is not None:
                ids.append(raw_id)
                continue
            normalized = self._normalize(raw)
            for part, token_id in self._split_added(
                normalized, self._normalized_added
            ):
                if token_id is not None:
                    ids.append(token_id)
                    continue
                for piece in self._pattern.findall(part):
                    ids.extend(self._piece_ids(piece))
        return ids

    def _piece_ids(self, piece):
        """The ids of one piece: its bytes' characters merged by rank."""
        if piece not in self._cache:
            symbols = [self._alphabet[b] for b in piece.encode("utf-8")]
            word = "".join(symbols)
            if self._ignore_merges and word in self._vocabulary:
                symbols = [word]
            while len(symbols) > 1:
                pairs = zip(symbols, symbols[1:], strict=False)
                best = min(
                    pairs, key=lambda p: self._ranks.get(p, float("inf"))
                )
                if best not in self._ranks:
                    break
                merged, i = [], 0
                while i < len(symbols):
                    if tuple(symbols[i : i + 2]) == best:
                        merged.append(symbols[i] + symbols[i + 1])
                        i += 2
                    else:
                        merged.append(symbols[i])
                        i += 1
                symbols = merged
            try:
                self._cache[piece] = [self._vocabulary[s] for s in symbols]
            except KeyError as error:
                raise DataFormatError(
                    f"The BPE merges make {error.args[0]!r}, which the "
                    "vocabulary lacks."
                ) from None
        return self._cache[piece]

    def token_bytes(self, token_id):
        if not 0 <= token_id < self.vocabulary_size:
            raise ValueError(
                f"Token id {token_id} is outside the byte-level BPE "
                f"vocabulary (0 to {self.vocabulary_size - 1})."
            )
        return self._bytes[token_id]


def _read_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as error:
        raise DataFormatError(f"{path} is not JSON: {error}.") from None


def _configured_end_token(directory):
    """The `eos_token` a checkpoint's `tokenizer_config.json` (or
    `special_tokens_map.json`) names, as transformers reads it; `None`
    where neither names one."""
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        path = os.path.join(directory, name)
        if not os.path.exists(path):
            continue
        try:
            token = _read_json(path).get("eos_token")
        except (DataFormatError, AttributeError):
            continue
        if isinstance(token, dict):
            token = token.get("content")
        if isinstance(token, str) and token:
            return token
    return None
