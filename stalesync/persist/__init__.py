"""What goes to disk, never half-written and never pickled: atomic files and output-path
checks (``files``), the snapshot format (``snapshot``), saved models (``model_io``). The
protocols that decide *when* to write (the runtimes' snapshot barrier and restore, the
scheduler's checkpoints) live with the runtimes and the scheduler, which use these."""
