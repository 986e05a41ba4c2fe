"""Structure-aware fuzzing of .csg streams: mutate inside sections, re-checksum, decode.

Each case takes a seed stream apart, changes one to three things *inside* it (a metadata value,
its type or nesting, a payload byte or header word, a section's length, order, layer or name,
a whole section swapped, dropped or duplicated) and writes it back with ``write_container``, so
that every checksum is valid and each section decoder, not the CRC check, meets the bad input.
Decoding must end in a Scene or one ``StreamError`` line; an accepted scene is also rendered
from one small camera and its semantic leaves computed (what ``render``, ``eval`` and ``query``
do first).

Usage: python benchmarks/fuzz.py STREAM.csg [--cases 10000] [--seed 0] [--timeout 60]
       [--case N] [--save DIR]
Runs the cases in a worker process (restarted after a hang or a crash), prints a progress line
every 500 cases, then ONE JSON line: outcomes, seconds per case, tracebacks, hangs, memory kills
and peak memory (per case, Linux: the peak is reset before each case). ``--case N`` replays case
N in this process and prints its outcome or traceback.

``tests/codec/test_fuzz.py`` imports ``mutate`` and ``decode_case`` from this file.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import random
import re
import resource
import struct
import sys
import time
import traceback
import zlib
from pathlib import Path
from typing import Any

JSON_SECTIONS = ("meta", "semantic_meta")
KNOWN_SECTIONS = (
    "meta",
    "positions",
    "masks",
    "renderer",
    "hyperprior",
    "feature",
    "scaling",
    "offsets",
    "cameras",
    "semantic_meta",
    "semantic_mlp",
    "semantic_hyperprior",
    "semantic",
    "semantic_codebook",
    "semantic_language",
)
INTERESTING_NUMBERS = (
    0,
    1,
    -1,
    2,
    3,
    7,
    255,
    256,
    65535,
    65536,
    2**31 - 1,
    2**31,
    2**32,
    2**63,
    10**30,
    0.5,
    -0.5,
    1e-300,
    5e-324,
    1e300,
    float("nan"),
    float("inf"),
    float("-inf"),
)
INTERESTING_WORDS = (0, 1, 2, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF)

Section = list[Any]  # [name, payload bytes, layer, optional bit]


# ---------------------------------------------------------------------------------------------
# Mutations


def _sections(data: bytes) -> list[Section]:
    from csgaussian.codec.container import optional_sections, read_container, section_layers

    layers, optional = section_layers(data), optional_sections(data)
    return [
        [name, payload, layers[name], name in optional]
        for name, payload in read_container(data).items()
    ]


def _json_paths(value: Any, path: tuple = ()) -> list[tuple]:
    """Every path to a value inside a JSON document (the root included)."""
    out = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            out += _json_paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            out += _json_paths(item, (*path, index))
    return out


def _get(doc: Any, path: tuple) -> Any:
    for part in path:
        doc = doc[part]
    return doc


def _set(doc: Any, path: tuple, value: Any) -> Any:
    if not path:
        return value
    _get(doc, path[:-1])[path[-1]] = value
    return doc


def _new_value(rng: random.Random, value: Any) -> Any:
    """A value of the same kind, nearby or extreme, or of another type or shape."""
    kind = rng.random()
    if isinstance(value, bool):
        return rng.choice([not value, 0, 1, "true", None, [value]])
    if isinstance(value, int | float) and kind < 0.7:
        choice = rng.random()
        if choice < 0.4:
            return rng.choice(INTERESTING_NUMBERS)
        if choice < 0.7:
            return rng.choice([value + 1, value - 1, value * 2, -value, value // 2, value * 1000])
        if choice < 0.85:
            return float(value) + rng.choice([0.5, 1e-9, 0.0])
        return rng.choice([str(value), [value], {"v": value}, None, True])
    if isinstance(value, str) and kind < 0.7:
        return rng.choice(["", "x" * 10_000, value + "\u00e9", value[:-1], 7, None, "\x00"])
    if isinstance(value, list) and kind < 0.8:
        items = list(value)
        choice = rng.random()
        if choice < 0.3 and items:
            del items[rng.randrange(len(items))]
        elif choice < 0.6:
            items.insert(rng.randrange(len(items) + 1), rng.choice([*items, 0, 1.5, "a"]))
        elif choice < 0.7:
            items = []
        elif choice < 0.8:
            items = items * rng.choice([2, 100])
        else:
            items = [items]
        return items
    if isinstance(value, dict) and kind < 0.8:
        items = dict(value)
        choice = rng.random()
        if choice < 0.4 and items:
            del items[rng.choice(list(items))]
        elif choice < 0.7:
            items[rng.choice(["extra", "version", "n_anchors", "", "depth"])] = rng.choice(
                [1, "x", None, [], {}]
            )
        elif choice < 0.85 and len(items) >= 2:
            a, b = rng.sample(list(items), 2)
            items[a], items[b] = items[b], items[a]
        else:
            return [items]
        return items
    return rng.choice([None, 0, -1, 1e308, "", [], {}, True, [[[[[[[[0]]]]]]]]])


def mutate_json(rng: random.Random, sections: list[Section]) -> str:
    candidates = [s for s in sections if s[0] in JSON_SECTIONS]
    if not candidates:
        return mutate_bytes(rng, sections)
    section = rng.choice(candidates)
    try:
        doc = json.loads(zlib.decompress(section[1]))
    except (zlib.error, ValueError, RecursionError):  # an earlier mutation nested it too deep
        return mutate_bytes(rng, sections)
    style = rng.random()
    if style < 0.05:
        text = json.dumps(doc)
        cut = rng.randrange(len(text) + 1)
        section[1] = zlib.compress(text[:cut].encode())
        return f"{section[0]}: JSON text cut at {cut}"
    if style < 0.08:
        depth = rng.choice([50, 500, 5000])
        section[1] = zlib.compress(("[" * depth + "]" * depth).encode())
        return f"{section[0]}: nesting {depth}"
    path = rng.choice(_json_paths(doc))
    old = _get(doc, path)
    new = _new_value(rng, old)
    doc = _set(doc, path, new)
    section[1] = zlib.compress(json.dumps(doc).encode(), level=rng.choice([0, 6, 9]))
    return f"{section[0]}: {'.'.join(map(str, path)) or '<root>'} {_short(old)} -> {_short(new)}"


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, float) or math.isfinite(value) else str(value)
    return text if len(text) <= 30 else text[:27] + "..."


def mutate_bytes(rng: random.Random, sections: list[Section]) -> str:
    binary = [s for s in sections if s[0] not in JSON_SECTIONS]
    section = rng.choice(binary if binary and rng.random() < 0.9 else sections)
    payload = bytearray(section[1])
    if not payload:
        section[1] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        return f"{section[0]}: empty payload filled"
    done = []
    for _ in range(rng.randint(1, 8)):
        head = rng.random() < 0.5
        pos = rng.randrange(min(len(payload), 32) if head else len(payload))
        op = rng.random()
        if op < 0.4:
            payload[pos] ^= 1 << rng.randrange(8)
        elif op < 0.7:
            payload[pos] = rng.randrange(256)
        else:
            payload[pos] = rng.choice([0, 0xFF, 0x7F, 0x80])
        done.append(pos)
    section[1] = bytes(payload)
    return f"{section[0]}: bytes at {sorted(done)}"


def mutate_word(rng: random.Random, sections: list[Section]) -> str:
    """An interesting integer written over a header-like field (counts, lengths, shapes)."""
    section = rng.choice(sections)
    payload = bytearray(section[1])
    fmt = rng.choice(["<B", "<H", "<I", "<Q"])
    size = struct.calcsize(fmt)
    if len(payload) < size:
        return mutate_bytes(rng, sections)
    pos = rng.randrange(min(len(payload) - size, 48) + 1)
    value = rng.choice(INTERESTING_WORDS) & ((1 << (8 * size)) - 1)
    if rng.random() < 0.3:
        (old,) = struct.unpack_from(fmt, payload, pos)
        value = (old + rng.choice([-1, 1, 2, -2, 8])) % (1 << (8 * size))
    struct.pack_into(fmt, payload, pos, value)
    section[1] = bytes(payload)
    return f"{section[0]}: {fmt} at {pos} = {value}"


def mutate_length(rng: random.Random, sections: list[Section]) -> str:
    section = rng.choice(sections)
    payload = section[1]
    op = rng.random()
    if op < 0.35 and payload:
        cut = rng.randrange(len(payload))
        section[1] = payload[:cut]
        return f"{section[0]}: cut to {cut} of {len(payload)} bytes"
    if op < 0.55 and payload:
        a = rng.randrange(len(payload))
        b = min(len(payload), a + rng.randint(1, 64))
        section[1] = payload[:a] + payload[b:]
        return f"{section[0]}: bytes {a}..{b} removed"
    extra = rng.choice([b"\x00" * rng.randint(1, 64), bytes(rng.randrange(256) for _ in range(8))])
    extra = extra if rng.random() < 0.8 else payload[: rng.randint(1, 4096)]
    pos = len(payload) if rng.random() < 0.6 else rng.randrange(len(payload) + 1)
    section[1] = payload[:pos] + extra + payload[pos:]
    return f"{section[0]}: {len(extra)} bytes inserted at {pos}"


def mutate_sections(rng: random.Random, sections: list[Section]) -> str:
    """Swap payloads, reorder, drop, duplicate, rename or re-layer whole sections."""
    op = rng.random()
    if op < 0.25 and len(sections) >= 2:
        a, b = rng.sample(range(len(sections)), 2)
        sections[a][1], sections[b][1] = sections[b][1], sections[a][1]
        return f"payloads of {sections[a][0]} and {sections[b][0]} swapped"
    if op < 0.35:
        rng.shuffle(sections)
        return "sections shuffled"
    if op < 0.5 and sections:
        dropped = sections.pop(rng.randrange(len(sections)))
        return f"{dropped[0]} dropped"
    if op < 0.65 and sections:
        source = rng.choice(sections)
        name = rng.choice([n for n in (*KNOWN_SECTIONS, "extra", "x" * 32)])
        names = {s[0] for s in sections}
        if name in names:
            name = f"{name[:28]}_2"
        layer = rng.choice([source[2], "base", "semantic"])
        sections.append([name, source[1], layer, rng.choice([source[3], not source[3]])])
        return f"{source[0]} duplicated as {name}"
    if op < 0.8 and sections:
        section = rng.choice(sections)
        old = section[0]
        section[0] = rng.choice([*KNOWN_SECTIONS, "unknown", old.upper()])
        return f"{old} renamed {section[0]}"
    if op < 0.9 and sections:
        section = rng.choice(sections)
        section[3] = not section[3]
        return f"{section[0]} optional bit {'set' if section[3] else 'cleared'}"
    if sections:
        section = rng.choice(sections)
        section[2] = "semantic" if section[2] == "base" else "base"
        return f"{section[0]} moved to the {section[2]} layer"
    return "nothing"


def mutate_splice(rng: random.Random, sections: list[Section]) -> str:
    """A slice of one section written over part of another."""
    if len(sections) < 2:
        return mutate_bytes(rng, sections)
    source, target = rng.sample(sections, 2)
    if not source[1] or not target[1]:
        return mutate_length(rng, sections)
    a = rng.randrange(len(source[1]))
    chunk = source[1][a : a + rng.randint(1, 256)]
    pos = rng.randrange(len(target[1]))
    target[1] = target[1][:pos] + chunk + target[1][pos + len(chunk) :]
    return f"{len(chunk)} bytes of {source[0]} spliced into {target[0]} at {pos}"


MUTATORS = (
    (mutate_json, 0.35),
    (mutate_bytes, 0.2),
    (mutate_word, 0.15),
    (mutate_length, 0.1),
    (mutate_sections, 0.1),
    (mutate_splice, 0.1),
)


def _write(sections: list[Section]) -> bytes:
    """The container of ``sections`` with valid checksums: names made unique and printable,
    layers in order (``write_container``'s rules), at most its section count."""
    from csgaussian.codec.container import MAX_NAME_LEN, MAX_SECTIONS, write_container

    seen: set[str] = set()
    rank = {"base": 0, "semantic": 1, "edit": 2}
    ordered = sorted(sections, key=lambda s: rank[s[2]])[:MAX_SECTIONS]
    out, layers, optional = [], {}, set()
    for name, payload, layer, is_optional in ordered:
        name = "".join(c for c in name if c.isascii() and c.isprintable())[:MAX_NAME_LEN] or "x"
        while name in seen:
            name = f"{name[: MAX_NAME_LEN - 1]}_"[-MAX_NAME_LEN:]
        seen.add(name)
        out.append((name, bytes(payload)))
        layers[name] = layer
        if is_optional:
            optional.add(name)
    return write_container(out, layers, optional)


def _table_mutation(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    """A section length or layer code changed in the table, the header checksum rewritten (the
    payload checksums then guard the payloads)."""
    from csgaussian.codec.container import _CRC, _ENTRY, _FIXED

    _, _, _, count = _FIXED.unpack_from(data, 0)
    pos, entries = _FIXED.size, []
    for _ in range(count):
        n = data[pos]
        entries.append(pos + 1 + n)
        pos += 1 + n + _ENTRY.size
    if not entries:
        return data, "no table"
    header = bytearray(data[:pos])
    at = rng.choice(entries)
    layer, length, crc = _ENTRY.unpack_from(header, at)
    if rng.random() < 0.3:
        layer = rng.choice([0, 1, 2, 0x80, 0x81, 0x83, 255])
        what = f"layer code {layer}"
    else:
        length = max(0, length + rng.choice([-1, 1, -8, 8, 1 << 20, 1 << 40, -length]))
        what = f"length {length}"
    _ENTRY.pack_into(header, at, layer, length, crc)
    return bytes(header) + _CRC.pack(zlib.crc32(header)) + data[pos + _CRC.size :], what


def mutate(data: bytes, rng: random.Random) -> tuple[bytes, list[str]]:
    """A crafted variant of the stream ``data`` (valid checksums) and what was changed."""
    if rng.random() < 0.03:
        crafted, what = _table_mutation(rng, data)
        return crafted, [f"table: {what}"]
    sections = _sections(data)
    functions, weights = zip(*MUTATORS, strict=True)
    done = [
        rng.choices(functions, weights)[0](rng, sections)
        for _ in range(rng.choice([1, 1, 1, 2, 3]))
    ]
    return _write(sections), done


def case_rng(seed: int, index: int) -> random.Random:
    """The generator of case ``index``: any case can be replayed alone."""
    return random.Random(seed * 1_000_003 + index)


# ---------------------------------------------------------------------------------------------
# Running a case


def _camera(model):
    """A small camera that sees the whole anchor lattice from -z."""
    import torch

    from csgaussian.types import Camera

    anchors = model.anchors.double()
    centre = (anchors.min(0).values + anchors.max(0).values) / 2 if len(anchors) else None
    extent = float((anchors.max(0).values - anchors.min(0).values).max()) if len(anchors) else 1
    centre = torch.zeros(3, dtype=torch.float64) if centre is None else centre
    eye = centre - torch.tensor([0.0, 0.0, 2.0 * max(extent, 1e-3)], dtype=torch.float64)
    viewmat = torch.eye(4)
    viewmat[:3, 3] = (-eye).float()
    K = torch.tensor([[24.0, 0.0, 16.0], [0.0, 24.0, 12.0], [0.0, 0.0, 1.0]])
    return Camera(viewmat=viewmat, K=K, width=32, height=24)


def decode_case(data: bytes, use: bool = True, max_memory: int | None = None) -> str:
    """Decode a crafted stream; returns "accepted" or "refused: <message>". Anything other than
    a Scene or a one-line StreamError propagates (the caller records it as a failure).

    ``use``: render an accepted scene from one small camera and compute its semantic leaves.
    """
    import torch

    from csgaussian.codec.container import StreamError
    from csgaussian.codec.stream import decode_scene
    from csgaussian.scene.rendering import render_view

    try:
        limit = {} if max_memory is None else {"max_memory": max_memory}  # older builds: none
        scene = decode_scene(data, **limit)
    except StreamError as err:
        message = str(err)
        if "\n" in message or not message:
            raise AssertionError(f"StreamError message is not one line: {message!r}") from None
        return f"refused: {message}"
    if use:
        with torch.no_grad():
            render_view(scene.model, _camera(scene.model), edit=scene.edit_hook())
            if scene.semantics is not None:
                scene.semantics.slot_leaves(scene.model)
    return "accepted"


# ---------------------------------------------------------------------------------------------
# The on-demand campaign


def _reset_peak() -> bool:
    """Reset this process's peak RSS (Linux ``clear_refs``); False where unsupported."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _worker(conn, max_memory: int | None, address_limit: int | None, warm: bytes) -> None:
    import torch

    torch.set_num_threads(1)
    decode_case(warm)  # imports, numba's kernels, torch's pools: not any case's cost
    if address_limit is not None:  # an allocation beyond it is a MemoryError, not the OOM killer
        resource.setrlimit(resource.RLIMIT_AS, (address_limit, address_limit))
    while True:
        job = conn.recv()
        if job is None:
            return
        _reset_peak()
        before = _status("VmRSS")
        start = time.perf_counter()
        try:
            outcome, detail = decode_case(job, max_memory=max_memory), ""
        except Exception as err:  # every escape is a finding (MemoryError included)
            outcome = "crash"
            detail = "".join(traceback.format_exception(err))[-4000:]
        seconds = time.perf_counter() - start
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        conn.send((outcome, detail, seconds, peak, peak - before))


def _status(field: str) -> int:
    """A byte count from /proc/self/status (VmRSS, VmSize); 0 where unavailable."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class Worker:
    """A decoding process that survives hangs and crashes of a case (it is restarted)."""

    def __init__(self, max_memory: int | None, address_limit: int | None, warm: bytes) -> None:
        self.args = (max_memory, address_limit, warm)
        self.start()

    def start(self) -> None:
        context = mp.get_context("spawn")  # not fork: numba's OpenMP pool does not survive it
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_worker, args=(child, *self.args), daemon=True)
        self.process.start()

    def run(self, data: bytes, timeout: float) -> tuple[str, str, float, int, int]:
        """(outcome, detail, seconds, peak RSS, peak RSS above the RSS before the case)."""
        self.conn.send(data)
        if not self.conn.poll(timeout):
            self.restart()
            return "hang", f"no answer in {timeout:g} s", timeout, 0, 0
        try:
            return self.conn.recv()
        except EOFError:
            self.process.join(5)
            code = self.process.exitcode
            self.restart()
            return "killed", f"worker died (exit code {code})", 0.0, 0, 0

    def restart(self) -> None:
        self.process.kill()
        self.process.join()
        self.start()

    def close(self) -> None:
        self.conn.send(None)
        self.process.join(5)


def campaign(args: argparse.Namespace) -> dict:
    seed_stream = args.stream.read_bytes()
    decode_case(seed_stream)  # the seed itself must decode
    address_limit = _status("VmSize") + args.address_space if args.address_space else None
    worker = Worker(args.max_memory, address_limit, seed_stream)
    counts: dict[str, int] = {}
    failures, seconds, started = [], [], time.perf_counter()
    messages: list[str] = []
    worst = {"accepted": (0, 0, -1), "refused": (0, 0, -1)}
    for index in range(args.cases):
        data, done = mutate(seed_stream, case_rng(args.seed, index))
        outcome, detail, elapsed, peak, added = worker.run(data, args.timeout)
        kind = outcome.split(":")[0]
        counts[kind] = counts.get(kind, 0) + 1
        seconds.append(elapsed)
        if kind == "refused":
            messages.append(outcome)
        if kind in worst and added > worst[kind][1]:
            worst[kind] = (peak, added, index)
        if kind not in ("accepted", "refused"):
            failures.append({"case": index, "outcome": kind, "mutations": done, "detail": detail})
            if args.save:
                args.save.mkdir(parents=True, exist_ok=True)
                (args.save / f"case{index}.csg").write_bytes(data)
        if (index + 1) % 500 == 0:
            print(f"{index + 1} cases, {counts}", file=sys.stderr, flush=True)
    worker.close()
    ordered = sorted(seconds)
    return {
        "seed_stream": str(args.stream),
        "seed_bytes": len(seed_stream),
        "cases": args.cases,
        "outcomes": counts,
        "tracebacks": sum(1 for f in failures if f["outcome"] == "crash"),
        "hangs": sum(1 for f in failures if f["outcome"] == "hang"),
        "memory_kills": sum(1 for f in failures if f["outcome"] == "killed"),
        "seconds_total": round(time.perf_counter() - started, 1),
        "seconds_per_case_mean": round(sum(seconds) / max(len(seconds), 1), 4),
        "seconds_per_case_median": round(ordered[len(ordered) // 2], 4) if ordered else None,
        "seconds_per_case_max": round(ordered[-1], 3) if ordered else None,
        **{
            f"worst_{kind}": {
                "case": index,
                "peak_rss_mib": round(peak / 2**20, 1),
                "added_mib": round(added / 2**20, 1),
            }
            for kind, (peak, added, index) in worst.items()
        },
        "per_case_peak": _reset_peak(),
        "refusals": _stems(messages),
        "failures": failures[:20],
    }


def _stems(messages: list[str], top: int = 25) -> dict[str, int]:
    """The most frequent refusals, numbers masked: which checks the cases reached."""
    stems: dict[str, int] = {}
    for message in messages:
        stem = re.sub(r"[0-9]+", "N", message.removeprefix("refused: "))[:60]
        stems[stem] = stems.get(stem, 0) + 1
    return dict(sorted(stems.items(), key=lambda item: -item[1])[:top])


def replay(args: argparse.Namespace) -> None:
    data, done = mutate(args.stream.read_bytes(), case_rng(args.seed, args.case))
    print(f"case {args.case}: {'; '.join(done)}")
    print(decode_case(data, max_memory=args.max_memory))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stream", type=Path, help="seed .csg stream (both layers, ideally)")
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds before a hang")
    parser.add_argument("--max-memory", type=int, help="decode_scene's limit (default 4 GiB)")
    parser.add_argument(
        "--address-space",
        type=int,
        default=8 << 30,
        help="address space a case may add (bytes; 0: no limit); beyond it: MemoryError",
    )
    parser.add_argument("--case", type=int, help="replay one case in this process")
    parser.add_argument("--save", type=Path, help="folder for the streams of failing cases")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    if args.case is not None:
        replay(args)
        return
    print(json.dumps(campaign(args)))


if __name__ == "__main__":
    main()
