# Each target creates .venv and installs the package first, so it works on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# CPU wheel pinned for this machine; the package itself only asks for a torch range.
TORCH  ?= torch==2.13.0
STAMP  := $(VENV)/.installed

.PHONY: install test demo bench clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e '.[dev,train]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q -ra

demo: $(STAMP)
	$(BIN)/python -m ssml_stream.demo $(if $(VIEW),--view,)

bench: $(STAMP)
	$(BIN)/ssml-bench all

clean:
	rm -rf $(VENV) build dist *.egg-info
