"""The fused GroupNorm(+ReLU) kernel against PyTorch's group_norm, and where it is used or not."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import warnings

import pytest
import timm
import torch
import torch.nn.functional as F
from torch import nn

from crosspose.core.errors import ConfigError
from crosspose.models import group_norm as gn
from crosspose.models.backbone import ResNetBackbone
from crosspose.models.group_norm import GroupNormAct, fuse_group_norm, kernel_status, network_status
from crosspose.testing import requires_compiler

needs_compiler = requires_compiler()


def _reference(x: torch.Tensor, norm: nn.GroupNorm, relu: bool) -> torch.Tensor:
    weight, bias = (norm.weight, norm.bias) if norm.affine else (None, None)
    y = F.group_norm(x, norm.num_groups, weight, bias, norm.eps)
    return F.relu(y) if relu else y


@needs_compiler
@pytest.mark.parametrize("relu", [True, False])
@pytest.mark.parametrize(("shape", "groups", "affine"), [
    ((4, 64, 16, 16), 32, True),
    ((1, 96, 7, 5), 32, True),     # one sample, odd spatial size, 3 channels per group
    ((3, 32, 1, 1), 4, True),      # one pixel, eight channels per group
    ((3, 8, 2, 3), 8, True),       # one channel per group
    ((2, 48, 9, 11), 4, False),    # no affine parameters: NULL weight and bias
    ((2, 256, 33, 33), 32, True),  # more rows than one 16-row block per chunk
    ((32, 64, 6, 6), 32, True),    # at least four samples per thread (up to 8 threads): one task per sample
])
def test_fused_matches_pytorch(shape: tuple[int, ...], groups: int, affine: bool, relu: bool,
                               fused_calls: list[tuple[int, ...]]) -> None:
    torch.manual_seed(0)
    norm = GroupNormAct(groups, shape[1], affine=affine, relu=relu)
    if affine:
        with torch.no_grad():
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.normal_()
    x0 = (torch.randn(shape) * 3 + 2).contiguous(memory_format=torch.channels_last)
    dy = torch.randn(shape).contiguous(memory_format=torch.channels_last)

    grads = []
    for run, dtype in ((norm, torch.float32), (lambda x: _reference(x, norm, relu), torch.float64)):
        # the reference: PyTorch's group norm in float64 (its float32 kernel rounds x * scale + shift,
        # which loses digits where a group's spread is tiny against its mean)
        norm.to(dtype)
        x = x0.to(dtype, copy=True).requires_grad_(True)
        y = run(x)
        y.backward(dy.to(dtype))
        params = [p.grad.float() for p in norm.parameters()]
        grads.append((y.detach().float(), x.grad.float(), params))
        norm.zero_grad(set_to_none=True)
    norm.float()
    assert fused_calls == [shape]
    (y, dx, dparams), (y_ref, dx_ref, dparams_ref) = grads
    assert y.is_contiguous(memory_format=torch.channels_last) and dx.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
    # where the pre-activation is within rounding of 0 the two ReLUs may disagree on the mask
    clear = (_reference(x0.double(), norm.double(), False).abs() > 1e-4) if relu else torch.ones_like(x0, dtype=torch.bool)
    norm.float()
    scale = dx_ref.abs().max()
    torch.testing.assert_close(dx[clear] / scale, dx_ref[clear] / scale, rtol=1e-5, atol=1e-5)
    for d, d_ref in zip(dparams, dparams_ref, strict=True):
        torch.testing.assert_close(d, d_ref, rtol=1e-4, atol=1e-4 * d_ref.abs().max().item())


@needs_compiler
def test_fused_keeps_digits_when_the_mean_is_large() -> None:
    """A group whose mean is 10^4 times its spread: shifted sums keep the variance, PyTorch's float32 does not."""
    torch.manual_seed(0)
    norm = GroupNormAct(4, 16, relu=False)
    x = (1000 + 0.1 * torch.randn(2, 16, 8, 8)).contiguous(memory_format=torch.channels_last)
    ref = _reference(x.double(), norm.double(), False).float()
    norm.float()
    fused_error = (norm(x) - ref).abs().max().item()
    assert fused_error < 1e-3  # what float32 inputs allow: their rounding is ~6e-5, 6e-4 of the spread
    assert fused_error <= (_reference(x, norm, False) - ref).abs().max().item()


@needs_compiler
def test_fused_is_deterministic_and_follows_thread_count() -> None:
    norm = GroupNormAct(32, 128, relu=True)
    x = torch.randn(2, 128, 20, 20).contiguous(memory_format=torch.channels_last)
    threads = torch.get_num_threads()
    try:
        runs = []
        for n in (threads, threads, 1):
            torch.set_num_threads(n)
            runs.append(norm(x))
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(runs[0], runs[1])
    torch.testing.assert_close(runs[0], runs[2], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("make_input", [
    lambda x: x.contiguous(),                                         # NCHW
    lambda x: x.to(torch.bfloat16).contiguous(memory_format=torch.channels_last),
    lambda x: x.double().contiguous(memory_format=torch.channels_last),
    lambda x: x[..., ::2].contiguous(memory_format=torch.channels_last)[..., :3],  # strided view
    lambda x: x[:0].contiguous(memory_format=torch.channels_last),     # an empty batch
])
def test_pytorch_wherever_the_kernel_does_not_apply(make_input, fused_calls: list) -> None:
    norm = GroupNormAct(8, 32, relu=True).to(torch.float64)
    x = make_input(torch.randn(2, 32, 6, 8))
    norm = norm.to(x.dtype)
    torch.testing.assert_close(norm(x), _reference(x, norm, True))
    assert fused_calls == []


def test_pytorch_while_tracing_or_compiling(monkeypatch: pytest.MonkeyPatch, fused_calls: list) -> None:
    norm = GroupNormAct(8, 32, relu=True)
    x = torch.randn(2, 32, 6, 8).contiguous(memory_format=torch.channels_last)
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    norm(x)
    monkeypatch.undo()
    traced = torch.jit.trace(norm, x)  # the trace records PyTorch's ops, not a ctypes call
    assert "group_norm" in str(traced.graph)
    assert fused_calls == []


def test_opt_out_and_bad_setting(monkeypatch: pytest.MonkeyPatch, fused_calls: list) -> None:
    norm = GroupNormAct(8, 32, relu=False)
    x = torch.randn(2, 32, 6, 8).contiguous(memory_format=torch.channels_last)
    monkeypatch.setenv("CROSSPOSE_GROUP_NORM", "aten")
    torch.testing.assert_close(norm(x), _reference(x, norm, False))
    assert fused_calls == []
    assert kernel_status() == "norm kernel: PyTorch's (CROSSPOSE_GROUP_NORM=aten)"
    monkeypatch.setenv("CROSSPOSE_GROUP_NORM", "fast")
    with pytest.raises(ConfigError, match=r"CROSSPOSE_GROUP_NORM='fast': expected one of fused, aten"):
        norm(x)


def test_no_compiler_warns_once_and_falls_back(monkeypatch: pytest.MonkeyPatch, tmp_path, fused_calls: list) -> None:
    monkeypatch.setattr(gn, "_state", {})
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    monkeypatch.setenv("CROSSPOSE_NATIVE_CACHE", str(tmp_path / "cache"))
    norm = GroupNormAct(8, 32, relu=True)
    x = torch.randn(2, 32, 6, 8).contiguous(memory_format=torch.channels_last)
    with pytest.warns(RuntimeWarning, match="fused GroupNorm kernel unavailable.*no C compiler"):
        y = norm(x)
    torch.testing.assert_close(y, _reference(x, norm, True))
    with warnings.catch_warnings(record=True) as later:
        warnings.simplefilter("always")
        norm(x)
    assert later == []  # the failed build is remembered: one warning per process
    assert "not built: no C compiler" in kernel_status()
    assert fused_calls == []


def test_fuse_group_norm_keeps_parameters_and_state_dict() -> None:
    plain = timm.create_model("resnet50_gn", pretrained=False, features_only=True, out_indices=(3, 4))
    fused = timm.create_model("resnet50_gn", pretrained=False, features_only=True, out_indices=(3, 4))
    fused.load_state_dict(plain.state_dict())
    weight = fused.layer1[0].bn1.weight
    assert fuse_group_norm(fused) == (53, 33)  # every norm; the ReLU after the stem's and each block's bn1, bn2
    assert fused.layer1[0].bn1.weight is weight  # the same Parameter: optimizers and freezing still see it
    assert fuse_group_norm(fused) == (0, 0)  # idempotent
    assert network_status(plain) is None and network_status(fused) == kernel_status()
    assert list(fused.state_dict()) == list(plain.state_dict())
    assert isinstance(fused.layer1[0].act1, nn.Identity) and fused.layer1[0].bn1.relu
    assert isinstance(fused.layer1[0].act3, nn.ReLU) and not fused.layer1[0].bn3.relu  # after the residual add
    assert not fused.layer1[0].downsample[1].relu
    x = torch.randn(1, 3, 64, 64).contiguous(memory_format=torch.channels_last)
    plain.eval(), fused.eval()
    for a, b in zip(plain(x), fused(x), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_batchnorm_backbone_untouched() -> None:
    net = timm.create_model("resnet18", pretrained=False)
    assert fuse_group_norm(net) == (0, 0)
    assert isinstance(net.act1, nn.ReLU)
    assert network_status(net) is None


@needs_compiler
def test_groupnorm_backbone_trains_like_pytorch(monkeypatch: pytest.MonkeyPatch, fused_calls: list) -> None:
    """A whole ResNet-50 GN forward and backward, fused against PyTorch's: same loss, same gradients."""
    torch.manual_seed(0)
    net = ResNetBackbone("resnet50_gn").to(memory_format=torch.channels_last)
    x = torch.randn(2, 3, 64, 64).contiguous(memory_format=torch.channels_last)
    results = []
    for setting in ("fused", "aten"):
        monkeypatch.setenv("CROSSPOSE_GROUP_NORM", setting)
        net.zero_grad(set_to_none=True)
        stage3, stage4 = net(x)
        loss = stage3.square().mean() + stage4.square().mean()
        loss.backward()
        results.append((loss.detach(), {n: p.grad.clone() for n, p in net.named_parameters()}))
    assert len(fused_calls) == 53
    (loss, grads), (loss_ref, grads_ref) = results
    torch.testing.assert_close(loss, loss_ref, rtol=1e-4, atol=0)
    for name, g in grads.items():
        scale = grads_ref[name].abs().max().item() or 1.0
        torch.testing.assert_close(g / scale, grads_ref[name] / scale, rtol=0, atol=2e-3, msg=name)


@needs_compiler
@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="reads /proc/self/maps")
def test_kernel_shares_torchs_openmp_runtime() -> None:
    """One OpenMP runtime in the process: the kernel follows torch.set_num_threads and adds no thread pool.

    In a fresh process, since other libraries (scikit-learn's wheel) bring an OpenMP of their own.
    """
    probe = ("import os, torch\n"
             "from crosspose.models.group_norm import kernel_status\n"
             "assert kernel_status().startswith('norm kernel: fused'), kernel_status()\n"
             "paths = {line.split()[-1] for line in open('/proc/self/maps') if '/' in line}\n"
             "print(sorted(p for p in paths if os.path.basename(p).startswith(('libgomp', 'libomp', 'libiomp'))))\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    runtimes = ast.literal_eval(done.stdout.strip().splitlines()[-1])
    assert len(runtimes) == 1, runtimes  # pip wheels: torch/lib/libgomp.so.1, which the kernel reuses


def test_module_example_runs() -> None:
    import doctest

    assert doctest.testmod(gn, raise_on_error=True).attempted == 4
