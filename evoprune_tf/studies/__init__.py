"""Studies: grids of runs over seeds, datasets and methods, and their statistical comparison."""

from evoprune_tf.studies.compare import ComparisonResult, compare, compare_main, format_markdown
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
    "ComparisonResult",
    "FriedmanResult",
    "WilcoxonResult",
    "align_by_seed",
    "compare",
    "compare_main",
    "critical_difference_diagram",
    "format_markdown",
    "friedman",
    "vargha_delaney_a",
    "wilcoxon_paired",
]
