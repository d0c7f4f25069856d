"""One image through a MediaPipe solution graph (the tracker's face mesh, the learned matter's segmentation), without
SolutionBase.process's per-call cost."""

from __future__ import annotations

from typing import Any

from facewire.shared.types import Image

_FRAME_STEP_US = 33_333  # SolutionBase.process's own timestamp step: the graphs are built for video at 30 fps


def process_image(solution: Any, rgb: Image, stream: str = "image") -> dict[str, Any]:
    """What `solution.process({stream: rgb})` gives (a mediapipe SolutionBase, mediapipe 0.10.21, which pyproject pins),
    by output stream name, None for a stream that gave nothing.

    SolutionBase.process makes a new namedtuple class on every call and sets the outputs on that class: ~0.13-0.18 ms of
    the calling thread with the GIL held, twice a frame on the sender (face mesh, segmentation). The rest is its steps
    (the same timestamps, packets and outputs), on its own attributes."""
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError("Input image must contain three channel rgb data.")
    solution._graph_outputs.clear()
    solution._simulated_timestamp += _FRAME_STEP_US
    packet = solution._make_packet(solution._input_stream_type_info[stream], rgb)
    solution._graph.add_packet_to_input_stream(stream=stream, packet=packet.at(solution._simulated_timestamp))
    solution._graph.wait_until_idle()
    outputs = solution._graph_outputs
    return {name: solution._get_packet_content(kind, outputs[name]) if name in outputs else None
            for name, kind in solution._output_stream_type_info.items()}
