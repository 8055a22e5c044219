"""The `agegender` command: a thin layer over the Python API.

Each command group lives in its own module with an `add_parser(subparsers)` function (some add two
commands); COMMAND_MODULES lists them in help order.

Optional dependencies: a command imports what it needs where it needs it (inside its `cmd_*` function
or deeper in the library). When that module is not installed, `main` prints one line naming the extra
that installs it (`agegender train: needs PyTorch: pip install "agegender[train]"`) and exits with 2;
the table from module to extra is `agegender.extras.MODULES`. A command whose module comes with a
different extra than the table's says so in its parser: `p.set_defaults(func=cmd, extras={"onnx":
"keras"})`. Library code can check ahead with `agegender.extras.require("h5py", "importing Keras
weights")`. AGEGENDER_DEBUG=1 shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from ..extras import missing_extra

COMMAND_MODULES = [
    ("predict", ["add_parser"]),
    ("prepare", ["add_parser"]),
    ("train", ["add_parser", "add_plot_parser"]),
    ("evaluate", ["add_parser", "add_compare_parser"]),
    ("report", ["add_parser"]),
    ("download", ["add_parser"]),
    ("models", ["add_parser", "add_models_parser"]),
    ("keras", ["add_parser"]),
    ("tfjs", ["add_parser"]),
    ("demo", ["add_parser"]),
    ("serve", ["add_parser"]),
    ("info", ["add_parser"]),
]


def _version_line(version: str) -> str:
    import platform
    from importlib import metadata

    try:
        ort = metadata.version("onnxruntime")
    except metadata.PackageNotFoundError:
        ort = "missing"
    return f"agegender {version} (onnxruntime {ort}, Python {platform.python_version()})"


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(prog="agegender", description="Age and gender estimation from face images.")
    parser.add_argument("--version", action="version", version=_version_line(__version__),
                        help="show the version (and onnxruntime's, Python's); `agegender info` tells more")
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
    except ImportError as exc:
        if os.environ.get("AGEGENDER_DEBUG"):
            raise
        missing = missing_extra(exc, getattr(a, "extras", None))
        if missing is None:
            print(f"agegender {a.command}: error: {exc}", file=sys.stderr)
            return 1
        print(f"agegender {a.command}: {missing}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
