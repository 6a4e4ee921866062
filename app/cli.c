/*
** cli.c: kbchat's command line.
**
** Grammar:  kbchat [OPTIONS] [COMMAND [SUBCOMMAND] [ARGS]]
** Options may stand anywhere before "--"; "--help" after a command shows that
** command's help. A command exists here only once it works: there are no
** placeholders. Usage errors print one line naming the problem, then the
** usage, and exit 2; failures of a command that ran exit 1.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <yaml.h>

#include "app/app.h"
#include "app/cli.h"
#include "engine/engine.h"
#include "rag/rag.h"

/* A command: its words, usage line, help and handler. */
typedef struct CliCommand {
    const char *name;    /* "config", "model" */
    const char *sub;     /* "info", or NULL */
    int min_args, max_args;
    unsigned options;    /* CLI_BIT(CLI_OPT_*) it accepts besides the global ones */
    const char *usage;   /* after "kbchat " */
    const char *summary; /* one line for the command list */
    const char *help;    /* the rest of `kbchat CMD --help` */
    int (*run)(const CliArgs *a, const char *const *args, int n_args);
} CliCommand;

static int cmd_config(const CliArgs *a, const char *const *args, int n_args);
static int cmd_model_info(const CliArgs *a, const char *const *args, int n_args);

static const CliCommand commands[] = {
    {"config", NULL, 0, 0, 0, "config",
     "print the effective configuration and where each value came from",
     "Prints the configuration kbchat would run with, as YAML, each value followed\n"
     "by its source: a file and line, a command-line option, or the built-in default.\n"
     "The file read is the first found of: --config FILE, $KBCHAT_CONFIG,\n"
     "$XDG_CONFIG_HOME/kbchat/config.yaml (else ~/.config/kbchat/config.yaml),\n"
     "./config.yaml. The output is itself a valid config.yaml.\n",
     cmd_config},
    {"model", "info", 0, 1, 0, "model info [FILE]",
     "describe a GGUF model file (default: the configured model.path)",
     "Prints a GGUF model's architecture, name, context length, layer, head and\n"
     "embedding sizes, vocabulary and tokenizer, chat template, parameter count,\n"
     "size on disk and a table of tensor types. Then it checks that kbchat can load\n"
     "the model, with the same checks as before inference: every tensor the\n"
     "architecture needs, with its shape and a type kbchat computes with, consistent\n"
     "sizes, a tokenizer that loads. No tensor data is read, so this is instant even\n"
     "for very large models. A damaged, truncated or unloadable file is reported\n"
     "with what is wrong and where, and the exit status is 1. A vocabulary-only file\n"
     "(no tensors) passes when its tokenizer loads.\n",
     cmd_model_info},
    {"model", "quantize", 3, 3, CLI_BIT(CLI_OPT_THREADS), "model quantize IN.gguf OUT.gguf TYPE [-t N]",
     "convert a GGUF model's weights to a quantized type, as llama-quantize does",
     "Writes OUT.gguf with the metadata and tensors of IN.gguf, the weight matrices\n"
     "converted to TYPE with llama.cpp's quantizers and per-tensor rules, so the file\n"
     "matches what llama-quantize writes. TYPE is one of Q4_0, Q4_1, Q5_0, Q5_1, Q8_0,\n"
     "Q2_K, Q3_K_S, Q3_K_M, Q3_K_L, Q4_K_S, Q4_K_M, Q5_K_S, Q5_K_M, Q6_K (Q3_K, Q4_K and\n"
     "Q5_K mean the _M mixes, as in llama-quantize), F16, BF16 or F32.\n"
     "The _M and _S mixes keep sensitive tensors in more bits: output.weight in Q6_K,\n"
     "attn_v and ffn_down in Q6_K in the first and last eighth of the layers and every\n"
     "third between (Q4_K_M, Q5_K_M), and so on. Norms and biases stay as they are.\n"
     "A matrix whose rows do not split into the type's blocks gets llama.cpp's\n"
     "fallback (Q4_K -> Q5_0, Q6_K -> Q8_0, ...), reported on its line.\n"
     "IN may be F32, F16 or BF16; an already quantized IN is converted too, with a\n"
     "warning, since re-quantizing loses quality. general.file_type is set.\n"
     "OUT is written under a temporary name and renamed when complete: a failed or\n"
     "interrupted run leaves no partial file, and an existing OUT is kept.\n"
     "  -t, --threads N  worker threads (default: all cores)\n",
     cmd_model_quantize},
    {"tokenize", NULL, 0, 1, CLI_BIT(CLI_OPT_SPECIAL) | CLI_BIT(CLI_OPT_BOS) | CLI_BIT(CLI_OPT_FILE),
     "tokenize [--special] [--bos] [--file FILE] [TEXT]",
     "print the token ids of TEXT (or FILE's pieces, or standard input)",
     "Tokenizes with the vocabulary of the model given by --model (or model.path)\n"
     "and prints the ids separated by spaces.\n"
     "  --special    turn control-token text such as <|im_start|> into its id\n"
     "  --bos        add the BOS/EOS tokens the model asks for ([CLS]/[SEP] for BERT)\n"
     "  --file FILE  split FILE at each \"\\n__ggml_vocab_test__\\n\" and print one line\n"
     "               of ids per piece (no BOS/EOS, no special-token parsing): the\n"
     "               format of llama.cpp's tokenizer tests\n"
     "Without TEXT or --file, the text is read from standard input.\n",
     cmd_tokenize},
    {"detokenize", NULL, 1, -1, CLI_BIT(CLI_OPT_SPECIAL) | CLI_BIT(CLI_OPT_RAW), "detokenize [--special] [--raw] ID...",
     "print the text of token ids",
     "Decodes token ids with the vocabulary of the model given by --model (or\n"
     "model.path) and prints the text. Control tokens (BOS, EOS, ...) are left\n"
     "out unless --special is given. Control characters and bytes that are not\n"
     "UTF-8 are shown as \\x1b, \\u009b, \\xff (docs/output.md); --raw writes the\n"
     "bytes unchanged.\n",
     cmd_detokenize},
    {"logits", NULL, 0, 0,
     CLI_BIT(CLI_OPT_TOKENS) | CLI_BIT(CLI_OPT_GEN) | CLI_BIT(CLI_OPT_FOLLOW) | CLI_BIT(CLI_OPT_THREADS) |
         CLI_BIT(CLI_OPT_CTX_SIZE),
     "logits --tokens IDS [--gen N | --follow IDS] [-t N]",
     "print the logits of a token sequence (the engine's conformance check)",
     "Evaluates the comma-separated token ids of --tokens as one batch from position 0\n"
     "with the model given by --model (or model.path) and prints, in the format of\n"
     "the reference files in ../shared/testdata/refs: a 'prompt' line, a 'logits i'\n"
     "line per position, then with --gen N or --follow IDS a 'greedy' line with the\n"
     "tokens fed after the prompt (the engine's own argmax choices with --gen; the\n"
     "given ids with --follow) and a 'step k' line of logits after feeding each.\n"
     "  -t, --threads N  worker threads (default: model.threads)\n",
     cmd_logits},
    {"generate", NULL, 0, 0,
     CLI_BIT(CLI_OPT_PROMPT) | CLI_BIT(CLI_OPT_N_PREDICT) | CLI_BIT(CLI_OPT_TEMP) | CLI_BIT(CLI_OPT_TOP_K) |
         CLI_BIT(CLI_OPT_TOP_P) | CLI_BIT(CLI_OPT_MIN_P) | CLI_BIT(CLI_OPT_REPEAT_PENALTY) | CLI_BIT(CLI_OPT_SEED) |
         CLI_BIT(CLI_OPT_THREADS) | CLI_BIT(CLI_OPT_CTX_SIZE) | CLI_BIT(CLI_OPT_SPECIAL) | CLI_BIT(CLI_OPT_RAW),
     "generate [-p PROMPT] [-n N] [--temp T] [--top-k K] [--top-p P] [--min-p P] [--repeat-penalty R] [--seed S] [-t N] [--raw]",
     "continue a prompt with the model, streaming the text",
     "Tokenizes PROMPT (with the model's BOS; control-token text such as\n"
     "<|im_start|> becomes its token) and prints the continuation as it is\n"
     "generated, then on stderr the prompt and generation speeds in tokens/s.\n"
     "Ctrl-C stops it at once, also while the prompt is evaluated (exit status 130).\n"
     "Sampling settings default to the configuration's sampling.* values.\n"
     "Control characters and bytes that are not UTF-8 in the text are shown as\n"
     "\\x1b, \\u009b, \\xff (docs/output.md): a model cannot drive the terminal.\n"
     "  -n, --n-predict N  tokens to generate at most (default sampling.max_tokens)\n"
     "  --temp T           temperature, 0 = greedy\n"
     "  --seed S           random seed (default sampling.seed; -1 = random)\n"
     "  --ctx-size N       context length (default: the model's, capped by model.context_size)\n"
     "  --special          print control tokens as text\n"
     "  --raw              write the model's bytes unchanged (for a pipe that wants them)\n",
     cmd_generate},
    {"embed", NULL, 0, 1, CLI_BIT(CLI_OPT_FILE) | CLI_BIT(CLI_OPT_THREADS), "embed [--file LINES.txt] [TEXT]",
     "print embedding vectors of text (BERT-family models)",
     "Embeds with the embedding model given by --model (or model.path).\n"
     "  TEXT         prints one L2-normalised vector\n"
     "  --file FILE  for each line of FILE prints 'text LINE', 'ids ...' (with [CLS]\n"
     "               and [SEP]) and 'embd ...' (pooled, not normalised): the format of\n"
     "               ../shared/testdata/refs/tiny-bert-*.ref\n",
     cmd_embed},
    {"bench", NULL, 0, 0,
     CLI_BIT(CLI_OPT_PROMPT) | CLI_BIT(CLI_OPT_N_PREDICT) | CLI_BIT(CLI_OPT_DEPTH) | CLI_BIT(CLI_OPT_THREADS) |
         CLI_BIT(CLI_OPT_REPS) | CLI_BIT(CLI_OPT_JSON),
     "bench [-p 128] [-n 32] [-d 0] [-t THREADS] [-r REPS] [--json]",
     "measure prompt and generation speed of a model",
     "Measures, with the model given by --model (or model.path), prompt processing\n"
     "(-p tokens evaluated as one prompt, default 128) and generation (-n tokens\n"
     "decoded one at a time, default 32), each after -d tokens already in the\n"
     "cache (default 0: an empty cache), as llama-bench does; each test is repeated\n"
     "-r times (default 5) after a warm-up. It prints tokens/s (mean and standard\n"
     "deviation; \"pp512 @ d1536\" names a test at depth 1536), the time from the\n"
     "start of the -p prompt to its first answer token (the wait for an answer to a\n"
     "prompt of that size: -p 1536 for a grounded one), the memory bandwidth\n"
     "generation achieves (weight bytes read per token x tokens/s), the load time\n"
     "and time to the first token after start, peak resident memory and the kernels\n"
     "in use. The tokens are random ids, so any model can be measured. The depth\n"
     "tokens are computed untimed, once: each test reuses them from the cache. The\n"
     "context is -d plus the longer of -p and -n; more than the model's is an error.\n"
     "  -d, --n-depth N  tokens in the cache before each test (default 0)\n"
     "  --json           one JSON object instead of the table (\"depth\": -d)\n",
     cmd_bench},
    {"chat", NULL, 0, 0, CLI_BIT(CLI_OPT_KB) | CLI_BIT(CLI_OPT_RAW), "chat [--model FILE] [--kb NAME] [--raw]",
     "a line-mode conversation on standard input and output",
     "Reads one question or command per line and streams each answer, followed by\n"
     "its sources when a knowledge base is in use. The prompt follows the model's\n"
     "chat template (model.template; auto = from the model file) and keeps as many\n"
     "recent turns as fit the context. With a knowledge base, a follow-up question\n"
     "is first rewritten by the model into a standalone one, which is what is\n"
     "searched (shown with the sources). Every answer is saved: /sessions lists the\n"
     "conversations and /open N resumes one. Commands: /kb NAME|off, /new,\n"
     "/sessions, /open N, /rename TITLE, /delete N, /export [--force] FILE, /set KEY VALUE,\n"
     "/model FILE, /sources, /retry, /help, /quit. The end of input ends the\n"
     "session (exit status 0). Ctrl-C stops an answer at once, also while its prompt\n"
     "is evaluated; a second one, or one while kbchat waits for a line, ends it. The\n"
     "\"> \" prompt appears only on a terminal and notices go to standard error, so\n"
     "piped output holds only the answers, their sources and the commands' results.\n"
     "Control characters and bytes that are not UTF-8 in answers, file names and\n"
     "passages are shown as \\x1b, \\u009b, \\xff (docs/output.md).\n"
     "  --kb NAME   search knowledge base NAME (see 'kbchat kb list')\n"
     "  --raw       write the answers' bytes unchanged (sources stay escaped)\n",
     cmd_chat},
    {"kb", "create", 1, 1, CLI_BIT(CLI_OPT_FOLDER), "kb create NAME [--folder DIR]...",
     "create a knowledge base over folders of PDF and text files",
     "Creates an empty knowledge base NAME (letters, digits, '-', '_', '.') with the\n"
     "chunking.size, chunking.overlap and embedding.model of the configuration, which\n"
     "stay fixed for it. Each --folder DIR (repeatable) becomes a source; nothing is\n"
     "read until 'kbchat kb sync NAME'. Knowledge bases live in one SQLite file,\n"
     "knowledge.db in data_dir.\n",
     cmd_kb_create},
    {"kb", "add", 2, -1, 0, "kb add NAME PATH...", "add folders or files (.pdf, .txt, .md) to a knowledge base",
     "Adds each PATH, a folder (searched recursively for .pdf, .txt, .md and\n"
     ".markdown files; hidden files and folders are skipped) or a single file, as a\n"
     "source of NAME. 'kbchat kb sync NAME' indexes them.\n",
     cmd_kb_add},
    {"kb", "list", 0, 0, 0, "kb list", "list the knowledge bases",
     "Prints each knowledge base with its numbers of documents, pages, chunks and\n"
     "failed documents, and the time of its last sync.\n",
     cmd_kb_list},
    {"kb", "status", 1, 1, 0, "kb status NAME", "show a knowledge base: sources, counts, failures, last sync",
     "Prints the sources of NAME, its documents, pages and chunks, the chunking\n"
     "settings and embedding model it was created with, the time of its last sync,\n"
     "and every document that could not be indexed with the reason.\n",
     cmd_kb_status},
    {"kb", "files", 1, 1, 0, "kb files NAME", "list the documents of a knowledge base",
     "Prints every document of NAME with its pages and chunks, or why it failed.\n", cmd_kb_files},
    {"kb", "sync", 0, 1, CLI_BIT(CLI_OPT_ALL), "kb sync NAME|--all", "index new and changed files, drop deleted ones",
     "Brings NAME (or every knowledge base, with --all) in line with its folders:\n"
     "unchanged files (same size and time) are skipped, changed ones re-indexed,\n"
     "deleted ones dropped, and moved or renamed ones recognised by their content\n"
     "without being read again. A file that cannot be indexed (encrypted, damaged,\n"
     "scanned without text, not really a PDF) is recorded with the reason and\n"
     "skipped. Each document is saved on its own, so an interrupted sync loses\n"
     "nothing: the next one carries on. On a terminal a progress line shows files,\n"
     "pages, chunks, pages/s and the time left; otherwise one line per document.\n",
     cmd_kb_sync},
    {"kb", "remove", 2, 2, 0, "kb remove NAME PATH", "take a folder or file out of a knowledge base",
     "Removes PATH from NAME: a source is dropped; a folder or file inside a source\n"
     "is excluded from later syncs. Its documents leave the index at once; the\n"
     "files themselves are not touched.\n",
     cmd_kb_remove},
    {"kb", "delete", 1, 1, CLI_BIT(CLI_OPT_YES), "kb delete NAME [--yes]", "delete a knowledge base and its index",
     "Deletes NAME with its documents and chunks from the database (your files are\n"
     "not touched). Asks for confirmation on a terminal; elsewhere --yes is needed.\n",
     cmd_kb_delete},
    {"kb", "search", 2, -1, CLI_BIT(CLI_OPT_TOP_K) | CLI_BIT(CLI_OPT_JSON) | CLI_BIT(CLI_OPT_MODE),
     "kb search NAME QUERY [--mode MODE] [--top-k K] [--json]",
     "search a knowledge base: words, keyword, vector or hybrid",
     "Prints the passages of NAME that match QUERY, the best first, with file, page\n"
     "and score (higher is better everywhere). --mode chooses how:\n"
     "  words    (default) chunks that contain every word of QUERY (Chinese words of\n"
     "           any length, English case-insensitively; when none has all, any)\n"
     "  keyword  QUERY read as a question: its terms (no stop words, English stems,\n"
     "           Chinese bigrams), any of which may match, ranked by BM25\n"
     "  vector   cosine similarity to QUERY's vector (embedding.model, which must be\n"
     "           the model NAME was built with)\n"
     "  hybrid   keyword and vector fused by reciprocal rank (keyword only when the\n"
     "           knowledge base has no usable vectors, with a note saying why)\n"
     "keyword, vector and hybrid merge neighbouring chunks into one passage,\n"
     "complete a sentence cut at a chunk's end, drop passages below\n"
     "retrieval.score_threshold and show each retriever's rank.\n"
     "  --top-k K   at most K results (default retrieval.top_k)\n"
     "  --json      a JSON array of objects with rank, score, file, page (null for\n"
     "              text files), chunk_id, section and text; other modes than words\n"
     "              add bm25_rank, vector_rank (null when not found by it) and\n"
     "              relevance (0..1, what the threshold is compared with); a value\n"
     "              that is not UTF-8 gets a KEY_hex member (docs/output.md)\n"
     "Put '--' before a query word that starts with '-'.\n",
     cmd_kb_search},
    {"kb", "rebuild", 1, 1, 0, "kb rebuild NAME", "re-embed a knowledge base with the configured embedding model",
     "Pins NAME to the configured embedding.model and embeds every chunk with it, so\n"
     "vector and hybrid search work again after the model changed (a knowledge base\n"
     "searches vectors only with the model that made them). Keyword search works\n"
     "throughout. Vectors are saved a batch at a time: when interrupted, run it again\n"
     "(or 'kb sync') and it goes on where it stopped. With embedding.model \"none\"\n"
     "the vectors are dropped and NAME becomes keyword-only.\n",
     cmd_kb_rebuild},
    {"kb", "check", 0, 1, 0, "kb check [NAME]", "check the database for damage and repair it",
     "Checks knowledge.db (SQLite's integrity_check, the keyword index, and each\n"
     "document's chunks against the count stored with it). When something is wrong\n"
     "it rebuilds the database from every row that can still be read, keeps the\n"
     "damaged file beside it as knowledge.db.damaged-<time>, drops the chunks of\n"
     "each document that lost some and indexes those documents again from their\n"
     "files (only those of NAME when given; the others at their next 'kb sync').\n"
     "Run it when another command says the database is damaged, with no other\n"
     "kbchat running. Exit status 0 only when the database ends healthy.\n",
     cmd_kb_check},
    {"ask", NULL, 1, -1,
     CLI_BIT(CLI_OPT_KB) | CLI_BIT(CLI_OPT_TOP_K) | CLI_BIT(CLI_OPT_JSON) | CLI_BIT(CLI_OPT_RETRIEVE_ONLY) |
         CLI_BIT(CLI_OPT_SHOW_PROMPT) | CLI_BIT(CLI_OPT_FALLBACK) | CLI_BIT(CLI_OPT_N_PREDICT) | CLI_BIT(CLI_OPT_TEMP) |
         CLI_BIT(CLI_OPT_SEED) | CLI_BIT(CLI_OPT_THREADS) | CLI_BIT(CLI_OPT_CTX_SIZE) | CLI_BIT(CLI_OPT_RAW),
     "ask [--kb NAME] [--top-k K] [--json] [--retrieve-only] [--raw] QUESTION",
     "answer a question from a knowledge base, citing the sources",
     "Searches the knowledge base (hybrid: keyword and vector, keyword only when it\n"
     "has no vectors), puts the best passages, numbered [1]..[k] with file and page,\n"
     "into a grounded prompt that fits the model's context (the lowest-ranked\n"
     "passages are left out first), streams the model's answer, then prints\n"
     "'Sources:' with '[n] file, page N' and the first line of each passage.\n"
     "When no passage passes retrieval.score_threshold, kbchat says the knowledge\n"
     "base has nothing on it and loads no model (--fallback model lets the model\n"
     "answer instead, labelled as not from the documents). Ctrl-C stops the answer\n"
     "at once, also while the prompt is evaluated (exit status 130, no sources).\n"
     "Control characters and bytes that are not UTF-8 in the answer, file names and\n"
     "passages are shown as \\x1b, \\u009b, \\xff (docs/output.md); --json output\n"
     "is always valid JSON (a value that is not UTF-8 gets a KEY_hex member).\n"
     "  --kb NAME         the knowledge base (default: the only one there is)\n"
     "  --top-k K         passages to retrieve (default retrieval.top_k)\n"
     "  --retrieve-only   print the ranked passages and stop: no chat model is loaded\n"
     "  --json            with --retrieve-only, a JSON array with rank, score, file,\n"
     "                    page, chunk_id, section, bm25_rank, vector_rank, relevance\n"
     "                    and text; else one object with the answer and its sources\n"
     "  --show-prompt     print the prompt given to the model on standard error\n"
     "  --fallback MODE   strict (default) or model, when nothing is found\n"
     "  --raw             write the answer's bytes unchanged (sources stay escaped)\n"
     "  -n, --temp, --seed, -t, --ctx-size   as for 'kbchat generate'\n",
     cmd_ask},
};
#define N_COMMANDS (int)(sizeof commands / sizeof commands[0])

/* Command-specific options: long name, short name (0 = none), whether it
** takes a value, whether it may be repeated. Indexed by CliOpt. */
static const struct CliOptionSpec {
    const char *name;
    char short_name;
    int takes_value;
    int repeatable;
} cli_options[CLI_OPT_COUNT] = {
    [CLI_OPT_SPECIAL] = {"--special", 0, 0, 0},
    [CLI_OPT_BOS] = {"--bos", 0, 0, 0},
    [CLI_OPT_FILE] = {"--file", 0, 1, 0},
    [CLI_OPT_TOKENS] = {"--tokens", 0, 1, 0},
    [CLI_OPT_GEN] = {"--gen", 0, 1, 0},
    [CLI_OPT_FOLLOW] = {"--follow", 0, 1, 0},
    [CLI_OPT_THREADS] = {"--threads", 't', 1, 0},
    [CLI_OPT_PROMPT] = {"--prompt", 'p', 1, 0},
    [CLI_OPT_N_PREDICT] = {"--n-predict", 'n', 1, 0},
    [CLI_OPT_TEMP] = {"--temp", 0, 1, 0},
    [CLI_OPT_TOP_K] = {"--top-k", 0, 1, 0},
    [CLI_OPT_TOP_P] = {"--top-p", 0, 1, 0},
    [CLI_OPT_MIN_P] = {"--min-p", 0, 1, 0},
    [CLI_OPT_REPEAT_PENALTY] = {"--repeat-penalty", 0, 1, 0},
    [CLI_OPT_SEED] = {"--seed", 0, 1, 0},
    [CLI_OPT_CTX_SIZE] = {"--ctx-size", 0, 1, 0},
    [CLI_OPT_REPS] = {"--reps", 'r', 1, 0},
    [CLI_OPT_FOLDER] = {"--folder", 0, 1, 1},
    [CLI_OPT_ALL] = {"--all", 0, 0, 0},
    [CLI_OPT_YES] = {"--yes", 0, 0, 0},
    [CLI_OPT_JSON] = {"--json", 0, 0, 0},
    [CLI_OPT_KB] = {"--kb", 0, 1, 0},
    [CLI_OPT_MODE] = {"--mode", 0, 1, 0},
    [CLI_OPT_RETRIEVE_ONLY] = {"--retrieve-only", 0, 0, 0},
    [CLI_OPT_SHOW_PROMPT] = {"--show-prompt", 0, 0, 0},
    [CLI_OPT_FALLBACK] = {"--fallback", 0, 1, 0},
    [CLI_OPT_DEPTH] = {"--n-depth", 'd', 1, 0},
    [CLI_OPT_RAW] = {"--raw", 0, 0, 0},
};

const char *cli_option_name(CliOpt o)
{
    return o >= 0 && o < CLI_OPT_COUNT ? cli_options[o].name : "?";
}

/* --- help and usage --- */

static void print_usage(FILE *out)
{
    fputs("usage: kbchat [--config FILE] [--model FILE] [COMMAND [ARGS]]\n"
          "       kbchat --help | --version\n",
          out);
}

static void print_help(FILE *out)
{
    fputs("kbchat " KB_VERSION ": chat with local language models over your own documents.\n\n", out);
    print_usage(out);
    fputs("\ncommands:\n", out);
    for (int i = 0; i < N_COMMANDS; i++) fprintf(out, "  %-20s %s\n", commands[i].usage, commands[i].summary);
    fputs("\noptions:\n"
          "  -c, --config FILE    read this configuration file instead of the usual ones\n"
          "  -m, --model FILE     use this GGUF chat model (overrides model.path)\n"
          "  -h, --help           show this help; 'kbchat COMMAND --help' for a command\n"
          "  -V, --version        show the version and the libraries in use\n"
          "\nWithout a command, on a terminal kbchat opens the full-screen chat (--kb NAME\n"
          "searches a knowledge base; F1 lists the keys); otherwise it checks its\n"
          "configuration and model and says what it found.\n"
          "\nconfiguration: the first found of --config FILE, $KBCHAT_CONFIG,\n"
          "$XDG_CONFIG_HOME/kbchat/config.yaml (else ~/.config/kbchat/config.yaml) and\n"
          "./config.yaml; otherwise built-in defaults. 'kbchat config' shows the result.\n",
          out);
}

static void print_command_help(FILE *out, const CliCommand *c)
{
    fprintf(out, "usage: kbchat [--config FILE] %s\n\n%s", c->usage, c->help);
}

static void print_version(FILE *out, const CliFullScreen *ui)
{
    char rag[256];
    fprintf(out, "kbchat %s\n", KB_VERSION);
    fprintf(out, "libraries: %s, libyaml %s, %s\n", rag_library_versions(rag, sizeof rag),
            yaml_get_version_string(), ui->library_version());
    fprintf(out, "BLAS: %s\n", engine_blas_info());
}

/* Reports a usage error: one line, then the usage. Returns the exit code. */
static int usage_error(const char *fmt, const char *arg)
{
    TermStrs t = {0};
    fputs("kbchat: ", stderr);
    fprintf(stderr, fmt, term_line(&t, arg));
    fputc('\n', stderr);
    term_strs_clear(&t);
    print_usage(stderr);
    fputs("Try 'kbchat --help' for more information.\n", stderr);
    return CLI_EXIT_USAGE;
}

/* --- argument parsing --- */

/* Takes the value of option `opt` from "--opt=value" or the next argument.
** Returns 0, or the usage-error exit code. */
static int take_value(int argc, char **argv, int *i, const char *opt, const char **value)
{
    const char *arg = argv[*i];
    const char *eq = strchr(arg, '=');
    if (eq && strncmp(arg, "--", 2) == 0) {
        *value = eq + 1;
    } else if (*i + 1 < argc) {
        *value = argv[++*i];
    } else {
        return usage_error("option '%s' needs a file name", opt);
    }
    if (**value == '\0') return usage_error("option '%s' needs a file name, got an empty one", opt);
    return 0;
}

/* Returns 1 when arg is the long option name, alone or as "name=...". */
static int is_long(const char *arg, const char *name)
{
    size_t n = strlen(name);
    return strncmp(arg, name, n) == 0 && (arg[n] == '\0' || arg[n] == '=');
}

/* Finds the command-specific option argv[*i] in cli_options and records it
** (with its value). Returns 0, or the usage-error exit code. */
static int parse_command_option(int argc, char **argv, int *i, CliArgs *a)
{
    const char *arg = argv[*i];
    for (int o = 0; o < CLI_OPT_COUNT; o++) {
        const struct CliOptionSpec *spec = &cli_options[o];
        int short_match = spec->short_name && arg[1] == spec->short_name && arg[2] == '\0';
        if (!short_match && !(spec->takes_value ? is_long(arg, spec->name) : strcmp(arg, spec->name) == 0)) continue;
        a->options |= CLI_BIT(o);
        if (!spec->takes_value) return 0;
        const char *value;
        int rc = take_value(argc, argv, i, spec->name, &value);
        if (rc != 0) return rc;
        a->value[o] = value;
        if (spec->repeatable) a->repeated[a->n_repeated++] = value;
        return 0;
    }
    return usage_error("unknown option '%s'", arg);
}

/* Fills a from argv; a->words must have room for argc entries. Returns 0,
** or the usage-error exit code. */
static int parse_args(int argc, char **argv, CliArgs *a)
{
    int rc = 0, only_words = 0;
    for (int i = 1; i < argc && rc == 0; i++) {
        const char *arg = argv[i];
        if (only_words || arg[0] != '-' || arg[1] == '\0') {
            a->words[a->n_words++] = arg;
        } else if (strcmp(arg, "--") == 0) {
            only_words = 1;
        } else if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
            a->help = 1;
        } else if (strcmp(arg, "-V") == 0 || strcmp(arg, "--version") == 0) {
            a->version = 1;
        } else if (strcmp(arg, "-c") == 0 || is_long(arg, "--config")) {
            rc = take_value(argc, argv, &i, "--config", &a->config_path);
        } else if (strcmp(arg, "-m") == 0 || is_long(arg, "--model")) {
            rc = take_value(argc, argv, &i, "--model", &a->model_path);
        } else {
            rc = parse_command_option(argc, argv, &i, a);
        }
    }
    return rc;
}

/* --- configuration --- */

/* Loads the configuration with the command-line overrides, printing
** warnings. Returns KB_OK, or prints the error and returns its code. */
int cli_load_config(const CliArgs *a, KbConfig *cfg)
{
    int rc = config_load(cfg, a->config_path);
    for (int i = 0; i < cfg->n_warnings; i++) {
        fputs("kbchat: warning: ", stderr);
        term_fputs(stderr, cfg->warnings[i], TERM_LINE);
        fputc('\n', stderr);
    }
    if (rc == KB_OK && a->model_path) rc = config_set(cfg, "model.path", a->model_path, "--model");
    if (rc != KB_OK) cli_print_error(cfg->errmsg);
    cfg->pdf_extractor = CLI_SELF_EXE; /* this is kbchat: it extracts PDFs with __extract-pdf */
    return rc;
}

/* --- commands --- */

static int cmd_config(const CliArgs *a, const char *const *args, int n_args)
{
    (void)args, (void)n_args;
    KbConfig cfg;
    int rc = cli_load_config(a, &cfg);
    if (rc == KB_OK) config_print(&cfg, stdout);
    config_free(&cfg);
    return rc == KB_OK ? CLI_EXIT_OK : CLI_EXIT_FAIL;
}

/* Prints the model summary of `path` and checks that it loads (a
** vocabulary-only file passes when vocab_only_ok), or prints the error.
** Returns the exit code. */
static int print_model_info(const char *path, bool vocab_only_ok)
{
    char err[1024];
    int rc = model_info_print(path, vocab_only_ok, stdout, err, sizeof err);
    return rc == KB_OK ? CLI_EXIT_OK : cli_print_error(err);
}

static int cmd_model_info(const CliArgs *a, const char *const *args, int n_args)
{
    if (n_args == 1) return print_model_info(args[0], true);
    if (a->model_path) return print_model_info(a->model_path, true);
    KbConfig cfg;
    int code = CLI_EXIT_FAIL;
    if (cli_load_config(a, &cfg) == KB_OK) {
        if (cfg.model_path[0]) {
            code = print_model_info(cfg.model_path, true);
        } else {
            cli_print_errorf("model info: no model given: pass FILE, --model FILE, or set model.path in %s",
                    cfg.file ? cfg.file : "a configuration file (see 'kbchat config --help')");
            code = CLI_EXIT_USAGE;
        }
    }
    config_free(&cfg);
    return code;
}

/* The bare `kbchat` on a terminal: the full-screen chat (ui/), which loads
** the configured model itself; kb (--kb, may be NULL) is searched. Returns
** an exit code. */
static int cmd_start_ui(const CliFullScreen *ui, KbConfig *cfg, const char *kb)
{
    ChatApp *app = NULL;
    char err[512] = "";
    if (chat_open(cfg, &app) != KB_OK) {
        fputs("kbchat: out of memory\n", stderr);
        return CLI_EXIT_FAIL;
    }
    int rc = ui->run(app, cfg->model_path, kb, cfg->file, cfg->theme, err, sizeof err);
    chat_close(app);
    if (rc != KB_OK) cli_print_error(err);
    if (rc == KB_OK && ui->quit_signal()) return 128 + ui->quit_signal(); /* SIGTERM: 143, SIGHUP: 129 */
    return rc == KB_OK ? CLI_EXIT_OK : CLI_EXIT_FAIL;
}

/* kbchat with no command: on a terminal the full-screen chat; otherwise
** checks the configuration and the model and says what it found and how to
** go on. */
static int cmd_start(const CliArgs *a)
{
    KbConfig cfg;
    TermStrs t = {0};
    int code = CLI_EXIT_FAIL;
    if (cli_load_config(a, &cfg) != KB_OK) goto done;
    if (isatty(STDIN_FILENO) && isatty(STDOUT_FILENO)) {
        code = cmd_start_ui(a->ui, &cfg, a->value[CLI_OPT_KB]);
        goto done;
    }
    printf("kbchat %s\n", KB_VERSION);
    if (cfg.file) printf("configuration:   %s (found as %s)\n", term_line(&t, cfg.file), cfg.file_origin);
    else printf("configuration:   built-in defaults (no configuration file found)\n");
    printf("data directory:  %s\n", term_line(&t, cfg.data_dir));
    if (cfg.model_path[0] == '\0') {
        printf("model:           none configured\n\n"
               "To chat, get a GGUF chat model (for example Qwen2.5-1.5B-Instruct Q4_K_M,\n"
               "ChatGLM3-6B Q4_0 or Llama-2-7B-chat Q4_0) and set model.path in %s\n"
               "or pass --model FILE. 'kbchat --help' lists the commands.\n",
               cfg.file ? term_line(&t, cfg.file) : "~/.config/kbchat/config.yaml");
        code = CLI_EXIT_OK;
        goto done;
    }
    printf("model:\n");
    fflush(stdout);
    code = print_model_info(cfg.model_path, false); /* the chat model: a vocabulary alone cannot chat */
    if (code == CLI_EXIT_OK) printf("\n'kbchat --help' lists the commands.\n");
done:
    term_strs_clear(&t);
    config_free(&cfg);
    return code;
}

/* Finds the command named by the words; reports usage errors. */
static int find_command(const CliArgs *a, const CliCommand **out, int *n_used)
{
    const char *name = a->words[0];
    const char *sub = a->n_words > 1 ? a->words[1] : NULL;
    int known_name = 0;
    for (int i = 0; i < N_COMMANDS; i++) {
        if (strcmp(commands[i].name, name) != 0) continue;
        known_name = 1;
        if (commands[i].sub == NULL) {
            *out = &commands[i];
            *n_used = 1;
            return 0;
        }
        if (sub && strcmp(commands[i].sub, sub) == 0) {
            *out = &commands[i];
            *n_used = 2;
            return 0;
        }
    }
    if (!known_name) return usage_error("unknown command '%s'", name);
    if (sub) return usage_error("unknown subcommand '%s'", sub);
    return usage_error("'%s' needs a subcommand (see 'kbchat --help')", name);
}

/* Checks that every command-specific option given applies to command c. */
static int check_options(const CliArgs *a, const CliCommand *c)
{
    for (int o = 0; o < CLI_OPT_COUNT; o++) {
        if ((a->options & CLI_BIT(o)) && !(c->options & CLI_BIT(o))) {
            cli_print_errorf("option '%s' does not apply to '%s'", cli_options[o].name, c->usage);
            fprintf(stderr, "usage: kbchat [--config FILE] %s\n", c->usage);
            return CLI_EXIT_USAGE;
        }
    }
    return 0;
}

/* Runs the command line in a (parsed); returns the exit code. */
static int run_parsed(const CliArgs *a)
{
    if (a->version) {
        print_version(stdout, a->ui);
        return CLI_EXIT_OK;
    }
    if (a->n_words == 0) {
        for (int o = 0; o < CLI_OPT_COUNT; o++)
            if ((a->options & CLI_BIT(o)) && o != CLI_OPT_KB) /* --kb: the full-screen chat's */
                return usage_error("option '%s' needs a command", cli_options[o].name);
        if (a->help) {
            print_help(stdout);
            return CLI_EXIT_OK;
        }
        return cmd_start(a);
    }
    const CliCommand *c = NULL;
    int used = 0, code;
    if ((code = find_command(a, &c, &used)) != 0) return code;
    if (a->help) {
        print_command_help(stdout, c);
        return CLI_EXIT_OK;
    }
    if ((code = check_options(a, c)) != 0) return code;
    int n_args = a->n_words - used;
    if (n_args < c->min_args || (c->max_args >= 0 && n_args > c->max_args)) {
        if (c->max_args >= 0 && n_args > c->max_args) cli_print_errorf("unexpected argument '%s'", a->words[used + c->max_args]);
        else cli_print_errorf("%s needs more arguments", c->usage);
        fprintf(stderr, "usage: kbchat [--config FILE] %s\n", c->usage);
        return CLI_EXIT_USAGE;
    }
    return c->run(a, a->words + used, n_args);
}

int cli_run(int argc, char **argv, const CliFullScreen *ui)
{
    /* hidden: the PDF extractor a sync starts as a child (rag/extract.c) */
    if (argc >= 2 && strcmp(argv[1], "__extract-pdf") == 0) return rag_extract_pdf_main(argc, argv);
    CliArgs a;
    memset(&a, 0, sizeof a);
    a.ui = ui;
    a.words = calloc((size_t)argc + 1, sizeof *a.words);
    a.repeated = calloc((size_t)argc + 1, sizeof *a.repeated);
    if (a.words == NULL || a.repeated == NULL) {
        free(a.words);
        free(a.repeated);
        fputs("kbchat: out of memory\n", stderr);
        return CLI_EXIT_FAIL;
    }
    int code = parse_args(argc, argv, &a);
    if (code == 0) code = run_parsed(&a);
    free(a.words);
    free(a.repeated);
    return code;
}
