"""The procedural probe set: recognisable outdoor scenes and texture swatches in the Broden format.

Modules: ``vocabulary`` (label names, numbers, scene classes), ``colornames`` (the colour layer),
``textures`` (material patterns, DTD-like texture images), ``canvas`` (painting an image and its label
layers with one geometry), ``objects`` (each object with its parts and materials), ``scenes`` (one
composition per scene class) and ``generate`` (the dataset writer loop and ``probe.json``).
"""
