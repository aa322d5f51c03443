#include <stdio.h>

#include "core/ms_params.h"

ms_slot_params ms__slot_params_default(void)
{
    ms_slot_params p = {
        .temperature = 0.0f,
        .top_k = 1,
        .top_p = 1.0f,
        .min_p = 0.0f,
        .presence_penalty = 0.0f,
        .frequency_penalty = 0.0f,
        .repetition_penalty = 1.0f,
        .seed = MS_SEED_NONE,
        .enable_log_probs = false,
        .num_logprobs = 0,
    };
    return p;
}

void ms_sampling_params_init(ms_sampling_params *p)
{
    if (p) memset(p, 0, sizeof *p);
}

/* Value of a float field for user i, or def when None / past the list. */
static float fget(const ms_fparam *f, int32_t i, float def)
{
    if (!f->is_set) return def;
    if (!f->list) return f->value;
    return i < f->len ? f->list[i] : def;
}

static int64_t iget(const ms_iparam *f, int32_t i, int64_t def)
{
    if (!f->is_set) return def;
    if (!f->list) return f->value;
    return i < f->len ? f->list[i] : def;
}

static ms_status check_list_len(const char *name, int32_t len, bool is_list, bool is_set,
                                int32_t n, ms_errbuf *err)
{
    if (!is_set || !is_list) return MS_OK;
    if (len < 0)
        return ms__errbuf_set(err, MS_ERR_INVALID_ARGUMENT, "%s: negative list length %d", name,
                              (int)len);
    if (len > n)
        return ms__errbuf_set(err, MS_ERR_INVALID_ARGUMENT,
                              "%s: list of %d values for %d users", name, (int)len, (int)n);
    return MS_OK;
}

ms_status ms__slot_params_check(const ms_slot_params *p, int32_t slot, int32_t max_top_k,
                                int32_t max_logprobs, char *msg, size_t cap)
{
#define BAD(...)                                                                                  \
    do {                                                                                          \
        snprintf(msg, cap, __VA_ARGS__);                                                          \
        return MS_ERR_INVALID_ARGUMENT;                                                           \
    } while (0)
    if (!(p->temperature > 0.0f) || isinf(p->temperature))
        BAD("temperature of user %d is %g: must be finite and > 0 after formatting", (int)slot,
            (double)p->temperature);
    if (p->top_k < 0) BAD("top_k of user %d is %d: must be >= 0", (int)slot, (int)p->top_k);
    if (max_top_k > 0 && (p->top_k < 1 || p->top_k > max_top_k))
        BAD("top_k of user %d is %d: must be in [1, max_top_k=%d] in truncated mode", (int)slot,
            (int)p->top_k, (int)max_top_k);
    if (!(p->top_p >= 0.0f && p->top_p <= 1.0f))
        BAD("top_p of user %d is %g: must be in [0, 1]", (int)slot, (double)p->top_p);
    if (!(p->min_p >= 0.0f && p->min_p <= 1.0f))
        BAD("min_p of user %d is %g: must be in [0, 1]", (int)slot, (double)p->min_p);
    if (!isfinite(p->presence_penalty))
        BAD("presence_penalty of user %d is %g: must be finite", (int)slot,
            (double)p->presence_penalty);
    if (!isfinite(p->frequency_penalty))
        BAD("frequency_penalty of user %d is %g: must be finite", (int)slot,
            (double)p->frequency_penalty);
    if (!(p->repetition_penalty > 0.0f) || isinf(p->repetition_penalty))
        BAD("repetition_penalty of user %d is %g: must be finite and > 0", (int)slot,
            (double)p->repetition_penalty);
    if (p->seed < MS_SEED_NONE)
        BAD("seed of user %d is %lld: must be >= 0 or MS_SEED_NONE (-1)", (int)slot,
            (long long)p->seed);
    if (p->num_logprobs < 0 || p->num_logprobs > max_logprobs)
        BAD("num_logprobs of user %d is %d: must be in [0, %d]", (int)slot, (int)p->num_logprobs,
            (int)max_logprobs);
#undef BAD
    return MS_OK;
}

ms_status ms_params_format(const ms_sampling_params *in, int32_t n, int32_t max_top_k,
                           ms_slot_params *out, ms_errbuf *err)
{
    return ms__params_format_slots(in, n, max_top_k, NULL, out, err);
}

ms_status ms__params_format_slots(const ms_sampling_params *in, int32_t n, int32_t max_top_k,
                                  const int32_t *slots, ms_slot_params *out, ms_errbuf *err)
{
    if (!in || !out || n <= 0)
        return ms__errbuf_set(err, MS_ERR_INVALID_ARGUMENT,
                              "format: params and out must be non-NULL and n > 0 (n=%d)", (int)n);
    if (max_top_k < 0)
        return ms__errbuf_set(err, MS_ERR_INVALID_ARGUMENT, "format: max_top_k %d < 0",
                              (int)max_top_k);
#define LEN_CHECK(field, name)                                                                    \
    MS_FORWARD_IF_ERROR(check_list_len(name, in->field.len, in->field.list != NULL,              \
                                       in->field.is_set, n, err))
    LEN_CHECK(temperature, "temperature");
    LEN_CHECK(top_k, "top_k");
    LEN_CHECK(top_p, "top_p");
    LEN_CHECK(min_p, "min_p");
    LEN_CHECK(presence_penalty, "presence_penalty");
    LEN_CHECK(frequency_penalty, "frequency_penalty");
    LEN_CHECK(repetition_penalty, "repetition_penalty");
    LEN_CHECK(seed, "seed");
    LEN_CHECK(enable_log_probs, "enable_log_probs");
    LEN_CHECK(num_logprobs, "num_logprobs");
#undef LEN_CHECK

    /* Messages name the slot a value is going to when the caller maps users to slots. */
#define USER(i) ((int)(slots ? slots[i] : (i)))
    /* Validate every user before writing anything, so a rejection leaves out untouched. */
    const ms_slot_params d = ms__slot_params_default();
    for (int pass = 0; pass < 2; pass++) {
        for (int32_t i = 0; i < n; i++) {
            float t = fget(&in->temperature, i, d.temperature);
            int64_t k = iget(&in->top_k, i, d.top_k);
            float p = fget(&in->top_p, i, d.top_p);
            float mp = fget(&in->min_p, i, d.min_p);
            float pres = fget(&in->presence_penalty, i, d.presence_penalty);
            float freq = fget(&in->frequency_penalty, i, d.frequency_penalty);
            float rep = fget(&in->repetition_penalty, i, d.repetition_penalty);
            int64_t seed = iget(&in->seed, i, d.seed);
            int64_t lp = iget(&in->enable_log_probs, i, 0);
            int64_t nlp = iget(&in->num_logprobs, i, 0);
            if (pass == 0) {
                if (t != t || t < 0.0f || isinf(t))
                    return ms__errbuf_set(err, MS_ERR_INVALID_ARGUMENT,
                                          "temperature of user %d is %g: must be finite and >= 0",
                                          USER(i), (double)t);
                if (p != p)
                    return ms__errbuf_set(err, MS_ERR_INVALID_ARGUMENT,
                                          "top_p of user %d is NaN", USER(i));
                if (mp != mp)
                    return ms__errbuf_set(err, MS_ERR_INVALID_ARGUMENT,
                                          "min_p of user %d is NaN", USER(i));
                if (!isfinite(pres))
                    return ms__errbuf_set(err, MS_ERR_INVALID_ARGUMENT,
                                          "presence_penalty of user %d is %g: must be finite",
                                          USER(i), (double)pres);
                if (!isfinite(freq))
                    return ms__errbuf_set(err, MS_ERR_INVALID_ARGUMENT,
                                          "frequency_penalty of user %d is %g: must be finite",
                                          USER(i), (double)freq);
                if (rep != rep || rep < 0.0f || isinf(rep))
                    return ms__errbuf_set(err, MS_ERR_INVALID_ARGUMENT,
                                          "repetition_penalty of user %d is %g: must be finite "
                                          "and >= 0",
                                          USER(i), (double)rep);
                if (seed < MS_SEED_NONE)
                    return ms__errbuf_set(err, MS_ERR_INVALID_ARGUMENT,
                                          "seed of user %d is %lld: must be >= 0 or -1 (none)",
                                          USER(i), (long long)seed);
                if (nlp < 0 || nlp > INT32_MAX)
                    return ms__errbuf_set(err, MS_ERR_INVALID_ARGUMENT,
                                          "num_logprobs of user %d is %lld: must be >= 0", USER(i),
                                          (long long)nlp);
                if (lp != 0 && lp != 1)
                    return ms__errbuf_set(err, MS_ERR_INVALID_ARGUMENT,
                                          "enable_log_probs of user %d is %lld: must be 0 or 1",
                                          USER(i), (long long)lp);
                continue;
            }
            ms_slot_params o;
            o.top_p = ms__clampf(p, 0.0f, 1.0f);
            o.min_p = ms__clampf(mp, 0.0f, 1.0f);
            if (k < 1) k = max_top_k; /* "k < 1 means no restriction": the cap, or unlimited */
            if (max_top_k > 0 && k > max_top_k) k = max_top_k;
            if (k > INT32_MAX) k = INT32_MAX;
            o.top_k = (int32_t)k;
            if (t == 0.0f) { /* greedy, normalised the way TT's newest format does */
                o.temperature = 1.0f;
                o.top_k = 1;
                o.top_p = 0.0f;
            } else {
                o.temperature = t;
            }
            o.presence_penalty = pres;
            o.frequency_penalty = freq;
            o.repetition_penalty = rep == 0.0f ? 1.0f : rep;
            o.seed = seed;
            o.enable_log_probs = lp != 0;
            o.num_logprobs = (int32_t)nlp;
            out[i] = o;
        }
    }
#undef USER
    return MS_OK;
}

ms_status ms_params_chunk(const ms_sampling_params *in, int32_t dp, int32_t idx,
                          ms_sampling_params *out, ms_errbuf *err)
{
    if (!in || !out || dp < 1 || idx < 0 || idx >= dp)
        return ms__errbuf_set(err, MS_ERR_INVALID_ARGUMENT,
                              "chunk: need params, out, dp >= 1 and 0 <= idx < dp (dp=%d idx=%d)",
                              (int)dp, (int)idx);
    ms_sampling_params o = *in;
#define CHUNK(field, name)                                                                        \
    do {                                                                                          \
        if (in->field.is_set && in->field.list) {                                                \
            if (in->field.len % dp != 0)                                                          \
                return ms__errbuf_set(err, MS_ERR_INVALID_ARGUMENT,                               \
                                      "Sampling param '%s' length %d not divisible by "           \
                                      "sampling_dp %d",                                           \
                                      name, (int)in->field.len, (int)dp);                         \
            int32_t part = in->field.len / dp;                                                    \
            o.field.list = in->field.list + (size_t)part * (size_t)idx;                           \
            o.field.len = part;                                                                   \
        }                                                                                         \
    } while (0)
    CHUNK(temperature, "temperature");
    CHUNK(top_k, "top_k");
    CHUNK(top_p, "top_p");
    CHUNK(min_p, "min_p");
    CHUNK(presence_penalty, "presence_penalty");
    CHUNK(frequency_penalty, "frequency_penalty");
    CHUNK(repetition_penalty, "repetition_penalty");
    CHUNK(seed, "seed");
    CHUNK(enable_log_probs, "enable_log_probs");
    CHUNK(num_logprobs, "num_logprobs");
#undef CHUNK
    *out = o;
    return MS_OK;
}

ms_status ms_params_broadcast(const ms_slot_params *in, int32_t n, int32_t idx, int32_t slot_len,
                              ms_slot_params *out, ms_errbuf *err)
{
    if (!in || !out || n <= 0 || slot_len <= 0 || idx < 0)
        return ms__errbuf_set(err, MS_ERR_INVALID_ARGUMENT,
                              "broadcast: need in, out, n > 0, idx >= 0, slot_len > 0 "
                              "(n=%d idx=%d slot_len=%d)",
                              (int)n, (int)idx, (int)slot_len);
    const ms_slot_params v = in[idx < n ? idx : 0];
    for (int32_t i = 0; i < slot_len; i++) out[i] = v;
    return MS_OK;
}
