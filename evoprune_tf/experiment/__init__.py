"""One experiment: its config (TOML + overrides -> a validated `ExperimentConfig`) and running it.

`config` (loading, merging, validation) over `sections` (the dataclasses) and `checks`
(range, name and method checks); `backend` (which Keras backend, and why); `run`
(``run``/``resume``: the registry's method in a run session); `trust` (which modules a
stored config may import). Above the methods and the session, below the studies and the
command line (`evoprune_tf.app`). Import the submodules: this package imports nothing.
"""
