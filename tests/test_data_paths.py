"""The data-root rule, archive verification, safe one-time extraction and the not-found message."""

import dataclasses
import hashlib
import io
import os
import tarfile
from pathlib import Path

import pytest

from lossdecay_lib.atomic import write_atomically

from lossdecay_lib.data import paths
from lossdecay_lib.data.errors import (
    ChecksumError,
    DatasetNotFoundError,
    MalformedDatasetError,
    UnsafeArchiveError,
)


@pytest.fixture(autouse=True)
def isolated_environment(tmp_path, monkeypatch):
    """No test reads or writes the real user cache or follows a data root set outside."""
    monkeypatch.delenv(paths.DATA_ENV, raising=False)
    monkeypatch.setenv(paths.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))


def make_archive(path: Path, files: dict) -> str:
    """Write a .tar.gz holding ``files`` ({member name: bytes}); return its sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_data_root_rule_argument_then_env_then_user_cache(tmp_path, monkeypatch):
    assert paths.resolve_data_root() == tmp_path / "xdg" / "lossdecay"
    (tmp_path / "from-env").mkdir()
    (tmp_path / "arg").mkdir()
    monkeypatch.setenv(paths.DATA_ENV, str(tmp_path / "from-env"))
    assert paths.resolve_data_root() == tmp_path / "from-env"
    assert paths.resolve_data_root(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.delenv(paths.DATA_ENV)
    assert paths.resolve_data_root() == Path.home() / ".cache" / "lossdecay"


def test_cache_rule_argument_then_env_then_user_cache(tmp_path, monkeypatch):
    assert paths.resolve_cache_dir() == tmp_path / "cache"
    assert paths.resolve_cache_dir(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv(paths.CACHE_ENV)
    assert paths.resolve_cache_dir() == tmp_path / "xdg" / "lossdecay"


def test_archive_is_verified_extracted_into_cache_once(tmp_path, monkeypatch):
    archive = tmp_path / "readonly" / "toy.tar.gz"
    sha = make_archive(archive, {"toy/a.txt": b"hello", "toy/sub/b.txt": b"world"})
    folder = paths.extract_archive(archive, sha)
    assert folder == tmp_path / "cache" / "extracted" / f"toy-{sha[:12]}"
    assert (folder / "toy" / "a.txt").read_bytes() == b"hello"
    assert (folder / "toy" / "sub" / "b.txt").read_bytes() == b"world"
    assert sorted(p.name for p in archive.parent.iterdir()) == ["toy.tar.gz"]  # nothing beside it
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".partial")]

    def must_not_run(*args, **kwargs):
        raise AssertionError("a second call must not hash or extract again")

    monkeypatch.setattr(paths, "sha256_of", must_not_run)
    monkeypatch.setattr(paths, "safe_extract", must_not_run)
    assert paths.extract_archive(archive, sha) == folder


def test_checksum_mismatch_names_the_file_and_extracts_nothing(tmp_path):
    archive = tmp_path / "toy.tar.gz"
    make_archive(archive, {"toy/a.txt": b"hello"})
    with pytest.raises(ChecksumError, match="checksum mismatch") as caught:
        paths.extract_archive(archive, "0" * 64)
    assert str(archive) in str(caught.value)
    assert not (tmp_path / "cache" / "extracted").exists()


@pytest.mark.parametrize("bad_name", ["../escaped.txt", "toy/../../escaped.txt", "/tmp/escaped-abs.txt"])
def test_member_escaping_the_target_is_refused(tmp_path, bad_name):
    archive = tmp_path / "evil.tar.gz"
    sha = make_archive(archive, {"toy/ok.txt": b"ok", bad_name: b"gotcha"})
    with pytest.raises(UnsafeArchiveError, match="outside") as caught:
        paths.extract_archive(archive, sha)
    assert bad_name in str(caught.value)
    assert not (tmp_path / "escaped.txt").exists()
    extracted = tmp_path / "cache" / "extracted"
    assert not extracted.exists() or list(extracted.iterdir()) == []  # temp folder cleaned up


def test_link_member_is_refused(tmp_path):
    archive = tmp_path / "link.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        link = tarfile.TarInfo("toy/passwd")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        tar.addfile(link)
    with pytest.raises(UnsafeArchiveError, match="link"):
        paths.safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def with_archive(monkeypatch, name: str, sha: str, filename: str, folder: str) -> None:
    """Make dataset ``name`` expect one archive with the given checksum (for fixtures)."""
    info = paths.DATASETS[name]
    archive = paths.ArchiveInfo(filename, sha, folder)
    monkeypatch.setitem(paths.DATASETS, name, dataclasses.replace(info, archives=(archive,)))


def test_find_dataset_extracts_a_known_archive_from_the_data_root(tmp_path, monkeypatch):
    root = tmp_path / "data"
    sha = make_archive(root / "camvid.tar.gz", {"CamVid/train.txt": b""})
    with_archive(monkeypatch, "camvid", sha, "camvid.tar.gz", "CamVid")
    found = paths.find_dataset("camvid", root)
    assert found == tmp_path / "cache" / "extracted" / f"camvid-{sha[:12]}" / "CamVid"
    assert (found / "train.txt").is_file()
    assert sorted(p.name for p in root.iterdir()) == ["camvid.tar.gz"]
    # Later, without the archive, the earlier extraction is still found.
    (root / "camvid.tar.gz").unlink()
    assert paths.find_dataset("camvid", root) == found


def test_find_dataset_prefers_an_extracted_folder_and_reads_env(tmp_path, monkeypatch):
    root = tmp_path / "data"
    (root / "CamVid").mkdir(parents=True)
    monkeypatch.setenv(paths.DATA_ENV, str(root))
    assert paths.find_dataset("camvid") == root / "CamVid"


def test_known_archive_with_wrong_content_is_a_checksum_error(tmp_path):
    root = tmp_path / "data"
    make_archive(root / "facades.tar.gz", {"facades/train/1.jpg": b"not the real archive"})
    with pytest.raises(ChecksumError) as caught:
        paths.find_dataset("facades", root)
    assert str(root / "facades.tar.gz") in str(caught.value)


def test_archive_without_the_expected_folder_is_malformed(tmp_path, monkeypatch):
    root = tmp_path / "data"
    sha = make_archive(root / "camvid.tar.gz", {"Other/x.txt": b""})
    with_archive(monkeypatch, "camvid", sha, "camvid.tar.gz", "CamVid")
    with pytest.raises(MalformedDatasetError, match="CamVid/"):
        paths.find_dataset("camvid", root)


def test_missing_dataset_names_dataset_places_and_remedy(tmp_path):
    root = tmp_path / "empty"
    root.mkdir()
    with pytest.raises(DatasetNotFoundError) as caught:
        paths.find_dataset("camvid", root)
    message = str(caught.value)
    assert "'camvid'" in message
    assert str(root / "CamVid") in message and str(root / "camvid.tar.gz") in message
    assert str(tmp_path / "cache" / "CamVid") in message  # the cache is searched too
    assert "data_root argument" in message  # where the data root came from
    assert "LOSSDECAY_DATA" in message and "data_root=" in message and "camvid.tar.gz" in message


def test_missing_dataset_without_a_download_says_so(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="no automatic download"):
        paths.find_dataset("camvid", tmp_path, download=True)


def test_failed_download_is_reported_with_its_cause(tmp_path, monkeypatch):
    def offline(cache):
        raise OSError("network is unreachable")

    info = dataclasses.replace(paths.DATASETS["facades"], download=offline)
    monkeypatch.setitem(paths.DATASETS, "facades", info)
    with pytest.raises(DatasetNotFoundError, match="network is unreachable"):
        paths.find_dataset("facades", tmp_path, download=True)


def test_unknown_dataset_lists_the_valid_names(tmp_path):
    with pytest.raises(ValueError, match="valid datasets: cifar10, voc2012, camvid, facades, maps"):
        paths.find_dataset("cifar100", tmp_path)


def test_atomic_write_leaves_no_partial_file_on_error(tmp_path):
    target = tmp_path / "out" / "cache.bin"

    def fails(temporary):
        temporary.write_bytes(b"half")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        write_atomically(target, fails)
    assert os.listdir(tmp_path / "out") == []
    write_atomically(target, lambda temporary: temporary.write_bytes(b"whole"))
    assert target.read_bytes() == b"whole" and os.listdir(tmp_path / "out") == ["cache.bin"]


def test_a_named_data_root_that_does_not_exist_is_an_error(tmp_path, monkeypatch):
    with pytest.raises(DatasetNotFoundError, match=r"data root .*typo \(from the data_root argument\) does not exist"):
        paths.find_dataset("cifar10", tmp_path / "typo")
    monkeypatch.setenv(paths.DATA_ENV, str(tmp_path / "also-typo"))
    with pytest.raises(DatasetNotFoundError, match=r"also-typo \(from \$LOSSDECAY_DATA\) does not exist"):
        paths.find_dataset("cifar10")


def test_an_extraction_in_progress_is_never_used(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "cache" / "extracted" / ".partial-camvid-xyz" / "CamVid").mkdir(parents=True)
    with pytest.raises(DatasetNotFoundError):
        paths.find_dataset("camvid", tmp_path / "data")
    (tmp_path / "cache" / "extracted" / "camvid-0123456789ab" / "CamVid").mkdir(parents=True)
    assert paths.find_dataset("camvid", tmp_path / "data").parent.name == "camvid-0123456789ab"
