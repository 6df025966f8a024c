"""Stanford Dogs (TASCNet evaluation set, 120 classes).

Usage: python experiments/stanford_dogs.py [--data FOLDER] [evoprune run overrides]  (--help for all)
"""

import sys

from evoprune_tf.app.scripts import REFERENCE_SETUP, Dataset, experiment_main

DATASET = Dataset(
    name="stanford_dogs",
    description="Stanford Dogs (TASCNet evaluation set, 120 classes).",
    download=(
        "Loads TFDS stanford_dogs (pip install 'evoprune-tf[tfds]', downloaded on first use), or pass --data <Images folder with one sub-folder per breed>."
    ),
    default_source="tfds:stanford_dogs",
    assets_subpath="",
    overrides=REFERENCE_SETUP,
)

if __name__ == "__main__":
    sys.exit(experiment_main(DATASET))
