"""Check every hash a run directory (or a prefix-cache entry, which has a run's layout) records.

``check_run`` reads every file later work would read — the tokenizer against its ``sha256.json``,
each safetensors file (weights, internals, the resume state) against the hash in its header, each
checkpoint's JSON against its own, and the metric rows against the hash the resume state holds —
and returns one line per problem (the file, then what is wrong), [] for a sound run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from driftlab.errors import DriftlabError
from driftlab.runs.checkpoint import load_tensors, optimizer_metadata, read_meta, resume_record
from driftlab.runs.digest import check_manifest
from driftlab.runs.metrics import check_rows, read_metrics


@dataclass
class Verified:
    files: int = 0  # files checked
    bytes: int = 0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # not problems: e.g. rows a resume will drop


def check_run(root: str | Path) -> Verified:
    root = Path(root)
    out = Verified()

    def checked(path: Path) -> None:
        out.files += 1
        out.bytes += path.stat().st_size

    tokenizer = root / "tokenizer"
    if tokenizer.exists():
        out.problems += check_manifest(tokenizer)
        for p in tokenizer.iterdir():
            checked(p)
    for path in sorted((root / "checkpoints").rglob("*")) + sorted((root / "resume").glob("*.safetensors")):
        if path.name.startswith(".") or not path.is_file():
            continue  # a temporary file of a write that never finished
        try:
            if path.suffix == ".safetensors":
                load_tensors(path, require_hash=True)
            elif path.suffix == ".json":
                if "sha256" not in read_meta(path):
                    out.problems.append(f"{path}: no SHA-256 recorded (not written by this driftlab)")
            else:
                continue
        except DriftlabError as e:
            out.problems.append(str(e))
        checked(path)
    resume = root / "resume" / "optimizer.safetensors"
    metrics = root / "metrics.parquet"
    if metrics.exists() and resume.exists():
        try:
            _, position = optimizer_metadata(resume)
            rows = read_metrics(metrics).to_pylist()
            kept = [r for r in rows if r["global_step"] <= position["global_step"]]
            check_rows(metrics, kept, resume_record(resume, "metrics"), resume)
            if len(kept) < len(rows):
                out.notes.append(f"{metrics}: {len(rows) - len(kept)} rows measured after the last resume state "
                                 f"(a resume drops them)")
        except DriftlabError as e:
            out.problems.append(str(e))
        checked(metrics)
    return out
