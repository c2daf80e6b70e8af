"""Token positions of the counted nouns: the umT5 context columns NUMINA reads and biases.

Input: the prompt's targets and, for every context position, the sentencepiece piece string
ComfyUI's Wan tokenizer produced there (the node adapter turns the token ids of
`clip.tokenize(text, return_word_ids=True)["umt5xxl"][0]` into pieces with the tokenizer's
`id_to_piece`): e.g. "▁three", "▁red", "▁app", "les", "</s>", "<pad>", ... (at least 512).

How the pieces come about (comfy/sd1_clip.py SDTokenizer with UMT5XXlTokenizer): the weight
syntax "(red apples:1.2)" and the escapes "\\(" "\\)" are read first; each weighted segment is
encoded by sentencepiece (ComfyUI 0.3.x encodes a segment whole, older versions word by word;
both give every word a first piece with the "▁" word-start mark); no start token; one end token
"</s>" after the last piece, then "<pad>" up to 512 positions.

Method (`span_token_positions`), robust to sub-word splits, weights, punctuation and case:
1. Character alignment.  Rebuild the text from the pieces (drop "▁", NFKC, lower case, no
   white space; byte pieces "<0x..>" decoded, "<unk>" kept as a gap) and align it with the
   prompt's text as the tokenizer saw it (same normalisation).  The noun's character span in the
   prompt (CountTarget.span, the occurrence bound to the numeral) then names exactly the pieces
   that spell it: all sub-word pieces, none of the glued punctuation ("apples," -> "▁app",
   "les"), the right one of several occurrences.  Usually the two texts are identical; when they
   are not (unknown characters, normaliser changes) a longest-matching-blocks alignment is used
   and accepted only when it covers at least half of the noun's characters in one contiguous run
   of pieces.
2. Fallback when the alignment cannot place the noun (e.g. the pieces come from a slightly
   different text): the published code's search (`search_token_positions`), runs of pieces that
   spell the noun, first those starting with "▁", then bare ones; the k-th run is taken for the
   noun's k-th occurrence as a word of the prompt.
3. Otherwise NuminaInputError naming the noun and the pieces seen.
Positions are never in the end token or the padding, and must be below `context_length` (512,
the text length Wan reads).
"""
from __future__ import annotations

import codecs
import difflib
import re
import unicodedata
from dataclasses import dataclass
from typing import Optional, Sequence

from .prompt import text_seen_by_tokenizer
from .records import NuminaInputError, Targets

WORD_START = "\u2581"                       # sentencepiece's leading-space mark
END_PIECES = frozenset({"</s>", "<pad>"})
CONTEXT_LENGTH = 512
_GAP = "\ufffd"                              # a character the pieces do not spell (<unk>)
_BYTE_PIECE = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")
_CONTROL_PIECE = re.compile(r"^<[^<>\s]+>$")
MIN_ALIGNED_FRACTION = 0.5


def _normalise(ch: str) -> str:
    """One prompt or piece character as compared: NFKC, lower case, no white space or "▁"."""
    out = unicodedata.normalize("NFKC", ch).lower()
    return "".join(c for c in out if not c.isspace() and c != WORD_START)


@dataclass(frozen=True)
class PieceText:
    """The text spelled by the pieces before the end token, one entry per compared character."""

    chars: str                              # normalised characters, _GAP for unknown pieces
    first: tuple[int, ...]                  # first piece position of each character
    last: tuple[int, ...]                   # last piece position (a byte-encoded character
    length: int                             # spans several pieces); pieces before the end token


def piece_text(pieces: Sequence[str]) -> PieceText:
    """Rebuild the compared text from the pieces; stops at the end token or padding."""
    if not isinstance(pieces, Sequence) or isinstance(pieces, (str, bytes)) \
            or not all(isinstance(p, str) for p in pieces):
        raise NuminaInputError("token pieces must be a list of piece strings (one per context position),"
                               f" got {type(pieces).__name__}")
    chars: list[str] = []
    first: list[int] = []
    last: list[int] = []
    length = next((i for i, p in enumerate(pieces) if p in END_PIECES), len(pieces))
    pos = 0
    while pos < length:
        piece = pieces[pos]
        if _BYTE_PIECE.match(piece):
            decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
            start = pos
            while pos < length and _BYTE_PIECE.match(pieces[pos]):
                out = decoder.decode(bytes([int(pieces[pos][3:5], 16)]))
                for c in "".join(_normalise(ch) for ch in out):
                    chars.append(c)
                    first.append(start)
                    last.append(pos)
                if out:
                    start = pos + 1
                pos += 1
            continue
        if _CONTROL_PIECE.match(piece):
            chars.append(_GAP)
            first.append(pos)
            last.append(pos)
        else:
            for c in "".join(_normalise(ch) for ch in piece):
                chars.append(c)
                first.append(pos)
                last.append(pos)
        pos += 1
    return PieceText("".join(chars), tuple(first), tuple(last), length)


def _prompt_chars(prompt: str) -> tuple[str, tuple[int, ...]]:
    """The prompt as the tokenizer saw it, normalised, with each character's index in `prompt`."""
    text, index = text_seen_by_tokenizer(prompt)
    chars: list[str] = []
    origin: list[int] = []
    for ch, i in zip(text, index):
        for c in _normalise(ch):
            chars.append(c)
            origin.append(i)
    return "".join(chars), tuple(origin)


def _alignment(a: str, b: str) -> list[Optional[int]]:
    """For each character of a, its aligned character in b (None when unmatched)."""
    if a == b:
        return list(range(len(a)))
    aligned: list[Optional[int]] = [None] * len(a)
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    for block in matcher.get_matching_blocks():
        for k in range(block.size):
            aligned[block.a + k] = block.b + k
    # unknown pieces (<unk>) fill the gaps they sit in
    previous = (-1, -1)
    for ai in range(len(a) + 1):
        bi = aligned[ai] if ai < len(a) else len(b)
        if bi is None:
            continue
        pa, pb = previous
        if ai - pa > 1 and bi - pb > 1 and all(c == _GAP for c in b[pb + 1:bi]):
            gap_b = list(range(pb + 1, bi))
            for k, aj in enumerate(range(pa + 1, ai)):
                aligned[aj] = gap_b[min(k, len(gap_b) - 1)]
        previous = (ai, bi)
    return aligned


def _aligned_positions(prompt: str, span: tuple[int, int], text: PieceText) -> Optional[tuple[int, ...]]:
    chars, origin = _prompt_chars(prompt)
    wanted = [j for j, i in enumerate(origin) if span[0] <= i < span[1]]
    if not wanted:
        return None
    aligned = _alignment(chars, text.chars)
    hits = [aligned[j] for j in wanted if aligned[j] is not None]
    if len(hits) < MIN_ALIGNED_FRACTION * len(wanted):
        return None
    positions = sorted({p for b in hits for p in range(text.first[b], text.last[b] + 1)})
    if positions[-1] - positions[0] + 1 != len(positions):
        return None
    return tuple(positions)


def search_token_positions(noun: str, pieces: Sequence[str], occurrence: int = 0) -> Optional[tuple[int, ...]]:
    """The published search: runs of pieces that spell `noun` (punctuation may follow in the last
    piece), runs starting a word ("▁") first, then anywhere; the `occurrence`-th run (0-based, the
    last one if there are fewer).  None when no run spells it."""
    target = "".join(_normalise(c) for c in noun)
    if not target:
        return None
    length = piece_text(pieces).length
    texts = ["".join(_normalise(c) for c in p) for p in pieces[:length]]
    for leading_space_only in (True, False):
        runs: list[tuple[int, ...]] = []
        for start in range(length):
            starts_word = pieces[start].startswith(WORD_START) or (start > 0 and pieces[start - 1] == WORD_START)
            if not texts[start] or (leading_space_only and not starts_word):
                continue
            spelled, end = "", start
            while end < length and len(spelled) < len(target) and target.startswith(spelled):
                spelled += texts[end]
                end += 1
            if spelled.startswith(target) and not any(c.isalnum() for c in spelled[len(target):]):
                runs.append(tuple(range(start, end)))
        if runs:
            return runs[min(occurrence, len(runs) - 1)]
    return None


def _occurrence(prompt: str, span: tuple[int, int]) -> int:
    """How many times the noun occurs as a word in the prompt before its span."""
    word = re.escape(prompt[span[0]:span[1]].lower())
    return len(re.findall(r"(?<!\w)" + word + r"(?!\w)", prompt[:span[0]].lower()))


def span_token_positions(prompt: str, span: tuple[int, int], pieces: Sequence[str],
                         *, context_length: Optional[int] = CONTEXT_LENGTH) -> tuple[int, ...]:
    """Positions of the pieces that spell prompt[span[0]:span[1]] (see the module docstring)."""
    if not (0 <= span[0] < span[1] <= len(prompt)):
        raise NuminaInputError(f"span {span} lies outside the prompt of {len(prompt)} characters")
    noun = prompt[span[0]:span[1]]
    text = piece_text(pieces)
    positions = (_aligned_positions(prompt, span, text)
                 or search_token_positions(noun, pieces, _occurrence(prompt, span)))
    if positions is None:
        seen = " ".join(pieces[:min(text.length, 60)]) + (" ..." if text.length > 60 else "")
        raise NuminaInputError(
            f'no text tokens spell the noun "{noun}"; the {text.length} pieces seen are: {seen or "(none)"}.'
            " The tokens must come from the same prompt the counts were read from: connect one prompt"
            " to both the text encoder and the NUMINA node")
    if context_length is not None and positions[-1] >= context_length:
        raise NuminaInputError(
            f'the noun "{noun}" sits at text positions {positions[0]}..{positions[-1]}, beyond the'
            f" {context_length} positions the model reads; shorten the prompt or move the noun forward")
    return positions


def modifier_token_positions(targets: Targets, pieces: Sequence[str],
                             *, context_length: Optional[int] = CONTEXT_LENGTH) -> dict[str, tuple[int, ...]]:
    """{noun: positions of the words between its numeral and the noun} ("green" in "four green
    circles"); () when there are none or the numeral is not written before the noun."""
    found: dict[str, tuple[int, ...]] = {}
    for t in targets.items:
        found[t.noun] = ()
        if not t.numeral:
            continue
        at = targets.prompt.rfind(t.numeral, 0, t.span[0])
        if at < 0:
            continue
        start, end = at + len(t.numeral), t.span[0]
        words = targets.prompt[start:end]
        if not words.strip():
            continue
        start += len(words) - len(words.lstrip())
        end -= len(words) - len(words.rstrip())
        try:
            found[t.noun] = span_token_positions(targets.prompt, (start, end), pieces, context_length=context_length)
        except NuminaInputError:
            found[t.noun] = ()
    return found


def noun_token_positions(targets: Targets, pieces: Sequence[str],
                         *, context_length: Optional[int] = CONTEXT_LENGTH) -> dict[str, tuple[int, ...]]:
    """{noun: positions of its pieces} for every target, at the occurrence bound to its numeral."""
    if not targets.items:
        return {}
    return {t.noun: span_token_positions(targets.prompt, t.span, pieces, context_length=context_length)
            for t in targets.items}
