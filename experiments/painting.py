"""PAINTING (Kaggle 'Art Images: Drawing/Painting/Sculptures/Engravings', 5 classes, 7721/856).

Usage: python experiments/painting.py [--data FOLDER] [evoprune run overrides]  (--help for all)
"""

import sys

from evoprune_tf.app.scripts import REFERENCE_SETUP, Dataset, experiment_main

DATASET = Dataset(
    name="painting",
    description="PAINTING (Kaggle 'Art Images: Drawing/Painting/Sculptures/Engravings', 5 classes, 7721/856).",
    download=(
        "Download the Kaggle dataset 'thedownhill/art-images-drawings-painting-sculpture-engraving', unzip it, and pass --data <folder with training_set/ renamed train/ and validation_set/ renamed test/, one sub-folder per class>."
    ),
    default_source="",
    assets_subpath="",
    overrides=REFERENCE_SETUP,
)

if __name__ == "__main__":
    sys.exit(experiment_main(DATASET))
