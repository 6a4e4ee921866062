/*
** cmd_kb.c: the `kbchat kb ...` commands, the command-line face of rag/.
**
** rag/ does the work and reports through return codes, rag_errmsg and a
** progress callback; everything printed is printed here. Results go to
** stdout, diagnostics and the live progress line to stderr. On a terminal
** `kb sync` redraws one progress line (files, pages, chunks, pages/s, ETA)
** and prints only failures above it; otherwise (a pipe, a log, a test) it
** prints one line per document, which is what a log needs.
**
** Test hook: KBCHAT_TEST_SYNC_DELAY_MS=N makes `kb sync` pause N ms after
** each document it commits, so a test can kill it half-way. It changes
** nothing else and is not meant for users.
**
** The embedding model is embedding.model of the configuration ("chat": the
** chat model of model.path); it is opened only for a knowledge base that
** has vectors (or for `kb rebuild`, which gives it some), so keyword-only
** knowledge bases never pay for loading a model.
*/
#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "app/cli.h"
#include "app/kb_ops.h"
#include "app/stop.h"
#include "app/term_text.h"
#include "engine/engine.h"
#include "rag/rag.h"

/* --- opening --- */

/* Loads the configuration and opens the knowledge-base database, printing
** any error. Returns an exit code; on success *rag must be closed. */
static int kb_open(const CliArgs *a, KbConfig *cfg, Rag **rag)
{
    *rag = NULL;
    if (cli_load_config(a, cfg) != KB_OK) return CLI_EXIT_FAIL;
    int rc = rag_open(rag, cfg->data_dir);
    if (rc != KB_OK) {
        cli_print_error(*rag ? rag_errmsg(*rag) : kb_strerror(rc));
        rag_close(*rag);
        *rag = NULL;
        return CLI_EXIT_FAIL;
    }
    return CLI_EXIT_OK;
}

static void kb_done(KbConfig *cfg, Rag *rag)
{
    rag_close(rag);
    config_free(cfg);
}

/* Prints "kbchat: MSG" with msg (which may quote names and input)
** escaped for the terminal; returns CLI_EXIT_FAIL. */
int cli_print_error(const char *msg)
{
    fputs("kbchat: ", stderr);
    term_fputs(stderr, msg, TERM_LINE);
    fputc('\n', stderr);
    return CLI_EXIT_FAIL;
}

/* cli_print_error of the message fmt makes (printf-style). */
int cli_print_errorf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    cli_print_error(msg);
    g_free(msg);
    return CLI_EXIT_FAIL;
}

/* Prints "kbchat: note: NOTE" escaped for the terminal. */
void cli_print_note(const char *note)
{
    fputs("kbchat: note: ", stderr);
    term_fputs(stderr, note, TERM_LINE);
    fputc('\n', stderr);
}

/* Prints rag's message for a failed call and returns the exit code. */
static int kb_fail(Rag *rag)
{
    return cli_print_error(rag_errmsg(rag));
}

static const char *embed_name(const char *model)
{
    return model[0] == '\0' || strcmp(model, "none") == 0 ? "none (keyword search only)" : model;
}

/* --- the embedding model --- */

int cli_open_embedder(const KbConfig *cfg, RagEmbedder **out)
{
    char err[1200];
    if (kbops_open_embedder(cfg->embedding_model, cfg->model_path, (int)cfg->threads, out, err, sizeof err) == KB_OK)
        return CLI_EXIT_OK;
    return cli_print_error(err);
}

/* Formats a Unix time as local "YYYY-MM-DD HH:MM", or "never" for 0. */
static const char *when(int64_t t, char *buf, size_t n)
{
    if (t == 0) return "never";
    time_t tt = (time_t)t;
    struct tm tm;
    localtime_r(&tt, &tm);
    strftime(buf, n, "%Y-%m-%d %H:%M", &tm);
    return buf;
}

/* --- create, add, remove, delete --- */

int cmd_kb_create(const CliArgs *a, const char *const *args, int n_args)
{
    (void)n_args;
    KbConfig cfg;
    Rag *rag;
    int code = kb_open(a, &cfg, &rag);
    if (code != CLI_EXIT_OK) {
        kb_done(&cfg, rag);
        return code;
    }
    RagEmbedId id;
    int has_model = 0;
    char err[1200];
    if (kbops_create(rag, &cfg, cfg.model_path, args[0], &id, &has_model, err, sizeof err) != KB_OK)
        code = cli_print_error(err);
    for (int i = 0; code == CLI_EXIT_OK && i < a->n_repeated; i++) {
        if (rag_kb_add(rag, args[0], a->repeated[i]) == KB_OK) continue;
        code = kb_fail(rag);
        rag_kb_delete(rag, args[0]); /* all or nothing: the name stays free for a corrected command */
    }
    if (code == CLI_EXIT_OK) {
        char desc[320];
        TermStrs t = {0};
        printf("created knowledge base '%s': chunks of %d characters, overlap %d, embedding model %s\n",
               term_line(&t, args[0]), (int)cfg.chunk_size, (int)cfg.chunk_overlap,
               term_line(&t, has_model ? rag_embed_id_describe(&id, desc, sizeof desc) : embed_name("")));
        for (int i = 0; i < a->n_repeated; i++) printf("  folder: %s\n", term_line(&t, a->repeated[i]));
        printf("%s 'kbchat kb sync %s' to index it.\n", a->n_repeated ? "Run" : "Add folders with 'kbchat kb add', then run",
               term_line(&t, args[0]));
        term_strs_clear(&t);
    }
    kb_done(&cfg, rag);
    return code;
}

int cmd_kb_add(const CliArgs *a, const char *const *args, int n_args)
{
    KbConfig cfg;
    Rag *rag;
    int code = kb_open(a, &cfg, &rag), added = 0;
    TermStrs t = {0};
    for (int i = 1; code != CLI_EXIT_USAGE && rag && i < n_args; i++) {
        if (rag_kb_add(rag, args[0], args[i]) == KB_OK) {
            printf("added %s\n", term_line(&t, args[i]));
            added++;
        } else {
            code = kb_fail(rag);
        }
    }
    if (added) printf("Run 'kbchat kb sync %s' to index %s.\n", term_line(&t, args[0]), added == 1 ? "it" : "them");
    term_strs_clear(&t);
    kb_done(&cfg, rag);
    return code;
}

int cmd_kb_remove(const CliArgs *a, const char *const *args, int n_args)
{
    (void)n_args;
    KbConfig cfg;
    Rag *rag;
    int code = kb_open(a, &cfg, &rag);
    int64_t n = 0;
    if (code == CLI_EXIT_OK && rag_kb_remove(rag, args[0], args[1], &n) != KB_OK) code = kb_fail(rag);
    TermStrs t = {0};
    if (code == CLI_EXIT_OK)
        printf("removed %s from '%s' (%lld document%s)\n", term_line(&t, args[1]), term_line(&t, args[0]), (long long)n,
               n == 1 ? "" : "s");
    term_strs_clear(&t);
    kb_done(&cfg, rag);
    return code;
}

/* Asks on the terminal; returns 1 for yes. */
static int confirm(const RagKbInfo *info)
{
    TermStrs t = {0};
    fprintf(stderr, "Delete knowledge base '%s' with %lld documents and %lld chunks? Your files are not touched. [y/N] ",
            term_line(&t, info->name), (long long)info->n_documents, (long long)info->n_chunks);
    term_strs_clear(&t);
    fflush(stderr);
    char line[32];
    if (fgets(line, sizeof line, stdin) == NULL) return 0;
    return line[0] == 'y' || line[0] == 'Y';
}

int cmd_kb_delete(const CliArgs *a, const char *const *args, int n_args)
{
    (void)n_args;
    int yes = cli_has(a, CLI_OPT_YES);
    if (!yes && !isatty(STDIN_FILENO)) {
        cli_print_errorf("kb delete: not asking without a terminal: pass --yes to delete '%s'", args[0]);
        return CLI_EXIT_USAGE;
    }
    KbConfig cfg;
    Rag *rag;
    RagKbInfo info = {0};
    int code = kb_open(a, &cfg, &rag);
    if (code == CLI_EXIT_OK && rag_kb_info(rag, args[0], &info) != KB_OK) code = kb_fail(rag);
    if (code == CLI_EXIT_OK && !yes && !confirm(&info)) {
        fprintf(stderr, "kbchat: not deleted\n");
        code = CLI_EXIT_FAIL;
    }
    if (code == CLI_EXIT_OK && rag_kb_delete(rag, args[0]) != KB_OK) code = kb_fail(rag);
    if (code == CLI_EXIT_OK) {
        fputs("deleted knowledge base '", stdout);
        term_fputs(stdout, args[0], TERM_LINE);
        fputs("'\n", stdout);
    }
    rag_kb_info_clear(&info);
    kb_done(&cfg, rag);
    return code;
}

/* --- list, status, files --- */

int cmd_kb_list(const CliArgs *a, const char *const *args, int n_args)
{
    (void)args, (void)n_args;
    KbConfig cfg;
    Rag *rag;
    RagKbInfo *list = NULL;
    int n = 0;
    int code = kb_open(a, &cfg, &rag);
    if (code == CLI_EXIT_OK && rag_kb_list(rag, &list, &n) != KB_OK) code = kb_fail(rag);
    if (code == CLI_EXIT_OK && n == 0) printf("no knowledge bases yet: 'kbchat kb create NAME --folder DIR' makes one\n");
    if (code == CLI_EXIT_OK && n > 0)
        printf("%-20s %9s %9s %9s %7s  %s\n", "NAME", "DOCUMENTS", "PAGES", "CHUNKS", "FAILED", "LAST SYNC");
    for (int i = 0; i < n; i++) {
        char buf[32];
        TermStrs t = {0};
        printf("%-20s %9lld %9lld %9lld %7lld  %s\n", term_line(&t, list[i].name), (long long)list[i].n_documents,
               (long long)list[i].n_pages, (long long)list[i].n_chunks, (long long)list[i].n_failed,
               when(list[i].last_sync, buf, sizeof buf));
        term_strs_clear(&t);
    }
    rag_kb_info_free_list(list, n);
    kb_done(&cfg, rag);
    return code;
}

/* Prints `kb status` of info with its failed documents; names, paths
** and messages escaped for the terminal. */
static void print_status(Rag *rag, const RagKbInfo *info, const RagFile *failed, int n_failed)
{
    char buf[32], desc[320];
    TermStrs t = {0};
    const char *name = term_line(&t, info->name);
    printf("knowledge base:  %s\n", name);
    for (int i = 0; i < info->n_sources; i++) printf("%-17s%s\n", i ? "" : "sources:", term_line(&t, info->sources[i]));
    if (info->n_sources == 0) printf("sources:         none ('kbchat kb add %s DIR' adds one)\n", name);
    for (int i = 0; i < info->n_excluded; i++)
        printf("%-17s%s\n", i ? "" : "excluded:", term_line(&t, info->excluded[i]));
    printf("documents:       %lld (%lld indexed, %lld failed)\n", (long long)info->n_documents,
           (long long)(info->n_documents - info->n_failed), (long long)info->n_failed);
    printf("pages:           %lld\n", (long long)info->n_pages);
    printf("chunks:          %lld (%d characters, overlap %d)\n", (long long)info->n_chunks, info->chunk_size,
           info->chunk_overlap);
    printf("embedding model: %s\n", term_line(&t, info->embed_id.file[0]
                                                       ? rag_embed_id_describe(&info->embed_id, desc, sizeof desc)
                                                       : embed_name("")));
    if (info->embed_id.file[0])
        printf("vectors:         %lld of %lld chunks (model file %s)\n", (long long)info->n_vectors,
               (long long)info->n_chunks, term_line(&t, info->embed_model));
    printf("last sync:       %s\n", when(info->last_sync, buf, sizeof buf));
    printf("database:        %s\n", term_line(&t, rag_db_path(rag)));
    if (n_failed) printf("failed documents:\n");
    for (int i = 0; i < n_failed; i++) printf("  %s: %s\n", term_line(&t, failed[i].path), term_line(&t, failed[i].error));
    term_strs_clear(&t);
}

int cmd_kb_status(const CliArgs *a, const char *const *args, int n_args)
{
    (void)n_args;
    KbConfig cfg;
    Rag *rag;
    RagKbInfo info = {0};
    RagFile *failed = NULL;
    int n_failed = 0;
    int code = kb_open(a, &cfg, &rag);
    if (code == CLI_EXIT_OK && rag_kb_info(rag, args[0], &info) != KB_OK) code = kb_fail(rag);
    if (code == CLI_EXIT_OK && rag_kb_files(rag, args[0], 1, &failed, &n_failed) != KB_OK) code = kb_fail(rag);
    if (code == CLI_EXIT_OK) print_status(rag, &info, failed, n_failed);
    rag_files_free(failed, n_failed);
    rag_kb_info_clear(&info);
    kb_done(&cfg, rag);
    return code;
}

int cmd_kb_files(const CliArgs *a, const char *const *args, int n_args)
{
    (void)n_args;
    KbConfig cfg;
    Rag *rag;
    RagFile *files = NULL;
    int n = 0;
    int code = kb_open(a, &cfg, &rag);
    if (code == CLI_EXIT_OK && rag_kb_files(rag, args[0], 0, &files, &n) != KB_OK) code = kb_fail(rag);
    TermStrs t = {0};
    const char *name = term_line(&t, args[0]);
    if (code == CLI_EXIT_OK && n == 0) printf("no documents in '%s' (run 'kbchat kb sync %s')\n", name, name);
    if (code == CLI_EXIT_OK && n > 0) printf("%-6s %6s %7s  %s\n", "STATUS", "PAGES", "CHUNKS", "PATH");
    for (int i = 0; i < n; i++) {
        const char *path = term_line(&t, files[i].path);
        if (files[i].failed) printf("%-6s %6s %7s  %s: %s\n", "failed", "-", "-", path, term_line(&t, files[i].error));
        else printf("%-6s %6d %7lld  %s\n", "ok", files[i].pages, (long long)files[i].chunks, path);
    }
    term_strs_clear(&t);
    rag_files_free(files, n);
    kb_done(&cfg, rag);
    return code;
}

/* --- sync --- */

/* How progress is shown for one `kb sync`. */
typedef struct SyncView {
    int tty;            /* stderr is a terminal: redraw one line */
    int line_shown;     /* a progress line is on screen */
    int planned;        /* the plan is known: totals can be shown */
    double last_draw;   /* elapsed time of the last redraw */
} SyncView;

/* Clears the progress line so a normal line can be printed. */
static void view_clear(SyncView *v)
{
    if (v->line_shown) fputs("\r\033[K", stderr);
    v->line_shown = 0;
}

static int term_width(void)
{
    struct winsize ws;
    return ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 20 ? ws.ws_col : 80;
}

/* Redraws "[3/40] 120 pages, 400 chunks, 85 pages/s, ETA 0:12  name.pdf"
** cut to the terminal's width (in bytes, which is safe for ASCII names and
** at worst short for others; never inside a UTF-8 character). */
static void view_draw(SyncView *v, const RagProgress *p)
{
    char line[512], eta[32] = "";
    TermStrs t = {0};
    if (p->eta >= 0) snprintf(eta, sizeof eta, ", ETA %d:%02d", (int)p->eta / 60, (int)p->eta % 60);
    const char *base = p->path ? strrchr(p->path, '/') : NULL;
    int n = snprintf(line, sizeof line, "%s: [%lld/%lld] %lld pages, %lld chunks, %.0f pages/s%s  %s", term_line(&t, p->kb),
                     (long long)p->files_done + (p->event == RAG_EV_DOC_START || p->event == RAG_EV_PAGE),
                     (long long)p->files_total,
                     (long long)p->pages_done, (long long)p->chunks_done, p->pages_per_s, eta,
                     term_line(&t, base ? base + 1 : ""));
    term_strs_clear(&t);
    int w = term_width() - 1;
    if (n >= (int)sizeof line) n = (int)sizeof line - 1;
    if (n > w) n = w;
    while (n > 0 && ((unsigned char)line[n] & 0xC0) == 0x80) n--; /* not half a character */
    line[n] = '\0';
    fprintf(stderr, "\r\033[K%s", line);
    fflush(stderr);
    v->line_shown = 1;
    v->last_draw = p->elapsed;
}

/* One line per finished document (on a terminal only failures, moves and
** removals: the progress line stands for the rest). */
static void print_doc(const RagProgress *p, FILE *out)
{
    TermStrs t = {0};
    const char *path = term_line(&t, p->path);
    switch (p->action) {
    case RAG_ACT_INDEXED:
    case RAG_ACT_UPDATED:
        fprintf(out, "%s %s (%d page%s, %lld chunk%s)\n", p->action == RAG_ACT_INDEXED ? "indexed" : "updated", path,
                p->doc_pages, p->doc_pages == 1 ? "" : "s", (long long)p->doc_chunks, p->doc_chunks == 1 ? "" : "s");
        break;
    case RAG_ACT_MOVED: fprintf(out, "moved %s -> %s\n", term_line(&t, p->old_path), path); break;
    case RAG_ACT_REMOVED: fprintf(out, "removed %s\n", path); break;
    case RAG_ACT_TOUCHED: fprintf(out, "unchanged content %s\n", path); break;
    case RAG_ACT_FAILED: fprintf(out, "failed %s: %s\n", path, term_line(&t, p->message)); break;
    }
    term_strs_clear(&t);
}

/* Draws "KB: embedding 120/400 chunks" over the progress line. */
static void view_draw_embedding(SyncView *v, const RagProgress *p)
{
    TermStrs t = {0};
    fprintf(stderr, "\r\033[K%s: embedding %lld/%lld chunks", term_line(&t, p->kb), (long long)p->vectors_done,
            (long long)p->vectors_total);
    fflush(stderr);
    term_strs_clear(&t);
    v->line_shown = 1;
    v->last_draw = p->elapsed;
}

static void on_progress(const RagProgress *p, void *user)
{
    SyncView *v = user;
    TermStrs t = {0};
    if (p->event == RAG_EV_WARNING) {
        view_clear(v);
        if (p->path) fprintf(stderr, "kbchat: warning: %s: %s\n", term_line(&t, p->path), term_line(&t, p->message));
        else fprintf(stderr, "kbchat: warning: %s\n", term_line(&t, p->message));
        term_strs_clear(&t);
    } else if (p->event == RAG_EV_DOC_DONE &&
               (!v->tty || (p->action != RAG_ACT_INDEXED && p->action != RAG_ACT_UPDATED && p->action != RAG_ACT_TOUCHED))) {
        view_clear(v);
        print_doc(p, stdout);
        fflush(stdout);
    }
    if (p->event == RAG_EV_EMBED && v->tty && p->elapsed - v->last_draw >= 0.1) {
        view_draw_embedding(v, p);
        return;
    }
    v->planned |= p->event == RAG_EV_PLAN;
    if (v->tty && v->planned && (p->event == RAG_EV_DOC_START || p->elapsed - v->last_draw >= 0.1)) view_draw(v, p);
}

static void print_stats(const char *name, const RagSyncStats *s)
{
    term_fputs(stdout, name, TERM_LINE);
    printf(": %lld indexed, %lld updated, %lld moved, %lld removed, %lld failed, %lld unchanged; "
           "%lld pages, %lld chunks in %.1f s",
           (long long)s->indexed, (long long)s->updated, (long long)s->moved, (long long)s->removed,
           (long long)s->failed, (long long)(s->unchanged + s->touched), (long long)s->pages, (long long)s->chunks,
           s->seconds);
    if (s->pages > 0 && s->seconds > 0) printf(" (%.0f pages/s)", (double)s->pages / s->seconds);
    if (s->vectors > 0) printf("; %lld chunks embedded", (long long)s->vectors);
    putchar('\n');
}

/* Opens the configured embedding model once, when a knowledge base with
** vectors needs it (*tried remembers a failure, so --all reports it once).
** Returns an exit code. */
static int embedder_for(const KbConfig *cfg, Rag *rag, const char *name, RagEmbedder **e, int *tried)
{
    char err[1200];
    if (*e || *tried) return CLI_EXIT_OK;
    int rc = kbops_embedder_for(rag, name, cfg->embedding_model, cfg->model_path, (int)cfg->threads, e, err, sizeof err);
    *tried = *e != NULL || rc != KB_OK;
    if (rc == KB_OK) return CLI_EXIT_OK;
    return cli_print_error(err);
}

/* Syncs one knowledge base, showing progress. SIGINT, SIGTERM and SIGHUP
** stop it cleanly (the document being read is dropped, what was committed
** stays) and give the exit status 128 + the signal's number.
** Returns an exit code. */
static int sync_one(const KbConfig *cfg, Rag *rag, const char *name, RagEmbedder *e)
{
    SyncView v = {isatty(STDERR_FILENO), 0, 0, -1};
    RagSyncOptions opt = {.progress = on_progress, .user = &v, .delay_ms = kbops_test_delay_ms(), .embedder = e,
                          .cancel = stop_sigint_flag()};
    RagSyncStats stats;
    kbops_sync_budget(cfg, &opt);
    if (stop_catch_quit() != 0) perror("kbchat: kb sync: a signal will not stop it cleanly: sigaction");
    int rc = rag_sync(rag, name, &opt, &stats);
    int sig = atomic_load(stop_sigint_flag());
    stop_release_quit();
    view_clear(&v);
    if (rc != KB_OK) return kb_fail(rag);
    print_stats(name, &stats);
    if (sig == 0) return CLI_EXIT_OK;
    cli_print_errorf("kb sync %s: stopped by signal %d (%s); the documents indexed so far are kept, "
                     "run the sync again to finish", name, sig, strsignal(sig));
    return 128 + sig;
}

int cmd_kb_sync(const CliArgs *a, const char *const *args, int n_args)
{
    int all = cli_has(a, CLI_OPT_ALL);
    if (all == (n_args == 1)) {
        fprintf(stderr, "kbchat: kb sync: name one knowledge base or pass --all\n"
                        "usage: kbchat [--config FILE] kb sync NAME|--all\n");
        return CLI_EXIT_USAGE;
    }
    KbConfig cfg;
    Rag *rag;
    RagKbInfo *list = NULL;
    RagEmbedder *e = NULL;
    int n = 0, tried = 0;
    int code = kb_open(a, &cfg, &rag);
    if (code == CLI_EXIT_OK && !all) code = embedder_for(&cfg, rag, args[0], &e, &tried);
    if (code == CLI_EXIT_OK && !all) code = sync_one(&cfg, rag, args[0], e);
    if (code == CLI_EXIT_OK && all && rag_kb_list(rag, &list, &n) != KB_OK) code = kb_fail(rag);
    if (code == CLI_EXIT_OK && all && n == 0) printf("no knowledge bases to sync\n");
    for (int i = 0; i < n && code < 128; i++) { /* 128 + signal: stopped by a signal */
        int c = embedder_for(&cfg, rag, list[i].name, &e, &tried);
        if (c == CLI_EXIT_OK) c = sync_one(&cfg, rag, list[i].name, e);
        if (c != CLI_EXIT_OK) code = c;
    }
    rag_kb_info_free_list(list, n);
    rag_embedder_close(e);
    kb_done(&cfg, rag);
    return code;
}

int cmd_kb_rebuild(const CliArgs *a, const char *const *args, int n_args)
{
    (void)n_args;
    KbConfig cfg;
    Rag *rag;
    RagEmbedder *e = NULL;
    RagSyncStats st;
    SyncView v = {isatty(STDERR_FILENO), 0, 1, -1};
    int code = kb_open(a, &cfg, &rag);
    if (code == CLI_EXIT_OK) code = cli_open_embedder(&cfg, &e);
    RagSyncOptions opt = {.progress = on_progress, .user = &v, .embedder = e};
    if (code == CLI_EXIT_OK && rag_kb_rebuild(rag, args[0], &opt, &st) != KB_OK) code = kb_fail(rag);
    view_clear(&v);
    char desc[320];
    TermStrs t = {0};
    if (code == CLI_EXIT_OK && e == NULL)
        printf("%s: vectors dropped (no embedding model is configured): keyword search only\n", term_line(&t, args[0]));
    else if (code == CLI_EXIT_OK)
        printf("%s: pinned to %s; %lld chunks embedded in %.1f s (%.1f chunks/s)\n", term_line(&t, args[0]),
               term_line(&t, rag_embed_id_describe(rag_embedder_id(e), desc, sizeof desc)), (long long)st.vectors,
               st.seconds, st.seconds > 0 ? (double)st.vectors / st.seconds : 0.0);
    term_strs_clear(&t);
    rag_embedder_close(e);
    kb_done(&cfg, rag);
    return code;
}

/* --- check --- */

/* Prints what rag_check found and did (names and paths escaped). */
static void print_check(const char *db, const RagCheckReport *r)
{
    if (r->n_problems == 0 && !r->rebuilt) return;
    TermStrs t = {0};
    printf("%s: %d problem%s found:\n", term_line(&t, db), r->n_problems, r->n_problems == 1 ? "" : "s");
    for (int i = 0; i < r->n_problems; i++) printf("  %s\n", term_line(&t, r->problems[i]));
    if (r->rebuilt)
        printf("rebuilt the database from every row that could still be read (%lld unreadable stretch%s skipped, "
               "%lld row%s without their parent dropped);\nthe damaged file is kept as %s (delete it once you "
               "are satisfied)\n",
               (long long)r->skipped, r->skipped == 1 ? "" : "es", (long long)r->orphans, r->orphans == 1 ? "" : "s",
               term_line(&t, r->kept));
    for (int i = 0; i < r->n_docs; i++)
        printf("  damaged document of '%s', to be indexed again: %s\n", term_line(&t, r->docs[i].kb),
               term_line(&t, r->docs[i].path));
    term_strs_clear(&t);
}

/* Re-indexes the knowledge bases with damaged documents (only `only`
** when it is not NULL); the others are named with the command that does
** it. Returns an exit code. */
static int reindex_damaged(const KbConfig *cfg, Rag *rag, const RagCheckReport *r, const char *only)
{
    RagEmbedder *e = NULL;
    int code = CLI_EXIT_OK, tried = 0;
    for (int i = 0; i < r->n_docs; i++) {
        if (i > 0 && strcmp(r->docs[i].kb, r->docs[i - 1].kb) == 0) continue; /* sorted by knowledge base */
        const char *kb = r->docs[i].kb;
        if (only && strcmp(kb, only) != 0) {
            TermStrs t = {0};
            printf("run 'kbchat kb sync %s' to index its damaged documents again\n", term_line(&t, kb));
            term_strs_clear(&t);
            continue;
        }
        rag_embedder_close(e);
        e = NULL;
        tried = 0;
        int c = embedder_for(cfg, rag, kb, &e, &tried);
        if (c == CLI_EXIT_OK) c = sync_one(cfg, rag, kb, e);
        if (c != CLI_EXIT_OK) code = c;
    }
    rag_embedder_close(e);
    return code;
}

int cmd_kb_check(const CliArgs *a, const char *const *args, int n_args)
{
    KbConfig cfg;
    Rag *rag = NULL;
    RagCheckReport rep = {0};
    const char *only = n_args > 0 ? args[0] : NULL;
    int code = cli_load_config(a, &cfg) == KB_OK ? CLI_EXIT_OK : CLI_EXIT_FAIL;
    if (code != CLI_EXIT_OK) return code;
    int rc = rag_open_mode(&rag, cfg.data_dir, RAG_OPEN_DAMAGED);
    if (rc != KB_OK) {
        cli_print_error(rag ? rag_errmsg(rag) : kb_strerror(rc));
        kb_done(&cfg, rag);
        return CLI_EXIT_FAIL;
    }
    rc = rag_check(&rag, &rep);
    print_check(rag ? rag_db_path(rag) : cfg.data_dir, &rep);
    if (rc != KB_OK) code = rag ? kb_fail(rag) : CLI_EXIT_FAIL;
    RagKbInfo info = {0};
    if (code == CLI_EXIT_OK && only && rag_kb_info(rag, only, &info) != KB_OK) code = kb_fail(rag);
    rag_kb_info_clear(&info);
    if (code == CLI_EXIT_OK) code = reindex_damaged(&cfg, rag, &rep, only);
    if (code == CLI_EXIT_OK) {
        TermStrs t = {0};
        printf("%s: ok\n", term_line(&t, rag_db_path(rag)));
        term_strs_clear(&t);
    }
    rag_check_report_clear(&rep);
    kb_done(&cfg, rag);
    return code;
}

/* --- search --- */

/* A retriever's rank as JSON: null when it did not find the passage. */
static void json_rank(FILE *out, const char *key, int rank)
{
    if (rank > 0) fprintf(out, ", \"%s\": %d", key, rank);
    else fprintf(out, ", \"%s\": null", key);
}

void cli_print_hits_json(FILE *out, const RagHit *h, int n, int ranks)
{
    fputs("[", out);
    for (int i = 0; i < n; i++) {
        fprintf(out, "%s\n  {\"rank\": %d, \"score\": %.6g, ", i ? "," : "", h[i].rank, h[i].score);
        json_put_member(out, "file", h[i].file);
        if (h[i].page > 0) fprintf(out, ", \"page\": %d", h[i].page);
        else fputs(", \"page\": null", out);
        fprintf(out, ", \"chunk_id\": %lld, ", (long long)h[i].chunk_id);
        json_put_member(out, "section", h[i].section);
        if (ranks) {
            json_rank(out, "bm25_rank", h[i].bm25_rank);
            json_rank(out, "vector_rank", h[i].vector_rank);
            fprintf(out, ", \"relevance\": %.4f", h[i].relevance);
        }
        fputs(", ", out);
        json_put_member(out, "text", h[i].text);
        fputc('}', out);
    }
    fputs(n ? "\n]\n" : "]\n", out);
}

void cli_print_passage(FILE *out, const char *text)
{
    TermStrs t = {0};
    fputs("    ", out);
    for (const char *p = term_text(&t, text); *p; p++) fputs(*p == '\n' ? "\n    " : (char[2]){*p, 0}, out);
    fputs("\n\n", out);
    term_strs_clear(&t);
}

static void print_hits_text(const RagHit *h, int n, int ranks)
{
    for (int i = 0; i < n; i++) {
        TermStrs t = {0};
        printf("[%d] %s", h[i].rank, term_line(&t, h[i].file));
        if (h[i].page > 0) printf(", page %d", h[i].page);
        if (h[i].section[0]) printf(", %s", term_line(&t, h[i].section));
        term_strs_clear(&t);
        printf("  (score %.4g, chunk %lld", h[i].score, (long long)h[i].chunk_id);
        if (ranks && h[i].bm25_rank) printf(", keyword #%d", h[i].bm25_rank);
        if (ranks && h[i].vector_rank) printf(", vector #%d", h[i].vector_rank);
        printf(")\n");
        cli_print_passage(stdout, h[i].text);
    }
}

/* Parses --top-k or takes the configured retrieval.top_k. */
int cli_top_k(const CliArgs *a, const KbConfig *cfg, int *k)
{
    *k = (int)cfg->retrieval_top_k;
    if (!cli_has(a, CLI_OPT_TOP_K)) return 0;
    char *end;
    errno = 0;
    long v = strtol(a->value[CLI_OPT_TOP_K], &end, 10);
    if (errno || *end || v < 1 || v > 1000) {
        cli_print_errorf("--top-k: expected a number 1..1000, got '%s'", a->value[CLI_OPT_TOP_K]);
        return CLI_EXIT_USAGE;
    }
    *k = (int)v;
    return 0;
}

/* Joins the query words with spaces (the shell split them). */
char *cli_join_words(const char *const *w, int n)
{
    size_t len = 1;
    for (int i = 0; i < n; i++) len += strlen(w[i]) + 1;
    char *q = malloc(len);
    if (q == NULL) return NULL;
    q[0] = '\0';
    for (int i = 0; i < n; i++) {
        if (i) strcat(q, " ");
        strcat(q, w[i]);
    }
    return q;
}

/* Parses --mode (default: words). Returns 0 or the usage exit code. */
static int mode_of(const CliArgs *a, RagMode *mode)
{
    *mode = RAG_MODE_WORDS;
    if (!cli_has(a, CLI_OPT_MODE) || rag_mode_parse(a->value[CLI_OPT_MODE], mode) == 0) return 0;
    cli_print_errorf("--mode: expected words, keyword, vector or hybrid, got '%s'", a->value[CLI_OPT_MODE]);
    return CLI_EXIT_USAGE;
}

/* Keyword, vector or hybrid search with the configured embedding model. */
static int search_retrieve(const KbConfig *cfg, Rag *rag, const char *name, RagQuery *q, RagHit **hits, int *n)
{
    RagEmbedder *e = NULL;
    RagSearchInfo info;
    int code = q->mode == RAG_MODE_KEYWORD ? CLI_EXIT_OK : embedder_for(cfg, rag, name, &e, &(int){0});
    q->embedder = e;
    if (code == CLI_EXIT_OK && rag_retrieve(rag, name, q, hits, n, &info) != KB_OK) code = kb_fail(rag);
    if (code == CLI_EXIT_OK && info.note[0]) cli_print_note(info.note);
    rag_embedder_close(e);
    return code;
}

int cmd_kb_search(const CliArgs *a, const char *const *args, int n_args)
{
    KbConfig cfg;
    Rag *rag;
    RagHit *hits = NULL;
    RagMode mode;
    int n = 0, k = 0;
    int code = mode_of(a, &mode);
    if (code != CLI_EXIT_OK) return code;
    code = kb_open(a, &cfg, &rag);
    if (code == CLI_EXIT_OK) code = cli_top_k(a, &cfg, &k);
    char *query = code == CLI_EXIT_OK ? cli_join_words(args + 1, n_args - 1) : NULL;
    if (code == CLI_EXIT_OK && query == NULL) {
        fputs("kbchat: out of memory\n", stderr);
        code = CLI_EXIT_FAIL;
    }
    RagQuery q = {query, mode, k, cfg.score_threshold, 1, NULL};
    if (code == CLI_EXIT_OK && mode == RAG_MODE_WORDS && rag_search(rag, args[0], query, k, &hits, &n) != KB_OK)
        code = kb_fail(rag);
    else if (code == CLI_EXIT_OK && mode != RAG_MODE_WORDS) code = search_retrieve(&cfg, rag, args[0], &q, &hits, &n);
    if (code == CLI_EXIT_OK && cli_has(a, CLI_OPT_JSON)) cli_print_hits_json(stdout, hits, n, mode != RAG_MODE_WORDS);
    else if (code == CLI_EXIT_OK && n == 0) {
        TermStrs t = {0};
        printf("no passage of '%s' matches: %s\n", term_line(&t, args[0]), term_line(&t, query));
        term_strs_clear(&t);
    }
    else if (code == CLI_EXIT_OK) print_hits_text(hits, n, mode != RAG_MODE_WORDS);
    rag_hits_free(hits, n);
    free(query);
    kb_done(&cfg, rag);
    return code;
}
