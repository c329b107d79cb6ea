"""The LightningModule: DeeperCut-style training, evaluation with the paper's metrics, prediction."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

import lightning as L
import torch
from lightning.pytorch.cli import OptimizerCallable

from crosspose.core import hardware
from crosspose.core.codecs import build_codec
from crosspose.core.errors import ConfigError
from crosspose.core.validate import non_negative, positive
from crosspose.evaluation.results import headline, write_metrics, write_prediction_records
from crosspose.models.batch_norm import fuse_batch_norm, unfuse_batch_norm
from crosspose.models.freeze import FreezeLevel, freeze_backbone, frozen_stages
from crosspose.models.group_norm import network_status
from crosspose.models.inference import inference_network
from crosspose.models.network import HeadOutput, NormMode, PoseNetwork
from crosspose.models.transfer import METADATA_KEY, HeadsMode, initialize_from_checkpoint
from crosspose.models.unfreeze import level_at, parse_unfreeze, stage_batchnorms, stage_parameters
from crosspose.training.distributed import gather_rows
from crosspose.training.losses import pose_loss
from crosspose.training.schedulers import ScheduleName, build_scheduler

__all__ = ["COMPILE_MODES", "PoseEstimationModule", "compile_mode", "compile_network", "to_original"]

log = logging.getLogger("crosspose")

CompileMode = Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"]
"""``torch.compile``'s modes, as ``model.compile`` names them."""
COMPILE_MODES: tuple[str, ...] = get_args(CompileMode)
CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")
"""The modes that capture CUDA graphs."""


def compile_mode(setting: bool | str) -> str | Literal[False] | None:
    """``torch.compile``'s mode for ``model.compile``: False (off), None (its default) or the mode named."""
    if isinstance(setting, bool):
        return None if setting else False
    if setting not in COMPILE_MODES:
        raise ConfigError(f"model.compile must be true, false or one of {', '.join(COMPILE_MODES)}; got {setting!r}")
    return setting


def compile_network(net: torch.nn.Module, setting: bool | str) -> torch.nn.Module:
    """``net`` under ``torch.compile`` (``True``: its default mode; a string: that mode), else ``net``.

    The CUDA-graph modes gain nothing while BatchNorm statistics train: each step writes the running
    statistics (an input mutation), so PyTorch skips the graphs, and under DDP such a network was
    reported slower than without them (pytorch/pytorch#139207). That case gets a warning, not an
    error: ``norm: frozen`` (DeeperCut) or a GroupNorm backbone keeps the graphs.
    """
    mode = compile_mode(setting)
    if mode is False:
        return net
    # PoseNetwork puts its BatchNorm layers in eval mode at train() when norm is frozen; frozen stages
    # hold FrozenBatchNorm2d, which is no _BatchNorm
    trains_statistics = getattr(net, "norm", "batch") != "frozen" and any(
        isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.track_running_stats for m in net.modules())
    if mode in CUDA_GRAPH_MODES and trains_statistics:
        log.warning("model.compile %s: BatchNorm statistics train in this network, so PyTorch skips its "
                    "CUDA graphs (input mutation); use norm: frozen, a GroupNorm backbone, or compile: true", mode)
    return torch.compile(net, mode=mode)  # type: ignore[return-value]


def to_original(points: torch.Tensor, to_original: torch.Tensor) -> torch.Tensor:
    """(B, K, 3) input-pixel predictions -> original pixels with (B, 2, 3) affine matrices."""
    xy = torch.einsum("bij,bkj->bki", to_original[:, :, :2].float(), points[..., :2].float())
    xy = xy + to_original[:, None, :, 2].float()
    return torch.cat((xy, points[..., 2:]), dim=-1)


class _ReleaseTrainingKernels(L.Callback):
    """A fit that fails leaves plain BatchNorm layers behind too (a LightningModule has no on_exception hook)."""

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        pl_module.release_training_kernels()  # type: ignore[operator]


class PoseEstimationModule(L.LightningModule):
    """Train, evaluate and run a DeeperCut-style pose network.

    Args:
        num_keypoints: J, the number of joints the heads predict (must match the data).
        keypoint_names: joint names; taken from the data file when omitted (needed by ``heads: map``).
        backbone: timm ResNet name, or ``slim_resnet_v1_50``/``_101``/``_152`` (DeepLabCut 2's TF-slim net).
        pretrained: start from timm's ImageNet weights (downloads once; fails offline with a clear message).
        norm: ``batch`` (BatchNorm statistics train) or ``frozen`` (DeeperCut: eval-mode statistics).
        intermediate_supervision: extra score-map head and loss on stage 3.
        intermediate_supervision_unit: 1-based unit of stage 3 feeding that head (TF-slim
            ``block3/unit_12`` = 12, as DeepLabCut's ``intermediate_supervision_layer``); None = its end.
        head_output: ``same`` (DeeperCut: maps twice the feature size) or ``full`` (DeepLabCut 3's
            uncropped (2H+1) x (2W+1) maps; set by ``crosspose convert dlc-pytorch``).
        heatmap: ``disk`` (DeeperCut, sigmoid cross-entropy) or ``gaussian`` (MSE).
        radius: disk radius (17); also the locref region.
        radius_units: ``input`` (network-input pixels, DeepLabCut 3) or ``original`` (original-image
            pixels, DeeperCut / DeepLabCut 2.2: the disk is ``radius * zoom`` input pixels per sample).
        sigma: Gaussian width, in the units of ``radius`` (default 2 * radius / 3).
        locref_std: divisor of location-refinement targets (7.2801).
        unannotated: ``negative`` (an unlabelled joint is an all-zero map) or ``ignore``.
        locref_loss_weight: weight of the Huber locref term (0.05).
        optimizer: injected optimizer (default SGD, lr 0.005, momentum 0.9); receives only trainable
            parameters, in two groups: backbone and heads.
        backbone_lr_scale: the backbone's learning rate relative to the heads'.
        lr_schedule: ``deepercut`` multi-step, ``cosine`` with warm-up, or ``constant``.
        warmup_steps: linear warm-up steps.
        schedule_rescale: stretch DeeperCut's 1.03M-step boundaries to this run's length.
        init_from: checkpoint to initialise from (transfer learning); weights only.
        heads: ``reinit`` | ``keep`` | ``map`` (see crosspose.models.transfer).
        freeze: freeze the backbone up to and including this part.
        unfreeze: gradual unfreezing, ``{step: level}`` (e.g. ``{2000: stage3, 5000: none}`` after
            ``freeze: backbone``); see crosspose.models.unfreeze. Single process only.
        channels_last: NHWC memory format (faster convolutions on CPU and tensor cores).
        compile: ``torch.compile`` the network: ``true`` (its default mode) or a mode, e.g.
            ``reduce-overhead`` (CUDA graphs on a GPU; see :func:`compile_network`).
        predict_compile: ``crosspose predict``'s network through ``torch.compile`` with frozen weights:
            ``auto`` (on for bf16 on a CPU with AMX, measured ~2x there; see
            :func:`crosspose.core.hardware.choose_inference_compile`), ``on`` or ``off``.

    Validation scores PCKh@0.5 (the paper's metric, fixed by docs/metrics.md); checkpoints from
    before the unused ``pck_alpha`` option was removed still load (Lightning drops unknown hparams).

    Attributes:
        monitor, mode: the metric that selects ``best.ckpt`` and how (read by the checkpoint code).
    """

    monitor = "val/pckh"
    mode = "max"

    if TYPE_CHECKING:  # Lightning types hparams as a plain mapping; ours are the __init__ arguments
        @property
        def hparams(self) -> Any: ...

    @property
    def _datamodule(self) -> Any:
        """The trainer's data module (Lightning sets the attribute at fit/validate/test time)."""
        return self.trainer.datamodule  # type: ignore[attr-defined]

    def __init__(
        self,
        num_keypoints: int,
        keypoint_names: list[str] | None = None,
        backbone: str = "resnet50",
        pretrained: bool = False,
        norm: NormMode = "batch",
        intermediate_supervision: bool = False,
        intermediate_supervision_unit: int | None = None,
        head_output: HeadOutput = "same",
        heatmap: Literal["disk", "gaussian"] = "disk",
        radius: float = 17.0,
        radius_units: Literal["input", "original"] = "input",
        sigma: float | None = None,
        locref_std: float = 7.2801,
        unannotated: Literal["negative", "ignore"] = "negative",
        locref_loss_weight: float = 0.05,
        optimizer: OptimizerCallable | None = None,
        backbone_lr_scale: float = 1.0,
        lr_schedule: ScheduleName = "deepercut",
        warmup_steps: int = 0,
        schedule_rescale: bool = True,
        init_from: str | None = None,
        heads: HeadsMode = "reinit",
        freeze: FreezeLevel = "none",
        unfreeze: dict[int, FreezeLevel] | None = None,
        channels_last: bool = True,
        compile: bool | CompileMode = False,
        predict_compile: Literal["auto", "on", "off"] = "auto",
    ) -> None:
        super().__init__()
        if num_keypoints <= 0:
            raise ConfigError(f"model.num_keypoints must be positive, got {num_keypoints}")
        if keypoint_names is not None and len(keypoint_names) != num_keypoints:
            raise ConfigError(f"model.keypoint_names has {len(keypoint_names)} names but "
                              f"model.num_keypoints is {num_keypoints}")
        compile_mode(compile)  # an unknown mode is a ConfigError now, not at setup
        hardware.check_compile_setting(predict_compile, "model.predict_compile")
        positive("model.radius", radius)
        if sigma is not None:
            positive("model.sigma", sigma)
        positive("model.locref_std", locref_std)
        non_negative("model.locref_loss_weight", locref_loss_weight)
        non_negative("model.backbone_lr_scale", backbone_lr_scale)
        non_negative("model.warmup_steps", warmup_steps)
        if init_from is not None and not str(init_from).strip():
            raise ConfigError("model.init_from is empty (give a checkpoint path or leave it out)")
        frozen_stages(freeze)  # an unknown level is a ConfigError now, not at setup
        self._unfreeze = parse_unfreeze(freeze, unfreeze)
        self._scheduled_stages: list[str] = []  # frozen now, unfrozen later by the schedule
        self._soft_frozen: list[str] = []  # those of them still frozen at the current step
        self.save_hyperparameters(ignore=["optimizer"])
        self.keypoint_names = list(keypoint_names) if keypoint_names else None
        self.net = PoseNetwork(num_keypoints, backbone, pretrained, norm, intermediate_supervision,
                               intermediate_supervision_unit, head_output)
        self.codec = build_codec(heatmap, radius, sigma, locref_std, unannotated, radius_units)
        self.optimizer_factory = optimizer
        self._prepared = False
        self._eval_rows: list[torch.Tensor] = []
        self._eval_loss = torch.zeros(2)
        # a plain list, not an attribute: a Module attribute would join state_dict and parameters()
        self._inference_net: list[torch.nn.Module] = []
        self.transfer_summary: dict[str, Any] | None = None
        self.last_metrics: dict[str, Any] | None = None
        self.last_predictions: list[dict[str, Any]] | None = None
        self.loaded_step: int | None = None  # global step of the checkpoint the weights came from

    # ----------------------------------------------------------------- setup
    def setup(self, stage: str) -> None:
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if dm is not None and hasattr(dm, "check_keypoints"):
            dm.check_keypoints(self.hparams.num_keypoints, stage)
            if self.keypoint_names is None and dm.keypoint_names is not None:
                self.keypoint_names = list(dm.keypoint_names)
        self.prepare_network(resuming=self._trainer is not None and self.trainer.ckpt_path is not None)
        if self._unfreeze and self._trainer is not None and self.trainer.world_size > 1:
            # DDP registers only parameters that require gradients when it wraps the model
            raise ConfigError("model.unfreeze (gradual unfreezing) runs in a single process only; "
                              "use model.freeze under DDP")

    def prepare_network(self, resuming: bool = False) -> None:
        """Apply ``init_from`` and ``freeze`` once (before any checkpoint restore or optimizer)."""
        if self._prepared:
            return
        hp = self.hparams
        if hp.init_from and not resuming:
            self.transfer_summary = initialize_from_checkpoint(self.net, hp.init_from, hp.heads,
                                                               self.keypoint_names)
        if self._unfreeze:
            final = self._unfreeze[-1][1]
            if final != "none":
                freeze_backbone(self.net.backbone, final)  # frozen to the end: for good
            self._scheduled_stages = [s for s in frozen_stages(hp.freeze) if s not in frozen_stages(final)]
            self._soft_frozen = list(self._scheduled_stages)
            for p in stage_parameters(self.net.backbone, self._soft_frozen):
                p.requires_grad_(False)
        elif hp.freeze != "none":
            freeze_backbone(self.net.backbone, hp.freeze)
        if hp.channels_last:
            self.net.to(memory_format=torch.channels_last)
        self.net = compile_network(self.net, hp.compile)  # type: ignore[assignment]
        self._prepared = True

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        from crosspose.training.card import describe_module

        # the model card: input size, normalisation, codec, skeleton (crosspose.models.card), and what
        # `crosspose inspect` measures weight movement against
        card = describe_module(self).to_dict()
        card.update(init_from=self.hparams.init_from, heads=self.hparams.heads)
        checkpoint[METADATA_KEY] = card

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        meta = checkpoint.get(METADATA_KEY, {})
        self.loaded_step = checkpoint.get("global_step")
        if self.keypoint_names is None and meta.get("keypoint_names"):
            self.keypoint_names = list(meta["keypoint_names"])
        # load_from_checkpoint builds a fresh module: give it the frozen layout the weights were saved in
        self.prepare_network(resuming=True)

    # --------------------------------------------------------------- forward
    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.hparams.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return self.net(images)

    def _losses(self, batch: dict[str, torch.Tensor], outputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        targets = self.codec.encode(batch["keypoints"], batch["valid"], (int(outputs["heatmap"].shape[-2]), int(outputs["heatmap"].shape[-1])),
                                    zoom=batch.get("zoom"))
        return pose_loss(outputs, targets, self.codec, self.hparams.locref_loss_weight)

    # ------------------------------------------------------------------ steps
    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        losses = self._losses(batch, self(batch["image"]))
        bs = batch["image"].shape[0]
        self.log("train/loss", losses["loss"], prog_bar=True, batch_size=bs)
        self.log_dict({f"train/{k}_loss": v for k, v in losses.items() if k != "loss"}, batch_size=bs)
        return losses["loss"]

    def _eval_step(self, batch: dict[str, torch.Tensor], prefix: str) -> None:
        outputs = self(batch["image"])
        if batch["keypoints"].shape[1] == self.hparams.num_keypoints:  # else: another skeleton, no loss
            n = batch["image"].shape[0]
            # summed with its count, so unequal DDP shards still give the mean over all instances
            self._eval_loss += torch.stack((self._losses(batch, outputs)["loss"].detach().float() * n,
                                            torch.tensor(float(n), device=self.device)))
        decoded = to_original(self.codec.decode(outputs["heatmap"], outputs["locref"]), batch["to_original"])
        rows = torch.cat((batch["index"].view(-1, 1, 1).float().expand(-1, 1, 3), decoded.float()), dim=1)
        self._eval_rows.append(rows.detach())

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        """Keypoints in original pixels, from a copy of the network with BatchNorm folded (exact, faster)."""
        if not self._inference_net:
            self._inference_net.append(self._predict_network())
        images = batch["image"]
        if self.hparams.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        out = self._inference_net[0](images)
        # decode in fp32 under bf16 autocast too: bf16 maps would tie near-equal peaks in the argmax
        keypoints = to_original(self.codec.decode(out["heatmap"].float(), out["locref"].float()),
                                batch["to_original"])
        return {"index": batch["index"], "keypoints": keypoints}

    def _predict_network(self) -> torch.nn.Module:
        """The folded inference copy (fused oneDNN calls for bf16 on a CPU), compiled where ``predict_compile`` says."""
        bf16 = (self.device.type == "cpu" and torch.is_autocast_enabled("cpu")
                and torch.get_autocast_dtype("cpu") == torch.bfloat16)
        net, choice = inference_network(self.net, self.device, "bf16" if bf16 else "fp32",
                                        self.hparams.get("predict_compile", "auto"), self.hparams.channels_last)
        log.info("predict: %s", choice.describe())
        return net

    # ------------------------------------------------------ gradual unfreezing
    def _backbone(self) -> Any:
        return getattr(self.net, "_orig_mod", self.net).backbone

    def apply_unfreeze(self, step: int) -> list[str]:
        """Unfreeze what the schedule frees by ``step``; returns the stages unfrozen now."""
        if not self._unfreeze:
            return []
        frozen = frozen_stages(level_at(self.hparams.freeze, self._unfreeze, step))
        still = [s for s in self._scheduled_stages if s in frozen]
        freed = [s for s in self._soft_frozen if s not in still]
        if freed:
            for p in stage_parameters(self._backbone(), freed):
                p.requires_grad_(True)
            self._soft_frozen = still
            self.train(self.training)  # their BatchNorm layers leave eval mode (unless norm: frozen)
        return freed

    def train(self, mode: bool = True) -> PoseEstimationModule:
        super().train(mode)
        if mode and getattr(self, "_soft_frozen", None):
            for m in stage_batchnorms(self._backbone(), self._soft_frozen):
                m.eval()  # a softly frozen stage keeps its statistics too
        return self

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        freed = self.apply_unfreeze(self.global_step)
        if freed and self.trainer.is_global_zero:
            print(f"step {self.global_step}: unfreezing {', '.join(freed)}", flush=True)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        # A run whose max_steps falls mid-epoch would stop without scoring its final weights, so
        # best.ckpt could never be them. Asking to stop makes Lightning validate this step first
        # (training_epoch_loop._should_check_val_fx) and the checkpoints see that validation.
        max_steps = self.trainer.max_steps
        if max_steps is not None and max_steps > 0 and self.trainer.global_step >= max_steps:
            self.trainer.should_stop = True

    def on_predict_end(self) -> None:
        self._inference_net.clear()  # weights may change after this (more training, another checkpoint)

    def use_training_kernels(self, precision: str = "32-true") -> str | None:
        """On the CPU, for training: BatchNorm layers through the fused norm kernel (GroupNorm ones always do).

        Args:
            precision: the fit's (Lightning's ``trainer.precision``); the kernel is float32 only.

        Returns the kernel's status line (it builds the kernel now, about a second once per machine), or
        None where no norm layer can use it (a GPU; a precision other than float32; a compiled BatchNorm
        network: the kernel stays out of compiled code, so its layers are left as they are).
        :meth:`release_training_kernels` restores plain ``nn.BatchNorm2d`` + ``nn.ReLU`` modules.
        """
        if self.device.type != "cpu" or str(precision) not in ("32-true", "32"):
            return None
        if not hasattr(self.net, "_orig_mod"):
            fuse_batch_norm(self.net)  # SyncBatchNorm, FrozenBatchNorm2d and eval-mode norms stay as they are
        return network_status(self.net)

    def release_training_kernels(self) -> None:
        """Undo :meth:`use_training_kernels` (folding, freezing and SyncBatchNorm expect plain BatchNorm)."""
        unfuse_batch_norm(self.net)

    def on_train_start(self) -> None:
        self._inference_net.clear()
        kernels = self.use_training_kernels(self.trainer.precision)
        if kernels:
            log.info("fit: %s", kernels)
        # Lightning 2.6 never calls .train() when fitting starts (its loops only save and restore
        # each submodule's flag around evaluation), so the modes PoseNetwork.train and self.train
        # set (norm: frozen, softly frozen stages: BatchNorm in eval mode) are applied here.
        self.train(True)

    def on_train_end(self) -> None:
        self.release_training_kernels()

    def configure_callbacks(self) -> list[L.Callback]:
        return [_ReleaseTrainingKernels()]

    # ------------------------------------------------------------ evaluation
    def on_validation_epoch_start(self) -> None:
        self._eval_loss = torch.zeros(2, device=self.device)

    def on_test_epoch_start(self) -> None:
        self._eval_loss = torch.zeros(2, device=self.device)

    def _log_eval_loss(self, prefix: str) -> None:
        total = self.trainer.strategy.reduce(self._eval_loss, reduce_op="sum")
        if total[1] > 0:
            self.log(f"{prefix}/loss", total[0] / total[1], prog_bar=True, rank_zero_only=False)

    def _collect_predictions(self, split: str) -> list[dict[str, Any]]:
        """Gather every rank's rows, keep each instance once, as COCO keypoint results."""
        local = torch.cat(self._eval_rows) if self._eval_rows else torch.zeros(
            (0, self.hparams.num_keypoints + 1, 3), device=self.device)
        self._eval_rows = []
        rows = gather_rows(local).cpu()
        dataset = self._datamodule.datasets[split]
        seen: dict[int, torch.Tensor] = {}
        for row in rows:
            seen.setdefault(int(row[0, 0].item()), row[1:])
        return [prediction_record(dataset, i, kp) for i, kp in sorted(seen.items())]

    def _score(self, split: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        from crosspose.evaluation.score import evaluate

        predictions = self._collect_predictions(split)
        gt = self._datamodule.coco(split)
        if len(predictions) < len(self._datamodule.datasets[split]):
            # limit_*_batches / fast_dev_run: score the instances that were predicted, no others
            gt = gt.subset(p["annotation_id"] for p in predictions)
        other_skeleton = gt.num_keypoints != self.hparams.num_keypoints
        if other_skeleton and not self.keypoint_names:
            raise ConfigError(f"{gt.path}: the data has {gt.num_keypoints} keypoints, the model "
                              f"{self.hparams.num_keypoints} and no keypoint names to match them by")
        names = self.keypoint_names if other_skeleton else None
        # COCO OKS (pycocotools) only for the final test, not every validation
        return predictions, evaluate(gt, predictions, pred_keypoint_names=names, oks=None if split == "test" else False)

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            self._eval_rows = []
            return
        self._log_eval_loss("val")
        _, metrics = self._score("val")
        scalars = _loggable(headline(metrics, prefix="val/"))
        if self.monitor in scalars:  # the metric that selects best.ckpt, on the progress bar
            self.log(self.monitor, scalars.pop(self.monitor), prog_bar=True, rank_zero_only=False)
        self.log_dict(scalars, sync_dist=False, rank_zero_only=False)

    def on_test_epoch_end(self) -> None:
        self._log_eval_loss("test")
        predictions, metrics = self._score("test")
        self.log_dict(_loggable(headline(metrics, prefix="test/")), sync_dist=False, rank_zero_only=False)
        metrics["source"] = {"checkpoint": self.trainer.ckpt_path, "global_step": self.loaded_step,
                             "data_file": str(self._datamodule.coco("test").path)}
        self.last_metrics, self.last_predictions = metrics, predictions
        if self.trainer.is_global_zero:
            out_dir = Path(self.trainer.log_dir or self.trainer.default_root_dir)
            write_evaluation(out_dir, predictions, metrics)
            log.info("wrote %s and %s", out_dir / "predictions.json", out_dir / "metrics.json")

    # ------------------------------------------------------------- optimizer
    def configure_optimizers(self) -> Any:
        # stages the unfreeze schedule frees later are in the backbone group from the start (inert
        # until they get gradients), so the optimizer's layout, and a resumed state, never change
        scheduled = {id(p) for p in stage_parameters(self._backbone(), self._scheduled_stages)}
        head_params = [p for n, p in self.net.named_parameters() if p.requires_grad and not _is_backbone(n)]
        backbone_params = [p for n, p in self.net.named_parameters()
                           if (p.requires_grad or id(p) in scheduled) and _is_backbone(n)]
        factory = self.optimizer_factory or (lambda params: torch.optim.SGD(params, lr=0.005, momentum=0.9))
        groups: list[dict[str, Any]] = [{"params": head_params, "name": "heads"}]
        if backbone_params:
            groups.append({"params": backbone_params, "name": "backbone"})
        try:
            optimizer = factory(groups)
        except ValueError as exc:  # torch's own checks: "Invalid learning rate: -1.0", ...
            raise ConfigError(f"model.optimizer: {exc}") from None
        if self.hparams.backbone_lr_scale <= 0:
            raise ConfigError(f"model.backbone_lr_scale must be positive, got {self.hparams.backbone_lr_scale}")
        if self.hparams.backbone_lr_scale != 1.0:
            for group in optimizer.param_groups:
                if group.get("name") == "backbone":
                    group["lr"] *= self.hparams.backbone_lr_scale
                    group["initial_lr"] = group["lr"]
        total = int(self.trainer.estimated_stepping_batches) if self._trainer is not None else 1
        scheduler = build_scheduler(optimizer, self.hparams.lr_schedule, max(total, 1),
                                    self.hparams.warmup_steps, self.hparams.schedule_rescale)
        if scheduler is None:
            return {"optimizer": optimizer}
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def _loggable(values: dict[str, float | None]) -> dict[str, float]:
    """Headline numbers the logger can take (an uncomputable one, ``None``, is left out)."""
    return {k: v for k, v in values.items() if v is not None}


def _is_backbone(name: str) -> bool:
    return name.startswith(("backbone.", "_orig_mod.backbone."))


def prediction_record(dataset: Any, index: int, keypoints: torch.Tensor) -> dict[str, Any]:
    """One COCO keypoint result for instance ``index`` of an InstanceDataset."""
    ann = dataset.annotation(index)
    kp = keypoints.double()
    return {
        "image_id": ann["image_id"],
        "category_id": ann.get("category_id", dataset.coco.category_id),
        "annotation_id": ann.get("id"),
        "keypoints": [round(float(v), 3) for v in kp.reshape(-1)],
        "score": float(kp[:, 2].mean()),
    }


def write_evaluation(out_dir: Path, predictions: list[dict[str, Any]], metrics: dict[str, Any]) -> None:
    write_prediction_records(predictions, out_dir / "predictions.json")
    write_metrics(metrics, out_dir / "metrics.json")  # last: its presence marks a finished evaluation
