"""Watching a run: the run record (``metrics``), its figures (``plots``), TensorBoard
streaming (``tensorboard``) and ``stalesync compare`` (``compare``)."""
