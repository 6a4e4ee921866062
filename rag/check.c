/*
** check.c: `kb check`, finding damage in knowledge.db and repairing it
** (rag.h, rag_check).
**
** SQLite cannot safely change a damaged b-tree: deleting the rows of a
** garbage page walks that page. So the repair is a copy, as SQLite's own
** recovery does it: a new file gets the schema, then every row that can
** still be read, table by table in rowid order. A read that hits damage is
** resumed past it: seeks further and further ahead find where readable
** rows start again, and a binary search between the last failing and the
** first working seek finds its first row, so nothing readable is left
** behind. The chunk triggers rebuild the keyword index as the chunks go
** in. Then rows whose parent was lost are dropped, and each document
** whose chunk count differs from the count written with it loses its
** chunks and is marked for re-indexing (rag_sync reads it again). The
** damaged file is kept, renamed, beside the new one.
*/
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "engine/engine.h"
#include "rag/store.h"

#define MAX_FINDINGS 20 /* integrity_check lines reported */

/* The tables in an order where a parent comes before its children. */
static const char *const copy_order[] = {"kbs", "sources", "documents", "chunks", "vectors",
                                         "sessions", "turns", "turn_sources"};
#define N_COPY (int)(sizeof copy_order / sizeof copy_order[0])

/* Appends a finding (printf-style) to r. Returns KB_OK; KB_ENOMEM. */
__attribute__((format(printf, 2, 3))) static int add_problem(RagCheckReport *r, const char *fmt, ...)
{
    char buf[1200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    char **p = realloc(r->problems, (size_t)(r->n_problems + 1) * sizeof *p);
    if (p == NULL) return KB_ENOMEM;
    r->problems = p;
    if ((p[r->n_problems] = strdup(buf)) == NULL) return KB_ENOMEM;
    r->n_problems++;
    return KB_OK;
}

void rag_check_report_clear(RagCheckReport *r)
{
    for (int i = 0; i < r->n_problems; i++) free(r->problems[i]);
    for (int i = 0; i < r->n_docs; i++) {
        free(r->docs[i].kb);
        free(r->docs[i].path);
    }
    free(r->problems);
    free(r->docs);
    free(r->kept);
    memset(r, 0, sizeof *r);
}

/* --- finding --- */

#define DB_HEADER "*** in database main ***\n"
#define BAD_PAGE "btreeInitPage() returns error code 11"

/* Adds one line of integrity_check to r in plainer words: without the
** schema header, and a page SQLite cannot parse called what it is. */
static int add_finding(RagCheckReport *r, const char *prefix, const char *t)
{
    if (strncmp(t, DB_HEADER, strlen(DB_HEADER)) == 0) t += strlen(DB_HEADER);
    const char *bad = strstr(t, BAD_PAGE);
    if (bad == NULL) return add_problem(r, "%s%s", prefix, t);
    return add_problem(r, "%s%.*snot a valid database page (overwritten or garbage)%s", prefix, (int)(bad - t), t,
                       bad + strlen(BAD_PAGE));
}

/* Runs a query whose rows are findings (one text column), adding each to
** r with prefix; "ok" rows are not findings. A query that fails is itself
** one. Returns KB_OK; KB_ENOMEM. */
static int collect(Rag *rag, const char *sql, const char *prefix, RagCheckReport *r)
{
    sqlite3_stmt *st = NULL;
    int rc = KB_OK, s = sqlite3_prepare_v2(rag->db, sql, -1, &st, NULL);
    while (s == SQLITE_OK && (s = sqlite3_step(st)) == SQLITE_ROW && rc == KB_OK) {
        const char *t = (const char *)sqlite3_column_text(st, 0);
        if (t && strcmp(t, "ok") != 0) rc = add_finding(r, prefix, t);
    }
    if (rc == KB_OK && s != SQLITE_DONE && s != SQLITE_ROW)
        rc = add_problem(r, "%scannot be checked: %s", prefix, sqlite3_errmsg(rag->db));
    sqlite3_finalize(st);
    return rc;
}

/* Adds every problem found in rag's database to r. */
static int find_problems(Rag *rag, RagCheckReport *r)
{
    char sql[64];
    snprintf(sql, sizeof sql, "PRAGMA integrity_check(%d)", MAX_FINDINGS);
    int rc = collect(rag, sql, "integrity_check: ", r);
    /* FTS5's check is an INSERT command, which a read-only database refuses */
    if (rc == KB_OK && !rag->read_only && sqlite3_exec(rag->db, "INSERT INTO chunks_fts(chunks_fts) VALUES ('integrity-check')", NULL,
                                    NULL, NULL) != SQLITE_OK)
        rc = add_problem(r, "the keyword index does not match the chunks: %s", sqlite3_errmsg(rag->db));
    if (rc == KB_OK)
        rc = collect(rag, "SELECT 'a row of ' || \"table\" || ' points to a missing row of ' || parent "
                          "FROM pragma_foreign_key_check", "foreign keys: ", r);
    if (rc == KB_OK)
        rc = collect(rag, "SELECT 'document ' || d.path || ' has ' || (SELECT count(*) FROM chunks c WHERE "
                          "c.doc_id = d.id) || ' of its ' || d.n_chunks || ' chunks' FROM documents d WHERE "
                          "d.n_chunks != (SELECT count(*) FROM chunks c WHERE c.doc_id = d.id)", "chunks of the documents: ", r);
    return rc;
}

/* --- copying what can be read --- */

/* Steps the copy of one table from row id `after` on. Returns the SQLite
** code of the read that stopped it (SQLITE_DONE at the end); *last is the
** last row id copied. Fails with KB_* through *rc on a write error. */
static int copy_from(sqlite3_stmt *sel, sqlite3_stmt *ins, int64_t after, int64_t *last, Rag *dst, int *rc)
{
    int s = SQLITE_DONE, n = sqlite3_column_count(sel);
    sqlite3_reset(sel);
    sqlite3_bind_int64(sel, 1, after);
    while (*rc == KB_OK && (s = sqlite3_step(sel)) == SQLITE_ROW) {
        *last = sqlite3_column_int64(sel, 0);
        for (int i = 1; i < n; i++) sqlite3_bind_value(ins, i, sqlite3_column_value(sel, i));
        if (sqlite3_step(ins) != SQLITE_DONE) *rc = store_sql_fail(dst, "cannot copy a row");
        sqlite3_reset(ins);
    }
    return *rc == KB_OK ? s : SQLITE_DONE;
}

/* True when reading from row id `after` on works (finds a row or the end). */
static int readable_after(sqlite3_stmt *sel, int64_t after)
{
    sqlite3_reset(sel);
    sqlite3_bind_int64(sel, 1, after);
    int s = sqlite3_step(sel);
    sqlite3_reset(sel);
    return s == SQLITE_ROW || s == SQLITE_DONE;
}

/* Where reading can resume after a failure past row id `bad`: the least
** id from which a read works (a binary search between the last seek that
** failed and the first that worked). Returns 0 with *from set, or -1 when
** no seek ahead works (the rest of the table is lost). */
static int resume_point(sqlite3_stmt *sel, int64_t bad, int64_t *from)
{
    int64_t lo = bad, hi = -1;
    for (int64_t jump = 1; jump > 0 && jump < ((int64_t)1 << 62); jump *= 2) {
        if (readable_after(sel, bad + jump)) {
            hi = bad + jump;
            break;
        }
        lo = bad + jump;
    }
    if (hi < 0) return -1;
    while (hi - lo > 1) {
        int64_t mid = lo + (hi - lo) / 2;
        if (readable_after(sel, mid)) hi = mid;
        else lo = mid;
    }
    *from = hi;
    return 0;
}

/* Copies the readable rows of table from src to dst (same schema). */
static int copy_table(Rag *src, Rag *dst, const char *table, RagCheckReport *r)
{
    char sql[160], ins_sql[1024];
    sqlite3_stmt *sel = NULL, *ins = NULL;
    snprintf(sql, sizeof sql, "SELECT rowid, * FROM \"%s\" WHERE rowid > ?1 ORDER BY rowid", table);
    int rc = sqlite3_prepare_v2(src->db, sql, -1, &sel, NULL) == SQLITE_OK ? KB_OK : KB_EIO;
    if (rc != KB_OK) rc = add_problem(r, "table %s cannot be read at all: %s", table, sqlite3_errmsg(src->db));
    if (rc != KB_OK || sel == NULL) return rc;
    int n = snprintf(ins_sql, sizeof ins_sql, "INSERT OR IGNORE INTO \"%s\" VALUES (?", table);
    for (int i = 2; i < sqlite3_column_count(sel); i++) n += snprintf(ins_sql + n, sizeof ins_sql - (size_t)n, ", ?");
    snprintf(ins_sql + n, sizeof ins_sql - (size_t)n, ")");
    rc = store_prepare(dst, ins_sql, &ins);
    int64_t after = INT64_MIN, last = INT64_MIN;
    while (rc == KB_OK) {
        int s = copy_from(sel, ins, after, &last, dst, &rc);
        if (rc != KB_OK || s == SQLITE_DONE) break;
        r->skipped++;
        int64_t bad = last == INT64_MIN ? after : last, from;
        int lost = resume_point(sel, bad, &from) != 0;
        rc = add_problem(r, "table %s: rows after row id %lld cannot be read%s", table, (long long)bad,
                         lost ? " (the rest of the table is lost)" : "");
        if (lost) break;
        after = from; /* reading past `from` works; rows up to it are the damaged stretch */
        last = INT64_MIN;
    }
    sqlite3_finalize(sel);
    sqlite3_finalize(ins);
    return rc;
}

/* --- repairing the copy --- */

/* Deletes rows whose parent row was lost, counting them in r->orphans. */
static int drop_orphans(Rag *dst, RagCheckReport *r)
{
    static const char *const sql[] = {
        "DELETE FROM sources WHERE kb_id NOT IN (SELECT id FROM kbs)",
        "DELETE FROM documents WHERE kb_id NOT IN (SELECT id FROM kbs)",
        "DELETE FROM chunks WHERE doc_id NOT IN (SELECT id FROM documents)",
        "DELETE FROM vectors WHERE chunk_id NOT IN (SELECT id FROM chunks) OR kb_id NOT IN (SELECT id FROM kbs)",
        "DELETE FROM turns WHERE session_id NOT IN (SELECT id FROM sessions)",
        "DELETE FROM turn_sources WHERE turn_id NOT IN (SELECT id FROM turns)",
    };
    int rc = KB_OK;
    for (size_t i = 0; rc == KB_OK && i < sizeof sql / sizeof sql[0]; i++) {
        rc = store_exec(dst, sql[i]);
        r->orphans += sqlite3_changes64(dst->db);
    }
    return rc;
}

/* Appends (kb, path) to r->docs. */
static int add_doc(RagCheckReport *r, const char *kb, const char *path)
{
    RagCheckDoc *d = realloc(r->docs, (size_t)(r->n_docs + 1) * sizeof *d);
    if (d == NULL) return KB_ENOMEM;
    r->docs = d;
    d[r->n_docs] = (RagCheckDoc){strdup(kb), strdup(path)};
    if (d[r->n_docs].kb == NULL || d[r->n_docs].path == NULL) {
        free(d[r->n_docs].kb);
        free(d[r->n_docs].path);
        return KB_ENOMEM;
    }
    r->n_docs++;
    return KB_OK;
}

#define INCOMPLETE_DOCS                                                                                              \
    "SELECT d.id, k.name, d.path FROM documents d JOIN kbs k ON k.id = d.kb_id WHERE d.failed = 0 AND "             \
    "(d.n_chunks != (SELECT count(*) FROM chunks c WHERE c.doc_id = d.id) OR "                                      \
    "(SELECT coalesce(max(seq), -1) FROM chunks c WHERE c.doc_id = d.id) != d.n_chunks - 1) ORDER BY k.name, d.path"

/* Drops the chunks of every document that lost some and marks it to be
** re-indexed: hash "" and size -1 never match a file, so rag_sync reads it
** again. */
static int mark_incomplete(Rag *dst, RagCheckReport *r)
{
    sqlite3_stmt *st, *fix = NULL;
    int rc = store_prepare(dst, INCOMPLETE_DOCS, &st), s = SQLITE_DONE;
    if (rc == KB_OK)
        rc = store_prepare(dst, "UPDATE documents SET hash = '', size = -1, mtime_ns = -1, n_chunks = 0 WHERE id = ?1",
                           &fix);
    while (rc == KB_OK && (s = sqlite3_step(st)) == SQLITE_ROW) {
        rc = add_doc(r, (const char *)sqlite3_column_text(st, 1), (const char *)sqlite3_column_text(st, 2));
        sqlite3_bind_int64(fix, 1, sqlite3_column_int64(st, 0));
        if (rc == KB_OK && sqlite3_step(fix) != SQLITE_DONE) rc = store_sql_fail(dst, "cannot mark a document");
        sqlite3_reset(fix);
    }
    if (rc == KB_OK && s != SQLITE_DONE) rc = store_sql_fail(dst, "cannot read documents");
    sqlite3_finalize(st);
    sqlite3_finalize(fix);
    if (rc == KB_OK)
        rc = store_exec(dst, "DELETE FROM chunks WHERE doc_id IN (SELECT id FROM documents WHERE hash = '' AND size = -1)");
    return rc;
}

/* Fills the new database dst from src and repairs it, in one transaction. */
static int rebuild_into(Rag *src, Rag *dst, RagCheckReport *r)
{
    int rc = store_exec(dst, "PRAGMA foreign_keys = OFF");
    if (rc == KB_OK) rc = store_begin(dst);
    for (int i = 0; rc == KB_OK && i < N_COPY; i++) rc = copy_table(src, dst, copy_order[i], r);
    if (rc == KB_OK) rc = drop_orphans(dst, r);
    if (rc == KB_OK) rc = mark_incomplete(dst, r);
    if (rc == KB_OK) rc = store_commit(dst);
    if (rc != KB_OK) store_rollback(dst);
    if (rc == KB_OK) rc = store_exec(dst, "PRAGMA foreign_keys = ON");
    if (rc == KB_OK) rc = store_integrity_check(dst);
    if (rc == KB_OK) rc = store_exec(dst, "PRAGMA wal_checkpoint(TRUNCATE)");
    return rc;
}

/* --- swapping the files --- */

/* Renames "<db><suffix>" to "<kept><suffix>" when it exists. */
static int move_aside(const char *db, const char *kept, const char *suffix)
{
    char from[4300], to[4300];
    if (snprintf(from, sizeof from, "%s%s", db, suffix) >= (int)sizeof from ||
        snprintf(to, sizeof to, "%s%s", kept, suffix) >= (int)sizeof to)
        return -1;
    struct stat sb;
    if (stat(from, &sb) == 0 && sb.st_size == 0) return unlink(from); /* an empty log holds nothing to keep */
    return rename(from, to) == 0 || errno == ENOENT ? 0 : -1;
}

/* Closes *rag, keeps its damaged file as knowledge.db.damaged-<time>, puts
** the rebuilt file tmp in its place and opens that as *rag. */
static int swap_in(Rag **rag, const char *tmp, RagCheckReport *r)
{
    char kept[4200], stamp[32], *dir = strdup((*rag)->dir), *db = strdup((*rag)->path);
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", &tm);
    int rc = dir && db ? KB_OK : store_fail(*rag, KB_ENOMEM, "out of memory");
    if (rc == KB_OK) snprintf(kept, sizeof kept, "%s.damaged-%s", db, stamp);
    if (rc == KB_OK) {
        (*rag)->healthy = 0; /* nothing to record: the file is about to be replaced */
        rag_close(*rag);
        *rag = NULL;
        if (move_aside(db, kept, "-wal") != 0 || rename(db, kept) != 0 || rename(tmp, db) != 0)
            rc = KB_EIO;
        char shm[4200];
        snprintf(shm, sizeof shm, "%s-shm", db);
        unlink(shm);
        store_state_forget(db);
    }
    int orc = rc == KB_OK || *rag == NULL ? rag_open(rag, dir) : KB_OK;
    if (rc != KB_OK && *rag) store_fail(*rag, rc, "cannot put the rebuilt database in place of %s: %s", db, strerror(errno));
    if (rc == KB_OK) rc = orc;
    if (rc == KB_OK) r->kept = strdup(kept);
    if (rc == KB_OK && r->kept == NULL) rc = store_fail(*rag, KB_ENOMEM, "out of memory");
    free(dir);
    free(db);
    return rc;
}

/* Deletes the database file path with its -wal and -shm. */
static void remove_db_files(const char *path)
{
    static const char *const suffixes[] = {"", "-wal", "-shm", "-journal"};
    char p[4300];
    for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++)
        if (snprintf(p, sizeof p, "%s%s", path, suffixes[i]) < (int)sizeof p) unlink(p);
}

/* Rebuilds *rag's database into <db>.check-new, then swaps it in. */
static int rebuild(Rag **rag, RagCheckReport *r)
{
    Rag dst = {.use_fd = -1};
    char tmp[4200];
    if (snprintf(tmp, sizeof tmp, "%s.check-new", (*rag)->path) >= (int)sizeof tmp)
        return store_fail(*rag, KB_EIO, "%s: path too long", (*rag)->path);
    remove_db_files(tmp); /* left by a repair that was killed */
    dst.path = tmp;
    dst.dir = (*rag)->dir;
    int rc = store_create_file(&dst);
    if (rc == KB_OK) rc = rebuild_into(*rag, &dst, r);
    if (rc != KB_OK) store_fail(*rag, rc, "rebuilding the database failed: %s", dst.errmsg);
    sqlite3_close_v2(dst.db);
    if (rc == KB_OK) rc = swap_in(rag, tmp, r);
    else remove_db_files(tmp);
    r->rebuilt = rc == KB_OK;
    return rc;
}

int rag_check(Rag **rag, RagCheckReport *out)
{
    memset(out, 0, sizeof *out);
    int rc = find_problems(*rag, out);
    if (rc == KB_ENOMEM) return store_fail(*rag, rc, "out of memory");
    if (out->n_problems == 0 && !(*rag)->damaged) {
        (*rag)->healthy = 1;
        return KB_OK;
    }
    if ((*rag)->read_only) return store_read_only_fail(*rag);
    rc = store_use_exclusive(*rag); /* nobody else may write while the file is rebuilt and replaced */
    if (rc == KB_OK) rc = rebuild(rag, out);
    if (rc == KB_OK) rc = store_integrity_check(*rag);
    return rc;
}
