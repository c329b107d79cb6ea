"""CPU feature detection and the precision policy, on mocked feature sets."""

from __future__ import annotations

from pathlib import Path

import pytest

from crosspose.core.errors import ConfigError
from crosspose.core.hardware import (
    CpuFeatures,
    choose_inference_compile,
    choose_inference_precision,
    choose_training_precision,
    onednn_isa_limit,
    parse_cpuinfo,
    precision_support,
    read_cpu_features,
)

ZEN3 = CpuFeatures("AMD EPYC 7763", frozenset({"avx2", "fma"}))
ZEN4 = CpuFeatures("AMD EPYC 9654", frozenset({"avx2", "avx512f", "avx512_bf16", "avx512_vnni"}))
SAPPHIRE = CpuFeatures("Intel Xeon Platinum 8480+", frozenset({"avx512f", "avx512_bf16", "avx512_vnni",
                                                                 "amx_bf16", "amx_int8", "amx_tile"}))
ALDER = CpuFeatures("Intel Core i7-12700", frozenset({"avx2", "avx_vnni"}))

CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 9R14
flags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni
bogomips\t: 5200.00

processor\t: 1
model name\t: AMD EPYC 9R14
flags\t\t: fpu sse2
"""


def test_parse_cpuinfo_reads_the_first_processor() -> None:
    model, flags = parse_cpuinfo(CPUINFO)
    assert model == "AMD EPYC 9R14"
    assert {"avx512_bf16", "avx512_vnni", "avx2"} <= flags and "amx_bf16" not in flags
    assert parse_cpuinfo("Features\t: fp asimd bf16 i8mm\n")[1] == {"fp", "asimd", "bf16", "i8mm"}


def test_read_cpu_features_from_a_file_without_torch(tmp_path: Path) -> None:
    path = tmp_path / "cpuinfo"
    path.write_text(CPUINFO)
    features = read_cpu_features(path, use_torch=False)
    assert features.bf16_units and features.int8_units and not features.amx
    assert "avx512_bf16" in features.describe() and "EPYC 9R14" in features.describe()
    missing = read_cpu_features(tmp_path / "absent", use_torch=False)
    assert missing.flags == frozenset() and missing.model


def test_the_running_machine_agrees_with_torch() -> None:
    import torch

    features = read_cpu_features()
    # torch's own probe is one of the two sources: whatever it says is present must be reported
    if torch.cpu._is_avx512_bf16_supported():
        assert features.bf16_units
    assert features.torch_capability


@pytest.mark.parametrize(("features", "int8_model", "expected"), [
    (ZEN3, False, "fp32"), (ZEN3, True, "fp32"),        # nothing native: emulation would be slower
    (ZEN4, False, "bf16"), (ZEN4, True, "int8"),
    (SAPPHIRE, False, "bf16"), (SAPPHIRE, True, "int8"),
    (ALDER, False, "fp32"), (ALDER, True, "int8"),      # VNNI but no bf16
])
def test_inference_precision_follows_the_reported_units(features: CpuFeatures, int8_model: bool,
                                                        expected: str) -> None:
    assert choose_inference_precision(features, "cpu", int8_model=int8_model) == expected


def test_support_table_names_the_missing_flags() -> None:
    support = precision_support(ZEN3)
    assert support["fp32"] is None
    assert "avx512_bf16" in support["bf16"] and "not supported on this CPU" in support["bf16"]
    assert "vnni" in support["int8"]
    assert precision_support(SAPPHIRE) == {"fp32": None, "bf16": None, "int8": None}


def test_training_precision_bf16_only_as_an_option_and_only_with_units() -> None:
    assert choose_training_precision(ZEN4, "cpu") == "32-true"          # auto never picks bf16 on a CPU
    assert choose_training_precision(ZEN4, "cpu", "bf16") == "bf16-mixed"
    assert choose_training_precision(ZEN3, "cpu", "32") == "32-true"
    assert choose_training_precision(ZEN4, "cpu", "bf16-if-supported") == "bf16-mixed"
    assert choose_training_precision(ZEN3, "cpu", "bf16-if-supported") == "32-true"  # never emulated
    with pytest.raises(ConfigError, match="avx512_bf16"):
        choose_training_precision(ZEN3, "cpu", "bf16")
    with pytest.raises(ConfigError, match="auto, 32, bf16 or bf16-if-supported"):
        choose_training_precision(ZEN4, "cpu", "fp16")


# ----------------------------------------------------------------------------- loader workers
def test_loader_workers_auto_is_none_on_the_cpu_and_a_free_core_each_on_a_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    from crosspose.core import hardware

    monkeypatch.setattr(hardware, "usable_cores", lambda: 16)
    assert hardware.choose_loader_workers("auto", "cpu") == 0
    assert hardware.choose_loader_workers("auto", "cuda") == hardware.LOADER_WORKERS_CAP
    assert hardware.choose_loader_workers("auto", "cuda", processes_per_node=4) == 3  # 16 / 4 - 1
    monkeypatch.setattr(hardware, "usable_cores", lambda: 2)
    assert hardware.choose_loader_workers("auto", "cuda", processes_per_node=4) == 1  # never none on a GPU
    assert hardware.choose_loader_workers(5, "cpu") == 5  # a count is kept as given
    assert hardware.choose_loader_workers(0, "cuda") == 0


def test_onednn_isa_limit_reads_onednn_s_own_variables() -> None:
    assert onednn_isa_limit({"ONEDNN_MAX_CPU_ISA": " avx2 "}) == "AVX2"
    assert onednn_isa_limit({"DNNL_MAX_CPU_ISA": "AVX512_CORE"}) == "AVX512_CORE"  # the older name
    assert onednn_isa_limit({"ONEDNN_MAX_CPU_ISA": "AVX2", "DNNL_MAX_CPU_ISA": "AVX512_CORE"}) == "AVX2"
    assert onednn_isa_limit({"ONEDNN_MAX_CPU_ISA": "ALL"}) is None  # no cap
    assert onednn_isa_limit({"ONEDNN_MAX_CPU_ISA": "FASTEST"}) is None  # oneDNN ignores what it does not know
    assert onednn_isa_limit({}) is None


def test_a_capped_onednn_hides_the_bf16_units_but_not_onnx_runtime_s_int8(tmp_path: Path) -> None:
    path = tmp_path / "cpuinfo"
    path.write_text(CPUINFO.replace("avx512_vnni", "avx512_vnni amx_bf16 amx_int8 amx_tile"))
    free = read_cpu_features(path, use_torch=False, environ={})
    assert free.bf16_units and free.usable("amx_bf16") and free.isa_limit is None
    capped = read_cpu_features(path, use_torch=False, environ={"ONEDNN_MAX_CPU_ISA": "AVX2"})
    assert capped.flags == free.flags  # the machine's flags are still reported as they are
    assert not capped.bf16_units and capped.bf16_capped and not capped.usable("avx512f")
    assert capped.int8_units  # int8 runs in ONNX Runtime, which the variable does not cap
    assert "oneDNN limited to AVX2" in capped.describe()
    assert "ONEDNN_MAX_CPU_ISA" in precision_support(capped)["bf16"]
    assert choose_inference_precision(capped, "cpu") == "fp32"
    assert choose_inference_precision(capped, "cpu", int8_model=True) == "int8"
    with pytest.raises(ConfigError, match="oneDNN limited to AVX2"):
        choose_training_precision(capped, "cpu", "bf16")
    # capped between the two bf16 generations: AVX512-BF16 in use, the AMX tiles not (so no compiling)
    mid = read_cpu_features(path, use_torch=False, environ={"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16"})
    assert mid.bf16_units and not mid.bf16_capped and not mid.usable("amx_bf16")
    assert not choose_inference_compile(mid, "cpu", "bf16").on


def test_the_running_machine_under_a_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "SSE41")
    features = read_cpu_features()
    assert features.isa_limit == "SSE41" and not features.bf16_units
    assert precision_support(features)["fp32"] is None
