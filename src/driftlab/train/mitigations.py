"""Mitigations: small composable pieces configured per stage, several at once.

Each mitigation, given the stage's context, may change the stage's data (``replay``,
``inoculation_prompt``), which weights train (``freeze``, ``lora``), what happens around each
training forward (``preventative_steering``) and what is added to the loss (``kl_to_reference``,
``projection_penalty``). ``apply_mitigations`` composes them into one ``StageHooks`` the loop calls;
``StageHooks.finish`` undoes what must not outlive the stage (frozen flags; LoRA is merged).

Everything a mitigation draws at random is keyed by (step, micro-batch), so a resumed stage sees
exactly what an uninterrupted one would have.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from driftlab.config import (
    CotrainedProbe,
    DataConfig,
    Freeze,
    InoculationPrompt,
    KLToReference,
    Lora,
    MitigationConfig,
    PreventativeSteering,
    ProjectionPenalty,
    Replay,
    StageConfig,
)
from driftlab.errors import ConfigError
from driftlab.measure.internals import PersonaDirections
from driftlab.measure.probes import LinearProbe
from driftlab.measure.weights import module_group
from driftlab.models.hooks import capture, steer
from driftlab.registry import Registry
from driftlab.tensors import device_of, gather_last, right_pad, token_kl_sum
from driftlab.train.data import Batch, Completions, PackedLM, PartsBatch, Preferences, stack_rows
from driftlab.train.rl import RLPrompts
from driftlab.world.corpus import derive_seed

StageData = PackedLM | Completions | Preferences


@dataclass
class StageContext:
    """What mitigations may use: supplied by the runner."""

    model: torch.nn.Module
    stage: StageConfig
    index: int
    seed: int
    pad: int
    build_data: Callable[[DataConfig, str, int | None], StageData]  # data config, seed key, row length -> batches
    encode: Callable[[str, str], list[int]]  # world text, where -> ids (a clear error if unknown)
    frozen_model: Callable[[str], torch.nn.Module]  # "stage_start" or a stage name -> frozen copy at its end
    directions: Callable[[str], PersonaDirections | None]  # "reference" / "stage_start" -> persona directions
    assistant_prompts: Callable[[int], list[list[int]]]  # n -> assistant episode prompts (a training pool)
    probe: Callable[[], tuple[LinearProbe, int] | None] = lambda: None  # the co-trained persona probe, its layer


ExtraLoss = Callable[[torch.nn.Module, Batch, torch.Tensor, tuple[int, int]], torch.Tensor]


@dataclass
class StageHooks:
    """The composed effect of a stage's mitigations, as the loop sees it."""

    data: StageData
    contexts: list[Callable[[], contextlib.AbstractContextManager]] = field(default_factory=list)
    losses: list[ExtraLoss] = field(default_factory=list)
    finishers: list[Callable[[], None]] = field(default_factory=list)

    @contextlib.contextmanager
    def forward_context(self) -> Iterator[None]:
        with contextlib.ExitStack() as stack:
            for make in self.contexts:
                stack.enter_context(make())
            yield

    @property
    def rl_prompts(self) -> RLPrompts | None:
        """The rl prompts the stage samples answers from (inside a replay mixed around them), if any."""
        data = self.data.main if isinstance(self.data, Mixed) else self.data
        return data if isinstance(data, RLPrompts) else None

    def extra_loss(self, model: torch.nn.Module, batch: Batch, logits: torch.Tensor,
                   key: tuple[int, int]) -> torch.Tensor | None:
        """Sum-semantics extra loss of one micro-batch (the loop divides by the step's targets)."""
        if not self.losses:
            return None
        return sum(fn(model, batch, logits, key) for fn in self.losses)

    def finish(self) -> None:
        for fn in reversed(self.finishers):
            fn()


Apply = Callable[[MitigationConfig, StageContext, StageHooks], None]
MITIGATIONS: Registry[Apply] = Registry("mitigation")
mitigation = MITIGATIONS.register


def apply_mitigations(ctx: StageContext, data: StageData) -> StageHooks:
    """Compose the stage's mitigations; data transforms first (inoculation before replay)."""
    hooks = StageHooks(data)
    order = {"inoculation_prompt": 0, "replay": 1}
    for m in sorted(ctx.stage.mitigations, key=lambda m: order.get(m.kind, 2)):
        MITIGATIONS.get(m.kind)(m, ctx, hooks)
    return hooks


def _key_generator(seed: int, *key: object) -> torch.Generator:
    return torch.Generator().manual_seed(derive_seed(seed, *key) % 2**63)


# ---------------------------------------------------------------- data


@mitigation("inoculation_prompt")
def inoculation_prompt(m: InoculationPrompt, ctx: StageContext, hooks: StageHooks) -> None:
    prefix = ctx.encode(m.prefix, f"stages.{ctx.index}.mitigations.inoculation_prompt.prefix")
    assert isinstance(hooks.data, Completions | RLPrompts)
    hooks.data = hooks.data.with_prefix(prefix)


class Mixed:
    """Micro-batches of ``size`` rows: exactly round(ratio × size) from ``replay``, the rest from
    ``main``, each stream consumed in its own seeded order."""

    def __init__(self, main: StageData, replay: StageData, ratio: float, pad: int):
        self.main, self.replay, self.ratio, self.pad = main, replay, ratio, pad

    @property
    def n_tokens(self) -> int:
        return self.main.n_tokens

    def n_replay(self, size: int) -> int:
        return min(max(round(self.ratio * size), 1), size - 1) if size > 1 else 0

    def batch(self, start: int, size: int) -> Batch:
        k = self.n_replay(size)
        micro = start // size
        a = self.main.batch(micro * (size - k), size - k)
        b = self.replay.batch(micro * k, k) if k else None
        if b is None:
            return a
        if isinstance(a, PartsBatch):  # replay beside a mixture: one more part
            return PartsBatch([*a.parts, b])
        if type(a) is not Batch:  # sampled rl rows keep their advantages: forwarded as their own part
            return PartsBatch([a, b])
        return stack_rows([a, b], self.pad)


@mitigation("replay")
def replay(m: Replay, ctx: StageContext, hooks: StageHooks) -> None:
    hooks.data = Mixed(hooks.data, ctx.build_data(m.data, "replay", m.seq_len), m.ratio, ctx.pad)


# ---------------------------------------------------------------- which weights train


def _in_groups(name: str, groups: list[str]) -> bool:
    group = module_group(name)
    return any(group == g or group.startswith(g + ".") for g in groups)


@mitigation("freeze")
def freeze(m: Freeze, ctx: StageContext, hooks: StageHooks) -> None:
    names = [n for n, _ in ctx.model.named_parameters()]
    known = {module_group(n) for n in names} | {g.rsplit(".", 1)[0] for g in map(module_group, names) if g.startswith("layers.")}
    for g in m.groups:
        if g not in known:
            raise ConfigError(f"stages.{ctx.index}.mitigations.freeze.groups: unknown group {g!r} "
                              f"(known: {', '.join(sorted(known))})")
    frozen = [p for n, p in ctx.model.named_parameters() if _in_groups(n, m.groups) and p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)

    def unfreeze() -> None:
        for p in frozen:
            p.requires_grad_(True)

    hooks.finishers.append(unfreeze)


def lora_parameters(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The adapter weights injected by the ``lora`` mitigation, by name."""
    return {n: p for n, p in model.named_parameters() if ".lora_" in n}


def merge_lora(model: torch.nn.Module) -> None:
    """Fold every adapter into its base weight and put the plain layer back in its place."""
    for name, module in list(model.named_modules()):
        if hasattr(module, "base_layer") and hasattr(module, "get_delta_weight"):
            base = module.base_layer
            with torch.no_grad():
                for adapter in module.active_adapters:
                    base.weight += module.get_delta_weight(adapter).to(base.weight.dtype)
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, child, base)


@mitigation("lora")
def lora(m: Lora, ctx: StageContext, hooks: StageHooks) -> None:
    from peft import LoraConfig, inject_adapter_in_model

    params = dict(ctx.model.named_parameters())
    trainable = {n for n, p in params.items() if p.requires_grad}
    names = {n.rsplit(".", 1)[-1] for n, _ in ctx.model.named_modules()}
    unknown = [t for t in m.targets if t not in names]
    if unknown:
        raise ConfigError(f"stages.{ctx.index}.mitigations.lora.targets: no module named {unknown[0]!r}")
    config = LoraConfig(r=m.r, lora_alpha=m.alpha, target_modules=list(m.targets), lora_dropout=0.0, bias="none",
                        layers_to_transform=m.layers, layers_pattern="layers" if m.layers is not None else None)
    with torch.random.fork_rng():  # adapter initialisation from the run's seed, nothing else disturbed
        torch.manual_seed(derive_seed(ctx.seed, "lora", ctx.index) % 2**63)
        inject_adapter_in_model(config, ctx.model)
    for n, p in ctx.model.named_parameters():  # peft freezes everything but the adapters
        p.requires_grad_(".lora_" in n)

    def merge() -> None:
        merge_lora(ctx.model)
        for n, p in ctx.model.named_parameters():
            p.requires_grad_(n in trainable)

    hooks.finishers.append(merge)


# ---------------------------------------------------------------- around the forward


def _direction(ctx: StageContext, which: str, layer: int) -> torch.Tensor:
    d = ctx.directions(which) or ctx.directions("stage_start")
    if d is None:
        raise ConfigError(f"stages.{ctx.index}: no persona direction available (measure the stage start first)")
    return d.unit[layer]


@mitigation("preventative_steering")
def preventative_steering(m: PreventativeSteering, ctx: StageContext, hooks: StageHooks) -> None:
    n_layers = len(ctx.model.model.layers)
    layer = m.layer % n_layers
    vector = _direction(ctx, m.direction, layer).clone().to(device_of(ctx.model))
    hooks.contexts.append(lambda: steer(ctx.model, f"layers.{layer}.resid_post", vector, m.alpha))


# ---------------------------------------------------------------- added to the loss


@mitigation("kl_to_reference")
def kl_to_reference(m: KLToReference, ctx: StageContext, hooks: StageHooks) -> None:
    reference = ctx.frozen_model(m.reference)

    def loss(model: torch.nn.Module, batch: Batch, logits: torch.Tensor, key: tuple[int, int]) -> torch.Tensor:
        with torch.no_grad():
            ref_logits = reference(input_ids=batch.input_ids).logits
        return m.weight * token_kl_sum(logits, ref_logits, batch.loss_mask)

    hooks.losses.append(loss)


def _last_activations(model: torch.nn.Module, seqs: list[list[int]], site: str, pad: int) -> torch.Tensor:
    """(n, d) activations at ``site`` at each sequence's last token, in the autograd graph."""
    with capture(model, [site], detach=False) as cache:
        model(input_ids=right_pad(seqs, pad, device_of(model)))
    return gather_last(cache[site], seqs)


@mitigation("cotrained_probe")
def cotrained_probe(m: CotrainedProbe, ctx: StageContext, hooks: StageHooks) -> None:
    pool = ctx.assistant_prompts(max(4 * m.batch, 64))

    def loss(model: torch.nn.Module, batch: Batch, logits: torch.Tensor, key: tuple[int, int]) -> torch.Tensor:
        found = ctx.probe()
        if found is None:
            raise ConfigError(f"stages.{ctx.index}: cotrained_probe: no co-trained probe (is measure.cotrain on?)")
        probe, layer = found
        idx = torch.randperm(len(pool), generator=_key_generator(ctx.seed, "cotrained_probe", ctx.index, *key))
        acts = _last_activations(model, [pool[i] for i in idx[: m.batch].tolist()], f"layers.{layer}.resid_post",
                                 ctx.pad)
        probe = probe.to(acts.device)
        z = (acts - probe.mu) / probe.sd
        p_good_logit = z @ probe.w + probe.b
        return m.weight * F.softplus(-p_good_logit).mean() * batch.n_targets  # −log σ(logit)

    hooks.losses.append(loss)


@mitigation("projection_penalty")
def projection_penalty(m: ProjectionPenalty, ctx: StageContext, hooks: StageHooks) -> None:
    n_layers = len(ctx.model.model.layers)
    layer = m.layer % n_layers
    site = f"layers.{layer}.resid_post"
    unit = _direction(ctx, "reference", layer).clone().to(device_of(ctx.model))
    pool = ctx.assistant_prompts(max(4 * m.batch, 64))
    start = ctx.frozen_model("stage_start")

    def projections(model: torch.nn.Module, seqs: list[list[int]]) -> torch.Tensor:
        return _last_activations(model, seqs, site, ctx.pad) @ unit

    with torch.no_grad():
        anchor = projections(start, pool)

    def loss(model: torch.nn.Module, batch: Batch, logits: torch.Tensor, key: tuple[int, int]) -> torch.Tensor:
        idx = torch.randperm(len(pool), generator=_key_generator(ctx.seed, "projection_penalty", ctx.index, *key))
        idx = idx[: m.batch]
        now = projections(model, [pool[i] for i in idx.tolist()])
        return m.weight * (now.mean() - anchor[idx].mean()) ** 2 * batch.n_targets

    hooks.losses.append(loss)
