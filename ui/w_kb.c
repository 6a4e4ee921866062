/*
** w_kb.c: the knowledge-base overlay (F2).
**
** The list: every knowledge base with its documents (and whether some
** failed), chunks, keyword or keyword+vector, and its last sync, or
** "syncing 37%" while the background sync works on it, with a progress bar
** under the list. Keys: Enter searches the selected base (/kb NAME), o none
** (/kb off): like the sessions overlay, those are slash commands screen.c
** runs on the worker. n creates a base (a name typed in the panel), a adds
** a folder or file to the selected one (a path typed with Tab completion)
** and starts syncing it, s syncs it, D deletes it (y/n), f shows its files.
** The files view lists its sources, then its documents with the reason of
** each failed one; d removes the selected source or file (y/n).
**
** These act through app's chat_kb_* (the chat's own database connection:
** the overlay is open only while no chat_line job runs) and chat_sync_start
** (a thread of its own). A failure's message is shown in the panel in red,
** the entry kept for correcting it. Only draw paints.
*/
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "app/app.h"
#include "ui/widget.h"

/* What the line above the keys asks for. */
typedef enum KbAsk {
    KB_ASK_NONE = 0,
    KB_ASK_NAME,    /* the name of a new knowledge base */
    KB_ASK_PATH,    /* a folder or file to add to the selected one */
    KB_ASK_DELETE,  /* y/n: delete the selected knowledge base */
    KB_ASK_REMOVE,  /* y/n: remove the selected source or file */
} KbAsk;

typedef struct KbView {
    Widget base;
    ChatApp *app;           /* borrowed, from kbview_load */
    RagKbInfo *kbs;         /* the list, sorted by name */
    int n, sel;
    char cur[72];           /* the knowledge base in use ("" none) */
    int files_view;         /* showing the files of kbs[sel] */
    RagFile *files;         /* of kbs[sel], in the files view */
    int n_files, row;       /* rows: kbs[sel]'s sources, then files */
    KbAsk ask;
    LineEntry entry;
    char cands[512];        /* Tab's candidates ("" none) */
    char msg[1200];         /* the last outcome, "" none */
    int msg_error;          /* msg is a problem (red) */
    ChatSyncState sync;     /* the background sync, from screen.c */
    KbViewAction action; /* what the panel asks screen.c to do (kbview_action) */
} KbView;

/* --- loading --- */

/* Forgets the files view's rows. */
static void kb_clear_files(KbView *v)
{
    chat_free_files(v->files, v->n_files);
    v->files = NULL;
    v->n_files = v->row = 0;
}

/* Frees the list and the files view; the view stays usable (empty). */
static void kb_clear(KbView *v)
{
    kb_clear_files(v);
    chat_free_kbs(v->kbs, v->n);
    v->kbs = NULL;
    v->n = v->sel = 0;
}

/* Sets the panel's message (printf-style); error makes it red. */
static void kb_say(KbView *v, int error, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
__attribute__((format(printf, 3, 4))) static void kb_say(KbView *v, int error, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v->msg, sizeof v->msg, fmt, ap);
    va_end(ap);
    v->msg_error = error;
}

/* Reads the files of kbs[sel] for the files view. */
static void kb_load_files(KbView *v)
{
    kb_clear_files(v);
    if (v->sel >= v->n) return;
    if (chat_kb_files(v->app, v->kbs[v->sel].name, &v->files, &v->n_files) != KB_OK)
        kb_say(v, 1, "%s", chat_errmsg(v->app));
}

/* Reads the list again, selecting the base named keep when it is there.
** Returns 0, or -1 when out of memory. */
static int kb_reload(KbView *v, const char *keep)
{
    char name[72];
    int row = v->row;
    snprintf(name, sizeof name, "%s", keep ? keep : "");
    kb_clear(v);
    v->base.needs_redraw = 1;
    snprintf(v->cur, sizeof v->cur, "%s", conv_kb(chat_conversation(v->app)));
    int rc = chat_list_kbs(v->app, &v->kbs, &v->n);
    if (rc == KB_ENOMEM) return -1;
    if (rc != KB_OK) kb_say(v, 1, "%s", chat_errmsg(v->app));
    for (int i = 0; i < v->n; i++)
        if (strcmp(v->kbs[i].name, name) == 0) v->sel = i;
    if (v->n == 0) v->files_view = 0;
    if (v->files_view) kb_load_files(v);
    int n_rows = v->files_view ? v->kbs[v->sel].n_sources + v->n_files : 0;
    v->row = row < n_rows ? row : n_rows > 0 ? n_rows - 1 : 0; /* the same row, or the last */
    return 0;
}

/* Opens the panel on app's list (idle only), selecting the base in use. */
int kbview_load(Widget *w, ChatApp *app)
{
    KbView *v = (KbView *)w;
    v->app = app;
    v->files_view = 0;
    v->ask = KB_ASK_NONE;
    v->msg[0] = v->cands[0] = '\0';
    v->action = (KbViewAction){KBVIEW_NONE, ""};
    return kb_reload(v, conv_kb(chat_conversation(app)));
}

/* Reads the list again, keeping the selected base, view and row. */
int kbview_refresh(Widget *w)
{
    KbView *v = (KbView *)w;
    if (v->app == NULL) return 0;
    return kb_reload(v, v->sel < v->n ? v->kbs[v->sel].name : NULL);
}

/* Takes a copy of the sync's progress; repaints when it changed. */
void kbview_set_sync(Widget *w, const ChatSyncState *st)
{
    KbView *v = (KbView *)w;
    if (memcmp(&v->sync, st, sizeof *st) != 0) v->sync = *st, w->needs_redraw = 1;
}

/* The command to run after UI_QUIT ("" none). */
KbViewAction kbview_action(Widget *w)
{
    return ((KbView *)w)->action;
}

/* --- drawing --- */

/* The width of the list's name column: the longest name, 4..20. */
static int kb_name_width(const KbView *v)
{
    int w = 4;
    for (int i = 0; i < v->n; i++) {
        int len = (int)strlen(v->kbs[i].name);
        if (len > w) w = len > 20 ? 20 : len;
    }
    return w;
}

/* The list's line about kbs[i]: state before the search kind, so that a
** narrow panel still shows "syncing 37%". */
static void kb_label(const KbView *v, int i, char *out, size_t n)
{
    const RagKbInfo *k = &v->kbs[i];
    char state[48] = "never synced";
    time_t t = (time_t)k->last_sync;
    struct tm tm;
    if (v->sync.running && strcmp(v->sync.kb, k->name) == 0) snprintf(state, sizeof state, "syncing %d%%", v->sync.percent);
    else if (k->last_sync && localtime_r(&t, &tm)) strftime(state, sizeof state, "synced %Y-%m-%d %H:%M", &tm);
    snprintf(out, n, "%c %-*s %5lld docs%s  %6lld chunks  %s  %s", strcmp(k->name, v->cur) ? ' ' : '*',
             kb_name_width(v), k->name, (long long)k->n_documents, k->n_failed ? " (some failed)" : "",
             (long long)k->n_chunks, state, k->embed_id.file[0] ? "keyword+vector" : "keyword");
}

/* path shown relative to the source of kbs[sel] it lies in. */
static const char *kb_short_path(const KbView *v, const char *path)
{
    const RagKbInfo *k = &v->kbs[v->sel];
    for (int i = 0; i < k->n_sources; i++) {
        size_t n = strlen(k->sources[i]);
        if (strncmp(path, k->sources[i], n) == 0 && path[n] == '/') return path + n + 1;
    }
    return path;
}

/* Row r of the files view: a source, then a document. */
static void kb_row_label(const KbView *v, int r, char *out, size_t n, int *failed)
{
    const RagKbInfo *k = &v->kbs[v->sel];
    *failed = 0;
    if (r < k->n_sources) {
        snprintf(out, n, "source  %s", k->sources[r]);
        return;
    }
    const RagFile *f = &v->files[r - k->n_sources];
    char pages[32] = "";
    *failed = f->failed;
    if (f->pages > 0) snprintf(pages, sizeof pages, "%d page%s, ", f->pages, f->pages == 1 ? "" : "s");
    if (f->failed) snprintf(out, n, "FAILED  %s: %s", kb_short_path(v, f->path), f->error);
    else snprintf(out, n, "ok      %s  (%s%lld chunk%s)", kb_short_path(v, f->path), pages, (long long)f->chunks, f->chunks == 1 ? "" : "s");
}

/* The progress bar of the background sync, in cols columns:
** "[████······] 37% docs 12/40 files, 80 chunks, some failed  x.pdf". */
static void kb_progress_line(const KbView *v, char *out, size_t n, int cols)
{
    const ChatSyncState *s = &v->sync;
    int bar = cols / 4 < 10 ? 10 : cols / 4, fill = bar * s->percent / 100;
    size_t k = 0;
    out[k++] = '[';
    for (int i = 0; i < bar && k + 4 < n; i++) k += (size_t)snprintf(out + k, n - k, "%s", i < fill ? "█" : "·");
    if (!s->planned) snprintf(out + k, n - k, "] %s: looking for files…", s->kb);
    else if (s->embedding)
        snprintf(out + k, n - k, "] %s: embedding %lld/%lld chunks", s->kb, s->vectors_done, s->vectors_total);
    else
        snprintf(out + k, n - k, "] %d%% %s %lld/%lld files, %lld chunks%s  %s", s->percent, s->kb, s->files_done,
                 s->files_total, s->chunks, s->failed ? ", some failed" : "", s->current);
}

/* The keys of the current state, wrapped into lines of cols columns:
** writes up to 3 lines into out[] and returns their number. */
static int kb_footer(const KbView *v, int cols, char out[3][200])
{
    static const char *const list_keys[] = {"Enter: search it", "n: new", "a: add folder", "s: sync", "f: files",
                                            "D: delete", "o: none", "Esc: close", NULL};
    static const char *const file_keys[] = {"Up/Down: select", "d: remove from the base", "Esc: back", NULL};
    static const char *const entry_keys[] = {"Enter: ok", "Esc: cancel", NULL};
    static const char *const path_keys[] = {"Enter: add and sync", "Tab: complete", "Esc: cancel", NULL};
    static const char *const yes_no[] = {"y: yes", "any other key: no", NULL};
    const char *const *keys = v->ask == KB_ASK_NAME ? entry_keys
                            : v->ask == KB_ASK_PATH ? path_keys
                            : v->ask != KB_ASK_NONE ? yes_no
                            : v->files_view         ? file_keys
                                                    : list_keys;
    int lines = 0;
    out[0][0] = '\0';
    for (int i = 0; keys[i] && lines < 3; i++) {
        size_t used = strlen(out[lines]), need = strlen(keys[i]) + (used ? 2 : 0);
        if (used && (int)(used + need) > cols) {
            if (++lines == 3) break;
            out[lines][0] = '\0';
            used = 0, need = strlen(keys[i]);
        }
        snprintf(out[lines] + used, 200 - used, "%s%s", used ? "  " : "", keys[i]);
    }
    return lines < 3 ? lines + 1 : 3;
}

/* The path row r of the files view stands for: a source, or a document. */
static const char *kb_row_path(const KbView *v, int r)
{
    const RagKbInfo *k = &v->kbs[v->sel];
    return r < k->n_sources ? k->sources[r] : v->files[r - k->n_sources].path;
}

/* The question of a y/n or entry line. */
static void kb_prompt(const KbView *v, char *out, size_t n)
{
    const char *name = v->sel < v->n ? v->kbs[v->sel].name : "";
    switch (v->ask) {
    case KB_ASK_NAME: snprintf(out, n, "New knowledge base: "); break;
    case KB_ASK_PATH: snprintf(out, n, "Add to %s: ", name); break;
    case KB_ASK_DELETE: snprintf(out, n, "Delete knowledge base %s and its index? y/n", name); break;
    case KB_ASK_REMOVE: snprintf(out, n, "Remove %s from %s? y/n", kb_short_path(v, kb_row_path(v, v->row)), name); break;
    default: out[0] = '\0';
    }
}

/* Paints rows [y0, y1) of the list or the files view. */
static void kb_draw_rows(KbView *v, int y0, int y1, int cols)
{
    WINDOW *win = v->base.win;
    int rows = y1 - y0, n = v->files_view ? v->kbs[v->sel].n_sources + v->n_files : v->n;
    int sel = v->files_view ? v->row : v->sel, top = sel >= rows ? sel - rows + 1 : 0;
    for (int i = top; i < n && i - top < rows; i++) {
        char line[1400];
        int failed = 0;
        if (v->files_view) kb_row_label(v, i, line, sizeof line, &failed);
        else kb_label(v, i, line, sizeof line);
        wattrset(win, i == sel ? term_attr(UI_C_STATUS) : failed ? term_attr(UI_C_ERROR) : A_NORMAL);
        ui_put_text(win, y0 + i - top, 2, line, cols);
    }
}

/* Paints the box from the bottom up: keys, the question or entry, Tab's
** candidates, the message, the progress bar; the rows fill what is left. */
static void kbview_draw(Widget *w)
{
    KbView *v = (KbView *)w;
    char title[120], text[1400], foot[3][200];
    if (w->win == NULL) return;
    int cols = w->w - 4, nf = kb_footer(v, cols, foot), y = w->h - 1 - nf;
    werase(w->win);
    wattrset(w->win, term_attr(UI_C_BORDER));
    box(w->win, 0, 0);
    for (int i = 0; i < nf; i++) ui_put_text(w->win, y + i, 2, foot[i], cols);
    if (v->ask != KB_ASK_NONE) {
        kb_prompt(v, text, sizeof text);
        wattrset(w->win, v->ask == KB_ASK_DELETE || v->ask == KB_ASK_REMOVE ? term_attr(UI_C_ERROR) : A_NORMAL);
        if (v->ask == KB_ASK_NAME || v->ask == KB_ASK_PATH) entry_draw(&v->entry, w->win, --y, 2, cols, text);
        else ui_put_text(w->win, --y, 2, text, cols);
    }
    wattrset(w->win, term_attr(UI_C_NOTE));
    if (v->cands[0] && v->ask == KB_ASK_PATH) ui_put_text(w->win, --y, 2, v->cands, cols);
    wattrset(w->win, term_attr(v->msg_error ? UI_C_ERROR : UI_C_NOTE));
    if (v->msg[0]) ui_put_text(w->win, --y, 2, v->msg, cols);
    else if (v->n == 0 && !v->files_view) ui_put_text(w->win, --y, 2, "No knowledge bases yet: n creates one.", cols);
    wattrset(w->win, term_attr(UI_C_TITLE));
    if (v->sync.active) kb_progress_line(v, text, sizeof text, cols), ui_put_text(w->win, --y, 2, text, cols);
    if (v->files_view) snprintf(title, sizeof title, " Files of %s ", v->kbs[v->sel].name);
    else snprintf(title, sizeof title, " Knowledge bases ");
    ui_put_text(w->win, 0, 2, title, cols);
    if (v->n > 0) kb_draw_rows(v, 1, y, cols);
    wattrset(w->win, A_NORMAL);
    wnoutrefresh(w->win);
    w->needs_redraw = 0;
}

/* --- keys --- */

/* Enter on the name entry: creates the knowledge base. */
static void kb_do_create(KbView *v)
{
    char name[sizeof v->entry.text];
    snprintf(name, sizeof name, "%s", v->entry.text);
    if (chat_kb_create(v->app, v->entry.text) != KB_OK) {
        kb_say(v, 1, "%s", chat_errmsg(v->app)); /* the entry stays for a corrected name */
        return;
    }
    v->ask = KB_ASK_NONE;
    if (kb_reload(v, name) != 0) return;
    kb_say(v, 0, "Created knowledge base %s. a adds a folder to it.", name);
}

/* Enter on the path entry: adds the path and syncs the base. */
static void kb_do_add(KbView *v)
{
    const char *name = v->kbs[v->sel].name;
    if (chat_kb_add(v->app, name, v->entry.text) != KB_OK) {
        kb_say(v, 1, "%s", chat_errmsg(v->app));
        return;
    }
    v->ask = KB_ASK_NONE;
    v->cands[0] = '\0';
    if (chat_sync_start(v->app, name) == KB_OK) kb_say(v, 0, "Added %s; syncing %s.", v->entry.text, name);
    else kb_say(v, 1, "Added %s; not syncing now: %s (s syncs later)", v->entry.text, chat_errmsg(v->app));
    kb_reload(v, name);
}

/* y on a question: deletes the base or removes the row's path. */
static void kb_do_confirmed(KbView *v)
{
    char name[72];
    int64_t n_docs = 0;
    snprintf(name, sizeof name, "%s", v->kbs[v->sel].name);
    if (v->ask == KB_ASK_DELETE && chat_kb_delete(v->app, name) == KB_OK) {
        int sel = v->sel;
        v->files_view = 0;
        kb_reload(v, NULL);
        v->sel = sel < v->n ? sel : v->n > 0 ? v->n - 1 : 0;
        kb_say(v, 0, "Deleted knowledge base %s (your files are untouched).", name);
    } else if (v->ask == KB_ASK_REMOVE) {
        char *path = strdup(kb_row_path(v, v->row)), shown[1100];
        snprintf(shown, sizeof shown, "%s", path ? kb_short_path(v, path) : "");
        if (path && chat_kb_remove(v->app, name, path, &n_docs) == KB_OK) {
            kb_reload(v, name);
            kb_say(v, 0, "Removed %s from %s (%lld document%s).", shown, name, (long long)n_docs, n_docs == 1 ? "" : "s");
        } else {
            kb_say(v, 1, "%s", path ? chat_errmsg(v->app) : "out of memory");
        }
        free(path);
    } else {
        kb_say(v, 1, "%s", chat_errmsg(v->app));
    }
}

/* Tab on the path entry: completes the name being typed. */
static void kb_complete(KbView *v)
{
    char *out = NULL;
    int n = path_complete(v->entry.text, &out, v->cands, sizeof v->cands);
    if (n < 0) kb_say(v, 1, "out of memory");
    if (n == 0) snprintf(v->cands, sizeof v->cands, "(nothing matches)");
    if (out) entry_set(&v->entry, out);
    free(out);
}

/* Keys while the line above the keys asks something. */
static int kb_ask_key(KbView *v, const UiKey *k)
{
    int c = k->is_key ? 0 : (int)k->ch, enter = c == '\r' || c == '\n' || (k->is_key && k->ch == KEY_ENTER);
    if (v->ask == KB_ASK_DELETE || v->ask == KB_ASK_REMOVE) {
        if (c == 'y' || c == 'Y') kb_do_confirmed(v);
        else kb_say(v, 0, "Nothing %s.", v->ask == KB_ASK_DELETE ? "deleted" : "removed");
        v->ask = KB_ASK_NONE;
        return UI_REDRAW;
    }
    if (c == 27 && !k->alt) {
        v->ask = KB_ASK_NONE;
        v->msg[0] = v->cands[0] = '\0';
    } else if (c == '\t' && v->ask == KB_ASK_PATH) {
        v->msg[0] = '\0';
        kb_complete(v);
    } else if (enter && v->entry.text[0] == '\0') {
        kb_say(v, 1, "%s", v->ask == KB_ASK_NAME ? "Type a name (letters, digits, - _ .)" : "Type a folder or file (Tab completes)");
    } else if (enter) {
        if (v->ask == KB_ASK_NAME) kb_do_create(v);
        else kb_do_add(v);
    } else if (entry_key(&v->entry, k)) {
        v->msg[0] = v->cands[0] = '\0'; /* the message was about the text before the edit */
    } else {
        return 0;
    }
    return UI_REDRAW;
}

/* Starts asking: what (a name, a path, y/n). */
static int kb_start_ask(KbView *v, KbAsk what)
{
    v->ask = what;
    v->msg[0] = v->cands[0] = '\0';
    entry_set(&v->entry, "");
    return UI_REDRAW;
}

/* Closes the panel (UI_QUIT) choosing kind (for the selected base). */
static int kb_choose(KbView *v, KbViewActionKind kind)
{
    v->action.kind = kind;
    snprintf(v->action.name, sizeof v->action.name, "%s", kind == KBVIEW_USE ? v->kbs[v->sel].name : "");
    return UI_QUIT;
}

/* Keys of the list. */
static int kb_list_key(KbView *v, const UiKey *k)
{
    int c = k->is_key ? 0 : (int)k->ch, enter = c == '\r' || c == '\n' || (k->is_key && k->ch == KEY_ENTER);
    if ((k->is_key && k->ch == KEY_F(2)) || c == 27 || c == 'q') return UI_QUIT;
    if (c == 'o') return kb_choose(v, KBVIEW_OFF);
    if (c == 'n') return kb_start_ask(v, KB_ASK_NAME);
    if (v->n == 0) return 0;
    if (k->is_key && k->ch == KEY_UP && v->sel > 0) v->sel--;
    else if (k->is_key && k->ch == KEY_DOWN && v->sel + 1 < v->n) v->sel++;
    else if (enter) return kb_choose(v, KBVIEW_USE);
    else if (c == 'a') return kb_start_ask(v, KB_ASK_PATH);
    else if (c == 'D' || c == 'd' || (k->is_key && k->ch == KEY_DC)) return kb_start_ask(v, KB_ASK_DELETE);
    else if (c == 's' && chat_sync_start(v->app, v->kbs[v->sel].name) == KB_OK) kb_say(v, 0, "Syncing %s.", v->kbs[v->sel].name);
    else if (c == 's') kb_say(v, 1, "%s", chat_errmsg(v->app));
    else if (c == 'f' || (k->is_key && k->ch == KEY_RIGHT)) v->files_view = 1, v->msg[0] = '\0', kb_load_files(v);
    else return 0;
    return UI_REDRAW;
}

/* Keys of the files view. */
static int kb_files_key(KbView *v, const UiKey *k)
{
    int c = k->is_key ? 0 : (int)k->ch, n = v->kbs[v->sel].n_sources + v->n_files, page = v->base.h / 2;
    if (k->is_key && k->ch == KEY_F(2)) return UI_QUIT;
    if (c == 27 || c == 'q' || c == 'f' || (k->is_key && k->ch == KEY_LEFT)) v->files_view = 0, v->msg[0] = '\0';
    else if (k->is_key && k->ch == KEY_UP && v->row > 0) v->row--;
    else if (k->is_key && k->ch == KEY_DOWN && v->row + 1 < n) v->row++;
    else if (k->is_key && k->ch == KEY_PPAGE) v->row = v->row > page ? v->row - page : 0;
    else if (k->is_key && k->ch == KEY_NPAGE) v->row = v->row + page < n ? v->row + page : n > 0 ? n - 1 : 0;
    else if ((c == 'd' || (k->is_key && k->ch == KEY_DC)) && n > 0) return kb_start_ask(v, KB_ASK_REMOVE);
    else return 0;
    return UI_REDRAW;
}

/* Keys; UI_QUIT closes, kbview_action then says what the user chose. */
static int kbview_on_key(Widget *w, const UiKey *k)
{
    KbView *v = (KbView *)w;
    v->action = (KbViewAction){KBVIEW_NONE, ""};
    if (v->ask != KB_ASK_NONE) return kb_ask_key(v, k);
    if (k->alt) return 0; /* Alt-o is not o */
    return v->files_view ? kb_files_key(v, k) : kb_list_key(v, k);
}

static const WidgetOps kbview_ops = {kbview_draw, kbview_on_key, widget_place_box};

/* An empty panel; NULL when out of memory. */
Widget *kbview_new(void)
{
    KbView *v = calloc(1, sizeof *v);
    if (v) v->base.ops = &kbview_ops;
    return v ? &v->base : NULL;
}

/* Frees the panel and its lists; NULL is a no-op. */
void kbview_free(Widget *w)
{
    if (w == NULL) return;
    kb_clear((KbView *)w);
    widget_free_window(w);
    free(w);
}
