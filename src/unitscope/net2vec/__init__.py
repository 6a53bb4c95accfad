"""Net2Vec (Fong & Vedaldi, CVPR 2018): concepts as weighted combinations of a dissected layer's units, by
segmentation and classification probes trained on the dataset's train images. Modules: ``probes`` (the probes,
their training and metrics), ``run`` (the pass over the images and the result directory). docs/net2vec.md.
"""
