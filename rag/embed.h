/*
** embed.h: what sync, rebuild and search need of the embedding model beyond
** rag.h. Internal to rag/.
*/
#ifndef KB_RAG_EMBED_H
#define KB_RAG_EMBED_H

#include <stdint.h>

#include "rag/store.h"

/* rag_kb_check_model on a knowledge-base row already read: KB_OK when e is
** the model kb is pinned to, else KB_EUNSUPPORTED with the reason and the
** remedy (naming knowledge base `name`) in rag_errmsg. */
int embed_check(Rag *rag, const char *name, const StoreKb *kb, const RagEmbedder *e);

/* Embeds the chunks without a vector of document doc (of every document of
** kb when doc is 0), a batch at a time, each batch committed on its own (so
** an interrupted run keeps what it did). Reports RAG_EV_EMBED through
** opt->progress with p (the caller's running report: vectors_done and
** vectors_total count this call's chunks, elapsed the seconds since t0, a
** CLOCK_MONOTONIC time); *n_done counts the vectors written. Stops
** before the next batch once embed_cancelled(opt).
** Returns KB_OK; KB_EIO; KB_ENOMEM; the model's code (message in rag). */
int embed_fill_missing(Rag *rag, const StoreKb *kb, int64_t doc, RagEmbedder *e, const RagSyncOptions *opt,
                       RagProgress *p, double t0, int64_t *n_done /* OUT */);

/* True when opt (may be NULL) has a cancel flag that is set. */
int embed_cancelled(const RagSyncOptions *opt);

/* Seconds on CLOCK_MONOTONIC. */
double embed_now(void);

#endif /* KB_RAG_EMBED_H */
