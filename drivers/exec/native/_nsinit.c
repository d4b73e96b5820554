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

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <linux/openat2.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
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

/* What a container's /dev holds (character devices), besides pts, shm and the symlinks. */
static const struct { const char *name; unsigned major, minor; } DEVICES[] = {
    {"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7}, {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0},
};
static const struct { const char *target, *name; } DEV_LINKS[] = {
    {"pts/ptmx", "ptmx"}, {"/proc/self/fd", "fd"}, {"/proc/self/fd/0", "stdin"},
    {"/proc/self/fd/1", "stdout"}, {"/proc/self/fd/2", "stderr"},
};

/* Everything the child needs, converted from Python objects before the clone. */
struct plan {
    int flags, stdio[3], tty, sync_fd, go_fd, loopback;
    unsigned long uid, gid;
    const char *console, *rootfs, *hostname, *domainname, *workdir;
    char **cgroups, **late_cgroups, **sources, **destinations, **args, **env;
    int *readonly, *drop_caps, ncaps;
    gid_t *groups;
    Py_ssize_t ngroups, nmounts;
};

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

/* The host path of container path `path`, resolved by the kernel as if the rootfs were "/"
 * (openat2's RESOLVE_IN_ROOT: an absolute symlink such as /var/run -> /run stays in the rootfs,
 * and nothing leads out of it). The part that does not exist yet is appended as it is; `..` in
 * it is refused (container.py normalises paths first). */
static void inside(int rootfd, const char *rootfs, const char *path, char out[PATH_MAX]) {
    while (*path == '/')
        path++;
    for (const char *c = path; *c; c = strchrnul(c, '/'), c += *c == '/') {
        if (c[0] == '.' && c[1] == '.' && (c[2] == '/' || c[2] == '\0')) {
            errno = 0;
            fail("the container path /%s leads outside the container", path);
        }
    }
    char probe[PATH_MAX];
    if (snprintf(probe, sizeof probe, "%s", *path ? path : ".") >= (int)sizeof probe) {
        errno = ENAMETOOLONG;
        fail("the container path /%s", path);
    }
    size_t missing = strlen(probe);  /* where the part that does not exist starts */
    struct open_how how = {.flags = O_PATH | O_CLOEXEC, .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS};
    int fd;
    while ((fd = syscall(SYS_openat2, rootfd, probe, &how, sizeof how)) < 0) {
        char *slash = strrchr(probe, '/');
        if (errno != ENOENT)
            fail("resolving the container path /%s", path);
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
        fail("resolving the container path /%s", path);
    out[n] = '\0';
    size_t root_len = strlen(rootfs);
    if (strcmp(out, rootfs) != 0 && !(strncmp(out, rootfs, root_len) == 0 && out[root_len] == '/')) {
        errno = 0;  /* the rootfs itself moved under us */
        fail("the container path /%s leads outside the container", path);
    }
    const char *rest = path + missing;  /* "", "/name/..." or, when nothing existed, the whole path */
    if (*rest) {
        if (strlen(out) + strlen(rest) + 1 >= PATH_MAX) {
            errno = ENAMETOOLONG;
            fail("the container path /%s", path);
        }
        if (*rest != '/')
            strcat(out, "/");
        strcat(out, rest);
    }
    errno = 0;
}

static void setup_dev(int rootfd, const char *rootfs, const char *console) {
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
    if (console) {
        snprintf(path, sizeof path, "%s/console", dev);
        int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0666);
        if (fd < 0)
            fail("creating %s", path);
        close(fd);
        do_mount(console, path, NULL, MS_BIND, NULL);
    }
}

static void bind_mount(int rootfd, const char *rootfs, const char *source, const char *destination, int readonly) {
    char target[PATH_MAX];
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
            int fd = open(target, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
            if (fd < 0)
                fail("creating the bind target %s", target);
            close(fd);
        }
    }
    errno = 0;
    do_mount(source, target, NULL, MS_BIND | MS_REC, NULL);
    if (readonly)
        do_mount(NULL, target, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_REC, NULL);
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
    do_mount("sysfs", path, "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
    setup_dev(rootfd, p->rootfs, p->console);
    umask(old_umask);
    for (Py_ssize_t i = 0; i < p->nmounts; i++)
        bind_mount(rootfd, p->rootfs, p->sources[i], p->destinations[i], p->readonly[i]);
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
    if (p->tty && ioctl(0, TIOCSCTTY, 0) < 0)
        fail("setting the controlling terminal");
    for (char **file = p->cgroups; *file; file++)
        join(open_tasks(*file), *file);
    int nlate = 0;
    while (p->late_cgroups[nlate])
        nlate++;
    int late_fds[nlate + 1];  /* opened now: after pivot_root the host's cgroup files are gone */
    for (int i = 0; i < nlate; i++)
        late_fds[i] = open_tasks(p->late_cgroups[i]);
    isolate(p);
    if (write(sync_fd, "R", 1) != 1)
        _exit(1);
    char go = 0;
    if (read(p->go_fd, &go, 1) != 1 || go != 'G')
        _exit(1);
    /* the memory cgroup last: what this process touched before is not charged to the container */
    for (int i = 0; i < nlate; i++)
        join(late_fds[i], p->late_cgroups[i]);
    make_dirs(p->workdir);
    for (int i = 0; i < p->ncaps; i++)
        if (prctl(PR_CAPBSET_DROP, p->drop_caps[i], 0, 0, 0) < 0 && errno != EINVAL)
            fail("dropping capability %d", p->drop_caps[i]);
    errno = 0;
    if (setgroups(p->ngroups, p->groups) < 0)
        fail("setgroups");
    if (setgid((gid_t)p->gid) < 0)
        fail("setgid %lu", p->gid);
    if (setuid((uid_t)p->uid) < 0)
        fail("setuid %lu", p->uid);
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

PyDoc_STRVAR(spawn_doc,
"spawn(*, flags, stdio, tty, console, sync_fd, go_fd, cgroups, late_cgroups, rootfs, hostname,\n"
"      domainname, loopback, mounts, workdir, uid, gid, groups, drop_caps, args, env) -> pid\n\n"
"Clone the container's first process with the CLONE_NEW* `flags` and return its pid; see\n"
"container.py for what each argument is and what the child reports on sync_fd.");

static PyObject *spawn(PyObject *Py_UNUSED(self), PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"flags", "stdio", "tty", "console", "sync_fd", "go_fd", "cgroups", "late_cgroups",
                               "rootfs", "hostname", "domainname", "loopback", "mounts", "workdir", "uid", "gid",
                               "groups", "drop_caps", "args", "env", NULL};
    struct plan p = {0};
    PyObject *console, *rootfs, *hostname, *domainname, *workdir, *cgroups, *late, *mounts, *groups, *caps, *argv,
        *env;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "i(iii)pOiiOOOOOpOOkkOOOO", keywords, &p.flags, &p.stdio[0],
                                     &p.stdio[1], &p.stdio[2], &p.tty, &console, &p.sync_fd, &p.go_fd, &cgroups,
                                     &late, &rootfs, &hostname, &domainname, &p.loopback, &mounts, &workdir,
                                     &p.uid, &p.gid, &groups, &caps, &argv, &env))
        return NULL;
    PyObject *keep = PyList_New(0), *result = NULL;
    int *group_ints = NULL;
    Py_ssize_t ncaps = 0, nargs = 0;
    if (!keep)
        return NULL;
    p.console = path_of(console, keep);
    if (PyErr_Occurred())
        goto done;
    if (!(p.rootfs = path_of(rootfs, keep)) || !(p.hostname = path_of(hostname, keep)) ||
        !(p.domainname = path_of(domainname, keep)) || !(p.workdir = path_of(workdir, keep)))
        goto done;
    if (!(p.cgroups = strings(cgroups, keep, NULL)) || !(p.late_cgroups = strings(late, keep, NULL)) ||
        !(p.args = strings(argv, keep, &nargs)) || !(p.env = strings(env, keep, NULL)))
        goto done;
    if (nargs == 0) {
        PyErr_SetString(PyExc_ValueError, "no command");
        goto done;
    }
    if (!(p.drop_caps = ints(caps, &ncaps)) || !(group_ints = ints(groups, &p.ngroups)))
        goto done;
    p.ncaps = (int)ncaps;
    if (!(p.groups = PyMem_Calloc(p.ngroups + 1, sizeof *p.groups))) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < p.ngroups; i++)
        p.groups[i] = (gid_t)group_ints[i];
    PyObject *fast = PySequence_Fast(mounts, "mounts must be a sequence of (source, destination, readonly)");
    if (!fast)
        goto done;
    p.nmounts = PySequence_Fast_GET_SIZE(fast);
    p.sources = PyMem_Calloc(p.nmounts + 1, sizeof *p.sources);
    p.destinations = PyMem_Calloc(p.nmounts + 1, sizeof *p.destinations);
    p.readonly = PyMem_Calloc(p.nmounts + 1, sizeof *p.readonly);
    for (Py_ssize_t i = 0; p.sources && p.destinations && p.readonly && i < p.nmounts; i++) {
        PyObject *source, *destination;
        int readonly;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(fast, i), "OOp", &source, &destination, &readonly) ||
            !(p.sources[i] = (char *)path_of(source, keep)) ||
            !(p.destinations[i] = (char *)path_of(destination, keep))) {
            Py_DECREF(fast);
            goto done;
        }
        p.readonly[i] = readonly;
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
    PyMem_Free(p.drop_caps);
    PyMem_Free(group_ints);
    PyMem_Free(p.groups);
    PyMem_Free(p.sources);
    PyMem_Free(p.destinations);
    PyMem_Free(p.readonly);
    Py_DECREF(keep);
    return result;
}

static PyMethodDef methods[] = {
    {"spawn", (PyCFunction)(void (*)(void))spawn, METH_VARARGS | METH_KEYWORDS, spawn_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_nsinit",
    "The native exec driver's container process between clone and exec (see container.py).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__nsinit(void) { return PyModule_Create(&module); }
