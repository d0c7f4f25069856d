"""The expression code: head pose plus K coefficients of a staged linear basis of the face mesh,
relative to the sender's neutral face, range-coded; about 16 bytes a frame (protocol.md 7.4).

basis.py: the shipped basis and the quantiser steps; entropy.py: the range coder and its models;
code.py: quantisation and the frame payload; neutral.py: the online neutral face and its setup
payload; field.py: the preparer, encoder and decoder on the codec seam (capability `expression`).
"""
