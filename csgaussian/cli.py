"""The ``csgaussian`` command: a thin layer over :mod:`csgaussian.api`.

Every command is ``main(argv) -> exit code``; bad input ends in one line on stderr and exit 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from . import api
from .train.config import PRESETS
from .train.progress import summary_table

USAGE_ERROR = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="csgaussian", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a scene from posed images")
    train.add_argument("data", type=Path, help="dataset folder (Blender, COLMAP or LLFF layout)")
    train.add_argument("-o", "--output", type=Path, required=True, help="run directory")
    train.add_argument("--preset", choices=sorted(PRESETS), default="quick")
    train.add_argument("--iterations", type=int, help="override the preset's iteration count")
    train.add_argument("--downscale", type=int, default=1, help="integer image downscale factor")
    train.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    train.add_argument(
        "--lambda",
        dest="lambda_rate",
        type=float,
        help="rate weight (default: the preset's 0.004; 0 = plain Scaffold-GS, no compression)",
    )
    train.add_argument("--hyperprior", choices=("inr", "hashgrid"), help="entropy model (inr)")
    train.add_argument("--quiet", action="store_true", help="no progress display")

    render = commands.add_parser("render", help="render the views of a split to PNG")
    render.add_argument("source", type=Path, help="run directory or .csg stream")
    render.add_argument("-o", "--output", type=Path, required=True, help="output folder")
    render.add_argument("--split", choices=api.SPLITS, default="test")
    render.add_argument("--data", type=Path, help="dataset (default: the run's own)")

    evaluate = commands.add_parser("eval", help="PSNR / SSIM / LPIPS on the test views")
    evaluate.add_argument("source", type=Path, help="run directory or .csg stream")
    evaluate.add_argument("data", type=Path, nargs="?", help="dataset (default: the run's own)")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    evaluate.add_argument("--lpips-weights", type=Path, help="local LPIPS (AlexNet) state dict")

    encode = commands.add_parser("encode", help="compress a trained run into one .csg file")
    encode.add_argument("source", type=Path, help="run directory")
    encode.add_argument("-o", "--output", type=Path, required=True, help=".csg file to write")
    encode.add_argument(
        "--min-slot-share",
        type=float,
        default=api.MIN_SLOT_SHARE,
        help="drop offset slots used by fewer than this share of the anchors "
        f"(default {api.MIN_SLOT_SHARE}; 0 keeps every used slot)",
    )

    decode = commands.add_parser("decode", help="decode a .csg file (scene.pt + scene.ply)")
    decode.add_argument("stream", type=Path, help=".csg file")
    decode.add_argument("-o", "--output", type=Path, required=True, help="output folder")

    export = commands.add_parser("export", help="write a standard 3DGS PLY")
    export.add_argument("source", type=Path, help="run directory or .csg stream")
    export.add_argument("-o", "--output", type=Path, required=True, help="PLY file to write")

    demo = commands.add_parser("demo", help="generate the built-in scene, train, evaluate, export")
    demo.add_argument("-o", "--output", type=Path, default=Path("csgaussian-demo"))
    demo.add_argument("--preset", choices=sorted(PRESETS), default="quick")
    demo.add_argument("--iterations", type=int, help="override the preset's iteration count")
    return parser


def _run(args: argparse.Namespace, console: Console) -> int:
    if args.command == "train":
        result = api.train(
            args.data,
            args.output,
            preset=args.preset,
            iterations=args.iterations,
            resume=args.resume,
            downscale=args.downscale,
            lambda_rate=args.lambda_rate,
            hyperprior=args.hyperprior,
            quiet=args.quiet,
        )
        rows = vars(result) | {"scene_path": str(result.scene_path)}
        console.print(summary_table("training", rows))
    elif args.command == "render":
        paths = api.render(args.source, args.output, split=args.split, data=args.data)
        console.print(f"wrote {len(paths)} images to {args.output}")
    elif args.command == "eval":
        report = api.evaluate(args.source, args.data, lpips_weights=args.lpips_weights)
        if args.json:
            print(json.dumps(report))
        else:
            shown = {k: v for k, v in report.items() if not k.startswith("per_view")}
            console.print(summary_table("evaluation (test views)", shown))
    elif args.command == "encode":
        encoded = api.encode(args.source, args.output, args.min_slot_share)
        console.print(encode_table(encoded))
    elif args.command == "decode":
        report = api.decode_to(args.stream, args.output)
        console.print(summary_table(f"decoded {args.stream}", report))
    elif args.command == "export":
        count = api.export(args.source, args.output)
        console.print(f"wrote {count} Gaussians to {args.output}")
    elif args.command == "demo":
        report = api.demo(args.output, preset=args.preset, iterations=args.iterations)
        console.print(summary_table("demo", report))
    return 0


def encode_table(encoded: api.EncodedScene) -> Table:
    """Bytes per section, with the entropy model's estimate beside the coded attributes."""
    table = Table(title=f"stream: {len(encoded.data)} bytes")
    table.add_column("section")
    table.add_column("bytes", justify="right")
    table.add_column("estimated bytes", justify="right")
    for name, size in encoded.section_bytes.items():
        estimate = encoded.estimated_bits.get(name)
        table.add_row(name, str(size), "" if estimate is None else f"{estimate / 8:.0f}")
    container = len(encoded.data) - sum(encoded.section_bytes.values())
    table.add_row("container (header, table, CRCs)", str(container), "")
    return table


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the process exit code."""
    args = _parser().parse_args(argv)
    console = Console(stderr=True)
    try:
        return _run(args, console)
    except (ValueError, OSError) as err:  # DataError, RunError, StreamError are ValueErrors
        print(f"csgaussian {args.command}: error: {err}", file=sys.stderr)
        return USAGE_ERROR
    except KeyboardInterrupt:
        print(f"csgaussian {args.command}: interrupted (resume with --resume)", file=sys.stderr)
        return 130


def entry() -> None:
    """Console-script entry point."""
    sys.exit(main())
