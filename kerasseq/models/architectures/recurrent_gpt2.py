"""GPT-2 with a recurrent connection across segments.

After the thesis "Integrating a Recurrent Connection in a Pre-trained
Transformer Model": a (pretrained) GPT-2 reads a long sequence in segments,
and a small recurrent cell carries what it read from one segment to the
next.
"""

import math

import keras
from keras import ops

from kerasseq.layers.sequence_layer import real_steps
from kerasseq.models.generation import Sampler
from kerasseq.models.generation import check_generate_args
from kerasseq.models.generation import prefill_length
from kerasseq.models.generation import step_through
from kerasseq.models.task import Task
from kerasseq.ops.checks import check_choice
from kerasseq.ops.checks import check_int
from kerasseq.ops.dispatch import compile_function

CELLS = ("gru", "lstm")
SUMMARIES = ("mean", "last")


class SegmentRecurrence(keras.layers.Layer):
    """The segment loop of `RecurrentGPT2`: its backbone run segment by
    segment, with the recurrent cell, state projection and gate.

    Built by `RecurrentGPT2` (which serialises the arguments); not meant to
    be used alone.

    Call arguments:
        inputs: dict with `"token_ids"` `(batch_size, seq_len)` and
            `"padding_mask"` `(batch_size, seq_len)`; `seq_len` must be
            static (known when the call runs).

    Returns:
        The backbone's top-layer outputs `(batch_size, seq_len, hidden_dim)`.
    """

    def __init__(
        self,
        backbone,
        segment_length,
        cell,
        state_dim,
        summary,
        bptt_segments,
        **kwargs,
    ):
        super().__init__(dtype=backbone.dtype_policy, **kwargs)
        self.backbone = backbone
        self.segment_length = segment_length
        self.cell_type = cell
        self.state_dim = state_dim
        self.segment_summary = summary
        self.bptt_segments = bptt_segments
        cell_class = keras.layers.GRUCell
        if cell == "lstm":
            cell_class = keras.layers.LSTMCell
        self.cell = cell_class(
            state_dim, dtype=backbone.dtype_policy, name="cell"
        )
        # no bias: a zero state (before the first segment) feeds back zero
        self.state_projection = keras.layers.Dense(
            backbone.hidden_dim,
            use_bias=False,
            dtype=backbone.dtype_policy,
            name="state_projection",
        )

    def build(self, input_shape=None):
        hidden_dim = self.backbone.hidden_dim
        self.cell.build((None, hidden_dim))
        self.state_projection.build((None, self.state_dim))
        # the gate is tanh(gate_alpha) per channel; 0 closes it
        self.gate_alpha = self.add_weight(
            shape=(hidden_dim,), initializer="zeros", name="gate_alpha"
        )
        self.built = True

    # === pieces shared by `call` and generation ===

    def initial_state(self, batch_size):
        """The cell's state before the first segment: zeros."""
        shape = (batch_size, self.state_dim)
        dtype = self.cell.compute_dtype
        count = 2 if self.cell_type == "lstm" else 1
        return [ops.zeros(shape, dtype=dtype) for _ in range(count)]

    def feedback(self, states):
        """The gated input `tanh(alpha) * W h` the next segment's tokens get
        added to their embeddings, `(batch_size, hidden_dim)`."""
        projected = self.state_projection(states[0])
        gate = ops.cast(ops.tanh(self.gate_alpha), projected.dtype)
        return gate * projected

    def update(self, states, summary, has_tokens=None):
        """Advances the cell by one segment's `summary` (float32
        `(batch_size, hidden_dim)`); rows without real tokens
        (`has_tokens` False) keep their state."""
        summary = ops.cast(summary, self.cell.compute_dtype)
        _, new_states = self.cell(summary, list(states))
        if has_tokens is None:
            return list(new_states)
        keep = has_tokens[:, None]
        return [
            ops.where(keep, new, old)
            for new, old in zip(new_states, states, strict=True)
        ]

    def _segment(self, token_ids, padding_mask, feedback, training):
        backbone = self.backbone
        x = backbone._embed({"token_ids": token_ids}, start=0)
        x = x + ops.cast(feedback, x.dtype)[:, None, :]
        x = backbone.embedding_dropout(x, training=training)
        for block in backbone.blocks:
            x = block(x, padding_mask=padding_mask, training=training)
        return backbone._finish(x)

    def _summarize(self, hidden, padding_mask):
        """Summary of a segment's top-layer outputs over its real tokens, and
        whether each row has any."""
        hidden = ops.cast(hidden, "float32")
        weights = ops.cast(padding_mask, "float32")
        if self.segment_summary == "last":
            positions = ops.arange(self.segment_length, dtype="int32")
            index = ops.max(
                positions[None] * ops.cast(padding_mask, "int32"), 1
            )
            weights = ops.one_hot(index, self.segment_length) * weights
        count = ops.sum(weights, axis=1, keepdims=True)
        total = ops.einsum("bl,bld->bd", weights, hidden)
        return total / ops.maximum(count, 1.0), ops.any(padding_mask, axis=1)

    def call(self, inputs, training=None):
        token_ids = inputs["token_ids"]
        padding_mask = ops.cast(inputs["padding_mask"], "bool")
        seq_len = token_ids.shape[1]
        if seq_len is None:
            raise ValueError(
                "RecurrentGPT2 needs a static sequence length to split the "
                "sequence into segments, got token_ids of shape "
                f"{tuple(token_ids.shape)}. Call it on arrays (or tensors "
                "of known length)."
            )
        length = self.segment_length
        num_segments = max(1, math.ceil(seq_len / length))
        pad = num_segments * length - seq_len
        if pad:
            # the last segment is padded: causal attention keeps the real
            # tokens' outputs as they are, the summary skips the padding
            token_ids = ops.pad(token_ids, [[0, 0], [0, pad]])
            padding_mask = ops.cast(
                ops.pad(ops.cast(padding_mask, "int32"), [[0, 0], [0, pad]]),
                "bool",
            )
        states = self.initial_state(ops.shape(token_ids)[0])
        outputs = []
        bptt = self.bptt_segments
        for k in range(num_segments):
            if bptt is not None and k > 0 and k % bptt == 0:
                # truncated backpropagation: a new window of segments
                states = [ops.stop_gradient(s) for s in states]
            ids = token_ids[:, k * length : (k + 1) * length]
            mask = padding_mask[:, k * length : (k + 1) * length]
            hidden = self._segment(ids, mask, self.feedback(states), training)
            outputs.append(hidden)
            if k + 1 < num_segments:
                summary, has_tokens = self._summarize(hidden, mask)
                states = self.update(states, summary, has_tokens)
        hidden = ops.concatenate(outputs, axis=1)
        return hidden[:, :seq_len] if pad else hidden

    def compute_output_spec(self, inputs, training=None):
        batch_size, seq_len = inputs["token_ids"].shape
        return keras.KerasTensor(
            (batch_size, seq_len, self.backbone.hidden_dim),
            dtype=self.compute_dtype,
        )


@keras.saving.register_keras_serializable(package="kerasseq")
class RecurrentGPT2(Task):
    """A GPT-2 that reads long sequences in segments, with a recurrent
    state carried from each segment to the next.

    The sequence is cut into segments of `segment_length` tokens. Each
    segment runs through the backbone on its own: positions restart at 0
    and tokens attend only within their segment. Information crosses
    segments only through a recurrent state: after each segment a
    recurrent cell (GRU, or LSTM) reads a summary of the segment's
    top-layer outputs (the backbone's output, after its final norm: the
    mean over real tokens, or the last real token), and the next segment
    gets `tanh(alpha) * W h` added to its token and position embeddings,
    where `h` is the cell's output, `W` a projection without bias to
    `hidden_dim` and `alpha` a learned per-channel gate.

    `alpha` starts at 0: the gate is closed and the model's logits are
    exactly those of the backbone run on each segment separately, so that
    fine-tuning starts from the pretrained GPT-2. Only `alpha` gets a
    gradient at first (`d tanh(alpha) / d alpha = 1` at 0); once it moves
    off 0, the cell and projection learn too. (A zero-initialised
    projection would close the feedback as well, but then the cell would
    get no gradient until the projection grew, and a per-channel gate lets
    the model open the path for some channels only.)

    Sequences whose length is not a multiple of `segment_length` are padded
    internally to the next multiple (the padding masked out) and the
    logits cut back, so any length works; the length must be static when
    the model runs. `model.fit` with
    `SparseCategoricalCrossentropy(from_logits=True)` trains it as a
    `CausalLM`; the Python loop over segments is unrolled when compiled,
    so compile time grows with the number of segments.

    Args:
        backbone: a `kerasseq.models.SequenceBackbone` over token ids whose
            mixers are causal: GPT-2 (`build_model("gpt2", ...)` or
            `kerasseq.pretrained.from_hf(...).backbone`).
        segment_length: int. Tokens per segment; at most the backbone's
            `max_sequence_length` when it has learned positions.
        cell: `"gru"` (`keras.layers.GRUCell`) or `"lstm"`
            (`keras.layers.LSTMCell`).
        state_dim: int. Units of the cell; defaults to `hidden_dim`.
        summary: `"mean"` of the segment's top-layer outputs over its real
            tokens (`padding_mask`), or `"last"` real token's output.
            Segments without real tokens leave the state unchanged.
        bptt_segments: int or `None`. Truncated backpropagation through
            time: the sequence's segments are taken in windows of
            `bptt_segments`, and the state carried into each window (into
            segments k, 2k, ... for `k = bptt_segments`) is cut from the
            gradient (stop_gradient), so that a segment's loss reaches back
            through the state to the segments of its own window only: at
            most `bptt_segments` segments, its own included. The cell
            learns within windows, so `bptt_segments=1` trains the gate
            and the projection but not the cell (its output never reaches
            a loss with its gradient); use 2 or more to train the cell.
            `None` lets gradients flow through every segment of the
            sequence.
        **kwargs: other keyword arguments of `keras.Model`.

    Call arguments:
        inputs: dict with `"token_ids"` int `(batch_size, seq_len)` and
            `"padding_mask"` bool `(batch_size, seq_len)`.

    Returns:
        Logits `(batch_size, seq_len, vocabulary_size)`, float32 (tied to
        the token embedding table).

    Example:

    >>> backbone = kerasseq.models.build_model(
    ...     "gpt2", "causal_lm", "tiny", vocabulary_size=50,
    ...     max_sequence_length=16).backbone
    >>> model = RecurrentGPT2(backbone, segment_length=8)
    >>> model({"token_ids": np.ones((2, 20), "int32"),
    ...        "padding_mask": np.ones((2, 20), bool)}).shape
    (2, 20, 50)
    """

    # the registry's task this architecture serves (`ModelSpec.architecture`)
    task = "causal_lm"
    # `cell` is the recurrent cell itself; `Task.get_config` saves these
    _config_attributes = {"cell": "cell_type", "summary": "segment_summary"}

    def __init__(
        self,
        backbone,
        segment_length,
        cell="gru",
        state_dim=None,
        summary="mean",
        bptt_segments=None,
        **kwargs,
    ):
        self._check_backbone(backbone)
        if not backbone.token_inputs:
            raise ValueError(
                "RecurrentGPT2 needs a backbone over token ids, got one over "
                f"continuous features (feature_dim={backbone.feature_dim})."
            )
        self._check_causal(backbone)
        check_int("segment_length", segment_length)
        limit = backbone.max_sequence_length
        if backbone.position_embedding is not None and segment_length > limit:
            raise ValueError(
                "Received an invalid value for argument `segment_length`, "
                "expected at most the backbone's max_sequence_length="
                f"{limit} (positions restart in every segment), got "
                f"{segment_length!r}."
            )
        check_choice("cell", cell, CELLS)
        check_int("state_dim", state_dim, allow_none=True)
        check_choice("summary", summary, SUMMARIES)
        check_int("bptt_segments", bptt_segments, allow_none=True)
        if state_dim is None:
            state_dim = backbone.hidden_dim

        # === layers ===
        self.backbone = backbone
        self.recurrence = SegmentRecurrence(
            backbone,
            segment_length=segment_length,
            cell=cell,
            state_dim=state_dim,
            summary=summary,
            bptt_segments=bptt_segments,
            name="recurrence",
        )

        # === functional model ===
        inputs = {
            "token_ids": keras.Input(
                shape=(None,), dtype="int32", name="token_ids"
            ),
            "padding_mask": keras.Input(
                shape=(None,), dtype="bool", name="padding_mask"
            ),
        }
        hidden = self.recurrence(inputs)
        outputs = backbone.token_embedding(hidden, reverse=True)
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)

        # === config ===
        self.segment_length = segment_length
        self.cell_type = cell
        self.state_dim = state_dim
        self.segment_summary = summary
        self.bptt_segments = bptt_segments
        self._step_function = None
        self._advance_function = None
        self._prefill_function = None

    @property
    def cell(self):
        """The recurrent cell (`keras.layers.GRUCell` / `LSTMCell`)."""
        return self.recurrence.cell

    @property
    def state_projection(self):
        """The projection `W` of the cell's output to `hidden_dim`."""
        return self.recurrence.state_projection

    @property
    def gate_alpha(self):
        """The gate's variable: the feedback is scaled by `tanh(alpha)`."""
        return self.recurrence.gate_alpha

    # === generation ===

    def _step(self, token_ids, position, state):
        """One token through the backbone, with the current feedback."""
        backbone = self.backbone
        x = backbone._embed({"token_ids": token_ids[:, None]}, start=position)
        x = x[:, 0] + ops.cast(self.recurrence.feedback(state["cell"]), x.dtype)
        caches = []
        for block, cache in zip(backbone.blocks, state["blocks"], strict=True):
            x, cache = block.step(x, cache)
            caches.append(cache)
        hidden = backbone._finish(x)
        logits = backbone.token_embedding(hidden, reverse=True)
        hidden = ops.cast(hidden, "float32")
        state = {
            "blocks": caches,
            "cell": state["cell"],
            "sum": state["sum"] + hidden,
            "last": hidden,
        }
        return logits, state

    def _prefill(self, token_ids, length, cell_state):
        """The first `length` tokens of a segment (`token_ids`, right
        padded) in one pass with the blocks' `prefill`: the logits after
        the last of them, and the segment's state as `_step` leaves it."""
        backbone = self.backbone
        x = backbone._embed({"token_ids": token_ids}, start=0)
        feedback = self.recurrence.feedback(cell_state)
        x = x + ops.cast(feedback, x.dtype)[:, None, :]
        caches = []
        for block in backbone.blocks:
            x, cache = block.prefill(
                x, length=length, max_length=self.segment_length
            )
            caches.append(cache)
        hidden = ops.cast(backbone._finish(x), "float32")
        last = ops.take(hidden, ops.cast(length, "int32") - 1, axis=1)
        logits = backbone.token_embedding(
            ops.cast(last, backbone.compute_dtype), reverse=True
        )
        real = ops.cast(real_steps(length, token_ids.shape[1]), "float32")
        state = {
            "blocks": caches,
            "cell": cell_state,
            "sum": ops.einsum("t,btd->bd", real, hidden),
            "last": last,
        }
        return logits, state

    def _advance(self, cell_state, summary):
        """The cell's state after a finished segment."""
        return self.recurrence.update(cell_state, summary)

    def _fresh_segment(self, batch_size, cell_state):
        zeros = ops.zeros((batch_size, self.backbone.hidden_dim), "float32")
        caches = self.backbone.get_initial_state(
            batch_size, max_length=self.segment_length
        )
        return {
            "blocks": caches,
            "cell": cell_state,
            "sum": zeros,
            "last": zeros,
        }

    def generate(self, token_ids, max_new_tokens, temperature=0.0, seed=None):
        """Continues each prompt by `max_new_tokens` tokens.

        Each segment of the prompt runs in one compiled pass of the
        blocks' `prefill` (the last one right-padded to a bucket length,
        as `CausalLM.generate` pads), then the new tokens come one `step`
        each (a key/value cache within the segment); when a segment fills
        up, the cell reads its summary, the cache is emptied and positions
        restart at 0 (a backbone whose mixers have no `prefill` steps
        through the prompt instead). Greedy decoding picks the argmax of
        the model's teacher-forced logits. Arguments and result as
        `CausalLM.generate`; the tokens are picked, and the loop run, by
        its `generation.Sampler`.
        """
        token_ids = check_generate_args(token_ids, max_new_tokens, temperature)
        batch_size, prompt_len = token_ids.shape
        if self._step_function is None:
            self._step_function = compile_function(
                self._step, variables=self.variables
            )
            self._advance_function = compile_function(
                self._advance, variables=self.variables
            )
            # one program per padded segment length: the scan kernels and
            # the summary need it static
            self._prefill_function = compile_function(
                self._prefill, relax_shapes=False, variables=self.variables
            )
        sampler = Sampler(temperature, seed)
        length = self.segment_length

        def advance(state):
            # the cell's state after the segment `state` finished
            if self.segment_summary == "mean":
                summary = state["sum"] / float(length)
            else:
                summary = state["last"]
            return self._advance_function(state["cell"], summary)

        def step(next_ids, index, state):
            # a new segment at every multiple of `length`: positions
            # restart at 0, with the cell's state after the last one
            position = index % length
            if position == 0 and index > 0:
                state = self._fresh_segment(batch_size, advance(state))
            position = ops.convert_to_tensor(position, dtype="int32")
            return self._step_function(next_ids, position, state)

        cell_state = self.recurrence.initial_state(batch_size)
        if not self.backbone.can_prefill:
            # a mixer without `prefill`: the prompt token by token
            state = self._fresh_segment(batch_size, cell_state)
            logits, state = step_through(step, token_ids, state)
            return sampler(step, token_ids, logits, state, max_new_tokens)
        # the prompt's segments in one pass each, the last one padded
        start = (prompt_len - 1) // length * length
        for begin in range(0, start, length):
            _, state = self._prefill_function(
                token_ids[:, begin : begin + length],
                ops.convert_to_tensor(length, dtype="int32"),
                cell_state,
            )
            cell_state = advance(state)
        real = prompt_len - start
        padded = prefill_length(real, length)
        logits, state = self._prefill_function(
            ops.pad(token_ids[:, start:], [[0, 0], [0, padded - real]]),
            ops.convert_to_tensor(real, dtype="int32"),
            cell_state,
        )
        return sampler(step, token_ids, logits, state, max_new_tokens)
