/*
** config.c: kbchat's configuration: built-in defaults, one YAML file read
** with libyaml's event parser, and command-line overrides (config_set).
**
** Everything known about a key lives in one row of config_keys[]: its dotted
** name, kind, place in KbConfig, range or allowed words, default text and
** documentation. Defaults, file values and config_set all go through the same
** function, config_assign(), so adding a key is adding a row (and a field).
**
** The file is hostile input. It is read whole (at most KB_CONFIG_MAX_BYTES)
** and walked event by event; the walk follows the shape
**
**     stream > document > mapping of sections > mapping of keys > scalar
**
** and anything else is an error naming file, line and key. Unknown keys are
** warnings and their values, whatever their shape, are skipped.
**
** Invariants:
**   1. After config_init() succeeds, every string field and every sources[i]
**      is non-NULL, and every value is within its key's range.
**   2. A value is stored only once it is fully validated, and its source is
**      replaced in the same step: a failed assignment changes nothing.
**   3. The parser holds at most one libyaml event (ConfigParser.event);
**      config_next_event() frees the previous one before reading the next.
**   4. Messages never contain raw control bytes from the file: values and
**      keys pass through config_quote() first.
*/
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <locale.h>
#include <math.h>
#include <pwd.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <glib.h>
#include <yaml.h>

#include "app/config.h"
#include "engine/engine.h"

#define CONFIG_MAX_DEPTH 64      /* deeper nesting, even under unknown keys, is refused */
#define CONFIG_SHOW_CHARS 40     /* characters of a value shown in a message */
#define CONFIG_MAX_WARNINGS 64   /* a hostile file cannot flood the terminal */
#define CONFIG_NAME_MAX 128      /* longer key names cannot be known keys */
#define CONFIG_COMMENT_COLUMN 33 /* where config_print puts the source comment */

/* --- the key table --- */

typedef enum ConfigKind {
    CONFIG_STRING, /* char *: any UTF-8 text */
    CONFIG_ENUM,   /* char *: one of the key's words */
    CONFIG_INT,    /* int64_t within min..max */
    CONFIG_NUMBER  /* double within min..max */
} ConfigKind;

/* Special meanings, as flags of a key. */
enum {
    CONFIG_HOME = 1,     /* a leading "~/" means $HOME */
    CONFIG_CORES = 2,    /* 0 means all online cores, stored resolved */
    CONFIG_DATA_DIR = 4, /* "" means the XDG data directory, stored resolved */
    CONFIG_TEMPLATE = 8, /* non-empty text must hold {context} and {question} */
    CONFIG_ZERO = 16     /* 0 is allowed below min, with a meaning of its own */
};

typedef struct ConfigKey {
    const char *name;         /* dotted: "retrieval.top_k" */
    ConfigKind kind;
    size_t offset;            /* of the field in KbConfig */
    double min, max;          /* CONFIG_INT and CONFIG_NUMBER */
    const char *const *words; /* CONFIG_ENUM: NULL-terminated */
    const char *def;          /* the default, as it would be written in YAML */
    int flags;                /* CONFIG_HOME, ... */
    const char *doc;          /* one line for people reading this table */
} ConfigKey;

static const char *const config_template_words[] = {
    "auto", "chatml", "llama2", "llama3", "vicuna", "alpaca", "belle", "phoenix",
    "chatglm", "chatglm2", "chatglm3", "chatglm4", "raw", NULL};
static const char *const config_theme_words[] = {"dark", "light", "mono", NULL};
static const char *const config_fallback_words[] = {"strict", "model", NULL};

#define KEY_STRING(name, field, def, flags, doc) \
    {name, CONFIG_STRING, offsetof(KbConfig, field), 0, 0, NULL, def, flags, doc}
#define KEY_ENUM(name, field, words, def, doc) \
    {name, CONFIG_ENUM, offsetof(KbConfig, field), 0, 0, words, def, 0, doc}
#define KEY_INT(name, field, min, max, def, flags, doc) \
    {name, CONFIG_INT, offsetof(KbConfig, field), min, max, NULL, def, flags, doc}
#define KEY_NUMBER(name, field, min, max, def, doc) \
    {name, CONFIG_NUMBER, offsetof(KbConfig, field), min, max, NULL, def, 0, doc}

/* In the order of config.yaml and of config_print; a section's keys are
** consecutive. */
static const ConfigKey config_keys[] = {
    KEY_STRING("model.path", model_path, "", CONFIG_HOME, "GGUF chat model; \"\" = none"),
    KEY_ENUM("model.template", model_template, config_template_words, "auto",
             "chat template; auto = from the model's metadata"),
    KEY_INT("model.context_size", context_size, 16, 1048576, "4096", CONFIG_ZERO,
            "context window in tokens; 0 = the model's own; else 16..1048576"),
    KEY_INT("model.threads", threads, 0, 1024, "0", CONFIG_CORES, "worker threads; 0 = all online cores"),
    KEY_STRING("embedding.model", embedding_model, "", CONFIG_HOME,
               "\"\"/\"none\" = keyword search only, \"chat\" = the chat model, else a GGUF path"),
    KEY_NUMBER("sampling.temperature", temperature, 0, 5, "0.7", "0 = greedy"),
    KEY_INT("sampling.top_k", top_k, 0, 1000, "40", 0, "0 = off"),
    KEY_NUMBER("sampling.top_p", top_p, 0, 1, "0.9", "1 = off"),
    KEY_NUMBER("sampling.min_p", min_p, 0, 1, "0.05", "0 = off"),
    KEY_NUMBER("sampling.repeat_penalty", repeat_penalty, 0.5, 5, "1.1", "1 = off"),
    KEY_INT("sampling.repeat_last_n", repeat_last_n, 0, 65536, "64", 0, "tokens the penalty looks back"),
    KEY_INT("sampling.seed", seed, -1, 4294967295.0, "-1", 0, "-1 = random"),
    KEY_INT("sampling.max_tokens", max_tokens, 1, 1048576, "1024", 0, "longest answer in tokens"),
    KEY_STRING("data_dir", data_dir, "", CONFIG_HOME | CONFIG_DATA_DIR,
               "knowledge bases and sessions; \"\" = $XDG_DATA_HOME/kbchat or ~/.local/share/kbchat"),
    KEY_INT("chunking.size", chunk_size, 50, 20000, "500", 0, "characters per chunk"),
    KEY_INT("chunking.overlap", chunk_overlap, 0, 19999, "80", 0, "characters shared by neighbours; < size"),
    KEY_INT("kb.document_time_limit", document_time_limit, 1, 86400, "60", 0,
            "seconds a PDF's text extraction may take; slower ones fail"),
    KEY_INT("kb.document_text_limit", document_text_limit, 4096, 1073741824, "67108864", 0,
            "bytes of text a PDF may yield; larger ones fail"),
    KEY_INT("retrieval.top_k", retrieval_top_k, 1, 100, "4", 0, "chunks put in the prompt"),
    KEY_NUMBER("retrieval.score_threshold", score_threshold, 0, 1, "0.0", "chunks scoring lower are dropped"),
    KEY_STRING("prompt.system", system_prompt, "", 0, "system prompt; \"\" = the template's default"),
    KEY_STRING("prompt.template", prompt_template, "", CONFIG_TEMPLATE,
               "\"\" = built-in; else holds {context} and {question}"),
    KEY_ENUM("answer.fallback", answer_fallback, config_fallback_words, "strict",
             "nothing retrieved: strict says so, model answers unassisted"),
    KEY_INT("conversation.answer_reserve", answer_reserve, 16, 1048576, "512", 0,
            "tokens kept free for the answer; at most max_tokens and half the context"),
    KEY_ENUM("ui.theme", theme, config_theme_words, "dark", "colours; mono for monochrome terminals"),
};

#define CONFIG_KEY_COUNT ((int)(sizeof config_keys / sizeof config_keys[0]))

/* A scalar's text as found in the file or given to config_set. */
typedef struct ConfigText {
    const char *s; /* not NUL-terminated; may hold NUL bytes */
    size_t n;
    int is_null;   /* YAML null: an empty plain scalar, ~ or null */
    int quoted;    /* quoted or block style: always text, never a number */
} ConfigText;

/* A validated value on its way into KbConfig. */
typedef struct ConfigValue {
    int64_t i;
    double d;
    char *s; /* malloc'd, for CONFIG_STRING and CONFIG_ENUM */
} ConfigValue;

/* A bounded string builder for messages: writes past cap are dropped. */
typedef struct ConfigBuf {
    char *p;
    size_t cap, n;
} ConfigBuf;

/* A key name read from the file, kept after its event is freed. */
typedef struct ConfigName {
    char s[CONFIG_NAME_MAX]; /* the first bytes, NUL-terminated */
    size_t n;                /* the full length; >= CONFIG_NAME_MAX = cut */
    int line;
} ConfigName;

/* --- small helpers: messages, text, numbers --- */

/* Formats cfg->errmsg and returns rc, so failures read `return config_fail(...)`. */
__attribute__((format(printf, 3, 4))) static int config_fail(KbConfig *cfg, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cfg->errmsg, sizeof cfg->errmsg, fmt, ap);
    va_end(ap);
    return rc;
}

static int config_fail_nomem(KbConfig *cfg)
{
    return config_fail(cfg, KB_ENOMEM, "out of memory while reading the configuration");
}

/* Appends n bytes of s to b, dropping what does not fit. */
static void config_buf_add(ConfigBuf *b, const char *s, size_t n)
{
    if (b->n + 1 >= b->cap) return;
    if (n > b->cap - 1 - b->n) n = b->cap - 1 - b->n;
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

static void config_buf_str(ConfigBuf *b, const char *s)
{
    config_buf_add(b, s, strlen(s));
}

/* Returns a malloc'd formatted string, or NULL when out of memory. */
__attribute__((format(printf, 1, 2))) static char *config_strdup_printf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (s) {
        va_start(ap, fmt);
        vsnprintf(s, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    return s;
}

/* Decodes one UTF-8 character at s (n bytes available) into *cp with GLib.
** Returns its length 1..4, or 0 when the bytes are not valid UTF-8
** (overlong forms and surrogates included). */
static size_t config_utf8_decode(const unsigned char *s, size_t n, uint32_t *cp /* OUT */)
{
    gunichar c = g_utf8_get_char_validated((const char *)s, (gssize)n);
    *cp = 0;
    if (c == (gunichar)-1 || c == (gunichar)-2) return 0;
    if (c == 0) return 1; /* GLib accepts a NUL byte as a character of length 1 */
    *cp = c;
    return (size_t)(g_utf8_next_char((const char *)s) - (const char *)s);
}

/* Returns 1 when s[0..n) is valid UTF-8 (NUL bytes included, as YAML text
** can hold them escaped). */
static int config_utf8_valid(const char *s, size_t n)
{
    uint32_t cp;
    for (size_t i = 0, len; i < n; i += len) {
        len = config_utf8_decode((const unsigned char *)s + i, n - i, &cp);
        if (len == 0) return 0;
    }
    return 1;
}

/* Returns 1 when code point cp can be shown on a terminal as is: not a C0/C1
** control, and not an invisible or bidirectional formatting character that
** could disguise a message. */
static int config_cp_safe(uint32_t cp)
{
    if (cp < 0x20 || (cp >= 0x7F && cp < 0xA0)) return 0;
    if ((cp >= 0x200B && cp <= 0x200F) || (cp >= 0x2028 && cp <= 0x202E)) return 0;
    if ((cp >= 0x2066 && cp <= 0x2069) || cp == 0xFEFF) return 0;
    return 1;
}

/* Appends s[0..n) to b with unsafe bytes as \xNN (and, when quoting, '"' and
** '\\' escaped), at most `limit` characters; returns how many bytes of s were
** shown. */
static size_t config_escape(ConfigBuf *b, const char *s, size_t n, size_t limit, int quoting)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    for (size_t shown = 0; i < n && shown < limit; shown++) {
        uint32_t cp;
        size_t len = config_utf8_decode(u + i, n - i, &cp);
        if (quoting && (u[i] == '"' || u[i] == '\\')) {
            char esc[2] = {'\\', (char)u[i]};
            config_buf_add(b, esc, 2);
            i++;
        } else if (len == 0 || !config_cp_safe(cp)) {
            char esc[8];
            snprintf(esc, sizeof esc, "\\x%02X", u[i]);
            config_buf_str(b, esc);
            i++;
        } else {
            config_buf_add(b, s + i, len);
            i += len;
        }
    }
    return i;
}

/* Appends s[0..n) to b double-quoted, escaped and cut to CONFIG_SHOW_CHARS
** characters (then followed by "..."), for messages about hostile text. */
static void config_quote(ConfigBuf *b, const char *s, size_t n)
{
    config_buf_add(b, "\"", 1);
    size_t used = config_escape(b, s, n, CONFIG_SHOW_CHARS, 1);
    config_buf_add(b, "\"", 1);
    if (used < n) config_buf_str(b, "...");
}

/* Parses a whole decimal number with strtod in the "C" locale (the UI may
** have set a locale whose decimal point is a comma). Only decimal notation
** is taken: strtod's hex floats, nan and inf are not numbers a person means.
** Returns 1 and sets *out for a finite number that uses all of s[0..n). */
static int config_parse_double(const char *s, size_t n, double *out /* OUT */)
{
    char buf[128];
    char *end = NULL;
    double v;
    *out = 0;
    if (n == 0 || n >= sizeof buf) return 0;
    memcpy(buf, s, n);
    buf[n] = '\0';
    if (strspn(buf, "0123456789+-.eE") != n) return 0;
    locale_t c = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
    v = c ? strtod_l(buf, &end, c) : strtod(buf, &end);
    if (c) freelocale(c);
    if (end != buf + n || !isfinite(v)) return 0;
    *out = v;
    return 1;
}

/* Parses a whole decimal integer. Returns 1 and sets *out, or 0 when s[0..n)
** is not an integer or overflows int64_t. */
static int config_parse_integer(const char *s, size_t n, int64_t *out /* OUT */)
{
    char buf[32];
    char *end = NULL;
    long long v;
    *out = 0;
    if (n == 0 || n >= sizeof buf) return 0;
    memcpy(buf, s, n);
    buf[n] = '\0';
    errno = 0;
    v = strtoll(buf, &end, 10);
    if (end != buf + n || errno == ERANGE) return 0;
    *out = v;
    return 1;
}

/* Returns 1 for the white space strtod would skip (not NUL, which strchr
** would find at the end of any string). */
static int config_is_space(char c)
{
    return c != '\0' && strchr(" \t\r\n\v\f", c) != NULL;
}

/* Writes d with the fewest significant digits that read back to the same
** double, in the "C" locale so that the text is valid YAML anywhere. */
static void config_format_number(char *out, size_t cap, double d)
{
    double back = 0;
    locale_t c = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
    locale_t old = c ? uselocale(c) : (locale_t)0;
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(out, cap, "%.*g", prec, d);
        if (config_parse_double(out, strlen(out), &back) && back == d) break;
    }
    if (c) {
        uselocale(old);
        freelocale(c);
    }
}

/* Removes leading and trailing white space: it is never part of a value. */
static ConfigText config_trim(ConfigText t)
{
    while (t.n > 0 && config_is_space(t.s[0])) t.s++, t.n--;
    while (t.n > 0 && config_is_space(t.s[t.n - 1])) t.n--;
    return t;
}

/* Writes how a value appears in messages: a plain number as written, null or
** nothing in words, anything else quoted and escaped. */
static void config_render(const ConfigText *t, char *out, size_t cap)
{
    ConfigBuf b = {out, cap, 0};
    double d;
    out[0] = '\0';
    if (t->is_null) config_buf_str(&b, t->n == 0 ? "an empty value" : "null");
    else if (!t->quoted && config_parse_double(t->s, t->n, &d)) config_buf_add(&b, t->s, t->n);
    else config_quote(&b, t->s, t->n);
}

/* Writes what key k accepts, as in "expected <what>". */
static void config_describe(const ConfigKey *k, char *out, size_t cap)
{
    ConfigBuf b = {out, cap, 0};
    out[0] = '\0';
    switch (k->kind) {
    case CONFIG_INT:
        snprintf(out, cap, "an integer %s%lld..%lld", k->flags & CONFIG_ZERO ? "0 or " : "", (long long)k->min,
                 (long long)k->max);
        break;
    case CONFIG_NUMBER: {
        char lo[32], hi[32];
        config_format_number(lo, sizeof lo, k->min);
        config_format_number(hi, sizeof hi, k->max);
        snprintf(out, cap, "a number %s..%s", lo, hi);
        break;
    }
    case CONFIG_ENUM:
        config_buf_str(&b, "one of ");
        for (int i = 0; k->words[i]; i++) {
            config_buf_str(&b, i ? ", " : "");
            config_buf_str(&b, k->words[i]);
        }
        break;
    case CONFIG_STRING:
        config_buf_str(&b, k->flags & CONFIG_TEMPLATE ? "a template containing {context} and {question}" : "a string");
        break;
    }
}

/* Fails with "<where>: <key>: expected <what>, got <value>"; what NULL means
** the key's own description. Returns KB_EFORMAT. */
static int config_fail_value(KbConfig *cfg, const ConfigKey *k, const char *where, const char *what,
                             const ConfigText *t)
{
    char desc[256], got[256];
    config_describe(k, desc, sizeof desc);
    config_render(t, got, sizeof got);
    return config_fail(cfg, KB_EFORMAT, "%s: %s: expected %s, got %s", where, k->name, what ? what : desc, got);
}

/* --- key lookup and suggestions --- */

/* Returns the index of the key named s[0..n), or -1. */
static int config_find_key(const char *s, size_t n)
{
    for (int i = 0; i < CONFIG_KEY_COUNT; i++)
        if (strlen(config_keys[i].name) == n && memcmp(config_keys[i].name, s, n) == 0) return i;
    return -1;
}

/* Returns the length of key i's section name ("model" in "model.path"), or
** 0 for a top-level key such as data_dir. */
static size_t config_section_len(int i)
{
    const char *dot = strchr(config_keys[i].name, '.');
    return dot ? (size_t)(dot - config_keys[i].name) : 0;
}

/* Returns 1 when key i is the first of its section. */
static int config_section_first(int i)
{
    size_t n = config_section_len(i);
    return n > 0 &&
           (i == 0 || config_section_len(i - 1) != n || memcmp(config_keys[i - 1].name, config_keys[i].name, n));
}

/* Returns the index of the first key of the section named s[0..n), or -1. */
static int config_find_section(const char *s, size_t n)
{
    for (int i = 0; i < CONFIG_KEY_COUNT; i++)
        if (config_section_len(i) == n && n > 0 && memcmp(config_keys[i].name, s, n) == 0) return i;
    return -1;
}

/* Returns the Levenshtein distance between a[0..an) and b[0..bn), or a large
** number when b is too long to compare (no key name is). */
static size_t config_distance(const char *a, size_t an, const char *b, size_t bn)
{
    size_t row[CONFIG_NAME_MAX + 1];
    if (bn > CONFIG_NAME_MAX) return SIZE_MAX / 2;
    for (size_t j = 0; j <= bn; j++) row[j] = j;
    for (size_t i = 1; i <= an; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= bn; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best) best = up + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[bn];
}

/* Candidate names for a suggestion, kept sorted, without duplicates. */
typedef struct ConfigNear {
    const char *s[8];
    size_t n[8];
    int count;
    size_t best;
    int by_last; /* found by the last component alone */
} ConfigNear;

/* Offers candidate s[0..n) at distance d to near, keeping only the closest. */
static void config_near_offer(ConfigNear *near, const char *s, size_t n, size_t d)
{
    if (d > near->best) return;
    if (d < near->best) near->count = 0, near->best = d;
    int at = 0;
    while (at < near->count) {
        size_t m = near->n[at] < n ? near->n[at] : n;
        int c = memcmp(near->s[at], s, m);
        if (c == 0 && near->n[at] == n) return;
        if (c > 0 || (c == 0 && near->n[at] > n)) break;
        at++;
    }
    if (near->count == 8) return;
    memmove(near->s + at + 1, near->s + at, (size_t)(near->count - at) * sizeof near->s[0]);
    memmove(near->n + at + 1, near->n + at, (size_t)(near->count - at) * sizeof near->n[0]);
    near->s[at] = s, near->n[at] = n;
    near->count++;
}

/* Returns the last dotted component of s[0..n) in *last (the whole when
** there is no dot) and its length. */
static size_t config_last_part(const char *s, size_t n, const char **last /* OUT */)
{
    size_t i = n;
    while (i > 0 && s[i - 1] != '.') i--;
    *last = s + i;
    return n - i;
}

/* Finds the known names nearest to the unknown dotted name s[0..n): first by
** the whole name (keys and sections), then, when nothing is near, by the
** last component alone (a top-level "top_k" finds both top_k keys). A name is
** near when its distance is at most max(2, length/3). */
static void config_find_near(const char *s, size_t n, ConfigNear *near /* OUT */)
{
    size_t limit = n / 3 > 2 ? n / 3 : 2;
    const char *last;
    size_t last_n = config_last_part(s, n, &last);
    memset(near, 0, sizeof *near);
    near->best = limit;
    for (int i = 0; i < CONFIG_KEY_COUNT; i++) {
        const char *name = config_keys[i].name;
        config_near_offer(near, name, strlen(name), config_distance(s, n, name, strlen(name)));
        if (config_section_first(i))
            config_near_offer(near, name, config_section_len(i), config_distance(s, n, name, config_section_len(i)));
    }
    if (near->count > 0) return;
    near->best = last_n / 3 > 2 ? last_n / 3 : 2;
    near->by_last = 1;
    for (int i = 0; i < CONFIG_KEY_COUNT; i++) {
        const char *name = config_keys[i].name, *key_last;
        size_t key_last_n = config_last_part(name, strlen(name), &key_last);
        config_near_offer(near, name, strlen(name), config_distance(last, last_n, key_last, key_last_n));
    }
}

/* Writes " (did you mean a or b?)" for the known names nearest to the
** unknown s[0..n), or "" when none is near. */
static void config_suggest(const char *s, size_t n, char *out, size_t cap)
{
    ConfigBuf b = {out, cap, 0};
    ConfigNear near;
    out[0] = '\0';
    if (n >= CONFIG_NAME_MAX) return;
    config_find_near(s, n, &near);
    if (near.count == 0) return;
    if (near.best == 0 && !near.by_last) {
        /* a dotted key written flat at the top level: say how to nest it */
        config_buf_str(&b, " (keys are nested: write it as \"");
        config_buf_add(&b, s, (size_t)(strchr(s, '.') - s));
        config_buf_str(&b, ":\" with an indented \"");
        config_buf_str(&b, strchr(s, '.') + 1);
        config_buf_str(&b, ":\" below)");
        return;
    }
    config_buf_str(&b, " (did you mean ");
    for (int i = 0; i < near.count; i++) {
        config_buf_str(&b, i == 0 ? "" : i == near.count - 1 ? " or " : ", ");
        config_buf_add(&b, near.s[i], near.n[i]);
    }
    config_buf_str(&b, "?)");
}

/* Adds a warning built from fmt. Past CONFIG_MAX_WARNINGS one last warning
** says the rest were dropped. Returns KB_OK or KB_ENOMEM. */
__attribute__((format(printf, 2, 3))) static int config_warn(KbConfig *cfg, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    if (cfg->n_warnings > CONFIG_MAX_WARNINGS) return KB_OK;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (cfg->n_warnings == CONFIG_MAX_WARNINGS)
        snprintf(msg, sizeof msg, "more than %d warnings; the rest are not shown", CONFIG_MAX_WARNINGS);
    char *copy = strdup(msg);
    char **grown = copy ? realloc(cfg->warnings, (size_t)(cfg->n_warnings + 1) * sizeof *grown) : NULL;
    if (!grown) {
        free(copy);
        return config_fail_nomem(cfg);
    }
    grown[cfg->n_warnings++] = copy;
    cfg->warnings = grown;
    return KB_OK;
}

/* --- values: parse, resolve, store --- */

/* Returns $HOME, or the password database's home, or "/" (static or
** environment storage; never NULL). */
static const char *config_home_dir(void)
{
    const char *home = getenv("HOME");
    if (home && *home) return home;
    const struct passwd *pw = getpwuid(getuid());
    return pw && pw->pw_dir && *pw->pw_dir ? pw->pw_dir : "/";
}

/* Returns 1 when $XDG_DATA_HOME is usable: set, non-empty and absolute (the
** XDG specification says relative paths are to be ignored). */
static int config_xdg_data_usable(void)
{
    const char *xdg = getenv("XDG_DATA_HOME");
    return xdg && xdg[0] == '/';
}

/* Returns the malloc'd default data directory, or NULL when out of memory. */
static char *config_default_data_dir(void)
{
    if (config_xdg_data_usable()) return config_strdup_printf("%s/kbchat", getenv("XDG_DATA_HOME"));
    const char *home = config_home_dir();
    return config_strdup_printf("%s%s.local/share/kbchat", home, home[strlen(home) - 1] == '/' ? "" : "/");
}

/* Returns the number of online cores within 1..max. */
static int64_t config_online_cores(int64_t max)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1) n = 1;
    return n > max ? max : n;
}

/* Returns a malloc'd NUL-terminated copy of s[0..n), or NULL. */
static char *config_copy(const char *s, size_t n)
{
    char *copy = malloc(n + 1);
    if (copy) {
        memcpy(copy, s, n);
        copy[n] = '\0';
    }
    return copy;
}

/* Returns a malloc'd copy of s[0..n) with a leading "~/" (or a lone "~")
** replaced by the home directory, or NULL when out of memory. */
static char *config_expand_home(const char *s, size_t n)
{
    if (n > 0 && s[0] == '~' && (n == 1 || s[1] == '/')) {
        const char *home = config_home_dir();
        size_t hn = strlen(home);
        if (hn > 1 && home[hn - 1] == '/') hn--;
        return config_strdup_printf("%.*s%.*s", (int)hn, home, (int)(n - 1), s + 1);
    }
    return config_copy(s, n);
}

/* Parses a text value for string key k into v->s (malloc'd), applying the
** key's special meanings. Returns KB_OK, KB_EFORMAT or KB_ENOMEM. */
static int config_parse_text(KbConfig *cfg, const ConfigKey *k, ConfigText t, const char *where,
                             ConfigValue *v /* OUT */)
{
    if (memchr(t.s, '\0', t.n)) return config_fail_value(cfg, k, where, "text without NUL bytes", &t);
    if (!config_utf8_valid(t.s, t.n)) return config_fail_value(cfg, k, where, "UTF-8 text", &t);
    if (t.is_null) t.n = 0;
    if ((k->flags & CONFIG_TEMPLATE) && t.n > 0 &&
        (!memmem(t.s, t.n, "{context}", 9) || !memmem(t.s, t.n, "{question}", 10)))
        return config_fail_value(cfg, k, where, NULL, &t);
    if ((k->flags & CONFIG_DATA_DIR) && t.n == 0) v->s = config_default_data_dir();
    else if (k->flags & CONFIG_HOME) v->s = config_expand_home(t.s, t.n);
    else v->s = config_copy(t.s, t.n);
    return v->s ? KB_OK : config_fail_nomem(cfg);
}

/* Parses t as the value of key k into *v (zeroed first). Returns KB_OK,
** KB_EFORMAT with cfg->errmsg naming where and k, or KB_ENOMEM. */
static int config_parse_value(KbConfig *cfg, const ConfigKey *k, ConfigText t, const char *where,
                              ConfigValue *v /* OUT */)
{
    memset(v, 0, sizeof *v);
    t = config_trim(t);
    switch (k->kind) {
    case CONFIG_INT:
        if (t.is_null || !config_parse_integer(t.s, t.n, &v->i) || v->i > k->max ||
            (v->i < k->min && !(v->i == 0 && (k->flags & CONFIG_ZERO))))
            return config_fail_value(cfg, k, where, NULL, &t);
        if (v->i == 0 && (k->flags & CONFIG_CORES)) v->i = config_online_cores((int64_t)k->max);
        return KB_OK;
    case CONFIG_NUMBER:
        if (t.is_null || !config_parse_double(t.s, t.n, &v->d) || v->d < k->min || v->d > k->max)
            return config_fail_value(cfg, k, where, NULL, &t);
        return KB_OK;
    case CONFIG_ENUM:
        for (int i = 0; !t.is_null && k->words[i]; i++) {
            if (strlen(k->words[i]) != t.n || memcmp(k->words[i], t.s, t.n) != 0) continue;
            v->s = strdup(k->words[i]);
            return v->s ? KB_OK : config_fail_nomem(cfg);
        }
        return config_fail_value(cfg, k, where, NULL, &t);
    case CONFIG_STRING:
        return config_parse_text(cfg, k, t, where, v);
    }
    return KB_OK;
}

/* Returns a pointer to key k's field in cfg. */
static void *config_field(KbConfig *cfg, const ConfigKey *k)
{
    return (char *)cfg + k->offset;
}

static const void *config_field_const(const KbConfig *cfg, const ConfigKey *k)
{
    return (const char *)cfg + k->offset;
}

/* Validates t as the value of key k and stores it in cfg with a copy of
** `where` as its source. On failure cfg is unchanged (invariant 2).
** Returns KB_OK, KB_EFORMAT or KB_ENOMEM. */
static int config_assign(KbConfig *cfg, int k, ConfigText t, const char *where)
{
    const ConfigKey *key = &config_keys[k];
    ConfigValue v;
    char *source = NULL;
    int rc = config_parse_value(cfg, key, t, where, &v);
    if (rc != KB_OK) goto fail;
    source = strdup(where);
    if (!source) {
        rc = config_fail_nomem(cfg);
        goto fail;
    }
    if (key->kind == CONFIG_INT) *(int64_t *)config_field(cfg, key) = v.i;
    else if (key->kind == CONFIG_NUMBER) *(double *)config_field(cfg, key) = v.d;
    else {
        char **field = config_field(cfg, key);
        free(*field);
        *field = v.s;
    }
    free(cfg->sources[k]);
    cfg->sources[k] = source;
    return KB_OK;
fail:
    free(v.s);
    return rc;
}

/* Checks chunking.overlap < chunking.size, the one rule joining two keys.
** The message is placed at the overlap's source (or the size's, when the
** overlap is the default). Returns KB_OK or KB_EFORMAT. */
static int config_check_overlap(KbConfig *cfg)
{
    int ks = config_key_index("chunking.size"), ko = config_key_index("chunking.overlap");
    assert(ks >= 0 && ko >= 0);
    if (cfg->chunk_overlap < cfg->chunk_size) return KB_OK;
    int overlap_default = strcmp(cfg->sources[ko], "default") == 0;
    return config_fail(cfg, KB_EFORMAT,
                       "%s: chunking.overlap: expected an integer 0..%lld (below chunking.size %lld from %s), "
                       "got %lld%s",
                       overlap_default ? cfg->sources[ks] : cfg->sources[ko], (long long)cfg->chunk_size - 1,
                       (long long)cfg->chunk_size, cfg->sources[ks], (long long)cfg->chunk_overlap,
                       overlap_default ? " (the default)" : "");
}

/* --- the YAML walk --- */

typedef struct ConfigParser {
    yaml_parser_t yaml;
    yaml_event_t event;                 /* the current event; zeroed = none */
    KbConfig *cfg;
    const char *path;                   /* as given: messages and sources use it */
    const unsigned char *text;          /* the file, to turn offsets into lines */
    size_t len;
    int key_line[CONFIG_KEY_COUNT];     /* line each key was set on in this file */
    int section_line[CONFIG_KEY_COUNT]; /* by the index of the section's first key */
} ConfigParser;

static int config_event_line(const ConfigParser *p)
{
    return (int)p->event.start_mark.line + 1;
}

/* Returns "a mapping", "a sequence" or the rendered scalar of the current
** event, for "got ..." in messages. */
static const char *config_event_shape(const ConfigParser *p, char *buf, size_t cap)
{
    const yaml_event_t *e = &p->event;
    if (e->type == YAML_MAPPING_START_EVENT) return "a mapping";
    if (e->type == YAML_SEQUENCE_START_EVENT) return "a sequence";
    if (e->type != YAML_SCALAR_EVENT) return "nothing";
    ConfigText t = {(const char *)e->data.scalar.value, e->data.scalar.length, 0,
                    e->data.scalar.style != YAML_PLAIN_SCALAR_STYLE};
    config_render(&t, buf, cap);
    return buf;
}

/* Turns libyaml's error into cfg->errmsg. Returns KB_EFORMAT or KB_ENOMEM. */
static int config_fail_yaml(ConfigParser *p)
{
    const yaml_parser_t *y = &p->yaml;
    const char *problem = y->problem ? y->problem : "unknown error";
    if (y->error == YAML_MEMORY_ERROR) return config_fail_nomem(p->cfg);
    if (y->error == YAML_READER_ERROR) {
        /* reader errors carry a byte offset, not a mark */
        int line = 1;
        for (size_t i = 0; i < y->problem_offset && i < p->len; i++) line += p->text[i] == '\n';
        if (y->problem_value == -1)
            return config_fail(p->cfg, KB_EFORMAT, "%s:%d: malformed YAML: %s (at byte %zu)", p->path, line,
                               problem, y->problem_offset);
        return config_fail(p->cfg, KB_EFORMAT, "%s:%d: malformed YAML: %s (0x%02X at byte %zu)", p->path, line,
                           problem, (unsigned)y->problem_value, y->problem_offset);
    }
    if (y->context)
        return config_fail(p->cfg, KB_EFORMAT, "%s:%zu: malformed YAML: %s (%s on line %zu)", p->path,
                           y->problem_mark.line + 1, problem, y->context, y->context_mark.line + 1);
    return config_fail(p->cfg, KB_EFORMAT, "%s:%zu: malformed YAML: %s", p->path, y->problem_mark.line + 1, problem);
}

/* Refuses aliases and anchors: they let a small file expand into a huge one
** and a configuration has no need of them. Returns KB_OK or KB_EFORMAT. */
static int config_check_anchor(ConfigParser *p)
{
    const yaml_event_t *e = &p->event;
    const yaml_char_t *anchor = NULL;
    if (e->type == YAML_ALIAS_EVENT)
        return config_fail(p->cfg, KB_EFORMAT, "%s:%d: aliases are not supported (*%.40s)", p->path,
                           config_event_line(p), (const char *)e->data.alias.anchor);
    if (e->type == YAML_SCALAR_EVENT) anchor = e->data.scalar.anchor;
    if (e->type == YAML_MAPPING_START_EVENT) anchor = e->data.mapping_start.anchor;
    if (e->type == YAML_SEQUENCE_START_EVENT) anchor = e->data.sequence_start.anchor;
    if (anchor)
        return config_fail(p->cfg, KB_EFORMAT, "%s:%d: anchors and aliases are not supported (&%.40s)", p->path,
                           config_event_line(p), (const char *)anchor);
    return KB_OK;
}

/* Frees the current event and reads the next. Returns KB_OK, KB_EFORMAT or
** KB_ENOMEM. */
static int config_next_event(ConfigParser *p)
{
    yaml_event_delete(&p->event);
    if (!yaml_parser_parse(&p->yaml, &p->event)) return config_fail_yaml(p);
    return config_check_anchor(p);
}

/* Returns 1 when the current event is a YAML null scalar. */
static int config_event_null(const ConfigParser *p)
{
    const yaml_event_t *e = &p->event;
    if (e->type != YAML_SCALAR_EVENT || e->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) return 0;
    const char *s = (const char *)e->data.scalar.value;
    return e->data.scalar.length == 0 || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") ||
           !strcmp(s, "NULL");
}

/* Copies the current event, which must be a scalar, into *name as a key.
** Returns KB_OK or KB_EFORMAT. */
static int config_read_name(ConfigParser *p, ConfigName *name /* OUT */)
{
    char got[64];
    memset(name, 0, sizeof *name);
    name->line = config_event_line(p);
    if (p->event.type != YAML_SCALAR_EVENT)
        return config_fail(p->cfg, KB_EFORMAT, "%s:%d: expected a key name, got %s", p->path, name->line,
                           config_event_shape(p, got, sizeof got));
    name->n = p->event.data.scalar.length;
    memcpy(name->s, p->event.data.scalar.value, name->n < CONFIG_NAME_MAX ? name->n : CONFIG_NAME_MAX - 1);
    return KB_OK;
}

/* Skips the current node, whatever its shape, refusing nesting deeper than
** CONFIG_MAX_DEPTH; depth is the node's own (the top mapping is 1).
** Returns KB_OK, KB_EFORMAT or KB_ENOMEM. */
static int config_skip_node(ConfigParser *p, int depth)
{
    int level = 0, rc = KB_OK;
    for (;;) {
        yaml_event_type_t type = p->event.type;
        if (type == YAML_MAPPING_START_EVENT || type == YAML_SEQUENCE_START_EVENT) level++;
        if (type == YAML_MAPPING_END_EVENT || type == YAML_SEQUENCE_END_EVENT) level--;
        if (depth + level - 1 > CONFIG_MAX_DEPTH)
            return config_fail(p->cfg, KB_EFORMAT, "%s:%d: nested deeper than %d levels", p->path,
                               config_event_line(p), CONFIG_MAX_DEPTH);
        if (level == 0) return KB_OK;
        rc = config_next_event(p);
        if (rc != KB_OK) return rc;
    }
}

/* Warns about the unknown key `name` (full dotted name) and skips its value,
** the current event. Returns KB_OK, KB_EFORMAT or KB_ENOMEM. */
static int config_skip_unknown(ConfigParser *p, const ConfigName *name, int depth)
{
    char shown[256], near[512];
    ConfigBuf b = {shown, sizeof shown, 0};
    config_quote(&b, name->s, name->n < CONFIG_NAME_MAX ? name->n : CONFIG_NAME_MAX - 1);
    config_suggest(name->s, name->n, near, sizeof near);
    int rc = config_warn(p->cfg, "%s:%d: unknown key %s%s", p->path, name->line, shown, near);
    return rc == KB_OK ? config_skip_node(p, depth) : rc;
}

/* Stores the current event as the value of key k, written at name->line.
** Returns KB_OK, KB_EFORMAT or KB_ENOMEM. */
static int config_parse_entry(ConfigParser *p, int k, const ConfigName *name)
{
    const ConfigKey *key = &config_keys[k];
    const yaml_event_t *e = &p->event;
    char got[64];
    if (p->key_line[k])
        return config_fail(p->cfg, KB_EFORMAT, "%s:%d: %s: duplicate key, first set on line %d", p->path, name->line,
                           key->name, p->key_line[k]);
    p->key_line[k] = name->line;
    if (e->type != YAML_SCALAR_EVENT) {
        char what[256];
        config_describe(key, what, sizeof what);
        return config_fail(p->cfg, KB_EFORMAT, "%s:%d: %s: expected %s, got %s", p->path, name->line, key->name,
                           what, config_event_shape(p, got, sizeof got));
    }
    ConfigText t = {(const char *)e->data.scalar.value, e->data.scalar.length, config_event_null(p),
                    e->data.scalar.style != YAML_PLAIN_SCALAR_STYLE};
    char *where = config_strdup_printf("%s:%d", p->path, name->line);
    if (!where) return config_fail_nomem(p->cfg);
    int rc = config_assign(p->cfg, k, t, where);
    free(where);
    return rc;
}

/* Fails because a section's value is not a mapping, listing its keys. */
static int config_fail_section(ConfigParser *p, int first, const ConfigName *name)
{
    char keys[512], got[64];
    ConfigBuf b = {keys, sizeof keys, 0};
    size_t n = config_section_len(first);
    keys[0] = '\0';
    for (int i = first; i < CONFIG_KEY_COUNT && config_section_len(i) == n &&
                        memcmp(config_keys[i].name, config_keys[first].name, n) == 0; i++) {
        config_buf_str(&b, i == first ? "" : ", ");
        config_buf_str(&b, config_keys[i].name + n + 1);
    }
    return config_fail(p->cfg, KB_EFORMAT, "%s:%d: %.*s: expected a mapping of %.*s.* keys (%s), got %s", p->path,
                       name->line, (int)n, name->s, (int)n, name->s, keys, config_event_shape(p, got, sizeof got));
}

/* Makes the dotted name "section.key" of key `sub` in section `sec`. */
static void config_join_name(const ConfigName *sec, const ConfigName *sub, ConfigName *full /* OUT */)
{
    ConfigBuf b = {full->s, sizeof full->s, 0};
    memset(full, 0, sizeof *full);
    full->line = sub->line;
    full->n = sec->n + 1 + sub->n;
    config_buf_add(&b, sec->s, sec->n);
    config_buf_add(&b, ".", 1);
    config_buf_add(&b, sub->s, sub->n < CONFIG_NAME_MAX ? sub->n : CONFIG_NAME_MAX - 1);
}

/* Reads the current event, the value of the section whose first key is
** `first`: a mapping of its keys, or nothing. */
static int config_parse_section(ConfigParser *p, int first, const ConfigName *name)
{
    int rc = KB_OK;
    if (p->section_line[first])
        return config_fail(p->cfg, KB_EFORMAT, "%s:%d: %.*s: duplicate key, first set on line %d", p->path,
                           name->line, (int)name->n, name->s, p->section_line[first]);
    p->section_line[first] = name->line;
    if (config_event_null(p)) return KB_OK;
    if (p->event.type != YAML_MAPPING_START_EVENT) return config_fail_section(p, first, name);
    while ((rc = config_next_event(p)) == KB_OK && p->event.type != YAML_MAPPING_END_EVENT) {
        ConfigName sub, full;
        rc = config_read_name(p, &sub);
        if (rc == KB_OK) rc = config_next_event(p);
        if (rc != KB_OK) break;
        config_join_name(name, &sub, &full);
        int k = full.n < CONFIG_NAME_MAX ? config_find_key(full.s, full.n) : -1;
        rc = k >= 0 ? config_parse_entry(p, k, &full) : config_skip_unknown(p, &full, 3);
        if (rc != KB_OK) break;
    }
    return rc;
}

/* Reads the top mapping: sections, top-level keys, unknown keys. */
static int config_parse_top(ConfigParser *p)
{
    int rc = KB_OK;
    while ((rc = config_next_event(p)) == KB_OK && p->event.type != YAML_MAPPING_END_EVENT) {
        ConfigName name;
        rc = config_read_name(p, &name);
        if (rc == KB_OK) rc = config_next_event(p);
        if (rc != KB_OK) break;
        int known = name.n < CONFIG_NAME_MAX;
        int k = known ? config_find_key(name.s, name.n) : -1;
        if (k >= 0 && config_section_len(k) > 0) k = -1; /* dotted keys are written nested */
        int first = known && k < 0 ? config_find_section(name.s, name.n) : -1;
        if (k >= 0) rc = config_parse_entry(p, k, &name);
        else if (first >= 0) rc = config_parse_section(p, first, &name);
        else rc = config_skip_unknown(p, &name, 2);
        if (rc != KB_OK) break;
    }
    return rc;
}

/* Reads the document's root node: a mapping, or nothing at all. */
static int config_parse_root(ConfigParser *p)
{
    char names[256], got[64];
    ConfigBuf b = {names, sizeof names, 0};
    if (p->event.type == YAML_MAPPING_START_EVENT) return config_parse_top(p);
    if (config_event_null(p)) return KB_OK;
    names[0] = '\0';
    for (int i = 0; i < CONFIG_KEY_COUNT; i++) {
        size_t n = config_section_len(i);
        if (n > 0 && !config_section_first(i)) continue;
        config_buf_str(&b, i ? ", " : "");
        config_buf_add(&b, config_keys[i].name, n ? n : strlen(config_keys[i].name));
    }
    return config_fail(p->cfg, KB_EFORMAT, "%s:%d: expected a mapping of sections (%s) at the top level, got %s",
                       p->path, config_event_line(p), names, config_event_shape(p, got, sizeof got));
}

/* Reads the stream: nothing, or one document. */
static int config_parse_stream(ConfigParser *p)
{
    int rc = config_next_event(p); /* STREAM-START */
    if (rc == KB_OK) rc = config_next_event(p);
    if (rc != KB_OK || p->event.type == YAML_STREAM_END_EVENT) return rc;
    rc = config_next_event(p); /* past DOCUMENT-START to the root node */
    if (rc == KB_OK) rc = config_parse_root(p);
    if (rc == KB_OK) rc = config_next_event(p); /* DOCUMENT-END */
    if (rc == KB_OK) rc = config_next_event(p);
    if (rc == KB_OK && p->event.type != YAML_STREAM_END_EVENT)
        rc = config_fail(p->cfg, KB_EFORMAT, "%s:%d: a second YAML document; the file must hold exactly one",
                         p->path, config_event_line(p));
    return rc;
}

/* Parses the YAML text of `path` into cfg, then checks the rules joining
** keys. Returns KB_OK, KB_EFORMAT or KB_ENOMEM. */
static int config_parse_yaml(KbConfig *cfg, const char *path, const unsigned char *text, size_t len)
{
    ConfigParser p;
    memset(&p, 0, sizeof p);
    p.cfg = cfg, p.path = path, p.text = text, p.len = len;
    if (!yaml_parser_initialize(&p.yaml)) return config_fail_nomem(cfg);
    yaml_parser_set_input_string(&p.yaml, text, len);
    int rc = config_parse_stream(&p);
    if (rc == KB_OK) rc = config_check_overlap(cfg);
    yaml_event_delete(&p.event);
    yaml_parser_delete(&p.yaml);
    return rc;
}

/* --- reading files --- */

/* Returns how a file was found, for messages: " (named by --config)",
** " (found via ~/.config)", or "" when origin is NULL (a direct call). */
static const char *config_origin_phrase(const char *origin, char *buf, size_t cap)
{
    if (!origin) return "";
    if (!strcmp(origin, "./config.yaml")) return " (found in the working directory)";
    int named = !strcmp(origin, "--config") || !strcmp(origin, "$KBCHAT_CONFIG");
    snprintf(buf, cap, " (%s %s)", named ? "named by" : "found via", origin);
    return buf;
}

/* Fails with "<path>: cannot read configuration file (named by X): <reason>".
** Returns KB_EIO. */
static int config_fail_read(KbConfig *cfg, const char *path, const char *origin, int err)
{
    char how[64];
    return config_fail(cfg, KB_EIO, "%s: cannot read configuration file%s: %s", path,
                       config_origin_phrase(origin, how, sizeof how), strerror(err));
}

static int config_fail_size(KbConfig *cfg, const char *path, long long size)
{
    if (size < 0)
        return config_fail(cfg, KB_EFORMAT, "%s: configuration file is too large (more than %d bytes)", path,
                           KB_CONFIG_MAX_BYTES);
    return config_fail(cfg, KB_EFORMAT, "%s: configuration file is too large (%lld bytes; the limit is %d)", path,
                       size, KB_CONFIG_MAX_BYTES);
}

/* Reads all of fd, at most KB_CONFIG_MAX_BYTES, into *text (malloc'd, owned
** by the caller) and *len. The size is checked with fstat before reading, and
** again while reading for files that grow or are not regular.
** Returns KB_OK, KB_EIO, KB_EFORMAT (too large) or KB_ENOMEM. */
static int config_read_fd(KbConfig *cfg, int fd, const char *path, const char *origin,
                          unsigned char **text /* OUT */, size_t *len /* OUT */)
{
    struct stat st;
    unsigned char *buf = NULL;
    size_t cap, n = 0;
    int rc = KB_OK;
    *text = NULL, *len = 0;
    if (fstat(fd, &st) != 0) return config_fail_read(cfg, path, origin, errno);
    if (S_ISDIR(st.st_mode)) return config_fail_read(cfg, path, origin, EISDIR);
    if (st.st_size > KB_CONFIG_MAX_BYTES) return config_fail_size(cfg, path, (long long)st.st_size);
    cap = (S_ISREG(st.st_mode) && st.st_size > 0 ? (size_t)st.st_size : 4096) + 1;
    buf = malloc(cap);
    if (!buf) return config_fail_nomem(cfg);
    for (;;) {
        if (n == cap) {
            size_t ncap = cap * 2 > KB_CONFIG_MAX_BYTES + 1 ? KB_CONFIG_MAX_BYTES + 1 : cap * 2;
            unsigned char *grown = n > KB_CONFIG_MAX_BYTES ? NULL : realloc(buf, ncap);
            if (!grown) {
                rc = n > KB_CONFIG_MAX_BYTES ? config_fail_size(cfg, path, -1) : config_fail_nomem(cfg);
                goto fail;
            }
            buf = grown, cap = ncap;
        }
        ssize_t got = read(fd, buf + n, cap - n);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) {
            rc = config_fail_read(cfg, path, origin, errno);
            goto fail;
        }
        if (got == 0) break;
        n += (size_t)got;
    }
    *text = buf, *len = n;
    return KB_OK;
fail:
    free(buf);
    return rc;
}

/* Reads the configuration file at path into cfg. When `required` is 0 an
** absent file is skipped (*found = 0); a present but unreadable one is an
** error either way. origin says how path was found (NULL: a direct call).
** Returns KB_OK, KB_EIO, KB_EFORMAT or KB_ENOMEM. */
static int config_read_path(KbConfig *cfg, const char *path, const char *origin, int required,
                            int *found /* OUT */)
{
    unsigned char *text = NULL;
    size_t len = 0;
    char *copy = NULL;
    int rc = KB_OK;
    *found = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        if (!required && (errno == ENOENT || errno == ENOTDIR)) return KB_OK;
        return config_fail_read(cfg, path, origin, errno);
    }
    *found = 1;
    rc = config_read_fd(cfg, fd, path, origin, &text, &len);
    close(fd);
    if (rc != KB_OK) goto fail;
    copy = strdup(path);
    if (!copy) {
        rc = config_fail_nomem(cfg);
        goto fail;
    }
    free(cfg->file);
    cfg->file = copy;
    cfg->file_origin = origin;
    rc = config_parse_yaml(cfg, path, text, len);
fail:
    free(text);
    return rc;
}

/* --- public API --- */

int config_init(KbConfig *cfg /* OUT */)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->sources = calloc((size_t)CONFIG_KEY_COUNT, sizeof *cfg->sources);
    if (!cfg->sources) return config_fail_nomem(cfg);
    for (int i = 0; i < CONFIG_KEY_COUNT; i++) {
        ConfigText t = {config_keys[i].def, strlen(config_keys[i].def), 0, 1};
        int rc = config_assign(cfg, i, t, "default");
        assert(rc == KB_OK || rc == KB_ENOMEM); /* the table's defaults are valid */
        if (rc != KB_OK) return rc;
    }
    return KB_OK;
}

int config_load_file(KbConfig *cfg, const char *path)
{
    int found;
    return config_read_path(cfg, path, NULL, 1, &found);
}

/* Reads the home candidate: $XDG_CONFIG_HOME/kbchat/config.yaml, or
** ~/.config/kbchat/config.yaml when XDG_CONFIG_HOME is unset or empty. */
static int config_read_home(KbConfig *cfg, int *found /* OUT */)
{
    const char *xdg = getenv("XDG_CONFIG_HOME");
    int use_xdg = xdg && *xdg;
    char *path = use_xdg ? config_strdup_printf("%s/kbchat/config.yaml", xdg)
                         : config_strdup_printf("%s/.config/kbchat/config.yaml", config_home_dir());
    *found = 0;
    if (!path) return config_fail_nomem(cfg);
    int rc = config_read_path(cfg, path, use_xdg ? "$XDG_CONFIG_HOME" : "~/.config", 0, found);
    free(path);
    return rc;
}

int config_load(KbConfig *cfg /* OUT */, const char *cli_path)
{
    const char *env = getenv("KBCHAT_CONFIG");
    int found = 0;
    int rc = config_init(cfg);
    if (rc != KB_OK) return rc;
    if (cli_path) return config_read_path(cfg, cli_path, "--config", 1, &found);
    if (env && *env) return config_read_path(cfg, env, "$KBCHAT_CONFIG", 1, &found);
    rc = config_read_home(cfg, &found);
    if (rc != KB_OK || found) return rc;
    return config_read_path(cfg, "./config.yaml", "./config.yaml", 0, &found);
}

int config_set(KbConfig *cfg, const char *key, const char *value, const char *source)
{
    if (!source) source = "config_set";
    if (!key || !value) return config_fail(cfg, KB_EINVAL, "%s: config_set needs a key and a value", source);
    int k = config_key_index(key);
    if (k < 0) {
        char shown[256], near[512];
        ConfigBuf b = {shown, sizeof shown, 0};
        config_quote(&b, key, strlen(key));
        config_suggest(key, strlen(key), near, sizeof near);
        return config_fail(cfg, KB_ENOTFOUND, "%s: unknown key %s%s", source, shown, near);
    }
    ConfigText t = {value, strlen(value), 0, 0};
    int rc = config_assign(cfg, k, t, source);
    if (rc == KB_OK && cfg->chunk_overlap >= cfg->chunk_size) rc = config_check_overlap(cfg);
    return rc;
}

int config_key_count(void)
{
    return CONFIG_KEY_COUNT;
}

const char *config_key_name(int i)
{
    return i >= 0 && i < CONFIG_KEY_COUNT ? config_keys[i].name : NULL;
}

int config_key_index(const char *key)
{
    return key ? config_find_key(key, strlen(key)) : -1;
}

void config_free(KbConfig *cfg)
{
    if (!cfg) return;
    for (int i = 0; i < CONFIG_KEY_COUNT; i++)
        if (config_keys[i].kind == CONFIG_STRING || config_keys[i].kind == CONFIG_ENUM)
            free(*(char **)config_field(cfg, &config_keys[i]));
    for (int i = 0; cfg->sources && i < CONFIG_KEY_COUNT; i++) free(cfg->sources[i]);
    for (int i = 0; cfg->warnings && i < cfg->n_warnings; i++) free(cfg->warnings[i]);
    free(cfg->sources);
    free(cfg->warnings);
    free(cfg->file);
    memset(cfg, 0, sizeof *cfg);
}

/* --- printing --- */

/* Writes s as a YAML double-quoted scalar that libyaml reads back to the
** same bytes: escapes for quotes, backslashes, and every character libyaml
** would refuse or fold raw. Returns the columns written. */
static int config_print_string(FILE *out, const char *s)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t n = strlen(s);
    int col = 2;
    fputc('"', out);
    for (size_t i = 0, len; i < n; i += len) {
        uint32_t cp;
        len = config_utf8_decode(u + i, n - i, &cp);
        if (len == 0) len = 1, cp = u[i]; /* cannot happen: values are checked UTF-8 */
        if (cp == '"' || cp == '\\') col += fprintf(out, "\\%c", (int)cp);
        else if (cp == '\n') col += fprintf(out, "\\n");
        else if (cp == '\t') col += fprintf(out, "\\t");
        else if (cp < 0x20 || (cp >= 0x7F && cp < 0xA0)) col += fprintf(out, "\\x%02X", (unsigned)cp);
        else if (cp == 0x2028 || cp == 0x2029 || cp == 0xFEFF) col += fprintf(out, "\\u%04X", (unsigned)cp);
        else col += (int)fwrite(s + i, 1, len, out);
    }
    fputc('"', out);
    return col;
}

/* Writes a comment's text with control characters escaped, so a strange
** path or source cannot end the comment and inject YAML. */
static void config_print_comment(FILE *out, const char *s)
{
    char buf[4096];
    ConfigBuf b = {buf, sizeof buf, 0};
    buf[0] = '\0';
    config_escape(&b, s, strlen(s), sizeof buf, 0);
    fputs(buf, out);
}

/* Writes a note after the source when a value is a resolved special one
** one: threads from 0, data_dir from "". */
static void config_print_note(const KbConfig *cfg, const ConfigKey *k, FILE *out)
{
    int64_t cores = config_online_cores((int64_t)k->max);
    if ((k->flags & CONFIG_CORES) && *(const int64_t *)config_field_const(cfg, k) == cores) {
        fputs(" (all cores)", out);
    } else if (k->flags & CONFIG_DATA_DIR) {
        char *def = config_default_data_dir();
        const char *value = *(char *const *)config_field_const(cfg, k);
        if (def && value && !strcmp(def, value))
            fputs(config_xdg_data_usable() ? " ($XDG_DATA_HOME/kbchat)" : " (~/.local/share/kbchat)", out);
        free(def);
    }
}

/* Writes key k's line: indented name, value, aligned source comment. */
static void config_print_key(const KbConfig *cfg, int k, FILE *out)
{
    const ConfigKey *key = &config_keys[k];
    size_t sec = config_section_len(k);
    int col = fprintf(out, "%s%s: ", sec ? "  " : "", key->name + (sec ? sec + 1 : 0));
    char num[64];
    if (key->kind == CONFIG_INT) {
        col += fprintf(out, "%lld", (long long)*(const int64_t *)config_field_const(cfg, key));
    } else if (key->kind == CONFIG_NUMBER) {
        config_format_number(num, sizeof num, *(const double *)config_field_const(cfg, key));
        col += fprintf(out, "%s", num);
    } else {
        const char *s = *(char *const *)config_field_const(cfg, key);
        col += config_print_string(out, s ? s : "");
    }
    fprintf(out, "%*s# ", col < CONFIG_COMMENT_COLUMN ? CONFIG_COMMENT_COLUMN - col : 1, "");
    config_print_comment(out, cfg->sources && cfg->sources[k] ? cfg->sources[k] : "not set");
    config_print_note(cfg, key, out);
    fputc('\n', out);
}

/* Writes the header: which file was read and how it was found, warnings. */
static void config_print_header(const KbConfig *cfg, FILE *out)
{
    char how[64];
    if (cfg->file) {
        fputs("# kbchat configuration, read from ", out);
        config_print_comment(out, cfg->file);
        fprintf(out, "%s.\n", config_origin_phrase(cfg->file_origin, how, sizeof how));
    } else {
        fputs("# kbchat configuration: no configuration file found; built-in defaults.\n"
              "# Lookup order: --config FILE, $KBCHAT_CONFIG, $XDG_CONFIG_HOME/kbchat/config.yaml\n"
              "# (~/.config/kbchat/config.yaml when XDG_CONFIG_HOME is unset), ./config.yaml.\n",
              out);
    }
    fputs("# Each value is followed by where it came from.\n", out);
    for (int i = 0; i < cfg->n_warnings; i++) {
        fputs("# warning: ", out);
        config_print_comment(out, cfg->warnings[i]);
        fputc('\n', out);
    }
}

void config_print(const KbConfig *cfg, FILE *out)
{
    config_print_header(cfg, out);
    for (int i = 0; i < CONFIG_KEY_COUNT; i++) {
        size_t sec = config_section_len(i);
        if (config_section_first(i)) fprintf(out, "\n%.*s:\n", (int)sec, config_keys[i].name);
        else if (sec == 0) fputc('\n', out);
        config_print_key(cfg, i, out);
    }
}
