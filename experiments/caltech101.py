"""CalTech-101 (TASCNet evaluation set, 101 classes + background): TASCNet (stage-1 configuration search + stage-2 trajectory-similarity pruning).

Usage::

    python experiments/caltech101.py [--data FOLDER] [--backbone VGG16|ResNet50|DenseNet121|MobileNetV2]
        [--weights imagenet|FILE] [--image-size 224] [--seeds 0 1 2] [--set tascnet.KEY=VALUE ...]

Download: TFDS caltech101 (pip install 'evoprune-tf[tfds]'; fetched on first use into
~/tensorflow_datasets), or caltech-101.zip from https://data.caltech.edu/records/mzrjq-6wc02 (->
101_ObjectCategories/) and pass --data <path>/101_ObjectCategories (one folder per class; split
with the seed). ImageNet weights: put vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5 (or
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

DOWNLOAD = "Download: TFDS caltech101 (pip install 'evoprune-tf[tfds]'; fetched on first use into ~/tensorflow_datasets), or caltech-101.zip from https://data.caltech.edu/records/mzrjq-6wc02 (-> 101_ObjectCategories/) and pass --data <path>/101_ObjectCategories (one folder per class; split with the seed). ImageNet weights: put vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5 (or resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5 / densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5) in $KERAS_HOME/models/ (default ~/.keras/models/) or pass --weights <file>."

TASCNET_DEFAULTS = {
    "data": {"source": "tfds:caltech101", "image_size": 224, "val_fraction": 0.15, "test_fraction": 0.2},
    "backbone": {"name": "VGG16", "weights": "imagenet"},
    "tracking": {"experiment": "tascnet-caltech101"},
    "tascnet": {"stage": "both", "evaluations": 20, "population": 6, "search_epochs": 5, "final_epochs": 30,
                "epochs": 5, "max_iterations": 20},
}

DATASET = Dataset(
    name="caltech101",
    description="CalTech-101 (TASCNet evaluation set, 101 classes + background).",
    download="Loads TFDS caltech101 (pip install 'evoprune-tf[tfds]', downloaded on first use), or pass --data <101_ObjectCategories folder> (split into train/test with the seed).",
    default_source="tfds:caltech101",
    assets_subpath="",
    overrides=REFERENCE_SETUP,
)

if __name__ == "__main__":
    sys.exit(tascnet_main(defaults=TASCNET_DEFAULTS, description=DATASET.description, download=DOWNLOAD))
