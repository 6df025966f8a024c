import numpy as np
import pytest

from evoprune_tf.encodings import (
    ConnectionPruning,
    FeatureSelection,
    HeadSpec,
    NeuronPruning,
    make_encoding,
)

SPEC = HeadSpec(n_features=10, n_classes=3, hidden=(6, 4))


def test_feature_selection_masks_inputs_of_first_layer():
    enc = FeatureSelection(SPEC)
    genome = np.array([1, 0, 1, 0, 0, 0, 0, 0, 0, 1])
    masks = enc.kernel_masks(genome)
    assert enc.genome_length == 10
    assert [m.shape for m in masks] == [(10, 6), (6, 4), (4, 3)]
    np.testing.assert_array_equal(masks[0].any(axis=1), genome.astype(bool))
    assert masks[1].all() and masks[2].all()
    assert enc.active_fraction(genome) == pytest.approx(0.3)
    # 3 inputs * 6 + 6*4 + 4*3 + 3 output biases (hidden layers have no bias)
    assert enc.active_parameters(genome) == 3 * 6 + 24 + 12 + 3


def test_neuron_pruning_removes_all_connections_of_a_pruned_neuron():
    enc = NeuronPruning(SPEC)
    assert enc.genome_length == 10
    genome = np.array([1, 1, 0, 0, 0, 0] + [0, 1, 1, 1])
    masks = enc.kernel_masks(genome)
    assert not masks[0][:, 2:].any() and masks[0][:, :2].all()  # incoming
    assert not masks[1][2:, :].any()  # outgoing of pruned first-layer neurons
    assert not masks[1][:, 0].any() and not masks[2][0].any()
    assert enc.active_parameters(genome) == 10 * 2 + 2 * 3 + 3 * 3 + 3


def test_neuron_pruning_of_one_chosen_layer():
    enc = NeuronPruning(SPEC, layers=[1])
    assert enc.genome_length == 4
    masks = enc.kernel_masks([1, 0, 0, 1])
    assert masks[0].all()
    np.testing.assert_array_equal(masks[2].any(axis=1), [True, False, False, True])
    with pytest.raises(ValueError, match=r"layers=\[2\]"):
        NeuronPruning(SPEC, layers=[2])


def test_connection_pruning_is_row_major_over_one_kernel():
    enc = ConnectionPruning(SPEC, layer=2)
    assert enc.genome_length == 12
    genome = np.zeros(12, int)
    genome[[0, 5]] = 1
    mask = enc.kernel_masks(genome)[2]
    assert mask[0, 0] == 1 and mask[1, 2] == 1 and mask.sum() == 2
    assert enc.active_parameters(genome) == 60 + 24 + 2 + 3


@pytest.mark.parametrize("bad,match", [(np.ones(9), r"shape \(9,\); expected \(10,\)"), (np.full(10, 2), r"values \[2\]")])
def test_bad_genomes_get_one_line_errors(bad, match):
    with pytest.raises(ValueError, match=match) as info:
        FeatureSelection(SPEC).decode(bad)
    assert "\n" not in str(info.value)


def test_make_encoding_lists_known_names():
    assert isinstance(make_encoding("neuron_pruning", SPEC), NeuronPruning)
    with pytest.raises(ValueError, match="connection_pruning"):
        make_encoding("filters", SPEC)


def test_all_active_parameter_count_matches_dense_head():
    assert SPEC.n_parameters() == 10 * 6 + 6 * 4 + 4 * 3 + 3
    assert HeadSpec(10, 3, (6,), use_bias=True).n_parameters() == 10 * 6 + 6 + 6 * 3 + 3
