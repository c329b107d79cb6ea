"""The crosspose phases of ``crosspose benchmark``, each run in a child process of its own.

``python -m crosspose.benchmark.phases train|infer SPEC_JSON`` prints one JSON object (its last
stdout line) with raw timings and their summaries; the parent samples the child's memory.

Lightning is imported inside the functions that use it, never at the top: each loader worker starts
by importing the parent's main module (``multiprocessing`` does so for every start method but fork),
and this module is that main module. Imported at the top, Lightning would live in every worker too
(~240 MiB private each, measured), which ``crosspose fit`` does not pay and the memory rows would
wrongly charge.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import json
import sys
import time
from collections.abc import Iterator
from typing import Any, Literal

import torch
from torch.utils.data import DataLoader

from crosspose.benchmark.measure import summarise_passes, summarise_steps


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _autocast(spec: dict[str, Any], device: torch.device) -> contextlib.AbstractContextManager:
    if spec["precision"] == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _module(spec: dict[str, Any], device: torch.device):  # noqa: ANN202 -- lazy import keeps --help fast
    from crosspose.training.module import PoseEstimationModule

    torch.manual_seed(0)
    module = PoseEstimationModule(num_keypoints=16, backbone=spec["backbone"], pretrained=False,
                                  channels_last=spec["channels_last"], compile=spec["compile"])
    module.to(device)
    module.prepare_network()
    return module


def _lightning_precision(spec: dict[str, Any]) -> Literal["bf16-mixed", "32-true"]:
    """The Lightning precision a phase's training runs in."""
    return "bf16-mixed" if spec["precision"] == "bf16" else "32-true"


def _to(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def _cycle(loader: DataLoader) -> Iterator[dict[str, torch.Tensor]]:
    epoch = 0
    while True:
        if hasattr(loader.sampler, "set_epoch"):
            loader.sampler.set_epoch(epoch)
        yield from loader
        epoch += 1


def _status_bytes(field: str) -> int | None:
    """A ``VmRSS``/``VmHWM`` line of /proc/self/status in bytes (None off Linux)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return None


def _reset_peak_rss() -> None:
    """Restart this process's peak-RSS counter (VmHWM), so the next peak belongs to one stage."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
    except OSError:
        pass


def _child_pids() -> list[int]:
    """This process's live children (the data-loader workers while a loader runs)."""
    import os

    pids: list[int] = []
    try:
        for task in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{task}/children", encoding="ascii") as fh:
                pids.extend(int(c) for c in fh.read().split())
    except OSError:
        pass
    return pids


class _MainMemory:
    """Main-process resident memory after each stage, and the peak within it: where the RSS goes."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def mark(self, stage: str, peak: bool = False) -> None:
        self.rows.append({"stage": stage, "rss_bytes": _status_bytes("VmRSS"),
                          "peak_bytes": _status_bytes("VmHWM") if peak else None})
        _reset_peak_rss()


def count_flops(module: Any, spec: dict[str, Any], device: torch.device, train: bool) -> float:
    """FLOPs of one image through the network: forward only, or forward + loss + backward."""
    from torch.utils.flop_counter import FlopCounterMode

    size = spec["size"]
    image = torch.randint(0, 256, (1, 3, size, size), dtype=torch.uint8, device=device)
    batch = {"keypoints": torch.full((1, 16, 2), size / 2.0, device=device),
             "valid": torch.ones((1, 16), dtype=torch.bool, device=device)}
    counter = FlopCounterMode(display=False)
    module.train(train)
    with counter:
        if train:
            module._losses(batch, module(image))["loss"].backward()
            module.zero_grad(set_to_none=True)
        else:
            with torch.no_grad():
                module(image)
    return float(counter.get_total_flops())


def bf16_numerics(module: Any, batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, float]:
    """How far a bf16-autocast step is from fp32 on one batch: loss, score maps, gradient direction."""
    def run(bf16: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        module.zero_grad(set_to_none=True)
        ctx = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        with ctx:
            out = module(batch["image"])
            loss = module._losses(batch, out)["loss"]
        loss.backward()
        grad = torch.cat([p.grad.flatten().float() for p in module.parameters() if p.grad is not None])
        return loss.detach().float(), out["heatmap"].detach().float(), grad

    module.eval()  # same normalisation statistics for both passes
    loss32, maps32, grad32 = run(False)
    loss16, maps16, grad16 = run(True)
    module.zero_grad(set_to_none=True)
    return {
        "loss_rel_diff": float((loss16 - loss32).abs() / loss32.abs().clamp(min=1e-12)),
        "heatmap_rel_rmse": float((maps16 - maps32).square().mean().sqrt() / maps32.square().mean().sqrt()),
        "grad_cosine": min(1.0, float(torch.nn.functional.cosine_similarity(grad16, grad32, dim=0))),
    }


def train_phase(spec: dict[str, Any]) -> dict[str, Any]:
    """Data loading alone, model step alone, whole Lightning step.

    ``spec["stages"]``: ``all`` (default), ``whole`` (the Lightning step alone: its memory is what
    ``crosspose fit`` takes) or ``apart`` (everything but the Lightning step, for a run that times
    that step in a process of its own).
    """
    from crosspose.data.datamodule import PoseDataModule

    memory = _MainMemory()
    memory.mark("imports (torch, Lightning, timm, crosspose)")
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    device = torch.device(spec["device"])
    warmup, repeats, steps = spec["warmup"], spec["repeats"], spec["steps"]
    n = warmup + repeats * steps + 1  # + 1: the last start only closes the step before it
    dm = PoseDataModule(train_file=spec["coco"], input_size=spec["size"], padding=1.0, batch_size=spec["batch"],
                        num_workers=spec["workers"], seed=0)
    dm.setup("fit")
    memory.mark("annotations (data set up)")
    result: dict[str, Any] = {"threads": torch.get_num_threads(), "main_memory": memory.rows, "worker_pids": {}}

    if spec.get("stages", "all") == "whole":
        return _whole_step_only(spec, dm, device, n, result, memory)
    # 1. data loading alone: how fast the loader (workers, decode, warp, photometrics) can feed
    batches: Any = _cycle(dm.train_dataloader())
    starts: list[float] = []
    sizes: list[int] = []
    for batch in itertools.islice(batches, n):
        starts.append(time.perf_counter())
        sizes.append(int(batch["image"].shape[0]))
    result["loading"] = summarise_steps(starts, sizes, warmup, repeats)
    result["worker_pids"]["loading alone"] = _child_pids()
    preloaded = [_to(b, device) for b in itertools.islice(batches, 2)]
    # stop these workers now: Lightning starts its own, and both sets alive would double the peak memory
    batches.close()
    gc.collect()
    # CPU time per image of the data pipeline: the cores a faster device needs to be fed
    result["loader_cpu"] = steady_loader_cpu(dm.train_dataloader(), skip=max(2, warmup),
                                             batches=max(4, repeats * steps))
    result["loader_cpu_s_per_image"] = result["loader_cpu"]["cpu_s_per_image"]

    memory.mark("loading alone (loader stopped)", peak=True)
    module = _module(spec, device)
    memory.mark("model built")
    result["infer_flops_per_image"] = count_flops(module, spec, device, train=False)
    result["train_flops_per_image"] = count_flops(module, spec, device, train=True)
    memory.mark("FLOP count (one image)", peak=True)
    # the norm layers as a fit runs them (on the CPU: BatchNorm through the fused kernel too)
    result["norm_kernel"] = module.use_training_kernels(_lightning_precision(spec))

    if spec["precision"] == "bf16":
        result["bf16_numerics"] = bf16_numerics(module, preloaded[0], device)

    # 2. model step alone: forward, on-device targets + loss, backward, optimizer, batches in memory
    module.train()
    optimizer = module.configure_optimizers()["optimizer"]
    starts = []
    for i in range(n):
        batch = preloaded[i % len(preloaded)]
        _sync(device)
        starts.append(time.perf_counter())
        with _autocast(spec, device):
            loss = module._losses(batch, module(batch["image"]))["loss"]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    _sync(device)
    starts.append(time.perf_counter())
    result["model_step"] = summarise_steps(starts, [spec["batch"]] * (n + 1), warmup, repeats)
    del optimizer, preloaded
    gc.collect()
    memory.mark("model step alone (weights, gradients, optimizer, activations)", peak=True)
    if spec.get("stages") == "apart":
        return result

    # 3. whole step: what `crosspose fit` runs (Lightning loop, loader, host->device, logging)
    _fit_whole_step(spec, dm, module, device, n, result, memory)
    return result


def _whole_step_only(spec: dict[str, Any], dm: Any, device: torch.device, n: int, result: dict[str, Any],
                     memory: _MainMemory) -> dict[str, Any]:
    """The Lightning step alone (the rows that only compare throughput: other norm, other precision)."""
    module = _module(spec, device)
    memory.mark("model built")
    result["norm_kernel"] = module.use_training_kernels(_lightning_precision(spec))
    _fit_whole_step(spec, dm, module, device, n, result, memory)
    return result


def _fit_whole_step(spec: dict[str, Any], dm: Any, module: Any, device: torch.device, n: int,
                    result: dict[str, Any], memory: _MainMemory) -> None:
    import lightning as L

    warmup, repeats = spec["warmup"], spec["repeats"]
    timer = _step_timer(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    trainer = L.Trainer(
        accelerator="gpu" if device.type == "cuda" else "cpu", devices=1, max_steps=n, max_epochs=-1,
        precision=_lightning_precision(spec), logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0, limit_val_batches=0, callbacks=[timer],  # type: ignore[list-item]
    )
    trainer.fit(module, datamodule=dm)
    memory.mark("Lightning fit (main process)", peak=True)
    result["worker_pids"]["Lightning fit"] = timer.workers
    result["whole_step"] = summarise_steps(timer.starts, timer.sizes, warmup, repeats)
    result["cuda_peak_bytes"] = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None


def steady_loader_cpu(loader: DataLoader, skip: int, batches: int) -> dict[str, Any]:
    """CPU seconds per training image of the data pipeline in steady state.

    Summing the loader workers' CPU counters (as this benchmark once did) also counts their start-up
    (imports, forkserver preload) and the batches prefetched before the window opens, which makes a
    GPU look hungrier than it is. Here one worker's work runs in this process with a worker's
    settings (one torch and one OpenCV thread): the loader's own dataset, sampler and collate, the
    first ``skip`` batches (lazy imports, cold caches) dropped, then ``batches`` batches timed with
    the process CPU clock. No start-up, inter-process copying aside, is in the figure.
    """
    import cv2

    def indices() -> Iterator[list[int]]:
        while True:  # the sampler's epochs, end to end, as persistent workers see them
            yield from loader.batch_sampler  # type: ignore[misc]

    threads, cv_threads = torch.get_num_threads(), cv2.getNumThreads()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    images, start = 0, 0.0
    try:
        for i, batch in enumerate(itertools.islice(indices(), skip + batches)):
            if i == skip:
                start = time.process_time()
            loader.collate_fn([loader.dataset[j] for j in batch])  # type: ignore[misc]
            images += len(batch) if i >= skip else 0
        cpu = time.process_time() - start
    finally:
        torch.set_num_threads(threads)
        cv2.setNumThreads(cv_threads)
    return {"cpu_s_per_image": cpu / images if images else None, "images": images, "skipped_batches": skip}


class _StepTimes:
    """The start time and batch size of every training step (made a Lightning callback by _step_timer)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.starts: list[float] = []
        self.sizes: list[int] = []
        self.workers: list[int] = []

    def on_train_batch_start(self, trainer: Any, module: Any, batch: dict[str, torch.Tensor], idx: int) -> None:
        if not self.workers:
            self.workers = _child_pids()
        _sync(self.device)
        self.starts.append(time.perf_counter())
        self.sizes.append(int(batch["image"].shape[0]))


def _step_timer(device: torch.device) -> _StepTimes:
    import lightning as L

    class StepTimer(_StepTimes, L.Callback):
        pass

    return StepTimer(device)


def infer_phase(spec: dict[str, Any]) -> dict[str, Any]:
    """Inference over the image folder: the whole pipeline, and the model alone on a loaded batch."""
    from crosspose.core.allocator import keep_freed_memory
    from crosspose.data.datamodule import PoseDataModule

    allocator = keep_freed_memory()  # as `crosspose predict` does

    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    device = torch.device(spec["device"])
    dm = PoseDataModule(predict_file=spec["folder"], input_size=spec["size"], batch_size=spec["batch"],
                        num_workers=spec["workers"], seed=0)
    dm.setup("predict")
    loader = dm.predict_dataloader()
    module = _module(spec, device)
    module.eval()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    images = len(dm.datasets["predict"])
    passes = []
    with torch.inference_mode(), _autocast(spec, device):
        for _ in range(1 + spec["repeats"]):
            t0 = time.perf_counter()
            for i, batch in enumerate(loader):
                module.predict_step(_to(batch, device), i)["keypoints"].cpu()
            _sync(device)
            passes.append(time.perf_counter() - t0)
        batch = _to(next(iter(loader)), device)
        # predict_step runs the BatchNorm-folded inference copy, as `crosspose predict` does
        model = _time_model(module, batch, spec["repeats"], device)
    bs = int(batch["image"].shape[0])
    from crosspose.models.inference import did_compile

    return {
        "threads": torch.get_num_threads(), "images": images, "allocator": allocator.describe(),
        # as `crosspose predict` chooses (model.predict_compile: auto): whether it did compile (a failed
        # compile runs eagerly); the first pass holds the compile if so
        "compiled": did_compile(module._inference_net[0]), "first_pass_s": passes[0],
        "whole": summarise_passes(passes, images), "model": summarise_passes(model, bs),
        "cuda_peak_bytes": torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None,
    }


def _time_model(module: Any, batch: dict[str, torch.Tensor], repeats: int, device: torch.device) -> list[float]:
    seconds = []
    for _ in range(1 + repeats):
        t0 = time.perf_counter()
        module.predict_step(batch, 0)["keypoints"].cpu()
        _sync(device)
        seconds.append(time.perf_counter() - t0)
    return seconds


def _ort_keypoints(module: Any, session: Any, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    from crosspose.training.module import to_original

    # float input, as `crosspose export` writes it (the cast is part of what a user's analysis pays)
    heatmap, locref = session.run(None, {session.get_inputs()[0].name: batch["image"].float().numpy()})
    maps = torch.from_numpy(heatmap)
    decoded = module.codec.decode(maps.float(), torch.from_numpy(locref).float())
    return to_original(decoded, batch["to_original"]), maps


def int8_phase(spec: dict[str, Any]) -> dict[str, Any]:
    """ONNX Runtime fp32 and int8 (static QDQ, calibrated on the folder) over the image folder.

    The two ONNX files go to ``spec["onnx_dir"]`` (a temporary folder without it); with
    ``spec["reuse_onnx"]`` the files already there are timed again, not exported and calibrated again
    (the benchmark's later rounds: same files, ~40 s less per round on a 2-core CPU).
    """
    import tempfile
    from pathlib import Path

    from crosspose.data.datamodule import PoseDataModule
    from crosspose.inference.export import export_onnx
    from crosspose.inference.model import onnx_session
    from crosspose.inference.quantize import quantize_onnx
    from crosspose.training.card import save_module

    threads = spec.get("threads") or torch.get_num_threads()
    device = torch.device("cpu")
    module = _module(spec, device).eval()
    dm = PoseDataModule(predict_file=spec["folder"], input_size=spec["size"], batch_size=spec["batch"],
                        num_workers=spec["workers"], seed=0)
    dm.setup("predict")
    loader = dm.predict_dataloader()
    images = len(dm.datasets["predict"])
    out: dict[str, Any] = {"threads": threads, "images": images}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(spec.get("onnx_dir") or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        reuse = spec.get("reuse_onnx") and all((folder / f"{n}.onnx").is_file() for n in ("fp32", "int8"))
        if not reuse:  # the files `crosspose export --format onnx` and `crosspose quantize` write
            size = (spec["size"], spec["size"])
            fp32 = export_onnx(save_module(module, folder / "net.ckpt", input_size=size), folder / "fp32.onnx")
            t0 = time.perf_counter()
            out["quantize"] = quantize_onnx(fp32, spec["folder"], folder / "int8.onnx", input_size=size,
                                            calibration_images=spec.get("calibration_images", 32))
            out["quantize_seconds"] = time.perf_counter() - t0
        maps: dict[str, list[torch.Tensor]] = {}
        for name in ("fp32", "int8"):
            session = onnx_session(folder / f"{name}.onnx", threads=threads)
            passes = []
            for _ in range(1 + spec["repeats"]):
                t0 = time.perf_counter()
                maps[name] = [_ort_keypoints(module, session, batch)[1] for batch in loader]
                passes.append(time.perf_counter() - t0)
            out[f"ort_{name}"] = {"whole": summarise_passes(passes, images)}
            del session
    a, b = torch.cat(maps["int8"]), torch.cat(maps["fp32"])
    out["int8_heatmap_rel_rmse"] = float((a - b).square().mean().sqrt() / b.square().mean().sqrt())
    return out


def accuracy_phase(spec: dict[str, Any]) -> dict[str, Any]:
    """fp32, bf16 and int8 keypoints of a trained checkpoint on a test file: distance to fp32 and PCKh."""
    import tempfile
    from pathlib import Path

    import cv2

    from crosspose.data.datamodule import PoseDataModule
    from crosspose.evaluation.score import evaluate
    from crosspose.inference.export import export_onnx
    from crosspose.inference.model import onnx_session
    from crosspose.inference.quantize import quantize_onnx
    from crosspose.training.module import PoseEstimationModule, prediction_record

    torch.set_num_threads(spec.get("threads") or torch.get_num_threads())
    module = PoseEstimationModule.load_from_checkpoint(spec["checkpoint"], map_location="cpu", weights_only=True)
    module.eval()
    size = spec["accuracy_size"]
    dm = PoseDataModule(test_file=spec["test_file"], input_size=size, batch_size=8, num_workers=0, seed=0)
    dm.setup("test")
    dataset, gt = dm.datasets["test"], dm.coco("test")
    batches = list(dm.test_dataloader())
    keypoints: dict[str, torch.Tensor] = {}
    with torch.inference_mode():
        keypoints["fp32"] = torch.cat([module.predict_step(b, 0)["keypoints"] for b in batches])
        with torch.autocast("cpu", dtype=torch.bfloat16):
            keypoints["bf16"] = torch.cat([module.predict_step(b, 0)["keypoints"] for b in batches])
    with tempfile.TemporaryDirectory() as tmp:
        calib = Path(tmp) / "calibration"
        calib.mkdir()
        # calibration on the instance crops the network sees (64 at most), written as the user's frames
        crops = torch.cat([b["image"] for b in batches])[:64].permute(0, 2, 3, 1).numpy()
        for i, crop in enumerate(crops):
            cv2.imwrite(str(calib / f"crop{i:03d}.png"), crop[:, :, ::-1])
        fp32 = export_onnx(spec["checkpoint"], Path(tmp) / "fp32.onnx")
        quantize_onnx(fp32, calib, Path(tmp) / "int8.onnx", input_size=(size, size))
        session = onnx_session(Path(tmp) / "int8.onnx", threads=torch.get_num_threads())
        keypoints["int8"] = torch.cat([_ort_keypoints(module, session, b)[0] for b in batches])
    indices = torch.cat([b["index"] for b in batches]).tolist()
    names = module.keypoint_names if gt.num_keypoints != module.hparams.num_keypoints else None
    out: dict[str, Any] = {"instances": len(indices), "checkpoint": spec["checkpoint"], "test_file": spec["test_file"],
                           "input_size": size}
    reference = keypoints["fp32"]
    detected = reference[..., 2] > 0.5
    for name, kp in keypoints.items():
        records = [prediction_record(dataset, i, k) for i, k in zip(indices, kp, strict=True)]
        metrics = evaluate(gt, records, pred_keypoint_names=names, oks=False)
        dist = (kp[..., :2] - reference[..., :2]).norm(dim=-1)
        out[name] = {"pckh": metrics["pckh"]["mean"],
                     "px_mean": float(dist.mean()), "px_mean_detected": float(dist[detected].mean())
                     if detected.any() else None, "px_median": float(dist.median())}
    return out


def main(argv: list[str]) -> int:
    """Run one measurement phase in this child process and print its JSON result last."""
    phase, spec = argv[0], json.loads(argv[1])
    from crosspose.benchmark.matmul import matmul_phase

    result = {"train": train_phase, "infer": infer_phase, "int8": int8_phase, "accuracy": accuracy_phase,
              "matmul": matmul_phase}[phase](spec)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
