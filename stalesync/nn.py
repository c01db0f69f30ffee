"""Neural networks, data-parallel (needs the ``nn`` extra): the estimator for the built-in
networks and ``fit`` for a user's own ``torch.nn.Module``.

    import torch, stalesync.nn
    net = torch.nn.Sequential(torch.nn.Linear(20, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1))
    result = stalesync.nn.fit(net, torch.nn.MSELoss(), X, y, strategy="ps", workers=2)
    result.module, result.run_record["final"]["train_loss"]
"""

from .apps.nn import NeuralNetClassifier
from .apps.nn.user import FitResult, fit

__all__ = ["FitResult", "NeuralNetClassifier", "fit"]
