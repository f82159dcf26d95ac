"""Camera sources: where a worker's frames (or a code reader's reads) come from.

Every source has ``open()``, ``read(alloc)``, ``pending()``, ``close()`` and these attributes:
``kind``, ``free_running`` (a camera that should deliver frames all the time: silence means it
stalled) and ``accepted`` (the camera properties asked and what the camera reported back).

``read(alloc)`` returns ``(capture_mono, frame)`` for cameras, where the grey frame was written into
``alloc(height, width)`` when a buffer is offered (the worker's shared-memory ring: no copy), or
``(capture_mono, Reads)`` for code readers. It raises :class:`NoFrame` when nothing came within
its short wait (an idle triggered camera) and :class:`SourceError` when the source is gone.

Specs (the grammar is in controller/config/sources.py): ``tcp://HOST:PORT/NAME`` (the simulated
line's cameras), ``N`` or ``usb:N`` (USB by index), ``rtsp://``/``http(s)://`` (IP camera), a video
file or ``file:PATH``, a folder of images, ``serial:DEVICE?baud=N`` and ``reader://HOST:PORT``
(fixed-mount code readers sending one read per text line). Query options: ``fps`` and ``loop`` for
replays, ``baud`` for serial, ``symbology`` for readers.

The package: ``base`` (the errors and types every source shares), ``cameras`` (OpenCV and folder
replays), ``sim`` (the simulated line's cameras), ``readers`` (code readers); :func:`open_source`
picks one for a spec.
"""

from __future__ import annotations

from sorter.controller.config.sources import VIDEO_SUFFIXES, source_kind, split_spec
from sorter.vision.sources.base import Alloc, NoFrame, Reads, SourceError
from sorter.vision.sources.cameras import IMAGE_SUFFIXES, FolderSource, OpenCVSource
from sorter.vision.sources.readers import SerialReaderSource, TcpReaderSource, parse_reader_line
from sorter.vision.sources.sim import HEADER, SimCameraSource

KINDS = ("sim", "usb", "stream", "video", "folder", "serial", "reader")


def open_source(spec: str, properties: dict | None = None, reader_symbology: str = "code128"):
    """A source object for ``spec`` (not yet opened)."""
    kind = source_kind(spec)
    if kind == "sim":
        if spec.startswith("sim://"):
            raise SourceError(f"{spec}: the simulated cameras exist only under `sorter sim`")
        return SimCameraSource(spec)
    if kind == "folder":
        base, opts = split_spec(spec)
        return FolderSource(base, fps=float(opts.get("fps", 10.0)), loop=opts.get("loop", "0") not in ("0", ""))
    if kind == "serial":
        return SerialReaderSource(spec, reader_symbology)
    if kind == "reader":
        return TcpReaderSource(spec, reader_symbology)
    return OpenCVSource(spec, properties)
