"""The old import path of `evoprune_tf.experiment.config`: the very same module.

``from evoprune_tf.app.config import load_config`` keeps working; new code imports
`evoprune_tf.experiment.config`.
"""

import sys

from evoprune_tf.experiment import config as _config

sys.modules[__name__] = _config
