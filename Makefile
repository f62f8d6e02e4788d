# Persona: every target creates the environment it needs (virtualenv, pinned packages,
# Horovod built with TensorFlow + Gloo, Delta jars from Maven Central) if it is missing.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
JARS   := $(VENV)/share/persona/jars
STAMP  := $(VENV)/.persona-env
DELTA_ARTIFACTS := io.delta:delta-spark_2.12:3.3.2 io.delta:delta-storage:3.3.2 org.antlr:antlr4-runtime:4.9.3
HOROVOD_ENV := HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_MPI=1 \
	HOROVOD_WITHOUT_PYTORCH=1 HOROVOD_WITHOUT_MXNET=1 MAKEFLAGS=-j2

DEMO_USERS ?= 3000
PYTEST_ARGS ?=

.PHONY: env demo test test-fast docs mlflow-ui retail bench clean distclean help

help:
	@echo "make demo       generate data with planted segments and run the whole pipeline"
	@echo "make test       run the test suite (every tier: unit, stage, e2e)"
	@echo "make test-fast  the unit tier only (pure functions on tiny data)"
	@echo "make docs       regenerate docs/configuration.md from the configuration schema"
	@echo "make retail     run the pipeline on the Online Retail data set"
	@echo "make bench      every stage at 10k and 100k generated users beside plain Spark and DuckDB"
	@echo "make mlflow-ui  open the MLflow UI on the local runs (http://127.0.0.1:5000)"
	@echo "make package    dist/: wheel, zip for --py-files, jobs and conf for a cluster"
	@echo "make airflow    Airflow in its own virtualenv (.venv-airflow)"
	@echo "make mlflow-server  an MLflow tracking server with a database and an artifact root"
	@echo "make test-integration  Spark standalone cluster, Airflow and MLflow server tests"
	@echo "make clean      remove out/ ; make distclean also the virtualenvs"

env: $(STAMP)

$(STAMP): requirements.txt setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q wheel "setuptools<70"
	# tensorflow-cpu (older environments) and tensorflow install the same module: drop both,
	# and Horovod with its cached wheel, so that it is rebuilt against the new TensorFlow.
	if $(BIN)/pip show -q tensorflow-cpu 2>/dev/null; then \
		$(BIN)/pip uninstall -q -y tensorflow-cpu tensorflow horovod && \
		{ $(BIN)/pip cache remove -q horovod || true; }; fi
	$(BIN)/pip install -q -r requirements.txt
	$(HOROVOD_ENV) $(BIN)/pip install -q --no-build-isolation "horovod[spark]==0.28.1"
	TF_CPP_MIN_LOG_LEVEL=3 $(BIN)/horovodrun --check-build 2>/dev/null | grep -q "\[X\] TensorFlow"
	TF_CPP_MIN_LOG_LEVEL=3 $(BIN)/horovodrun --check-build 2>/dev/null | grep -q "\[X\] Gloo"
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	mkdir -p $(JARS)
	for a in $(DELTA_ARTIFACTS); do \
		mvn -q -B dependency:copy -Dartifact=$$a -DoutputDirectory=$(JARS) || exit 1; done
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/persona generate --out out/demo/data --users $(DEMO_USERS)
	$(BIN)/persona run --conf conf/local.yaml

retail: $(STAMP)
	$(BIN)/persona run --conf conf/online_retail.yaml

# BENCH_USERS=10000,100000,1000000 adds a million users (about 40M events).
BENCH_USERS ?= 10000,100000
bench: $(STAMP)
	$(BIN)/python benchmarks/scale.py --users $(BENCH_USERS)

test: $(STAMP)
	$(BIN)/python -m pytest tests --ignore=tests/integration $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(BIN)/python -m pytest tests --ignore=tests/integration -m unit $(PYTEST_ARGS)

docs: $(STAMP)
	$(BIN)/python -m persona.config.docs > docs/configuration.md

mlflow-ui: $(STAMP)
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(abspath out/mlflow.db) \
		--default-artifact-root $(abspath out/mlartifacts) --host 127.0.0.1 --port 5000

clean:
	rm -rf out spark-warehouse metastore_db derby.log .pytest_cache

distclean: clean
	rm -rf $(VENV) $(AIRFLOW_VENV) $(DIST)

# --- Clusters, schedulers and a shared MLflow: what runs where users run it ---------------------
DIST          ?= dist
AIRFLOW_VENV  ?= .venv-airflow
AIRFLOW_STAMP := $(AIRFLOW_VENV)/.persona-airflow
AIRFLOW_PACKAGES := apache-airflow==3.3.2 apache-airflow-providers-apache-spark==6.3.4
MLFLOW_PORT   ?= 5000

.PHONY: package airflow mlflow-server test-integration

# dist/: the wheel, the same files as a zip for spark-submit --py-files, the jobs and conf.
package: $(STAMP)
	rm -rf $(DIST) build
	$(BIN)/pip wheel -q --no-deps --no-build-isolation -w $(DIST) .
	cp $(DIST)/persona-*.whl $(DIST)/persona.zip
	mkdir -p $(DIST)/jobs $(DIST)/conf
	cp jobs/*.py $(DIST)/jobs/
	cp conf/*.yaml lib/persona/log4j2.properties $(DIST)/conf/
	@ls -1 $(DIST) $(DIST)/jobs $(DIST)/conf

# Airflow in its own virtualenv, as on a scheduler that does not share the jobs' packages.
airflow: $(AIRFLOW_STAMP)

$(AIRFLOW_STAMP):
	test -x $(AIRFLOW_VENV)/bin/python || $(PYTHON) -m venv $(AIRFLOW_VENV)
	echo '*' > $(AIRFLOW_VENV)/.gitignore
	$(AIRFLOW_VENV)/bin/pip install -q $(AIRFLOW_PACKAGES)
	touch $@

# An MLflow tracking server with a SQLite backend and served artifacts, on the local runs.
mlflow-server: $(STAMP)
	mkdir -p out/mlartifacts
	$(BIN)/mlflow server --backend-store-uri sqlite:///$(abspath out/mlflow.db) \
		--artifacts-destination $(abspath out/mlartifacts) --host 127.0.0.1 --port $(MLFLOW_PORT)

# A Spark standalone cluster, an MLflow server and Airflow, each started and stopped by the tests.
test-integration: $(STAMP) $(AIRFLOW_STAMP) package
	$(BIN)/python -m pytest tests/integration $(PYTEST_ARGS)
