"""The interface the NLP pipelines need of a tokenizer (`Tokenizer`), with
the byte spans of tokens that SQuAD maps predicted spans back to text by.

The tokenizers themselves are in `kerasseq.data.tokenizers` (bytes,
WordPiece, and `make_tokenizer`) and `kerasseq.data.gpt2_tokenizer`
(GPT-2's byte-level BPE).
"""

import numpy as np


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
