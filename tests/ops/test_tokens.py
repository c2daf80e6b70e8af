"""Noun token positions against a real sentencepiece model, encoded the way ComfyUI's Wan
tokenizer does (weights parsed first, no start token, "</s>" then "<pad>" up to 512)."""
from __future__ import annotations

import io
import random
import re

import pytest
import sentencepiece
from hypothesis import given, settings
from hypothesis import strategies as st

from numina_ops.prompt import parse_targets
from numina_ops.records import CountTarget, NuminaInputError, Targets
from numina_ops.tokens import (CONTEXT_LENGTH, modifier_token_positions, noun_token_positions, piece_text, search_token_positions,
                               span_token_positions)

VOCABULARY = """three red apples two dogs chase a ball while other watch cats on the table five ducks
swimming in pond four people sitting around hot air balloons floating sky seven penguins walking
ice horses galloping across field children playing backyard one dog cat rabbits eating carrots
person standing mountain peak bowl of and near photo blue small fluffy white with man woman""".split()


def _train(vocab_size: int) -> sentencepiece.SentencePieceProcessor:
    rng = random.Random(0)
    sentences = [" ".join(rng.choice(VOCABULARY) for _ in range(8)) + rng.choice([".", ",", "", " (a)"])
                 for _ in range(400)]
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences), model_writer=model, vocab_size=vocab_size, model_type="unigram",
        pad_id=0, eos_id=1, unk_id=2, bos_id=-1, character_coverage=1.0, max_sentencepiece_length=4,
        minloglevel=2)
    return sentencepiece.SentencePieceProcessor(model_proto=model.getvalue())


@pytest.fixture(scope="module")
def sp() -> sentencepiece.SentencePieceProcessor:
    # Pieces of at most 4 characters: longer words split into several pieces; capitals were never seen (<unk>).
    return _train(vocab_size=60)


def comfy_segments(text: str) -> list[str]:
    """ComfyUI's reading of weight syntax, restated on plain strings (sd1_clip.token_weights)."""
    text = text.replace("\\)", "\0\1").replace("\\(", "\0\2")

    def parse(s: str) -> list[str]:
        items, current, depth = [], "", 0
        for ch in s:
            if ch == "(":
                if depth == 0 and current:
                    items.append(current)
                    current = ""
                current += ch
                depth += 1
            elif ch == ")":
                depth -= 1
                current += ch
                if depth == 0:
                    items.append(current)
                    current = ""
            else:
                current += ch
        if current:
            items.append(current)
        out: list[str] = []
        for item in items:
            if len(item) >= 2 and item[0] == "(" and item[-1] == ")":
                inner = item[1:-1]
                colon = inner.rfind(":")
                if colon > 0:
                    try:
                        float(inner[colon + 1:])
                        inner = inner[:colon]
                    except ValueError:
                        pass
                out += parse(inner)
            else:
                out.append(item)
        return out

    return [s.replace("\0\1", ")").replace("\0\2", "(") for s in parse(text)]


def comfy_pieces(sp: sentencepiece.SentencePieceProcessor, prompt: str,
                 word_by_word: bool) -> tuple[list[str], list[int]]:
    """Pieces per context position and the word group of each (-1 for end and padding), as the
    node adapter hands them over: ids of SDTokenizer turned into pieces with id_to_piece."""
    groups: list[list[int]] = []
    for segment in comfy_segments(prompt):
        if word_by_word:
            groups += [sp.encode(word) for word in segment.replace("\n", " ").split(" ") if word]
        elif segment:
            groups.append(sp.encode(segment))
    pieces, group_of = [], []
    for g, ids in enumerate(groups):
        pieces += [sp.id_to_piece(i) for i in ids]
        group_of += [g] * len(ids)
    pieces.append(sp.id_to_piece(sp.eos_id()))
    pieces += [sp.id_to_piece(sp.pad_id())] * max(0, CONTEXT_LENGTH - len(pieces))
    group_of += [-1] * (len(pieces) - len(group_of))
    return pieces, group_of


def spelled(pieces: list[str], positions: tuple[int, ...]) -> str:
    return "".join(pieces[p] for p in positions).replace("\u2581", "")


def test_the_test_model_really_splits_words_and_knows_no_capitals(sp: sentencepiece.SentencePieceProcessor) -> None:
    assert len(sp.encode("balloons", out_type=str)) > 1
    assert len(sp.encode("dogs", out_type=str)) > 1
    assert sp.id_to_piece(sp.encode("C")[-1]) == "<unk>"
    pieces, _ = comfy_pieces(sp, "three dogs", word_by_word=False)
    assert len(pieces) == CONTEXT_LENGTH and pieces.count("</s>") == 1 and pieces[-1] == "<pad>"


# (prompt, noun as counted, which occurrence of that word in the prompt is bound to the numeral)
CASES = [
    ("three red apples on the table", "apples", 0),
    ("two dogs chase a ball while other dogs watch", "dogs", 0),
    ("other dogs watch while two dogs chase a ball", "dogs", 1),
    ("(three red apples:1.2) on the table", "apples", 0),
    ("a bowl of apples, and three apples.", "apples", 1),
    ("Three Cats and two dogs", "Cats", 0),
    (r"((two cats)) near \(a dog\)", "dog", 0),
    ("five hot air balloons floating in the sky", "balloons", 0),
    ("Seven penguins walking on ice", "penguins", 0),
    ("two (fluffy white:1.3) cats (on the table)", "cats", 0),
    ("a person standing on a mountain peak", "person", 0),
    ("One cat and two rabbits eating carrots", "rabbits", 0),
    ("four people sitting around the table\nfive ducks swimming", "ducks", 0),
]


def _target(prompt: str, noun: str) -> CountTarget:
    return next(t for t in parse_targets(prompt).items if t.noun == noun)


@pytest.mark.parametrize("prompt, noun, occurrence", CASES, ids=[c[0] for c in CASES])
def test_word_by_word_encoding_gives_the_pieces_of_the_bound_word(
        sp: sentencepiece.SentencePieceProcessor, prompt: str, noun: str, occurrence: int) -> None:
    pieces, group_of = comfy_pieces(sp, prompt, word_by_word=True)
    words = [w for s in comfy_segments(prompt) for w in s.replace("\n", " ").split(" ") if w]
    word_index = [g for g, w in enumerate(words) if re.sub(r"\W", "", w) == noun][occurrence]
    expected = tuple(p for p, g in enumerate(group_of)
                     if g == word_index and (pieces[p] == "<unk>" or re.search(r"[a-z]", pieces[p])))
    positions = span_token_positions(prompt, _target(prompt, noun).span, pieces)
    assert positions == expected
    assert len(positions) >= 1 and max(positions) < pieces.index("</s>")


@pytest.mark.parametrize("prompt, noun, occurrence", CASES, ids=[c[0] for c in CASES])
def test_segment_encoding_gives_exactly_the_pieces_spelling_the_bound_occurrence(
        sp: sentencepiece.SentencePieceProcessor, prompt: str, noun: str, occurrence: int) -> None:
    pieces, _ = comfy_pieces(sp, prompt, word_by_word=False)
    positions = span_token_positions(prompt, _target(prompt, noun).span, pieces)
    assert list(positions) == list(range(positions[0], positions[-1] + 1))
    text = spelled(pieces, positions)
    assert text.replace("<unk>", "?") == re.sub(r"[A-Z]", "?", noun)
    before = "".join(pieces[:positions[0]]).replace("\u2581", " ").lower()
    assert len(re.findall(re.escape(noun.lower()[1:]), before)) == occurrence
    assert max(positions) < pieces.index("</s>")


def test_noun_token_positions_maps_every_target(sp: sentencepiece.SentencePieceProcessor) -> None:
    prompt = "two dogs and a ball while other dogs watch"
    targets = parse_targets(prompt)
    pieces, _ = comfy_pieces(sp, prompt, word_by_word=False)
    positions = noun_token_positions(targets, pieces)
    assert set(positions) == {"dogs", "ball"}
    assert max(positions["dogs"]) < min(positions["ball"])        # the first "dogs", not the second
    assert spelled(pieces, positions["dogs"]) == "dogs" and spelled(pieces, positions["ball"]) == "ball"


def test_modifier_positions_are_the_words_between_numeral_and_noun(sp: sentencepiece.SentencePieceProcessor) -> None:
    prompt = "two fluffy brown dogs and three cats near a red ball"
    targets = parse_targets(prompt)
    pieces, _ = comfy_pieces(sp, prompt, word_by_word=False)
    modifiers = modifier_token_positions(targets, pieces)
    assert spelled(pieces, modifiers["dogs"]).replace(" ", "") == "fluffybrown"
    assert modifiers["cats"] == ()                              # "three cats": nothing in between
    nouns = noun_token_positions(targets, pieces)
    assert max(modifiers["dogs"]) < min(nouns["dogs"])


def test_no_space_after_a_comma(sp: sentencepiece.SentencePieceProcessor) -> None:
    prompt = "two cats,three dogs"
    pieces, _ = comfy_pieces(sp, prompt, word_by_word=True)
    positions = noun_token_positions(parse_targets(prompt), pieces)
    assert spelled(pieces, positions["cats"]) == "cats" and spelled(pieces, positions["dogs"]) == "dogs"


def test_empty_targets_need_no_tokens() -> None:
    assert noun_token_positions(Targets(prompt="the sky", items=()), ["</s>"] + ["<pad>"] * 511) == {}


def test_compatibility_characters_are_matched_after_normalisation() -> None:
    prompt = "two \uff43\uff41\uff54\uff53"                       # full-width "cats"
    pieces = ["\u2581two", "\u2581ca", "ts", "</s>"] + ["<pad>"] * 508   # what nmt_nfkc makes of it
    assert noun_token_positions(parse_targets(prompt), pieces) == {"\uff43\uff41\uff54\uff53": (1, 2)}


def test_byte_pieces_count_for_the_character_they_encode() -> None:
    prompt = "two caf\u00e9s"
    pieces = ["\u2581two", "\u2581caf", "<0xC3>", "<0xA9>", "s", "</s>"] + ["<pad>"] * 506
    assert noun_token_positions(parse_targets(prompt), pieces) == {"caf\u00e9s": (1, 2, 3, 4)}
    text = piece_text(pieces)
    assert text.chars == "twocaf\u00e9s" and text.length == 5
    assert (text.first[6], text.last[6]) == (2, 3)


def test_unknown_pieces_inside_a_noun_belong_to_it() -> None:
    prompt = "three Xylophones"
    pieces = ["\u2581three", "\u2581", "<unk>", "ylo", "phones", "</s>"] + ["<pad>"] * 506
    assert span_token_positions(prompt, (6, 16), pieces) == (2, 3, 4)


def test_positions_past_the_context_length_are_an_error(sp: sentencepiece.SentencePieceProcessor) -> None:
    prompt = "the table " * 300 + "and three dogs"
    pieces, _ = comfy_pieces(sp, prompt, word_by_word=False)
    target = _target(prompt, "dogs")
    with pytest.raises(NuminaInputError, match=r'"dogs" sits at text positions .* beyond the 512'):
        span_token_positions(prompt, target.span, pieces)
    positions = span_token_positions(prompt, target.span, pieces, context_length=None)
    assert positions[0] >= CONTEXT_LENGTH and spelled(pieces, positions) == "dogs"


def test_tokens_of_another_prompt_are_an_error_naming_noun_and_pieces(sp: sentencepiece.SentencePieceProcessor) -> None:
    pieces, _ = comfy_pieces(sp, "two cats on the table", word_by_word=False)
    with pytest.raises(NuminaInputError) as err:
        noun_token_positions(parse_targets("three dogs"), pieces)
    message = str(err.value)
    assert 'noun "dogs"' in message and sp.encode("two cats", out_type=str)[0] in message
    assert "<pad>" not in message


def test_the_end_token_and_padding_are_never_read() -> None:
    pieces = ["\u2581three", "</s>", "\u2581dog", "s"] + ["<pad>"] * 508
    with pytest.raises(NuminaInputError, match='"dogs"'):
        span_token_positions("three dogs", (6, 10), pieces)


@pytest.mark.parametrize("pieces", ["\u2581three \u2581dogs", [1, 2, 3], None])
def test_pieces_must_be_piece_strings(pieces: object) -> None:
    with pytest.raises(NuminaInputError, match="list of piece strings"):
        span_token_positions("three dogs", (6, 10), pieces)  # type: ignore[arg-type]


def test_span_outside_the_prompt_is_an_error() -> None:
    with pytest.raises(NuminaInputError, match="outside the prompt"):
        span_token_positions("three dogs", (6, 40), ["\u2581three", "</s>"])


# --- the published search, used when the alignment cannot place a noun ------------------------

def test_search_prefers_a_run_that_starts_a_word() -> None:
    pieces = ["\u2581hot", "dog", "s", "\u2581dog", "s", "</s>"]
    assert search_token_positions("dogs", pieces) == (3, 4)
    assert search_token_positions("dogs", pieces[:3] + ["</s>"]) == (1, 2)       # then the bare form


def test_search_takes_the_requested_occurrence_and_tolerates_glued_punctuation() -> None:
    pieces = ["\u2581Dog", "s", ",", "\u2581dog", "s.", "</s>"]
    assert search_token_positions("dogs", pieces, occurrence=0) == (0, 1)
    assert search_token_positions("dogs", pieces, occurrence=1) == (3, 4)
    assert search_token_positions("dogs", pieces, occurrence=5) == (3, 4)
    assert search_token_positions("cats", pieces) is None
    assert search_token_positions("dogs", ["\u2581cat", "</s>", "\u2581dogs"]) is None


# --- property: any prompt made of known words, any weights, case and punctuation ---------------

@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_random_prompts_map_to_the_pieces_of_their_word(sp: sentencepiece.SentencePieceProcessor,
                                                        data: st.DataObject) -> None:
    words = data.draw(st.lists(st.sampled_from(VOCABULARY), min_size=2, max_size=12))
    k = data.draw(st.integers(0, len(words) - 1))
    rendered = []
    for i, word in enumerate(words):
        if data.draw(st.booleans()):
            word = word.capitalize()
        word += data.draw(st.sampled_from(["", "", ",", "."]))
        style = data.draw(st.sampled_from(["plain", "plain", "weight", "paren"]))
        word = {"plain": word, "weight": f"({word}:1.3)", "paren": f"(({word}))"}[style]
        rendered.append(word)
    prompt = " ".join(rendered)
    start = len(" ".join(rendered[:k])) + (1 if k else 0)
    start += len(rendered[k]) - len(rendered[k].lstrip("("))
    span = (start, start + len(words[k]))
    assert prompt[span[0]:span[1]].lower() == words[k]
    for word_by_word in (True, False):
        pieces, group_of = comfy_pieces(sp, prompt, word_by_word)
        positions = span_token_positions(prompt, span, pieces)
        assert spelled(pieces, positions).lower().replace("<unk>", words[k][0]) == words[k]
        if word_by_word:
            assert {group_of[p] for p in positions} == {k}
