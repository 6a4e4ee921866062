/*
** quant_plan.c: which block type each tensor gets, as llama.cpp decides it.
**
** A file type (Q4_K_M, ...) is a default block type plus exceptions. The
** exceptions below transcribe llama_tensor_get_type() and the tensor filter
** of llama_model_quantize_impl() in llama.cpp's src/llama-quant.cpp
** (Feb 2025) for the file types kbchat writes, without an importance
** matrix, with the default options (output tensor quantized, no --pure,
** no type overrides). In words:
**
**   output.weight, and token_embd.weight when the model has no
**   output.weight (tied embeddings): Q6_K, unless the default type is Q8_0
**   (kept) or ne[0] does not fit the default type's blocks (Q8_0); falcon
**   always Q8_0.
**
**   attn_v.weight, counting them in file order (i of n):
**     Q2_K            Q4_K when n_head / n_head_kv >= 4, else Q3_K
**     Q3_K_M          Q5_K for the first two, else Q4_K
**     Q3_K_L          Q5_K
**     Q4_K_M, Q5_K_M  Q6_K when use_more_bits(i, n)
**     Q4_K_S          Q5_K for the first four
**     then LLaMA-70B shape: Q3_K/Q4_K -> Q5_K; 8 experts: Q8_0
**   attn_k.weight     8 experts: Q8_0
**   ffn_down, layer i of n (the counter, or the name's layer with experts):
**     Q2_K            Q3_K
**     Q3_K_M          Q5_K for i < n/16, else Q4_K (falcon: Q3_K unless
**                     use_more_bits)
**     Q3_K_L          Q5_K (falcon Q4_K)
**     Q4_K_M          Q6_K when use_more_bits (falcon: Q6_K for i < n/16,
**                     Q5_K when use_more_bits, else Q4_K)
**     Q5_K_M          Q6_K when use_more_bits
**     Q4_K_S          Q5_K for i < n/8 (not falcon)
**   attn_output.weight (not falcon): 8 experts and a K mix up to Q4_K_M:
**     Q5_K; else Q2_K -> Q3_K, Q3_K_M -> Q4_K, Q3_K_L -> Q5_K.
**     falcon: Q3_K_L -> Q4_K
**   attn_qkv.weight   Q3_K_M, Q3_K_L -> Q4_K; Q4_K_M -> Q5_K; Q5_K_M -> Q6_K
**
**   use_more_bits(i, n) = i < n/8 || i >= 7n/8 || (i - n/8) % 3 == 2: the
**   first and last eighth of the layers and every third one between.
**
** Then, when ne[0] is not a multiple of the chosen type's block size:
** Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0, Q2_K/Q3_K -> Q4_0 (llama.cpp
** uses IQ4_NL, the same size, which kbchat does not implement), and F16 if
** even that does not fit. For the 32-element types llama.cpp gives up with
** "Unsupported tensor size encountered"; we write F16 instead.
**
** Rules for the IQ file types, Q2_K_S and imatrix runs are left out: kbchat
** does not write those.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "engine/engine.h"

/* --- file types --- */

static const struct FtypeRow {
    const char *name;
    KbFtype ftype;
    int base;          /* default block type */
} ftype_rows[] = {
    {"Q4_0", KB_FTYPE_MOSTLY_Q4_0, KB_TYPE_Q4_0},     {"Q4_1", KB_FTYPE_MOSTLY_Q4_1, KB_TYPE_Q4_1},
    {"Q5_0", KB_FTYPE_MOSTLY_Q5_0, KB_TYPE_Q5_0},     {"Q5_1", KB_FTYPE_MOSTLY_Q5_1, KB_TYPE_Q5_1},
    {"Q8_0", KB_FTYPE_MOSTLY_Q8_0, KB_TYPE_Q8_0},     {"Q2_K", KB_FTYPE_MOSTLY_Q2_K, KB_TYPE_Q2_K},
    {"Q3_K_S", KB_FTYPE_MOSTLY_Q3_K_S, KB_TYPE_Q3_K}, {"Q3_K_M", KB_FTYPE_MOSTLY_Q3_K_M, KB_TYPE_Q3_K},
    {"Q3_K_L", KB_FTYPE_MOSTLY_Q3_K_L, KB_TYPE_Q3_K}, {"Q4_K_S", KB_FTYPE_MOSTLY_Q4_K_S, KB_TYPE_Q4_K},
    {"Q4_K_M", KB_FTYPE_MOSTLY_Q4_K_M, KB_TYPE_Q4_K}, {"Q5_K_S", KB_FTYPE_MOSTLY_Q5_K_S, KB_TYPE_Q5_K},
    {"Q5_K_M", KB_FTYPE_MOSTLY_Q5_K_M, KB_TYPE_Q5_K}, {"Q6_K", KB_FTYPE_MOSTLY_Q6_K, KB_TYPE_Q6_K},
    {"F16", KB_FTYPE_MOSTLY_F16, KB_TYPE_F16},        {"BF16", KB_FTYPE_MOSTLY_BF16, KB_TYPE_BF16},
    {"F32", KB_FTYPE_ALL_F32, KB_TYPE_F32},
};
#define N_FTYPES (int)(sizeof ftype_rows / sizeof ftype_rows[0])

/* llama-quantize's aliases: the bare K names mean the _M mixes. */
static const struct { const char *alias, *name; } ftype_aliases[] = {
    {"Q3_K", "Q3_K_M"}, {"Q4_K", "Q4_K_M"}, {"Q5_K", "Q5_K_M"},
};

static const struct FtypeRow *ftype_row(KbFtype ftype)
{
    for (int i = 0; i < N_FTYPES; i++)
        if (ftype_rows[i].ftype == ftype) return &ftype_rows[i];
    return NULL;
}

int kb_ftype_parse(const char *name, KbFtype *out)
{
    *out = KB_FTYPE_ALL_F32;
    for (size_t i = 0; i < sizeof ftype_aliases / sizeof ftype_aliases[0]; i++)
        if (strcasecmp(name, ftype_aliases[i].alias) == 0) name = ftype_aliases[i].name;
    for (int i = 0; i < N_FTYPES; i++) {
        if (strcasecmp(name, ftype_rows[i].name) == 0) {
            *out = ftype_rows[i].ftype;
            return KB_OK;
        }
    }
    return KB_ENOTFOUND;
}

const char *kb_ftype_name(KbFtype ftype)
{
    const struct FtypeRow *r = ftype_row(ftype);
    return r ? r->name : NULL;
}

const char *kb_ftype_names(void)
{
    return "Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K_S, Q3_K_M (Q3_K), Q3_K_L, Q4_K_S, Q4_K_M (Q4_K), "
           "Q5_K_S, Q5_K_M (Q5_K), Q6_K, F16, BF16, F32";
}

int kb_ftype_base_type(KbFtype ftype)
{
    const struct FtypeRow *r = ftype_row(ftype);
    return r ? r->base : -1;
}

/* --- which tensors are quantized --- */

/* ggml_n_dims: dimensions up to the last one larger than 1. */
static int effective_dims(const int64_t ne[4])
{
    for (int i = 3; i >= 1; i--)
        if (ne[i] > 1) return i + 1;
    return 1;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && memcmp(s + n - m, suffix, m) == 0;
}

/* llama_model_quantize_impl's filter: weights of 2+ dims except the ones
** llama.cpp keeps exact (norms, routers, small state-space/RWKV/T5 tensors,
** BERT position and token-type embeddings). */
static bool is_quantizable(const KbQuantTensor *t)
{
    static const char *const never[] = {
        "_norm.weight", "ffn_gate_inp.weight", "ssm_conv1d.weight", "time_mix_first.weight",
        "time_mix_w1.weight", "time_mix_w2.weight", "time_mix_decay_w1.weight", "time_mix_decay_w2.weight",
        "time_mix_lerp_fused.weight", "attn_rel_b.weight",
    };
    if (!ends_with(t->name, "weight") || effective_dims(t->ne) < 2) return false;
    for (size_t i = 0; i < sizeof never / sizeof never[0]; i++)
        if (strstr(t->name, never[i])) return false;
    return strcmp(t->name, "position_embd.weight") != 0 && strcmp(t->name, "token_types.weight") != 0;
}

/* --- llama_tensor_get_type --- */

/* The counters llama.cpp keeps while walking the tensors. */
typedef struct PlanState {
    const KbQuantHparams *hp;
    KbFtype ftype;
    bool has_output;
    bool falcon;
    int n_attention_wv, i_attention_wv;
    int i_ffn_down;
} PlanState;

static bool use_more_bits(int i_layer, int n_layers)
{
    return i_layer < n_layers / 8 || i_layer >= 7 * n_layers / 8 || (i_layer - n_layers / 8) % 3 == 2;
}

/* Returns the layer number of "blk.N....", or -1 (sscanf "blk.%d."). */
static int layer_of(const char *name)
{
    if (strncmp(name, "blk.", 4) != 0) return -1;
    char *end;
    long v = strtol(name + 4, &end, 10);
    if (end == name + 4 || v < -1000000 || v > 1000000) return -1;
    return (int)v;
}

static int n_gqa(const KbQuantHparams *hp)
{
    return hp->n_head_kv > 0 ? hp->n_head / hp->n_head_kv : 0;
}

/* LLaMA-2-70B's shape (80 layers with grouped-query attention), which
** llama.cpp treats specially for attn_v. */
static bool is_70b(const PlanState *s)
{
    return strcmp(s->hp->arch, "llama") == 0 && s->hp->n_layer == 80 && s->hp->n_head != s->hp->n_head_kv;
}

/* output.weight (and tied token_embd.weight). */
static int type_for_output(const PlanState *s, const KbQuantTensor *t, int type)
{
    const int64_t qk = kb_type_info(type)->block_size;
    if (s->falcon || t->ne[0] % qk != 0) return KB_TYPE_Q8_0;
    return type != KB_TYPE_Q8_0 ? KB_TYPE_Q6_K : type;
}

static int type_for_attn_v(PlanState *s, int type)
{
    const KbFtype f = s->ftype;
    const int i = s->i_attention_wv++;
    if (f == KB_FTYPE_MOSTLY_Q2_K) type = n_gqa(s->hp) >= 4 ? KB_TYPE_Q4_K : KB_TYPE_Q3_K;
    else if (f == KB_FTYPE_MOSTLY_Q3_K_M) type = i < 2 ? KB_TYPE_Q5_K : KB_TYPE_Q4_K;
    else if (f == KB_FTYPE_MOSTLY_Q3_K_L) type = KB_TYPE_Q5_K;
    else if ((f == KB_FTYPE_MOSTLY_Q4_K_M || f == KB_FTYPE_MOSTLY_Q5_K_M) && use_more_bits(i, s->n_attention_wv))
        type = KB_TYPE_Q6_K;
    else if (f == KB_FTYPE_MOSTLY_Q4_K_S && i < 4) type = KB_TYPE_Q5_K;
    if (is_70b(s) && (type == KB_TYPE_Q3_K || type == KB_TYPE_Q4_K)) type = KB_TYPE_Q5_K;
    if (s->hp->n_expert == 8) type = KB_TYPE_Q8_0;
    return type;
}

static int type_for_ffn_down(PlanState *s, const char *name, int type)
{
    const KbFtype f = s->ftype;
    const int n = s->hp->n_layer;
    int i = s->i_ffn_down++;
    if (s->hp->n_expert > 1) i = layer_of(name); /* experts are not consecutive */
    if (f == KB_FTYPE_MOSTLY_Q2_K) {
        type = KB_TYPE_Q3_K;
    } else if (f == KB_FTYPE_MOSTLY_Q3_K_M) {
        type = i < n / 16 ? KB_TYPE_Q5_K : !s->falcon || use_more_bits(i, n) ? KB_TYPE_Q4_K : KB_TYPE_Q3_K;
    } else if (f == KB_FTYPE_MOSTLY_Q3_K_L) {
        type = s->falcon ? KB_TYPE_Q4_K : KB_TYPE_Q5_K;
    } else if (f == KB_FTYPE_MOSTLY_Q4_K_M) {
        if (s->falcon) type = i < n / 16 ? KB_TYPE_Q6_K : use_more_bits(i, n) ? KB_TYPE_Q5_K : KB_TYPE_Q4_K;
        else if (use_more_bits(i, n)) type = KB_TYPE_Q6_K;
    } else if (f == KB_FTYPE_MOSTLY_Q5_K_M && use_more_bits(i, n)) {
        type = KB_TYPE_Q6_K;
    } else if (f == KB_FTYPE_MOSTLY_Q4_K_S && !s->falcon && i < n / 8) {
        type = KB_TYPE_Q5_K;
    }
    return type;
}

static int type_for_attn_output(const PlanState *s, int type)
{
    const KbFtype f = s->ftype;
    if (s->falcon) return f == KB_FTYPE_MOSTLY_Q3_K_L ? KB_TYPE_Q4_K : type;
    if (s->hp->n_expert == 8) {
        bool k_mix = f == KB_FTYPE_MOSTLY_Q2_K || f == KB_FTYPE_MOSTLY_Q3_K_S || f == KB_FTYPE_MOSTLY_Q3_K_M ||
                     f == KB_FTYPE_MOSTLY_Q4_K_S || f == KB_FTYPE_MOSTLY_Q4_K_M;
        return k_mix ? KB_TYPE_Q5_K : type;
    }
    if (f == KB_FTYPE_MOSTLY_Q2_K) return KB_TYPE_Q3_K;
    if (f == KB_FTYPE_MOSTLY_Q3_K_M) return KB_TYPE_Q4_K;
    if (f == KB_FTYPE_MOSTLY_Q3_K_L) return KB_TYPE_Q5_K;
    return type;
}

static int type_for_attn_qkv(const PlanState *s, int type)
{
    const KbFtype f = s->ftype;
    if (f == KB_FTYPE_MOSTLY_Q3_K_M || f == KB_FTYPE_MOSTLY_Q3_K_L) return KB_TYPE_Q4_K;
    if (f == KB_FTYPE_MOSTLY_Q4_K_M) return KB_TYPE_Q5_K;
    if (f == KB_FTYPE_MOSTLY_Q5_K_M) return KB_TYPE_Q6_K;
    return type;
}

/* The fallback when ne[0] does not fit the chosen type's blocks. */
static int fallback_type(int type, int64_t ne0)
{
    switch (type) {
    case KB_TYPE_Q4_K: type = KB_TYPE_Q5_0; break;
    case KB_TYPE_Q5_K: type = KB_TYPE_Q5_1; break;
    case KB_TYPE_Q6_K: type = KB_TYPE_Q8_0; break;
    case KB_TYPE_Q2_K:
    case KB_TYPE_Q3_K: type = KB_TYPE_Q4_0; break;
    default: type = KB_TYPE_F16; break;
    }
    return ne0 % kb_type_info(type)->block_size == 0 ? type : KB_TYPE_F16;
}

/* llama_tensor_get_type for one quantizable tensor, in output order. */
static void choose_type(PlanState *s, const KbQuantTensor *t, KbQuantChoice *c)
{
    const char *name = t->name;
    int type = kb_ftype_base_type(s->ftype);
    if (strcmp(name, "output.weight") == 0 || (!s->has_output && strcmp(name, "token_embd.weight") == 0))
        type = type_for_output(s, t, type);
    else if (strcmp(name, "token_embd.weight") == 0)
        ; /* only the IQ and TQ types change it */
    else if (strstr(name, "attn_v.weight"))
        type = type_for_attn_v(s, type);
    else if (strstr(name, "attn_k.weight"))
        type = s->hp->n_expert == 8 ? KB_TYPE_Q8_0 : type;
    else if (strstr(name, "attn_q.weight"))
        ; /* only IQ3 file types change it */
    else if (strstr(name, "ffn_down"))
        type = type_for_ffn_down(s, name, type);
    else if (strstr(name, "attn_output.weight"))
        type = type_for_attn_output(s, type);
    else if (strstr(name, "attn_qkv.weight"))
        type = type_for_attn_qkv(s, type);
    c->wanted = type;
    if (t->ne[0] % kb_type_info(type)->block_size != 0) {
        type = fallback_type(type, t->ne[0]);
        c->flags |= KB_QPLAN_FALLBACK;
    }
    c->type = type;
}

/* --- the plan --- */

/* weight_name_comparer of llama-model-loader.h: by layer, then by name. */
static int cmp_tensor_order(const void *pa, const void *pb)
{
    const KbQuantTensor *a = *(const KbQuantTensor *const *)pa, *b = *(const KbQuantTensor *const *)pb;
    int la = layer_of(a->name), lb = layer_of(b->name);
    if (la != lb) return la < lb ? -1 : 1;
    return strcmp(a->name, b->name);
}

static bool is_float_type(int type)
{
    return type == KB_TYPE_F32 || type == KB_TYPE_F16 || type == KB_TYPE_BF16;
}

/* Fills choice[k] for tensor k; walks them in output order so the layer
** counters advance as in llama.cpp. */
static void plan_walk(PlanState *s, const KbQuantTensor *t, const int64_t *order, int64_t n, KbQuantChoice *choice)
{
    const bool mix = !is_float_type(kb_ftype_base_type(s->ftype)); /* ggml_is_quantized(default_type) */
    for (int64_t i = 0; i < n; i++) {
        const KbQuantTensor *x = &t[order[i]];
        KbQuantChoice *c = &choice[order[i]];
        c->type = c->wanted = x->type;
        c->flags = 0;
        if (!is_quantizable(x)) continue;
        if (mix) {
            choose_type(s, x, c);
        } else {
            c->type = c->wanted = kb_ftype_base_type(s->ftype);
        }
        if (c->type == x->type) continue; /* already right: copied */
        c->flags |= KB_QPLAN_QUANTIZE;
        if (!is_float_type(x->type)) c->flags |= KB_QPLAN_REQUANT;
    }
}

int kb_quant_plan(const KbQuantHparams *hp, KbFtype ftype, const KbQuantTensor *t, int64_t n, KbQuantChoice *choice,
                  int64_t *order, char *err, size_t errlen)
{
    if (errlen > 0) err[0] = '\0';
    if (kb_ftype_name(ftype) == NULL) {
        snprintf(err, errlen, "unknown file type %d", (int)ftype);
        return KB_EINVAL;
    }
    const KbQuantTensor **sorted = malloc((size_t)(n > 0 ? n : 1) * sizeof *sorted);
    if (sorted == NULL) {
        snprintf(err, errlen, "out of memory planning %lld tensors", (long long)n);
        return KB_ENOMEM;
    }
    PlanState s = {.hp = hp, .ftype = ftype, .falcon = strcmp(hp->arch, "falcon") == 0};
    for (int64_t i = 0; i < n; i++) {
        sorted[i] = &t[i];
        if (strcmp(t[i].name, "output.weight") == 0) s.has_output = true;
        if (strstr(t[i].name, "attn_v.weight") || strstr(t[i].name, "attn_qkv.weight") ||
            strstr(t[i].name, "attn_kv_b.weight"))
            s.n_attention_wv++;
    }
    qsort(sorted, (size_t)n, sizeof *sorted, cmp_tensor_order);
    for (int64_t i = 0; i < n; i++) order[i] = sorted[i] - t;
    free(sorted);
    plan_walk(&s, t, order, n, choice);
    return KB_OK;
}
