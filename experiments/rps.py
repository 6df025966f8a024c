"""Rock-Paper-Scissors (EvoPruneDeepTL's RPS, 3 classes, 2520 train / 372 test).

Usage: python experiments/rps.py [--data FOLDER] [evoprune run overrides]  (--help for all)
"""

import sys

from evoprune_tf.app.scripts import Dataset, experiment_main

DATASET = Dataset(
    name="rps",
    description="Rock-Paper-Scissors (EvoPruneDeepTL's RPS, 3 classes, 2520 train / 372 test).",
    download=(
        "Uses $EVOPRUNE_ASSETS/datasets/rps_28px when set (a 28 px copy), else TFDS rock_paper_scissors (pip install 'evoprune-tf[tfds]', downloaded on first use), or --data FOLDER with train/ and test/ class folders."
    ),
    default_source="tfds:rock_paper_scissors",
    assets_subpath="datasets/rps_28px",
    assets_weights="weights/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5",
    overrides={
        "backbone": {"name": "mobilenet_v2", "weights": "imagenet"},
        "head": {"hidden": [512]},
        "data": {"image_size": 96},
        "train": {"epochs": 10},
    },
)

if __name__ == "__main__":
    sys.exit(experiment_main(DATASET))
