"""The data layer: the paper's three kinds of data, found by one rule, decoded once, batched fast.

* :mod:`.paths`: the data-root rule (``data_root`` argument, else ``$LOSSDECAY_DATA``, else the user
  cache), sha256-verified archives extracted once into the cache (``$LOSSDECAY_CACHE``), downloads.
* :mod:`.cifar` and :mod:`.batches`: CIFAR-10 as uint8 tensors and seeded, whole-batch augmented
  batches on the training device.
* :mod:`.segmentation`: PASCAL VOC 2012 and CamVid with joint image/mask transforms.
* :mod:`.paired`: pix2pix's A|B paired images (facades, maps).
* :mod:`.errors`: the errors raised, each naming what is missing or wrong.
"""

from .batches import CifarBatches, crop_and_flip, default_device
from .cifar import (
    CIFAR10_CLASSES,
    CIFAR10_MEAN,
    CIFAR10_STD,
    CifarSplit,
    balanced_indices,
    load_cifar10,
    read_cifar10_folder,
)
from .errors import (
    ChecksumError,
    DataError,
    DatasetNotFoundError,
    MalformedDatasetError,
    MismatchedPairError,
    UnsafeArchiveError,
)
from .paired import DIRECTIONS, PairedImages
from .paths import (
    CACHE_ENV,
    DATA_ENV,
    DATASETS,
    extract_archive,
    find_dataset,
    resolve_cache_dir,
    resolve_data_root,
    safe_extract,
    sha256_of,
    verify_sha256,
)
from .segmentation import (
    CAMVID,
    IMAGENET_MEAN,
    IMAGENET_STD,
    VOC2012,
    JointTransform,
    SegmentationDataset,
    SegmentationInfo,
    segmentation_info,
)

__all__ = [
    "CACHE_ENV", "CAMVID", "CIFAR10_CLASSES", "CIFAR10_MEAN", "CIFAR10_STD", "ChecksumError",
    "CifarBatches", "CifarSplit", "DATASETS", "DATA_ENV", "DIRECTIONS", "DataError",
    "DatasetNotFoundError", "IMAGENET_MEAN", "IMAGENET_STD", "JointTransform",
    "MalformedDatasetError", "MismatchedPairError", "PairedImages", "SegmentationDataset",
    "SegmentationInfo", "UnsafeArchiveError", "VOC2012", "balanced_indices", "crop_and_flip",
    "default_device", "extract_archive", "find_dataset", "load_cifar10", "read_cifar10_folder",
    "resolve_cache_dir", "resolve_data_root", "safe_extract", "segmentation_info", "sha256_of",
    "verify_sha256",
]
