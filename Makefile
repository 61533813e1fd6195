# The README's two commands: `make demo` and `make test`. Both set up .venv from nothing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup test lint demo data lm-data unseen train-codec train-lm bench bench-lm bench-objectives data-alm train-alm bench-alm bench-alm-connectors report clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	./scripts/install_system_deps.sh
	$(BIN)/pip install -q -c constraints.txt -e '.[test,asr,visqol,datasets]'
	# caption metrics for the ALM tests; exit 3 = all but SPICE/SPIDEr (CoreNLP 3.6.0 is on Maven Central only)
	./scripts/install_caption_metrics.sh || [ $$? -eq 3 ]
	touch $(STAMP)

setup: $(STAMP)

# No test may reach a model hub: CI has no network beyond the package registries.
test: $(STAMP)
	$(BIN)/ruff check .
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(BIN)/python -m pytest tests

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

demo: $(STAMP)
	$(BIN)/python -m eval.demo --out demo_out

data: $(STAMP)
	$(BIN)/pip install -q -c constraints.txt -e '.[data]'
	$(BIN)/audiotok data build --out data/corpus

# Token stores of the corpus for the token LM, with the default codec: one per split, and the test split per kind.
# Rerunning resumes: tokenize skips clips a store already holds. A store with a failed clip fails the target last.
lm-data: data
	$(BIN)/python scripts/corpus_lists.py --data data/corpus
	rc=0; for s in train valid test test-speech test-music test-sfx; do \
		$(BIN)/audiotok tokenize @data/corpus/lists/$$s.jsonl -o data/tokens/$$s || rc=1; \
		$(BIN)/audiotok info data/tokens/$$s; done; exit $$rc

# Real voices the corpus never trains on, for the codec's out-of-domain check: single words (Debian
# ktuberling-data), acted sentences (the Dutch dub of Fish Fillets NG; the corpus has its Czech one) and
# English game voice lines at 11 kHz (Warzone 2100); and the words again with nothing above 5.5 kHz.
unseen: $(STAMP)
	test -d /usr/share/ktuberling/sounds || (apt-get update -q && apt-get install -y -q --no-install-recommends ktuberling-data)
	$(BIN)/python -m eval.unseen --out data/unseen
	test -d /usr/share/games/fillets-ng/sound/briefcase/nl || (apt-get update -q && apt-get install -y -q --no-install-recommends fillets-ng-data-nl)
	$(BIN)/python -m eval.unseen --set fillets-nl --out data/unseen-fillets
	test -f /usr/share/games/warzone2100/base.wz || (apt-get update -q && apt-get install -y -q --no-install-recommends warzone2100-data)
	$(BIN)/python -m eval.unseen --set warzone --out data/unseen-warzone
	$(BIN)/python -m eval.unseen --bandlimit 11025 --out data/unseen-lp
	test -d /usr/share/games/neverball/bgm || (apt-get update -q && apt-get install -y -q --no-install-recommends neverball-data)
	$(BIN)/python -m eval.unseen --background neverball-music --snr 10 --out data/unseen-music

train-codec: $(STAMP)
	$(BIN)/accelerate launch --num_processes 1 --cpu -m codec.train --config configs/codec/default.yaml

# The shipped token LM's recipe (tokenlm/weights/default/RECIPE.md): make lm-data first.
train-lm: $(STAMP)
	# version 1: 2500 steps from scratch (fp32 on the CPU it ran on)
	$(BIN)/accelerate launch --num_processes 1 --cpu -m tokenlm.train --config configs/tokenlm/small.yaml \
		--data data/tokens/train --out runs/tokenlm-small --steps 2500 --threads 2
	# version 2: 12500 more steps from version 1's weights, a fresh optimizer and a 1e-3 cosine schedule
	$(BIN)/accelerate launch --num_processes 1 --cpu -m tokenlm.train --config configs/tokenlm/small.yaml \
		--data data/tokens/train --out runs/tokenlm-v2 --init runs/tokenlm-small/export --steps 12500 --lr 1e-3 --threads 2
	$(BIN)/python -m tokenlm.export runs/tokenlm-v2/export --out tokenlm/weights/default

bench-lm: $(STAMP)
	$(BIN)/python bench/tokenlm_train_speed.py
	$(BIN)/python bench/tokenlm_generate_speed.py
	$(BIN)/python bench/tokenlm_compress.py
	if [ -f data/unseen/manifest.jsonl ]; then $(BIN)/audiotok tokenize data/unseen -o data/tokens/unseen-words --quiet; \
		$(BIN)/python bench/tokenlm_compress.py --stores data/tokens/unseen-words --limit 65 \
		--title "Token LM compression on unseen words (ktuberling-data)"; fi
	$(BIN)/python bench/tokenlm_patterns.py

# Causal vs masked token prediction at equal size, data and compute (issue 27): two LMs that differ only in
# their objective, 1000 steps each on the corpus train store, then each on its own objective and the probes of
# their layers (BENCHMARKS.md, "Token LM: causal vs masked"). make lm-data and make data-alm first.
bench-objectives: $(STAMP)
	for o in causal-parallel masked; do $(BIN)/accelerate launch --num_processes 1 --cpu -m tokenlm.train \
		--config configs/tokenlm/$$o-small.yaml --data data/tokens/train --out runs/lm-$$o --steps 1000 --quiet; done
	$(BIN)/python bench/lm_objectives.py --causal runs/lm-causal-parallel/export --masked runs/lm-masked/export

# The audio-language model's paired set (multimodal/scenes.py): compositional scenes and real clips with
# captions and questions, from installed packages, tokenized with the default codec. Rerunning resumes.
data-alm: data
	test -d /usr/share/ktuberling/sounds || (apt-get update -q && apt-get install -y -q --no-install-recommends ktuberling-data)
	test -d /usr/share/games/neverball || (apt-get update -q && apt-get install -y -q --no-install-recommends neverball-data)
	$(BIN)/audiotok data build-alm --out data/alm
	rc=0; for s in train valid test unseen; do \
		$(BIN)/audiotok tokenize @data/alm/lists/$$s.jsonl -o data/alm/tokens/$$s --quiet || rc=1; done; exit $$rc

# The shipped audio-language model's recipe (multimodal/weights/default/RECIPE.md): make data-alm first.
train-alm: $(STAMP)
	# on the token LM it was trained on (version 1, pinned in multimodal/weights/default/lm)
	$(BIN)/accelerate launch --num_processes 1 --cpu -m multimodal.train --config configs/multimodal/small.yaml \
		--data data/alm --out runs/alm-small --steps 4000 --threads 2 --lm multimodal/weights/default/lm
	# version 6 resumes version 5's step 4000 on a 10000-step schedule (the lr restarts at 6.7e-4)
	$(BIN)/accelerate launch --num_processes 1 --cpu -m multimodal.train --config configs/multimodal/small.yaml \
		--data data/alm --out runs/alm-small --steps 10000 --threads 2 --lm multimodal/weights/default/lm
	$(BIN)/python -m multimodal.export runs/alm-small/export --out multimodal/weights/default --config small

# The question-only baseline (the shipped design with the audio withheld, 600 steps on the same set), then the
# test and unseen splits, retrieval, zero-shot, caption metrics and speed of the shipped model beside it
# (BENCHMARKS.md, "Audio-language model"; the section's command line adds --compare for earlier versions).
bench-alm: $(STAMP)
	./scripts/install_caption_metrics.sh || echo "caption metrics: SPICE/SPIDEr unavailable (see above)"
	$(BIN)/accelerate launch --num_processes 1 --cpu -m multimodal.train --config configs/multimodal/question-only.yaml \
		--data data/alm --out runs/alm-question-only --steps 600 --threads 2 --quiet
	$(BIN)/python bench/alm_eval.py --question-only runs/alm-question-only/export

# Connectors and encoder modes at equal budget (300 steps each; BENCHMARKS.md, "Audio-language model on the
# first paired set"). It rewrites the "Audio-language model" section with these columns.
ALM_COMPARE := small qformer question-only top lora
bench-alm-connectors: $(STAMP)
	for c in $(ALM_COMPARE); do $(BIN)/accelerate launch --num_processes 1 --cpu -m multimodal.train \
		--config configs/multimodal/$$c.yaml --data data/alm --out runs/alm-cmp-$$c --steps 300 --threads 1 --quiet; done
	$(BIN)/python bench/alm_eval.py --question-only runs/alm-cmp-question-only/export \
		--compare prefix-300=runs/alm-cmp-small/export,qformer-300=runs/alm-cmp-qformer/export,top-300=runs/alm-cmp-top/export,lora-300=runs/alm-cmp-lora/export

# One page of the default codec, the small token LM and the shipped audio-language model (README, "Evaluation
# and the report"): quick codec, robustness and LM evaluations here, plus the probe and ALM benches' JSON where
# they have run (make bench-alm; python bench/probes.py). make lm-data first. Open report/index.html.
REPORT_RUNS := runs/report-inputs $(dir $(firstword $(wildcard runs/probe-bench/probe.json bench/results/probes/probe.json))) \
	$(wildcard bench/results/alm bench/results/tokenlm_small)
report: $(STAMP)
	mkdir -p runs/report-inputs
	$(BIN)/audiotok eval codec data/corpus --split test --num-codebooks 3,6,12 --limit 8 --out runs/report-inputs/report.json --quiet
	$(BIN)/audiotok eval robustness data/corpus --split test --limit 8 --out runs/report-inputs/robustness.json --quiet
	$(BIN)/audiotok eval lm data/tokens/test-speech data/tokens/test-music data/tokens/test-sfx --limit 20 \
		--out runs/report-inputs/lm.json --quiet
	$(BIN)/audiotok eval report $(REPORT_RUNS) -o report --clips examples/speech.wav examples/music.wav examples/sfx.wav

bench: $(STAMP)
	$(BIN)/python bench/codec_speed.py
	$(BIN)/python bench/codec_denormal.py
	$(BIN)/python bench/codec_quality.py
	if [ -f data/unseen/manifest.jsonl ]; then $(BIN)/python bench/codec_quality.py --corpus data/unseen \
		--limit 100 --title "Codec quality on unseen real speech (ktuberling-data)"; \
	else echo "run make unseen first for the unseen-speech table"; fi
	if [ -f data/unseen-fillets/manifest.jsonl ]; then $(BIN)/python bench/codec_quality.py --corpus data/unseen-fillets \
		--limit 160 --title "Codec quality on unseen acted sentences (fillets-ng-data-nl)"; fi
	if [ -f data/unseen-warzone/manifest.jsonl ]; then $(BIN)/python bench/codec_quality.py --corpus data/unseen-warzone \
		--limit 100 --title "Codec quality on unseen game voice lines (warzone2100-data)"; fi
	if [ -f data/unseen-lp/manifest.jsonl ]; then $(BIN)/python bench/codec_quality.py --corpus data/unseen-lp \
		--limit 100 --title "Codec quality on unseen words, band-limited to 5.5 kHz"; fi
	if [ -f data/unseen-music/manifest.jsonl ]; then $(BIN)/python bench/codec_quality.py --corpus data/unseen-music \
		--limit 100 --title "Codec quality on unseen words over music, 10 dB below"; fi
	$(BIN)/python bench/codec_quality.py --source 0ad-data --limit 40 \
		--title "Codec quality on recorded game audio (0ad-data, test split)"
	$(BIN)/python bench/codec_quality.py --visqol --limit 12 --baselines opus6,opus12,codec2_1600 \
		--title "Codec quality with ViSQOL v3 (test split, 12 items per kind)"
	$(BIN)/python bench/codec_quality.py --language en --wer --crop-seconds 0 --limit 100 \
		--baselines opus6,opus12,codec2_1600,codec2_3200 --title "Codec intelligibility: Whisper WER on English test speech"
	if [ -f data/unseen-warzone/manifest.jsonl ]; then $(BIN)/python bench/codec_quality.py --corpus data/unseen-warzone \
		--wer --crop-seconds 0 --limit 100 --baselines opus6,opus12,codec2_1600,codec2_3200 \
		--title "Codec intelligibility: Whisper WER on unseen game voice lines (warzone2100-data)"; fi
	$(BIN)/python bench/codec_oracle.py
	$(BIN)/python bench/train_step_speed.py

clean:
	rm -rf $(VENV) demo_out .pytest_cache
