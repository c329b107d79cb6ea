"""BatchNorm(+ReLU) through the fused norm kernel while training: against PyTorch's, and only during a fit."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import timm
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

from crosspose.data.datamodule import PoseDataModule
from crosspose.data.transforms import Augmentation
from crosspose.models import batch_norm as bn
from crosspose.models.backbone import ResNetBackbone
from crosspose.models.batch_norm import BatchNormAct, fuse_batch_norm, unfuse_batch_norm
from crosspose.testing import requires_compiler, write_tiny_coco
from crosspose.training.module import PoseEstimationModule

needs_compiler = requires_compiler()


def _pair(channels: int, relu: bool, **kwargs: Any) -> tuple[nn.BatchNorm2d, nn.BatchNorm2d]:
    """(fused, reference): the same random parameters and running statistics."""
    torch.manual_seed(0)
    ref = nn.BatchNorm2d(channels, **kwargs)
    if ref.affine:
        with torch.no_grad():
            ref.weight.uniform_(0.5, 1.5)
            ref.bias.normal_()
    if ref.track_running_stats:
        ref.running_mean.normal_()
        ref.running_var.uniform_(0.5, 2.0)
    fused = copy.deepcopy(ref)
    fused.__class__ = BatchNormAct
    fused.relu = relu
    return fused, ref


@needs_compiler
@pytest.mark.parametrize("relu", [True, False])
@pytest.mark.parametrize(("shape", "kwargs"), [
    ((4, 64, 16, 16), {}),
    ((1, 32, 7, 5), {}),                              # one sample: statistics over its pixels
    ((6, 16, 1, 1), {}),                              # one pixel: statistics over the batch
    ((3, 48, 9, 11), {"momentum": None}),             # cumulative average
    ((2, 24, 8, 8), {"affine": False}),               # no weight and bias
    ((2, 24, 8, 8), {"track_running_stats": False}),  # batch statistics, nothing to update
])
def test_training_matches_pytorch(shape: tuple[int, ...], kwargs: dict[str, Any], relu: bool,
                                  fused_calls: list[tuple[int, ...]]) -> None:
    fused, ref = _pair(shape[1], relu, **kwargs)
    x0 = (torch.randn(shape) * 3 + 2).contiguous(memory_format=torch.channels_last)
    dy = torch.randn(shape).contiguous(memory_format=torch.channels_last)
    results = []
    for norm, act in ((fused, lambda y: y), (ref, (lambda y: F.relu(y)) if relu else (lambda y: y))):
        outputs = []
        for step in range(2):  # the running statistics update twice
            x = (x0 + step).requires_grad_(True)
            y = act(norm(x))
            y.backward(dy)
            outputs.append((y.detach(), x.grad, [p.grad.clone() for p in norm.parameters()]))
            norm.zero_grad(set_to_none=True)
        results.append((outputs, {k: v.clone() for k, v in norm.state_dict().items()}))
    assert fused_calls == [shape, shape]
    (outputs, state), (outputs_ref, state_ref) = results
    for (y, dx, dparams), (y_ref, dx_ref, dparams_ref) in zip(outputs, outputs_ref, strict=True):
        assert y.is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
        clear = y_ref > 1e-4 if relu else torch.ones_like(y_ref, dtype=torch.bool)  # ReLUs may split at 0
        scale = dx_ref.abs().max()
        torch.testing.assert_close(dx[clear] / scale, dx_ref[clear] / scale, rtol=1e-5, atol=1e-5)
        for d, d_ref in zip(dparams, dparams_ref, strict=True):
            torch.testing.assert_close(d, d_ref, rtol=1e-4, atol=1e-4 * d_ref.abs().max().item())
    assert list(state) == list(state_ref)
    for name, value in state.items():
        torch.testing.assert_close(value, state_ref[name], rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.parametrize("relu", [True, False])
def test_eval_mode_and_other_inputs_use_pytorch(relu: bool, fused_calls: list,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    fused, ref = _pair(16, relu)
    x = torch.randn(2, 16, 6, 8).contiguous(memory_format=torch.channels_last)
    act = F.relu if relu else (lambda y: y)
    fused.eval(), ref.eval()
    torch.testing.assert_close(fused(x), act(ref(x)))
    fused.train(), ref.train()
    torch.testing.assert_close(fused(x.contiguous()), act(ref(x.contiguous())))  # NCHW
    with monkeypatch.context() as env:
        env.setenv("CROSSPOSE_GROUP_NORM", "aten")  # the kernel's opt-out covers BatchNorm too
        torch.testing.assert_close(fused(x), act(ref(x)))
    fused_b, ref_b = fused.to(torch.bfloat16), ref.to(torch.bfloat16)
    torch.testing.assert_close(fused_b(x.bfloat16()), act(ref_b(x.bfloat16())))
    assert fused_calls == []


def test_one_value_per_channel_is_refused_as_pytorch_does(fused_calls: list) -> None:
    fused, _ = _pair(8, True)
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        fused(torch.randn(1, 8, 1, 1).contiguous(memory_format=torch.channels_last))
    assert fused_calls == []


def test_fuse_and_unfuse_keep_the_network() -> None:
    plain = timm.create_model("resnet50", pretrained=False)
    plain.layer4[0].bn1 = FrozenBatchNorm2d(plain.layer4[0].bn1.num_features)  # a frozen one stays as it is
    net = copy.deepcopy(plain)
    weight, mean = net.layer1[0].bn1.weight, net.layer1[0].bn1.running_mean
    assert fuse_batch_norm(net) == (52, 32)  # not the frozen norm's ReLU
    assert isinstance(net.layer1[0].bn1, BatchNormAct) and net.layer1[0].bn1.relu
    assert isinstance(net.layer1[0].act1, nn.Identity) and isinstance(net.layer1[0].act3, nn.ReLU)
    assert net.layer1[0].bn1.weight is weight and net.layer1[0].bn1.running_mean is mean
    assert isinstance(net.layer4[0].bn1, FrozenBatchNorm2d) and isinstance(net.layer4[0].act1, nn.ReLU)
    assert fuse_batch_norm(net) == (0, 0)  # idempotent
    assert list(net.state_dict()) == list(plain.state_dict())
    assert unfuse_batch_norm(net) == 52
    assert type(net.layer1[0].bn1) is nn.BatchNorm2d and not hasattr(net.layer1[0].bn1, "relu")
    assert type(net.layer1[0].act1) is nn.ReLU and net.layer1[0].bn1.weight is weight
    assert [type(m) for m in net.modules()] == [type(m) for m in plain.modules()]
    sync = nn.SyncBatchNorm.convert_sync_batchnorm(timm.create_model("resnet18", pretrained=False))
    assert fuse_batch_norm(sync) == (0, 0)


@needs_compiler
def test_resnet50_step_matches_pytorch(fused_calls: list) -> None:
    """A whole BatchNorm ResNet-50 forward and backward, fused against PyTorch's."""
    torch.manual_seed(0)
    net = ResNetBackbone("resnet50").to(memory_format=torch.channels_last)
    ref = copy.deepcopy(net)
    fuse_batch_norm(net)
    x = torch.randn(2, 3, 64, 64).contiguous(memory_format=torch.channels_last)
    results = []
    for model in (net, ref):
        stage3, stage4 = model(x)
        loss = stage3.square().mean() + stage4.square().mean()
        loss.backward()
        results.append((loss.detach(), {n: p.grad for n, p in model.named_parameters()},
                        {n: b.clone() for n, b in model.named_buffers() if "running" in n}))
    assert len(fused_calls) == 53
    (loss, grads, stats), (loss_ref, grads_ref, stats_ref) = results
    torch.testing.assert_close(loss, loss_ref, rtol=1e-4, atol=0)
    for name, g in grads.items():
        scale = grads_ref[name].abs().max().item() or 1.0
        torch.testing.assert_close(g / scale, grads_ref[name] / scale, rtol=0, atol=2e-3, msg=name)
    for name, s in stats.items():
        torch.testing.assert_close(s, stats_ref[name], rtol=1e-4, atol=1e-5, msg=name)


class _Seen(L.Callback):
    """The norm layer types the network holds while it trains."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.types: set[str] = set()
        self.fail_at = fail_at

    def on_train_batch_start(self, trainer: L.Trainer, module: Any, batch: Any, idx: int) -> None:
        self.types |= {type(m).__name__ for m in module.net.modules() if isinstance(m, nn.BatchNorm2d)}
        if self.fail_at is not None and trainer.global_step == self.fail_at:
            raise RuntimeError("stopped on purpose")


@needs_compiler
@pytest.mark.parametrize("fail", [False, True])
def test_fused_only_while_a_cpu_fit_runs(tmp_path: Path, fail: bool, fused_calls: list) -> None:
    data = write_tiny_coco(tmp_path / "d", count=4, seed=1)
    module = PoseEstimationModule(num_keypoints=4, backbone="resnet18", pretrained=False, norm="batch",
                                  lr_schedule="constant")
    dm = PoseDataModule(train_file=str(data), input_size=64, batch_size=2, num_workers=0,
                        augmentation=Augmentation(color_p=0.0, blur_p=0.0, noise_p=0.0))
    seen = _Seen(fail_at=1 if fail else None)
    trainer = L.Trainer(max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[seen], num_sanity_val_steps=0, accelerator="cpu")
    if fail:
        with pytest.raises(RuntimeError, match="stopped on purpose"):
            trainer.fit(module, datamodule=dm)
    else:
        trainer.fit(module, datamodule=dm)
    assert seen.types == {"BatchNormAct"} and fused_calls
    after = [type(m) for m in module.net.modules() if isinstance(m, (nn.BatchNorm2d, nn.ReLU))]
    assert set(after) == {nn.BatchNorm2d, nn.ReLU}  # plain layers again, the ReLUs back
    assert not any(isinstance(m, BatchNormAct) for m in module.net.modules())


def test_module_example_runs() -> None:
    import doctest

    assert doctest.testmod(bn, raise_on_error=True).attempted == 5


def test_training_kernels_are_float32_only() -> None:
    module = PoseEstimationModule(num_keypoints=4, backbone="resnet18", pretrained=False, norm="batch")
    assert module.use_training_kernels("bf16-mixed") is None  # bf16 tensors would never reach the kernel
    assert not any(isinstance(m, BatchNormAct) for m in module.net.modules())
    assert module.use_training_kernels("32-true") is not None
    assert any(isinstance(m, BatchNormAct) and m.relu for m in module.net.modules())
    module.release_training_kernels()
    assert not any(isinstance(m, BatchNormAct) for m in module.net.modules())
