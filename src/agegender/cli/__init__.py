"""The `agegender` command: a thin layer over the Python API.

Each command group lives in its own module with an `add_parser(subparsers)` function (some add two
commands); COMMAND_MODULES lists them in help order.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMAND_MODULES = [
    ("predict", ["add_parser"]),
    ("prepare", ["add_parser"]),
    ("train", ["add_parser", "add_plot_parser"]),
    ("evaluate", ["add_parser"]),
    ("download", ["add_parser"]),
    ("models", ["add_parser", "add_models_parser"]),
    ("keras", ["add_parser"]),
    ("tfjs", ["add_parser"]),
    ("demo", ["add_parser"]),
    ("serve", ["add_parser"]),
]


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(prog="agegender", description="Age and gender estimation from face images.")
    parser.add_argument("--version", action="version", version=f"agegender {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for module, adders in COMMAND_MODULES:
        mod = importlib.import_module(f".{module}", __name__)
        for adder in adders:
            getattr(mod, adder)(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    a = parser.parse_args(argv)
    try:
        return int(a.func(a) or 0)
    except (FileNotFoundError, FileExistsError, ValueError, RuntimeError, OSError) as exc:
        print(f"agegender {a.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
