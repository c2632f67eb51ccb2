/*
 * A slow disk for a real, unmodified clawproxy: preloaded (LD_PRELOAD) by
 * tests/tests/crash/disk.rs. Every fsync and fdatasync of the process first waits while the
 * file named by CLAW_SLOW_DISK holds a delay in milliseconds longer than the time already
 * waited. The file is read again every 20 ms, so the test can slow the disk down, stall it,
 * and clear the fault while the process runs: writing 0 ends a wait in progress.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

/* The delay the control file asks for now; 0 when it is missing, empty or unreadable. */
static long delay_ms(void) {
    const char *path = getenv("CLAW_SLOW_DISK");
    if (path == NULL) {
        return 0;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return 0;
    }
    char text[32];
    ssize_t n = read(fd, text, sizeof text - 1);
    close(fd);
    if (n <= 0) {
        return 0;
    }
    text[n] = '\0';
    return strtol(text, NULL, 10);
}

static void nap(long ms) {
    struct timespec left = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&left, &left) == -1 && errno == EINTR) {
    }
}

static void slow_down(void) {
    int saved = errno;
    long waited = 0;
    for (;;) {
        long wanted = delay_ms();
        if (waited >= wanted) {
            break;
        }
        long step = wanted - waited < 20 ? wanted - waited : 20;
        nap(step);
        waited += step;
    }
    errno = saved;
}

static int (*real_fdatasync)(int);
static int (*real_fsync)(int);

/* Resolved once at load, before the process starts any thread. */
__attribute__((constructor)) static void resolve(void) {
    real_fdatasync = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    real_fsync = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
}

int fdatasync(int fd) {
    slow_down();
    return real_fdatasync(fd);
}

int fsync(int fd) {
    slow_down();
    return real_fsync(fd);
}
