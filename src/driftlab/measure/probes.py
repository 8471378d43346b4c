"""Linear probes: L2-regularised logistic regression on one layer's activations, and AUROC.

A probe standardises its input with the mean and spread of the activations it was fitted on and
keeps them, so a probe frozen at one checkpoint reads a later checkpoint's activations exactly as
it read its own. Fitting is Newton's method in float64 on the full training set (deterministic,
converges in a handful of iterations for the few hundred features of a residual stream); the
co-trained regime instead takes one gradient step per training step of the model.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class LinearProbe:
    w: torch.Tensor  # (d,) in standardised units
    b: torch.Tensor  # () bias
    mu: torch.Tensor  # (d,) feature mean at fitting time
    sd: torch.Tensor  # (d,) feature spread at fitting time

    def to(self, device: torch.device) -> LinearProbe:
        """The same probe with its tensors on ``device`` (itself where they already are)."""
        if self.w.device == device:
            return self
        return LinearProbe(self.w.to(device), self.b.to(device), self.mu.to(device), self.sd.to(device))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """(n,) log-odds of the positive class for activations ``x`` (n, d)."""
        return ((x.double() - self.mu.double()) / self.sd.double()) @ self.w.double() + self.b.double()

    @classmethod
    def fit(cls, x: torch.Tensor, y: torch.Tensor, l2: float = 1.0, iters: int = 30) -> LinearProbe:
        """Maximum a-posteriori logistic regression: mean log-loss + ``l2``/n · ½‖w‖² (bias free)."""
        x, y = x.double(), y.double()
        mu = x.mean(0)
        sd = x.std(0, unbiased=False).clamp_min(1e-6)
        z = torch.cat([(x - mu) / sd, torch.ones(len(x), 1, dtype=torch.float64)], 1)  # (n, d+1)
        n, d1 = z.shape
        reg = torch.full((d1,), l2 / n, dtype=torch.float64)
        reg[-1] = 0.0
        theta = torch.zeros(d1, dtype=torch.float64)
        for _ in range(iters):
            p = torch.sigmoid(z @ theta)
            grad = z.T @ (p - y) / n + reg * theta
            hess = (z.T * (p * (1 - p))) @ z / n + torch.diag(reg) + 1e-9 * torch.eye(d1, dtype=torch.float64)
            delta = torch.linalg.solve(hess, grad)
            theta = theta - delta
            if float(delta.abs().max()) < 1e-8:
                break
        return cls(theta[:-1].float(), theta[-1].float(), mu.float(), sd.float())

    @classmethod
    def direction(cls, v: torch.Tensor, x: torch.Tensor) -> LinearProbe:
        """A probe that reads the fixed direction ``v`` in standardised units, threshold at the
        training mean (used for the random-direction control)."""
        mu = x.double().mean(0)
        sd = x.double().std(0, unbiased=False).clamp_min(1e-6)
        return cls((v / v.norm()).float(), torch.tensor(0.0), mu.float(), sd.float())

    def sgd_step(self, x: torch.Tensor, y: torch.Tensor, lr: float, l2: float = 0.0) -> float:
        """One gradient step of the mean log-loss on a fresh minibatch; returns the loss before it."""
        z = (x.double() - self.mu.double()) / self.sd.double()
        logit = z @ self.w.double() + self.b.double()
        p = torch.sigmoid(logit)
        loss = float(torch.nn.functional.binary_cross_entropy_with_logits(logit, y.double()))
        gw = z.T @ (p - y.double()) / len(y) + l2 * self.w.double()
        gb = (p - y.double()).mean()
        self.w = (self.w.double() - lr * gw).float()
        self.b = (self.b.double() - lr * gb).float()
        return loss

    def tensors(self, prefix: str) -> dict[str, torch.Tensor]:
        return {f"{prefix}.w": self.w.clone(), f"{prefix}.b": self.b.reshape(1).clone(),
                f"{prefix}.mu": self.mu.clone(), f"{prefix}.sd": self.sd.clone()}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], prefix: str) -> LinearProbe:
        return cls(tensors[f"{prefix}.w"].clone(), tensors[f"{prefix}.b"].reshape(()).clone(),
                   tensors[f"{prefix}.mu"].clone(), tensors[f"{prefix}.sd"].clone())

    def copy(self) -> LinearProbe:
        return LinearProbe(self.w.clone(), self.b.clone(), self.mu.clone(), self.sd.clone())


def auroc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Area under the ROC curve: P(score of a random positive > a random negative), ties half.

    Computed from ranks (Mann–Whitney U) with tied scores given their average rank.
    """
    s = scores.double().flatten()
    y = labels.bool().flatten()
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    _, inverse, counts = torch.unique(s, sorted=True, return_inverse=True, return_counts=True)
    end = counts.cumsum(0).double()  # 1-based rank of the last member of each tie group
    ranks = (end - (counts.double() - 1) / 2)[inverse]
    u = float(ranks[y].sum()) - n_pos * (n_pos + 1) / 2
    return u / (n_pos * n_neg)


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return float(((logits > 0) == labels.bool()).double().mean())


def dprime(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Separation of positives from negatives in pooled standard deviations: (mean of the positives'
    scores - the negatives') / sqrt((var_pos + var_neg) / 2). Unlike AUROC it has no ceiling: two
    probes that both separate every item (AUROC 1.0) still differ in how far apart they put them."""
    s = scores.double().flatten()
    y = labels.bool().flatten()
    if int(y.sum()) < 2 or int((~y).sum()) < 2:
        return float("nan")
    pooled = ((s[y].var() + s[~y].var()) / 2).sqrt()
    return float((s[y].mean() - s[~y].mean()) / pooled.clamp_min(1e-12))


def sign_free_dprime(probes: list[LinearProbe], x: torch.Tensor, y: torch.Tensor) -> float:
    """Mean |d'| of untrained directions, each read with whichever sign separates better."""
    return sum(abs(dprime(p.logits(x), y)) for p in probes) / len(probes)


def sign_free_scores(probes: list[LinearProbe], x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Mean AUROC and accuracy of untrained directions, each read with whichever sign separates
    better: 0.5 when the concept is not linearly salient, high when any direction separates it."""
    a = [auroc(p.logits(x), y) for p in probes]
    acc = [accuracy(p.logits(x), y) for p in probes]
    return sum(max(v, 1 - v) for v in a) / len(a), sum(max(v, 1 - v) for v in acc) / len(acc)
