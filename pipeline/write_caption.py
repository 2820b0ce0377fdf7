"""The local caption writer: a caption in the template's voice, written offline from the clip and the artist's context.

No network and no model: sentences are drawn with the run's rng from frames filled with the clip's lyric lines,
the song title, the mood, keywords of the context and the template's own examples, then fitted to the length class.
"""

from __future__ import annotations

import random
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass

from pipeline.errors import BadInput
from pipeline.models import CaptionLength, LyricLine
from pipeline.templates import CaptionGuide, Template

_BOUNDS: dict[str, tuple[int, int]] = {"none": (0, 0), "short": (1, 10), "medium": (15, 30), "long": (40, 80)}


def word_bounds(length: str) -> tuple[int, int]:
    """The inclusive (min, max) word count of a caption length class."""
    try:
        return _BOUNDS[length]
    except KeyError:
        raise BadInput(f"Unknown caption length: {length} (use none, short, medium or long)",
                       field=["caption_length"]) from None


def count_words(text: str) -> int:
    return len(text.split())


def check_caption_length(text: str, length: str) -> bool:
    """Whether `text` is in the word-count class `length` (words are whitespace-separated tokens)."""
    lo, hi = word_bounds(length)
    return lo <= count_words(text) <= hi


@dataclass(frozen=True)
class CaptionContext:
    song_title: str
    lyrics: tuple[LyricLine, ...]  # the clip's lines
    mood: str
    artist_name: str
    artist_context: str
    audience_context: str
    template: Template


@dataclass(frozen=True)
class Voice:
    """What the template's guide asks of the text, read from its tone, rules and formats."""

    lowercase: bool = False
    hashtag: bool = False  # one hashtag of the title is welcome
    exclamations: bool = True
    quotes: bool = True
    name_title: bool = False
    max_quotes: int = 2  # lyric lines quoted in one caption
    cues: str = ""  # the formats, lowercased: they unlock extra frames


_NEGATION = re.compile(r"\b(no|never|without|avoid|not|don't|do not)\b")


def read_voice(guide: CaptionGuide) -> Voice:
    rules = [r.lower() for r in guide.rules]
    formats = " ".join(guide.formats).lower()

    def forbids(topic: str) -> bool:
        return any(topic in r and _NEGATION.search(r) for r in rules)

    def asks(topic: str) -> bool:
        return any(topic in r and not _NEGATION.search(r) for r in rules)

    mentions_hashtag = "hashtag" in formats or asks("hashtag")
    return Voice(
        lowercase="lowercase" in guide.tone.lower() or asks("lowercase"),
        hashtag=mentions_hashtag and not forbids("hashtag"),
        exclamations=not forbids("exclamation"),
        quotes=not (forbids("quotation") or forbids("quote marks")),
        name_title=asks("name the song") or asks("song title") or asks("mention the title"),
        max_quotes=1 if any(re.search(r"\b(at most )?one lyric", r) for r in rules) else 2,
        cues=formats,
    )


# A sentence is a stem and a tail, drawn apart: with ~8 stems and ~6 tails a kind has ~50 shapes, so thirty
# captions of one song rarely say a thing the same way twice. Stems end without punctuation; {line} is a lyric of
# the clip, {frag} a phrase of one, {kw} a context keyword. No stem strings the name, title and mood together.
_STEMS: dict[str, tuple[str, ...]] = {
    "lyric": (
        '"{line}"',
        'The line I keep coming back to is "{line}"',
        'Every time it gets to "{line}" I lose it a little',
        'I wrote "{line}" on the back of a bus ticket',
        'If you only hear one line tonight, make it "{line}"',
        'Still thinking about "{line}"',
        'Somewhere in the second verse I sing "{line}"',
        'You will know the moment it goes "{line}"',
    ),
    "title": (  # said to the listener: the imperative tails fit
        "Put {title} on when the day needs a little more colour",
        "Play {title} loud",
        "Save {title} for the last train home",
        "Take {title} with you tonight",
        "Give {title} one proper listen",
    ),
    "story": (  # about the song: the telling tails fit
        "{title} is the one I play when nobody else is home",
        "I made {title} for the moments you cannot explain out loud",
        "{title} started as a voice memo at two in the morning",
        "We finished {title} with the windows open",
        "I almost kept {title} to myself",
        "Somebody asked for {title} at the last show",
        "{title} is what the quiet after midnight sounds like",
    ),
    "context": (
        "For everyone in their {kw} era",
        "A little {kw} energy for whoever needs it today",
        "Made with the {kw} crowd in mind",
        "This one goes out to the {kw} people",
        "Written for long {kw} nights",
        "If {kw} is your thing, stay a minute",
        "Somewhere between {kw} and home",
        "Thinking about every {kw} night that made this song",
    ),
    "mood": (
        "Some songs just feel {mood}",
        "It was a {mood} kind of night when we wrote this",
        "This is what {mood} sounds like to me",
        "For the {mood} hours between one stop and the next",
        "A {mood} one for the walk home",
    ),
}
_TAILS: dict[str, tuple[str, ...]] = {
    "lyric": (".", ", and somehow that says all of it.", ", and it still gets me.", ", and I meant every word.",
              ", which is the whole song really.", ", if you know, you know.", " and the room goes quiet.",
              ", and that is where it starts."),
    "title": (".", ", then play it again.", ", and let it run.", ", and tell me what you hear.",
              " and keep it for yourself.", ", on the way home.", ", before anyone else does.",
              ", with the lights off."),
    "story": (".", ", honestly.", ", true story.", ", and it shows.", ", for what it is worth.",
              ", and I still play it every day."),
    "ask": ("?", ", honestly?", "? Tell me."),
    "context": (".", ", start to finish.", ", this one is yours.", ", you know who you are.", ", all summer.",
                ", wherever you are."),
    "mood": (".", ", honestly.", ", and that is fine.", ", if you need it.", ", nothing more."),
}

# Short captions (up to ten words): a phrase of the lyric in a short frame, or the title said like a person.
_SHORT_STEMS: dict[str, tuple[str, ...]] = {
    "lyric": ('"{frag}"', 'Still hearing "{frag}"', 'Can\'t shake "{frag}"', 'All week: "{frag}"',
              'Sing it back: "{frag}"', 'Just "{frag}"', 'And then: "{frag}"', 'Say it with me: "{frag}"',
              'Stuck on "{frag}"', 'Wait for "{frag}"', 'Me, every night: "{frag}"', 'Loud part: "{frag}"'),
    "title": ("This one is called {title}", "Play {title} loud", "{title} is for you", "Put {title} on tonight",
              "{title} is yours now", "{title} on the way home", "Saving {title} for later", "{title}, side A"),
    "context": ("For the {kw} crowd", "Pure {kw} energy"),
    # with a template that names the song: the title and a phrase of the lyric together
    "titled": ('{title}: "{frag}"', '"{frag}" ({title})', 'From {title}: "{frag}"', 'In {title} I say "{frag}"',
               '{title} is "{frag}"', '"{frag}" is {title}', 'Side A of {title}: "{frag}"',
               'All of {title} in "{frag}"', '{title} says "{frag}"'),
}
# any lyric frame can carry the title after it, in brackets, as people credit a song
_SHORT_STEMS["titled"] += tuple(stem + " ({title})" for stem in _SHORT_STEMS["lyric"] if stem != '"{frag}"')
_SHORT_TAILS: dict[str, tuple[str, ...]] = {
    "lyric": (".", ", on repeat.", ", all night.", " (turn it up).", ", still.", ", out loud.", "!",
              ", again."),
    "title": (".",),
    "context": (".",),
    "titled": (".", ", on repeat.", ", still.", ", all week.", " tonight.", ", out loud."),
}

# Stems a template unlocks by naming their format: (cue, kind, long stems, short stems); the kind's tails apply.
_CUED_FRAMES: tuple[tuple[str, str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("question", "ask", ("Who are you sending {title} to first", "Which line got you the first time you heard it"),
     ("Who needs to hear this", "Which line got you")),
    ("out now", "story", ("{title} is out now, so go and make it yours",), ("{title} is out now",)),
    ("staff pick", "story", ("Staff pick: {title}, and one listen tells you why",
                             "Pulled {title} from the new arrivals wall this morning"), ("Staff pick this week",)),
    ("new arrivals", "lyric", ('Found in the new arrivals crate: "{line}"',
                               'The staff-pick card just says "{line}"'), ('New arrivals: "{frag}"',)),
    ("chant", "lyric", ('Sing it back to me: "{line}"', '"{line}", everybody, one more time'),
     ('"{frag}", everybody',)),
    ("invitation", "title", ("Take {title} somewhere with open sky today",), ("Take {title} outside",)),
    ("cover line", "story", ("{artist} on {title}: nothing held back",), ("{artist}, nothing held back",)),
    ("pull quote", "lyric", ('In the song\'s own words: "{line}"',), ('In its own words: "{frag}"',)),
    ("manifesto", "title", ("No filler, no apologies, just {title}",), ("No filler, just {title}",)),
    ("confession", "lyric", ('Honestly, "{line}" is the truest thing I have written',), ()),
)

# Sentences that need nothing: they pad a caption that is still too short.
_FILLERS: tuple[str, ...] = (
    "Press play.",
    "Turn it up.",
    "Stay for the chorus.",
    "Listen to the end.",
    "Keep this one close.",
    "Send it to someone who needs it.",
    "This one means a lot to me.",
    "Thank you for listening, really.",
    "Headphones on for this one.",
    "Play it twice, the second time hits harder.",
    "Every word of this one is true.",
    "It sounds best late at night with the volume up.",
    "Save it for the moment you need it most.",
    "There is a part near the end you will want to hear.",
)

# lyric quotes first (a line of the song in the template's voice); the template's examples are fixed sentences,
# so they come rarely (each one would otherwise repeat across a batch)
_BASE_WEIGHTS = {"lyric": 3.0, "title": 1.0, "story": 1.0, "ask": 0.8, "example": 0.3, "context": 0.8, "mood": 0.4,
                 "filler": 0.3}

_STOPWORDS_TEXT = """
a about above across after again against all almost also always am among an and another any anyone anything are
around as at away back be because been before being below between both but by came can cannot come comes could did
do does doing done down during each even ever every everyone everything few first for from further get gets getting
give go goes going gone got had has have having he her here hers herself him himself his how however i if in into is
it its itself just keep know last least less let like little lot made make makes making many may me might more most
much must my myself never new next no nor not nothing now of off often on once one only onto or other others our ours
out over own part people per put quite rather really said same say says see seem seems she should since so some
someone something sometimes still such take than that the their theirs them themselves then there these they thing
things this those though through to together too toward under until up upon us use used usually very want was way we
well were what whatever when where whether which while who whom whose why will with within without would yet you
your yours yourself artist artists music song songs track tracks listen listens listener listeners listening fan
fans audience sound sounds sounding album record single year years time times day days whole kind sort type feel
feels felt tiny small big little good great bad late early cheap young old real true best favourite favorite
whole full open close different same long short high low hard soft
"""
_STOPWORDS = frozenset(_STOPWORDS_TEXT.split())


def _clean(text: str) -> str:
    """Text safe to place in a caption: no braces, backslashes, hashes, emoji or control characters."""
    kept = [
        " " if ch in "{}\\#\"" or unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") else ch
        for ch in text
        if unicodedata.category(ch) not in ("So", "Cs", "Co", "Sk")
    ]
    return " ".join("".join(kept).split())


def _strip_end(text: str) -> str:
    return text.rstrip(" .,;:!?-")


def _first_words(text: str, n: int) -> str:
    return " ".join(text.split()[:n])


def _phrase(line: str, max_words: int, rng: random.Random) -> str:
    """The line, or when it is too long one of its clauses, so a quote never stops mid-phrase if it can help it."""
    if count_words(line) <= max_words:
        return line
    clauses = [c.strip() for c in re.split(r"[,;:]", line)]
    fitting = [c for c in clauses if 2 <= count_words(c) <= max_words]
    return rng.choice(fitting) if fitting else _first_words(line, max_words)


def _bare(word: str) -> str:
    return word.lower().strip(",.!?'\"()")


def _fragment(line: str, max_words: int, rng: random.Random, besides: str = "") -> str:
    """A phrase of the line: any run of 2..max_words words inside one clause that does not end on a small word
    ("from", "the"), is not only small words, and says more than `besides` (the title it is quoted next to:
    '"bus home" (Late Bus Home)' says the title twice); the whole clause when none is."""
    clauses = [c.strip() for c in re.split(r"[,;:]", line) if count_words(c.strip()) >= 2] or [line]
    named = {_bare(w) for w in besides.split()}
    windows: list[str] = []
    for clause in clauses:
        words = clause.split()
        for size in range(min(2, len(words)), min(len(words), max_words) + 1):
            for start in range(len(words) - size + 1):
                run = words[start:start + size]
                content = {_bare(w) for w in run} - _STOPWORDS
                if _bare(run[-1]) not in _STOPWORDS and content and not content <= named:
                    windows.append(" ".join(run))
    return rng.choice(windows) if windows else _first_words(rng.choice(clauses), max_words)


def _terminate(sentence: str) -> str:
    return sentence if sentence[-1:] in '.!?"' else sentence + "."


def _opening(sentence: str) -> str:
    return " ".join(re.findall(r"[^\W_]+", sentence.lower())[:2])


def context_keywords(text: str, exclude: str = "", limit: int = 10) -> list[str]:
    """The words a context text keeps returning to (nouns and adjectives, roughly), most frequent first."""
    excluded = {w.lower() for w in re.findall(r"[A-Za-z]+", exclude)}
    words: list[str] = []
    for raw in re.findall(r"[A-Za-z][A-Za-z'-]*[A-Za-z]", text):
        word = raw.lower().removesuffix("'s")
        if (len(word) < 4 or word in _STOPWORDS or word in excluded or word.endswith("ly")
                or (word.endswith("s") and not word.endswith("ss")) or "'" in word):
            continue
        words.append(word)
    counts = Counter(words)
    first_seen = {w: i for i, w in reversed(list(enumerate(words)))}
    ranked = sorted(counts, key=lambda w: (-counts[w], first_seen[w]))
    repeated = [w for w in ranked if counts[w] > 1]
    # words said twice are what the text is about; one-offs ("drum", "machine") only when little repeats
    return (repeated if len(repeated) >= 3 else ranked)[:limit]


@dataclass(frozen=True)
class _Material:
    lines: tuple[str, ...]
    title: str
    mood: str
    artist: str
    keywords: tuple[str, ...]
    examples: tuple[str, ...]


def _material(ctx: CaptionContext) -> _Material:
    lines: list[str] = []
    for line in ctx.lyrics:
        text = _strip_end(_clean(line.text))
        if text and text.lower() not in {x.lower() for x in lines}:
            lines.append(text)
    artist = _strip_end(_clean(ctx.artist_name))
    keywords = context_keywords(f"{ctx.artist_context}\n{ctx.audience_context}", exclude=artist)
    return _Material(
        lines=tuple(lines),
        title=_strip_end(_clean(ctx.song_title)),
        mood=_strip_end(_clean(ctx.mood)).lower(),
        artist=artist,
        keywords=tuple(keywords),
        examples=tuple(e for e in (_clean(x) for x in ctx.template.caption.examples) if e),
    )


def _fill(frame: str, m: _Material, rng: random.Random, *, max_line_words: int, used: set[str]) -> str | None:
    """The frame with its blanks filled, or None when the material lacks what it needs."""
    values: dict[str, str] = {"title": m.title, "mood": m.mood, "artist": m.artist}
    if "{line}" in frame or "{frag}" in frame:
        fresh = [x for x in m.lines if x not in used] or list(m.lines)
        if not fresh:
            return None
        line = rng.choice(fresh)
        used.add(line)
        values["line"] = _phrase(line, max_line_words, rng)
        clauses = [c.strip() for c in re.split(r"[,;:]", values["line"]) if count_words(c.strip()) >= 3]
        if len(clauses) > 1 and rng.random() < 0.5:  # half the time, one clause of it: the hook, not the line
            values["line"] = rng.choice(clauses)
        # a short caption's phrase takes the words its frame leaves of the ten, so no length is favoured later
        room = 10 - count_words(frame.replace("{frag}", "").replace("{title}", m.title).replace("{artist}", m.artist))
        values["frag"] = _fragment(line, max(2, min(max_line_words, room)), rng,
                                   besides=m.title if "{title}" in frame else "")
    if "{kw}" in frame:
        if not m.keywords:
            return None
        values["kw"] = rng.choice(m.keywords)
    out = frame
    for key, value in values.items():
        token = "{" + key + "}"
        if token in out:
            if not value:
                return None
            out = out.replace(token, value)
    return out


def _sentence_case(sentence: str) -> str:
    for i, ch in enumerate(sentence):
        if ch.isalpha():
            return sentence[:i] + ch.upper() + sentence[i + 1:] if sentence[:i].strip('"\' ') == "" else sentence
    return sentence


def _pools(m: _Material, voice: Voice, rng: random.Random, *, short: bool) -> dict[str, list[str]]:
    """Candidate sentences by kind (every stem with every tail of its kind), each list shuffled by the rng."""
    stems = {k: list(v) for k, v in (_SHORT_STEMS if short else _STEMS).items()}
    for cue, kind, long_stems, short_stems in _CUED_FRAMES:
        if cue in voice.cues:
            # the template asked for this format: its stems join the kind's
            stems.setdefault(kind, []).extend(short_stems if short else long_stems)
    tails = _SHORT_TAILS if short else _TAILS
    used: set[str] = set()
    pools: dict[str, list[str]] = {}
    for kind, kind_stems in stems.items():
        frames = [stem + tail for stem in kind_stems for tail in tails.get(kind, ("."))]
        rng.shuffle(frames)
        filled = [_fill(f, m, rng, max_line_words=6 if short else 12, used=used) for f in frames[:24]]
        pools[kind] = list(dict.fromkeys(s for s in filled if s))
    # The template's examples are not drawn: fixed sentences repeat across a batch; its voice comes through its
    # cued stems (staff pick, chant, cover line...) and its rules.
    # The fillers ("Press play.") are not drawn either, only padded with: drawn, they repeat across a batch.
    # With no material at all (no lyric, title or context), the examples and fillers are all there is.
    if not any(pools.values()):
        pools["example"] = [e for e in m.examples if count_words(e) <= (10 if short else 30)]
        pools["filler"] = [f for f in _FILLERS if count_words(f) <= (10 if short else 30)]
        for kind in ("example", "filler"):
            rng.shuffle(pools[kind])
    return {k: v for k, v in pools.items() if v}


def _weights(voice: Voice, pools: dict[str, list[str]]) -> dict[str, float]:
    weights = {k: _BASE_WEIGHTS.get(k, 1.0) for k in pools}
    if "lyric" in voice.cues and "lyric" in weights:
        weights["lyric"] += 1.0
    for kind in ("title", "story"):
        if "title" in voice.cues and kind in weights:
            weights[kind] += 0.5
    return weights


def _draw_order(pools: dict[str, list[str]], weights: dict[str, float], rng: random.Random,
                first: str | None = None) -> list[str]:
    """All candidate sentences in a weighted random order of kinds, no kind twice in a row when avoidable."""
    queues = {k: list(v) for k, v in pools.items()}
    order: list[str] = []
    last = None
    while any(queues.values()):
        kinds = [k for k, q in queues.items() if q]
        if first in kinds:
            kind, first = first, None
        else:
            choices = [k for k in kinds if k != last] or kinds
            kind = rng.choices(choices, weights=[weights[k] for k in choices])[0]
        order.append(queues[kind].pop(0))
        last = kind
    return order


def _assemble(order: list[str], lo: int, hi: int, target: int, rng: random.Random) -> list[str]:
    """Sentences taken in order while they fit under `hi`, until `target`; then padded up to `lo`."""
    chosen: list[str] = []
    n = 0
    for sentence in order:
        w = count_words(sentence)
        # two sentences that open alike ("Staff pick: ..." twice) read as a glitch
        if n + w > hi or _opening(sentence) in {_opening(c) for c in chosen}:
            continue
        chosen.append(sentence)
        n += w
        if n >= target and len(chosen) >= 2:  # one long sentence alone repeats across a batch
            return chosen
    fillers = sorted(_FILLERS, key=count_words)
    while n < lo:  # only with very little material: any filler that fits, the shortest when none is new
        fitting = [f for f in fillers if n + count_words(f) <= hi and f not in chosen]
        pick = rng.choice(fitting) if fitting else fillers[0]
        chosen.append(pick)
        n += count_words(pick)
    return chosen


def _finish(text: str, voice: Voice) -> str:
    if not voice.exclamations:
        text = text.replace("!", ".")
    if not voice.quotes or text.count('"') % 2:
        text = text.replace('"', "")
    text = text.replace("{", "").replace("}", "").replace("\\", "")
    if voice.lowercase:
        text = text.lower()
    return " ".join(text.split())


def _title_tag(title: str) -> str:
    return "#" + "".join(w[:1].upper() + w[1:] for w in re.findall(r"[^\W_]+", title))


def _write_short(m: _Material, voice: Voice, rng: random.Random) -> list[str]:
    """One short sentence: a phrase of the lyric in a short frame when the clip has words (the title woven in when
    the template names the song), else the title or the context said like a person."""
    pools = _pools(m, voice, rng, short=True)
    if m.lines and voice.name_title and m.title and "titled" in pools:
        kind = "titled"
    elif m.lines and "lyric" in pools:
        kind = "lyric"
    elif voice.name_title and m.title and "title" in pools:
        kind = "title"
    else:
        kinds = [k for k in pools if k not in ("titled", "lyric")] or list(pools)
        weights = _weights(voice, pools)
        kind = rng.choices(kinds, weights=[weights[k] for k in kinds])[0]
    fitting = [c for c in pools[kind] if count_words(c) <= 10]  # a whole sentence, never one cut at ten words
    chosen = [_sentence_case(fitting[0])] if fitting else [_first_words(_sentence_case(pools[kind][0]), 10)]
    return chosen


def _write_long(m: _Material, voice: Voice, rng: random.Random, lo: int, hi: int) -> list[str]:
    pools = _pools(m, voice, rng, short=False)
    # a caption that quotes three lines or names the title three times sounds like a bot
    medium = hi <= 30
    caps = {"lyric": 1 if medium else voice.max_quotes, "title": 1, "story": 1, "ask": 1, "context": 1 if medium else 2,
            "mood": 1}
    pools = {k: v[: caps.get(k, len(v))] for k, v in pools.items() if v[: caps.get(k, len(v))]}
    weights = _weights(voice, pools)
    first = "lyric" if "lyric" in pools and rng.random() < 0.6 else None
    order = _draw_order(pools, weights, rng, first=first)
    target = rng.randint(lo, (lo + hi) // 2)
    room = hi - (1 if voice.hashtag else 0)
    titled = [k for k in ("title", "story") if k in pools]
    if voice.name_title and m.title and titled:
        # the rule wins over the draw: the title sentence goes in second (first when it is the only fit)
        title_sentence = pools[rng.choice(titled)][0]
        order.remove(title_sentence)
        rest = _assemble(order, 0, room - count_words(title_sentence), max(0, target - count_words(title_sentence)),
                         rng)
        chosen = [*rest[:1], title_sentence, *rest[1:]]
        if count_words(" ".join(chosen)) < lo:
            chosen = _assemble(chosen, lo, room, lo, rng)
    else:
        chosen = _assemble(order, lo, room, target, rng)
    return [_terminate(_sentence_case(s)) for s in chosen]


def write_caption(ctx: CaptionContext, length: CaptionLength, rng: random.Random) -> str:
    """A caption of the asked length class in the template's voice; "" for `none`."""
    lo, hi = word_bounds(length)
    if length == "none":
        return ""
    voice = read_voice(ctx.template.caption.guide)
    m = _material(ctx)
    if length == "short":
        sentences = _write_short(m, voice, rng)
    else:
        sentences = _write_long(m, voice, rng, lo, hi)
        tag = _title_tag(m.title)
        if voice.hashtag and len(tag) > 1 and count_words(" ".join(sentences)) < hi:
            sentences.append(tag)
    text = _finish(" ".join(sentences), voice)
    words = text.split()
    if len(words) > hi:
        text = " ".join(words[:hi])
    while count_words(text) < lo:  # unreachable with the fillers above; kept so the contract never breaks
        text = f"{text} {_finish('Press play.', voice)}".strip()
    return text
