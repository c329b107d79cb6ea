"""This machine's multiply-accumulate ceilings per precision, and how near each benchmark row runs to them.

A convolution network cannot run faster than the machine multiply-accumulates in its precision, so
the rate of the best of two large kernels per precision -- a matrix product and a ResNet-sized 3x3
convolution -- is the ceiling a row can be held against: fp32 and bf16 through PyTorch (oneDNN / MKL,
the kernels the training and inference rows use), int8 through ONNX Runtime (``MatMulInteger``,
``QLinearConv``: uint8 x int8, the kernels of the int8 row). The ratio of two ceilings bounds what a
precision can gain over another; a row's share of its ceiling says how much is left to gain in software.

Example (``python -m crosspose.benchmark.phases matmul '{"threads": 2}'`` runs the same)::

    >>> rates = matmul_rates(threads=2, size=256, repeats=2)  # a few seconds (the convolution is full size)
    >>> sorted(rates["gmac_per_s"])
    ['bf16', 'fp32', 'int8']
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

# ONNX IR version of the one-node int8 model: old enough for every ONNX Runtime crosspose supports
_IR_VERSION = 8


def _best_seconds(run: Callable[[], Any], repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        run()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


# the convolution timed beside the matrix product: a 3x3, 256 -> 256 channel layer of ResNet-50's
# second stage on 8 images of 64 x 64 (a 256 px input), the shape most of the network's time is spent in
CONV_SHAPE = (8, 256, 64, 64)


def _conv_macs() -> int:
    n, c, h, w = CONV_SHAPE
    return n * h * w * c * c * 9


def _torch_rates(dtype: torch.dtype, size: int, repeats: int) -> tuple[float, float]:
    """(matrix product, convolution) GMAC/s in PyTorch: oneDNN's convolutions can beat its GEMM."""
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=generator).to(dtype)
    b = torch.randn(size, size, generator=generator).to(dtype)
    gemm = size**3 / _best_seconds(lambda: torch.mm(a, b), repeats) / 1e9
    n, c, h, w = CONV_SHAPE
    x = torch.randn(n, c, h, w, generator=generator).to(dtype).contiguous(memory_format=torch.channels_last)
    k = torch.randn(c, c, 3, 3, generator=generator).to(dtype).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        conv = _conv_macs() / _best_seconds(lambda: torch.nn.functional.conv2d(x, k, padding=1), repeats) / 1e9
    return gemm, conv


def _int8_models(size: int) -> tuple[Any, Any]:
    """One-node ONNX models: ``MatMulInteger`` (uint8 x int8 -> int32) and ``QLinearConv`` (3x3, uint8 x int8)."""
    from onnx import TensorProto, helper, numpy_helper

    def model(nodes: list[Any], inputs: list[Any], output: Any, initializers: list[Any]) -> Any:
        graph = helper.make_graph(nodes, "int8_kernel", inputs, [output], initializer=initializers)
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=_IR_VERSION)

    rng = np.random.default_rng(0)
    gemm = model([helper.make_node("MatMulInteger", ["a", "b"], ["y"])],
                 [helper.make_tensor_value_info("a", TensorProto.UINT8, [size, size])],
                 helper.make_tensor_value_info("y", TensorProto.INT32, [size, size]),
                 [numpy_helper.from_array(rng.integers(-128, 128, (size, size), dtype=np.int8), "b")])
    n, c, h, w = CONV_SHAPE
    scalars = [numpy_helper.from_array(np.array(v, dtype=t), name) for name, v, t in
               (("xs", 0.02, np.float32), ("xz", 128, np.uint8), ("ws", 0.01, np.float32), ("wz", 0, np.int8),
                ("ys", 0.5, np.float32), ("yz", 128, np.uint8))]
    weights = numpy_helper.from_array(rng.integers(-128, 128, (c, c, 3, 3), dtype=np.int8), "w")
    conv = model([helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz"], ["y"],
                                   pads=[1, 1, 1, 1])],
                 [helper.make_tensor_value_info("x", TensorProto.UINT8, [n, c, h, w])],
                 helper.make_tensor_value_info("y", TensorProto.UINT8, [n, c, h, w]), [*scalars, weights])
    return gemm, conv


def _int8_rates(size: int, repeats: int, threads: int) -> tuple[float, float]:
    """(matrix product, convolution) GMAC/s in ONNX Runtime, the engine of crosspose's int8 row."""
    import onnx

    from crosspose.inference.model import onnx_session

    gemm_model, conv_model = _int8_models(size)
    rng = np.random.default_rng(1)
    rates = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, model, feeds, macs in (
                ("gemm", gemm_model, {"a": rng.integers(0, 256, (size, size), dtype=np.uint8)}, size**3),
                ("conv", conv_model, {"x": rng.integers(0, 256, CONV_SHAPE, dtype=np.uint8)}, _conv_macs())):
            path = Path(tmp) / f"{name}.onnx"
            onnx.save(model, str(path))
            session = onnx_session(path, threads=threads)
            rates.append(macs / _best_seconds(partial(session.run, None, feeds), repeats) / 1e9)
    return rates[0], rates[1]


def matmul_rates(threads: int, size: int = 2048, repeats: int = 8,
                 support: dict[str, str | None] | None = None) -> dict[str, Any]:
    """This machine's ceiling per precision: multiply-accumulates per second (GMAC/s, best of ``repeats``).

    Each precision times two kernels, a ``size`` x ``size`` matrix product and a 3x3 convolution
    (:data:`CONV_SHAPE`), and keeps the faster as its ceiling. Returns ``{"gmac_per_s": {precision:
    ceiling or None}, "kernels": {precision: {"matmul", "conv"}}, "unsupported": {precision: reason},
    "size", "threads"}``. A precision ``support`` names a reason for (see
    :func:`crosspose.core.hardware.precision_support`) is not timed: emulated bf16 or int8 would
    measure the emulation, not a ceiling.
    """
    support = support or {}
    torch.set_num_threads(threads)
    timers: dict[str, Callable[[], tuple[float, float]]] = {
        "fp32": lambda: _torch_rates(torch.float32, size, repeats),
        "bf16": lambda: _torch_rates(torch.bfloat16, size, repeats),
        "int8": lambda: _int8_rates(size, repeats, threads),
    }
    rates: dict[str, float | None] = {}
    kernels: dict[str, dict[str, float]] = {}
    unsupported: dict[str, str] = {}
    for precision, timer in timers.items():
        reason = support.get(precision)
        if reason:
            rates[precision], unsupported[precision] = None, reason
            continue
        gemm, conv = timer()
        kernels[precision] = {"matmul": gemm, "conv": conv}
        rates[precision] = max(gemm, conv)
    return {"gmac_per_s": rates, "kernels": kernels, "unsupported": unsupported, "size": size, "threads": threads}


def matmul_phase(spec: dict[str, Any]) -> dict[str, Any]:
    """The benchmark's ``matmul`` phase: :func:`matmul_rates` with the spec's threads and support."""
    return matmul_rates(spec.get("threads") or torch.get_num_threads(), size=spec.get("matmul_size", 2048),
                        support=spec.get("precision_support"))


def ceiling_rows(rows: list[tuple[str, str, float | None]], gmac_per_image: float,
                 rates: dict[str, float | None]) -> list[dict[str, Any]]:
    """Each (name, precision, images/s) row's GMAC/s and its share of that precision's matmul rate."""
    out = []
    for name, precision, images_per_s in rows:
        achieved = images_per_s * gmac_per_image if images_per_s else None
        ceiling = rates.get(precision)
        out.append({"name": name, "precision": precision, "images_per_s": images_per_s,
                    "gmac_per_s": achieved, "ceiling_gmac_per_s": ceiling,
                    "share": achieved / ceiling if achieved and ceiling else None})
    return out


def ceiling_lines(rows: list[dict[str, Any]], matmul: dict[str, Any], gmac_per_image: float,
                  reference: str | None = None, target: float | None = None) -> list[str]:
    """The report's table of :func:`ceiling_rows`.

    With ``reference`` (a row name) and ``target`` (a speed-up over it), it adds the share of its
    ceiling each reduced precision would need to reach that target.
    """
    rates = matmul["gmac_per_s"]
    timed = ", ".join(f"{p} {r:,.0f}" for p, r in rates.items() if r)
    n, c, h, w = CONV_SHAPE
    lines = ["### How near each row runs to this machine's multiply-accumulate rate (inference)", "",
             f"Ceiling per precision: the faster of a {matmul['size']} x {matmul['size']} matrix product and a 3x3 "
             f"convolution {c} -> {c} channels on {n} x {h} x {w} (ResNet-50's second stage), {matmul['threads']} "
             f"threads, best of its repeats: {timed} GMAC/s (fp32, bf16: PyTorch; int8: ONNX Runtime "
             "`MatMulInteger` / `QLinearConv`, uint8 x int8)"
             + "".join(f"; {p}: {why}" for p, why in (matmul.get("unsupported") or {}).items())
             + f". Every row runs {gmac_per_image:.2f} GMAC per image (crosspose's forward count; the same "
             "architecture for DeepLabCut).", "",
             "| row | precision | images/s | GMAC/s | share of its precision's ceiling |", "|---|---|---|---|---|"]
    for row in rows:
        share = f"{100 * row['share']:.0f} %" if row["share"] is not None else "n/a"
        achieved = f"{row['gmac_per_s']:,.0f}" if row["gmac_per_s"] else "n/a"
        speed = f"{row['images_per_s']:.2f}" if row["images_per_s"] else "n/a"
        lines.append(f"| {row['name']} | {row['precision']} | {speed} | {achieved} | {share} |")
    base = next((r for r in rows if r["name"] == reference and r["gmac_per_s"]), None)
    if base and target:
        needs = []
        for precision in ("bf16", "int8"):
            ceiling = rates.get(precision)
            if ceiling:
                needs.append(f"{precision} would have to run at {100 * target * base['gmac_per_s'] / ceiling:.0f} % "
                             f"of its ceiling (at 100 % it would be {ceiling / base['gmac_per_s']:.1f}x)")
        if needs:
            lines += ["", f"For {target:g}x over {reference}: " + "; ".join(needs) + "."]
    return lines
