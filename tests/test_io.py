"""atomic_write on a failing disk, and the temporaries a killed writer leaves."""

import contextlib
import errno
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from focalcal._io import atomic_write, remove_temporaries


def full_disk(path):
    """The message a full disk gives, as a pattern for ``pytest.raises``."""
    return re.escape(
        f"cannot write {path}: No space left on device; any earlier {path.name} is unchanged"
    )


def test_a_failed_write_names_the_file_and_keeps_the_earlier_one(tmp_path):
    path = atomic_write(tmp_path / "table.md", lambda file: file.write(b"earlier"))

    def fill_the_disk(file):
        file.write(b"half a table")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError, match=full_disk(path)) as raised:
        atomic_write(path, fill_the_disk)
    assert raised.value.errno == errno.ENOSPC
    assert path.read_bytes() == b"earlier"
    assert os.listdir(tmp_path) == ["table.md"]


def hide_the_error(file, data):  # as torch.save does: a RuntimeError without the cause
    try:
        file.write(data)
    except OSError:
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos") from None


def swallow_the_error(file, data):
    with contextlib.suppress(OSError):
        file.write(data)


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
@pytest.mark.parametrize("writer", [hide_the_error, swallow_the_error])
def test_a_write_error_the_writer_hides_is_still_a_named_enospc(tmp_path, writer):
    path = atomic_write(tmp_path / "last.pt", lambda file: file.write(b"earlier"))

    def write_to_a_full_disk(file):
        full = os.open("/dev/full", os.O_WRONLY)  # every write to it fails with ENOSPC
        os.dup2(full, file.fileno())
        os.close(full)
        writer(file, b"\0" * 100_000)

    with pytest.raises(OSError, match=full_disk(path)) as raised:
        atomic_write(path, write_to_a_full_disk)
    assert raised.value.errno == errno.ENOSPC
    assert path.read_bytes() == b"earlier"
    assert os.listdir(tmp_path) == ["last.pt"]


KILLED_WRITER = """
import sys, time
from focalcal._io import atomic_write

def write(file):
    file.write(b"half a checkpoint" * 1000)
    file.flush()
    print("writing", flush=True)
    time.sleep(60)

atomic_write(sys.argv[1], write)
"""


def test_remove_temporaries_removes_a_killed_writers_file_and_nothing_else(tmp_path):
    run = tmp_path / "run"
    writer = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(run / "checkpoints" / "last.pt")],
        stdout=subprocess.PIPE,
    )
    assert writer.stdout.readline() == b"writing\n"
    writer.kill()
    writer.wait()
    writer.stdout.close()
    [orphan] = (run / "checkpoints").iterdir()
    assert orphan.name.startswith(".last.pt.") and orphan.stat().st_size == 17_000

    kept = [run / name for name in (".notes.tmp", "x.tmp", "last.pt.0123456789abcdef.tmp",
            ".last.pt.0123456789ABCDEF.tmp", ".last.pt.0123456789abcde.tmp", ".last.pt.tmp",
            ".last.pt.0123456789abcdef.tmp.bak")]  # fmt: skip
    for path in kept:
        path.write_text("a user's file")
    (run / ".dir.0123456789abcdef.tmp").mkdir()
    (run / ".link.0123456789abcdef.tmp").symlink_to(kept[0])
    kept += [run / ".dir.0123456789abcdef.tmp", run / ".link.0123456789abcdef.tmp"]

    assert remove_temporaries(run) == [orphan]
    assert not orphan.exists()
    assert all(path.exists() for path in kept)
    assert remove_temporaries(run) == []
