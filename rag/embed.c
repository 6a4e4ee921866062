/*
** embed.c: chunk and question vectors through engine.h, the identity a
** knowledge base is pinned to, and filling in the vectors a knowledge base
** lacks (rebuild, or a sync that resumes one).
**
** Why pinning: vectors of two models live in different spaces; a question
** embedded by one model compared with chunks embedded by another gives
** confident nonsense, and so does a file replaced under the same name. So a
** knowledge base records the model its vectors came from (RagEmbedId: base
** name, size, SHA-256 of the GGUF header, dimension) and vector search runs
** only with that model; `kb rebuild` re-embeds with another one, keyword
** search working meanwhile.
**
** BERT-family models get [CLS] text [SEP] and pool as their metadata says
** (mean or CLS); a chat model ("chat") gets BOS text and gives the mean of
** its final hidden states (model_embed). Every vector is L2-normalised, so
** the dot products of vectors.c are cosines. A text longer than the model's
** context is cut (keeping the closing [SEP]); the chunker's token cap
** (rag_embedder_count_tokens) normally prevents that.
*/
#include <errno.h>
#include <fcntl.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <glib.h>

#include "engine/engine.h"
#include "rag/embed.h"

#define EMBED_BATCH 16       /* texts per model_embed call */
#define FILL_BATCH 64        /* chunks per committed batch when filling */
#define HEADER_MAX (256u << 20) /* a header beyond this is not hashed further */

struct RagEmbedder {
    KbModel *model;
    int owned;             /* model_close at rag_embedder_close */
    char *path;
    RagEmbedId id;
    int n_special;         /* tokens the tokenizer adds to any text */
    int trailing;          /* one of them closes the sequence ([SEP]) */
    int max_tokens;
    char errmsg[512];
};

/* --- identity --- */

/* SHA-256 of the first len bytes of the file at path, as hex into out. */
static int hash_head(const char *path, uint64_t len, char out[65], char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return KB_EIO;
    }
    GChecksum *ck = g_checksum_new(G_CHECKSUM_SHA256);
    unsigned char buf[1 << 16];
    int rc = KB_OK;
    for (uint64_t done = 0; done < len && rc == KB_OK;) {
        size_t want = len - done < sizeof buf ? (size_t)(len - done) : sizeof buf;
        ssize_t k = read(fd, buf, want);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) {
            snprintf(err, errlen, "%s: cannot read the header: %s", path, k < 0 ? strerror(errno) : "file shrank");
            rc = KB_EIO;
            break;
        }
        g_checksum_update(ck, buf, (gssize)k);
        done += (uint64_t)k;
    }
    close(fd);
    if (rc == KB_OK) snprintf(out, 65, "%s", g_checksum_get_string(ck));
    g_checksum_free(ck);
    return rc;
}

/* The model's vector length: <arch>.embedding_length. */
static int embedding_length(const GgufFile *g, const char *path, int *dim, char *err, size_t errlen)
{
    const char *arch;
    size_t len;
    int64_t v = 0;
    char key[96];
    if (gguf_get_str(g, "general.architecture", &arch, &len) != KB_OK || len > 32) {
        snprintf(err, errlen, "%s: general.architecture is missing", path);
        return KB_EFORMAT;
    }
    snprintf(key, sizeof key, "%.*s.embedding_length", (int)len, arch);
    if (gguf_get_int(g, key, &v) != KB_OK || v < 1 || v > 65536) {
        snprintf(err, errlen, "%s: %s is missing or out of range 1..65536", path, key);
        return KB_EFORMAT;
    }
    *dim = (int)v;
    return KB_OK;
}

int rag_embed_identify(const char *path, RagEmbedId *id, char *err, size_t errlen)
{
    memset(id, 0, sizeof *id);
    GgufFile *g = NULL;
    int rc = gguf_open(path, &g, err, errlen);
    if (rc == KB_OK) rc = embedding_length(g, path, &id->dim, err, errlen);
    if (rc == KB_OK) {
        uint64_t head = gguf_data_offset(g);
        rc = hash_head(path, head < HEADER_MAX ? head : HEADER_MAX, id->hash, err, errlen);
        id->size = (int64_t)gguf_file_size(g);
    }
    gguf_close(g);
    const char *base = strrchr(path, '/');
    snprintf(id->file, sizeof id->file, "%s", base ? base + 1 : path);
    if (rc != KB_OK) memset(id, 0, sizeof *id);
    return rc;
}

int rag_embed_id_equal(const RagEmbedId *a, const RagEmbedId *b)
{
    return strcmp(a->file, b->file) == 0 && a->size == b->size && strcmp(a->hash, b->hash) == 0 && a->dim == b->dim;
}

const char *rag_embed_id_describe(const RagEmbedId *id, char *buf, size_t size)
{
    if (id->file[0] == '\0') snprintf(buf, size, "none");
    else snprintf(buf, size, "%s (%d dims)", id->file, id->dim);
    return buf;
}

/* --- the embedder --- */

/* Fills what depends on the model: special tokens and the token limit. */
static int embedder_init(RagEmbedder *e, const char *path, char *err, size_t errlen)
{
    KbTokens t = {0};
    int rc = rag_embed_identify(path, &e->id, err, errlen);
    if (rc == KB_OK && (e->path = strdup(path)) == NULL) rc = KB_ENOMEM;
    if (rc == KB_OK) rc = tokenizer_encode(model_tokenizer(e->model), "", 0, KB_TOK_ADD_SPECIAL, &t);
    if (rc == KB_OK) {
        e->n_special = (int)t.n;
        e->trailing = t.n >= 2;
        e->max_tokens = (int)model_n_ctx(e->model) - e->n_special;
        if (e->id.dim != model_n_embd(e->model)) e->id.dim = (int)model_n_embd(e->model);
        if (e->max_tokens < 1) {
            snprintf(err, errlen, "%s: a context of %lld tokens leaves no room for text", path,
                     (long long)model_n_ctx(e->model));
            rc = KB_ERANGE;
        }
    }
    if (rc == KB_ENOMEM) snprintf(err, errlen, "out of memory");
    kb_tokens_free(&t);
    return rc;
}

int rag_embedder_open(const char *path, int n_threads, RagEmbedder **out, char *err, size_t errlen)
{
    *out = NULL;
    RagEmbedder *e = calloc(1, sizeof *e);
    if (e == NULL) {
        snprintf(err, errlen, "out of memory");
        return KB_ENOMEM;
    }
    /* a chat model's own context can be 32k tokens: chunks need far less */
    KbModelParams p = {0, 2048, n_threads, 0};
    int rc = model_open(path, &p, &e->model, err, errlen);
    e->owned = 1;
    if (rc == KB_OK) rc = embedder_init(e, path, err, errlen);
    if (rc != KB_OK) {
        rag_embedder_close(e);
        return rc;
    }
    *out = e;
    return KB_OK;
}

int rag_embedder_wrap(KbModel *model, const char *path, RagEmbedder **out, char *err, size_t errlen)
{
    *out = NULL;
    RagEmbedder *e = calloc(1, sizeof *e);
    if (e == NULL) {
        snprintf(err, errlen, "out of memory");
        return KB_ENOMEM;
    }
    e->model = model;
    int rc = embedder_init(e, path, err, errlen);
    if (rc != KB_OK) {
        rag_embedder_close(e);
        return rc;
    }
    *out = e;
    return KB_OK;
}

void rag_embedder_close(RagEmbedder *e)
{
    if (e == NULL) return;
    if (e->owned) model_close(e->model);
    free(e->path);
    free(e);
}

const RagEmbedId *rag_embedder_id(const RagEmbedder *e) { return &e->id; }
const char *rag_embedder_errmsg(const RagEmbedder *e) { return e ? e->errmsg : "out of memory"; }
int rag_embedder_max_tokens(const RagEmbedder *e) { return e->max_tokens; }

int rag_embedder_count_tokens(const char *text, size_t len, void *user)
{
    RagEmbedder *e = user;
    KbTokens t = {0};
    int n = tokenizer_encode(model_tokenizer(e->model), text, len, 0, &t) == KB_OK ? (int)t.n : -1;
    kb_tokens_free(&t);
    return n;
}

/* Tokenizes one text for the model, cut to its context (keeping a closing
** special token). */
static int tokenize_for_model(RagEmbedder *e, const char *text, size_t len, KbTokens *t)
{
    t->n = 0;
    int rc = tokenizer_encode(model_tokenizer(e->model), text, len, KB_TOK_ADD_SPECIAL, t);
    size_t ctx = (size_t)model_n_ctx(e->model);
    if (rc == KB_OK && t->n > ctx) {
        if (e->trailing) t->ids[ctx - 1] = t->ids[t->n - 1];
        t->n = ctx;
    }
    return rc;
}

/* Embeds texts[0..n), n <= EMBED_BATCH, in one model_embed call. */
static int embed_batch(RagEmbedder *e, const char *const *texts, const size_t *lens, int n, float *out)
{
    KbTokens toks[EMBED_BATCH] = {{0}};
    const int32_t *seqs[EMBED_BATCH];
    size_t seq_lens[EMBED_BATCH];
    int rc = KB_OK;
    for (int i = 0; i < n && rc == KB_OK; i++) {
        rc = tokenize_for_model(e, texts[i], lens[i], &toks[i]);
        seqs[i] = toks[i].ids;
        seq_lens[i] = toks[i].n;
        if (rc == KB_OK && toks[i].n == 0) rc = KB_ERANGE; /* no BOS/CLS and no text: nothing to embed */
    }
    if (rc == KB_ENOMEM) snprintf(e->errmsg, sizeof e->errmsg, "out of memory");
    else if (rc == KB_ERANGE) snprintf(e->errmsg, sizeof e->errmsg, "an empty text cannot be embedded by %s", e->id.file);
    if (rc == KB_OK) {
        rc = model_embed(e->model, seqs, seq_lens, (size_t)n, true, out);
        if (rc != KB_OK) snprintf(e->errmsg, sizeof e->errmsg, "%s: %s", e->id.file, model_errmsg(e->model));
    }
    for (int i = 0; i < n; i++) kb_tokens_free(&toks[i]);
    return rc;
}

int rag_embed_texts(RagEmbedder *e, const char *const *texts, const size_t *lens, int n, float *out)
{
    int rc = KB_OK;
    for (int i = 0; i < n && rc == KB_OK; i += EMBED_BATCH) {
        int b = n - i < EMBED_BATCH ? n - i : EMBED_BATCH;
        rc = embed_batch(e, texts + i, lens + i, b, out + (size_t)i * (size_t)e->id.dim);
    }
    return rc;
}

/* --- pinning --- */

int embed_check(Rag *rag, const char *name, const StoreKb *kb, const RagEmbedder *e)
{
    char pinned[320], given[320];
    rag_embed_id_describe(&kb->embed, pinned, sizeof pinned);
    if (kb->embed.file[0] == '\0')
        return store_fail(rag, KB_EUNSUPPORTED,
                          "knowledge base '%s' has no vectors (it was built without an embedding model): keyword "
                          "search only; set embedding.model and run 'kbchat kb rebuild %s' to add them",
                          name, name);
    if (e == NULL)
        return store_fail(rag, KB_EUNSUPPORTED,
                          "knowledge base '%s' was built with %s but no embedding model is configured "
                          "(embedding.model): keyword search only",
                          name, pinned);
    if (rag_embed_id_equal(&kb->embed, &e->id)) return KB_OK;
    rag_embed_id_describe(&e->id, given, sizeof given);
    const char *why = strcmp(kb->embed.file, e->id.file) != 0 ? ""
                      : kb->embed.dim != e->id.dim          ? " (same file name, another dimension)"
                                                            : " (same file name, but another file: size or header differ)";
    return store_fail(rag, KB_EUNSUPPORTED,
                      "knowledge base '%s' was built with %s; the configured embedding model is %s%s: vector search "
                      "is off (keyword search still works); run 'kbchat kb rebuild %s' to re-embed it with %s",
                      name, pinned, given, why, name, e->id.file);
}

int rag_kb_check_model(Rag *rag, const char *name, const RagEmbedder *embedder)
{
    StoreKb kb;
    int rc = store_load_kb(rag, name, &kb);
    return rc == KB_OK ? embed_check(rag, name, &kb, embedder) : rc;
}

/* --- filling in vectors --- */

/* Embeds one batch of chunk texts and writes their vectors. */
static int fill_batch(Rag *rag, const StoreKb *kb, RagEmbedder *e, const int64_t *ids, char **texts, int n)
{
    size_t *lens = malloc((size_t)n * sizeof *lens);
    float *vecs = malloc((size_t)n * (size_t)e->id.dim * sizeof *vecs);
    int rc = lens && vecs ? KB_OK : store_fail(rag, KB_ENOMEM, "out of memory");
    for (int i = 0; rc == KB_OK && i < n; i++) lens[i] = strlen(texts[i]);
    if (rc == KB_OK && (rc = rag_embed_texts(e, (const char *const *)texts, lens, n, vecs)) != KB_OK)
        store_fail(rag, rc, "%s", e->errmsg);
    if (rc == KB_OK) rc = store_put_vectors(rag, kb->id, ids, vecs, n, e->id.dim);
    free(lens);
    free(vecs);
    return rc;
}

int embed_fill_missing(Rag *rag, const StoreKb *kb, int64_t doc, RagEmbedder *e, const RagSyncOptions *opt,
                       RagProgress *p, double t0, int64_t *n_done)
{
    int64_t n_chunks = 0, n_missing = 0, after = 0;
    *n_done = 0;
    int rc = store_count_missing(rag, kb->id, doc, &n_chunks, &n_missing);
    p->vectors_done = 0;
    p->vectors_total = n_missing;
    while (rc == KB_OK && *n_done < n_missing && !embed_cancelled(opt)) {
        int64_t *ids = NULL;
        char **texts = NULL;
        int n = 0;
        rc = store_chunks_without_vectors(rag, kb->id, doc, after, FILL_BATCH, &ids, &texts, &n);
        if (rc == KB_OK && n == 0) {
            store_texts_free(ids, texts, n);
            break; /* a concurrent sync removed the rest */
        }
        if (rc == KB_OK) rc = fill_batch(rag, kb, e, ids, texts, n);
        if (rc == KB_OK) after = ids[n - 1];
        store_texts_free(ids, texts, n);
        if (rc == KB_OK) {
            *n_done += n;
            p->vectors_done = *n_done;
            p->event = RAG_EV_EMBED;
            p->elapsed = embed_now() - t0;
            if (opt && opt->progress) opt->progress(p, opt->user);
        }
    }
    return rc;
}

int embed_cancelled(const RagSyncOptions *opt)
{
    return opt && opt->cancel && atomic_load(opt->cancel) != 0;
}

double embed_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* What rebuild_on_wait needs to report. */
typedef struct RebuildWait {
    const RagSyncOptions *opt;
    const char *name;
    RagSyncStats *stats;
} RebuildWait;

/* store_kb_lock's wait callback for a rebuild: a RAG_EV_WARNING. */
static void rebuild_on_wait(void *user)
{
    RebuildWait *w = user;
    char msg[300];
    snprintf(msg, sizeof msg, "another sync or rebuild of '%s' is running: waiting for it to finish", w->name);
    w->stats->warnings++;
    if (w->opt == NULL || w->opt->progress == NULL) return;
    RagProgress p;
    memset(&p, 0, sizeof p);
    p.event = RAG_EV_WARNING;
    p.kb = w->name;
    p.message = msg;
    p.eta = -1;
    w->opt->progress(&p, w->opt->user);
}

int rag_kb_rebuild(Rag *rag, const char *name, const RagSyncOptions *opt, RagSyncStats *stats)
{
    RagSyncStats local;
    if (stats == NULL) stats = &local;
    memset(stats, 0, sizeof *stats);
    double t0 = embed_now();
    RagEmbedder *e = opt ? opt->embedder : NULL;
    const RagEmbedId none = {{0}, 0, {0}, 0};
    StoreKb kb;
    rag->errmsg[0] = '\0';
    int lock = -1;
    int rc = store_load_kb(rag, name, &kb);
    RebuildWait wait = {opt, name, stats};
    if (rc == KB_OK) rc = store_kb_lock(rag, kb.id, opt, rebuild_on_wait, &wait, &lock);
    /* the same model resumes; another one (or none) starts over */
    if (rc == KB_OK && lock >= 0 && (e == NULL || !rag_embed_id_equal(&kb.embed, &e->id)))
        rc = store_repin(rag, kb.id, e ? e->path : "", e ? &e->id : &none);
    if (rc == KB_OK && lock >= 0 && e) {
        RagProgress p;
        memset(&p, 0, sizeof p);
        p.kb = name;
        p.eta = -1;
        kb.embed = e->id;
        rc = embed_fill_missing(rag, &kb, 0, e, opt, &p, t0, &stats->vectors);
    }
    store_kb_unlock(lock);
    stats->cancelled = embed_cancelled(opt);
    stats->seconds = embed_now() - t0;
    return rc;
}
