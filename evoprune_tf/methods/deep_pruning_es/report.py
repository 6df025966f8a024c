"""DeepPruningES' final report: heavy, knee and light of the archive and the unpruned network, retrained and measured.

Each model is retrained for ``report.epochs`` (same seeds), scored on test; its FLOPs and
parameters counted and its latency measured by `evoprune_tf.report.latency` (LiteRT at
batch 1 on 1 and 2 threads when ``report.litert`` allows, Keras at batch 32); a table (CSV +
Markdown), the latency table, a FLOPs-vs-accuracy plot, the ``.tflite`` files and the
compact deployable ``.keras`` models come out.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from evoprune_tf.report.latency import report_latency
from evoprune_tf.report.text import mean_std, plural
from evoprune_tf.train.config import derive_seed
from operators.selection import heavy_knee_light

__all__ = ["MODEL_NAMES", "final_report", "markdown_table", "retrain_and_report", "trade_off_table"]

#: Names of the models of the final table, in order.
MODEL_NAMES = ("unpruned", "heavy", "knee", "light")


def _deployable(evaluator: Any, pruned_suffix: Any, module: str | None, name: str) -> Any:
    """Images in 0..255 -> preprocessing -> frozen prefix -> pruned suffix, one saveable model."""
    import keras

    # Defined on first use (it is a Keras layer): `evoprune_tf.backbones` loads without Keras.
    from evoprune_tf.backbones import BackbonePreprocessing

    compact = evaluator.compact_model(pruned_suffix, name=f"{name}_core")
    inputs = keras.Input(shape=tuple(evaluator.model.inputs[0].shape[1:]), name="image")
    x = inputs if module is None else BackbonePreprocessing(module, name="preprocess")(inputs)
    return keras.Model(inputs, compact(x), name=name)


def trade_off_table(rows: list[dict]) -> list[dict]:
    """Add reductions in % relative to the ``unpruned`` row.

    Args:
        rows: Dicts with ``model``, ``flops_searched``, ``flops_network``, ``params_network``
            (the first is the unpruned model).

    Returns:
        The rows with ``*_reduction_pct`` columns added.
    """
    base = next(r for r in rows if r["model"] == "unpruned")
    for row in rows:
        for key in ("flops_searched", "flops_network", "params_searched", "params_network"):
            row[f"{key}_reduction_pct"] = round(100.0 * (1.0 - row[key] / base[key]), 2) if base[key] else 0.0
    return rows


#: The latency helper's columns a trade-off row takes (`evoprune_tf.report.latency.latency_table`).
_LATENCY_PREFIXES = ("litert_", "keras_ms_", "tflite_bytes")
_COLUMNS = ("model", "test_accuracy", "test_accuracy_std", "val_accuracy", "flops_searched", "flops_network",
            "params_searched", "params_network", "litert_ms_b1_t1", "litert_ms_b1_t2", "keras_ms_b32",
            "flops_searched_reduction_pct", "flops_network_reduction_pct", "params_network_reduction_pct",
            "litert_ms_b1_t1_reduction_pct", "litert_ms_b1_t2_reduction_pct", "keras_ms_b32_reduction_pct",
            "litert_max_abs_diff", "tflite_bytes", "kept_filters", "repairs", "predicted_ms",
            "latency_rank_correlation")


#: Per-model columns of the trade-off table logged as ``<model>_<column>`` metrics.
_SUMMARY = ("test_accuracy", "flops_searched_reduction_pct", "flops_network_reduction_pct",
            "params_network_reduction_pct", "keras_ms_b32", "litert_ms_b1_t1", "litert_ms_b1_t2",
            "litert_ms_b1_t1_reduction_pct", "predicted_ms")


def recommended_row(table: list[dict]) -> dict | None:
    """The row of the model a run recommends: the knee, else the first pruned model (a filter baseline's)."""
    return next((r for r in table if r.get("model") == "knee"), None) or \
        next((r for r in table if r.get("model") != "unpruned"), None)


def summary_metrics(table: list[dict]) -> dict[str, float]:
    """The trade-off table's metrics for MLflow: ``<model>_<column>`` for the columns a row has.

    The recommended model's columns once more as ``pruned_<column>``: DeepPruningES' knee,
    a filter baseline's pruned model (the model ``algorithm.flops_of`` matches), so that
    ``evoprune compare``'s ``--metric pruned_test_accuracy`` pairs the methods of a study. With
    the ``latency`` objective, ``latency_rank_correlation`` (one value per run) too.
    """
    metrics = {f"{r['model']}_{k}": r[k] for r in table for k in _SUMMARY if k in r}
    chosen = recommended_row(table)
    if chosen is not None:
        metrics.update({f"pruned_{k}": chosen[k] for k in _SUMMARY if k in chosen})
    if table and "latency_rank_correlation" in table[0]:
        metrics["latency_rank_correlation"] = table[0]["latency_rank_correlation"]
    return metrics


def report_artifacts(files: dict[str, Path]) -> list[tuple[Path, str]]:
    """``(file, artifact folder)`` pairs of a final report: its tables and plot, and the ``.tflite`` files."""
    return ([(files[key], "report") for key in ("csv", "markdown", "plot", "latency_csv", "latency_markdown")
             if key in files] + [(files[key], "litert") for key in files if key.endswith(".tflite")])


def _predicted_latency(evaluator: Any, rows: list[dict], models: dict[str, Any], out: Any) -> None:
    """With the ``latency`` objective: each model's predicted latency and its rank correlation with the measured one.

    The prediction sums the run's per-layer table (`evoprune_tf.report.latency_lut`) over
    the whole deployable model; it is compared with LiteRT at batch 1 on 1 thread (the
    table's own setting) when measured, else with Keras at batch 32.
    """
    from evoprune_tf.report.latency_lut import spearman

    table = getattr(evaluator, "latency_table", None)
    if table is None:
        return
    for row in rows:
        row["predicted_ms"] = table.predict_ms(models[row["model"]])
    measured = "litert_ms_b1_t1" if all("litert_ms_b1_t1" in r for r in rows) else "keras_ms_b32"
    rho = spearman([r["predicted_ms"] for r in rows], [r[measured] for r in rows])
    for row in rows:
        row["latency_rank_correlation"] = rho
    print(f"latency objective: predicted ({table.backend} table) vs measured {measured} over the "
          f"{len(rows)} final models: Spearman {rho:.2f}", file=out)


def markdown_table(rows: list[dict], seeds: int = 1) -> str:
    """The trade-off table as Markdown; test accuracy with ``± std`` over ``seeds`` retrains when more than one."""
    head = ["model", "test acc" if seeds == 1 else f"test acc (mean ± std, {plural(seeds, 'seed')})",
            "FLOPs searched (M)", "FLOPs network (M)", "params (k)", "LiteRT b1 1 thread (ms)",
            "LiteRT b1 2 threads (ms)", "Keras b32 (ms)", "FLOPs searched -%", "FLOPs network -%", "params -%",
            "LiteRT 1 thread -%", "Keras b32 -%"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def cell(row: dict, key: str, fmt: str = ".2f") -> str:
        return format(row[key], fmt) if key in row else "-"  # LiteRT columns are absent when it is off

    for r in rows:
        lines.append("| " + " | ".join([
            r["model"], mean_std(r["test_accuracy"], r.get("test_accuracy_std"), seeds),
            f"{r['flops_searched'] / 1e6:.2f}", f"{r['flops_network'] / 1e6:.2f}",
            f"{r['params_network'] / 1e3:.1f}", cell(r, "litert_ms_b1_t1"), cell(r, "litert_ms_b1_t2"),
            cell(r, "keras_ms_b32"), f"{r['flops_searched_reduction_pct']:.1f}",
            f"{r['flops_network_reduction_pct']:.1f}", f"{r['params_network_reduction_pct']:.1f}",
            cell(r, "litert_ms_b1_t1_reduction_pct", ".1f"), cell(r, "keras_ms_b32_reduction_pct", ".1f")]) + " |")
    return "\n".join(lines) + "\n"


def _plot(rows: list[dict], front: list[tuple[float, float]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.2))
    if front:
        f = np.asarray(front)
        ax.scatter(f[:, 1] / 1e6, 1.0 - f[:, 0], s=14, c="0.7", label="archive (validation)")
    colors = {"unpruned": "black", "heavy": "tab:blue", "knee": "tab:red", "light": "tab:green"}
    for r in rows:
        ax.scatter(r["flops_network"] / 1e6, r["test_accuracy"], s=60, c=colors.get(r["model"], "tab:purple"),
                   label=f"{r['model']} (test)", zorder=3)
    ax.set_xlabel("network FLOPs (M, 2 x MACs)")
    ax.set_ylabel("accuracy")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def final_report(config: Any, evaluator: Any, halloffame: Any, module: str | None, folder: Path,
                  out: Any) -> tuple[dict[str, np.ndarray], list[dict], dict[str, Any], dict[str, Path]]:
    """Heavy, knee and light of the archive and the unpruned network, through `retrain_and_report`."""
    archive = list(halloffame)
    error_col = list(evaluator.objectives).index("error")
    cpx_col = 1 if error_col == 0 else 0
    heavy, knee, light = heavy_knee_light(archive, 3, accuracy_index=error_col, complexity_index=cpx_col)
    genomes = {"unpruned": evaluator.encoding.unpruned(), "heavy": np.asarray(heavy), "knee": np.asarray(knee),
               "light": np.asarray(light)}
    masks = {name: evaluator.encoding.decode_with_repairs(genome) for name, genome in genomes.items()}
    front = []
    for ind in archive:
        e = evaluator.lookup(ind)
        if e is not None:
            front.append((e.error, e.network_flops))
    rows, models, files = retrain_and_report(config, evaluator, masks, module, folder, out, front=front,
                                             title=f"{config.name}: DeepPruningES (seed {config.seed})")
    return genomes, rows, models, files


def retrain_and_report(config: Any, evaluator: Any, masks: dict[str, tuple[dict, int]], module: str | None,
                       folder: Path, out: Any, *, title: str,
                       front: list[tuple[float, float]] = ()) -> tuple[list[dict], dict[str, Any], dict[str, Path]]:
    """Retrain, score, count and time named pruned models: DeepPruningES' final models, or a baseline's.

    Each model is fine-tuned from the (warmed-up) network for ``report.epochs`` on
    ``report.seeds`` seeds, scored on test and validation; FLOPs and parameters are counted,
    latency measured (`report_latency`), and the trade-off table (CSV + Markdown), the
    latency table and the FLOPs-vs-accuracy plot are written to ``folder``.

    Args:
        config: The run's config (``report.*``, ``seed``).
        evaluator: The `FilterEvaluator`.
        masks: Model name -> ``(repaired keep masks, repairs)``; ``"unpruned"`` is the reference row.
        module: The backbone's preprocessing module (None: a user's own model).
        folder: Where the files go.
        out: Stream for the human-readable lines.
        title: The plot's title.
        front: ``(validation error, network FLOPs)`` points drawn behind the models.

    Returns:
        ``(rows, compact deployable models, files)``.
    """
    rows, models = [], {}
    for name, (keep, repairs) in masks.items():
        accs, vals, model = [], [], None
        for r in range(config.report.seeds):
            trained = evaluator.fine_tune(keep, epochs=config.report.epochs, seed=derive_seed(config.seed, "final", r))
            accs.append(evaluator.score(trained, "test")[0])
            vals.append(evaluator.score(trained, "val")[0])
            if r == 0:
                model = trained
        record = evaluator.describe(model, keep, repairs, vals[0], float("nan"), config.report.epochs)
        models[name] = _deployable(evaluator, model, module, name=f"{name}_model")
        rows.append({
            "model": name, "test_accuracy": float(np.mean(accs)), "test_accuracy_std": float(np.std(accs)),
            "val_accuracy": float(np.mean(vals)), "flops_searched": record.flops, "flops_network": record.network_flops,
            "params_searched": record.params, "params_network": record.network_params,
            "kept_filters": record.kept_filters, "repairs": record.repairs,
        })
        print(f"final {name}: test accuracy {mean_std(float(np.mean(accs)), float(np.std(accs)), len(accs))}"
              f", network FLOPs {record.network_flops / 1e6:.2f} M", file=out)
    # One latency helper for every method: LiteRT (b1, 1 and 2 threads) when on, Keras b32; .tflite files.
    latency, files = report_latency(models, setting=config.report.litert, folder=folder, seed=config.seed, out=out,
                                    flops={r["model"]: r["flops_network"] for r in rows})
    for row, measured in zip(rows, latency):
        row.update({k: v for k, v in measured.items() if k.startswith(_LATENCY_PREFIXES)})
    _predicted_latency(evaluator, rows, models, out)
    rows = trade_off_table(rows)
    files = {**{f"latency_{k}" if k in ("csv", "markdown") else k: v for k, v in files.items()},
             "csv": folder / "trade_off_models.csv", "markdown": folder / "trade_off_models.md",
             "plot": folder / "flops_vs_accuracy.png"}
    with open(files["csv"], "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(_COLUMNS) + ["params_searched_reduction_pct"],
                                extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    files["markdown"].write_text(markdown_table(rows, config.report.seeds))
    _plot(rows, list(front), files["plot"], title)
    return rows, models, files
