"""The application layer: the only code that reads `ExperimentConfig`; builds the parts and runs them."""
