"""What the benchmark ran on: speed figures mean little without the CPU's instruction sets.

int8 and bf16 speed depend on ISA more than on clock: the same 2-core box type gave 145–198
windows/s through Triton with AVX-512 VNNI and AMX, and 71–93 with AVX2 only. So every result
file records the CPU model and the ISA extensions the int8 (VNNI) and bf16 (AMX, AVX-512 BF16)
kernels use; compare figures only between runs whose ``isa`` agrees.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

#: The /proc/cpuinfo flags that change ONNX Runtime's int8 and torch's bf16 speed.
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


def describe(cpuinfo: str | None = None) -> dict[str, Any]:
    """CPU count, platform, CPU model and the ``ISA_FLAGS`` it has (Linux; elsewhere what is known)."""
    if cpuinfo is None:
        path = Path("/proc/cpuinfo")
        cpuinfo = path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""
    model, flags = platform.processor() or None, set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and value.strip():
            model = value.strip()
        elif key.strip() == "flags" and not flags:
            flags = set(value.split())
    return {"cpus": os.cpu_count(), "platform": platform.platform(), "cpu": model,
            "isa": [f for f in ISA_FLAGS if f in flags]}
