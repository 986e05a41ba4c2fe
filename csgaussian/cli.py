"""The ``csgaussian`` command: a thin layer over :mod:`csgaussian.api`.

Every command is ``main(argv) -> exit code``; bad input ends in one line on stderr and exit 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple, get_args

from rich.console import Console
from rich.table import Table

from . import api
from .entropy.anchors import HyperpriorKind
from .export.fit import ExportConfig
from .preprocess.features import LEVELS
from .progress import summary_table
from .semantics.encoders import DEFAULT_ENCODER, ENCODERS
from .train.config import DEFAULT_PRESET, PRESETS

USAGE_ERROR = 2
MAX_MEMORY_HELP = (
    f"refuse a .csg whose decoding needs more memory than this (e.g. 8G; default "
    f"{api.DEFAULT_MAX_MEMORY >> 30}G)"
)

ENCODER_HELP = f"text encoder ({DEFAULT_ENCODER})"
TEXT_FEATURES_HELP = (
    "JSON {text: vector} cache embedding the queries (for a CLIP-space scene without CLIP "
    "weights); its vectors must have the dimension of the stream's language features"
)


def _parser() -> argparse.ArgumentParser:
    """The commands and flags; defaults and choices shown come from the config dataclasses."""
    parser = argparse.ArgumentParser(prog="csgaussian", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS.values():
        command.add(commands)
    return parser


def _add_prepare(commands: argparse._SubParsersAction) -> None:
    prepare = commands.add_parser(
        "prepare", help="masks and language features (LangSplat layout): instance maps or SAM+CLIP"
    )
    prepare.add_argument("data", type=Path, help="dataset with instance maps and object names")
    _output(prepare, "features folder")
    prepare.add_argument("--encoder", choices=ENCODERS, default=DEFAULT_ENCODER, help=ENCODER_HELP)
    prepare.add_argument(
        "--sam", type=Path, help="SAM model folder (transformers save_pretrained): SAM masks"
    )
    prepare.add_argument("--clip", type=Path, help="CLIP model folder: CLIP mask features")
    prepare.add_argument("--quiet", action="store_true", help="no progress display")


def _add_text_features(commands: argparse._SubParsersAction) -> None:
    text_features = commands.add_parser(
        "text-features", help="a {text: vector} JSON cache of query texts, made by CLIP"
    )
    text_features.add_argument("texts", nargs="+", help="query texts")
    text_features.add_argument("--clip", type=Path, required=True, help="CLIP model folder")
    _output(text_features, "JSON file")


def _add_train(commands: argparse._SubParsersAction) -> None:
    defaults = PRESETS[DEFAULT_PRESET]
    train = commands.add_parser("train", help="train a scene from posed images (stages 1-3)")
    train.add_argument(
        "data", type=Path, nargs="?", help="dataset folder (Blender, COLMAP or LLFF layout)"
    )
    _output(train, "run directory")
    train.add_argument("--preset", choices=PRESETS, help=f"training preset ({DEFAULT_PRESET})")
    train.add_argument(
        "--iterations", type=int, help="override the preset's stage-1 iteration count"
    )
    train.add_argument("--stages", help="stages to run: 1 (colour), 2,3 (semantics); default 1,2,3")
    train.add_argument(
        "--features",
        type=Path,
        help="LangSplat language_features/ folder (default: prepared "
        "into the run from the dataset's instance maps)",
    )
    train.add_argument("--encoder", choices=ENCODERS, help=ENCODER_HELP)
    train.add_argument(
        "--level", choices=LEVELS, help=f"mask level of the features ({defaults.semantic.level})"
    )
    train.add_argument("--downscale", type=int, help="integer image downscale factor (1)")
    train.add_argument(
        "--resume",
        action="store_true",
        help="continue from the last checkpoint with the run's settings (a differing one is "
        "refused)",
    )
    train.add_argument(
        "--lambda",
        dest="lambda_rate",
        type=float,
        help=f"rate weight (default: the preset's, {DEFAULT_PRESET}: {defaults.rate.lambda_rate}; "
        "0 = plain Scaffold-GS, no compression)",
    )
    train.add_argument(
        "--hyperprior",
        choices=get_args(HyperpriorKind),
        help=f"entropy model ({defaults.rate.hyperprior})",
    )
    train.add_argument(
        "--seed", type=int, help=f"random seed of every stage (the preset's, {defaults.seed})"
    )
    train.add_argument("--quiet", action="store_true", help="no progress display")


def _add_render(commands: argparse._SubParsersAction) -> None:
    render = commands.add_parser("render", help="render the views of a split to PNG")
    render.add_argument("source", type=Path, help="run directory or .csg stream")
    _output(render, "output folder")
    render.add_argument("--split", choices=api.SPLITS, default="test")
    render.add_argument("--data", type=Path, help="dataset (default: the run's own)")
    render.add_argument("--max-memory", type=_memory_size, help=MAX_MEMORY_HELP)


def _add_evaluate(commands: argparse._SubParsersAction) -> None:
    evaluate = commands.add_parser("eval", help="PSNR / SSIM / LPIPS on the test views")
    evaluate.add_argument("source", type=Path, help="run directory or .csg stream")
    evaluate.add_argument("data", type=Path, nargs="?", help="dataset (default: the run's own)")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    evaluate.add_argument("--lpips-weights", type=Path, help="local LPIPS (AlexNet) state dict")
    evaluate.add_argument(
        "--queries", type=Path, help="JSON object: class name -> list of texts to ask"
    )
    evaluate.add_argument("--text-features", type=Path, help=TEXT_FEATURES_HELP)
    evaluate.add_argument("--max-memory", type=_memory_size, help=MAX_MEMORY_HELP)


def _add_query(commands: argparse._SubParsersAction) -> None:
    query = commands.add_parser("query", help="select an object of a .csg stream by text")
    query.add_argument("stream", type=Path, help=".csg file with a semantic layer")
    query.add_argument("text", help="what to select, e.g. 'rubber duck'")
    query.add_argument("--data", type=Path, required=True, help="dataset giving the camera")
    query.add_argument("--view", default="test:0", help="split:index of the view (test:0)")
    _output(query, "folder for mask, highlight, JSON", required=False)
    query.add_argument("--text-features", type=Path, help=TEXT_FEATURES_HELP)
    query.add_argument("--max-memory", type=_memory_size, help=MAX_MEMORY_HELP)


def _add_encode(commands: argparse._SubParsersAction) -> None:
    encode = commands.add_parser("encode", help="compress a trained run into one .csg file")
    encode.add_argument("source", type=Path, help="run directory")
    _output(encode, ".csg file to write")
    encode.add_argument(
        "--min-slot-share",
        type=float,
        default=api.MIN_SLOT_SHARE,
        help="drop offset slots used by fewer than this share of the anchors "
        f"(default {api.MIN_SLOT_SHARE}; 0 keeps every used slot)",
    )


def _add_fit_iterations(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--fit-iterations",
        type=int,
        help=f"steps of the PLY's SH fit (default {ExportConfig().fit_iterations}; 0: no fit)",
    )


def _add_decode(commands: argparse._SubParsersAction) -> None:
    decode = commands.add_parser(
        "decode", help="decode a .csg file (scene.pt + scene.ply, the default export)"
    )
    decode.add_argument("stream", type=Path, help=".csg file")
    _output(decode, "output folder")
    decode.add_argument("--base-only", action="store_true", help="skip the semantic layer")
    _add_fit_iterations(decode)
    decode.add_argument("--max-memory", type=_memory_size, help=MAX_MEMORY_HELP)


def _add_export(commands: argparse._SubParsersAction) -> None:
    export_defaults = ExportConfig()
    export = commands.add_parser(
        "export", help="write a standard 3DGS PLY or .splat (SH colours fitted to the scene)"
    )
    export.add_argument("source", type=Path, help="run directory or .csg stream")
    _output(export, "file to write: .ply or .splat")
    export.add_argument("--select", help="export only the object this text names")
    export.add_argument(
        "--sh-degree",
        type=int,
        help=f"SH degree of the colours (default {export_defaults.sh_degree})",
    )
    _add_fit_iterations(export)
    export.add_argument("--quiet", action="store_true", help="no progress display")
    export.add_argument("--max-memory", type=_memory_size, help=MAX_MEMORY_HELP)


def _add_edit(commands: argparse._SubParsersAction) -> None:
    edit = commands.add_parser("edit", help=f"{' / '.join(api.OPERATIONS)} objects named by text")
    edit.add_argument("stream", type=Path, help=".csg file with a semantic layer")
    _output(edit, "edited .csg to write")
    for op in api.OPERATIONS.values():
        edit.add_argument(
            f"--{op.code}",
            metavar="TEXT",
            dest="edits",
            action=_EditAction,
            default=[],
            help=op.help,
        )
        if op.value is not None:
            edit.add_argument(
                op.value.flag,
                metavar=op.value.metavar,
                dest="edits",
                action=_EditAction,
                help=op.value.help,
            )


def _add_view(commands: argparse._SubParsersAction) -> None:
    view = commands.add_parser("view", help="serve an interactive viewer page for a .csg file")
    view.add_argument("stream", type=Path, help=".csg file")
    view.add_argument("--port", type=int, default=8080, help="port to serve on (8080)")
    view.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    view.add_argument(
        "--save",
        type=Path,
        help="the one file the page's Save writes (must not exist; default NAME.edited.csg "
        "beside the stream)",
    )


def _add_demo(commands: argparse._SubParsersAction) -> None:
    demo = commands.add_parser("demo", help="generate the built-in scene, train, evaluate, export")
    _output(demo, "folder of the demo's files (csgaussian-demo)", default=Path("csgaussian-demo"))
    demo.add_argument(
        "--preset", choices=PRESETS, default=DEFAULT_PRESET, help=f"preset ({DEFAULT_PRESET})"
    )
    demo.add_argument("--iterations", type=int, help="override the preset's iteration count")
    demo.add_argument("--encoder", choices=ENCODERS, default=DEFAULT_ENCODER, help=ENCODER_HELP)


def _output(
    parser: argparse.ArgumentParser, what: str, required: bool = True, default: Path | None = None
) -> None:
    """``-o`` and the ``--force`` that lets it replace an input or a run's file."""
    parser.add_argument("-o", "--output", type=Path, required=required, default=default, help=what)
    parser.add_argument(
        "--force",
        action="store_true",
        help="write -o even where it replaces an input or a training run's file",
    )


OUTPUT_INPUTS = {
    "prepare": ("data", "sam", "clip"),
    "text-features": ("clip",),
    "train": ("data", "features"),
    "render": ("source", "data"),
    "query": ("stream", "data", "text_features"),
    "encode": ("source",),
    "decode": ("stream",),
    "export": ("source",),
    "edit": ("stream",),
    "demo": (),
}
"""The options naming each command's inputs, which its ``-o`` must not replace."""


def _check_output(args: argparse.Namespace) -> None:
    """Refuse an ``-o`` that would replace an input or a training run's file (``--force``
    allows it); ``train``'s ``-o`` is the run directory itself."""
    if getattr(args, "output", None) is None:
        return
    inputs = [getattr(args, name) for name in OUTPUT_INPUTS[args.command]]
    api.check_output(args.output, inputs, force=args.force, run_dir=args.command == "train")


def _value_flags() -> dict[str, str]:
    """Each operation's value option (``--offset``) and the flag it must follow."""
    return {op.value.flag: f"--{code}" for code, op in api.OPERATIONS.items() if op.value}


class _EditAction(argparse.Action):
    """Collects the edit options in command-line order: ``[flag, text, value]`` lists, where an
    operation's value option (``--offset``, ``--color``, ...) fills the value of the preceding
    ``--CODE TEXT``."""

    def __call__(self, parser, namespace, values, option_string=None):
        edits = list(getattr(namespace, self.dest) or [])
        wants = _value_flags().get(option_string)
        if wants is not None:
            if not edits or edits[-1][0] != wants or edits[-1][2] is not None:
                parser.error(f"{option_string} must follow a {wants} TEXT")
            edits[-1] = [wants, edits[-1][1], values]
        else:
            edits.append([option_string, values, None])
        setattr(namespace, self.dest, edits)


def _edit_requests(edits: list[list]) -> list[api.EditRequest]:
    """The API's requests for the collected edit options; ValueError names a missing value."""
    requests: list[api.EditRequest] = []
    for flag, text, value in edits:
        op = api.OPERATIONS[flag.removeprefix("--")]
        if op.value is not None and value is None:
            raise ValueError(f"{flag} {text!r} needs {op.value.flag} {op.value.metavar} after it")
        requests.append(op.from_value(text, value))
    if not requests:
        flags = ", ".join(f"--{code}" for code in api.OPERATIONS)
        raise ValueError(f"no edit given ({flags})")
    return requests


def _prepare(args: argparse.Namespace, console: Console) -> None:
    report = api.prepare(
        args.data,
        args.output,
        encoder=args.encoder,
        sam=args.sam,
        clip=args.clip,
        quiet=args.quiet,
    )
    console.print(summary_table(f"prepared {args.output}", report))


def _text_features(args: argparse.Namespace, console: Console) -> None:
    report = api.text_features(args.texts, args.clip, args.output)
    console.print(summary_table(f"wrote {args.output}", report))


def _train(args: argparse.Namespace, console: Console) -> None:
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
        stages=args.stages,
        features=args.features,
        encoder=args.encoder,
        level=args.level,
        seed=args.seed,
    )
    if result.colour is not None:
        rows = vars(result.colour) | {"scene_path": str(result.colour.scene_path)}
        console.print(summary_table("stage 1 (colour)", rows))
    if result.semantic is not None:
        rows = vars(result.semantic) | {"stream_path": str(result.semantic.stream_path)}
        console.print(summary_table("stages 2-3 (semantics)", rows))


def _render(args: argparse.Namespace, console: Console) -> None:
    paths = api.render(args.source, args.output, split=args.split, data=args.data)
    console.print(f"wrote {len(paths)} images to {args.output}")


def _eval(args: argparse.Namespace, console: Console) -> None:
    report = api.evaluate(
        args.source,
        args.data,
        lpips_weights=args.lpips_weights,
        queries=args.queries,
        text_features=args.text_features,
    )
    if args.json:
        print(json.dumps(report))
    else:
        console.print(summary_table("evaluation (test views)", _flat(report)))


def _query(args: argparse.Namespace, console: Console) -> None:
    record = api.query_view(
        args.stream, args.text, args.data, args.view, args.output, args.text_features
    )
    print(json.dumps(record))
    if not record["matched"]:
        console.print(
            f"'{args.text}' matches nothing well (best score {record['best_score']}, "
            f"margin {record['margin']}, relevancy {record['relevancy']})"
        )


def _encode(args: argparse.Namespace, console: Console) -> None:
    encoded = api.encode(args.source, args.output, args.min_slot_share)
    console.print(encode_table(encoded))


def _decode(args: argparse.Namespace, console: Console) -> None:
    report = api.decode_to(
        args.stream, args.output, args.base_only, quiet=False, fit_iterations=args.fit_iterations
    )
    console.print(summary_table(f"decoded {args.stream}", report))


def _export(args: argparse.Namespace, console: Console) -> None:
    report = api.export(
        args.source,
        args.output,
        select=args.select,
        sh_degree=args.sh_degree,
        fit_iterations=args.fit_iterations,
        quiet=args.quiet,
    )
    selected = report.pop("selected", None)
    if selected is not None:
        report["selected"] = f"{selected['text']} (entries {selected['entries']})"
    console.print(summary_table(f"exported {args.output}", report))


def _edit(args: argparse.Namespace, console: Console) -> None:
    report = api.edit_file(args.stream, args.output, _edit_requests(args.edits))
    print(json.dumps(report))
    console.print(
        f"wrote {args.output}: {report['output_bytes']} bytes ({report['input_bytes']} in, "
        f"edit layer {report['edit_layer_bytes']})"
    )


def _view(args: argparse.Namespace, console: Console) -> None:
    running = api.viewer(args.stream, port=args.port, host=args.host, save=args.save)
    if running.exposed:
        console.print(
            f"warning: --host {args.host} is reachable from the network: anyone with the URL "
            f"sees the scene and can write {running.target.path}"
        )
    console.print(f"viewer of {args.stream}: open {running.url} (Ctrl-C stops)", soft_wrap=True)
    console.print(f"Save writes {running.target.path}")
    try:
        while True:
            time.sleep(1.0)
    finally:
        running.stop()


def _demo(args: argparse.Namespace, console: Console) -> None:
    report = api.demo(
        args.output, preset=args.preset, iterations=args.iterations, encoder=args.encoder
    )
    console.print(summary_table("demo", report))


class Command(NamedTuple):
    """A subcommand: ``add`` gives it its parser and flags, ``run`` calls the API with the
    parsed flags and prints the result."""

    add: Callable[[argparse._SubParsersAction], None]
    run: Callable[[argparse.Namespace, Console], None]


COMMANDS: dict[str, Command] = {
    "prepare": Command(_add_prepare, _prepare),
    "text-features": Command(_add_text_features, _text_features),
    "train": Command(_add_train, _train),
    "render": Command(_add_render, _render),
    "eval": Command(_add_evaluate, _eval),
    "query": Command(_add_query, _query),
    "encode": Command(_add_encode, _encode),
    "decode": Command(_add_decode, _decode),
    "export": Command(_add_export, _export),
    "edit": Command(_add_edit, _edit),
    "view": Command(_add_view, _view),
    "demo": Command(_add_demo, _demo),
}
"""Every command, in the order ``--help`` lists them."""


def _flat(report: dict) -> dict:
    """The scalar figures of an evaluation report, protocol figures named by protocol."""
    rows = {k: v for k, v in report.items() if not isinstance(v, list | dict)}
    for name, protocol in report.get("protocols", {}).items():
        if "skipped" in protocol:
            rows[f"{name}"] = f"skipped: {protocol['skipped']}"
            continue
        rows[f"{name} miou"] = protocol["miou"]
        rows[f"{name} acc"] = protocol["acc"]
    for layer, size in report.get("layer_bytes", {}).items():
        rows[f"{layer} layer bytes"] = size
    for index, note in enumerate(report.get("notes", [])):
        rows[f"note {index + 1}"] = note
    return rows


def encode_table(encoded: api.EncodedScene) -> Table:
    """Bytes per section, with the entropy model's estimate beside the coded attributes, and the
    bytes of each layer."""
    layers = api.layer_bytes(encoded.data)
    title = f"stream: {len(encoded.data)} bytes (base layer {layers['base']}"
    title += f", semantic layer {layers['semantic']})" if layers["semantic"] else ")"
    table = Table(title=title)
    table.add_column("section")
    table.add_column("bytes", justify="right")
    table.add_column("estimated bytes", justify="right")
    for name, size in encoded.section_bytes.items():
        estimate = encoded.estimated_bits.get(name)
        table.add_row(name, str(size), "" if estimate is None else f"{estimate / 8:.0f}")
    container = len(encoded.data) - sum(encoded.section_bytes.values())
    table.add_row("container (header, table, CRCs)", str(container), "")
    return table


def _memory_size(text: str) -> int:
    """A byte count such as ``4G``, ``512M`` or ``1000000`` (binary units)."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    scale = units.get(text[-1:].upper(), 1)
    try:
        value = float(text[:-1] if scale > 1 else text) * scale
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 4G, 512M)") from None
    if not 0 < value < 1 << 62:
        raise argparse.ArgumentTypeError(f"not a positive size: {text!r}")
    return int(value)


def _error(command: str, message: str) -> int:
    """One line on stderr; returns the usage-error exit code."""
    one_line = " ".join(message.splitlines())
    print(f"csgaussian {command}: error: {one_line}", file=sys.stderr)
    return USAGE_ERROR


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the process exit code."""
    args = _parser().parse_args(argv)
    console = Console(stderr=True)
    iterations = getattr(args, "iterations", None)
    if iterations is not None and iterations < 1:
        return _error(args.command, f"--iterations must be a positive count, got {iterations}")
    max_memory = getattr(args, "max_memory", None)
    try:
        with api.memory_limit(max_memory or api.DEFAULT_MAX_MEMORY):
            _check_output(args)
            COMMANDS[args.command].run(args, console)
            return 0
    except (ValueError, OSError) as err:  # DataError, RunError, StreamError are ValueErrors
        return _error(args.command, str(err))
    except KeyboardInterrupt:
        hint = "" if args.command == "view" else " (resume with --resume)"
        print(f"csgaussian {args.command}: interrupted{hint}", file=sys.stderr)
        return 130
    except Exception as err:  # last resort: the readers should have said what was wrong
        message = f"internal error ({type(err).__name__}: {err})"
        return _error(args.command, message)


def entry() -> None:
    """Console-script entry point."""
    sys.exit(main())
