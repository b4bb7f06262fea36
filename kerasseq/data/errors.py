"""Errors the data loaders raise, shared by every task family."""


class DataNotFoundError(FileNotFoundError):
    """The data is not where it was looked for; the message names the files
    and layout expected."""


class DataFormatError(ValueError):
    """A data file is not in the format it should be; the message names the
    file (and line, for text formats)."""


class DownloadError(DataNotFoundError):
    """Data could not be downloaded: the network is unreachable, every
    source refused, or the transfer broke off; the message says which, and
    how to go on."""
