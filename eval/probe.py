"""Representation probes: how much of a clip's content a frozen feature holds, read by a linear probe and a
small MLP, against log-mel in the same run (``audiotok eval probe``).

Tasks come from the paired set of `multimodal` (``data/alm``: ``{train,test}.jsonl`` rows with ``events``).
A task example is one *isolated* event, an event that overlaps no other event of its row (a one-event row,
or one event of a chain scene), cropped to its own span so the probe is about that sound; the background
noise of a scene stays. ``single_event=True`` keeps one-event rows only (few music and gender examples).
Train on the train split, score on the test split (their source files are disjoint). Per task, examples
are capped (the first by a hash of task and clip, so a cap is a fixed random subset), classes with fewer
than `MIN_TRAIN` train examples are dropped, and test examples of classes not kept are left out; a task
with fewer than two classes, or no test example, is dropped with its reason. Chance is the test accuracy
of the best constant answer (the test split's majority class).

Probes (features standardized on train, fixed seeds): multinomial logistic regression (scikit-learn,
lbfgs, C = 1), and an MLP with one hidden layer of 256 (torch, AdamW) early-stopped on a part of train held
out by source file (never on test). The features are in eval/probe_features.py.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from eval.probe_features import Clip, Models, cached_features, expand_features

MIN_TRAIN = 5
MAX_TRAIN, MAX_TEST = 1500, 400
VALID_PERCENT = 15  # of train sources, for the MLP's early stopping
# task -> (event kind, event field)
TASK_SPECS = {
    "language": ("speech", "language"),
    "letter": ("speech", "letter"),
    "word": ("speech", "word"),
    "gender": ("speech", "gender"),
    "sound-event": ("sfx", "label"),
    "instrument": ("music", "instrument"),
    "pitch-direction": ("music", "direction"),
    "register": ("music", "register"),
    "tempo": ("music", "tempo"),
}


@dataclass(frozen=True)
class Example:
    clip: Clip
    label: str
    source: str  # the event's source file: train/valid of the MLP are split by it


@dataclass
class Task:
    """One probe task: its kept examples and classes, or the ``reason`` it is dropped."""

    name: str
    train: list[Example]
    test: list[Example]
    classes: list[str] = field(default_factory=list)
    dropped_classes: dict[str, int] = field(default_factory=dict)  # class -> its train count (< MIN_TRAIN)
    reason: str | None = None

    def summary(self) -> dict:
        train, test = Counter(e.label for e in self.train), Counter(e.label for e in self.test)
        return {
            "classes": self.classes,
            "train_counts": {c: train[c] for c in self.classes},
            "test_counts": {c: test[c] for c in self.classes},
            "n_train": len(self.train),
            "n_test": len(self.test),
            "chance": max(test.values()) / len(self.test) if self.test else None,
            "dropped_classes": self.dropped_classes,
            "reason": self.reason,
        }


def _hash(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


def isolated_events(row: dict, single_event: bool = False) -> list[dict]:
    """The row's events that overlap no other event (with ``single_event``: its only event, if one)."""
    events = row.get("events") or []
    if single_event:
        return events if len(events) == 1 else []
    return [e for e in events if not any(o is not e and o["start"] < e["end"] and e["start"] < o["end"] for o in events)]  # fmt: skip


def _examples(root: Path, split: str, single_event: bool) -> dict[str, list[Example]]:
    path = root / f"{split}.jsonl"
    if not path.is_file():
        raise ValueError(f"{path} not found; build the paired set first (make alm-data) or pass --data DIR")
    out: dict[str, list[Example]] = {name: [] for name in TASK_SPECS}
    for line in path.read_text().splitlines():
        row = json.loads(line)
        for event in isolated_events(row, single_event):
            clip = Clip(root / row["path"], float(event["start"]), float(event["end"]))
            for name, (kind, key) in TASK_SPECS.items():
                if event.get("kind") == kind and event.get(key):
                    out[name].append(Example(clip, str(event[key]), str(event.get("source", row["path"]))))
    return out


def _cap(examples: list[Example], task: str, limit: int) -> list[Example]:
    return sorted(examples, key=lambda e: _hash(f"{task}\0{e.clip.key}"))[:limit]


def tasks(
    root: str | Path,
    names: Sequence[str] | None = None,
    max_train: int = MAX_TRAIN,
    max_test: int = MAX_TEST,
    single_event: bool = False,
) -> dict[str, Task]:
    """The probe tasks of the paired set ``root`` (all of `TASK_SPECS` or ``names``), dropped ones included."""
    unknown = sorted(set(names or ()) - set(TASK_SPECS))
    if unknown:
        raise ValueError(f"unknown task(s) {', '.join(unknown)}; choose from {', '.join(TASK_SPECS)}")
    root = Path(root)
    train, test = _examples(root, "train", single_event), _examples(root, "test", single_event)
    out = {}
    for name in names or TASK_SPECS:
        tr, te = _cap(train[name], name, max_train), _cap(test[name], name, max_test)
        counts = Counter(e.label for e in tr)
        classes = sorted(c for c, n in counts.items() if n >= MIN_TRAIN)
        task = Task(name, [e for e in tr if e.label in classes], [e for e in te if e.label in classes])
        task.classes = classes
        task.dropped_classes = {c: n for c, n in sorted(counts.items()) if n < MIN_TRAIN}
        if len(classes) < 2:
            task.reason = (
                f"{len(classes)} class(es) with >= {MIN_TRAIN} train examples ({len(tr)} train examples)"
            )
        elif not task.test:
            task.reason = "no test example of a kept class"
        out[name] = task
    return out


def linear_probe(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, seed: int = 0) -> np.ndarray:
    """Multinomial logistic regression on standardized features -> test predictions ``[N_test]``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000, random_state=seed))
    return probe.fit(x_train, y_train).predict(x_test)


def mlp_probe(
    x_train: np.ndarray,
    y_train: np.ndarray,
    groups: Sequence[str],
    x_test: np.ndarray,
    seed: int = 0,
    hidden: int = 256,
    max_epochs: int = 300,
    patience: int = 30,
) -> np.ndarray:
    """One-hidden-layer MLP, early-stopped on the train sources held out by hash -> test predictions."""
    valid = np.array([_hash(f"{seed}\0{g}") % 100 < VALID_PERCENT for g in groups])
    if valid.all() or not valid.any():  # too few sources to split by them: split examples instead
        valid = np.arange(len(groups)) % 7 == 0
    mean, std = x_train[~valid].mean(0), x_train[~valid].std(0) + 1e-6
    x = torch.from_numpy((x_train - mean) / std).float()
    xt = torch.from_numpy((x_test - mean) / std).float()
    y = torch.from_numpy(y_train).long()
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Linear(x.shape[1], hidden), nn.ReLU(), nn.Dropout(0.2), nn.Linear(hidden, int(y.max()) + 1)
    )
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-2)
    gen = torch.Generator().manual_seed(seed)
    fit, val = torch.from_numpy(np.flatnonzero(~valid)), torch.from_numpy(np.flatnonzero(valid))
    best, best_state, waited = (-1.0, 0.0), None, 0
    for _ in range(max_epochs):
        net.train()
        for batch in fit[torch.randperm(len(fit), generator=gen)].split(128):
            loss = nn.functional.cross_entropy(net(x[batch]), y[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            logits = net(x[val])
            score = ((logits.argmax(1) == y[val]).float().mean().item(), -nn.functional.cross_entropy(logits, y[val]).item())  # fmt: skip
        if score > best:
            best, best_state, waited = score, {k: v.clone() for k, v in net.state_dict().items()}, 0
        else:
            waited += 1
            if waited >= patience:
                break
    net.load_state_dict(best_state)
    net.eval()
    with torch.no_grad():
        return net(xt).argmax(1).numpy()


def run_probes(
    root: str | Path,
    features: Sequence[str],
    tasks: dict[str, Task],
    out: str | Path,
    models: Models | None = None,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Probe every kept task on every feature; features cached under ``out/features``; writes and returns
    the report (``out/probe.json``): task summaries, dropped tasks, skipped features, accuracies."""
    models = models or Models()
    out = Path(out)
    say = progress or (lambda _: None)
    skipped = {}
    if "alm" in features and not models.has_alm():
        skipped["alm"] = f"no audio-language model at {models.alm_path} (pass --alm PATH)"
    names = expand_features([f for f in features if f not in skipped], models)
    kept = {n: t for n, t in tasks.items() if t.reason is None}
    data = {}
    for split in ("train", "test"):
        clips = sorted({e.clip for t in kept.values() for e in getattr(t, split)}, key=lambda c: c.key)
        row = {c.key: i for i, c in enumerate(clips)}
        data[split] = (row, cached_features(names, clips, split, out / "features", models, say))
    results: dict[str, dict] = {}
    for task_name, task in kept.items():
        label = {c: i for i, c in enumerate(task.classes)}
        y_train = np.array([label[e.label] for e in task.train])
        y_test = np.array([label[e.label] for e in task.test])
        i_train = [data["train"][0][e.clip.key] for e in task.train]
        i_test = [data["test"][0][e.clip.key] for e in task.test]
        results[task_name] = {}
        for name in names:
            x_train, x_test = data["train"][1][name][i_train], data["test"][1][name][i_test]
            lin = linear_probe(x_train, y_train, x_test, seed)
            mlp = mlp_probe(x_train, y_train, [e.source for e in task.train], x_test, seed)
            results[task_name][name] = {
                "linear": float((lin == y_test).mean()),
                "mlp": float((mlp == y_test).mean()),
            }
            say(
                f"{task_name:16s} {name:14s} linear {results[task_name][name]['linear']:.3f} mlp {results[task_name][name]['mlp']:.3f}"
            )
    report = {
        "meta": {
            "data": str(root),
            "seed": seed,
            "min_train": MIN_TRAIN,
            "valid_percent": VALID_PERCENT,
            "codec": models.codec_spec,
            "lm": models.lm_spec,
            "alm": str(models.alm_path),
            "fingerprints": {n: models.fingerprint(n) for n in names},
        },  # fmt: skip
        "features": names,
        "skipped_features": skipped,
        "tasks": {n: t.summary() for n, t in tasks.items()},
        "dropped_tasks": {n: t.reason for n, t in tasks.items() if t.reason},
        "results": results,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "probe.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def to_markdown(report: dict) -> str:
    """Test accuracy (%), rows = tasks, columns = features, each cell ``linear / MLP``."""
    names = report["features"]
    lines = [
        "| task | classes | train / test | chance | " + " | ".join(names) + " |",
        "|---|---:|---:|---:|" + "---:|" * len(names),
    ]
    for task_name, cells in report["results"].items():
        t = report["tasks"][task_name]
        accs = " | ".join(f"{100 * cells[n]['linear']:.1f} / {100 * cells[n]['mlp']:.1f}" for n in names)
        lines.append(
            f"| {task_name} | {len(t['classes'])} | {t['n_train']} / {t['n_test']} | {100 * t['chance']:.1f} | {accs} |"
        )
    notes = [f"- task {n} dropped: {r}" for n, r in report["dropped_tasks"].items()]
    notes += [f"- feature {n} skipped: {r}" for n, r in report["skipped_features"].items()]
    body = "\n".join(lines) + "\n\nCells: test accuracy (%) of the linear probe / the MLP probe."
    return body + ("\n\n" + "\n".join(notes) if notes else "") + "\n"
