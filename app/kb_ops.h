/*
** kb_ops.h: knowledge-base steps shared by `kbchat kb` (cmd_kb.c) and the
** chat front ends (kb_jobs.c). Internal to app/.
**
** Nothing here prints: each function leaves its message in the caller's
** err buffer, so the command line prints it on stderr and the full-screen
** UI shows it in its knowledge-base panel.
*/
#ifndef KB_APP_KB_OPS_H
#define KB_APP_KB_OPS_H

#include <stddef.h>

#include "app/config.h"
#include "rag/rag.h"

/* The model file embedding.model (spec) names: *path NULL for none ("" or
** "none"), chat_model for "chat" (the chat model's file), else spec.
** Returns KB_OK; KB_EINVAL when spec is "chat" and chat_model is NULL or
** "" (message in err). */
int kbops_embed_path(const char *spec, const char *chat_model, const char **path /* OUT */, char *err, size_t errlen);

/* Opens the embedding model spec names (see kbops_embed_path) on threads
** threads; *e is NULL when none is configured. The caller closes *e.
** Returns KB_OK; KB_EINVAL; rag_embedder_open's code (message in err,
** starting "embedding model: "). */
int kbops_open_embedder(const char *spec, const char *chat_model, int threads, RagEmbedder **e /* OUT */, char *err,
                        size_t errlen);

/* Opens the embedding model for knowledge base `name` only when that base
** has vectors (it is pinned to a model); *e stays NULL for a keyword-only
** base, which never pays for loading a model. Returns KB_OK; rag_kb_info's
** code (message in err); kbops_open_embedder's codes. */
int kbops_embedder_for(Rag *rag, const char *name, const char *spec, const char *chat_model, int threads,
                       RagEmbedder **e /* OUT */, char *err, size_t errlen);

/* Creates knowledge base `name` with the settings of cfg then in force:
** chunking.size and chunking.overlap, and the identity of embedding.model
** (its header only; "chat" = chat_model, the chat model's file), which
** the base is pinned to.
** *id receives that identity and *has_model whether there is one.
** Returns KB_OK; the identification's or rag_kb_create's code (message in
** err: a bad or taken name, an unreadable model). */
int kbops_create(Rag *rag, const KbConfig *cfg, const char *chat_model, const char *name, RagEmbedId *id /* OUT */,
                 int *has_model /* OUT */, char *err, size_t errlen);

/* The test hook KBCHAT_TEST_SYNC_DELAY_MS: milliseconds to pause after
** each committed document (RagSyncOptions.delay_ms); 0 when unset. */
int kbops_test_delay_ms(void);

/* Sets opt's per-document budget from kb.document_time_limit and
** kb.document_text_limit, and its extractor from cfg->pdf_extractor (in
** kbchat a child process, so the limits and cancel act inside a page). */
void kbops_sync_budget(const KbConfig *cfg, RagSyncOptions *opt);

#endif /* KB_APP_KB_OPS_H */
