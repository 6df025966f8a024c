"""The old import path of `evoprune_tf.experiment.run`: the very same module.

``from evoprune_tf.app.run import run, resume`` keeps working; new code imports
`evoprune_tf.experiment.run`.
"""

import sys

from evoprune_tf.experiment import run as _run

sys.modules[__name__] = _run
