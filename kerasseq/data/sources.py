"""Where data comes from: local files, or a TensorFlow Datasets copy
already prepared on this machine. Nothing here downloads."""

import os


def find_file(directory, name, subdirectories=()):
    """The path of `name` in `directory` or in one of its `subdirectories`
    (the layouts of official releases), or `None`."""
    for folder in ("",) + tuple(subdirectories):
        path = os.path.join(directory, folder, name)
        if os.path.exists(path):
            return path
    return None


def load_prepared(name, split, keys):
    """The whole split of a prepared TFDS dataset, as NumPy arrays.

    Looks on this machine only (`try_gcs=False`, no download): a dataset
    that is not prepared gives `None`, at once, so that the caller can say
    which local files it expected instead.

    Args:
        name: the TFDS name, e.g. `"mnist"` or `"imdb_reviews"`.
        split: e.g. `"train"`.
        keys: the features to return, e.g. `("image", "label")`.

    Returns:
        A tuple of arrays in the order of `keys`, or `None`.
    """
    import tensorflow_datasets as tfds

    builder = tfds.builder(name, try_gcs=False)
    if not builder.is_prepared():
        return None
    examples = tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1))
    return tuple(examples[k] for k in keys)
