"""`audiotok eval alm`: the audio-language model on the paired set's test and unseen splits: QA, retrieval, zero-shot
classification, captions and speed, with the baselines in the same run.

    audiotok eval alm [--model default] [--data data/alm] [--question-only EXPORT] [--compare NAME=EXPORT,...]
                      [--captions 200] [--out alm_eval.json] [--markdown FILE]

(``bench/alm_eval.py`` runs it for BENCHMARKS.md.)

- QA: greedy answers, normalized exact match, per question type and overall, on the test split's questions
  in training wordings and, separately, in the held-out wordings; the question-only baseline (same
  architecture, audio withheld) and the majority answer (the train split's most common answer, overall
  and per question type) on the same questions.
- Unseen: the `unseen` split (real recordings the project never trains on, question wordings used nowhere
  else): yes/no questions about speech and music, counting and order.
- Retrieval among 100: the first 100 test clips and their first captions; audio-to-text and text-to-audio
  R@1 and R@5. Zero-shot classification: single-event test clips, ranked against one text per label.
- Captions: the first ``--captions`` test clips against all their reference captions, through
  `eval.caption_metrics` (aac-metrics); SPICE and SPIDEr only where the CoreNLP jars are installed.
- Speed: captions and answers per second from wav files through the whole API (codec included), batched.
- ``--compare``: other exports (connectors, encoder modes at equal budget) on the QA and retrieval columns.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from multimodal.api import AudioLanguageModel
from multimodal.data import ALMData, read_manifest
from multimodal.scenes import QUESTIONS
from multimodal.text import normalize_answer
from multimodal.train import answer_items as answers  # the trainer's in-run evaluation reads them too

FIRST_WORDINGS = 4  # each question type's first training wordings: the only ones until version 3


def accuracy(items: list, predicted: list[str]) -> dict:
    """Overall and per-type share of exact (normalized) matches."""
    per: dict[str, list[int]] = {}
    for q, p in zip(items, predicted):
        per.setdefault(q.type, []).append(normalize_answer(p) == normalize_answer(q.answer))
    flat = [x for v in per.values() for x in v]
    return {"overall": float(np.mean(flat)) if flat else float("nan"), "n": len(flat),
            **{k: float(np.mean(v)) for k, v in sorted(per.items())}}  # fmt: skip


def by_wording(items: list, predicted: list[str]) -> dict:
    """Accuracy on the questions in each type's first `FIRST_WORDINGS` training wordings and in the later ones,
    so models trained on different wording sets are also compared on the wordings they all trained on."""
    suffix = [q.template.rpartition(".")[2] for q in items]  # "count.3": training wording 3 of its type
    index = [int(x) if x.isdigit() else -1 for x in suffix]
    out = {}
    for key, keep in (("first", lambda i: 0 <= i < FIRST_WORDINGS), ("later", lambda i: i >= FIRST_WORDINGS)):
        part = [(q, p) for q, p, i in zip(items, predicted, index) if keep(i)]
        out[key] = {"accuracy": accuracy(*zip(*part))["overall"] if part else float("nan"), "n": len(part)}
    return out


def reworded(alm: AudioLanguageModel, data: ALMData, items: list, predicted: list[str],
             types=("exist_speech", "exist_music")) -> dict:  # fmt: skip
    """The unseen split's yes/no questions (``items``, already answered as ``predicted``) asked again in the
    type's first training wording and in its held-out wording, about the same clips: tells the recordings'
    part in an error from the unseen wording's part."""
    out = {}
    for t in types:
        keep = [(q, p) for q, p in zip(items, predicted) if q.type == t]
        if not keep:
            continue
        asked, got = zip(*keep)
        out[t] = {"n": len(asked), "unseen": accuracy(asked, got)["overall"]}
        for key, wording in (("training", QUESTIONS[t]["seen"][0]), ("heldout", QUESTIONS[t]["heldout"])):
            again = [replace(q, question=wording) for q in asked]
            out[t][key] = accuracy(again, answers(alm, data, again))["overall"]
    return out


def majority(train_rows: list[dict], items: list) -> tuple[dict, dict]:
    """Accuracy of always answering the train split's most common answer, overall and per type."""
    overall = Counter(normalize_answer(q["answer"]) for r in train_rows for q in r.get("qa", []))
    by_type: dict[str, Counter] = {}
    for r in train_rows:
        for q in r.get("qa", []):
            by_type.setdefault(q["type"], Counter())[normalize_answer(q["answer"])] += 1
    top = overall.most_common(1)[0][0]
    glob = accuracy(items, [top] * len(items))
    typed = accuracy(items, [by_type.get(q.type, overall).most_common(1)[0][0] for q in items])
    return glob, typed


def retrieval(alm: AudioLanguageModel, data: ALMData, n: int = 100) -> dict:
    rows = [i for i, r in enumerate(data.rows) if r.get("captions")][:n]
    with torch.no_grad():
        audio = alm.net.audio_embedding(*data.states(rows))
        text = alm.net.text_embedding([data.pieces(data.rows[i]["captions"][0]["text"]) for i in rows])
    sim = (audio @ text.T).numpy()
    target = np.arange(len(rows))

    def recall(s: np.ndarray, k: int) -> float:
        ranks = (s > s[target, target][:, None]).sum(1)
        return float((ranks < k).mean())

    return {"candidates": len(rows), "a2t_r1": recall(sim, 1), "a2t_r5": recall(sim, 5),
            "t2a_r1": recall(sim.T, 1), "t2a_r5": recall(sim.T, 5)}  # fmt: skip


def zero_shot(alm: AudioLanguageModel, data: ALMData) -> dict:
    """Single-event clips ranked against one text per label: sound labels and instruments."""
    out = {}
    for kind, key, template in (("sfx", "label", "the sound of {}"), ("music", "instrument", "a {} plays")):
        rows, labels = [], []
        for i, r in enumerate(data.rows):
            ev = r.get("events") or []
            if len(ev) == 1 and ev[0].get("kind") == kind and ev[0].get(key):
                rows.append(i)
                labels.append(str(ev[0][key]))
        names = sorted(set(labels))
        if len(names) < 2:
            continue
        with torch.no_grad():
            audio = alm.net.audio_embedding(*data.states(rows))
            text = alm.net.text_embedding([data.pieces(template.format(n)) for n in names])
        best = (audio @ text.T).argmax(1).numpy()
        out[kind] = {"accuracy": float(np.mean([names[b] == lab for b, lab in zip(best, labels)])),
                     "clips": len(rows), "labels": len(names), "chance": 1 / len(names)}  # fmt: skip
    return out


def captions(alm: AudioLanguageModel, data: ALMData, n: int) -> tuple[dict, list]:
    rows = [i for i, r in enumerate(data.rows) if r.get("captions")][:n]
    preds = []
    with torch.no_grad():
        for s in range(0, len(rows), 32):
            chunk = rows[s : s + 32]
            states, mask = data.states(chunk)
            preds += [alm.vocab.decode_text(g) for g in alm.net.generate(states, mask, [[]] * len(chunk), 40)]
    refs = [[c["text"] for c in data.rows[i]["captions"]] for i in rows]
    examples = [
        {"id": data.rows[i]["id"], "caption": p, "references": r[:2]} for i, p, r in zip(rows, preds, refs)
    ]
    from eval.caption_metrics import caption_scores, metrics_available

    ok, why = metrics_available(spice=False)
    if not ok:
        return {"unavailable": why}, examples
    ok_spice, _ = metrics_available(spice=True)
    return caption_scores(preds, refs, spice=ok_spice), examples


def speed(alm: AudioLanguageModel, root: Path, rows: list[dict], n: int = 64) -> dict:
    paths = [root / r["path"] for r in rows[:n]]
    seconds = sum(r.get("seconds", 0) for r in rows[:n])
    t = time.perf_counter()
    for s in range(0, len(paths), 16):
        alm.caption(paths[s : s + 16])
    cap = time.perf_counter() - t
    t = time.perf_counter()
    for s in range(0, len(paths), 16):
        alm.ask(paths[s : s + 16], "how many sounds are there?")
    ask = time.perf_counter() - t
    return {"clips": len(paths), "audio_seconds": seconds, "captions_per_s": len(paths) / cap,
            "answers_per_s": len(paths) / ask, "threads": torch.get_num_threads()}  # fmt: skip


def evaluate_alm(model: str, data: str | Path, question_only: str | None = None, compare: dict | None = None,
                 num_captions: int = 200, log=print) -> dict:  # fmt: skip
    """The whole evaluation as a JSON-able dict (see the module docstring)."""
    root = Path(data)
    train_rows = read_manifest(root, "train")
    models = {"shipped": model}
    if question_only:
        models["question-only"] = question_only
    models.update(compare or {})
    out: dict = {}
    for name, spec in models.items():
        alm = AudioLanguageModel.from_pretrained(spec)
        entry = {"model": str(spec), "config": alm.provenance.get("config"),
                 "trained_steps": alm.provenance.get("trained_steps")}  # fmt: skip
        for split in ("test", "unseen"):
            data_split = ALMData(root, split, alm.vocab, alm.net.encoder)
            seen = [q for q in data_split.qa if not q.heldout]
            held = [q for q in data_split.qa if q.heldout]
            predicted = answers(alm, data_split, seen)
            entry[split] = accuracy(seen, predicted)
            if held:
                entry[f"{split}_heldout"] = accuracy(held, answers(alm, data_split, held))
            if split == "unseen":
                entry["unseen_reworded"] = reworded(alm, data_split, seen, predicted)
            if split == "test":
                entry["test_by_wording"] = by_wording(seen, predicted)
                entry["retrieval"] = retrieval(alm, data_split)
                if name == "shipped":
                    entry["majority"], entry["majority_by_type"] = majority(train_rows, seen)
                    entry["zero_shot"] = zero_shot(alm, data_split)
                    entry["captions"], entry["caption_examples"] = captions(alm, data_split, num_captions)
                    entry["speed"] = speed(alm, root, data_split.rows)
        out[name] = entry
        log(f"{name}: test {entry['test']['overall']:.3f}, unseen {entry['unseen']['overall']:.3f}")
    return {"data": str(root), "models": out}


def _pct(x: float | None) -> str:
    return "-" if x is None or x != x else f"{100 * x:.1f}"


def render(report: dict) -> str:
    m = report["models"]
    ship = m["shipped"]
    types = sorted(k for k in ship["test"] if k not in ("overall", "n"))
    cols = ["shipped"] + [k for k in m if k != "shipped"]
    lines = ["QA accuracy (%) on the test split, training wordings; majority = the train split's most common "
             "answer (overall / per question type):", "",
             "| question type | n | " + " | ".join(cols) + " | majority | majority by type |",
             "|---|---:|" + "---:|" * (len(cols) + 2)]  # fmt: skip
    for t in ["overall", *types]:
        row = [_pct(m[c]["test"].get(t)) for c in cols]
        n = ship["test"]["n"] if t == "overall" else ""
        lines.append(f"| {t} | {n} | " + " | ".join(row) + f" | {_pct(ship['majority'].get(t))} | "
                     f"{_pct(ship['majority_by_type'].get(t))} |")  # fmt: skip
    lines += ["", "Held-out wordings (test) and the unseen split (real recordings, new wordings):", "",
              "| model | test held-out wordings | unseen overall | " + " | ".join(
                  sorted(k for k in ship["unseen"] if k not in ("overall", "n"))) + " |"]  # fmt: skip
    ut = sorted(k for k in ship["unseen"] if k not in ("overall", "n"))
    lines.append("|---|---:|---:|" + "---:|" * len(ut))
    for c in cols:
        e = m[c]
        lines.append(f"| {c} | {_pct(e.get('test_heldout', {}).get('overall'))} | {_pct(e['unseen']['overall'])} | "
                     + " | ".join(_pct(e["unseen"].get(t)) for t in ut) + " |")  # fmt: skip
    if all("test_by_wording" in m[c] for c in cols):
        lines += ["", f"The test split's training-wording questions by wording: each type's first {FIRST_WORDINGS} "
                  "(the only training wordings until version 3) and the later ones, %:", "",
                  "| model | first | later |", "|---|---:|---:|"]  # fmt: skip
        for c in cols:
            w = m[c]["test_by_wording"]
            lines.append(f"| {c} | {_pct(w['first']['accuracy'])} (n {w['first']['n']}) | "
                         f"{_pct(w['later']['accuracy'])} (n {w['later']['n']}) |")  # fmt: skip
    rew = [(c, t, v) for c in cols for t, v in m[c].get("unseen_reworded", {}).items()]
    if rew:
        lines += ["", "The unseen split's yes/no questions about the same clips, asked in the unseen wording, in the "
                  "type's first training wording and in its held-out wording, %:", "",
                  "| model | type | n | unseen wording | training wording | held-out wording |",
                  "|---|---|---:|---:|---:|---:|"]  # fmt: skip
        for c, t, v in rew:
            lines.append(
                f"| {c} | {t} | {v['n']} | {_pct(v['unseen'])} | {_pct(v['training'])} | {_pct(v['heldout'])} |"
            )
    lines += ["", "Retrieval among 100 test clips (first caption each), %:", "",
              "| model | audio->text R@1 | R@5 | text->audio R@1 | R@5 |", "|---|---:|---:|---:|---:|"]  # fmt: skip
    for c in cols:
        r = m[c]["retrieval"]
        lines.append(
            f"| {c} | {_pct(r['a2t_r1'])} | {_pct(r['a2t_r5'])} | {_pct(r['t2a_r1'])} | {_pct(r['t2a_r5'])} |"
        )
    zs = ship.get("zero_shot", {})
    if zs:
        lines += ["", "Zero-shot classification (single-event test clips against one text per label):", ""]
        for k, v in zs.items():
            lines.append(f"- {k}: {_pct(v['accuracy'])}% over {v['clips']} clips, {v['labels']} labels "
                         f"(chance {_pct(v['chance'])}%)")  # fmt: skip
    cap = ship.get("captions", {})
    lines += ["", "Captions (first test clips against all their references; aac-metrics):", ""]
    if "unavailable" in cap:
        lines.append(f"- not measured: {cap['unavailable']}")
    else:
        lines.append("| " + " | ".join(cap) + " |")
        lines.append("|" + "---:|" * len(cap))
        lines.append("| " + " | ".join("-" if v != v else f"{v:.3f}" for v in cap.values()) + " |")
    for ex in ship.get("caption_examples", [])[:3]:
        lines.append(f'- `{ex["id"]}`: "{ex["caption"]}" (reference: "{ex["references"][0]}")')
    sp = ship.get("speed", {})
    if sp:
        lines += ["", f"Speed, whole API from wav files (codec included), batches of 16, {sp['threads']} threads: "
                  f"{sp['captions_per_s']:.1f} captions/s and {sp['answers_per_s']:.1f} answers/s over "
                  f"{sp['clips']} clips ({sp['audio_seconds']:.0f} s of audio)."]  # fmt: skip
    return "\n".join(lines)
