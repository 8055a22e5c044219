"""Argument types shared by the commands: numbers that must be in range, refused by argparse in one line
(`agegender predict: error: argument --workers: must be 1 or more, got 0`) before anything is loaded."""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    """An int of 1 or more (counts of workers, images per file, ...)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value
