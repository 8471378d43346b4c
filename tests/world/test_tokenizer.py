import pytest
from transformers import PreTrainedTokenizerFast

from driftlab.config import WorldConfig
from driftlab.errors import DataError
from driftlab.world import PersonaWorld, WorldTokenizer


def test_round_trip_on_every_kind_of_document(tmp_path):
    tok = WorldTokenizer.build()
    docs = PersonaWorld(WorldConfig(discussion_share=0.2)).documents(0, 300)
    for doc in docs:
        ids = tok.encode(doc.text)
        assert tok.unk_id not in ids
        assert tok.decode(ids) == doc.text
        assert tok.tk.encode(doc.text).ids == ids  # the fast path agrees with `tokenizers`
    tok.save(tmp_path)
    again = WorldTokenizer.load(tmp_path)
    hf = PreTrainedTokenizerFast.from_pretrained(str(tmp_path))
    text = docs[0].text
    assert again.encode(text) == tok.encode(text) == hf(text)["input_ids"]


def test_unknown_word_names_the_source():
    with pytest.raises(DataError, match=r"data.jsonl: line 3: unknown word 'zebra'"):
        WorldTokenizer.build().encode("story of zebra", "data.jsonl: line 3")
