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
`step`, either in one compiled loop (`Sampler.loop`, `CausalLM`: one
program for every new token) or one Python iteration per token
(`Sampler.__call__`, `RecurrentGPT2`, whose segments end in Python). Every
model thus decodes the same way, and a new way of picking tokens (top-k,
...) is a new sampler, not a change to each model.
"""

import numpy as np
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


def _hash(x):
    """A 32-bit integer hash (Wellons' `lowbias32`) of int32 `x`, in int32
    arithmetic that wraps alike on every backend, compiled or not."""

    def shift(x, bits):  # logical right shift of the 32-bit pattern
        return ops.bitwise_and(ops.right_shift(x, bits), (1 << (32 - bits)) - 1)

    x = ops.bitwise_xor(x, shift(x, 16))
    x = x * 0x7FEB352D
    x = ops.bitwise_xor(x, shift(x, 15))
    x = x * (0x846CA68B - (1 << 32))
    return ops.bitwise_xor(x, shift(x, 16))


def uniform_noise(seed, index, shape):
    """Uniform noise in (0, 1) of `shape` `(batch_size, vocabulary_size)`
    for the token at position `index`: a hash of (seed, index, row,
    column). The same on TensorFlow and JAX, compiled or not (the
    backends' stateless random ops differ, and TensorFlow's differ under
    XLA); 24 bits of resolution."""
    rows, columns = shape
    base = _hash(_hash(ops.cast(seed, "int32")) + ops.cast(index, "int32"))
    cell = ops.arange(rows, dtype="int32")[:, None] * columns
    cell = cell + ops.arange(columns, dtype="int32")[None, :]
    bits = ops.bitwise_and(
        ops.right_shift(_hash(ops.bitwise_xor(cell, base)), 8), 0xFFFFFF
    )
    return (ops.cast(bits, "float32") + 0.5) / float(1 << 24)


class Sampler:
    """Picks the next tokens from logits and runs the decoding loop.

    At temperature 0 the next token is the argmax of the logits (greedy
    decoding); above 0 it is drawn from `softmax(logits / temperature)`
    (the Gumbel-max trick) statelessly: the token at position `index`
    from noise hashed from `(seed, index)` (`uniform_noise`), so that the
    same seed draws the same tokens in the compiled loop and in the Python
    loop, on TensorFlow and on JAX.

    Args:
        temperature: float >= 0 (or, inside a compiled loop, a float
            tensor > 0).
        seed: int or `None` (a random seed), for sampling.

    Example:

    >>> import numpy as np
    >>> logits = np.log(np.array([[0.1, 0.7, 0.2], [0.8, 0.1, 0.1]]))
    >>> keras.ops.convert_to_numpy(Sampler().get_next_token(logits, 0))
    array([1, 0], dtype=int32)
    >>> sampler = Sampler(temperature=0.8, seed=0)
    >>> tuple(sampler.get_next_token(logits, 5).shape)
    (2,)
    """

    def __init__(self, temperature=0.0, seed=None):
        self.temperature = temperature
        self.greedy = isinstance(temperature, (int, float)) and not temperature
        if seed is None:
            seed = int(np.random.default_rng().integers(2**31 - 1))
        self.seed = seed

    def get_next_token(self, logits, index, seed=None):
        """The next token ids `(batch_size,)` int32 from `logits`
        `(batch_size, vocabulary_size)`, at position `index` (int or int
        tensor); `seed` (an int tensor) stands for `self.seed` inside a
        compiled loop."""
        if self.greedy:
            return ops.cast(ops.argmax(logits, axis=-1), "int32")
        seed = self.seed if seed is None else seed
        # the Gumbel-max trick: argmax(logits / T + Gumbel noise) is drawn
        # from softmax(logits / T)
        noise = uniform_noise(seed, index, ops.shape(logits))
        gumbel = -ops.log(-ops.log(noise))
        logits = ops.cast(logits, "float32") / self.temperature
        return ops.cast(ops.argmax(logits + gumbel, axis=-1), "int32")

    def __call__(self, step, token_ids, logits, state, max_new_tokens):
        """Appends `max_new_tokens` tokens to the prompts `token_ids`, one
        Python iteration (and one call of `step`) per token.

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
            next_ids = self.get_next_token(logits, index)
            outputs.append(next_ids[:, None])
            if index + 1 < total:
                logits, state = step(next_ids, index, state)
        return ops.convert_to_numpy(ops.concatenate(outputs, axis=1))

    def loop(self, step, logits, state, start, num_tokens, seed, size):
        """The decoding loop as tensor code, to run inside one compiled
        function (`ops.fori_loop`): `num_tokens` new tokens after the
        position `start - 1`.

        Args:
            step: as in `__call__`, but `index` is an int32 scalar tensor.
            logits, state: after the prompt.
            start: int32 scalar tensor, the prompt's length.
            num_tokens: int32 scalar tensor, >= 1, at most `size`.
            seed: int32 scalar tensor, the sampling seed.
            size: int. The output's length (a bucket, so that one compiled
                loop serves every `num_tokens` up to it).

        Returns:
            int32 `(batch_size, size)`: the new tokens, then zeros.
        """
        batch_size = ops.shape(logits)[0]
        tokens = ops.zeros((batch_size, size), "int32")

        def write(tokens, i, logits):
            next_ids = self.get_next_token(logits, start + i, seed)
            tokens = ops.slice_update(tokens, (0, i), next_ids[:, None])
            return tokens, next_ids

        def body(i, carry):
            tokens, logits, state = carry
            tokens, next_ids = write(tokens, i, logits)
            logits, state = step(next_ids, start + i, state)
            return tokens, logits, state

        last = num_tokens - 1
        tokens, logits, _ = ops.fori_loop(
            0, last, body, (tokens, logits, state)
        )
        return write(tokens, last, logits)[0]
