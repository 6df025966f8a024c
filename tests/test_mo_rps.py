"""MO-EvoPruneDeepTL on the shared RPS copy with ants-vs-bees as OOD (real weights, real images).

A short NSGA-II run (accuracy, active fraction, OOD AUROC) must give a front of several
points, three distinct trade-off models, explanations of the knee model, and ensembles
whose all-member vote is at least as accurate on test as the average front member.

The issue's stronger claim, an ensemble at least as accurate as the best single member
(chosen on validation), does not hold reliably on this data: validation images come from
the training folder (every member scores 0.86-0.99 there) while the test folder is
shifted (members score 0.47-0.85), so the validation choice is weak and the all-member
vote carries the very sparse members that generalise worst. Over run seeds 0-6 of this
configuration the all-member ensemble was >= the best single member in 2 of 7 runs, the
banded one in 3 of 7 (on the full dataset: 0 of 3). The fixed-seed run below held it with
earlier package versions (ensembles 0.713 / 0.707 vs 0.667 best single) and did not with
the Keras engine of a fresh install of 2026-12-02 (0.699 / 0.690 vs 0.718); on the NumPy
engine it runs on since 2026-12-06 (the same maths, in half the time) it gives 0.713 /
0.707 vs 0.667 again. So the test asserts only what held in every run and prints the
rest; the docs report how often the claim holds.
"""

from __future__ import annotations

import io
import os

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

from evoprune_tf.app.config import load_config
from evoprune_tf.app.run import run
from conftest import new_mlflow_store

pytestmark = [pytest.mark.slow, pytest.mark.assets]

WEIGHTS = "weights/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"




def rps_mo_config(assets, uri: str = "", **overrides):
    """The short MO run: RPS (150 images per class and split) vs ants-vs-bees, MobileNetV2 at 96 px."""
    raw = {
        "name": "rps-mo-short", "seed": 0, "progress": False,
        "data": {"source": str(assets / "datasets" / "rps_28px"), "image_size": 96, "max_per_class": 150},
        "backbone": {"name": "mobilenet_v2", "weights": str(assets / WEIGHTS)},
        "head": {"hidden": [128]}, "train": {"epochs": 10, "engine": "numpy"},
        "algorithm": {"name": "nsga2", "population": 16, "evaluations": 80},
        "objectives": {"names": ["accuracy", "active_fraction", "robustness"],
                       "ood": str(assets / "datasets" / "hymenoptera")},
        "report": {"seeds": 3},
        "tracking": {"enabled": bool(uri), "uri": uri, "experiment": "rps-mo-tests"},
        "checkpoint": {"enabled": False},
    }
    for key, value in overrides.items():
        raw[key] = {**raw.get(key, {}), **value} if isinstance(value, dict) else value
    return load_config(None, raw)


@pytest.fixture(scope="module")
def rps_run(assets, tmp_path_factory):
    folder = tmp_path_factory.mktemp("rps-mo")
    uri = new_mlflow_store(folder)
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        result = run(rps_mo_config(assets, uri), out=out)
    mlflow.set_tracking_uri(None)
    print(out.getvalue())
    return result, uri


def test_short_rps_run_gives_a_front_of_several_points(rps_run):
    result, _ = rps_run
    pareto = result.report["pareto"]
    assert result.features.n_classes == 3 and result.features.n_features == 1280
    assert pareto["n_members"] >= 3
    assert pareto["trade_offs"]["distinct"]
    members = pareto["members"]
    assert len({m["active_percent"] for m in members}) >= 3  # different pruning levels, not one point
    for m in members:
        assert m["test_accuracy"] > 1 / 3 + 0.1  # well above chance on the test folder
        assert m["test_auroc"] is not None and 0.0 <= m["test_auroc"] <= 1.0
        assert m["active_percent"] < 100.0
    hv = result.logbook.select("hypervolume")
    assert hv[-1] >= hv[0] and pareto["hypervolume"] > 0


def test_explanations_of_the_knee_model_are_logged(rps_run):
    result, uri = rps_run
    explanations = result.report["pareto"]["explanations"]
    assert explanations and explanations["model"] == "knee", explanations
    pngs = [p for p in explanations["files"] if p.endswith(".png")]
    assert len(pngs) == 3 and all(os.path.getsize(p) > 0 for p in pngs)
    logged = {a.path for a in MlflowClient(tracking_uri=uri).list_artifacts(result.run_id, "explanations/knee")}
    assert {f"explanations/knee/{os.path.basename(p)}" for p in pngs} <= logged
    assert len(explanations["top_features"]) == 20


def test_ensembles_vs_the_members(rps_run):
    result, _ = rps_run
    pareto = result.report["pareto"]
    ens = pareto["ensembles"]
    member_mean = float(np.mean([m["test_accuracy"] for m in pareto["members"]]))
    numbers = (
        f"test accuracy (mean of {ens['seeds']} retrain seeds): best single {ens['best_single']['accuracy']:.4f}, "
        f"all {ens['all']['accuracy']:.4f} (n={ens['all']['n_members']:.0f}), banded {ens['banded']['accuracy']:.4f} "
        f"(n={ens['banded']['n_members']:.1f}), member mean {member_mean:.4f}, "
        f"best member on test {ens['best_test_member_accuracy']:.4f}; AUROC best single "
        f"{ens['best_single']['auroc']:.4f}, all {ens['all']['auroc']:.4f}, banded {ens['banded']['auroc']:.4f}"
    )
    print(numbers)
    # What held in every run measured: the all-member soft vote is at least as accurate as
    # the average member, and both ensembles detect OOD better than the best single member.
    assert ens["all"]["accuracy"] >= member_mean, numbers
    assert min(ens["all"]["auroc"], ens["banded"]["auroc"]) > ens["best_single"]["auroc"], numbers
    # The banded vote and "an ensemble beats the best single member on accuracy" are printed,
    # not asserted: on the Keras engine of 2026-12-02 this pinned run gave banded 0.690 vs a
    # member mean of 0.691 and ensembles 0.699 / 0.690 vs 0.718 for the best single member.
    assert 0.0 <= ens["banded"]["accuracy"] <= 1.0, numbers
