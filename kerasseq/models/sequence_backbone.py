import keras

from kerasseq.layers.position_embedding import PositionEmbedding
from kerasseq.layers.residual_block import ResidualBlock
from kerasseq.layers.residual_block import make_norm
from kerasseq.layers.residual_block import mixer_layer
from kerasseq.layers.token_embedding import TokenEmbedding
from kerasseq.ops.checks import check_choice
from kerasseq.ops.checks import check_int

POSITION_EMBEDDINGS = ("learned", "none")


def _embedding_initializer(hidden_dim):
    # token and position tables on the same scale, 1/sqrt(hidden_dim): large
    # enough that token identity is not drowned by the first blocks' outputs
    # in the residual stream (GPT-2's 0.02 left a 64-wide GPT stuck on MQAR
    # for most seeds), small enough that tied output logits start near unit
    # scale
    return keras.initializers.RandomNormal(stddev=hidden_dim**-0.5)


def _clone_layer(layer, name):
    config = layer.get_config()
    config["name"] = name
    return layer.__class__.from_config(config)


@keras.saving.register_keras_serializable(package="kerasseq")
class SequenceBackbone(keras.Model):
    """A stack of residual blocks around one kind of token mixer.

    Embeds token ids (or projects continuous features), adds learned
    position embeddings if asked, runs `num_layers` residual blocks of
    mixer + MLP (pre-norm by default), and applies a final norm. Every model
    in kerasseq is this backbone with a different mixer and a task head on
    top. The block and norm options cover the pretrained Transformers
    `kerasseq.pretrained` loads: GPT-2 (the defaults), GPT-NeoX (parallel
    blocks), Mamba (RMS norms, no MLP) and BERT-style encoders (post-norm
    blocks, a norm on the embeddings and none at the end).

    The mixer is passed as a layer instance that serves as a template: each
    block gets its own copy built from the template's config.

    Args:
        mixer: a token-mixer layer (e.g. `kerasseq.layers.SoftmaxAttention`)
            or its serialized config.
        num_layers: int. Number of residual blocks.
        hidden_dim: int. Width of the residual stream.
        vocabulary_size: int. Number of token ids; give this or
            `feature_dim`.
        feature_dim: int. Width of continuous input features (pixel tasks).
        max_sequence_length: int. Positions of the learned position
            embedding; required when `position_embedding="learned"`.
        position_embedding: `"learned"` or `"none"`.
        mlp_ratio: float. MLP width as a multiple of `hidden_dim`.
        dropout: float. Dropout on embeddings and residual branches.
        layer_norm_epsilon: float.
        block_type: `"pre_norm"`, `"parallel"` or `"post_norm"` (see
            `kerasseq.layers.ResidualBlock`).
        normalization: `"layer_norm"` or `"rms_norm"`, for every norm.
        activation: the MLP's activation (`"gelu"`, `"gelu_approximate"`,
            `"relu"`, ...).
        embedding_norm: bool. Normalise the summed embeddings (BERT).
        final_norm: bool. Normalise the last block's output (pre-norm and
            parallel stacks; a post-norm stack ends normalised already).
        dtype: dtype or `keras.DTypePolicy` of every layer.
        **kwargs: other keyword arguments of `keras.Model`.

    Call arguments:
        inputs: dict with `"token_ids"` int `(batch_size, seq_len)` (or
            `"features"` float `(batch_size, seq_len, feature_dim)`) and
            `"padding_mask"` bool `(batch_size, seq_len)`.

    Returns:
        Tensor `(batch_size, seq_len, hidden_dim)`.

    Example:

    >>> backbone = SequenceBackbone(
    ...     mixer=kerasseq.layers.SoftmaxAttention(num_heads=4),
    ...     num_layers=2, hidden_dim=64, vocabulary_size=100,
    ...     max_sequence_length=32)
    >>> backbone({"token_ids": np.ones((2, 8), "int32"),
    ...           "padding_mask": np.ones((2, 8), "bool")}).shape
    (2, 8, 64)
    """

    def __init__(
        self,
        mixer,
        num_layers,
        hidden_dim,
        vocabulary_size=None,
        feature_dim=None,
        max_sequence_length=None,
        position_embedding="learned",
        mlp_ratio=4,
        dropout=0.0,
        layer_norm_epsilon=1e-5,
        block_type="pre_norm",
        normalization="layer_norm",
        activation="gelu",
        embedding_norm=False,
        final_norm=True,
        dtype=None,
        **kwargs,
    ):
        check_int("num_layers", num_layers)
        check_int("hidden_dim", hidden_dim)
        check_int("vocabulary_size", vocabulary_size, allow_none=True)
        check_int("feature_dim", feature_dim, allow_none=True)
        check_choice(
            "position_embedding", position_embedding, POSITION_EMBEDDINGS
        )
        if (vocabulary_size is None) == (feature_dim is None):
            raise ValueError(
                "Exactly one of `vocabulary_size` (token inputs) and "
                "`feature_dim` (continuous inputs) must be set, got "
                f"vocabulary_size={vocabulary_size!r}, "
                f"feature_dim={feature_dim!r}."
            )
        if position_embedding == "learned":
            check_int("max_sequence_length", max_sequence_length)
        mixer = mixer_layer(mixer)

        # === layers ===
        if vocabulary_size is not None:
            self.token_embedding = TokenEmbedding(
                vocabulary_size,
                hidden_dim,
                embeddings_initializer=_embedding_initializer(hidden_dim),
                dtype=dtype,
                name="token_embedding",
            )
        else:
            self.feature_projection = keras.layers.Dense(
                hidden_dim, dtype=dtype, name="feature_projection"
            )
        self.position_embedding = None
        if position_embedding == "learned":
            self.position_embedding = PositionEmbedding(
                max_sequence_length,
                initializer=_embedding_initializer(hidden_dim),
                dtype=dtype,
                name="position_embedding",
            )
        self.embedding_norm = None
        if embedding_norm:
            self.embedding_norm = make_norm(
                normalization, layer_norm_epsilon, dtype, "embedding_norm"
            )
        self.embedding_dropout = keras.layers.Dropout(
            dropout, dtype=dtype, name="embedding_dropout"
        )
        self.blocks = [
            ResidualBlock(
                _clone_layer(mixer, f"mixer_{i}"),
                mlp_ratio=mlp_ratio,
                activation=activation,
                dropout=dropout,
                layer_norm_epsilon=layer_norm_epsilon,
                block_type=block_type,
                normalization=normalization,
                dtype=dtype,
                name=f"block_{i}",
            )
            for i in range(num_layers)
        ]
        # mixers that share weights across layers (Linformer's layerwise
        # projection) take them from the first block's
        for block in self.blocks[1:]:
            share = getattr(block.mixer, "share_weights_with", None)
            if share is not None:
                share(self.blocks[0].mixer)
        self.final_norm = None
        if final_norm:
            self.final_norm = make_norm(
                normalization, layer_norm_epsilon, dtype, "final_norm"
            )

        # === functional model ===
        if vocabulary_size is not None:
            token_ids = keras.Input(
                shape=(None,), dtype="int32", name="token_ids"
            )
            inputs = {"token_ids": token_ids}
        else:
            features = keras.Input(
                shape=(None, feature_dim), dtype="float32", name="features"
            )
            inputs = {"features": features}
        padding_mask = keras.Input(
            shape=(None,), dtype="bool", name="padding_mask"
        )
        inputs["padding_mask"] = padding_mask
        x = self._embed(inputs, start=0)
        x = self.embedding_dropout(x)
        for block in self.blocks:
            x = block(x, padding_mask=padding_mask)
        outputs = self._finish(x)
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)

        # === config ===
        # the mixer the blocks copied, kept for `get_config` only and out of
        # Keras's tracking: a tracked layer that is never called stays
        # unbuilt, and Keras then takes the model as unbuilt and runs it
        # eagerly (JAX's `predict_on_batch`) or traces it symbolically
        # (`train_on_batch`) before every call
        object.__setattr__(self, "_mixer_template", mixer)
        self.num_layers = num_layers
        self.hidden_dim = hidden_dim
        self.vocabulary_size = vocabulary_size
        self.feature_dim = feature_dim
        self.max_sequence_length = max_sequence_length
        self.position_embedding_type = position_embedding
        self.mlp_ratio = mlp_ratio
        self.dropout = dropout
        self.layer_norm_epsilon = layer_norm_epsilon
        self.block_type = block_type
        self.normalization = normalization
        self.activation = activation
        self.use_embedding_norm = embedding_norm
        self.use_final_norm = final_norm

    @property
    def mixer(self):
        """The first block's mixer (every block holds a copy of the same
        configuration, named `mixer_{i}`)."""
        return self.blocks[0].mixer

    def _finish(self, x):
        return x if self.final_norm is None else self.final_norm(x)

    def _embed(self, inputs, start):
        if "token_ids" in inputs:
            x = self.token_embedding(inputs["token_ids"])
        else:
            x = self.feature_projection(inputs["features"])
        if self.position_embedding is not None:
            x = x + self.position_embedding(x, start=start)
        if self.embedding_norm is not None:
            x = self.embedding_norm(x)
        return x

    @property
    def token_inputs(self):
        """Whether the backbone takes token ids (else continuous features)."""
        return self.vocabulary_size is not None

    def get_initial_state(self, batch_size, max_length=None):
        """Returns the decoding state of every block, as a list.

        Args:
            batch_size: int.
            max_length: int. Longest sequence the state must hold (the size
                of attention key/value caches; recurrent mixers ignore it).
                Defaults to `max_sequence_length`.
        """
        if max_length is None:
            max_length = self.max_sequence_length
        return [
            block.get_initial_state(batch_size, max_length=max_length)
            for block in self.blocks
        ]

    def step(self, inputs, position, states):
        """Runs one token through every block.

        Args:
            inputs: token ids `(batch_size,)`, or features
                `(batch_size, feature_dim)`.
            position: int or scalar int tensor, the token's position.
            states: list from `get_initial_state` or a previous `step`.

        Returns:
            `(hidden, states)`: the backbone's output `(batch_size,
            hidden_dim)` and the new states.
        """
        key = "token_ids" if self.token_inputs else "features"
        x = self._embed({key: inputs[:, None]}, start=position)[:, 0]
        new_states = []
        for block, state in zip(self.blocks, states, strict=True):
            x, state = block.step(x, state)
            new_states.append(state)
        return self._finish(x), new_states

    @property
    def can_prefill(self):
        """Whether every block's mixer has `prefill` (every kerasseq mixer
        that steps has)."""
        return all(hasattr(block.mixer, "prefill") for block in self.blocks)

    def prefill(
        self, inputs, states=None, position=0, length=None, max_length=None
    ):
        """Runs a prompt through every block in one pass, with each
        mixer's `prefill` (its parallel form), for `step` to continue.

        Args:
            inputs: token ids `(batch_size, seq_len)`, or features
                `(batch_size, seq_len, feature_dim)`.
            states: list from `get_initial_state`, `step` or `prefill`;
                `None` for `get_initial_state(batch_size, max_length)`.
            position: int or scalar int tensor, the position of the first
                token (the number of tokens `states` hold).
            length: optional int or scalar int tensor: only the first
                `length` tokens are real, the rest right padding whose
                outputs are undefined; the states are those after the
                `length`-th token.
            max_length: int, the size of attention caches when `states`
                is `None`; defaults to `max_sequence_length`, or to
                `seq_len` without a position table.

        Returns:
            `(hidden, states)`: the backbone's outputs `(batch_size,
            seq_len, hidden_dim)`, as `call` gives them for the prompt,
            and the states `step` would hold after it.
        """
        key = "token_ids" if self.token_inputs else "features"
        x = self._embed({key: inputs}, start=position)
        if states is None:
            # each mixer starts from its initial state: attention then
            # attends within the prompt only, as `call` does
            states = [None] * len(self.blocks)
            if max_length is None:
                max_length = self.max_sequence_length or inputs.shape[1]
        new_states = []
        for block, state in zip(self.blocks, states, strict=True):
            x, state = block.prefill(
                x, state, length=length, max_length=max_length
            )
            new_states.append(state)
        return self._finish(x), new_states

    def get_config(self):
        return {
            "mixer": keras.saving.serialize_keras_object(self._mixer_template),
            "num_layers": self.num_layers,
            "hidden_dim": self.hidden_dim,
            "vocabulary_size": self.vocabulary_size,
            "feature_dim": self.feature_dim,
            "max_sequence_length": self.max_sequence_length,
            "position_embedding": self.position_embedding_type,
            "mlp_ratio": self.mlp_ratio,
            "dropout": self.dropout,
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "block_type": self.block_type,
            "normalization": self.normalization,
            "activation": self.activation,
            "embedding_norm": self.use_embedding_norm,
            "final_norm": self.use_final_norm,
            "dtype": keras.dtype_policies.serialize(self.dtype_policy),
            "name": self.name,
            "trainable": self.trainable,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config.get("dtype"), dict):
            config["dtype"] = keras.dtype_policies.deserialize(config["dtype"])
        return cls(**config)


def ensure_positions_fit(backbone, seq_len):
    """Raises `ValueError` if `seq_len` exceeds the position table."""
    limit = backbone.max_sequence_length
    if backbone.position_embedding is not None and seq_len > limit:
        raise ValueError(
            f"Received sequences of length {seq_len}, but the backbone's "
            f"learned position embedding holds max_sequence_length={limit} "
            "positions. Build the model with a larger max_sequence_length."
        )
