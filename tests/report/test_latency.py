"""The one latency helper: LiteRT export is correct, latency follows the work, the table's reductions, the extra."""

import sys

import keras
import numpy as np
import pytest

from evoprune_tf.report import latency
from evoprune_tf.report.latency import (
    LITERT_INSTALL, LiteRTNotInstalled, export_litert, keras_latency_ms, keras_model_outputs, latency_markdown,
    latency_table, litert_latency_ms, litert_predict, require_litert, write_latency_table,
)

pytest.importorskip("ai_edge_litert", reason="the LiteRT extra is not installed")

L = keras.layers


def conv_net(filters: int, size: int = 32, name: str = "net") -> keras.Model:
    """Two convolutions and a linear head: outputs of order 1 (no saturated softmax to hide errors)."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((size, size, 3))
    x = L.Conv2D(filters, 3, padding="same")(inputs)
    x = L.BatchNormalization()(x)
    x = L.ReLU()(x)
    x = L.Conv2D(filters, 3, padding="same", activation="relu")(x)
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, L.Dense(5)(x), name=name)


def test_the_tflite_file_computes_what_the_keras_model_computes(tmp_path):
    model = conv_net(16)
    path = export_litert(model, tmp_path / "sub" / "net.tflite")
    assert path.is_file() and path.stat().st_size > 1000
    x = np.random.default_rng(1).standard_normal((6, 32, 32, 3)).astype(np.float32)
    reference = keras_model_outputs(model, x)
    assert np.abs(reference).max() > 1e-2  # a real signal, not vanishing activations
    np.testing.assert_allclose(litert_predict(path, x), reference, atol=1e-4)
    # ...and the comparison can fail: another network's file does not match.
    other = export_litert(conv_net(8), tmp_path / "other.tflite")
    assert np.abs(litert_predict(other, x) - reference).max() > 1e-3


def test_the_export_keeps_a_free_batch_and_every_input(tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    a, b = keras.Input((4,), name="a"), keras.Input((3,), name="b")
    model = keras.Model([a, b], L.Dense(2)(L.Concatenate()([a, b])))
    interpreter = Interpreter(model_path=str(export_litert(model, tmp_path / "two.tflite")))
    inputs = sorted(d["shape_signature"].tolist() for d in interpreter.get_input_details())
    assert inputs == [[-1, 3], [-1, 4]]
    x = {4: np.ones((5, 4), np.float32), 3: np.full((5, 3), 2.0, np.float32)}  # by input width
    for detail in interpreter.get_input_details():
        interpreter.resize_tensor_input(detail["index"], [5, detail["shape"][1]])
    interpreter.allocate_tensors()
    for detail in interpreter.get_input_details():
        interpreter.set_tensor(detail["index"], x[int(detail["shape"][1])])
    interpreter.invoke()
    out = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    np.testing.assert_allclose(out, keras_model_outputs(model, [x[4], x[3]]), atol=1e-5)


def test_a_network_with_far_more_work_is_clearly_slower(tmp_path):
    small = export_litert(conv_net(4, size=64), tmp_path / "small.tflite")
    big = export_litert(conv_net(96, size=64), tmp_path / "big.tflite")  # ~500x the MACs of the second conv
    t_small, t_big = litert_latency_ms(small, runs=50), litert_latency_ms(big, runs=50)
    assert t_big > 4 * t_small, (t_small, t_big)
    k_small = keras_latency_ms(conv_net(4, size=64), batch=8, runs=5)
    k_big = keras_latency_ms(conv_net(96, size=64), batch=8, runs=5)
    assert k_big > 2 * k_small, (k_small, k_big)


def test_the_table_reports_every_column_and_its_reduction_against_the_unpruned_row(tmp_path):
    models = {"unpruned": conv_net(32, name="full"), "half": conv_net(16, name="half")}
    rows = latency_table(models, export_dir=tmp_path, runs=50, keras_runs=3)
    assert [r["model"] for r in rows] == ["unpruned", "half"]
    base, half = rows
    assert half["params"] == models["half"].count_params() and half["flops"] < base["flops"]
    for key in ("flops", "params", "litert_ms_b1_t1", "litert_ms_b1_t2", "keras_ms_b32"):
        assert base[key] > 0 and base[f"{key}_reduction_pct"] == 0.0
        assert half[f"{key}_reduction_pct"] == pytest.approx(100 * (1 - half[key] / base[key]), abs=0.006)
    assert all(r["litert_max_abs_diff"] < 1e-4 for r in rows)
    assert (tmp_path / "unpruned.tflite").is_file() and half["tflite"] == str(tmp_path / "half.tflite")
    files = write_latency_table(rows, tmp_path, stem="t")
    assert files["csv"].read_text().splitlines()[0].startswith("model,flops,params,litert_ms_b1_t1")
    markdown = latency_markdown(rows)
    assert "| half |" in markdown and "LiteRT b1 2 threads (ms)" in markdown
    assert files["markdown"].read_text() == markdown


def test_without_litert_the_table_has_the_keras_columns_only(tmp_path):
    rows = latency_table({"unpruned": conv_net(8), "b": conv_net(4)}, litert=False, keras_runs=2)
    assert "litert_ms_b1_t1" not in rows[0] and "keras_ms_b32_reduction_pct" in rows[1]
    assert not list(tmp_path.iterdir())


def test_litert_asked_for_but_missing_names_the_extra_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)  # import now raises ImportError
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)

    def no_work(*args, **kwargs):
        raise AssertionError("a model was exported or timed before the missing extra was reported")

    monkeypatch.setattr(latency, "export_litert", no_work)
    monkeypatch.setattr(latency, "keras_latency_ms", no_work)
    assert not latency.litert_available()
    with pytest.raises(LiteRTNotInstalled) as info:
        latency_table({"unpruned": object()}, export_dir=tmp_path)
    message = str(info.value)
    assert "\n" not in message and LITERT_INSTALL in message and "ai-edge-litert" in message
    with pytest.raises(ImportError, match=r"evoprune-tf\[litert\]"):
        require_litert("the benchmark")


def test_a_missing_baseline_is_named():
    with pytest.raises(ValueError, match=r"baseline 'unpruned' is not among the models \['a'\]"):
        latency_table({"a": object()}, litert=False)


def test_the_single_objective_report_times_its_heads_with_the_shared_helper(planted, monkeypatch):
    from evoprune_tf.encodings import FeatureSelection, HeadSpec
    from evoprune_tf.report import single
    from evoprune_tf.train.numpy_engine import TrainConfig

    data, _ = planted
    encoding = FeatureSelection(HeadSpec(data.n_features, data.n_classes, hidden=(8,)))
    timed = []

    def recorder(model, x, **kwargs):
        timed.append((model.name, len(x)))
        return 1.25

    monkeypatch.setattr(single, "keras_latency_ms", recorder)
    genome = np.zeros(encoding.genome_length, np.int8)
    genome[: encoding.genome_length // 2] = 1
    report, model = single.final_report(encoding, data, genome, TrainConfig(epochs=2), seed=0, seeds=1)
    assert report["inference_ms"] == {"compact": 1.25, "full": 1.25, "samples": len(data.y_test)}
    assert [n for n, _ in timed] == [model.name, timed[1][0]] and {s for _, s in timed} == {len(data.y_test)}


DPES = {"algorithm": {"name": "deep_pruning_es"}}


def test_report_litert_true_without_the_extra_fails_when_the_config_loads(monkeypatch):
    from evoprune_tf.app.config import ConfigError, load_config

    assert load_config(overrides={**DPES, "report": {"litert": True}}).report.litert is True  # installed here
    assert load_config().report.litert == "auto"
    # report.litert is DeepPruningES's (the head methods time their small heads with Keras only)
    with pytest.raises(ConfigError, match=r"report.litert=True is not read by method 'steady_state'"):
        load_config(overrides={"report": {"litert": True}})
    with pytest.raises(ConfigError, match=r"report.litert='yes' has the wrong type; expected 'auto' \| True"):
        load_config(overrides={**DPES, "report": {"litert": "yes"}})
    with pytest.raises(ConfigError, match=r"report.litert=1; expected \"auto\", true or false"):
        load_config(overrides={**DPES, "report": {"litert": 1}})
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    with pytest.raises(ConfigError) as info:
        load_config(overrides={**DPES, "report": {"litert": True}})
    assert "\n" not in str(info.value) and f"report.litert=true but ai-edge-litert is not installed: {LITERT_INSTALL}" \
        in str(info.value)
    assert load_config(overrides={**DPES, "report": {"litert": "auto"}}).report.litert == "auto"  # auto: no error


def test_the_report_setting_says_in_one_line_why_litert_is_off(monkeypatch, capsys):
    import io

    from evoprune_tf.report.latency import litert_enabled

    out = io.StringIO()
    assert litert_enabled("auto", out) and litert_enabled(True, out) and out.getvalue() == ""
    assert not litert_enabled(False, out)
    assert out.getvalue() == "LiteRT export off (report.litert = false): Keras latency only\n"
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    out = io.StringIO()
    assert not litert_enabled("auto", out)
    assert out.getvalue().startswith("LiteRT latency skipped: ai-edge-litert is not installed (pip install")
    with pytest.raises(LiteRTNotInstalled, match=r"^report.litert = true needs ai-edge-litert"):
        litert_enabled(True, out)


def _filter_eval_benchmark():
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / "filter_eval.py"
    spec = importlib.util.spec_from_file_location("filter_eval_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_filter_benchmark_names_the_missing_extra_and_bad_counts_before_building_a_model(monkeypatch, capsys):
    bench = _filter_eval_benchmark()
    import evoprune_tf.methods.deep_pruning_es.run as filters_run

    def no_model(*args, **kwargs):
        raise AssertionError("a model was built before the bad input was reported")

    monkeypatch.setattr(filters_run, "build_filter_network", no_model)
    with pytest.raises(SystemExit):
        bench.main(["--rss-evaluations", "0"])
    assert "--rss-evaluations 0: expected positive counts" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    with pytest.raises(SystemExit):
        bench.main([])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"the latency table needs ai-edge-litert, which is not installed: {LITERT_INSTALL} (or --no-litert)" in err


def test_a_token_id_model_is_exported_and_timed_on_valid_ids(tmp_path):
    keras.utils.set_random_seed(0)
    tokens = keras.Input((20,), dtype="int32")
    x = L.Embedding(50, 8)(tokens)
    x = L.GlobalMaxPooling1D()(L.Conv1D(12, 3, activation="relu")(x))
    model = keras.Model(tokens, L.Dense(2)(x))
    rows = latency_table({"unpruned": model}, export_dir=tmp_path, runs=50, keras_runs=2,
                         flops={"unpruned": 1000})
    assert rows[0]["flops"] == 1000 and rows[0]["litert_ms_b1_t1"] > 0 and rows[0]["keras_ms_b32"] > 0
    ids = np.random.default_rng(0).integers(0, 50, size=(3, 20)).astype(np.int32)
    np.testing.assert_allclose(litert_predict(rows[0]["tflite"], ids), keras_model_outputs(model, ids), atol=1e-4)


def test_the_export_benchmark_prints_both_converters_with_the_same_outputs(capsys):
    import importlib.util
    import pathlib
    import re

    script = pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / "litert_export.py"
    spec = importlib.util.spec_from_file_location("litert_export_bench", script)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--family", "MobileNet", "--alpha", "0.25", "--size", "32", "--repeats", "1"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| export_litert")
            or line.startswith("| TFLiteConverter")]
    assert len(rows) == 2
    for row in rows:
        seconds, size, diff = re.match(r"\| .+? \| ([\d.]+) .*\| ([\d,]+) \| ([\d.e+-]+) \|$", row).groups()
        assert float(seconds) > 0 and int(size.replace(",", "")) > 100_000 and float(diff) < 1e-4, row
