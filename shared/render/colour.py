"""Colour constants the renderer's stages share."""

from __future__ import annotations

import numpy as np

# Rec. 601 luma weights for OpenCV's channel order (B, G, R): `image @ LUMA_BGR` is a picture's luma.
LUMA_BGR = np.array([0.114, 0.587, 0.299], np.float32)
