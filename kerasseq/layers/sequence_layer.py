import inspect

import keras
from keras import ops

from kerasseq.ops import checks


class SequenceLayer(keras.layers.Layer):
    """The base of kerasseq's layers over sequences `(batch, seq_len, dim)`.

    What a Keras user expects of a sequence layer, kept in one place:

    - Keras's implicit mask (from `keras.layers.Embedding(mask_zero=True)`
      or `keras.layers.Masking`) is honoured exactly as an explicit
      `padding_mask`, and passed on to the next layer (the output keeps the
      time axis);
    - masked steps are zeroed on the way in, so that whatever they hold (a
      NaN included) never reaches a real step;
    - inputs that are not one tensor (a dict of token ids, say) are refused
      with a message saying what the layer takes.

    Every layer is called the same way, `layer(inputs, padding_mask=None,
    training=None)`, and returns a tensor of the input's shape:

    - `inputs`: float tensor `(batch_size, seq_len, hidden_dim)`;
    - `padding_mask`: optional boolean tensor `(batch_size, seq_len)`,
      `True` at real tokens (Keras's implicit mask serves as one);
    - `training`: bool, whether dropout (where the layer has any) is
      active.

    Each layer's docstring says what padding does in it, and names any
    call argument of its own. Subclasses call `mask_inputs` first in
    `call(inputs, padding_mask=None, ..., mask=None)`; Keras fills `mask`.

    `get_config` is written once, here: it saves every named argument of
    the `__init__` of the class and of its bases (as scikit-learn's
    `get_params` does), read from the attribute of the same name, which
    each subclass sets; Keras objects (initializers, a mixer layer) are
    serialized. A subclass overrides it only to save something else.

    A causal layer that decodes token by token has three more methods:

    - `get_initial_state(batch_size, max_length=None)`: the state before
      the first token (`max_length`: the size of a key/value cache;
      recurrent layers ignore it).
    - `step(x_t, state)`: one token `(batch_size, dim)` -> `(y_t, state)`.
    - `prefill(inputs, state=None, length=None, max_length=None)`: a
      whole prompt `(batch_size, seq_len, dim)` -> `(outputs, state)`, in
      one parallel (or chunked) pass with the kernels of `call`, never a
      loop of `step`. `outputs` are `call`'s outputs on the prompt, and
      `state` is what `step` would hold after stepping through it from
      `state` (from `get_initial_state(batch_size, max_length)` when
      `None`; `max_length` then defaults to `seq_len`): an attention
      layer's cache filled at the prompt's positions, a recurrence's last
      state (and its short convolutions' last inputs). With `length` (an
      int or scalar int tensor) only the first `length` steps are real
      and the rest right padding: the outputs at real steps and the state
      after the `length`-th step are exactly those of the unpadded prompt,
      so prompts padded to a few bucket lengths share one compiled
      program. A key/value cache must hold the state's tokens plus
      `seq_len`.
    """

    # whether step t reads steps up to t only; the recurrent layers always
    # do, the attention layers say so with their `causal` argument, and
    # `CausalLM` refuses a mixer that does not
    causal = True

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def set_scan_options(self, mode, chunk_size, modes=checks.MODES):
        """Checks and keeps `mode` (one of `modes`) and `chunk_size` (a
        positive int): the options a layer passes on to its
        `kerasseq.ops` kernel (see kerasseq/ops/README.md)."""
        checks.check_choice("mode", mode, modes)
        checks.check_int("chunk_size", chunk_size)
        self.mode = mode
        self.chunk_size = chunk_size

    def __call__(self, inputs, *args, **kwargs):
        if isinstance(inputs, (dict, list, tuple)):
            kind = (
                f"a dict with keys {sorted(inputs)}"
                if isinstance(inputs, dict)
                else f"a {type(inputs).__name__} of {len(inputs)}"
            )
            raise ValueError(
                f"{type(self).__name__} takes one float tensor (batch_size, "
                f"seq_len, features) and an optional `padding_mask`, got "
                f"{kind}. Token ids are embedded first: "
                "kerasseq.models.SequenceBackbone(mixer=...) does it, or "
                "keras.layers.Embedding(..., mask_zero=True) in front of "
                "this layer."
            )
        return super().__call__(inputs, *args, **kwargs)

    def mask_inputs(self, inputs, padding_mask=None, mask=None):
        """The padding mask to use (`padding_mask`, else Keras's implicit
        `mask`, else `None`) and `inputs` with its masked steps zeroed.

        Raises:
            ValueError: a mask that is not `(batch_size, seq_len)`.
        """
        if padding_mask is None:
            padding_mask = mask
        if padding_mask is None:
            return inputs, None
        checks.check_shape(
            "padding_mask", padding_mask, tuple(inputs.shape[:2])
        )
        padding_mask = ops.cast(padding_mask, "bool")
        zeros = ops.zeros_like(inputs)
        return ops.where(padding_mask[..., None], inputs, zeros), padding_mask

    def compute_mask(self, inputs, mask=None):
        return mask

    def get_config(self):
        config = super().get_config()
        for name in init_arguments(type(self)):
            value = getattr(self, name)
            if hasattr(value, "get_config"):
                value = keras.saving.serialize_keras_object(value)
            config[name] = value
        return config


def init_arguments(cls, base=None):
    """The named arguments of `cls.__init__` and of the `__init__` of its
    bases up to `base` (default `SequenceLayer`), in that order (not
    `*args`, `**kwargs`)."""
    base = base or SequenceLayer
    names = []
    for klass in cls.__mro__:
        if klass is base:
            break
        if "__init__" not in vars(klass):
            continue
        signature = inspect.signature(vars(klass)["__init__"])
        for name, parameter in list(signature.parameters.items())[1:]:
            named = parameter.kind not in (
                parameter.VAR_POSITIONAL,
                parameter.VAR_KEYWORD,
            )
            if named and name not in names:
                names.append(name)
    return names


def state_or_initial(layer, inputs, state):
    """`state`, or where it is `None` the recurrent `layer`'s initial state
    for the batch of `inputs` `(B, T, ...)` (`B` may be known only when
    the function runs)."""
    if state is not None:
        return state
    batch = inputs.shape[0]
    if batch is None:
        batch = ops.shape(inputs)[0]
    return layer.get_initial_state(batch)


def real_steps(length, seq_len):
    """`None` when `length` is `None` (every step real), else a boolean
    `(seq_len,)` tensor, `True` at the first `length` steps."""
    if length is None:
        return None
    return ops.arange(seq_len, dtype="int32") < ops.cast(length, "int32")


def state_after(h, length=None):
    """The step `length - 1` of `h` `(B, T, ...)` (the last one when
    `length` is `None`): a recurrence's state after a right-padded
    prompt."""
    if length is None:
        return h[:, -1]
    index = ops.cast(length, "int32") - 1
    return ops.take(h, index, axis=1)


def add_float32_weight(layer, name, shape, initializer):
    """Adds to `layer` a weight stored and read in float32 whatever the
    dtype policy (`autocast=False`): a recurrence's eigenvalues and step
    sizes, which bfloat16 would round."""
    return layer.add_weight(
        name=name,
        shape=shape,
        initializer=initializer,
        dtype="float32",
        autocast=False,
    )


def fresh_initializer(initializer):
    """A new instance of a Keras initializer with the same config: one
    unseeded instance reused for several weights would give them all the
    same values."""
    return initializer.__class__.from_config(initializer.get_config())
