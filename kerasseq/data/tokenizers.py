"""Tokenizers for the NLP tasks: UTF-8 bytes, and GPT-2's byte-level BPE.

Both are lossless over UTF-8: the bytes of a text's tokens, joined, are the
text's bytes. So every token has a span of characters in the text it came
from (`encode_with_offsets`), which SQuAD needs to map a predicted span of
tokens back to answer text. A third, `wordpiece`, reads BERT's `vocab.txt`
for checkpoints trained with it (classification tasks; it lowercases and
drops whitespace, so it has no byte spans).

    bytes   no files; id = byte + 1, 0 is padding, 257 ends a text
            (vocabulary 258)
    gpt2    GPT-2's byte-level BPE (`GPT2Tokenizer`), from `vocab.json` +
            `merges.txt` (Hugging Face's names) or `encoder.json` +
            `vocab.bpe` (OpenAI's names) in one directory, where
            `<|endoftext|>` (50256) ends a text (vocabulary 50257); or,
            where those are absent, from a Hugging Face `tokenizer.json`
            of the same kind (GPT-NeoX's: Pythia, `state-spaces/mamba-*-hf`),
            whose own `<|endoftext|>` (GPT-NeoX: 0) ends a text
    wordpiece
            BERT's WordPiece through keras-hub's `WordPieceTokenizer`, from
            `vocab.txt` (and `tokenizer_config.json`'s `do_lower_case`);
            `[CLS]` starts a packed input, `[SEP]` ends each text

Each tokenizer has `vocabulary_size`, `pad_id` (what padded positions hold;
the padding mask, not the id, says which positions are padding),
`end_id`, the token that ends a text and separates the texts of a pair,
and `start_id`, the token a packed input starts with (`end_id` but for
WordPiece's `[CLS]`).

The interface is `kerasseq.data.tokenizer_base.Tokenizer`; GPT-2's BPE is
in `kerasseq.data.gpt2_tokenizer`.
"""

import json
import os

from kerasseq import catalogue
from kerasseq.data.errors import DataFormatError
from kerasseq.data.errors import DataNotFoundError
from kerasseq.data.gpt2_tokenizer import GPT2_FILE_NAMES
from kerasseq.data.gpt2_tokenizer import TOKENIZER_JSON
from kerasseq.data.gpt2_tokenizer import GPT2Tokenizer
from kerasseq.data.tokenizer_base import Tokenizer

TOKENIZERS = catalogue.TOKENIZERS
WORDPIECE_SPECIAL = ("[PAD]", "[UNK]", "[CLS]", "[SEP]")


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
        DataNotFoundError: the directory lacks the tokenizer's files.
        DataFormatError: a file is malformed, or a tokenizer.json holds
            a kind of tokenizer kerasseq does not read.
    """
    check_name(name)
    if name == "bytes":
        return ByteTokenizer()
    if name == "gpt2":
        if not directory:
            names = ", ".join(f"{v} + {m}" for v, m in GPT2_FILE_NAMES)
            raise ValueError(
                f"--tokenizer=gpt2 needs --tokenizer_dir, a directory with "
                f"a byte-level BPE's files ({names} or {TOKENIZER_JSON})."
            )
        return GPT2Tokenizer.from_directory(directory)
    if not directory:
        raise ValueError(
            "--tokenizer=wordpiece needs --tokenizer_dir, a directory with "
            "BERT's vocab.txt."
        )
    return WordPieceTokenizer.from_directory(directory)
