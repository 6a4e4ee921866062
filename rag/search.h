/*
** search.h: the pieces of rag_retrieve (search.c): a question's keyword
** terms (query.c) and the candidates both retrievers return, merged into
** passages (passage.c). Internal to rag/.
*/
#ifndef KB_RAG_SEARCH_H
#define KB_RAG_SEARCH_H

#include <stdint.h>

#include "rag/store.h"

/* --- question terms (query.c) --- */

#define QTERM_MAX 128 /* bytes of a term; the tokenizer keeps words to this */

/* One keyword of a question: a lower-cased word, its stem matched as a
** prefix ("cleaning" -> clean*), or a Chinese character bigram. */
typedef struct QTerm {
    char text[QTERM_MAX + 8];
    int prefix;       /* match tokens that start with text */
    int64_t df;       /* chunks of the knowledge base containing it */
    double idf;       /* BM25's ln(1 + (N - df + 0.5) / (df + 0.5)) */
    double rank_idf;  /* FTS5's ln((N - df + 0.5) / (df + 0.5)), at least 1e-6:
                         the weight kb_bm25 ranks with */
} QTerm;

typedef struct QTerms {
    QTerm *t;
    int n, cap;
    int64_t n_docs;   /* N: chunks of the knowledge base */
    double avgdl;     /* their average length in tokens */
} QTerms;

/* Extracts the terms of question q: the kbcjk tokenizer's tokens, without
** English stop words and Chinese function-word bigrams, English words of 4
** letters or more reduced to a stem matched as a prefix, duplicates once.
** Returns KB_OK or KB_ENOMEM (*out is then empty). Free with query_free. */
int query_terms(const char *q, QTerms *out /* OUT */);
void query_free(QTerms *t);

/* Counts the chunks of knowledge base kb, their average length, and each
** term's chunks in it, drops the terms none has (cross-word bigrams such as
** 库问, words the documents lack), then sets the idf. Every figure is the
** knowledge base's own, so its scores do not depend on other knowledge
** bases or on how often it was re-indexed.
** Returns KB_OK; KB_EIO; KB_ENOMEM. */
int query_weigh(Rag *rag, int64_t kb, QTerms *t);

/* The kb_bm25 figures of knowledge base kb for n FTS5 phrases (each a
** valid phrase, as a MATCH expression of its own): the average chunk length
** in *avgdl and each phrase's idf, computed from the knowledge base's chunk
** count and the number of its chunks matching the phrase, in weights[0..n).
** Returns KB_OK; KB_EIO. */
int query_phrase_weights(Rag *rag, int64_t kb, const char *const *phrases, int n, double *weights /* OUT */,
                         double *avgdl /* OUT */);

/* The kb_bm25 weights of the terms query_match puts in its expression, in
** its order: a malloc'd array of *n doubles (NULL when n is 0), or NULL
** with *n = -1 when out of memory. */
double *query_rank_weights(const QTerms *t, int *n /* OUT */);

/* The FTS5 expression OR-ing the terms, every term quoted; a common term
** (in more than a tenth of the chunks and more than 1000 of them) is left
** out when rarer ones exist: BM25 would score a large part of the database
** for a term that ranks little (it still counts in query_coverage).
** Returns a malloc'd string ("" when there are no terms) or NULL when out of
** memory. */
char *query_match(const QTerms *t);

/* The share of the question's terms that text contains, each weighted by
** its idf: 0 (none) .. 1 (all). */
double query_coverage(const QTerms *t, const char *text);

/* --- candidates and passages (passage.c) --- */

/* A chunk found by either retriever, or (after passage_merge) a passage of
** consecutive chunks of one document. */
typedef struct Cand {
    int64_t id, doc_id;
    int seq_first, seq_last;
    int page;
    char *file, *section, *text;  /* malloc'd */
    int bm25_rank, vec_rank;      /* 1-based rank in each list; 0 = absent */
    double bm25;                  /* negated FTS5 bm25 (higher = better) */
    double cosine;                /* when vec_rank > 0 */
    double relevance;             /* 0..1, compared with the threshold */
    double score;                 /* what the passages are ordered by */
} Cand;

void cand_clear(Cand *c);

/* Merges c into p when they are neighbouring chunks of one document (p's
** last chunk followed by c, or c followed by p's first): the text shared by
** their overlap appears once. Keeps p's score and the better rank and
** relevance of the two. Returns 1 merged, 0 not neighbours, -1 out of memory. */
int passage_merge(Cand *p, const Cand *c);

/* True when text ends a sentence (。！？.!?… and closing quotes/brackets). */
int passage_ends_sentence(const char *text);

/* The byte length of text up to and including the end of its first
** sentence (。！？… or . ! ? before white space, with closing quotes; a
** newline ends it too, before the newline), or 0 when none ends within
** max_chars characters. */
size_t passage_sentence_end(const char *text, int max_chars);

/* When p stops mid-sentence, appends from next_text (the chunk after p's
** last) what follows p's text up to the end of that sentence, at most
** PASSAGE_EXPAND_MAX characters; p->seq_last advances when it does.
** Returns KB_OK or KB_ENOMEM. */
#define PASSAGE_EXPAND_MAX 200
int passage_expand(Cand *p, const char *next_text);

/* The byte length of the longest suffix of a that is a prefix of b (cut at
** a character boundary): the overlap two consecutive chunks share. */
size_t passage_overlap(const char *a, size_t na, const char *b, size_t nb);

#endif /* KB_RAG_SEARCH_H */
