"""Counts read from the prompt: the rules of numina_ops/prompt.py as a specification."""
from __future__ import annotations

import pytest

from numina_ops.prompt import is_plural, parse_override, parse_targets, same_noun, singular, text_seen_by_tokenizer
from numina_ops.records import NuminaInputError

# Counting-benchmark style prompts: every noun bound to a numeral must come out with its count,
# nothing else may be counted.
BENCHMARK_PROMPTS = [
    ("Three dogs are running on the grass", {"dogs": 3}),
    ("Two children and one dog play in the backyard", {"children": 2, "dog": 1}),
    ("A person standing on a mountain peak", {"person": 1}),
    ("Five ducks swimming in a pond", {"ducks": 5}),
    ("Four people sitting around a table", {"people": 4}),
    ("One cat and two rabbits eating carrots", {"cat": 1, "rabbits": 2}),
    ("2 horses galloping across a field", {"horses": 2}),
    ("Seven colorful balloons floating in the sky", {"balloons": 7}),
    ("Eight penguins walking on ice", {"penguins": 8}),
    ("Three brightly-coloured hot air balloons drifting over a valley", {"balloons": 3}),
    ("A man walking with three dogs", {"man": 1, "dogs": 3}),
    ("Two cats on a sofa", {"cats": 2}),
    ("A man with a dog", {"man": 1, "dog": 1}),
    ("A cat sitting in a garden", {"cat": 1}),
    ("Three small red apples on a wooden table", {"apples": 3}),
    ("Two fluffy white cats sleeping", {"cats": 2}),
    ("Three running dogs", {"dogs": 3}),
    ("Two dogs and three cats", {"dogs": 2, "cats": 3}),
    ("Six sheep grazing in a meadow", {"sheep": 6}),
    ("Nine fish swimming in an aquarium", {"fish": 9}),
    ("Two women and a man dancing in the rain", {"women": 2, "man": 1}),
    ("Three geese crossing a road", {"geese": 3}),
    ("Four mice eating cheese", {"mice": 4}),
    ("Two deer standing in a snowy forest", {"deer": 2}),
    ("Five children playing soccer in a park", {"children": 5}),
    ("A dog and two cats sleeping on a bed", {"dog": 1, "cats": 2}),
    ("Three horses and a foal in a meadow", {"horses": 3, "foal": 1}),
    ("Two girls riding bicycles along a beach", {"girls": 2}),
    ("One man and three women walking down a street", {"man": 1, "women": 3}),
    ("Four kittens playing with a ball of yarn", {"kittens": 4}),
    ("A chef cooking two eggs in a pan", {"chef": 1, "eggs": 2}),
    ("Two police officers standing next to a car", {"officers": 2}),
    ("A woman holding two cups of coffee", {"woman": 1, "cups": 2}),
    ("Three birds perched on a branch", {"birds": 3}),
    ("Two cars parked on the street", {"cars": 2}),
    ("A girl and her three puppies", {"girl": 1, "puppies": 3}),
    ("A flock of seven birds flying over the sea", {"birds": 7}),
    ("A group of five people hiking up a hill", {"people": 5}),
    ("Two swans gliding on a lake", {"swans": 2}),
    ("Three monkeys swinging from trees", {"monkeys": 3}),
    ("6 apples in a basket", {"apples": 6}),
    ("Two astronauts floating in space", {"astronauts": 2}),
    ("A boy playing football with two friends", {"boy": 1, "friends": 2}),
    ("Eight candles on a birthday cake", {"candles": 8}),
    ("Three teddy bears and two dolls on a shelf", {"bears": 3, "dolls": 2}),
    ("Two dogs chasing a cat through a garden", {"dogs": 2, "cat": 1}),
    ("Five boats sailing on a calm lake at sunset", {"boats": 5}),
    ("A photo of two dogs and a cat", {"dogs": 2, "cat": 1}),
    ("Three Elephants walking through a savanna", {"Elephants": 3}),
    ("Twelve eggs in a carton", {"eggs": 12}),
    ("A man and a woman walking a dog", {"man": 1, "woman": 1, "dog": 1}),
    ("Two sports cars racing on a track", {"cars": 2}),
    ("In 2024, three dogs played in the snow", {"dogs": 3}),
    ("two dogs, 3 cats.", {"dogs": 2, "cats": 3}),
    ("\U0001f436 two dogs on the grass \U0001f436", {"dogs": 2}),
    ("Three dogs eat fish", {"dogs": 3}),
    ("A big wave and a surfer", {"wave": 1, "surfer": 1}),
]


@pytest.mark.parametrize("prompt, expected", BENCHMARK_PROMPTS, ids=[p for p, _ in BENCHMARK_PROMPTS])
def test_benchmark_prompts_give_every_numeral_its_noun(prompt: str, expected: dict[str, int]) -> None:
    targets = parse_targets(prompt)
    assert targets.as_dict() == expected
    for t in targets.items:
        assert prompt[t.span[0]:t.span[1]] == t.noun
        assert t.source == "prompt"


@pytest.mark.parametrize("prompt, noun, count, numeral", [
    ("a dozen eggs", "eggs", 12, "a dozen"),
    ("half a dozen eggs", "eggs", 6, "half a dozen"),
    ("two dozen roses", "roses", 24, "two dozen"),
    ("a pair of shoes", "shoes", 2, "a pair of"),
    ("three pairs of socks", "socks", 6, "three pairs of"),
    ("a couple of birds", "birds", 2, "a couple of"),
    ("both dogs barking", "dogs", 2, "both"),
    ("Twenty-one ducks", "ducks", 21, "Twenty-one"),
    ("twenty one ducks", "ducks", 21, "twenty one"),
    ("THREE CATS", "CATS", 3, "THREE"),
    ("99 balloons", "balloons", 99, "99"),
    ("zero cats", "cats", 0, "zero"),
    ("an owl", "owl", 1, "an"),
    ("a single red rose", "rose", 1, "a"),
])
def test_numeral_forms(prompt: str, noun: str, count: int, numeral: str) -> None:
    (target,) = parse_targets(prompt).items
    assert (target.noun, target.count, target.numeral) == (noun, count, numeral)


@pytest.mark.parametrize("prompt, expected_note", [
    ("a few birds", '"a few birds": vague quantity'),
    ("several cats", '"several cats": vague quantity'),
    ("many dogs on a hill", '"many dogs": vague quantity'),
    ("some apples", '"some apples": vague quantity'),
    ("a herd of elephants", '"a herd of elephants": a group'),
    ("a couple walking on the beach", '"a couple": a group'),
    ("two or three dogs", '"two or three dogs": a range'),
    ("2-3 dogs", '"2-3 dogs": a range'),
    ("at least three dogs", '"at least three dogs": not an exact count'),
    ("more than two cats", '"more than two cats": not an exact count'),
    ("two of the dogs", '"two of the dogs": part of a group'),
    ("no cats in the room", '"no cats": a negation'),
    ("120 balloons", "120 is more than 99"),
    ("a hundred birds", "100 is more than 99"),
    ("two minutes of rain", '"two minutes": a unit of measure'),
    ("3.5 apples", "3.5 is not a whole number"),
    ("1,000 birds on a wire", "1,000 is more than 99"),
    ("!!!", "no countable noun"),
])
def test_what_is_not_a_count_is_said_not_guessed(prompt: str, expected_note: str) -> None:
    targets = parse_targets(prompt)
    assert not targets
    assert any(expected_note in note for note in targets.notes), targets.notes
    assert any(note.startswith("no countable noun found") and prompt in note for note in targets.notes)


def test_a_numeral_wins_over_vague_words_elsewhere() -> None:
    targets = parse_targets("several trees and three dogs")
    assert targets.as_dict() == {"dogs": 3}
    assert any('"several trees"' in n for n in targets.notes)


def test_no_countable_noun_is_an_empty_result_with_a_note() -> None:
    targets = parse_targets("the sun sets behind the mountains")
    assert not targets and targets.items == ()
    assert targets.notes == ('no countable noun found in "the sun sets behind the mountains"; write a number'
                             ' before the noun ("three dogs") or give an override ("dogs: 3")',)


@pytest.mark.parametrize("prompt", ["", "   \n\t"])
def test_empty_prompt_is_an_error(prompt: str) -> None:
    with pytest.raises(NuminaInputError, match="prompt is empty"):
        parse_targets(prompt)


def test_prompt_must_be_text() -> None:
    with pytest.raises(NuminaInputError, match="prompt must be text"):
        parse_targets(None)  # type: ignore[arg-type]


# --- the setting is not counted (rule 5) -------------------------------------------------------

@pytest.mark.parametrize("prompt, expected, skipped", [
    ("A person standing on a mountain peak", {"person": 1}, '"a mountain peak" (after "on")'),
    ("two cats on a sofa", {"cats": 2}, '"a sofa" (after "on")'),
    ("a beach with two dogs", {"dogs": 2}, '"a beach": the setting'),
    ("a cat on a table and a chair", {"cat": 1}, '"a chair" (after "and")'),
    ("two squirrels climbing a tree", {"squirrels": 2}, '"a tree" (after "climbing")'),
    ("a dog chases a ball", {"dog": 1}, '"a ball" (after "chases")'),
    ("a boy riding a horse", {"boy": 1, "horse": 1}, None),
    ("a bird on a horse", {"bird": 1, "horse": 1}, None),
    ("a cat next to a dog", {"cat": 1, "dog": 1}, None),
    ("two cats on three chairs", {"cats": 2, "chairs": 3}, None),
    ("a cat sitting on one chair", {"cat": 1, "chair": 1}, None),
])
def test_setting_phrases(prompt: str, expected: dict[str, int], skipped: str | None) -> None:
    targets = parse_targets(prompt)
    assert targets.as_dict() == expected
    if skipped is not None:
        assert any(note.startswith(skipped) for note in targets.notes), targets.notes


# --- spans: the occurrence bound to the numeral ------------------------------------------------

def test_span_is_the_occurrence_bound_to_the_numeral() -> None:
    prompt = "two dogs chase a ball while other dogs watch"
    targets = parse_targets(prompt)
    dogs = next(t for t in targets.items if t.noun == "dogs")
    assert dogs.span == (4, 8) and dogs.count == 2
    assert prompt.index("dogs", 9) != dogs.span[0]


def test_a_noun_counted_twice_keeps_the_first_and_says_so() -> None:
    targets = parse_targets("two dogs play while three dogs watch")
    assert targets.as_dict() == {"dogs": 2}
    assert any("counted twice (2 and 3)" in n for n in targets.notes)


def test_a_numeral_beats_an_article_for_the_same_noun() -> None:
    prompt = "a dog runs past a kennel where two dogs sleep"
    targets = parse_targets(prompt)
    (dogs,) = targets.items
    assert (dogs.noun, dogs.count, dogs.span) == ("dogs", 2, (prompt.rindex("dogs"), prompt.rindex("dogs") + 4))


def test_weight_syntax_is_read_and_spans_index_the_prompt_as_written() -> None:
    prompt = r"a photo of (three red apples:1.2) and ((two cats)) near \(a dog\)"
    targets = parse_targets(prompt)
    assert targets.as_dict() == {"apples": 3, "cats": 2, "dog": 1}
    for t in targets.items:
        assert prompt[t.span[0]:t.span[1]] == t.noun


def test_text_seen_by_tokenizer_drops_weights_and_keeps_escaped_parentheses() -> None:
    prompt = r"(three red apples:1.2), ((two cats)), \(one dog\), (blue:x)"
    text, index = text_seen_by_tokenizer(prompt)
    assert text == "three red apples, two cats, (one dog), blue:x"
    assert len(index) == len(text)
    assert all(prompt[i] == ch for i, ch in zip(index, text))
    assert list(index) == sorted(index)


# --- override ----------------------------------------------------------------------------------

def test_override_wins_and_merges_over_parsed_targets() -> None:
    targets = parse_targets("three red apples and two dogs", "apple: 5")
    assert targets.as_dict() == {"apples": 5, "dogs": 2}
    apples, dogs = targets.items
    assert apples.source == "override" and dogs.source == "prompt"
    assert apples.span == (10, 16)


@pytest.mark.parametrize("override", ["apples: 3, dogs=2", "apples=3; dogs: 2", "apples: 3\ndogs: 2",
                                      '{"apples": 3, "dogs": 2}', {"apples": 3, "dogs": 2},
                                      {"APPLE": 3, "dog": "two"}])
def test_override_forms(override: object) -> None:
    targets = parse_targets("some apples next to a few dogs", override)  # type: ignore[arg-type]
    assert targets.as_dict() == {"apples": 3, "dogs": 2}
    assert all(t.source == "override" for t in targets.items)


def test_override_counts_a_noun_the_parser_skipped_and_zero_is_allowed() -> None:
    targets = parse_targets("a cat sitting on a mountain peak", {"peak": 0, "cat": 2})
    assert targets.as_dict() == {"cat": 2, "peak": 0}


def test_override_may_name_several_words() -> None:
    prompt = "hot air balloons over a city"
    (target,) = parse_targets(prompt, "hot air balloon: 4").items
    assert (target.noun, target.count, prompt[target.span[0]:target.span[1]]) == ("hot air balloons", 4,
                                                                                 "hot air balloons")


def test_override_binds_the_numeral_occurrence_of_a_repeated_noun() -> None:
    prompt = "dogs bark while two dogs sleep"
    (target,) = parse_targets(prompt, "dogs: 3").items
    assert target.span == (prompt.rindex("dogs"), prompt.rindex("dogs") + 4)


def test_override_noun_not_in_prompt_names_it_and_lists_the_prompt_nouns() -> None:
    with pytest.raises(NuminaInputError) as err:
        parse_targets("three dogs and a cat", "cars: 2")
    message = str(err.value)
    assert '"cars"' in message and "dogs, cat" in message


@pytest.mark.parametrize("override, problem", [
    ("apples 3", 'entry "apples 3" is not "noun: count"'),
    ("apples: three and a half", 'entry "apples: three and a half"'),
    ("apples: 100", "whole number from 0 to 99"),
    ("apples: -1", "whole number from 0 to 99"),
    ({"apples": 2.5}, "got 2.5"),
    ({"apples": True}, "got True"),
    ('{"apples": 3', "not valid JSON"),
    ("[3]", 'entry "[3]"'),
    ('["apples"]', 'entry'),
    ({"3": 1}, "must be a word of the prompt"),
    ("apples: 2, apple: 3", 'names "apple" twice'),
    (42, "override must be a text"),
])
def test_bad_override_is_a_clear_error(override: object, problem: str) -> None:
    with pytest.raises(NuminaInputError, match="override") as err:
        parse_targets("three apples", override)  # type: ignore[arg-type]
    assert problem in str(err.value)


@pytest.mark.parametrize("override", [None, "", "  ", {}])
def test_empty_override_changes_nothing(override: object) -> None:
    assert parse_override(override) == []  # type: ignore[arg-type]
    assert parse_targets("three apples", override).as_dict() == {"apples": 3}  # type: ignore[arg-type]


# --- nouns -------------------------------------------------------------------------------------

@pytest.mark.parametrize("plural, single", [
    ("people", "person"), ("children", "child"), ("men", "man"), ("women", "woman"), ("mice", "mouse"),
    ("geese", "goose"), ("feet", "foot"), ("teeth", "tooth"), ("sheep", "sheep"), ("fish", "fish"),
    ("deer", "deer"), ("puppies", "puppy"), ("boxes", "box"), ("glasses", "glasses"), ("horses", "horse"),
    ("buses", "bus"), ("churches", "church"), ("wolves", "wolf"), ("tomatoes", "tomato"), ("shoes", "shoe"),
    ("movies", "movie"), ("Dogs", "dog"), ("bus", "bus"), ("glass", "glass"), ("cat", "cat"),
    ("hot air balloons", "hot air balloon"),
])
def test_singular(plural: str, single: str) -> None:
    assert singular(plural) == single


@pytest.mark.parametrize("a, b, same", [
    ("apple", "apples", True), ("Apples", "apple", True), ("person", "people", True), ("box", "boxes", True),
    ("leaf", "leaves", True), ("knife", "knives", True), ("cat", "cats", True), ("cat", "dog", False),
    ("cat", "cattle", False), ("hot air balloon", "HOT AIR BALLOONS", True), ("air balloon", "hot balloon", False),
    ("", "cat", False),
])
def test_same_noun(a: str, b: str, same: bool) -> None:
    assert same_noun(a, b) is same
    assert same_noun(b, a) is same


@pytest.mark.parametrize("word, plural", [("dogs", True), ("people", True), ("sheep", True), ("glass", False),
                                          ("bus", False), ("famous", False), ("cat", False), ("man's", False)])
def test_is_plural(word: str, plural: bool) -> None:
    assert is_plural(word) is plural
