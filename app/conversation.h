/*
** conversation.h: the conversation manager (declared through app/app.h).
**
** A Conversation keeps the turns of one chat and turns each new question
** into a prompt in the model's own format (engine/template.h):
**
**   system prompt + passages + as many recent whole turns as fit + question
**   + a reserve for the answer (conversation.answer_reserve)
**
** The oldest turns leave first, whole. Consecutive prompts share their
** start, so model_generate reuses the KV cache and a follow-up computes only
** what is new. With a knowledge base, a follow-up question is first made
** standalone by the model ("and the 13B one?" -> "How much memory does the
** 13B model need?") and that query is what is searched; the answer's
** sources are kept with the turn. Each turn is stored in the session
** tables of the knowledge-base database as it completes.
**
** A ChatApp (app/chat.h) drives one Conversation for a front end.
**
** Lifetimes: conv_new/conv_free. Models and databases given to a
** Conversation are borrowed.
*/
#ifndef KB_CONVERSATION_H
#define KB_CONVERSATION_H

#include <stdatomic.h>
#include <stdio.h>

#include "app/config.h"
#include "engine/engine.h"
#include "rag/rag.h"

typedef struct Conversation Conversation;

/* Stands in for the model in the follow-up rewrite (tests; a front end
** with another rewriter). prompt is the text the model would get; *out
** receives a malloc'd question. An error code, a NULL or an empty *out
** means the original question is searched. */
typedef int (*ConvRewriteFn)(void *user, const char *prompt, const char *question, char **out /* OUT */);

/* What conv_ask did. */
typedef struct ConvStats {
    KbGenerateStats gen;      /* of the answer (n_reused: prompt tokens not recomputed) */
    size_t prompt_tokens;     /* tokens of the answer's prompt */
    size_t n_ctx, reserve;    /* the context and the room kept for the answer */
    int turns_kept;           /* earlier turns in the prompt */
    int turns_dropped;        /* earlier turns left out for room (the oldest) */
    int passages_dropped;     /* retrieved passages left out for room (the lowest ranked) */
    int rewrote;              /* 1 when the standalone question came from the rewrite */
    int save_rc;              /* KB_OK, or why the turn was not stored (conv_errmsg) */
} ConvStats;

/* Creates an empty conversation using cfg (borrowed: sampling, prompt and
** retrieval settings are read at each question, so a /set applies at once).
** Returns KB_OK or KB_ENOMEM. */
int conv_new(const KbConfig *cfg, Conversation **out /* OUT */);
/* Frees c and its turns; conv_free(NULL) is a no-op. */
void conv_free(Conversation *c);
/* The message of the last failed call ("" when none). */
const char *conv_errmsg(const Conversation *c);

/* Uses model m (borrowed; NULL = none: questions are refused) opened from
** path, and picks the chat template: model.template, or detected from the
** file when "auto". Call again after model.template changes.
** Returns KB_OK; KB_EINVAL (an unknown template name). */
int conv_set_model(Conversation *c, KbModel *m, const char *path);
KbTemplate conv_template(const Conversation *c);
/* Why the template was chosen ("model.template", or what detection saw). */
const char *conv_template_why(const Conversation *c);

/* Uses rag (borrowed; NULL = none) for retrieval and to store the turns. */
void conv_set_store(Conversation *c, Rag *rag);
/* Uses e (borrowed; NULL = none) to embed questions: with it the search is
** hybrid (keyword + vector), without it keyword only. */
void conv_set_embedder(Conversation *c, RagEmbedder *e);
/* Searches knowledge base name from now on (NULL or "" = none). Needs the
** store. Returns KB_OK; KB_ENOTFOUND (no such knowledge base); KB_EINVAL
** (no store); KB_EIO. */
int conv_set_kb(Conversation *c, const char *name);
/* The knowledge base in use, "" when none. */
const char *conv_kb(const Conversation *c);

/* Replaces the model in the follow-up rewrite (NULL = the model again). */
void conv_set_rewriter(Conversation *c, ConvRewriteFn fn, void *user);

/* Answers question: makes it standalone when there is history and a
** knowledge base, retrieves passages, builds the prompt within the
** context, and streams the answer to on_piece (which may cancel it). When
** the knowledge base has nothing on the question, the answer is the
** sentence saying so (rag_prompt_nothing_found), streamed the same way: the
** model is not asked to guess. The turn is then kept (even when cancelled:
** the answer so far) and stored.
** stats may be NULL. Returns KB_OK (stats->save_rc tells whether it was
** stored); KB_EINVAL (no model, or an empty question); KB_ERANGE (the
** question and system prompt alone do not fit the context); the retrieval
** or model's code (message in conv_errmsg). */
int conv_ask(Conversation *c, const char *question, KbPieceFn on_piece, void *user, ConvStats *stats /* OUT */);
/* Forgets the last turn (also in the store) and asks its question again.
** Returns as conv_ask; KB_ENOTFOUND when there is no turn. */
int conv_retry(Conversation *c, KbPieceFn on_piece, void *user, ConvStats *stats /* OUT */);

int conv_n_turns(const Conversation *c);
/* Turn i (0 = the first), or NULL. */
const RagTurn *conv_turn(const Conversation *c, int i);

/* Builds the prompt that asking user_msg (already grounded) would send:
** the system prompt, the most recent turns that fit, user_msg, with
** room for the answer. Fills out (appended) and stats' prompt fields.
** Returns KB_OK; KB_EINVAL (no model); KB_ERANGE (user_msg does not fit). */
int conv_build_prompt(Conversation *c, const char *user_msg, KbTokens *out, ConvStats *stats /* OUT */);

/* The text of the last prompt sent for an answer, and of the last rewrite
** prompt ("" when none). Owned by c; valid until the next question. */
const char *conv_last_prompt(const Conversation *c);
const char *conv_last_rewrite_prompt(const Conversation *c);

/* Adds a finished turn without asking (restoring, tests): copied. */
int conv_push_turn(Conversation *c, const RagTurn *t);

/* --- sessions --- */

/* Starts a new conversation: no turns, no session (the next answer creates
** one). The knowledge base stays. */
void conv_reset(Conversation *c);
/* The stored session of this conversation (0 before its first answer). */
int64_t conv_session(const Conversation *c);
const char *conv_title(const Conversation *c);
/* Replaces the turns by session id's, with its title and knowledge base (a
** knowledge base that no longer exists is turned off: *note, may be NULL,
** says so). Returns KB_OK; KB_EINVAL (no store); KB_ENOTFOUND; KB_EIO;
** KB_ENOMEM. */
int conv_open_session(Conversation *c, int64_t id, const char **note /* OUT */);
/* Renames the session (stored at once when it exists). Returns KB_OK;
** KB_EINVAL (empty title); KB_EIO. */
int conv_rename(Conversation *c, const char *title);
/* Writes the conversation as Markdown to out: title, model, template,
** knowledge base, then each question, answer, search query and numbered
** sources (file, page, section, the passage). Returns KB_OK or KB_EIO. */
int conv_export_markdown(const Conversation *c, FILE *out);

#endif /* KB_CONVERSATION_H */
