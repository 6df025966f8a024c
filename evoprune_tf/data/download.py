"""Datasets downloaded by name with ``keras.utils.get_file`` and read as class folders.

`download_dataset` fetches a registered dataset's archives once, unpacks them and
arranges them as a class-folder dataset that `evoprune_tf.data.load_images` reads::

    <cache>/datasets/evoprune/rock_paper_scissors/train/{paper,rock,scissors}/*.png
                                                  test/{paper,rock,scissors}/*.png

``<cache>`` is the ``cache_dir`` argument, else ``$KERAS_HOME``, else ``~/.keras`` (Keras'
own rule, so the datasets sit next to Keras' ImageNet weights in ``<cache>/models/``).
Once that folder exists no network is used. ``load_images("download:NAME")`` goes
through here, so a config or ``--data`` can name ``download:rock_paper_scissors``.

Mirrors and tests: the environment variable ``EVOPRUNE_DOWNLOAD_BASE`` replaces the base
URL ``https://storage.googleapis.com/download.tensorflow.org/data`` (``http://``,
``https://`` or ``file://``); each archive is fetched from ``<base>/<archive file name>``.

Offline: put the archives (e.g. ``rps.zip``, ``rps-test-set.zip``) in
``<cache>/datasets/evoprune/downloads/``, where they are unpacked from without any
download, or unpack them yourself into the layout above (`offline_instructions` says
both for a dataset).
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import shutil
import socket
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import warnings

__all__ = [
    "CACHE_SUBDIR",
    "DEFAULT_DOWNLOAD_BASE",
    "DOWNLOAD_BASE_ENV",
    "DatasetArchive",
    "DownloadError",
    "DownloadableDataset",
    "check_download",
    "dataset_folder",
    "dataset_info",
    "dataset_urls",
    "download_dataset",
    "downloads_folder",
    "is_downloaded",
    "known_datasets",
    "offline_instructions",
]

#: Environment variable that replaces `DEFAULT_DOWNLOAD_BASE` (mirrors, tests).
DOWNLOAD_BASE_ENV = "EVOPRUNE_DOWNLOAD_BASE"
#: Where the registered archives are published.
DEFAULT_DOWNLOAD_BASE = "https://storage.googleapis.com/download.tensorflow.org/data"
#: Sub-folder of the Keras cache that holds our datasets (and ``downloads/``).
CACHE_SUBDIR = "datasets/evoprune"

_SCHEMES = ("http://", "https://", "file://")
# Folders that are never a dataset's class folders (macOS archive debris).
_IGNORED_DIRS = ("__MACOSX",)
# A dataset folder is searched this deep inside an unpacked archive.
_SEARCH_DEPTH = 3


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
_DATASETS: dict[str, DownloadableDataset] = {
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
    return tuple(sorted(_DATASETS))


def dataset_urls(name: str, *, base_url: str | None = None) -> tuple[str, ...]:
    """The URLs a dataset's archives are downloaded from.

    Args:
        name: a registered dataset name (see `known_datasets`).
        base_url: the base URL; None: ``$EVOPRUNE_DOWNLOAD_BASE`` or `DEFAULT_DOWNLOAD_BASE`.

    Returns:
        One URL per archive, in the registry's order (train first).

    Raises:
        ValueError: an unknown name or a base URL that is not http(s):// or file://.
    """
    dataset = _dataset(name)
    base = _base_url(base_url)
    return tuple(f"{base}/{archive.file_name}" for archive in dataset.archives)


def dataset_folder(name: str, *, cache_dir: str | os.PathLike[str] | None = None) -> pathlib.Path:
    """Where a dataset's class folders are (or will be, once downloaded); no network.

    Args:
        name: a registered dataset name.
        cache_dir: the cache root; None: ``$KERAS_HOME`` or ``~/.keras``.

    Returns:
        ``<cache>/datasets/evoprune/<name>``.

    Raises:
        ValueError: an unknown name.
    """
    dataset = _dataset(name)
    return _cache_root(cache_dir, create=False) / CACHE_SUBDIR / dataset.name


def is_downloaded(name: str, *, cache_dir: str | os.PathLike[str] | None = None) -> bool:
    """Whether a dataset's folder holds every split with every class folder (no network).

    Args:
        name: a registered dataset name.
        cache_dir: the cache root; None: ``$KERAS_HOME`` or ``~/.keras``.

    Returns:
        True when `download_dataset` would return at once.

    Raises:
        ValueError: an unknown name.
    """
    dataset = _dataset(name)
    return _is_complete(_cache_root(cache_dir, create=False) / CACHE_SUBDIR / dataset.name, dataset)


def check_download(
    name: str,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    base_url: str | None = None,
    timeout: float = 5.0,
) -> None:
    """Fail in seconds when a dataset is neither cached nor downloadable.

    Nothing is fetched: an archive whose split is already unpacked or whose file is in
    ``<cache>/datasets/evoprune/downloads/`` needs no network; for the others an HTTP
    ``HEAD`` request must succeed within ``timeout`` seconds (``file://``: the file
    must exist). Use it before a long run, as `download_dataset` waits up to its own
    ``timeout`` per stalled read.

    Args:
        name: a registered dataset name.
        cache_dir: the cache root; None: ``$KERAS_HOME`` or ``~/.keras``.
        base_url: the base URL; None: ``$EVOPRUNE_DOWNLOAD_BASE`` or `DEFAULT_DOWNLOAD_BASE`.
        timeout: seconds to wait for each server answer.

    Raises:
        ValueError: an unknown name or a bad base URL.
        DownloadError: one line naming the URL that cannot be had and what to do offline.
    """
    dataset = _dataset(name)
    root = _cache_root(cache_dir, create=False)
    folder = root / CACHE_SUBDIR / dataset.name
    if _is_complete(folder, dataset):
        return
    base = _base_url(base_url)
    staging = _staging_folder(folder)
    downloads = root / CACHE_SUBDIR / "downloads"
    for archive in dataset.archives:
        if _holds_classes(staging / archive.split, dataset.class_names) or (downloads / archive.file_name).is_file():
            continue
        url = f"{base}/{archive.file_name}"
        try:
            _probe_url(url, timeout)
        except Exception as error:  # noqa: BLE001 - any failure means "cannot be had from here"
            reason = _reason(error)
            raise DownloadError(_failure_message(dataset, archive, url, reason, root), url=url, reason=reason) from None


def download_dataset(
    name: str,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    base_url: str | None = None,
    verify: bool | None = None,
    timeout: float = 60.0,
) -> pathlib.Path:
    """Download a dataset once and return its class-folder dataset folder.

    Each archive is fetched with ``keras.utils.get_file`` into
    ``<cache>/datasets/evoprune/downloads/`` (an archive already there is used as it
    is; with ``verify``, Keras fetches it again when its hash differs), unpacked, and its class folders moved to ``<folder>/<split>/``; the archive
    and the unpacked copy are then deleted, so the dataset takes its size once on disk.
    The folder appears in one rename when every split is in place, so a partly
    downloaded dataset is never read; an interrupted download resumes with the splits
    it lacks.

    Args:
        name: a registered dataset name (see `known_datasets`).
        cache_dir: the cache root; None: ``$KERAS_HOME`` or ``~/.keras`` (when that is
            not writable, ``/tmp/.keras``, as Keras does).
        base_url: the base URL; None: ``$EVOPRUNE_DOWNLOAD_BASE`` or `DEFAULT_DOWNLOAD_BASE`.
        verify: check the archives' published SHA-256; None: only when downloading from
            `DEFAULT_DOWNLOAD_BASE` (a mirror may re-pack the archives).
        timeout: seconds a stalled connection or read may wait before failing (Keras
            itself sets none; applied only while no process-wide default is set).

    Returns:
        The dataset folder, ``<cache>/datasets/evoprune/<name>`` with one sub-folder per
        split (``train``, ``test``), each holding the class folders.

    Raises:
        ValueError: an unknown name, a bad base URL, or a dataset folder that exists but
            lacks splits or classes.
        DownloadError: one line naming the URL that failed and what to do offline.
    """
    dataset = _dataset(name)
    root = _cache_root(cache_dir)
    folder = root / CACHE_SUBDIR / dataset.name
    if _is_complete(folder, dataset):
        return folder
    if folder.exists():
        raise ValueError(
            f"dataset folder '{folder}' exists but lacks some of {_layout(dataset)}; "
            "expected that layout: complete it or delete the folder to download it again"
        )
    base = _base_url(base_url)
    if verify is None:
        verify = base == DEFAULT_DOWNLOAD_BASE
    downloads = root / CACHE_SUBDIR / "downloads"
    staging = _staging_folder(folder)
    downloads.mkdir(parents=True, exist_ok=True)
    staging.mkdir(parents=True, exist_ok=True)
    for archive in dataset.archives:
        target = staging / archive.split
        if _holds_classes(target, dataset.class_names):
            continue  # unpacked by an earlier, interrupted call
        url = f"{base}/{archive.file_name}"
        unpacked = _fetch(dataset, archive, url, downloads, verify=verify, timeout=timeout, root=root)
        _move_split(dataset, archive, url, unpacked, downloads, target, root)
    try:
        os.replace(staging, folder)
    except OSError:
        if not _is_complete(folder, dataset):  # else another process finished first: use its copy
            raise
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def offline_instructions(name: str, *, cache_dir: str | os.PathLike[str] | None = None) -> str:
    """What to download for a dataset and where to put it, for machines without internet.

    Args:
        name: a registered dataset name.
        cache_dir: the cache root; None: ``$KERAS_HOME`` or ``~/.keras``.

    Returns:
        A few lines: the archive URLs, the download folder they are unpacked from, and
        the unpacked layout that is read as it is.

    Raises:
        ValueError: an unknown name.
    """
    dataset = _dataset(name)
    root = _cache_root(cache_dir, create=False)
    folder = root / CACHE_SUBDIR / dataset.name
    lines = [f"{dataset.title} ({dataset.citation}): download, on any machine with internet,"]
    for archive, url in zip(dataset.archives, dataset_urls(name)):
        size = f", {archive.size / 1e6:.1f} MB" if archive.size else ""
        lines.append(f"  {url}  ({archive.split}{size})")
    lines.append(f"then put the archives in {root / CACHE_SUBDIR / 'downloads'}/ (unpacked from there on first use)")
    lines.append(f"or unpack them yourself as {_layout(dataset, folder)}")
    return "\n".join(lines)


def dataset_info(name: str) -> DownloadableDataset:
    """The registry entry of a dataset: its archives (file, split, size), classes and citation.

    Args:
        name: a registered dataset name.

    Returns:
        The `DownloadableDataset`.

    Raises:
        ValueError: an unknown name.
    """
    return _dataset(name)


def downloads_folder(*, cache_dir: str | os.PathLike[str] | None = None) -> pathlib.Path:
    """The folder archives are downloaded to, and unpacked from when put there by hand; no network.

    Args:
        cache_dir: the cache root; None: ``$KERAS_HOME`` or ``~/.keras``.

    Returns:
        ``<cache>/datasets/evoprune/downloads``.
    """
    return _cache_root(cache_dir, create=False) / CACHE_SUBDIR / "downloads"


# --------------------------------------------------------------------------- internals


def _dataset(name: str) -> DownloadableDataset:
    key = str(name).strip().lower()
    if key not in _DATASETS:
        raise ValueError(
            f"unknown downloadable dataset {name!r}; expected one of {', '.join(known_datasets())} "
            "(as 'download:NAME')"
        )
    return _DATASETS[key]


def _base_url(base_url: str | None) -> str:
    given = base_url if base_url is not None else os.environ.get(DOWNLOAD_BASE_ENV, "")
    base = str(given).strip().rstrip("/") or DEFAULT_DOWNLOAD_BASE
    if not base.lower().startswith(_SCHEMES):
        where = "base_url" if base_url is not None else DOWNLOAD_BASE_ENV
        raise ValueError(f"{where}={given!r}; expected a URL starting with http://, https:// or file://")
    return base


def _cache_root(cache_dir: str | os.PathLike[str] | None, create: bool = True) -> pathlib.Path:
    """The cache root (created when ``create``); Keras' fallback ``/tmp/.keras`` when it is not writable.

    ``KERAS_HOME`` is read here, not at import, so that a changed environment (tests,
    notebooks) is honoured; Keras itself reads it once when it is imported.
    """
    if cache_dir is not None:
        root = pathlib.Path(cache_dir).expanduser()
    else:
        root = pathlib.Path(os.path.expanduser(os.environ.get("KERAS_HOME", os.path.join("~", ".keras"))))
    if create:
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError:
            pass
    if (create or root.exists()) and not os.access(root, os.W_OK):
        root = pathlib.Path("/tmp" if os.path.isdir("/tmp") else tempfile.gettempdir()) / ".keras"
        if create:
            root.mkdir(parents=True, exist_ok=True)
    return root


def _staging_folder(folder: pathlib.Path) -> pathlib.Path:
    # Hidden, next to the final folder (same file system, so the last step is one rename).
    return folder.with_name(f".{folder.name}.partial")


def _visible_dirs(folder: pathlib.Path) -> list[pathlib.Path]:
    try:
        entries = list(folder.iterdir())
    except OSError:
        return []
    return [p for p in entries if p.is_dir() and not p.name.startswith(".") and p.name not in _IGNORED_DIRS]


def _holds_classes(folder: pathlib.Path, class_names: tuple[str, ...]) -> bool:
    names = {p.name for p in _visible_dirs(folder)}
    return all(c in names for c in class_names)


def _is_complete(folder: pathlib.Path, dataset: DownloadableDataset) -> bool:
    return all(_holds_classes(folder / a.split, dataset.class_names) for a in dataset.archives)


def _layout(dataset: DownloadableDataset, folder: pathlib.Path | None = None) -> str:
    classes = "{" + ",".join(dataset.class_names) + "}"
    prefix = f"{folder}/" if folder is not None else ""
    return " and ".join(f"{prefix}{a.split}/{classes}/" for a in dataset.archives)


def _reason(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    text = text if len(text) <= 160 else text[:157] + "..."
    return f"{type(error).__name__}: {text}"


def _failure_message(
    dataset: DownloadableDataset, archive: DatasetArchive, url: str, reason: str, root: pathlib.Path
) -> str:
    downloads = root / CACHE_SUBDIR / "downloads"
    folder = root / CACHE_SUBDIR / dataset.name
    return (
        f"cannot download {url} ({reason}); offline: put {archive.file_name} in {downloads}/ "
        f"or its unpacked class folders at {folder}/{archive.split}/, or use local data "
        f"(--data FOLDER / data.source; the demo: EVOPRUNE_ASSETS)"
    )


def _probe_url(url: str, timeout: float) -> None:
    if url.lower().startswith("file://"):
        path = urllib.request.url2pathname(urllib.parse.urlsplit(url).path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"no file {path}")
        return
    request = urllib.request.Request(url, method="HEAD")
    try:
        urllib.request.urlopen(request, timeout=timeout).close()
    except urllib.error.HTTPError as error:
        if error.code != 405:  # a server without HEAD still serves GET
            raise


def _fetch(
    dataset: DownloadableDataset,
    archive: DatasetArchive,
    url: str,
    downloads: pathlib.Path,
    *,
    verify: bool,
    timeout: float,
    root: pathlib.Path,
) -> pathlib.Path:
    """Download (unless cached) and unpack one archive with Keras; the folder to search."""
    import keras

    previous_timeout = socket.getdefaulttimeout()
    if previous_timeout is None:
        socket.setdefaulttimeout(timeout)
    try:
        # An absolute cache_subdir makes Keras ignore its own cache root (and its
        # /tmp fallback): the archive lands exactly in `downloads`.
        with warnings.catch_warnings():
            # An archive that is no zip is reported below, with what to do.
            warnings.filterwarnings("ignore", message="Could not extract archive")
            result = keras.utils.get_file(
                fname=archive.file_name, origin=url, cache_subdir=str(downloads), cache_dir=str(root),
                file_hash=archive.sha256 if verify else None, extract=True,
            )
    except Exception as error:  # noqa: BLE001 - Keras raises a bare Exception for fetch failures
        reason = _reason(error)
        if "hash" in reason.lower():
            reason += f"; the archive kept at {downloads / archive.file_name} is not the published one"
        raise DownloadError(_failure_message(dataset, archive, url, reason, root), url=url, reason=reason) from None
    finally:
        if previous_timeout is None:
            socket.setdefaulttimeout(None)
    # Keras 3 (3.6 on) unpacks into '<stem>_extracted/' and returns that folder; Keras 2
    # and early Keras 3 unpacked next to the archive and returned the archive's path.
    path = pathlib.Path(result)
    return path if path.is_dir() else path.parent


def _locate(unpacked: pathlib.Path, archive: DatasetArchive, dataset: DownloadableDataset) -> pathlib.Path | None:
    """The folder holding the class folders in an unpacked archive, or None.

    The archive's own top folder wins; the other archives' top folders never match
    (Keras 2 unpacked every archive into one shared folder); an archive re-packed
    without its top folder, or with one more level, is found too.
    """
    others = {a.top_folder for a in dataset.archives if a is not archive}
    found: list[pathlib.Path] = []
    level = [unpacked]
    for _ in range(_SEARCH_DEPTH + 1):
        found.extend(p for p in level if _holds_classes(p, dataset.class_names))
        level = [child for p in level for child in _visible_dirs(p) if child.name not in dataset.class_names]
    named = [p for p in found if p.name == archive.top_folder]
    if named:
        return named[0]
    found = [p for p in found if p.name not in others]
    return found[0] if len(found) == 1 else None


def _move_split(
    dataset: DownloadableDataset,
    archive: DatasetArchive,
    url: str,
    unpacked: pathlib.Path,
    downloads: pathlib.Path,
    target: pathlib.Path,
    root: pathlib.Path,
) -> None:
    """Move one unpacked split into the staging folder and delete the archive's leftovers."""
    source = _locate(unpacked, archive, dataset)
    archive_path = downloads / archive.file_name
    if source is None:
        # Not a zip, or another layout: drop it so that the next call downloads again.
        archive_path.unlink(missing_ok=True)
        if downloads in unpacked.parents:
            shutil.rmtree(unpacked, ignore_errors=True)
        raise DownloadError(
            f"{url} did not unpack into a folder with the class folders {', '.join(dataset.class_names)} "
            f"(expected {archive.top_folder}/<class>/<image>); deleted it: retry, or put the class folders "
            f"at {root / CACHE_SUBDIR / dataset.name}/{archive.split}/",
            url=url, reason="not an archive of the class folders",
        )
    temporary = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(temporary, ignore_errors=True)
    shutil.move(str(source), str(temporary))
    os.replace(temporary, target)
    archive_path.unlink(missing_ok=True)
    if downloads in unpacked.parents:  # Keras 3's '<stem>_extracted/'; never the shared folder
        shutil.rmtree(unpacked, ignore_errors=True)
