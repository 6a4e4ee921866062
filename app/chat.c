/*
** chat.c: what every chat front end shares (see conversation.h): the model,
** the database, one Conversation, and the slash commands.
**
** Commands are rows of one table (name, arguments, help, handler), so /help
** and the "did you mean" suggestion for a mistyped command come from the
** same list. A handler never prints: its results and problems go to the
** front end as events (ChatEvent, chat.h), which the line mode prints
** (chat_event_print) and the full-screen chat shows in its widgets.
** The database is opened on first need: a chat that stores nothing and
** searches nothing writes nothing to data_dir.
*/
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <glib.h>

#include "app/app.h"
#include "app/chat_app.h"
#include "app/term_text.h"
#include "app/stop.h"

/* --- state --- */

int chat_fail(ChatApp *app, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(app->errmsg, sizeof app->errmsg, fmt, ap);
    va_end(ap);
    return rc;
}

int chat_open(KbConfig *cfg, ChatApp **out)
{
    ChatApp *app = calloc(1, sizeof *app);
    *out = NULL;
    if (app == NULL) return KB_ENOMEM;
    app->cfg = cfg;
    if (conv_new(cfg, &app->conv) != KB_OK) {
        free(app);
        return KB_ENOMEM;
    }
    *out = app;
    return KB_OK;
}

void chat_close(ChatApp *app)
{
    if (app == NULL) return;
    chat_sync_stop(app); /* a background sync ends (between documents) before kbchat does */
    conv_free(app->conv);
    rag_embedder_close(app->emb);
    model_close(app->model);
    rag_close(app->rag);
    rag_session_free_list(app->listed, app->n_listed);
    free(app->model_path);
    free(app);
}

const char *chat_errmsg(const ChatApp *app) { return app->errmsg; }
const char *chat_note(const ChatApp *app) { return app->note; }
Conversation *chat_conversation(ChatApp *app) { return app->conv; }
KbModel *chat_model(ChatApp *app) { return app->model; }

void chat_status(ChatApp *app, ChatStatus *st)
{
    memset(st, 0, sizeof *st);
    st->model = app->model_path ? app->model_path : "";
    st->arch = app->model ? model_arch_name(app->model) : "";
    st->template_name = app->model ? template_name(conv_template(app->conv)) : "";
    st->kb = conv_kb(app->conv);
    st->n_ctx = app->model ? (long long)model_n_ctx(app->model) : 0;
    st->n_past = app->model ? (long long)model_n_past(app->model) : 0;
    st->n_turns = conv_n_turns(app->conv);
}

/* Opens the database when it is not open yet (chat_app.h). */
int chat_rag(ChatApp *app)
{
    if (app->rag) return KB_OK;
    int rc = rag_open(&app->rag, app->cfg->data_dir);
    if (rc != KB_OK) {
        chat_fail(app, rc, "%s", rag_errmsg(app->rag));
        rag_close(app->rag);
        app->rag = NULL;
        return rc;
    }
    conv_set_store(app->conv, app->rag);
    return KB_OK;
}

/* Opens the embedding model of the knowledge base in use when it has
** vectors: embedding.model, or the chat model itself for "chat" (whose
** embeddings reuse its KV cache, so each question then recomputes the
** conversation). Without one the search is keyword only and app->note
** says why. */
static void chat_refresh_embedder(ChatApp *app)
{
    RagKbInfo info;
    char err[1024] = "";
    const char *kb = conv_kb(app->conv), *spec = app->cfg->embedding_model;
    conv_set_embedder(app->conv, NULL);
    rag_embedder_close(app->emb);
    app->emb = NULL;
    app->note[0] = '\0';
    if (!kb[0] || app->rag == NULL || rag_kb_info(app->rag, kb, &info) != KB_OK) return;
    int pinned = info.embed_id.file[0] != '\0', rc = KB_ENOTFOUND;
    rag_kb_info_clear(&info);
    if (!pinned) return; /* a keyword-only knowledge base */
    if (strcmp(spec, "chat") == 0 && app->model)
        rc = rag_embedder_wrap(app->model, app->model_path, &app->emb, err, sizeof err);
    else if (strcmp(spec, "chat") == 0) snprintf(err, sizeof err, "no chat model is loaded");
    else if (spec[0] && strcmp(spec, "none") != 0)
        rc = rag_embedder_open(spec, (int)app->cfg->threads, &app->emb, err, sizeof err);
    else snprintf(err, sizeof err, "embedding.model is not set");
    if (rc == KB_OK) conv_set_embedder(app->conv, app->emb);
    else snprintf(app->note, sizeof app->note, "keyword search only: %s", err);
}

int chat_load_model(ChatApp *app, const char *path)
{
    KbModelParams p = {0, app->cfg->context_size, (int)app->cfg->threads, 0};
    KbModel *m = NULL;
    char err[1024], *copy = strdup(path);
    if (copy == NULL) return chat_fail(app, KB_ENOMEM, "out of memory");
    int rc = model_open(path, &p, &m, err, sizeof err);
    if (rc == KB_OK && model_is_encoder(m)) rc = KB_EUNSUPPORTED, snprintf(err, sizeof err, "an embedding model cannot chat");
    if (rc != KB_OK) {
        model_close(m);
        free(copy);
        return chat_fail(app, rc, "%s: %s", path, err);
    }
    rc = conv_set_model(app->conv, m, path);
    if (rc != KB_OK) {
        conv_set_model(app->conv, app->model, app->model_path);
        model_close(m);
        free(copy);
        return chat_fail(app, rc, "%s", conv_errmsg(app->conv));
    }
    conv_set_embedder(app->conv, NULL);
    rag_embedder_close(app->emb); /* it may wrap the old model */
    app->emb = NULL;
    model_close(app->model);
    free(app->model_path);
    app->model = m;
    app->model_path = copy;
    stop_watch(m, app->cancel);
    chat_refresh_embedder(app);
    return KB_OK;
}

void chat_set_cancel(ChatApp *app, atomic_int *flag)
{
    app->cancel = flag;
    stop_watch(app->model, flag);
}

int chat_list_kbs(ChatApp *app, RagKbInfo **list, int *n)
{
    *list = NULL;
    *n = 0;
    int rc = chat_rag(app);
    if (rc == KB_OK && (rc = rag_kb_list(app->rag, list, n)) != KB_OK) chat_fail(app, rc, "%s", rag_errmsg(app->rag));
    return rc;
}

void chat_free_kbs(RagKbInfo *list, int n)
{
    rag_kb_info_free_list(list, n);
}

int chat_list_sessions(ChatApp *app, const RagSession **list, int *n)
{
    *list = NULL;
    *n = 0;
    rag_session_free_list(app->listed, app->n_listed);
    app->listed = NULL;
    app->n_listed = 0;
    int rc = chat_rag(app);
    if (rc == KB_OK && (rc = rag_session_list(app->rag, &app->listed, &app->n_listed)) != KB_OK)
        chat_fail(app, rc, "%s", rag_errmsg(app->rag));
    *list = app->listed;
    *n = app->n_listed;
    return rc;
}

int chat_resume_last(ChatApp *app)
{
    RagSession *list = NULL;
    int n = 0, rc = chat_rag(app);
    if (rc != KB_OK) return rc;
    rc = rag_session_list(app->rag, &list, &n);
    if (rc != KB_OK) return chat_fail(app, rc, "%s", rag_errmsg(app->rag));
    if (n == 0) rc = KB_ENOTFOUND;
    else if ((rc = conv_open_session(app->conv, list[0].id, NULL)) != KB_OK)
        chat_fail(app, rc, "%s", conv_errmsg(app->conv));
    else chat_refresh_embedder(app);
    rag_session_free_list(list, n);
    return rc;
}

int chat_use_kb(ChatApp *app, const char *name)
{
    int rc = name && name[0] ? chat_rag(app) : KB_OK;
    if (rc != KB_OK) return rc;
    rc = conv_set_kb(app->conv, name);
    if (rc != KB_OK) return chat_fail(app, rc, "%s", conv_errmsg(app->conv));
    chat_refresh_embedder(app);
    return KB_OK;
}

/* --- events (chat.h) --- */

void chat_event_print(const ChatEvent *ev, FILE *out, FILE *err)
{
    switch (ev->kind) {
    case CHAT_EV_ANSWER_PIECE:
    case CHAT_EV_OUTPUT:
    case CHAT_EV_SOURCES: fwrite(ev->text, 1, ev->len, out); break;
    case CHAT_EV_STOPPED: fputs(" [stopped]", out); break;
    case CHAT_EV_ANSWER_DONE: fputc('\n', out); break;
    case CHAT_EV_NOTE: fprintf(err, "kbchat: note: %.*s\n", (int)ev->len, ev->text); break;
    case CHAT_EV_ERROR: fprintf(err, "kbchat: %.*s\n", (int)ev->len, ev->text); break;
    default: break; /* the others change what a screen shows, not what a line mode prints */
    }
}

/* Sends an event of kind with text[0..len); returns the front end's answer. */
static int emit_text(const ChatIO *io, ChatEventKind kind, const char *text, size_t len)
{
    ChatEvent ev = {kind, text, len};
    return io->on_event(io->user, &ev);
}

/* Sends an event of kind without text. */
static void emit(const ChatIO *io, ChatEventKind kind)
{
    emit_text(io, kind, "", 0);
}

/* Sends an event of kind whose text is printf-style (already escaped:
** arguments from outside go through term_line first). */
static void emitf(const ChatIO *io, ChatEventKind kind, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
__attribute__((format(printf, 3, 4))) static void emitf(const ChatIO *io, ChatEventKind kind, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *text = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    emit_text(io, kind, text, strlen(text));
    g_free(text);
}

/* Reports a failure or notice: an event of kind (ERROR or NOTE) reading
** "what: msg" (or msg), msg escaped as one line. */
static void report(const ChatIO *io, ChatEventKind kind, const char *what, const char *msg)
{
    GString *g = g_string_new(what ? what : "");
    if (what) g_string_append(g, ": ");
    term_escape_append(g, msg, strlen(msg), TERM_LINE);
    emit_text(io, kind, g->str, g->len);
    g_string_free(g, TRUE);
}

/* Appends the sources of turn t to g: one line each, or with the passages. */
static void format_sources(const RagTurn *t, int with_text, GString *g)
{
    int searched = t->query && t->query[0];
    int rewritten = searched && strcmp(t->query, t->question) != 0;
    TermStrs ts = {0};
    if (!searched && t->n_sources == 0) return;
    if (t->n_sources == 0) {
        g_string_append_printf(g, "Sources: nothing found for \"%s\"\n", term_line(&ts, t->query));
        term_strs_clear(&ts);
        return;
    }
    g_string_append(g, "Sources");
    if (rewritten) g_string_append_printf(g, " (searched for \"%s\")", term_line(&ts, t->query));
    g_string_append(g, ":\n");
    for (int i = 0; i < t->n_sources; i++) {
        const RagHit *h = &t->sources[i];
        char *name = with_text ? g_strdup(h->file) : g_path_get_basename(h->file);
        g_string_append_printf(g, "  [%d] %s", i + 1, term_line(&ts, name));
        if (h->page > 0) g_string_append_printf(g, ", page %d", h->page);
        if (h->section && h->section[0]) g_string_append_printf(g, ", %s", term_line(&ts, h->section));
        g_string_append_c(g, '\n');
        for (const char *p = with_text ? term_text(&ts, h->text) : ""; *p;) {
            size_t n = strcspn(p, "\n");
            g_string_append_printf(g, "      %.*s\n", (int)n, p);
            p += n + (p[n] == '\n');
        }
        g_free(name);
        term_strs_clear(&ts);
    }
}

/* Sends the sources of turn t as one event of kind (SOURCES after an
** answer, OUTPUT for /sources). */
static void emit_sources(const ChatIO *io, ChatEventKind kind, const RagTurn *t, int with_text)
{
    GString *g = g_string_new(NULL);
    format_sources(t, with_text, g);
    if (g->len) emit_text(io, kind, g->str, g->len);
    g_string_free(g, TRUE);
}

/* The answer's pieces on their way to the front end: escaped (unless raw)
** with a character cut between two pieces held for the next. */
typedef struct AnswerStream {
    const ChatIO *io;
    TermStream term;
    GString *buf;
} AnswerStream;

/* KbPieceFn: escapes piece and passes it on; returns the front end's answer
** (nonzero: stop). */
static int answer_piece(void *user, const char *piece, size_t len)
{
    AnswerStream *a = user;
    g_string_truncate(a->buf, 0);
    term_stream_put(&a->term, piece, len, a->buf);
    return emit_text(a->io, CHAT_EV_ANSWER_PIECE, a->buf->str, a->buf->len);
}

/* Passes on what the stream still holds (the answer has ended). */
static void answer_stream_end(AnswerStream *a)
{
    g_string_truncate(a->buf, 0);
    term_stream_end(&a->term, a->buf);
    if (a->buf->len) emit_text(a->io, CHAT_EV_ANSWER_PIECE, a->buf->str, a->buf->len);
    g_string_free(a->buf, TRUE);
}

/* Answers question (NULL: the last one again), then gives the sources. */
static void answer(ChatApp *app, const char *question, const ChatIO *io)
{
    ConvStats st;
    Conversation *c = app->conv;
    if (app->rag == NULL && chat_rag(app) != KB_OK) report(io, CHAT_EV_ERROR, "sessions are not saved", app->errmsg);
    AnswerStream as = {io, {.raw = io->raw}, g_string_new(NULL)};
    int rc = question ? conv_ask(c, question, answer_piece, &as, &st) : conv_retry(c, answer_piece, &as, &st);
    answer_stream_end(&as);
    if (rc == KB_ECANCELLED) { /* stopped before the answer began (the chat model embedding the question) */
        emit(io, CHAT_EV_STOPPED);
        emit(io, CHAT_EV_ANSWER_DONE);
        return;
    }
    if (rc != KB_OK) {
        report(io, CHAT_EV_ERROR, NULL, conv_errmsg(c));
        return;
    }
    if (st.gen.stop_reason == KB_STOP_CANCEL) emit(io, CHAT_EV_STOPPED);
    emit(io, CHAT_EV_ANSWER_DONE);
    if (st.gen.stop_reason == KB_STOP_LENGTH)
        emitf(io, CHAT_EV_NOTE, "the answer was cut at sampling.max_tokens (%lld)", (long long)app->cfg->max_tokens);
    else if (st.gen.stop_reason == KB_STOP_CONTEXT)
        emitf(io, CHAT_EV_NOTE, "the answer was cut: the context of %zu tokens is full", st.n_ctx);
    emit_sources(io, CHAT_EV_SOURCES, conv_turn(c, conv_n_turns(c) - 1), 0);
    if (st.save_rc != KB_OK) report(io, CHAT_EV_ERROR, NULL, conv_errmsg(c));
    else if (conv_session(c) != 0) emit(io, CHAT_EV_SESSION_CHANGED);
}

/* --- commands --- */

typedef struct ChatCommand {
    const char *name;   /* without the slash */
    const char *args;   /* for /help */
    const char *help;
    int (*run)(ChatApp *app, const char *arg, const ChatIO *io);
} ChatCommand;

static int run_help(ChatApp *app, const char *arg, const ChatIO *io);

static int run_quit(ChatApp *app, const char *arg, const ChatIO *io)
{
    (void)app, (void)arg, (void)io;
    return CHAT_QUIT;
}

static int run_new(ChatApp *app, const char *arg, const ChatIO *io)
{
    (void)arg;
    conv_reset(app->conv);
    emit(io, CHAT_EV_CONVERSATION_REPLACED);
    emitf(io, CHAT_EV_OUTPUT, "New conversation.\n");
    return CHAT_CONTINUE;
}

/* Lists the knowledge bases (for /kb without a name). */
static void list_kbs(ChatApp *app, const ChatIO *io)
{
    RagKbInfo *list = NULL;
    int n = 0;
    if (chat_rag(app) != KB_OK || rag_kb_list(app->rag, &list, &n) != KB_OK) {
        report(io, CHAT_EV_ERROR, NULL, app->rag ? rag_errmsg(app->rag) : app->errmsg);
        return;
    }
    const char *cur = conv_kb(app->conv);
    TermStrs t = {0};
    GString *g = g_string_new(NULL);
    g_string_append_printf(g, "Knowledge base: %s\n", cur[0] ? term_line(&t, cur) : "none");
    for (int i = 0; i < n; i++)
        g_string_append_printf(g, "  %s %s (%lld documents)\n", strcmp(list[i].name, cur) ? " " : "*",
                               term_line(&t, list[i].name), (long long)list[i].n_documents);
    term_strs_clear(&t);
    if (n == 0) g_string_append(g, "  (none: create one with 'kbchat kb create NAME --folder DIR')\n");
    emit_text(io, CHAT_EV_OUTPUT, g->str, g->len);
    g_string_free(g, TRUE);
    rag_kb_info_free_list(list, n);
}

static int run_kb(ChatApp *app, const char *arg, const ChatIO *io)
{
    if (arg[0] == '\0') {
        list_kbs(app, io);
        return CHAT_CONTINUE;
    }
    int off = strcmp(arg, "off") == 0;
    TermStrs t = {0};
    if (chat_use_kb(app, off ? NULL : arg) != KB_OK) report(io, CHAT_EV_ERROR, NULL, app->errmsg);
    else if (off) emitf(io, CHAT_EV_OUTPUT, "Knowledge base off: questions go to the model alone.\n");
    else emitf(io, CHAT_EV_OUTPUT, "Searching knowledge base %s.\n", term_line(&t, arg));
    term_strs_clear(&t);
    if (app->note[0]) report(io, CHAT_EV_NOTE, NULL, app->note);
    return CHAT_CONTINUE;
}

/* Reads the session list again (for /sessions, and /open before any list). */
static int refresh_list(ChatApp *app, const ChatIO *io)
{
    rag_session_free_list(app->listed, app->n_listed);
    app->listed = NULL;
    app->n_listed = 0;
    int rc = chat_rag(app);
    if (rc == KB_OK) rc = rag_session_list(app->rag, &app->listed, &app->n_listed);
    if (rc != KB_OK) report(io, CHAT_EV_ERROR, NULL, app->rag ? rag_errmsg(app->rag) : app->errmsg);
    return rc;
}

static int run_sessions(ChatApp *app, const char *arg, const ChatIO *io)
{
    (void)arg;
    if (refresh_list(app, io) != KB_OK) return CHAT_CONTINUE;
    GString *g = g_string_new(app->n_listed == 0 ? "No saved sessions yet.\n" : "");
    for (int i = 0; i < app->n_listed; i++) {
        const RagSession *s = &app->listed[i];
        char when[32] = "";
        time_t t = (time_t)s->updated;
        struct tm tm;
        if (localtime_r(&t, &tm)) strftime(when, sizeof when, "%Y-%m-%d %H:%M", &tm);
        TermStrs ts = {0};
        g_string_append_printf(g, "%c%3d. %s  (%d turn%s, %s%s%s)\n", s->id == conv_session(app->conv) ? '*' : ' ', i + 1,
                s->title[0] ? term_line(&ts, s->title) : "(untitled)", s->n_turns, s->n_turns == 1 ? "" : "s", when,
                s->kb[0] ? ", kb " : "", term_line(&ts, s->kb));
        term_strs_clear(&ts);
    }
    emit_text(io, CHAT_EV_OUTPUT, g->str, g->len);
    g_string_free(g, TRUE);
    return CHAT_CONTINUE;
}

/* The session numbered arg in the last list (listing first if need be). */
static const RagSession *pick_session(ChatApp *app, const char *arg, const ChatIO *io)
{
    char *end;
    errno = 0;
    long n = strtol(arg, &end, 10);
    if (app->listed == NULL && refresh_list(app, io) != KB_OK) return NULL;
    if (errno || end == arg || *end || n < 1 || n > app->n_listed) {
        TermStrs t = {0};
        emitf(io, CHAT_EV_ERROR, "expected a session number 1..%d (see /sessions), got \"%s\"", app->n_listed,
              term_line(&t, arg));
        term_strs_clear(&t);
        return NULL;
    }
    return &app->listed[n - 1];
}

static int run_open(ChatApp *app, const char *arg, const ChatIO *io)
{
    const RagSession *s = pick_session(app, arg, io);
    const char *note = NULL;
    if (s == NULL) return CHAT_CONTINUE;
    if (conv_open_session(app->conv, s->id, &note) != KB_OK) {
        report(io, CHAT_EV_ERROR, NULL, conv_errmsg(app->conv));
        return CHAT_CONTINUE;
    }
    chat_refresh_embedder(app);
    emit(io, CHAT_EV_CONVERSATION_REPLACED);
    TermStrs t = {0};
    GString *g = g_string_new(NULL);
    g_string_append_printf(g, "Opened \"%s\": %d turn%s", term_line(&t, conv_title(app->conv)), conv_n_turns(app->conv),
                           conv_n_turns(app->conv) == 1 ? "" : "s");
    if (conv_kb(app->conv)[0]) g_string_append_printf(g, ", knowledge base %s", term_line(&t, conv_kb(app->conv)));
    g_string_append(g, ".\n");
    if (note) g_string_append_printf(g, "Note: %s.\n", term_line(&t, note));
    if (s->model[0] && (app->model_path == NULL || strcmp(s->model, app->model_path) != 0))
        g_string_append_printf(g, "Note: it was made with %s (template %s); /model FILE switches.\n",
                               term_line(&t, s->model), term_line(&t, s->template_name));
    term_strs_clear(&t);
    emit_text(io, CHAT_EV_OUTPUT, g->str, g->len);
    g_string_free(g, TRUE);
    return CHAT_CONTINUE;
}

static int run_delete(ChatApp *app, const char *arg, const ChatIO *io)
{
    const RagSession *s = pick_session(app, arg, io);
    if (s == NULL) return CHAT_CONTINUE;
    if (rag_session_delete(app->rag, s->id) != KB_OK) {
        report(io, CHAT_EV_ERROR, NULL, rag_errmsg(app->rag));
        return CHAT_CONTINUE;
    }
    if (s->id == conv_session(app->conv)) { /* said first: a screen clears for the replaced conversation */
        conv_reset(app->conv);
        emit(io, CHAT_EV_CONVERSATION_REPLACED);
    }
    TermStrs t = {0};
    emitf(io, CHAT_EV_OUTPUT, "Deleted \"%s\".\n", term_line(&t, s->title));
    term_strs_clear(&t);
    emit(io, CHAT_EV_SESSION_CHANGED);
    refresh_list(app, io);
    return CHAT_CONTINUE;
}

static int run_rename(ChatApp *app, const char *arg, const ChatIO *io)
{
    TermStrs t = {0};
    if (conv_rename(app->conv, arg) != KB_OK) {
        report(io, CHAT_EV_ERROR, NULL, conv_errmsg(app->conv));
    } else {
        emitf(io, CHAT_EV_OUTPUT, "Renamed to \"%s\".\n", term_line(&t, conv_title(app->conv)));
        emit(io, CHAT_EV_SESSION_CHANGED);
    }
    term_strs_clear(&t);
    return CHAT_CONTINUE;
}

/* conv_export_markdown as a path_write_private writer. */
static int write_export(FILE *f, void *conv)
{
    return conv_export_markdown(conv, f);
}

/* /export [--force] FILE: the conversation as Markdown, in a new file
** (mode 0600: it holds the documents' passages); an existing FILE is
** replaced only with --force. */
static int run_export(ChatApp *app, const char *arg, const ChatIO *io)
{
    int force = strncmp(arg, "--force", 7) == 0 && (arg[7] == ' ' || arg[7] == '\0');
    if (force) arg += strspn(arg + 7, " ") + 7;
    if (arg[0] == '\0') {
        emitf(io, CHAT_EV_ERROR, "/export needs a file name: /export [--force] FILE");
        return CHAT_CONTINUE;
    }
    char err[4400];
    int rc = path_write_private(arg, force, write_export, app->conv, err, sizeof err);
    TermStrs t = {0};
    if (rc == KB_EINVAL)
        emitf(io, CHAT_EV_ERROR, "%s: not overwritten; '/export --force %s' replaces it", term_line(&t, err),
              term_line(&t, arg));
    else if (rc != KB_OK) emitf(io, CHAT_EV_ERROR, "%s", term_line(&t, err));
    else emitf(io, CHAT_EV_OUTPUT, "Exported %d turn%s to %s.\n", conv_n_turns(app->conv), conv_n_turns(app->conv) == 1 ? "" : "s",
                 term_line(&t, arg));
    term_strs_clear(&t);
    return CHAT_CONTINUE;
}

/* Short names of /set and the configuration keys they change; only keys
** that take effect at once are here. */
static const struct { const char *alias, *key; } set_keys[] = {
    {"temperature", "sampling.temperature"}, {"top_k", "sampling.top_k"},
    {"top_p", "sampling.top_p"},             {"min_p", "sampling.min_p"},
    {"repeat_penalty", "sampling.repeat_penalty"}, {"repeat_last_n", "sampling.repeat_last_n"},
    {"seed", "sampling.seed"},               {"max_tokens", "sampling.max_tokens"},
    {"template", "model.template"},          {"system", "prompt.system"},
    {"prompt_template", "prompt.template"},  {"passages", "retrieval.top_k"},
    {"score_threshold", "retrieval.score_threshold"}, {"answer_reserve", "conversation.answer_reserve"},
};
#define N_SET_KEYS (int)(sizeof set_keys / sizeof set_keys[0])

/* The configuration key for /set's name (an alias or the dotted key), or NULL. */
static const char *set_key(const char *name)
{
    for (int i = 0; i < N_SET_KEYS; i++)
        if (strcmp(name, set_keys[i].alias) == 0 || strcmp(name, set_keys[i].key) == 0) return set_keys[i].key;
    return NULL;
}

static void print_settings(ChatApp *app, const ChatIO *io)
{
    const KbConfig *f = app->cfg;
    TermStrs t = {0};
    GString *g = g_string_new(NULL);
    g_string_append_printf(g,
            "temperature %g, top_k %lld, top_p %g, min_p %g, repeat_penalty %g, repeat_last_n %lld, seed %lld,\n"
            "max_tokens %lld, passages %lld, score_threshold %g, answer_reserve %lld, template %s (%s)\n"
            "system: %s\n",
            f->temperature, (long long)f->top_k, f->top_p, f->min_p, f->repeat_penalty, (long long)f->repeat_last_n,
            (long long)f->seed, (long long)f->max_tokens, (long long)f->retrieval_top_k, f->score_threshold,
            (long long)f->answer_reserve, template_name(conv_template(app->conv)), conv_template_why(app->conv),
            f->system_prompt[0] ? term_line(&t, f->system_prompt) : "(the template's own)");
    term_strs_clear(&t);
    g_string_append(g, "Usage: /set KEY VALUE with KEY one of:");
    for (int i = 0; i < N_SET_KEYS; i++) g_string_append_printf(g, " %s", set_keys[i].alias);
    g_string_append_c(g, '\n');
    emit_text(io, CHAT_EV_OUTPUT, g->str, g->len);
    g_string_free(g, TRUE);
}

static int run_set(ChatApp *app, const char *arg, const ChatIO *io)
{
    size_t n = strcspn(arg, " \t");
    char *name = g_strndup(arg, n);
    const char *value = arg + n + strspn(arg + n, " \t");
    const char *key = set_key(name);
    TermStrs t = {0};
    if (arg[0] == '\0') {
        print_settings(app, io);
    } else if (key == NULL) {
        emitf(io, CHAT_EV_ERROR, "/set: '%s' cannot be changed in a chat (see /set; others: edit config.yaml%s)",
                term_line(&t, name), strcmp(name, "model.path") == 0 ? " or use /model FILE" : "");
    } else if (config_set(app->cfg, key, value, "/set") != KB_OK) {
        report(io, CHAT_EV_ERROR, "/set", app->cfg->errmsg);
    } else {
        if (strcmp(key, "model.template") == 0 && app->model &&
            conv_set_model(app->conv, app->model, app->model_path) != KB_OK)
            report(io, CHAT_EV_ERROR, "/set", conv_errmsg(app->conv));
        emitf(io, CHAT_EV_OUTPUT, "%s = %s\n", key, term_line(&t, value));
    }
    term_strs_clear(&t);
    g_free(name);
    return CHAT_CONTINUE;
}

static int run_model(ChatApp *app, const char *arg, const ChatIO *io)
{
    TermStrs t = {0};
    if (arg[0] == '\0') {
        if (app->model == NULL) emitf(io, CHAT_EV_OUTPUT, "No model loaded: /model FILE loads one.\n");
        else emitf(io, CHAT_EV_OUTPUT, "Model: %s (%s, template %s: %s)\n", term_line(&t, app->model_path),
                     model_arch_name(app->model), template_name(conv_template(app->conv)), conv_template_why(app->conv));
    } else if (chat_load_model(app, arg) != KB_OK) {
        report(io, CHAT_EV_ERROR, NULL, app->errmsg);
    } else {
        emitf(io, CHAT_EV_OUTPUT, "Model: %s (template %s)\n", term_line(&t, arg), template_name(conv_template(app->conv)));
    }
    term_strs_clear(&t);
    return CHAT_CONTINUE;
}

static int run_sources(ChatApp *app, const char *arg, const ChatIO *io)
{
    (void)arg;
    const RagTurn *t = conv_turn(app->conv, conv_n_turns(app->conv) - 1);
    if (t == NULL) emitf(io, CHAT_EV_OUTPUT, "No answer yet.\n");
    else if (t->n_sources == 0 && !t->query[0]) emitf(io, CHAT_EV_OUTPUT, "The last answer used no knowledge base.\n");
    else emit_sources(io, CHAT_EV_OUTPUT, t, 1);
    return CHAT_CONTINUE;
}

static int run_retry(ChatApp *app, const char *arg, const ChatIO *io)
{
    (void)arg;
    answer(app, NULL, io);
    return CHAT_CONTINUE;
}

static const ChatCommand chat_commands[] = {
    {"kb", "[NAME|off]", "search knowledge base NAME (off: none); alone, list them", run_kb},
    {"new", "", "start a new conversation", run_new},
    {"sessions", "", "list saved conversations, the most recent first", run_sessions},
    {"open", "N", "resume conversation N of /sessions", run_open},
    {"rename", "TITLE", "rename this conversation", run_rename},
    {"delete", "N", "delete conversation N of /sessions", run_delete},
    {"export", "[--force] FILE", "write this conversation as Markdown with its sources (a new file; --force replaces one)", run_export},
    {"set", "[KEY VALUE]", "change a setting (temperature, top_k, top_p, template, system, ...); alone, show them",
     run_set},
    {"model", "[FILE]", "load another GGUF model; alone, show the current one", run_model},
    {"sources", "", "show the passages behind the last answer", run_sources},
    {"retry", "", "answer the last question again", run_retry},
    {"help", "", "this list", run_help},
    {"quit", "", "leave (end of input does too)", run_quit},
    {"exit", "", "the same as /quit", run_quit},
};
#define N_CHAT_COMMANDS (int)(sizeof chat_commands / sizeof chat_commands[0])

const char *chat_command_name(int i)
{
    return i >= 0 && i < N_CHAT_COMMANDS ? chat_commands[i].name : NULL;
}

static int run_help(ChatApp *app, const char *arg, const ChatIO *io)
{
    (void)app, (void)arg;
    GString *g = g_string_new("Type a question to ask it. Commands:\n");
    for (int i = 0; i < N_CHAT_COMMANDS; i++) {
        char head[40];
        snprintf(head, sizeof head, "/%s %s", chat_commands[i].name, chat_commands[i].args);
        g_string_append_printf(g, "  %-22s %s\n", head, chat_commands[i].help);
    }
    emit_text(io, CHAT_EV_OUTPUT, g->str, g->len);
    g_string_free(g, TRUE);
    return CHAT_CONTINUE;
}

/* Edit distance between a[0..na) and b, for the "did you mean" hint. */
static size_t distance(const char *a, size_t na, const char *b)
{
    size_t nb = strlen(b), row[32];
    if (na >= 31 || nb >= 31) return 99;
    for (size_t j = 0; j <= nb; j++) row[j] = j;
    for (size_t i = 1; i <= na; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= nb; j++) {
            size_t up = row[j], best = diag + (a[i - 1] != b[j - 1]);
            if (row[j] + 1 < best) best = row[j] + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[nb];
}

/* Tells about an unknown command, suggesting the nearest known one. */
static void unknown_command(const char *name, size_t n, const ChatIO *io)
{
    const char *best = NULL;
    size_t best_d = 3; /* suggest only near misses */
    for (int i = 0; i < N_CHAT_COMMANDS; i++) {
        size_t d = distance(name, n, chat_commands[i].name);
        if (n > 0 && strncmp(chat_commands[i].name, name, n) == 0) d = 1; /* a prefix */
        if (d < best_d) best_d = d, best = chat_commands[i].name;
    }
    GString *g = g_string_new("unknown command /");
    term_escape_append(g, name, n, TERM_LINE);
    if (best) g_string_append_printf(g, "; did you mean /%s?", best);
    g_string_append(g, " (/help lists the commands)");
    emit_text(io, CHAT_EV_ERROR, g->str, g->len);
    g_string_free(g, TRUE);
}

/* Runs "/name args". */
static int run_command(ChatApp *app, const char *line, const ChatIO *io)
{
    const char *name = line + 1;
    size_t n = strcspn(name, " \t");
    const char *arg = name + n + strspn(name + n, " \t");
    for (int i = 0; i < N_CHAT_COMMANDS; i++)
        if (strlen(chat_commands[i].name) == n && strncmp(chat_commands[i].name, name, n) == 0)
            return chat_commands[i].run(app, arg, io);
    unknown_command(name, n, io);
    return CHAT_CONTINUE;
}

int chat_line(ChatApp *app, const char *line, const ChatIO *io)
{
    char *text = g_strstrip(g_strdup(line));
    int rc = CHAT_CONTINUE;
    if (text[0] == '/' && text[1] != '/') rc = run_command(app, text, io);
    else if (text[0]) answer(app, text[0] == '/' ? text + 1 : text, io); /* "//x" asks "/x" */
    g_free(text);
    return rc;
}
