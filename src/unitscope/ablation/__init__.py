"""Unit ablation (Bau et al., PNAS 2020): a layer's units zeroed through the shared hooks, and what that does to
each class a classifier predicts. Modules: ``effects`` (the model's outputs under masks of the layer's units),
``run`` (the result directory). docs/ablation.md.
"""
