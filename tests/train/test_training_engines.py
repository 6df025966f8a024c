"""The engine factory and the shared compaction plan."""

import sys


from evoprune_tf.encodings import FeatureSelection, HeadSpec
from evoprune_tf.train import TrainConfig, make_trainer, plan_head
from evoprune_tf.train.group_rows import power_of_two_chunks as _power_of_two_chunks
from evoprune_tf.train.keras_engine import KerasTrainer
from evoprune_tf.train.numpy_engine import HeadTrainer


def test_factory_picks_the_engine_and_the_plan_is_shared(planted):
    data, informative = planted
    spec = HeadSpec(data.n_features, data.n_classes, (10,))
    masks = FeatureSelection(spec).decode(informative.astype(int))
    keras_trainer = make_trainer(spec, data, TrainConfig(), seed=0)
    numpy_trainer = make_trainer(spec, data, TrainConfig(engine="numpy"), seed=0)
    assert isinstance(keras_trainer, KerasTrainer) and isinstance(numpy_trainer, HeadTrainer)
    assert isinstance(make_trainer(spec, data, TrainConfig(engine="jax"), seed=0), KerasTrainer)  # deprecated alias
    assert keras_trainer.plan(masks).key == plan_head(masks, 64).key
    assert numpy_trainer.plan(masks).key == plan_head(masks, 1).key
    assert plan_head(masks, 4).widths == (8, 12, 3)  # 6 informative -> 8, 10 hidden -> 12, classes unpadded


def test_group_chunks_are_powers_of_two():
    assert [len(c) for c in _power_of_two_chunks(list(range(13)), 32)] == [8, 4, 1]
    assert [len(c) for c in _power_of_two_chunks(list(range(13)), 4)] == [4, 4, 4, 1]


def test_default_path_does_not_import_jax_on_tensorflow():
    if "jax" in sys.modules:
        return  # another test imported it
    import evoprune_tf.train.keras_engine  # noqa: F401

    assert "jax" not in sys.modules
