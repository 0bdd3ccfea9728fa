"""TensorBoard event files, read with the TensorFlow-free loader shipped in the `tensorboard` package.

A path is one event file or a log folder; a folder's event files (searched recursively) are read in the
order their names sort (the names start with the creation time), so a run restarted into a new event
file reads as one stream and the restart rule applies. Scalars in subfolders other than the first
folder holding events get their folder (relative to the path given) as a tag prefix (`SummaryWriter.add_scalars` writes one subfolder
per series). Only scalar summaries are read; text, histograms and images are skipped.
"""
from __future__ import annotations

from pathlib import Path

from ceiling.errors import CeilingError, error_at
from ceiling.ingest.core import Collector

EVENT_GLOB = "events.out.tfevents.*"


def event_files(path: Path) -> list[Path]:
    """The event files at `path` (a file, or a folder searched recursively), in reading order."""
    if path.is_file():
        return [path]
    files = sorted(path.rglob(EVENT_GLOB), key=lambda p: (len(p.relative_to(path).parts), str(p.parent), p.name))
    if not files:
        raise error_at(path, f"no TensorBoard event files ({EVENT_GLOB}) in this folder")
    return files


def read_tensorboard(path: Path, collector: Collector, fmt: str, mapping: dict[str, str]) -> None:
    """Stream the scalar events of every event file at `path` into `collector` (locations: event index)."""
    try:
        from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
        from tensorboard.util import tensor_util
    except ImportError:  # pragma: no cover - tensorboard is a declared extra
        raise CeilingError("reading TensorBoard files needs the tensorboard package: pip install tensorboard") from None
    files = event_files(path)
    collector.step_key = "each event's step"
    root = files[0].parent
    index = 0
    for file in files:
        prefix = "" if file.parent == root else file.parent.relative_to(path).as_posix() + "/"
        try:
            for event in EventFileLoader(str(file)).Load():
                index += 1
                if not event.HasField("summary"):
                    continue
                row: dict[str, float] = {}
                for value in event.summary.value:
                    kind = value.WhichOneof("value")
                    if kind == "simple_value":
                        row[prefix + value.tag] = float(value.simple_value)
                    elif kind == "tensor" and value.metadata.plugin_data.plugin_name in ("scalars", ""):
                        arr = tensor_util.make_ndarray(value.tensor)
                        if arr.size == 1 and arr.dtype.kind in "fiub":
                            row[prefix + value.tag] = float(arr.reshape(-1)[0])
                if row:
                    if event.step < 0:
                        raise error_at(file, f"event {index} has step {event.step} < 0")
                    collector.add(int(event.step), row, index)
        except CeilingError:
            raise
        except Exception as exc:  # noqa: BLE001 - the loader raises protobuf/decoding errors on corrupt files
            raise error_at(file, f"unreadable event file ({type(exc).__name__}) after event {index}") from None
    if len(files) > 1:
        collector.note(f"{len(files)} event files read in name order")
