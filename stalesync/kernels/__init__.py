"""Compiled (numba) hot loops, kept apart from orchestration code.

Every kernel is ``nogil=True`` so worker threads of the embedded runtime run them in parallel.
"""
