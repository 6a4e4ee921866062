// anchor.mjs: llama.cpp's speed on kbchat bench's workloads, the anchor the
// engine's goals are stated against (same machine, same GGUF file, same
// thread count, same instruction set).
//
// llama.cpp comes prebuilt from npm: node-llama-cpp 3.22.1 drives the CPU
// backends of @node-llama-cpp/linux-x64 3.22.1, one shared library per
// instruction-set level. ggml loads the best-scoring libggml-cpu-*.so of the
// folder it is given, so to force one level this script makes a copy of the
// installed node_modules (hard links: no bytes copied) whose bins folder holds
// only the wanted library, loads node-llama-cpp from that copy, and checks in
// llama.cpp's own log which library it loaded and in its system info string
// which features that library was built for.
//
// Workloads, as `kbchat bench` measures them (random token ids, nothing
// sampled): pp128 and pp1536 (one prompt evaluated from an empty cache),
// tg32 (32 tokens decoded one at a time from an empty cache), and
// tg128 @ d1536 (128 tokens decoded one at a time after 1536 tokens already
// in the cache, computed once, untimed). Each with flash attention off and on.
// Every timed batch computes the logits of its last token, as llama-bench's.
//
//   node anchor.mjs --model FILE [--cpu avx2|avxvnni|avx512|<lib suffix>]
//        [--threads 2] [--reps 3] [--long-reps 1] [--tests pp128,tg32,...] [--json]
//   node anchor.mjs --check [--cpu ...]   only load and verify the CPU backend
//
// Needs `make bench-anchor-deps` (installs into build/anchor/node_modules).

import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const DEFAULT_MODULES = path.resolve(HERE, "../../../build/anchor/node_modules");
const BINS = "@node-llama-cpp/linux-x64/bins/linux-x64";

// The kbchat instruction sets and the prebuilt library of the same level.
const CPU_LIBS = { avx2: "haswell", avxvnni: "alderlake", avx512: "zen4" };

// The feature each library must report in llama.cpp's system info (and,
// for the lower levels, a feature it must not report).
const CPU_FEATURES = {
    haswell: { has: "AVX2 = 1", lacks: ["AVX512 = 1", "AVX_VNNI = 1"] },
    alderlake: { has: "AVX_VNNI = 1", lacks: ["AVX512 = 1"] },
    zen4: { has: "AVX512 = 1", lacks: [] },
};

const ALL_TESTS = ["pp128", "tg32", "pp1536", "tg128@d1536"];

// Parses argv into options; exits 2 with a message on a bad one.
function parseArgs(argv) {
    const opts = { model: null, check: false, cpu: "avx2", threads: 2, reps: 3, longReps: 1, tests: ALL_TESTS, json: false,
                   modules: process.env.ANCHOR_NODE_MODULES || DEFAULT_MODULES };
    for (let i = 0; i < argv.length; i++) {
        const a = argv[i], next = () => {
            if (i + 1 >= argv.length) usage(`${a} needs a value`);
            return argv[++i];
        };
        if (a === "--model") opts.model = next();
        else if (a === "--cpu") opts.cpu = next();
        else if (a === "--threads") opts.threads = positiveInt(a, next());
        else if (a === "--reps") opts.reps = positiveInt(a, next());
        else if (a === "--long-reps") opts.longReps = positiveInt(a, next());
        else if (a === "--tests") opts.tests = next().split(",");
        else if (a === "--json") opts.json = true;
        else if (a === "--check") opts.check = true;
        else usage(`unknown option ${a}`);
    }
    if (!opts.model && !opts.check) usage("--model FILE is required");
    for (const t of opts.tests) if (!parseTest(t)) usage(`unknown test ${t} (expected ppN, tgN or tgN@dD)`);
    return opts;
}

// Prints the problem and the usage, exits 2.
function usage(problem) {
    console.error(`anchor: ${problem}\nusage: node anchor.mjs --model FILE [--cpu avx2|avxvnni|avx512|LIB] ` +
                  "[--threads N] [--reps N] [--long-reps N] [--tests pp128,tg32,pp1536,tg128@d1536] [--json]\n" +
                  "       node anchor.mjs --check [--cpu avx2|avxvnni|avx512|LIB]");
    process.exit(2);
}

// The integer value of option name, > 0, or a usage error.
function positiveInt(name, value) {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 1) usage(`${name}: expected a positive integer, got "${value}"`);
    return n;
}

// "pp128" -> {kind: "pp", n: 128, depth: 0}; "tg128@d1536" -> depth 1536; null if malformed.
function parseTest(name) {
    const m = /^(pp|tg)(\d+)(?:@d(\d+))?$/.exec(name);
    return m ? { name, kind: m[1], n: Number(m[2]), depth: Number(m[3] || 0) } : null;
}

// Makes (once) build/anchor/cpu-LIB/node_modules: hard links to the installed
// modules, with every libggml-cpu-*.so but libggml-cpu-LIB.so left out of
// the bins folder. Returns the path of node-llama-cpp's entry point there.
function variantModules(modules, lib) {
    const root = path.join(path.dirname(modules), `cpu-${lib}`);
    const copy = path.join(root, "node_modules");
    const wanted = `libggml-cpu-${lib}.so`;
    if (!fs.existsSync(path.join(modules, BINS, wanted)))
        throw new Error(`${path.join(modules, BINS)} has no ${wanted}: run make bench-anchor-deps`);
    if (!fs.existsSync(path.join(copy, BINS, wanted))) {
        fs.rmSync(root, { recursive: true, force: true });
        fs.mkdirSync(root, { recursive: true });
        execFileSync("cp", ["-al", modules, copy]);
        for (const f of fs.readdirSync(path.join(copy, BINS)))
            if (f.startsWith("libggml-cpu-") && f !== wanted) fs.unlinkSync(path.join(copy, BINS, f));
    }
    return path.join(copy, "node-llama-cpp/dist/index.js");
}

// Loads llama.cpp from the variant's modules; returns {llama, log} where
// log collects every line llama.cpp logs.
async function loadLlama(entry, threads) {
    const { getLlama, LlamaLogLevel } = await import(entry);
    const log = [];
    const llama = await getLlama({
        gpu: false, build: "never", maxThreads: threads, logLevel: LlamaLogLevel.debug,
        logger: (level, message) => log.push(message),
    });
    return { llama, log };
}

// The first line of log matching re, waiting up to 2 s for it: llama.cpp's
// log reaches JavaScript asynchronously. "" when it never comes.
async function awaitLogLine(log, re) {
    for (let waited = 0; waited < 2000; waited += 20) {
        const line = log.find((l) => re.test(l));
        if (line) return line;
        await new Promise((resolve) => setTimeout(resolve, 20));
    }
    return "";
}

// Checks that llama.cpp loaded libggml-cpu-LIB.so and that its features are
// those of that level. Returns {library, features}; throws otherwise.
async function verifyCpuBackend(llama, log, lib) {
    const line = await awaitLogLine(log, /loaded CPU backend from/);
    const library = (line.match(/loaded CPU backend from (\S+)/) || [])[1] || "(not in the log)";
    const info = llama.systemInfo;
    const want = CPU_FEATURES[lib];
    if (path.basename(library) !== `libggml-cpu-${lib}.so`)
        throw new Error(`llama.cpp loaded ${library}, not libggml-cpu-${lib}.so`);
    if (want && (!info.includes(want.has) || want.lacks.some((f) => info.includes(f))))
        throw new Error(`libggml-cpu-${lib}.so reports "${info}", expected ${want.has} without ${want.lacks}`);
    return { library, features: info };
}

// n random token ids below nVocab from a fixed seed (a small LCG), as
// kbchat bench uses random ids.
function randomTokens(n, nVocab, seed) {
    const out = [];
    let s = seed >>> 0;
    for (let i = 0; i < n; i++) {
        s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
        out.push(s % nVocab);
    }
    return out;
}

// Mean and sample standard deviation of v.
function stat(v) {
    const mean = v.reduce((a, b) => a + b, 0) / v.length;
    const sd = v.length > 1 ? Math.sqrt(v.reduce((a, b) => a + (b - mean) ** 2, 0) / (v.length - 1)) : 0;
    return { mean, sd };
}

// Makes the sequence hold exactly depth (untimed): clears it when depth is
// empty, else keeps the depth tokens and drops what came after them.
async function fillDepth(seq, depth) {
    const cached = seq.contextTokens;
    const same = cached.length >= depth.length && depth.every((t, i) => cached[i] === t);
    if (depth.length === 0 || !same) await seq.clearHistory();
    if (depth.length > 0 && !same) await seq.evaluateWithoutGeneratingNewTokens(depth);
    else if (depth.length > 0 && cached.length > depth.length)
        await seq.eraseContextTokenRanges([{ start: depth.length, end: cached.length }]);
}

// Evaluates tokens as one batch after what the sequence holds, with the
// logits of the last one computed and its next token picked, as
// llama-bench's batches (llama_batch_get_one) and kbchat bench do:
// evaluateWithoutGeneratingNewTokens would skip the output matrix.
async function evalWithLastLogits(seq, tokens) {
    const last = [tokens[tokens.length - 1], { generateNext: { token: true } }];
    await seq.controlledEvaluate([...tokens.slice(0, -1), last]);
}

// Times one test once after the depth; returns tokens/s.
async function timeOnce(seq, test, depth, fresh) {
    await fillDepth(seq, depth);
    const t0 = process.hrtime.bigint();
    if (test.kind === "pp") {
        await evalWithLastLogits(seq, fresh.slice(0, test.n));
    } else {
        for (let i = 0; i < test.n; i++) await evalWithLastLogits(seq, [fresh[i]]);
    }
    return test.n / (Number(process.hrtime.bigint() - t0) / 1e9);
}

// Runs one test in a context with flash attention fa: a short warm-up, then
// reps timed runs. Returns {mean, sd} tokens/s and the context's settings.
async function runTest(model, test, opts, fa, nVocab) {
    const reps = test.n + test.depth >= 1024 ? opts.longReps : opts.reps;
    const ctx = await model.createContext({
        contextSize: 2048, batchSize: 2048, flashAttention: fa, threads: { ideal: opts.threads, min: opts.threads },
    });
    try {
        const seq = ctx.getSequence();
        const depth = randomTokens(test.depth, nVocab, 1234), fresh = randomTokens(test.n, nVocab, 5678);
        await timeOnce(seq, { kind: test.kind, n: Math.min(test.n, 8) }, depth, fresh); // warm-up
        const runs = [];
        for (let r = 0; r < reps; r++) runs.push(await timeOnce(seq, test, depth, fresh));
        return { ...stat(runs), reps, flash_attention: ctx.flashAttention };
    } finally {
        await ctx.dispose();
    }
}

// The vocabulary size of the model, from the GGUF metadata.
function vocabSize(model) {
    const tokens = model.fileInfo.metadata?.tokenizer?.ggml?.tokens;
    if (!tokens || !tokens.length) throw new Error("cannot read the vocabulary size from the GGUF metadata");
    return tokens.length;
}

// Measures every test with flash attention off and on; returns the results.
async function measure(opts) {
    const lib = CPU_LIBS[opts.cpu] || opts.cpu;
    const { llama, log } = await loadLlama(variantModules(path.resolve(opts.modules), lib), opts.threads);
    const backend = await verifyCpuBackend(llama, log, lib);
    const model = await llama.loadModel({ modelPath: path.resolve(opts.model), gpuLayers: 0, useMmap: true });
    const nVocab = vocabSize(model);
    const results = [];
    for (const name of opts.tests) {
        const test = parseTest(name);
        const off = await runTest(model, test, opts, false, nVocab);
        const on = await runTest(model, test, opts, true, nVocab);
        results.push({ test: name, tokens: test.n, depth: test.depth, fa_off: off, fa_on: on,
                       best_tok_s: Math.max(off.mean, on.mean), best_fa: on.mean > off.mean });
    }
    const ubatch = (await awaitLogLine(log, /n_ubatch\s*=/)).trim();
    await model.dispose();
    return { model: opts.model, cpu: opts.cpu, library: backend.library, system_info: backend.features,
             threads: opts.threads, n_ubatch_log: ubatch, engine: "llama.cpp via node-llama-cpp 3.22.1", results };
}

// Prints the results as a table (llama-bench's test names).
function printTable(r) {
    console.log(`llama.cpp (node-llama-cpp 3.22.1): ${r.model}, ${r.threads} threads, cpu ${r.cpu}`);
    console.log(`backend:  ${r.library}`);
    console.log(`features: ${r.system_info}`);
    if (r.n_ubatch_log) console.log(`context:  ${r.n_ubatch_log}`);
    console.log(`  ${"test".padEnd(14)} ${"FA off tok/s".padStart(18)} ${"FA on tok/s".padStart(18)} ${"best".padStart(9)}`);
    const cell = (s) => `${s.mean.toFixed(2)} ± ${s.sd.toFixed(2)}`.padStart(18);
    for (const x of r.results) {
        const name = x.depth ? `${x.test.replace(/@d/, " @ d")}` : x.test;
        console.log(`  ${name.padEnd(14)} ${cell(x.fa_off)} ${cell(x.fa_on)} ${x.best_tok_s.toFixed(2).padStart(9)}`);
    }
}

// Loads and verifies the CPU backend only; prints which library and features.
async function checkBackend(opts) {
    const lib = CPU_LIBS[opts.cpu] || opts.cpu;
    const { llama, log } = await loadLlama(variantModules(path.resolve(opts.modules), lib), opts.threads);
    const backend = await verifyCpuBackend(llama, log, lib);
    console.log(`cpu ${opts.cpu}: ${backend.library}\n  ${backend.features}`);
}

const opts = parseArgs(process.argv.slice(2));
try {
    if (opts.check) {
        await checkBackend(opts);
        process.exit(0);
    }
    const r = await measure(opts);
    if (opts.json) console.log(JSON.stringify(r));
    else printTable(r);
} catch (e) {
    console.error(`anchor: ${e.message}`);
    process.exit(1);
}
