"""A trained network ready to run: a crosspose checkpoint (PyTorch) or an exported ``.onnx`` (ONNX Runtime).

The arithmetic precision is chosen once, when the model is opened (:func:`choose_precision`):
``auto`` is bf16 autocast on a GPU with bf16 (fp16 on one without) and on a CPU whose reported
features include bf16 units (AVX512-BF16 or AMX; :mod:`crosspose.core.hardware`), fp32 otherwise. An
``.onnx`` model runs in its own precision (fp32 from ``crosspose export``, int8 from
``crosspose quantize``). Maps are always returned, and decoded, in fp32.

Both backends take a batch of RGB frames as a uint8 tensor (B, H, W, 3) with H and W multiples of
the output stride and return the raw head outputs (heatmap (B, K, H/8, W/8), locref (B, 2K, ...)) as
float32 CPU tensors; everything around them (resizing, padding, decoding) is shared.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from crosspose.core import hardware
from crosspose.core.errors import CheckpointError, ConfigError
from crosspose.inference.quantize import ONNX_PRECISION_KEY
from crosspose.models.card import ModelCard
from crosspose.models.freeze import freeze_backbone
from crosspose.models.inference import inference_network
from crosspose.models.network import PoseNetwork
from crosspose.models.transfer import read_checkpoint

__all__ = ["ONNX_CARD_KEY", "PRECISIONS", "Backend", "OnnxBackend", "PrecisionChoice", "TorchBackend",
           "build_network", "choose_precision", "onnx_session", "open_backend"]


ONNX_CARD_KEY = "crosspose_card"
"""The ONNX ``metadata_props`` entry holding the model card as JSON."""

PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")
"""What ``--precision`` / ``precision=`` accept (fp16: GPUs only; int8: a quantised ``.onnx`` only)."""
_AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class PrecisionChoice:
    """The precision a model runs in, and why (one phrase, printed by ``crosspose analyze``).

    Attributes:
        precision: ``fp32``, ``bf16``, ``fp16`` or ``int8``.
        reason: why it was chosen, e.g. ``"auto: CPU has avx512_bf16"``.
    """

    precision: str
    reason: str

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        """The autocast dtype of a PyTorch model (None: plain fp32)."""
        return _AUTOCAST.get(self.precision)

    def describe(self) -> str:
        """One line: ``precision: bf16 (auto: CPU has avx512_bf16)``."""
        return f"precision: {self.precision} ({self.reason})"


def _bf16_flags(features: hardware.CpuFeatures) -> str:
    return " ".join(f for f in ("avx512_bf16", "amx_bf16") if features.usable(f))


def choose_precision(requested: str, device: torch.device, onnx_precision: str | None = None) -> PrecisionChoice:
    """The precision a model runs in on ``device`` for ``requested`` (one of :data:`PRECISIONS`).

    Args:
        requested: ``auto`` (see the module docstring), or a precision asked for explicitly.
        device: where the model runs.
        onnx_precision: the precision of an ``.onnx`` file (``fp32`` or ``int8``); None for a checkpoint.

    Returns the choice and its reason. Raises ConfigError for a precision this device or file cannot
    run natively (bf16 on a CPU without bf16 units is refused, not emulated: emulation is slower than fp32).
    """
    if requested not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {requested!r}")
    if onnx_precision is not None:  # an exported file: its arithmetic is fixed in the graph
        if requested in ("auto", onnx_precision):
            why = "quantised by crosspose quantize" if onnx_precision == "int8" else "exported fp32"
            if onnx_precision == "int8" and device.type == "cpu" and not hardware.read_cpu_features().int8_units:
                why += "; this CPU has no avx512_vnni / avx_vnni / amx_int8, int8 may be no faster than fp32"
            return PrecisionChoice(onnx_precision, f"the .onnx file's own: {why}")
        other = ("export the checkpoint again (crosspose export --format onnx) for fp32" if onnx_precision == "int8"
                 else "bf16/fp16 run from the .ckpt checkpoint; int8 from crosspose quantize")
        raise ConfigError(f"--precision {requested}: this .onnx model is {onnx_precision} and runs only in that "
                          f"precision; use --precision auto ({other})")
    if requested == "int8":
        raise ConfigError("--precision int8 needs an int8 .onnx model: crosspose export --format onnx, then "
                          "crosspose quantize --onnx model.onnx --images FRAMES --out model.int8.onnx")
    if requested == "fp32":
        return PrecisionChoice("fp32", "asked for")
    if device.type == "cuda":
        bf16 = torch.cuda.is_bf16_supported()
        if requested == "auto":
            return (PrecisionChoice("bf16", "auto: GPU has bf16") if bf16
                    else PrecisionChoice("fp16", "auto: GPU has no bf16"))
        if requested == "bf16" and not bf16:
            raise ConfigError("--precision bf16: this GPU has no bf16; use fp16, fp32 or auto")
        return PrecisionChoice(requested, "asked for")
    if device.type != "cpu":
        if requested == "auto":
            return PrecisionChoice("fp32", f"auto: reduced precision is only chosen on CPUs and CUDA GPUs, "
                                           f"not {device.type}")
        raise ConfigError(f"--precision {requested}: supported on CPUs and CUDA GPUs, not {device.type}")
    if requested == "fp16":
        raise ConfigError("--precision fp16 is a GPU precision; on a CPU use bf16 (where it has bf16 units), "
                          "fp32 or auto")
    features = hardware.read_cpu_features()
    missing = hardware.precision_support(features, "cpu")["bf16"]
    if requested == "bf16":
        if missing is not None:
            raise ConfigError(f"--precision bf16: {missing}: {features.describe()}; bf16 would be emulated, "
                              "slower than fp32 (use fp32 or auto)")
        return PrecisionChoice("bf16", f"asked for; CPU has {_bf16_flags(features)}")
    if hardware.choose_inference_precision(features, "cpu") == "bf16":
        return PrecisionChoice("bf16", f"auto: CPU has {_bf16_flags(features)}")
    if features.bf16_capped:
        return PrecisionChoice("fp32", f"auto: {missing}")
    return PrecisionChoice("fp32", "auto: CPU has no avx512_bf16 / amx_bf16 units")


class Backend(Protocol):
    """What a Predictor needs of a model: its card, its file, and maps for a batch of frames."""

    card: ModelCard
    path: Path
    device: torch.device
    name: str
    precision: PrecisionChoice
    compiled: hardware.CompileChoice

    def __call__(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None``/``"auto"``: the GPU when there is one, else the CPU."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise ConfigError(f"unknown device {device!r} (cpu, cuda, cuda:N, auto)") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} asked for, but torch sees no CUDA GPU here")
    return resolved


def build_network(path: str | Path) -> tuple[PoseNetwork, ModelCard]:
    """The eval-mode network and card of a crosspose checkpoint; CheckpointError for anything else."""
    state, meta = read_checkpoint(path)
    if not meta:
        raise CheckpointError(f"{path}: no crosspose model card in the checkpoint (not saved by crosspose)")
    card = ModelCard.from_dict(meta, str(path))
    net = PoseNetwork(card.num_keypoints, card.backbone, pretrained=False,
                      intermediate_supervision=card.intermediate_supervision,
                      intermediate_supervision_unit=card.intermediate_supervision_unit,
                      head_output=card.head_output)  # type: ignore[arg-type]
    if card.freeze != "none":
        freeze_backbone(net.backbone, card.freeze)  # the frozen layout the weights were saved in
    state = {k.removeprefix("_orig_mod."): v for k, v in state.items()}  # saved from a torch.compile'd net
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: the weights do not fit the network its model card describes "
                              f"({str(exc).splitlines()[0][:300]})") from None
    return net.eval(), card


class TorchBackend:
    """PyTorch inference: BatchNorm folded, channels_last, autocast in the chosen precision.

    Args:
        path: a crosspose checkpoint.
        device: ``cpu``, ``cuda``, ``cuda:N`` or ``auto``/None (the GPU when there is one).
        precision: one of :data:`PRECISIONS` (see :func:`choose_precision`); ``int8`` is refused.
        compile: ``auto``, ``on`` or ``off``: the network through ``torch.compile`` with frozen weights
            (:func:`crosspose.core.hardware.choose_inference_compile`; ``auto`` compiles bf16 on CPUs
            with AMX, where it was measured twice as fast). ``self.compiled`` (a
            :class:`~crosspose.core.hardware.CompileChoice`) says what was chosen and why.
    """

    name = "pytorch"

    def __init__(self, path: str | Path, device: str | torch.device | None = None, precision: str = "auto",
                 compile: str = "auto") -> None:
        self.path = Path(path)
        self.device = resolve_device(device)
        self.precision = choose_precision(precision, self.device)  # before loading: a bad ask fails fast
        hardware.check_compile_setting(compile)
        net, self.card = build_network(path)
        self.net: torch.nn.Module
        self.compiled: hardware.CompileChoice
        self.net, self.compiled = inference_network(net, self.device, self.precision.precision, compile)
        self.autocast_dtype: torch.dtype | None = self.precision.autocast_dtype

    @torch.inference_mode()
    def __call__(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # (B, H, W, 3) viewed as (B, 3, H, W) is already channels_last: no copy on the CPU
        images = frames.to(self.device, non_blocking=True).permute(0, 3, 1, 2)
        ctx = (torch.autocast(self.device.type, dtype=self.autocast_dtype) if self.autocast_dtype
               else contextlib.nullcontext())
        with ctx:
            out = self.net(images)
        return out["heatmap"].float().cpu(), out["locref"].float().cpu()


def onnx_session(path: str | Path, providers: list[str] | None = None, threads: int | None = None) -> Any:
    """An ONNX Runtime session whose CPU worker threads sleep between runs instead of spinning.

    ONNX Runtime's default keeps its intra-op threads spinning for a while after every ``run``. Between
    two runs crosspose's own threads read, decode and resize the next frames (and decode the maps); on
    a machine with few cores the spinning threads take the cores from them. Measured on a 2-core AMD
    EPYC, an int8 ResNet-50 at 256 px over a folder of 64 images, batch 8, four alternating pairs: 30.5-34.4
    img/s spinning, 36.4-39.0 not; the network alone, nothing in between: 38-41 either way.

    ``threads``: intra-op threads (default: ONNX Runtime's, one per physical core).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=providers or ["CPUExecutionProvider"])


class OnnxBackend:
    """ONNX Runtime inference of a model written by ``crosspose export --format onnx``."""

    name = "onnxruntime"

    def __init__(self, path: str | Path, device: str | torch.device | None = None, precision: str = "auto",
                 compile: str = "auto") -> None:
        import onnxruntime as ort

        self.path = Path(path)
        if compile == "on":
            raise ConfigError(f"--compile on: {path} is an .onnx model, which ONNX Runtime runs as it is; "
                              "compiling applies to .ckpt models")
        hardware.check_compile_setting(compile)
        self.compiled = hardware.CompileChoice(False, "an .onnx model runs in ONNX Runtime")
        if not self.path.is_file():
            raise CheckpointError(f"{path}: model file not found")
        self.device = resolve_device(device)
        providers = ["CPUExecutionProvider"]
        if self.device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self.session = onnx_session(self.path, providers)
        except Exception as exc:  # onnxruntime raises its own exception types for foreign files
            raise CheckpointError(f"{path}: cannot load as an ONNX model ({type(exc).__name__}: "
                                  f"{str(exc).splitlines()[0][:200]})") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        if ONNX_CARD_KEY not in meta:
            raise CheckpointError(f"{path}: an ONNX model without a crosspose model card "
                                  "(export it with `crosspose export --format onnx`)")
        self.card = ModelCard.from_json(meta[ONNX_CARD_KEY], str(path))
        self.precision = choose_precision(precision, self.device, meta.get(ONNX_PRECISION_KEY, "fp32"))
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        images = frames.permute(0, 3, 1, 2).float().contiguous().numpy()
        heatmap, locref = self.session.run(["heatmap", "locref"], {self.input_name: images})
        return torch.from_numpy(heatmap), torch.from_numpy(locref)


def open_backend(path: str | Path, device: str | torch.device | None = None, precision: str = "auto",
                 compile: str = "auto") -> Backend:
    """A ``.onnx`` file runs in ONNX Runtime, anything else is read as a crosspose checkpoint.

    ``precision``: see :func:`choose_precision`; the choice and its reason are kept as
    ``backend.precision``. ``compile``: ``auto`` | ``on`` | ``off`` (:class:`TorchBackend`); the choice
    is kept as ``backend.compiled``.
    """
    backend: Backend
    if Path(path).suffix.lower() == ".onnx":
        backend = OnnxBackend(path, device, precision, compile)
    else:
        backend = TorchBackend(path, device, precision, compile)
    # not logged here: `analyze` prints the choice once its inputs are checked (an error stays one line);
    # API users read `backend.precision` (also in the predictor's description)
    return backend
