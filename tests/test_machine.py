"""The line that names where a run trained."""

import torch

from focalcal import _machine
from focalcal._machine import describe_machine, processor_name


def test_names_the_processor_kernels_threads_and_torch(monkeypatch):
    monkeypatch.setattr(_machine, "processor_name", lambda: "Some CPU")
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    monkeypatch.setattr(torch, "get_num_threads", lambda: 16)
    text = describe_machine("cpu")
    assert text.startswith("Some CPU (") and "AVX512 kernels, 16 threads)" in text
    assert text.endswith(f"torch {torch.__version__}")
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "DEFAULT")
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    assert "portable kernels, 1 thread)" in describe_machine("cpu")


def test_names_the_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device: "NVIDIA H200")
    assert describe_machine("cuda:0").endswith(", NVIDIA H200")
    assert describe_machine("mps").endswith(", device mps")


def test_the_processor_name_without_proc_cpuinfo(monkeypatch):
    def unreadable(self):
        raise OSError("no such file")

    monkeypatch.setattr(_machine.Path, "read_text", unreadable)
    monkeypatch.setattr(_machine.platform, "processor", lambda: "")
    monkeypatch.setattr(_machine.platform, "machine", lambda: "riscv64")
    assert processor_name() == "riscv64"
