"""Sinks chosen by a command-line spec: `frames:DIR`, `file:PATH`, `virtualcam`, `window`, `http:PORT`, `null`."""

from __future__ import annotations

from facewire.receiver.http_sink import HttpSink
from facewire.receiver.sinks import BackgroundWriter, FileSink, FramesSink, NullSink, Sink, SinkError, VirtualCameraSink, WindowSink


def open_sink(spec: str, fps: float, device: str | None = None, pixel_format: str = "bgr") -> Sink:
    """`frames:DIR`, `file:PATH`, `virtualcam`, `window`, `http:PORT` or `null`."""
    kind, _, arg = spec.partition(":")
    if kind == "null":
        return NullSink()
    if kind == "frames" and arg:
        return BackgroundWriter(FramesSink(arg))
    if kind == "file" and arg:
        return BackgroundWriter(FileSink(arg, fps))
    if kind == "virtualcam":
        return VirtualCameraSink(fps, device=device, pixel_format=pixel_format)
    if kind == "window":
        return WindowSink()
    if kind == "http" and arg.isdigit():
        return HttpSink(int(arg))
    raise SinkError(f"unknown sink {spec!r}: use frames:DIR, file:PATH, virtualcam, window, http:PORT or null")
