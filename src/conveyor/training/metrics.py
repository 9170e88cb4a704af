"""Classification metrics from a confusion matrix: accuracy, per-class accuracy and F1.

The matrix is a tensor so ranks of a DDP job can sum theirs before the figures are made.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Evaluation:
    """Summed statistics of one pass over an evaluation loader."""

    loss_sum: torch.Tensor
    count: torch.Tensor
    confusion: torch.Tensor | None = None  # [true, predicted]

    @classmethod
    def empty(cls) -> Evaluation:
        return cls(torch.zeros((), dtype=torch.float64), torch.zeros((), dtype=torch.int64))

    def add(self, loss: torch.Tensor, outputs: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch: `loss` is the batch's mean loss; logits give the confusion matrix."""
        n = int(target.shape[0]) if target.ndim else 1
        self.loss_sum += float(loss.detach().float()) * n
        self.count += n
        if outputs.ndim == 2 and not target.is_floating_point() and target.ndim == 1:
            classes = int(outputs.shape[1])
            if self.confusion is None:
                self.confusion = torch.zeros((classes, classes), dtype=torch.int64)
            predicted = outputs.detach().argmax(dim=1).cpu()
            flat = target.cpu() * classes + predicted
            self.confusion += torch.bincount(flat, minlength=classes * classes).view(
                classes, classes
            )

    def tensors(self) -> list[torch.Tensor]:
        """The statistics to sum over ranks."""
        return [t for t in (self.loss_sum, self.count, self.confusion) if t is not None]

    def metrics(self) -> dict[str, float]:
        count = max(int(self.count), 1)
        out = {"loss": float(self.loss_sum) / count}
        if self.confusion is not None:
            out["accuracy"] = accuracy(self.confusion)
            out["f1_macro"] = sum(f1(self.confusion)) / self.confusion.shape[0]
        return out


def accuracy(confusion: torch.Tensor) -> float:
    total = int(confusion.sum())
    return float(confusion.diag().sum()) / total if total else 0.0


def per_class_accuracy(confusion: torch.Tensor) -> list[float]:
    """Recall of each class: right answers / samples of that class (0 when it had none)."""
    support = confusion.sum(dim=1).clamp(min=1)
    values: list[float] = (confusion.diag().double() / support).tolist()
    return values


def f1(confusion: torch.Tensor) -> list[float]:
    """F1 of each class (0 for a class never seen nor predicted)."""
    tp = confusion.diag().double()
    predicted = confusion.sum(dim=0).double()
    actual = confusion.sum(dim=1).double()
    denominator = (predicted + actual).clamp(min=1)
    values: list[float] = (2 * tp / denominator).tolist()
    return values
