"""Who may enter which room: one token for every room (`--token`), or a rooms file with each room's own
publish and subscribe tokens (`--rooms FILE`), and how many rooms one token may hold open at once.

A rooms file is TOML:

    [rooms.standup]
    publish = "secret the senders present"
    subscribe = "secret the receivers present"

A room that is not in the file does not exist; a token opens only the rooms that name it.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOM_NAME = re.compile(r"^[a-z0-9][a-z0-9_.:-]{0,63}$")


@dataclass(frozen=True)
class RoomTokens:
    publish: str
    subscribe: str

    def for_role(self) -> dict[str, str | None]:
        return {"sender": self.publish, "receiver": self.subscribe}


class AccessError(ValueError):
    pass


@dataclass
class Access:
    """The tokens of each room, and the rooms each token holds open (`max_rooms_per_token` at most)."""

    shared: str | None = None  # opens every room
    rooms: dict[str, RoomTokens] = field(default_factory=dict)
    max_rooms_per_token: int = 64
    _open: dict[str, Counter[str]] = field(default_factory=dict)  # token -> room -> connections

    @classmethod
    def from_file(cls, path: Path, max_rooms_per_token: int = 64) -> Access:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise AccessError(f"{path}: {exc}") from None
        rooms = data.get("rooms")
        if not isinstance(rooms, dict) or not rooms:
            raise AccessError(f"{path}: needs a [rooms.NAME] table with `publish` and `subscribe` tokens")
        parsed = {}
        for name, entry in rooms.items():
            if not ROOM_NAME.match(name):
                raise AccessError(f"{path}: room name {name!r} must match {ROOM_NAME.pattern}")
            tokens = [entry.get(key) if isinstance(entry, dict) else None for key in ("publish", "subscribe")]
            if not all(isinstance(token, str) and token for token in tokens) or set(entry) - {"publish", "subscribe"}:
                raise AccessError(f"{path}: room {name!r} needs exactly `publish` and `subscribe`, non-empty strings")
            parsed[name] = RoomTokens(str(tokens[0]), str(tokens[1]))
        return cls(rooms=parsed, max_rooms_per_token=max_rooms_per_token)

    def tokens(self, room: str) -> dict[str, str | None] | None:
        """Each role's token for `room`, or None when there is no such room."""
        if not ROOM_NAME.match(room):
            return None
        if self.shared is not None:
            return {"sender": self.shared, "receiver": self.shared}
        entry = self.rooms.get(room)
        return None if entry is None else entry.for_role()

    def enter(self, token: str, room: str) -> bool:
        """A connection authenticated with `token` enters `room`; False when that token holds its rooms already."""
        rooms = self._open.setdefault(token, Counter())
        if room not in rooms and len(rooms) >= self.max_rooms_per_token:
            return False
        rooms[room] += 1
        return True

    def leave(self, token: str, room: str) -> None:
        rooms = self._open.get(token)
        if rooms is None:
            return
        rooms[room] -= 1
        if rooms[room] <= 0:
            del rooms[room]
        if not rooms:
            del self._open[token]
