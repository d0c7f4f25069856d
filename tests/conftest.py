"""Test-wide settings."""

from hypothesis import settings

# Timing is never a pass/fail criterion here: on a loaded two-core machine one example can take a second.
settings.register_profile("facewire", deadline=None)
settings.load_profile("facewire")
