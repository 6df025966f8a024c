"""PLANTS (PlantDoc, 27 classes, 2340/236).

Usage: python experiments/plants.py [--data FOLDER] [evoprune run overrides]  (--help for all)
"""

import sys

from evoprune_tf.app.scripts import REFERENCE_SETUP, Dataset, experiment_main

DATASET = Dataset(
    name="plants",
    description="PLANTS (PlantDoc, 27 classes, 2340/236).",
    download=(
        "Clone https://github.com/pratikkayal/PlantDoc-Dataset and pass --data PlantDoc-Dataset (it has train/ and test/ class folders)."
    ),
    default_source="",
    assets_subpath="",
    overrides=REFERENCE_SETUP,
)

if __name__ == "__main__":
    sys.exit(experiment_main(DATASET))
