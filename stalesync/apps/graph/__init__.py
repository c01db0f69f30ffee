"""Graph-parallel vertex programs (GraphLab): PageRank, connected components and label
propagation on the model-parallel scheduler, with GraphLab's sync and dynamic engines and
its vertex / edge / full consistency models. See ``docs/graph.md``."""

from .. import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "ALS": "estimators",
    "ConnectedComponents": "estimators",
    "Graph": "graph",
    "LabelPropagation": "estimators",
    "PageRank": "estimators",
    "read_edge_list": "graph",
})
