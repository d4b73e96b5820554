/*
 * _nsinit: the native exec driver's container process between clone and exec, in C.
 *
 * The monitor (Python) calls spawn(); it clones a child in new namespaces. The child runs only
 * the C code below, never the interpreter: a forked interpreter touched (and so copied) hundreds
 * of pages and spent about 4 ms of each start on this setup. The order of the steps, and what
 * the child reports on sync_fd, are those described in container.py, which prepares the
 * arguments. Every failure before exec is reported as "E<message>" on sync_fd and exits 1.
 */
#define PY_SSIZE_T_CLEAN
#define _GNU_SOURCE
#include <Python.h>

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <linux/openat2.h>
#include <net/if.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <termios.h>
#include <unistd.h>

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#ifndef SYS_openat2
#define SYS_openat2 437
#endif
#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif
#ifndef AT_RECURSIVE
#define AT_RECURSIVE 0x8000
#endif
#ifndef PR_CAP_AMBIENT
#define PR_CAP_AMBIENT 47
#define PR_CAP_AMBIENT_CLEAR_ALL 4
#endif
/* mount_setattr's argument (named apart from glibc's, which only newer headers declare) */
struct setattr_args { uint64_t attr_set, attr_clr, propagation, userns_fd; };
#define ATTR_RDONLY 0x00000001

/* What a container's /dev holds (character devices), besides pts, shm and the symlinks. */
static const struct { const char *name; unsigned major, minor; } DEVICES[] = {
    {"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7}, {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0},
};
static const struct { const char *target, *name; } DEV_LINKS[] = {
    {"pts/ptmx", "ptmx"}, {"/proc/self/fd", "fd"}, {"/proc/self/fd/0", "stdin"},
    {"/proc/self/fd/1", "stdout"}, {"/proc/self/fd/2", "stderr"},
};

/* What confine() applies to the calling process (see its comment). */
struct confinement {
    uint64_t caps;           /* the bounding, permitted and effective sets; ~0: every capability */
    struct sock_fprog filter; /* the compiled seccomp program (compile_filter's); .len 0: none */
    int no_new_privs;
    uid_t uid;
    gid_t gid, *groups;
    size_t ngroups;
};

/* Everything the child needs, converted from Python objects before the clone. */
struct plan {
    int flags, stdio[3], tty, rows, cols, sync_fd, go_fd, loopback, sys_writable, ro_fallback, readonly_rootfs;
    const char *rootfs, *hostname, *domainname, *workdir;
    char **cgroups, **late_cgroups, **sources, **destinations, **args, **env, **masked, **readonly_paths;
    int *readonly;
    Py_ssize_t nmounts, ndevices;
    struct device *devices;
    struct confinement confinement;
};

/* ---- confinement: capabilities, no_new_privs, seccomp ---------------------------------------- */

/* Load a compiled seccomp program for every thread of the process. */
static int load_filter(const struct sock_fprog *program) {
    return syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, program) < 0 ? -1 : 0;
}

/* Hold the calling process to `c`, then take its identity: the bounding set is cut to c->caps,
 * the ambient set cleared, the seccomp filter loaded (before the capabilities go, as Docker
 * does without no_new_privs: loading a filter then needs CAP_SYS_ADMIN), groups, gid and uid
 * set (capabilities kept across setuid), then permitted and effective cut to c->caps and the
 * inheritable set emptied. With c->no_new_privs the flag is set and the filter loaded last.
 * A non-root uid has no capability left after its execve, as in Docker. Returns 0, or -1 with
 * errno set and *what naming the step that failed. The filter applies to every thread (TSYNC),
 * but capabilities and ids are meant for a single-threaded process about to execve. */
static int confine(const struct confinement *c, const char **what) {
    for (int cap = 0; cap < 64; cap++) {
        if (c->caps & (1ULL << cap))
            continue;
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0) {
            if (errno == EINVAL)
                break;  /* past the kernel's last capability */
            *what = "dropping capabilities from the bounding set";
            return -1;
        }
    }
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL) {
        *what = "clearing the ambient capabilities";
        return -1;
    }
    if (c->filter.len && !c->no_new_privs && load_filter(&c->filter) < 0) {
        *what = "loading the seccomp filter";
        return -1;
    }
    if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0) {
        *what = "PR_SET_KEEPCAPS";
        return -1;
    }
    if (setgroups(c->ngroups, c->groups) < 0) {
        *what = "setgroups";
        return -1;
    }
    if (setgid(c->gid) < 0) {
        *what = "setgid";
        return -1;
    }
    if (setuid(c->uid) < 0) {
        *what = "setuid";
        return -1;
    }
    if (prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) < 0) {
        *what = "PR_SET_KEEPCAPS";
        return -1;
    }
    struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2];
    if (syscall(SYS_capget, &header, data) < 0) {
        *what = "capget";
        return -1;
    }
    for (int i = 0; i < 2; i++) {
        data[i].permitted &= (uint32_t)(c->caps >> (32 * i));
        data[i].effective = data[i].permitted;
        data[i].inheritable = 0;
    }
    if (syscall(SYS_capset, &header, data) < 0) {
        *what = "capset";
        return -1;
    }
    if (c->no_new_privs) {
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
            *what = "PR_SET_NO_NEW_PRIVS";
            return -1;
        }
        if (c->filter.len && load_filter(&c->filter) < 0) {
            *what = "loading the seccomp filter";
            return -1;
        }
    }
    return 0;
}

/* ---- the child ------------------------------------------------------------------------- */

static int sync_fd = -1;

static void fail(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void fail(const char *fmt, ...) {
    char message[PATH_MAX + 256];
    int saved = errno;
    va_list ap;
    message[0] = 'E';
    va_start(ap, fmt);
    int n = vsnprintf(message + 1, sizeof message - 64, fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    if (n > (int)sizeof message - 65)
        n = sizeof message - 65;
    if (saved)
        n += snprintf(message + 1 + n, 63, ": %s", strerror(saved));
    if (write(sync_fd, message, 1 + n) < 0) { /* nobody is left to tell */ }
    _exit(1);
}

static int open_tasks(const char *tasks_file) {
    int fd = open(tasks_file, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        fail("opening the cgroup %s", tasks_file);
    return fd;
}

static void join(int fd, const char *tasks_file) {
    if (write(fd, "0", 1) != 1)
        fail("joining the cgroup %s", tasks_file);
    close(fd);
}

static void do_mount(const char *source, const char *target, const char *fstype, unsigned long flags,
                     const char *data) {
    if (mount(source, target, fstype, flags, data) < 0)
        fail("mount %s", target);
}

static void make_dir(const char *path) {
    if (mkdir(path, 0755) < 0 && errno != EEXIST)
        fail("mkdir %s", path);
    errno = 0;
}

/* mkdir -p */
static void make_dirs(const char *path) {
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) {
        errno = ENAMETOOLONG;
        fail("mkdir %s", path);
    }
    for (char *p = buf + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            make_dir(buf);
            *p = '/';
        }
    }
    make_dir(buf);
}

/* Lexically normalise a container path in place: no empty, "." or ".." components (".." at
 * the root stays there, as the kernel resolves it) and no leading slash ("" is the root). */
static void clean(char *path) {
    size_t len = 0;
    const char *in = path;
    while (*in) {
        while (*in == '/')
            in++;
        if (!*in)
            break;
        const char *end = strchrnul(in, '/');
        size_t n = end - in;
        if (n == 2 && in[0] == '.' && in[1] == '.') {
            while (len > 0 && path[len - 1] != '/')
                len--;
            if (len > 0)
                len--;
        } else if (!(n == 1 && in[0] == '.')) {
            if (len > 0)
                path[len++] = '/';
            memmove(path + len, in, n);
            len += n;
        }
        in = end;
    }
    path[len] = '\0';
}

/* The host path of container path `path`, resolved by the kernel as if the rootfs were "/"
 * (openat2's RESOLVE_IN_ROOT: an absolute symlink such as /var/run -> /run stays in the rootfs,
 * and nothing leads out of it). The part that does not exist yet is appended as it is, except
 * that a dangling symlink met there is resolved in the rootfs too (as runc's securejoin does:
 * /etc/resolv.conf -> /run/x gives <rootfs>/run/x); `..` in the given path is refused
 * (container.py normalises paths first). */
static void inside(int rootfd, const char *rootfs, const char *path, char out[PATH_MAX]) {
    for (const char *c = path; *c; c = strchrnul(c, '/'), c += *c == '/') {
        if (c[0] == '.' && c[1] == '.' && (c[2] == '/' || c[2] == '\0')) {
            errno = 0;
            fail("the container path %s leads outside the container", path);
        }
    }
    char want[PATH_MAX];  /* what is still to resolve, relative to the root */
    if (snprintf(want, sizeof want, "%s", path) >= (int)sizeof want) {
        errno = ENAMETOOLONG;
        fail("the container path %s", path);
    }
    clean(want);
    size_t root_len = strlen(rootfs);
    for (int hops = 0;; hops++) {
        if (hops > 40) {
            errno = ELOOP;
            fail("resolving the container path %s", path);
        }
        char probe[PATH_MAX];
        strcpy(probe, *want ? want : ".");
        size_t missing = strlen(want);  /* where the part that does not exist starts in `want` */
        struct open_how how = {.flags = O_PATH | O_CLOEXEC, .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS};
        int fd;
        while ((fd = syscall(SYS_openat2, rootfd, probe, &how, sizeof how)) < 0) {
            char *slash = strrchr(probe, '/');
            if (errno != ENOENT)
                fail("resolving the container path %s", path);
            if (!slash) {
                strcpy(probe, ".");
                missing = 0;
                continue;
            }
            *slash = '\0';
            missing = slash - probe;
        }
        char link[64];
        snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
        ssize_t n = readlink(link, out, PATH_MAX - 1);
        close(fd);
        if (n < 0)
            fail("resolving the container path %s", path);
        out[n] = '\0';
        if (strcmp(out, rootfs) != 0 && !(strncmp(out, rootfs, root_len) == 0 && out[root_len] == '/')) {
            errno = 0;  /* the rootfs itself moved under us */
            fail("the container path %s leads outside the container", path);
        }
        const char *rest = want + missing;  /* "", "/name/..." or, when nothing existed, all of `want` */
        while (*rest == '/')
            rest++;
        if (!*rest) {
            errno = 0;
            return;
        }
        /* the first missing component: a dangling symlink is followed, inside the root */
        const char *after = strchrnul(rest, '/');
        char candidate[PATH_MAX], target[PATH_MAX];
        struct stat st;
        if (snprintf(candidate, sizeof candidate, "%s/%.*s", out, (int)(after - rest), rest) >= (int)sizeof candidate) {
            errno = ENAMETOOLONG;
            fail("the container path %s", path);
        }
        if (lstat(candidate, &st) == 0 && S_ISLNK(st.st_mode)) {
            ssize_t len = readlink(candidate, target, sizeof target - 1);
            if (len < 0)
                fail("reading the symbolic link %s", candidate);
            target[len] = '\0';
            char next[PATH_MAX];
            int m = target[0] == '/' ? snprintf(next, sizeof next, "%s%s", target, after)
                                     : snprintf(next, sizeof next, "%s/%s%s", out + root_len, target, after);
            if (m >= (int)sizeof next) {
                errno = ENAMETOOLONG;
                fail("the container path %s", path);
            }
            clean(next);
            strcpy(want, next);
            continue;
        }
        if (strlen(out) + strlen(rest) + 2 >= PATH_MAX) {
            errno = ENAMETOOLONG;
            fail("the container path %s", path);
        }
        strcat(out, "/");
        strcat(out, rest);
        errno = 0;
        return;
    }
}

/* An O_PATH descriptor of `host_path` (a path inside() gave), opened again from the root
 * without following a last symlink; -1 with errno set. */
static int open_inside(int rootfd, const char *rootfs, const char *host_path) {
    const char *relative = host_path + strlen(rootfs);
    while (*relative == '/')
        relative++;
    struct open_how how = {.flags = O_PATH | O_NOFOLLOW | O_CLOEXEC,
                           .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS};
    return syscall(SYS_openat2, rootfd, *relative ? relative : ".", &how, sizeof how);
}

/* Remount the mount at `path` read-only, keeping its nosuid, nodev, noexec and atime flags. */
static void remount_readonly(const char *path, const char *label) {
    struct statvfs sv;
    if (statvfs(path, &sv) < 0)
        fail("statvfs %s", label);
    unsigned long flags = MS_BIND | MS_REMOUNT | MS_RDONLY;
    static const struct { unsigned long st, ms; } KEEP[] = {
        {ST_NOSUID, MS_NOSUID}, {ST_NODEV, MS_NODEV}, {ST_NOEXEC, MS_NOEXEC}, {ST_NOATIME, MS_NOATIME},
        {ST_NODIRATIME, MS_NODIRATIME}, {ST_RELATIME, MS_RELATIME},
    };
    for (size_t i = 0; i < sizeof KEEP / sizeof *KEEP; i++)
        if (sv.f_flag & KEEP[i].st)
            flags |= KEEP[i].ms;
    if (mount(NULL, path, NULL, flags, NULL) < 0)
        fail("remounting %s read-only", label);
}

/* Undo mountinfo's octal escapes (\040 for a space...) in place. */
static void unescape(char *s) {
    char *out = s;
    for (; *s; s++) {
        if (s[0] == '\\' && isdigit((unsigned char)s[1]) && isdigit((unsigned char)s[2]) && isdigit((unsigned char)s[3])) {
            *out++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
            s += 3;
        } else {
            *out++ = *s;
        }
    }
    *out = '\0';
}

/* Make the mount at `target` and every mount below it read-only: mount_setattr(AT_RECURSIVE)
 * where the kernel has it (5.12), else each mount of /proc/self/mountinfo found there. */
static void readonly_tree(int rootfd, const char *rootfs, const char *target, const char *label, int fallback) {
    int fd = open_inside(rootfd, rootfs, target);
    if (fd < 0)
        fail("opening %s", label);
    struct setattr_args attr = {.attr_set = ATTR_RDONLY};
    long rc = fallback ? (errno = ENOSYS, -1)
                       : syscall(SYS_mount_setattr, fd, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof attr);
    close(fd);
    if (rc == 0)
        return;
    if (errno != ENOSYS && errno != EINVAL && errno != EPERM)
        fail("making %s read-only", label);
    FILE *info = fopen("/proc/self/mountinfo", "re");
    if (!info)
        fail("reading /proc/self/mountinfo");
    char line[2 * PATH_MAX + 512];
    size_t n = strlen(target);
    while (fgets(line, sizeof line, info)) {
        char *point = line;
        for (int field = 0; field < 4 && point; field++) {  /* the 5th field is the mount point */
            point = strchr(point, ' ');
            if (point)
                point++;
        }
        if (!point)
            continue;
        *strchrnul(point, ' ') = '\0';
        unescape(point);
        if (strncmp(point, target, n) == 0 && (point[n] == '\0' || point[n] == '/'))
            remount_readonly(point, label);
    }
    fclose(info);
    errno = 0;
}

/* An O_PATH descriptor of container path `path`, which must exist: resolved by the kernel in
 * the rootfs (RESOLVE_IN_ROOT, a last symlink followed there too), as inside() and open_inside()
 * together would, in one system call instead of four to six: for the masked and read-only
 * paths, which are never created. -1 with errno set (ENOENT: it does not exist); `..` is refused. */
static int open_existing(int rootfd, const char *path) {
    for (const char *c = path; *c; c = strchrnul(c, '/'), c += *c == '/') {
        if (c[0] == '.' && c[1] == '.' && (c[2] == '/' || c[2] == '\0')) {
            errno = 0;
            fail("the container path %s leads outside the container", path);
        }
    }
    while (*path == '/')
        path++;
    struct open_how how = {.flags = O_PATH | O_CLOEXEC, .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS};
    return syscall(SYS_openat2, rootfd, *path ? path : ".", &how, sizeof how);
}

/* Hide each of `paths` that exists: /dev/null over a file, an empty read-only tmpfs over a
 * directory (what Docker masks). */
static void mask_paths(int rootfd, char **paths) {
    for (char **path = paths; *path; path++) {
        char via[64];
        struct stat st;
        int fd = open_existing(rootfd, *path);
        if (fd < 0 && errno == ENOENT)
            continue;
        if (fd < 0 || fstat(fd, &st) < 0)
            fail("masking %s", *path);
        snprintf(via, sizeof via, "/proc/self/fd/%d", fd);
        int rc = S_ISDIR(st.st_mode)
            ? mount("tmpfs", via, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0555")
            : mount("/dev/null", via, NULL, MS_BIND, NULL);
        if (rc < 0)
            fail("masking %s", *path);
        close(fd);
    }
    errno = 0;
}

/* Make each of `paths` that exists read-only (a bind mount of itself, remounted). */
static void readonly_paths(int rootfd, char **paths) {
    for (char **path = paths; *path; path++) {
        char via[64];
        int fd = open_existing(rootfd, *path);
        if (fd < 0 && errno == ENOENT)
            continue;
        if (fd < 0)
            fail("opening %s", *path);
        snprintf(via, sizeof via, "/proc/self/fd/%d", fd);
        if (mount(via, via, NULL, MS_BIND | MS_REC, NULL) < 0)
            fail("bind-mounting %s", *path);
        close(fd);
        if ((fd = open_existing(rootfd, *path)) < 0)  /* now the bind mount's root */
            fail("opening %s", *path);
        snprintf(via, sizeof via, "/proc/self/fd/%d", fd);
        remount_readonly(via, *path);
        close(fd);
    }
    errno = 0;
}

/* ---- the container's terminal: a pty of its own devpts ----------------------------------- */

#ifndef TIOCGPTPEER
#define TIOCGPTPEER _IO('T', 0x41)
#endif
#define DEVPTS_SUPER_MAGIC 0x1cd1

/* A new pty pair of the devpts instance whose ptmx is `ptmx`, a path resolved below `dirfd` as
 * if it were the root, following no symbolic link (the path may be controlled by a container's
 * root). What is opened must be a devpts ptmx (a character device 5:2 on a devpts filesystem,
 * checked on the descriptor), opened without blocking, so a FIFO, a file or another device
 * swapped in is refused rather than used or waited on. Neither end becomes the caller's
 * controlling terminal; the slave is opened from the master (TIOCGPTPEER), never by path. Both
 * are close-on-exec and blocking. 0 with *master, *slave and *number (the N of /dev/pts/N)
 * set, or -1 with errno set and *what naming the step that failed. */
static int open_pty(int dirfd, const char *ptmx, int *master, int *slave, int *number, const char **what) {
    struct open_how how = {.flags = O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC,
                           .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS};
    struct stat st;
    struct statfs sfs;
    int unlock = 0, fd = syscall(SYS_openat2, dirfd, ptmx, &how, sizeof how);
    *what = "opening the container's /dev/pts/ptmx";
    if (fd < 0)
        return -1;
    if (fstat(fd, &st) < 0 || fstatfs(fd, &sfs) < 0)
        goto fail;
    if (!S_ISCHR(st.st_mode) || major(st.st_rdev) != 5 || minor(st.st_rdev) != 2 || sfs.f_type != DEVPTS_SUPER_MAGIC) {
        *what = "the container's /dev/pts/ptmx is not the ptmx of a devpts";
        errno = EPERM;
        goto fail;
    }
    *what = "allocating a pty in the container's devpts";
    if (ioctl(fd, TIOCSPTLCK, &unlock) < 0 || ioctl(fd, TIOCGPTN, number) < 0)
        goto fail;
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) < 0)
        goto fail;
    *what = "opening the pty's slave (TIOCGPTPEER)";
    int peer = ioctl(fd, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (peer < 0)
        goto fail;
    *master = fd;
    *slave = peer;
    return 0;
fail:;
    int saved = errno;
    close(fd);
    errno = saved;
    return -1;
}

/* With a tty: the pty of the container's devpts (open_console), until the child takes the
 * slave as its stdio and hands the master to the monitor (take_console). */
static int console_master = -1, console_slave = -1;

/* A new pty of the devpts just mounted at <dev>/pts, also bind-mounted on <dev>/console, of
 * rows x cols unless one is 0. */
static void open_console(const char *dev, int rows, int cols) {
    char path[PATH_MAX + 32], slave_path[PATH_MAX + 32];
    const char *what = "";
    int number, devfd = open(dev, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (devfd < 0)
        fail("opening %s", dev);
    if (open_pty(devfd, "pts/ptmx", &console_master, &console_slave, &number, &what) < 0)
        fail("%s", what);
    close(devfd);
    struct winsize size = {.ws_row = rows, .ws_col = cols};
    if (rows > 0 && cols > 0 && ioctl(console_slave, TIOCSWINSZ, &size) < 0)
        fail("setting the terminal's size");
    snprintf(path, sizeof path, "%s/console", dev);
    snprintf(slave_path, sizeof slave_path, "%s/pts/%d", dev, number);
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0666);
    if (fd < 0)
        fail("creating %s", path);
    close(fd);
    do_mount(slave_path, path, NULL, MS_BIND, NULL);
}

/* The console's slave becomes stdin, stdout, stderr and the controlling terminal, owned by the
 * container's user (as runc does), and its master goes to the monitor with the "R" report on
 * sync_fd (a unix socket). Called after isolate, once everything else is mounted. */
static void take_console(const struct confinement *c) {
    for (int i = 0; i < 3; i++)
        if (dup2(console_slave, i) < 0)
            fail("dup2");
    close(console_slave);
    if (ioctl(0, TIOCSCTTY, 0) < 0)
        fail("setting the controlling terminal");
    if (fchown(0, c->uid, c->gid) < 0)
        fail("giving the terminal to the container's user");
    char byte = 'R', control[CMSG_SPACE(sizeof(int))] = {0};
    struct iovec iov = {&byte, 1};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control, .msg_controllen = sizeof control};
    struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cmsg), &console_master, sizeof(int));
    if (sendmsg(sync_fd, &msg, MSG_NOSIGNAL) != 1)
        _exit(1);
    close(console_master);
}

/* One host device node for a privileged container: its path below /dev, mode, number, owner. */
struct device { const char *path; unsigned int mode, major, minor, uid, gid; };

static void setup_dev(int rootfd, const char *rootfs, const int tty[3], const struct device *devices,
                      Py_ssize_t ndevices) {
    char dev[PATH_MAX], path[PATH_MAX + 32];
    inside(rootfd, rootfs, "/dev", dev);
    make_dir(dev);
    do_mount("tmpfs", dev, "tmpfs", MS_NOSUID, "mode=755,size=65536k");
    for (size_t i = 0; i < sizeof DEVICES / sizeof *DEVICES; i++) {
        snprintf(path, sizeof path, "%s/%s", dev, DEVICES[i].name);
        if (mknod(path, S_IFCHR | 0666, makedev(DEVICES[i].major, DEVICES[i].minor)) < 0)
            fail("mknod %s", path);
    }
    snprintf(path, sizeof path, "%s/pts", dev);
    make_dir(path);
    do_mount("devpts", path, "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620");
    snprintf(path, sizeof path, "%s/shm", dev);
    make_dir(path);
    do_mount("shm", path, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=1777,size=65536k");
    for (size_t i = 0; i < sizeof DEV_LINKS / sizeof *DEV_LINKS; i++) {
        snprintf(path, sizeof path, "%s/%s", dev, DEV_LINKS[i].name);
        if (symlink(DEV_LINKS[i].target, path) < 0)
            fail("symlink %s", path);
    }
    for (Py_ssize_t i = 0; i < ndevices; i++) {  /* privileged: the host's devices, as Docker */
        if (snprintf(path, sizeof path, "%s/%s", dev, devices[i].path) >= (int)sizeof path)
            continue;
        char *slash = strrchr(path, '/');
        *slash = '\0';
        make_dirs(path);
        *slash = '/';
        if (mknod(path, devices[i].mode, makedev(devices[i].major, devices[i].minor)) < 0) {
            if (errno == EEXIST)
                continue;  /* one of the usual nodes above */
            fail("mknod %s", path);
        }
        if (chown(path, devices[i].uid, devices[i].gid) < 0)
            fail("chown %s", path);
    }
    errno = 0;
    if (tty[0])
        open_console(dev, tty[1], tty[2]);
}

static void bind_mount(int rootfd, const char *rootfs, const char *source, const char *destination, int readonly,
                       int ro_fallback) {
    char target[PATH_MAX], via[64];
    struct stat st;
    inside(rootfd, rootfs, destination, target);
    if (lstat(target, &st) < 0) {
        if (stat(source, &st) == 0 && S_ISDIR(st.st_mode)) {
            make_dirs(target);
        } else {
            char *slash = strrchr(target, '/');
            *slash = '\0';
            make_dirs(target);
            *slash = '/';
            int fd = open(target, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
            if (fd < 0)
                fail("creating the bind target %s", destination);
            close(fd);
        }
    }
    /* mounted through a descriptor of the target itself: whatever a path says, never elsewhere */
    int fd = open_inside(rootfd, rootfs, target);
    if (fd < 0 || fstat(fd, &st) < 0)
        fail("opening the bind target %s", destination);
    if (S_ISLNK(st.st_mode)) {
        errno = 0;
        fail("the bind target %s is a symbolic link", destination);
    }
    snprintf(via, sizeof via, "/proc/self/fd/%d", fd);
    if (mount(source, via, NULL, MS_BIND | MS_REC, NULL) < 0)
        fail("bind-mounting %s on %s", source, destination);
    close(fd);
    errno = 0;
    if (readonly)
        readonly_tree(rootfd, rootfs, target, destination, ro_fallback);
}

static void loopback_up(void) {
    struct ifreq ifr = {0};
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        fail("socket");
    strcpy(ifr.ifr_name, "lo");
    if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
        fail("reading the flags of lo");
    ifr.ifr_flags |= IFF_UP;
    if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
        fail("bringing lo up");
    close(s);
}

static void isolate(const struct plan *p) {
    if (p->loopback)
        loopback_up();
    if (sethostname(p->hostname, strlen(p->hostname)) < 0)
        fail("sethostname");
    if (*p->domainname && setdomainname(p->domainname, strlen(p->domainname)) < 0)
        fail("setdomainname");
    do_mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL);
    do_mount(p->rootfs, p->rootfs, NULL, MS_BIND | MS_REC, NULL);
    int rootfd = open(p->rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0)
        fail("opening %s", p->rootfs);
    char path[PATH_MAX];
    mode_t old_umask = umask(0);
    inside(rootfd, p->rootfs, "/proc", path);
    make_dir(path);
    do_mount("proc", path, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
    inside(rootfd, p->rootfs, "/sys", path);
    make_dir(path);
    do_mount("sysfs", path, "sysfs", (p->sys_writable ? 0 : MS_RDONLY) | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
    const int tty[3] = {p->tty, p->rows, p->cols};  /* with a tty: its size */
    setup_dev(rootfd, p->rootfs, tty, p->devices, p->ndevices);
    umask(old_umask);
    for (Py_ssize_t i = 0; i < p->nmounts; i++)
        bind_mount(rootfd, p->rootfs, p->sources[i], p->destinations[i], p->readonly[i], p->ro_fallback);
    mask_paths(rootfd, p->masked);
    readonly_paths(rootfd, p->readonly_paths);
    if (p->readonly_rootfs) {
        /* Docker's --read-only: the working directory is made while it still can be, then the
         * root bind alone is remounted read-only, after every mount into it. Not recursive: the
         * binds, volumes, /etc/hosts..., /dev, /proc and /sys below it keep their own modes. */
        inside(rootfd, p->rootfs, p->workdir, path);
        make_dirs(path);
        remount_readonly(p->rootfs, "the root filesystem");
    }
    close(rootfd);
    if (chdir(p->rootfs) < 0)
        fail("chdir %s", p->rootfs);
    if (syscall(SYS_pivot_root, ".", ".") < 0)
        fail("pivot_root");
    if (umount2(".", MNT_DETACH) < 0)
        fail("detaching the old root");
    if (chdir("/") < 0)
        fail("chdir /");
}

/* Mark every descriptor above 2 close-on-exec: none may leak into the container. */
static void cloexec_from_3(void) {
    if (syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC) == 0)
        return;
    if (errno != EINVAL && errno != ENOSYS)  /* kernels before 5.11 lack the flag */
        fail("close_range");
    DIR *dir = opendir("/proc/self/fd");  /* the container's /proc, mounted above */
    if (!dir)
        fail("listing /proc/self/fd");
    int own = dirfd(dir);
    for (struct dirent *entry; (entry = readdir(dir)) != NULL;) {
        int fd = atoi(entry->d_name);
        if (fd < 3 || fd == own)
            continue;
        int flags = fcntl(fd, F_GETFD);
        if (flags >= 0 && !(flags & FD_CLOEXEC) && fcntl(fd, F_SETFD, flags | FD_CLOEXEC) < 0)
            fail("marking descriptor %d close-on-exec", fd);
    }
    closedir(dir);
    errno = 0;
}

/* execvpe with the PATH of `env` (not the monitor's), as Docker's init looked the command up. */
static int exec_command(char **args, char **env) {
    const char *name = args[0], *path = NULL;
    if (strchr(name, '/')) {
        execve(name, args, env);
        return errno;
    }
    for (char **e = env; *e; e++)
        if (strncmp(*e, "PATH=", 5) == 0)
            path = *e + 5;
    if (!path)
        path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
    int found = ENOENT;
    char candidate[PATH_MAX];
    while (*path) {
        const char *end = strchrnul(path, ':');
        int n = snprintf(candidate, sizeof candidate, "%.*s%s%s", (int)(end - path), path,
                         end == path ? "" : "/", name);
        if (n < (int)sizeof candidate) {
            execve(candidate, args, env);
            if (errno != ENOENT && errno != ENOTDIR)
                found = errno;  /* as Python's execvpe: report the most telling failure */
        }
        path = *end ? end + 1 : end;
    }
    return found;
}

static void child(const struct plan *p) __attribute__((noreturn));
static void child(const struct plan *p) {
    sync_fd = p->sync_fd;
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            signal(sig, SIG_DFL);  /* an ignored signal would stay ignored across exec */
    if (setsid() < 0)
        fail("setsid");
    for (int i = 0; i < 3; i++)
        if (dup2(p->stdio[i], i) < 0)
            fail("dup2");
    for (char **file = p->cgroups; *file; file++)
        join(open_tasks(*file), *file);
    int nlate = 0;
    while (p->late_cgroups[nlate])
        nlate++;
    int late_fds[nlate + 1];  /* opened now: after pivot_root the host's cgroup files are gone */
    for (int i = 0; i < nlate; i++)
        late_fds[i] = open_tasks(p->late_cgroups[i]);
    isolate(p);
    if (p->tty)
        take_console(&p->confinement);
    else if (write(sync_fd, "R", 1) != 1)
        _exit(1);
    char go = 0;
    if (read(p->go_fd, &go, 1) != 1 || go != 'G')
        _exit(1);
    /* the memory cgroup last: what this process touched before is not charged to the container */
    for (int i = 0; i < nlate; i++)
        join(late_fds[i], p->late_cgroups[i]);
    make_dirs(p->workdir);
    const char *what = "";
    if (confine(&p->confinement, &what) < 0)
        fail("%s", what);
    if (chdir(p->workdir) < 0)
        fail("chdir %s", p->workdir);
    cloexec_from_3();
    int err = exec_command(p->args, p->env);
    /* sync_fd is close-on-exec: reaching here, the monitor still waits; exit as Docker did */
    int code = (err == EACCES || err == ENOEXEC || err == EISDIR) ? 126 : 127;
    dprintf(2, "exec: \"%s\": %s\n", p->args[0],
            code == 127 ? "executable file not found in $PATH" : strerror(err));
    _exit(code);
}

/* ---- the parent: Python arguments to a plan ------------------------------------------------ */

/* A NULL-terminated array of the bytes of each path-like in `seq`; their references go to `keep`. */
static char **strings(PyObject *seq, PyObject *keep, Py_ssize_t *count) {
    PyObject *fast = PySequence_Fast(seq, "a sequence of strings is needed");
    if (!fast)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    char **out = PyMem_Calloc(n + 1, sizeof *out);
    if (!out) {
        Py_DECREF(fast);
        PyErr_NoMemory();
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *bytes = NULL;
        if (!PyUnicode_FSConverter(PySequence_Fast_GET_ITEM(fast, i), &bytes) || PyList_Append(keep, bytes) < 0) {
            Py_XDECREF(bytes);
            Py_DECREF(fast);
            PyMem_Free(out);
            return NULL;
        }
        out[i] = PyBytes_AS_STRING(bytes);
        Py_DECREF(bytes);
    }
    Py_DECREF(fast);
    if (count)
        *count = n;
    return out;
}

static int *ints(PyObject *seq, Py_ssize_t *count) {
    PyObject *fast = PySequence_Fast(seq, "a sequence of integers is needed");
    if (!fast)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    int *out = PyMem_Calloc(n + 1, sizeof *out);
    for (Py_ssize_t i = 0; out && i < n; i++) {
        out[i] = (int)PyLong_AsLong(PySequence_Fast_GET_ITEM(fast, i));
        if (out[i] == -1 && PyErr_Occurred()) {
            PyMem_Free(out);
            out = NULL;
        }
    }
    Py_DECREF(fast);
    if (!out && !PyErr_Occurred())
        PyErr_NoMemory();
    *count = n;
    return out;
}

static const char *path_of(PyObject *obj, PyObject *keep) {
    PyObject *bytes = NULL;
    if (obj == Py_None)
        return NULL;
    if (!PyUnicode_FSConverter(obj, &bytes) || PyList_Append(keep, bytes) < 0) {
        Py_XDECREF(bytes);
        return NULL;
    }
    Py_DECREF(bytes);
    return PyBytes_AS_STRING(bytes);
}

/* ---- the seccomp filter, from SeccompFilter's plain form -------------------------------------- */

static int action_of(const char *name, long errno_ret, uint32_t *action) {
    static const struct { const char *name; uint32_t action; } FIXED[] = {
        {"SCMP_ACT_KILL", SCMP_ACT_KILL}, {"SCMP_ACT_KILL_THREAD", SCMP_ACT_KILL_THREAD},
        {"SCMP_ACT_KILL_PROCESS", SCMP_ACT_KILL_PROCESS}, {"SCMP_ACT_TRAP", SCMP_ACT_TRAP},
        {"SCMP_ACT_ALLOW", SCMP_ACT_ALLOW}, {"SCMP_ACT_LOG", SCMP_ACT_LOG},
    };
    for (size_t i = 0; i < sizeof FIXED / sizeof *FIXED; i++) {
        if (strcmp(name, FIXED[i].name) == 0) {
            *action = FIXED[i].action;
            return 0;
        }
    }
    if (strcmp(name, "SCMP_ACT_ERRNO") == 0) {
        *action = SCMP_ACT_ERRNO((uint16_t)errno_ret);
        return 0;
    }
    if (strcmp(name, "SCMP_ACT_TRACE") == 0) {
        *action = SCMP_ACT_TRACE((uint16_t)errno_ret);
        return 0;
    }
    PyErr_Format(PyExc_ValueError, "unknown seccomp action %s", name);
    return -1;
}

static int operator_of(const char *name, enum scmp_compare *op) {
    static const struct { const char *name; enum scmp_compare op; } OPS[] = {
        {"SCMP_CMP_NE", SCMP_CMP_NE}, {"SCMP_CMP_LT", SCMP_CMP_LT}, {"SCMP_CMP_LE", SCMP_CMP_LE},
        {"SCMP_CMP_EQ", SCMP_CMP_EQ}, {"SCMP_CMP_GE", SCMP_CMP_GE}, {"SCMP_CMP_GT", SCMP_CMP_GT},
        {"SCMP_CMP_MASKED_EQ", SCMP_CMP_MASKED_EQ},
    };
    for (size_t i = 0; i < sizeof OPS / sizeof *OPS; i++) {
        if (strcmp(name, OPS[i].name) == 0) {
            *op = OPS[i].op;
            return 0;
        }
    }
    PyErr_Format(PyExc_ValueError, "unknown seccomp operator %s", name);
    return -1;
}

static int seccomp_error(int rc, const char *what, const char *name) {
    PyErr_Format(PyExc_ValueError, "seccomp: %s %s: %s", what, name, strerror(-rc));
    return -1;
}

/* Add one rule (`args` ANDed) for system call `name`; a name this libseccomp does not know is
 * skipped, as Docker does. Conditions on the same argument twice become one rule each (ORed). */
static int add_rule(scmp_filter_ctx ctx, const char *name, uint32_t action, PyObject *args) {
    int nr = seccomp_syscall_resolve_name(name);
    if (nr == __NR_SCMP_ERROR)
        return 0;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(args);
    struct scmp_arg_cmp cmps[6];
    int repeated = 0;
    if (n > 6) {
        PyErr_Format(PyExc_ValueError, "seccomp: more than 6 argument conditions for %s", name);
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned int index;
        unsigned long long value, value_two;
        const char *op_name;
        enum scmp_compare op;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(args, i), "IKsK", &index, &value, &op_name, &value_two) ||
            operator_of(op_name, &op) < 0)
            return -1;
        cmps[i] = (struct scmp_arg_cmp){index, op, value, value_two};
        for (Py_ssize_t j = 0; j < i; j++)
            repeated |= cmps[j].arg == index;
    }
    int rc;
    if (!repeated) {
        if ((rc = seccomp_rule_add_array(ctx, action, nr, (unsigned)n, cmps)) < 0)
            return seccomp_error(rc, "adding the rule for", name);
        return 0;
    }
    for (Py_ssize_t i = 0; i < n; i++)
        if ((rc = seccomp_rule_add_array(ctx, action, nr, 1, &cmps[i])) < 0)
            return seccomp_error(rc, "adding the rule for", name);
    return 0;
}

/* A libseccomp filter from (default_action, default_errno, architectures, rules), rules being
 * (names, action, errno, ((index, value, op, value_two), ...)), its syscalls laid out as a
 * binary tree (`tree`) or as libseccomp's default chain; NULL with a Python exception. */
static scmp_filter_ctx build_filter(PyObject *spec, int tree) {
    const char *default_name;
    long default_errno;
    PyObject *arches, *rules;
    uint32_t default_action;
    if (!PyArg_ParseTuple(spec, "slOO", &default_name, &default_errno, &arches, &rules) ||
        action_of(default_name, default_errno, &default_action) < 0)
        return NULL;
    scmp_filter_ctx ctx = seccomp_init(default_action);
    if (!ctx) {
        PyErr_SetString(PyExc_ValueError, "seccomp_init failed");
        return NULL;
    }
    int rc;
#if SCMP_VER_MAJOR > 2 || (SCMP_VER_MAJOR == 2 && SCMP_VER_MINOR >= 5)
    /* The same rules laid out as a binary tree of system call numbers instead of one long chain:
     * the kernel JIT-compiles and pre-evaluates (its per-syscall allow cache) the program at every
     * container start, which took half the time for Docker's profile (1 ms instead of 2 here),
     * and a filtered syscall walks O(log n) comparisons. A libseccomp that refuses it keeps
     * the chain, which is equally strict. */
    if (tree)
        seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2);
#else
    (void)tree;
#endif
    PyObject *fast = PySequence_Fast(arches, "architectures must be a sequence");
    if (!fast)
        goto fail;
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(fast); i++) {
        const char *name = PyUnicode_AsUTF8(PySequence_Fast_GET_ITEM(fast, i));
        char lower[32];
        size_t k = 0;
        if (!name) {
            Py_DECREF(fast);
            goto fail;
        }
        if (strncmp(name, "SCMP_ARCH_", 10) == 0)
            name += 10;
        for (; name[k] && k < sizeof lower - 1; k++)
            lower[k] = (char)tolower((unsigned char)name[k]);
        lower[k] = '\0';
        uint32_t arch = seccomp_arch_resolve_name(lower);
        if (!arch) {
            PyErr_Format(PyExc_ValueError, "seccomp: unknown architecture %s", name);
            Py_DECREF(fast);
            goto fail;
        }
        if ((rc = seccomp_arch_add(ctx, arch)) < 0 && rc != -EEXIST) {
            seccomp_error(rc, "adding the architecture", lower);
            Py_DECREF(fast);
            goto fail;
        }
    }
    Py_DECREF(fast);
    PyObject *all = PySequence_Fast(rules, "rules must be a sequence");
    if (!all)
        goto fail;
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(all); i++) {
        PyObject *names, *args, *names_fast = NULL, *args_fast = NULL;
        const char *action_name;
        long errno_ret;
        uint32_t action;
        int ok = PyArg_ParseTuple(PySequence_Fast_GET_ITEM(all, i), "OslO", &names, &action_name, &errno_ret, &args) &&
                 action_of(action_name, errno_ret, &action) == 0 &&
                 (names_fast = PySequence_Fast(names, "names must be a sequence")) &&
                 (args_fast = PySequence_Fast(args, "args must be a sequence"));
        for (Py_ssize_t j = 0; ok && j < PySequence_Fast_GET_SIZE(names_fast); j++) {
            const char *name = PyUnicode_AsUTF8(PySequence_Fast_GET_ITEM(names_fast, j));
            ok = name && add_rule(ctx, name, action, args_fast) == 0;
        }
        Py_XDECREF(names_fast);
        Py_XDECREF(args_fast);
        if (!ok) {
            Py_DECREF(all);
            goto fail;
        }
    }
    Py_DECREF(all);
    return ctx;
fail:
    seccomp_release(ctx);
    return NULL;
}

/* `seccomp` (bytes from compile_filter, or None) as a program for the kernel; the bytes are
 * kept alive in `keep`. 0, or -1 with an exception. */
static int program_of(PyObject *seccomp, PyObject *keep, struct sock_fprog *program) {
    program->len = 0;
    program->filter = NULL;
    if (seccomp == Py_None)
        return 0;
    if (!PyBytes_Check(seccomp) || PyBytes_GET_SIZE(seccomp) == 0 ||
        PyBytes_GET_SIZE(seccomp) % sizeof(struct sock_filter) != 0 ||
        PyBytes_GET_SIZE(seccomp) / sizeof(struct sock_filter) > BPF_MAXINSNS) {
        PyErr_SetString(PyExc_ValueError, "seccomp must be a program from compile_filter, or None");
        return -1;
    }
    if (PyList_Append(keep, seccomp) < 0)
        return -1;
    program->len = (unsigned short)(PyBytes_GET_SIZE(seccomp) / sizeof(struct sock_filter));
    program->filter = (struct sock_filter *)PyBytes_AS_STRING(seccomp);
    return 0;
}

PyDoc_STRVAR(compile_doc,
"compile_filter(seccomp, tree=True) -> bytes\n\n"
"The seccomp program libseccomp generates for `seccomp`, (default_action, default_errno,\n"
"architectures, rules) with rules (names, action, errno, ((index, value, op, value_two), ...))\n"
"(container.seccomp_argument's form): what spawn and confine load. ValueError for a filter\n"
"libseccomp refuses. Compiling costs milliseconds; loading the program costs microseconds.\n"
"tree=False keeps libseccomp's default layout, one chain of syscall comparisons (the same\n"
"decisions, a slower load: for the test that compares both).");

static PyObject *compile_filter(PyObject *Py_UNUSED(self), PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"seccomp", "tree", NULL};
    PyObject *spec;
    int tree = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|p", keywords, &spec, &tree))
        return NULL;
    scmp_filter_ctx ctx = build_filter(spec, tree);
    if (!ctx)
        return NULL;
    PyObject *result = NULL;
    int fd = memfd_create("moorage-seccomp", MFD_CLOEXEC), rc;
    if (fd < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
    } else if ((rc = seccomp_export_bpf(ctx, fd)) < 0) {
        seccomp_error(rc, "exporting the program", "");
    } else {
        off_t size = lseek(fd, 0, SEEK_END);
        if (size <= 0 || !(result = PyBytes_FromStringAndSize(NULL, size)))
            goto out;
        if (pread(fd, PyBytes_AS_STRING(result), size, 0) != size) {
            Py_CLEAR(result);
            PyErr_SetFromErrno(PyExc_OSError);
        }
    }
out:
    if (fd >= 0)
        close(fd);
    seccomp_release(ctx);
    if (!result && !PyErr_Occurred())
        PyErr_SetString(PyExc_ValueError, "seccomp: libseccomp exported no program");
    return result;
}

/* gid_t[] from a sequence of integers (PyMem), NULL with an exception. */
static gid_t *gids(PyObject *seq, size_t *count) {
    Py_ssize_t n = 0;
    int *values = ints(seq, &n);
    if (!values)
        return NULL;
    gid_t *out = PyMem_Calloc(n + 1, sizeof *out);
    for (Py_ssize_t i = 0; out && i < n; i++)
        out[i] = (gid_t)(unsigned int)values[i];
    PyMem_Free(values);
    if (!out)
        PyErr_NoMemory();
    *count = (size_t)n;
    return out;
}

/* ---- the module's functions ------------------------------------------------------------------ */

PyDoc_STRVAR(spawn_doc,
"spawn(*, flags, stdio, tty, sync_fd, go_fd, cgroups, late_cgroups, rootfs, hostname,\n"
"      domainname, loopback, mounts, workdir, uid, gid, groups, capabilities, seccomp,\n"
"      masked_paths, readonly_paths, sys_writable, args, env, readonly_fallback=False,\n"
"      devices=(), readonly_rootfs=False, tty_size=(0, 0)) -> pid\n\n"
"Clone the container's first process with the CLONE_NEW* `flags` and return its pid; see\n"
"container.py for what each argument is and what the child reports on sync_fd.");

static PyObject *spawn(PyObject *Py_UNUSED(self), PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"flags", "stdio", "tty", "sync_fd", "go_fd", "cgroups", "late_cgroups",
                               "rootfs", "hostname", "domainname", "loopback", "mounts", "workdir", "uid", "gid",
                               "groups", "capabilities", "seccomp", "masked_paths", "readonly_paths", "sys_writable",
                               "args", "env", "readonly_fallback", "devices", "readonly_rootfs", "tty_size", NULL};
    struct plan p = {0};
    PyObject *rootfs, *hostname, *domainname, *workdir, *cgroups, *late, *mounts, *groups, *seccomp,
        *masked, *readonly, *argv, *env, *devices = NULL;
    unsigned long uid, gid;
    unsigned long long caps;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "i(iii)piiOOOOOpOOkkOKOOOpOO|pOp(ii)", keywords, &p.flags,
                                     &p.stdio[0], &p.stdio[1], &p.stdio[2], &p.tty, &p.sync_fd,
                                     &p.go_fd, &cgroups, &late, &rootfs, &hostname, &domainname, &p.loopback,
                                     &mounts, &workdir, &uid, &gid, &groups, &caps, &seccomp, &masked, &readonly,
                                     &p.sys_writable, &argv, &env, &p.ro_fallback, &devices, &p.readonly_rootfs, &p.rows, &p.cols))
        return NULL;
    PyObject *keep = PyList_New(0), *result = NULL;
    Py_ssize_t nargs = 0;
    if (!keep)
        return NULL;
    p.confinement.caps = caps;
    p.confinement.uid = (uid_t)uid;
    p.confinement.gid = (gid_t)gid;
    if (!(p.rootfs = path_of(rootfs, keep)) || !(p.hostname = path_of(hostname, keep)) ||
        !(p.domainname = path_of(domainname, keep)) || !(p.workdir = path_of(workdir, keep)))
        goto done;
    if (!(p.cgroups = strings(cgroups, keep, NULL)) || !(p.late_cgroups = strings(late, keep, NULL)) ||
        !(p.args = strings(argv, keep, &nargs)) || !(p.env = strings(env, keep, NULL)) ||
        !(p.masked = strings(masked, keep, NULL)) || !(p.readonly_paths = strings(readonly, keep, NULL)))
        goto done;
    if (nargs == 0) {
        PyErr_SetString(PyExc_ValueError, "no command");
        goto done;
    }
    if (!(p.confinement.groups = gids(groups, &p.confinement.ngroups)))
        goto done;
    if (program_of(seccomp, keep, &p.confinement.filter) < 0)
        goto done;
    if (devices) {
        PyObject *all = PySequence_Fast(devices, "devices must be a sequence of (path, mode, major, minor, uid, gid)");
        if (!all)
            goto done;
        p.ndevices = PySequence_Fast_GET_SIZE(all);
        if (!(p.devices = PyMem_Calloc(p.ndevices + 1, sizeof *p.devices))) {
            Py_DECREF(all);
            PyErr_NoMemory();
            goto done;
        }
        for (Py_ssize_t i = 0; i < p.ndevices; i++) {
            struct device *d = &p.devices[i];
            PyObject *path;
            if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(all, i), "OIIIII", &path, &d->mode, &d->major, &d->minor,
                                  &d->uid, &d->gid) ||
                !(d->path = path_of(path, keep))) {
                Py_DECREF(all);
                goto done;
            }
        }
        Py_DECREF(all);
    }
    PyObject *fast = PySequence_Fast(mounts, "mounts must be a sequence of (source, destination, readonly)");
    if (!fast)
        goto done;
    p.nmounts = PySequence_Fast_GET_SIZE(fast);
    p.sources = PyMem_Calloc(p.nmounts + 1, sizeof *p.sources);
    p.destinations = PyMem_Calloc(p.nmounts + 1, sizeof *p.destinations);
    p.readonly = PyMem_Calloc(p.nmounts + 1, sizeof *p.readonly);
    for (Py_ssize_t i = 0; p.sources && p.destinations && p.readonly && i < p.nmounts; i++) {
        PyObject *source, *destination;
        int ro;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(fast, i), "OOp", &source, &destination, &ro) ||
            !(p.sources[i] = (char *)path_of(source, keep)) ||
            !(p.destinations[i] = (char *)path_of(destination, keep))) {
            Py_DECREF(fast);
            goto done;
        }
        p.readonly[i] = ro;
    }
    Py_DECREF(fast);
    if (!p.sources || !p.destinations || !p.readonly) {
        PyErr_NoMemory();
        goto done;
    }
    /* Like fork (no new stack), with the namespaces made in the same call. The monitor is
     * single-threaded, and the child never returns to the interpreter. */
#if defined(__s390__) || defined(__s390x__)
    long pid = syscall(SYS_clone, NULL, (unsigned long)p.flags | SIGCHLD, NULL, NULL, NULL);  /* stack first */
#else
    long pid = syscall(SYS_clone, (unsigned long)p.flags | SIGCHLD, NULL, NULL, NULL, NULL);
#endif
    if (pid == 0)
        child(&p);
    if (pid < 0)
        PyErr_SetFromErrno(PyExc_OSError);
    else
        result = PyLong_FromLong(pid);
done:
    PyMem_Free(p.cgroups);
    PyMem_Free(p.late_cgroups);
    PyMem_Free(p.args);
    PyMem_Free(p.env);
    PyMem_Free(p.masked);
    PyMem_Free(p.readonly_paths);
    PyMem_Free(p.confinement.groups);
    PyMem_Free(p.sources);
    PyMem_Free(p.destinations);
    PyMem_Free(p.readonly);
    PyMem_Free(p.devices);
    Py_DECREF(keep);
    return result;
}

PyDoc_STRVAR(confine_doc,
"confine(*, capabilities, seccomp, uid=0, gid=0, groups=(), no_new_privileges=False)\n\n"
"Hold the calling process to a container's confinement, as the container's first process is\n"
"held, then take the identity uid/gid/groups: `capabilities` is the bit mask of the bounding,\n"
"permitted and effective sets (inheritable and ambient are emptied; (1 << 64) - 1 keeps all),\n"
"`seccomp` the program compile_filter made (None: no filter). Meant for a\n"
"process that joined a running container's namespaces and is about to execve (docker exec):\n"
"call it in a single-threaded child, last before the execve. OSError if a step fails.");

static PyObject *py_confine(PyObject *Py_UNUSED(self), PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"capabilities", "seccomp", "uid", "gid", "groups", "no_new_privileges", NULL};
    struct confinement c = {0};
    unsigned long long caps;
    unsigned long uid = 0, gid = 0;
    PyObject *seccomp, *groups = NULL, *result = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "KO|kkOp", keywords, &caps, &seccomp, &uid, &gid, &groups,
                                     &c.no_new_privs))
        return NULL;
    c.caps = caps;
    c.uid = (uid_t)uid;
    c.gid = (gid_t)gid;
    PyObject *none = NULL;
    if (!groups && !(groups = none = PyTuple_New(0)))
        return NULL;
    c.groups = gids(groups, &c.ngroups);
    Py_XDECREF(none);
    if (!c.groups)
        return NULL;
    PyObject *keep = PyList_New(0);
    if (!keep || program_of(seccomp, keep, &c.filter) < 0) {
        Py_XDECREF(keep);
        goto done;
    }
    const char *what = "";
    if (confine(&c, &what) < 0)
        PyErr_Format(PyExc_OSError, "%s: %s", what, strerror(errno));
    else
        result = Py_NewRef(Py_None);
    Py_DECREF(keep);
done:
    PyMem_Free(c.groups);
    return result;
}

PyDoc_STRVAR(open_pty_doc,
"open_pty(dirfd, ptmx) -> (master, slave)\n\n"
"A new pty pair of the devpts whose ptmx is `ptmx`, resolved below the directory `dirfd` as\n"
"if it were the root and following no symbolic link: for a container's own terminal, from\n"
"inside its mount namespace. What is opened must be a devpts ptmx (checked on the\n"
"descriptor), never a FIFO or another file put there; no end becomes the caller's\n"
"controlling terminal; both are close-on-exec. OSError naming the step that failed.");

static PyObject *py_open_pty(PyObject *Py_UNUSED(self), PyObject *args) {
    int dirfd, master, slave, number;
    PyObject *ptmx;
    const char *what = "";
    if (!PyArg_ParseTuple(args, "iO&", &dirfd, PyUnicode_FSConverter, &ptmx))
        return NULL;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = open_pty(dirfd, PyBytes_AS_STRING(ptmx), &master, &slave, &number, &what);
    Py_END_ALLOW_THREADS
    Py_DECREF(ptmx);
    if (rc < 0)
        return PyErr_Format(PyExc_OSError, "%s: %s", what, strerror(errno));
    return Py_BuildValue("(ii)", master, slave);
}

static PyMethodDef methods[] = {
    {"spawn", (PyCFunction)(void (*)(void))spawn, METH_VARARGS | METH_KEYWORDS, spawn_doc},
    {"confine", (PyCFunction)(void (*)(void))py_confine, METH_VARARGS | METH_KEYWORDS, confine_doc},
    {"compile_filter", (PyCFunction)(void (*)(void))compile_filter, METH_VARARGS | METH_KEYWORDS, compile_doc},
    {"open_pty", py_open_pty, METH_VARARGS, open_pty_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_nsinit",
    "The native exec driver's container process between clone and exec (see container.py).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__nsinit(void) { return PyModule_Create(&module); }
