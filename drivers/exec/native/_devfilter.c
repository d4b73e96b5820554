/* The bpf() calls of the cgroup v2 device filter (see devices.py, which builds the program).
 *
 * load(instructions) -> fd: load the instructions as a BPF_PROG_TYPE_CGROUP_DEVICE program;
 * attach_program(cgroup_dir, fd): attach it to a cgroup with BPF_F_ALLOW_MULTI (one loaded
 * program serves every container: the verifier runs once; an attachment keeps its program
 * alive until the cgroup goes). can_load(instructions): whether the kernel loads it (the
 * driver's probe). Errors raise
 * OSError, with the verifier's log when it refused.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define MAX_INSNS 4096

static int bpf(int cmd, union bpf_attr *attr) {
    return (int)syscall(__NR_bpf, cmd, attr, sizeof *attr);
}

/* Returns the program's fd, or -1 with errno set and the verifier's complaint in log. */
static int load(const char *insns, Py_ssize_t size, char *log, size_t log_size) {
    union bpf_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.prog_type = BPF_PROG_TYPE_CGROUP_DEVICE;
    attr.insns = (__u64)(unsigned long)insns;
    attr.insn_cnt = (__u32)(size / sizeof(struct bpf_insn));
    attr.license = (__u64)(unsigned long)"Apache-2.0";
    attr.log_buf = (__u64)(unsigned long)log;
    attr.log_size = (__u32)log_size;
    attr.log_level = 1;
    log[0] = 0;
    int fd = bpf(BPF_PROG_LOAD, &attr);
    if (fd < 0 && errno == ENOSPC) { /* the log did not fit: load again without one */
        attr.log_buf = 0;
        attr.log_size = 0;
        attr.log_level = 0;
        fd = bpf(BPF_PROG_LOAD, &attr);
    }
    return fd;
}

static int check_size(Py_ssize_t size) {
    if (size == 0 || size % sizeof(struct bpf_insn) != 0 || size / (Py_ssize_t)sizeof(struct bpf_insn) > MAX_INSNS) {
        PyErr_SetString(PyExc_ValueError, "instructions must be 1 to 4096 eBPF instructions of 8 bytes");
        return -1;
    }
    return 0;
}

static PyObject *raise_errno(int saved, const char *what, const char *log) {
    errno = saved;
    if (log && log[0])
        return PyErr_Format(PyExc_OSError, "%s: %s (verifier: %.400s)", what, strerror(saved), log);
    PyErr_SetFromErrno(PyExc_OSError);
    return NULL;
}

static PyObject *devfilter_load(PyObject *self, PyObject *args) {
    const char *insns;
    Py_ssize_t size;
    if (!PyArg_ParseTuple(args, "y#", &insns, &size) || check_size(size) < 0)
        return NULL;
    char log[1024];
    int prog;
    Py_BEGIN_ALLOW_THREADS
    prog = load(insns, size, log, sizeof log);
    Py_END_ALLOW_THREADS
    if (prog < 0)
        return raise_errno(errno, "loading the device filter", log);
    if (fcntl(prog, F_SETFD, FD_CLOEXEC) < 0) {
        int saved = errno;
        close(prog);
        return raise_errno(saved, "loading the device filter", NULL);
    }
    return PyLong_FromLong(prog);
}

static PyObject *devfilter_attach_program(PyObject *self, PyObject *args) {
    const char *cgroup;
    int prog, saved = 0;
    if (!PyArg_ParseTuple(args, "si", &cgroup, &prog))
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    int dir = open(cgroup, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir < 0) {
        saved = errno;
    } else {
        union bpf_attr attr;
        memset(&attr, 0, sizeof attr);
        attr.target_fd = (__u32)dir;
        attr.attach_bpf_fd = (__u32)prog;
        attr.attach_type = BPF_CGROUP_DEVICE;
        attr.attach_flags = BPF_F_ALLOW_MULTI;
        if (bpf(BPF_PROG_ATTACH, &attr) < 0)
            saved = errno;
        close(dir);
    }
    Py_END_ALLOW_THREADS
    if (saved)
        return raise_errno(saved, "attaching the device filter", NULL);
    Py_RETURN_NONE;
}

static PyObject *devfilter_can_load(PyObject *self, PyObject *args) {
    const char *insns;
    Py_ssize_t size;
    if (!PyArg_ParseTuple(args, "y#", &insns, &size) || check_size(size) < 0)
        return NULL;
    char log[1024];
    int prog = load(insns, size, log, sizeof log);
    if (prog < 0)
        Py_RETURN_FALSE;
    close(prog);
    Py_RETURN_TRUE;
}

static PyMethodDef methods[] = {
    {"load", devfilter_load, METH_VARARGS,
     "load(instructions) -> fd: load a cgroup device program (close-on-exec); attach it with attach_program"},
    {"attach_program", devfilter_attach_program, METH_VARARGS,
     "attach_program(cgroup_dir, fd): attach a loaded device program to a cgroup (BPF_F_ALLOW_MULTI)"},
    {"can_load", devfilter_can_load, METH_VARARGS,
     "can_load(instructions) -> bool: whether the kernel loads this cgroup device program"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_devfilter", NULL, -1, methods};

PyMODINIT_FUNC PyInit__devfilter(void) {
    return PyModule_Create(&module);
}
