"""Benchmark results name the CPU and the ISA extensions that set int8/bf16 speed."""

from __future__ import annotations

from benchmarks.machine import ISA_FLAGS, describe

AVX2_ONLY = """processor\t: 0
model name\t: AMD EPYC
flags\t\t: fpu sse2 avx fma avx2 bmi2
processor\t: 1
model name\t: AMD EPYC
flags\t\t: fpu sse2 avx fma avx2 bmi2
"""


def test_describe_reads_the_model_and_only_the_flags_that_matter() -> None:
    m = describe(AVX2_ONLY)
    assert m["cpu"] == "AMD EPYC" and m["isa"] == ["avx2", "fma"]
    amx = describe(AVX2_ONLY.replace("bmi2", "bmi2 avx512f avx512_vnni amx_bf16 amx_int8"))
    assert amx["isa"] == ["avx2", "fma", "avx512f", "avx512_vnni", "amx_bf16", "amx_int8"]
    assert set(amx["isa"]) <= set(ISA_FLAGS)


def test_describe_this_machine() -> None:
    m = describe()
    assert m["cpus"] >= 1 and isinstance(m["isa"], list) and m["platform"]
