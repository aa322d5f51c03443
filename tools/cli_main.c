/*
 * meshsample: the command-line front end. Subcommands live in cli_<name>.c; this file only
 * dispatches. Usage and help go to stdout; errors are one line on stderr with exit status 2.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const char usage[] =
    "usage: meshsample <command> [options]\n"
    "\n"
    "Turn a batch of LLM logits into next tokens (meshsample %s).\n"
    "\n"
    "commands:\n"
    "  sample   sample next tokens from a [batch, vocab] .npy logits file (JSON Lines out)\n"
    "  demo     decode loop of a toy language model on a 4x8 mesh (no input files)\n"
    "  bench    time the sampling step against the memory-read floor\n"
    "\n"
    "`meshsample <command> --help` describes each command's options.\n"
    "Exit status: 0 success, 1 internal failure, 2 invalid arguments or input.\n";

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "meshsample: missing command (sample, demo, bench; see --help)\n");
        return CLI_EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        printf(usage, ms_version_string());
        return CLI_EXIT_OK;
    }
    if (strcmp(cmd, "--version") == 0) {
        printf("meshsample %s\n", ms_version_string());
        return CLI_EXIT_OK;
    }
    if (strcmp(cmd, "sample") == 0)
        return cli_sample_main(argc - 1, argv + 1);
    if (strcmp(cmd, "demo") == 0)
        return cli_demo_main(argc - 1, argv + 1);
    if (strcmp(cmd, "bench") == 0)
        return cli_bench_main(argc - 1, argv + 1);
    return cli_error(NULL, "unknown command '%.100s' (sample, demo, bench; see --help)", cmd);
}
