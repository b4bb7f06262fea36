import keras
import numpy as np
from keras import ops

from kerasseq.layers.token_embedding import TokenEmbedding
from kerasseq.models.generation import Sampler
from kerasseq.models.generation import cache_length
from kerasseq.models.generation import check_generate_args
from kerasseq.models.generation import prefill_length
from kerasseq.models.generation import step_through
from kerasseq.models.task import Task
from kerasseq.ops.dispatch import compile_function


@keras.saving.register_keras_serializable(package="kerasseq")
class CausalLM(Task):
    """Predicts the next token at every position; generates text.

    The logits reuse the token embedding table (tied input and output
    embeddings, as GPT-2 and Mamba), or with `tie_embeddings=False` come
    from an output table of their own (`output_embedding`, as GPT-NeoX /
    Pythia). `generate` runs the prompt in one pass with the backbone's
    `prefill` (each mixer's parallel form), then decodes with its `step`,
    so a recurrent mixer keeps constant memory per generated token and an
    attention mixer fills a key/value cache.

    Args:
        backbone: a `kerasseq.models.SequenceBackbone` over token ids whose
            mixers are causal.
        tie_embeddings: bool. Whether the output logits use the token
            embedding table.
        **kwargs: other keyword arguments of `keras.Model`.

    Call arguments:
        inputs: the backbone's input dict.

    Returns:
        Logits `(batch_size, seq_len, vocabulary_size)`, float32.

    Example:

    >>> model = kerasseq.models.build_model("gpt", "causal_lm", "tiny",
    ...                                     vocabulary_size=50)
    >>> model.generate(np.ones((1, 4), "int32"), max_new_tokens=3).shape
    (1, 7)
    """

    def __init__(self, backbone, tie_embeddings=True, **kwargs):
        self._check_backbone(backbone)
        self._check_causal(backbone)
        if not backbone.token_inputs:
            raise ValueError(
                "CausalLM needs a backbone over token ids, got one over "
                f"continuous features (feature_dim={backbone.feature_dim})."
            )

        # === layers ===
        self.backbone = backbone
        self.output_embedding = None
        if not tie_embeddings:
            self.output_embedding = TokenEmbedding(
                backbone.vocabulary_size,
                backbone.hidden_dim,
                embeddings_initializer=keras.initializers.RandomNormal(
                    stddev=backbone.hidden_dim**-0.5
                ),
                dtype=backbone.dtype_policy,
                name="output_embedding",
            )

        # === functional model ===
        inputs = backbone.input
        x = backbone(inputs)
        outputs = self._logits(x)
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        self.tie_embeddings = tie_embeddings
        self._step_function = None
        self._prefill_function = None
        self._decode_function = None

    def _step(self, token_ids, position, states):
        hidden, states = self.backbone.step(token_ids, position, states)
        return self._logits(hidden), states

    def _decode(
        self, logits, states, start, num_tokens, seed, temperature, size, greedy
    ):
        """The new tokens `(batch_size, size)` after the prompt: the whole
        decoding loop, compiled as one program (`Sampler.loop`)."""
        sampler = Sampler(0.0 if greedy else temperature, seed=0)
        return sampler.loop(
            self._step, logits, states, start, num_tokens, seed, size
        )

    def _prefill(self, token_ids, length, max_length):
        """The logits after the `length`-th token of the right-padded
        prompts `token_ids`, and the states after it."""
        hidden, states = self.backbone.prefill(
            token_ids, length=length, max_length=max_length
        )
        last = ops.take(hidden, ops.cast(length, "int32") - 1, axis=1)
        return self._logits(last), states

    def _logits(self, hidden):
        table = self.output_embedding or self.backbone.token_embedding
        return table(hidden, reverse=True)

    def generate(self, token_ids, max_new_tokens, temperature=0.0, seed=None):
        """Continues each prompt by `max_new_tokens` tokens.

        The prompt runs in one compiled call of the backbone's `prefill`,
        padded on the right to a bucket length (`prefill_length`: powers
        of two from 16), exactly: padding reaches neither the real tokens
        nor the states. The new tokens come from one compiled loop of the
        backbone's `step` (`generation.Sampler.loop`), with key/value
        caches of a bucket length too (`cache_length`), as is the number
        of new tokens the loop's program holds. XLA thus compiles the
        prefill once per (prompt bucket, cache bucket) and the loop once
        per (cache bucket, new-token bucket, greedy or not), whatever the
        lengths within them. A backbone whose mixers have no `prefill`
        steps through the prompt instead. The tokens are those of decoding
        the prompt token by token with `step` and the sampler's Python
        loop.

        Args:
            token_ids: int array `(batch_size, prompt_len)`, prompts of equal
                length (no padding), prompt_len >= 1.
            max_new_tokens: int. Tokens to append.
            temperature: float. 0 decodes greedily; above 0 samples from
                `softmax(logits / temperature)`.
            seed: int, for sampling.

        Returns:
            int32 array `(batch_size, prompt_len + max_new_tokens)`.
        """
        token_ids = check_generate_args(token_ids, max_new_tokens, temperature)
        batch_size, prompt_len = token_ids.shape
        total = prompt_len + max_new_tokens
        backbone = self.backbone
        if backbone.position_embedding is not None:
            if total > backbone.max_sequence_length:
                raise ValueError(
                    f"Cannot generate {total} tokens (prompt {prompt_len} + "
                    f"{max_new_tokens} new): the position embedding holds "
                    f"max_sequence_length={backbone.max_sequence_length}."
                )
        if self._step_function is None:
            self._step_function = compile_function(
                self._step, variables=self.variables
            )
            self._decode_function = compile_function(
                self._decode, variables=self.variables
            )
        sampler = Sampler(temperature, seed)
        # attention caches are masked past the current position, so a cache
        # longer than `total` decodes the same tokens
        max_length = cache_length(total, backbone.max_sequence_length)

        def step(next_ids, index, states):
            position = ops.convert_to_tensor(index, dtype="int32")
            return self._step_function(next_ids, position, states)

        if backbone.can_prefill:
            if self._prefill_function is None:
                # one program per padded prompt length: the scan kernels
                # need the length static
                self._prefill_function = compile_function(
                    self._prefill, relax_shapes=False, variables=self.variables
                )
            padded = prefill_length(prompt_len, max_length)
            logits, states = self._prefill_function(
                ops.pad(token_ids, [[0, 0], [0, padded - prompt_len]]),
                ops.convert_to_tensor(prompt_len, dtype="int32"),
                max_length,
            )
        else:
            states = backbone.get_initial_state(
                batch_size, max_length=max_length
            )
            logits, states = step_through(step, token_ids, states)
        if max_new_tokens == 0:
            return ops.convert_to_numpy(token_ids)
        size = cache_length(max_new_tokens)
        new = self._decode_function(
            logits,
            states,
            *(
                ops.convert_to_tensor(x, dtype="int32")
                for x in (prompt_len, max_new_tokens, sampler.seed)
            ),
            ops.convert_to_tensor(temperature, dtype="float32"),
            size,
            sampler.greedy,
        )
        new = ops.convert_to_numpy(new)[:, :max_new_tokens]
        return np.concatenate([ops.convert_to_numpy(token_ids), new], axis=1)
