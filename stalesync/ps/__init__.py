"""The parameter server's pieces, in the order a clock passes through them: the worker's
API (``context``), its cache and update log (``client``), the shard that holds the rows
(``server``, ``tables``, ``row_batch``), what a shard does with increments
(``update_rules``) and clocks (``clock_policies``), the bound a read needs
(``consistency``, ``auto_staleness``), what travels compressed (``compression``), and the
audit of the guarantee (``audit``). The runtimes (:mod:`stalesync.runtime`) host these."""
