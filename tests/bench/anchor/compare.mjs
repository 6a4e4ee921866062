// compare.mjs: kbchat bench beside llama.cpp (anchor.mjs) in one run, same
// GGUF files, same thread count, one instruction set at a time:
// KBCHAT_ISA=avx2 against llama.cpp's haswell build, KBCHAT_ISA=avxvnni
// against its alderlake build, KBCHAT_ISA=avx512 against zen4.
//
//   node compare.mjs --kbchat ./kbchat --model A.gguf [--model B.gguf]
//        [--isa avx2,avxvnni] [--threads 2] [--reps 3] [--long-reps 1] [--json]
//
// Tests: pp128, tg32, pp1536 (from an empty cache) and tg128 @ d1536. The
// ratio is kbchat / llama.cpp's better flash-attention setting. When kbchat
// does not run the asked instruction set (KBCHAT_ISA unknown to this build,
// or the CPU lacks it), that pair is skipped with a note. Every figure is
// measured in this run; the load average is printed before and after, since
// other work on the machine changes them.

import { execFileSync, spawnSync } from "node:child_process";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const HERE = path.dirname(fileURLToPath(import.meta.url));

// kbchat bench runs giving the tests, and the kernels name each ISA must report.
const KBCHAT_RUNS = [
    { tests: ["pp128", "tg32"], args: (o) => ["-p", "128", "-n", "32", "-r", String(o.reps)] },
    { tests: ["pp1536"], args: (o) => ["-p", "1536", "-n", "0", "-r", String(o.longReps)] },
    { tests: ["tg128@d1536"], args: (o) => ["-d", "1536", "-p", "0", "-n", "128", "-r", String(o.longReps)] },
];
const KERNELS_OF_ISA = {
    avx2: (k) => k === "AVX2",
    avxvnni: (k) => /VNNI/i.test(k) && !/512/.test(k),
    avx512: (k) => /512/.test(k),
};

// Parses argv; exits 2 with a message on a bad option.
function parseArgs(argv) {
    const o = { kbchat: "./kbchat", models: [], isas: ["avx2", "avxvnni"], threads: 2, reps: 3, longReps: 1, json: false };
    for (let i = 0; i < argv.length; i++) {
        const a = argv[i], next = () => argv[++i] ?? usage(`${a} needs a value`);
        if (a === "--kbchat") o.kbchat = next();
        else if (a === "--model") o.models.push(next());
        else if (a === "--isa") o.isas = next().split(",");
        else if (a === "--threads") o.threads = Number(next());
        else if (a === "--reps") o.reps = Number(next());
        else if (a === "--long-reps") o.longReps = Number(next());
        else if (a === "--json") o.json = true;
        else usage(`unknown option ${a}`);
    }
    if (o.models.length === 0) usage("at least one --model FILE is needed");
    for (const isa of o.isas) if (!KERNELS_OF_ISA[isa]) usage(`unknown --isa ${isa} (avx2, avxvnni, avx512)`);
    for (const k of ["threads", "reps", "longReps"])
        if (!Number.isInteger(o[k]) || o[k] < 1) usage(`--${k}: expected a positive integer`);
    return o;
}

// Prints the problem and the usage, exits 2.
function usage(problem) {
    console.error(`compare: ${problem}\nusage: node compare.mjs --kbchat ./kbchat --model FILE... ` +
                  "[--isa avx2,avxvnni,avx512] [--threads N] [--reps N] [--long-reps N] [--json]");
    process.exit(2);
}

// "22:41 UTC, load average 1.52 1.20 0.90" for the table header.
function clockAndLoad() {
    const t = new Date().toISOString().slice(11, 16);
    return `${t} UTC, load average ${os.loadavg().map((x) => x.toFixed(2)).join(" ")}`;
}

// Runs kbchat bench with KBCHAT_ISA=isa for every test; returns
// {kernels, tests: {name: {mean, sd}}, first_token_ms_1536}, or {skip: reason}.
function runKbchat(o, model, isa) {
    const out = { tests: {} };
    for (const run of KBCHAT_RUNS) {
        const args = ["bench", "-m", model, "-t", String(o.threads), "--json", ...run.args(o)];
        const p = spawnSync(o.kbchat, args, { env: { ...process.env, KBCHAT_ISA: isa }, encoding: "utf8" });
        if (p.status !== 0) return { skip: `kbchat refused KBCHAT_ISA=${isa}: ${p.stderr.trim()}` };
        const j = JSON.parse(p.stdout);
        if (!KERNELS_OF_ISA[isa](j.kernels))
            return { skip: `kbchat ran its ${j.kernels} kernels with KBCHAT_ISA=${isa} (not supported in this build)` };
        out.kernels = j.kernels;
        for (const t of run.tests) {
            const pp = t.startsWith("pp");
            out.tests[t] = pp ? { mean: j.pp_tok_s, sd: j.pp_tok_s_sd } : { mean: j.tg_tok_s, sd: j.tg_tok_s_sd };
            if (t === "pp1536") out.first_token_ms_1536 = j.pp_first_token_ms;
        }
    }
    return out;
}

// Runs anchor.mjs for the same model and ISA; returns its JSON result.
function runLlamaCpp(o, model, isa) {
    const args = [path.join(HERE, "anchor.mjs"), "--model", model, "--cpu", isa, "--threads", String(o.threads),
                  "--reps", String(o.reps), "--long-reps", String(o.longReps), "--json"];
    return JSON.parse(execFileSync(process.execPath, args, { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] }));
}

// Prints one model x ISA comparison as a table.
function printPair(p) {
    console.log(`\n${path.basename(p.model)}, ${p.threads} threads, KBCHAT_ISA=${p.isa}`);
    console.log(`  started ${p.started}; ended ${p.ended}`);
    if (p.skip) return console.log(`  skipped: ${p.skip}`);
    console.log(`  kbchat kernels ${p.kbchat.kernels}; llama.cpp ${path.basename(p.llama.library)}`);
    console.log(`  llama.cpp features: ${p.llama.system_info.trim()}`);
    const h = ["test", "kbchat tok/s", "llama FA off", "llama FA on", "kbchat/llama"];
    console.log(`  ${h[0].padEnd(14)}${h.slice(1).map((x) => x.padStart(18)).join("")}`);
    const cell = (s) => `${s.mean.toFixed(2)} ± ${s.sd.toFixed(2)}`.padStart(18);
    for (const r of p.llama.results) {
        const k = p.kbchat.tests[r.test];
        const ratio = (k.mean / r.best_tok_s).toFixed(2) + (r.best_fa ? " (FA on)" : " (FA off)");
        console.log(`  ${r.test.replace("@d", " @ d").padEnd(14)}${cell(k)}${cell(r.fa_off)}${cell(r.fa_on)}${ratio.padStart(18)}`);
    }
    if (p.kbchat.first_token_ms_1536)
        console.log(`  kbchat first token after a 1536-token prompt: ${p.kbchat.first_token_ms_1536.toFixed(0)} ms`);
}

const o = parseArgs(process.argv.slice(2));
const pairs = [];
for (const model of o.models) {
    for (const isa of o.isas) {
        const pair = { model, isa, threads: o.threads, started: clockAndLoad() };
        const kb = runKbchat(o, model, isa);
        if (kb.skip) pair.skip = kb.skip;
        else Object.assign(pair, { kbchat: kb, llama: runLlamaCpp(o, model, isa) });
        pair.ended = clockAndLoad();
        printPair(pair);
        pairs.push(pair);
    }
}
if (o.json) console.log(JSON.stringify(pairs));
