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

static int opened(int dirfd, const char *path, int flags, int existed, int fd) {
    if (fd >= 0 && (flags & O_CREAT) && !existed) {
        char p[4096];
        absolute(dirfd, path, p, sizeof p);
        record("create", p, NULL);
    }
    return fd;
}

#define MODE_ARG(flags) \
    mode_t mode = 0; \
    if ((flags) & (O_CREAT | O_TMPFILE)) { \
        va_list ap; va_start(ap, flags); mode = va_arg(ap, mode_t); va_end(ap); \
    }

int open(const char *path, int flags, ...) {
    MODE_ARG(flags);
    REAL(open);
    pthread_mutex_lock(&lock);
    int existed = exists_at(AT_FDCWD, path);
    int fd = opened(AT_FDCWD, path, flags, existed, real_open(path, flags, mode));
    pthread_mutex_unlock(&lock);
    return fd;
}

int open64(const char *path, int flags, ...) {
    MODE_ARG(flags);
    REAL(open64);
    pthread_mutex_lock(&lock);
    int existed = exists_at(AT_FDCWD, path);
    int fd = opened(AT_FDCWD, path, flags, existed, real_open64(path, flags, mode));
    pthread_mutex_unlock(&lock);
    return fd;
}

int openat(int dirfd, const char *path, int flags, ...) {
    MODE_ARG(flags);
    REAL(openat);
    pthread_mutex_lock(&lock);
    int existed = exists_at(dirfd, path);
    int fd = opened(dirfd, path, flags, existed, real_openat(dirfd, path, flags, mode));
    pthread_mutex_unlock(&lock);
    return fd;
}

int openat64(int dirfd, const char *path, int flags, ...) {
    MODE_ARG(flags);
    REAL(openat64);
    pthread_mutex_lock(&lock);
    int existed = exists_at(dirfd, path);
    int fd = opened(dirfd, path, flags, existed, real_openat64(dirfd, path, flags, mode));
    pthread_mutex_unlock(&lock);
    return fd;
}

int creat(const char *path, mode_t mode) {
    return open(path, O_CREAT | O_WRONLY | O_TRUNC, mode);
}

int creat64(const char *path, mode_t mode) {
    return open64(path, O_CREAT | O_WRONLY | O_TRUNC, mode);
}

static int path_op(const char *op, int dirfd, const char *path, int rc) {
    if (rc == 0) {
        char p[4096];
        absolute(dirfd, path, p, sizeof p);
        record(op, p, NULL);
    }
    return rc;
}

int mkdir(const char *path, mode_t mode) {
    REAL(mkdir);
    pthread_mutex_lock(&lock);
    int rc = path_op("mkdir", AT_FDCWD, path, real_mkdir(path, mode));
    pthread_mutex_unlock(&lock);
    return rc;
}

int mkdirat(int dirfd, const char *path, mode_t mode) {
    REAL(mkdirat);
    pthread_mutex_lock(&lock);
    int rc = path_op("mkdir", dirfd, path, real_mkdirat(dirfd, path, mode));
    pthread_mutex_unlock(&lock);
    return rc;
}

int unlink(const char *path) {
    REAL(unlink);
    pthread_mutex_lock(&lock);
    int rc = path_op("unlink", AT_FDCWD, path, real_unlink(path));
    pthread_mutex_unlock(&lock);
    return rc;
}

int unlinkat(int dirfd, const char *path, int flags) {
    REAL(unlinkat);
    pthread_mutex_lock(&lock);
    int rc = real_unlinkat(dirfd, path, flags);
    path_op((flags & AT_REMOVEDIR) ? "rmdir" : "unlink", dirfd, path, rc);
    pthread_mutex_unlock(&lock);
    return rc;
}

int rmdir(const char *path) {
    REAL(rmdir);
    pthread_mutex_lock(&lock);
    int rc = path_op("rmdir", AT_FDCWD, path, real_rmdir(path));
    pthread_mutex_unlock(&lock);
    return rc;
}

static int renamed(int olddirfd, const char *from, int newdirfd, const char *to, int rc) {
    if (rc == 0) {
        char a[4096], b[4096];
        absolute(olddirfd, from, a, sizeof a);
        absolute(newdirfd, to, b, sizeof b);
        record("rename", a, b);
    }
    return rc;
}

int rename(const char *from, const char *to) {
    REAL(rename);
    pthread_mutex_lock(&lock);
    int rc = renamed(AT_FDCWD, from, AT_FDCWD, to, real_rename(from, to));
    pthread_mutex_unlock(&lock);
    return rc;
}

int renameat(int olddirfd, const char *from, int newdirfd, const char *to) {
    REAL(renameat);
    pthread_mutex_lock(&lock);
    int rc = renamed(olddirfd, from, newdirfd, to, real_renameat(olddirfd, from, newdirfd, to));
    pthread_mutex_unlock(&lock);
    return rc;
}

int renameat2(int olddirfd, const char *from, int newdirfd, const char *to, unsigned flags) {
    REAL(renameat2);
    pthread_mutex_lock(&lock);
    int rc = renamed(olddirfd, from, newdirfd, to,
                     real_renameat2(olddirfd, from, newdirfd, to, flags));
    pthread_mutex_unlock(&lock);
    return rc;
}

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
