"""Counts from the prompt: "three red apples and a dog" -> apples: 3, dog: 1.

The published code needs a hand-written noun -> count map.  This small rule-based parser reads
it from the prompt instead (no NLP library); an explicit override always wins.

Rules (the README quotes them):

1. Numerals.  Number words zero..twenty, thirty..ninety and their compounds ("twenty-one",
   "twenty one"), digits ("3 cats"), "a dozen" (12), "N dozen" (12 N), "half a dozen" (6),
   "a pair of" (2), "N pairs of" (2 N), "a couple of" (2, with a note: it is sometimes vague),
   "both" + plural noun (2).  Case does not matter ("Three").  Counts above 99 (the most
   instances a layout can label) are not counted and get a note.
2. Zero.  "zero cats" asks for none (count 0: every instance found is removed).  "no cats" is a
   negation, not a count: it gets a note (write "zero cats" or override "cats: 0").
3. Not counts (a note says so, nothing is guessed): vague quantities ("a few", "several",
   "many", "some", "multiple", "lots of", "dozens of", ...), groups ("a herd of", "a group of",
   "a couple" without "of"), ranges ("two or three", "2-3", "two to three"), approximate or
   bounded numbers ("at least three", "more than two", "nearly five"), partitives ("two of the
   dogs"), units of measure or time ("two minutes", "3 years").
4. The counted noun.  A numeral binds the noun phrase right after it.  The phrase ends at
   punctuation, a preposition, a conjunction, a determiner or pronoun, an auxiliary verb
   ("are", "is") or another numeral, and is cut before the verb that follows its noun: an
   "-ing"/"-ed" participle after the noun ("three dogs running", "a man dressed in"), a common
   verb after a person or animal ("one dog play"), an adverb before a verb ("happily running").
   Participles before the noun are modifiers ("three running dogs").  For a plural count the
   head noun is the last word of the first run of plural words ("two sports cars" -> cars,
   "three brightly-coloured hot air balloons" -> balloons, "three dogs eat fish" -> dogs); for a
   count of one it is the last word of the phrase ("a hot air balloon" -> balloon).
5. "a"/"an" count one thing, except the scene: a phrase after a preposition (on, in, at,
   under, near, beside, across, through, along, over, above, below, behind, inside, into, onto,
   against, by, around, of, with, to, ...) or after a verb ("climbing a tree", "chases a ball")
   counts only when its noun is a person or an animal ("a man with a dog" -> man 1, dog 1;
   "a man walking a dog" -> man 1, dog 1; "a cat on a sofa" -> cat 1), and scenery, time or shot
   words never count ("a beach", "a sunny day", "a photo of ...").  A phrase joined by "and"/"or"
   to a skipped phrase is skipped too ("on a table and a chair").  Explicit numerals ("three",
   "3", "one") always count, wherever they are ("two cats on three chairs").  Every skipped
   "a"/"an" phrase gets a note so it can be counted with the override.
6. The same noun twice.  A noun is counted once: a numeral beats "a"/"an", otherwise the first
   one is kept and a note names the conflict (use the override for the total).  The span of a
   target is the occurrence bound to its numeral ("two dogs chase a ball while other dogs
   watch" -> the first "dogs").
7. Weight syntax "(three red apples:1.2)" and escaped parentheses are read as ComfyUI reads
   them; spans always index the prompt as written.
8. Override.  A dict or a string "apples: 3, dogs=2" (also ';' or new lines, or JSON).  Nouns
   match the prompt case-insensitively and singular/plural tolerant ("apple" matches "apples";
   several words match a phrase: "hot air balloons").  Counts are whole numbers 0..99.  The
   override merges over the parsed targets: it replaces the parsed count of the same noun and
   keeps the others.  A noun not in the prompt is an error that lists the nouns found.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
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

IRREGULAR_PLURALS = {
    "people": "person", "children": "child", "men": "man", "women": "woman", "mice": "mouse",
    "geese": "goose", "feet": "foot", "teeth": "tooth", "oxen": "ox", "lice": "louse",
    "cacti": "cactus", "fungi": "fungus", "knives": "knife", "wives": "wife", "leaves": "leaf",
    "wolves": "wolf", "calves": "calf", "halves": "half", "loaves": "loaf", "thieves": "thief",
    "shelves": "shelf", "elves": "elf", "scarves": "scarf", "hooves": "hoof", "lives": "life",
    "dwarves": "dwarf", "firemen": "fireman", "policemen": "policeman", "snowmen": "snowman",
    "fishermen": "fisherman", "gentlemen": "gentleman", "businessmen": "businessman",
    "policewomen": "policewoman", "businesswomen": "businesswoman", "dice": "die",
}
INVARIANT_NOUNS = {"sheep", "fish", "deer", "moose", "bison", "salmon", "trout", "aircraft",
                   "series", "species", "shrimp", "squid", "swine", "cod", "elk", "reindeer",
                   "offspring", "spacecraft", "hovercraft"}
PLURAL_ONLY = {"police", "cattle", "livestock", "poultry", "clothes", "pants", "jeans",
               "scissors", "glasses", "trousers"}
OES_PLURALS = {"tomatoes", "potatoes", "heroes", "mangoes", "echoes", "buffaloes", "volcanoes",
               "mosquitoes", "torpedoes", "dominoes", "flamingoes", "tornadoes", "avocadoes"}
IES_TO_IE = {"movies", "cookies", "zombies", "rookies", "hoodies", "selfies", "smoothies",
             "brownies", "goalies", "budgies", "collies", "pixies", "genies", "ties", "lies",
             "pies", "dies", "birdies", "eyries", "bookies", "calories", "aussies", "magpies",
             "hippies", "yuppies", "veggies", "kiddies", "doggies", "sweeties", "boogies"}

PREPOSITIONS = {
    "on", "in", "at", "under", "near", "beside", "besides", "across", "through", "along", "over",
    "above", "below", "behind", "inside", "into", "onto", "against", "by", "around", "of", "with",
    "without", "from", "to", "toward", "towards", "between", "among", "amongst", "beneath",
    "underneath", "within", "past", "up", "down", "off", "out", "outside", "upon", "via", "next",
    "during", "after", "before", "like", "for", "about", "atop", "throughout", "beyond",
    "alongside", "amid", "amidst", "round", "opposite", "beneath", "astride", "inside", "near",
}
CONJUNCTIONS = {"and", "or", "but", "nor", "while", "whilst", "as", "that", "which", "who",
                "whom", "whose", "where", "when", "then", "so", "yet", "because", "if", "than",
                "plus", "versus", "vs"}
DETERMINERS = {"a", "an", "the", "this", "these", "those", "their", "his", "her", "its", "our",
               "my", "your", "each", "every", "some", "any", "no", "another", "other", "all",
               "both", "several", "many", "few", "most", "such", "either", "neither", "same"}
PRONOUNS = {"it", "they", "them", "he", "she", "we", "you", "i", "me", "him", "us", "itself",
            "themselves", "himself", "herself", "each", "one's", "someone", "something",
            "everyone", "everything", "nobody", "nothing", "there", "here", "together",
            "nearby", "away", "back", "too", "also", "very", "only", "just", "still", "again"}
AUXILIARIES = {"is", "are", "was", "were", "be", "been", "being", "am", "has", "have", "had",
               "do", "does", "did", "can", "could", "will", "would", "shall", "should", "may",
               "might", "must", "isn't", "aren't", "wasn't", "weren't", "don't", "doesn't"}
TERMINATORS = PREPOSITIONS | CONJUNCTIONS | DETERMINERS | PRONOUNS | AUXILIARIES

# Common verbs (base and third-person forms) that end a noun phrase after a person or animal.
_VERB_STEMS = """play run sit stand walk jump eat drink swim fly chase look hold carry ride sleep
lie read watch sing dance smile wave climb crawl roll bark meow graze drive push pull throw catch
kick hug kiss feed wear stare wait rest lay hop move spin float glide wander roam hunt lick sniff
dig chew bite perch soar dive splash paddle sail skate ski surf cook paint write type talk laugh
cry point open close enter leave cross follow lead pat pet shake turn fall rise stretch yawn gaze
peek appear emerge approach pass race trot gallop march stroll jog sprint leap bounce tumble slide
drift hover land gather huddle cuddle nap explore fight share pose lean relax hang sway flutter
flap stare chirp howl growl purr pounce peck nibble munch sip slurp build fix clean wash brush
comb dress tie pick grab reach kneel squat bend crouch rush hurry dash wade stomp stalk prowl
circle nuzzle snuggle sniff lounge bask sunbathe watch observe guard greet meet visit play
swing balance juggle"""
VERBS: set[str] = set()
for _stem in _VERB_STEMS.split():
    VERBS.add(_stem)
    if _stem.endswith(("s", "sh", "ch", "x", "z")):
        VERBS.add(_stem + "es")
    elif _stem.endswith("y") and _stem[-2:-1] not in "aeiou":
        VERBS.add(_stem[:-1] + "ies")
    else:
        VERBS.add(_stem + "s")
VERBS |= {"goes", "does", "flies", "lies", "dies", "cries", "tries", "carries", "hurries"}

# Small list of adjectives that may stand before a participle used as a modifier ("a big
# barking dog"); the head-noun rule needs no general adjective list.
ADJECTIVES = set("""red orange yellow green blue purple pink brown black white grey gray golden
silver big small large little tiny huge giant tall short long old young new fat thin happy sad
cute fluffy furry wild tame wet dry hot cold bright dark colorful colourful shiny fast slow
beautiful pretty ugly lonely friendly angry sleepy hungry playful lazy busy noisy quiet adult
baby elderly single lone""".split())

# -ing / -ed words that are nouns, not participles.
ING_NOUNS = {"building", "ceiling", "painting", "wedding", "string", "spring", "thing", "evening",
             "morning", "clothing", "drawing", "stocking", "sibling", "duckling", "seedling",
             "earring", "pudding", "icing", "railing", "awning", "dwelling", "offspring",
             "lightning", "sapling", "gosling", "herring", "viking", "darling", "dumpling",
             "sling", "swing", "sting", "wing", "king", "ring", "ping", "bling", "wring",
             "fledgling", "hatchling", "nestling", "yearling", "foundling", "ceiling",
             "landing", "crossing", "clearing", "opening", "setting", "stuffing", "filling",
             "frosting", "topping", "bedding", "housing", "lighting", "carving", "serving",
             "gelding", "shilling", "rendering", "recording", "footing", "outing"}
ED_NOUNS = {"shed", "sled", "bed", "red", "sped", "seabed", "hundred", "sacred", "kindred",
            "flowerbed", "riverbed", "hotbed", "homestead", "bobsled", "watershed", "bred", "fled", "wed"}

ANIMATE = set("""person man woman boy girl child kid baby toddler infant teenager teen adult
lady gentleman guy gal player worker chef cook doctor nurse teacher student soldier police
policeman policewoman officer firefighter fireman farmer fisherman driver rider cyclist
biker runner dancer singer musician artist painter athlete swimmer surfer skier skater
climber hiker tourist traveler traveller friend couple family mother father mom dad parent
sister brother son daughter grandmother grandfather grandma grandpa husband wife bride groom
king queen prince princess knight warrior wizard witch pirate robot astronaut clown
businessman businesswoman customer waiter waitress shopper pedestrian passenger spectator
audience monk nun priest scientist engineer builder mechanic pilot sailor cowboy cowgirl
snowman human figure character
dog puppy cat kitten horse pony foal cow calf bull ox sheep lamb goat pig piglet chicken hen
rooster chick duck duckling goose gosling turkey bird parrot pigeon dove crow raven eagle hawk
owl sparrow robin seagull gull swan flamingo penguin ostrich peacock rabbit bunny hare mouse
rat hamster squirrel chipmunk fox wolf bear cub lion lioness tiger leopard cheetah jaguar
panther elephant giraffe zebra hippo hippopotamus rhino rhinoceros monkey ape gorilla
chimpanzee orangutan kangaroo koala panda deer fawn moose elk reindeer camel llama alpaca
donkey mule bison buffalo yak fish goldfish shark whale dolphin seal otter beaver turtle
tortoise frog toad snake lizard crocodile alligator dinosaur dragon unicorn butterfly bee
ant spider ladybug dragonfly crab lobster octopus jellyfish starfish snail worm bat hedgehog
raccoon skunk badger puppy hound poodle retriever terrier bulldog dachshund corgi husky
animal pet creature bat""".split())

# Scenery, time and shot words: an "a"/"an" phrase ending in one of these is the setting.
SCENERY = set("""sky background foreground field street road beach room water grass ground
floor wall forest woods park garden yard backyard city town village lake river ocean sea pond
stream snow ice sand desert mountain hill valley meadow landscape scene sunset sunrise day
night morning evening afternoon noon dusk dawn view shot photo photograph picture video image
clip footage closeup close-up frame camera painting illustration drawing render rendering
style kitchen bedroom livingroom hall hallway office classroom studio stage arena stadium
shore coast cliff island jungle farm barn countryside horizon fog mist rain storm weather
light sunlight moonlight lighting atmosphere setting environment area place space surface
distance middle center centre corner edge side top bottom front back left right lawn
pasture savanna savannah prairie swamp cave tunnel bridge sidewalk pavement alley square
plaza market mall shop store restaurant cafe library museum church temple playground
courtyard porch balcony rooftop roof window doorway sunny cloudy rainy snowy time moment
world universe space planet galaxy""".split())

COLLECTIVES = set("""couple group crowd herd flock pack swarm school team family bunch pile row
line set collection troop colony pod gaggle litter band party pair bouquet cluster stack
series number variety lot handful dozen""".split())

VAGUE_WORDS = {"few", "several", "many", "some", "multiple", "numerous", "countless", "various",
               "lots", "plenty", "dozens", "hundreds", "thousands", "millions", "scores",
               "more", "fewer", "most", "enough", "innumerable", "assorted", "loads", "tons"}
APPROXIMATORS = (("at", "least"), ("at", "most"), ("more", "than"), ("less", "than"),
                 ("fewer", "than"), ("up", "to"), ("approximately",), ("roughly",), ("nearly",),
                 ("almost",), ("about",), ("around",), ("over",), ("under",), ("some",))
# These are also prepositions: they approximate a numeral only at the start of a clause.
AMBIGUOUS_APPROXIMATORS = {"about", "around", "over", "under", "some"}
MEASURE_WORDS = set("""second seconds minute minutes hour hours day days week weeks month months
year years decade decades century centuries time times meter meters metre metres centimeter
centimeters inch inches foot feet mile miles kilometer kilometers km kg kilogram kilograms gram
grams pound pounds ounce ounces liter liters litre litres degree degrees percent o'clock am pm
fps frames""".split())

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


def _words(prompt: str) -> list[_Word]:
    text, index = text_seen_by_tokenizer(prompt)
    out: list[_Word] = []
    pos = 0
    for m in _WORD.finditer(text):
        for j in range(pos, m.start()):
            if not text[j].isspace():
                out.append(_Word(text[j], text[j], index[j], index[j] + 1, False))
        word = m.group().rstrip("'")
        start, end = m.start(), m.start() + len(word)
        out.append(_Word(word, word.lower().replace("\u2019", "'"), index[start], index[end - 1] + 1, True))
        pos = m.end()
    for j in range(pos, len(text)):
        if not text[j].isspace():
            out.append(_Word(text[j], text[j], index[j], index[j] + 1, False))
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


def _is_ing(word: str) -> bool:
    return len(word) > 4 and word.endswith("ing") and word not in ING_NOUNS


def _is_ed(word: str) -> bool:
    return len(word) >= 4 and word.endswith("ed") and not word.endswith("eed") and word not in ED_NOUNS


def _is_animate(word: str) -> bool:
    return singular(word) in ANIMATE or word in ANIMATE


def _ends_phrase(w: Optional[_Word]) -> bool:
    return w is None or not w.is_word or w.lower in TERMINATORS or _is_numeral(w)


@dataclass(frozen=True)
class _Phrase:
    first: int              # index of the first word of the phrase
    head: Optional[int]     # index of the head noun, None when the phrase is empty
    end: int                # index after the phrase


def _noun_phrase(words: list[_Word], first: int, count: int) -> _Phrase:
    """The noun phrase starting at `first` and its head noun (rule 4 of the module docstring)."""
    end = first
    while end < len(words) and end - first < 8 and not _ends_phrase(words[end]):
        if end > first and _cuts_phrase(words, end, count):
            break
        end += 1
    if end == first:
        return _Phrase(first, None, end)
    while end > first and _is_ing(words[end - 1].lower):
        end -= 1                # "a family of four having a picnic": a participle is not a noun
    if end == first:
        return _Phrase(first, None, end)
    indices = range(first, end)
    if count != 1:
        run = [k for k in indices if is_plural(words[k].lower)]
        if run:
            head = run[0]
            while head + 1 < end and is_plural(words[head + 1].lower):
                head += 1
            return _Phrase(first, head, end)
    return _Phrase(first, end - 1, end)


def _cuts_phrase(words: list[_Word], k: int, count: int) -> bool:
    """Whether word k (not the first of the phrase) is a verb or adverb that ends the phrase."""
    word, prev = words[k].lower, words[k - 1].lower
    nxt = words[k + 1] if k + 1 < len(words) else None
    next_ends = _ends_phrase(nxt)
    prev_animate = _is_animate(prev)
    if len(word) > 4 and word.endswith("ing") and prev_animate:
        return True             # "a man building a house": a participle after a person
    if _is_ing(word):
        if prev in ADJECTIVES:
            return False
        if count != 1 and nxt is not None and nxt.is_word and is_plural(nxt.lower) and not is_plural(prev):
            return False
        return True
    if _is_ed(word):
        return next_ends or prev_animate
    if word in VERBS and prev_animate:
        return True
    if count == 1 and is_plural(word) and next_ends:
        return True
    if word.endswith("ly") and len(word) > 4 and word not in ADJECTIVES:
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
        self.setting_chain = False   # the last "a" phrase was the setting (rule 5, "and a chair")

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

    def _add(self, phrase: _Phrase, count: int, numeral: str, explicit: bool, quote_from: int) -> None:
        word = self.words[phrase.head]
        quote = self._quote(quote_from, phrase.head + 1)
        if word.lower in MEASURE_WORDS:
            self._note(f'"{quote}": a unit of measure or time, not counted')
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
        if not w.is_word:
            self.setting_chain = False if w.text in ".;!?" else self.setting_chain
            return k + 1
        low = w.lower
        chained = self.setting_chain
        if low not in ("and", "or", "a", "an"):
            self.setting_chain = False

        for seq in APPROXIMATORS:
            number_at = k + len(seq)
            if number_at >= len(self.words) or not self._match(k, *seq) or not _is_numeral(self.words[number_at]):
                continue
            if seq[0] in AMBIGUOUS_APPROXIMATORS and self._lower(k - 1) not in ("", "and", "or"):
                break   # "sitting around two tables", "jumping over three dogs": a preposition
            value, after, _ = self._number(number_at)
            phrase = _noun_phrase(self.words, after, value or 2)
            self._note(f'"{self._quote(k, phrase.end)}": not an exact count, not counted')
            return max(phrase.end, after)

        if low == "half" and self._match(k + 1, "a", "dozen"):
            return self._counted(k, k + 3 + self._match(k + 3, "of"), 6, explicit=True)
        if low in ("a", "an"):
            return self._article(k, chained)
        if low == "both":
            phrase = _noun_phrase(self.words, k + 1, 2)
            if phrase.head is not None and is_plural(self.words[phrase.head].lower):
                self._add(phrase, 2, w.text, True, k)
                return phrase.end
            return k + 1
        if low == "no" and k + 1 < len(self.words) and not self._match(k + 1, "one"):
            phrase = _noun_phrase(self.words, k + 1, 2)
            if phrase.head is not None:
                self._note(f'"{self._quote(k, phrase.head + 1)}": a negation, not a count; write'
                           f' "zero {self.words[phrase.head].text}" or override'
                           f' "{self.words[phrase.head].text}: 0" to ask for none')
                return phrase.end
            return k + 1
        if low in VAGUE_WORDS and not _is_numeral(self.words[k + 1] if k + 1 < len(self.words) else w):
            return self._vague(k, k + 1 + self._match(k + 1, "of"))
        if re.fullmatch(r"\d+-\d+", low):
            phrase = _noun_phrase(self.words, k + 1, 2)
            self._note(f'"{self._quote(k, phrase.end)}": a range, not an exact count; not counted')
            return max(k + 1, phrase.end)
        if _is_numeral(w) and low not in BIG and low != "dozen":
            return self._numeral(k)
        if low in BIG:
            value = BIG[low]
            phrase = _noun_phrase(self.words, k + 1, value)
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
            phrase = _noun_phrase(self.words, end, 2)
            quote = self._quote(k, phrase.head + 1 if phrase.head is not None else end)
            if "." in written:
                self._note(f'"{quote}": {written} is not a whole number, not counted')
            else:
                self._note(f'"{quote}": {written} is more than {MAX_COUNT}, the most instances a layout'
                           " can hold; not counted")
            return max(end, phrase.end)
        value, after, is_range = self._number(k)
        if is_range:
            phrase = _noun_phrase(self.words, after, 2)
            self._note(f'"{self._quote(k, phrase.end)}": a range, not an exact count; not counted')
            return max(after, phrase.end)
        if value is None:
            return k + 1
        if self._lower(after) == "of" and self._lower(after + 1) in DETERMINERS | {"them", "us", "you"}:
            phrase = _noun_phrase(self.words, after + 2, value)
            self._note(f'"{self._quote(k, phrase.end)}": part of a group, not counted')
            return max(after + 2, phrase.end)
        if self._lower(after) in ("pair", "pairs") and self._lower(after + 1) == "of":
            return self._counted(k, after + 2, 2 * value, explicit=True)
        return self._counted(k, after, value, explicit=True)

    def _counted(self, k: int, first: int, value: int, explicit: bool) -> int:
        phrase = _noun_phrase(self.words, first, value)
        if phrase.head is None:
            return first
        numeral = self._quote(k, first) if first > k else self.words[k].text
        self._add(phrase, value, numeral, explicit, k)
        return phrase.end

    def _vague(self, k: int, first: int) -> int:
        if first < len(self.words) and _is_numeral(self.words[first]):
            return first          # "a group of five people": the numeral counts
        phrase = _noun_phrase(self.words, first, 2)
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
        if nxt in BIG:
            phrase = _noun_phrase(self.words, k + 2, BIG[nxt])
            if phrase.head is not None:
                self._add(phrase, BIG[nxt], self._quote(k, k + 2), True, k)
                return phrase.end
            return k + 2
        if nxt in ("few", "lot", "number", "variety", "bunch", "handful", "host", "multitude") or \
                (nxt in COLLECTIVES and self._lower(k + 2) == "of"):
            return self._vague(k, k + 2 + self._match(k + 2, "of"))
        phrase = _noun_phrase(self.words, k + 1, 1)
        if phrase.head is None:
            return k + 1
        head = self.words[phrase.head]
        quote = self._quote(k, phrase.head + 1)
        before = self._lower(k - 1)
        after_verb = _is_ing(before) or _is_ed(before) or before in VERBS
        after_preposition = before in PREPOSITIONS or after_verb or (before in ("and", "or") and chained)
        if head.lower in COLLECTIVES:
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
