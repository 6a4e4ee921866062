/*
** gguf.h: a validating reader for GGUF model files (versions 2 and 3).
**
** gguf_open() memory-maps the file read-only and parses the header, every
** metadata key/value and every tensor info. Everything is checked against the
** file size before use (see gguf.c for the list), so after a successful open:
**
**   1. every key and tensor name is unique, non-empty and NUL-free, and is
**      available as a NUL-terminated string owned by the handle; every
**      string value and string array element is NUL-free too (llama.cpp
**      reads them as C strings, so what follows a NUL would be lost);
**   2. every metadata value, string and array lies inside the mapping;
**   3. every tensor has 1..4 dims, positive sizes, a known type, ne[0] a
**      multiple of the type's block size, an element count and byte size that
**      do not overflow, an aligned offset, and data that lies inside the file
**      without overlapping another tensor.
**
** Values are not copied: strings are (pointer, length) pairs into the mapping
** and are NOT NUL-terminated. Numbers are read with memcpy, so unaligned
** values in the file are fine. The handle owns the mapping: pointers obtained
** from it are valid until gguf_close().
**
** Lookups by key or tensor name are O(log n).
*/
#ifndef KB_GGUF_H
#define KB_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GGUF_MAX_DIMS 4
#define GGUF_DEFAULT_ALIGNMENT 32
/* Limits that no real model approaches; they keep a hostile header from
** making us allocate gigabytes for bookkeeping. */
#define GGUF_MAX_TENSORS (1 << 20)
#define GGUF_MAX_KV (1 << 20)

/* Metadata value types, as stored in the file. */
typedef enum GgufValueType {
    GGUF_VT_UINT8 = 0,
    GGUF_VT_INT8 = 1,
    GGUF_VT_UINT16 = 2,
    GGUF_VT_INT16 = 3,
    GGUF_VT_UINT32 = 4,
    GGUF_VT_INT32 = 5,
    GGUF_VT_FLOAT32 = 6,
    GGUF_VT_BOOL = 7,
    GGUF_VT_STRING = 8,
    GGUF_VT_ARRAY = 9,
    GGUF_VT_UINT64 = 10,
    GGUF_VT_INT64 = 11,
    GGUF_VT_FLOAT64 = 12,
    GGUF_VT_COUNT
} GgufValueType;

/* One tensor, as described by its tensor info. */
typedef struct GgufTensor {
    const char *name;          /* NUL-terminated, owned by the handle */
    int n_dims;                /* 1..GGUF_MAX_DIMS */
    int64_t ne[GGUF_MAX_DIMS]; /* ne[0] innermost; dims past n_dims are 1 */
    int type;                  /* KbType (ggml type id), always known */
    uint64_t offset;           /* relative to the data section, aligned */
    uint64_t n_elements;       /* ne[0] * ne[1] * ne[2] * ne[3] */
    uint64_t n_bytes;          /* n_elements / block_size * type_size */
    const void *data;          /* into the mapping; n_bytes readable bytes */
} GgufTensor;

typedef struct GgufFile GgufFile;

/* Opens and validates the GGUF file at `path`.
** On success returns KB_OK and stores a new handle in *out (free with
** gguf_close). On failure *out is NULL, nothing is leaked, and `err` (when
** errlen > 0) holds one line naming the path, the field, its value and what
** was expected, e.g. "model.gguf: tensor 'blk.0.attn_q.weight' data ends at
** byte 9000 but the file has 4096 bytes (truncated download?)".
** Returns KB_EIO (cannot open/stat/map), KB_EFORMAT (not GGUF or malformed),
** KB_EUNSUPPORTED (big-endian, version 1 or > 3, a tensor type id that ggml
** removed), KB_ENOMEM. Tensor names are at most 63 bytes, as in ggml. */
int gguf_open(const char *path, GgufFile **out /* OUT */, char *err, size_t errlen);

/* Unmaps the file and frees the handle. gguf_close(NULL) is a no-op. */
void gguf_close(GgufFile *g);

/* --- file level --- */
uint32_t gguf_version(const GgufFile *g);
uint64_t gguf_file_size(const GgufFile *g);
uint64_t gguf_alignment(const GgufFile *g);    /* general.alignment or 32 */
uint64_t gguf_data_offset(const GgufFile *g);  /* start of the data section */
uint64_t gguf_kv_end_offset(const GgufFile *g);/* end of metadata = start of tensor infos */

/* --- metadata: by index --- */
int64_t gguf_n_kv(const GgufFile *g);
const char *gguf_kv_key(const GgufFile *g, int64_t i);     /* NUL-terminated */
GgufValueType gguf_kv_type(const GgufFile *g, int64_t i);
/* Returns the index of `key`, or -1 when absent. */
int64_t gguf_find_key(const GgufFile *g, const char *key);

/* Scalar reads of entry i. Each returns KB_OK, or KB_ETYPE when the entry is
** of another kind (the output is then left zero):
**   get_int   any integer type, not bool (llama.cpp refuses a bool where it
**             expects a number); UINT64 above INT64_MAX is KB_ERANGE
**   get_float FLOAT32 or FLOAT64 (integers are not converted)
**   get_bool  BOOL
**   get_str   STRING: *s points into the mapping, *len bytes, no NUL */
int gguf_kv_get_int(const GgufFile *g, int64_t i, int64_t *v /* OUT */);
int gguf_kv_get_float(const GgufFile *g, int64_t i, double *v /* OUT */);
int gguf_kv_get_bool(const GgufFile *g, int64_t i, bool *v /* OUT */);
int gguf_kv_get_str(const GgufFile *g, int64_t i, const char **s /* OUT */, size_t *len /* OUT */);

/* Arrays: element type and count of entry i (KB_ETYPE when not an array). */
int gguf_kv_get_arr(const GgufFile *g, int64_t i, GgufValueType *elem_type /* OUT */,
                    uint64_t *n /* OUT */);
/* Element j of array entry i. Same type rules as the scalar reads; j out of
** range is KB_ERANGE. */
int gguf_arr_get_int(const GgufFile *g, int64_t i, uint64_t j, int64_t *v /* OUT */);
int gguf_arr_get_float(const GgufFile *g, int64_t i, uint64_t j, double *v /* OUT */);
int gguf_arr_get_str(const GgufFile *g, int64_t i, uint64_t j, const char **s /* OUT */,
                     size_t *len /* OUT */);

/* The bytes of entry i's value exactly as the file stores them, for copying
** the entry to another file: a scalar's bytes; a string's uint64 length and
** bytes; an array's uint32 element type, uint64 count and elements. *data
** points into the mapping. Returns KB_OK, or KB_ENOTFOUND for a bad index. */
int gguf_kv_get_raw(const GgufFile *g, int64_t i, const void **data /* OUT */, uint64_t *len /* OUT */);

/* Lookups by key: the same as finding the key then reading it; a missing key
** is KB_ENOTFOUND. */
int gguf_get_int(const GgufFile *g, const char *key, int64_t *v /* OUT */);
int gguf_get_float(const GgufFile *g, const char *key, double *v /* OUT */);
int gguf_get_bool(const GgufFile *g, const char *key, bool *v /* OUT */);
int gguf_get_str(const GgufFile *g, const char *key, const char **s /* OUT */, size_t *len /* OUT */);

/* Returns the size in bytes of a fixed-size value type (uint8 ... float64,
** bool), 0 for string, array and invalid ids. */
uint64_t gguf_value_type_size(int vt);

/* Returns the name of a value type ("uint32", "array", ...). */
const char *gguf_value_type_name(int vt);

/* --- tensors --- */
int64_t gguf_n_tensors(const GgufFile *g);
/* Tensor i in file order (0 <= i < gguf_n_tensors). */
const GgufTensor *gguf_tensor(const GgufFile *g, int64_t i);
/* Returns the tensor named `name`, or NULL. */
const GgufTensor *gguf_find_tensor(const GgufFile *g, const char *name);

#endif /* KB_GGUF_H */
