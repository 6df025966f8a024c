"""SRSMAS (Structured Reef Scene corals, 14 classes, 5 folds).

Usage: python experiments/srsmas.py [--data FOLDER] [evoprune run overrides]  (--help for all)
"""

import sys

from evoprune_tf.app.scripts import REFERENCE_SETUP, Dataset, experiment_main

DATASET = Dataset(
    name="srsmas",
    description="SRSMAS (Structured Reef Scene corals, 14 classes, 5 folds).",
    download=(
        "Download the SRSMAS coral images (Gómez-Ríos et al.) and pass --data <folder with one sub-folder per class>; it is split into train/test with the seed."
    ),
    default_source="",
    assets_subpath="",
    overrides=REFERENCE_SETUP,
)

if __name__ == "__main__":
    sys.exit(experiment_main(DATASET))
