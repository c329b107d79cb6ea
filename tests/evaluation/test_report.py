"""The report: Table-1 markdown side by side, figures, skeleton drawings, the command."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from crosspose import cli
from crosspose.core.errors import DataFormatError
from crosspose.core.skeletons import MPII
from crosspose.data.coco import load_coco_keypoints, save_coco_keypoints
from crosspose.evaluation.report import draw_predictions, markdown_table, write_report
from crosspose.evaluation.results import load_metrics, write_metrics
from crosspose.evaluation.score import evaluate


def _gt(tmp_path: Path, n: int = 4, images: bool = True) -> Path:
    rng = np.random.default_rng(1)
    imgs, anns = [], []
    for i in range(n):
        name = f"img{i}.png"
        if images:
            canvas = np.full((160, 120, 3), 40 + 40 * i, np.uint8)
            cv2.rectangle(canvas, (30, 20), (90, 150), (200, 180, 160), -1)
            cv2.imwrite(str(tmp_path / name), canvas)
        kp = np.c_[rng.uniform(30, 90, 16), rng.uniform(20, 150, 16), np.full(16, 2)]
        kp[5] = 0  # one absent joint per person
        imgs.append({"id": i + 1, "file_name": name, "width": 120, "height": 160})
        anns.append({"id": i + 1, "image_id": i + 1, "category_id": 1, "keypoints": kp.ravel().tolist(),
                     "head_box": [50, 10, 70, 30], "scale": 0.7})
    return save_coco_keypoints(tmp_path / "gt.json", imgs, anns, MPII.coco_category())


def _preds(gt_path: Path, noise: float, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    gt = load_coco_keypoints(gt_path)
    out = []
    for a in gt.instances():
        kp = gt.keypoints(a)
        err = rng.normal(0, noise, (16, 2))
        conf = np.clip(1 - np.hypot(*err.T) / 40 + rng.normal(0, 0.1, 16), 0, 1)
        out.append({"image_id": a["image_id"], "category_id": 1, "score": 1.0,
                    "keypoints": np.c_[kp[:, :2] + err, conf].ravel().tolist()})
    return out


def _runs(tmp_path: Path) -> tuple[Path, dict[str, dict]]:
    gt_path = _gt(tmp_path)
    gt = load_coco_keypoints(gt_path)
    return gt_path, {"benchmark": evaluate(gt, _preds(gt_path, 8, 0)),
                     "transfer": evaluate(gt, _preds(gt_path, 4, 1))}


def _png_ok(path: Path) -> tuple[int, int]:
    img = cv2.imread(str(path))
    assert img is not None, f"{path} is not a readable image"
    assert img.std() > 5, f"{path} is blank"
    return img.shape[:2]


def test_write_report_table_and_figures(tmp_path):
    _, runs = _runs(tmp_path)
    write_metrics(runs["transfer"], tmp_path / "transfer" / "metrics.json")
    md = write_report({"benchmark": runs["benchmark"], "transfer": tmp_path / "transfer"}, tmp_path / "rep",
                      title="Table 1", notes="two noise levels")
    text = md.read_text()
    assert text.startswith("# Table 1\n\ntwo noise levels")
    assert "| Metric | benchmark | transfer |" in text
    for name in ("benchmark", "transfer"):
        d = runs[name]["detection"]
        assert f"{d['roc_auc']:.2f}" in text and f"{runs[name]['pckh']['mean']:.2f}" in text
    auc_row = next(line for line in text.splitlines() if line.startswith("| AUC |"))
    assert auc_row == (f"| AUC | {runs['benchmark']['detection']['roc_auc']:.2f} | "
                       f"{runs['transfer']['detection']['roc_auc']:.2f} |")
    assert "| Normaliser | head_box | head_box |" in text and "0.6 x head-box diagonal" in text
    for png in ("roc.png", "confidence_histograms.png", "pckh_per_joint.png"):
        assert f"]({png})" in text
        _png_ok(tmp_path / "rep" / png)


def test_markdown_marks_undefined_values():
    m = {"pckh": {"mean": 100.0, "at_0_1": None, "auc": None, "per_joint": {}},
         "detection": {"roc_auc": None, "f1": 1.0, "precision": 1.0, "recall": 1.0, "threshold": 1.0},
         "localization": {"rmse_normalized": 0.0, "mean_error_normalized": 0.0, "rmse": 0.0},
         "counts": {"correct": 7207, "present": 7700}, "joints": ["a"], "normalizer": {"name": "bbox"}}
    table = markdown_table({"x": m})
    assert "| AUC | n/a |" in table and "| Correct keypoints | 7,207 |" in table


def test_draw_predictions_with_and_without_images(tmp_path):
    gt_path, _ = _runs(tmp_path)
    gt = load_coco_keypoints(gt_path)
    h, w = _png_ok(draw_predictions(gt, _preds(gt_path, 5, 2), tmp_path / "draw.png", n=3))
    assert w > h  # three panels side by side
    for f in tmp_path.glob("img*.png"):
        f.unlink()
    _png_ok(draw_predictions(gt, _preds(gt_path, 5, 2), tmp_path / "noimg.png", n=6))


def test_report_command(tmp_path, capsys):
    gt_path, runs = _runs(tmp_path)
    for name, m in runs.items():
        write_metrics(m, tmp_path / name / "metrics.json")
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps(_preds(gt_path, 4, 1)))
    out = tmp_path / "report"
    assert cli.main(["report", f"bench={tmp_path / 'benchmark' / 'metrics.json'}", str(tmp_path / "transfer"),
                     "--out", str(out), "--draw", str(gt_path), str(pred), "--samples", "2"]) == 0
    text = (out / "report.md").read_text()
    assert "| Metric | bench | transfer |" in text and "](predictions.png)" in text
    _png_ok(out / "predictions.png")
    assert "report.md" in capsys.readouterr().out
    # a file that is not a metrics.json is one clear error
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    assert cli.main(["report", str(bad), "--out", str(out)]) == 2
    with pytest.raises(DataFormatError, match="missing pckh"):
        load_metrics(bad)
