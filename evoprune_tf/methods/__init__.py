"""Pruning methods: one contract (`Method`), one registry, one package or module per method."""
