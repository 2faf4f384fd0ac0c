// Level-checked logfmt lines on stderr: `ts=... level=info rank=0 msg="..." k=v`.
// The level comes from FALCONLITE_LOG (error|warn|info|debug), default info.
#pragma once

typedef enum log_level { LOG_ERROR = 0, LOG_WARN, LOG_INFO, LOG_DEBUG } log_level;

extern log_level log_current_level;
void log_set_level_from_env(void);
// Component tag written on every line (e.g. "router", "shard rank=1").
void log_set_component(const char *component);
void log_write(log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define LOG_AT(lvl, ...)                                                                           \
    do {                                                                                           \
        if ((lvl) <= log_current_level) log_write((lvl), __VA_ARGS__);                             \
    } while (0)
#define log_error(...) LOG_AT(LOG_ERROR, __VA_ARGS__)
#define log_warn(...)  LOG_AT(LOG_WARN, __VA_ARGS__)
#define log_info(...)  LOG_AT(LOG_INFO, __VA_ARGS__)
#define log_debug(...) LOG_AT(LOG_DEBUG, __VA_ARGS__)
