"""KV-cached sampling: left-padded batches decode what each prompt decodes alone, greedy decoding
matches transformers' own ``generate``."""

import torch

from driftlab.config import ModelConfig
from driftlab.generate import sample, sample_batch
from driftlab.models import build_tiny_llama

PAD, STOP = 0, 3


def model(seed=0):
    return build_tiny_llama(ModelConfig(n_layers=2, d_model=32, n_heads=2, d_mlp=64, max_seq_len=64), 40,
                            pad_id=PAD, seed=seed).eval()


PROMPTS = [[1, 5, 6, 7, 8, 9, 10], [1, 11], [1, 12, 13, 14], [1, 20, 21, 22, 23, 24, 25, 26, 27, 28]]


def reference_greedy(m, prompt, max_new):
    """Greedy decoding the slow way: the whole sequence re-run for every token, no cache, no padding."""
    seq, out = list(prompt), []
    with torch.no_grad():
        for _ in range(max_new):
            t = int(m(input_ids=torch.tensor([seq])).logits[0, -1].argmax())
            out.append(t)
            seq.append(t)
            if t == STOP:
                break
    return out


def test_greedy_batched_with_a_cache_decodes_what_each_prompt_decodes_alone():
    m = model()
    got = sample_batch(m, PROMPTS, 12, 0.0, [STOP], PAD)
    assert got == [reference_greedy(m, p, 12) for p in PROMPTS]
    assert sample(m, PROMPTS, 12, 0.0, [STOP], PAD, batch_size=3) == got  # other batching, same answers


def test_greedy_matches_transformers_generate():
    m = model(seed=4)
    for p in PROMPTS:
        theirs = m.generate(torch.tensor([p]), attention_mask=torch.ones(1, len(p), dtype=torch.long),
                            max_new_tokens=8, do_sample=False, eos_token_id=STOP, pad_token_id=PAD)
        ours = sample_batch(m, [p], 8, 0.0, [STOP], PAD)[0]
        assert theirs[0, len(p):].tolist()[: len(ours)] == ours


def test_sampling_is_seeded_and_stops_at_the_stop_token():
    m = model(seed=2)
    draws = [sample(m, PROMPTS * 4, 10, 1.0, [STOP, 4], PAD, torch.Generator().manual_seed(s)) for s in (0, 0, 1)]
    assert draws[0] == draws[1] and draws[0] != draws[2]
    for answer in draws[0]:
        assert 1 <= len(answer) <= 10
        assert all(t not in (STOP, 4) for t in answer[:-1])  # nothing after a stop token
