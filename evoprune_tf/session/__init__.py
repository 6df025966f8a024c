"""The run session: what every method shares (preflight, seeding, MLflow run, signals, checkpoint/resume, callbacks, report folder)."""

from evoprune_tf.session.options import flatten, run_name, run_tags, seed_everything, tracker_options
from evoprune_tf.session.outputs import check_output_locations, checkpoint_dir, report_files, report_folder
from evoprune_tf.session.session import RunSession, run_method
from evoprune_tf.session.signals import Terminated, sigterm_raises

__all__ = ["RunSession", "Terminated", "check_output_locations", "checkpoint_dir", "flatten", "report_files",
           "report_folder", "run_method", "run_name", "run_tags", "seed_everything", "sigterm_raises",
           "tracker_options"]
