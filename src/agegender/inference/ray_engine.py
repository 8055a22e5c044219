"""`predict --engine ray`: the folder pipeline on a Ray cluster (Ray Data), results streamed to the caller.

The image paths become a Ray dataset (`ray.data.from_items`, one small block per `batch_size` paths);
`map_batches` sends each block to a pool of `num_workers` FaceBatchActor actors, each of which builds the
Predictor once (model and detector loaded once per actor) and runs the local pipeline (`predict_stream`)
over its paths. Workers read the images themselves, so only paths and result rows pass through Ray's object
store (well under a kilobyte per image), and every path must be readable at the same place on every node.
An actor that dies is restarted and its batch retried (Ray Data's defaults for actor pools). Results come
back to the caller as ImageResults, equal to the local pipeline's for the same inputs and settings.

Only this module imports ray (`agegender[ray]`); the local engine never does.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from ..extras import require
from ..types import ImageResult
from .result_rows import model_info, result_rows, results_from_rows
from .settings import PredictorSpec

#: image paths per Ray task (map_batches batch and input block)
BATCH_SIZE = 16
#: CPUs Ray reserves for each actor: under one, so that an actor pool as large as the cluster's CPUs still
#: leaves room for Ray Data's own tasks (a pool holding every CPU starves them and the run stalls)
CPUS_PER_WORKER = 0.5


class FaceBatchActor:
    """One per Ray worker: builds the Predictor once; each call turns a batch of image paths into result rows.

    spec: the Predictor to build; threads: decoding and detection threads of the local pipeline inside the
    actor. Called with {"image": (N,) paths}; returns a pyarrow Table of result_rows (COLUMNS).
    """

    def __init__(self, spec: PredictorSpec, threads: int = 1) -> None:
        self.predictor = spec.build()
        self.model = model_info(self.predictor.estimator)
        self.threads = threads

    def __call__(self, batch: dict[str, Any]):  # -> pyarrow.Table
        from .batch import predict_stream
        from .parquet_results import rows_table

        rows: list[dict[str, Any]] = []
        for result, _ in predict_stream(self.predictor, [str(p) for p in batch["image"]], workers=self.threads):
            rows += result_rows(result, self.model)
        return rows_table(rows)


def connect(address: str | None = None, num_cpus: int | None = None) -> bool:
    """Connect to the Ray cluster at `address` ('HOST:PORT', 'auto', or None: the RAY_ADDRESS variable, or else
    a new local cluster of `num_cpus` CPUs, all by default). True if this call connected (and so the
    caller should `ray.shutdown()` when done)."""
    ray = require("ray", "--engine ray")
    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": False}
    given = "leave out --address" if address else "unset RAY_ADDRESS"
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address:
        check_reachable(address, given)
        kwargs["address"] = address
    else:
        kwargs |= {"num_cpus": num_cpus, "include_dashboard": False}
    ray.init(**kwargs)
    return True


class _NoProgressBarNote(logging.Filter):
    """Drops Ray Data's warning that its progress bars are off (they are: the command draws its own)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Progress bars disabled")


def check_reachable(address: str, given: str = "leave out --address", timeout: float = 10.0) -> None:
    """Raise ConnectionError with one line if nothing listens at HOST:PORT (Ray itself retries for minutes);
    `given`: how not to give it (the address came from --address or from RAY_ADDRESS). Other forms ('auto',
    'ray://...') are left to Ray."""
    import socket

    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or "/" in address:
        return
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise ConnectionError(f"no Ray cluster at {address} ({exc.strerror or exc}): start one there with "
                              f"'ray start --head', or {given} for a local one") from None


def ray_predict(paths: list[str], spec: PredictorSpec, *, num_workers: int | None = None,
                cpus_per_worker: float = CPUS_PER_WORKER, threads: int = 1, batch_size: int = BATCH_SIZE,
                preserve_order: bool = True) -> Iterator[ImageResult]:
    """ImageResults of `paths` computed on the connected Ray cluster (see `connect`), as they arrive.

    num_workers: actors in the pool (default: one per CPU of the cluster; never more than there are batches).
    preserve_order: yield in input order (else in the order batches finish, which never waits on a slow one).
    """
    ray = require("ray", "--engine ray")
    require("ray.data", "--engine ray", extra="ray")
    logging.getLogger("ray.data").setLevel(logging.WARNING)  # not its INFO lines about each execution
    progress_log = logging.getLogger("ray.data._internal.progress")
    if not any(isinstance(f, _NoProgressBarNote) for f in progress_log.filters):
        progress_log.addFilter(_NoProgressBarNote())
    if not paths:
        return

    blocks = math.ceil(len(paths) / batch_size)
    if num_workers is None:
        num_workers = int(ray.cluster_resources().get("CPU", 1.0))
    num_workers = max(1, min(num_workers, blocks))
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # the caller shows one bar in images
    ctx.execution_options.preserve_order = preserve_order
    ds = ray.data.from_items([{"image": p} for p in paths], override_num_blocks=blocks)
    spec = replace(spec.resolved(), threads=spec.threads or 1)  # one onnxruntime thread per session
    ds = ds.map_batches(FaceBatchActor, fn_constructor_kwargs={"spec": spec, "threads": threads},
                        batch_size=batch_size, batch_format="numpy",
                        compute=ray.data.ActorPoolStrategy(size=num_workers), num_cpus=cpus_per_worker)
    for table in ds.iter_batches(batch_format="pyarrow", batch_size=None):
        yield from results_from_rows(table.to_pylist())


def predict_on_ray(paths: list[str], spec: PredictorSpec, *, address: str | None = None,
                   num_workers: int | None = None, **kwargs: Any) -> Iterator[ImageResult]:
    """`ray_predict` on the cluster at `address` (see `connect`), disconnecting (and stopping a local cluster
    this call started) when done or abandoned. Nothing is started for an empty `paths`."""
    if not paths:
        return
    started = connect(address)
    try:
        yield from ray_predict(paths, spec, num_workers=num_workers, **kwargs)
    finally:
        if started:
            import ray

            ray.shutdown()
