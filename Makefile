# gradcode — set-up, build, run and test on a fresh Debian/Ubuntu machine.
#   make run    installs what is missing, builds, runs the main job (Fashion-MNIST, 8 workers)
#   make test   the same set-up, then lint and every test
# ---- user settings -------------------------------------------------------------------------
# MPI ranks: 1 coordinator + NP-1 workers
NP        ?= 9
# optional TOML config for `make run` (the flags below override it)
CONFIG    ?=
# iterations and straggler model of the demo run
ITERATIONS ?= 150
STRAGGLERS ?= exp:40
MPIRUN    ?= mpirun
MPIFLAGS  ?= --oversubscribe --bind-to none
FASHION   ?= /usr/share/datasets/fashion-mnist
# real datasets beside the checkout (optional; `make datasets` converts a9a and w8a from there)
SHARED_DATA ?= ../shared/datasets
# --------------------------------------------------------------------------------------------
CARGO     ?= cargo
BIN       := target/release/gradcode
DATA      := datasets/fashion-mnist.h5
APT_PKGS  := libopenmpi-dev openmpi-bin libhdf5-dev hdf5-tools libopenblas-dev libclang-dev clang \
             pkg-config dataset-fashion-mnist
SUDO      := $(if $(filter 0,$(shell id -u)),,sudo)
# Open MPI refuses to run as root unless told; CI and containers run as root.
export OMPI_ALLOW_RUN_AS_ROOT := 1
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM := 1
# One BLAS thread per rank: the ranks are the parallelism.
export OPENBLAS_NUM_THREADS := 1
export OMP_NUM_THREADS := 1

.PHONY: deps test-deps build run data datasets test lint unit install easybuild-deps easybuild-check easybuild-build slurm cluster mpich bench bench-smoke bench-approx bench-admm bench-tune bench-hetero bench-comm bench-cluster bench-nn clean help reliability reliability-net fuzz fuzz-smoke

# $(call apt_install,TARGET,PACKAGES): install the packages not yet installed (apt-get update
# first; no terminal in CI, so DEBIAN_FRONTEND=noninteractive, kept under sudo).
define apt_install
	@missing=$$(for p in $(2); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q "install ok installed" || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "make $(1): installing $$missing"; \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	else echo "make $(1): packages present"; fi
endef

help:
	@echo "make run | make test | make deps | make build | make data | make datasets | make lint | make bench | make bench-smoke | make bench-approx | make bench-admm | make bench-tune | make bench-hetero | make bench-comm | make bench-nn | make bench-cluster | make install PREFIX=... | make easybuild-check | make easybuild-build | make cluster | make reliability | make reliability-net | make clean"

deps:
	$(call apt_install,deps,$(APT_PKGS))
	@command -v $(CARGO) >/dev/null 2>&1 || { echo "make deps: no Rust toolchain ($(CARGO) not found):" \
	  "install it with https://rustup.rs (curl --proto '=https' -sSf https://sh.rustup.rs | sh), then open a new shell"; exit 1; }

build: deps
	$(CARGO) build --release --locked

$(DATA): | build
	@mkdir -p datasets
	$(BIN) data convert --format idx \
	  --input $(FASHION)/train-images-idx3-ubyte.gz --labels $(FASHION)/train-labels-idx1-ubyte.gz \
	  --test-input $(FASHION)/t10k-images-idx3-ubyte.gz --test-labels $(FASHION)/t10k-labels-idx1-ubyte.gz \
	  --license MIT --out $(DATA)

data: build $(DATA)

# Every dataset that can be made here without downloading anything but OS packages (see
# datasets/README.md): Fashion-MNIST from its Debian package, and a9a and w8a when
# $(SHARED_DATA) holds them. Not packaged anywhere: a9a, w8a, reuters, abalone, MNIST.
SHARED_SETS := $(strip $(if $(wildcard $(SHARED_DATA)/a9a/a9a),datasets/a9a.h5) \
               $(if $(wildcard $(SHARED_DATA)/w8a/w8a),datasets/w8a.h5))

datasets/a9a.h5: | build
	$(BIN) data convert --format libsvm --input $(SHARED_DATA)/a9a/a9a --test-input $(SHARED_DATA)/a9a/a9a.t \
	  --features 123 --license "CC BY 4.0" --out $@

datasets/w8a.h5: | build
	$(BIN) data convert --format libsvm --input $(SHARED_DATA)/w8a/w8a --features 300 \
	  --license "none stated" --out $@

datasets: data $(SHARED_SETS)
	@$(if $(SHARED_SETS),,echo "make datasets: no $(SHARED_DATA)/a9a or w8a: only Fashion-MNIST made (datasets/README.md says where the others come from)";)
	@ls -l datasets/*.h5

run: build $(DATA)
	$(MPIRUN) $(MPIFLAGS) -np $(NP) $(BIN) train $(if $(CONFIG),--config $(CONFIG)) \
	  --data $(DATA) --model softmax --code cyclic-mds -s 1 --lr 0.1 --l2 1e-4 --optimizer nesterov --momentum 0.9 \
	  --iterations $(ITERATIONS) --deadline-ms 2000 --straggler-model $(STRAGGLERS) --eval-every 10 --log-every 10 \
	  --seed 1 --out results/fashion-mnist --force
	$(BIN) report results/fashion-mnist/run.h5 --plot results/fashion-mnist/report.png
	@echo "make run: result file results/fashion-mnist/run.h5 (read it with h5py: see README), plot results/fashion-mnist/report.png"

lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --release --locked --all-targets -- -D warnings
	$(CARGO) clippy --release --locked --all-targets --features fault-injection -- -D warnings

# What only the tests need: h5py and pandas for the Python example (scripts/load_run.py), from
# the OS packages, so the test that runs it has them on a fresh machine.
TEST_PKGS := python3-h5py python3-pandas
test-deps: deps
	$(call apt_install,test-deps,$(TEST_PKGS))

# The tests run against a build with the test-only fault plan (cargo feature `fault-injection`),
# in its own target folder, so the binary `make build` produces (and `make run`, the Slurm test
# and the benchmarks use) never contains it; `release_binary` checks that binary refuses a plan.
FAULTS_TARGET := target/faults
unit: build test-deps
	$(CARGO) test --release --locked --test release_binary
	CARGO_TARGET_DIR=$(FAULTS_TARGET) $(CARGO) test --release --locked --features fault-injection

# The Slurm test exits 77 (skipped, with the reason printed) where Slurm cannot be installed.
slurm: build
	@bash tests/slurm/run.sh; rc=$$?; \
	if [ $$rc -eq 77 ]; then echo "make slurm: skipped (see the reason above)"; exit 0; fi; exit $$rc

# Install the way HPC sites do (issue 23): PREFIX/bin/gradcode, PREFIX/share/gradcode/{jobscripts,
# docs, README.md, CHANGELOG.md} and an Lmod modulefile MODULEFILES/gradcode/VERSION.lua that puts the
# binary on PATH and points the job scripts at the installed copy. Builds nothing: run `make build`
# (or `cargo build --release`) first. DESTDIR is prepended for staged (package) installs.
PREFIX      ?= /usr/local
MODULEFILES ?= $(PREFIX)/modulefiles
VERSION     := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
install:
	@test -x $(BIN) || { echo "make install: no $(BIN): run make build first"; exit 1; }
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/gradcode/jobscripts/sweeps \
	  $(DESTDIR)$(PREFIX)/share/gradcode/docs $(DESTDIR)$(MODULEFILES)/gradcode
	install -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/gradcode
	install -m 0755 jobscripts/*.sbatch jobscripts/workstation.sh $(DESTDIR)$(PREFIX)/share/gradcode/jobscripts/
	install -m 0644 jobscripts/common.sh jobscripts/README.md $(DESTDIR)$(PREFIX)/share/gradcode/jobscripts/
	install -m 0644 jobscripts/sweeps/* $(DESTDIR)$(PREFIX)/share/gradcode/jobscripts/sweeps/
	install -m 0644 docs/*.md docs/*.png $(DESTDIR)$(PREFIX)/share/gradcode/docs/
	install -m 0644 README.md CHANGELOG.md $(DESTDIR)$(PREFIX)/share/gradcode/
	echo "gradcode $(VERSION) installed by make install" >$(DESTDIR)$(PREFIX)/share/gradcode/INSTALLED
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(VERSION)|g' scripts/gradcode.lua.in \
	  >$(DESTDIR)$(MODULEFILES)/gradcode/$(VERSION).lua
	@echo "make install: $(PREFIX)/bin/gradcode; module file $(MODULEFILES)/gradcode/$(VERSION).lua" \
	  "(module use $(MODULEFILES); module load gradcode)"

# The EasyBuild easyconfig (easybuild/gradcode-0.1.0.eb) through EasyBuild's extended dry run
# (EasyBuild from PyPI in a temporary virtualenv, Lmod from Debian's lmod). Not part of `make test`.
# Lmod, EasyBuild's modules tool, from the OS packages (EasyBuild itself comes from PyPI).
EB_PKGS := lmod
easybuild-deps: deps
	$(call apt_install,easybuild-deps,$(EB_PKGS))

easybuild-check: easybuild-deps
	@bash easybuild/check.sh; rc=$$?; \
	if [ $$rc -eq 77 ]; then echo "make easybuild-check: skipped (see the reason above)"; exit 0; fi; exit $$rc

# The full EasyBuild build and install (compiles the crate again: minutes), then the installed copy
# through `module load gradcode/0.1.0` runs a 3-rank mpirun job. Not part of `make test`.
easybuild-build: easybuild-deps
	@bash easybuild/check.sh --full; rc=$$?; \
	if [ $$rc -eq 77 ]; then echo "make easybuild-build: skipped (see the reason above)"; exit 0; fi; exit $$rc

# Multi-node test (issue 23): 3 Slurm nodes in network namespaces on this machine, TCP between them.
# Exits 77 (skipped, reason printed) where namespaces cannot be made (not root, a container without them).
cluster: build
	@bash tests/cluster/run.sh; rc=$$?; \
	if [ $$rc -eq 77 ]; then echo "make cluster: skipped (see the reason above)"; exit 0; fi; exit $$rc

# The MPI integration tests again, against MPICH: a second build linked to libmpich (its own
# target folder), launched by MPICH's hydra through tests/mpich/mpirun (which drops Open MPI-only
# flags). Debian keeps Open MPI as the default `mpirun`; the check below makes sure of it.
mpich: deps
	$(call apt_install,mpich,mpich libmpich-dev)
	@mpirun --version 2>&1 | grep -q "Open MPI" || \
	  { echo "make mpich: installing MPICH changed the default mpirun; run: update-alternatives --set mpirun /usr/bin/mpirun.openmpi"; exit 1; }
	PATH="$(CURDIR)/tests/mpich:$$PATH" GRADCODE_TEST_LAUNCHER=hydra MPI_PKG_CONFIG=mpich CARGO_TARGET_DIR=target/mpich \
	  $(CARGO) test --release --locked --test mpi_train
	PATH="$(CURDIR)/tests/mpich:$$PATH" GRADCODE_TEST_LAUNCHER=hydra MPI_PKG_CONFIG=mpich CARGO_TARGET_DIR=target/mpich \
	  $(CARGO) test --release --locked --test linalg_mpi

test: build lint unit slurm cluster mpich bench-smoke

# Benchmarks against the physical limit (issue 7): criterion micro-benchmarks, then the suite
# (bandwidth, decode, overhead over the oracle, time to target, scaling, memory) that writes
# results/bench/full/report.md and prints every target with MET / NOT MET. See results/bench/README.md.
bench: build
	$(CARGO) bench --locked --bench kernels
	$(CARGO) bench --locked --bench suite

# Scaling across nodes (issue 23): one node against NODES=3 nodes of the namespace test cluster, a9a
# and Fashion-MNIST (root and network namespaces; about 2 minutes). Table in docs/cluster.md.
bench-cluster: build
	bash scripts/bench_cluster.sh

# Approximate codes and partial work (issue 5): exact, approximate and chunked runs under exp, Pareto
# and more-than-s delays on a9a; writes results/bench/approx/README.md (about 2 minutes).
bench-approx: build
	bash scripts/bench_approx.sh

# Neural networks (issue 21): the MLP and the CNN on Fashion-MNIST, 8 workers, cyclic MDS s = 1
# under exp:40 delays, momentum, Adam and K-FAC (with the share of rank 0's time in K-FAC),
# uncoded beside coded; iterations and seconds to the target test accuracy; writes
# results/bench/nn/README.md (tens of minutes on 2 cores; MLP_ITERATIONS=200 CNN_ITERATIONS=60
# for a short run, ONLY="mlp-kfac" for some runs).
bench-nn: build
	bash scripts/bench_nn.sh

# pdADMM (issue 19): accuracy and wall time on MNIST and Fashion-MNIST, a 10-layer net, the
# backprop baseline, time and bytes against depth and width, stragglers with and without
# --max-staleness, quantized exchange; writes results/bench/admm/summary.md (about 1.5 h on 2
# cores; PARTS="scaling stragglers" for some). See docs/admm.md.
bench-admm: build data test-deps
	bash scripts/bench_admm.sh

# gradcode simulate and tune validated on this machine (issue 22): simulated vs real time per
# iteration of the exact codes at n = 8, and the tuned configuration vs the candidates actually run
# under exp:20 and fixed:1,2:300 on a9a; writes results/bench/tune/README.md (about 4 minutes).
bench-tune: build
	bash scripts/bench_tune.sh

# Heterogeneous workers (issue 22 §2b): hetero --worker-speeds against cyclic-repetition, s = 1,
# when two of 8 workers are 2× slower (slow:1,2:2), a9a, logistic and an MLP, runs alternated A/B;
# writes results/bench/hetero/README.md (about 2 minutes). Table in docs/tuning.md.
bench-hetero: build
	bash scripts/bench_hetero.sh

# Less communication (issue 20): dense vs comm-efficient codes (m = 1, 2, 4) vs every compressor
# with and without error feedback, on an Amazon-like sparse problem synthesized by `data synth
# --zipf`, 8 workers, 100 iterations; writes results/bench/comm/README.md (a few minutes). Then the
# flat against the tree decode (--decode-tree 4) at 16 and 32 workers (17 and 33 ranks, oversubscribed
# on a small machine): rank-0 messages, bytes and time per iteration, in results/bench/comm/tree.md
# (about a minute; PARTS=tree for these rows only, PARTS=codes for the rest).
bench-comm: build
	bash scripts/bench_comm.sh

# The suite with tiny sizes (< 60 s once built): checks the harness, not the machine.
bench-smoke: build
	$(CARGO) bench --locked --bench suite -- --smoke

clean:
	$(CARGO) clean
	rm -f $(DATA)

# Long reliability suite (BI-1 at thousands of mutants, CR-2 at >= 50 kills, and NET-1..3: network
# faults on the namespace cluster, NET_TRIALS (5) trials each, about 1 min per trial): prints the table.
# The NET rows are skipped with the reason (exit 77) where root, network namespaces or Slurm are missing.
reliability: build
	@bash scripts/reliability.sh

# Only the NET-1..3 rows (tests/cluster/net_faults.sh; NET_CASES="1 2 3", NET_TRIALS=5).
reliability-net: build
	@bash tests/cluster/net_faults.sh; rc=$$?; \
	if [ $$rc -eq 77 ]; then echo "make reliability-net: skipped (see the reason above)"; exit 0; fi; exit $$rc

# cargo-fuzz targets (LIBSVM, IDX, CSV, config, message header) over the checked-in corpus.
fuzz-smoke: deps
	@bash scripts/fuzz.sh 5

fuzz: deps
	@bash scripts/fuzz.sh $${FUZZ_SECONDS:-300}
