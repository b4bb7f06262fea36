"""Tokenizers for the NLP tasks: UTF-8 bytes, and GPT-2's byte-level BPE.

Both are lossless over UTF-8: the bytes of a text's tokens, joined, are the
text's bytes. So every token has a span of characters in the text it came
from (`encode_with_offsets`), which SQuAD needs to map a predicted span of
tokens back to answer text. A third, `wordpiece`, reads BERT's `vocab.txt`
for checkpoints trained with it (classification tasks; it lowercases and
drops whitespace, so it has no byte spans).

    bytes   no files; id = byte + 1, 0 is padding, 257 ends a text
            (vocabulary 258)
    gpt2    GPT-2's BPE through keras-hub's `GPT2Tokenizer`, from
            `vocab.json` + `merges.txt` (Hugging Face's names) or
            `encoder.json` + `vocab.bpe` (OpenAI's names) in one directory;
            `<|endoftext|>` (50256) ends a text (vocabulary 50257)
    wordpiece
            BERT's WordPiece through keras-hub's `WordPieceTokenizer`, from
            `vocab.txt` (and `tokenizer_config.json`'s `do_lower_case`);
            `[CLS]` starts a packed input, `[SEP]` ends each text

Each tokenizer has `vocabulary_size`, `pad_id` (what padded positions hold;
the padding mask, not the id, says which positions are padding),
`end_id`, the token that ends a text and separates the texts of a pair,
and `start_id`, the token a packed input starts with (`end_id` but for
WordPiece's `[CLS]`).
"""

import json
import os

import numpy as np

from kerasseq import catalogue
from kerasseq.data.errors import DataFormatError
from kerasseq.data.errors import DataNotFoundError

TOKENIZERS = catalogue.TOKENIZERS
WORDPIECE_SPECIAL = ("[PAD]", "[UNK]", "[CLS]", "[SEP]")

# the two names GPT-2's files go by
GPT2_FILE_NAMES = (
    ("vocab.json", "merges.txt"),
    ("encoder.json", "vocab.bpe"),
)
GPT2_END_OF_TEXT = "<|endoftext|>"


class Tokenizer:
    """What the NLP pipelines need of a tokenizer.

    Subclasses set `name`, `vocabulary_size`, `pad_id` and `end_id`, and
    implement `encode_batch` and `token_bytes`.
    """

    name = None
    vocabulary_size = None
    pad_id = None
    end_id = None
    start_id = None

    @property
    def first_id(self):
        """The token a packed input starts with."""
        return self.end_id if self.start_id is None else self.start_id

    def encode_batch(self, texts):
        """Token ids of each text, a list of lists of ints."""
        raise NotImplementedError

    def token_bytes(self, token_id):
        """The UTF-8 bytes token `token_id` stands for."""
        raise NotImplementedError

    def encode(self, text):
        """Token ids of one text, a list of ints."""
        return self.encode_batch([text])[0]

    def decode(self, token_ids):
        """The text of `token_ids` (bytes that are no valid UTF-8 become
        U+FFFD)."""
        joined = b"".join(self.token_bytes(int(i)) for i in token_ids)
        return joined.decode("utf-8", errors="replace")

    def encode_with_offsets(self, text):
        """Token ids of `text` with each token's span of characters.

        A token covering part of a character (a byte of a multi-byte
        character) spans that whole character.

        Returns:
            `(ids, starts, ends)`: int arrays of one length; token `i` covers
            `text[starts[i]:ends[i]]`.
        """
        ids = self.encode(text)
        lengths = [len(self.token_bytes(i)) for i in ids]
        encoded = text.encode("utf-8")
        if sum(lengths) != len(encoded):
            raise ValueError(
                f"The {self.name} tokens of {text[:40]!r}... cover "
                f"{sum(lengths)} bytes, the text has {len(encoded)}: this "
                "tokenizer is not lossless over this text."
            )
        # the character each byte belongs to
        char_of_byte = np.repeat(
            np.arange(len(text)),
            [len(c.encode("utf-8")) for c in text],
        )
        byte_ends = np.cumsum(lengths, dtype=np.int64)
        byte_starts = byte_ends - np.asarray(lengths, np.int64)
        if not ids:
            empty = np.zeros((0,), np.int64)
            return np.zeros((0,), np.int32), empty, empty
        starts = char_of_byte[byte_starts]
        ends = char_of_byte[byte_ends - 1] + 1
        return np.asarray(ids, np.int32), starts, ends

    def config(self):
        """What identifies this tokenizer, for run records."""
        return {"tokenizer": self.name, "vocabulary_size": self.vocabulary_size}


class ByteTokenizer(Tokenizer):
    """UTF-8 bytes as tokens: id `byte + 1`; 0 pads, 257 ends a text.

    Example:

    >>> ByteTokenizer().encode("hi")
    [105, 106]
    """

    name = "bytes"
    vocabulary_size = 258
    pad_id = 0
    end_id = 257

    def encode_batch(self, texts):
        return [[b + 1 for b in text.encode("utf-8")] for text in texts]

    def token_bytes(self, token_id):
        if 1 <= token_id <= 256:
            return bytes([token_id - 1])
        if token_id in (self.pad_id, self.end_id):
            return b""
        raise ValueError(
            f"Token id {token_id} is outside the byte tokenizer's "
            f"vocabulary (0 to {self.vocabulary_size - 1})."
        )


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
# these pieces
_GPT2_PIECES = (
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+"
    r"|\s+(?!\S)|\s+"
)


class GPT2Tokenizer(Tokenizer):
    """GPT-2's byte-level BPE, as OpenAI's encoder and Hugging Face's
    `GPT2TokenizerFast` apply it: the text is cut into pieces by GPT-2's
    pattern (`<|endoftext|>` in the text is that token), each piece's UTF-8
    bytes are merged by the rules in order of rank.

    (keras-hub's `GPT2Tokenizer`, used before, departs from it: `"a\\n\\nb"`
    gave 64, 628, 65 for 64, 198, 198, 65, and `" 'ts"` split `'t`.)

    Args:
        vocabulary: dict token string -> id (`vocab.json`/`encoder.json`).
        merges: list of merge rules, `"a b"` strings (`merges.txt`/
            `vocab.bpe`, without the `#version` line).

    Example:

    >>> tokenizer = GPT2Tokenizer.from_directory(  # doctest: +SKIP
    ...     "path/to/gpt2")
    >>> tokenizer.encode("Hello world")  # doctest: +SKIP
    [15496, 995]
    """

    name = "gpt2"

    def __init__(self, vocabulary, merges):
        import regex  # \p{L} and look-ahead, which `re` lacks

        if GPT2_END_OF_TEXT not in vocabulary:
            raise DataFormatError(
                f"The GPT-2 vocabulary has no {GPT2_END_OF_TEXT!r} token "
                f"({len(vocabulary)} tokens)."
            )
        self._vocabulary = vocabulary
        self._ranks = {
            tuple(rule.split(" ")): rank for rank, rule in enumerate(merges)
        }
        self._pattern = regex.compile(_GPT2_PIECES)
        self._alphabet = _byte_alphabet()
        self._cache = {}
        self.vocabulary_size = max(vocabulary.values()) + 1
        self.end_id = vocabulary[GPT2_END_OF_TEXT]
        self.pad_id = self.end_id
        to_byte = {char: byte for byte, char in self._alphabet.items()}
        self._bytes = [b""] * self.vocabulary_size
        for token, token_id in vocabulary.items():
            if token == GPT2_END_OF_TEXT:
                self._bytes[token_id] = token.encode("utf-8")
                continue
            try:
                self._bytes[token_id] = bytes(to_byte[c] for c in token)
            except KeyError as error:
                raise DataFormatError(
                    f"GPT-2 vocabulary token {token!r} (id {token_id}) has "
                    f"the character {error.args[0]!r}, which stands for no "
                    "byte."
                ) from None

    @classmethod
    def from_directory(cls, directory):
        """Reads `vocab.json` + `merges.txt`, or `encoder.json` +
        `vocab.bpe`, from `directory`."""
        for vocab_name, merges_name in GPT2_FILE_NAMES:
            vocab_path = os.path.join(directory, vocab_name)
            merges_path = os.path.join(directory, merges_name)
            if os.path.exists(vocab_path) and os.path.exists(merges_path):
                break
        else:
            names = " or ".join(f"{v} + {m}" for v, m in GPT2_FILE_NAMES)
            raise DataNotFoundError(
                f"No GPT-2 tokenizer files in {directory!r}: expected {names}."
            )
        try:
            with open(vocab_path, encoding="utf-8") as f:
                vocabulary = json.load(f)
        except json.JSONDecodeError as error:
            raise DataFormatError(
                f"{vocab_path} is not JSON: {error}."
            ) from None
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

    def encode_batch(self, texts):
        return [self._encode(text) for text in texts]

    def _encode(self, text):
        ids = []
        for i, part in enumerate(text.split(GPT2_END_OF_TEXT)):
            if i:
                ids.append(self.end_id)
            for piece in self._pattern.findall(part):
                ids.extend(self._piece_ids(piece))
        return ids

    def _piece_ids(self, piece):
        """The ids of one piece: its bytes' characters merged by rank."""
        if piece not in self._cache:
            symbols = [self._alphabet[b] for b in piece.encode("utf-8")]
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
                    f"The GPT-2 merges make {error.args[0]!r}, which the "
                    "vocabulary lacks."
                ) from None
        return self._cache[piece]

    def token_bytes(self, token_id):
        if not 0 <= token_id < self.vocabulary_size:
            raise ValueError(
                f"Token id {token_id} is outside the GPT-2 vocabulary (0 to "
                f"{self.vocabulary_size - 1})."
            )
        return self._bytes[token_id]


class WordPieceTokenizer(Tokenizer):
    """BERT's WordPiece vocabulary (`vocab.txt`, one token per line).

    Texts are lowercased (and accents stripped) when the checkpoint's
    `tokenizer_config.json` says `do_lower_case` (BERT uncased and MiniLM
    do; the default without that file). A word with no pieces becomes
    `[UNK]`.

    Example:

    >>> tokenizer = WordPieceTokenizer(
    ...     ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "fox", "jump", "##s"])
    >>> tokenizer.encode("Fox jumps")
    [4, 5, 6]
    """

    name = "wordpiece"

    def __init__(self, vocabulary, lowercase=True):
        missing = [t for t in WORDPIECE_SPECIAL if t not in vocabulary]
        if missing:
            raise DataFormatError(
                f"The WordPiece vocabulary has no {', '.join(missing)} "
                f"token(s); BERT's vocab.txt has all of "
                f"{', '.join(WORDPIECE_SPECIAL)}."
            )
        import keras_hub

        self.vocabulary = list(vocabulary)
        self.lowercase = lowercase
        self._tokenizer = keras_hub.tokenizers.WordPieceTokenizer(
            vocabulary=self.vocabulary,
            lowercase=lowercase,
            strip_accents=lowercase,
            oov_token="[UNK]",
        )
        ids = {token: i for i, token in enumerate(self.vocabulary)}
        self.vocabulary_size = len(self.vocabulary)
        self.pad_id = ids["[PAD]"]
        self.start_id = ids["[CLS]"]
        self.end_id = ids["[SEP]"]

    @classmethod
    def from_directory(cls, directory):
        """Reads `vocab.txt` (and `tokenizer_config.json` if present)."""
        vocab_path = os.path.join(directory, "vocab.txt")
        if not os.path.exists(vocab_path):
            raise DataNotFoundError(
                f"No WordPiece vocabulary in {directory!r}: expected "
                "vocab.txt (one token per line)."
            )
        with open(vocab_path, encoding="utf-8") as f:
            vocabulary = [line.rstrip("\n") for line in f]
        while vocabulary and not vocabulary[-1]:
            vocabulary.pop()
        lowercase = True
        config_path = os.path.join(directory, "tokenizer_config.json")
        if os.path.exists(config_path):
            with open(config_path, encoding="utf-8") as f:
                lowercase = bool(json.load(f).get("do_lower_case", True))
        return cls(vocabulary, lowercase=lowercase)

    def encode_batch(self, texts):
        if not texts:
            return []
        rows = self._tokenizer(list(texts))
        if hasattr(rows, "to_list"):  # a tf.RaggedTensor
            rows = rows.to_list()
        return [[int(i) for i in row] for row in rows]

    def token_bytes(self, token_id):
        raise ValueError(
            "WordPiece tokens have no byte spans (the tokenizer lowercases "
            "and drops whitespace): use it for classification, and "
            "--tokenizer=bytes or gpt2 for SQuAD and language modelling."
        )

    def decode(self, token_ids):
        """The tokens joined with spaces, `##` pieces onto their word."""
        words = []
        for i in token_ids:
            token = self.vocabulary[int(i)]
            if token.startswith("##") and words:
                words[-1] += token[2:]
            else:
                words.append(token)
        return " ".join(words)


def check_name(name):
    """Raises `ValueError` unless `name` is one of `TOKENIZERS`."""
    if name not in TOKENIZERS:
        raise ValueError(
            f"Unknown tokenizer {name!r}. Valid tokenizers: "
            f"{', '.join(TOKENIZERS)}."
        )


def make_tokenizer(name, directory=None):
    """The tokenizer `name` (one of `TOKENIZERS`); `gpt2` and `wordpiece`
    read their files from `directory`.

    Raises:
        ValueError: an unknown name, or `gpt2` without a directory.
        DataNotFoundError: the directory lacks GPT-2's files.
    """
    check_name(name)
    if name == "bytes":
        return ByteTokenizer()
    if name == "gpt2":
        if not directory:
            names = " or ".join(f"{v} + {m}" for v, m in GPT2_FILE_NAMES)
            raise ValueError(
                f"--tokenizer=gpt2 needs --tokenizer_dir, a directory with "
                f"GPT-2's files ({names})."
            )
        return GPT2Tokenizer.from_directory(directory)
    if not directory:
        raise ValueError(
            "--tokenizer=wordpiece needs --tokenizer_dir, a directory with "
            "BERT's vocab.txt."
        )
    return WordPieceTokenizer.from_directory(directory)
