#ifndef GW_WORKER_H
#define GW_WORKER_H

#include "gw/worker-t.h"

/* Runs a worker in the forked child: loads the configuration snapshot at
 * config_path, serves the listening sockets listen_fds[i] until told to
 * stop, and exits the process. Never returns. ctl_fd reads the master's
 * orders; report_fd writes this worker's requests to the master (POST
 * /config: "apply <path>"). */
void gw_worker_main(int id, const int *listen_fds, int ctl_fd, int report_fd,
                    const char *config_path) __attribute__((noreturn));

#endif
