"""What the CPU can do, read from the machine (never assumed), and the precision that follows.

Two sources, because either alone can mislead: the kernel's flag list (``/proc/cpuinfo`` on
Linux: what the silicon and the hypervisor expose) and PyTorch's own probes (``torch.cpu``: what
its kernels will dispatch to; the only source on macOS and Windows). A unit counts as present
when either reports it.

The reduced-precision units that matter for a ResNet:

* bf16: ``avx512_bf16`` (Cooper Lake, Sapphire Rapids, AMD Zen 4+) and ``amx_bf16`` (Sapphire
  Rapids+ tile units, several times faster again). Without them oneDNN emulates bf16 with fp32
  arithmetic plus conversions: slower than fp32.
* int8: ``amx_int8``, ``avx512_vnni``, ``avx_vnni`` (dot-product instructions ONNX Runtime's and
  oneDNN's int8 kernels use). Without them int8 convolutions gain little over fp32.

oneDNN's own limit counts too: ``ONEDNN_MAX_CPU_ISA`` (or the older ``DNNL_MAX_CPU_ISA``) caps the
instructions PyTorch's convolutions use. Set to ``AVX2`` on a Sapphire Rapids it makes bf16 emulated
again, so units above the cap are not counted for PyTorch's precisions (:meth:`CpuFeatures.usable`).
ONNX Runtime ignores the variable: the int8 units stay counted. The same cap on a machine with the
units is how ``crosspose benchmark`` emulates a CPU without them (docs/speed.md).
"""

from __future__ import annotations

import os
import platform
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, NamedTuple

__all__ = [
    "COMPILE_SETTINGS",
    "ISA_LIMIT_ENV",
    "REDUCED_PRECISION_FLAGS",
    "CompileChoice",
    "CpuFeatures",
    "Precision",
    "check_compile_setting",
    "choose_inference_compile",
    "choose_inference_precision",
    "choose_loader_workers",
    "choose_training_precision",
    "isa_allows",
    "onednn_isa_limit",
    "parse_cpuinfo",
    "precision_support",
    "read_cpu_features",
]

Precision = Literal["fp32", "bf16", "int8"]

REDUCED_PRECISION_FLAGS = ("avx512_bf16", "amx_bf16", "amx_int8", "amx_tile", "avx512_vnni", "avx_vnni",
                           "avx512f", "avx2")
"""The /proc/cpuinfo flags a report prints (the ones the precision choice depends on, and their base)."""

_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
_INT8_FLAGS = ("amx_int8", "avx512_vnni", "avx_vnni")

ISA_LIMIT_ENV = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")
"""oneDNN's variables that cap its instruction set (the first one set wins, as in oneDNN)."""

# oneDNN's cap values, lowest first (aliases beside each other); ALL is no cap
_ISA_LEVELS = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI",
               "AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX10_1_512", "AVX512_CORE_AMX",
               "AVX512_CORE_AMX_FP16", "AVX10_1_512_AMX", "AVX10_1_512_AMX_FP16", "AVX10_2_512",
               "AVX10_2_512_AMX_2", "ALL")
# the lowest cap under which oneDNN uses each flag that PyTorch's precisions depend on
_FLAG_ISA = {"avx2": "AVX2", "avx512f": "AVX512_CORE", "avx512_bf16": "AVX512_CORE_BF16",
             "amx_bf16": "AVX512_CORE_AMX", "amx_tile": "AVX512_CORE_AMX"}


def onednn_isa_limit(environ: Mapping[str, str] | None = None) -> str | None:
    """The instruction-set cap oneDNN reads from the environment (``AVX2``, ...), or None when it has none.

    A value oneDNN does not know is ignored by oneDNN, and here too; ``ALL`` is no cap.

    >>> onednn_isa_limit({"ONEDNN_MAX_CPU_ISA": "avx2"})
    'AVX2'
    >>> onednn_isa_limit({}) is None
    True
    """
    environ = os.environ if environ is None else environ
    for name in ISA_LIMIT_ENV:
        value = environ.get(name, "").strip().upper()
        if value:
            return value if value in _ISA_LEVELS and value != "ALL" else None
    return None


def isa_allows(limit: str | None, level: str) -> bool:
    """Whether oneDNN capped at ``limit`` (None: no cap) may use the instructions of ``level``.

    >>> isa_allows("AVX2", "AVX512_CORE"), isa_allows(None, "AVX512_CORE_AMX")
    (False, True)
    """
    return limit is None or _ISA_LEVELS.index(level) <= _ISA_LEVELS.index(limit)


@dataclass(frozen=True)
class CpuFeatures:
    """The CPU's model name and the instruction-set flags relevant to reduced precision.

    Attributes:
        model: the CPU's marketing name ("AMD EPYC 9654", ...), or the platform's processor string.
        flags: lower-case flag names (``/proc/cpuinfo`` spelling), from the kernel and torch's probes.
        torch_capability: ``torch.backends.cpu.get_cpu_capability()`` ("AVX512", "AVX2", "DEFAULT"...),
            or None when not asked.
        isa_limit: oneDNN's instruction-set cap (:func:`onednn_isa_limit`), or None.
    """

    model: str
    flags: frozenset[str] = field(default_factory=frozenset)
    torch_capability: str | None = None
    isa_limit: str | None = None

    def usable(self, flag: str) -> bool:
        """The CPU has ``flag`` and oneDNN's cap lets PyTorch use it (flags the cap does not govern: present)."""
        if flag not in self.flags:
            return False
        return flag not in _FLAG_ISA or isa_allows(self.isa_limit, _FLAG_ISA[flag])

    @property
    def bf16_units(self) -> bool:
        """Native bf16 matrix arithmetic (AVX512-BF16 or AMX-BF16) that oneDNN may use."""
        return any(self.usable(f) for f in _BF16_FLAGS)

    @property
    def bf16_capped(self) -> bool:
        """The CPU has bf16 units but oneDNN's cap keeps PyTorch from them."""
        return not self.bf16_units and any(f in self.flags for f in _BF16_FLAGS)

    @property
    def amx(self) -> bool:
        return self.usable("amx_bf16") or "amx_int8" in self.flags

    @property
    def int8_units(self) -> bool:
        """Native int8 dot products (AMX-INT8, AVX512-VNNI or AVX-VNNI)."""
        return any(f in self.flags for f in _INT8_FLAGS)

    def relevant_flags(self) -> list[str]:
        """The precision-relevant flags this CPU has, in a fixed order."""
        return [f for f in REDUCED_PRECISION_FLAGS if f in self.flags]

    def describe(self) -> str:
        """One line: model, relevant flags, torch's dispatch level."""
        flags = " ".join(self.relevant_flags()) or "none of " + " ".join(REDUCED_PRECISION_FLAGS)
        cap = f"; torch kernels: {self.torch_capability}" if self.torch_capability else ""
        limit = f"; oneDNN limited to {self.isa_limit}" if self.isa_limit else ""
        return f"{self.model} ({flags}{cap}{limit})"


def parse_cpuinfo(text: str) -> tuple[str | None, frozenset[str]]:
    """(model name, flags) of the first processor in a ``/proc/cpuinfo`` text.

    x86 lists ``flags``, ARM ``Features``; flags are lower-cased.
    """
    model, flags = None, frozenset[str]()
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key = key.strip().lower()
        if key == "model name" and model is None:
            model = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = frozenset(value.lower().split())
    return model, flags


def _torch_probes() -> tuple[set[str], str | None]:
    """Flags torch's CPU probes report, and its kernel dispatch level (empty, None without torch)."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency; kept for the core layer's independence
        return set(), None
    probes = {"avx512_bf16": "_is_avx512_bf16_supported", "amx_tile": "_is_amx_tile_supported",
              "avx512_vnni": "_is_vnni_supported", "avx512f": "_is_avx512_supported",
              "avx2": "_is_avx2_supported"}
    found = set()
    for flag, name in probes.items():
        probe = getattr(torch.cpu, name, None)
        try:
            if probe is not None and probe():
                found.add(flag)
        except RuntimeError:
            continue
    # torch probes only "tile" support; AMX tiles ship with both bf16 and int8 (Sapphire Rapids+)
    if "amx_tile" in found:
        found |= {"amx_bf16", "amx_int8"}
    try:
        capability = str(torch.backends.cpu.get_cpu_capability())
    except (AttributeError, RuntimeError):
        capability = None
    return found, capability


def read_cpu_features(cpuinfo: str | Path = "/proc/cpuinfo", use_torch: bool = True,
                      environ: Mapping[str, str] | None = None) -> CpuFeatures:
    """The running machine's CPU features: the kernel's flags united with torch's probes, and oneDNN's cap."""
    model, flags = None, frozenset[str]()
    try:
        model, flags = parse_cpuinfo(Path(cpuinfo).read_text(encoding="utf-8", errors="replace"))
    except OSError:
        pass  # not Linux: torch's probes are the only source
    capability = None
    if use_torch:
        extra, capability = _torch_probes()
        flags = flags | extra
    return CpuFeatures(model or platform.processor() or platform.machine(), frozenset(flags), capability,
                       onednn_isa_limit(environ))


def precision_support(features: CpuFeatures, device: str = "cpu") -> dict[str, str | None]:
    """For fp32, bf16 and int8: None when this device runs it natively, else why not (one phrase)."""
    if device.startswith("cuda"):
        import torch

        bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        return {"fp32": None, "bf16": None if bf16 else "this GPU has no bf16",
                "int8": "int8 is a CPU path (ONNX Runtime)"}
    if features.bf16_capped:
        no_bf16: str | None = f"not used on this CPU (oneDNN limited to {features.isa_limit} by {ISA_LIMIT_ENV[0]})"
    else:
        no_bf16 = None if features.bf16_units else "not supported on this CPU (no avx512_bf16 / amx_bf16)"
    return {
        "fp32": None,
        "bf16": no_bf16,
        "int8": None if features.int8_units else "not supported on this CPU (no avx512_vnni / avx_vnni / amx_int8)",
    }


def choose_inference_precision(features: CpuFeatures, device: str = "cpu",
                               int8_model: bool = False) -> Precision:
    """The automatic inference precision.

    On a GPU: bf16 where it has bf16 (tensor cores), else fp32. On a CPU: int8 only when a
    calibrated int8 model is at hand (``int8_model``; it is a separate file made by
    :func:`crosspose.inference.quantize.quantize_onnx`) and the CPU has int8 dot-product units; else bf16 when
    it has bf16 units; else fp32 (emulated bf16 or int8 would be slower, not faster).
    """
    support = precision_support(features, device)
    if device.startswith("cuda"):
        return "bf16" if support["bf16"] is None else "fp32"
    if int8_model and support["int8"] is None:
        return "int8"
    if support["bf16"] is None:
        return "bf16"
    return "fp32"


COMPILE_SETTINGS = ("auto", "on", "off")
"""What ``--compile`` / ``compile=`` of inference accept."""


class CompileChoice(NamedTuple):
    """Whether inference runs compiled, and why (``describe()`` is the line ``crosspose analyze`` prints)."""

    on: bool
    reason: str

    def describe(self) -> str:
        """One line: ``compile: on (auto: bf16 on a CPU with AMX)``."""
        return f"compile: {'on' if self.on else 'off'} ({self.reason})"


def check_compile_setting(requested: str, name: str = "compile") -> None:
    """ConfigError, naming the setting ``name``, unless ``requested`` is one of :data:`COMPILE_SETTINGS`."""
    from crosspose.core.errors import ConfigError

    if requested not in COMPILE_SETTINGS:
        raise ConfigError(f"{name} must be one of {', '.join(COMPILE_SETTINGS)}, got {requested!r}")


def choose_inference_compile(features: CpuFeatures, device: str, precision: str,
                             requested: str = "auto", fused: bool = False) -> CompileChoice:
    """Whether inference runs the network through ``torch.compile`` (Inductor, weights frozen), and why.

    ``fused``: the network runs as fused oneDNN calls (:mod:`crosspose.models.onednn`: bf16 on a CPU,
    a BatchNorm timm ResNet). ``auto`` compiles where it was measured to pay: bf16 on a CPU with AMX,
    for a network that is not fused. There Inductor folds the weights into oneDNN's prepacked bf16
    layout once instead of autocast casting every weight on every call, and fuses each convolution
    with its ReLU: ResNet-50 at 256 px, batch 8, ran 117 img/s against 50-58 eager autocast on a
    2-core Xeon with AMX (after 4-18 s of compiling, once per input shape and process). The fused
    calls do the same without a compiler: the network alone ran 87-103 img/s there, and
    ``crosspose analyze`` of a 640x480 video 17.1-18.5 frames/s against 15.1-16.5 compiled (after
    the compile's 4.5 s), so a fused network stays eager. fp32 on the same CPU gained 16 % (18.5 vs
    15.9 img/s), not worth a compile by default; CPUs without AMX and GPUs are not measured, so
    ``auto`` leaves them eager. Inductor needs a C++ compiler on the CPU; without one ``auto`` stays
    eager and ``on`` is refused.
    """
    import shutil

    from crosspose.core.errors import ConfigError

    check_compile_setting(requested)
    if requested == "off":
        return CompileChoice(False, "off: asked for")
    compiler = device.startswith("cuda") or any(shutil.which(c) for c in ("c++", "g++", "clang++", "cl"))
    if requested == "on":
        if not compiler:
            raise ConfigError("--compile on: torch.compile needs a C++ compiler on the CPU (none of c++, g++, "
                              "clang++, cl found); install one or use --compile off")
        return CompileChoice(True, "on: asked for")
    if device != "cpu":
        return CompileChoice(False, "auto: eager on this device (compiling is measured on CPUs with AMX only)")
    if precision != "bf16" or not features.usable("amx_bf16"):
        return CompileChoice(False, "auto: eager (compiling pays for bf16 on CPUs with AMX)")
    if fused:
        return CompileChoice(False, "auto: eager (bf16 as fused oneDNN calls, faster than compiled in video "
                                    "analysis)")
    if not compiler:
        return CompileChoice(False, "auto: eager (no C++ compiler for torch.compile)")
    return CompileChoice(True, "auto: bf16 on a CPU with AMX")


def choose_training_precision(features: CpuFeatures, device: str = "cpu", requested: str = "auto") -> str:
    """Lightning's ``trainer.precision`` for ``requested`` (``auto`` | ``32`` | ``bf16`` | ``bf16-if-supported``).

    ``auto`` is bf16-mixed on a GPU with bf16 and 32-true on every CPU: bf16 training on a CPU is
    an option (``bf16``), because its effect on accuracy depends on the run; asking for it on a CPU
    without bf16 units is refused rather than silently emulated. ``bf16-if-supported`` is bf16-mixed
    wherever the hardware has bf16 units (CPU or GPU) and 32-true elsewhere: for runs whose budget is
    wall-clock time, such as ``crosspose demo`` (its accuracy cost there is measured in the README).
    """
    from crosspose.core.errors import ConfigError

    support = precision_support(features, device)
    if requested in ("32", "fp32", "32-true"):
        return "32-true"
    if requested in ("bf16", "bf16-mixed"):
        if support["bf16"] is not None:
            raise ConfigError(f"bf16 training asked for, but {support['bf16']}: {features.describe()}")
        return "bf16-mixed"
    if requested == "bf16-if-supported":
        return "bf16-mixed" if support["bf16"] is None else "32-true"
    if requested != "auto":
        raise ConfigError(f"precision must be auto, 32, bf16 or bf16-if-supported, got {requested!r}")
    return "bf16-mixed" if device.startswith("cuda") and support["bf16"] is None else "32-true"


LOADER_WORKERS_CAP = 8
"""The most loader processes ``auto`` starts per training process on a GPU (the data pipeline costs
~2 CPU-ms per image: 8 cores feed ~4,000 images/s, 20 % of an H100's bf16 peak for ResNet-50)."""


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, e.g. a SLURM or container limit), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def choose_loader_workers(setting: int | str, device_type: str, processes_per_node: int = 1) -> int:
    """Data-loader processes per training process for ``data.num_workers`` (an int is kept as given).

    ``auto``: none on the CPU, where the network and the loader share the same cores. There the
    training step takes 40-260x the loading (ResNet-18 at 128 px to ResNet-50 at 256 px), so
    loading in the training process costs at most a few percent, while each worker process costs
    memory and competes with the step's threads: measured on a 2-core EPYC (ResNet-50, 256 px,
    batch 8), no workers trained 6 % faster than two in fp32 and bf16 and took ~0.4 GiB less.
    On a GPU the cores are otherwise idle: one worker per core left to this process (its share
    of the node's cores minus one for itself), at most :data:`LOADER_WORKERS_CAP`.

    >>> choose_loader_workers("auto", "cpu")
    0
    >>> choose_loader_workers(3, "cuda")
    3
    """
    if setting != "auto":
        return int(setting)
    if device_type == "cpu":
        return 0
    share = usable_cores() // max(1, processes_per_node)
    return max(1, min(LOADER_WORKERS_CAP, share - 1))
