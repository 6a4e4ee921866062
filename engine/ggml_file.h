/*
** ggml_file.h: a validating reader for chatglm.cpp's GGML model files
** (`chatglm-ggml.bin`: ChatGLM-6B, ChatGLM2-6B, ChatGLM3-6B, GLM-4-9B).
**
** Layout (every integer a little-endian int32, floats IEEE binary32):
**
**   "ggml" | model_type | version | config record | tokenizer size | tokenizer
**   then tensors until the end of the file, each:
**   name_len | name | n_dims | dims, outermost first | ggml type |
**   zero padding to a 16-byte file offset | data
**
** model_type 1 ChatGLM-6B, 2 ChatGLM2, 3 ChatGLM3, 4 GLM-4. Config records:
**
**   version 1, ChatGLM      dtype vocab hidden heads layers ffn max_length
**                           bos eos pad sep                       (11 fields)
**   version 1, ChatGLM2/3   the same, then kv_heads               (12 fields)
**   version 2 (GLM-4: only) dtype vocab hidden heads kv_heads layers ffn
**                           f32 norm_eps, virtual_tokens, f32 rope_theta,
**                           max_length, eos, pad                  (13 fields)
**
** The tokenizer is a serialized SentencePiece ModelProto (types 1-3) or
** GLM-4's tiktoken vocabulary text (type 4); ggml_file_tokenizer() builds
** it (tok_glm.c).
**
** ggml_file_open() maps the file read-only and checks everything against its
** size before use (the list is in ggml_file.c), so after a successful open
** every tensor has 1..4 positive dims, a known type, ne[0] a multiple of the
** block size, an unoverflowed byte size and data that lies inside the file;
** names are unique, non-empty and NUL-free. Tensors are described with the
** GGUF reader's GgufTensor (ne[0] innermost: a PyTorch [out, in] weight has
** ne = {in, out}; `offset` is the absolute file offset of the data), so the
** model code reads both formats through one view. Pointers stay valid until
** ggml_file_close().
*/
#ifndef KB_GGML_FILE_H
#define KB_GGML_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/gguf.h"
#include "engine/tokenizer.h"

#define GGML_FILE_ALIGN 16        /* tensor data starts at a multiple of this */
#define GGML_FILE_MAX_NAME 256    /* tensor name bytes, at most */

/* chatglm.cpp's ModelType values for the models kbchat runs. */
typedef enum GgmlModelType {
    GGML_MODEL_CHATGLM = 1,
    GGML_MODEL_CHATGLM2 = 2,
    GGML_MODEL_CHATGLM3 = 3,
    GGML_MODEL_GLM4 = 4
} GgmlModelType;

/* The config record, widened; fields a record version lacks hold
** chatglm.cpp's defaults (norm_eps 1e-5, rope_theta 10000, kv heads = heads,
** bos/sep -1 for version 2). Token ids are as stored (-1 = none) and are not
** checked against the vocabulary. */
typedef struct GgmlConfig {
    int model_type;        /* GgmlModelType */
    int version;           /* of the config record: 1 or 2 */
    int dtype;             /* the converter's weight type (ggml type id) */
    int64_t n_vocab, n_embd, n_head, n_head_kv, n_layer, n_ff, n_ctx;
    float norm_eps, rope_theta;
    int64_t n_virtual_tokens; /* P-tuning v2 prefix length (version 2) */
    int32_t bos, eos, pad, sep;
} GgmlConfig;

typedef struct GgmlFile GgmlFile;

/* Returns true when the file at path begins with chatglm.cpp's magic "ggml".
** Any failure to read four bytes gives false, so the caller's other reader
** reports the problem. */
bool ggml_file_probe(const char *path);

/* Opens and validates the GGML file at path. On success returns KB_OK and
** stores a new handle in *out (free with ggml_file_close). On failure *out
** is NULL, nothing is leaked, and err (when errlen > 0) holds one line naming
** the path, the field, its value and the range expected. Returns KB_EIO
** (cannot open/stat/map), KB_EFORMAT (bad magic, truncated, inconsistent),
** KB_EUNSUPPORTED (another chatglm.cpp model type, a config version other
** than 1 and 2, an old llama.cpp GGML/GGJT file), KB_ENOMEM. */
int ggml_file_open(const char *path, GgmlFile **out /* OUT */, char *err, size_t errlen);

/* Unmaps the file and frees the handle; ggml_file_close(NULL) is a no-op. */
void ggml_file_close(GgmlFile *f);

uint64_t ggml_file_size(const GgmlFile *f);
const GgmlConfig *ggml_file_config(const GgmlFile *f);
/* "ChatGLM-6B", "ChatGLM2-6B", "ChatGLM3-6B", "GLM-4" or "unknown". */
const char *ggml_file_model_name(int model_type);

/* The embedded tokenizer bytes, inside the mapping (*len may be 0). */
const uint8_t *ggml_file_tokenizer_data(const GgmlFile *f, size_t *len /* OUT */);

int64_t ggml_file_n_tensors(const GgmlFile *f);
/* Tensor i in file order (0 <= i < ggml_file_n_tensors). */
const GgufTensor *ggml_file_tensor(const GgmlFile *f, int64_t i);
/* Returns the tensor named name, or NULL. O(log n). */
const GgufTensor *ggml_file_find_tensor(const GgmlFile *f, const char *name);

/* Builds the tokenizer embedded in f as chatglm.cpp does (tok_glm.c):
** ChatGLM-6B's SentencePiece model with its rules (newline <n>, tab <|tab|>,
** space runs <|blank_N|>, [gMASK] <sop> appended by KB_TOK_ADD_SPECIAL);
** ChatGLM2/3's SentencePiece model plus their appended special tokens
** ([gMASK] sop prepended); GLM-4's tiktoken vocabulary plus its special
** tokens ([gMASK] <sop> prepended). The vocabulary is padded with unused
** tokens to the config's vocabulary size. Returns KB_OK, KB_EFORMAT (the
** tokenizer bytes are malformed or hold more tokens than the config's
** vocabulary: err says where), KB_EUNSUPPORTED, KB_ENOMEM. On failure *out
** is NULL. Free the result with tokenizer_free. */
int ggml_file_tokenizer(const GgmlFile *f, Tokenizer **out /* OUT */, char *err, size_t errlen);

#endif /* KB_GGML_FILE_H */
