"""Saliency maps and their sanity checks (Adebayo et al., NeurIPS 2018): explanations of a model's predictions."""
