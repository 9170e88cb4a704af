"""The two benchmark models, shared by every contender: an MLP on 64 floats and the
digits CNN (the image-classifier recipe's SmallCNN on 8x8 grayscale digits).

Both take rows of 64 floats (the CNN reshapes them to 1x8x8 itself), so every server
gets the same JSON body. Weights come from a fixed seed and are saved as safetensors
(rivals load them into these modules) and registered in a Conveyor workspace (which
exports and checks the ONNX model Conveyor serves).
"""

from __future__ import annotations

import torch
from torch import nn

FEATURES = 64
CLASSES = 10


class MLP(nn.Module):
    """64 -> 512 -> 512 -> 10 (about 300k multiply-adds a row)."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(FEATURES, 512),
            nn.ReLU(),
            nn.Linear(512, 512),
            nn.ReLU(),
            nn.Linear(512, CLASSES),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.layers(x)
        return out


class DigitsCNN(nn.Module):
    """SmallCNN(channels=1, classes=10, width=32) behind a reshape of 64 floats to 1x8x8."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(4),
        )
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(2 * width * 16, 128), nn.ReLU(), nn.Linear(128, CLASSES)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.features(x.reshape(-1, 1, 8, 8)))
        return out


NETS = {"mlp": MLP, "cnn": DigitsCNN}


def build(name: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return NETS[name]().eval()


def load(name: str, weights: str) -> nn.Module:
    """The module with its saved weights, in eval mode, for one intra-op thread."""
    from safetensors.torch import load_file

    torch.set_num_threads(1)
    module = NETS[name]()
    module.load_state_dict(load_file(weights))
    return module.eval()


def answers(logits: torch.Tensor) -> list[dict[str, object]]:
    """What every contender answers per row: the label and its softmax probability."""
    probs = torch.softmax(logits, dim=1)
    score, label = probs.max(dim=1)
    return [
        {"label": str(i), "score": s} for i, s in zip(label.tolist(), score.tolist(), strict=True)
    ]
