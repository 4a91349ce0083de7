"""Quality control of a scored slide: advice on when its sTIL% is not to be trusted.

* :mod:`~weakstil.qc.flags` — the flags, their rules and thresholds (``results.csv`` ``qc``);
* :mod:`~weakstil.qc.embedding` — the out-of-distribution score (k-NN distance of the slide's
  tile embeddings to the training tiles');
* :mod:`~weakstil.qc.image` — stain, focus, pen and fold statistics from the slide's pixels;
* :mod:`~weakstil.qc.training` — what ``weakstil train`` stores for them (``MODEL/qc/``);
* :mod:`~weakstil.qc.scoring` — the interval and flags of one slide at ``weakstil score``.

The interval itself is :mod:`weakstil.confidence`.
"""
