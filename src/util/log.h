/* The logging sink: messages to stderr, filtered by a level set once by the
 * front end (-v / -q).  It is the one piece of global state besides the
 * device list. */
#ifndef CAIRN_UTIL_LOG_H
#define CAIRN_UTIL_LOG_H

enum log_level { LOG_ERROR = 0, LOG_WARN, LOG_INFO, LOG_DEBUG };

void log_set_level(enum log_level level);
enum log_level log_get_level(void);
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Microseconds since the process started (for start-up measurements). */
unsigned long long log_uptime_us(void);

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

#endif
