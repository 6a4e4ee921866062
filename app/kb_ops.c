/*
** kb_ops.c: knowledge-base steps shared by `kbchat kb` and the chat front
** ends (kb_ops.h): which embedding model a base uses, and creating a base
** with the configured settings. One implementation, so a base made in the
** full-screen UI is the base `kbchat kb create` would have made.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/kb_ops.h"
#include "engine/engine.h"

/* Which model file embedding.model names (kb_ops.h); spec is never NULL. */
int kbops_embed_path(const char *spec, const char *chat_model, const char **path, char *err, size_t errlen)
{
    *path = NULL;
    if (spec[0] == '\0' || strcmp(spec, "none") == 0) return KB_OK;
    if (strcmp(spec, "chat") != 0) {
        *path = spec;
        return KB_OK;
    }
    if (chat_model && chat_model[0]) {
        *path = chat_model;
        return KB_OK;
    }
    snprintf(err, errlen, "embedding.model is \"chat\" but no chat model is configured (model.path or --model)");
    return KB_EINVAL;
}

/* Opens spec's embedding model, NULL when none (kb_ops.h). */
int kbops_open_embedder(const char *spec, const char *chat_model, int threads, RagEmbedder **e, char *err,
                        size_t errlen)
{
    const char *path;
    char why[1024];
    *e = NULL;
    int rc = kbops_embed_path(spec, chat_model, &path, err, errlen);
    if (rc != KB_OK || path == NULL) return rc;
    rc = rag_embedder_open(path, threads, e, why, sizeof why);
    if (rc != KB_OK) snprintf(err, errlen, "embedding model: %s", why);
    return rc;
}

/* The embedding model for base name, opened only when it has vectors (kb_ops.h). */
int kbops_embedder_for(Rag *rag, const char *name, const char *spec, const char *chat_model, int threads,
                       RagEmbedder **e, char *err, size_t errlen)
{
    RagKbInfo info;
    *e = NULL;
    int rc = rag_kb_info(rag, name, &info);
    if (rc != KB_OK) {
        snprintf(err, errlen, "%s", rag_errmsg(rag));
        return rc;
    }
    if (info.embed_id.file[0]) rc = kbops_open_embedder(spec, chat_model, threads, e, err, errlen);
    rag_kb_info_clear(&info);
    return rc;
}

/* Creates base name with cfg's chunking and pinned embedding model (kb_ops.h). */
int kbops_create(Rag *rag, const KbConfig *cfg, const char *chat_model, const char *name, RagEmbedId *id,
                 int *has_model, char *err, size_t errlen)
{
    const char *path;
    char why[1024];
    memset(id, 0, sizeof *id);
    *has_model = 0;
    int rc = kbops_embed_path(cfg->embedding_model, chat_model, &path, err, errlen);
    if (rc == KB_OK && path && (rc = rag_embed_identify(path, id, why, sizeof why)) != KB_OK)
        snprintf(err, errlen, "embedding model: %s", why);
    if (rc != KB_OK) return rc;
    *has_model = path != NULL;
    RagKbSettings s = {(int)cfg->chunk_size, (int)cfg->chunk_overlap, path ? cfg->embedding_model : "",
                       path ? id : NULL};
    rc = rag_kb_create(rag, name, &s);
    if (rc != KB_OK) snprintf(err, errlen, "%s", rag_errmsg(rag));
    return rc;
}

/* KBCHAT_TEST_SYNC_DELAY_MS as a number, 0 when unset (a test hook). */
int kbops_test_delay_ms(void)
{
    const char *delay = getenv("KBCHAT_TEST_SYNC_DELAY_MS");
    return delay && *delay ? atoi(delay) : 0;
}

/* The per-document budget and the extractor process of a sync (kb_ops.h). */
void kbops_sync_budget(const KbConfig *cfg, RagSyncOptions *opt)
{
    opt->doc_seconds = (double)cfg->document_time_limit;
    opt->doc_text_bytes = (size_t)cfg->document_text_limit;
    opt->extractor = cfg->pdf_extractor;
}
