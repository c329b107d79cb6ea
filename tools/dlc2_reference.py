"""Make full-size DeepLabCut 2 (TensorFlow) references for ``crosspose convert dlc-tf``.

Run by a Python that has TensorFlow, ``tf_slim`` and the ``deeplabcut`` wheel (its TensorFlow code),
NOT crosspose's::

    TFPY tools/dlc2_reference.py OUT_DIR IMAGES.npz

For each of ``resnet_50`` (17 MacaquePose joints, intermediate supervision at block3/unit_5) and
``resnet_101`` (DeepLabCut's 14 ``full_human`` joints, intermediate supervision at block3/unit_12,
as the model zoo's network) it builds DeepLabCut's own pose network (``PoseNetFactory`` ->
``PoseResnet``: TF-slim ``resnet_v1`` at output stride 16, ``pose/part_pred``, ``pose/locref_pred``,
``pose/intermediate_supervision``) from a pose_cfg read by DeepLabCut's own ``load_config``, gives
it random weights whose BatchNorm moving statistics are calibrated layer by layer on the images
(then perturbed: mean +- 0.05 sd, variance x U(0.8, 1.25)) and whose head kernels are scaled so
the logits reach about 10, as a trained network's do, and writes ``OUT_DIR/<net_type>/``:

- ``snapshot-1000.index`` / ``.data-00000-of-00001`` / ``.meta`` (``tf.train.Saver``, as DeepLabCut
  saves) and ``pose_cfg.yaml`` (with ``all_joints_names``);
- ``reference.npz``: ``image{i}`` (RGB uint8, the images of IMAGES.npz at their own sizes),
  ``part_pred{i}``, ``locref{i}``, ``part_pred_interm{i}`` (NHWC, as TensorFlow computed them) and
  ``pose{i}`` (J x 3: x, y, score, DeepLabCut's own ``extract_cnn_output`` + ``argmax_pose_predict``).

``CROSSPOSE_DLC2_REFERENCE=OUT_DIR pytest tests/convert/test_dlc2_full_size.py`` then checks
crosspose against them. Imports only the standard library, numpy, yaml (DeepLabCut's config reader
needs it), TensorFlow and DeepLabCut. DeepLabCut's package ``__init__`` files import its whole GUI
and training stack; the network code needs none of it, so the packages are entered without running
them, and the two modules on the import path that only multi-animal / OpenVINO inference uses are
replaced by empty stand-ins.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import sys
import types
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

MACAQUE = ["nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
           "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
           "right_knee", "left_ankle", "right_ankle"]
FULL_HUMAN = ["ankle1", "knee1", "hip1", "hip2", "knee2", "ankle2", "wrist1", "elbow1", "shoulder1",
              "shoulder2", "elbow2", "wrist2", "chin", "forehead"]
NETWORKS = {"resnet_50": (MACAQUE, 5), "resnet_101": (FULL_HUMAN, 12)}
TARGET_LOGIT = 10.0  # largest |part_pred| on the images, as a trained network's
TARGET_LOCREF_STD = 0.5


def _enter_deeplabcut() -> None:
    """Make DeepLabCut's TensorFlow network modules importable without its package-level imports."""
    spec = importlib.util.find_spec("deeplabcut")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("this Python has no deeplabcut package (pip install --no-deps deeplabcut==3.0.2)")
    root = Path(next(iter(spec.submodule_search_locations)))
    base = "deeplabcut.pose_estimation_tensorflow"
    for name in ("deeplabcut", base, f"{base}.core", f"{base}.core.openvino", f"{base}.datasets", f"{base}.nnets"):
        module = types.ModuleType(name)
        module.__path__ = [str(root.joinpath(*name.split(".")[1:]))]
        sys.modules[name] = module
    stand_ins = {f"{base}.core.predict_multianimal": {}, f"{base}.core.openvino.session": {"OpenVINOSession": None}}
    for name, attrs in stand_ins.items():
        module = types.ModuleType(name)
        module.__dict__.update(attrs)
        sys.modules[name] = module
    import deeplabcut.pose_estimation_tensorflow._tf_legacy  # noqa: F401  (DeepLabCut's TF-Keras settings)
    from deeplabcut.pose_estimation_tensorflow.datasets.utils import Batch

    sys.modules[f"{base}.datasets"].Batch = Batch  # type: ignore[attr-defined]


def _pose_cfg(folder: Path, net_type: str, names: list[str], interm: int) -> dict[str, Any]:
    """DeepLabCut's pose_cfg.yaml template with this network's settings, read back by DeepLabCut."""
    import yaml
    from deeplabcut.pose_estimation_tensorflow.config import load_config

    template = Path(sys.modules["deeplabcut"].__path__[0]) / "pose_cfg.yaml"  # the wheel's template
    cfg = yaml.safe_load(template.read_text())
    cfg.update(net_type=net_type, num_joints=len(names), all_joints=[[i] for i in range(len(names))],
               all_joints_names=names, intermediate_supervision=True, intermediate_supervision_layer=interm,
               location_refinement=True, locref_stdev=7.2801, mean_pixel=[123.68, 116.779, 103.939],
               stride=8.0, weight_decay=0.0001, init_weights=str(folder / "snapshot-1000"),
               dataset_type="imgaug", batch_size=1)
    path = folder / "pose_cfg.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return dict(load_config(str(path)))


def build(folder: Path, net_type: str, images: list[Any], seed: int) -> None:
    """Build, calibrate, save and run one network."""
    import numpy as np
    import tensorflow as tf
    from deeplabcut.pose_estimation_tensorflow.core.predict import argmax_pose_predict, extract_cnn_output
    from deeplabcut.pose_estimation_tensorflow.nnets import resnet  # noqa: F401  (registers PoseResnet)
    from deeplabcut.pose_estimation_tensorflow.nnets.factory import PoseNetFactory

    tf1 = tf.compat.v1
    tf1.disable_eager_execution()
    folder.mkdir(parents=True, exist_ok=True)
    names, interm = NETWORKS[net_type]
    cfg = _pose_cfg(folder, net_type, names, interm)
    rng = np.random.default_rng(seed)
    graph = tf.Graph()
    with graph.as_default():
        tf1.set_random_seed(seed)
        inputs = tf1.placeholder(tf.float32, shape=[1, None, None, 3])
        heads = PoseNetFactory.create(cfg).get_net(inputs)
        global_step = tf1.train.get_or_create_global_step()
        fetch = {k: heads[k] for k in ("part_pred", "locref", "part_pred_interm")}
        fetch["part_prob"] = tf.sigmoid(heads["part_pred"])  # DeepLabCut's add_inference_layers
        variables = {v.op.name: v for v in tf1.global_variables()}
        config = tf1.ConfigProto(intra_op_parallelism_threads=2, inter_op_parallelism_threads=1)
        with tf1.Session(graph=graph, config=config) as sess:
            sess.run(tf1.global_variables_initializer())
            sess.run(global_step.assign(1000))

            def assign(name: str, value: np.ndarray) -> None:
                variables[name].load(value.astype(np.float32), sess)

            for name, var in variables.items():
                shape = var.shape.as_list()
                if name.endswith("BatchNorm/gamma"):
                    assign(name, rng.uniform(0.8, 1.2, shape))
                elif name.endswith(("BatchNorm/beta", "/biases")):
                    assign(name, rng.normal(0.0, 0.05, shape))
            feeds = [{inputs: im[None].astype(np.float32)} for im in images]
            # layer by layer, in graph order: each BatchNorm's statistics are those of its input on the
            # images (with the earlier layers already calibrated), then perturbed as training leaves them
            norms = [op for op in graph.get_operations() if op.type.startswith("FusedBatchNorm")]
            for op in norms:
                scope = op.name.rsplit("/", 1)[0]
                x = [sess.run(op.inputs[0], f) for f in feeds]
                flat = np.concatenate([v.reshape(-1, v.shape[-1]) for v in x])
                mean, var = flat.mean(0), flat.var(0) + 1e-3
                assign(f"{scope}/moving_mean", mean + rng.uniform(-0.05, 0.05, mean.shape) * np.sqrt(var))
                assign(f"{scope}/moving_variance", var * rng.uniform(0.8, 1.25, var.shape))
            for head, key, target in (("part_pred", "part_pred", None), ("intermediate_supervision",
                                      "part_pred_interm", None), ("locref_pred", "locref", TARGET_LOCREF_STD)):
                weights = f"pose/{head}/block4/weights"
                out = [sess.run(fetch[key], f) for f in feeds]
                bias = sess.run(variables[f"pose/{head}/block4/biases"])
                centred = np.concatenate([(o - bias).ravel() for o in out])
                scale = (target / centred.std()) if target else TARGET_LOGIT / np.abs(centred).max()
                assign(weights, sess.run(variables[weights]) * scale)
            tf1.train.Saver(max_to_keep=None).save(sess, str(folder / "snapshot"), global_step=1000)
            ref: dict[str, np.ndarray] = {}
            for i, (im, f) in enumerate(zip(images, feeds, strict=True)):
                got = sess.run(fetch, f)
                for key in ("part_pred", "locref", "part_pred_interm"):
                    ref[f"{key}{i}"] = got[key]
                ref[f"image{i}"] = im
                # copies: extract_cnn_output scales its squeezed view of locref in place
                scmap, locref = extract_cnn_output([got["part_prob"].copy(), got["locref"].copy()], cfg)
                ref[f"pose{i}"] = argmax_pose_predict(scmap, locref, cfg["stride"])
                print(f"{net_type} image{i} {im.shape}: part_pred {got['part_pred'].shape} "
                      f"|max| {np.abs(got['part_pred']).max():.2f}, interm |max| "
                      f"{np.abs(got['part_pred_interm']).max():.2f}, locref sd {got['locref'].std():.3f}", flush=True)
    np.savez_compressed(folder / "reference.npz", **ref)
    (folder / "versions.txt").write_text(f"tensorflow {tf.__version__}\n"
                                         f"deeplabcut {importlib.metadata.version('deeplabcut')}\n")


def main(out: Path, images_npz: Path, nets: list[str]) -> None:
    import numpy as np

    _enter_deeplabcut()
    data = np.load(images_npz)
    images = [data[k] for k in sorted(k for k in data.files if k.startswith("image"))]
    for seed, net_type in enumerate(nets):
        build(out / net_type, net_type, images, seed)
        print(f"wrote {out / net_type}", flush=True)


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:] or list(NETWORKS))
