"""Pruning methods: one contract (`Method`), one registry, one package or module per method.

``head`` (EvoPruneDeepTL's GA loops, NSGA-II/III, random search and the head baselines),
``deep_pruning_es`` (filter pruning inside the backbone) and ``tascnet`` (stage-1
configuration search, stage-2 trajectory-similarity pruning) each live in one package;
`register` adds yours (or the ``evoprune.methods`` entry-point group for a package).
"""

from evoprune_tf.methods.base import Method
from evoprune_tf.methods.registry import (
    ENTRY_POINT_GROUP,
    available_methods,
    get_method,
    method_sections,
    register,
    unregister,
)

#: `register` under the name ``evoprune_tf`` exports it as (``ep.register_method``).
register_method = register

__all__ = ["ENTRY_POINT_GROUP", "Method", "available_methods", "get_method", "method_sections", "register",
           "register_method", "unregister"]
