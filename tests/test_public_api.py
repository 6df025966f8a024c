"""The public API: every exported name resolves, and importing the package stays cheap."""

import subprocess
import sys

import evoprune_tf


def test_every_exported_name_resolves_to_its_module_object():
    for name in evoprune_tf.__all__:
        value = getattr(evoprune_tf, name)
        assert value is not None, name
    assert evoprune_tf.run.__module__ == "evoprune_tf.experiment.run"
    assert evoprune_tf.PopulationEvaluator.__module__ == "evoprune_tf.evaluation"
    assert isinstance(evoprune_tf.__version__, str) and evoprune_tf.__version__.count(".") == 2


def test_the_old_app_import_paths_are_the_experiment_modules():
    import evoprune_tf.app.config as old_config
    import evoprune_tf.app.run as old_run
    import evoprune_tf.experiment.config as config
    import evoprune_tf.experiment.run as run
    from evoprune_tf.app.config import _SECTION_TYPES, ConfigError, load_config
    from evoprune_tf.app.run import resume

    assert old_config is config and old_run is run
    assert (load_config, ConfigError, _SECTION_TYPES) == (config.load_config, config.ConfigError, config._SECTION_TYPES)
    assert resume is run.resume is evoprune_tf.resume


def test_an_unknown_name_is_an_attribute_error():
    try:
        evoprune_tf.no_such_thing  # noqa: B018
    except AttributeError as error:
        assert "no_such_thing" in str(error)
    else:  # pragma: no cover
        raise AssertionError("expected AttributeError")


def test_importing_the_package_loads_neither_tensorflow_nor_keras_nor_mlflow():
    code = ("import sys, evoprune_tf; heavy = [m for m in ('tensorflow', 'keras', 'mlflow', 'jax') if m in sys.modules];"
            " print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True).stdout
    assert out.strip() == "[]"


def test_the_installed_version_is_the_package_version():
    from importlib.metadata import version

    assert version("evoprune-tf") == evoprune_tf.__version__


def test_filter_pruning_and_tascnet_entry_points_are_exported_from_their_modules():
    from evoprune_tf.methods.deep_pruning_es.run import run_filter_pruning
    from evoprune_tf.methods.tascnet.run import run_tascnet
    from evoprune_tf.methods.deep_pruning_es.encoding import FilterPruning
    from evoprune_tf.nn.coupling import filter_groups
    from evoprune_tf.nn.flops import count_flops
    from evoprune_tf.nn.surgery import mask_filters, prune_filters
    from evoprune_tf.methods.tascnet.stage1 import search_configuration
    from evoprune_tf.methods.tascnet.stage2 import PruneSettings, tascnet_prune

    expected = {"filter_groups": filter_groups, "prune_filters": prune_filters, "mask_filters": mask_filters,
                "count_flops": count_flops, "FilterPruning": FilterPruning, "run_filter_pruning": run_filter_pruning,
                "run_tascnet": run_tascnet, "search_configuration": search_configuration,
                "tascnet_prune": tascnet_prune, "PruneSettings": PruneSettings}
    for name, value in expected.items():
        assert name in evoprune_tf.__all__ and name in dir(evoprune_tf), name
        assert getattr(evoprune_tf, name) is value, name


def test_the_exported_filter_pruning_blocks_prune_a_small_network():
    import keras
    import numpy as np

    import evoprune_tf as ep

    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax", name="predictions")(x))
    groups = {g.name: g for g in ep.filter_groups(model)}
    assert groups["conv1"].size == 8 and groups["conv1"].prunable
    assert groups["conv2"].size == 6 and groups["conv2"].prunable
    keep = {"conv1": np.arange(8) < 4, "conv2": np.arange(6) < 3}
    compact = ep.prune_filters(model, keep)
    assert compact.get_layer("conv1").filters == 4 and compact.get_layer("conv2").filters == 3
    assert ep.count_flops(compact).total_flops < ep.count_flops(model).total_flops
    masked = ep.mask_filters(model, keep)
    x = np.random.default_rng(0).random((2, 16, 16, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(masked(x)), np.asarray(compact(x)), atol=1e-5)
