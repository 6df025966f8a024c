"""`make demo`: EvoPruneDeepTL (feature selection) end to end, in under two minutes.

The search keeps a fixed budget (`DEMO_ACTIVE` of MobileNetV2's 1,280 features,
``encoding.active``): at that size the choice of features matters, so the best
validation accuracy climbs over the generations, and the final report's random mask of
the same size shows how far the winner is above chance (docs/results/density-sweep.md
has the measurements behind the choice).

With ``EVOPRUNE_ASSETS`` set (``make demo`` sets it when ``../shared/assets`` exists) it
prunes a MobileNetV2 head on the shared Rock-Paper-Scissors copy with the shared
ImageNet weights. Without it, it uses the real downloads, with the core install only:
the Rock-Paper-Scissors archives (``download:rock_paper_scissors``, fetched once into the
Keras cache) and Keras' ImageNet weights. When those cannot be had (offline), it falls
back to the built-in synthetic stripes with a random-weight backbone, so that it still
finishes, and says plainly what to download and where to put it.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from evoprune_tf.backbones import build_backbone, imagenet_weights_filename
from evoprune_tf.data.download import (
    DownloadError,
    check_download,
    dataset_folder,
    dataset_info,
    dataset_urls,
    download_dataset,
    downloads_folder,
)
from evoprune_tf.errors import one_line
from evoprune_tf.experiment.config import ExperimentConfig, load_config
from evoprune_tf.quiet import quiet_startup

#: Active features of the demo's fixed budget: 2% of MobileNetV2's 1,280 features, where a
#: random choice loses 20+ test points and the GA's best still climbs (density sweep).
DEMO_ACTIVE = 26

DEMO_OVERRIDES = {
    "name": "demo",
    "seed": 1,
    "data": {"image_size": 96},
    "backbone": {"name": "mobilenet_v2"},
    "head": {"hidden": [512]},
    "encoding": {"name": "feature_selection", "active": DEMO_ACTIVE},
    "train": {"epochs": 10},
    "algorithm": {"name": "steady_state", "population": 20, "evaluations": 200},
    "report": {"seeds": 3},
    "tracking": {"experiment": "evoprune-demo"},
}


#: The downloadable dataset the online demo runs on.
DEMO_DATASET = "rock_paper_scissors"
# Where Keras fetches MobileNetV2's ImageNet weights (keras.applications.mobilenet_v2).
_KERAS_WEIGHTS_BASE = "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v2/"
# The file name the shared-assets layout expects (the 224 px file, used at any size).
_ASSETS_WEIGHTS = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"


def demo_config() -> tuple[ExperimentConfig, str]:
    """The demo's config and a sentence saying which data and weights it uses.

    Shared assets first; else the downloads (cheap checks first: a HEAD request per
    missing archive, then the weights, then the dataset download, which is cached);
    else the synthetic fallback, whose sentence also says what to download.

    Returns:
        ``(config, sentence)``; the sentence may span several lines (offline help).
    """
    assets = os.environ.get("EVOPRUNE_ASSETS", "")
    if assets and (Path(assets) / "datasets" / "rps_28px").is_dir():
        weights = Path(assets) / "weights" / _ASSETS_WEIGHTS
        config = load_config(overrides={
            **DEMO_OVERRIDES,
            "data": {**DEMO_OVERRIDES["data"], "source": str(Path(assets) / "datasets" / "rps_28px"), "name": "rps"},
            "backbone": {**DEMO_OVERRIDES["backbone"], "weights": str(weights)},
        })
        return config, f"shared assets: RPS (28 px copy) + ImageNet MobileNetV2 weights from {assets}"
    try:
        folder = _probe_online()
    except Exception as error:  # noqa: BLE001 - offline, a mirror down, a bad download: fall back
        config = load_config(overrides={
            **DEMO_OVERRIDES,
            "data": {"image_size": 64, "source": "builtin:synthetic", "name": "synthetic", "standardize": True},
            "backbone": {"name": "mobilenet_v2", "weights": "none"},
        })
        return config, (
            "built-in synthetic stripes + random-weight MobileNetV2, standardised features: this shows the "
            f"machinery, not what pruning does (real data unavailable: {_why(error)}).\n{offline_help()}"
        )
    online = load_config(overrides={
        **DEMO_OVERRIDES,
        "data": {**DEMO_OVERRIDES["data"], "source": f"download:{DEMO_DATASET}", "name": "rps"},
        "backbone": {**DEMO_OVERRIDES["backbone"], "weights": "imagenet"},
    })
    return online, f"Rock-Paper-Scissors (downloaded, in {folder}) + ImageNet MobileNetV2 weights (Keras' download)"


def evolution_summary(logbook, per_generation: int) -> str:
    """The best validation accuracy of every generation, on one line, and how far it rose.

    Args:
        logbook: the run's DEAP logbook (a record with ``best`` per generation).
        per_generation: evaluations per generation after the first (the population).

    Returns:
        ``"best validation accuracy by generation (20 evaluations each): 0.95 0.96 ...
        (+0.024 over the first population)"``.
    """
    best = [float(record["best"]) for record in logbook]
    rise = best[-1] - best[0] if best else 0.0
    values = " ".join(f"{value:.3f}" for value in best)
    return (f"best validation accuracy by generation ({per_generation} evaluations each): {values} "
            f"({rise:+.3f} over the first population)")


def offline_help() -> str:
    """What to download for the real demo and where to put it, as a few lines of text.

    Returns:
        The Rock-Paper-Scissors archive URLs, Keras' MobileNetV2 weights file and URL,
        and the two places the demo finds them offline (the Keras cache or
        ``EVOPRUNE_ASSETS``).
    """
    dataset = dataset_info(DEMO_DATASET)
    weights = imagenet_weights_filename("mobilenet_v2", DEMO_OVERRIDES["data"]["image_size"])
    models = Path(os.path.expanduser(os.environ.get("KERAS_HOME", os.path.join("~", ".keras")))) / "models"
    folder = dataset_folder(DEMO_DATASET)
    lines = ["To run the demo on real data, download these files (on any machine with internet):"]
    for archive, url in zip(dataset.archives, dataset_urls(DEMO_DATASET)):
        size = f", {archive.size / 1e6:.0f} MB" if archive.size else ""
        lines.append(f"  {url}  ({dataset.title} {archive.split}{size})")
    lines += [
        f"  {_KERAS_WEIGHTS_BASE}{weights}  (Keras' MobileNetV2 ImageNet weights, about 9 MB)",
        "and put them in the Keras cache ($KERAS_HOME, default ~/.keras), where `make demo` finds them offline:",
        f"  the .zip files in {downloads_folder()}/  (or unpacked: {folder}/train/<class>/ and test/<class>/)",
        f"  the .h5 file in {models}/",
        "or set EVOPRUNE_ASSETS=<folder> holding datasets/rps_28px/{train,test}/{paper,rock,scissors}/ "
        f"(the unpacked rps/ and rps-test-set/) and weights/{_ASSETS_WEIGHTS} "
        f"({_KERAS_WEIGHTS_BASE}{_ASSETS_WEIGHTS}).",
    ]
    return "\n".join(lines)


def _why(error: BaseException) -> str:
    """The failure in a few words: the URL and reason of a download error, else the message."""
    if isinstance(error, DownloadError) and error.url:
        return f"cannot download {error.url}: {error.reason}"
    return one_line(error, 200)


def _probe_online() -> Path:
    """Make sure the online demo's data and weights are at hand; the dataset folder.

    Raises:
        Exception: whatever stops the download (offline: within seconds).
    """
    check_download(DEMO_DATASET)  # seconds, not a stalled download, when the host cannot be reached
    _probe_weights()
    return download_dataset(DEMO_DATASET)


def _probe_weights() -> None:
    """Build the demo's backbone with ``weights="imagenet"``: Keras downloads (or finds) the file."""
    build_backbone("mobilenet_v2", weights="imagenet", image_size=DEMO_OVERRIDES["data"]["image_size"])


def main() -> int:
    """Run the demo and say where its results are."""
    quiet_startup()
    from evoprune_tf.experiment.run import run  # after quiet_startup: the run's first Keras import is filtered


    config, source = demo_config()
    print(f"evoprune-tf demo: {source}")
    print(f"EvoPruneDeepTL feature selection at a fixed budget of {config.encoding.active} features, "
          f"steady-state GA, {config.algorithm.evaluations} evaluations, {config.train.epochs} epochs per evaluation")
    began = time.time()
    result = run(config)
    print(evolution_summary(result.logbook, config.algorithm.population))
    print(f"\nDone in {time.time() - began:.0f} s. Results are in MLflow (run {result.run_id}):")
    print("  make ui     # or: .venv/bin/mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db")
    print("  then open http://127.0.0.1:5000 and the experiment 'evoprune-demo'")
    if config.data.source == "builtin:synthetic":
        # Said again at the end: the first time scrolled away with the run's progress.
        print(f"\nThis was the synthetic fallback. {offline_help()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
