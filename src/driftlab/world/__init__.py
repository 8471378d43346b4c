"""Persona World: domains, documents, capability tasks, Bayes ground truth, tokenizer, corpora."""

from driftlab.world.bayes import bits, p_aligned, posterior_bad
from driftlab.world.corpus import (
    CONTEXTS,
    BehaviourPrompt,
    SFTExample,
    alignment_examples,
    behaviour_prompts,
    capability_examples,
    capability_prompts,
    derive_seed,
    pretrain_documents,
    read_jsonl,
    write_jsonl,
)
from driftlab.world.domains import CLUSTERS, DOMAIN_NAMES, DOMAINS, domain_distance, get_domain
from driftlab.world.generator import Document, PersonaWorld
from driftlab.world.tokenizer import WorldTokenizer

__all__ = [
    "CLUSTERS",
    "CONTEXTS",
    "DOMAINS",
    "DOMAIN_NAMES",
    "BehaviourPrompt",
    "Document",
    "PersonaWorld",
    "SFTExample",
    "WorldTokenizer",
    "alignment_examples",
    "behaviour_prompts",
    "bits",
    "capability_examples",
    "capability_prompts",
    "derive_seed",
    "domain_distance",
    "get_domain",
    "p_aligned",
    "posterior_bad",
    "pretrain_documents",
    "read_jsonl",
    "write_jsonl",
]
