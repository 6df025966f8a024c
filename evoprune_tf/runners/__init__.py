"""How a population is evaluated: in this process, in spawned processes, or on Ray."""
