"""The procedural probe set: recognisable outdoor scenes and texture swatches in the Broden format.

Modules: ``vocabulary`` (label names, numbers, scene classes), ``colornames`` (the colour layer),
``textures`` (material patterns, DTD-like texture images), ``canvas`` (painting an image and its label
layers with one geometry), ``objects`` (each object with its parts and materials), ``scenes`` (one
composition per scene class) and ``generate`` (the dataset writer loop and ``probe.json``).
"""

#: Limits and defaults of the probe set (``unitscope probe-dataset``, the workflow's ``datasets.*`` keys).
MIN_SIZE = 32  # label maps are half the image side; below 32 px no scene element is recognisable
DEFAULT_SIZE = 224
DEFAULT_IMAGES = 2000
