"""DeepPruningES on Rock-Paper-Scissors: prune MobileNetV2's last blocks, report heavy / knee / light.

A budget that fits two CPU cores: 96 px images, the last 3 blocks of MobileNetV2 (block_15,
block_16, Conv_1), population 10, 4 generations, 2 fine-tune epochs per genome, 5 epochs for
the final retrains. The reference budget is ``--population 30 --generations 11 --epochs 3``.
Another dataset: ``--data $EVOPRUNE_ASSETS/datasets/hymenoptera`` (ants vs bees).

Usage: python experiments/deep_pruning_es_rps.py [--data FOLDER] [--seed N] [evoprune run overrides]
"""

import sys

from evoprune_tf.app.scripts import Dataset, experiment_main

DATASET = Dataset(
    name="rps",
    description="DeepPruningES filter pruning of MobileNetV2 on Rock-Paper-Scissors (3 classes).",
    download=(
        "Uses $EVOPRUNE_ASSETS/datasets/rps_28px when set (a 28 px copy), else TFDS rock_paper_scissors, "
        "or --data FOLDER with train/ and test/ class folders."
    ),
    default_source="tfds:rock_paper_scissors",
    assets_subpath="datasets/rps_28px",
    assets_weights="weights/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5",
    overrides={
        "name": "rps-deep-pruning-es",
        "backbone": {"name": "mobilenet_v2", "weights": "imagenet"},
        "data": {"image_size": 96},
        "algorithm": {"name": "deep_pruning_es", "population": 10, "generations": 4},
        "encoding": {"name": "filters", "blocks": 3},
        "train": {"epochs": 2},
        "report": {"epochs": 5, "seeds": 1},
    },
)

if __name__ == "__main__":
    sys.exit(experiment_main(DATASET))
