/*
** app.h: the public API of kbchat's application layer.
**
** app/ ties the modules together: it reads the configuration, parses the
** command line, and (in later versions) keeps conversations. ui/ calls only
** this header. Only app/main.c prints to the terminal's streams on its own
** behalf or exits; the functions here write to the FILE they are given.
*/
#ifndef KB_APP_H
#define KB_APP_H

#include <stddef.h>
#include <stdio.h>

#include "app/config.h"
#include "app/conversation.h"

#define KB_VERSION "0.1.0"

/* Prints a summary of the GGUF model at path to out: architecture, name,
** context length, layer/head/embedding sizes, vocabulary and tokenizer, chat
** template (first line), parameter count, size on disk and a table of tensor
** types. Reads only the file's header region.
** Returns KB_OK, or the gguf_open code with the message in err. */
int model_info_print(const char *path, FILE *out, char *err, size_t errlen);

#endif /* KB_APP_H */
