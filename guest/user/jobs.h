/* Command-line jobs, the commands, and the serial shell. */
#ifndef GUEST_JOBS_H
#define GUEST_JOBS_H

void jobs_parse(const char *cmdline);
void jobs_warn_unplaced(void);
void jobs_run_cpu(unsigned cpu);

#endif
