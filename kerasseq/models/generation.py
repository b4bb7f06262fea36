"""Text generation shared by the language models (`CausalLM`,
`RecurrentGPT2`): the argument checks, the bucket lengths that keep the
compiled programs few, and the `Sampler` that picks each next token and
runs the decoding loop.

A model's `generate` prepares two things and hands them to the sampler,
as keras-hub's `CausalLM.generate` hands its `next` function to a
`keras_hub.samplers.Sampler`:

- the logits after the prompt and the state they leave (the prompt run
  in one compiled prefill, or token by token with `step_through`), and
- `step(token_ids, index, state) -> (logits, state)`: one compiled step
  that reads the token at position `index` (counted from the prompt's
  start) and gives the logits of the token after it.

The sampler then alternates: pick a token from the logits, feed it to
`step`. Every model thus decodes the same way, and a new way of picking
tokens (top-k, ...) is a new sampler, not a change to each model.
"""

import keras
from keras import ops

from kerasseq.ops.checks import check_int


def check_generate_args(token_ids, max_new_tokens, temperature):
    """Checks `generate`'s arguments; returns the prompts as int32."""
    check_int("max_new_tokens", max_new_tokens)
    is_number = isinstance(temperature, (int, float))
    if isinstance(temperature, bool) or not is_number or temperature < 0:
        raise ValueError(
            "Received an invalid value for argument `temperature`, "
            f"expected a non-negative float, got {temperature!r}."
        )
    token_ids = ops.convert_to_tensor(token_ids, dtype="int32")
    if len(token_ids.shape) != 2 or token_ids.shape[1] == 0:
        raise ValueError(
            "Received an invalid value for argument `token_ids`, "
            "expected a non-empty int array (batch_size, prompt_len), "
            f"got shape {tuple(token_ids.shape)}."
        )
    return token_ids


def cache_length(total, limit=None):
    """The key/value cache size that `generate` gives `total` tokens: the
    next power of two, at least 64, so that one compiled decoding step
    serves every length up to it (XLA compiles once per shape); at most
    `limit` (a position table's length) where that still holds `total`."""
    size = max(64, 1 << (total - 1).bit_length())
    if limit is not None and total <= limit < size:
        return limit
    return size


def prefill_length(prompt_len, limit):
    """The length `generate` pads a prompt of `prompt_len` tokens to for
    its one-pass prefill: the next power of two, at least 16, so that one
    compiled prefill serves every prompt length up to it; at most `limit`
    (the cache length, which holds the padded prompt)."""
    return min(max(16, 1 << (prompt_len - 1).bit_length()), limit)


def step_through(step, token_ids, state):
    """Runs the prompts `token_ids` `(batch_size, prompt_len)` through
    `step` token by token, from `state`: the logits after the last token
    and the state after it. What `generate` does for mixers without
    `prefill`; its tokens are those of the one-pass prefill."""
    for index in range(token_ids.shape[1]):
        logits, state = step(token_ids[:, index], index, state)
    return logits, state


class Sampler:
    """Picks the next tokens from logits and runs the decoding loop.

    At temperature 0 the next token is the argmax of the logits (greedy
    decoding); above 0 it is drawn from `softmax(logits / temperature)`
    with `keras.random.categorical`, from a `keras.random.SeedGenerator`
    of `seed`, so that the same seed draws the same tokens.

    Args:
        temperature: float >= 0.
        seed: int or `None`, for sampling.

    Example:

    >>> import numpy as np
    >>> logits = np.log(np.array([[0.1, 0.7, 0.2], [0.8, 0.1, 0.1]]))
    >>> keras.ops.convert_to_numpy(Sampler().get_next_token(logits))
    array([1, 0], dtype=int32)
    >>> sampler = Sampler(temperature=0.8, seed=0)
    >>> tuple(sampler.get_next_token(logits).shape)
    (2,)
    """

    def __init__(self, temperature=0.0, seed=None):
        self.temperature = temperature
        self.seed_generator = keras.random.SeedGenerator(seed)

    def get_next_token(self, logits):
        """The next token ids `(batch_size,)` int32 from `logits`
        `(batch_size, vocabulary_size)`."""
        if self.temperature == 0:
            next_ids = ops.argmax(logits, axis=-1)
        else:
            next_ids = keras.random.categorical(
                logits / self.temperature, 1, seed=self.seed_generator
            )[:, 0]
        return ops.cast(next_ids, "int32")

    def __call__(self, step, token_ids, logits, state, max_new_tokens):
        """Appends `max_new_tokens` tokens to the prompts `token_ids`.

        Args:
            step: `step(token_ids, index, state) -> (logits, state)`, the
                model's step: `token_ids` `(batch_size,)` at position
                `index` (a Python int, from the prompt's start) in, the
                logits of the following token out.
            token_ids: int32 `(batch_size, prompt_len)`, the prompts.
            logits: `(batch_size, vocabulary_size)`, after the prompt.
            state: what `step` carries, after the prompt.
            max_new_tokens: int.

        Returns:
            int32 NumPy array `(batch_size, prompt_len + max_new_tokens)`.
        """
        prompt_len = token_ids.shape[1]
        total = prompt_len + max_new_tokens
        outputs = [token_ids]
        for index in range(prompt_len, total):
            next_ids = self.get_next_token(logits)
            outputs.append(next_ids[:, None])
            if index + 1 < total:
                logits, state = step(next_ids, index, state)
        return ops.convert_to_numpy(ops.concatenate(outputs, axis=1))
