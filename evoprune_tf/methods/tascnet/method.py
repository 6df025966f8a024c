"""TASCNet registered as a method: ``algorithm.name = "tascnet"``, its section ``[tascnet]``."""

from __future__ import annotations

from typing import Any

from evoprune_tf.methods.base import Method
from evoprune_tf.methods.registry import register
from evoprune_tf.methods.tascnet.config import TascnetConfig, check_tascnet

__all__ = ["Tascnet"]


@register
class Tascnet(Method):
    """Stage-1 configuration search of the deeper layers, stage-2 trajectory-similarity filter pruning."""

    name = "tascnet"
    summary = "TASCNet: stage-1 search of the deeper layers, stage-2 trajectory-similarity filter pruning"
    section = "tascnet"
    section_type = TascnetConfig
    reads = ("data.source", "data.image_size", "data.val_fraction", "data.test_fraction", "data.max_per_class",
             "data.skip_bad_images", "data.name", "backbone", "report.export_model", "report.litert", "report.dir")
    fine_tunes_convolutions = True
    writes_report_files = True
    checkpoints = True
    uses_feature_cache = False

    def validate(self, config: Any) -> list[str]:
        """The ``[tascnet]`` section's ranges and names."""
        return check_tascnet(config.tascnet)

    def check(self, session: Any) -> None:
        """The config is TASCNet's (`run_tascnet` takes any validated config)."""
        if session.config.algorithm.name != self.name:
            raise ValueError(f"algorithm.name={session.config.algorithm.name!r}; expected 'tascnet' for run_tascnet")

    def tags(self, config: Any) -> dict[str, str]:
        """``evoprune.tascnet.stage``."""
        return {"evoprune.tascnet.stage": str(config.tascnet.stage)}

    def run(self, session: Any) -> Any:
        """`evoprune_tf.methods.tascnet.run.run_in_session`; prints the results table, returns the report dict.

        Session input ``print_table`` (default True): False leaves the table to the caller
        (the experiment scripts print one over all seeds).
        """
        from evoprune_tf.methods.tascnet.report import results_table
        from evoprune_tf.methods.tascnet.run import run_in_session

        report = run_in_session(session)
        if session.inputs.get("print_table", True):
            session.say(results_table([report]))  # as the other methods: the report and the run id
        return report
