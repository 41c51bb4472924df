"""What one emulated request does, counted while a cost profile (sandbox.costs) is on: the emulators call the
`count_*` functions, which do nothing outside `metering()`. Kept apart from sandbox.costs so the emulators'
low-level modules (rows, bc, dataverse, multipart) can report without importing the profile's storage."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass
class Meter:
    inner: int = 0
    read: int = 0
    written: int = 0


_local = threading.local()


@contextmanager
def metering() -> Iterator[Meter]:
    meter = Meter()
    _local.meter = meter
    try:
        yield meter
    finally:
        _local.meter = None


def _meter() -> Meter | None:
    return getattr(_local, "meter", None)


def count_read(records: int) -> None:
    if (meter := _meter()) is not None:
        meter.read += records


def count_written(records: int = 1) -> None:
    if (meter := _meter()) is not None:
        meter.written += records


def count_inner_request() -> None:
    if (meter := _meter()) is not None:
        meter.inner += 1
