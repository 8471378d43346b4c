"""The tensor helpers training and measurement share: padding, last-token gathers, log-probs."""

import os

import pytest
import torch

from driftlab.errors import ConfigError
from driftlab.tensors import (
    completion_logp,
    device_of,
    gather_last,
    next_token_loss_sum,
    pad_completions,
    resolve_device,
    right_pad,
    token_kl_sum,
)


def test_padding_masks_the_completion_and_gathers_each_row_s_last_token():
    seqs = [[1, 2, 3, 4], [5, 6], [7, 8, 9]]
    ids, mask = pad_completions(seqs, [2, 1, 3], pad=0)
    assert ids.tolist() == [[1, 2, 3, 4], [5, 6, 0, 0], [7, 8, 9, 0]]
    assert mask.tolist() == [[False, False, True, True], [False, True, False, False], [False] * 4]
    assert torch.equal(right_pad(seqs, 0), ids)
    x = torch.arange(3 * 4 * 2).view(3, 4, 2)
    assert gather_last(x, seqs).tolist() == [x[0, 3].tolist(), x[1, 1].tolist(), x[2, 2].tolist()]


def test_completion_logp_and_loss_read_only_the_masked_targets():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 5)
    ids = torch.tensor([[1, 2, 3, 4], [0, 1, 2, 0]])
    mask = torch.tensor([[False, False, True, True], [False, True, True, False]])
    logp = torch.log_softmax(logits, -1)
    want = [logp[0, 1, 3] + logp[0, 2, 4], logp[1, 0, 1] + logp[1, 1, 2]]
    torch.testing.assert_close(completion_logp(logits, ids, mask), torch.stack(want))
    torch.testing.assert_close(next_token_loss_sum(logits, ids, mask), -sum(want))
    assert float(token_kl_sum(logits, logits, mask)) == pytest.approx(0.0, abs=1e-6)
    assert float(token_kl_sum(logits, torch.zeros_like(logits), mask)) > 0


def test_devices_resolve_once_and_a_missing_one_names_its_key():
    assert device_of(torch.nn.Linear(2, 2)) == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="run.yaml: device: 'cuda:1' asked for"):
            resolve_device("cuda:1", "run.yaml: device")


def test_precision_auto_is_bf16_only_where_the_device_has_it_and_the_run_records_which(monkeypatch):
    from driftlab.config import resolve, validate_config
    from driftlab.tensors import native_bf16
    from tests.conftest import tiny_dict

    for native, expected in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr("driftlab.tensors.native_bf16", lambda device, native=native: native)
        cfg = validate_config({**tiny_dict(), "precision": "auto"}, "tiny")
        assert cfg.precision == "auto"  # validation probes nothing
        assert resolve(cfg).precision == expected  # resolved once, recorded: a resume elsewhere keeps it
    monkeypatch.undo()
    flags = open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""
    assert native_bf16(torch.device("cpu")) == ("avx512_bf16" in flags or "amx_bf16" in flags)
    assert resolve(validate_config({**tiny_dict(), "precision": "bf16"}, "tiny")).precision == "bf16"  # as asked
