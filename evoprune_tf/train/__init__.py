"""Training of pruned heads during the search and in the final report."""
