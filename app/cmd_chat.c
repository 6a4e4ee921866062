/*
** cmd_chat.c: `kbchat chat`, the line-mode conversation: one question or
** /command per line of standard input, answers streamed to standard output
** with their sources after them. It suits pipes, scripts and screen readers:
** nothing is drawn, prompts ("> ") appear only on a terminal, notices go to
** standard error, and the end of input ends the session with status 0.
** Ctrl-C stops an answer, also while its prompt is evaluated; a second
** Ctrl-C, or one at the prompt, leaves (app/stop.h).
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "app/cli.h"
#include "app/stop.h"
#include "app/term_text.h"

/* ChatEventFn: prints ev at once (chat_event_print: answers streamed,
** results on stdout, notices on stderr; chat_line escaped the text unless
** --raw); a piece's answer stops the answer after Ctrl-C. */
static int print_event(void *user, const ChatEvent *ev)
{
    (void)user;
    chat_event_print(ev, stdout, stderr);
    fflush(stdout);
    return atomic_load(stop_sigint_flag());
}

/* Loads the configured model and the --kb knowledge base, saying what was
** loaded on stderr. Returns an exit code (0 = ready). */
static int chat_start(const CliArgs *a, ChatApp *app, const KbConfig *cfg)
{
    Conversation *c = chat_conversation(app);
    if (cfg->model_path[0] == '\0') {
        fputs("kbchat: no model: questions need one (--model FILE, model.path, or /model FILE)\n", stderr);
    } else if (chat_load_model(app, cfg->model_path) != KB_OK) {
        return cli_print_error(chat_errmsg(app));
    } else {
        TermStrs t = {0};
        fprintf(stderr, "model: %s (template %s: %s)\n", term_line(&t, cfg->model_path), template_name(conv_template(c)),
                conv_template_why(c));
        term_strs_clear(&t);
    }
    const char *kb = a->value[CLI_OPT_KB];
    if (kb && chat_use_kb(app, kb) != KB_OK) return cli_print_error(chat_errmsg(app));
    if (kb) fputs("knowledge base: ", stderr), term_fputs(stderr, kb, TERM_LINE), fputc('\n', stderr);
    if (chat_note(app)[0]) cli_print_note(chat_note(app));
    return 0;
}

/* Reads and handles lines until /quit or the end of input. */
static void chat_loop(ChatApp *app, int interactive, int raw)
{
    ChatIO io = {.on_event = print_event, .user = NULL, .raw = raw};
    char *line = NULL;
    size_t cap = 0;
    if (interactive) fputs("Type a question, or /help.\n", stderr);
    for (int go = CHAT_CONTINUE; go == CHAT_CONTINUE;) {
        if (interactive) fputs("> ", stdout), fflush(stdout);
        stop_release_sigint();
        if (getline(&line, &cap, stdin) < 0) break;
        if (stop_catch_sigint() != 0) perror("kbchat: Ctrl-C will not stop the answer: sigaction");
        go = chat_line(app, line, &io);
    }
    stop_release_sigint();
    free(line);
}

int cmd_chat(const CliArgs *a, const char *const *args, int n_args)
{
    (void)args, (void)n_args;
    KbConfig cfg = {0};
    ChatApp *app = NULL;
    int code = cli_load_config(a, &cfg) == KB_OK ? 0 : CLI_EXIT_FAIL;
    if (code == 0 && chat_open(&cfg, &app) != KB_OK) {
        fputs("kbchat: out of memory\n", stderr);
        code = CLI_EXIT_FAIL;
    }
    if (app) chat_set_cancel(app, stop_sigint_flag());
    if (code == 0) code = chat_start(a, app, &cfg);
    if (code == 0) chat_loop(app, isatty(0) && isatty(1), cli_has(a, CLI_OPT_RAW));
    if (app && isatty(0) && isatty(1)) fputc('\n', stdout);
    chat_close(app);
    config_free(&cfg);
    return code;
}
