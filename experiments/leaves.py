"""LEAVES (TFDS citrus_leaves, 4 classes, 594 images).

Usage: python experiments/leaves.py [--data FOLDER] [evoprune run overrides]  (--help for all)
"""

import sys

from evoprune_tf.app.scripts import REFERENCE_SETUP, Dataset, experiment_main

DATASET = Dataset(
    name="leaves",
    description="LEAVES (TFDS citrus_leaves, 4 classes, 594 images).",
    download=(
        "Loads TFDS citrus_leaves (pip install 'evoprune-tf[tfds]', downloaded on first use), or pass --data FOLDER with one sub-folder per class."
    ),
    default_source="tfds:citrus_leaves",
    assets_subpath="",
    overrides=REFERENCE_SETUP,
)

if __name__ == "__main__":
    sys.exit(experiment_main(DATASET))
