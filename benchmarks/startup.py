"""Start-up of the receiver's commands (issue 18 item 4): ``query`` and ``edit`` from start.

Runs each command as a new process (interpreter and imports included) ``--runs`` times, this
tree's code and, with ``--old DIR``, a worktree of an older commit in turn (same stream, same
arguments), and records the median wall and CPU seconds (the process's own accounting). Then
breaks one run of each down into phases in one process (``--phases``): CPU and wall seconds of
importing torch, the rest of the CLI's imports, decoding, loading MiniLM, the query, and for
``query`` the two renders of the selection (the first loads the numba kernels), for ``edit`` the
edit and the save.

The stream must be one both trees read (no ``cameras`` section for a tree before it).

Writes ``--out/startup.json`` and ``startup.md``; prints ONE JSON line.

Usage:
    python benchmarks/startup.py STREAM DATA [--old DIR] [--runs N] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ENTRY = "from csgaussian.cli import entry; entry()"


def commands(stream: Path, data: Path, out: Path) -> dict[str, list[str]]:
    return {
        "query": ["query", str(stream), "yellow duck", "--data", str(data), "-o", str(out / "q")],
        "edit": ["edit", str(stream), "-o", str(out / "edited.csg"), "--remove", "rubber duck"],
    }


def timed_run(tree: Path, argv: list[str]) -> tuple[float, float]:
    """Wall and CPU (user + sys) seconds of one command run with ``tree``'s code."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", ENTRY, *argv], env=env, check=True, capture_output=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def phases(command: str, stream: str, data: str, out: str) -> None:
    """One command's phases in this process; prints them as one JSON line. The first row is
    the interpreter's start and this script's own light imports (CPU only: process time)."""
    marks = [("start", 0.0, time.perf_counter())]
    marks.append(("interpreter and this script (CPU only)", time.process_time(), marks[0][2]))

    def mark(name: str) -> None:
        marks.append((name, time.process_time(), time.perf_counter()))

    import torch

    mark("import torch")
    import csgaussian.cli as cli  # noqa: F401

    torch.set_num_threads(1)  # as the CLI does for these commands
    mark("import the CLI (rest)")
    from csgaussian import api
    from csgaussian.semantics.encoders import get_text_encoder
    from csgaussian.semantics.query import render_selection, select

    scene = api.decode(stream)
    mark("decode the stream")
    get_text_encoder(scene.semantics.text_space).encode(["load"])
    mark("load MiniLM (and embed one text)")
    selection = select(scene, "yellow duck")
    mark("query: embed with the negatives, rule, select")
    if command == "query":
        from csgaussian.data import load_scene

        camera = load_scene(data, load_instances=False).test[0].camera
        mark("read the dataset's camera")
        render_selection(scene.model, camera, selection.slots, scene.edit_hook())
        mark("render the selection (numba kernels load)")
        render_selection(scene.model, camera, selection.slots, scene.edit_hook())
        mark("render it again (warm)")
    else:
        from csgaussian.semantics.edits import Remove

        edited = api.edit(scene, [Remove("rubber duck")])
        mark("edit: its query and selection")
        api.save_edited(edited, stream, Path(out) / "edited_phases.csg")
        mark("save the edited stream")
    rows = [
        {"phase": b[0], "cpu_s": round(b[1] - a[1], 3), "wall_s": round(b[2] - a[2], 3)}
        for a, b in zip(marks, marks[1:], strict=False)
    ]
    print(json.dumps(rows))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stream", type=Path)
    parser.add_argument("data", type=Path)
    parser.add_argument("--old", type=Path, help="worktree of an older commit to compare with")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "startup")
    parser.add_argument("--phases", help=argparse.SUPPRESS)  # internal: one process's phases
    args = parser.parse_args(argv)
    scratch = Path("/tmp/csgaussian_startup")
    scratch.mkdir(exist_ok=True)
    if args.phases:
        phases(args.phases, str(args.stream), str(args.data), str(scratch))
        return 0
    sys.path.insert(0, str(HERE))  # after --phases: provenance imports torch
    from provenance import provenance, provenance_lines, write_environment

    origin = provenance(["startup.py", *(argv if argv is not None else sys.argv[1:])])
    repo = HERE.parent
    trees = {"new": repo, **({"old": args.old} if args.old else {})}
    result: dict = {**origin, "runs": args.runs, "commands": {}}
    for name, command in commands(args.stream, args.data, scratch).items():
        times: dict[str, list[tuple[float, float]]] = {label: [] for label in trees}
        timed_run(repo, command)  # warm-up: file cache, numba's on-disk cache
        for _ in range(args.runs):
            for label, tree in trees.items():  # in turn, so drifting load hits both
                times[label].append(timed_run(tree, command))
        entry = {"argv": ["csgaussian", *command]}
        for label, runs in times.items():
            entry[label] = {
                "median_wall_s": round(statistics.median(w for w, _ in runs), 2),
                "median_cpu_s": round(statistics.median(c for _, c in runs), 2),
            }
        script = [sys.executable, str(Path(__file__).resolve()), str(args.stream)]
        script += [str(args.data), "--phases", name]
        env = {**os.environ, "PYTHONPATH": str(repo)}
        printed = subprocess.run(script, env=env, check=True, capture_output=True, text=True)
        entry["phases_new"] = json.loads(printed.stdout.strip().splitlines()[-1])
        result["commands"][name] = entry
    result["load_average"] = " ".join(f"{x:.1f}" for x in os.getloadavg())
    result["timing"] = "contended (shared 2-core machine)"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "startup.json").write_text(json.dumps(result, indent=2) + "\n")
    write_environment(args.out)
    lines = [*provenance_lines(origin), ""]
    for entry in result["commands"].values():
        lines += [f"## `{' '.join(entry['argv'])}`", "", "| tree | median wall s | median CPU s |"]
        lines += ["| --- | --- | --- |"]
        for label in trees:
            lines.append(
                f"| {label} | {entry[label]['median_wall_s']} | {entry[label]['median_cpu_s']} |"
            )
        lines += ["", "| phase (new, one process) | CPU s | wall s |", "| --- | --- | --- |"]
        lines += [f"| {r['phase']} | {r['cpu_s']} | {r['wall_s']} |" for r in entry["phases_new"]]
        lines.append("")
    lines.append(f"Load average at the end: {result['load_average']} ({result['timing']}).")
    (args.out / "startup.md").write_text("\n".join(lines) + "\n")
    print(json.dumps({k: {t: v[t] for t in trees} for k, v in result["commands"].items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
