"""MLflow tracking: the store (`store`) and the tracker callback the search loops call (`tracker`)."""

from evoprune_tf.tracking.store import DEFAULT_TRACKING_URI, check_tracking_uri, find_run, resolve_tracking_uri
from evoprune_tf.tracking.tracker import MLflowTracker

__all__ = ["DEFAULT_TRACKING_URI", "MLflowTracker", "check_tracking_uri", "find_run", "resolve_tracking_uri"]
