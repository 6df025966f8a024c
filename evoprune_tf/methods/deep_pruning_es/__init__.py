"""DeepPruningES: evolution-strategy filter pruning inside the backbone (encoding, evaluation, loop, report)."""
