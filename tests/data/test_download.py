import gzip
import hashlib
import io
import os
import socket
import tarfile
import time

import numpy as np
import pytest
import tensorflow_datasets as tfds

from kerasseq.data import download
from kerasseq.data import sources
from kerasseq.data.errors import DataFormatError
from kerasseq.data.errors import DataNotFoundError
from kerasseq.data.errors import DownloadError
from tests.loopback import serving

BODY = bytes(range(256)) * 4000  # 1,024,000 bytes: several read chunks


def archive_of(body, name="data.bin", **kw):
    return download.Archive(
        filename=name,
        urls=("https://example.invalid/" + name,),
        description="the test archive",
        sha256=hashlib.sha256(body).hexdigest(),
        size=len(body),
        **kw,
    )


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty cache folder, and the network allowed (to 127.0.0.1)."""
    folder = tmp_path / "cache"
    monkeypatch.setenv(download.CACHE_ENV, str(folder))
    monkeypatch.delenv(download.OFFLINE_ENV, raising=False)
    monkeypatch.delenv(download.MIRROR_ENV, raising=False)
    return folder


def test_cache_folder_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(download.CACHE_ENV, str(tmp_path / "here"))
    assert download.cache_dir() == str(tmp_path / "here")
    monkeypatch.delenv(download.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert download.cache_dir() == str(tmp_path / "xdg" / "kerasseq")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert download.cache_dir() == str(
        tmp_path / "home" / ".cache" / "kerasseq"
    )


def test_a_mirror_replaces_the_archive_urls(monkeypatch):
    archive = archive_of(b"x")
    monkeypatch.delenv(download.MIRROR_ENV, raising=False)
    assert download.source_urls(archive) == archive.urls
    monkeypatch.setenv(download.MIRROR_ENV, "http://127.0.0.1:1/m/")
    assert download.source_urls(archive) == ("http://127.0.0.1:1/m/data.bin",)


# === the network probe ===


def test_probe_finds_a_listening_host_and_names_a_closed_one(cache):
    with serving({}) as server:
        assert download.unreachable([server.url + "/x"]) is None
        # one reachable host is enough
        closed = socket.socket()
        closed.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{closed.getsockname()[1]}/x"
        closed.close()
        assert download.unreachable([dead, server.url + "/x"]) is None
    why = download.unreachable([dead])
    assert why.startswith("127.0.0.1: ") and "refused" in why.lower()


def test_probe_gives_up_on_a_silent_host_within_its_timeout(cache, monkeypatch):
    def hang(*args, **kwargs):
        time.sleep(30)

    monkeypatch.setattr(download.socket, "create_connection", hang)
    start = time.perf_counter()
    why = download.unreachable(
        ["https://a.example/x", "https://b.example/y"], timeout=0.5
    )
    assert time.perf_counter() - start < 2
    assert why == (
        "a.example: no answer in 0.5 s; b.example: no answer in 0.5 s"
    )


def test_probe_goes_to_the_proxy_the_environment_names(cache, monkeypatch):
    with serving({}) as server:
        monkeypatch.setenv("https_proxy", server.url)
        monkeypatch.setenv("no_proxy", "")
        assert download.unreachable(["https://name.invalid/x"]) is None
    why = download.unreachable(["https://name.invalid/x"], timeout=2)
    assert why.startswith(f"proxy 127.0.0.1:{server.port}: ")


def test_offline_variable_refuses_without_probing(cache, monkeypatch):
    monkeypatch.setenv(download.OFFLINE_ENV, "1")
    with serving({}) as server:
        assert "KERASSEQ_OFFLINE" in download.unreachable([server.url])
        assert server.requests == []


# === fetch ===


def test_download_verify_then_read_the_cache(cache, monkeypatch, capfd):
    archive = archive_of(BODY)
    with serving({"data.bin": BODY}) as server:
        monkeypatch.setenv(download.MIRROR_ENV, server.url)
        path = download.fetch(archive)
        assert server.requests == [("data.bin", None)]
    err = capfd.readouterr().err
    assert "Downloading the test archive (1000.0 KiB)" in err
    assert "data.bin: 100%" in err  # the progress bar
    assert path == str(cache / "data.bin")
    assert open(path, "rb").read() == BODY
    assert sorted(os.listdir(cache)) == ["data.bin", "data.bin.lock"]
    # the server is gone: the cached copy is checked and read
    assert download.fetch(archive) == path


@pytest.mark.parametrize(
    "served, problem",
    [
        (BODY[:-1] + b"!", "SHA-256"),
        (BODY[: len(BODY) // 2], "512000 bytes, but the test archive"),
    ],
    ids=["corrupted", "truncated"],
)
def test_a_wrong_archive_is_refused_and_nothing_kept(
    cache, monkeypatch, served, problem
):
    with serving({"data.bin": served}) as server:
        monkeypatch.setenv(download.MIRROR_ENV, server.url)
        with pytest.raises(DataFormatError) as error:
            download.fetch(archive_of(BODY))
    message = str(error.value)
    assert problem in message
    assert str(cache / "data.bin.part") in message  # the file is named
    assert f"{server.url}/data.bin" in message
    assert "It was deleted" in message
    assert [n for n in os.listdir(cache) if not n.endswith(".lock")] == []


def test_an_interrupted_download_resumes(cache, monkeypatch, capfd):
    archive = archive_of(BODY)
    with serving({"data.bin": BODY}) as server:
        monkeypatch.setenv(download.MIRROR_ENV, server.url)
        server.cut_after["data.bin"] = 300_000
        with pytest.raises(DownloadError, match="broke off after") as error:
            download.fetch(archive)
        assert "the same command continues from there" in str(error.value)
        part = cache / "data.bin.part"
        assert part.stat().st_size == 300_000
        assert not (cache / "data.bin").exists()
        capfd.readouterr()
        path = download.fetch(archive)
        assert server.requests == [
            ("data.bin", None),
            ("data.bin", "bytes=300000-"),
        ]
    resumed = capfd.readouterr().err
    assert f"Continuing from the 300000 bytes in {part}" in resumed
    assert open(path, "rb").read() == BODY
    assert not part.exists()


def test_a_server_that_ignores_ranges_sends_it_again(cache, monkeypatch):
    archive = archive_of(BODY)
    (cache).mkdir()
    (cache / "data.bin.part").write_bytes(b"stale bytes")
    with serving({"data.bin": BODY}) as server:
        server.ignore_ranges = True
        monkeypatch.setenv(download.MIRROR_ENV, server.url)
        path = download.fetch(archive)
        assert server.requests == [("data.bin", "bytes=11-")]
    assert open(path, "rb").read() == BODY


def test_a_damaged_cached_copy_is_fetched_again(cache, monkeypatch, capfd):
    archive = archive_of(BODY)
    cache.mkdir()
    (cache / "data.bin").write_bytes(BODY[:10])
    with serving({"data.bin": BODY}) as server:
        monkeypatch.setenv(download.MIRROR_ENV, server.url)
        path = download.fetch(archive)
    assert "Downloading it again" in capfd.readouterr().err
    assert open(path, "rb").read() == BODY


def test_the_next_source_is_tried_and_failures_named(cache):
    with serving({"data.bin": BODY}) as server:
        archive = archive_of(BODY)
        archive = download.Archive(
            **{
                **archive.__dict__,
                "urls": (f"{server.url}/gone.bin", f"{server.url}/data.bin"),
            }
        )
        assert open(download.fetch(archive), "rb").read() == BODY
        (cache / "data.bin").unlink()
        broken = download.Archive(
            **{**archive.__dict__, "urls": (f"{server.url}/gone.bin",)}
        )
        with pytest.raises(DownloadError) as error:
            download.fetch(broken)
    message = str(error.value)
    assert f"{server.url}/gone.bin: the server answered HTTP 404" in message
    assert not (cache / "data.bin").exists()


def test_offline_fetch_says_where_it_looked_at_once(cache, monkeypatch):
    monkeypatch.setenv(download.OFFLINE_ENV, "1")
    start = time.perf_counter()
    with pytest.raises(DownloadError) as error:
        download.fetch(archive_of(BODY))
    assert time.perf_counter() - start < 1
    message = str(error.value)
    assert f"the test archive is not in {cache}" in message
    assert "the network is unreachable (KERASSEQ_OFFLINE is set)" in message


# === tar archives ===


def _tar_gz(members):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_extract_folders_wherever_they_are_nested(tmp_path):
    path = tmp_path / "a.tar.gz"
    path.write_bytes(
        _tar_gz(
            {
                "release/listops-1000/basic_train.tsv": b"train",
                "release/release/pathfinder32/curv_baseline/imgs/0/a.png": b"p",
                "release/release/pathfinder32/curv_contour_length_9/b": b"n",
                "release/other.txt": b"no",
                "../listops-1000/escape.tsv": b"no",
            }
        )
    )
    out = tmp_path / "out"
    count = download.extract_folders(
        str(path), ("listops-1000", "pathfinder32/curv_baseline"), str(out)
    )
    assert count == 2
    files = sorted(
        os.path.relpath(os.path.join(d, f), out)
        for d, _, names in os.walk(out)
        for f in names
    )
    assert files == [
        "listops-1000/basic_train.tsv",
        "pathfinder32/curv_baseline/imgs/0/a.png",
    ]
    assert (out / "listops-1000" / "basic_train.tsv").read_bytes() == b"train"


@pytest.mark.parametrize("damage", ["truncated", "crc"])
def test_a_damaged_tar_archive_is_named(tmp_path, damage):
    data = _tar_gz({"x/listops-1000/a.tsv": os.urandom(50_000)})
    if damage == "truncated":
        data = data[: len(data) // 2]
    else:  # the stored CRC-32 no longer matches the data
        data = data[:-8] + bytes(4) + data[-4:]
    path = tmp_path / "bad.gz"
    path.write_bytes(data)
    with pytest.raises(DataFormatError, match=f"{path}: a damaged archive"):
        download.extract_folders(str(path), ("listops-1000",), str(tmp_path))


def test_gzip_trailer_is_really_checked(tmp_path):
    # the positive control of the "crc" case: the same bytes undamaged
    data = _tar_gz({"x/listops-1000/a.tsv": b"abc"})
    assert gzip.decompress(data)
    path = tmp_path / "good.gz"
    path.write_bytes(data)
    assert download.extract_folders(str(path), ("listops-1000",), str(tmp_path))


# === TensorFlow Datasets ===


@pytest.fixture
def tfds_calls(monkeypatch):
    """Mocked TFDS (random examples, nothing prepared); records the
    datasets whose `download_and_prepare` was called."""
    calls = []
    with tfds.testing.mock_data(num_examples=5):
        mocked = tfds.core.DatasetBuilder.download_and_prepare

        def record(builder, *args, **kwargs):
            calls.append(builder.name)
            return mocked(builder, *args, **kwargs)

        monkeypatch.setattr(
            tfds.core.DatasetBuilder, "download_and_prepare", record
        )
        yield calls


def test_tfds_downloads_when_online(tfds_calls, monkeypatch, capfd):
    monkeypatch.setattr(download, "unreachable", lambda urls: None)
    images, labels = sources.load_tfds(
        "mnist", "train", ("image", "label"), "auto", "No MNIST."
    )
    assert tfds_calls == ["mnist"]
    assert images.shape == (5, 28, 28, 1) and labels.shape == (5,)
    assert "downloads and prepares 'mnist'" in capfd.readouterr().err


def test_tfds_offline_is_told_without_reaching_tfds(monkeypatch):
    # the real builder and data folder (empty): TFDS must not be asked
    probed = []

    def offline(urls):
        probed.append(urls)
        return "storage.googleapis.com: name not resolved"

    def refuse(builder, *args, **kwargs):
        raise AssertionError("TFDS was asked to download")

    monkeypatch.setattr(download, "unreachable", offline)
    monkeypatch.setattr(
        tfds.core.DatasetBuilder, "download_and_prepare", refuse
    )
    with pytest.raises(DownloadError) as error:
        sources.load_tfds("mnist", "test", ("image",), "auto", "No MNIST.")
    assert str(error.value).startswith(
        "No MNIST. The network is unreachable (storage.googleapis.com: name "
        "not resolved), so TensorFlow Datasets could not download 'mnist' "
        f"into {os.environ['TFDS_DATA_DIR']}."
    )
    # the hosts probed are those TFDS would download from
    assert all("storage.googleapis.com" in u for u in probed[0])
    with pytest.raises(DataNotFoundError, match="--download=never"):
        sources.load_tfds("mnist", "test", ("image",), "never", "No MNIST.")
    assert len(probed) == 1


def test_tfds_failures_are_reported_as_one_error(tfds_calls, monkeypatch):
    monkeypatch.setattr(download, "unreachable", lambda urls: None)

    def fail(builder, *args, **kwargs):
        raise OSError("Connection reset by peer")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", fail)
    with pytest.raises(DownloadError) as error:
        sources.load_tfds("cifar10", "test", ("image",), "auto", "No CIFAR.")
    assert str(error.value).startswith(
        "TensorFlow Datasets could not download and prepare 'cifar10' into "
    )
    assert str(error.value).endswith(
        ": OSError: Connection reset by peer No CIFAR."
    )


def test_bad_download_mode():
    allowed = r"\['auto', 'never'\], got 'sometimes'"
    with pytest.raises(ValueError, match=allowed):
        sources.load_tfds("mnist", "test", ("image",), "sometimes", "")


def test_progress_bar_counts_generated_examples(capfd):
    from kerasseq.data import listops

    splits = listops.generate(
        {"train": 3, "test": 2}, 0, min_length=5, max_length=40, progress=True
    )
    assert sum(len(v) for v in splits.values()) == 5
    assert "listops: 100%" in capfd.readouterr().err
    quiet = listops.generate({"train": 3, "test": 2}, 0, 10, 10, 5, 40)
    np.testing.assert_equal(splits, quiet)
