"""Compositional explanations (Mu & Andreas, NeurIPS 2020): each unit labelled with a logical formula over concepts
(OR, AND, AND NOT), found by beam search on the dataset-level IoU of the dissection's masks, computed exactly.

Modules: ``formulas`` (:class:`~unitscope.compositional.formulas.Formula`), ``counts`` (a layer's masks counted
by label set), ``search`` (the beam search), ``run`` (the result directory). docs/compositional.md.
"""
