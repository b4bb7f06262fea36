"""Fetching data archives: one cache folder, resumable, checksummed.

kerasseq downloads two things itself (TensorFlow Datasets fetches the
rest, see `kerasseq.data.sources.load_tfds`): WikiText-2's raw archive and
Long Range Arena's release. Each is an `Archive`: a file name, where to get
it and, where its publishers give one, its size and SHA-256.

    fetch(archive)      the archive's path in the cache, downloaded first
                        when missing
    unreachable(urls)   why none of the hosts of `urls` answers, or `None`
    extract_folders     the members of a tar archive below given folders

Where files go and come from, set by environment variables:

    KERASSEQ_CACHE      the cache folder (default `$XDG_CACHE_HOME/kerasseq`,
                        else `~/.cache/kerasseq`)
    KERASSEQ_MIRROR     a base URL that replaces every archive's own URLs:
                        `<mirror>/<file name>` (a local or internal mirror)
    KERASSEQ_OFFLINE    `1`: never touch the network (as `HF_HUB_OFFLINE`);
                        what is not cached is reported missing at once

A download goes to `<name>.part` beside its final place and continues from
there when run again (an HTTP range request); only a file whose size and
checksum are right is renamed to its final name, so the cache never holds
a half-written archive under a name that is read. A progress bar on stderr
shows every download.
"""

import dataclasses
import gzip
import hashlib
import http.client
import os
import shutil
import socket
import sys
import tarfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

from kerasseq import catalogue
from kerasseq.data.errors import DataFormatError
from kerasseq.data.errors import DownloadError

CACHE_ENV = "KERASSEQ_CACHE"
MIRROR_ENV = "KERASSEQ_MIRROR"
OFFLINE_ENV = "KERASSEQ_OFFLINE"
# what `--download` may say: `auto` fetches what is missing, `never` reads
# only what is on this machine
MODES = catalogue.DOWNLOAD_MODES
# seconds a host has to accept a connection before it counts as unreachable
PROBE_TIMEOUT_S = 5.0
# seconds a download may stall before it is given up (and can be resumed)
READ_TIMEOUT_S = 60.0
_CHUNK = 1 << 20


@dataclasses.dataclass(frozen=True)
class Archive:
    """A file kerasseq downloads.

    Attributes:
        filename: its name in the cache.
        urls: where to get it, tried in order (the publisher's first).
        description: what it is, for messages, e.g. `"WikiText-2 (raw)"`.
        sha256: its published SHA-256, checked before use; `None` where
            none is published (then the size, and the archive format's own
            checksums as it is read, vouch for it).
        size: its size in bytes, where known.
    """

    filename: str
    urls: tuple
    description: str
    sha256: str = None
    size: int = None


def cache_dir():
    """The folder of kerasseq's downloads (see the module docstring)."""
    path = os.environ.get(CACHE_ENV)
    if not path:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
        path = os.path.join(base, "kerasseq")
    return os.path.abspath(os.path.expanduser(path))


def is_offline():
    """Whether `KERASSEQ_OFFLINE` forbids touching the network."""
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in (
        "1",
        "true",
        "yes",
    )


def source_urls(archive):
    """Where `archive` is fetched from: `KERASSEQ_MIRROR` if set, else its
    own URLs."""
    mirror = os.environ.get(MIRROR_ENV)
    if mirror:
        return (f"{mirror.rstrip('/')}/{archive.filename}",)
    return tuple(archive.urls)


def human_size(size):
    """`4721645` -> `"4.5 MiB"`."""
    value = float(size)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            if unit == "bytes":
                return f"{int(value)} bytes"
            return f"{value:.1f} {unit}"
        value /= 1024


# === is the network there? ===


def _endpoint(url):
    """`(host, port, label)` a connection to `url` opens first: the proxy
    that the environment names for its scheme, else the URL's host."""
    parts = urllib.parse.urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(parts.hostname or ""):
        proxy_parts = urllib.parse.urlsplit(
            proxy if "://" in proxy else f"http://{proxy}"
        )
        proxy_port = proxy_parts.port or 80
        label = f"proxy {proxy_parts.hostname}:{proxy_port}"
        return proxy_parts.hostname, proxy_port, label
    return parts.hostname, port, parts.hostname


def unreachable(urls, timeout=PROBE_TIMEOUT_S):
    """Why none of the hosts of `urls` can be reached, or `None` if one can.

    Opens a TCP connection to each host (or to the proxy the environment
    names), all at once, and waits at most `timeout` seconds in all, name
    resolution included: an offline machine is told within seconds instead
    of a downloader's retries.

    Returns:
        `None` when some host accepted a connection; otherwise one sentence
        per host of what went wrong, e.g. `"dl.fbaipublicfiles.com: name
        not resolved"`.
    """
    if is_offline():
        return f"{OFFLINE_ENV} is set"
    endpoints = list(dict.fromkeys(_endpoint(u) for u in urls))
    if not endpoints:
        return "no address to download from"
    outcomes = {}

    def probe(endpoint):
        host, port, _ = endpoint
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            outcomes[endpoint] = None
        except socket.gaierror:
            outcomes[endpoint] = "name not resolved"
        except OSError as error:
            outcomes[endpoint] = error.strerror or type(error).__name__

    # daemon threads: a resolver that hangs past the deadline is left
    # behind instead of holding the program
    threads = [
        threading.Thread(target=probe, args=(e,), daemon=True)
        for e in endpoints
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
        if any(outcome is None for outcome in outcomes.values()):
            return None
    silent = f"no answer in {timeout:g} s"
    return "; ".join(f"{e[2]}: {outcomes.get(e) or silent}" for e in endpoints)


# === downloading ===


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(archive, path):
    """Raises `DataFormatError` naming `path` unless its size and SHA-256
    are the archive's (the checks that are known)."""
    size = os.path.getsize(path)
    if archive.size is not None and size != archive.size:
        raise DataFormatError(
            f"{path}: {size} bytes, but {archive.description} "
            f"({archive.filename}) is {archive.size} bytes."
        )
    if archive.sha256 is not None:
        found = sha256_of(path)
        if found != archive.sha256:
            raise DataFormatError(
                f"{path}: SHA-256 {found}, but {archive.description} "
                f"({archive.filename}) has {archive.sha256}."
            )


def _lock(path):
    """An exclusive lock on `path` (so that two programs do not write one
    download), or `None` where the platform has no `fcntl`."""
    try:
        import fcntl
    except ImportError:
        return None
    handle = open(path, "w")
    fcntl.flock(handle, fcntl.LOCK_EX)
    return handle


def _open(url, offset):
    """The response to a GET of `url` from byte `offset`; raises
    `DownloadError` saying what the server or the network did."""
    headers = {"User-Agent": "kerasseq"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        return urllib.request.urlopen(request, timeout=READ_TIMEOUT_S)
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:
            return None  # the part file already holds the whole file
        raise DownloadError(
            f"{url}: the server answered HTTP {error.code} ({error.reason})."
        ) from error
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", None) or error
        raise DownloadError(f"{url}: {reason}.") from error


def _check_space(folder, needed, url):
    free = shutil.disk_usage(folder).free
    if needed > free:
        raise DownloadError(
            f"{url} needs {human_size(needed)} more in {folder}, which has "
            f"{human_size(free)} free. Set {CACHE_ENV} to a folder with "
            "room."
        )


def _download(url, part, expected_size):
    """Appends the rest of `url` to `part` (all of it if `part` is new),
    with a progress bar. Raises `DownloadError` if the transfer breaks off
    (`part` keeps what arrived, for the next try to continue)."""
    from tqdm import tqdm

    offset = os.path.getsize(part) if os.path.exists(part) else 0
    response = _open(url, offset)
    if response is None:
        return
    with response:
        if offset and response.status != 206:
            offset = 0  # the server sends the whole file: start again
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length else expected_size
        if total:
            _check_space(os.path.dirname(part), total - offset, url)
        name = os.path.basename(part)[: -len(".part")]
        received = offset
        try:
            with (
                open(part, "ab" if offset else "wb") as f,
                tqdm(
                    total=total,
                    initial=offset,
                    unit="B",
                    unit_scale=True,
                    unit_divisor=1024,
                    desc=name,
                    file=sys.stderr,
                ) as bar,
            ):
                while True:
                    chunk = response.read(_CHUNK)
                    if not chunk:
                        break
                    f.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
        except (OSError, http.client.HTTPException) as error:
            raise DownloadError(
                f"The download of {url} broke off after {received} bytes "
                f"({error or type(error).__name__}); {part} keeps them, "
                "and the same command continues from there."
            ) from error
    if total and received < total:
        raise DownloadError(
            f"The download of {url} broke off after {received} of {total} "
            f"bytes; {part} keeps them, and the same command continues "
            "from there."
        )


def fetch(archive, announce=None):
    """The path of `archive` in the cache, downloading it first if needed.

    A cached copy is checked (size and SHA-256) before it is returned; one
    that fails is downloaded again. A download continues a `.part` file
    left by an interrupted one, and is checked before it takes the
    archive's name.

    Args:
        archive: an `Archive`.
        announce: optional sentence printed before a download starts (e.g.
            its size, for a large one).

    Returns:
        The path of the verified archive.

    Raises:
        DownloadError: the network is unreachable, every source failed, or
            the transfer broke off (then the next call resumes it).
        DataFormatError: the downloaded file is not the archive (wrong size
            or checksum); it is deleted, nothing is left in the cache.
    """
    folder = cache_dir()
    path = os.path.join(folder, archive.filename)
    part = path + ".part"
    if os.path.exists(path):
        try:
            verify(archive, path)
            return path
        except DataFormatError as error:
            print(f"{error} Downloading it again.", file=sys.stderr)
            os.remove(path)
    urls = source_urls(archive)
    why = unreachable(urls)
    if why:
        raise DownloadError(
            f"{archive.description} is not in {folder}, and the network is "
            f"unreachable ({why}), so it could not be downloaded."
        )
    os.makedirs(folder, exist_ok=True)
    lock = _lock(path + ".lock")
    try:
        if os.path.exists(path):  # another program fetched it meanwhile
            verify(archive, path)
            return path
        size = f" ({human_size(archive.size)})" if archive.size else ""
        print(
            announce or f"Downloading {archive.description}{size} to {path}.",
            file=sys.stderr,
        )
        if os.path.exists(part):
            print(
                f"Continuing from the {os.path.getsize(part)} bytes in {part}.",
                file=sys.stderr,
            )
        failures = []
        for url in urls:
            try:
                _download(url, part, archive.size)
                break
            except DownloadError as error:
                failures.append(str(error))
        else:
            raise DownloadError(
                f"{archive.description} could not be downloaded: "
                + " ".join(failures)
            )
        try:
            verify(archive, part)
        except DataFormatError as error:
            os.remove(part)
            raise DataFormatError(
                f"The download of {archive.description} from {url} is not "
                f"the archive: {error} It was deleted; nothing was kept in "
                f"{folder}."
            ) from error
        os.replace(part, path)
        return path
    finally:
        if lock is not None:
            lock.close()


# === reading tar archives ===


def _below(parts, folder_parts):
    """The index in `parts` where `folder_parts` starts, or `None`."""
    width = len(folder_parts)
    for start in range(len(parts) - width + 1):
        if tuple(parts[start : start + width]) == folder_parts:
            return start
    return None


def extract_folders(path, folders, destination):
    """Extracts the files of the tar archive `path` that lie below one of
    `folders`, wherever the archive nests them.

    `folders=("listops-1000",)` takes `lra_release/listops-1000/x.tsv` to
    `destination/listops-1000/x.tsv`. The whole archive is read, so that a
    compressed archive's own checksum is checked at its end. Only regular
    files are written, never outside `destination`.

    Returns:
        The number of files extracted.

    Raises:
        DataFormatError: the archive is damaged (naming it).
    """
    wanted = [tuple(f.strip("/").split("/")) for f in folders]
    with open(path, "rb") as f:
        compressed = f.read(2) == b"\x1f\x8b"
    count = 0
    try:
        with (
            (gzip.open if compressed else open)(path, "rb") as stream,
            tarfile.open(fileobj=stream, mode="r|") as archive,
        ):
            for member in archive:
                parts = [
                    p for p in member.name.split("/") if p not in ("", ".")
                ]
                if not member.isfile() or ".." in parts:
                    continue
                for folder in wanted:
                    start = _below(parts, folder)
                    if start is None:
                        continue
                    target = os.path.join(destination, *parts[start:])
                    os.makedirs(os.path.dirname(target), exist_ok=True)
                    source = archive.extractfile(member)
                    with open(target + ".tmp", "wb") as f:
                        shutil.copyfileobj(source, f, _CHUNK)
                    os.replace(target + ".tmp", target)
                    count += 1
                    break
            # to the end: gzip checks its CRC-32 and length there
            while stream.read(_CHUNK):
                pass
    except (tarfile.TarError, OSError, EOFError) as error:
        raise DataFormatError(
            f"{path}: a damaged archive ({error}). Delete it and run again "
            "to download it anew."
        ) from error
    return count
