"""CalTech-256 (TASCNet evaluation set, 256 classes + clutter): TASCNet (stage-1 configuration search + stage-2 trajectory-similarity pruning).

Usage::

    python experiments/caltech256.py [--data FOLDER] [--backbone VGG16|ResNet50|DenseNet121|MobileNetV2]
        [--weights imagenet|FILE] [--image-size 224] [--seeds 0 1 2] [--set tascnet.KEY=VALUE ...]

Download 256_ObjectCategories.tar from https://data.caltech.edu/records/nyy15-4j048, extract it
(tar xf 256_ObjectCategories.tar) and pass --data <path>/256_ObjectCategories (one folder per
class, e.g. 001.ak47/; split with the seed). ImageNet weights: put
vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5 (or
resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5 /
densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5) in $KERAS_HOME/models/ (default
~/.keras/models/) or pass --weights <file>.

The paper's recipe (SGD lr 1e-3, momentum 0.9 Nesterov, halved every 20 epochs, batch 32;
prune 5 % per layer and iteration while validation accuracy stays within 2 points) is the
default; ``--set`` changes any config value. ``DATASET`` keeps this dataset's head-pruning
entry for `evoprune_tf.app.scripts.experiment_main` (the EvoPruneDeepTL methods).
"""

import sys

from evoprune_tf.app.scripts import REFERENCE_SETUP, Dataset
from evoprune_tf.app.tascnet_run import tascnet_main

DOWNLOAD = 'Download 256_ObjectCategories.tar from https://data.caltech.edu/records/nyy15-4j048, extract it (tar xf 256_ObjectCategories.tar) and pass --data <path>/256_ObjectCategories (one folder per class, e.g. 001.ak47/; split with the seed). ImageNet weights: put vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5 (or resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5 / densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5) in $KERAS_HOME/models/ (default ~/.keras/models/) or pass --weights <file>.'

TASCNET_DEFAULTS = {
    "data": {"source": "", "image_size": 224, "val_fraction": 0.15, "test_fraction": 0.2},
    "backbone": {"name": "VGG16", "weights": "imagenet"},
    "tracking": {"experiment": "tascnet-caltech256"},
    "tascnet": {"stage": "both", "evaluations": 20, "population": 6, "search_epochs": 5, "final_epochs": 30,
                "epochs": 5, "max_iterations": 20},
}

DATASET = Dataset(
    name="caltech256",
    description="CalTech-256 (TASCNet evaluation set, 256 classes + clutter).",
    download='Download 256_ObjectCategories.tar from https://data.caltech.edu/records/nyy15-4j048 and pass --data <256_ObjectCategories folder>.',
    default_source="",
    assets_subpath="",
    overrides=REFERENCE_SETUP,
)

if __name__ == "__main__":
    sys.exit(tascnet_main(defaults=TASCNET_DEFAULTS, description=DATASET.description, download=DOWNLOAD))
