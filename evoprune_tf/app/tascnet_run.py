"""``python -m evoprune_tf.app.tascnet_run``: TASCNet's command line without a dataset's recipe.

The same options as the TASCNet experiment scripts (`evoprune_tf.app.scripts.tascnet_main`):
every ``evoprune run`` option, ``--config``, ``--dry-run``, ``--text``, ``--stage``,
``--seeds``, ``--out`` and ``--set KEY=VALUE``.
"""

import sys

from evoprune_tf.app.scripts import tascnet_main

__all__ = ["tascnet_main"]

if __name__ == "__main__":
    sys.exit(tascnet_main())
