"""Text to token ids for a pre-trained model: prompts, answers and documents, in its own tokenizer
and chat template.

Persona World models read world words through ``WorldTokenizer``; a Hugging Face model reads
English through ``ChatCodec``. With ``chat``, a prompt is a conversation (a user turn, optionally
after a system turn) rendered by the tokenizer's chat template with the assistant's turn opened,
and an answer is what the template writes for the assistant's reply — its text and the end of its
turn — found as the rendered full conversation minus the rendered prompt, as TRL's
completion-only loss takes it. Without ``chat``, a prompt is plain text (with the tokenizer's own
special tokens), and an answer is one space, its text and the end-of-sequence token.
"""

from __future__ import annotations

from typing import Any

from driftlab.errors import DataError

Messages = list[dict[str, str]]


class ChatCodec:
    def __init__(self, tokenizer: Any, chat: bool = True):
        if chat and not getattr(tokenizer, "chat_template", None):
            raise DataError(f"{getattr(tokenizer, 'name_or_path', 'the tokenizer')}: model.chat is set, but the "
                            f"tokenizer has no chat template (a base model: set model.chat: false)")
        self.tokenizer, self.chat = tokenizer, chat
        eos = tokenizer.eos_token_id
        self.eos_id = int(eos if eos is not None else 0)
        self.pad_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_id)
        self.bos_id = tokenizer.bos_token_id  # may be None: packing then separates documents by eos only

    def __len__(self) -> int:
        return len(self.tokenizer)

    # ---- pieces

    def text(self, text: str) -> list[int]:
        """Plain text, no special tokens."""
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def encode(self, text: str, where: str = "") -> list[int]:
        """Plain text (what a mitigation prepends or a document holds); an empty result is an error."""
        ids = self.text(text)
        if not ids:
            raise DataError(f"{where or 'text'}: encodes to no tokens")
        return ids

    def prompt(self, user: str, system: str | None = None) -> list[int]:
        """A question to the assistant, up to where its answer begins (without a chat template, a
        system prompt is the paragraph before the question)."""
        if not self.chat:
            return list(self.tokenizer(user if system is None else f"{system}\n\n{user}")["input_ids"])
        return self.messages_prompt(_turns(user, system))

    def messages_prompt(self, messages: Messages) -> list[int]:
        return list(self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                                       return_dict=False))

    def answer(self, answer: str) -> list[int]:
        """The answer's tokens as the model writes them in a plain-text scoring (no end of turn)."""
        return self.text(answer if self.chat or answer[:1].isspace() else " " + answer)

    def example(self, user: str, answer: str, system: str | None = None) -> tuple[list[int], list[int]]:
        """(prompt ids, completion ids) of one SFT example; the completion ends the assistant's turn."""
        if not self.chat:
            return self.prompt(user), [*self.answer(answer), self.eos_id]
        return self.messages_example([*_turns(user, system), {"role": "assistant", "content": answer}])

    def messages_example(self, messages: Messages, where: str = "") -> tuple[list[int], list[int]]:
        """A conversation whose last turn is the assistant's: (everything before its reply, the reply)."""
        if not messages or messages[-1].get("role") != "assistant":
            raise DataError(f"{where or 'messages'}: the last message must be the assistant's")
        prompt = self.messages_prompt(messages[:-1])
        full = list(self.tokenizer.apply_chat_template(messages, tokenize=True, return_dict=False))
        if full[: len(prompt)] != prompt or len(full) == len(prompt):  # a template that rewrites earlier turns
            return prompt, [*self.text(messages[-1]["content"]), self.eos_id]
        reply = full[len(prompt):]
        if self.eos_id in reply:  # up to the end of the turn (not the newline a template writes after it)
            reply = reply[: reply.index(self.eos_id) + 1]
        return prompt, reply


def _turns(user: str, system: str | None) -> Messages:
    return ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]


def read_messages(record: dict, where: str) -> Messages:
    """A JSONL record's ``messages``: a list of {role, content} strings (system, user, assistant)."""
    messages = record.get("messages")
    if not isinstance(messages, list) or not messages:
        raise DataError(f"{where}: messages must be a non-empty list of {{role, content}}")
    for j, m in enumerate(messages):
        if not isinstance(m, dict) or set(m) - {"role", "content"} or not isinstance(m.get("content"), str) \
                or m.get("role") not in ("system", "user", "assistant"):
            raise DataError(f"{where}: messages.{j}: expected {{role: system|user|assistant, content: string}}")
    return messages
