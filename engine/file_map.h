/*
** file_map.h: a model file mapped read-only and a bounds-checked cursor over
** it, shared by the GGUF reader (gguf.c) and the chatglm.cpp GGML reader
** (ggml_file.c). Internal to engine/.
**
** Both readers treat the file as hostile: every read goes through fc_read,
** which checks the bytes exist before copying them, and every problem is
** reported once, as "path: message", into the caller's buffer.
*/
#ifndef KB_FILE_MAP_H
#define KB_FILE_MAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct FileCursor {
    const uint8_t *map;  /* the file, mapped read-only; NULL until fc_map */
    uint64_t size;       /* bytes of the file */
    uint64_t pos;        /* where the next read starts */
    const char *path;    /* as the caller gave it, for messages */
    char *err;           /* where messages go (may be NULL) */
    size_t errlen;
} FileCursor;

/* Maps c->path read-only into c->map and c->size (the descriptor is closed
** again at once; a FIFO or device never blocks the open). kind ("GGUF",
** "GGML") names the expected format in messages. Returns KB_OK; KB_EIO
** (cannot open, stat or map; a directory or not a regular file);
** KB_EFORMAT (an empty file). */
int fc_map(FileCursor *c, const char *kind);

/* Unmaps what fc_map mapped (map may be NULL). */
void fc_unmap(const uint8_t *map, uint64_t size);

/* Formats "path: message" into c->err and returns rc. */
int fc_fail(FileCursor *c, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Copies n bytes at the cursor into out and advances; `what` names the
** field for the truncation message. Returns KB_OK or KB_EFORMAT. */
int fc_read(FileCursor *c, void *out, uint64_t n, const char *what);

/* Writes a printable, quoted form of the (hostile) bytes s[0..len) into buf
** (cap >= 16): non-printable bytes become \xNN and long names are cut with
** "...". Returns buf. */
const char *fc_quote(char *buf, size_t cap, const uint8_t *s, uint64_t len);

#endif /* KB_FILE_MAP_H */
