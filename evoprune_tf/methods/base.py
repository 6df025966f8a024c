"""The contract every pruning method follows, evolutionary or baseline.

A method is a `Method` subclass registered by name (`evoprune_tf.methods.register`):

- ``name``: the ``algorithm.name`` that selects it;
- ``section`` and ``section_type``: the config section it owns (``[tascnet]``) and the
  dataclass that holds it, or none; `validate` checks it (and any other value it reads)
  when the config is loaded, before anything slow;
- ``reads``: the config keys it reads besides the run session's and its own section
  (a section name reads the whole section, ``"algorithm.evaluations"`` one key); a key
  given with a non-default value that neither the method nor the session reads is
  refused with one line naming the key and the method;
- `check`: checks that need the machine (inputs exist, weights downloadable) and run
  before slow work, inside the session's preflight;
- `run`: the method itself; it receives the `evoprune_tf.session.RunSession` (config,
  seeding, MLflow run, checkpoint/resume, callbacks, report folder) and returns its result.

A fifth method is one module with one subclass and one ``@register``; see
``tests/methods/test_registry.py`` for a toy one run end to end.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = ["Method"]


class Method:
    """Base class of a pruning method (subclass it, set the class attributes, register it).

    Attributes:
        name: The ``algorithm.name`` that selects the method.
        summary: One line for ``evoprune methods``.
        section: The config section the method owns ("" for none).
        section_type: The dataclass of that section (None for none).
        reads: Config keys read besides the session's and the own section: a section
            name (``"data"``) or a dotted key (``"algorithm.generations"``).
        defaults: Raw config values filled in under the user's when this method is chosen
            (e.g. DeepPruningES' encoding and operators).
        multi_objective: True when the method keeps a Pareto front (NSGA-II/III).
        fine_tunes_convolutions: True when it trains convolutions inside the backbone
            (the Keras backend choice prefers TensorFlow for those).
        writes_report_files: True when its report writes local files (the report folder
            is then checked before slow work).
        checkpoints: True when it checkpoints through the session (``[checkpoint]`` is
            read; `evoprune resume` continues it).
        uses_feature_cache: True when it writes the feature (or activation) cache.
        prunes_model_files: True when ``backbone.name`` may be a saved ``.keras`` model it prunes whole.
    """

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    section: ClassVar[str] = ""
    section_type: ClassVar[type | None] = None
    reads: ClassVar[tuple[str, ...]] = ()
    defaults: ClassVar[dict] = {}
    multi_objective: ClassVar[bool] = False
    fine_tunes_convolutions: ClassVar[bool] = False
    writes_report_files: ClassVar[bool] = False
    checkpoints: ClassVar[bool] = True
    uses_feature_cache: ClassVar[bool] = True
    prunes_model_files: ClassVar[bool] = False

    def validate(self, config: Any) -> list[str]:
        """Problems of the method's config values, one line each (no I/O, nothing slow).

        Args:
            config: The whole `ExperimentConfig` (the own section is ``config.<section>``).

        Returns:
            The problems found (empty when the config is valid for this method).
        """
        return []

    def check(self, session: Any) -> None:
        """Checks before slow work that need the machine (inputs, weights); raise ValueError in one line.

        Args:
            session: The `evoprune_tf.session.RunSession` (its ``inputs`` hold what the
                caller handed in instead of loading it, e.g. features).
        """

    def run(self, session: Any) -> Any:
        """Run the method inside a prepared session and return its result.

        Args:
            session: The `evoprune_tf.session.RunSession` (preflight and seeding done).

        Returns:
            The method's result object.
        """
        raise NotImplementedError(f"method {self.name!r} does not implement run(session)")

    def tags(self, config: Any) -> dict[str, str]:
        """MLflow tags of the method besides the session's (algorithm, dataset, backbone, seed, backend)."""
        return {}

    def reads_key(self, key: str) -> bool:
        """True when the dotted config ``key`` is one the method reads (own section or `reads`)."""
        own = (self.section,) if self.section else ()
        return any(key == r or key.startswith(r + ".") for r in (*own, *self.reads))

    def __repr__(self) -> str:
        return f"<method {self.name!r}>"
