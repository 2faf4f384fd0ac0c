#include "common/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

log_level log_current_level = LOG_INFO;
static char log_component[64] = "falconlite";
static pthread_mutex_t log_mutex = PTHREAD_MUTEX_INITIALIZER;

void log_set_level_from_env(void) {
    const char *v = getenv("FALCONLITE_LOG");
    if (!v) return;
    if (!strcmp(v, "error")) log_current_level = LOG_ERROR;
    else if (!strcmp(v, "warn")) log_current_level = LOG_WARN;
    else if (!strcmp(v, "info")) log_current_level = LOG_INFO;
    else if (!strcmp(v, "debug")) log_current_level = LOG_DEBUG;
}

void log_set_component(const char *component) {
    snprintf(log_component, sizeof log_component, "%s", component);
}

void log_write(log_level level, const char *fmt, ...) {
    static const char *names[] = {"error", "warn", "info", "debug"};
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    pthread_mutex_lock(&log_mutex);
    fprintf(stderr, "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s component=\"%s\" %s\n",
            tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
            ts.tv_nsec / 1000000, names[level], log_component, msg);
    pthread_mutex_unlock(&log_mutex);
}
