/*
** gguf_write.h: a streaming GGUF v3 writer.
**
** A file is described first, then its tensor data streamed in, never held
** whole in memory:
**
**     GgufWriter *w;
**     gguf_writer_open("out.gguf", &w, err, sizeof err);
**     gguf_writer_kv_str(w, "general.architecture", "llama", 5);
**     gguf_writer_copy_kv(w, in, i);                  (any entry of a GgufFile)
**     gguf_writer_add_tensor(w, "blk.0.attn_q.weight", 2, ne, KB_TYPE_Q4_K);
**     gguf_writer_write_header(w);                    (header, metadata, infos)
**     gguf_writer_write_data(w, bytes, n);            (in tensor order, any chunking)
**     gguf_writer_finish(w);                          (checks, renames into place)
**     gguf_writer_close(w);
**
** Layout (engine-reference.md): magic, version 3, tensor count, key/value
** count; the key/values in the order added; the tensor infos in the order
** added, each offset aligned; zero padding to the alignment; the data, each
** tensor padded to the alignment. The alignment is 32, or the value of a
** general.alignment key (uint32, a power of two) when one is added.
**
** Atomicity: gguf_writer_open creates a temporary file next to the target
** (".NAME.tmp-PID-N" in the same directory, so the final rename cannot cross
** file systems). gguf_writer_finish renames it over the target; closing a
** writer that did not finish removes it. A failed or interrupted run
** therefore never leaves a half-written file under the target's name, and an
** existing target is replaced only by a complete file (which takes over its
** permissions).
**
** Every function returns a KB_* code; after a failure the writer only
** accepts gguf_writer_close, and gguf_writer_errmsg says what went wrong
** (naming the file, key or tensor).
*/
#ifndef KB_GGUF_WRITE_H
#define KB_GGUF_WRITE_H

#include <stddef.h>
#include <stdint.h>

#include "engine/gguf.h"

typedef struct GgufWriter GgufWriter;

/* Creates the temporary file for `path`. A symbolic link is followed (the
** file it points to is replaced, the link kept). Returns KB_OK; KB_EIO (the
** directory is missing or not writable: err names it and the reason);
** KB_EINVAL (path exists and is not a regular file, e.g. /dev/null or a
** directory: renaming over it would replace the device node); KB_ENOMEM.
** On failure *out is NULL. */
int gguf_writer_open(const char *path, GgufWriter **out /* OUT */, char *err, size_t errlen);

/* Removes the temporary file unless gguf_writer_finish succeeded, and frees
** the writer. gguf_writer_close(NULL) is a no-op. */
void gguf_writer_close(GgufWriter *w);

/* The message of the last failure ("" when none). */
const char *gguf_writer_errmsg(const GgufWriter *w);

/* --- metadata: before gguf_writer_write_header. A key is 1..65535 bytes,
** NUL-free (a C string) and may appear once: a repeat is KB_EINVAL. --- */
int gguf_writer_kv_u8(GgufWriter *w, const char *key, uint8_t v);
int gguf_writer_kv_i8(GgufWriter *w, const char *key, int8_t v);
int gguf_writer_kv_u16(GgufWriter *w, const char *key, uint16_t v);
int gguf_writer_kv_i16(GgufWriter *w, const char *key, int16_t v);
int gguf_writer_kv_u32(GgufWriter *w, const char *key, uint32_t v);
int gguf_writer_kv_i32(GgufWriter *w, const char *key, int32_t v);
int gguf_writer_kv_u64(GgufWriter *w, const char *key, uint64_t v);
int gguf_writer_kv_i64(GgufWriter *w, const char *key, int64_t v);
int gguf_writer_kv_f32(GgufWriter *w, const char *key, float v);
int gguf_writer_kv_f64(GgufWriter *w, const char *key, double v);
int gguf_writer_kv_bool(GgufWriter *w, const char *key, bool v);
/* A string of len bytes (any bytes but NUL, which is KB_EINVAL: readers
** take GGUF strings as C strings). */
int gguf_writer_kv_str(GgufWriter *w, const char *key, const char *s, size_t len);
/* An array of n fixed-size values of elem_type (uint8 .. float64, bool),
** given as n * gguf_value_type_size(elem_type) little-endian bytes. */
int gguf_writer_kv_arr(GgufWriter *w, const char *key, GgufValueType elem_type, const void *data, uint64_t n);
/* An array of n NUL-terminated strings. */
int gguf_writer_kv_arr_str(GgufWriter *w, const char *key, const char *const *s, uint64_t n);
/* Copies entry i of g (key, type and value, arrays of strings included)
** byte for byte. */
int gguf_writer_copy_kv(GgufWriter *w, const GgufFile *g, int64_t i);

/* Number of key/values added so far. */
int64_t gguf_writer_n_kv(const GgufWriter *w);

/* --- tensors --- */

/* Adds a tensor info: name 1..63 bytes, unique; 1..4 dims, each > 0;
** ne[0] a multiple of type's block size; a known type. Its data size is
** n_elements / block_size * type_size and its offset the next aligned one.
** Returns KB_OK, KB_EINVAL (bad name, shape or type: the message says which),
** KB_ERANGE (sizes overflow), KB_ENOMEM. Before gguf_writer_write_header. */
int gguf_writer_add_tensor(GgufWriter *w, const char *name, int n_dims, const int64_t *ne, int type);

/* Bytes of tensor i's data (without padding), or 0 for a bad index. */
uint64_t gguf_writer_tensor_size(const GgufWriter *w, int64_t i);

/* Writes the header, metadata, tensor infos and padding. After this, only
** tensor data may follow. Returns KB_OK, KB_EINVAL (called twice, or a
** general.alignment key that is not a uint32 power of two), KB_EIO. */
int gguf_writer_write_header(GgufWriter *w);

/* Appends len bytes of tensor data: the tensors' bytes in the order they
** were added, split into calls however the caller likes; the padding
** between tensors is written automatically. Writing past the last tensor's
** end is KB_EINVAL; a failed write is KB_EIO (disk full: the message says). */
int gguf_writer_write_data(GgufWriter *w, const void *data, size_t len);

/* Checks that every tensor's data was written, flushes, closes and renames
** the temporary file to the target. Returns KB_OK, KB_EINVAL (data missing:
** the message names the first incomplete tensor), KB_EIO. */
int gguf_writer_finish(GgufWriter *w);

/* Bytes written so far (the whole file once finished). */
uint64_t gguf_writer_bytes_written(const GgufWriter *w);

#endif /* KB_GGUF_WRITE_H */
