"""`make demo`: the main job on the embedded default codec.

Tokenizes the bundled example clips (examples/: speech, music, a sound effect) at 1.5, 3 and 6 kbps,
decodes them, writes the decoded wavs, and prints bits per second and quality against the originals,
with Opus and Codec2 measured in the same run where their command-line tools are installed. Then the
shipped audio-language model captions the bundled scene (examples/alm/scene.wav) and answers questions
about it, printed beside the references.

    python -m eval.demo [--out demo_out] [--codec default] [--num-codebooks 3,6,12] [--alm default]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import soundfile as sf
import torch

from codec.audio import load_audio
from codec.registry import load_codec
from eval.baselines import make_baseline, unavailable_reason
from eval.codec_eval import evaluate_codec

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Tokenize, decode and score the bundled example clips.")
    parser.add_argument(
        "--out", default="demo_out", help="folder for decoded wavs and the report (default: demo_out)"
    )
    parser.add_argument(
        "--codec", default="default", help="codec name or folder (default: the shipped codec)"
    )
    parser.add_argument("--num-codebooks", default="3,6,12", help="comma-separated codebook counts to decode")
    parser.add_argument(
        "--examples", default=str(EXAMPLES), help="folder of clips named speech/music/sfx*.wav"
    )
    parser.add_argument("--alm", default="default", help="audio-language model (default: the shipped one)")
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))

    codec = load_codec(args.codec)
    ks = [int(k) for k in args.num_codebooks.split(",")]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    clips = sorted(Path(args.examples).glob("*.wav"))
    if not clips:
        print(f"audiotok demo: no .wav clips in {args.examples}", file=sys.stderr)
        return 1
    print(
        f"codec {codec.codec_id}: {codec.sample_rate} Hz, {codec.frame_rate:g} frames/s, "
        f"{codec.num_codebooks} codebooks x {codec.codebook_size}"
    )

    # One warm-up round trip, so the first clip's speed is not the one-time start-up cost.
    codec.decode(codec.encode(torch.zeros(1, codec.sample_rate), codec.sample_rate, num_codebooks=max(ks)))
    for clip in clips:
        audio = load_audio(clip, target_sr=codec.sample_rate)
        for k in ks:
            start = time.perf_counter()
            tokens = codec.encode(audio.wav, codec.sample_rate, num_codebooks=k)
            wav = codec.decode(tokens)[0, 0, : audio.num_samples]
            elapsed = time.perf_counter() - start
            target = out / f"{clip.stem}.k{k}.wav"
            sf.write(target, wav.numpy(), codec.sample_rate)
            print(
                f"  {clip.name}: {k:2d} codebooks = {tokens.bits_per_second() / 1000:.2f} kbps, "
                f"{tokens.num_frames} frames, encode+decode {audio.seconds / elapsed:.0f}x real time -> {target}"
            )

    baselines = []
    for name in ("opus6", "opus12", "codec2_1600"):
        baseline = make_baseline(name)
        reason = unavailable_reason(baseline)
        if reason:
            print(f"  (baseline {name} skipped: {reason})")
        else:
            baselines.append(baseline)
    items = [
        (clip, next((k for k in ("speech", "music", "sfx") if clip.stem.startswith(k)), "sfx"))
        for clip in clips
    ]
    report = evaluate_codec(
        codec, items, num_codebooks_list=ks, baselines=baselines, source=str(args.examples)
    )
    report.to_json(out / "report.json")
    markdown = report.to_markdown()
    (out / "report.md").write_text(markdown)
    print()
    print(markdown)
    print(f"decoded wavs and report.json / report.md in {out}/")
    return ask_about_scene(EXAMPLES / "alm" / "scene.wav", args.alm)


# The scene's reference caption and the answers its questions have (examples/ATTRIBUTION.md).
SCENE_REFERENCE = (
    "First low notes on a violin; after that glass shatters; after that a female voice says 'six'."
)
SCENE_QUESTIONS = {
    "is there breaking glass?": "yes",
    "name the instrument.": "violin",
    "is the violin heard earlier than the speech?": "yes",
    "what word does the speaker say?": "six",
}


def ask_about_scene(scene: Path, model: str) -> int:
    """The audio-language model's caption of the bundled scene and its answers, beside the references."""
    from multimodal.api import AudioLanguageModel

    alm = AudioLanguageModel.from_pretrained(model)
    print(f"\naudio-language model on {scene.relative_to(EXAMPLES.parent)}:")
    print(f"  caption:   {alm.caption(scene)}")
    print(f"  reference: {SCENE_REFERENCE}")
    answers = alm.ask([scene] * len(SCENE_QUESTIONS), list(SCENE_QUESTIONS))
    for (question, truth), answer in zip(SCENE_QUESTIONS.items(), answers):
        print(f"  Q: {question}  A: {answer}  (reference: {truth})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
