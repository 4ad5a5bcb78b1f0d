"""`python -m simulation`: generate a synthetic multi-bank world, or run the demo."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from simulation import demo
from simulation.world import CHUNK_DAYS, generate_world


def cmd_synth(args: argparse.Namespace) -> int:
    """Write the world and print its manifest, less the parameters, truncated."""
    try:
        manifest = generate_world(
            Path(args.out),
            n_banks=args.banks,
            preset=args.preset,
            seed=args.seed,
            chunk_days=args.chunk_days,
            **_overrides(args.set),
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    summary = {k: manifest[k] for k in manifest if k != "parameters"}
    print(json.dumps(summary, indent=2, default=str)[:4000])
    return 0


def _overrides(pairs: list[str]) -> dict[str, object]:
    """``KEY=VALUE`` pairs, each value read as JSON (``0.5``, ``true``, ``{"cycle": ["1"]}``)."""
    out: dict[str, object] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--set {pair!r}: expected KEY=VALUE, e.g. mule_reuse_share=0.5")
        try:
            out[key] = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"--set {key}: {text!r} is not a JSON value ({exc.msg})") from exc
    return out


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m simulation", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    g = sub.add_parser("synth", help="generate a synthetic multi-bank world (IBM AML schema)")
    g.add_argument("--out", required=True)
    g.add_argument("--banks", type=int, default=None, help="default: the preset's bank count")
    g.add_argument("--preset", default="tiny")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument(
        "--chunk-days",
        type=int,
        default=None,
        help="generate and write this many days at a time, in bounded memory (another world "
        "than the in-memory one for the seed); 0 = all in memory; default: 0, except for the "
        f"presets {', '.join(f'{p} ({d})' for p, d in CHUNK_DAYS.items())}",
    )
    g.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="replace one generator parameter of the preset (a JSON value), e.g. "
        "--set mule_reuse_share=0.5; repeatable",
    )
    g.set_defaults(func=cmd_synth)
    # Listed for --help only: main() hands everything after "demo" to the demo's own parser.
    sub.add_parser("demo", help="run the multi-bank demo (see: demo --help)", add_help=False)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["demo"]:
        return demo.main(argv[1:])
    args = parser().parse_args(argv)
    return int(args.func(args))
