/*
** version.c: the library versions rag/ runs on, for `kbchat --version` and
** bug reports (a knowledge base's behaviour depends on SQLite's FTS5 and on
** poppler's text extraction, both of which change between releases).
*/
#include <stdio.h>

#include <poppler.h>
#include <sqlite3.h>

#include "rag/rag.h"

char *rag_library_versions(char *buf, unsigned long size)
{
    snprintf(buf, size, "SQLite %s, poppler %s", sqlite3_libversion(), poppler_get_version());
    return buf;
}
