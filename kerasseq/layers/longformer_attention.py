import keras
import numpy as np
from keras import ops

from kerasseq.layers.attention_base import BaseAttention
from kerasseq.layers.attention_base import recomputed
from kerasseq.ops import checks
from kerasseq.ops.sliding_window_attention import sliding_window_attention


@keras.saving.register_keras_serializable(package="kerasseq")
class LongformerAttention(BaseAttention):
    """Longformer self-attention: a (dilated) sliding window plus global
    tokens.

    Each token attends a window of `window` positions around it (`window //
    2` on each side, or the `window` before it and itself when causal),
    every `dilation`-th token, in `O(seq_len * window)` time and memory (see
    `kerasseq.ops.sliding_window_attention` for the exact convention). With
    `dilation > 1` the window spans `window * dilation` tokens.

    Bidirectional layers may also have up to `num_global_tokens` global
    tokens per sequence (e.g. CLS, or the question in question answering):
    the first `num_global_tokens` positions, or the first ones marked in
    `global_mask`. Every token attends the global tokens in the same softmax
    as its window (their keys and values come from the local projections,
    and are not also attended through the window), and each global token
    attends every real token with its own projections (`query_global`,
    `key_global`, `value_global`), replacing its windowed output. Both go
    through the shared output projection. A row of `global_mask` with more
    than `num_global_tokens` global positions raises an error when called
    eagerly; under `jit` the extra ones are treated as local tokens.

    For decoding, a causal layer's `step` keeps the keys and values of the
    last `window * dilation + 1` tokens (constant memory per token) and
    gives the same outputs as `call`.

    The projections are those of `BaseAttention`, as in
    `SoftmaxAttention`; the global ones are created only when
    `num_global_tokens > 0`.

    Args:
        num_heads: int. Number of attention heads.
        window: int. Positions in the window: the two-sided total when
            bidirectional (even; Hugging Face's `attention_window`), the
            positions before the token when causal.
        causal: bool. If `True`, a token attends itself and the window
            before it only.
        dilation: int. Gap between attended positions.
        num_global_tokens: int >= 0. The static number of global token
            slots per sequence (bidirectional only).
        dropout: float. Dropout rate on the attention weights.
        recompute_attention: bool, see `BaseAttention`.
        **kwargs: `head_dim`, `use_bias`, `kernel_initializer` (see
            `BaseAttention`) and `keras.layers.Layer`'s arguments.

    Call arguments:
        As `SequenceLayer`'s, with `seq_len` known when tracing (the
        band is static); padded keys receive no attention and padded
        tokens are never global. One more:

        global_mask: optional boolean tensor `(batch_size, seq_len)`, `True`
            at global tokens; needs `num_global_tokens > 0`. When `None`,
            the first `num_global_tokens` positions are global.

    Example:

    A window of 4 tokens on each side, and one global token per sequence
    (the 6th of the first, the 1st of the second):

    >>> layer = LongformerAttention(num_heads=4, window=8, num_global_tokens=1)
    >>> global_mask = np.zeros((2, 100), bool)
    >>> global_mask[0, 5] = global_mask[1, 0] = True
    >>> x = keras.random.normal((2, 100, 64))
    >>> layer(x, global_mask=global_mask).shape
    (2, 100, 64)

    Reference:
        - [Beltagy et al., 2020](https://arxiv.org/abs/2004.05150)
    """

    def __init__(
        self,
        num_heads,
        window=512,
        causal=False,
        dilation=1,
        num_global_tokens=0,
        dropout=0.0,
        recompute_attention=True,
        **kwargs,
    ):
        checks.check_int("window", window)
        if not causal and window % 2:
            raise ValueError(
                "Received an invalid value for argument `window`, expected an "
                "even integer when causal=False (the two-sided window: "
                f"window // 2 tokens on each side), got {window!r}."
            )
        checks.check_int("dilation", dilation)
        checks.check_int("num_global_tokens", num_global_tokens, 0)
        if causal and num_global_tokens:
            raise ValueError(
                "Received an invalid value for argument `num_global_tokens`, "
                "expected 0 when causal=True (global tokens attend the whole "
                "sequence, future included), got "
                f"{num_global_tokens!r}."
            )
        super().__init__(num_heads, **kwargs)
        self.set_dropout(dropout)
        self.causal = causal
        self.window = window
        self.dilation = dilation
        self.num_global_tokens = num_global_tokens
        self.recompute_attention = recompute_attention

    def build(self, input_shape):
        super().build(input_shape)
        if not self.num_global_tokens:
            return
        for name in ("query_global", "key_global", "value_global"):
            self.add_projection(name, input_shape[-1])

    def call(
        self,
        inputs,
        padding_mask=None,
        global_mask=None,
        training=None,
        mask=None,
    ):
        self.check_inputs(inputs, 3, padding_mask)
        inputs, padding_mask = self.mask_inputs(inputs, padding_mask, mask)
        batch, length = inputs.shape[:2]
        checks.check_static_length("inputs", inputs)
        if padding_mask is not None:
            padding_mask = ops.cast(padding_mask, "bool")
        if global_mask is not None:
            if not self.num_global_tokens:
                raise ValueError(
                    "Received a `global_mask` but this layer has "
                    "num_global_tokens=0; build it with num_global_tokens > "
                    "0 (the most global tokens per sequence)."
                )
            checks.check_shape(
                "global_mask", global_mask, (batch, length), "(B, T)"
            )
            global_mask = ops.cast(global_mask, "bool")
        q = self.project(inputs, "query")
        k = self.project(inputs, "key")
        v = self.project(inputs, "value")
        options = dict(
            window=self.window,
            causal=self.causal,
            dilation=self.dilation,
            dropout=self.weights_dropout(training),
        )
        if not self.num_global_tokens:
            o = self._windowed(q, k, v, padding_mask, options, training)
            return self.project_output(o)
        if global_mask is None:
            o = self._first_global(
                inputs, q, k, v, padding_mask, options, training
            )
        else:
            masks = (padding_mask, global_mask)
            o = self._masked_global(inputs, q, k, v, masks, options, training)
        return self.project_output(o)

    def _windowed(
        self,
        q,
        k,
        v,
        key_mask,
        options,
        training,
        global_kv=(),
        global_key_mask=None,
    ):
        def attend(q, k, v, *global_kv):
            keys, values = global_kv or (None, None)
            return sliding_window_attention(
                q,
                k,
                v,
                key_mask=key_mask,
                global_keys=keys,
                global_values=values,
                global_key_mask=global_key_mask,
                **options,
            )

        enabled = self.recompute_attention and options.get("dropout") is None
        return recomputed(attend, enabled)(q, k, v, *global_kv)

    def _global_rows(self, x_global, inputs, padding_mask, training):
        # each global token attends every real token, with the global
        # projections: (B, G, D) -> (B, G, H, K)
        q = self.project(x_global, "query_global")
        k = self.project(inputs, "key_global")
        v = self.project(inputs, "value_global")
        mask = ops.ones((1, 1, 1, inputs.shape[1]), "bool")
        if padding_mask is not None:
            mask = padding_mask[:, None, None, :]
        return self.compute_attention(q, k, v, mask, training)

    def _first_global(self, inputs, q, k, v, padding_mask, options, training):
        # the first G positions are global (but padding never is)
        length = inputs.shape[1]
        num = min(self.num_global_tokens, length)
        is_global = ops.convert_to_tensor(np.arange(length) < num)[None]
        valid = None
        key_mask = ops.logical_not(is_global)
        if padding_mask is not None:
            valid = padding_mask[:, :num]
            key_mask = ops.logical_and(key_mask, padding_mask)
        key_mask = ops.broadcast_to(key_mask, (ops.shape(q)[0], length))
        o = self._windowed(
            q,
            k,
            v,
            key_mask,
            options,
            training,
            global_kv=(k[:, :num], v[:, :num]),
            global_key_mask=valid,
        )
        rows = self._global_rows(
            inputs[:, :num], inputs, padding_mask, training
        )
        if valid is not None:
            rows = ops.where(valid[:, :, None, None], rows, o[:, :num])
        return ops.concatenate([rows, o[:, num:]], axis=1)

    def _masked_global(self, inputs, q, k, v, masks, options, training):
        # the first G marked positions of each row are global: their indices
        # (B, G) by top_k of a score that falls along the sequence
        padding_mask, global_mask = masks
        length = inputs.shape[1]
        num = min(self.num_global_tokens, length)
        if padding_mask is not None:
            global_mask = ops.logical_and(global_mask, padding_mask)
        self._check_global_count(global_mask)
        score = ops.where(global_mask, length - ops.arange(length), 0)
        score, index = ops.top_k(score, num)
        valid = score > 0  # (B, G)
        one_hot = ops.logical_and(
            index[:, :, None] == ops.arange(length)[None, None],
            valid[:, :, None],
        )  # (B, G, T)
        is_global = ops.any(one_hot, axis=1)
        key_mask = ops.logical_not(is_global)
        if padding_mask is not None:
            key_mask = ops.logical_and(key_mask, padding_mask)
        o = self._windowed(
            q,
            k,
            v,
            key_mask,
            options,
            training,
            global_kv=(
                ops.take_along_axis(k, index[:, :, None, None], 1),
                ops.take_along_axis(v, index[:, :, None, None], 1),
            ),
            global_key_mask=valid,
        )
        x_global = ops.take_along_axis(inputs, index[:, :, None], 1)
        rows = self._global_rows(x_global, inputs, padding_mask, training)
        # scatter the G rows to their positions: (B, G, T) x (B, G, H, K)
        rows = ops.einsum("bgt,bghk->bthk", ops.cast(one_hot, rows.dtype), rows)
        return ops.where(is_global[:, :, None, None], rows, o)

    def _check_global_count(self, global_mask):
        counts = ops.sum(ops.cast(global_mask, "int32"), axis=1)
        try:
            counts = ops.convert_to_numpy(counts)
        except (RuntimeError, TypeError):
            # traced (tf.function, jax.jit): the extra ones stay local
            return
        if np.max(counts, initial=0) > self.num_global_tokens:
            row = int(np.argmax(counts))
            raise ValueError(
                "Received an invalid value for argument `global_mask`: row "
                f"{row} has {int(counts[row])} global tokens, more than "
                f"num_global_tokens={self.num_global_tokens}."
            )

    def get_initial_state(self, batch_size, max_length=None):
        """Returns an empty cache of the last `window * dilation + 1` keys
        and values. `max_length` is unused: the cache does not grow."""
        self.check_decodable()
        return self.empty_cache(batch_size, self._cache_size)

    @property
    def _cache_size(self):
        # the keys a causal token's window reaches, itself included
        return self.window * self.dilation + 1

    def step(self, inputs, state):
        """Advances one token: `inputs` (B, D) -> (outputs (B, D), state)."""
        self.check_inputs(inputs, 2)
        size = self._cache_size
        self.check_cache(state, inputs.shape[0], size)
        index = state["index"]
        q = self.project(inputs, "query")[:, None]
        k_new = self.project(inputs, "key")[:, None]
        v_new = self.project(inputs, "value")[:, None]
        # shift the cache left and append: slot j holds token index - offset
        keys = ops.concatenate(
            [state["key"][:, 1:], ops.cast(k_new, state["key"].dtype)], 1
        )
        values = ops.concatenate(
            [state["value"][:, 1:], ops.cast(v_new, state["value"].dtype)], 1
        )
        offset = np.arange(size - 1, -1, -1, dtype="int32")
        dilated = ops.convert_to_tensor(offset % self.dilation == 0)
        mask = ops.logical_and(dilated, ops.convert_to_tensor(offset) <= index)
        outputs = self.compute_attention(
            q, keys, values, mask[None, None, None, :], training=False
        )
        outputs = self.project_output(outputs[:, 0])
        return outputs, {"key": keys, "value": values, "index": index + 1}

    def prefill(self, inputs, state=None, length=None, max_length=None):
        """Runs a prompt `(B, T, D)` in one pass: `(outputs (B, T, D),
        state)`, the state the cache of the last `window * dilation + 1`
        keys and values (see `SequenceLayer`)."""
        self.check_inputs(inputs, 3)
        checks.check_static_length("inputs", inputs)
        state, fresh = self.prefill_state(inputs, state, max_length)
        size = self._cache_size
        self.check_cache(state, inputs.shape[0], size)
        q = self.project(inputs, "query")
        k = self.project(inputs, "key")
        v = self.project(inputs, "value")
        # the cache, then the prompt: row r holds token index - size + r
        keys = ops.concatenate(
            [state["key"], ops.cast(k, state["key"].dtype)], 1
        )
        values = ops.concatenate(
            [state["value"], ops.cast(v, state["value"].dtype)], 1
        )
        if fresh:
            # nothing before the prompt: `call`'s banded attention over it
            options = dict(
                window=self.window, causal=True, dilation=self.dilation
            )
            outputs = self._windowed(q, k, v, None, options, training=False)
        else:
            steps = inputs.shape[1]
            index = state["index"]
            query_at = index + ops.arange(steps, dtype="int32")
            key_at = index - size + ops.arange(size + steps, dtype="int32")
            gap = query_at[:, None] - key_at[None, :]
            mask = ops.logical_and(gap >= 0, gap < size)
            mask = ops.logical_and(mask, gap % self.dilation == 0)
            mask = ops.logical_and(mask, key_at[None, :] >= 0)
            outputs = self.compute_attention(
                q, keys, values, mask[None, None], False
            )
        count = inputs.shape[1] if length is None else length
        count = ops.cast(count, "int32")
        # the `size` rows before token index + count
        shape = (ops.shape(keys)[0], size, self.num_heads, self._head_dim)
        new_state = {
            "key": ops.slice(keys, (0, count, 0, 0), shape),
            "value": ops.slice(values, (0, count, 0, 0), shape),
            "index": state["index"] + count,
        }
        return self.project_output(outputs), new_state
