/*
** rag.h: the public API of kbchat's retrieval module.
**
** rag/ turns folders of PDF and text files into knowledge bases: it extracts
** text with poppler, splits it into Chinese-aware chunks, stores chunks,
** vectors and a keyword index in SQLite, and finds the passages that answer a
** question. It uses engine/ for embeddings and never touches the terminal.
** Like the engine, it never prints or exits: functions return KB_* codes.
*/
#ifndef KB_RAG_H
#define KB_RAG_H

/* Writes the versions of the libraries rag/ is built on (SQLite, poppler)
** into buf as one line, e.g. "SQLite 3.40.1, poppler 22.12.0". Returns buf. */
char *rag_library_versions(char *buf, unsigned long size);

#endif /* KB_RAG_H */
