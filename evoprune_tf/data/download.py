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

The registry of datasets lives in `evoprune_tf.data.datasets`, fetching and unpacking in
`evoprune_tf.data.archives`; their public names stay importable from here.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import tempfile

from evoprune_tf.data.archives import (
    error_reason,
    failure_message,
    fetch,
    holds_classes,
    is_complete,
    layout,
    move_split,
    probe_url,
    staging_folder,
)
from evoprune_tf.data.datasets import (
    CACHE_SUBDIR,
    DATASETS as _DATASETS,
    DEFAULT_DOWNLOAD_BASE,
    DOWNLOAD_BASE_ENV,
    DatasetArchive,
    DownloadableDataset,
    DownloadError,
    known_datasets,
)

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

_SCHEMES = ("http://", "https://", "file://")


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
    return is_complete(_cache_root(cache_dir, create=False) / CACHE_SUBDIR / dataset.name, dataset)


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
    if is_complete(folder, dataset):
        return
    base = _base_url(base_url)
    staging = staging_folder(folder)
    downloads = root / CACHE_SUBDIR / "downloads"
    for archive in dataset.archives:
        if holds_classes(staging / archive.split, dataset.class_names) or (downloads / archive.file_name).is_file():
            continue
        url = f"{base}/{archive.file_name}"
        try:
            probe_url(url, timeout)
        except Exception as error:  # noqa: BLE001 - any failure means "cannot be had from here"
            reason = error_reason(error)
            raise DownloadError(failure_message(dataset, archive, url, reason, root), url=url, reason=reason) from None


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
    if is_complete(folder, dataset):
        return folder
    if folder.exists():
        raise ValueError(
            f"dataset folder '{folder}' exists but lacks some of {layout(dataset)}; "
            "expected that layout: complete it or delete the folder to download it again"
        )
    base = _base_url(base_url)
    if verify is None:
        verify = base == DEFAULT_DOWNLOAD_BASE
    downloads = root / CACHE_SUBDIR / "downloads"
    staging = staging_folder(folder)
    downloads.mkdir(parents=True, exist_ok=True)
    staging.mkdir(parents=True, exist_ok=True)
    for archive in dataset.archives:
        target = staging / archive.split
        if holds_classes(target, dataset.class_names):
            continue  # unpacked by an earlier, interrupted call
        url = f"{base}/{archive.file_name}"
        unpacked = fetch(dataset, archive, url, downloads, verify=verify, timeout=timeout, root=root)
        move_split(dataset, archive, url, unpacked, downloads, target, root)
    try:
        os.replace(staging, folder)
    except OSError:
        if not is_complete(folder, dataset):  # else another process finished first: use its copy
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
    lines.append(f"or unpack them yourself as {layout(dataset, folder)}")
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
