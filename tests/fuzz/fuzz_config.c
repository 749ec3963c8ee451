/*
 * fuzz_config: a --config YAML file through proxy_config_load() (the file is a memfd, given as
 * /proc/self/fd/N; flags and LEASEWAY_* variables are not set), as `leaseway run --config F`
 * reads it: the flat mapping, lists, ${VAR} expansion, every value's type, then the
 * cross-field checks. A configuration that loads is printed as `--check` prints it.
 *
 * Besides ASan/UBSan/LeakSanitizer: a loaded configuration has what finish() promises (an
 * instance ID, a target with a port, an http(s) advertise URL), and what --check prints is
 * YAML that libyaml reads to the end.
 */
#include "fuzz.h"

#include <sys/mman.h>
#include <unistd.h>
#include <yaml.h>

#include "proxy/proxy_config.h"

static int fd = -1;
static char path[64];
static FILE *devnull;

/* What --check prints must be YAML. */
static void check_printed(const struct proxy_config *cfg)
{
    char *out = NULL;
    size_t len = 0;
    FILE *saved = stdout;
    stdout = open_memstream(&out, &len);
    FUZZ_CHECK(stdout, "open_memstream");
    proxy_config_print(cfg);
    fclose(stdout);
    stdout = saved;

    yaml_parser_t parser;
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_string(&parser, (const unsigned char *)out, len);
    for (;;) {
        yaml_event_t ev;
        FUZZ_CHECK(yaml_parser_parse(&parser, &ev), "--check printed invalid YAML: %s (line %zu)\n%s",
                   parser.problem ? parser.problem : "?", parser.problem_mark.line + 1, out);
        yaml_event_type_t t = ev.type;
        yaml_event_delete(&ev);
        if (t == YAML_STREAM_END_EVENT)
            break;
    }
    yaml_parser_delete(&parser);
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (fd < 0) {
        fd = memfd_create("leaseway.yml", 0);
        FUZZ_CHECK(fd >= 0, "memfd_create");
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        devnull = fopen("/dev/null", "w");
        FUZZ_CHECK(devnull, "/dev/null");
    }
    FUZZ_CHECK(ftruncate(fd, 0) == 0 && pwrite(fd, data, size, 0) == (ssize_t)size, "memfd write");

    char a0[] = "--config", *argv[] = {a0, path, NULL};
    struct proxy_config cfg;
    FILE *saved = stderr;
    stderr = devnull; /* "leaseway: <what is wrong>" for most inputs */
    int rc = proxy_config_load(&cfg, 2, argv);
    stderr = saved;
    if (rc == 0) {
        FUZZ_CHECK(cfg.instance && cfg.instance[0], "no instance");
        FUZZ_CHECK(cfg.target && strchr(cfg.target, ':'), "target without a port");
        FUZZ_CHECK(cfg.advertise &&
                       (!strncmp(cfg.advertise, "http://", 7) || !strncmp(cfg.advertise, "https://", 8)),
                   "advertise");
        check_printed(&cfg);
    }
    proxy_config_free(&cfg);
    return 0;
}
