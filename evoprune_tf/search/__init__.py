"""The evolutionary search: DEAP toolbox, algorithms, per-generation callbacks, Pareto tools, checkpoints."""
