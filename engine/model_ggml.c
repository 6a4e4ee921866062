/*
** model_ggml.c: chatglm.cpp GGML files as models.
**
** The architectures ask for hyperparameters and tensors in GGUF's words
** ("chatglm.embedding_length", "blk.3.attn_qkv.weight"); for a GGML file
** this file answers the keys from the config record and translates the
** tensor names to the PyTorch names chatglm.cpp stores
** ("transformer.encoder.layers.3.self_attention.query_key_value.weight").
** The data layout is the same in both formats (a PyTorch [out, in] weight is
** ne = {in, out}; ChatGLM2's fused QKV rows are Q | K | V and its
** dense_h_to_4h rows gate | up, ChatGLM-6B's QKV rows [q|k|v] per head), so
** nothing but the names differs and ChatGLM2/3 and GLM-4 files run on the
** GGUF "chatglm" architecture unchanged.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/model_impl.h"

/* --- names --- */

/* GGUF tensor names and their chatglm.cpp counterparts. Per-layer entries
** are suffixes after "blk.N." and after the layer prefix. */
typedef struct GgmlName {
    const char *gguf, *ggml;
} GgmlName;

static const GgmlName glm1_top[] = {
    {"token_embd.weight", "transformer.word_embeddings.weight"},
    {"output_norm.weight", "transformer.final_layernorm.weight"},
    {"output_norm.bias", "transformer.final_layernorm.bias"},
};
static const GgmlName glm1_layer[] = {
    {"attn_norm.weight", "input_layernorm.weight"},
    {"attn_norm.bias", "input_layernorm.bias"},
    {"attn_qkv.weight", "attention.query_key_value.weight"},
    {"attn_qkv.bias", "attention.query_key_value.bias"},
    {"attn_output.weight", "attention.dense.weight"},
    {"attn_output.bias", "attention.dense.bias"},
    {"ffn_norm.weight", "post_attention_layernorm.weight"},
    {"ffn_norm.bias", "post_attention_layernorm.bias"},
    {"ffn_up.weight", "mlp.dense_h_to_4h.weight"},
    {"ffn_up.bias", "mlp.dense_h_to_4h.bias"},
    {"ffn_down.weight", "mlp.dense_4h_to_h.weight"},
    {"ffn_down.bias", "mlp.dense_4h_to_h.bias"},
};
static const GgmlName glm2_top[] = {
    {"token_embd.weight", "transformer.embedding.word_embeddings.weight"},
    {"output_norm.weight", "transformer.encoder.final_layernorm.weight"},
    {"output.weight", "transformer.output_layer.weight"},
};
static const GgmlName glm2_layer[] = {
    {"attn_norm.weight", "input_layernorm.weight"},
    {"attn_qkv.weight", "self_attention.query_key_value.weight"},
    {"attn_qkv.bias", "self_attention.query_key_value.bias"},
    {"attn_output.weight", "self_attention.dense.weight"},
    {"ffn_norm.weight", "post_attention_layernorm.weight"},
    {"ffn_up.weight", "mlp.dense_h_to_4h.weight"},
    {"ffn_down.weight", "mlp.dense_4h_to_h.weight"},
};

/* Looks name up in table[0..n); returns the GGML name or NULL. */
static const char *lookup_name(const GgmlName *table, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(table[i].gguf, name) == 0) return table[i].ggml;
    return NULL;
}

/* Writes the chatglm.cpp name of GGUF name `name` into buf; a name neither
** table knows is kept as it is (and will simply not be found). */
static const char *ggml_name(int model_type, const char *name, char *buf, size_t cap)
{
    bool v1 = model_type == GGML_MODEL_CHATGLM;
    const char *top = v1 ? lookup_name(glm1_top, sizeof glm1_top / sizeof glm1_top[0], name)
                         : lookup_name(glm2_top, sizeof glm2_top / sizeof glm2_top[0], name);
    unsigned layer;
    int used = 0;
    if (top) return top;
    if (sscanf(name, "blk.%u.%n", &layer, &used) != 1 || used == 0) return name;
    const char *suffix = v1 ? lookup_name(glm1_layer, sizeof glm1_layer / sizeof glm1_layer[0], name + used)
                            : lookup_name(glm2_layer, sizeof glm2_layer / sizeof glm2_layer[0], name + used);
    if (suffix == NULL) return name;
    snprintf(buf, cap, v1 ? "transformer.layers.%u.%s" : "transformer.encoder.layers.%u.%s", layer, suffix);
    return buf;
}

const GgufTensor *model_find_tensor(const KbModel *m, const char **name, char *buf, size_t cap)
{
    if (m->ggml == NULL) return gguf_find_tensor(m->gguf, *name);
    *name = ggml_name(ggml_file_config(m->ggml)->model_type, *name, buf, cap);
    return ggml_file_find_tensor(m->ggml, *name);
}

/* --- hyperparameters --- */

int model_ggml_key(const KbModel *m, const char *suffix, double *v)
{
    const GgmlConfig *c = ggml_file_config(m->ggml);
    static const char *const names[] = {
        "embedding_length", "block_count", "attention.head_count", "attention.head_count_kv",
        "feed_forward_length", "context_length", "attention.layer_norm_rms_epsilon",
        "attention.layer_norm_epsilon", "rope.freq_base", "vocab_size",
    };
    const double values[] = {
        (double)c->n_embd, (double)c->n_layer, (double)c->n_head, (double)c->n_head_kv, (double)c->n_ff,
        (double)c->n_ctx, (double)c->norm_eps, (double)c->norm_eps, (double)c->rope_theta, (double)c->n_vocab,
    };
    *v = 0;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (strcmp(names[i], suffix) == 0) {
            *v = values[i];
            return KB_OK;
        }
    }
    return KB_ENOTFOUND;
}

/* --- opening --- */

/* Sets the architecture from the model type. */
static void ggml_choose_arch(KbModel *m, int model_type)
{
    m->ops = model_type == GGML_MODEL_CHATGLM ? &arch_chatglm1 : &arch_chatglm;
    m->cfg.arch = m->ops->arch;
    snprintf(m->arch_name, sizeof m->arch_name, "%s", m->ops->name);
}

/* ChatGLM3 and GLM-4 end a turn by starting the next one: chatglm.cpp stops
** at <|user|> and <|observation|> as well as at the end-of-text token. */
static void ggml_end_tokens(KbModel *m, int model_type)
{
    if (model_type != GGML_MODEL_CHATGLM3 && model_type != GGML_MODEL_GLM4) return;
    m->eog_extra[0] = tokenizer_find(m->tok, "<|user|>", 8);
    m->eog_extra[1] = tokenizer_find(m->tok, "<|observation|>", 15);
}

int model_ggml_open(KbModel *m, const char *path, char *err, size_t errlen)
{
    int rc = ggml_file_open(path, &m->ggml, err, errlen);
    if (rc != KB_OK) return rc;
    const GgmlConfig *c = ggml_file_config(m->ggml);
    if (c->n_virtual_tokens > 0) {
        return kb_error(err, errlen, KB_EUNSUPPORTED,
                          "%s: a P-tuning v2 model (%lld virtual tokens): kbchat cannot run its prefix", path,
                          (long long)c->n_virtual_tokens);
    }
    char msg[384];
    rc = ggml_file_tokenizer(m->ggml, &m->tok, msg, sizeof msg);
    if (rc != KB_OK) return kb_error(err, errlen, rc, "%s: %s", path, msg);
    ggml_choose_arch(m, c->model_type);
    ggml_end_tokens(m, c->model_type);
    return KB_OK;
}
