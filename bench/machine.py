"""The machine a CPU benchmark ran on, recorded with every result: never compare runs across CPUs.

``describe()`` returns the CPU model, its core count, the instruction-set flags that decide the
encoder's CPU head (AVX2, FMA, AVX-512, VNNI, AMX), the caps set in the environment (oneDNN's,
ATen's and MKL's: how an AVX2-only CPU is emulated on a newer one, which is not the same as
running on one), the ISA torch dispatches to, and the load average.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import torch

# Flags that change which head is fastest (and whether the int8 screen may run).
FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8", "amx_bf16")
CAPS = ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS")


def cpu_model() -> str:
    """``model name`` from ``/proc/cpuinfo`` with its family and model numbers (Zen 3 is family 25)."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    name = fields.get("model name") or platform.processor() or "cpu"
    if "cpu family" in fields:
        return f"{name} (family {fields['cpu family']}, model {fields.get('model', '?')})"
    return name


def cpu_flags() -> list[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    line = next((line for line in text.splitlines() if line.startswith("flags")), "")
    present = set(line.partition(":")[2].split())
    return [flag for flag in FLAGS if flag in present]


def describe() -> dict[str, Any]:
    """Everything a result line needs to say about the machine (see the module docstring)."""
    flags = cpu_flags()
    caps = {name: os.environ[name] for name in CAPS if name in os.environ}
    vnni = any(flag in flags for flag in ("avx512_vnni", "avx_vnni", "amx_int8"))
    capped = caps.get("ONEDNN_MAX_CPU_ISA", "").upper() in {"SSE41", "AVX", "AVX2", "AVX512_CORE"}
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "flags": flags,
        "vnni": vnni,
        "isa_caps": caps,
        "runs_as": "AVX2-only (emulated by the caps)" if vnni and capped else ("VNNI" if vnni else "no VNNI"),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch_threads": torch.get_num_threads(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def summary(machine: dict[str, Any]) -> str:
    caps = " ".join(f"{k}={v}" for k, v in machine["isa_caps"].items())
    return (
        f"{machine['cpu']}, {machine['cores']} cores, flags {' '.join(machine['flags'])}"
        f" ({machine['runs_as']}{'; ' + caps if caps else ''}), load average {machine['load_average']}"
    )
