"""Shared benchmark helpers: machine info and honest peak-memory measurement (Linux)."""
from __future__ import annotations

import datetime
import os
import platform

import torch


def machine_info() -> str:
    return (f"{datetime.datetime.now().isoformat(timespec='seconds')} | {platform.processor() or platform.machine()}"
            f" | {os.cpu_count()} cores | torch {torch.__version__} | threads {torch.get_num_threads()}")


def _status(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def rss() -> int:
    """Current resident set size in bytes."""
    return _status("VmRSS")


def reset_peak() -> None:
    """Reset the kernel's peak-RSS mark (VmHWM) to the current RSS."""
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


def peak() -> int:
    """Peak RSS in bytes since the last :func:`reset_peak`."""
    return _status("VmHWM")
