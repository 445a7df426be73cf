# The two commands a new user needs: `make demo` and `make test`. Everything runs from .venv.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export PATH := $(CURDIR)/$(BIN):$(PATH)
# The user's settings win: Prefect's home and the MLflow store default to the checkout.
PREFECT_HOME ?= $(CURDIR)/.prefect
MLFLOW_TRACKING_URI ?= sqlite:///$(CURDIR)/mlflow.db

.PHONY: install demo test test-all bench repro prefect-server mlflow-ui serve clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)  ## every pipeline end to end at small scale
	$(BIN)/seedflow demo

test: $(STAMP)  ## the test suite without the long checks
	$(BIN)/python -m pytest -m "not slow"

test-all: $(STAMP)
	$(BIN)/python -m pytest

repro: $(STAMP)  ## import the inputs into data/ (DVC) if absent, then reproduce every stage from params.yaml
	test -d data/load -a -d data/cloud -a -d data/energy || $(BIN)/seedflow data import
	$(BIN)/dvc repro

prefect-server: $(STAMP)  ## Prefect UI and API on http://127.0.0.1:4200
	PREFECT_HOME=$(PREFECT_HOME) PREFECT_SERVER_ANALYTICS_ENABLED=false $(BIN)/prefect server start --host 127.0.0.1 --port 4200

serve: $(STAMP)  ## deployments for the UI's "Run" button (needs prefect-server)
	PREFECT_HOME=$(PREFECT_HOME) PREFECT_API_URL=http://127.0.0.1:4200/api $(BIN)/seedflow serve

mlflow-ui: $(STAMP)  ## MLflow UI on http://127.0.0.1:5000 for MLFLOW_TRACKING_URI (default: the checkout's mlflow.db)
	$(BIN)/mlflow server --backend-store-uri "$(MLFLOW_TRACKING_URI)" --default-artifact-root $(CURDIR)/mlartifacts --host 127.0.0.1 --port 5000 --workers 1

clean:
	rm -rf results .cache .prefect mlflow.db mlartifacts
