"""Fetching and unpacking a dataset's archives with ``keras.utils.get_file`` into class folders."""

from __future__ import annotations

import os
import pathlib
import shutil
import socket
import urllib.error
import urllib.parse
import urllib.request
import warnings

from evoprune_tf.data.datasets import CACHE_SUBDIR, DatasetArchive, DownloadableDataset, DownloadError

__all__ = [
    "staging_folder",
    "visible_dirs",
    "holds_classes",
    "is_complete",
    "layout",
    "error_reason",
    "failure_message",
    "probe_url",
    "fetch",
    "locate",
    "move_split",
]


# Folders that are never a dataset's class folders (macOS archive debris).
_IGNORED_DIRS = ("__MACOSX",)
# A dataset folder is searched this deep inside an unpacked archive.
_SEARCH_DEPTH = 3


def staging_folder(folder: pathlib.Path) -> pathlib.Path:
    # Hidden, next to the final folder (same file system, so the last step is one rename).
    return folder.with_name(f".{folder.name}.partial")


def visible_dirs(folder: pathlib.Path) -> list[pathlib.Path]:
    try:
        entries = list(folder.iterdir())
    except OSError:
        return []
    return [p for p in entries if p.is_dir() and not p.name.startswith(".") and p.name not in _IGNORED_DIRS]


def holds_classes(folder: pathlib.Path, class_names: tuple[str, ...]) -> bool:
    names = {p.name for p in visible_dirs(folder)}
    return all(c in names for c in class_names)


def is_complete(folder: pathlib.Path, dataset: DownloadableDataset) -> bool:
    return all(holds_classes(folder / a.split, dataset.class_names) for a in dataset.archives)


def layout(dataset: DownloadableDataset, folder: pathlib.Path | None = None) -> str:
    classes = "{" + ",".join(dataset.class_names) + "}"
    prefix = f"{folder}/" if folder is not None else ""
    return " and ".join(f"{prefix}{a.split}/{classes}/" for a in dataset.archives)


def error_reason(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    text = text if len(text) <= 160 else text[:157] + "..."
    return f"{type(error).__name__}: {text}"


def failure_message(
    dataset: DownloadableDataset, archive: DatasetArchive, url: str, reason: str, root: pathlib.Path
) -> str:
    downloads = root / CACHE_SUBDIR / "downloads"
    folder = root / CACHE_SUBDIR / dataset.name
    return (
        f"cannot download {url} ({reason}); offline: put {archive.file_name} in {downloads}/ "
        f"or its unpacked class folders at {folder}/{archive.split}/, or use local data "
        f"(--data FOLDER / data.source; the demo: EVOPRUNE_ASSETS)"
    )


def probe_url(url: str, timeout: float) -> None:
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


def fetch(
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
        reason = error_reason(error)
        if "hash" in reason.lower():
            reason += f"; the archive kept at {downloads / archive.file_name} is not the published one"
        raise DownloadError(failure_message(dataset, archive, url, reason, root), url=url, reason=reason) from None
    finally:
        if previous_timeout is None:
            socket.setdefaulttimeout(None)
    # Keras 3 (3.6 on) unpacks into '<stem>_extracted/' and returns that folder; Keras 2
    # and early Keras 3 unpacked next to the archive and returned the archive's path.
    path = pathlib.Path(result)
    return path if path.is_dir() else path.parent


def locate(unpacked: pathlib.Path, archive: DatasetArchive, dataset: DownloadableDataset) -> pathlib.Path | None:
    """The folder holding the class folders in an unpacked archive, or None.

    The archive's own top folder wins; the other archives' top folders never match
    (Keras 2 unpacked every archive into one shared folder); an archive re-packed
    without its top folder, or with one more level, is found too.
    """
    others = {a.top_folder for a in dataset.archives if a is not archive}
    found: list[pathlib.Path] = []
    level = [unpacked]
    for _ in range(_SEARCH_DEPTH + 1):
        found.extend(p for p in level if holds_classes(p, dataset.class_names))
        level = [child for p in level for child in visible_dirs(p) if child.name not in dataset.class_names]
    named = [p for p in found if p.name == archive.top_folder]
    if named:
        return named[0]
    found = [p for p in found if p.name not in others]
    return found[0] if len(found) == 1 else None


def move_split(
    dataset: DownloadableDataset,
    archive: DatasetArchive,
    url: str,
    unpacked: pathlib.Path,
    downloads: pathlib.Path,
    target: pathlib.Path,
    root: pathlib.Path,
) -> None:
    """Move one unpacked split into the staging folder and delete the archive's leftovers."""
    source = locate(unpacked, archive, dataset)
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
