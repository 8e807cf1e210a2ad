#ifndef GW_ADMIN_CLI_H
#define GW_ADMIN_CLI_H

/* The operator commands that talk to a running node (admin_cli.c):
 * `luagate reload`, `luagate health`, `luagate config diff`. argv[1] is the
 * command. gw_settings.prefix must be set. Returns the exit code. */
int gw_admin_cli(int argc, char **argv);

#endif
