"""MNIST's pixels: the frame, the scale the model sees them at, and the level below which a frame is blank.

Every module that lays out, scales or judges MNIST-style pixels takes these from here.
"""

from __future__ import annotations

import numpy as np

SIDE = 28  # MNIST's frame: 28 x 28 pixels, 784 features
PIXEL_SCALE = np.float32(1 / 256)  # the tutorial's mnist.pkl.gz: uint8 / 256, exact in float32
BLANK_LEVEL = 32  # a frame whose brightest pixel is below this (of 255) holds no digit
