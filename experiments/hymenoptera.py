"""Ants vs bees (PyTorch transfer-learning tutorial data, 2 classes).

Usage: python experiments/hymenoptera.py [--data FOLDER] [evoprune run overrides]  (--help for all)
"""

import sys

from evoprune_tf.app.scripts import Dataset, experiment_main

DATASET = Dataset(
    name="hymenoptera",
    description="Ants vs bees (PyTorch transfer-learning tutorial data, 2 classes).",
    download=(
        "Uses $EVOPRUNE_ASSETS/datasets/hymenoptera when set; otherwise download hymenoptera_data.zip from the PyTorch transfer-learning tutorial, unzip it and pass --data hymenoptera_data (train/ and val/ class folders; val/ is used as test)."
    ),
    default_source="",
    assets_subpath="datasets/hymenoptera",
    assets_weights="weights/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5",
    overrides={
        "backbone": {"name": "mobilenet_v2", "weights": "imagenet"},
        "head": {"hidden": [512]},
        "data": {"image_size": 160},
        "train": {"epochs": 10},
    },
)

if __name__ == "__main__":
    sys.exit(experiment_main(DATASET))
