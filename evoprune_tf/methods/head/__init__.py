"""EvoPruneDeepTL on the transfer-learning head: the GA loops, NSGA-II/III, random search and the head baselines."""
