"""Camera source specs (`sim://top`, `usb:1`, `rtsp://…`, `serial:/dev/ttyUSB0?baud=…`, a video file,
a folder): their grammar, so that a config is checked at load without opening anything.
`sorter.vision.sources` opens them.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs

VIDEO_SUFFIXES = {".mp4", ".avi", ".mkv", ".mov", ".m4v", ".mjpg", ".mjpeg", ".webm", ".ts"}


def split_spec(spec: str) -> tuple[str, dict[str, str]]:
    base, _, query = spec.partition("?")
    return base, {k: v[-1] for k, v in parse_qs(query).items()}


def source_kind(spec: str) -> str:
    """The kind of a source spec; ValueError for a spec that cannot be a source."""
    s = spec.strip()
    if not s:
        raise ValueError("empty camera source")
    low = s.lower()
    if low.startswith(("sim://", "tcp://")):
        return "sim"
    if low.startswith(("rtsp://", "rtsps://", "http://", "https://")):
        return "stream"
    if low.startswith("serial:"):
        return "serial"
    if low.startswith("reader://"):
        return "reader"
    if low.startswith("usb:") or s.isdigit():
        idx = s[4:] if low.startswith("usb:") else s
        if not idx.isdigit() or int(idx) > 63:
            raise ValueError(f"camera source {spec!r}: a USB camera is usb:N with N a device index 0-63")
        return "usb"
    if "://" in s:
        raise ValueError(f"camera source {spec!r}: unknown scheme (sim, tcp, rtsp, http(s), serial, reader, usb, file)")
    path = Path(split_spec(s.removeprefix("file:"))[0])
    if path.suffix.lower() in VIDEO_SUFFIXES or low.startswith("file:"):
        return "video"
    if path.suffix == "":
        return "folder"
    raise ValueError(f"camera source {spec!r}: not a video file ({', '.join(sorted(VIDEO_SUFFIXES))}) nor a folder")
