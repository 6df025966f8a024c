"""The multi-objective report on the planted fixture: front on test, trade-off models, ensembles, MLflow."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import shutil
import tempfile

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

from conftest import make_planted_features
from evoprune_tf.methods.head.build import pareto_options
from evoprune_tf.app.config import load_config
from evoprune_tf.report.pareto import TRADE_OFFS, distinct_trade_offs, pareto_report
from evoprune_tf.report.single import retrain
from evoprune_tf.app.run import run
from evoprune_tf.encodings import unpack_genome
from conftest import new_mlflow_store

OBJECTIVES = ["accuracy", "active_fraction", "robustness"]


def planted_ood(data, informative, n=150, seed=5):
    """OOD features: noise columns as in-distribution, informative columns between the class centres."""
    rng = np.random.default_rng(seed)
    centres = np.stack([data.x_train[data.y_train == c][:, informative].mean(axis=0) for c in range(data.n_classes)])
    ood = rng.normal(0.0, 3.0, size=(n, data.n_features)).astype(np.float32)
    ood[:, informative] = centres.mean(axis=0) + rng.normal(0.0, 0.3, size=(n, informative.sum()))
    return ood


def mo_config(uri: str | None = None, **overrides):
    raw = {
        "name": "mo-report-test", "seed": 1, "progress": False,
        "algorithm": {"name": "nsga2", "population": 12, "evaluations": 96},
        "objectives": {"names": OBJECTIVES, "ood": "planted-ood"},
        "head": {"hidden": [16]}, "train": {"epochs": 30, "engine": "numpy", "learning_rate": 0.02},
        "report": {"seeds": 2},
        "tracking": {"enabled": uri is not None, "uri": uri or "", "experiment": "mo-report-tests"},
        "checkpoint": {"enabled": False},
    }
    for key, value in overrides.items():
        raw[key] = {**raw.get(key, {}), **value} if isinstance(value, dict) else value
    return load_config(None, raw)




@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    """One tracked NSGA-II run on planted features with OOD: (result, ood, informative, uri, folder)."""
    folder = tmp_path_factory.mktemp("mo-store")
    uri = new_mlflow_store(folder)
    data, informative = make_planted_features()
    ood = planted_ood(data, informative)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        result = run(mo_config(uri), features=data, ood_features=ood, out=io.StringIO())
    mlflow.set_tracking_uri(None)
    return result, ood, informative, uri, folder


def _artifacts(client, run_id, path=None) -> set[str]:
    found: set[str] = set()
    for info in client.list_artifacts(run_id, path):
        found |= _artifacts(client, run_id, info.path) if info.is_dir else {info.path}
    return found


REPORT_KEYS = {"objectives", "weights", "n_members", "hypervolume", "hypervolume_test", "knee_all_objectives",
               "retrain", "members", "trade_offs", "ensembles", "explanations", "local_dir", "artifacts", "seconds"}
MEMBER_KEYS = {"index", "search", "search_val_accuracy", "search_val_auroc", "active_fraction", "active_percent",
               "active_features", "active_parameters", "val_accuracy", "test_accuracy", "test_accuracy_std",
               "test_accuracy_per_seed", "test_auroc", "test_auroc_std", "trade_off", "genome"}


def test_front_members_are_retrained_and_scored_on_test(tracked):
    result, _, informative, _, _ = tracked
    pareto = result.report["pareto"]
    assert set(pareto) == REPORT_KEYS
    assert pareto["objectives"] == OBJECTIVES
    assert pareto["weights"] == [1.0, -1.0, 1.0]
    assert pareto["retrain"] == {"seeds": 2, "epochs": 30, "early_stopping": result.config.train.early_stopping}
    assert 0 <= pareto["knee_all_objectives"] < pareto["n_members"]
    assert [m["index"] for m in pareto["members"]] == list(range(pareto["n_members"]))
    assert pareto["n_members"] == len(pareto["members"]) >= 3
    genomes = {m["genome"] for m in pareto["members"]}
    assert len(genomes) == pareto["n_members"]  # deduplicated
    for member in pareto["members"]:
        assert set(member) == MEMBER_KEYS
        assert len(member["test_accuracy_per_seed"]) == 2
        assert member["test_accuracy"] == pytest.approx(np.mean(member["test_accuracy_per_seed"]))
        assert member["test_accuracy_std"] == pytest.approx(np.std(member["test_accuracy_per_seed"]))
        assert member["active_percent"] == pytest.approx(100 * member["active_fraction"], abs=0.01)
        assert 0.0 < member["active_percent"] <= 100.0
        assert set(member["search"]) == set(OBJECTIVES)
        assert member["search_val_accuracy"] == pytest.approx(member["search"]["accuracy"])
    # every member's test accuracy and AUROC, recomputed here from its genome: retrained with
    # the report's seeds, scored with argmax and scikit-learn's AUROC of the max softmax
    _assert_members_rescored(result, pareto["members"], ood=tracked[1])
    # the planted signal: the most accurate member is sparse, keeps informative features and
    # beats the unpruned head on test (which overfits the noise columns)
    heavy = pareto["members"][pareto["trade_offs"]["heavy"]["member"]]
    genome = unpack_genome(heavy["genome"], len(informative)).astype(bool)
    assert genome[informative].sum() >= informative.sum() // 2
    assert genome[informative].sum() / genome.sum() > 2 * informative.mean()
    assert heavy["test_accuracy"] > result.report["unpruned"]["test_accuracy_mean"] + 0.1
    assert heavy["test_auroc"] >= 0.8
    # hypervolume of the search grows, and the report's hypervolume is of the whole front
    hv = result.logbook.select("hypervolume")
    assert hv[-1] > hv[0]
    assert pareto["hypervolume"] >= hv[-1] - 1e-12
    assert pareto["hypervolume_test"] > 0


def _assert_members_rescored(result, members, ood):
    from scipy.special import softmax
    from sklearn.metrics import roc_auc_score

    data, config = result.features, result.config
    genomes = [unpack_genome(m["genome"], data.n_features) for m in members]
    heads = retrain(result.evaluator.encoding, data, genomes, config.train, seed=config.seed, seeds=config.report.seeds)
    t = config.objectives.temperature
    labels = np.r_[np.ones(len(data.x_test)), np.zeros(len(ood))]
    for i, member in enumerate(members):
        accuracy = [float(np.mean(row[i].logits(data.x_test).argmax(axis=1) == data.y_test)) for row in heads]
        auroc = [roc_auc_score(labels, np.r_[softmax(np.asarray(row[i].logits(data.x_test), np.float64) / t, axis=1).max(1),
                                             softmax(np.asarray(row[i].logits(ood), np.float64) / t, axis=1).max(1)])
                 for row in heads]
        assert member["test_accuracy_per_seed"] == pytest.approx(accuracy, abs=1e-12), i
        assert member["test_auroc"] == pytest.approx(np.mean(auroc), abs=1e-6), i


def test_trade_off_models_are_distinct_files_that_load_and_predict_like_their_member(tracked):
    import keras

    import evoprune_tf.nn.layers  # noqa: F401  (registers FeatureGather for loading)

    result, _, informative, _, _ = tracked
    pareto = result.report["pareto"]
    trade = pareto["trade_offs"]
    members = pareto["members"]
    assert trade["distinct"] and len({trade[n]["member"] for n in TRADE_OFFS}) == 3
    accuracy = [m["search"]["accuracy"] for m in members]
    active = [m["active_fraction"] for m in members]
    assert members[trade["heavy"]["member"]]["search"]["accuracy"] == max(accuracy)
    assert members[trade["light"]["member"]]["active_fraction"] == min(active)
    x = result.features.x_test
    for name in TRADE_OFFS:
        assert trade[name]["file"].endswith(f"tradeoff_models/{name}.keras")
        assert trade[name]["artifact"] == f"tradeoff_models/{name}.keras"
        model = keras.saving.load_model(trade[name]["file"])
        member = members[trade[name]["member"]]
        assert name in member["trade_off"].split("+")
        genome = unpack_genome(member["genome"], len(informative))
        head = retrain(result.evaluator.encoding, result.features, [genome], result.config.train,
                       seed=result.config.seed, seeds=1)[0][0]  # the first report seed: deterministic
        np.testing.assert_allclose(np.asarray(model(x, training=False)), head.predict_proba(x), atol=1e-5)
        assert trade[name]["parameters"] == model.count_params()
    light_params = trade["light"]["parameters"]
    assert light_params < trade["heavy"]["parameters"]


def test_ensembles_compare_all_and_banded_with_the_best_single_member(tracked):
    result, _, _, _, _ = tracked
    ens = result.report["pareto"]["ensembles"]
    assert ens["split"] == "test" and ens["band"] == result.config.report.ensemble_band
    assert ens["temperature"] == 1000.0 and ens["seeds"] == 2 and len(ens["per_seed"]) == 2
    for kind in ("best_single", "all", "banded"):
        # the summary is the mean over the report seeds of each seed's ensemble
        assert ens[kind]["accuracy"] == pytest.approx(np.mean([r[kind]["accuracy"] for r in ens["per_seed"]]))
        assert ens[kind]["auroc"] == pytest.approx(np.mean([r[kind]["auroc"] for r in ens["per_seed"]]))
    # the planted signal: ensembles of sparse members are far above chance (1/3) and detect the OOD points
    assert ens["banded"]["accuracy"] > 0.6 and ens["banded"]["auroc"] > 0.7
    assert ens["best_single"]["n_members"] == 1
    assert ens["all"]["n_members"] == ens["n_members"] == result.report["pareto"]["n_members"]
    assert 1 <= ens["banded"]["n_members"] <= ens["all"]["n_members"]
    for seed_result in ens["per_seed"]:
        assert seed_result["best_single"]["members"][0] in seed_result["banded"]["members"]
    assert ens["best_test_member_accuracy"] >= ens["best_single"]["accuracy"] - 1e-12


def test_everything_is_logged_to_mlflow_and_kept_locally(tracked):
    result, _, _, uri, folder = tracked
    client = MlflowClient(tracking_uri=uri)
    run_info = client.get_run(result.run_id)
    assert run_info.info.status == "FINISHED"
    found = _artifacts(client, result.run_id)
    expected = {
        "pareto/pareto_front.csv", "pareto/pareto_validation.png", "pareto/pareto_test.png",
        "tradeoff_models/heavy.keras", "tradeoff_models/knee.keras", "tradeoff_models/light.keras",
        "config.json", "report.json", "masks/best_genomes.npz",
    }
    assert expected <= found
    pareto = result.report["pareto"]
    assert set(pareto["artifacts"]) <= found
    base = run_info.info.artifact_uri
    rows = list(csv.DictReader(io.StringIO(mlflow.artifacts.load_text(f"{base}/pareto/pareto_front.csv"))))
    assert len(rows) == pareto["n_members"]
    for column in ("val_accuracy", "val_active_fraction", "val_robustness", "test_accuracy", "test_auroc",
                   "active_fraction", "trade_off", "genome"):
        assert column in rows[0]
    assert {r["trade_off"] for r in rows} >= {"heavy", "knee", "light"}
    logged = json.loads(mlflow.artifacts.load_text(f"{base}/report.json"))
    assert logged["pareto"]["n_members"] == pareto["n_members"]
    config = json.loads(mlflow.artifacts.load_text(f"{base}/config.json"))
    assert config["objectives"]["names"] == OBJECTIVES and config["algorithm"]["name"] == "nsga2"
    # the same files without MLflow, next to the store
    local = folder / "reports" / result.run_id
    assert pareto["local_dir"] == str(local)
    for path in expected - {"config.json", "report.json", "masks/best_genomes.npz"}:
        assert (local / path).is_file(), path
    assert (local / "pareto_report.json").is_file()
    # no explanations without images
    assert pareto["explanations"] is None


def test_report_without_tracking_writes_local_files_and_prints_a_summary(tracked, tmp_path, monkeypatch):
    result, ood, _, _, _ = tracked
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    out = io.StringIO()
    given = tmp_path / "given"
    report = pareto_report(pareto_options(result.config), result.evaluator, result.features, list(result.halloffame), ood,
                           result.config.train, out=out, local_dir=given)
    text = out.getvalue()
    assert "Pareto front:" in text and "Ensembles" in text and "Trade-off models" in text
    assert f"Report files in {given}" in text
    assert report["local_dir"] == str(given)
    for path in ("pareto/pareto_front.csv", "pareto/pareto_validation.png", "tradeoff_models/knee.keras",
                 "pareto_report.json"):
        assert (given / path).is_file()
    assert report["artifacts"] == result.report["pareto"]["artifacts"]  # listed even without a tracker
    assert json.loads((given / "pareto_report.json").read_text())["members"] == report["members"]
    assert os.listdir(cwd) == []  # the caller named the folder: nothing lands in the current one
    # deterministic: the same numbers as the run's own report
    assert [m["test_accuracy"] for m in report["members"]] == [
        m["test_accuracy"] for m in result.report["pareto"]["members"]]


def test_report_without_a_folder_uses_a_temporary_one_not_the_current_folder(tracked, tmp_path, monkeypatch):
    result, _, _, _, _ = tracked
    monkeypatch.chdir(tmp_path)
    options = dataclasses.replace(pareto_options(result.config), seeds=1)
    report = pareto_report(options, result.evaluator, result.features, list(result.halloffame)[:3], None,
                           result.config.train, out=io.StringIO())
    local = report["local_dir"]
    try:
        assert os.path.dirname(local) == tempfile.gettempdir()
        assert os.path.basename(local).startswith("evoprune-report-mo-report-test-")
        assert os.path.isfile(os.path.join(local, "pareto", "pareto_front.csv"))
        assert os.listdir(tmp_path) == []
    finally:
        shutil.rmtree(local, ignore_errors=True)


def test_two_objectives_without_ood(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # the default store: ./mlruns here
    data, _ = make_planted_features(seed=3)
    config = mo_config(objectives={"names": ["accuracy", "active_fraction"], "ood": ""},
                       algorithm={"population": 8, "evaluations": 40}, report={"seeds": 1})
    result = run(config, features=data, out=io.StringIO())
    pareto = result.report["pareto"]
    assert pareto["objectives"] == ["accuracy", "active_fraction"]
    assert all(m["test_auroc"] is None for m in pareto["members"])
    assert pareto["ensembles"]["all"]["auroc"] is None and pareto["ensembles"]["all"]["accuracy"] > 0.5
    # tracking off: the files still go to the (default) store's folder, reports/<name>-<time>
    assert pareto["local_dir"].startswith(str(tmp_path / "mlruns" / "reports" / "mo-report-test-"))
    assert (tmp_path / pareto["local_dir"] / "pareto" / "pareto_front.csv").is_file()
    if pareto["n_members"] >= 3:
        assert pareto["trade_offs"]["distinct"]


def test_distinct_fallback_when_the_accuracy_complexity_projection_collapses():
    # one member is best in accuracy and complexity; the others differ in robustness only
    points = np.array([[0.9, 0.1, 0.5], [0.8, 0.2, 0.9], [0.85, 0.3, 0.7], [0.7, 0.4, 0.95]])
    weights = (1.0, -1.0, 1.0)
    picks = {"heavy": 0, "knee": 0, "light": 0}
    fixed, rule = distinct_trade_offs(points, weights, 0, 1, picks)
    assert rule == "distinct_fallback"
    assert fixed["heavy"] == 0 and fixed["light"] == 1  # lightest of the others
    assert fixed["knee"] == 2  # nearest the ideal point of the rest
    same, rule = distinct_trade_offs(points, weights, 0, 1, {"heavy": 0, "knee": 2, "light": 1})
    assert rule == "trade_off_models" and same == {"heavy": 0, "knee": 2, "light": 1}
    two, rule = distinct_trade_offs(points[:2], weights, 0, 1, {"heavy": 0, "knee": 0, "light": 0})
    assert two == {"heavy": 0, "knee": 0, "light": 0}  # fewer than three members: nothing to separate
