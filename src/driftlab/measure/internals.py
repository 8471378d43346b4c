"""The persona direction: per layer, the difference of mean activations between good- and bad-evidence
contexts, read at the choice position (the last prompt token, whose next word is the action).

``relative`` places an activation on the segment between the two means: 0 at the bad-evidence mean,
1 at the good-evidence mean (the projection onto the direction, rescaled). Works for any model the
hook points support: the inputs are activations, not prompts.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class PersonaDirections:
    mean_good: torch.Tensor  # (L, d)
    mean_bad: torch.Tensor  # (L, d)

    @classmethod
    def fit(cls, acts: torch.Tensor, good: torch.Tensor) -> PersonaDirections:
        """``acts`` (n, L, d) at the choice position; ``good`` (n,) bool labels."""
        good = good.bool()
        if not good.any() or good.all():
            raise ValueError("a persona direction needs both good- and bad-evidence activations")
        return cls(acts[good].double().mean(0).float(), acts[~good].double().mean(0).float())

    @property
    def diff(self) -> torch.Tensor:
        return self.mean_good - self.mean_bad

    @property
    def norm(self) -> torch.Tensor:
        """(L,) length of the difference of means."""
        return self.diff.norm(dim=-1)

    @property
    def unit(self) -> torch.Tensor:
        return self.diff / self.norm.clamp_min(1e-12)[:, None]

    def project(self, acts: torch.Tensor) -> torch.Tensor:
        """(n, L) projection of ``acts`` (n, L, d) on the unit direction of each layer."""
        return torch.einsum("nld,ld->nl", acts.float(), self.unit)

    def relative(self, acts: torch.Tensor) -> torch.Tensor:
        """(n, L): 0 = the bad-evidence mean, 1 = the good-evidence mean, along the direction."""
        d = self.diff
        return torch.einsum("nld,ld->nl", acts.float() - self.mean_bad, d) / (d * d).sum(-1).clamp_min(1e-12)

    def cosine(self, other: PersonaDirections) -> torch.Tensor:
        """(L,) cosine between this direction and ``other``'s, layer by layer."""
        return torch.nn.functional.cosine_similarity(self.diff, other.diff, dim=-1)

    def tensors(self, prefix: str = "persona") -> dict[str, torch.Tensor]:
        return {f"{prefix}.mean_good": self.mean_good, f"{prefix}.mean_bad": self.mean_bad,
                f"{prefix}.direction": self.unit}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], prefix: str = "persona") -> PersonaDirections:
        return cls(tensors[f"{prefix}.mean_good"].clone(), tensors[f"{prefix}.mean_bad"].clone())
