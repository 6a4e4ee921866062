/*
** engine.h: the public API of kbchat's inference engine.
**
** The engine reads model files (GGUF), knows the quantized tensor formats and
** runs the models (tokenizers, forward passes, sampling). It knows nothing of rag/, ui/ or app/:
** it never prints and never exits; every function returns a KB_* status code
** and leaves a message in its handle (or in a caller-supplied buffer when no
** handle exists yet).
**
** This header is the only one other modules include. It gathers:
**   - status codes shared by every module (KB_OK, KB_ENOMEM, ...), kb_strerror()
**   - the tensor type table (quant.h); the numeric kernels (kernels.h) are
**     internal to engine/
**   - the GGUF reader (gguf.h) and the streaming writer (gguf_write.h)
**   - the reader of chatglm.cpp's GGML files (ggml_file.h)
**   - weight quantization and llama.cpp's per-tensor type rules (quantize.h)
**   - tokenizers: text <-> token ids (tokenizer.h)
**   - models: loading and evaluation (model.h), sampling (sampler.h)
**   - chat templates: conversations -> prompts (template.h)
*/
#ifndef KB_ENGINE_H
#define KB_ENGINE_H

#include <stddef.h>
#include <stdint.h>

/* Status codes. 0 is success; every failure is a small positive number so
** callers can chain `if (rc == KB_OK)`. */
enum {
    KB_OK = 0,
    KB_ENOMEM,      /* an allocation failed */
    KB_EIO,         /* the operating system refused a read, open or map */
    KB_EFORMAT,     /* the input is malformed (bad magic, bounds, lengths) */
    KB_EUNSUPPORTED,/* well-formed but not something kbchat can use */
    KB_ENOTFOUND,   /* a key, tensor or file that was asked for is absent */
    KB_ETYPE,       /* a value exists but has another type than asked for */
    KB_ERANGE,      /* a number or index is outside the allowed range */
    KB_EINVAL,      /* the caller passed an invalid argument */
    KB_ECANCELLED,  /* stopped on request (a cancel flag) before finishing */
    KB_STATUS_COUNT
};

/* Returns a short constant English name for a status code ("out of memory"). */
const char *kb_strerror(int rc);

/* Formats a message into err (at most errlen bytes, when err is not NULL)
** and returns rc: the one way engine functions without a handle report a
** failure, as in `return kb_error(err, errlen, KB_EFORMAT, "...", ...)`. */
int kb_error(char *err, size_t errlen, int rc, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Returns a one-line description of the BLAS library kbchat is linked with
** (OpenBLAS's build configuration string). The string is static. */
const char *engine_blas_info(void);

#include "engine/quant.h"
#include "engine/gguf.h"
#include "engine/gguf_write.h"
#include "engine/quantize.h"
#include "engine/tokenizer.h"
#include "engine/ggml_file.h"
#include "engine/model.h"
#include "engine/sampler.h"
#include "engine/template.h"

#endif /* KB_ENGINE_H */
