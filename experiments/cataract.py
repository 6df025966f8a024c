"""CATARACT (Kaggle 'cataract dataset', 4 classes).

Usage: python experiments/cataract.py [--data FOLDER] [evoprune run overrides]  (--help for all)
"""

import sys

from evoprune_tf.app.scripts import REFERENCE_SETUP, Dataset, experiment_main

DATASET = Dataset(
    name="cataract",
    description="CATARACT (Kaggle 'cataract dataset', 4 classes).",
    download=(
        "Download the Kaggle dataset 'jr2ngb/cataractdataset', and pass --data <its dataset/ folder with one sub-folder per class> (split 80/20 into train/test with the seed)."
    ),
    default_source="",
    assets_subpath="",
    overrides=REFERENCE_SETUP,
)

if __name__ == "__main__":
    sys.exit(experiment_main(DATASET))
