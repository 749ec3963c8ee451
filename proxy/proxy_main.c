/*
 * leaseway: subcommand dispatch. `run` is the proxy; `status` and `handoff`
 * are small clients of Consul and of the admin listener.
 */
#include <curl/curl.h>
#include <event2/event.h>
#include <jansson.h>
#include <llhttp.h>
#include <openssl/opensslv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "proxy/proxy_control.h"

int consul_status_main(int argc, char **argv);

static void usage(FILE *out)
{
    fprintf(out,
            "leaseway %s: a reverse proxy for single-writer apps (SQLite/LiteFS, the Epic Stack)\n\n"
            "Usage:\n"
            "  leaseway run [--config FILE] [FLAGS] [-- APP COMMAND...]\n"
            "                          run the proxy (see leaseway run --help)\n"
            "  leaseway status [--json] print the cluster from Consul, like fly status\n"
            "  leaseway handoff [--admin HOST:PORT]\n"
            "                          ask the local primary to give up the lease\n"
            "  leaseway version        print the version and library versions\n"
            "  leaseway --help         this text\n",
            LEASEWAY_VERSION);
}

static int version(void)
{
    printf("leaseway %s\n", LEASEWAY_VERSION);
    printf("libevent %s, llhttp %d.%d.%d, %s, %s, jansson %s, libyaml %s\n", event_get_version(),
           LLHTTP_VERSION_MAJOR, LLHTTP_VERSION_MINOR, LLHTTP_VERSION_PATCH, curl_version(),
           OPENSSL_VERSION_TEXT, JANSSON_VERSION, yaml_get_version_string());
    return 0;
}

static size_t print_body(char *ptr, size_t size, size_t n, void *arg)
{
    (void)arg;
    fwrite(ptr, size, n, stdout);
    return size * n;
}

/* `leaseway handoff`: POST /handoff to the local admin listener. */
static int handoff(int argc, char **argv)
{
    const char *admin = getenv("LEASEWAY_ADMIN");
    if (!admin || !*admin)
        admin = "127.0.0.1:9901";
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("Usage: leaseway handoff [--admin HOST:PORT]\n\n"
                   "Asks the leaseway on this machine (its admin listener, default $LEASEWAY_ADMIN or\n"
                   "127.0.0.1:9901) to release the primary lease so that another candidate takes it.\n");
            return 0;
        } else if (!strcmp(argv[i], "--admin") && i + 1 < argc) {
            admin = argv[++i];
        } else if (!strncmp(argv[i], "--admin=", 8)) {
            admin = argv[i] + 8;
        } else {
            fprintf(stderr, "leaseway handoff: unexpected argument \"%s\"\n", argv[i]);
            return 2;
        }
    }
    char url[512];
    snprintf(url, sizeof(url), "http://%s/handoff", admin);
    CURL *h = curl_easy_init();
    if (!h)
        return 1;
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, "");
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 10L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, print_body);
    CURLcode rc = curl_easy_perform(h);
    long code = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_cleanup(h);
    if (rc != CURLE_OK) {
        fprintf(stderr, "leaseway handoff: cannot reach the admin listener at %s: %s\n", admin,
                curl_easy_strerror(rc));
        return 1;
    }
    return code == 200 ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "run"))
        return proxy_run(argc - 2, argv + 2);
    if (!strcmp(cmd, "status"))
        return consul_status_main(argc - 2, argv + 2);
    if (!strcmp(cmd, "handoff"))
        return handoff(argc - 2, argv + 2);
    if (!strcmp(cmd, "version") || !strcmp(cmd, "--version"))
        return version();
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "leaseway: unknown command \"%s\"\n\n", cmd);
    usage(stderr);
    return 2;
}
