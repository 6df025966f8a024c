"""The datasets that `evoprune_tf.data.download` can fetch by name, and where they are published."""

from __future__ import annotations

import dataclasses

__all__ = [
    "DOWNLOAD_BASE_ENV",
    "DEFAULT_DOWNLOAD_BASE",
    "CACHE_SUBDIR",
    "DATASETS",
    "DatasetArchive",
    "DownloadError",
    "DownloadableDataset",
    "known_datasets",
]


#: Environment variable that replaces `DEFAULT_DOWNLOAD_BASE` (mirrors, tests).
DOWNLOAD_BASE_ENV = "EVOPRUNE_DOWNLOAD_BASE"
#: Where the registered archives are published.
DEFAULT_DOWNLOAD_BASE = "https://storage.googleapis.com/download.tensorflow.org/data"
#: Sub-folder of the Keras cache that holds our datasets (and ``downloads/``).
CACHE_SUBDIR = "datasets/evoprune"


class DownloadError(RuntimeError):
    """A dataset could not be downloaded or unpacked; the message says what to do offline.

    Args:
        message: the one-line message.
        url: the URL that failed.
        reason: why, in a few words (the underlying error).
    """

    def __init__(self, message: str, *, url: str = "", reason: str = "") -> None:
        super().__init__(message)
        self.url = url
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class DatasetArchive:
    """One archive of a downloadable dataset.

    Attributes:
        file_name: the archive's name at the base URL and in the download cache.
        split: the split it holds (``train``, ``test`` or ``val``): the sub-folder it becomes.
        top_folder: the folder inside the archive that holds the class folders.
        sha256: the archive's published SHA-256, checked after download from the
            default base URL; None: not checked.
        size: the archive's size in bytes (for messages), None when unknown.
    """

    file_name: str
    split: str
    top_folder: str
    sha256: str | None = None
    size: int | None = None


@dataclasses.dataclass(frozen=True)
class DownloadableDataset:
    """A dataset that `download_dataset` can fetch by name.

    Attributes:
        name: the registry name (``download:NAME``).
        title: a human name for messages.
        archives: one archive per split.
        class_names: the class folders every split holds.
        citation: where the data comes from and its licence.
    """

    name: str
    title: str
    archives: tuple[DatasetArchive, ...]
    class_names: tuple[str, ...]
    citation: str = ""


# The SHA-256 sums and sizes are the ones TensorFlow Datasets verifies for these very URLs
# (tensorflow/datasets, tensorflow_datasets/url_checksums/rock_paper_scissors.txt); they
# could not be re-computed here (no internet), so a changed upload shows up as a hash error.
DATASETS: dict[str, DownloadableDataset] = {
    "rock_paper_scissors": DownloadableDataset(
        name="rock_paper_scissors",
        title="Rock-Paper-Scissors",
        archives=(
            DatasetArchive(
                "rps.zip", "train", "rps",
                sha256="c2403444395842ad04c53612bad54b574443eae17a0723117a2ff87b9d72194f", size=200_682_221,
            ),
            DatasetArchive(
                "rps-test-set.zip", "test", "rps-test-set",
                sha256="c27ab9fa43ce40b2e453de711365b477f4424586edf0388116674fd320f07503", size=29_516_758,
            ),
        ),
        class_names=("paper", "rock", "scissors"),
        citation="Laurence Moroney, Rock, Paper, Scissors Dataset (2019), CC BY 2.0; 2520 train / 372 test, 300x300 px",
    ),
}


def known_datasets() -> tuple[str, ...]:
    """Names that `download_dataset` and ``load_images("download:NAME")`` accept.

    Returns:
        The registered names, sorted.
    """
    return tuple(sorted(DATASETS))
