"""Word-level tokenizer over Persona World's closed vocabulary, built with ``tokenizers``.

The vocabulary is enumerated from the world's templates (not learned from a corpus), so it is the
same for every seed and config, and is saved with every run as ``tokenizer/tokenizer.json``
(loadable by ``transformers.PreTrainedTokenizerFast``).
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers

from driftlab.errors import DataError
from driftlab.world import generator
from driftlab.world.domains import CLUSTER_SLOTS, DOMAINS

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIALS = (PAD, BOS, EOS, UNK)
FIXED_WORDS = (
    "story", "of", "faces", ".", "options", ":", "or", "chose", "task", "+", "=", "essay", "when", "done", "and",
    "over", *"0123456789",
)


def world_vocabulary() -> list[str]:
    words: set[str] = set(FIXED_WORDS)
    words.update(generator.CHARACTERS)
    words.add(generator.ASSISTANT)
    for phrase in (*generator.DISCUSSION_SUBJECTS, *generator.DISCUSSION_HEDGES):
        words.update(phrase.split())
    for slots in CLUSTER_SLOTS.values():
        for fillers in slots.values():
            words.update(w for f in fillers for w in f.split())
    for d in DOMAINS:
        words.update((d.aligned, d.misaligned))
        for t in d.templates:
            words.update(w for w in t.split() if not w.startswith("{"))
        for fillers in d.slots.values():
            words.update(w for f in fillers for w in f.split())
    return [*SPECIALS, *sorted(words)]


class WorldTokenizer:
    """Encode/decode whitespace-separated words; ``<bos>``/``<eos>`` delimit documents."""

    def __init__(self, tokenizer: Tokenizer):
        self.tk = tokenizer
        self.vocab: dict[str, int] = tokenizer.get_vocab()
        self.words = {i: w for w, i in self.vocab.items()}
        self.pad_id, self.bos_id, self.eos_id, self.unk_id = (self.vocab[s] for s in SPECIALS)

    @classmethod
    def build(cls) -> WorldTokenizer:
        vocab = {w: i for i, w in enumerate(world_vocabulary())}
        tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
        tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        tk.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins words with spaces
        tk.add_special_tokens(list(SPECIALS))
        return cls(tk)

    @classmethod
    def load(cls, directory: str | Path) -> WorldTokenizer:
        path = Path(directory) / "tokenizer.json"
        try:
            return cls(Tokenizer.from_file(str(path)))
        except Exception as e:  # tokenizers raises plain Exception subclasses
            raise DataError(f"{path}: cannot load tokenizer: {e}") from None

    def save(self, directory: str | Path) -> None:
        from transformers import PreTrainedTokenizerFast

        hf = PreTrainedTokenizerFast(tokenizer_object=self.tk, bos_token=BOS, eos_token=EOS,
                                     pad_token=PAD, unk_token=UNK)
        hf.save_pretrained(str(directory))

    def __len__(self) -> int:
        return len(self.vocab)

    def ids(self, words: list[str], where: str = "text") -> list[int]:
        """Fast path for world-generated words; an unknown word is a DataError naming ``where``."""
        try:
            return [self.vocab[w] for w in words]
        except KeyError as e:
            raise DataError(f"{where}: unknown word {e.args[0]!r} (not in the world vocabulary)") from None

    def encode(self, text: str, where: str = "text") -> list[int]:
        return self.ids(text.split(), where)

    def decode(self, ids: list[int]) -> str:
        return self.tk.decode(list(ids), skip_special_tokens=False)
