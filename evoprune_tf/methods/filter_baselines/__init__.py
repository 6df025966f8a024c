"""The field's filter-pruning baselines, registered as methods (``algorithm.name``).

Each prunes the searched filters of DeepPruningES' network by one criterion to a FLOPs
target (``algorithm.flops_reduction`` or ``algorithm.flops_of``), then fine-tunes,
tests, counts and times the pruned model with DeepPruningES' final-model report:

* ``random_filters``: random widths and random filters (`random_filters`);
* ``uniform_width``: every group keeps the same fraction (`random_filters`);
* ``l1_filters``: smallest L1 norm per layer, Li et al. 2017 (`l1_filters`);
* ``bn_scale``: smallest BatchNorm gamma, ranked globally, Liu et al. 2017 (`bn_scale`);
* ``fpgm``: nearest the geometric median, He et al. 2019 (`fpgm`);
* ``taylor``: first-order Taylor importance, Molchanov et al. 2019 (`taylor`).

`target` ranks the scores and binary-searches the FLOPs target; `pipeline` runs it.
Importing this package registers the methods and does not import Keras.
"""

from evoprune_tf.methods.filter_baselines import bn_scale, fpgm, l1_filters, random_filters, taylor  # noqa: F401
from evoprune_tf.methods.filter_baselines.method import FilterBaseline

#: The filter baselines' method names.
FILTER_BASELINES = ("random_filters", "uniform_width", "l1_filters", "bn_scale", "fpgm", "taylor")

__all__ = ["FILTER_BASELINES", "FilterBaseline"]
