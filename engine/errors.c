/*
** errors.c: names of the KB_* status codes, and the one helper that
** formats a failure into a caller's buffer.
*/
#include <stdarg.h>
#include <stdio.h>

#include "engine/engine.h"

/* Returns a constant description of status code rc; unknown codes get
** "unknown error" rather than NULL so callers can print the result directly. */
const char *kb_strerror(int rc)
{
    static const char *const names[KB_STATUS_COUNT] = {
        [KB_OK] = "ok",
        [KB_ENOMEM] = "out of memory",
        [KB_EIO] = "input/output error",
        [KB_EFORMAT] = "malformed input",
        [KB_EUNSUPPORTED] = "unsupported",
        [KB_ENOTFOUND] = "not found",
        [KB_ETYPE] = "wrong type",
        [KB_ERANGE] = "out of range",
        [KB_EINVAL] = "invalid argument",
        [KB_ECANCELLED] = "cancelled",
    };
    if (rc < 0 || rc >= KB_STATUS_COUNT) return "unknown error";
    return names[rc];
}

/* See engine.h: err may be NULL or errlen 0 (the message is dropped). */
int kb_error(char *err, size_t errlen, int rc, const char *fmt, ...)
{
    if (err != NULL && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return rc;
}
