"""The ``crosspose`` command.

Training commands (``fit``, ``validate``, ``test``, ``predict``) go to the LightningCLI in
:mod:`crosspose.training.cli`; every other command is a module with ``configure_parser(parser)`` and
``run(args) -> int``, imported only when called so that ``crosspose --help`` stays instant.
Errors on user input (:class:`~crosspose.core.errors.CrossposeError`) print as one line, exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import warnings
from collections.abc import Sequence

from crosspose.core.errors import CrossposeError

LIGHTNING_COMMANDS: dict[str, str] = {
    "fit": "train a model from a YAML config (--config, repeatable)",
    "validate": "run the validation loop of a config/checkpoint",
    "test": "score a checkpoint on the test file; writes predictions and metrics.json",
    "predict": "write keypoint predictions (COCO results) for a data file",
}

COMMANDS: dict[str, tuple[str, str]] = {
    "prepare": ("crosspose.data.prepare", "convert MacaquePose / MPII / DeepLabCut / SLEAP labels to COCO keypoints"),
    "synth": ("crosspose.data.synth.cli", "generate the procedural two-species data set"),
    "score": ("crosspose.evaluation.score", "score predictions against ground truth (the paper's metrics)"),
    "report": ("crosspose.evaluation.report", "compare metrics.json files: Table-1 markdown and plots"),
    "demo": ("crosspose.experiments.demo", "the paper's experiment end to end on the synthetic data"),
    "ablate": ("crosspose.experiments.ablate", "frozen-layer x data-size x seed ablation grid"),
    "inspect": ("crosspose.experiments.inspect", "what transfers between networks: CKA per stage, weight movement, attribution"),
    "benchmark": ("crosspose.benchmark.run", "throughput side by side with DeepLabCut 3"),
    "convert": ("crosspose.convert.cli", "DeepLabCut 2 (TF) / 3 (PyTorch) and TF-slim models -> crosspose checkpoints"),
    "analyze": ("crosspose.inference.analyze", "keypoints of videos/images: DeepLabCut .h5/.csv, COCO .json, labelled video or images, NWB"),
    "export": ("crosspose.inference.export", "export a checkpoint: weights-only .ckpt or ONNX (dynamic batch and size)"),
    "quantize": ("crosspose.inference.quantize", "int8 ONNX model calibrated on your own images (ONNX Runtime, static)"),
}


def _usage() -> str:
    lines = ["usage: crosspose COMMAND [options]   (crosspose COMMAND --help for its options)", "",
             "training (LightningCLI; configs in configs/):"]
    lines += [f"  {name:<10} {text}" for name, text in LIGHTNING_COMMANDS.items()]
    lines += ["", "data, evaluation and experiments:"]
    lines += [f"  {name:<10} {text}" for name, (_, text) in COMMANDS.items()]
    return "\n".join(lines)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    if isinstance(exc, OSError) and exc.filename and str(exc.filename) not in text:
        text = f"{exc.filename}: {text}"
    return " ".join(text.split()) or type(exc).__name__


def _worker_error(exc: RuntimeError) -> str | None:
    """The original message of an error raised inside a DataLoader worker, if ``exc`` is one of ours or an OSError."""
    text = str(exc)
    if "DataLoader worker" not in text or "Original Traceback" not in text:
        return None
    last = [line for line in text.strip().splitlines() if line.strip()][-1]
    kind, _, message = last.partition(": ")
    name = kind.rsplit(".", 1)[-1]
    import builtins

    from crosspose.core import errors

    cls = getattr(errors, name, None) or getattr(builtins, name, None)
    if isinstance(cls, type) and issubclass(cls, CrossposeError | OSError):
        return " ".join(message.split())
    return None


def _first_line(text: str) -> str:
    """Jsonargparse nests the reason under several lines of context: keep the most specific line."""
    lines = [ln.strip(" -").rstrip(":") for ln in text.strip().splitlines() if ln.strip(" -")]
    return ": ".join(lines[:1] + [ln for ln in lines[1:] if "Expected" in ln or "Not a" in ln][:1]) or text


def _user_error(exc: BaseException) -> CrossposeError | None:
    """The CrossposeError an exception was raised from (its cause or context chain), if any."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, CrossposeError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``crosspose COMMAND ...``; returns the exit status (0 ok, 2 bad input, 130 interrupted)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(_usage())
        return 0
    if args[0] in ("-V", "--version"):
        from crosspose import __version__

        print(f"crosspose {__version__}")
        return 0
    command, rest = args[0], args[1:]
    # jsonargparse's and Lightning's notes about their own API changes are not for our users
    os.environ.setdefault("JSONARGPARSE_DEPRECATION_WARNINGS", "off")
    warnings.filterwarnings("ignore", message=r".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=r".*callbacks used to create the checkpoint.*")
    warnings.filterwarnings("ignore", message=r".*litlogger.*")
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # our modules log their progress lines
    try:
        if command in LIGHTNING_COMMANDS:
            from crosspose.training.cli import run_lightning_cli

            run_lightning_cli([command, *rest])
            return 0
        if command in COMMANDS:
            module = importlib.import_module(COMMANDS[command][0])
            parser = argparse.ArgumentParser(prog=f"crosspose {command}", description=COMMANDS[command][1])
            module.configure_parser(parser)
            return int(module.run(parser.parse_args(rest)) or 0)
    except (CrossposeError, OSError) as exc:
        print(f"crosspose {command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        # a DataLoader worker's error arrives re-raised as a RuntimeError carrying its traceback text
        worker_error = _worker_error(exc)
        if worker_error is None:
            raise
        print(f"crosspose {command}: error: {worker_error}", file=sys.stderr)
        return 2
    except ValueError as exc:  # jsonargparse wraps an option's own check (a ConfigError) in a ValueError
        cause = _user_error(exc)
        if cause is None:
            raise
        print(f"crosspose {command}: error: {cause}", file=sys.stderr)
        return 2
    except argparse.ArgumentError as exc:  # jsonargparse's too: a wrong option name or type
        print(f"crosspose {command}: error: {_first_line(str(exc))} (see crosspose {command} --help)",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"crosspose {command}: interrupted", file=sys.stderr)
        return 130
    print(f"crosspose: unknown command {command!r}\n\n{_usage()}", file=sys.stderr)
    return 2
