"""The crosspose phases of ``crosspose benchmark``, each run in a child process of its own.

``python -m crosspose.benchmark.phases train|infer SPEC_JSON`` prints one JSON object (its last
stdout line) with raw timings and their summaries; the parent samples the child's memory.
"""

from __future__ import annotations

import contextlib
import gc
import json
import sys
import time
from collections.abc import Iterator
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader

from crosspose.benchmark.run import summarise_passes, summarise_steps


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


def _to(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def _cycle(loader: DataLoader) -> Iterator[dict[str, torch.Tensor]]:
    epoch = 0
    while True:
        if hasattr(loader.sampler, "set_epoch"):
            loader.sampler.set_epoch(epoch)
        yield from loader
        epoch += 1


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
    """Data loading alone, model step alone, whole Lightning step."""
    from crosspose.data.datamodule import PoseDataModule

    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    device = torch.device(spec["device"])
    warmup, repeats, steps = spec["warmup"], spec["repeats"], spec["steps"]
    n = warmup + repeats * steps + 1  # + 1: the last start only closes the step before it
    dm = PoseDataModule(train_file=spec["coco"], input_size=spec["size"], padding=1.0, batch_size=spec["batch"],
                        num_workers=spec["workers"], seed=0)
    dm.setup("fit")
    result: dict[str, Any] = {"threads": torch.get_num_threads()}

    # 1. data loading alone: how fast the loader (workers, decode, warp, photometrics) can feed
    batches = _cycle(dm.train_dataloader())
    starts, sizes = [], []
    for _, batch in zip(range(n), batches, strict=False):
        starts.append(time.perf_counter())
        sizes.append(int(batch["image"].shape[0]))
    result["loading"] = summarise_steps(starts, sizes, warmup, repeats)
    preloaded = [_to(b, device) for _, b in zip(range(2), batches, strict=False)]
    # stop these workers now: Lightning starts its own, and both sets alive would double the peak memory
    batches.close()
    gc.collect()

    module = _module(spec, device)
    result["infer_flops_per_image"] = count_flops(module, spec, device, train=False)
    result["train_flops_per_image"] = count_flops(module, spec, device, train=True)

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

    # 3. whole step: what `crosspose fit` runs (Lightning loop, loader, host->device, logging)
    timer = _StepTimer(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    trainer = L.Trainer(
        accelerator="gpu" if device.type == "cuda" else "cpu", devices=1, max_steps=n, max_epochs=-1,
        precision="bf16-mixed" if spec["precision"] == "bf16" else "32-true", logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0, limit_val_batches=0, callbacks=[timer],
    )
    trainer.fit(module, datamodule=dm)
    result["whole_step"] = summarise_steps(timer.starts, timer.sizes, warmup, repeats)
    result["cuda_peak_bytes"] = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    return result


class _StepTimer(L.Callback):
    """Lightning callback: the start time and batch size of every training step."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.starts, self.sizes = device, [], []

    def on_train_batch_start(self, trainer: Any, module: Any, batch: dict[str, torch.Tensor], idx: int) -> None:
        _sync(self.device)
        self.starts.append(time.perf_counter())
        self.sizes.append(int(batch["image"].shape[0]))


def infer_phase(spec: dict[str, Any]) -> dict[str, Any]:
    """Inference over the image folder: the whole pipeline, and the model alone on a loaded batch."""
    from crosspose.data.datamodule import PoseDataModule

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
    return {
        "threads": torch.get_num_threads(), "images": images,
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


def main(argv: list[str]) -> int:
    """Run one measurement phase in this child process and print its JSON result last."""
    phase, spec = argv[0], json.loads(argv[1])
    result = {"train": train_phase, "infer": infer_phase}[phase](spec)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
