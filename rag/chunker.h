/*
** chunker.h: Chinese-aware recursive splitting of a document into chunks.
** Internal to rag/.
**
** The algorithm is the one Chinese users know from Langchain-Chatchat's
** ChineseRecursiveTextSplitter, so chunk boundaries match what they expect:
**
**   split(range, from level L):
**     take the first separator, at level L or later, that occurs in range:
**       0 "\n\n"   1 "\n"   2 "。" "！" "？"   3 ". " "! " "? " (any white space)
**       4 "；" or "; "   5 "，" or ", "
**     and beyond Chatchat's list, for text that has none of them (a long URL,
**     a table dump): 6 " ", then 7 single characters;
**     cut range after each occurrence (the separator stays with the piece
**     before it); collect pieces shorter than `size` characters and merge
**     runs of them into chunks of at most `size` characters, each chunk
**     starting with the last whole pieces of the previous one that fit in
**     `overlap` characters; a piece of `size` or more is split from the next
**     level on.
**   Each chunk is then stripped of surrounding white space and its runs of
**   newlines become one newline; empty chunks are dropped.
**
** Sizes count characters (code points), not bytes. So the overlap is made
** of whole sentences and may be shorter than `overlap`, or empty when the
** last sentence is longer (as in Chatchat).
**
** Token cap: the embedding model accepts a limited number of tokens, and
** Chinese text can have more tokens than characters/2. When count_tokens is
** given, a chunk with more than max_tokens tokens is split again with a
** smaller size (scaled by max_tokens/tokens, less 10%) until every piece
** fits or is 8 characters long.
*/
#ifndef KB_RAG_CHUNKER_H
#define KB_RAG_CHUNKER_H

#include <stddef.h>

#include "rag/doc.h"
#include "rag/rag.h"

typedef struct ChunkOptions {
    int size;        /* characters, >= 1 */
    int overlap;     /* characters, 0..size-1 */
    int max_tokens;  /* 0 = no token cap */
    RagTokenCountFn count_tokens;
    void *user;
} ChunkOptions;

typedef struct Chunk {
    size_t start, end;           /* byte range in the document text, stripped */
    size_t char_start, char_end; /* the same range in characters */
    int page;                    /* page the chunk starts on (1-based); 0 = no pages */
    const char *section;         /* points into the document's sections; NULL = none */
    char *text;                  /* malloc'd: the range, newline runs made one */
    size_t text_len;
} Chunk;

/* Splits doc's text into chunks. *out is a malloc'd array of *n_out chunks
** in document order (NULL when the text has none); free it with
** chunker_free. Sections point into doc, which must outlive the chunks.
** Returns KB_OK; KB_EINVAL (size < 1, overlap out of 0..size-1); KB_ENOMEM. */
int chunker_split(const RagDoc *doc, const ChunkOptions *opt, Chunk **out /* OUT */, int *n_out /* OUT */);

/* Frees n chunks and the array; chunker_free(NULL, 0) does nothing. */
void chunker_free(Chunk *chunks, int n);

#endif /* KB_RAG_CHUNKER_H */
