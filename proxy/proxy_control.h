/*
 * `leaseway run`: the control thread (config, gate, lease, admin, signals).
 */
#ifndef LEASEWAY_PROXY_CONTROL_H
#define LEASEWAY_PROXY_CONTROL_H

/* argv: the words after "run". Returns the process exit code. */
int proxy_run(int argc, char **argv);

#endif
