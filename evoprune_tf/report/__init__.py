"""Final reports: retrain winners and score them on test, Pareto fronts, ensembles, explanations (figures: `evoprune_tf.plots`)."""
