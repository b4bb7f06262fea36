import keras

from kerasseq.layers.sequence_layer import init_arguments


class Task(keras.Model):
    """Base of the task heads: a functional model around a backbone.

    Subclasses build their layers and outputs in `__init__`, call
    `super().__init__(inputs=..., outputs=...)` with the backbone's inputs
    (or inputs of their own, as `DualEncoderClassifier` has for its two
    sequences), and keep each argument of their `__init__` in the
    attribute of the same name (or of the name `_config_attributes` maps
    it to). `get_config` is written once, here, as `SequenceLayer`'s is:
    the backbone serialized, and every other named argument of the
    subclass's `__init__` read from its attribute.
    """

    # argument name -> attribute name, where they differ
    _config_attributes = {}

    def _check_backbone(self, backbone):
        from kerasseq.models.sequence_backbone import SequenceBackbone

        if not isinstance(backbone, SequenceBackbone):
            raise ValueError(
                "Received an invalid value for argument `backbone`, expected "
                f"a kerasseq SequenceBackbone, got {type(backbone).__name__}."
            )

    def _check_causal(self, backbone):
        """Raises `ValueError` unless every block's mixer reports itself
        causal (a model that predicts the next token must not read it)."""
        for i, block in enumerate(backbone.blocks):
            if not getattr(block.mixer, "causal", True):
                raise ValueError(
                    f"{type(self).__name__} needs a backbone of causal "
                    f"mixers, but block {i}'s {type(block.mixer).__name__} "
                    "reads later steps (causal=False): it would see the "
                    "tokens it predicts."
                )

    def get_config(self):
        config = {
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "name": self.name,
            "trainable": self.trainable,
        }
        for name in init_arguments(type(self), base=Task):
            if name != "backbone":
                attribute = self._config_attributes.get(name, name)
                config[name] = getattr(self, attribute)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(
            config["backbone"]
        )
        return cls(**config)
