"""The markdown report of ``crosspose benchmark``: like-for-like rows, precision, memory, GPU on paper."""

from __future__ import annotations

from typing import Any

from crosspose.benchmark.matmul import ceiling_lines, ceiling_rows
from crosspose.benchmark.rounds import round_ratios
from crosspose.core.hardware import REDUCED_PRECISION_FLAGS

__all__ = ["DLC_KEEP_FREED_MEMORY", "DLC_VERSION", "H100_BF16_TFLOPS", "PAPER_STEPS", "bottleneck_note",
           "dlc_keeps_memory", "format_report", "gpu_on_paper", "video_table"]

DLC_VERSION = "3.0.2"
DLC_KEEP_FREED_MEMORY = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=4294967296"
"""``GLIBC_TUNABLES`` that make glibc keep freed memory, as ``crosspose analyze`` does by ``mallopt``
(``--dlc-malloc keep``; DeepLabCut cannot be told from inside: glibc reads them when a process starts)."""
PAPER_STEPS = 164_000
"""Iterations of the paper's fine-tune (batch 8)."""
H100_BF16_TFLOPS = 989.0
"""Dense bf16 tensor-core peak of an H100 SXM (data sheet), for the on-paper GPU estimate."""

_NORM = {"resnet50": "BatchNorm", "resnet50_gn": "GroupNorm"}


def _fmt(v: float | None, digits: int = 2) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def _mib(v: int | None) -> str:
    return "n/a" if v is None else f"{v / 2**20:,.0f} MiB"


def _ratio(a: float | None, b: float | None) -> str:
    return "n/a" if not a or not b else f"{a / b:.2f}x"


def _rate(phase: dict[str, Any] | None, *keys: str) -> float | None:
    node: Any = phase or {}
    for key in keys:
        node = (node or {}).get(key)
    return node if isinstance(node, int | float) else None


def _memory(phase: dict[str, Any] | None) -> str:
    """'PSS (RSS summed)' of a phase's process tree."""
    if not phase:
        return "n/a"
    mem = phase.get("memory") or {}
    pss, rss = mem.get("peak_pss_bytes"), phase.get("peak_rss_bytes")
    if pss is None:
        return _mib(rss)
    return f"{_mib(pss)} ({_mib(rss)})"


def _backbone(name: str) -> str:
    norm = _NORM.get(name, "BatchNorm" if not name.endswith("_gn") else "GroupNorm")
    return f"`{name}` ({norm})"


def dlc_keeps_memory(settings: dict[str, Any]) -> bool:
    """Whether DeepLabCut's phases run with freed memory kept (``--dlc-malloc keep``)."""
    return settings.get("dlc_malloc") == "keep"


def _dlc_tool(settings: dict[str, Any]) -> str:
    """DeepLabCut's name in a table row, marked when it ran with freed memory kept (--dlc-malloc keep)."""
    return f"DeepLabCut {DLC_VERSION}" + (" (freed memory kept)" if dlc_keeps_memory(settings) else "")


def _dlc_allocator(settings: dict[str, Any]) -> str:
    """How DeepLabCut's C library handled freed memory in this run, for the notes under the tables."""
    if dlc_keeps_memory(settings):
        return f"freed memory kept (--dlc-malloc keep: GLIBC_TUNABLES={DLC_KEEP_FREED_MEMORY})"
    return ("its C library's default (freed blocks over 32 MiB go back to the kernel and fault in again; "
            "--dlc-malloc keep keeps them)")


def _dlc_rows(dlc: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(name, run) for name, run in dlc.items() if isinstance(run, dict)]


def format_report(report: dict[str, Any]) -> str:
    """Side-by-side table, like-for-like margins, precision and accuracy, memory, GPU on paper, machine."""
    s, m = report["settings"], report["machine"]
    cp: dict[str, Any] = report.get("crosspose", {})
    dlc: dict[str, Any] = report.get("deeplabcut", {})
    support: dict[str, str | None] = report.get("precision_support", {})
    gpu = s["device"].startswith("cuda")
    rounds = s.get("rounds", 1)
    lines = [f"## Throughput, {s['size']} px, batch {s['batch']}, {s['device']} (images/s, median of "
             f"{s['repeats']} repeats after warm-up" + (f"; training and inference: the mean of {rounds} rounds run "
                                                        "in alternating order" if rounds > 1 else "") +
             "; memory: peak PSS of the process tree, summed RSS in brackets)",
             *emulation_note(m), "", "| tool | backbone | precision | training | inference (image folder) | training peak memory "
             "| inference peak memory |", "|---|---|---|---|---|---|---|"]
    dlc_tool = _dlc_tool(s)
    for name, run in _dlc_rows(dlc):
        if not run.get("available") and "train" not in run:
            lines.append(f"| {dlc_tool} | {_backbone(name)} | fp32 | unavailable: {run.get('reason')} "
                         "| | | |")
            continue
        lines.append(f"| {dlc_tool} | {_backbone(name)}{' (its default)' if name == 'resnet50_gn' else ''}"
                     f" | fp32 | {_fmt(_rate(run.get('train'), 'summary', 'images_per_s'))} | "
                     f"{_fmt(_rate(run.get('infer'), 'summary', 'images_per_s'))} | {_memory(run.get('train'))} | "
                     f"{_memory(run.get('infer'))} |" + (f" {run['reason']}" if run.get("reason") else ""))
    for key, label in (("fp32", "fp32"), ("gn", "fp32"), ("bf16", "bf16 autocast")):
        phase = cp.get(key)
        if phase is None:
            continue
        run = phase
        if run.get("unsupported"):
            lines.append(f"| crosspose | {_backbone(run['backbone'])} | {label} | {run['unsupported']} | | | |")
            continue
        errors = "; ".join(f"{k}: {v}" for k, v in run.items() if k.endswith("_error"))
        lines.append(f"| crosspose | {_backbone(run['backbone'])} | {label}{' (training: option)' if key == 'bf16' else ''}"
                     f" | {_fmt(_rate(run.get('train'), 'whole_step', 'images_per_s'))} | "
                     f"{_fmt(_rate(run.get('infer'), 'whole', 'images_per_s'))} | {_memory(run.get('train'))} | "
                     f"{_memory(run.get('infer'))} |" + (f" {errors}" if errors else ""))
    int8 = cp.get("int8")
    if int8 is not None:
        if int8.get("unsupported") or int8.get("error"):
            lines.append(f"| crosspose | {_backbone(s['backbone'])} | int8 (ONNX Runtime) | "
                         f"{int8.get('unsupported') or int8.get('error')} | | | |")
        else:
            r = int8.get("result", {})
            lines.append(f"| crosspose | {_backbone(s['backbone'])} | fp32 (ONNX Runtime, reference) | | "
                         f"{_fmt(_rate(r, 'ort_fp32', 'whole', 'images_per_s'))} | | {_memory(r)} (both) |")
            lines.append(f"| crosspose | {_backbone(s['backbone'])} | int8 (ONNX Runtime, static QDQ) | | "
                         f"{_fmt(_rate(r, 'ort_int8', 'whole', 'images_per_s'))} | | |")
    for row, norm in (("fp32", "BatchNorm"), ("gn", "GroupNorm")):  # whether the row trained with the fused kernel
        note = ((cp.get(row) or {}).get("train") or {}).get("norm_kernel")
        if note:
            lines += ["", f"crosspose {norm} training: {note}."]
    infer_allocator = ((cp.get("fp32") or {}).get("infer") or {}).get("allocator")
    if infer_allocator:
        lines += ["", f"crosspose inference (image folder) ran with {infer_allocator}, as `crosspose predict` does; "
                  f"training with glibc's default. DeepLabCut: {_dlc_allocator(s)}."]
    lines += ["", *margins(report)]
    lines += ["", *video_table(report)]
    lines += ["", *precision_table(report, support)]
    lines += ["", *ceiling_table(report)]
    lines += ["", *memory_table(cp.get("fp32") or {}, cp.get("stages") or {})]
    fit = (cp.get("fp32") or {}).get("train") or {}
    # the stages-apart run, with the Lightning step timed by the fit-alone run
    main = {**((cp.get("stages") or {}).get("train") or {}), "whole_step": fit.get("whole_step")}
    lines += ["", *stage_table(main, (cp.get("fp32") or {}).get("infer") or {})]
    lines += ["", bottleneck_note(main)]
    lines += ["", *gpu_on_paper(main, s["batch"])]
    ct = _rate(fit, "whole_step", "images_per_s")
    if ct:
        hours = PAPER_STEPS * s["batch"] / ct / 3600
        lines += ["", f"The paper's fine-tune ({PAPER_STEPS:,} steps x batch 8) at this crosspose training "
                  f"throughput: {hours:,.1f} h ({hours / 24:.1f} days) on this {'GPU' if gpu else 'CPU'}."]
    gpu_txt = f", GPU {m['gpu']}" if m.get("gpu") else ""
    dlc_torch = next((r.get("train", {}).get("torch") for _, r in _dlc_rows(dlc) if r.get("train")), "n/a")
    flags = m.get("cpu_flags") or []
    absent = [f for f in REDUCED_PRECISION_FLAGS if f not in flags]
    lines += ["", f"Machine: {m['cpu']}, {m['cores']} cores{gpu_txt}; CPU flags for reduced precision: "
              f"{' '.join(flags) or 'none'}{' (absent: ' + ' '.join(absent) + ')' if absent else ''} "
              f"(torch kernels: {m.get('torch_capability', 'n/a')}); "
              f"torch {m['torch']} ({main.get('threads', m['torch_threads'])} intra-op threads), channels_last "
              f"{s['channels_last']}, compile {s['compile']}, {s['workers']} loader workers; DeepLabCut torch "
              f"{dlc_torch}; load average before {_load(m.get('load_average'))}, after "
              f"{_load(m.get('load_average_after'))}; {m.get('seconds', 0) / 60:.0f} min for the whole benchmark."]
    return "\n".join(lines)


def emulation_note(machine: dict[str, Any]) -> list[str]:
    """The lines saying a run emulated a smaller CPU (oneDNN capped by ``ONEDNN_MAX_CPU_ISA``), else none."""
    limit = machine.get("isa_limit")
    if not limit:
        return []
    aten, mkl = machine.get("torch_capability"), machine.get("mkl_enable_instructions")
    kernels = "without AVX-512" if "-mno-avx512f" in (machine.get("native_cflags") or "") else "for this CPU"
    return ["", f"**Emulated CPU**: oneDNN (the convolutions) limited to {limit} (`ONEDNN_MAX_CPU_ISA`) in every "
            f"process of both tools, PyTorch's own kernels to {aten or 'n/a'} "
            f"(`ATEN_CPU_CAPABILITY`), MKL's matrix products to {mkl or 'this CPU’s best (not set)'} "
            f"(`MKL_ENABLE_INSTRUCTIONS`; only the ceiling probe below uses them), crosspose's C kernels built "
            f"{kernels}; the instructions above the limit go unused, as on a CPU without them. ONNX Runtime "
            "ignores the limit: its rows (int8, the ONNX fp32 reference and video rows) use the whole CPU."]


def margins(report: dict[str, Any]) -> list[str]:
    """Crosspose / DeepLabCut for the same normalisation, and against DeepLabCut's default."""
    cp, dlc = report.get("crosspose", {}), report.get("deeplabcut", {})
    pairs = [("same architecture, BatchNorm", cp.get("fp32"), dlc.get("resnet50")),
             ("same architecture, GroupNorm", cp.get("gn"), dlc.get("resnet50_gn")),
             ("crosspose BatchNorm vs DeepLabCut's default GroupNorm", cp.get("fp32"), dlc.get("resnet50_gn")),
             ("crosspose bf16 vs DeepLabCut BatchNorm fp32", cp.get("bf16"), dlc.get("resnet50")),
             ("crosspose bf16 vs DeepLabCut's default (fp32)", cp.get("bf16"), dlc.get("resnet50_gn"))]
    lines = ["| crosspose / DeepLabCut | training | inference |", "|---|---|---|"]
    per_round = []
    for name, c, d in pairs:
        if not c or not d or c.get("unsupported"):
            continue
        train = round_ratios((c.get("train") or {}).get("whole_step"), (d.get("train") or {}).get("summary"))
        infer = round_ratios((c.get("infer") or {}).get("whole"), (d.get("infer") or {}).get("summary"))
        if len(train) > 1 or len(infer) > 1:
            per_round.append(f"{name} {_round_list(train)} | {_round_list(infer)}")
        lines.append(f"| {name} | {_ratio(_rate(c.get('train'), 'whole_step', 'images_per_s'), _rate(d.get('train'), 'summary', 'images_per_s'))} | "
                     f"{_ratio(_rate(c.get('infer'), 'whole', 'images_per_s'), _rate(d.get('infer'), 'summary', 'images_per_s'))} |")
    int8 = (cp.get("int8") or {}).get("result")
    if int8:
        for dname in ("resnet50", "resnet50_gn"):
            d = dlc.get(dname)
            if d:
                infer = round_ratios((int8.get("ort_int8") or {}).get("whole"), (d.get("infer") or {}).get("summary"))
                if len(infer) > 1:
                    per_round.append(f"int8 vs DeepLabCut `{dname}` | {_round_list(infer)}")
                lines.append(f"| crosspose int8 (ONNX Runtime) vs DeepLabCut `{dname}` fp32 | | "
                             f"{_ratio(_rate(int8, 'ort_int8', 'whole', 'images_per_s'), _rate(d.get('infer'), 'summary', 'images_per_s'))} |")
    if len(lines) <= 2:
        has_dlc = any(isinstance(r, dict) and r.get("available") for r in dlc.values())
        return ["(no crosspose row to compare with)" if has_dlc else "(no DeepLabCut row to compare with)"]
    if per_round:
        lines += ["", "Round by round, training | inference (rounds alternate the order of the rows, so the "
                  "machine's drift over the run shows here and cancels from the mean): " + "; ".join(per_round) + "."]
    return lines


def _round_list(ratios: list[float | None]) -> str:
    return ", ".join(f"{r:.2f}x" if r else "failed" for r in ratios) if ratios else "n/a"


def precision_table(report: dict[str, Any], support: dict[str, str | None]) -> list[str]:
    """Inference speed of each precision beside its accuracy cost."""
    cp = report.get("crosspose", {})
    acc = cp.get("accuracy") or {}
    fp32 = _rate((cp.get("fp32") or {}).get("infer"), "whole", "images_per_s")
    bf16 = cp.get("bf16") or {}
    int8 = (cp.get("int8") or {}).get("result") or {}
    numerics = ((cp.get("bf16") or {}).get("train") or {}).get("bf16_numerics") or {}
    rows = [("fp32 (PyTorch)", "fp32", fp32, 0.0),
            ("bf16 autocast (PyTorch)", "bf16", _rate(bf16.get("infer"), "whole", "images_per_s"),
             numerics.get("heatmap_rel_rmse")),
            ("int8 static QDQ (ONNX Runtime)", "int8", _rate(int8, "ort_int8", "whole", "images_per_s"),
             int8.get("int8_heatmap_rel_rmse"))]
    where = (f"on {acc.get('instances')} test instances of {acc.get('test_file')} ({acc.get('input_size')} px, "
             f"checkpoint {acc.get('checkpoint')})") if acc.get("fp32") else \
        f"(the accuracy phase failed: {acc['error']})" if acc.get("error") else "(no --accuracy-checkpoint given)"
    lines = [f"### Reduced precision (inference): speed and accuracy cost {where}", "",
             "| precision | images/s | vs fp32 | score maps vs fp32 (relative RMS, benchmark network) | "
             "keypoints vs fp32 (px, mean / median; mean on detected joints) | PCKh@0.5 |", "|---|---|---|---|---|---|"]
    for label, key, rate, rel in rows:
        if support.get(key):
            lines.append(f"| {label} | {support[key]} | | | | |")
            continue
        a = acc.get(key) or {}
        px = (f"{_fmt(a.get('px_mean'))} / {_fmt(a.get('px_median'))}; {_fmt(a.get('px_mean_detected'))}"
              if a else "n/a")
        lines.append(f"| {label} | {_fmt(rate)} | {_ratio(rate, fp32)} | "
                     f"{'n/a' if rel is None else f'{100 * rel:.2f} %'} | {px} | "
                     f"{_fmt(a.get('pckh'), 4) if a else 'n/a'} |")
    compiled = [(label, (cp.get(key) or {}).get("infer") or {}) for label, key in (("fp32", "fp32"), ("bf16", "bf16"))]
    for label, infer in compiled:
        if infer.get("compiled"):
            timed = infer["images"] / infer["whole"]["images_per_s"]
            lines += ["", f"{label} inference ran through `torch.compile` with frozen weights (`crosspose predict`'s "
                      f"automatic choice on this CPU): its first pass over the {infer['images']} images, compiling "
                      f"included, took {infer['first_pass_s']:.1f} s, a timed pass {timed:.1f} s."]
    if int8.get("quantize"):
        q = int8["quantize"]
        lines += ["", f"int8: calibrated on {q['calibration_images']} of the benchmark images "
                  f"({int8.get('quantize_seconds', 0):.0f} s); `crosspose quantize` does the same on your frames."]
    return lines


DLC_DEFAULT_ROW = "DeepLabCut `resnet50_gn` (its default)"
INFERENCE_TARGET = 6.0  # the speed-up over DeepLabCut's default that the int8 / bf16 rows aim at


def ceiling_table(report: dict[str, Any]) -> list[str]:
    """Each inference row against this CPU's matrix-multiply rate in its precision (CPU runs only)."""
    matmul = report.get("machine", {}).get("matmul")
    stages = ((report.get("crosspose", {}).get("stages") or {}).get("train") or {})
    if not matmul or "gmac_per_s" not in matmul or not stages.get("infer_flops_per_image"):
        return []
    cp, dlc = report.get("crosspose", {}), report.get("deeplabcut", {})
    int8 = (cp.get("int8") or {}).get("result") or {}
    rows = [(DLC_DEFAULT_ROW, "fp32", _rate((dlc.get("resnet50_gn") or {}).get("infer"), "summary", "images_per_s")),
            ("DeepLabCut `resnet50`", "fp32", _rate((dlc.get("resnet50") or {}).get("infer"), "summary", "images_per_s"))]
    for key, label, precision in (("fp32", "crosspose", "fp32"), ("gn", "crosspose GroupNorm", "fp32"),
                                  ("bf16", "crosspose bf16 autocast", "bf16")):
        rate = _rate((cp.get(key) or {}).get("infer"), "whole", "images_per_s")
        if rate:
            rows.append((label, precision, rate))
    rows.append(("crosspose int8 (ONNX Runtime; output layers fp32)", "int8",
                 _rate(int8, "ort_int8", "whole", "images_per_s")))
    gmac = stages["infer_flops_per_image"] / 2e9
    kept = [r for r in rows if r[2]]
    return ceiling_lines(ceiling_rows(kept, gmac, matmul["gmac_per_s"]), matmul, gmac,
                         reference=DLC_DEFAULT_ROW, target=INFERENCE_TARGET)


def _shares(row: dict[str, Any]) -> str:
    sh = row.get("shares") or {}
    return " / ".join(f"{100 * sh[k]:.0f}" if k in sh else "n/a"
                      for k in ("decode", "resize", "network", "decode_maps", "write", "wait_for_frames"))


def _h5(row: dict[str, Any]) -> str:
    return row.get("h5_check") or "not read"


def video_table(report: dict[str, Any]) -> list[str]:
    """The video row: frames/s of both tools on one video, crosspose's stages, memory, accuracy cost."""
    video = report.get("video")
    if not video:
        return []
    s, prep = report["settings"], video.get("prepare") or {}
    h, w = s.get("video_size") or ("?", "?")
    title = (f"### Video analysis: {s.get('video_frames')} frames of {w}x{h}, batch {s['batch']}, native "
             "resolution, one cold run per row (frames/s of the frames loop; whole call: model load + writing too)")
    if prep.get("error"):
        return [title, "", f"video row not run: preparing the video and models failed ({prep['error']})"]
    lines = [title, "", "| tool | model | frames/s | whole call | vs DLC `resnet50` / `resnet50_gn` | crosspose "
             "stages, % of the time: decode / resize / network / decode maps / write / waiting for frames | "
             "peak memory | keypoints vs crosspose fp32 (px, mean / median) | .h5 rows |",
             "|---|---|---|---|---|---|---|---|---|"]
    dlc = {name: (run.get("analyze") or {}) for name, run in _dlc_rows(report.get("deeplabcut", {}))}
    base = [_rate(dlc.get(n), "frames_per_s") for n in ("resnet50", "resnet50_gn")]
    for name, row in dlc.items():
        if not row.get("frames_per_s"):
            reason = row.get("error") or (report["deeplabcut"][name].get("reason") or "not run")
            lines.append(f"| {_dlc_tool(s)} `analyze_videos` | {_backbone(name)} | {reason} | | | | | | |")
            continue
        lines.append(f"| {_dlc_tool(s)} `analyze_videos` | {_backbone(name)}, fp32 | "
                     f"{_fmt(row['frames_per_s'])} | {_fmt(row.get('frames_per_s_whole_call'))} | | | "
                     f"{_memory(row)} | | {_h5(row)} |")
    for name, row in (video.get("crosspose") or {}).items():
        label = f"{_backbone(s['backbone'])}, {name}"
        if row.get("unsupported") or row.get("error"):
            lines.append(f"| crosspose analyze | {label} | {row.get('unsupported') or row.get('error')} | | | | | | |")
            continue
        rate = row.get("frames_per_s")
        diff = row.get("vs_reference") or {}
        lines.append(f"| crosspose analyze | {label} | {_fmt(rate)} | {_fmt(row.get('frames_per_s_whole_call'))} | "
                     f"{_ratio(rate, base[0])} / {_ratio(rate, base[1])} | {_shares(row)} | {_memory(row)} | "
                     f"{(_fmt(diff.get('px_mean')) + ' / ' + _fmt(diff.get('px_median'))) if diff else 'reference'}"
                     f" | {_h5(row)} |")
    lines += ["", "Decoding and resizing run in a background thread beside the network, so the stage shares can "
              "sum past 100 %; 'waiting for frames' is the decoding the network did not hide. Keypoint distances "
              "of a random-weight network are a worst case (flat score maps: a rounding flips the arg-max); "
              "--accuracy-checkpoint gives a trained network's cost."]
    allocators = sorted({row["allocator"] for row in (video.get("crosspose") or {}).values() if row.get("allocator")})
    if allocators:
        lines.append(f"crosspose analyze ran with {'; '.join(allocators)}; "
                     f"DeepLabCut with {_dlc_allocator(report['settings'])}.")
    for name, row in (video.get("crosspose") or {}).items():
        if row.get("compiled") and row.get("frames_per_s_after_first_call"):
            steady = row["frames_per_s_after_first_call"]
            lines.append(f"{name} ran through `torch.compile` ({row.get('compile_reason')}): the first network call, compiling "
                         f"included, took {_fmt(row.get('first_call_seconds'))} s of this short video; after it the "
                         f"loop ran {_fmt(steady)} frames/s ({_ratio(steady, base[0])} / {_ratio(steady, base[1])} "
                         "DeepLabCut's rates), the rate of a long recording.")
    if prep.get("quantize"):
        lines.append(f"int8: calibrated on {prep['quantize']['calibration_images']} frames of the video "
                     f"({prep.get('quantize_seconds', 0):.0f} s), as `crosspose quantize` does on a user's frames.")
    return lines


def memory_table(run: dict[str, Any], stages: dict[str, Any] | None = None) -> list[str]:
    """Where the training peak goes: main-process stages and each process of the tree.

    ``run``: the Lightning fit alone (its process tree is the headline figure); ``stages``: the
    stages-apart run, whose main-process rows (model step alone, FLOP count) say what each part adds.
    """
    train = run.get("train") or {}
    lines = ["### Where crosspose's training memory goes (resident, MiB)", "",
             "| component | resident after | peak within |", "|---|---|---|"]
    lines += _stage_memory_rows("stages apart", ((stages or {}).get("train") or {}).get("main_memory") or [])
    lines += _stage_memory_rows("fit process", train.get("main_memory") or [])
    mem = train.get("memory") or {}
    if mem.get("processes"):
        lines += ["", "| process | peak RSS | peak PSS (shared pages split) |", "|---|---|---|"]
        for proc in mem["processes"]:
            lines.append(f"| {proc['role']} | {_mib(proc.get('peak_rss_bytes'))} | {_mib(proc.get('peak_pss_bytes'))} |")
        lines.append(f"| **whole tree at its peak** | {_mib(train.get('peak_rss_bytes'))} (summed) | "
                     f"{_mib(mem.get('peak_pss_bytes'))} |")
    return lines if len(lines) > 4 else []


def _stage_memory_rows(process: str, marks: list[dict[str, Any]]) -> list[str]:
    """One row per memory mark of a process: resident after the stage (its growth) and peak within."""
    rows, previous = [], 0
    for mark in marks:
        rss = mark.get("rss_bytes") or 0
        rows.append(f"| {process}: {mark['stage']} | {_mib(rss)} ({'+' if rss >= previous else ''}"
                    f"{(rss - previous) / 2**20:,.0f}) | {_mib(mark.get('peak_bytes'))} |")
        previous = rss
    return rows


def stage_table(train: dict[str, Any], infer: dict[str, Any]) -> list[str]:
    lines = ["### crosspose per stage (images/s)", "", "| stage | images/s | repeats |", "|---|---|---|"]
    stages = [("training: data loading alone", train.get("loading")),
              ("training: model step alone", train.get("model_step")),
              ("training: whole step (Lightning)", train.get("whole_step")),
              ("inference: model alone (forward + decode)", infer.get("model")),
              ("inference: whole (read, crop, forward, decode)", infer.get("whole"))]
    for name, st in stages:
        if st:
            rounds = st.get("rounds") or []
            lines.append(f"| {name} | {_fmt(st.get('images_per_s'))} | "
                         f"{', '.join(_fmt(r) for r in st.get('repeats', []))}"
                         + (f" (round 1); mean of rounds {', '.join(_fmt(r) for r in rounds)}" if len(rounds) > 1
                            else "") + " |")
    return lines


def gpu_on_paper(train: dict[str, Any], batch: int) -> list[str]:
    """FLOPs per image, images/s at 20 % and 40 % of an H100's bf16 peak, the loader cores that needs."""
    flops = train.get("train_flops_per_image")
    if not flops:
        return []
    cpu = train.get("loader_cpu_s_per_image")
    loader = train.get("loader_cpu") or {}
    lines = [f"### GPU on paper (H100 SXM, {H100_BF16_TFLOPS:.0f} TFLOP/s dense bf16)", "",
             f"{flops / 1e9:.1f} GFLOP per image per training step (forward + backward), "
             f"{(train.get('infer_flops_per_image') or 0) / 1e9:.1f} GFLOP per image forward"
             + (f"; the data pipeline costs {1000 * cpu:.1f} CPU-ms per image (decode, warp, photometrics, "
                f"collate; steady state: one worker's settings, first {loader.get('skipped_batches')} batches "
                f"dropped, {loader.get('images')} images timed, no worker start-up)" if cpu else "") + f"; achieved here {1000 * (train.get('achieved_tflops') or 0):,.1f} GFLOP/s"
             + (f", {100 * train['fraction_of_peak']:.1f} % of the {train['peak_bf16_tflops']:.0f} TFLOP/s bf16 peak"
                if train.get("fraction_of_peak") is not None else "") + ".", "",
             "| share of bf16 peak | training images/s | loader cores to keep up | paper fine-tune "
             f"({PAPER_STEPS:,} x 8) |", "|---|---|---|---|"]
    for share in (0.2, 0.4):
        rate = share * H100_BF16_TFLOPS * 1e12 / flops
        hours = PAPER_STEPS * batch / rate / 3600
        cores = f"{rate * cpu:.1f}" if cpu else "n/a"
        lines.append(f"| {100 * share:.0f} % | {rate:,.0f} | {cores} | {hours * 60:,.0f} min |")
    return lines


def _load(v: list[float] | None) -> str:
    return "n/a" if not v else "/".join(f"{x:.2f}" for x in v)


def bottleneck_note(train: dict[str, Any]) -> str:
    """One sentence naming the stage that bounds crosspose training."""
    load = (train.get("loading") or {}).get("images_per_s")
    step = (train.get("model_step") or {}).get("images_per_s")
    whole = (train.get("whole_step") or {}).get("images_per_s")
    if not (load and step and whole):
        return "Bottleneck: not measured."
    if load < step:
        return (f"Bottleneck: data loading ({load:.1f} img/s) is slower than the model step ({step:.1f} img/s); "
                f"the whole step runs at {whole:.1f} img/s.")
    return (f"Bottleneck: the model step ({step:.1f} img/s alone; data loading alone {load:.1f} img/s, "
            f"{load / step:.0f}x faster); the whole step reaches {100 * whole / step:.0f} % of the bare model step.")
