/*
** kb_jobs.c: knowledge bases managed from a chat front end (app.h): the
** F2 panel's create, add, remove, delete and file list, on the chat's own
** database connection. The steps are those of `kbchat kb ...`: creating
** goes through kb_ops.c like cmd_kb.c does, the rest are one rag_kb_* call
** each. These run on the front end's thread while no chat_line job runs;
** the background sync is kb_sync.c.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/chat_app.h"
#include "app/kb_ops.h"

/* Nonzero when knowledge base name is being synced in the background:
** removing from it or deleting it must wait for the sync to end. */
static int kb_is_syncing(ChatApp *app, const char *name)
{
    ChatSyncState st;
    chat_sync_state(app, &st);
    return st.running && strcmp(st.kb, name) == 0;
}

/* Records rag's message for a failed call and returns rc. */
static int kb_rag_fail(ChatApp *app, int rc)
{
    return chat_fail(app, rc, "%s", rag_errmsg(app->rag));
}

/* Creates base name as `kbchat kb create` does; the chat model stands for
** embedding.model "chat". Idle only (app.h). */
int chat_kb_create(ChatApp *app, const char *name)
{
    RagEmbedId id;
    int has_model;
    char err[1200];
    const char *chat_model = app->model_path ? app->model_path : app->cfg->model_path;
    int rc = chat_rag(app);
    if (rc == KB_OK && (rc = kbops_create(app->rag, app->cfg, chat_model, name, &id, &has_model, err, sizeof err)) != KB_OK)
        chat_fail(app, rc, "%s", err);
    return rc;
}

/* Adds path (~ expanded) to base name. Idle only. */
int chat_kb_add(ChatApp *app, const char *name, const char *path)
{
    char *full = path_expand_home(path);
    int rc = full ? chat_rag(app) : chat_fail(app, KB_ENOMEM, "out of memory");
    if (rc == KB_OK && (rc = rag_kb_add(app->rag, name, full)) != KB_OK) kb_rag_fail(app, rc);
    free(full);
    return rc;
}

/* Removes path from base name, unless the base is being synced. Idle only. */
int chat_kb_remove(ChatApp *app, const char *name, const char *path, int64_t *n_docs)
{
    if (n_docs) *n_docs = 0;
    if (kb_is_syncing(app, name))
        return chat_fail(app, KB_EINVAL, "%s is being synced: remove files when the sync has finished", name);
    int rc = chat_rag(app);
    if (rc == KB_OK && (rc = rag_kb_remove(app->rag, name, path, n_docs)) != KB_OK) kb_rag_fail(app, rc);
    return rc;
}

/* Deletes base name, unless it is being synced; stops searching it when it
** was in use. Idle only. */
int chat_kb_delete(ChatApp *app, const char *name)
{
    if (kb_is_syncing(app, name))
        return chat_fail(app, KB_EINVAL, "%s is being synced: delete it when the sync has finished", name);
    int rc = chat_rag(app);
    if (rc == KB_OK && (rc = rag_kb_delete(app->rag, name)) != KB_OK) return kb_rag_fail(app, rc);
    if (rc == KB_OK && strcmp(conv_kb(app->conv), name) == 0) rc = chat_use_kb(app, NULL);
    return rc;
}

/* Lists the documents of base name (failed ones too). Idle only. */
int chat_kb_files(ChatApp *app, const char *name, RagFile **out, int *n)
{
    *out = NULL;
    *n = 0;
    int rc = chat_rag(app);
    if (rc == KB_OK && (rc = rag_kb_files(app->rag, name, 0, out, n)) != KB_OK) kb_rag_fail(app, rc);
    return rc;
}

/* Frees a chat_kb_files list; NULL is fine. */
void chat_free_files(RagFile *files, int n)
{
    rag_files_free(files, n);
}
