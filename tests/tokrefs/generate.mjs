// generate.mjs: reference ids for every tokenizer.ggml.pre name llama.cpp
// knows, computed by llama.cpp itself (node-llama-cpp's prebuilt library,
// the bench anchor's pinned version) on copies of the shared GPT-2
// vocabulary whose tokenizer.ggml.pre is replaced by each name.
//
// Run through `make tokenizer-refs` (which installs the anchor first):
//   node tests/tokrefs/generate.mjs NODE_MODULES SHARED_VOCAB_DIR OUT_DIR
// Writes OUT_DIR/strings.inp (the test strings, separated as the shared
// .inp files are) and OUT_DIR/<name>.ids for each group of names whose ids
// agree on every string: a first line "# pre: NAME NAME ..." then one line
// of ids per string. test_tok_bpe.c reads them; `make test` needs no node.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

const SEP = "\n__ggml_vocab_test__\n";

// Every name llama_vocab::impl::load accepts for a byte-level BPE vocabulary
// whose pieces are GPT-2 byte-encoded. Names llama.cpp maps to SPM-style BPE
// on raw UTF-8 (gemma4, granite-embed-multi-311m, sarvam-moe, whitespace)
// are left out: kbchat refuses them.
const NAMES = [
    "default", "minicpm5", "llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0",
    "lfm2", "jina-v5-nano", "deepseek-llm", "deepseek-coder", "deepseek-v3", "spark2_5", "youtu", "falcon", "mpt",
    "starcoder", "gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v2-es", "jina-v2-de", "a.x-4.0",
    "mellum", "modern-bert", "jais-2", "jina-v1-en", "jina-v2-code", "roberta-bpe", "refact", "command-r", "qwen2",
    "deepseek-r1-qwen", "kormo", "f2llmv2", "qwen35", "stablelm2", "olmo", "dbrx", "smaug-bpe", "poro-chat", "glm4",
    "chatglm-bpe", "viking", "jais", "tekken", "smollm", "codeshell", "bloom", "gpt3-finnish", "exaone", "exaone4",
    "exaone-moe", "chameleon", "minerva-7b", "megrez", "gpt-4o", "llama4", "kanana2", "talkie",
    "granite-embed-multi-97m", "tiny_aya", "cohere2moe", "superbpe", "trillion", "granite-docling", "bailingmoe",
    "bailingmoe2", "llada-moe", "seed-coder", "hunyuan", "hunyuan-dense", "hy_v4", "joyai-llm", "kimi-k2",
    "ufakzeka", "grok-2", "afmoe", "laguna", "minimax-m2", "solar-open", "mellum2",
];

// Pieces the regexes tell apart: digit runs, other numbers (½ ² Ⅻ) and
// digits of other scripts, contractions in both cases, letters of several
// scripts and cases, combining marks, symbols, emoji, every kind of white
// space alone and in runs, punctuation runs, CJK ranges the DeepSeek and
// AFMoE rules name.
const PIECES = [
    "1", "22", "333", "4444", "55555", "666666", "7777777", "3333", "12345678",
    "½", "²", "³", "Ⅻ", "٣", "६", "٣٤٥", "१२३४", "¼¾", "x²", "3½",
    "'s", "'S", "'t", "'T", "'re", "'RE", "'Re", "'ve", "'VE", "'m", "'M", "'ll", "'LL", "'Ll", "'d", "'D", "'x", "'",
    "hello", "World", "camelCase", "HTTPServer", "getHTTPResponse", "ABC", "xYz", "naïve", "Ǆemal", "ǅ", "ß",
    "Ωμέγα", "Привет", "ԱԲ", "ᏣᎳᎩ", "ｆｕｌｌ", "ＡＢ", "ℂℍ", "ﬁne",
    "中文", "汉字测试", "日本語", "ひらがな", "カタカナ", "ｶﾀｶﾅ", "한국어", "ㄱㄴ", "ㄅㄆ", "ไทย", "ລາວ", "ខ្មែរ", "မြန်",
    "e\u0301", "a\u0300\u0301", "\u0301", "नमस्ते", "হিন্দি", "తెలుగు", "עברית", "العربية", "۔", "،",
    "😀", "👍🏽", "🇺🇸", "❤️", "∑", "€", "$", "+", "<=>", "^", "`", "|", "~", "©", "°", "±",
    " ", "  ", "   ", "\t", "\n", "\r", "\r\n", "\n\n", "\u000b", "\f", "\u00a0", "\u3000", "\u2028", "\u2029",
    "\u0085", "\u2009", " \t ", " \n ", "\t\t", "\u001c", "\u0000x",
    ".", ",", "!", "?", "...", "!!!", "?!", "…", "。", "，", "、", "।", "(", ")", "[]", "{}", "\"", "-", "--", "_",
    "/", "//", "\\", "@", "#", "%", "&", "*", ":", ";", "：", "！", "‘’", "“”", "—", "〈〉", "﹏",
    "<sentinel:12>", "IMGIMGABZ", "    ", "http://example.com/a?b=1", "x = y + 1;", "a/b", "foo/\n",
];

// A small seeded generator (mulberry32): the same strings on every run.
function rng(seed) {
    return () => {
        seed = (seed + 0x6d2b79f5) | 0;
        let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
        t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
        return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
}

// The hand-written cases: each piece after a space, between letters, and
// after a digit and a punctuation mark before white space; then random strings.
function testStrings() {
    const out = [];
    for (const p of PIECES) out.push(" " + p, "a" + p + "b", "1." + p + "  \n");
    const next = rng(20261204);
    for (let i = 0; i < 250; i++) {
        let s = "";
        const n = 1 + Math.floor(next() * 8);
        for (let k = 0; k < n; k++) {
            if (next() < 0.3) s += [" ", "  ", "\n", "\t", "\u3000", " \n"][Math.floor(next() * 6)];
            s += PIECES[Math.floor(next() * PIECES.length)];
        }
        out.push(s);
    }
    return [...new Set(out)].filter((s) => !s.includes("__ggml_vocab_test__"));
}

// Returns a copy of GGUF buffer buf with the string value of key
// tokenizer.ggml.pre replaced by name. The key, its type (8 = string) and
// its old value are located by their bytes: u64 key length, key, u32 type,
// u64 value length, value.
function withPre(buf, name) {
    const key = Buffer.from("tokenizer.ggml.pre");
    const head = Buffer.alloc(8);
    head.writeBigUInt64LE(BigInt(key.length));
    const at = buf.indexOf(Buffer.concat([head, key]));
    if (at < 0) throw new Error("the vocabulary has no tokenizer.ggml.pre");
    const typeAt = at + 8 + key.length;
    if (buf.readUInt32LE(typeAt) !== 8) throw new Error("tokenizer.ggml.pre is not a string");
    const oldLen = Number(buf.readBigUInt64LE(typeAt + 4));
    const value = Buffer.from(name);
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(value.length));
    return Buffer.concat([buf.subarray(0, typeAt + 4), len, value, buf.subarray(typeAt + 12 + oldLen)]);
}

async function main() {
    const [modules, vocabDir, outDir] = process.argv.slice(2);
    if (!outDir) throw new Error("usage: node generate.mjs NODE_MODULES SHARED_VOCAB_DIR OUT_DIR");
    const entry = path.resolve(modules, "node-llama-cpp/dist/index.js");
    const { getLlama, LlamaLogLevel } = await import(entry);
    const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });
    const base = fs.readFileSync(path.join(vocabDir, "ggml-vocab-gpt-2.gguf"));
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "tokrefs-"));
    const tokenize = async (name, strings) => {
        const file = path.join(tmp, name + ".gguf");
        fs.writeFileSync(file, withPre(base, name));
        const model = await llama.loadModel({ modelPath: file, vocabOnly: true });
        const ids = strings.map((s) => Array.from(model.tokenize(s, false)).join(" "));
        await model.dispose();
        return ids;
    };

    // The setup must first reproduce the shared references.
    for (const [inp, out] of [["ggml-vocab-gpt-2.gguf.inp", "ggml-vocab-gpt-2.gguf.out"], ["zh.inp", "ggml-vocab-gpt-2.gguf.zh.out"]]) {
        const strings = fs.readFileSync(path.join(vocabDir, inp), "utf8").split(SEP);
        const want = fs.readFileSync(path.join(vocabDir, out), "utf8").split("\n").map((l) => l.trim());
        const got = await tokenize("gpt-2", strings.slice(0, strings.length - 1));
        got.forEach((g, i) => {
            if (g !== want[i]) throw new Error(`${inp} case ${i}: llama.cpp gives "${g}", ${out} says "${want[i]}"`);
        });
    }

    const shared = ["ggml-vocab-gpt-2.gguf.inp", "zh.inp"].flatMap((f) =>
        fs.readFileSync(path.join(vocabDir, f), "utf8").split(SEP).slice(0, -1));
    const strings = [...new Set([...shared.filter((s) => s !== ""), ...testStrings()])];
    const groups = new Map(); // ids text -> names
    for (const name of NAMES) {
        const text = (await tokenize(name, strings)).join("\n") + "\n";
        if (!groups.has(text)) groups.set(text, []);
        groups.get(text).push(name);
    }
    fs.mkdirSync(outDir, { recursive: true });
    for (const f of fs.readdirSync(outDir)) if (f.endsWith(".ids")) fs.unlinkSync(path.join(outDir, f));
    fs.writeFileSync(path.join(outDir, "strings.inp"), strings.join(SEP) + SEP);
    for (const [text, names] of groups)
        fs.writeFileSync(path.join(outDir, names[0] + ".ids"), `# pre: ${names.join(" ")}\n` + text);
    fs.rmSync(tmp, { recursive: true, force: true });
    console.log(`${strings.length} strings, ${NAMES.length} names in ${groups.size} groups -> ${outDir}`);
}

main().catch((e) => {
    console.error(`generate.mjs: ${e.message}`);
    process.exit(1);
});
