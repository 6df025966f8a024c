"""CalTech-256 (TASCNet evaluation set, 256 classes + clutter): TASCNet (stage-1 configuration search + stage-2 trajectory-similarity pruning).

Usage::

    python experiments/caltech256.py [--data FOLDER] [--backbone VGG16|ResNet50|DenseNet121|MobileNetV2]
        [--weights imagenet|FILE] [--image-size 224] [--seeds 0 1 2] [--set tascnet.KEY=VALUE ...]

Download 256_ObjectCategories.tar from https://data.caltech.edu/records/nyy15-4j048, extract it
(tar xf 256_ObjectCategories.tar) and pass --data <path>/256_ObjectCategories (one folder per
class, e.g. 001.ak47/; split with the seed).
ImageNet weights and the paper's recipe (the default; ``--set`` changes any config value):
see `evoprune_tf.app.scripts.TascnetImageSet`.
"""

import sys

from evoprune_tf.app.scripts import TascnetImageSet

IMAGE_SET = TascnetImageSet(
    name="caltech256",
    description="CalTech-256 (TASCNet evaluation set, 256 classes + clutter).",
    source="",
    data_help=(
        "Download 256_ObjectCategories.tar from https://data.caltech.edu/records/nyy15-4j048, extract it (tar xf 256_ObjectCategories.tar) and pass --data <path>/256_ObjectCategories (one folder per class, e.g. 001.ak47/; split with the seed)."
    ),
    head_download="Download 256_ObjectCategories.tar from https://data.caltech.edu/records/nyy15-4j048 and pass --data <256_ObjectCategories folder>.",
)
DATASET = IMAGE_SET.dataset  # the head-pruning entry (EvoPruneDeepTL methods via experiment_main)

if __name__ == "__main__":
    sys.exit(IMAGE_SET.main())
