"""Studies: grids of runs over seeds, datasets and methods, and their statistical comparison."""

from evoprune_tf.studies.axis import AxisComparison
from evoprune_tf.studies.compare import ComparisonResult, compare, compare_main, format_markdown
from evoprune_tf.studies.compare_axis import compare_over_axis
from evoprune_tf.studies.fronts import FrontComparison, front_hypervolume
from evoprune_tf.studies.stats import (
    FriedmanResult,
    WilcoxonResult,
    align_by_seed,
    critical_difference_diagram,
    friedman,
    vargha_delaney_a,
    wilcoxon_paired,
)

__all__ = [
    "AxisComparison",
    "ComparisonResult",
    "FrontComparison",
    "FriedmanResult",
    "WilcoxonResult",
    "align_by_seed",
    "compare",
    "compare_main",
    "compare_over_axis",
    "critical_difference_diagram",
    "format_markdown",
    "friedman",
    "front_hypervolume",
    "vargha_delaney_a",
    "wilcoxon_paired",
]
