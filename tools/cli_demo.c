/*
 * `meshsample demo`: one sampling step on a built-in, deterministic example, with no input
 * files. Eight users over a 1000-token vocabulary exercise each feature once: greedy, top-k,
 * top-p, min-p, penalties with a short history, and log-probs. The output is the same JSON
 * Lines as `sample`, then one summary object.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

#define CMD "demo"
#define DEMO_USERS 8
#define DEMO_VOCAB 1000
#define DEMO_HIST 6
#define DEMO_TOP 3

static const char demo_usage[] =
    "usage: meshsample demo\n"
    "\n"
    "Run one sampling step on a built-in example (8 users, vocabulary 1000, fixed seeds):\n"
    "  user 0 greedy          user 1 T=0.7 top-k 5          user 2 T=1 top-p 0.9\n"
    "  user 3 T=1 min-p 0.1   user 4 T=0.8 k=40 p=0.95 with presence/frequency/repetition\n"
    "  user 5 T=1.5 k=50      user 6 greedy, repetition 2 on its argmax  user 7 T=0.6 p=0.8\n"
    "Prints one JSON line per user (as `meshsample sample --logprobs 3`), then a summary.\n";

/* Per-user parameters, columns as ms_sampling_params. */
static const float demo_temp[DEMO_USERS] = {0.0f, 0.7f, 1.0f, 1.0f, 0.8f, 1.5f, 0.0f, 0.6f};
static const int64_t demo_topk[DEMO_USERS] = {1, 5, 0, 0, 40, 50, 1, 0};
static const float demo_topp[DEMO_USERS] = {1.0f, 1.0f, 0.9f, 1.0f, 0.95f, 1.0f, 1.0f, 0.8f};
static const float demo_minp[DEMO_USERS] = {0.0f, 0.0f, 0.0f, 0.1f, 0.0f, 0.0f, 0.0f, 0.05f};
static const float demo_pres[DEMO_USERS] = {0, 0, 0, 0, 0.5f, 0, 0, 0};
static const float demo_freq[DEMO_USERS] = {0, 0, 0, 0, 0.5f, 0, 0, 0};
static const float demo_rep[DEMO_USERS] = {1, 1, 1, 1, 1.3f, 1, 2.0f, 1};

static int32_t argmax_row(const float *row, int32_t n)
{
    int32_t best = 0;
    for (int32_t i = 1; i < n; i++)
        if (row[i] > row[best])
            best = i;
    return best;
}

int cli_demo_main(int argc, char **argv)
{
    cli_opts o;
    cli_opts_init(&o, argc, argv);
    while (cli_opts_next(&o)) {
        if (cli_opt_is(&o, "help")) {
            fputs(demo_usage, stdout);
            return CLI_EXIT_OK;
        }
        cli_opt_unknown(&o);
    }
    if (o.error)
        return cli_error(CMD, "%s", o.msg);

    int rc = CLI_EXIT_FAILURE;
    ms_generator *g = NULL;
    ms_logits *views = NULL;
    ms_step_output out = {0};
    strbuf buf = {0};
    ms_status st;
    float *logits = malloc((size_t)DEMO_USERS * DEMO_VOCAB * sizeof *logits);
    if (!logits)
        return cli_error_status(CLI_EXIT_FAILURE, CMD, "out of memory");

    uint64_t rng = 20240601;
    for (int u = 0; u < DEMO_USERS; u++)
        cli_synth_logits_row(logits + (size_t)u * DEMO_VOCAB, DEMO_VOCAB, &rng);

    /* Histories: user 4 has a prompt and two generated tokens (one twice, so frequency counts);
     * user 6's prompt holds its own argmax, which repetition 2 should push off the top. */
    int32_t prompt[DEMO_USERS][DEMO_HIST], outputs[DEMO_USERS][DEMO_HIST];
    for (int u = 0; u < DEMO_USERS; u++)
        for (int j = 0; j < DEMO_HIST; j++)
            prompt[u][j] = outputs[u][j] = -1;
    const int32_t top4 = argmax_row(logits + 4 * DEMO_VOCAB, DEMO_VOCAB);
    prompt[4][0] = 17, prompt[4][1] = 256, prompt[4][2] = 999;
    outputs[4][0] = top4, outputs[4][1] = top4, outputs[4][2] = 17;
    prompt[6][0] = argmax_row(logits + 6 * DEMO_VOCAB, DEMO_VOCAB);

    ms_generator_config cfg;
    ms_generator_config_init(&cfg);
    cfg.mesh.vocab_size = DEMO_VOCAB;
    cfg.mesh.max_batch_size = DEMO_USERS;
    cfg.num_threads = 1;
    if ((st = ms_generator_create(&cfg, &g)) != MS_OK) {
        const char *m = ms_create_last_error();
        rc = cli_error(CMD, "%s", m && *m ? m : ms_status_message(st));
        g = NULL;
        goto done;
    }

    ms_sampling_params p;
    ms_sampling_params_init(&p);
    p.temperature = ms_flist(demo_temp, DEMO_USERS);
    p.top_k = ms_ilist(demo_topk, DEMO_USERS);
    p.top_p = ms_flist(demo_topp, DEMO_USERS);
    p.min_p = ms_flist(demo_minp, DEMO_USERS);
    p.presence_penalty = ms_flist(demo_pres, DEMO_USERS);
    p.frequency_penalty = ms_flist(demo_freq, DEMO_USERS);
    p.repetition_penalty = ms_flist(demo_rep, DEMO_USERS);
    p.enable_log_probs = ms_iscalar(1);
    p.num_logprobs = ms_iscalar(DEMO_TOP);
    int64_t seeds[DEMO_USERS];
    for (int u = 0; u < DEMO_USERS; u++)
        seeds[u] = 42 + u;
    p.seed = ms_ilist(seeds, DEMO_USERS);
    const char *what = "parameters";
    if ((st = ms_generator_reset_sampling_params(g, &p, NULL, 0)) != MS_OK ||
        (what = "seeds", st = ms_generator_reset_seed(g, seeds, DEMO_USERS, NULL, DEMO_USERS)) != MS_OK ||
        (what = "prompt", st = ms_generator_reset_prompt_tokens(g, &prompt[0][0], DEMO_USERS, DEMO_HIST,
                                                                 NULL)) != MS_OK ||
        (what = "outputs", st = ms_generator_reset_output_state(g, &outputs[0][0], DEMO_USERS, DEMO_HIST,
                                                                 NULL)) != MS_OK) {
        rc = cli_error_status(CLI_EXIT_FAILURE, CMD, "%s: %s", what, ms_generator_last_error(g));
        goto done;
    }

    const int32_t n_views = ms_generator_num_shards(g);
    const int32_t stride = ms_generator_max_logprobs(g);
    views = calloc((size_t)(n_views > 0 ? n_views : 1), sizeof *views);
    if (!views || cli_step_output_alloc(&out, DEMO_USERS, stride)) {
        rc = cli_error_status(CLI_EXIT_FAILURE, CMD, "out of memory");
        goto done;
    }
    const ms_logits full = {.data = logits, .dtype = MS_DTYPE_F32, .row_stride = 0};
    for (int32_t d = 0; d < n_views; d++)
        if ((st = ms_generator_device_view(g, &full, d, &views[d])) != MS_OK) {
            rc = cli_error_status(CLI_EXIT_FAILURE, CMD, "view: %s", ms_generator_last_error(g));
            goto done;
        }

    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    st = ms_generator_sample(g, views, n_views, false, &out);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (st != MS_OK) {
        rc = cli_error_status(CLI_EXIT_FAILURE, CMD, "sample: %s", ms_generator_last_error(g));
        goto done;
    }
    const double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-6;

    cli_emit_step(&buf, 0, DEMO_USERS, &out, stride, true);
    int greedy_agree = 0;
    for (int u = 0; u < DEMO_USERS; u++)
        greedy_agree += out.tokens[u] == argmax_row(logits + (size_t)u * DEMO_VOCAB, DEMO_VOCAB);
    sb_printf(&buf,
              "{\"summary\":{\"library\":\"%s\",\"users\":%d,\"vocab\":%d,\"step_ms\":%.3f,"
              "\"argmax_picks\":%d,\"note\":\"user 6 is greedy but its argmax is in its prompt "
              "with repetition 2\"}}\n",
              ms_version_string(), DEMO_USERS, DEMO_VOCAB, ms, greedy_agree);
    if (buf.oom) {
        rc = cli_error_status(CLI_EXIT_FAILURE, CMD, "out of memory");
        goto done;
    }
    fwrite(buf.p, 1, buf.len, stdout);
    rc = fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_FAILURE;

done:
    sb_free(&buf);
    cli_step_output_free(&out);
    free(views);
    ms_generator_destroy(g);
    free(logits);
    return rc;
}
