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


# ---------------------------------------------------------------- any model, any labelled prompts


def encode_prompts(tokenizer, prompts: list[str], chat: bool = False, bos: bool = False) -> list[list[int]]:
    """Token ids of each prompt with a ``transformers`` tokenizer; ``chat`` wraps each prompt as a
    user message and adds the assistant's generation prompt, so the last token is where the
    assistant's answer begins; ``bos`` prepends the BOS token (driftlab's own models train with it)."""
    out = []
    for p in prompts:
        if chat:
            text = tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                                 add_generation_prompt=True)
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        else:
            ids = tokenizer(p)["input_ids"]
        if bos and tokenizer.bos_token_id is not None and (not ids or ids[0] != tokenizer.bos_token_id):
            ids = [tokenizer.bos_token_id, *ids]
        if not ids:
            raise ValueError(f"prompt {p!r} encodes to no tokens")
        out.append(list(ids))
    return out


def last_token_activations(model: torch.nn.Module, seqs: list[list[int]], pad: int,
                           batch_size: int = 16) -> torch.Tensor:
    """(n, layers, d_model): every layer's residual stream at each sequence's last token."""
    from driftlab.measure.forward import PromptBank
    from driftlab.models.hooks import hook_points

    sites = [s for s in hook_points(model) if s.endswith("resid_post")]
    bank = PromptBank()
    bank.add("all", seqs)
    return bank.read(model, sites, batch_size, pad, logits=False).take("all")[1]


def direction_report(train: torch.Tensor, y_train: torch.Tensor, held: torch.Tensor,
                     y_held: torch.Tensor) -> tuple[PersonaDirections, list[dict]]:
    """Directions fitted on ``train`` (n, L, d) and, per layer, how well they and a probe separate
    the held-out items: AUROC of the projection, of a refit probe, and the two controls."""
    from driftlab.measure.probes import LinearProbe, auroc, sign_free_scores

    directions = PersonaDirections.fit(train, y_train.bool())
    proj = directions.project(held)
    g = torch.Generator().manual_seed(0)
    rows = []
    for layer in range(train.shape[1]):
        x, xh = train[:, layer], held[:, layer]
        probe = LinearProbe.fit(x, y_train)
        shuffled = LinearProbe.fit(x, y_train[torch.randperm(len(y_train), generator=g)])
        randoms = [LinearProbe.direction(v, x) for v in torch.randn(16, x.shape[1], generator=g)]
        rand, _ = sign_free_scores(randoms, xh, y_held)
        rows.append({"layer": layer, "norm": float(directions.norm[layer]),
                     "projection_auroc": auroc(proj[:, layer], y_held), "probe_auroc": auroc(probe.logits(xh), y_held),
                     "shuffled_auroc": auroc(shuffled.logits(xh), y_held), "random_auroc": rand})
    return directions, rows
