/*
** ggufgen.h: builds GGUF files in memory, for tests.
**
** A test describes a file piece by piece and gets back the bytes:
**
**     GgufGen *gg = ggufgen_new(3);
**     ggufgen_kv_str(gg, "general.architecture", "llama");
**     ggufgen_kv_u32(gg, "general.alignment", 64);
**     ggufgen_set_alignment(gg, 64);             (layout: padding and offsets)
**     int64_t ne[2] = {32, 4};
**     int t = ggufgen_tensor(gg, "w", 2, ne, KB_TYPE_F32);
**     size_t len;
**     uint8_t *buf = ggufgen_finish(gg, &len);   (malloc'd; caller frees)
**     ggufgen_free(gg);
**
** The writer follows the GGUF layout of ../shared/docs/engine-reference.md:
** header (magic, uint32 version, uint64 n_tensors, uint64 n_kv), the key/values
** in the order they were added, the tensor infos in the order they were
** added, zero padding to the alignment, then the data section.
**
** It checks nothing, so tests can craft malformed files precisely:
**   - header fields can be overridden (magic, counts, byte order);
**   - ggufgen_kv_raw() starts a key/value whose bytes the test writes itself
**     with ggufgen_put_*() (bad lengths, unknown type ids, nested arrays ...);
**   - each tensor info's name length field, n_dims field, dims, type and
**     offset can be set to any value; the data section size can be cut short
**     or extended.
**
** Unless overridden, tensor offsets are assigned at ggufgen_finish() in the
** order the tensors were added, each aligned to the layout alignment, and the
** data section ends exactly where the last tensor's data ends. A tensor's byte
** size is n_elements / block_size * type_size from kb_type_info() (rows are
** rounded up to whole blocks when ne[0] is not a multiple of the block size);
** an unknown type or a size that overflows gets 0 bytes. Each tensor's bytes
** are a deterministic pattern (ggufgen_pattern_byte) unless the test gives
** the contents with ggufgen_tensor_data().
**
** Memory: malloc/realloc, no failure handling beyond abort() (tests only).
*/
#ifndef KB_GGUFGEN_H
#define KB_GGUFGEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/engine.h"

typedef struct GgufGen GgufGen;

/* When to write the zero padding after the tensor infos. */
typedef enum GgufGenPad {
    GGUFGEN_PAD_AUTO,   /* pad when there is at least one tensor (default) */
    GGUFGEN_PAD_ALWAYS, /* pad even with no tensors */
    GGUFGEN_PAD_NEVER   /* never pad: the data section starts right after the infos */
} GgufGenPad;

/* Creates an empty file description with the given version field.
** Free with ggufgen_free (ggufgen_free(NULL) is a no-op). */
GgufGen *ggufgen_new(uint32_t version);
void ggufgen_free(GgufGen *gg);

/* --- header and layout --- */

/* Overrides the 4 magic bytes (default "GGUF"). */
void ggufgen_set_magic(GgufGen *gg, const char magic[4]);
/* Writes every number (header, metadata, tensor infos) big-endian. Must be
** called before anything is added to the metadata. */
void ggufgen_set_big_endian(GgufGen *gg, bool on);
/* Overrides the counts written in the header (default: the number of
** tensors / key-values added). */
void ggufgen_set_n_tensors(GgufGen *gg, uint64_t n);
void ggufgen_set_n_kv(GgufGen *gg, uint64_t n);
/* Layout alignment used for the padding and the automatic offsets
** (default 32). It does NOT write general.alignment: add that key yourself
** (so tests can make them disagree). 0 is treated as 1 for the layout. */
void ggufgen_set_alignment(GgufGen *gg, uint64_t alignment);
void ggufgen_set_padding(GgufGen *gg, GgufGenPad mode);
/* Makes the data section exactly n bytes long: shorter cuts tensor data off
** (a truncated download), longer appends zero bytes after the last tensor. */
void ggufgen_set_data_size(GgufGen *gg, uint64_t n);

/* --- metadata (each call adds one key/value and counts it) --- */

void ggufgen_kv_u8(GgufGen *gg, const char *key, uint8_t v);
void ggufgen_kv_i8(GgufGen *gg, const char *key, int8_t v);
void ggufgen_kv_u16(GgufGen *gg, const char *key, uint16_t v);
void ggufgen_kv_i16(GgufGen *gg, const char *key, int16_t v);
void ggufgen_kv_u32(GgufGen *gg, const char *key, uint32_t v);
void ggufgen_kv_i32(GgufGen *gg, const char *key, int32_t v);
void ggufgen_kv_f32(GgufGen *gg, const char *key, float v);
void ggufgen_kv_bool(GgufGen *gg, const char *key, bool v);
void ggufgen_kv_u64(GgufGen *gg, const char *key, uint64_t v);
void ggufgen_kv_i64(GgufGen *gg, const char *key, int64_t v);
void ggufgen_kv_f64(GgufGen *gg, const char *key, double v);
void ggufgen_kv_str(GgufGen *gg, const char *key, const char *s);
/* A string value of n bytes (may hold NUL bytes). */
void ggufgen_kv_strn(GgufGen *gg, const char *key, const char *s, size_t n);
/* An array of n numbers of value type elem_type (0..7, 10..12), given as a C
** array of the matching C type (uint8_t, int8_t, ... float, bool as uint8_t,
** uint64_t, int64_t, double). */
void ggufgen_kv_arr(GgufGen *gg, const char *key, int elem_type, const void *elems, uint64_t n);
/* An array of n NUL-terminated strings. */
void ggufgen_kv_arr_str(GgufGen *gg, const char *key, const char *const *strs, uint64_t n);

/* Raw key/values: ggufgen_kv_raw counts one key/value and writes nothing; the
** test then writes its bytes with the ggufgen_put_* calls below, which append
** to the metadata section (numbers in the file's byte order). */
void ggufgen_kv_raw(GgufGen *gg);
/* Counts one key/value and writes its key (uint64 length + bytes) and its
** int32 type id; the test then writes the value with ggufgen_put_*. */
void ggufgen_kv_begin(GgufGen *gg, const char *key, int32_t type);
void ggufgen_put_u8(GgufGen *gg, uint8_t v);
void ggufgen_put_u16(GgufGen *gg, uint16_t v);
void ggufgen_put_u32(GgufGen *gg, uint32_t v);
void ggufgen_put_i32(GgufGen *gg, int32_t v);
void ggufgen_put_u64(GgufGen *gg, uint64_t v);
void ggufgen_put_f32(GgufGen *gg, float v);
void ggufgen_put_f64(GgufGen *gg, double v);
/* A GGUF string: uint64 length n, then n bytes. */
void ggufgen_put_str(GgufGen *gg, const char *s);
void ggufgen_put_strn(GgufGen *gg, const char *s, size_t n);
void ggufgen_put_bytes(GgufGen *gg, const void *p, size_t n);

/* --- tensor infos --- */

/* Adds a tensor info; returns its index (0, 1, ...). n_dims may be 0..8 (ne
** then holds n_dims values, NULL when 0) so tests can write invalid counts. */
int ggufgen_tensor(GgufGen *gg, const char *name, int n_dims, const int64_t *ne, int type);
/* The same with a name of name_len bytes (may hold NUL bytes). */
int ggufgen_tensor_n(GgufGen *gg, const char *name, size_t name_len, int n_dims, const int64_t *ne,
                     int type);
/* Overrides written fields of tensor i: the name's length field (the name's
** bytes are still written as given), the n_dims field (the dims written stay
** those given to ggufgen_tensor), the offset (default: automatic). */
void ggufgen_tensor_set_name_len(GgufGen *gg, int i, uint64_t len_field);
void ggufgen_tensor_set_n_dims(GgufGen *gg, int i, uint32_t n_dims_field);
void ggufgen_tensor_set_offset(GgufGen *gg, int i, uint64_t offset);
/* Gives the bytes of tensor i's data (n bytes from its offset; the rest of
** its data keeps the pattern). The pointer must stay valid until finish. */
void ggufgen_tensor_data(GgufGen *gg, int i, const void *data, size_t n);
/* The byte size the generator computed for tensor i (see the file comment). */
uint64_t ggufgen_tensor_nbytes(const GgufGen *gg, int i);

/* --- copies of real files --- */

/* Starts a description of a copy of the opened file g: its version,
** alignment, every key/value (byte for byte, in file order) but skip_key,
** and every tensor (name, shape, type and data) but skip_tensor (either
** NULL: none skipped). The test then adds what it changes: a key/value or
** tensor of the same name as the one skipped, or a new one. The tensor data
** points into g's mapping: keep g open until ggufgen_finish/write. */
GgufGen *ggufgen_copy(const GgufFile *g, const char *skip_key, const char *skip_tensor);

/* --- output --- */

/* Lays the file out and returns its bytes (malloc'd, free() them) and length.
** May be called more than once. After it, the accessors below describe the
** layout of the last returned buffer. */
uint8_t *ggufgen_finish(GgufGen *gg, size_t *len /* OUT */);
/* ggufgen_finish, then writes the bytes to path. Returns 0 on success. */
int ggufgen_write(GgufGen *gg, const char *path);

uint64_t ggufgen_kv_end_offset(const GgufGen *gg);   /* end of metadata = start of infos */
uint64_t ggufgen_info_end_offset(const GgufGen *gg); /* end of the tensor infos */
uint64_t ggufgen_data_offset(const GgufGen *gg);     /* start of the data section */
uint64_t ggufgen_tensor_offset(const GgufGen *gg, int i); /* offset written for tensor i */

/* The pattern byte at byte k of tensor i's data (when not given explicitly). */
uint8_t ggufgen_pattern_byte(int i, uint64_t k);

/* --- a model that says what it is told --- */

/* Writes to path a one-layer llama model (n_embd 32, a context of 4096)
** whose greedy continuation is scripted: its vocabulary is toks[0..n)
** (n <= 32, types KB_TOKTYPE_* in types; ids 0, 1, 2 must be <unk>, <s>,
** </s>), every layer weight is zero, so the hidden state is the current
** token's one-hot embedding, and output.weight maps token i to next[i]: the
** model then always answers next[last token], next[next[...]] and so on.
** Returns 0, or -1 when the file cannot be written. */
int ggufgen_write_scripted_llama(const char *path, const char *const *toks, const int32_t *types, int n,
                                 const int *next);

/* A scripted model (above) whose answer, after any prompt, is hostile to
** a terminal: an OSC title, an OSC 52 clipboard write, the raw controls
** 0x0B and 0x19 and a C1 CSI, a CJK character cut over three byte-fallback
** tokens, then " ok" and the end of text. What it
** writes, and how docs/output.md says kbchat shows it: */
#define GGUFGEN_HOSTILE_RAW "\x1b]0;pwned\x07\x1b]52;c;aGk=\x07\x0b\x19\xe4\xb8\xad\xc2\x9b" "31m ok"
#define GGUFGEN_HOSTILE_SHOWN "\\x1b]0;pwned\\x07\\x1b]52;c;aGk=\\x07\\x0b\\x19\xe4\xb8\xad\\u009b31m ok"
int ggufgen_write_hostile_llama(const char *path);

/* --- checking an opened file (shared by test_gguf and test_gguf_robust) --- */

/* Walks everything an opened handle exposes and checks the invariants that
** engine/gguf.h promises after a successful open: every key non-empty, unique
** and found by gguf_find_key; every value readable with the getter of its
** type (and refused by the others); strings NUL-free; strings and arrays no longer than the
** file and, when the mapping's address can be derived from tensor 0, inside
** the mapping; every tensor with 1..4 positive dims, a known type, ne[0] a
** multiple of the block size, consistent element and byte counts, an aligned
** offset, data inside the file at data_offset + offset, no overlap, and found
** by name. Every string and array element is read (so ASan sees any bad
** pointer). Returns 0 when all holds, else -1 with the first problem in
** why. */
int ggufgen_check_file(const GgufFile *g, char *why, size_t whylen);

#endif /* KB_GGUFGEN_H */
