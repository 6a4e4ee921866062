/*
** session.c: chat sessions in the knowledge-base database (schema in
** store.h): a session row, its turns in order, and each turn's sources.
**
** A turn is written with its sources in one transaction, so a session read
** back after a crash never has an answer without its citations. Sources are
** copies (file, page, section, passage text), not references to chunks: a
** knowledge base re-indexed or deleted later leaves old answers citable.
*/
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/engine.h"
#include "rag/store.h"

/* --- freeing --- */

void rag_session_clear(RagSession *s)
{
    if (s == NULL) return;
    free(s->title);
    free(s->model);
    free(s->template_name);
    free(s->kb);
    memset(s, 0, sizeof *s);
}

void rag_session_free_list(RagSession *list, int n)
{
    for (int i = 0; list && i < n; i++) rag_session_clear(&list[i]);
    free(list);
}

void rag_turn_clear(RagTurn *t)
{
    if (t == NULL) return;
    free(t->question);
    free(t->query);
    free(t->prompt);
    free(t->answer);
    rag_hits_free(t->sources, t->n_sources);
    memset(t, 0, sizeof *t);
}

void rag_turns_free(RagTurn *turns, int n)
{
    for (int i = 0; turns && i < n; i++) rag_turn_clear(&turns[i]);
    free(turns);
}

/* --- helpers --- */

/* strdup of a column's text ("" for NULL); NULL only when out of memory. */
static char *col_dup(sqlite3_stmt *st, int i)
{
    const unsigned char *s = sqlite3_column_text(st, i);
    return strdup(s ? (const char *)s : "");
}

static const char *or_empty(const char *s)
{
    return s ? s : "";
}

/* Steps a statement that returns no rows. */
static int step_done(Rag *rag, sqlite3_stmt *st, const char *what)
{
    int rc = sqlite3_step(st) == SQLITE_DONE ? KB_OK : store_sql_fail(rag, what);
    sqlite3_finalize(st);
    return rc;
}

/* Fails with KB_ENOTFOUND unless the last statement changed a row. */
static int check_changed(Rag *rag, int rc, int64_t id)
{
    if (rc == KB_OK && sqlite3_changes(rag->db) == 0)
        return store_fail(rag, KB_ENOTFOUND, "no session with id %lld", (long long)id);
    return rc;
}

/* --- sessions --- */

int rag_session_create(Rag *rag, const RagSession *s, int64_t *id)
{
    sqlite3_stmt *st;
    int64_t now = (int64_t)time(NULL);
    *id = 0;
    int rc = store_prepare(rag,
                           "INSERT INTO sessions(title, model, template, kb, created, updated) "
                           "VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
                           &st);
    if (rc != KB_OK) return rc;
    sqlite3_bind_text(st, 1, or_empty(s->title), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, or_empty(s->model), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, or_empty(s->template_name), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, or_empty(s->kb), -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, now);
    rc = step_done(rag, st, "cannot create the session");
    if (rc == KB_OK) *id = sqlite3_last_insert_rowid(rag->db);
    return rc;
}

int rag_session_update(Rag *rag, const RagSession *s)
{
    sqlite3_stmt *st;
    int rc = store_prepare(rag, "UPDATE sessions SET title = ?1, model = ?2, template = ?3, kb = ?4 WHERE id = ?5",
                           &st);
    if (rc != KB_OK) return rc;
    sqlite3_bind_text(st, 1, or_empty(s->title), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, or_empty(s->model), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, or_empty(s->template_name), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, or_empty(s->kb), -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, s->id);
    return check_changed(rag, step_done(rag, st, "cannot update the session"), s->id);
}

int rag_session_delete(Rag *rag, int64_t id)
{
    sqlite3_stmt *st;
    int rc = store_prepare(rag, "DELETE FROM sessions WHERE id = ?1", &st);
    if (rc != KB_OK) return rc;
    sqlite3_bind_int64(st, 1, id);
    return check_changed(rag, step_done(rag, st, "cannot delete the session"), id);
}

#define SESSION_COLUMNS                                                                                           \
    "SELECT s.id, s.title, s.model, s.template, s.kb, s.created, s.updated, "                                   \
    "(SELECT count(*) FROM turns t WHERE t.session_id = s.id) FROM sessions s "

/* Reads the current row of a SESSION_COLUMNS statement into *s. */
static int read_session(Rag *rag, sqlite3_stmt *st, RagSession *s)
{
    memset(s, 0, sizeof *s);
    s->id = sqlite3_column_int64(st, 0);
    s->title = col_dup(st, 1);
    s->model = col_dup(st, 2);
    s->template_name = col_dup(st, 3);
    s->kb = col_dup(st, 4);
    s->created = sqlite3_column_int64(st, 5);
    s->updated = sqlite3_column_int64(st, 6);
    s->n_turns = sqlite3_column_int(st, 7);
    if (!s->title || !s->model || !s->template_name || !s->kb) return store_fail(rag, KB_ENOMEM, "out of memory");
    return KB_OK;
}

int rag_session_get(Rag *rag, int64_t id, RagSession *out)
{
    sqlite3_stmt *st;
    memset(out, 0, sizeof *out);
    int rc = store_prepare(rag, SESSION_COLUMNS "WHERE s.id = ?1", &st);
    if (rc != KB_OK) return rc;
    sqlite3_bind_int64(st, 1, id);
    int s = sqlite3_step(st);
    if (s == SQLITE_ROW) rc = read_session(rag, st, out);
    else if (s == SQLITE_DONE) rc = store_fail(rag, KB_ENOTFOUND, "no session with id %lld", (long long)id);
    else rc = store_sql_fail(rag, "cannot read the session");
    sqlite3_finalize(st);
    if (rc != KB_OK) rag_session_clear(out);
    return rc;
}

int rag_session_list(Rag *rag, RagSession **out, int *n_out)
{
    sqlite3_stmt *st;
    *out = NULL;
    *n_out = 0;
    int rc = store_prepare(rag, SESSION_COLUMNS "ORDER BY s.updated DESC, s.id DESC", &st);
    RagSession *list = NULL;
    int n = 0, cap = 0, s = SQLITE_DONE;
    while (rc == KB_OK && (s = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == cap) {
            RagSession *l = realloc(list, (size_t)(cap = cap ? 2 * cap : 16) * sizeof *l);
            if (l == NULL) {
                rc = store_fail(rag, KB_ENOMEM, "out of memory");
                break;
            }
            list = l;
        }
        rc = read_session(rag, st, &list[n++]);
    }
    if (rc == KB_OK && s != SQLITE_DONE) rc = store_sql_fail(rag, "cannot list the sessions");
    sqlite3_finalize(st);
    if (rc != KB_OK) {
        rag_session_free_list(list, n);
        return rc;
    }
    *out = list;
    *n_out = n;
    return KB_OK;
}

/* --- turns --- */

/* Inserts one source row of turn_id. */
static int put_source(Rag *rag, sqlite3_stmt *st, int64_t turn_id, const RagHit *h, int rank)
{
    sqlite3_reset(st);
    sqlite3_bind_int64(st, 1, turn_id);
    sqlite3_bind_int(st, 2, rank);
    sqlite3_bind_text(st, 3, or_empty(h->file), -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 4, h->page);
    sqlite3_bind_text(st, 5, or_empty(h->section), -1, SQLITE_STATIC);
    sqlite3_bind_double(st, 6, h->score);
    sqlite3_bind_int64(st, 7, h->chunk_id);
    sqlite3_bind_text(st, 8, or_empty(h->text), -1, SQLITE_STATIC);
    return sqlite3_step(st) == SQLITE_DONE ? KB_OK : store_sql_fail(rag, "cannot store a source");
}

/* Inserts the turn row (seq after the last) and returns its id. */
static int put_turn(Rag *rag, int64_t session, const RagTurn *t, int64_t *turn_id)
{
    sqlite3_stmt *st;
    int rc = store_prepare(rag,
                           "INSERT INTO turns(session_id, seq, question, query, prompt, answer, created) "
                           "VALUES (?1, (SELECT coalesce(max(seq), 0) + 1 FROM turns WHERE session_id = ?1), "
                           "?2, ?3, ?4, ?5, ?6)",
                           &st);
    if (rc != KB_OK) return rc;
    sqlite3_bind_int64(st, 1, session);
    sqlite3_bind_text(st, 2, or_empty(t->question), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, or_empty(t->query), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, or_empty(t->prompt), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, or_empty(t->answer), -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 6, t->created ? t->created : (int64_t)time(NULL));
    rc = step_done(rag, st, "cannot store the turn");
    *turn_id = sqlite3_last_insert_rowid(rag->db);
    return rc;
}

/* Sets the session's updated time to now; KB_ENOTFOUND when it is gone. */
static int touch_session(Rag *rag, int64_t session)
{
    sqlite3_stmt *st;
    int rc = store_prepare(rag, "UPDATE sessions SET updated = ?1 WHERE id = ?2", &st);
    if (rc != KB_OK) return rc;
    sqlite3_bind_int64(st, 1, (int64_t)time(NULL));
    sqlite3_bind_int64(st, 2, session);
    return check_changed(rag, step_done(rag, st, "cannot update the session"), session);
}

int rag_session_add_turn(Rag *rag, int64_t session, const RagTurn *t)
{
    int64_t turn_id = 0;
    sqlite3_stmt *st = NULL;
    int rc = store_begin(rag);
    if (rc == KB_OK) rc = touch_session(rag, session);
    if (rc == KB_OK) rc = put_turn(rag, session, t, &turn_id);
    if (rc == KB_OK && t->n_sources > 0)
        rc = store_prepare(rag,
                           "INSERT INTO turn_sources(turn_id, rank, file, page, section, score, chunk_id, text) "
                           "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                           &st);
    for (int i = 0; rc == KB_OK && i < t->n_sources; i++) rc = put_source(rag, st, turn_id, &t->sources[i], i + 1);
    sqlite3_finalize(st);
    if (rc == KB_OK) rc = store_commit(rag);
    if (rc != KB_OK) store_rollback(rag);
    return rc;
}

int rag_session_drop_last_turn(Rag *rag, int64_t session)
{
    sqlite3_stmt *st;
    int rc = store_prepare(rag,
                           "DELETE FROM turns WHERE id = (SELECT id FROM turns WHERE session_id = ?1 "
                           "ORDER BY seq DESC LIMIT 1)",
                           &st);
    if (rc != KB_OK) return rc;
    sqlite3_bind_int64(st, 1, session);
    return check_changed(rag, step_done(rag, st, "cannot delete the turn"), session);
}

/* Reads the sources of turn_id into t. */
static int load_sources(Rag *rag, int64_t turn_id, RagTurn *t)
{
    sqlite3_stmt *st;
    int rc = store_prepare(rag,
                           "SELECT rank, file, page, section, score, chunk_id, text FROM turn_sources "
                           "WHERE turn_id = ?1 ORDER BY rank",
                           &st);
    if (rc != KB_OK) return rc;
    sqlite3_bind_int64(st, 1, turn_id);
    int s = SQLITE_DONE, cap = 0;
    while (rc == KB_OK && (s = sqlite3_step(st)) == SQLITE_ROW) {
        if (t->n_sources == cap) {
            RagHit *h = realloc(t->sources, (size_t)(cap = cap ? 2 * cap : 8) * sizeof *h);
            if (h == NULL) {
                rc = store_fail(rag, KB_ENOMEM, "out of memory");
                break;
            }
            t->sources = h;
        }
        RagHit *h = &t->sources[t->n_sources++];
        memset(h, 0, sizeof *h);
        h->rank = sqlite3_column_int(st, 0);
        h->file = col_dup(st, 1);
        h->page = sqlite3_column_int(st, 2);
        h->section = col_dup(st, 3);
        h->score = sqlite3_column_double(st, 4);
        h->chunk_id = sqlite3_column_int64(st, 5);
        h->text = col_dup(st, 6);
        if (!h->file || !h->section || !h->text) rc = store_fail(rag, KB_ENOMEM, "out of memory");
    }
    if (rc == KB_OK && s != SQLITE_DONE) rc = store_sql_fail(rag, "cannot read the sources");
    sqlite3_finalize(st);
    return rc;
}

/* Appends the current turn row of st to *turns (grown as needed). */
static int read_turn(Rag *rag, sqlite3_stmt *st, RagTurn **turns, int *n, int *cap)
{
    if (*n == *cap) {
        RagTurn *t = realloc(*turns, (size_t)(*cap = *cap ? 2 * *cap : 16) * sizeof *t);
        if (t == NULL) return store_fail(rag, KB_ENOMEM, "out of memory");
        *turns = t;
    }
    RagTurn *t = &(*turns)[(*n)++];
    memset(t, 0, sizeof *t);
    t->question = col_dup(st, 1);
    t->query = col_dup(st, 2);
    t->prompt = col_dup(st, 3);
    t->answer = col_dup(st, 4);
    t->created = sqlite3_column_int64(st, 5);
    if (!t->question || !t->query || !t->prompt || !t->answer) return store_fail(rag, KB_ENOMEM, "out of memory");
    return load_sources(rag, sqlite3_column_int64(st, 0), t);
}

int rag_session_turns(Rag *rag, int64_t session, RagTurn **out, int *n_out)
{
    sqlite3_stmt *st;
    *out = NULL;
    *n_out = 0;
    RagTurn *turns = NULL;
    int n = 0, cap = 0, s = SQLITE_DONE;
    int rc = store_prepare(rag,
                           "SELECT id, question, query, prompt, answer, created FROM turns "
                           "WHERE session_id = ?1 ORDER BY seq",
                           &st);
    if (rc == KB_OK) sqlite3_bind_int64(st, 1, session);
    while (rc == KB_OK && (s = sqlite3_step(st)) == SQLITE_ROW) rc = read_turn(rag, st, &turns, &n, &cap);
    if (rc == KB_OK && s != SQLITE_DONE) rc = store_sql_fail(rag, "cannot read the turns");
    sqlite3_finalize(st);
    if (rc != KB_OK) {
        rag_turns_free(turns, n);
        return rc;
    }
    *out = turns;
    *n_out = n;
    return KB_OK;
}
