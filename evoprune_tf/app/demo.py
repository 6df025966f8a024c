"""`make demo`: EvoPruneDeepTL (feature selection) end to end, offline, in a few minutes.

With ``EVOPRUNE_ASSETS`` set (``make demo`` sets it when ``../shared/assets`` exists) it
prunes a MobileNetV2 head on the shared Rock-Paper-Scissors copy with the shared
ImageNet weights. Without it, it tries the real download paths (TFDS
``rock_paper_scissors`` and Keras' ImageNet weights) and, when those fail offline,
falls back to the built-in synthetic stripes with a random-weight backbone, and says so.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from evoprune_tf.app.cli import quiet_startup
from evoprune_tf.app.config import ExperimentConfig, load_config

DEMO_OVERRIDES = {
    "name": "demo",
    "seed": 1,
    "data": {"image_size": 96},
    "backbone": {"name": "mobilenet_v2"},
    "head": {"hidden": [512]},
    "encoding": {"name": "feature_selection"},
    "train": {"epochs": 10},
    "algorithm": {"name": "steady_state", "population": 30, "evaluations": 200},
    "report": {"seeds": 3},
    "tracking": {"experiment": "evoprune-demo"},
}


def demo_config() -> tuple[ExperimentConfig, str]:
    """The demo's config and a sentence saying which data and weights it uses."""
    assets = os.environ.get("EVOPRUNE_ASSETS", "")
    if assets and (Path(assets) / "datasets" / "rps_28px").is_dir():
        weights = Path(assets) / "weights" / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
        config = load_config(overrides={
            **DEMO_OVERRIDES,
            "data": {**DEMO_OVERRIDES["data"], "source": str(Path(assets) / "datasets" / "rps_28px"), "name": "rps"},
            "backbone": {**DEMO_OVERRIDES["backbone"], "weights": str(weights)},
        })
        return config, f"shared assets: RPS (28 px copy) + ImageNet MobileNetV2 weights from {assets}"
    online = load_config(overrides={
        **DEMO_OVERRIDES, "data": {**DEMO_OVERRIDES["data"], "source": "tfds:rock_paper_scissors", "name": "rps"},
    })
    try:
        from evoprune_tf.backbones import build_backbone
        from evoprune_tf.data import load_images

        build_backbone("mobilenet_v2", weights="imagenet", image_size=96)
        load_images("tfds:rock_paper_scissors", image_size=96, max_per_class=1)
        return online, "TFDS rock_paper_scissors + ImageNet MobileNetV2 weights (downloaded)"
    except Exception as error:  # offline, or tensorflow-datasets missing
        reason = str(error).splitlines()[0][:160]
        config = load_config(overrides={
            **DEMO_OVERRIDES,
            "data": {"image_size": 64, "source": "builtin:synthetic", "name": "synthetic", "standardize": True},
            "backbone": {"name": "mobilenet_v2", "weights": "none"},
        })
        return config, (
            f"built-in synthetic stripes + random-weight MobileNetV2, standardised features "
            f"(real data unavailable: {reason}). Set EVOPRUNE_ASSETS or go online for real numbers."
        )


def main() -> int:
    """Run the demo and say where its results are."""
    quiet_startup()
    from evoprune_tf.app.run import run

    config, source = demo_config()
    print(f"evoprune-tf demo: {source}")
    print(f"EvoPruneDeepTL feature selection, steady-state GA, {config.algorithm.evaluations} evaluations, "
          f"{config.train.epochs} epochs per evaluation")
    began = time.time()
    result = run(config)
    print(f"\nDone in {time.time() - began:.0f} s. Results are in MLflow (run {result.run_id}):")
    print("  make ui     # or: .venv/bin/mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db")
    print("  then open http://127.0.0.1:5000 and the experiment 'evoprune-demo'")
    return 0


if __name__ == "__main__":
    sys.exit(main())
