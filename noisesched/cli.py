"""Command line: parse, validate, call the library, print. Bad input is one line and status 2."""

from __future__ import annotations

import argparse
import sys


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, status 2, no usage dump
        self.exit(2, f"noisesched: error: {message}\n")


def _build_parser() -> argparse.ArgumentParser:
    from .experiments.demo import DemoConfig

    parser = _Parser(prog="noisesched", description=__doc__)
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    demo = sub.add_parser("demo", help="GM two modes: VP/VE x constant/dilated, table and figure")
    defaults = DemoConfig()
    for name, kind in [("d", int), ("n", int), ("steps", int), ("p", float), ("m", float),
                       ("sigma", float), ("k", float), ("seed", int)]:
        demo.add_argument(f"--{name}", type=kind, default=getattr(defaults, name),
                          help=f"(default {getattr(defaults, name)})")
    demo.add_argument("--out", default="noisesched-out", help="output folder (default %(default)s)")
    demo.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
    return parser


def _demo(args) -> None:
    from .experiments.demo import DemoConfig, run_demo

    config = DemoConfig(d=args.d, n=args.n, steps=args.steps, p=args.p, m=args.m,
                        sigma=args.sigma, k=args.k, seed=args.seed)
    config.validate()
    run_demo(config, args.out)


def main(argv: list[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    try:
        {"demo": _demo}[args.command](args)
    except ValueError as err:
        if args.debug:
            raise
        print(f"noisesched: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
