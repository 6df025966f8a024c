"""Filter baselines: each criterion's ranking on hand-made models, width FLOPs, the FLOPs search, round_to, bad input."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from evoprune_tf.app.config import load_config
from evoprune_tf.methods import available_methods
from evoprune_tf.methods.filter_baselines import FILTER_BASELINES
from evoprune_tf.methods.filter_baselines.bn_scale import bn_gammas
from evoprune_tf.methods.filter_baselines.fpgm import distance_sums, group_filters
from evoprune_tf.methods.filter_baselines.method import flops_of_run, knee_network_flops
from evoprune_tf.methods.filter_baselines.pipeline import plan_for, prefix_flops
from evoprune_tf.methods.filter_baselines.target import Ranking, plan_masks
from evoprune_tf.methods.filter_baselines.taylor import taylor_scores
from evoprune_tf.nn import count_flops, filter_groups, prune_filters
from evoprune_tf.nn.widths import WidthFlops, group_l1_norms, round_masks, round_width

L = keras.layers


def config_for(name: str, **algorithm):
    return load_config(overrides={"algorithm": {"name": name, **algorithm}, "tracking": {"enabled": False}})


def prunable(model):
    return [g for g in filter_groups(model) if g.prunable]


# ------------------------------------------------------------------ registration and config


def test_every_baseline_is_registered_with_the_filter_defaults():
    methods = available_methods()
    for name in FILTER_BASELINES:
        assert name in methods and methods[name].summary.startswith("baseline:")
        config = config_for(name)
        assert config.encoding.name == "filters" and config.algorithm.flops_reduction == 0.5
        assert methods[name].reads_key("encoding.round_to") and methods[name].reads_key("algorithm.flops_of")
    assert methods["taylor"].reads_key("algorithm.taylor_batches")
    assert not methods["l1_filters"].reads_key("algorithm.taylor_batches")
    assert methods["deep_pruning_es"].reads_key("encoding.round_to")


@pytest.mark.parametrize("overrides, message", [
    ({"algorithm": {"flops_reduction": 1.5}}, r"algorithm.flops_reduction=1.5; expected a fraction .* in \(0, 1\)"),
    ({"algorithm": {"flops_reduction": 0.0}}, r"algorithm.flops_reduction=0.0; expected a fraction"),
    ({"encoding": {"round_to": 0}}, r"encoding.round_to=0; expected an integer of at least 1"),
    ({"algorithm": {"ranking": "layer"}, "name": "random_filters"},
     r"algorithm.ranking='layer'; random_filters ranks global: expected one of \['auto', 'global'\]"),
    ({"algorithm": {"flops_reduction": 0.3, "flops_of": "abc"}}, r"expected one target, not both"),
    ({"algorithm": {"taylor_batches": 0}, "name": "taylor"}, r"algorithm.taylor_batches=0; expected a positive"),
    ({"algorithm": {"taylor_batches": 4}}, r"algorithm.taylor_batches=4 is not read by method 'l1_filters'"),
])
def test_bad_input_is_one_line_naming_the_value(overrides, message):
    name = overrides.pop("name", "l1_filters")
    algorithm = {"name": name, **overrides.pop("algorithm", {})}
    with pytest.raises(ValueError, match=message) as info:
        load_config(overrides={"algorithm": algorithm, **overrides})
    assert "\n" not in str(info.value).strip()


def test_round_to_below_one_is_refused_for_deep_pruning_es_too():
    with pytest.raises(ValueError, match=r"encoding.round_to=-2; expected an integer of at least 1"):
        load_config(overrides={"algorithm": {"name": "deep_pruning_es"}, "encoding": {"round_to": -2}})


# ------------------------------------------------------------------ criteria on hand-made models


def conv_model(kernels: dict[str, np.ndarray], bn: bool = False):
    """input(4x4x2) -> 1x1 convs named after ``kernels`` (each followed by BN when asked) -> GAP -> softmax(3)."""
    inputs = keras.Input((4, 4, 2))
    x = inputs
    for name, kernel in kernels.items():
        conv = L.Conv2D(kernel.shape[-1], 1, name=name, use_bias=False)
        x = conv(x)
        conv.kernel.assign(kernel.reshape(1, 1, *kernel.shape))
        if bn:
            x = L.BatchNormalization(name=f"{name}_bn")(x)
        x = L.ReLU()(x)
    out = L.Dense(3, activation="softmax", name="predictions")(L.GlobalAveragePooling2D()(x))
    return keras.Model(inputs, out)


def test_l1_filters_prunes_the_known_smallest_filters_per_layer():
    first = np.array([[1.0, -5.0, 0.1, 2.0], [1.0, 0.0, 0.1, -2.0]])  # L1: 2, 5, 0.2, 4
    second = np.ones((4, 4)) * np.array([3.0, 0.5, 1.0, 0.25])  # L1: 12, 2, 4, 1
    model = conv_model({"a": first, "b": second})
    groups = prunable(model)
    scores = group_l1_norms(model, groups)
    np.testing.assert_allclose(scores["a"], [2, 5, 0.2, 4])
    np.testing.assert_allclose(scores["b"], [12, 2, 4, 1])
    ranking = Ranking(scores, "layer")
    keep = ranking.masks(ranking.widths(ranking.max_level // 2))  # half of every layer
    assert keep["a"].tolist() == [False, True, False, True] and keep["b"].tolist() == [True, False, True, False]


def test_fpgm_prunes_the_filter_nearest_the_geometric_median():
    # 1x1 filters as 2-D points: the centre of the cross is the geometric median
    points = np.array([[1.0, 0.0], [0.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    model = conv_model({"a": points.T})
    [group] = prunable(model)
    np.testing.assert_allclose(group_filters(model, group), points)
    sums = distance_sums(points)
    brute = [sum(np.linalg.norm(p - q) for q in points) for p in points]
    np.testing.assert_allclose(sums, brute)
    ranking = Ranking({"a": sums}, "layer")
    keep = ranking.masks({"a": 4})
    assert keep["a"].tolist() == [True, False, True, True, True]


def test_bn_scale_ranks_known_gammas_globally_and_sums_tied_batchnorms():
    model = conv_model({"a": np.ones((2, 3)), "b": np.ones((3, 3))}, bn=True)
    model.get_layer("a_bn").gamma.assign(np.array([0.9, -0.01, 0.5]))
    model.get_layer("b_bn").gamma.assign(np.array([0.02, 2.0, -0.3]))
    scores = bn_gammas(model, prunable(model))
    np.testing.assert_allclose(scores["a"], [0.9, 0.01, 0.5])
    ranking = Ranking(scores, "global")
    keep = ranking.masks(ranking.widths(3))  # the three smallest |gamma| of the network: 0.01, 0.02, 0.3
    assert keep["a"].tolist() == [True, False, True] and keep["b"].tolist() == [False, True, False]
    # a residual Add ties two convolutions: the group's score sums both BatchNorms
    inputs = keras.Input((4, 4, 2))
    x = L.BatchNormalization(name="bn1")(L.Conv2D(2, 1, name="c1")(inputs))
    y = L.BatchNormalization(name="bn2")(L.Conv2D(2, 1, name="c2")(x))
    z = L.Conv2D(3, 1, name="c3")(L.Add()([x, y]))
    tied = keras.Model(inputs, L.Dense(2, activation="softmax")(L.GlobalAveragePooling2D()(z)))
    tied.get_layer("bn1").gamma.assign(np.array([1.0, -2.0]))
    tied.get_layer("bn2").gamma.assign(np.array([0.5, 0.25]))
    np.testing.assert_allclose(bn_gammas(tied, [g for g in prunable(tied) if g.name == "c1"])["c1"], [1.5, 2.25])


def test_bn_scale_names_a_group_without_batchnorm():
    model = conv_model({"a": np.ones((2, 3))})
    with pytest.raises(ValueError, match=r"^bn_scale: group 'a' passes through no BatchNormalization"):
        bn_gammas(model, prunable(model))


def test_taylor_is_the_squared_first_order_loss_change_of_scaling_a_channel():
    """(sum g * w)^2 per channel equals (dL/d alpha)^2 when the channel's parameters are scaled by alpha."""
    keras.utils.set_random_seed(3)
    inputs = keras.Input((4, 4, 2))
    x = L.Conv2D(3, 1, name="a")(inputs)
    x = L.BatchNormalization(name="a_bn")(x)
    x = L.ReLU()(x)
    model = keras.Model(inputs, L.Dense(3, activation="softmax", name="predictions")(L.GlobalAveragePooling2D()(x)))
    model.get_layer("a_bn").gamma.assign(np.array([0.7, 1.3, -0.4]))
    model.get_layer("a_bn").beta.assign(np.array([0.2, -0.1, 0.5]))
    rng = np.random.default_rng(0)
    data, labels = rng.normal(size=(8, 4, 4, 2)).astype("float32"), rng.integers(0, 3, 8)
    [group] = prunable(model)
    scores = taylor_scores(model, [group], data, labels, batch_size=8, batches=1)["a"]
    loss = keras.losses.SparseCategoricalCrossentropy()
    conv, bn = model.get_layer("a"), model.get_layer("a_bn")
    originals = [keras.ops.convert_to_numpy(v) for v in (conv.kernel, conv.bias, bn.gamma, bn.beta)]

    def loss_at(channel: int, alpha: float) -> float:
        for variable, value in zip((conv.kernel, conv.bias, bn.gamma, bn.beta), originals):
            scaled = value.copy()
            scaled[..., channel] *= alpha
            variable.assign(scaled)
        value = float(loss(labels, model(data, training=False)))
        for variable, value_ in zip((conv.kernel, conv.bias, bn.gamma, bn.beta), originals):
            variable.assign(value_)
        return value

    eps = 5e-3
    expected = [((loss_at(c, 1 + eps) - loss_at(c, 1 - eps)) / (2 * eps)) ** 2 for c in range(3)]
    np.testing.assert_allclose(scores, expected, rtol=5e-2, atol=1e-9)
    assert np.argmin(scores) == np.argmin(expected)


def test_random_criteria_are_seeded_and_uniform_width_keeps_the_same_fraction():
    model = conv_model({"a": np.ones((2, 8)), "b": np.ones((8, 16))})
    groups = prunable(model)
    methods = available_methods()
    config = config_for("random_filters")
    first = methods["random_filters"].scores(model, groups, config=config)
    again = methods["random_filters"].scores(model, groups, config=config)
    assert all(np.array_equal(first[k], again[k]) for k in first)
    # a group's pruned fraction is proportional to its random weight: never more than the threshold allows
    weight = {k: 0.5 / (np.min(v) * v.size) for k, v in first.items()}  # the lowest score is 0.5 / size / w
    ranking = Ranking(first, "global")
    widths = ranking.widths(ranking.max_level // 2)
    ratios = {k: 1 - widths[k] / first[k].size for k in first}
    assert sorted(ratios, key=ratios.get) == sorted(weight, key=weight.get)
    assert all(0 < widths[k] for k in widths)
    uniform = methods["uniform_width"].scores(model, groups, config=config_for("uniform_width"))
    ranking = Ranking(uniform, "layer")
    widths = ranking.widths(ranking.max_level * 3 // 4)
    assert widths == {"a": 2, "b": 4}


# ------------------------------------------------------------------ widths, FLOPs, search


@pytest.fixture(scope="module")
def mobilenet():
    keras.utils.set_random_seed(0)
    return keras.applications.MobileNetV2(weights=None, input_shape=(64, 64, 3), alpha=0.35, classes=5)


def test_width_flops_equal_the_surgery_count(mobilenet):
    rng = np.random.default_rng(1)
    count = WidthFlops(mobilenet)
    assert count.full == count_flops(mobilenet).flops
    keep = {g.name: rng.random(g.size) < rng.uniform(0.2, 0.9) for g in prunable(mobilenet)}
    for mask in keep.values():
        mask[0] = True
    widths = {k: int(v.sum()) for k, v in keep.items()}
    assert count.flops(widths) == count_flops(prune_filters(mobilenet, keep)).flops
    # Flatten -> Dense consumers and separable convolutions
    inputs = keras.Input((6, 6, 3))
    x = L.SeparableConv2D(5, 3, name="sep")(inputs)
    x = L.Conv2D(4, 3, name="conv")(x)
    out = L.Dense(2, name="head")(L.Flatten()(x))
    model = keras.Model(inputs, out)
    keep = {"sep": np.array([1, 0, 1, 1, 0], bool), "conv": np.array([0, 1, 1, 0], bool)}
    assert WidthFlops(model).flops({"sep": 3, "conv": 2}) == count_flops(prune_filters(model, keep)).flops


@pytest.mark.parametrize("scope", ["global", "layer"])
@pytest.mark.parametrize("reduction", [0.25, 0.5, 0.7])
def test_the_binary_search_hits_the_flops_target_within_one_percent(mobilenet, scope, reduction):
    groups = prunable(mobilenet)
    count = WidthFlops(mobilenet)
    ranking = Ranking(group_l1_norms(mobilenet, groups), scope, normalize=True)
    plan = plan_masks(ranking, count.flops, (1 - reduction) * count.full)
    assert plan.error < 0.01, plan.describe()
    assert count_flops(prune_filters(mobilenet, plan.keep)).flops == plan.flops


def test_round_to_rounds_every_kept_width(mobilenet):
    assert [round_width(k, 16, 8) for k in (1, 5, 8, 9, 16)] == [8, 8, 8, 16, 16]
    assert round_width(9, 12, 8) == 12 and round_width(2, 3, 8) == 3
    masks = round_masks({"g": np.array([1, 0, 0, 0, 0, 1], bool)}, 4, {"g": np.array([9, 1, 5, 7, 2, 0.0])})
    assert masks["g"].tolist() == [True, False, True, True, False, True]
    groups = prunable(mobilenet)
    ranking = Ranking(group_l1_norms(mobilenet, groups), "global", normalize=True, round_to=8)
    plan = plan_masks(ranking, WidthFlops(mobilenet).flops, 0.5 * WidthFlops(mobilenet).full)
    sizes = {g.name: g.size for g in groups}
    assert all(int(m.sum()) % 8 == 0 or int(m.sum()) == sizes[n] for n, m in plan.keep.items())
    assert any(int(m.sum()) < sizes[n] for n, m in plan.keep.items())
    with pytest.raises(ValueError, match=r"^round_to=0; expected an integer of at least 1"):
        round_width(3, 8, 0)


def test_deep_pruning_es_decodes_rounded_widths(mobilenet):
    from evoprune_tf.methods.deep_pruning_es.encoding import FilterPruning

    encoding = FilterPruning(mobilenet, "all", round_to=8)
    genome = np.random.default_rng(2).integers(0, 2, encoding.genome_length)
    keep = encoding.decode(genome)
    raw = encoding.raw_masks(genome)
    for g in encoding.groups:
        width = int(keep[g.name].sum())
        assert width % 8 == 0 or width == g.size
        assert np.all(keep[g.name][raw[g.name]])  # the genome's filters are kept, filters are only added
    assert encoding.config()["round_to"] == 8
    plain = FilterPruning(mobilenet, "all").decode(genome)
    assert any(int(plain[n].sum()) % 8 for n in plain)  # without rounding the widths are not all multiples
    with pytest.raises(ValueError, match=r"^encoding.round_to=0; expected an integer of at least 1"):
        FilterPruning(mobilenet, 2, round_to=0)


def test_an_unreachable_target_names_the_smallest_reachable_flops(mobilenet):
    from evoprune_tf.methods.deep_pruning_es.encoding import FilterPruning

    method = available_methods()["l1_filters"]
    config = config_for("l1_filters", flops_reduction=0.998)
    rounded = FilterPruning(mobilenet, 2, round_to=8)  # 8 filters per group at least: 99.68% at most
    scores = method.scores(mobilenet, rounded.groups, config=config)
    plan_for(method, config, mobilenet, FilterPruning(mobilenet, 2), scores)  # reachable with single filters
    with pytest.raises(ValueError, match=r"^algorithm.flops_reduction: the target of .* cannot be reached; the "
                                         r"smallest reachable is \d+\.\d+ M \(\d+\.\d% removed") as info:
        plan_for(method, config, mobilenet, rounded, scores)
    assert "\n" not in str(info.value) and "99.7% removed" in str(info.value)
    encoding = FilterPruning(mobilenet, 2)
    plan = plan_for(method, config_for("l1_filters", flops_reduction=0.5), mobilenet, encoding, scores)
    prefix = prefix_flops(mobilenet, encoding.cut_layer)
    assert plan.error < 0.01 and plan.full == count_flops(mobilenet).flops - prefix
    # flops_of: another run's network FLOPs, the prefix subtracted
    matched = plan_for(method, config, mobilenet, encoding, scores, network_target=prefix + plan.flops)
    assert matched.flops == plan.flops
    with pytest.raises(ValueError, match=r"^algorithm.flops_of: the target network FLOPs .* are not below"):
        plan_for(method, config, mobilenet, encoding, scores, network_target=count_flops(mobilenet).flops * 2)


def test_flops_of_reads_the_knee_of_another_runs_report(tmp_path):
    import mlflow
    from conftest import new_mlflow_store

    uri = new_mlflow_store(tmp_path)
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("x", artifact_location=(tmp_path / "artifacts").as_uri())
    reports = {"dpes": {"table": [{"model": "unpruned", "flops_network": 10.0}, {"model": "heavy", "flops_network": 9.0},
                                  {"model": "knee", "flops_network": 6.0}]},
               "baseline": {"table": [{"model": "unpruned", "flops_network": 10.0},
                                      {"model": "l1_filters", "flops_network": 5.0}]},
               # TASCNet's pruned.flops counts its searched layers; its latency table the whole network
               "tascnet": {"unpruned": {"flops": 10}, "pruned": {"flops": 4},
                           "latency": {"unpruned": {"flops": 100}, "pruned": {"flops": 94}}},
               "other": {"best": 1, "pruned": {"flops": 4}}}
    ids = {}
    for name, report in reports.items():
        run = client.create_run(experiment)
        (tmp_path / "report.json").write_text(json.dumps(report))
        client.log_artifact(run.info.run_id, str(tmp_path / "report.json"))
        ids[name] = run.info.run_id
    assert [knee_network_flops(ids[n], uri) for n in ("dpes", "baseline", "tascnet")] == [6.0, 5.0, 94.0]
    with pytest.raises(ValueError, match=r"names no pruned model's FLOPs"):
        knee_network_flops(ids["other"], uri)
    with pytest.raises(ValueError, match=r"^algorithm.flops_of='0123abcd': no run id starts with '0123abcd'"):
        knee_network_flops("0123abcd", uri)


def test_flops_of_seed_method_pairs_each_baseline_with_the_run_of_its_own_seed(tmp_path):
    import mlflow
    from conftest import new_mlflow_store

    uri = new_mlflow_store(tmp_path)
    client = mlflow.MlflowClient(tracking_uri=uri)
    study = client.create_experiment("study", artifact_location=(tmp_path / "artifacts").as_uri())
    other = client.create_experiment("other", artifact_location=(tmp_path / "other").as_uri())
    ids = {}
    for experiment, method, seed, status in [(study, "deep_pruning_es", 0, "FINISHED"),
                                             (study, "deep_pruning_es", 1, "FINISHED"),
                                             (study, "deep_pruning_es", 2, "FAILED"),
                                             (study, "l1_filters", 1, "FINISHED"),
                                             (other, "deep_pruning_es", 3, "FINISHED")]:
        run = client.create_run(experiment, tags={"evoprune.algorithm": method, "evoprune.seed": str(seed)})
        client.set_terminated(run.info.run_id, status)
        ids[experiment, method, seed] = run.info.run_id

    def resolve(flops_of: str, seed: int, experiment: str = "study") -> str:
        config = load_config(overrides={"seed": seed, "algorithm": {"name": "l1_filters", "flops_of": flops_of},
                                        "encoding": {"name": "filters"},
                                        "tracking": {"uri": uri, "experiment": experiment}})
        return flops_of_run(config)

    assert resolve("seed:deep_pruning_es", 1) == ids[study, "deep_pruning_es", 1]
    assert resolve("seed:deep_pruning_es", 0) == ids[study, "deep_pruning_es", 0]
    assert resolve("abc123", 0) == "abc123"  # a run id (or prefix) is passed on as it is
    with pytest.raises(ValueError, match=r"^algorithm.flops_of='seed:deep_pruning_es': 0 finished deep_pruning_es "
                                         r"runs with seed 2 in experiment 'study'; expected exactly one$"):
        resolve("seed:deep_pruning_es", 2)  # its only run FAILED
    with pytest.raises(ValueError, match=r"0 finished deep_pruning_es runs with seed 3 in experiment 'study'"):
        resolve("seed:deep_pruning_es", 3)  # that run is in another experiment
    with pytest.raises(ValueError, match=r"no experiment 'nope' in .*; expected the experiment that holds"):
        resolve("seed:deep_pruning_es", 0, experiment="nope")
    with pytest.raises(ValueError, match=r"^algorithm.flops_of='seed:steady_state'; expected seed:<method> with a "
                                         r"method from deep_pruning_es, tascnet, random_filters"):
        resolve("seed:steady_state", 0)


def test_the_command_line_sets_the_flops_target_and_round_to():
    from evoprune_tf.app.cli import build_parser, overrides_from_args
    from evoprune_tf.app.config import ConfigError, load_config

    args = build_parser().parse_args(["run", "--algorithm", "l1_filters", "--encoding", "filters",
                                      "--flops-reduction", "0.3", "--round-to", "8"])
    overrides = overrides_from_args(args)
    assert overrides["algorithm"] == {"name": "l1_filters", "flops_reduction": 0.3}
    assert overrides["encoding"] == {"name": "filters", "round_to": 8}
    config = load_config(overrides=overrides)
    assert config.algorithm.flops_reduction == 0.3 and config.encoding.round_to == 8
    bad = overrides_from_args(build_parser().parse_args(["run", "--algorithm", "l1_filters", "--encoding", "filters",
                                                         "--flops-reduction", "1.5"]))
    with pytest.raises(ConfigError, match="flops_reduction=1.5"):
        load_config(overrides=bad)


def test_the_recommended_model_is_logged_as_pruned_so_compare_pairs_the_methods():
    from evoprune_tf.methods.deep_pruning_es.report import summary_metrics

    dpes = [{"model": "unpruned", "test_accuracy": 0.9}, {"model": "heavy", "test_accuracy": 0.8},
            {"model": "knee", "test_accuracy": 0.7, "flops_network_reduction_pct": 40.0},
            {"model": "light", "test_accuracy": 0.6}]
    baseline = [{"model": "unpruned", "test_accuracy": 0.9}, {"model": "l1_filters", "test_accuracy": 0.75}]
    assert summary_metrics(dpes)["pruned_test_accuracy"] == 0.7
    assert summary_metrics(dpes)["pruned_flops_network_reduction_pct"] == 40.0
    assert summary_metrics(dpes)["knee_test_accuracy"] == 0.7 and summary_metrics(dpes)["heavy_test_accuracy"] == 0.8
    assert summary_metrics(baseline)["pruned_test_accuracy"] == 0.75
    assert "pruned_test_accuracy" not in summary_metrics([{"model": "unpruned", "test_accuracy": 0.9}])
