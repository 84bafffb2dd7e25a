"""Word boundaries for whole-word masking, read from the text and the characters each token spells.

A token *continues* the word of the token before it when, at the boundary between them, the
character on each side is a word character (:func:`is_word_char`: ``str.isalnum()``, ``_`` or an
apostrophe), or when it spells no character of its own (the second byte of a character split
over byte tokens). Every other token *starts* a word. So a word is a maximal run of word
characters, with whatever the tokenizer attaches before it (BPE's leading space), and every
other token (a space, a punctuation mark) is a word of its own. The rule reads the text, not the
tokenizer's markers (WordPiece's ``##``, byte-level's ``Ġ``), so every family masks the same
words: all the characters of a word for ``char``, all its pieces for BPE / WordPiece / Unigram.

Hugging Face's whole-word masking starts a word where a token's offsets leave a gap after the
previous token's. Character lengths leave no gaps (text a token skips counts for the next token),
so the characters decide here: on words, apostrophes and single spaces both rules agree; a
punctuation mark glued to a word (``die,``) is part of the word for HF, a word of its own here.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .base import TokenizedCorpus, TokenizedDoc

APOSTROPHES = "'\u2019"
"""Apostrophes inside a word (``beauty's``, ``o\u2019er``) keep it one word."""


def is_word_char(c: str) -> bool:
    """A character a word is made of: a letter or digit (``str.isalnum``), ``_`` or an apostrophe.

    >>> [is_word_char(c) for c in "a7_' ,-"]
    [True, True, True, True, False, False, False]
    """
    return c.isalnum() or c == "_" or c in APOSTROPHES


def word_starts(text: str, char_lengths: Sequence[int]) -> torch.Tensor:
    """``(n,)`` bool, True where token ``i`` starts a word of ``text`` (see the module notes);
    token ``i`` spells ``text[sum(char_lengths[:i]) : sum(char_lengths[:i + 1])]``, as
    :meth:`Tokenizer.encode_with_lengths` counts them. Vectorised over the characters: a Python
    call per *distinct* character only.

    >>> text = "To be, or"  # one token a character
    >>> word_starts(text, [1] * len(text)).int().tolist()
    [1, 0, 1, 1, 0, 1, 1, 1, 0]
    >>> word_starts("playing ball", [4, 3, 5]).int().tolist()  # "play" "ing" " ball"
    [1, 0, 1]
    >>> word_starts("café", [3, 1, 0]).int().tolist()  # a zero-length token continues its word
    [1, 0, 0]
    """
    lengths = torch.tensor(list(char_lengths), dtype=torch.long)
    n = lengths.numel()
    if n == 0:
        return torch.zeros(0, dtype=torch.bool)
    if int(lengths.min()) < 0 or int(lengths.sum()) > len(text):
        raise ValueError(f"the tokens' character lengths (total {int(lengths.sum())}) do not fit the text "
                         f"({len(text)} characters)")
    word = _word_chars(text)  # (len(text),) bool
    begin = lengths.cumsum(0) - lengths  # first character of each token
    left, right = (begin - 1).clamp(min=0), begin.clamp(max=max(len(text) - 1, 0))
    glued = (begin > 0) & (begin < len(text)) & word[left] & word[right]
    starts = ~(glued | (lengths == 0))
    starts[0] = True
    return starts


def _word_chars(text: str) -> torch.Tensor:
    """``is_word_char`` of every character, through a table of the distinct characters."""
    if not text:
        return torch.zeros(1, dtype=torch.bool)  # indexed at 0 by the clamps above
    codes = torch.frombuffer(bytearray(text.encode("utf-32-le", "surrogatepass")), dtype=torch.int32)
    distinct, where = torch.unique(codes, return_inverse=True)
    table = torch.tensor([is_word_char(chr(c)) for c in distinct.tolist()], dtype=torch.bool)
    return table[where]


def word_ids(starts: torch.Tensor) -> torch.Tensor:
    """``(B, T)`` index of each position's word within its row, from ``(B, T)`` word starts: the
    row's first position always starts one (a window may begin mid-word). Ids are ``< T``, so a
    ``(B, T)`` draw gathered by them gives one draw per word.

    >>> word_ids(torch.tensor([[0, 0, 1, 0, 1], [1, 1, 0, 0, 1]], dtype=torch.bool)).tolist()
    [[0, 0, 1, 1, 2], [0, 1, 1, 1, 2]]
    """
    new = starts.clone()
    new[:, 0] = True
    return new.long().cumsum(1) - 1


def doc_word_starts(doc: TokenizedDoc) -> torch.Tensor:
    """:func:`word_starts` of a tokenized document, which must know its tokens' characters."""
    if doc.char_lengths is None:
        raise ValueError("whole-word masking needs the characters each token spells: tokenize the split with "
                         "char_lengths=True (the objective asks for them: wants_char_lengths)")
    if len(doc.char_lengths) != len(doc.ids):
        raise ValueError(f"a document has {len(doc.ids)} tokens but {len(doc.char_lengths)} character lengths")
    return word_starts(doc.doc.text, doc.char_lengths)


def stream_word_starts(corpus: TokenizedCorpus) -> torch.Tensor:
    """``(N,)`` word starts of ``corpus.stream()``: each document's, and each token of the
    separator between two documents a word of its own (no word runs from one document into the next).

    >>> from workbench.corpora import Document
    >>> docs = [TokenizedDoc([5, 6], Document("ab"), [1, 1]), TokenizedDoc([7, 8], Document("c!"), [1, 1])]
    >>> stream_word_starts(TokenizedCorpus(docs, separator_ids=[9])).int().tolist()  # "ab" sep "c" "!"
    [1, 0, 1, 1, 1]
    """
    separator = torch.ones(len(corpus.separator_ids), dtype=torch.bool)
    parts: list[torch.Tensor] = []
    for i, d in enumerate(corpus.docs):
        if i:
            parts.append(separator)
        parts.append(doc_word_starts(d))
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.bool)
