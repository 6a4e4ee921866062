# kbchat Makefile
#
#   make          build ./kbchat (installs missing build packages first, see `make deps`)
#   make run      build and start kbchat with the default configuration (ARGS="..." passes arguments)
#   make test     build and run every test, then again under AddressSanitizer + UBSan
#                 (TESTS="test_a test_b" runs only those, in both builds)
#   make check    build and run the tests in the release build only (TESTS= works too)
#   make coverage the release suite in a gcov build (build/coverage), then line
#                 coverage per module (engine/, rag/, app/, ui/) with lcov
#   make clang-check  the release build with clang (build/clang) and the engine's tests
#   make bench    build and run the benchmarks (tokenizers, knowledge bases, search, engine speed)
#   make bench-anchor  engine speed beside llama.cpp's (prebuilt from npm into build/anchor)
#   make tokenizer-refs  recompute tests/tokrefs (llama.cpp's ids for every pre-tokenizer name)
#   make deps     install the Debian packages kbchat builds with (apt-get, sudo when not root)
#   make test-deps  the same, and the packages the tests need (scripts/packages lists both)
#   make clean    remove build products
#
# User CFLAGS / LDFLAGS are kept and appended; OPT overrides the optimisation flags.

CC      ?= cc
OPT     ?= -O2
WARN     = -Wall -Wextra -Wshadow -Wstrict-prototypes -Wvla
STD      = -std=c11 -D_GNU_SOURCE
DEBUG    = -g
SAN      = -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer

# Libraries, found with pkg-config: the "pc:" entries of scripts/packages,
# whose Debian packages scripts/deps.sh installs.
PKGS      = $(shell scripts/deps.sh libs build)
TEST_PKGS = $(shell scripts/deps.sh libs test)

# Object list per module (Redis style: explicit, one pattern rule).
ENGINE_OBJ = engine/errors.o engine/blas.o engine/quant.o engine/file_map.o engine/gguf.o engine/gguf_write.o \
             engine/quantize.o engine/quant_plan.o engine/quantize_model.o \
             engine/tokenizer.o engine/tok_spm.o engine/tok_bpe.o engine/tok_wpm.o \
             engine/kernels.o engine/kernels_scalar.o \
             engine/pool.o engine/model.o engine/arch_llama.o engine/arch_glm.o engine/arch_bloom.o \
             engine/arch_bert.o engine/sampler.o engine/generate.o engine/gemm.o engine/attention.o \
             engine/template.o engine/ggml_file.o engine/model_ggml.o engine/arch_glm1.o engine/tok_glm.o
# The SIMD kernel sets exist on x86-64 only. Each file is compiled for its
# instruction set (per-file -m flags, which GCC and Clang both honour); code
# in them runs only after kernels.c has asked the CPU (cpuid), so the rest of
# the program stays runnable on any x86-64.
TARGET_ARCH := $(shell $(CC) -dumpmachine)
ifneq ($(filter x86_64-%,$(TARGET_ARCH)),)
AVX2_FLAGS   = -mavx2 -mfma -mf16c
AVX512_FLAGS = $(AVX2_FLAGS) -mavx512f -mavx512bw -mavx512vl -mavx512dq
SIMD_FLAGS.engine/kernels_avx2.o   = $(AVX2_FLAGS)
SIMD_FLAGS.engine/attn_avx2.o      = $(AVX2_FLAGS)
SIMD_FLAGS.engine/gemm_avx2.o      = $(AVX2_FLAGS)
SIMD_FLAGS.engine/gemm_avxvnni.o   = $(AVX2_FLAGS) -mavxvnni
SIMD_FLAGS.engine/kernels_avx512.o = $(AVX512_FLAGS)
SIMD_FLAGS.engine/attn_avx512.o    = $(AVX512_FLAGS)
SIMD_FLAGS.engine/gemm_avx512.o    = $(AVX512_FLAGS) -mavx512vnni
ENGINE_OBJ += engine/kernels_avx2.o engine/kernels_avx512.o engine/attn_avx2.o engine/attn_avx512.o \
              engine/gemm_avx2.o engine/gemm_avxvnni.o engine/gemm_avx512.o
endif
RAG_OBJ    = rag/version.o rag/doc.o rag/clean.o rag/load_pdf.o rag/extract.o rag/load_text.o rag/chunker.o \
             rag/fts_cjk.o rag/store.o rag/store_file.o rag/check.o rag/kb.o rag/sync.o rag/search.o rag/query.o rag/passage.o \
             rag/vectors.o rag/embed.o rag/prompt.o rag/session.o
UI_OBJ     = ui/version.o ui/term.o ui/screen.o ui/worker.o ui/w_chat.o ui/w_input.o ui/w_status.o ui/w_help.o ui/w_sources.o ui/w_sessions.o ui/w_kb.o ui/w_entry.o
APP_OBJ    = app/config.o app/cli.o app/model_info.o app/cmd_quantize.o app/cmd_tokenize.o app/cmd_generate.o app/cmd_bench.o app/cmd_embed.o \
             app/cmd_kb.o app/kb_ops.o app/kb_jobs.o app/kb_sync.o app/path.o app/conversation.o app/chat.o app/cmd_chat.o app/cmd_ask.o app/stop.o app/term_text.o
MAIN_OBJ   = app/main.o
LIB_OBJ    = $(ENGINE_OBJ) $(RAG_OBJ) $(UI_OBJ) $(APP_OBJ)

TESTS        = test_term_text test_attention test_quant test_quantize test_deps test_config test_gguf test_gguf_robust test_kernels test_kernels_simd test_tokenizer test_tok_bpe test_tok_wpm test_engine test_cancel test_cli test_rag_chunker test_rag_load test_rag_store test_rag_sync test_doc_budget test_rag_cli test_rag_check test_rag_search test_rag_embed test_rag_prompt test_ask test_template test_conversation test_chat_cli test_ggml_file test_glm_peer test_gemm test_kb_jobs test_tui
TEST_SUPPORT = tests/testutil.o tests/ggufgen.o

# Variants: release builds ./kbchat; asan is the sanitizer build of everything;
# coverage is the gcov build of everything (`make coverage`).
REL = build/release
SANB = build/asan
COVB = build/coverage
COV = --coverage -O1

.PHONY: all run test check coverage clang-check bench bench-anchor bench-anchor-deps tokenizer-refs deps test-deps clean help
all: kbchat

# --- dependencies: pkg-config's answers, made again when the list changes ---
# build/deps.mk for the build libraries; build/deps-test.mk for the test ones,
# read only when a test is being built, so a plain `make` needs no test tool.
NODEPS_GOALS = clean deps test-deps help
ifneq ($(filter-out $(NODEPS_GOALS),$(or $(MAKECMDGOALS),all)),)
-include build/deps.mk
endif
ifneq ($(filter test check coverage clang-check,$(MAKECMDGOALS))$(findstring tests/test_,$(MAKECMDGOALS)),)
-include build/deps-test.mk
endif

build/deps.mk: scripts/packages scripts/deps.sh
	@scripts/deps.sh ensure build
	@mkdir -p build
	@{ echo "PKG_CFLAGS = $$(pkg-config --cflags $(PKGS))"; \
	   echo "PKG_LIBS = $$(pkg-config --libs $(PKGS)) -lm -lpthread"; } > $@.tmp
	@mv $@.tmp $@

build/deps-test.mk: scripts/packages scripts/deps.sh
	@scripts/deps.sh ensure test
	@mkdir -p build
	@{ echo "TEST_CFLAGS = $$(pkg-config --cflags $(TEST_PKGS))"; \
	   echo "TEST_LIBS = $$(pkg-config --libs $(TEST_PKGS))"; } > $@.tmp
	@mv $@.tmp $@

# Quiet output ("CC engine/gguf.o"); `make V=1` shows the full commands.
ifeq ($(V),1)
Q =
say = @true
else
Q = @
say = @printf '  %-6s %s\n'
endif

FINAL_CFLAGS  = $(STD) $(WARN) $(OPT) $(DEBUG) $(PKG_CFLAGS) -I. $(CFLAGS)
FINAL_LDFLAGS = $(LDFLAGS)
FINAL_LIBS    = $(PKG_LIBS) $(LIBS)

# --- objects: one pattern rule per variant, -MMD for header dependencies ---
$(REL)/%.o: %.c
	@mkdir -p $(dir $@)
	$(say) CC $@
	$(Q)$(CC) $(FINAL_CFLAGS) $(SIMD_FLAGS.$*.o) $(TEST_CFLAGS) -MMD -MP -c $< -o $@

$(SANB)/%.o: %.c
	@mkdir -p $(dir $@)
	$(say) CC $@
	$(Q)$(CC) $(FINAL_CFLAGS) $(SIMD_FLAGS.$*.o) $(TEST_CFLAGS) $(SAN) -O1 -MMD -MP -c $< -o $@

$(COVB)/%.o: %.c
	@mkdir -p $(dir $@)
	$(say) CC $@
	$(Q)$(CC) $(FINAL_CFLAGS) $(SIMD_FLAGS.$*.o) $(TEST_CFLAGS) $(COV) -MMD -MP -c $< -o $@

# KBCHAT is where the release binary goes: ./kbchat, or the clang check's own.
KBCHAT ?= kbchat
$(KBCHAT): $(addprefix $(REL)/,$(LIB_OBJ) $(MAIN_OBJ))
	$(say) LINK $@
	$(Q)$(CC) $(FINAL_CFLAGS) $(FINAL_LDFLAGS) -o $@ $^ $(FINAL_LIBS)

$(SANB)/kbchat: $(addprefix $(SANB)/,$(LIB_OBJ) $(MAIN_OBJ))
	$(say) LINK $@
	$(Q)$(CC) $(FINAL_CFLAGS) $(SAN) $(FINAL_LDFLAGS) -o $@ $^ $(FINAL_LIBS)

$(COVB)/kbchat: $(addprefix $(COVB)/,$(LIB_OBJ) $(MAIN_OBJ))
	$(say) LINK $@
	$(Q)$(CC) $(FINAL_CFLAGS) $(COV) $(FINAL_LDFLAGS) -o $@ $^ $(FINAL_LIBS)

# Tests link the module objects (not main.o) plus tests/testutil.o.
# Allocations are wrapped so tests can make the n-th malloc fail (tests/testutil.c).
TEST_WRAP = -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=strdup

$(REL)/tests/%: $(REL)/tests/%.o $(addprefix $(REL)/,$(TEST_SUPPORT)) $(addprefix $(REL)/,$(LIB_OBJ))
	$(say) LINK $@
	$(Q)$(CC) $(FINAL_CFLAGS) $(FINAL_LDFLAGS) $(TEST_WRAP) -o $@ $^ $(FINAL_LIBS) $(TEST_LIBS)

$(SANB)/tests/%: $(SANB)/tests/%.o $(addprefix $(SANB)/,$(TEST_SUPPORT)) $(addprefix $(SANB)/,$(LIB_OBJ))
	$(say) LINK $@
	$(Q)$(CC) $(FINAL_CFLAGS) $(SAN) $(FINAL_LDFLAGS) $(TEST_WRAP) -o $@ $^ $(FINAL_LIBS) $(TEST_LIBS)

$(COVB)/tests/%: $(COVB)/tests/%.o $(addprefix $(COVB)/,$(TEST_SUPPORT)) $(addprefix $(COVB)/,$(LIB_OBJ))
	$(say) LINK $@
	$(Q)$(CC) $(FINAL_CFLAGS) $(COV) $(FINAL_LDFLAGS) $(TEST_WRAP) -o $@ $^ $(FINAL_LIBS) $(TEST_LIBS)

.PRECIOUS: $(REL)/%.o $(SANB)/%.o $(COVB)/%.o

run: kbchat
	@./kbchat $(ARGS)

# Tools for benchmarks and tests: tests/tools/NAME.c -> $(REL)/tests/tools/NAME with '_' as '-'.
# synth-model writes GGUF models of real shapes with random weights (see its header).
TOOLS = synth-model
all: $(addprefix $(REL)/tests/tools/,$(TOOLS))

$(REL)/tests/tools/synth-model: $(REL)/tests/tools/synth_model.o $(addprefix $(REL)/,$(ENGINE_OBJ))
	$(say) LINK $@
	$(Q)$(CC) $(FINAL_CFLAGS) $(FINAL_LDFLAGS) -o $@ $^ $(FINAL_LIBS)

$(SANB)/tests/tools/synth-model: $(SANB)/tests/tools/synth_model.o $(addprefix $(SANB)/,$(ENGINE_OBJ))
	$(say) LINK $@
	$(Q)$(CC) $(FINAL_CFLAGS) $(SAN) $(FINAL_LDFLAGS) -o $@ $^ $(FINAL_LIBS)

$(COVB)/tests/tools/synth-model: $(COVB)/tests/tools/synth_model.o $(addprefix $(COVB)/,$(ENGINE_OBJ))
	$(say) LINK $@
	$(Q)$(CC) $(FINAL_CFLAGS) $(COV) $(FINAL_LDFLAGS) -o $@ $^ $(FINAL_LIBS)

# test_quantize runs the synth-model of its own variant (order-only: not linked in).
$(REL)/tests/test_quantize: | $(REL)/tests/tools/synth-model
$(SANB)/tests/test_quantize: | $(SANB)/tests/tools/synth-model
$(COVB)/tests/test_quantize: | $(COVB)/tests/tools/synth-model

# Benchmarks: figures for the issue notes; no test depends on them.
BENCHES = bench_tokenizer bench_rag bench_search

$(REL)/tests/bench/%: $(REL)/tests/bench/%.o $(addprefix $(REL)/,$(LIB_OBJ))
	$(say) LINK $@
	$(Q)$(CC) $(FINAL_CFLAGS) $(FINAL_LDFLAGS) -o $@ $^ $(FINAL_LIBS)

# Synthetic TinyLlama-1.1B-shaped models, written once and kept under build/.
BENCH_MODELS = build/bench/tinyllama-1.1b-Q4_0.gguf build/bench/tinyllama-1.1b-Q8_0.gguf

build/bench/tinyllama-1.1b-%.gguf: | $(REL)/tests/tools/synth-model
	@mkdir -p build/bench
	$(REL)/tests/tools/synth-model tinyllama-1.1b $* $@

# BENCH_ARGS passes options to kbchat bench (default: -p 128 -n 32 -r 5, all cores).
# Per model: pp128/tg32, then a grounded-size prompt (pp1536 from an empty
# cache, with its first-token time) and generation after it (tg128 @ d1536);
# the long rows are repeated fewer times (BENCH_LONG_REPS) to keep the run short.
BENCH_LONG_REPS ?= 1
bench: kbchat $(addprefix $(REL)/tests/bench/,$(BENCHES)) $(BENCH_MODELS)
	@for b in $(BENCHES); do $(REL)/tests/bench/$$b $${KBCHAT_TESTDATA:-../shared/testdata} || exit 1; done
	@for m in $(BENCH_MODELS); do \
	  ./kbchat bench -m $$m $(BENCH_ARGS) || exit 1; \
	  ./kbchat bench -m $$m $(BENCH_ARGS) -p 1536 -n 0 -r $(BENCH_LONG_REPS) || exit 1; \
	  ./kbchat bench -m $$m $(BENCH_ARGS) -d 1536 -p 0 -n 128 -r $(BENCH_LONG_REPS) || exit 1; \
	done

# The llama.cpp anchor (tests/bench/anchor/): node-llama-cpp's prebuilt CPU
# backends from npm, exact versions from the lock file, in build/anchor (no
# build from source, no model download). Only these targets need Node.js/npm.
# npm install, not npm ci: the lock leaves out other platforms' optional
# packages (CUDA, Windows, macOS builds), which npm ci takes for a stale lock.
ANCHOR_DIR = build/anchor
$(ANCHOR_DIR)/node_modules/.installed: tests/bench/anchor/package.json tests/bench/anchor/package-lock.json
	@mkdir -p $(ANCHOR_DIR)
	rm -rf $(ANCHOR_DIR)/node_modules $(ANCHOR_DIR)/cpu-*
	cp tests/bench/anchor/package.json tests/bench/anchor/package-lock.json $(ANCHOR_DIR)/
	cd $(ANCHOR_DIR) && NODE_LLAMA_CPP_SKIP_DOWNLOAD=true npm install --omit=optional --ignore-scripts --no-audit --no-fund --no-save
	@touch $@

bench-anchor-deps: $(ANCHOR_DIR)/node_modules/.installed

# kbchat and llama.cpp side by side on the synthetic models, 2 threads,
# KBCHAT_ISA=avx2 vs llama.cpp's haswell build, avxvnni vs alderlake.
# ANCHOR_ARGS adds options (e.g. --isa avx2,avxvnni,avx512 --reps 5).
bench-anchor: kbchat $(BENCH_MODELS) bench-anchor-deps
	@node tests/bench/anchor/compare.mjs --kbchat ./kbchat $(addprefix --model ,$(BENCH_MODELS)) $(ANCHOR_ARGS)

# llama.cpp's ids for every tokenizer.ggml.pre name on the shared GPT-2
# vocabulary (tests/tokrefs, read by test_tok_bpe), computed by the anchor's
# llama.cpp. Only for a new anchor version or new test strings: `make test`
# reads the committed files and needs no Node.js.
tokenizer-refs: bench-anchor-deps
	node tests/tokrefs/generate.mjs $(ANCHOR_DIR)/node_modules $${KBCHAT_TESTDATA:-../shared/testdata}/vocab tests/tokrefs

# The whole suite twice: the release build, then under ASan/UBSan.
# `make test TESTS="test_a test_b"` builds and runs only those.
test: kbchat $(SANB)/kbchat $(addprefix $(REL)/tests/,$(TESTS)) $(addprefix $(SANB)/tests/,$(TESTS))
	@tests/run.sh $(REL):./kbchat $(SANB):$(SANB)/kbchat -- $(TESTS)

# The release suite only (TESTS= picks a subset here too).
check: kbchat $(addprefix $(REL)/tests/,$(TESTS))
	@tests/run.sh $(REL):./kbchat -- $(TESTS)

# The release suite in the gcov build, then line coverage per module
# (tests/coverage.sh; docs/testing.md says where it stands). The counters
# start from zero at each run; a failed test fails the target after the report.
coverage: $(COVB)/kbchat $(addprefix $(COVB)/tests/,$(TESTS))
	@find $(COVB) -name '*.gcda' -delete
	@tests/run.sh $(COVB):$(COVB)/kbchat -- $(TESTS); status=$$?; tests/coverage.sh $(COVB) && exit $$status

# The release build made with clang in build/clang (its own objects and
# binary), and the engine's and tokenizers' tests run there: kbchat must
# build with both compilers (.ci/run runs it after `make test`).
CLANG_TESTS = test_quant test_kernels test_kernels_simd test_gemm test_attention test_tokenizer test_tok_bpe test_engine
clang-check:
	@$(MAKE) --no-print-directory CC=clang REL=build/clang KBCHAT=build/clang/kbchat build/clang/kbchat \
	  $(addprefix build/clang/tests/,$(CLANG_TESTS))
	@tests/run.sh build/clang:build/clang/kbchat -- $(CLANG_TESTS)

deps:
	@scripts/deps.sh install build

test-deps:
	@scripts/deps.sh install test

clean:
	rm -rf build kbchat

help:
	@sed -n '3,18p' Makefile | sed 's/^# \{0,1\}//'

-include $(shell find build -name '*.d' 2>/dev/null)
