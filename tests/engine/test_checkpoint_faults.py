"""Checkpoints on a disk that really fills up, and one-line errors for files that do not load."""

import errno
import os
import pickle
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from focalcal.engine import checkpoint as checkpoint_module
from focalcal.engine.checkpoint import load_checkpoint, save_checkpoint


def full_disk(path):
    """The message a full disk gives, as a pattern for ``pytest.raises``."""
    return re.escape(
        f"cannot write {path}: No space left on device; any earlier {path.name} is unchanged"
    )


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs mounted for the test: a file system that really fills up."""
    if sys.platform != "linux" or os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root on Linux")
    disk = tmp_path / "disk"
    disk.mkdir()
    command = ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)]
    mounted = subprocess.run(command, capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def free_bytes(directory):
    stats = os.statvfs(directory)
    return stats.f_bavail * stats.f_frsize


@pytest.mark.parametrize("left_free", [0, 100 * 1024])
def test_a_full_disk_names_the_file_and_the_cause_and_keeps_the_last_checkpoint(
    small_disk, left_free
):
    last = save_checkpoint(small_disk / "last.pt", {"epoch": 1, "w": torch.ones(100)})
    (small_disk / "filler").write_bytes(b"\0" * (free_bytes(small_disk) - left_free))
    model = torch.nn.Linear(256, 256)  # 257 KiB of weights: more than is left
    with pytest.raises(OSError, match=full_disk(last)) as raised:
        save_checkpoint(last, {"epoch": 2, "model": model.state_dict()})
    assert raised.value.errno == errno.ENOSPC
    assert load_checkpoint(last)["epoch"] == 1
    assert sorted(os.listdir(small_disk)) == ["filler", "last.pt"]  # no temporary left


def redirect(file, device):
    opened = os.open(device, os.O_WRONLY)
    os.dup2(opened, file.fileno())
    os.close(opened)


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
def test_torch_saving_to_a_full_disk_is_a_named_enospc_not_a_runtime_error(tmp_path, monkeypatch):
    real_save = torch.save

    def save_to_a_full_disk(state, file):
        redirect(file, "/dev/full")  # every write fails with ENOSPC
        try:
            real_save(state, file)  # RuntimeError: [enforce fail ...] unexpected pos ...
        finally:
            redirect(file, "/dev/null")  # room again when the file is closed: torch's error stays

    last = save_checkpoint(tmp_path / "last.pt", {"epoch": 1})
    monkeypatch.setattr(checkpoint_module.torch, "save", save_to_a_full_disk)
    with pytest.raises(OSError, match=full_disk(last)) as raised:
        save_checkpoint(last, {"epoch": 2, "w": torch.zeros(100_000)})
    assert raised.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert load_checkpoint(last)["epoch"] == 1
    assert os.listdir(tmp_path) == ["last.pt"]


def a_checkpoint(path):
    return save_checkpoint(path, {"epoch": 1, "model": torch.nn.Linear(4, 3).state_dict()})


def empty(path):
    path.write_bytes(b"")


def truncated(path):
    data = a_checkpoint(path).read_bytes()
    path.write_bytes(data[: len(data) // 2])


def not_a_checkpoint(path):
    path.write_text("hello, world\n")


class RunsCode:
    def __reduce__(self):
        return (os.system, (f"touch {Path.cwd() / 'pwned'}",))


def saved_code(path):
    torch.save({"epoch": 1, "model": RunsCode()}, path)


def pickled_code(path):  # a plain pickle: torch warns about its protocol in several lines
    path.write_bytes(pickle.dumps({"model": RunsCode()}, protocol=4))


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (empty, r"the file is empty \(0 bytes\)"),
        (truncated, r"damaged or truncated \(RuntimeError: PytorchStreamReader failed reading"),
        (not_a_checkpoint, r"damaged or truncated \(KeyError"),
        (saved_code, r"it holds objects other than tensors .*refused unrun \(unsupported GLOBAL "),
        (
            pickled_code,
            r"it holds objects other than tensors .*refused unrun \(unsupported operand",
        ),
    ],
    ids=["empty", "truncated", "not-a-checkpoint", "saved-code", "pickled-code"],
)
def test_a_file_that_does_not_load_is_one_line_naming_it_and_why(
    tmp_path, monkeypatch, capfd, make, reason
):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "last.pt"
    make(path)
    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        with pytest.raises(
            ValueError, match=rf"^{re.escape(str(path))}: not a loadable checkpoint: {reason}"
        ) as raised:
            load_checkpoint(path)
    message = str(raised.value)
    assert "\n" not in message and "weights_only" not in message, message
    assert not (tmp_path / "pwned").exists()  # refused unrun
    assert warned == [] and capfd.readouterr().err == ""


def test_every_truncation_of_a_checkpoint_is_one_line_without_torchs_advice(tmp_path):
    data = a_checkpoint(tmp_path / "whole.pt").read_bytes()
    path = tmp_path / "cut.pt"
    for cut in range(0, len(data), 97):
        path.write_bytes(data[:cut])
        with pytest.raises(
            ValueError, match=rf"^{re.escape(str(path))}: not a loadable checkpoint: "
        ) as raised:
            load_checkpoint(path)
        message = str(raised.value)
        assert "\n" not in message and "weights_only" not in message, (cut, message)
