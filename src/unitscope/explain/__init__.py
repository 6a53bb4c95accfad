"""Predictions explained by interpreted units (Zhou et al., TPAMI 2018): a class logit split exactly over the units
of the layer that feeds a classifier's global average pooling, with the units' dissection labels. Modules:
``decomposition`` (the split, CAM or Grad-CAM weights), ``run`` (the result directory). docs/explain.md.
"""
