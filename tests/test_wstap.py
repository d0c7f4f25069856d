"""bench/wstap.py: whole messages out of a client's websocket bytes, however the stream is cut."""

from __future__ import annotations

from websockets.frames import Frame, Opcode

from bench.wstap import WebSocketTap
from facewire.shared.wire import messages as m

UPGRADE = b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"


def test_messages_come_out_whole_with_the_times_of_their_first_and_last_bytes() -> None:
    keyframe = m.encode(m.Keyframe(kf=3, ts_us=1_000_000, width=64, height=48, image=b"i" * 70_000,
                                   image_format="webp"))
    frame = m.encode(m.Frame(seq=8, dt_ms=40, kf=3, face=0, codes=[b"code"]))
    stream = (UPGRADE + Frame(Opcode.BINARY, keyframe).serialize(mask=True)  # a 64-bit length
              + Frame(Opcode.PING, b"nonce").serialize(mask=True)
              + Frame(Opcode.BINARY, frame[:5], fin=False).serialize(mask=True)  # fragmented
              + Frame(Opcode.CONT, frame[5:]).serialize(mask=True))
    tap, got = WebSocketTap(), []
    for t, at in enumerate(range(0, len(stream), 1000)):
        got += tap.feed(stream[at:at + 1000], float(t))
    assert [g.payload for g in got] == [keyframe, frame]
    assert got[0].first_s == 0.0 and got[0].last_s == (len(UPGRADE) + len(keyframe) + 13) // 1000  # 14 B header
    assert got[1].first_s == got[1].last_s == got[0].last_s  # the ping and the frame came with the keyframe's end


def test_a_frame_split_anywhere_waits_for_its_last_byte() -> None:
    payload = m.encode(m.Frame(seq=1, dt_ms=0, kf=0, face=0, codes=[]))
    wire = Frame(Opcode.BINARY, payload).serialize(mask=True)
    for cut in range(1, len(wire)):
        tap = WebSocketTap()
        assert tap.feed(UPGRADE + wire[:cut], 1.0) == []
        (message,) = tap.feed(wire[cut:], 2.0)
        assert message.payload == payload and (message.first_s, message.last_s) == (1.0, 2.0)
