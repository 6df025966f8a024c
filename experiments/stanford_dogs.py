"""Stanford Dogs (TASCNet evaluation set, 120 classes): TASCNet (stage-1 configuration search + stage-2 trajectory-similarity pruning).

Usage::

    python experiments/stanford_dogs.py [--data FOLDER] [--backbone VGG16|ResNet50|DenseNet121|MobileNetV2]
        [--weights imagenet|FILE] [--image-size 224] [--seeds 0 1 2] [--set tascnet.KEY=VALUE ...]

Download: TFDS stanford_dogs (pip install 'evoprune-tf[tfds]'; fetched on first use), or
images.tar from http://vision.stanford.edu/aditya86/ImageNetDogs/ (tar xf images.tar -> Images/)
and pass --data <path>/Images (one folder per breed; split with the seed).
ImageNet weights and the paper's recipe (the default; ``--set`` changes any config value):
see `evoprune_tf.app.scripts.TascnetImageSet`.
"""

import sys

from evoprune_tf.app.scripts import TascnetImageSet

IMAGE_SET = TascnetImageSet(
    name="stanford_dogs",
    description="Stanford Dogs (TASCNet evaluation set, 120 classes).",
    source="tfds:stanford_dogs",
    data_help=(
        "Download: TFDS stanford_dogs (pip install 'evoprune-tf[tfds]'; fetched on first use), or images.tar from http://vision.stanford.edu/aditya86/ImageNetDogs/ (tar xf images.tar -> Images/) and pass --data <path>/Images (one folder per breed; split with the seed)."
    ),
    head_download="Loads TFDS stanford_dogs (pip install 'evoprune-tf[tfds]', downloaded on first use), or pass --data <Images folder with one sub-folder per breed>.",
)
DATASET = IMAGE_SET.dataset  # the head-pruning entry (EvoPruneDeepTL methods via experiment_main)

if __name__ == "__main__":
    sys.exit(IMAGE_SET.main())
