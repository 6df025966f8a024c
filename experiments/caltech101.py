"""CalTech-101 (TASCNet evaluation set, 101 classes + background).

Usage: python experiments/caltech101.py [--data FOLDER] [evoprune run overrides]  (--help for all)
"""

import sys

from evoprune_tf.app.scripts import REFERENCE_SETUP, Dataset, experiment_main

DATASET = Dataset(
    name="caltech101",
    description="CalTech-101 (TASCNet evaluation set, 101 classes + background).",
    download=(
        "Loads TFDS caltech101 (pip install 'evoprune-tf[tfds]', downloaded on first use), or pass --data <101_ObjectCategories folder> (split into train/test with the seed)."
    ),
    default_source="tfds:caltech101",
    assets_subpath="",
    overrides=REFERENCE_SETUP,
)

if __name__ == "__main__":
    sys.exit(experiment_main(DATASET))
