"""Paired text-audio data for the audio-language model: synthetic scenes and real clips with captions and QA.

A *scene* is 2-8 s of 1-5 labelled events (speech, music, sfx from ``multimodal.sounds``) placed one after
another with small gaps (at most a slight overlap), each at a gain of -20..0 dB relative to the others,
over optional low-level noise. Because every event's kind, attributes, start, end and gain are known, its
captions and questions are generated from that record and are right by construction. A *real* row is one
recording alone (a Tux Paint description, a KLettres letter, a labelled sound effect).

Wordings: every question type and caption family has several wordings. One per type is *held out*: never
in train or valid, about a quarter of test questions use it (``heldout: true``), so a model's dependence
on the exact wording can be measured. The ``unseen`` split (recordings the project never trains on)
uses only its own further wordings.

The scene, caption and QA logic (`compose_scene`, `captions_for`, `questions_for`) is a pure function of
bank entries and a numpy Generator, so it is tested without espeak or fluidsynth.

    python -m multimodal.scenes --out data/alm [--train 8000 --valid 300 --test 600 --unseen 300 --seed 0]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import time
from collections import Counter
from pathlib import Path

import numpy as np
import soundfile as sf

from multimodal.sounds import LANGUAGES, SAMPLE_RATE, Sound, build_banks, rms

NUMBERS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight"]
ORDINALS = ["first", "second", "third", "fourth", "fifth"]
REAL_FRACTION = 0.25
HELDOUT_FRACTION = 0.25  # of test questions and captions

# ----------------------------------------------------------------------------------------------------------
# Wordings: type -> {"seen": [...], "heldout": one, "unseen": [...]}

QUESTIONS = {
    "exist_speech": {"seen": ["is there speech?", "does anyone speak?", "can you hear a voice?", "is someone talking?",
                              "is there any talking in this clip?", "does the recording contain speech?",
                              "can a person be heard speaking?", "is a voice present?", "does somebody say something?",
                              "are there any words being said?", "is speech part of this audio?", "do you hear anyone talk?"],
                     "heldout": "is any speech audible?", "unseen": ["do you notice spoken words?"]},
    "exist_music": {"seen": ["is there music?", "does any music play?", "can you hear an instrument?",
                             "is a melody played?", "is there any music in this clip?", "does the recording contain music?",
                             "is an instrument playing?", "can music be heard?", "is anything musical playing?",
                             "do you hear a melody?", "is music part of this audio?", "does a song or melody play?"],
                    "heldout": "is any music audible?", "unseen": ["do you notice a tune?"]},
    "exist_sound": {"seen": ["do you hear {x}?", "is there {x}?", "can you hear {x}?", "does the clip contain {x}?",
                             "is {x} present?", "does the recording include {x}?", "can {x} be heard?",
                             "is {x} one of the sounds?", "is there {x} in this clip?", "does {x} occur?",
                             "do we hear {x} at some point?", "is {x} part of the audio?"],
                    "heldout": "is {x} audible?", "unseen": ["any sign of {x} in the recording?"]},
    "count": {"seen": ["how many sounds are there?", "how many events do you hear?", "count the sounds: how many?",
                       "how many separate sounds occur?", "how many sounds does the clip contain?",
                       "how many events are in this recording?", "what is the count of sounds?",
                       "how many things can you hear?", "how many sound events are there?",
                       "in total, how many sounds occur?", "how many different events take place?"],
              "heldout": "what is the number of sounds?", "unseen": ["how many distinct sounds can be heard?"]},
    "order": {"seen": ["what comes first, the {a} or the {b}?", "which is heard first, the {a} or the {b}?",
                       "which starts earlier, the {a} or the {b}?", "the {a} or the {b}: which is first?",
                       "which occurs first, the {a} or the {b}?", "which is first to be heard, the {a} or the {b}?",
                       "which sound begins first, the {a} or the {b}?", "what starts sooner, the {a} or the {b}?",
                       "which one comes earlier, the {a} or the {b}?", "is the {a} or the {b} heard first?"],
              "heldout": "which happens before the other, the {a} or the {b}?",
              "unseen": ["of the {a} and the {b}, which do you hear earlier?"]},
    "order_yn": {"seen": ["is the {a} before the {b}?", "does the {a} come before the {b}?",
                          "is the {a} heard earlier than the {b}?", "does the {b} follow the {a}?",
                          "does the {a} start before the {b}?", "is the {b} heard after the {a}?",
                          "does the {a} occur earlier than the {b}?", "is the {b} later than the {a}?",
                          "does the {b} come after the {a}?", "is the {a} first and the {b} later?"],
                 "heldout": "does the {a} precede the {b}?", "unseen": ["is the {a} heard ahead of the {b}?"]},
    "noise": {"seen": ["is there background noise?", "is there a hiss under the sounds?", "is the background noisy?",
                       "can you hear noise in the background?", "is the recording noisy?",
                       "does noise play behind the sounds?", "is there hiss in the background?",
                       "is there any noise under the events?", "is the clip clean or is there background noise?",
                       "do you hear a noise floor?"],
              "heldout": "is any background noise audible?", "unseen": ["does a steady hiss run underneath?"]},
    "louder": {"seen": ["which is louder, the {a} or the {b} sound?", "is the {a} sound louder or the {b}?",
                        "which sound is louder: the {a} or the {b}?", "which has more volume, the {a} or the {b} sound?",
                        "which sound has the higher level, the {a} or the {b}?",
                        "which sound is stronger, the {a} or the {b}?", "is the {a} or the {b} sound louder?",
                        "which of the two is louder, the {a} or the {b}?", "which is played louder, the {a} or the {b}?",
                        "the {a} or the {b}: which sound is louder?"],
               "heldout": "which is more intense, the {a} sound or the {b}?",
               "unseen": ["between the {a} and the {b} sound, which is louder?"]},
    "longer": {"seen": ["which is longer, the {a} or the {b} sound?", "which lasts longer, the {a} or the {b} sound?",
                        "is the {a} sound longer or the {b}?", "which sound is longer: the {a} or the {b}?",
                        "which sound lasts more time, the {a} or the {b}?", "is the {a} or the {b} sound longer?",
                        "which of the two lasts longer, the {a} or the {b}?", "which runs longer, the {a} or the {b}?",
                        "the {a} or the {b}: which sound is longer?", "which one continues longer, the {a} or the {b}?"],
               "heldout": "which has the greater duration, the {a} sound or the {b}?",
               "unseen": ["between the {a} and the {b} sound, which goes on longer?"]},
    "pitch": {"seen": ["is the melody rising or falling?", "does the melody go up or down?",
                       "is the tune rising or falling in pitch?", "which way does the melody move, rising or falling?",
                       "do the notes rise or fall?", "is the melody going up or going down?",
                       "does the pitch rise or fall over the melody?", "are the notes climbing or descending?",
                       "is the line of notes rising or falling?", "does the melody ascend or descend?"],
              "heldout": "does the pitch of the melody rise or fall?",
              "unseen": ["is the melody's direction rising or falling?"]},
    "register": {"seen": ["are the notes high or low?", "is the melody high or low?", "is the music in a high or a low register?",
                          "are the notes played high or low?", "is the melody in a high or low range?",
                          "are the pitches high or low?", "does the melody sit high or low?",
                          "is the instrument playing high or low notes?", "is the music high-pitched or low-pitched?",
                          "are these high notes or low notes?"],
                 "heldout": "is the pitch of the melody high or low?", "unseen": ["high or low: where are the notes?"]},
    "tempo": {"seen": ["is the melody fast or slow?", "are the notes fast or slow?", "is the tune played fast or slow?",
                       "how quick is the melody, fast or slow?", "is the tempo fast or slow?",
                       "is the rhythm of the notes fast or slow?", "is the music played at a fast or a slow speed?",
                       "is the pace of the melody fast or slow?", "are the notes played at a fast or a slow tempo?",
                       "does the melody move fast or slow?"],
              "heldout": "is the music's pace fast or slow?", "unseen": ["slow or fast: how does the tune move?"]},
    "instrument": {"seen": ["which instrument plays?", "what instrument is heard?", "what instrument plays the melody?",
                            "name the instrument.", "which instrument is playing?", "what is playing the notes?",
                            "what kind of instrument do you hear?", "which instrument does the music come from?",
                            "what instrument can you hear?", "identify the instrument."],
                   "heldout": "which instrument can be heard?", "unseen": ["what is the instrument in this clip?"]},
    "word": {"seen": ["what word is spoken?", "what word does the speaker say?", "which word is said?",
                      "what is the spoken word?", "what does the voice say?", "which word do you hear spoken?",
                      "what word is said aloud?", "say the word that is spoken.", "what is the word in the clip?",
                      "what word does the voice say?"],
             "heldout": "which word can you hear?", "unseen": ["what single word is pronounced?"]},
    "letter": {"seen": ["what letter is said?", "which letter does the voice say?", "what letter is spoken?",
                        "which letter is named?", "what letter does the speaker say?", "which letter is read out?",
                        "what letter do you hear?", "name the letter that is spoken.", "which letter is said aloud?",
                        "what is the spoken letter?"],
               "heldout": "which letter can you hear?", "unseen": ["what letter is pronounced?"]},
    "language": {"seen": ["what language is spoken?", "which language does the speaker use?",
                          "in what language is the speech?", "what language is the voice speaking?",
                          "what language do you hear?", "which language is the speech in?",
                          "what is the language of the speech?", "in which language does the voice talk?",
                          "name the language that is spoken.", "what language does the person speak?"],
                 "heldout": "which language is heard?", "unseen": ["the speaker uses which language?"]},
    "voice": {"seen": ["is the voice male or female?", "is the speaker a man or a woman?", "does a man or a woman speak?",
                       "is it a male or a female voice?", "is a male or a female voice speaking?",
                       "does the voice sound male or female?", "is the person speaking a man or a woman?",
                       "is this a man's voice or a woman's?", "is the voice that of a man or a woman?", "is the talker male or female?"],
              "heldout": "is the speaker male or female?", "unseen": ["man or woman: who is speaking?"]},
}  # fmt: skip

# Caption families: chain-like ones are (prefix, connective, suffix) around the event phrases.
CAPTIONS = {
    "chain": {"seen": [("", ", then ", "."), ("", ", followed by ", "."), ("First ", "; after that ", ".")],
              "heldout": ("", ", and next ", "."), "unseen": [("We hear ", " and afterwards ", ".")]},
    "count": {"seen": [("{N} sound{s}: ", ", and then ", "."), ("There {are} {n} sound{s}: ", ", then ", "."),
                       ("The clip holds {n} event{s}: ", "; ", ".")],
              "heldout": ("{N} thing{s} happen{v}: ", ", next ", "."),
              "unseen": [("Listen for {n} sound{s}: ", " then ", ".")]},
    "summary": {"seen": ["A clip with {kinds}{bg}.", "{Kinds} can be heard{bg}.", "This recording contains {kinds}{bg}."],
                "heldout": "Audio of {kinds}{bg}.", "unseen": ["You can make out {kinds}{bg}."]},
    "ends": {"seen": ["It starts with {first} and ends with {last}.", "{First} opens the clip and {last} closes it.",
                      "The clip begins with {first}; at the end {last}."],
             "heldout": "At first {first}, finally {last}.", "unseen": ["Beginning: {first}. End: {last}."]},
}  # fmt: skip

SFX_NOUNS = {"kick drum": "a kick drum", "snare drum": "a snare drum", "hi-hat": "a hi-hat", "cymbal": "a cymbal",
             "tom drum": "a tom drum", "hand clap": "a hand clap", "footsteps": "footsteps", "door": "a door",
             "glass breaking": "breaking glass", "explosion": "an explosion", "splash": "a splash",
             "laughter": "laughter", "bell": "a bell", "bird": "a bird", "insect": "an insect", "cow": "a cow",
             "horse": "a horse"}  # fmt: skip
SFX_PHRASES = {"kick drum": ["a kick drum thumps", "a bass drum is hit"], "snare drum": ["a snare drum is struck",
               "a snare hit"], "hi-hat": ["a hi-hat ticks", "a hi-hat is hit"], "cymbal": ["a cymbal crashes",
               "a cymbal rings out"], "tom drum": ["a tom drum booms", "a tom is hit"], "hand clap": ["someone claps",
               "a hand clap"], "footsteps": ["footsteps are heard", "someone walks"], "door": ["a door opens or closes",
               "a door creaks"], "glass breaking": ["glass breaks", "glass shatters"], "explosion": ["an explosion booms",
               "something explodes"], "splash": ["something splashes into water", "a splash"], "laughter":
               ["someone laughs", "laughter is heard"], "bell": ["a bell rings", "a bell chimes"], "bird":
               ["a bird calls", "a bird sings"], "insect": ["an insect buzzes", "an insect chirps"], "cow":
               ["a cow moos", "cattle low"], "horse": ["a horse neighs or trots", "a horse is heard"]}  # fmt: skip


def wording_mode(split: str) -> str:
    return {"train": "seen", "valid": "seen", "test": "test"}.get(split, "unseen")


def pick_wording(table: dict, kind: str, mode: str, rng: np.random.Generator) -> tuple[object, str, bool]:
    """(wording, template id, heldout) of ``kind`` for a split's mode: seen | test | unseen."""
    entry = table[kind]
    if mode == "unseen":
        k = int(rng.integers(len(entry["unseen"])))
        return entry["unseen"][k], f"{kind}.u{k}", False
    if mode == "test" and rng.random() < HELDOUT_FRACTION:
        return entry["heldout"], f"{kind}.h", True
    k = int(rng.integers(len(entry["seen"])))
    return entry["seen"][k], f"{kind}.{k}", False


# ----------------------------------------------------------------------------------------------------------
# Scenes


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    spec = np.fft.rfft(rng.standard_normal(n))
    spec /= np.sqrt(np.maximum(np.arange(len(spec)), 1))
    return np.fft.irfft(spec, n).astype(np.float32)


def _draw(
    bank: dict[str, list[Sound]], kind: str, rng: np.random.Generator, max_seconds: float
) -> Sound | None:
    """One entry of ``kind`` no longer than ``max_seconds``: speech by group (words, descriptions, letters),
    music by instrument, sfx by label, so big groups do not crowd out small ones."""
    pool = [s for s in bank.get(kind, []) if s.seconds <= max_seconds]
    if not pool:
        return None
    key = {
        "speech": lambda s: "word" if "word" in s.attrs else "topic" if "topic" in s.attrs else "other",
        "music": lambda s: s.attrs.get("instrument") or s.attrs.get("piece", ""),
        "sfx": lambda s: s.attrs.get("label", ""),
    }[kind]
    groups = sorted({key(s) for s in pool})
    group = groups[int(rng.integers(len(groups)))]
    members = [s for s in pool if key(s) == group]
    return members[int(rng.integers(len(members)))]


def compose_scene(
    bank: dict[str, list[Sound]],
    rng: np.random.Generator,
    max_events: int = 5,
    max_seconds: float = 8.0,
    background_p: float = 0.4,
) -> tuple[np.ndarray, list[dict], dict | None]:
    """Audio ``[S]`` (float32, 16 kHz), its events (start/end in seconds, gain_db, attrs) and background."""
    kinds = [k for k in ("speech", "music", "sfx") if bank.get(k)]
    n = int(rng.integers(1, max_events + 1))
    t = float(rng.uniform(0.1, 0.5))
    chosen: list[tuple[Sound, float, float]] = []
    for i in range(n):
        budget = max_seconds - t - 0.35 * (n - i - 1) - 0.6 * (n - i - 1) - 0.1
        sound = _draw(bank, kinds[int(rng.integers(len(kinds)))], rng, budget)
        if sound is None:
            continue
        if chosen:
            gap = float(rng.uniform(0.1, 0.6))
            if rng.random() < 0.15:  # a slight overlap
                gap = -min(0.15, 0.3 * chosen[-1][0].seconds, 0.3 * sound.seconds) * float(rng.random())
            t = max(chosen[-1][1] + 0.02, t + gap)
        chosen.append((sound, t, float(rng.uniform(-20.0, 0.0))))
        t += sound.seconds
    length = max(2.0, t + float(rng.uniform(0.1, 0.5)))
    audio = np.zeros(int(np.ceil(length * SAMPLE_RATE)), dtype=np.float32)
    events = []
    for sound, start, gain_db in chosen:
        a = int(round(start * SAMPLE_RATE))
        clip = sound.audio * (0.1 / max(rms(sound.audio), 1e-6)) * 10 ** (gain_db / 20)  # -20 dBFS + gain
        audio[a : a + len(clip)] += clip[: len(audio) - a]
        events.append({"kind": sound.kind, "start": round(start, 3), "end": round(start + sound.seconds, 3),
                       "gain_db": round(gain_db, 1), "source": sound.source_id, **sound.attrs})  # fmt: skip
    background = None
    if events and rng.random() < background_p:
        kind = ["white noise", "pink noise"][int(rng.integers(2))]
        level_db = float(rng.uniform(-30.0, -15.0))
        noise = (
            rng.standard_normal(len(audio)).astype(np.float32)
            if kind == "white noise"
            else pink_noise(len(audio), rng)
        )
        active = np.abs(audio) > 1e-6
        target = rms(audio[active]) * 10 ** (level_db / 20)
        audio += noise * (target / max(rms(noise), 1e-9))
        background = {"type": kind, "level_db": round(level_db, 1)}
    peak = float(np.abs(audio).max())
    if peak > 0.95:
        audio *= 0.95 / peak
    return audio, events, background


def real_clip(sound: Sound) -> tuple[np.ndarray, list[dict], None]:
    """One recording alone, at -20 dBFS RMS."""
    audio = (sound.audio * (0.1 / max(rms(sound.audio), 1e-6))).astype(np.float32)
    audio *= min(1.0, 0.95 / max(float(np.abs(audio).max()), 1e-6))
    event = {"kind": sound.kind, "start": 0.0, "end": round(sound.seconds, 3), "gain_db": 0.0,
             "source": sound.source_id, **sound.attrs}  # fmt: skip
    return audio, [event], None


# ----------------------------------------------------------------------------------------------------------
# Captions


def language_name(code: str) -> str:
    return LANGUAGES.get(code.split("_")[0], code)


def describe(event: dict, rng: np.random.Generator) -> str:
    """One phrase for an event, in one of several wordings (from precise to vague)."""
    options: list[str]
    if event["kind"] == "speech":
        who = {"male": "a man", "female": "a woman"}.get(event.get("gender"), "someone")
        voice = {"male": "a male voice", "female": "a female voice"}.get(event.get("gender"), "a voice")
        lang = language_name(event["language"]) if event.get("language") else None
        if event.get("word") and lang:
            w = event["word"]
            options = [
                f"{who} says '{w}' in {lang}",
                f"{who} speaks the {lang} word '{w}'",
                f"the word '{w}' is spoken in {lang}",
                f"{voice} says '{w}'",
                f"{who} speaks a word",
            ]
        elif event.get("topic") and lang:
            options = [
                f"someone describes {event['topic']} in {lang}",
                f"a voice talks about {event['topic']} in {lang}",
                f"a spoken description of {event['topic']} in {lang}",
            ]
        elif event.get("letter") and lang:
            options = [
                f"a voice says the letter {event['letter']} in {lang}",
                f"the letter {event['letter']} is spoken in {lang}",
            ]
        elif lang:
            options = [f"someone says a word in {lang}", f"a voice speaks {lang}"]
        else:
            options = ["someone speaks", "a voice says something"]
    elif event["kind"] == "music":
        inst = event.get("instrument")
        if inst:
            d, r, tempo = event["direction"], event["register"], event["tempo"]
            options = [
                f"a {inst} plays a {d} melody",
                f"{r} notes on a {inst}",
                f"a {tempo}, {d} tune on the {inst}",
                f"a short {inst} melody",
                f"a {tempo} {inst} phrase",
            ]
        elif event.get("piece") == "soundtrack":
            options = ["a snippet of a soundtrack", "some instrumental music plays", "a piece of game music",
                       "a few bars of music"]  # fmt: skip
        elif event.get("piece") == "chorale":
            options = ["a few bars of a chorale", "some harmonized music plays", "a short piece of music"]
        else:
            options = ["a short piece of music", "some music plays", "a snippet of music"]
    else:
        options = SFX_PHRASES.get(event.get("label"), ["a sound effect", "a short noise"])
    return options[int(rng.integers(len(options)))]


def _kinds_phrase(events: list[dict]) -> str:
    kinds = [k for k in ("speech", "music", "sfx") if any(e["kind"] == k for e in events)]
    names = {"speech": "speech", "music": "music", "sfx": "sound effects"}
    words = [names[k] for k in kinds]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def captions_for(
    events: list[dict], background: dict | None, rng: np.random.Generator, mode: str
) -> list[dict]:
    """3-5 captions from different families (chain, count, summary, ends) and wordings."""
    families = ["chain", "count", "summary"] + (["ends"] if len(events) >= 2 else []) + ["chain"]
    k = int(rng.integers(3, min(5, len(families)) + 1))
    out = []
    for fam in families[:k]:
        wording, template, heldout = pick_wording(CAPTIONS, fam, mode, rng)
        phrases = [describe(e, rng) for e in events]
        n = len(events)
        if fam in ("chain", "count"):
            prefix, conn, suffix = wording
            fill = {"n": NUMBERS[n], "N": _cap(NUMBERS[n]), "s": "" if n == 1 else "s", "are": "is" if n == 1 else "are",
                    "v": "s" if n == 1 else ""}  # fmt: skip
            text = prefix.format(**fill) + conn.join(phrases) + suffix
        elif fam == "summary":
            bg = f" over faint {background['type']}" if background else ""
            kinds = _kinds_phrase(events)
            text = wording.format(kinds=kinds, Kinds=_cap(kinds), bg=bg)
        else:
            text = wording.format(first=phrases[0], First=_cap(phrases[0]), last=phrases[-1])
        out.append({"text": _cap(text), "template": template, "heldout": heldout})
    return out


# ----------------------------------------------------------------------------------------------------------
# Questions


def _name(event: dict) -> str:
    """What an order question calls an event: speech, the instrument (or music), the sfx label."""
    if event["kind"] == "speech":
        return "speech"
    if event["kind"] == "music":
        return event.get("instrument") or "music"
    return event.get("label") or "sound effect"


def _candidates(
    events: list[dict], background: dict | None, rng: np.random.Generator
) -> tuple[list[tuple[str, dict, str]], list[tuple[str, dict, str]]]:
    """(type, wording fields, answer) for every question this scene can answer, and the fallback ones."""
    out: list[tuple[str, dict, str]] = []
    fallback: list[tuple[str, dict, str]] = []  # asked only when a scene has too few other questions
    kinds = {e["kind"] for e in events}
    for kind, qtype in (("speech", "exist_speech"), ("music", "exist_music")):
        # music is in fewer scenes than not: ask "no" ones less often so answers come out balanced
        keep = kind in kinds or rng.random() < (0.35 if kind == "music" else 0.8)
        (out if keep else fallback).append((qtype, {}, "yes" if kind in kinds else "no"))
    out.append(("count", {}, NUMBERS[len(events)]))
    # scenes without background noise outnumber those with it: ask them less often
    (out if background or rng.random() < 0.4 else fallback).append(
        ("noise", {}, "yes" if background else "no")
    )
    names = [_name(e) for e in events]
    unique = [i for i, nm in enumerate(names) if names.count(nm) == 1]
    if len(unique) >= 2:
        i, j = sorted(int(x) for x in rng.choice(unique, 2, replace=False))
        first = names[i]
        a, b = (names[i], names[j]) if rng.random() < 0.5 else (names[j], names[i])
        out.append(("order", {"a": a, "b": b}, first))
        out.append(("order_yn", {"a": a, "b": b}, "yes" if a == first else "no"))
    if len(events) >= 2:
        i, j = sorted(int(x) for x in rng.choice(len(events), 2, replace=False))
        ei, ej = events[i], events[j]
        if abs(ei["gain_db"] - ej["gain_db"]) >= 6:
            out.append(
                (
                    "louder",
                    {"a": ORDINALS[i], "b": ORDINALS[j]},
                    ORDINALS[i] if ei["gain_db"] > ej["gain_db"] else ORDINALS[j],
                )
            )
        di, dj = ei["end"] - ei["start"], ej["end"] - ej["start"]
        if abs(di - dj) >= max(0.4, 0.3 * max(di, dj)):
            out.append(
                ("longer", {"a": ORDINALS[i], "b": ORDINALS[j]}, ORDINALS[i] if di > dj else ORDINALS[j])
            )
    music = [e for e in events if e["kind"] == "music"]
    if len(music) == 1 and music[0].get("instrument"):
        m = music[0]
        out += [
            ("pitch", {}, m["direction"]),
            ("register", {}, m["register"]),
            ("tempo", {}, m["tempo"]),
            ("instrument", {}, m["instrument"]),
        ]
    speech = [e for e in events if e["kind"] == "speech"]
    if len(speech) == 1:
        s = speech[0]
        if s.get("word"):
            out.append(("word", {}, s["word"].lower()))
        if s.get("letter"):
            out.append(("letter", {}, s["letter"].lower()))
        if s.get("gender"):
            out.append(("voice", {}, s["gender"]))
    langs = {e.get("language") for e in speech}
    if speech and len(langs) == 1 and None not in langs:
        out.append(("language", {}, language_name(langs.pop()).lower()))
    return out, fallback


def _exist_sound(
    events: list[dict], rng: np.random.Generator, labels: list[str], asked: dict[str, str]
) -> tuple | None:
    """ "do you hear a bell?" about a present or an absent label, 50/50; "no" questions never outnumber the
    "yes" ones (one "no" 30 % of the time when none is present) (absent ones only when every sfx label of the scene is known)."""
    present = sorted({e["label"] for e in events if e.get("label")} - set(asked))
    known = all(e.get("label") for e in events if e["kind"] == "sfx")
    absent = sorted(set(labels) - {e.get("label") for e in events} - set(asked)) if known else []
    yes, no = sum(a == "yes" for a in asked.values()), sum(a == "no" for a in asked.values())
    if not (no < yes or (no == 0 and rng.random() < 0.3)):
        absent = []
    pool = present if present and (rng.random() < 0.5 or not absent) else absent
    if not pool:
        return None
    label = pool[int(rng.integers(len(pool)))]
    asked[label] = "yes" if label in present else "no"
    return ("exist_sound", {"x": SFX_NOUNS.get(label, label)}, asked[label])


def questions_for(
    events: list[dict], background: dict | None, rng: np.random.Generator, mode: str, labels: list[str]
) -> list[dict]:
    """6-10 questions (4-5 when few balanced ones are left) with short lowercase answers; only what the record answers."""
    cands, fallback = _candidates(events, background, rng)
    rng.shuffle(cands)
    want = int(rng.integers(6, 11))
    keep = want - int(rng.integers(1, 3))
    picked, spare = cands[:keep], cands[keep:]
    asked: dict[str, str] = {}
    while len(picked) < want:
        extra = _exist_sound(events, rng, labels, asked)
        if extra is None:
            break
        picked.append(extra)
    picked += (spare + fallback)[
        : max(0, 6 - len(picked))
    ]  # too few balanced exist questions: others instead
    out = []
    for qtype, fields, answer in picked:
        wording, template, heldout = pick_wording(QUESTIONS, qtype, mode, rng)
        out.append({"question": wording.format(**fields), "answer": answer, "type": qtype,
                    "template": template, "heldout": heldout})  # fmt: skip
    return out


# ----------------------------------------------------------------------------------------------------------
# Building a split

SPLITS = ["train", "valid", "test", "unseen"]
_STATE: dict = {}  # set in the parent before the worker pool forks: banks per split, output folder, seed


def split_banks(bank: list[Sound], split: str) -> tuple[dict[str, list[Sound]], dict[str, list[Sound]]]:
    """(every entry of ``split`` by kind, its real recordings only by kind)."""
    full: dict[str, list[Sound]] = {}
    real: dict[str, list[Sound]] = {}
    for s in bank:
        if s.split == split:
            full.setdefault(s.kind, []).append(s)
            if not s.source_id.startswith(("espeak:", "fluidsynth:")):
                real.setdefault(s.kind, []).append(s)
    return full, real


def make_row(
    split: str, index: int, seed: int, full: dict, real: dict, labels: list[str]
) -> tuple[dict, np.ndarray]:
    """Row ``index`` of ``split``: a pure function of the banks and (seed, split, index)."""
    rng = np.random.default_rng([seed, SPLITS.index(split), index])
    kind = "scene"
    if real and rng.random() < REAL_FRACTION:
        kinds = sorted(real)
        sound = None
        while sound is None:
            sound = _draw(real, kinds[int(rng.integers(len(kinds)))], rng, 8.0)
        audio, events, background = real_clip(sound)
        kind = "real"
    else:
        audio, events, background = compose_scene(full, rng)
    mode = wording_mode(split)
    sources = [e["source"] for e in events]
    licenses = sorted({_STATE["licenses"][s] for s in sources})
    row = {"id": f"{split}-{index:05d}", "path": f"audio/{split}/{split}-{index:05d}.wav",
           "seconds": round(len(audio) / SAMPLE_RATE, 3), "split": split, "kind": kind,
           "license": " AND ".join(licenses), "sources": sources, "events": events, "background": background,
           "captions": captions_for(events, background, rng, mode), "qa": questions_for(events, background, rng, mode, labels)}  # fmt: skip
    return row, audio


def _work(args: tuple[str, int]) -> dict:
    split, index = args
    full, real, labels = _STATE["banks"][split]
    row, audio = make_row(split, index, _STATE["seed"], full, real, labels)
    sf.write(_STATE["out"] / row["path"], audio, SAMPLE_RATE, subtype="PCM_16")
    return row


def _read_rows(path: Path) -> list[dict]:
    return (
        [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []
    )


def summarize(rows_by_split: dict[str, list[dict]]) -> dict:
    out: dict = {
        "splits": {},
        "licenses": sorted({r["license"] for rows in rows_by_split.values() for r in rows}),
    }
    for split, rows in rows_by_split.items():
        qa = [q for r in rows for q in r["qa"]]
        answers: dict[str, Counter] = {}
        for q in qa:
            answers.setdefault(q["type"], Counter())[q["answer"]] += 1
        out["splits"][split] = {
            "rows": len(rows), "kinds": dict(Counter(r["kind"] for r in rows)),
            "hours": round(sum(r["seconds"] for r in rows) / 3600, 3),
            "events": dict(Counter(e["kind"] for r in rows for e in r["events"])),
            "captions": sum(len(r["captions"]) for r in rows), "questions": len(qa),
            "heldout_questions": sum(q["heldout"] for q in qa),
            "question_types": dict(Counter(q["type"] for q in qa)),
            "answers": {t: dict(c.most_common(12)) for t, c in sorted(answers.items())},
        }  # fmt: skip
    return out


def build(out: Path, counts: dict[str, int], seed: int = 0, workers: int = 2, log=print) -> dict:
    """Write ``out/audio/<split>/*.wav``, ``out/<split>.jsonl``, ``out/lists/<split>.jsonl``, ``out/summary.json``.

    A split whose jsonl already holds its count of rows is kept as it is (resume after an interruption)."""
    out = Path(out)
    todo = [s for s, n in counts.items() if len(_read_rows(out / f"{s}.jsonl")) != n]
    if todo:
        bank = build_banks(out / "bank", Path("data/corpus/manifest.jsonl"), seed, log)
        _STATE.update(out=out, seed=seed, banks={}, licenses={s.source_id: s.license for s in bank})
        for split in todo:
            full, real = split_banks(bank, split)
            labels = sorted({s.attrs["label"] for s in full.get("sfx", []) if s.attrs.get("label")})
            _STATE["banks"][split] = (full, real, labels)
            log(f"{split}: bank " + ", ".join(f"{k} {len(v)}" for k, v in sorted(full.items())))
    for split in todo:
        (out / "audio" / split).mkdir(parents=True, exist_ok=True)
        t0 = time.time()
        jobs = [(split, i) for i in range(counts[split])]
        if workers > 1:
            with mp.get_context("fork").Pool(workers) as pool:
                rows = list(pool.imap(_work, jobs, chunksize=16))
        else:
            rows = [_work(j) for j in jobs]
        tmp = out / f"{split}.jsonl.tmp"
        tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        tmp.rename(out / f"{split}.jsonl")
        log(f"{split}: {len(rows)} rows in {time.time() - t0:.0f} s")
    rows_by_split = {s: _read_rows(out / f"{s}.jsonl") for s in counts}
    (out / "lists").mkdir(parents=True, exist_ok=True)
    for split, rows in rows_by_split.items():
        (out / "lists" / f"{split}.jsonl").write_text(
            "".join(json.dumps({"path": "../" + r["path"]}) + "\n" for r in rows)
        )
    summary = summarize(rows_by_split)
    (out / "summary.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False))
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="data/alm", help="output folder (default: data/alm)")
    for split, n in (("train", 8000), ("valid", 300), ("test", 600), ("unseen", 300)):
        parser.add_argument(
            f"--{split}", type=int, default=n, help=f"rows in the {split} split (default {n})"
        )
    parser.add_argument("--seed", type=int, default=0, help="one seed for banks and scenes (default 0)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes writing rows (default 2)")
    args = parser.parse_args(argv)
    t0 = time.time()
    counts = {s: getattr(args, s) for s in SPLITS}
    summary = build(Path(args.out), counts, args.seed, args.workers)
    for split, info in summary["splits"].items():
        print(f"{split}: {info['rows']} rows, {info['hours']} h, {info['questions']} questions")
    print(f"done in {time.time() - t0:.0f} s -> {args.out}")


if __name__ == "__main__":
    main()
