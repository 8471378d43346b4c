"""What every config model shares: strict models (an unknown key is an error), the world's domain
names as a validated type, and the hash configs are identified by."""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def _domain_names() -> tuple[str, ...]:
    from driftlab.world.domains import DOMAIN_NAMES  # the world imports config, not the reverse

    return DOMAIN_NAMES


def _clusters() -> dict[str, tuple[str, ...]]:
    from driftlab.world.domains import CLUSTERS

    return CLUSTERS


def _check_domains(names: list[str]) -> list[str]:
    DOMAIN_NAMES = _domain_names()
    for name in names:
        if name not in DOMAIN_NAMES:
            raise ValueError(f"unknown domain {name!r} (known: {', '.join(DOMAIN_NAMES)})")
    return names


DomainList = Annotated[list[str], AfterValidator(_check_domains)]


Share = Annotated[float, Field(ge=0.0, le=1.0)]


def config_hash(obj: Any) -> str:
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
