/*
 * leaseway: subcommand dispatch. `run` is the proxy; `status` and `handoff`
 * are small clients of Consul and of the admin listener.
 */
#include <curl/curl.h>
#include <event2/event.h>
#include <jansson.h>
#include <llhttp.h>
#include <openssl/crypto.h>
#include <openssl/opensslv.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <yaml.h>

#include "health/health.h"
#include "proxy/proxy_control.h"

int consul_status_main(int argc, char **argv);

static void usage(FILE *out)
{
    fprintf(out,
            "leaseway %s: a reverse proxy for single-writer apps (SQLite/LiteFS, the Epic Stack)\n\n"
            "Put one in front of every instance of the app: reads are served by the local app, writes\n"
            "go to the primary (the holder of a lease in Consul), and an instance gets no traffic until\n"
            "its database migrations are done.\n\n"
            "Usage:\n"
            "  leaseway run [--config FILE] [FLAGS] [-- APP COMMAND...]\n"
            "                          run the proxy (and optionally supervise the app)\n"
            "  leaseway status [--json] [--service NAME] [--consul-addr URL] [--lease-key KEY]\n"
            "                          print the cluster from Consul, like fly status\n"
            "  leaseway handoff [--admin HOST:PORT]\n"
            "                          ask the local primary to give up the lease\n"
            "  leaseway version        print the version and the library versions\n"
            "  leaseway help [COMMAND] this text, or a command's (same as COMMAND --help)\n\n"
            "Admin listener (--admin, default 127.0.0.1:9901): GET / status page, /status, /cluster,\n"
            "/health, /metrics; POST /handoff.\n",
            LEASEWAY_VERSION);
}

static void version_usage(FILE *out)
{
    fprintf(out, "Usage: leaseway version\n\n"
                 "Print leaseway's version, then for each library the version loaded at run time and,\n"
                 "in parentheses, the one it was compiled against.\n");
}

static int version(int argc, char **argv)
{
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            version_usage(stdout);
            return 0;
        }
        fprintf(stderr, "leaseway version: unexpected argument \"%s\"\n", argv[i]);
        version_usage(stderr);
        return 2;
    }
    curl_version_info_data *cv = curl_version_info(CURLVERSION_NOW);
    printf("leaseway %s\n", LEASEWAY_VERSION);
    printf("  libevent  %s (built with %s)\n", event_get_version(), LIBEVENT_VERSION);
    printf("  llhttp    %d.%d.%d (compiled in from node-llhttp)\n", LLHTTP_VERSION_MAJOR,
           LLHTTP_VERSION_MINOR, LLHTTP_VERSION_PATCH);
    printf("  libcurl   %s (built with %s; %s)\n", cv->version, LIBCURL_VERSION,
           cv->ssl_version ? cv->ssl_version : "no TLS");
    printf("  OpenSSL   %s (built with %s)\n", OpenSSL_version(OPENSSL_VERSION), OPENSSL_VERSION_TEXT);
    printf("  jansson   %s (built with %s)\n", jansson_version_str(), JANSSON_VERSION);
    printf("  libyaml   %s\n", yaml_get_version_string());
    printf("  SQLite    %s (built with %s)\n", sqlite3_libversion(), SQLITE_VERSION);
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
                   "127.0.0.1:9901) to release the primary lease so that another candidate takes it:\n"
                   "the same as curl -X POST http://HOST:PORT/handoff. Writes arriving meanwhile are\n"
                   "held (--hold-timeout) until the new primary is known.\n\n"
                   "  --admin HOST:PORT   the admin listener to ask\n"
                   "  -h, --help          this help\n\n"
                   "Exit status: 0 when the lease is being released; 1 when this instance is not the\n"
                   "primary, has no Consul lease, or cannot be reached; 2 on bad usage.\n");
            return 0;
        } else if (!strcmp(argv[i], "--admin") || !strncmp(argv[i], "--admin=", 8)) {
            admin = argv[i][7] == '=' ? argv[i] + 8 : i + 1 < argc ? argv[++i] : "";
            if (!*admin) {
                fprintf(stderr, "leaseway handoff: --admin needs a value (HOST:PORT)\n");
                return 2;
            }
        } else {
            fprintf(stderr, "leaseway handoff: unexpected argument \"%s\"\n", argv[i]);
            return 2;
        }
    }
    char url[512];
    /* an admin listener on ":9901" listens on every interface, loopback included */
    snprintf(url, sizeof(url), "http://%s%s/handoff", admin[0] == ':' ? "127.0.0.1" : "", admin);
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

static int dispatch(int argc, char **argv)
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
        return version(argc - 2, argv + 2);
    if (!strcmp(cmd, "help") && argc > 2) {
        /* leaseway help COMMAND == leaseway COMMAND --help */
        char *help_argv[] = {argv[0], argv[2], "--help", NULL};
        if (strcmp(argv[2], "help") != 0)
            return dispatch(3, help_argv);
    }
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "leaseway: unknown command \"%s\"\n\n", cmd);
    usage(stderr);
    return 2;
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "__child")) /* a child's first step: see health/health.h */
        return health_proc_shim_main(argc, argv);
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n > 0) {
        self[n] = '\0';
        health_proc_use_shim(self);
    }
    int rc = dispatch(argc, argv);
    health_proc_use_shim(NULL);
    return rc;
}
