"""`crosspose benchmark`: a tiny crosspose-only run (DeepLabCut skipped) and the report's structure.

Nothing here is timed: the numbers of a 64 px resnet18 on a shared machine mean nothing, only that
every stage ran and was reported.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from crosspose.benchmark.dlc_runner import conflicting_pins, dlc_constraints, dlc_env
from crosspose.benchmark.measure import summarise_passes, summarise_steps
from crosspose.benchmark.report import emulation_note, format_report
from crosspose.benchmark.run import bf16_peak_tflops, make_synthetic_images
from crosspose.cli import main as cli_main
from crosspose.data.coco import load_coco_keypoints


def test_summarise_steps_drops_warmup_and_takes_median_of_repeats() -> None:
    # steps of 1 s (warm-up: 5 s), batch 2 -> 2 img/s; one slow repeat must not move the median
    starts = [0.0, 5.0, 6.0, 7.0, 8.0, 9.0, 19.0, 20.0]
    out = summarise_steps(starts, [2] * len(starts), warmup=1, repeats=3)
    assert out["steps"] == 6
    assert out["repeats"] == pytest.approx([2.0, 2.0, 4 / 11])
    assert out["images_per_s"] == pytest.approx(2.0)
    assert summarise_passes([9.0, 2.0, 4.0, 2.0], images=8)["images_per_s"] == pytest.approx(4.0)


def test_synthetic_images_serve_both_tools(tmp_path: Path) -> None:
    coco = make_synthetic_images(tmp_path / "images", count=3, size=32)
    data = load_coco_keypoints(coco)
    assert len(data.instances()) == 3 and data.num_keypoints == 16
    assert all(data.image_path(i).is_file() for i in data.images)
    manifest = json.loads((tmp_path / "images" / "keypoints.json").read_text())
    assert len(manifest["images"]) == 3 and len(manifest["images"][0]["keypoints"]) == 16


def test_dlc_constraints_drop_only_clashing_pins(tmp_path: Path) -> None:
    installed = {"albumentations": "2.0.8", "filelock": "4.2.11", "torch": "2.14.1", "numpy": "2.4.6",
                 "crosspose": "0.1.0"}
    kept = dlc_constraints(tmp_path / "out" / "dlc.txt", installed).read_text().split()
    assert kept == ["numpy==2.4.6", "torch==2.14.1"]
    from_env = dlc_constraints(tmp_path / "env.txt").read_text().split()
    assert any(line.startswith("torch==") for line in from_env)
    assert not any(line.startswith(("albumentations==", "crosspose==")) for line in from_env)
    assert bf16_peak_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert bf16_peak_tflops("NVIDIA H100 PCIe") == 756.0
    assert bf16_peak_tflops("Some Unknown GPU") is None
    pip = ("ERROR: Cannot install deeplabcut==3.0.2\n    deeplabcut 3.0.2 depends on pandas<3 and >=2.2\n"
           "    The user requested (constraint) pandas==3.1.1\n")
    assert conflicting_pins(pip) == {"pandas"}


TINY = ["--backbone", "resnet18", "--size", "32", "--batch", "2", "--images", "4", "--warmup", "1",
        "--repeats", "1", "--steps", "1", "--workers", "0", "--device", "cpu", "--video-frames", "0", "--rounds", "1"]


@pytest.mark.slow  # ~28 s of child processes; `make test` stays under 5 min
def test_crosspose_side_runs_and_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from crosspose.core import hardware

    # a CPU without bf16 / int8 units: those rows are marked, not run (and the flags are printed)
    monkeypatch.setattr(hardware, "read_cpu_features",
                        lambda *a, **k: hardware.CpuFeatures("Old CPU", frozenset({"avx2"}), "AVX2"))
    out_json = tmp_path / "report.json"
    status = cli_main(["benchmark", "--workdir", str(tmp_path / "run"), "--skip-dlc", *TINY, "--gn-backbone", "",
                       "--precisions", "fp32,bf16,int8", "--json", str(out_json)])
    text = capsys.readouterr().out
    assert status == 0, text
    report = json.loads(out_json.read_text())
    cp, apart = report["crosspose"]["fp32"], report["crosspose"]["stages"]
    for stage in ("loading", "model_step"):
        assert apart["train"][stage]["images_per_s"] > 0, stage
    assert "whole_step" not in apart["train"]  # the Lightning step is timed once, by the fit-alone row
    # the headline row is the Lightning fit alone (its memory is what `crosspose fit` takes)
    assert cp["train"]["whole_step"]["images_per_s"] > 0 and "model_step" not in cp["train"]
    assert cp["infer"]["whole"]["images_per_s"] > 0 and cp["infer"]["images"] == 4
    assert apart["train"]["train_flops_per_image"] > apart["train"]["infer_flops_per_image"] > 0
    assert cp["train"]["peak_rss_bytes"] is None or cp["train"]["peak_rss_bytes"] > 0
    stages = [row["stage"] for row in cp["train"]["main_memory"]]
    assert stages[0].startswith("imports") and stages[-1].startswith("Lightning fit")
    assert "FLOP count (one image)" not in stages and "FLOP count (one image)" in [
        row["stage"] for row in apart["train"]["main_memory"]]
    assert report["crosspose"]["bf16"]["unsupported"].startswith("not supported on this CPU")
    assert report["crosspose"]["int8"]["unsupported"].startswith("not supported on this CPU")
    assert "train" not in report["crosspose"]["bf16"]
    assert report["machine"]["cpu_flags"] == ["avx2"]
    ceilings = report["machine"]["matmul"]["gmac_per_s"]
    assert ceilings["fp32"] > 0 and ceilings["bf16"] is None and ceilings["int8"] is None
    assert "not supported on this CPU (no avx512_bf16" in text and "flags for reduced precision: avx2" in text
    assert "(absent: avx512_bf16 amx_bf16 amx_int8 amx_tile avx512_vnni avx_vnni avx512f)" in text
    loader = apart["train"]["loader_cpu"]
    assert loader["images"] >= 4 and loader["skipped_batches"] == 2 and loader["cpu_s_per_image"] > 0
    assert "training: model step alone" in text and "Machine:" in text and "164,000" in text
    assert "GPU on paper" in text and "Where crosspose's training memory goes" in text
    assert format_report(report) in text


@pytest.mark.slow
def test_every_row_runs_on_a_tiny_network(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """GroupNorm row, bf16 training and inference, int8 through ONNX Runtime (whatever this CPU has),
    and a second round of every training row."""
    from crosspose.core.hardware import precision_support, read_cpu_features

    out_json = tmp_path / "report.json"
    status = cli_main(["benchmark", "--workdir", str(tmp_path / "run"), "--skip-dlc", *TINY, "--rounds", "2",
                       "--gn-backbone", "resnet50_gn", "--json", str(out_json)])
    text = capsys.readouterr().out
    assert status == 0, text
    report = json.loads(out_json.read_text())["crosspose"]
    assert report["gn"]["backbone"] == "resnet50_gn" and report["gn"]["train"]["whole_step"]["images_per_s"] > 0
    assert report["gn"]["train"]["norm_kernel"].startswith("norm kernel: ")
    assert report["fp32"]["train"]["norm_kernel"] == report["gn"]["train"]["norm_kernel"]  # BatchNorm: while training
    assert report["fp32"]["infer"]["allocator"].startswith("allocator: ")  # as `crosspose predict` runs
    assert f"crosspose GroupNorm training: {report['gn']['train']['norm_kernel']}." in text
    assert f"crosspose BatchNorm training: {report['fp32']['train']['norm_kernel']}." in text
    for key in ("fp32", "gn"):
        rounds = report[key]["train"]["whole_step"]["rounds"]
        assert len(rounds) == 2 and all(r > 0 for r in rounds), key
        assert len(report[key]["infer"]["whole"]["rounds"]) == 2, key
    assert "training and inference: the mean of 2 rounds run in alternating order" in text
    support = precision_support(read_cpu_features())
    if support["bf16"] is None:
        assert report["bf16"]["infer"]["whole"]["images_per_s"] > 0
        assert report["bf16"]["train"]["whole_step"]["images_per_s"] > 0
    if support["int8"] is None:
        result = report["int8"]["result"]
        assert result["ort_int8"]["whole"]["images_per_s"] > 0 and result["quantize"]["quantize_nodes"] > 0
        assert len(result["ort_int8"]["whole"]["rounds"]) == 2  # round 2 timed the files round 1 wrote
        assert (tmp_path / "run" / "int8" / "int8.onnx").is_file()


def test_int8_rounds_time_the_files_the_first_pass_wrote(tmp_path: Path) -> None:
    from crosspose.benchmark.phases import int8_phase

    make_synthetic_images(tmp_path / "images", 4, 32)  # the images, and their annotations beside them
    folder = tmp_path / "images"
    spec = {"backbone": "resnet18", "channels_last": True, "compile": False, "size": 32, "batch": 2,
            "workers": 0, "repeats": 1, "threads": 1, "folder": str(folder), "calibration_images": 4,
            "onnx_dir": str(tmp_path / "int8")}
    first = int8_phase(spec)
    written = {n: (tmp_path / "int8" / f"{n}.onnx").stat().st_mtime_ns for n in ("fp32", "int8")}
    assert first["quantize"]["quantize_nodes"] > 0
    again = int8_phase({**spec, "reuse_onnx": True})
    assert "quantize" not in again and again["ort_int8"]["whole"]["images_per_s"] > 0
    assert {n: (tmp_path / "int8" / f"{n}.onnx").stat().st_mtime_ns for n in ("fp32", "int8")} == written
    assert again["int8_heatmap_rel_rmse"] == pytest.approx(first["int8_heatmap_rel_rmse"])


def test_accuracy_phase_compares_each_precision_with_fp32(tmp_path: Path) -> None:
    import torch

    from crosspose.benchmark.phases import accuracy_phase
    from crosspose.core.skeletons import MPII
    from crosspose.training.card import save_module
    from crosspose.training.module import PoseEstimationModule

    coco = make_synthetic_images(tmp_path / "images", 4, 32)
    torch.manual_seed(0)
    module = PoseEstimationModule(num_keypoints=len(MPII.keypoints), keypoint_names=list(MPII.keypoints),
                                  backbone="resnet18", pretrained=False)
    checkpoint = save_module(module, tmp_path / "random.ckpt", input_size=(32, 32))
    out = accuracy_phase({"checkpoint": str(checkpoint), "test_file": str(coco), "accuracy_size": 32,
                          "threads": 1, "backbone": "resnet18", "channels_last": True, "compile": False})
    assert out["instances"] == 4 and out["input_size"] == 32
    assert out["fp32"]["px_mean"] == 0.0 and out["fp32"]["px_median"] == 0.0
    for precision in ("bf16", "int8"):
        row = out[precision]
        assert 0.0 <= row["pckh"] <= 100.0, precision  # percent, as the report prints it
        # distances in original pixels, inside the padded crop of a 32 px image
        assert 0.0 <= row["px_median"] and 0.0 <= row["px_mean"] < 2 * 32 * 2**0.5, precision
        assert row["px_mean_detected"] is None or row["px_mean_detected"] >= 0.0, precision


def test_report_marks_rows_and_names_margins() -> None:
    settings = {"size": 32, "batch": 2, "device": "cpu", "repeats": 1, "backbone": "resnet50",
                "precision": "32", "channels_last": True, "compile": False, "workers": 0}
    train = {"whole_step": {"images_per_s": 4.0}, "train_flops_per_image": 5e10, "infer_flops_per_image": 1.6e10,
             "loader_cpu_s_per_image": 0.002}
    no_bf16 = "not supported on this CPU (no avx512_bf16)"
    accuracy = {"instances": 3, "test_file": "t.json", "input_size": 64, "checkpoint": "c",
                "fp32": {"pckh": 0.8, "px_mean": 0.0, "px_median": 0.0, "px_mean_detected": 0.0},
                "int8": {"pckh": 0.79, "px_mean": 0.4, "px_median": 0.2, "px_mean_detected": 0.3}}
    int8 = {"result": {"ort_int8": {"whole": {"images_per_s": 20.0}}, "ort_fp32": {"whole": {"images_per_s": 12.0}},
                       "int8_heatmap_rel_rmse": 0.03}}
    matmul = {"gmac_per_s": {"fp32": 100.0, "bf16": None, "int8": 400.0}, "unsupported": {"bf16": no_bf16},
              "size": 2048, "threads": 2}
    report = {"settings": settings, "machine": {"cpu": "x", "cores": 2, "torch": "t", "torch_threads": 2,
                                                "matmul": matmul},
              "precision_support": {"fp32": None, "bf16": no_bf16, "int8": None},
              "crosspose": {"fp32": {"backbone": "resnet50", "train": {"whole_step": {"images_per_s": 4.0}},
                                     "infer": {"whole": {"images_per_s": 10.0}}},
                            "stages": {"backbone": "resnet50", "train": train},
                            "gn": {"backbone": "resnet50_gn", "train_error": "boom"},
                            "bf16": {"backbone": "resnet50", "unsupported": no_bf16},
                            "accuracy": accuracy, "int8": int8},
              "deeplabcut": {"resnet50": {"available": True, "train": {"summary": {"images_per_s": 2.0}},
                                          "infer": {"summary": {"images_per_s": 5.0}}},
                             "resnet50_gn": {"available": False, "reason": "install failed (pip)"}}}
    text = format_report(report)
    assert "`resnet50` (BatchNorm)" in text and "unavailable: install failed (pip)" in text
    assert "| same architecture, BatchNorm | 2.00x | 2.00x |" in text
    assert "int8 (ONNX Runtime) vs DeepLabCut `resnet50` fp32 | | 4.00x |" in text
    assert f"| bf16 autocast (PyTorch) | {no_bf16} |" in text
    assert "| int8 static QDQ (ONNX Runtime) | 20.00 | 2.00x | 3.00 % | 0.40 / 0.20; 0.30 | 0.7900 |" in text
    assert "train_error: boom" in text
    # each inference row against its precision's ceiling: 8 GMAC per image (16 GFLOP forward)
    assert "| DeepLabCut `resnet50` | fp32 | 5.00 | 40 | 40 % |" in text
    assert "| crosspose int8 (ONNX Runtime; output layers fp32) | int8 | 20.00 | 160 | 40 % |" in text
    assert f"; bf16: {no_bf16}." in text
    # on paper: 20 % of 989 TFLOP/s over 50 GFLOP per image = 3,956 img/s; x 2 ms of loader CPU = 7.9 cores
    assert "| 20 % | 3,956 | 7.9 |" in text
    # a failed accuracy phase says so (not that no checkpoint was given)
    report["crosspose"]["accuracy"] = {"error": "exit 1: t.json: image listed but missing"}
    text = format_report(report)
    assert "accuracy cost (the accuracy phase failed: exit 1: t.json: image listed but missing)" in text
    # the GroupNorm row says how its norm ran
    report["crosspose"]["gn"] = {"backbone": "resnet50_gn", "train": {"norm_kernel": "norm kernel: fused (x)",
                                                                      "whole_step": {"images_per_s": 3.0}}}
    assert "crosspose GroupNorm training: norm kernel: fused (x)." in format_report(report)
    report["crosspose"]["fp32"]["infer"]["allocator"] = "allocator: freed memory kept (x)"
    assert ("crosspose inference (image folder) ran with allocator: freed memory kept (x), as `crosspose predict` "
            "does; training with glibc's default. DeepLabCut: its C library's default") in format_report(report)
    report["settings"]["dlc_malloc"] = "keep"
    text = format_report(report)
    assert "| DeepLabCut 3.0.2 (freed memory kept) | `resnet50` (BatchNorm) | fp32 | 2.00 |" in text
    assert "DeepLabCut: freed memory kept (--dlc-malloc keep: GLIBC_TUNABLES=glibc.malloc.mmap_max=0:" in text


def test_an_emulated_cpu_is_named_at_the_top_of_the_report() -> None:
    assert emulation_note({"cpu": "x"}) == []
    note = " ".join(emulation_note({"isa_limit": "AVX2", "torch_capability": "AVX2", "mkl_enable_instructions": "AVX2",
                                    "native_cflags": "-O3 -march=native -mno-avx512f"}))
    assert "limited to AVX2 (`ONEDNN_MAX_CPU_ISA`)" in note and "kernels to AVX2" in note
    assert "matrix products to AVX2" in note and "built without AVX-512" in note
    assert "ONNX Runtime ignores the limit" in note
    note = " ".join(emulation_note({"isa_limit": "AVX512_CORE", "torch_capability": "AVX512",
                                    "native_cflags": "-O3 -march=native"}))
    assert "built for this CPU" in note and "kernels to AVX512 (`ATEN_CPU_CAPABILITY`)" in note
    assert "matrix products to this CPU’s best (not set)" in note


def test_dlc_malloc_keep_reaches_deeplabcuts_processes_and_the_report() -> None:
    assert dlc_env({"dlc_malloc": "default"}) is None and dlc_env({}) is None  # as DeepLabCut's users run it
    assert dlc_env({"dlc_malloc": "keep"}) == {
        "GLIBC_TUNABLES": "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=4294967296"}


@pytest.mark.skipif(sys.platform != "linux", reason="glibc tunables")
def test_glibc_reads_the_tunables_dlc_malloc_keep_sets(tmp_path: Path) -> None:
    """The tunables do what the report says: a freed 64 MiB block comes back without faulting in again."""
    from crosspose.benchmark.measure import run_child

    probe = ("import json, resource, ctypes\n"
             "libc = ctypes.CDLL('libc.so.6'); libc.malloc.restype = ctypes.c_void_p\n"
             "libc.free.argtypes = [ctypes.c_void_p]; n = 64 << 20\n"
             "def touch():\n"
             "    p = libc.malloc(n); ctypes.memset(p, 1, n); libc.free(p)\n"
             "touch(); before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt; touch()\n"
             "print(json.dumps({'faults': resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before}))\n")
    default, _, error = run_child([sys.executable, "-c", probe], env=dlc_env({"dlc_malloc": "default"}))
    kept, _, error_kept = run_child([sys.executable, "-c", probe], env=dlc_env({"dlc_malloc": "keep"}))
    assert default is not None and kept is not None, error or error_kept
    assert default["faults"] >= 16_000  # mmap'd and unmapped: all 16,384 pages fault in again
    assert kept["faults"] < 1_000


def test_bad_size_is_a_config_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = cli_main(["benchmark", "--workdir", str(tmp_path), "--skip-dlc", "--size", "30"])
    assert status == 2
    assert "multiple of 16" in capsys.readouterr().err


@pytest.mark.skipif(sys.platform != "linux", reason="memory sampling reads /proc")
def test_tree_memory_sampler_sees_the_process(tmp_path: Path) -> None:
    from crosspose.benchmark.measure import run_child

    result, peak, error = run_child([sys.executable, "-c", "import json; b = bytearray(50_000_000); "
                                     "import time; time.sleep(0.3); print(json.dumps({'ok': len(b)}))"])
    assert error == "" and result == {"ok": 50_000_000}
    assert peak is not None and peak > 50_000_000


@pytest.mark.skipif(sys.platform != "linux", reason="memory sampling reads /proc")
def test_sampler_names_forkserver_and_its_workers(tmp_path: Path) -> None:
    from crosspose.benchmark.measure import run_child

    script = tmp_path / "fs.py"
    script.write_text("import json, multiprocessing as mp, time\nif __name__ == '__main__':\n"
                      "    p = mp.get_context('forkserver').Process(target=time.sleep, args=(1.0,))\n"
                      "    p.start(); p.join(); print(json.dumps({'ok': 1}))\n")
    memory: dict = {}
    result, _, error = run_child([sys.executable, str(script)], memory=memory)
    assert result == {"ok": 1}, error
    roles = [p["role"] for p in memory["processes"]]
    assert roles[0] == "main" and "forkserver (data code preloaded)" in roles and "child 1" in roles
    assert memory["peak_pss_bytes"] <= memory["peak_rss_bytes"]


def test_sampler_reads_pss_only_when_rss_grows_or_rarely(tmp_path: Path) -> None:
    """smaps_rollup walks the page tables of the measured process: read 10x a second it slowed training ~18 %."""
    import subprocess

    from crosspose.benchmark.measure import TreeMemorySampler

    script = tmp_path / "steady.py"
    script.write_text("import time\nblock = b'x' * (64 << 20)\nprint('ready', flush=True)\ntime.sleep(1.5)\n")
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    with TreeMemorySampler(proc.pid, interval=0.02, pss_interval=60.0) as sampler:
        proc.communicate(timeout=60)
    assert sampler.samples >= 20
    assert sampler.pss_reads <= sampler.samples // 3, (sampler.pss_reads, sampler.samples)
    assert 64 << 20 <= sampler.peak_pss_bytes <= sampler.peak_bytes


DLC_VENV = Path(__file__).resolve().parents[2] / ".bench" / "dlc-venv"


@pytest.mark.slow
@pytest.mark.skipif(not (DLC_VENV / "bin" / "python").is_file(),
                    reason=f"DeepLabCut 3.0.2 is not installed in {DLC_VENV} (crosspose benchmark creates it)")
def test_deeplabcut_side_trains_infers_and_repeats_in_its_own_environment(tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    out_json = tmp_path / "bench.json"
    status = cli_main(["benchmark", "--workdir", str(tmp_path / "run"), "--skip-crosspose", "--no-install",
                       "--dlc-venv", str(DLC_VENV), "--dlc-backbones", "resnet50", "--size", "64", "--batch", "4",
                       "--images", "16", "--warmup", "1", "--repeats", "1", "--steps", "2", "--video-frames", "0",
                       "--rounds", "2", "--json", str(out_json)])
    assert status == 0
    dlc = json.loads(out_json.read_text())["deeplabcut"]["resnet50"]
    assert dlc["available"], dlc.get("reason")
    for phase in ("train", "infer"):
        summary = dlc[phase]["summary"]
        assert len(summary["rounds"]) == 2 and all(r > 0 for r in summary["rounds"]), phase
        assert summary["images_per_s"] == pytest.approx(sum(summary["rounds"]) / 2)
        assert dlc[phase]["peak_rss_bytes"] > 100 * 2**20 and dlc[phase]["memory"]["peak_pss_bytes"] > 0, phase
    assert "(no crosspose row to compare with)" in capsys.readouterr().out
