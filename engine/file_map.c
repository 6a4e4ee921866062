/*
** file_map.c: mapping a model file and reading it through a bounds-checked
** cursor (file_map.h).
*/
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/engine.h"
#include "engine/file_map.h"

int fc_fail(FileCursor *c, int rc, const char *fmt, ...)
{
    if (c->err && c->errlen > 0) {
        int n = snprintf(c->err, c->errlen, "%s: ", c->path);
        if (n < 0) n = 0;
        if ((size_t)n < c->errlen) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(c->err + n, c->errlen - (size_t)n, fmt, ap);
            va_end(ap);
        }
    }
    return rc;
}

const char *fc_quote(char *buf, size_t cap, const uint8_t *s, uint64_t len)
{
    size_t o = 0;
    buf[o++] = '\'';
    for (uint64_t i = 0; i < len && o + 8 < cap; i++) {
        if (i >= 64) {
            memcpy(buf + o, "...", 3);
            o += 3;
            break;
        }
        uint8_t ch = s[i];
        if (ch >= 0x20 && ch < 0x7f && ch != '\\' && ch != '\'') buf[o++] = (char)ch;
        else o += (size_t)snprintf(buf + o, cap - o, "\\x%02x", ch);
    }
    buf[o++] = '\'';
    buf[o] = '\0';
    return buf;
}

int fc_read(FileCursor *c, void *out, uint64_t n, const char *what)
{
    if (n > c->size - c->pos) {
        return fc_fail(c, KB_EFORMAT, "file ends at byte %llu while reading %s at byte %llu (truncated download?)",
                       (unsigned long long)c->size, what, (unsigned long long)c->pos);
    }
    memcpy(out, c->map + c->pos, (size_t)n);
    c->pos += n;
    return KB_OK;
}

int fc_map(FileCursor *c, const char *kind)
{
    int fd = open(c->path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) return fc_fail(c, KB_EIO, "cannot open: %s", strerror(errno));
    struct stat st;
    int rc = KB_OK;
    if (fstat(fd, &st) != 0) {
        rc = fc_fail(c, KB_EIO, "cannot stat: %s", strerror(errno));
    } else if (S_ISDIR(st.st_mode)) {
        rc = fc_fail(c, KB_EIO, "is a directory, not a %s file", kind);
    } else if (!S_ISREG(st.st_mode)) {
        rc = fc_fail(c, KB_EIO, "not a regular file");
    } else if (st.st_size == 0) {
        rc = fc_fail(c, KB_EFORMAT, "empty file (0 bytes), not a %s model", kind);
    } else {
        void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            rc = fc_fail(c, KB_EIO, "cannot map %llu bytes: %s", (unsigned long long)st.st_size, strerror(errno));
        } else {
            c->map = m;
            c->size = (uint64_t)st.st_size;
        }
    }
    close(fd);
    return rc;
}

void fc_unmap(const uint8_t *map, uint64_t size)
{
    if (map) munmap((void *)map, (size_t)size);
}
