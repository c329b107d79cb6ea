"""Freezing by stage: what is frozen, what the optimizer sees, what changes in training, checkpoints."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch import Callback

from crosspose.core.errors import CrossposeError
from crosspose.data.datamodule import PoseDataModule
from crosspose.models.freeze import FREEZE_LEVELS, frozen_stages
from crosspose.testing import write_tiny_coco
from crosspose.training.module import PoseEstimationModule

# Written out by hand (not derived from freeze.py) so a wrong mapping there fails here.
_BODY = "net.backbone.body."
_PREFIXES = {
    "none": (),
    "stem": ("conv1.", "bn1."),
    "stage1": ("conv1.", "bn1.", "layer1."),
    "stage2": ("conv1.", "bn1.", "layer1.", "layer2."),
    "stage3": ("conv1.", "bn1.", "layer1.", "layer2.", "layer3."),
    "stage4": ("conv1.", "bn1.", "layer1.", "layer2.", "layer3.", "layer4."),
    "backbone": ("conv1.", "bn1.", "layer1.", "layer2.", "layer3.", "layer4."),
}


def _is_frozen_name(name: str, level: str) -> bool:
    return any(name.startswith(_BODY + p) for p in _PREFIXES[level])


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_coco(tmp_path_factory.mktemp("freeze") / "d", count=8, size=64, seed=3)


def _module(level: str) -> PoseEstimationModule:
    return PoseEstimationModule(num_keypoints=4, backbone="resnet18", freeze=level, lr_schedule="constant",
                                optimizer=lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9))


def _datamodule(data: Path) -> PoseDataModule:
    return PoseDataModule(train_file=str(data), input_size=64, batch_size=4, num_workers=0)


def _trainer(tmp_path: Path, steps: int, callbacks: list[Callback] | None = None) -> L.Trainer:
    return L.Trainer(accelerator="cpu", max_steps=steps, limit_val_batches=0, logger=False,
                     enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                     num_sanity_val_steps=0, default_root_dir=str(tmp_path), callbacks=callbacks or [])


class _GradRecorder(Callback):
    """Names of the parameters that hold a gradient when the optimizer steps."""

    def __init__(self) -> None:
        self.with_grad: set[str] = set()

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self.with_grad |= {n for n, p in pl_module.named_parameters() if p.grad is not None}


def _frozen_bn_buffers(module: PoseEstimationModule, level: str) -> dict[str, torch.Tensor]:
    return {n: b.detach().clone() for n, b in module.named_buffers()
            if _is_frozen_name(n, level) and n.rsplit(".", 1)[-1] in ("running_mean", "running_var", "weight", "bias")}


def test_levels_cover_the_stages_in_order() -> None:
    assert frozen_stages("none") == ()
    assert frozen_stages("stage2") == ("stem", "stage1", "stage2")
    assert frozen_stages("backbone") == ("stem", "stage1", "stage2", "stage3", "stage4")
    with pytest.raises(CrossposeError, match="stage5"):
        frozen_stages("stage5")
    assert set(_PREFIXES) == set(FREEZE_LEVELS)


def test_unknown_level_is_a_config_error_at_construction() -> None:
    with pytest.raises(CrossposeError, match="layer9"):
        PoseEstimationModule(num_keypoints=4, backbone="resnet18", freeze="layer9").prepare_network()


@pytest.mark.parametrize("level", FREEZE_LEVELS)
def test_freeze_level_in_a_real_training_step(level: str, data: Path, tmp_path: Path) -> None:
    module = _module(level)
    module.prepare_network()  # what setup() does; idempotent, so fit() will not apply it twice
    params = dict(module.named_parameters())
    frozen = {n for n in params if _is_frozen_name(n, level)}
    # exactly the expected parameters stop requiring gradients
    assert {n for n, p in params.items() if not p.requires_grad} == frozen
    assert (len(frozen) > 0) == (level != "none")
    # frozen normalisation: no BatchNorm left in a frozen stage, its terms became buffers
    for name, m in module.named_modules():
        if _is_frozen_name(name + ".", level):
            assert not isinstance(m, torch.nn.modules.batchnorm._BatchNorm), name
    before = {n: p.detach().clone() for n, p in params.items()}
    frozen_buffers = _frozen_bn_buffers(module, level)
    assert (len(frozen_buffers) > 0) == (level != "none")
    live_stats = {n: b.detach().clone() for n, b in module.named_buffers()
                  if n.endswith("running_mean") and not _is_frozen_name(n, level)}

    recorder = _GradRecorder()
    trainer = _trainer(tmp_path, steps=2, callbacks=[recorder])
    trainer.fit(module, _datamodule(data))

    # the optimizer holds exactly the trainable parameters
    in_optimizer = {id(p) for g in trainer.optimizers[0].param_groups for p in g["params"]}
    assert in_optimizer == {id(p) for n, p in params.items() if n not in frozen}
    # frozen parameters never received a gradient; every trainable one did
    assert recorder.with_grad == set(params) - frozen
    after = dict(module.named_parameters())
    changed = {n for n in params if not torch.equal(before[n], after[n].detach())}
    assert not changed & frozen
    # every trainable part moved (a single early BN scale can round back to 1.0 in two steps)
    parts = {n.split(".")[1] if not n.startswith(_BODY) else n[len(_BODY):].split(".")[0] for n in params}
    for part in parts:
        members = {n for n in params if n.startswith((f"net.{part}.", _BODY + part + "."))}
        assert (members & changed) if not members <= frozen else not members & changed, part
    # frozen statistics and affine terms unchanged after training-mode passes; live ones moved
    for n, b in module.named_buffers():
        if n in frozen_buffers:
            assert torch.equal(frozen_buffers[n], b), n
    assert bool(live_stats) == (level not in ("stage4", "backbone"))
    assert not live_stats or any(not torch.equal(v, dict(module.named_buffers())[n]) for n, v in live_stats.items())


@pytest.mark.parametrize("level", ["stem", "stage3"])
def test_frozen_statistics_survive_train_mode_forward_passes(level: str) -> None:
    module = _module(level)
    module.prepare_network()
    module.train()
    frozen = _frozen_bn_buffers(module, level)
    with torch.no_grad():
        for seed in range(3):
            module(torch.randint(0, 255, (2, 3, 64, 64), generator=torch.Generator().manual_seed(seed)))
    buffers = dict(module.named_buffers())
    assert frozen and all(torch.equal(v, buffers[n]) for n, v in frozen.items())


def test_checkpoint_roundtrip_keeps_the_frozen_layout(data: Path, tmp_path: Path) -> None:
    module = _module("stage2")
    trainer = _trainer(tmp_path, steps=2)
    trainer.fit(module, _datamodule(data))
    path = tmp_path / "frozen.ckpt"
    trainer.save_checkpoint(path)

    loaded = PoseEstimationModule.load_from_checkpoint(path, map_location="cpu", weights_only=True)
    assert loaded.hparams.freeze == "stage2"
    frozen = {n for n, p in loaded.named_parameters() if not p.requires_grad}
    assert frozen == {n for n, _ in loaded.named_parameters() if _is_frozen_name(n, "stage2")}
    a, b = module.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    module.eval(), loaded.eval()
    x = torch.randint(0, 255, (2, 3, 64, 64))
    with torch.no_grad():
        assert torch.allclose(module(x)["heatmap"], loaded(x)["heatmap"])

    # resuming a frozen run restores an optimizer that holds the trainable parameters only
    resumed = _module("stage2")
    again = _trainer(tmp_path, steps=3)
    again.fit(resumed, _datamodule(data), ckpt_path=str(path))
    assert again.global_step == 3
    layer2 = dict(resumed.named_parameters())[_BODY + "layer2.0.conv1.weight"]
    assert torch.equal(layer2, dict(module.named_parameters())[_BODY + "layer2.0.conv1.weight"])
