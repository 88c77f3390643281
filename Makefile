# Segmentation course kit. The two everyday commands are `make grade` and `make test`;
# both create the environment on first use through `make setup`.

SHELL := /bin/bash
PYTHON_BOOT ?= python3
# The grading/CI environment is requirements-lock.txt (exact versions, made from the loose
# requirements-dev.txt by `make lock`). Its virtual environment lives outside the clone, keyed by
# the lock's hash, so re-clones and CI runs reuse the ~5 GB torch install instead of reinstalling it.
#
# TORCH_VARIANT picks the torch build: `default` = the registry's default wheels (CUDA libraries
# included, they run fine on CPU); `cpu` = CPU-only wheels (a grading machine without a GPU: ~1 GB
# instead of ~5 GB); `cu126`, `cu118`, ... = a CUDA build for an older GPU driver. Any variant other
# than `default` installs torch from https://download.pytorch.org/whl/<variant> and leaves the lock's
# CUDA 13 libraries out (that build brings its own). Example: make setup TORCH_VARIANT=cpu
TORCH_VARIANT ?= default
TORCH_INDEX := $(if $(filter default,$(TORCH_VARIANT)),,https://download.pytorch.org/whl/$(TORCH_VARIANT))
REQ_HASH := $(shell cat requirements-lock.txt | sha256sum | cut -c1-16)
VENV_ROOT ?= $(HOME)/.cache/segkit
VENV := $(VENV_ROOT)/venv-$(REQ_HASH)$(if $(TORCH_INDEX),-$(TORCH_VARIANT))
PY := $(VENV)/bin/python
STAMP := $(VENV)/.segkit-ready
RUN := PYTHONPATH=$(CURDIR) $(PY)
JOBS ?= $(shell nproc)

.PHONY: help setup test test-fast proof results grade generate check-generated bench quality clean venv-path new-assignment lock lint format typecheck

help:
	@echo "make grade     grade submissions into grades/ (default: the bundled examples)"
	@echo "               SUBMISSIONS=dir [ASSIGNMENT=fcn] [STUDENT=id] [JOBS=n] [FORCE=1]"
	@echo "               refuses when the host cannot sandbox student code; UNSAFE_NO_SANDBOX=1 grades anyway"
	@echo "make test      the kit's test suite, as CI runs it (sets the environment up first)"
	@echo "make test-fast the suite without the slow tests (no grading runs, no notebook executions)"
	@echo "make setup     create the virtual environment ($(VENV)) from requirements-lock.txt [TORCH_VARIANT=cpu|cu126|...]"
	@echo "make lock      re-resolve requirements-lock.txt from requirements-dev.txt (pip-tools)"
	@echo "make lint      ruff check + ruff format --check (make format rewrites)"
	@echo "make typecheck mypy --strict on grader/ ([tool.mypy] in pyproject.toml; make test runs it)"
	@echo "make generate  regenerate notebooks/ (and starter/assignments.json) from solutions/"
	@echo "make check-generated  fail when notebooks/ drifted from solutions/ or an assignment is incomplete (bin/segkit check)"
	@echo "make venv-path the environment's folder (its bin/python runs the docs' python -m commands, PYTHONPATH=.)"
	@echo "make clean     remove grades/, build/, dist/ and pytest's cache"
	@echo "make release   dist/student-bundle.zip for students [ASSIGNMENTS=fcn,cam]"
	@echo "make gradescope dist/gradescope-<assignment>.zip autograders [ASSIGNMENT=fcn]"
	@echo "make slurm     a Slurm job array grading SHARDS=10 slices, then collect into OUT [SUBMISSIONS=dir] [SUBMIT=1]"
	@echo "               (docs/many-machines.md; by hand: make grade SHARD=2/4 OUT=x, then bin/segkit collect)"
	@echo "make gradebook COURSE=dir  scores of OUT (grades/) into nbgrader's gradebook.db, autograded/ and feedback/"
	@echo "               and OUT/lms-<a>.csv for an LMS [ASSIGNMENT=fcn] [STUDENT=id] [FORCE=1] (no COURSE: the CSV only)"
	@echo "make mutants   mutation-test the hidden checks (docs/mutation-report.md)"
	@echo "make proof     single-bug isolation, hostile corpus, correct alternatives (slow; not in make test)"
	@echo "make results   solution notebooks on real data (cpu profile) -> docs/results.md [ONLY=fcn] [REPORT_ONLY=1]"
	@echo "make similarity  submissions that share code (with each other, with a corpus) -> grades/similarity/<a>/"
	@echo "               [SUBMISSIONS=dir] [ASSIGNMENT=fcn] [ALPHA=0.01] (default: the bundled examples)"
	@echo "               ALPHA: each unit's threshold flags at most this share of independent pairs;"
	@echo "               THRESHOLD=0.6: one fixed score for every unit instead"
	@echo "make written     written answers per student (HTML) and rubric.csv -> grades/written/<a>/; MERGE=1 adds the scores"
	@echo "make bench     print the benchmarks' figures (grade_speed also writes docs/figures/grade_speed.json)"
	@echo "make docs      render the figures the docs quote from docs/figures/*.json (bin/segkit docs)"
	@echo "make quality   regenerate docs/quality.md (mutants, hostile corpus, benchmarks, CI time)"
	@echo "make new-assignment NAME=x [TITLE=...]  scaffold assignments/x and a one-unit solution"
	@echo "Every target is a thin alias of a verb of bin/segkit (this clone's code in this environment): bin/segkit --help"

setup: $(STAMP)

# No file prerequisites on purpose: the venv's path already encodes the requirements' content, and a
# fresh clone's newer file times must not trigger a 5 GB reinstall (or delete a venv in use).
$(STAMP):
	@echo ">> creating $(VENV) (first run downloads torch; later runs reuse it)"
	rm -rf $(VENV)
	mkdir -p $(VENV_ROOT)
	$(PYTHON_BOOT) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	grep -v -E '$(if $(TORCH_INDEX),^(nvidia-|triton==),^$$)' requirements-lock.txt > $(VENV)/requirements-lock.txt
	$(PY) -m pip install --quiet $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX)) -r $(VENV)/requirements-lock.txt
	$(PY) -m ipykernel install --prefix $(VENV) --name python3 >/dev/null
	$(PY) -c "import torch, torchvision, cv2, nbgrader; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"
	touch $(STAMP)

venv-path:
	@echo $(VENV)

# Re-resolve the lock after editing requirements*.txt; pip-tools runs from a throwaway environment.
lock:
	rm -rf build/piptools && $(PYTHON_BOOT) -m venv build/piptools
	build/piptools/bin/pip install --quiet pip-tools
	build/piptools/bin/pip-compile --quiet --allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links \
		--output-file=requirements-lock.txt requirements-dev.txt

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# The engine's types: mypy --strict on grader/ as [tool.mypy] in pyproject.toml says. Its cache lives
# in build/ (gitignored): a fresh clone checks cold, about 16 CPU-seconds (most of it reading torch's
# inline types); with the cache, under a second.
typecheck: setup
	$(RUN) -m mypy --cache-dir build/mypy-cache

format: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# Grade: with no SUBMISSIONS, the bundled example submissions generated from solutions/.
SUBMISSIONS ?=
ASSIGNMENT ?=
STUDENT ?=
FORCE ?=
UNSAFE_NO_SANDBOX ?=
RELEASE_STAGE ?=
OUT ?= grades
grade: setup
	$(RUN) -m segkit grade $(SUBMISSIONS) --out $(OUT) -j $(JOBS) \
		$(if $(ASSIGNMENT),--assignment $(ASSIGNMENT)) $(if $(STUDENT),--student $(STUDENT)) $(if $(FORCE),--force) \
		$(if $(UNSAFE_NO_SANDBOX),--unsafe-no-sandbox) $(if $(SHARD),--shard $(SHARD)) \
		$(if $(RELEASE_STAGE),--release-stage $(RELEASE_STAGE))

# Many machines (docs/many-machines.md): OUT/slurm/{grade,collect}.sbatch and submit.sh; SUBMIT=1 submits.
SHARD ?=
SHARDS ?= 10
.PHONY: slurm
slurm: setup
	$(RUN) -m segkit slurm $(SUBMISSIONS) --shards $(SHARDS) --out $(OUT) \
		$(if $(ASSIGNMENT),--assignment $(ASSIGNMENT)) $(if $(GRADER_ARGS),--grader-args="$(GRADER_ARGS)") \
		$(if $(SUBMIT),--submit)

# Tests run on TEST_JOBS processes (pytest-xdist); tests/conftest.py keeps the files with costly
# shared fixtures (grading runs, escape corpus) on one process each. (Three processes measured no
# faster than two on 2 cores: 11 min 7 s against 11 min 5 s.)
TEST_JOBS ?= 2
test: setup lint typecheck
	$(RUN) -m pytest -q --durations=15 -m "not proof" -n $(TEST_JOBS) --dist loadgroup

# Everything except the slow tests (grading runs and notebook executions).
test-fast: setup
	$(RUN) -m pytest -q -m "not slow and not proof" -n $(TEST_JOBS) --dist loadgroup

# The expensive evidence CI leaves out to stay under 10 minutes (24 min on 2 cores, 11 of them the Slurm
# test): each single bug costs points on its own unit only, the hostile/malformed corpus earns nothing,
# independent correct implementations of every unit get full marks (assignments/<a>/alternatives.py),
# and sharded and Slurm grading give the bytes of a one-machine run (tests/test_shard.py, test_slurm.py).
proof: setup
	$(RUN) -m pytest -q --durations=15 -m proof

generate: setup
	$(RUN) -m segkit generate

check-generated: setup
	$(RUN) -m segkit check

# The solution notebooks on real data (../shared/data/cmp_facade_base) in the cpu profile -> docs/results.md.
# ONLY=fcn runs one notebook; REPORT_ONLY=1 rebuilds the page from build/results/runs.
results: setup
	$(RUN) -m segkit results $(if $(ONLY),--only $(ONLY)) $(if $(REPORT_ONLY),--report-only)

# Similarity report: every graded cell (and whole submission) against the others and against the
# corpus (the kit's solution + assignments/<a>/similarity_corpus/*.py) -> $(OUT)/similarity/<a>/.
THRESHOLD ?=
ALPHA ?=
.PHONY: similarity
similarity: setup
	$(RUN) -m segkit similarity $(SUBMISSIONS) --out $(OUT)/similarity \
		$(if $(ASSIGNMENT),--assignment $(ASSIGNMENT)) $(if $(ALPHA),--alpha $(ALPHA)) $(if $(THRESHOLD),--threshold $(THRESHOLD))

# The figures the docs quote, between <!-- figures:start NAME --> markers, from docs/figures/*.json (the benches write them).
.PHONY: docs
docs: setup
	$(RUN) -m segkit docs

# Written answers for grading by hand: $(OUT)/written/<a>/<student>.html (one question per printed page) and
# rubric.csv for a TA to fill in; MERGE=1 then adds its scores to $(OUT)/grades.csv and lms-<a>.csv.
MERGE ?=
.PHONY: written
written: setup
	$(RUN) -m segkit written $(if $(MERGE),--merge,$(SUBMISSIONS) $(if $(ASSIGNMENT),--assignment $(ASSIGNMENT))) --out $(OUT)

bench: setup
	$(RUN) bench/train_speed.py
	$(RUN) bench/confusion_speed.py
	$(RUN) bench/rgb_to_index_speed.py
	$(RUN) bench/grade_speed.py

# docs/quality.md: mutation score, specificity, hostile corpus, benchmarks, CI time (slow: ~1 h).
quality: setup
	$(RUN) bench/quality_report.py

clean:
	rm -rf grades build dist .pytest_cache

# Gradescope autograder zips: dist/gradescope-<assignment>.zip for every assignment, or only
# ASSIGNMENT=fcn (ASSIGNMENT=fcn,cam: one zip grading both). See docs/instructor-guide.md.
.PHONY: gradescope
gradescope: setup
	@set -e; for a in $(if $(ASSIGNMENT),$(ASSIGNMENT),$$($(RUN) -c "from grader.assignments import assignment_names; print(' '.join(assignment_names()))")); do \
		$(RUN) -m segkit gradescope --assignment $$a --out dist/gradescope-$$(echo $$a | tr , -).zip \
			$(if $(GRADER_ARGS),--grader-args="$(GRADER_ARGS)"); \
	done

# nbgrader: the autograded scores of $(OUT) into COURSE's gradebook.db (formgrader then lists only the
# written answers as needing a grade), autograded/ and feedback/ (for nbgrader release_feedback), and
# $(OUT)/lms-<assignment>.csv for an LMS import. Without COURSE: the CSV only. See docs/instructor-guide.md.
COURSE ?=
.PHONY: gradebook
gradebook: setup
	$(RUN) -m segkit gradebook --grades $(OUT) --lms-csv $(if $(COURSE),--course $(COURSE)) \
		$(if $(ASSIGNMENT),--assignment $(ASSIGNMENT)) $(if $(STUDENT),--student $(STUDENT)) $(if $(FORCE),--force)

# Student bundle: dist/student-bundle.zip (notebooks, starter, data scripts, environment files,
# STUDENT_README.md; never solutions/grader/tests). ASSIGNMENTS=fcn,cam releases only those.
.PHONY: release
release: setup
	$(RUN) -m segkit release $(if $(ASSIGNMENTS),--assignments $(ASSIGNMENTS))

# Mutation testing of the hidden checks (slow: ~30 min on 2 cores); writes docs/mutation-report.md.
mutants: setup
	$(RUN) -m segkit mutants --report docs/mutation-report.md --json build/mutation.json -j $(JOBS)

# A new assignment: assignments/$(NAME)/, solutions/$(NAME)/$(NAME).ipynb and its public check (docs/adding-an-assignment.md).
NAME ?=
TITLE ?=
new-assignment: setup
	@test -n "$(NAME)" || { echo "usage: make new-assignment NAME=instance [TITLE='Instance segmentation']"; exit 2; }
	$(RUN) -m segkit new-assignment $(NAME) $(if $(TITLE),--title "$(TITLE)")
