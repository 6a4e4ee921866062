/*
** app.h: the public API of kbchat's application layer.
**
** app/ ties the modules together: it reads the configuration, parses the
** command line, and keeps conversations (chat.h). ui/ calls only
** this header. Only app/main.c prints to the terminal's streams on its own
** behalf or exits; the functions here write to the FILE they are given.
*/
#ifndef KB_APP_H
#define KB_APP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "app/config.h"
#include "app/conversation.h"
#include "app/chat.h"
#include "app/term_text.h"

#define KB_VERSION "0.1.0"

/* Prints a summary of the GGUF model at path to out: architecture, name,
** context length, layer/head/embedding sizes, vocabulary and tokenizer, chat
** template (first line), parameter count, size on disk and a table of tensor
** types. Reads only the file's header region. Then checks that the model
** loads, with the engine's own check (model_check): every tensor present
** with its shape and a type the kernels run, consistent hyperparameters, a
** tokenizer that loads. With vocab_only_ok, a file without any tensor (a
** vocabulary for `kbchat tokenize`) passes when its tokenizer loads.
** Returns KB_OK; the gguf_open code when nothing could be read; the
** model_check code after the summary when the model cannot be loaded. The
** message in err names the file and what is wrong. */
int model_info_print(const char *path, bool vocab_only_ok, FILE *out, char *err, size_t errlen);

/* --- paths typed by the user (path.c) --- */

/* path with a leading "~" or "~/" replaced by $HOME (malloc'd, caller
** frees; NULL when out of memory). */
char *path_expand_home(const char *path);
/* The file name part of path (after its last '/'; path itself when it has
** none), pointing into path. */
const char *path_base_name(const char *path);
/* Completes the last name of typed, a path relative to the current
** directory (a leading ~ is $HOME), as a shell's Tab does: *out (malloc'd,
** caller frees) is typed extended by the longest common prefix of the
** names that fit, plus '/' when the one that fits is a folder; list gets
** the candidates (folders ending in '/') separated by two spaces, cut to
** listlen. Hidden names count only when the typed name starts with '.'.
** Returns the number of candidates (0: none, or the folder is unreadable;
** *out is then a copy of typed), or -1 when out of memory. */
int path_complete(const char *typed, char **out /* OUT */, char *list, size_t listlen);

/* Writes a private file (an export of a conversation) safely: write(f,
** user) fills a temporary file (mode 0600) in path's folder, which then
** takes path's name in one step (rename), so a failure never leaves half a
** file and a reader never sees one. An existing path is kept unless
** overwrite. On failure err gets the reason, naming path.
** Returns KB_OK; KB_EINVAL (path exists and overwrite is 0: err says so);
** KB_EIO; write's code. */
int path_write_private(const char *path, int overwrite, int (*write)(FILE *f, void *user), void *user, char *err,
                       size_t errlen);

#endif /* KB_APP_H */
