/* A record of what a process does to directories and when it syncs, for
 * test_file_durability.py, loaded with LD_PRELOAD.
 *
 * Every call that adds, moves or removes a directory entry (a file created by
 * open/creat, mkdir, rename, unlink, rmdir) and every successful fsync or
 * fdatasync is appended to the file named by $TK_FSLOG as one line:
 *
 *     create <path>      mkdir <path>      rename <from>\t<to>
 *     unlink <path>      rmdir <path>      sync <path>
 *
 * with absolute paths. The call and its line happen under one lock, so the
 * lines are in the order the calls took effect, across threads. Only what
 * succeeded is written. The test replays the lines to learn which directory
 * entries and file contents a power cut could still take away.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static pthread_mutex_t lock = PTHREAD_RECURSIVE_MUTEX_INITIALIZER_NP;
static int log_fd = -1;

#define REAL(name) \
    static __typeof__(&name) real_##name; \
    if (!real_##name) real_##name = (__typeof__(&name))dlsym(RTLD_NEXT, #name)

static void absolute(int dirfd, const char *path, char *out, size_t size) {
    if (path[0] == '/') {
        snprintf(out, size, "%s", path);
        return;
    }
    char base[4096];
    if (dirfd == AT_FDCWD) {
        if (!getcwd(base, sizeof base)) base[0] = 0;
    } else {
        char link[64];
        snprintf(link, sizeof link, "/proc/self/fd/%d", dirfd);
        ssize_t n = readlink(link, base, sizeof base - 1);
        base[n > 0 ? n : 0] = 0;
    }
    snprintf(out, size, "%s/%s", base, path);
}

static void record(const char *op, const char *a, const char *b) {
    if (log_fd < 0) {
        const char *name = getenv("TK_FSLOG");
        if (!name) return;
        log_fd = (int)syscall(SYS_openat, AT_FDCWD, name, O_WRONLY | O_APPEND | O_CLOEXEC);
        if (log_fd < 0) return;
    }
    char line[8400];
    int n = b ? snprintf(line, sizeof line, "%s %s\t%s\n", op, a, b)
              : snprintf(line, sizeof line, "%s %s\n", op, a);
    if (n > 0) (void)!syscall(SYS_write, log_fd, line, (size_t)n);
}

static int exists_at(int dirfd, const char *path) {
    struct stat st;
    return fstatat(dirfd, path, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

#define MODE_ARG(flags) \
    mode_t mode = 0; \
    if ((flags) & (O_CREAT | O_TMPFILE)) { \
        va_list ap; va_start(ap, flags); mode = va_arg(ap, mode_t); va_end(ap); \
    }

/* Every variant goes through the *at call it stands for (open is
 * openat(AT_FDCWD, ...), and so on), so the recording is written once. */

static int open_at(int dirfd, const char *path, int flags, mode_t mode) {
    REAL(openat);
    pthread_mutex_lock(&lock);
    int existed = exists_at(dirfd, path);
    int fd = real_openat(dirfd, path, flags, mode);
    if (fd >= 0 && (flags & O_CREAT) && !existed) {
        char p[4096];
        absolute(dirfd, path, p, sizeof p);
        record("create", p, NULL);
    }
    pthread_mutex_unlock(&lock);
    return fd;
}

int open(const char *path, int flags, ...) { MODE_ARG(flags); return open_at(AT_FDCWD, path, flags, mode); }
int open64(const char *path, int flags, ...) { MODE_ARG(flags); return open_at(AT_FDCWD, path, flags, mode); }
int openat(int dirfd, const char *path, int flags, ...) { MODE_ARG(flags); return open_at(dirfd, path, flags, mode); }
int openat64(int dirfd, const char *path, int flags, ...) { MODE_ARG(flags); return open_at(dirfd, path, flags, mode); }
int creat(const char *path, mode_t mode) { return open_at(AT_FDCWD, path, O_CREAT | O_WRONLY | O_TRUNC, mode); }
int creat64(const char *path, mode_t mode) { return open_at(AT_FDCWD, path, O_CREAT | O_WRONLY | O_TRUNC, mode); }

int mkdirat(int dirfd, const char *path, mode_t mode) {
    REAL(mkdirat);
    pthread_mutex_lock(&lock);
    int rc = real_mkdirat(dirfd, path, mode);
    if (rc == 0) {
        char p[4096];
        absolute(dirfd, path, p, sizeof p);
        record("mkdir", p, NULL);
    }
    pthread_mutex_unlock(&lock);
    return rc;
}

int mkdir(const char *path, mode_t mode) { return mkdirat(AT_FDCWD, path, mode); }

int unlinkat(int dirfd, const char *path, int flags) {
    REAL(unlinkat);
    pthread_mutex_lock(&lock);
    int rc = real_unlinkat(dirfd, path, flags);
    if (rc == 0) {
        char p[4096];
        absolute(dirfd, path, p, sizeof p);
        record((flags & AT_REMOVEDIR) ? "rmdir" : "unlink", p, NULL);
    }
    pthread_mutex_unlock(&lock);
    return rc;
}

int unlink(const char *path) { return unlinkat(AT_FDCWD, path, 0); }
int rmdir(const char *path) { return unlinkat(AT_FDCWD, path, AT_REMOVEDIR); }

int renameat2(int olddirfd, const char *from, int newdirfd, const char *to, unsigned flags) {
    REAL(renameat2);
    pthread_mutex_lock(&lock);
    int rc = real_renameat2(olddirfd, from, newdirfd, to, flags);
    if (rc == 0) {
        char a[4096], b[4096];
        absolute(olddirfd, from, a, sizeof a);
        absolute(newdirfd, to, b, sizeof b);
        record("rename", a, b);
    }
    pthread_mutex_unlock(&lock);
    return rc;
}

int renameat(int olddirfd, const char *from, int newdirfd, const char *to) {
    return renameat2(olddirfd, from, newdirfd, to, 0);
}
int rename(const char *from, const char *to) { return renameat2(AT_FDCWD, from, AT_FDCWD, to, 0); }

static int synced(int fd, int rc) {
    if (rc == 0) {
        char link[64], p[4096];
        snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
        ssize_t n = readlink(link, p, sizeof p - 1);
        if (n > 0) {
            p[n] = 0;
            record("sync", p, NULL);
        }
    }
    return rc;
}

int fsync(int fd) {
    REAL(fsync);
    pthread_mutex_lock(&lock);
    int rc = synced(fd, real_fsync(fd));
    pthread_mutex_unlock(&lock);
    return rc;
}

int fdatasync(int fd) {
    REAL(fdatasync);
    pthread_mutex_lock(&lock);
    int rc = synced(fd, real_fdatasync(fd));
    pthread_mutex_unlock(&lock);
    return rc;
}
