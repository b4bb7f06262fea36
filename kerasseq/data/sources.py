"""Where data comes from: local files, or TensorFlow Datasets, which
downloads and prepares a dataset into its data folder (`TFDS_DATA_DIR`,
default `~/tensorflow_datasets`) the first time it is asked for."""

import os
import sys

from kerasseq.data import download as download_lib
from kerasseq.data.errors import DataNotFoundError
from kerasseq.data.errors import DownloadError


def find_file(directory, name, subdirectories=()):
    """The path of `name` in `directory` or in one of its `subdirectories`
    (the layouts of official releases), or `None`."""
    for folder in ("",) + tuple(subdirectories):
        path = os.path.join(directory, folder, name)
        if os.path.exists(path):
            return path
    return None


def check_download(download):
    """Raises `ValueError` unless `download` is one of `download.MODES`."""
    if download not in download_lib.MODES:
        raise ValueError(
            f"Received an invalid value for argument `download`, expected "
            f"one of {list(download_lib.MODES)}, got {download!r}."
        )


def load_tfds(name, split, keys, download, missing):
    """The whole split of a TensorFlow Datasets dataset, as NumPy arrays.

    A dataset already prepared in the TFDS data folder is read. Otherwise,
    with `download="auto"`, TFDS downloads and prepares it there (its
    progress bars show), once: later calls read the prepared copy. Before
    that the network is probed (`download.unreachable`), so that an
    offline machine is told within seconds instead of after TFDS's
    retries.

    Args:
        name: the TFDS name, e.g. `"mnist"` or `"glue/sst2"`.
        split: e.g. `"train"`.
        keys: the features to return, e.g. `("image", "label")`.
        download: `"auto"` or `"never"` (read a prepared copy only).
        missing: the caller's sentence saying which local files it looked
            for; the error starts with it.

    Returns:
        A tuple of arrays in the order of `keys`.

    Raises:
        DataNotFoundError: not prepared, and `download="never"`.
        DownloadError: not prepared, and it could not be downloaded (the
            network is unreachable, or TFDS failed; the message says so).
    """
    check_download(download)
    import tensorflow_datasets as tfds

    builder = tfds.builder(name, try_gcs=False)
    if not builder.is_prepared():
        folder = builder.data_dir_root
        if download == "never":
            raise DataNotFoundError(
                f"{missing} Nothing was downloaded (--download=never); with "
                f"--download=auto TensorFlow Datasets fetches it into "
                f"{folder}."
            )
        why = download_lib.unreachable(sorted(builder.url_infos or ()))
        if why:
            raise DownloadError(
                f"{missing} The network is unreachable ({why}), so "
                f"TensorFlow Datasets could not download {name!r} into "
                f"{folder}."
            )
        print(
            f"TensorFlow Datasets downloads and prepares {name!r} into "
            f"{folder} (once; later runs read it there).",
            file=sys.stderr,
        )
        try:
            builder.download_and_prepare()
        except Exception as error:  # any failure of TFDS is reported as one
            raise DownloadError(
                f"TensorFlow Datasets could not download and prepare "
                f"{name!r} into {folder}: {type(error).__name__}: {error} "
                f"{missing}"
            ) from error
    # one batch of the whole split (variable-length features 0-padded); its
    # size from the split itself rather than TFDS's `batch_size=-1`, which
    # needs the split sizes of the metadata
    count = int(builder.as_dataset(split=split).cardinality())
    whole = builder.as_dataset(split=split, batch_size=max(count, 1))
    examples = next(iter(tfds.as_numpy(whole)))
    return tuple(examples[k] for k in keys)


def progress_bar(total, description, show=True):
    """A tqdm progress bar on stderr over `total` items (one that shows
    nothing when `show` is false)."""
    from tqdm import tqdm

    return tqdm(
        total=total, desc=description, disable=not show, file=sys.stderr
    )
