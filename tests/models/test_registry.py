import json

import pytest

from kerasseq.layers import LSTM
from kerasseq.models import MODEL_NAMES
from kerasseq.models import PRESETS
from kerasseq.models import ModelConfig
from kerasseq.models import SequenceBackbone
from kerasseq.models import build_model
from kerasseq.models import count_parameters
from kerasseq.models import model_config


@pytest.mark.parametrize(
    "preset",
    # base builds every model at width 512 (~30 s): `large`
    [p if p != "base" else pytest.param(p, marks=pytest.mark.large)
     for p in PRESETS],
)  # fmt: skip
def test_parameter_counts_match_across_models(preset):
    counts = {}
    for name in MODEL_NAMES:
        model = build_model(
            name,
            "token_classification",
            preset,
            vocabulary_size=64,
            num_classes=8,
            max_sequence_length=128,
        )
        counts[name] = count_parameters(model)
    print(preset, counts)
    reference = counts["gpt"]["non_embedding"]
    for name, count in counts.items():
        assert abs(count["non_embedding"] - reference) <= 0.1 * reference, name
        assert count["total"] == count["embedding"] + count["non_embedding"]


def test_overrides_reach_each_part():
    model = build_model(
        "gpt",
        "sequence_classification",
        "tiny",
        vocabulary_size=10,
        num_classes=5,
        num_layers=3,
        num_heads=2,
        pooling="first",
        max_sequence_length=7,
    )
    assert model.backbone.num_layers == 3
    assert model.backbone.blocks[0].mixer.num_heads == 2
    assert model.pooling == "first"
    assert model.num_classes == 5
    assert model.backbone.max_sequence_length == 7


def test_a_part_dict_sets_that_part_only():
    # `dropout` alone is the backbone's; the head's is head={"dropout": ...}
    config = model_config(
        "gpt",
        "sequence_classification",
        "tiny",
        vocabulary_size=10,
        num_classes=2,
        dropout=0.1,
        head={"dropout": 0.3},
    )
    assert config.backbone["dropout"] == 0.1
    assert config.head["dropout"] == 0.3
    model = config.build()
    assert model.backbone.dropout == 0.1
    assert model.dropout == 0.3
    with pytest.raises(ValueError, match=r"\['head=heads'\]"):
        model_config("gpt", "causal_lm", head={"heads": 2})


def test_the_config_is_what_is_built_and_survives_json():
    config = model_config(
        "mamba", "token_classification", "tiny", vocabulary_size=7,
        num_classes=3, state_size=4,
    )  # fmt: skip
    again = ModelConfig(**json.loads(json.dumps(config.to_dict())))
    assert again == config
    model = again.build()
    assert model.backbone.blocks[0].mixer.state_size == 4
    assert model.count_params() == build_model(
        "mamba", "token_classification", "tiny", vocabulary_size=7,
        num_classes=3, state_size=4,
    ).count_params()  # fmt: skip
    checkpoint = ModelConfig(**{**config.to_dict(), "checkpoint": {}})
    with pytest.raises(ValueError, match="build_from_checkpoint"):
        checkpoint.build()


def test_causal_models_pool_last_token():
    model = build_model(
        "lstm",
        "sequence_classification",
        "tiny",
        vocabulary_size=10,
        num_classes=2,
    )
    assert model.pooling == "last"
    model = build_model(
        "transformer",
        "sequence_classification",
        "tiny",
        vocabulary_size=10,
        num_classes=2,
    )
    assert model.pooling == "mean"


def test_bad_names_list_the_valid_ones():
    with pytest.raises(ValueError, match="Unknown model 'mamba2'.*gpt.*lstm"):
        build_model("mamba2", "token_classification")
    with pytest.raises(ValueError, match="Unknown task 'qa'.*causal_lm"):
        build_model("gpt", "qa")
    with pytest.raises(ValueError, match="Unknown preset 'huge'.*base.*tiny"):
        build_model("gpt", "causal_lm", "huge")
    with pytest.raises(ValueError, match=r"Unknown argument\(s\) \['heads'\]"):
        build_model("gpt", "causal_lm", vocabulary_size=5, heads=3)
    with pytest.raises(
        ValueError, match="bidirectional and cannot be a causal"
    ):
        build_model("transformer", "causal_lm", vocabulary_size=5)


def test_backbone_rejects_bad_sizes():
    with pytest.raises(ValueError, match="`num_layers`.*got 0"):
        SequenceBackbone(LSTM(), num_layers=0, hidden_dim=8, vocabulary_size=5)
    with pytest.raises(ValueError, match="Exactly one of `vocabulary_size`"):
        SequenceBackbone(LSTM(), num_layers=1, hidden_dim=8)
    with pytest.raises(ValueError, match="`max_sequence_length`.*got None"):
        SequenceBackbone(LSTM(), num_layers=1, hidden_dim=8, vocabulary_size=5)
    with pytest.raises(ValueError, match="`position_embedding`.*got 'rope'"):
        SequenceBackbone(
            LSTM(),
            num_layers=1,
            hidden_dim=8,
            vocabulary_size=5,
            position_embedding="rope",
        )
