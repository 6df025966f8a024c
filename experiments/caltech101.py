"""CalTech-101 (TASCNet evaluation set, 101 classes + background): TASCNet (stage-1 configuration search + stage-2 trajectory-similarity pruning).

Usage::

    python experiments/caltech101.py [--data FOLDER] [--backbone VGG16|ResNet50|DenseNet121|MobileNetV2]
        [--weights imagenet|FILE] [--image-size 224] [--seeds 0 1 2] [--set tascnet.KEY=VALUE ...]

Download: TFDS caltech101 (pip install 'evoprune-tf[tfds]'; fetched on first use into
~/tensorflow_datasets), or caltech-101.zip from https://data.caltech.edu/records/mzrjq-6wc02 (->
101_ObjectCategories/) and pass --data <path>/101_ObjectCategories (one folder per class; split
with the seed).
ImageNet weights and the paper's recipe (the default; ``--set`` changes any config value):
see `evoprune_tf.app.scripts.TascnetImageSet`.
"""

import sys

from evoprune_tf.app.scripts import TascnetImageSet

IMAGE_SET = TascnetImageSet(
    name="caltech101",
    description="CalTech-101 (TASCNet evaluation set, 101 classes + background).",
    source="tfds:caltech101",
    data_help=(
        "Download: TFDS caltech101 (pip install 'evoprune-tf[tfds]'; fetched on first use into ~/tensorflow_datasets), or caltech-101.zip from https://data.caltech.edu/records/mzrjq-6wc02 (-> 101_ObjectCategories/) and pass --data <path>/101_ObjectCategories (one folder per class; split with the seed)."
    ),
    head_download="Loads TFDS caltech101 (pip install 'evoprune-tf[tfds]', downloaded on first use), or pass --data <101_ObjectCategories folder> (split into train/test with the seed).",
)
DATASET = IMAGE_SET.dataset  # the head-pruning entry (EvoPruneDeepTL methods via experiment_main)

if __name__ == "__main__":
    sys.exit(IMAGE_SET.main())
