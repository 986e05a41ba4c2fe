"""The query rule (issue 18 item 5) on paraphrase sets: before (best cosine >= 0.45) and after.

Each set (``benchmarks/paraphrases/<scene>.json``) names the scene's vocabulary (the texts whose
MiniLM embeddings make its language table: ``csgaussian/preprocess/prepare.py``) and queries per
entry, plus out-of-scene queries (key ``""``) that must select nothing. A paraphrase is right
when the rule matches and selects exactly its entry; an out-of-scene query when it matches
nothing. ``--stream NAME=FILE.csg`` scores against a decoded stream's own language table instead
(each table row named by its nearest vocabulary entry).

``--search`` also runs the grid search that calibrated :class:`QueryConfig` (the thresholds
maximising the mean of the two accuracies over all sets), and reports, for each set, the rule
found on the other sets alone (leave one scene out).

Writes ``--out/query_rule.json`` and ``query_rule.md``; prints ONE JSON line.

Usage:
    python benchmarks/query_rule.py [--search] [--stream kitchen=RUN/stream.csg] [--out DIR]
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from dataclasses import asdict, replace
from pathlib import Path

import torch

from csgaussian.semantics.encoders import get_text_encoder
from csgaussian.semantics.query import QueryConfig, match_decision

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import provenance, provenance_lines, write_environment  # noqa: E402

HERE = Path(__file__).resolve().parent
SETS = HERE / "paraphrases"
OLD_RULE = replace(QueryConfig(), min_score=0.45, sure_score=0.45)
"""The rule before issue 18: a best cosine of 0.45 or more matches, nothing else counts."""
GRID = {
    "min_score": (0.0, 0.25, 0.3, 0.35, 0.4, 0.45),
    "sure_score": (0.45, 0.5, 0.55, 0.6, 1.01),
    "min_margin": (0.0, 0.05, 0.08, 0.1, 0.12),
    "min_relevancy": (0.0, 0.4, 0.5, 0.6, 0.7),
}


def load_cases(name: str, streams: dict[str, Path]) -> dict:
    """The set's queries embedded: per query its cosines with the table and the negatives."""
    spec = json.loads((SETS / f"{name}.json").read_text())
    encoder = get_text_encoder("minilm")
    vocabulary = spec["vocabulary"]
    names = encoder.encode(vocabulary)
    if name in streams:
        from csgaussian import api

        table = api.decode(streams[name]).semantics.language.float()
        entry_names = [vocabulary[i] for i in (table @ torch.from_numpy(names).T).argmax(1)]
    else:
        table, entry_names = torch.from_numpy(names), list(vocabulary)
    negatives = torch.from_numpy(encoder.encode(list(QueryConfig().negatives)))
    cases = []
    for expected, texts in spec["queries"].items():
        rows = torch.from_numpy(encoder.encode(texts))
        for text, row in zip(texts, rows, strict=True):
            cases.append((text, expected, table @ row, negatives @ row))
    return {"cases": cases, "entry_names": entry_names}


def accuracy(sets: dict[str, dict], config: QueryConfig) -> dict[str, dict]:
    """Per set: share of paraphrases selected exactly right, of out-of-scene queries refused,
    and the queries got wrong."""
    out = {}
    for name, data in sets.items():
        right, refused, n_in, n_out, wrong = 0, 0, 0, 0, []
        for text, expected, scores, negative_scores in data["cases"]:
            decision = match_decision(scores, negative_scores, config)
            chosen = {data["entry_names"][i] for i in decision.entries.tolist()}
            if expected:
                n_in += 1
                ok = decision.matched and chosen == {expected}
                right += ok
            else:
                n_out += 1
                ok = not decision.matched
                refused += ok
            if not ok:
                got = sorted(chosen) if decision.matched else "nothing"
                wrong.append(
                    f"{text!r}: {got} (best {decision.best:.2f}, margin "
                    f"{decision.margin:.2f}, relevancy {decision.relevancy:.2f})"
                )
        out[name] = {
            "paraphrases_right": round(right / n_in, 3),
            "out_of_scene_refused": round(refused / n_out, 3),
            "paraphrases": n_in,
            "out_of_scene": n_out,
            "wrong": wrong,
        }
    return out


def score(result: dict[str, dict]) -> float:
    return sum(r["paraphrases_right"] + r["out_of_scene_refused"] for r in result.values()) / (
        2 * len(result)
    )


def search(sets: dict[str, dict]) -> QueryConfig:
    """The grid point of :data:`GRID` with the best :func:`score` (first in grid order on ties)."""
    best, best_score = QueryConfig(), -1.0
    for values in itertools.product(*GRID.values()):
        config = replace(QueryConfig(), **dict(zip(GRID, values, strict=True)))
        value = score(accuracy(sets, config))
        if value > best_score + 1e-9:
            best, best_score = config, value
    return best


def thresholds(config: QueryConfig) -> dict[str, float]:
    return {k: v for k, v in asdict(config).items() if k in GRID}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", default=["kitchen", "builtin"])
    parser.add_argument("--stream", action="append", default=[], help="NAME=FILE.csg")
    parser.add_argument("--search", action="store_true")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "query_rule")
    args = parser.parse_args(argv)
    origin = provenance(["query_rule.py", *(argv if argv is not None else sys.argv[1:])])
    streams = dict(item.split("=", 1) for item in args.stream)
    sets = {name: load_cases(name, {k: Path(v) for k, v in streams.items()}) for name in args.sets}
    result = {
        **origin,
        "before": {"rule": thresholds(OLD_RULE), **accuracy(sets, OLD_RULE)},
        "after": {"rule": thresholds(QueryConfig()), **accuracy(sets, QueryConfig())},
    }
    if args.search:
        found = search(sets)
        result["search"] = {
            "grid": GRID,
            "best": thresholds(found),
            "score": score(accuracy(sets, found)),
        }
        held_out = {}
        for name in sets:
            rule = search({k: v for k, v in sets.items() if k != name})
            held_out[name] = {"rule": thresholds(rule), **accuracy({name: sets[name]}, rule)[name]}
        result["leave_one_scene_out"] = held_out
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "query_rule.json").write_text(json.dumps(result, indent=2) + "\n")
    write_environment(args.out)
    lines = [
        *provenance_lines(origin),
        "",
        "| rule | set | paraphrases right | out-of-scene refused |",
        "| --- | --- | --- | --- |",
    ]
    for when in ("before", "after"):
        for name in sets:
            r = result[when][name]
            lines.append(
                f"| {when} {result[when]['rule']} | {name} | {r['paraphrases_right']:.3f} "
                f"of {r['paraphrases']} | {r['out_of_scene_refused']:.3f} of {r['out_of_scene']} |"
            )
    (args.out / "query_rule.md").write_text("\n".join(lines) + "\n")
    print(
        json.dumps(
            {
                when: {n: {k: v for k, v in result[when][n].items() if k != "wrong"} for n in sets}
                for when in ("before", "after")
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
