# robo_player: `make demo` plays a bundled piece on the simulated 88-key piano;
# `make test` runs the tests. Both create .venv and install what they need.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
SPEC   ?= piano-88-grand
PIECE  ?= default
TRUTH_SEED ?= 1
OUT    ?= out
# how the calibration hears: audio (sim://'s default, a microphone in the room and the
# detector, as on a real piano) or notes (the note-level sensor, each note's exact pitch,
# onset and loudness: no real board has one; kept for comparison, docs/calibration.md)
SENSOR ?= audio
# through audio: more of the room's options (e.g. ROOM='&gain_db=-31') and the microphone
# chain's measured gain (MIC_GAIN=-30.8 or -30.8:0.2: calibrate --mic-gain-db, docs/hearing.md)
ROOM   ?=
# the simulated piano's voice (docs/simulator.md "Voices"): rich (sim://'s default since
# session 19: unisons, double decay, hammer thump, weak bass fundamentals) or plain
VOICE  ?= rich
VOICE_OPT = $(if $(filter audio,$(SENSOR)),&voice=$(VOICE),)
MIC_GAIN ?=
MIC_GAIN_ARG = $(if $(MIC_GAIN),--mic-gain-db=$(MIC_GAIN),)
# through audio: the calibration hears its takes from this many places in the room, the
# microphone moved between them (the simulator moves its own; on a real piano calibrate
# asks for it): a room's colour of each key averages over the places
# (docs/calibration.md, "Session 25, positions" and "Session 25, lead": with the power
# sum's windows from 2 ms, seed 1 velocity error 1.89 from 5 places, 1.96 from 4; the
# mean over four truths and rooms 2.06 from 5, 2.11 from 4; 1: one place, as before)
MIC_POSITIONS ?= 5
MIC_POS_ARG = $(if $(filter audio,$(SENSOR)),--mic-positions=$(MIC_POSITIONS),)
GUITAR_SENSOR ?= audio
GUITAR_SPEC  ?= guitar-slider
GUITAR_PIECE ?= bwv66.6

.PHONY: demo demo-guitar test bench lint firmware clean

$(VENV)/.core: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.dev: $(VENV)/.core
	$(BIN)/pip install -q -e '.[dev,model]'
	touch $@

demo: $(VENV)/.core
	mkdir -p $(OUT)
	$(BIN)/robo-player calibrate --spec $(SPEC) --truth-seed $(TRUTH_SEED) --port 'sim://?sensor=$(SENSOR)$(VOICE_OPT)$(ROOM)' \
		$(MIC_GAIN_ARG) $(MIC_POS_ARG) --out $(OUT)/calibration.yaml
	$(BIN)/robo-player play $(PIECE) --spec $(SPEC) --truth-seed $(TRUTH_SEED) --port 'sim://?voice=$(VOICE)' \
		--calibration $(OUT)/calibration.yaml \
		--report $(OUT)/report.json --wav $(OUT)/performance.wav --plot $(OUT)/pianoroll.png

# the guitar: calibrate its pickers and frets by listening, then play (docs/guitar.md)
demo-guitar: $(VENV)/.core
	mkdir -p $(OUT)
	$(BIN)/robo-player calibrate --spec $(GUITAR_SPEC) --port 'sim://?sensor=$(GUITAR_SENSOR)$(ROOM)' \
		--truth-seed $(TRUTH_SEED) $(MIC_GAIN_ARG) --out $(OUT)/guitar-calibration.yaml
	$(BIN)/robo-player play $(GUITAR_PIECE) --spec $(GUITAR_SPEC) --truth-seed $(TRUTH_SEED) \
		--calibration $(OUT)/guitar-calibration.yaml --report $(OUT)/guitar-report.json \
		--wav $(OUT)/guitar.wav --plot $(OUT)/guitar-roll.png

test: $(VENV)/.dev
	$(BIN)/python -m pytest -q

bench: $(VENV)/.dev
	$(BIN)/python bench/run_all.py

lint: $(VENV)/.dev
	$(BIN)/ruff check robo_player tests bench scripts
	$(BIN)/mypy

firmware:
	$(MAKE) -C firmware host avr sim

clean:
	rm -rf $(OUT) build firmware/build .pytest_cache
