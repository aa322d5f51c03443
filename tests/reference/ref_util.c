#include "ref_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void ref_rng_init(ref_rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t ref_rng_u64(ref_rng *r)
{
    uint64_t *s = r->s;
    const uint64_t result = rotl(s[1] * 5, 7) * 9;
    const uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double ref_rng_uniform(ref_rng *r) { return (double)(ref_rng_u64(r) >> 11) * 0x1p-53; }

int32_t ref_rng_int(ref_rng *r, int32_t lo, int32_t hi)
{
    uint64_t span = (uint64_t)((int64_t)hi - lo + 1);
    return (int32_t)(lo + (int64_t)(ref_rng_u64(r) % span));
}

double ref_rng_normal(ref_rng *r)
{
    /* Box-Muller; u1 in (0, 1] so the log is finite. */
    double u1 = 1.0 - ref_rng_uniform(r);
    double u2 = ref_rng_uniform(r);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

uint64_t ref_rng_seed63(ref_rng *r) { return ref_rng_u64(r) >> 1; }

static uint32_t f2u(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float u2f(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

uint16_t ref_f32_to_bf16(float f)
{
    uint32_t u = f2u(f);
    if (isnan(f))
        return (uint16_t)((u >> 16) | 0x40u);
    u += 0x7FFFu + ((u >> 16) & 1u); /* round to nearest even */
    return (uint16_t)(u >> 16);
}

float ref_bf16_to_f32(uint16_t h) { return u2f((uint32_t)h << 16); }

uint16_t ref_f32_to_f16(float f)
{
    uint32_t u = f2u(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    if (isnan(f))
        return (uint16_t)(sign | 0x7E00u);
    float a = fabsf(f);
    if (a >= 65520.0f) /* rounds to infinity */
        return (uint16_t)(sign | 0x7C00u);
    if (a < 0x1p-14f) {
        /* Subnormal: value = m * 2^-24; nearbyint rounds to nearest even. */
        float m = nearbyintf(a * 0x1p24f);
        return (uint16_t)(sign | (uint16_t)m);
    }
    uint32_t au = f2u(a);
    uint32_t e = (au >> 23) - 127 + 15;
    uint32_t mant = au & 0x7FFFFFu;
    uint32_t h = (e << 10) | (mant >> 13);
    uint32_t rest = mant & 0x1FFFu;
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1u)))
        h++; /* carries into the exponent correctly */
    return (uint16_t)(sign | h);
}

float ref_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t e = (h >> 10) & 0x1Fu;
    uint32_t m = h & 0x3FFu;
    if (e == 0) {
        float v = (float)m * 0x1p-24f; /* exact: m < 2^10 */
        return sign ? -v : v;
    }
    if (e == 31)
        return u2f(sign | 0x7F800000u | (m << 13));
    return u2f(sign | ((e - 15 + 127) << 23) | (m << 13));
}

bool ref_scale_sanitizer(void)
{
    const char *s = getenv("MS_TEST_SCALE");
    return s != NULL && strcmp(s, "sanitizer") == 0;
}

static size_t dtype_size(ms_dtype d) { return d == MS_DTYPE_F32 ? 4 : 2; }

void ref_batch_init(ref_batch *b, ms_dtype dtype, int32_t users, int32_t padded, int64_t stride)
{
    b->dtype = dtype;
    b->users = users;
    b->padded = padded;
    b->stride = stride < padded ? padded : stride;
    b->data = calloc((size_t)users * (size_t)b->stride, dtype_size(dtype));
    b->exact = calloc((size_t)users * (size_t)padded, sizeof(float));
    if (b->data == NULL || b->exact == NULL)
        abort();
}

void ref_batch_free(ref_batch *b)
{
    free(b->data);
    free(b->exact);
    b->data = NULL;
    b->exact = NULL;
}

static float batch_store(ref_batch *b, size_t at, float v)
{
    switch (b->dtype) {
    case MS_DTYPE_F32:
        ((float *)b->data)[at] = v;
        return v;
    case MS_DTYPE_BF16: {
        uint16_t h = ref_f32_to_bf16(v);
        ((uint16_t *)b->data)[at] = h;
        return ref_bf16_to_f32(h);
    }
    case MS_DTYPE_F16: {
        uint16_t h = ref_f32_to_f16(v);
        ((uint16_t *)b->data)[at] = h;
        return ref_f16_to_f32(h);
    }
    }
    abort();
}

float ref_batch_set(ref_batch *b, int32_t u, int32_t j, float v)
{
    float e = batch_store(b, (size_t)u * (size_t)b->stride + (size_t)j, v);
    b->exact[(size_t)u * (size_t)b->padded + (size_t)j] = e;
    return e;
}

void ref_batch_poison_gap(ref_batch *b, ref_rng *r)
{
    static const float hostile[3] = {60000.0f, INFINITY, NAN};
    for (int32_t u = 0; u < b->users; u++)
        for (int64_t j = b->padded; j < b->stride; j++)
            batch_store(b, (size_t)u * (size_t)b->stride + (size_t)j, hostile[ref_rng_int(r, 0, 2)]);
}

ms_logits ref_batch_logits(const ref_batch *b)
{
    ms_logits l = {b->data, b->dtype, b->stride};
    return l;
}

int32_t ref_batch_views(const ref_batch *b, ms_generator *g, ms_logits *views, int32_t max)
{
    const ms_logits full = ref_batch_logits(b);
    const int32_t n = ms_generator_num_shards(g);
    if (n > max)
        return -1;
    for (int32_t d = 0; d < n; d++) {
        ms_status s = ms_generator_device_view(g, &full, d, &views[d]);
        if (s != MS_OK) {
            fprintf(stderr, "device_view %d: %s: %s\n", d, ms_status_name(s), ms_generator_last_error(g));
            return -1;
        }
    }
    return n;
}

const float *ref_batch_row(const ref_batch *b, int32_t u) { return b->exact + (size_t)u * (size_t)b->padded; }

ref_raw_params ref_raw_default(void)
{
    ref_raw_params p = {1.0f, 0, 1.0f, 0.0f, 0.0f, 0.0f, 1.0f, 0, 0};
    return p;
}

ref_gen_config ref_gen_config_default(int32_t vocab, int32_t users)
{
    ref_gen_config c = {vocab, vocab, users, 0, MS_MAX_TOP_LOGPROBS_DEFAULT, MS_LOGPROBS_RAW,
                        MS_PENALTY_ORDER_OPENAI, 1, 1, 1, 1};
    return c;
}

ms_generator *ref_gen_create(const ref_gen_config *c)
{
    ms_generator_config cfg;
    ms_generator_config_init(&cfg);
    cfg.mesh.vocab_size = c->vocab;
    cfg.mesh.padded_vocab_size = c->padded;
    cfg.mesh.max_batch_size = c->users;
    cfg.mesh.max_top_k = c->max_top_k;
    cfg.max_logprobs = c->max_logprobs;
    cfg.logprobs_mode = c->mode;
    cfg.penalty_order = c->order;
    cfg.num_threads = c->threads;
    cfg.mesh.rows = c->rows;
    cfg.mesh.cols = c->cols;
    cfg.mesh.all_gather_axis = c->axis;
    ms_generator *g = NULL;
    ms_status s = ms_generator_create(&cfg, &g);
    if (s != MS_OK) {
        fprintf(stderr, "ms_generator_create: %s: %s\n", ms_status_name(s), ms_create_last_error());
        return NULL;
    }
    return g;
}

ms_status ref_install_params(ms_generator *g, const ref_raw_params *raw, int32_t n)
{
    float *fl = malloc(sizeof(float) * (size_t)n * 6);
    int64_t *il = malloc(sizeof(int64_t) * (size_t)n * 3);
    if (fl == NULL || il == NULL)
        abort();
    for (int32_t i = 0; i < n; i++) {
        fl[0 * n + i] = raw[i].temperature;
        fl[1 * n + i] = raw[i].top_p;
        fl[2 * n + i] = raw[i].min_p;
        fl[3 * n + i] = raw[i].presence;
        fl[4 * n + i] = raw[i].frequency;
        fl[5 * n + i] = raw[i].repetition;
        il[0 * n + i] = raw[i].top_k;
        il[1 * n + i] = raw[i].enable_log_probs;
        il[2 * n + i] = raw[i].num_logprobs;
    }
    ms_sampling_params sp;
    ms_sampling_params_init(&sp);
    sp.temperature = ms_flist(fl + 0 * n, n);
    sp.top_p = ms_flist(fl + 1 * n, n);
    sp.min_p = ms_flist(fl + 2 * n, n);
    sp.presence_penalty = ms_flist(fl + 3 * n, n);
    sp.frequency_penalty = ms_flist(fl + 4 * n, n);
    sp.repetition_penalty = ms_flist(fl + 5 * n, n);
    sp.top_k = ms_ilist(il + 0 * n, n);
    sp.enable_log_probs = ms_ilist(il + 1 * n, n);
    sp.num_logprobs = ms_ilist(il + 2 * n, n);
    ms_status s = ms_generator_reset_sampling_params(g, &sp, NULL, 0);
    if (s != MS_OK)
        fprintf(stderr, "reset_sampling_params: %s: %s\n", ms_status_name(s), ms_generator_last_error(g));
    free(fl);
    free(il);
    return s;
}

ms_status ref_install_seeds(ms_generator *g, const uint64_t *seeds, int32_t n)
{
    int64_t *s = malloc(sizeof(int64_t) * (size_t)n);
    if (s == NULL)
        abort();
    for (int32_t i = 0; i < n; i++)
        s[i] = (int64_t)seeds[i];
    ms_status st = ms_generator_reset_seed(g, s, n, NULL, n);
    if (st != MS_OK)
        fprintf(stderr, "reset_seed: %s: %s\n", ms_status_name(st), ms_generator_last_error(g));
    free(s);
    return st;
}

void ref_out_init(ref_out *o, int32_t users, int32_t cap)
{
    if (cap < 1)
        cap = 1;
    o->users = users;
    o->cap = cap;
    o->tokens = calloc((size_t)users, sizeof(int32_t));
    o->row_error = calloc((size_t)users, 1);
    o->logprob = calloc((size_t)users, sizeof(float));
    o->rank = calloc((size_t)users, sizeof(int32_t));
    o->top_count = calloc((size_t)users, sizeof(int32_t));
    o->top_ids = calloc((size_t)users * (size_t)cap, sizeof(int32_t));
    o->top_logprobs = calloc((size_t)users * (size_t)cap, sizeof(float));
    if (!o->tokens || !o->row_error || !o->logprob || !o->rank || !o->top_count || !o->top_ids ||
        !o->top_logprobs)
        abort();
    ms_step_output so = {o->tokens, o->row_error, o->logprob, o->rank, o->top_count, o->top_ids,
                         o->top_logprobs};
    o->out = so;
}

void ref_out_free(ref_out *o)
{
    free(o->tokens);
    free(o->row_error);
    free(o->logprob);
    free(o->rank);
    free(o->top_count);
    free(o->top_ids);
    free(o->top_logprobs);
}

void ref_hist_init(ref_hist *h, int32_t users, int32_t vocab)
{
    h->users = users;
    h->vocab = vocab;
    h->in_prompt = calloc((size_t)users * (size_t)vocab, 1);
    h->counts = calloc((size_t)users * (size_t)vocab, sizeof(int32_t));
    if (!h->in_prompt || !h->counts)
        abort();
}

void ref_hist_free(ref_hist *h)
{
    free(h->in_prompt);
    free(h->counts);
}

ms_status ref_hist_install(ref_hist *h, ms_generator *g, const int32_t *prompt, int32_t pcols,
                           const int32_t *out, int32_t ocols)
{
    const size_t n = (size_t)h->users * (size_t)h->vocab;
    memset(h->in_prompt, 0, n);
    memset(h->counts, 0, n * sizeof(int32_t));
    ms_status s = ms_generator_reset_prompt_tokens(g, prompt, h->users, pcols, NULL);
    if (s != MS_OK) {
        fprintf(stderr, "reset_prompt_tokens: %s: %s\n", ms_status_name(s), ms_generator_last_error(g));
        return s;
    }
    s = ms_generator_reset_output_state(g, out, h->users, ocols, NULL);
    if (s != MS_OK) {
        fprintf(stderr, "reset_output_state: %s: %s\n", ms_status_name(s), ms_generator_last_error(g));
        return s;
    }
    for (int32_t u = 0; u < h->users; u++) {
        for (int32_t j = 0; j < pcols; j++) {
            int32_t t = prompt[(size_t)u * (size_t)pcols + (size_t)j];
            if (t >= 0)
                h->in_prompt[(size_t)u * (size_t)h->vocab + (size_t)t] = 1;
        }
        for (int32_t j = 0; j < ocols; j++) {
            int32_t t = out[(size_t)u * (size_t)ocols + (size_t)j];
            if (t >= 0)
                h->counts[(size_t)u * (size_t)h->vocab + (size_t)t]++;
        }
    }
    return MS_OK;
}

ms_status ref_hist_random(ref_hist *h, ms_generator *g, ref_rng *r, int32_t max_prompt,
                          int32_t max_out)
{
    const int32_t pc = max_prompt > 0 ? max_prompt : 1, oc = max_out > 0 ? max_out : 1;
    int32_t *prompt = malloc(sizeof(int32_t) * (size_t)h->users * (size_t)pc);
    int32_t *out = malloc(sizeof(int32_t) * (size_t)h->users * (size_t)oc);
    if (!prompt || !out)
        abort();
    for (int32_t u = 0; u < h->users; u++) {
        int32_t np = max_prompt > 0 ? ref_rng_int(r, 0, max_prompt) : 0;
        int32_t no = max_out > 0 ? ref_rng_int(r, 0, max_out) : 0;
        for (int32_t j = 0; j < pc; j++)
            prompt[u * pc + j] = j < np ? ref_rng_int(r, 0, h->vocab - 1) : -1;
        /* Outputs from a few distinct ids so that counts above 1 are common. */
        int32_t base = ref_rng_int(r, 0, h->vocab - 1);
        for (int32_t j = 0; j < oc; j++)
            out[u * oc + j] = j < no ? (base + ref_rng_int(r, 0, 3) * 7) % h->vocab : -1;
    }
    ms_status s = ref_hist_install(h, g, prompt, pc, out, oc);
    free(prompt);
    free(out);
    return s;
}

void ref_hist_commit(ref_hist *h, const int32_t *tokens)
{
    for (int32_t u = 0; u < h->users; u++)
        if (tokens[u] >= 0 && tokens[u] < h->vocab)
            h->counts[(size_t)u * (size_t)h->vocab + (size_t)tokens[u]]++;
}
