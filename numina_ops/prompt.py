"""Counts from the prompt: "three red apples and a dog" -> apples: 3, dog: 1.

The published code needs a hand-written noun -> count map.  This small rule-based parser reads
it from the prompt instead (no NLP library); an explicit override always wins.

Rules (the README quotes them):

1. Numerals.  Number words zero..twenty, thirty..ninety and their compounds ("twenty-one",
   "twenty one"), digits ("3 cats"), "a dozen" (12), "N dozen" (12 N), "half a dozen" (6),
   "a pair of" (2), "N pairs of" (2 N), "a duo / trio / quartet / quintet of" (2..5),
   "a couple of" (2, with a note: it is sometimes vague), "both" + plural noun (2), and
   multipliers: "cats x3", "cats ×3", "3x cats" (3) when the noun is plural or a person or animal
   ("2x zoom", "4x slow motion" get a note).  Case does not matter ("Three").  Counts above 99
   (the most instances a layout can label) are not counted and get a note.
2. Zero.  "zero cats" asks for none (count 0: every instance found is removed).  "no cats" is a
   negation, not a count: it gets a note (write "zero cats" or override "cats: 0").
3. Not counts (a note says so, nothing is guessed): vague quantities ("a few", "several",
   "many", "some", "multiple", "lots of", "dozens of", ...), groups ("a herd of", "a group of",
   "a couple" without "of"; "a family of four" names no noun for its members: write "four
   people" or override "family: 4"), ranges ("two or three", "2-3", "two to three"), approximate
   or bounded numbers ("at least three", "more than two", "nearly five"), partitives ("two of
   the dogs"), units of measure or time ("two minutes", "3 years"), idioms ("zero gravity",
   "one way", "one by one"; a list in prompt_words.json), sizes ("3 x 3"), ratios and times
   ("16:9", "10:30"), and "one" standing for a noun named elsewhere ("a black one").
4. Numerals that describe.  A numeral and a unit in the singular describe the next noun and
   count nothing ("a 5 year old girl" -> girl 1, "a 10 second clip", "35 mm film", "24 fps
   video"), as do "3 piece", "three legged" and the like; "2 story", "4 wheel", "two door" and
   the like describe a singular noun ("a 2 story house" -> house 1) but count a plural one
   ("two door handles" -> handles 2).  Right after "a"/"an" any numeral describes ("a 1970
   car").  A note names each describing numeral.
5. The counted noun.  A numeral binds the noun phrase right after it.  The phrase ends at
   punctuation, a preposition, a conjunction, a determiner or pronoun, an auxiliary verb
   ("are", "is") or another numeral, and is cut before the verb that follows its noun: an
   "-ing"/"-ed" participle after the noun ("three dogs running", "a man dressed in"), a common
   verb after a person, an animal or a group ("one dog play", "a family having"), an adverb
   before a verb ("happily running").  Participles before the noun are modifiers ("three running
   dogs"); so are adjectives before a noun in -ly ("a tiny butterfly" -> butterfly).  For a
   plural count the head noun is the last word of the first run of plural words ("two sports
   cars" -> cars, "three brightly-coloured hot air balloons" -> balloons, "three dogs eat fish"
   -> dogs); for a count of one it is the last word of the phrase ("a hot air balloon" ->
   balloon).  Emoji between words are skipped ("two 🐶 dogs" -> dogs 2).
6. "a"/"an" count one thing, except the scene: a phrase after a preposition (on, in, at,
   under, near, beside, across, through, along, over, above, below, behind, inside, into, onto,
   against, by, around, of, with, to, ...) or after a verb ("climbing a tree", "chases a ball")
   counts only when its noun is a person or an animal ("a man with a dog" -> man 1, dog 1;
   "a man walking a dog" -> man 1, dog 1; "a cat on a sofa" -> cat 1), and scenery, time or shot
   words never count ("a beach", "a sunny day", "a photo of ...").  A phrase joined by "and"/"or"
   to a skipped phrase is skipped too ("on a table and a chair").  Explicit numerals ("three",
   "3", "one") always count, wherever they are ("two cats on three chairs").  Every skipped
   "a"/"an" phrase gets a note so it can be counted with the override.
7. The same noun twice.  A noun is counted once: a numeral beats "a"/"an", otherwise the first
   one is kept and a note names the conflict (use the override for the total).  The span of a
   target is the occurrence bound to its numeral ("two dogs chase a ball while other dogs
   watch" -> the first "dogs").
8. Weight syntax "(three red apples:1.2)" and escaped parentheses are read as ComfyUI reads
   them; spans always index the prompt as written.
9. Override.  A dict or a string "apples: 3, dogs=2" (also ';' or new lines, or JSON).  Nouns
   match the prompt case-insensitively and singular/plural tolerant ("apple" matches "apples";
   several words match a phrase: "hot air balloons").  Counts are whole numbers 0..99.  The
   override merges over the parsed targets: it replaces the parsed count of the same noun and
   keeps the others.  A noun not in the prompt is an error that lists the nouns found.
"""
from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional, Union

from .records import CountTarget, NuminaInputError, Targets

MAX_COUNT = 99

UNITS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13,
    "fourteen": 14, "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18,
    "nineteen": 19,
}
TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70,
        "eighty": 80, "ninety": 90}
BIG = {"hundred": 100, "thousand": 1000, "million": 1_000_000}

WORD_LISTS_FILE = Path(__file__).with_name("prompt_words.json")


def load_word_lists(path: Path = WORD_LISTS_FILE) -> dict[str, Union[list[str], dict[str, Union[str, int]]]]:
    """The parser's vocabulary, kept as data so that it can be read, extended and checked on its
    own ({list name: words}; each list's "why" in the file says what the parser does with it)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    return {name: entry["words"] for name, entry in data.items() if not name.startswith("_")}


WORD_LISTS = load_word_lists()
IRREGULAR_PLURALS: dict[str, str] = dict(WORD_LISTS["irregular_plurals"])
INVARIANT_NOUNS = frozenset(WORD_LISTS["invariant_nouns"])
PLURAL_ONLY = frozenset(WORD_LISTS["plural_only_nouns"])
OES_PLURALS = frozenset(WORD_LISTS["oes_plurals"])
IES_TO_IE = frozenset(WORD_LISTS["ies_to_ie_plurals"])

PREPOSITIONS = frozenset(WORD_LISTS["prepositions"])
CONJUNCTIONS = frozenset(WORD_LISTS["conjunctions"])
DETERMINERS = frozenset(WORD_LISTS["determiners"])
PRONOUNS = frozenset(WORD_LISTS["pronouns"])
PHRASE_ENDING_ADVERBS = frozenset(WORD_LISTS["adverbs"])
AUXILIARIES = frozenset(WORD_LISTS["auxiliaries"])
TERMINATORS = PREPOSITIONS | CONJUNCTIONS | DETERMINERS | PRONOUNS | PHRASE_ENDING_ADVERBS | AUXILIARIES


def _third_person(stem: str) -> str:
    """"play" -> "plays", "watch" -> "watches", "fly" -> "flies"."""
    if stem.endswith(("s", "sh", "ch", "x", "z")):
        return stem + "es"
    if stem.endswith("y") and stem[-2:-1] not in "aeiou":
        return stem[:-1] + "ies"
    return stem + "s"


VERBS = frozenset(WORD_LISTS["verb_stems"]) | {_third_person(s) for s in WORD_LISTS["verb_stems"]} \
    | frozenset(WORD_LISTS["verb_forms"])
ADJECTIVES = frozenset(WORD_LISTS["adjectives"])
ING_NOUNS = frozenset(WORD_LISTS["ing_nouns"])
ED_NON_PARTICIPLES = frozenset(WORD_LISTS["ed_non_participles"])
LY_NOUNS = frozenset(WORD_LISTS["ly_nouns"])

ANIMATE = frozenset(WORD_LISTS["animate"])
SCENERY = frozenset(WORD_LISTS["scenery"])
COLLECTIVES = frozenset(WORD_LISTS["collectives"])
MEASURE_WORDS = frozenset(WORD_LISTS["measure_words"])
NUMERAL_MODIFIERS = frozenset(WORD_LISTS["numeral_modifiers"])
NUMERAL_MODIFIERS_BEFORE_SINGULAR = frozenset(WORD_LISTS["numeral_modifiers_before_singular"])
GROUP_SIZES: dict[str, int] = dict(WORD_LISTS["group_sizes"])

VAGUE_WORDS = frozenset(WORD_LISTS["vague_words"])
APPROXIMATORS = tuple(tuple(phrase.split()) for phrase in WORD_LISTS["approximators"])
# These are also prepositions: they approximate a numeral only at the start of a clause.
AMBIGUOUS_APPROXIMATORS = frozenset(WORD_LISTS["approximators_also_prepositions"])
IDIOMS = tuple(tuple(phrase.split()) for phrase in WORD_LISTS["idioms"])

_WORD = re.compile(r"[^\W_]+(?:['\u2019\-][^\W_]+)*'?")


def singular(noun: str) -> str:
    """Singular form of an English noun by a small rule list ("puppies" -> "puppy"); lower case."""
    word = noun.strip().lower()
    if " " in word:
        head, _, last = word.rpartition(" ")
        return f"{head} {singular(last)}"
    if word in IRREGULAR_PLURALS:
        return IRREGULAR_PLURALS[word]
    if word in INVARIANT_NOUNS or word in PLURAL_ONLY or len(word) <= 3:
        return word
    if not word.endswith("s") or word.endswith(("ss", "us", "is", "'s", "\u2019s")):
        return word
    if word.endswith("ies"):
        return word[:-1] if word in IES_TO_IE or len(word) <= 4 else word[:-3] + "y"
    if word.endswith("oes"):
        return word[:-2] if word in OES_PLURALS else word[:-1]
    if word.endswith(("sses", "shes", "ches", "xes", "zzes")) or word.endswith("uses"):
        return word[:-2]
    return word[:-1]


def _plural_candidates(word: str) -> set[str]:
    """Every form `word` could be the plural of, for tolerant matching."""
    w = word.lower()
    out = {w, singular(w)}
    if w.endswith("s"):
        out.add(w[:-1])
    if w.endswith("es"):
        out.add(w[:-2])
    if w.endswith("ies"):
        out.add(w[:-3] + "y")
    if w.endswith("ves"):
        out |= {w[:-3] + "f", w[:-3] + "fe"}
    return out


def same_noun(a: str, b: str) -> bool:
    """True when `a` and `b` are the same noun, ignoring case and singular/plural."""
    wa, wb = a.strip().lower(), b.strip().lower()
    if wa == wb:
        return True
    if not wa or not wb:
        return False
    pa, _, la = wa.rpartition(" ")
    pb, _, lb = wb.rpartition(" ")
    if pa.split() != pb.split():
        return False
    return singular(la) in _plural_candidates(lb) or singular(lb) in _plural_candidates(la)


def is_plural(word: str) -> bool:
    """Whether `word` looks like a plural noun ("dogs", "people", "sheep"); not "glass", "bus"."""
    w = word.lower()
    if w in IRREGULAR_PLURALS or w in INVARIANT_NOUNS or w in PLURAL_ONLY:
        return True
    if len(w) <= 2 or not w.endswith("s") or w.endswith(("ss", "us", "is", "'s", "\u2019s", "'")):
        return False
    return w not in TERMINATORS and not w.endswith("ous")


# --------------------------------------------------------------------------------------------
# Weight syntax, read as ComfyUI's tokenizer reads it


def text_seen_by_tokenizer(prompt: str) -> tuple[str, tuple[int, ...]]:
    """The text ComfyUI's tokenizer encodes and, for each of its characters, its index in `prompt`.

    ComfyUI first turns "\\(" and "\\)" into literal parentheses, then reads "(text:1.2)" as
    "text" with weight 1.2 and "(text)" as "text" with weight 1.1, nested, and encodes the
    weighted segments one after the other.  Only the characters matter here, not the weights.
    """
    open_mark, close_mark = "\ue001", "\ue002"   # stand-ins for escaped parentheses
    chars: list[tuple[str, int]] = []
    i = 0
    while i < len(prompt):
        if prompt[i] == "\\" and i + 1 < len(prompt) and prompt[i + 1] in "()":
            chars.append((open_mark if prompt[i + 1] == "(" else close_mark, i + 1))
            i += 2
        else:
            chars.append((prompt[i], i))
            i += 1
    kept: list[tuple[str, int]] = []
    _strip_weights(chars, kept)
    text = "".join(c for c, _ in kept).replace(open_mark, "(").replace(close_mark, ")")
    return text, tuple(i for _, i in kept)


def _split_top_level(chars: list[tuple[str, int]]) -> list[list[tuple[str, int]]]:
    """Split into plain runs and top-level "( ... )" groups, with ComfyUI's nesting counter."""
    parts: list[list[tuple[str, int]]] = []
    current: list[tuple[str, int]] = []
    depth = 0
    for item in chars:
        ch = item[0]
        if ch == "(":
            if depth == 0 and current:
                parts.append(current)
                current = []
            current.append(item)
            depth += 1
        elif ch == ")":
            depth -= 1
            current.append(item)
            if depth == 0:
                parts.append(current)
                current = []
        else:
            current.append(item)
    if current:
        parts.append(current)
    return parts


def _strip_weights(chars: list[tuple[str, int]], out: list[tuple[str, int]]) -> None:
    for part in _split_top_level(chars):
        if len(part) >= 2 and part[0][0] == "(" and part[-1][0] == ")":
            inner = part[1:-1]
            text = "".join(c for c, _ in inner)
            colon = text.rfind(":")
            if colon > 0:
                try:
                    float(text[colon + 1:])
                    inner = inner[:colon]
                except ValueError:
                    pass
            _strip_weights(inner, out)
        else:
            out.extend(part)


# --------------------------------------------------------------------------------------------
# Words


@dataclass(frozen=True)
class _Word:
    text: str
    lower: str
    start: int          # span in the original prompt
    end: int
    is_word: bool       # False for punctuation


def _is_decoration(ch: str) -> bool:
    """Emoji and pictographs, with their joiners, variation selectors and skin tones, carry no
    grammar: "two 🐶 dogs" reads as "two dogs".  Punctuation and other symbols ("+", "|", "×",
    "°") still end a phrase."""
    if ch in "\u200d\u20e3" or "\ufe00" <= ch <= "\ufe0f" or "\U000e0020" <= ch <= "\U000e007f":
        return True
    return unicodedata.category(ch) in ("So", "Sk") and ord(ch) >= 0x2000


def _words(prompt: str) -> list[_Word]:
    text, index = text_seen_by_tokenizer(prompt)
    out: list[_Word] = []

    def symbols(start: int, stop: int) -> None:
        for j in range(start, stop):
            if not text[j].isspace() and not _is_decoration(text[j]):
                out.append(_Word(text[j], text[j], index[j], index[j] + 1, False))

    pos = 0
    for m in _WORD.finditer(text):
        symbols(pos, m.start())
        word = m.group().rstrip("'")
        start, end = m.start(), m.start() + len(word)
        out.append(_Word(word, word.lower().replace("\u2019", "'"), index[start], index[end - 1] + 1, True))
        pos = m.end()
    symbols(pos, len(text))
    return out


def _simple_number(word: str) -> Optional[int]:
    if word.isdigit():
        return int(word)
    if word in UNITS:
        return UNITS[word]
    if word in TENS:
        return TENS[word]
    if "-" in word:
        tens, _, unit = word.partition("-")
        if tens in TENS and unit in UNITS and 1 <= UNITS[unit] <= 9:
            return TENS[tens] + UNITS[unit]
    return None


def _is_numeral(w: _Word) -> bool:
    return w.is_word and (_simple_number(w.lower) is not None or w.lower in BIG or w.lower == "dozen")


# "x3" after a noun ("cats x3"), "3x" before one ("3x cats"): a multiplier, also with a space or "×".
_TIMES_FACTOR = re.compile(r"[1-9]\d*")
_TIMES_AFTER_NOUN = re.compile(r"x([1-9]\d*)")
_TIMES_BEFORE_NOUN = re.compile(r"([1-9]\d*)x")


def _is_times_sign(w: Optional[_Word]) -> bool:
    return w is not None and w.lower in ("x", "\u00d7")


def _is_multiplier(w: _Word) -> bool:
    return w.is_word and bool(_TIMES_AFTER_NOUN.fullmatch(w.lower) or _TIMES_BEFORE_NOUN.fullmatch(w.lower))


STAND_IN_ONE = ("one", "ones")      # "a black one": stands for a noun named elsewhere


def _is_ing(word: str) -> bool:
    return len(word) > 4 and word.endswith("ing") and word not in ING_NOUNS


def _is_ed(word: str) -> bool:
    return len(word) >= 4 and word.endswith("ed") and not word.endswith("eed") \
        and word not in ED_NON_PARTICIPLES


def _is_animate(word: str) -> bool:
    return singular(word) in ANIMATE or word in ANIMATE


def _is_collective(word: str) -> bool:
    return word in COLLECTIVES or singular(word) in COLLECTIVES


def _can_act(word: str) -> bool:
    """People, animals and groups of them ("a family", "a herd"): a verb after one ends its phrase."""
    return _is_animate(word) or _is_collective(word)


def _is_unit(word: str) -> bool:
    """A unit of measure or time in the singular ("year", "mm"): a numeral and a unit before a
    noun describe it ("a 5 year old girl")."""
    return word in MEASURE_WORDS and singular(word) == word


def _ends_phrase(w: Optional[_Word]) -> bool:
    return w is None or not w.is_word or w.lower in TERMINATORS or _is_numeral(w) or _is_times_sign(w) \
        or _is_multiplier(w)


def _at(words: list[_Word], k: int) -> Optional[_Word]:
    return words[k] if 0 <= k < len(words) else None


def _numeral_end(words: list[_Word], k: int) -> Optional[int]:
    """Index after the numeral at k ("three", "35", "twenty one"); None when k holds none."""
    if k >= len(words) or not words[k].is_word or _simple_number(words[k].lower) is None:
        return None
    nxt = _at(words, k + 1)
    if words[k].lower in TENS and nxt is not None and nxt.is_word and 1 <= UNITS.get(nxt.lower, 0) <= 9:
        return k + 2
    return k + 1


def _describing_numeral_end(words: list[_Word], k: int, where: str) -> Optional[int]:
    """Index after a numeral that describes the noun after it instead of counting it; None when
    the numeral at k counts (or k holds no numeral).

    A numeral and a unit in the singular, or a word such as "piece" or "legged", describe the
    next noun wherever they stand ("a 5 year old girl", "35 mm film", "3 piece suits").  A numeral
    and a word such as "story" or "door" describe a singular noun ("2 story house") but count a
    plural one, whose compound they start ("two door handles").  Right after "a"/"an" any numeral
    describes ("a 1970 car").
    `where`: "start" (the numeral opens a phrase), "inside" (it follows words of a phrase) or
    "article" (it follows "a"/"an").
    """
    number_end = _numeral_end(words, k)
    if number_end is None or _ends_phrase(_at(words, number_end)):
        return None
    word = words[number_end].lower
    followed = not _ends_phrase(_at(words, number_end + 1))
    describes_any_noun = _is_unit(word) or word in NUMERAL_MODIFIERS \
        or (where == "article" and word in MEASURE_WORDS)
    if followed and describes_any_noun:
        return number_end + 1
    if followed and word in NUMERAL_MODIFIERS_BEFORE_SINGULAR:
        if where != "start":
            return number_end + 1
        rest = _noun_phrase(words, number_end + 1, 2)
        return number_end + 1 if rest.head is None or not is_plural(words[rest.head].lower) else None
    if where == "article" and not is_plural(word):
        return number_end
    return None


@dataclass(frozen=True)
class _Phrase:
    first: int              # index of the first word of the phrase
    head: Optional[int]     # index of the head noun, None when the phrase is empty
    end: int                # index after the phrase
    modifiers: tuple[tuple[int, int], ...] = ()   # word ranges of numerals that describe ("5 year")


def _noun_phrase(words: list[_Word], first: int, count: int, after_article: bool = False) -> _Phrase:
    """The noun phrase starting at `first` and its head noun (rules 4 and 5 of the module docstring)."""
    end = first
    modifiers: list[tuple[int, int]] = []
    while end < len(words) and end - first < 8:
        where = ("article" if after_article else "start") if end == first else "inside"
        described = _describing_numeral_end(words, end, where)
        if described is not None:
            modifiers.append((end, described))
            end = described
            continue
        if end > first and words[end].lower in STAND_IN_ONE and _ends_phrase(_at(words, end + 1)) \
                and not _ends_phrase(words[end - 1]) and not is_plural(words[end - 1].lower) \
                and not _can_act(words[end - 1].lower):
            end += 1            # "a black one": "one" stands for a noun named elsewhere
            break
        if _ends_phrase(words[end]) or (end > first and _cuts_phrase(words, end, count)):
            break
        end += 1
    in_modifier = {j for start, stop in modifiers for j in range(start, stop)}
    while end > first and end - 1 not in in_modifier and _is_ing(words[end - 1].lower):
        end -= 1                # "a family of four having a picnic": a participle is not a noun
    candidates = [j for j in range(first, end) if j not in in_modifier]
    if not candidates:
        return _Phrase(first, None, end if modifiers else first, tuple(modifiers))
    head = candidates[-1]
    if count != 1:
        run = [j for j in candidates if is_plural(words[j].lower)]
        if run:
            head = run[0]
            while head + 1 < end and head + 1 not in in_modifier and is_plural(words[head + 1].lower):
                head += 1
    return _Phrase(first, head, end, tuple(modifiers))


def _is_adverb(words: list[_Word], k: int) -> bool:
    """An -ly word is an adverb ("happily"), except the nouns ("butterfly", "lily", "family") and
    adjectives ("lonely") in -ly, and any -ly word right after an adjective ("a tiny firefly")."""
    word = words[k].lower
    if not word.endswith("ly") or len(word) <= 4 or word.endswith("fly"):
        return False
    if word in ADJECTIVES or word in LY_NOUNS or word in SCENERY or _can_act(word):
        return False
    return k == 0 or words[k - 1].lower not in ADJECTIVES


def _cuts_phrase(words: list[_Word], k: int, count: int) -> bool:
    """Whether word k (not the first of the phrase) is a verb or adverb that ends the phrase."""
    word, prev = words[k].lower, words[k - 1].lower
    nxt = words[k + 1] if k + 1 < len(words) else None
    next_ends = _ends_phrase(nxt)
    prev_acts = _can_act(prev)
    if len(word) > 4 and word.endswith("ing") and prev_acts:
        return True             # "a man building a house": a participle after a person
    if _is_ing(word):
        if prev in ADJECTIVES:
            return False
        if count != 1 and nxt is not None and nxt.is_word and is_plural(nxt.lower) and not is_plural(prev):
            return False
        return True
    if _is_ed(word):
        return next_ends or prev_acts
    if word in VERBS and prev_acts:
        return True
    if count == 1 and is_plural(word) and next_ends:
        return True
    if _is_adverb(words, k):
        if next_ends or (nxt is not None and (_is_ing(nxt.lower) or _is_ed(nxt.lower) or nxt.lower in VERBS)):
            return True
    return False


# --------------------------------------------------------------------------------------------
# The parser


@dataclass
class _Found:
    target: CountTarget
    explicit: bool          # a numeral, not "a"/"an"


class _Parser:
    def __init__(self, prompt: str) -> None:
        self.prompt = prompt
        self.words = _words(prompt)
        self.found: list[_Found] = []
        self.notes: list[str] = []
        self.setting_chain = False   # the last "a" phrase was the setting (rule 6, "and a chair")

    # helpers --------------------------------------------------------------------------------
    def _lower(self, k: int) -> str:
        return self.words[k].lower if 0 <= k < len(self.words) and self.words[k].is_word else ""

    def _quote(self, start: int, end: int) -> str:
        """The prompt text of words[start:end], as written."""
        end = max(end, start + 1)
        return self.prompt[self.words[start].start:self.words[min(end, len(self.words)) - 1].end]

    def _note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def _phrase(self, first: int, count: int, after_article: bool = False) -> _Phrase:
        """The noun phrase at `first`; a note names each numeral in it that only describes."""
        phrase = _noun_phrase(self.words, first, count, after_article)
        for start, stop in phrase.modifiers:
            described = f'"{self.words[phrase.head].text}"' if phrase.head is not None else "what follows"
            self._note(f'"{self._quote(start, stop)}" describes {described}, not a count')
        return phrase

    def _idiom_at(self, k: int) -> int:
        """Length of the idiom starting at word k ("zero gravity"), 0 when there is none."""
        for idiom in IDIOMS:
            if self._match(k, *idiom):
                return len(idiom)
        return 0

    def _add(self, phrase: _Phrase, count: int, numeral: str, explicit: bool, quote_from: int) -> None:
        word = self.words[phrase.head]
        quote = self._quote(quote_from, phrase.head + 1)
        if word.lower in MEASURE_WORDS:
            self._note(f'"{quote}": a unit of measure or time, not counted')
            return
        if word.lower in STAND_IN_ONE:
            self._note(f'"{quote}": "{word.text}" stands for a noun named elsewhere, not counted')
            return
        if count > MAX_COUNT:
            self._note(f'"{quote}": {count} is more than {MAX_COUNT}, the most instances a layout'
                       " can hold; not counted")
            return
        target = CountTarget(noun=word.text, count=count, span=(word.start, word.end), numeral=numeral)
        for i, old in enumerate(self.found):
            if same_noun(old.target.noun, word.text):
                if explicit and not old.explicit:
                    self.found[i] = _Found(target, explicit)
                    if old.target.span == target.span:
                        return          # "a cat x3": the multiplier counts the same cat
                    self._note(f'"{word.text}" appears twice; "{quote}" counts, not'
                               f' "{old.target.numeral} {old.target.noun}"')
                else:
                    self._note(f'"{word.text}" is counted twice ({old.target.count} and {count}); kept'
                               f' the first ({old.target.count}); use the override to set the total')
                return
        self.found.append(_Found(target, explicit))

    def _match(self, k: int, *seq: str) -> bool:
        return all(self._lower(k + j) == s for j, s in enumerate(seq))

    # main loop ------------------------------------------------------------------------------
    def run(self) -> None:
        k = 0
        while k < len(self.words):
            k = self._step(k)

    def _step(self, k: int) -> int:
        w = self.words[k]
        factor = self._lower(k + 1)
        if _is_times_sign(w) and _TIMES_FACTOR.fullmatch(factor) and self._digit_run_end(k + 1) == k + 2:
            return self._multiplier(k, k + 2, int(factor), noun_first=True)   # "cats × 3"
        if not w.is_word:
            self.setting_chain = False if w.text in ".;!?" else self.setting_chain
            return k + 1
        low = w.lower
        chained = self.setting_chain
        if low not in ("and", "or", "a", "an"):
            self.setting_chain = False

        idiom = self._idiom_at(k)
        if idiom:
            self._note(f'"{self._quote(k, k + idiom)}": an idiom, not a count')
            return k + idiom
        times = _TIMES_AFTER_NOUN.fullmatch(low)
        if times:
            return self._multiplier(k, k + 1, int(times.group(1)), noun_first=True)
        times = _TIMES_BEFORE_NOUN.fullmatch(low)
        if times:
            return self._multiplier(k, k + 1, int(times.group(1)), noun_first=False)

        for seq in APPROXIMATORS:
            number_at = k + len(seq)
            if number_at >= len(self.words) or not self._match(k, *seq) or not _is_numeral(self.words[number_at]):
                continue
            if seq[0] in AMBIGUOUS_APPROXIMATORS and self._lower(k - 1) not in ("", "and", "or"):
                break   # "sitting around two tables", "jumping over three dogs": a preposition
            value, after, _ = self._number(number_at)
            phrase = self._phrase(after, value or 2)
            self._note(f'"{self._quote(k, phrase.end)}": not an exact count, not counted')
            return max(phrase.end, after)

        if low == "half" and self._match(k + 1, "a", "dozen"):
            return self._counted(k, k + 3 + self._match(k + 3, "of"), 6, explicit=True)
        if low in ("a", "an"):
            return self._article(k, chained)
        if low == "both":
            phrase = self._phrase(k + 1, 2)
            if phrase.head is not None and is_plural(self.words[phrase.head].lower):
                self._add(phrase, 2, w.text, True, k)
                return phrase.end
            return k + 1
        if low == "no" and k + 1 < len(self.words) and not self._match(k + 1, "one"):
            phrase = self._phrase(k + 1, 2)
            if phrase.head is not None:
                self._note(f'"{self._quote(k, phrase.head + 1)}": a negation, not a count; write'
                           f' "zero {self.words[phrase.head].text}" or override'
                           f' "{self.words[phrase.head].text}: 0" to ask for none')
                return phrase.end
            return k + 1
        if low in VAGUE_WORDS and not _is_numeral(self.words[k + 1] if k + 1 < len(self.words) else w):
            return self._vague(k, k + 1 + self._match(k + 1, "of"))
        if re.fullmatch(r"\d+-\d+", low):
            phrase = self._phrase(k + 1, 2)
            self._note(f'"{self._quote(k, phrase.end)}": a range, not an exact count; not counted')
            return max(k + 1, phrase.end)
        if _is_numeral(w) and low not in BIG and low != "dozen":
            return self._numeral(k)
        if low in BIG:
            value = BIG[low]
            phrase = self._phrase(k + 1, value)
            if phrase.head is not None:
                self._add(phrase, value, w.text, True, k)
                return phrase.end
        return k + 1

    def _number(self, k: int) -> tuple[Optional[int], int, bool]:
        """Read a numeral at k: (value, index after it, is_range).  Handles "twenty one",
        "two dozen", "three hundred", "two or three", "2-3"."""
        low = self._lower(k)
        value = _simple_number(low)
        after = k + 1
        if value is None:
            if re.fullmatch(r"\d+-\d+", low):
                return None, after, True
            if low in BIG:
                return BIG[low], after, False
            return None, after, False
        if low in TENS and 1 <= UNITS.get(self._lower(after), 0) <= 9:
            value += UNITS[self._lower(after)]
            after += 1
        if self._lower(after) == "dozen":
            value *= 12
            after += 1
        elif self._lower(after) in BIG:
            value *= BIG[self._lower(after)]
            after += 1
        if self._lower(after) in ("or", "to") and after + 1 < len(self.words) and _is_numeral(self.words[after + 1]):
            return value, after + 2, True
        if after < len(self.words) and not self.words[after].is_word and self.words[after].text in "-\u2013" \
                and after + 1 < len(self.words) and _is_numeral(self.words[after + 1]):
            return value, after + 2, True
        return value, after, False

    def _digit_run_end(self, k: int) -> int:
        """End of "1,000" or "3.5" written without spaces (digits joined by "," or ".")."""
        end = k + 1
        while end + 1 < len(self.words) and self.words[end].text in ",." and self.words[end + 1].lower.isdigit() \
                and self.words[end].start == self.words[end - 1].end \
                and self.words[end + 1].start == self.words[end].end:
            end += 2
        return end

    def _numeral(self, k: int) -> int:
        if self.words[k].lower.isdigit() and self._digit_run_end(k) > k + 1:
            end = self._digit_run_end(k)
            written = self.prompt[self.words[k].start:self.words[end - 1].end]
            phrase = self._phrase(end, 2)
            quote = self._quote(k, phrase.head + 1 if phrase.head is not None else end)
            if "." in written:
                self._note(f'"{quote}": {written} is not a whole number, not counted')
            else:
                self._note(f'"{quote}": {written} is more than {MAX_COUNT}, the most instances a layout'
                           " can hold; not counted")
            return max(end, phrase.end)
        value, after, is_range = self._number(k)
        if is_range:
            phrase = self._phrase(after, 2)
            self._note(f'"{self._quote(k, phrase.end)}": a range, not an exact count; not counted')
            return max(after, phrase.end)
        if value is None:
            return k + 1
        if _describing_numeral_end(self.words, k, "start") is not None:
            return self._phrase(k, 2).end      # "35 mm film photo": the numeral only describes
        if self._is_ratio_or_time(after):
            self._note(f'"{self._quote(k, after + 2)}": a ratio or a time, not a count')
            return after + 2
        if _is_times_sign(_at(self.words, after)) and value > 0:
            size = _at(self.words, after + 1)
            if size is not None and _is_numeral(size):
                self._note(f'"{self._quote(k, after + 2)}": a size, not a count')
                return after + 2
            return self._multiplier(k, after + 1, value, noun_first=False)   # "3× cats"
        if self._lower(after) == "of" and self._lower(after + 1) in DETERMINERS | {"them", "us", "you"}:
            phrase = self._phrase(after + 2, value)
            self._note(f'"{self._quote(k, phrase.end)}": part of a group, not counted')
            return max(after + 2, phrase.end)
        if self._lower(after) in ("pair", "pairs") and self._lower(after + 1) == "of":
            return self._counted(k, after + 2, 2 * value, explicit=True)
        return self._counted(k, after, value, explicit=True)

    def _is_ratio_or_time(self, colon: int) -> bool:
        """Whether words[colon] is a ":" between digits written without spaces ("16:9", "10:30")."""
        if colon + 1 >= len(self.words) or self.words[colon].text != ":":
            return False
        before, mark, after = self.words[colon - 1], self.words[colon], self.words[colon + 1]
        return after.lower.isdigit() and before.end == mark.start and mark.end == after.start

    def _multiplier(self, k: int, end: int, value: int, noun_first: bool) -> int:
        """A multiplier, words[k:end], and its noun: the word before it ("cats x3", "cats × 3":
        noun_first) or the phrase after it ("3x cats", "3× cats"), else the other side.  It counts
        a plural noun or a person or animal; other nouns are usually settings ("4x slow motion",
        "2x zoom"): a note says how to count them."""
        after = _noun_phrase(self.words, end, value)
        if k > 0 and not _ends_phrase(self.words[k - 1]) and (noun_first or after.head is None):
            phrase, stop = _Phrase(k - 1, k - 1, k), end
        elif after.head is not None:
            phrase, stop = self._phrase(end, value), after.end
        else:
            self._note(f'"{self._quote(k, end)}": a multiplier with no noun, not counted')
            return end
        noun = self.words[phrase.head]
        quote_from = min(k, phrase.head)
        if is_plural(noun.lower) or _is_animate(noun.lower):
            self._add(phrase, value, self._quote(k, end), True, quote_from)
        else:
            self._note(f'"{self._quote(quote_from, max(end, phrase.head + 1))}": a multiplier, not counted;'
                       f' override "{noun.text}: {value}" if it is a count')
        return stop

    def _counted(self, k: int, first: int, value: int, explicit: bool) -> int:
        phrase = self._phrase(first, value)
        if phrase.head is None:
            return first
        numeral = self._quote(k, first) if first > k else self.words[k].text
        self._add(phrase, value, numeral, explicit, k)
        return phrase.end

    def _vague(self, k: int, first: int) -> int:
        if first < len(self.words) and _is_numeral(self.words[first]):
            value, after, _ = self._number(first)
            if self._lower(k + 1) not in COLLECTIVES or self._phrase(after, value or 2).head is not None:
                return first      # "a group of five people": the numeral counts
            group, number = self.words[k + 1].text, self._quote(first, after)
            self._note(f'"{self._quote(k, after)}": a {group} of {value} with no noun for its members, not'
                       f' counted; name them ("{number} people") or override "{group}: {value}"')
            return after
        phrase = self._phrase(first, 2)
        if phrase.head is None:
            return first
        kind = "a group" if self._lower(k + 1) in COLLECTIVES else "vague quantity"
        self._note(f'"{self._quote(k, phrase.head + 1)}": {kind}, not counted')
        return phrase.end

    def _article(self, k: int, chained: bool) -> int:
        nxt = self._lower(k + 1)
        if nxt in ("pair", "couple") and self._lower(k + 2) == "of":
            end = self._counted(k, k + 3, 2, explicit=True)
            if nxt == "couple" and self.found and self.found[-1].target.numeral.lower().startswith("a couple"):
                self._note(f'"{self._quote(k, end)}": "a couple of" read as 2')
            return end
        if nxt == "dozen":
            return self._counted(k, k + 2 + self._match(k + 2, "of"), 12, explicit=True)
        if nxt in GROUP_SIZES and self._lower(k + 2) == "of":
            return self._counted(k, k + 3, GROUP_SIZES[nxt], explicit=True)     # "a trio of cats"
        if nxt in BIG:
            phrase = self._phrase(k + 2, BIG[nxt])
            if phrase.head is not None:
                self._add(phrase, BIG[nxt], self._quote(k, k + 2), True, k)
                return phrase.end
            return k + 2
        if nxt in ("few", "lot", "number", "variety", "bunch", "handful", "host", "multitude") or \
                (nxt in COLLECTIVES and self._lower(k + 2) == "of"):
            return self._vague(k, k + 2 + self._match(k + 2, "of"))
        idiom = self._idiom_at(k + 1)
        if idiom:
            self._note(f'"{self._quote(k, k + 1 + idiom)}": an idiom, not a count')
            return k + 1 + idiom
        phrase = self._phrase(k + 1, 1, after_article=True)
        if phrase.head is None:
            return k + 1
        head = self.words[phrase.head]
        quote = self._quote(k, phrase.head + 1)
        before = self._lower(k - 1)
        after_verb = _is_ing(before) or _is_ed(before) or before in VERBS
        after_preposition = before in PREPOSITIONS or after_verb or (before in ("and", "or") and chained)
        if head.lower in STAND_IN_ONE:
            self._note(f'"{quote}": "{head.text}" stands for a noun named elsewhere, not counted')
        elif head.lower in COLLECTIVES:
            self._note(f'"{quote}": a group, not counted')
        elif head.lower in SCENERY:
            self._note(f'"{quote}": the setting, not counted')
        elif after_preposition and not _is_animate(head.lower):
            self._note(f'"{quote}" (after "{self.words[k - 1].text}"): not a person or animal, taken as'
                       ' part of the scene; not counted')
            self.setting_chain = True
        else:
            self._add(phrase, 1, self.words[k].text, False, k)
        return phrase.end


# --------------------------------------------------------------------------------------------
# Override


OverrideInput = Union[str, Mapping[str, int], None]
_OVERRIDE_ENTRY = re.compile(r"^\s*(?P<noun>[^:=]+?)\s*[:=]\s*(?P<count>\S+)\s*$")
_NOUN_TEXT = re.compile(r"^[^\W\d_]+(?:[\s'\u2019\-][^\W\d_]+)*$")


def _override_count(noun: str, given: object) -> int:
    value = None if isinstance(given, bool) else given
    if isinstance(value, str):
        text = value.strip().lower()
        number = _simple_number(text)
        value = number if number is not None else text
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or not 0 <= value <= MAX_COUNT:
        raise NuminaInputError(
            f'override count for "{noun}" must be a whole number from 0 to {MAX_COUNT}, got {given!r};'
            ' write e.g. "apples: 3"')
    return value


def parse_override(override: OverrideInput) -> list[tuple[str, int]]:
    """Normalise an override (dict, "apples: 3, dogs=2" or JSON) to [(noun, count), ...]."""
    if override is None:
        return []
    if isinstance(override, Mapping):
        items = list(override.items())
    elif isinstance(override, str):
        text = override.strip()
        if not text:
            return []
        if text.startswith("{"):
            try:
                data = json.loads(text)
            except json.JSONDecodeError as err:
                raise NuminaInputError(f"override is not valid JSON ({err.msg} at character {err.pos});"
                                       ' write e.g. {"apples": 3} or apples: 3, dogs=2') from None
            if not isinstance(data, dict):
                raise NuminaInputError("override JSON must be an object such as {\"apples\": 3}")
            items = list(data.items())
        else:
            items = []
            for entry in re.split(r"[,;\n]", text):
                if not entry.strip():
                    continue
                m = _OVERRIDE_ENTRY.match(entry)
                if m is None:
                    raise NuminaInputError(f'override entry "{entry.strip()}" is not "noun: count";'
                                           ' write e.g. "apples: 3, dogs=2"')
                items.append((m.group("noun"), m.group("count")))
    else:
        raise NuminaInputError(f"override must be a text such as \"apples: 3, dogs=2\" or a dict,"
                               f" got {type(override).__name__}")
    out: list[tuple[str, int]] = []
    for noun, value in items:
        if not isinstance(noun, str) or not _NOUN_TEXT.match(noun.strip()):
            raise NuminaInputError(f"override noun {noun!r} must be a word of the prompt"
                                   ' (letters only), e.g. "apples: 3"')
        noun = " ".join(noun.split())
        count = _override_count(noun, value)
        if any(same_noun(noun, seen) for seen, _ in out):
            raise NuminaInputError(f'override names "{noun}" twice; give each noun once')
        out.append((noun, count))
    return out


def _find_in_prompt(words: list[_Word], noun: str, prefer: Optional[CountTarget]) -> Optional[tuple[int, int]]:
    """Span in the prompt of the words `noun` (last word singular/plural tolerant)."""
    parts = noun.lower().split()
    spans = []
    for k in range(len(words) - len(parts) + 1):
        chunk = words[k:k + len(parts)]
        if not all(w.is_word for w in chunk):
            continue
        if [w.lower for w in chunk[:-1]] == parts[:-1] and same_noun(chunk[-1].lower, parts[-1]):
            spans.append((chunk[0].start, chunk[-1].end))
    if not spans:
        return None
    if prefer is not None:
        for span in spans:
            if span[1] == prefer.span[1]:
                return span
    return spans[0]


def parse_targets(prompt: str, override: OverrideInput = None) -> Targets:
    """Nouns and their counts, read from the prompt (rules in the module docstring), with the
    override merged over them."""
    if not isinstance(prompt, str):
        raise NuminaInputError(f"prompt must be text, got {type(prompt).__name__}")
    if not prompt.strip():
        raise NuminaInputError("the prompt is empty; write what the video shows, e.g."
                               ' "three dogs running on the grass"')
    parser = _Parser(prompt)
    parser.run()
    items = [f.target for f in parser.found]
    notes = list(parser.notes)

    for noun, count in parse_override(override):
        parsed = next((t for t in items if same_noun(t.noun, noun.split()[-1])), None)
        span = _find_in_prompt(parser.words, noun, parsed)
        if span is None:
            found = ", ".join(t.noun for t in items) or "none"
            raise NuminaInputError(
                f'override noun "{noun}" does not occur in the prompt "{prompt}"; counted nouns found in'
                f" the prompt: {found}. Name a word of the prompt (singular or plural is fine)")
        if parsed is not None:
            items.remove(parsed)
        items.append(CountTarget(noun=prompt[span[0]:span[1]], count=count, span=span, source="override"))

    items.sort(key=lambda t: t.span)
    if not items:
        notes.append(f'no countable noun found in "{prompt}"; write a number before the noun'
                     ' ("three dogs") or give an override ("dogs: 3")')
    return Targets(prompt=prompt, items=tuple(items), notes=tuple(notes))
