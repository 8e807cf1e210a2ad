#ifndef GW_MASTER_H
#define GW_MASTER_H

/* Validates the configuration, binds the listeners, forks the workers and
 * supervises them until told to stop. Returns the process exit code. */
int gw_master_run(void);

#endif
