/* The terminal of a VM in the foreground (`cairn run`): raw mode so keys
 * reach the guest as typed, restored on every exit path. */
#ifndef CAIRN_CLI_TERM_H
#define CAIRN_CLI_TERM_H

/* No-op when stdin is not a terminal. */
void term_raw(void);
void term_restore(void);

#endif
