"""What a number was computed on: the processor, torch's kernels and threads, the device.

Training repeats bit for bit only on the same machine with the same thread count: another CPU
(or ``ATEN_CPU_CAPABILITY``, or thread count) rounds sums and transcendental functions
differently in the last bits, and training amplifies that into other weights. So runs and
their tables record where they were computed.
"""

from __future__ import annotations

import platform
from pathlib import Path

import torch


def processor_name() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux), else what :mod:`platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def describe_machine(device: torch.device | str = "cpu") -> str:
    """One line naming the processor, torch's CPU kernels and threads, torch, and a GPU.

    Example:
        >>> "torch " + torch.__version__ in describe_machine()
        True
    """
    device = torch.device(device)
    capability = torch.backends.cpu.get_cpu_capability()  # AVX2, AVX512, DEFAULT, ...
    kernels = "portable kernels" if capability == "DEFAULT" else f"{capability} kernels"
    threads = torch.get_num_threads()
    text = (
        f"{processor_name()} ({platform.machine()}, {kernels}, {threads} "
        f"thread{'' if threads == 1 else 's'}), torch {torch.__version__}"
    )
    if device.type == "cuda":
        text += f", {torch.cuda.get_device_name(device)}"
    elif device.type != "cpu":
        text += f", device {device}"
    return text
