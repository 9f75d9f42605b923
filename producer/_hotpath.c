/* The common case of `run.log(name, value, step)` in C.
 *
 * A `log()` call comes right after a training step, when the CPU's caches hold the model, not
 * Python's objects: each bytecode and object it touches costs a cache miss. This does the common
 * case (a name already checked, a float, no step or a plain int step in range, a producer that
 * is open) without running Python code, with the same effects as the Python path in
 * `producer/_base.py` (`log`, `_step_for`), `schemas/_fast.py` (`MetricsWriter.encode_one`) and
 * `producer/_intake.py` (`Intake.submit`). Anything else returns False before any effect, and the
 * Python path takes the call: it raises the errors, so they are written once.
 *
 * A change to any of those four Python functions must be made here too;
 * tests/unit/test_producer_hotpath.py holds the two paths to the same events and state.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

typedef struct {
    PyObject_HEAD
    PyObject *run;        /* for `max_step` */
    PyObject *names;      /* set: names already checked */
    PyObject *steps;      /* dict: name -> next step */
    PyObject *seq;        /* iterator of the session's seq numbers */
    PyObject *writer;     /* MetricsWriter, for `_name` on a name it has not encoded yet */
    PyObject *encoded;    /* dict: name -> Avro string bytes (the writer's cache) */
    PyObject *head;       /* bytes: the writer's envelope head */
    PyObject *branch;     /* bytes: the Metrics union branch */
    PyObject *intake;     /* Intake (producer/_intake.py): `closing`, `dozing`, `wake_up`, `spill` */
    PyObject *pending;    /* list: the intake's `pending` */
    Py_ssize_t memory_events; /* the intake's `memory_events` */
} FastLog;

static PyObject *s_max_step, *s_closing, *s_dozing, *s_wake_up, *s_spill, *s_pending,
    *s_memory_events, *s_encode_name;

static int
put_varint(unsigned char *out, uint64_t n)
{
    int i = 0;
    while (n >= 0x80) {
        out[i++] = (unsigned char)((n & 0x7F) | 0x80);
        n >>= 7;
    }
    out[i++] = (unsigned char)n;
    return i;
}

/* 1 when `intake.<attr>` is True, 0 when not, -1 on error. */
static int
flag(PyObject *intake, PyObject *attr)
{
    PyObject *value = PyObject_GetAttr(intake, attr);
    if (value == NULL) {
        return -1;
    }
    int set = PyObject_IsTrue(value);
    Py_DECREF(value);
    return set;
}

/* (name, value, step) -> True when logged; False, with nothing done, for the Python path. */
static PyObject *
fastlog_call(FastLog *self, PyObject *args, PyObject *kwargs)
{
    PyObject *name, *value, *step_obj;
    if (kwargs != NULL && PyDict_GET_SIZE(kwargs) != 0) {
        PyErr_SetString(PyExc_TypeError, "FastLog takes (name, value, step) by position");
        return NULL;
    }
    if (!PyArg_UnpackTuple(args, "FastLog", 3, 3, &name, &value, &step_obj)) {
        return NULL;
    }
    if (!PyUnicode_CheckExact(name) || !PyFloat_CheckExact(value)) {
        Py_RETURN_FALSE;
    }
    int known = PySet_Contains(self->names, name);
    if (known <= 0) {
        if (known < 0) {
            return NULL;
        }
        Py_RETURN_FALSE;
    }
    long long step;
    if (step_obj == Py_None) {
        PyObject *next = PyDict_GetItemWithError(self->steps, name);
        if (next == NULL) {
            if (PyErr_Occurred()) {
                return NULL;
            }
            step = 0;
        } else {
            step = PyLong_AsLongLong(next);
            if (step == -1 && PyErr_Occurred()) {
                PyErr_Clear();
                Py_RETURN_FALSE;
            }
        }
    } else {
        if (!PyLong_CheckExact(step_obj)) {
            Py_RETURN_FALSE;
        }
        int overflow = 0;
        step = PyLong_AsLongLongAndOverflow(step_obj, &overflow);
        if (overflow || step < 0) {
            Py_RETURN_FALSE;
        }
        if (step == -1 && PyErr_Occurred()) {
            return NULL;
        }
    }
    int closing = flag(self->intake, s_closing);
    if (closing != 0) {
        if (closing < 0) {
            return NULL;
        }
        Py_RETURN_FALSE; /* the Python path raises ClosedError */
    }

    /* No way back from here: the same effects as the Python path, in its order. */
    PyObject *next_step = PyLong_FromUnsignedLongLong((unsigned long long)step + 1);
    if (next_step == NULL || PyDict_SetItem(self->steps, name, next_step) < 0) {
        Py_XDECREF(next_step);
        return NULL;
    }
    Py_DECREF(next_step);
    PyObject *max_obj = PyObject_GetAttr(self->run, s_max_step);
    if (max_obj == NULL) {
        return NULL;
    }
    long long max_step = PyLong_AsLongLong(max_obj);
    Py_DECREF(max_obj);
    if (max_step == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (step > max_step) {
        PyObject *step_long = PyLong_FromLongLong(step);
        if (step_long == NULL || PyObject_SetAttr(self->run, s_max_step, step_long) < 0) {
            Py_XDECREF(step_long);
            return NULL;
        }
        Py_DECREF(step_long);
    }
    PyObject *seq_obj = PyIter_Next(self->seq);
    if (seq_obj == NULL) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_RuntimeError, "the seq counter ended");
        }
        return NULL;
    }
    unsigned long long seq = PyLong_AsUnsignedLongLong(seq_obj);
    Py_DECREF(seq_obj);
    if (seq == (unsigned long long)-1 && PyErr_Occurred()) {
        return NULL;
    }
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    int64_t time_us = (int64_t)now.tv_sec * 1000000 + now.tv_nsec / 1000;

    PyObject *encoded = PyDict_GetItemWithError(self->encoded, name);
    if (encoded != NULL) {
        Py_INCREF(encoded);
    } else {
        if (PyErr_Occurred()) {
            return NULL;
        }
        encoded = PyObject_CallMethodOneArg(self->writer, s_encode_name, name);
        if (encoded == NULL) {
            return NULL;
        }
        if (!PyBytes_Check(encoded)) {
            Py_DECREF(encoded);
            PyErr_SetString(PyExc_TypeError, "MetricsWriter.encode_name must return bytes");
            return NULL;
        }
    }
    unsigned char numbers[40];
    int at = 0;
    int seq_len = put_varint(numbers, (uint64_t)seq << 1);
    at += seq_len;
    int time_len = put_varint(numbers + at, (uint64_t)time_us << 1);
    at += time_len;
    int step_len = put_varint(numbers + at, (uint64_t)step << 1);
    Py_ssize_t head_len = PyBytes_GET_SIZE(self->head);
    Py_ssize_t branch_len = PyBytes_GET_SIZE(self->branch);
    Py_ssize_t name_len = PyBytes_GET_SIZE(encoded);
    Py_ssize_t total = head_len + seq_len + time_len + branch_len + step_len + 1 + name_len + 8 + 1;
    PyObject *payload = PyBytes_FromStringAndSize(NULL, total);
    if (payload == NULL) {
        Py_DECREF(encoded);
        return NULL;
    }
    char *out = PyBytes_AS_STRING(payload);
    memcpy(out, PyBytes_AS_STRING(self->head), head_len);
    out += head_len;
    memcpy(out, numbers, seq_len + time_len);
    out += seq_len + time_len;
    memcpy(out, PyBytes_AS_STRING(self->branch), branch_len);
    out += branch_len;
    memcpy(out, numbers + seq_len + time_len, step_len);
    out += step_len;
    *out++ = 0x02; /* one item in the array block */
    memcpy(out, PyBytes_AS_STRING(encoded), name_len);
    out += name_len;
    Py_DECREF(encoded);
    if (PyFloat_Pack8(PyFloat_AS_DOUBLE(value), out, 1) < 0) {
        Py_DECREF(payload);
        return NULL;
    }
    out += 8;
    *out = 0x00; /* end of the array */

    /* Intake.submit */
    int appended = PyList_Append(self->pending, payload);
    Py_DECREF(payload);
    if (appended < 0) {
        return NULL;
    }
    int dozing = flag(self->intake, s_dozing);
    if (dozing < 0) {
        return NULL;
    }
    if (dozing) {
        PyObject *done = PyObject_CallMethodNoArgs(self->intake, s_wake_up);
        if (done == NULL) {
            return NULL;
        }
        Py_DECREF(done);
    }
    if (PyList_GET_SIZE(self->pending) > self->memory_events) {
        PyObject *done = PyObject_CallMethodNoArgs(self->intake, s_spill);
        if (done == NULL) {
            return NULL;
        }
        Py_DECREF(done);
    }
    Py_RETURN_TRUE;
}

static int
fastlog_init(FastLog *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"run",    "names", "steps",  "seq",    "writer",
                               "encoded", "head", "branch", "intake", NULL};
    PyObject *run, *names, *steps, *seq, *writer, *encoded, *head, *branch, *intake;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO!O!OOO!O!O!O:FastLog", keywords, &run,
                                     &PySet_Type, &names, &PyDict_Type, &steps, &seq, &writer,
                                     &PyDict_Type, &encoded, &PyBytes_Type, &head, &PyBytes_Type,
                                     &branch, &intake)) {
        return -1;
    }
    if (!PyIter_Check(seq)) {
        PyErr_SetString(PyExc_TypeError, "seq must be an iterator");
        return -1;
    }
    PyObject *pending = PyObject_GetAttr(intake, s_pending);
    if (pending == NULL) {
        return -1;
    }
    if (!PyList_CheckExact(pending)) {
        Py_DECREF(pending);
        PyErr_SetString(PyExc_TypeError, "intake.pending must be a list");
        return -1;
    }
    PyObject *limit = PyObject_GetAttr(intake, s_memory_events);
    Py_ssize_t memory_events = limit == NULL ? -1 : PyLong_AsSsize_t(limit);
    Py_XDECREF(limit);
    if (memory_events == -1 && PyErr_Occurred()) {
        Py_DECREF(pending);
        return -1;
    }
    Py_XSETREF(self->run, Py_NewRef(run));
    Py_XSETREF(self->names, Py_NewRef(names));
    Py_XSETREF(self->steps, Py_NewRef(steps));
    Py_XSETREF(self->seq, Py_NewRef(seq));
    Py_XSETREF(self->writer, Py_NewRef(writer));
    Py_XSETREF(self->encoded, Py_NewRef(encoded));
    Py_XSETREF(self->head, Py_NewRef(head));
    Py_XSETREF(self->branch, Py_NewRef(branch));
    Py_XSETREF(self->intake, Py_NewRef(intake));
    Py_XSETREF(self->pending, pending);
    self->memory_events = memory_events;
    return 0;
}

static int
fastlog_traverse(FastLog *self, visitproc visit, void *arg)
{
    Py_VISIT(self->run);
    Py_VISIT(self->names);
    Py_VISIT(self->steps);
    Py_VISIT(self->seq);
    Py_VISIT(self->writer);
    Py_VISIT(self->encoded);
    Py_VISIT(self->head);
    Py_VISIT(self->branch);
    Py_VISIT(self->intake);
    Py_VISIT(self->pending);
    return 0;
}

static int
fastlog_clear(FastLog *self)
{
    Py_CLEAR(self->run);
    Py_CLEAR(self->names);
    Py_CLEAR(self->steps);
    Py_CLEAR(self->seq);
    Py_CLEAR(self->writer);
    Py_CLEAR(self->encoded);
    Py_CLEAR(self->head);
    Py_CLEAR(self->branch);
    Py_CLEAR(self->intake);
    Py_CLEAR(self->pending);
    return 0;
}

static void
fastlog_dealloc(FastLog *self)
{
    PyObject_GC_UnTrack(self);
    fastlog_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyTypeObject FastLogType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "runstream.producer._hotpath.FastLog",
    .tp_doc = PyDoc_STR("FastLog(...)(name, value, step=None) -> True when logged, False when the "
                        "Python path must take the call (nothing done then)."),
    .tp_basicsize = sizeof(FastLog),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)fastlog_init,
    .tp_call = (ternaryfunc)fastlog_call,
    .tp_traverse = (traverseproc)fastlog_traverse,
    .tp_clear = (inquiry)fastlog_clear,
    .tp_dealloc = (destructor)fastlog_dealloc,
};

static struct PyModuleDef hotpath_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "runstream.producer._hotpath",
    .m_doc = PyDoc_STR("The common case of run.log() in C (see producer/_base.py)."),
    .m_size = -1,
};

PyMODINIT_FUNC
PyInit__hotpath(void)
{
    if (PyType_Ready(&FastLogType) < 0) {
        return NULL;
    }
    s_max_step = PyUnicode_InternFromString("max_step");
    s_closing = PyUnicode_InternFromString("closing");
    s_dozing = PyUnicode_InternFromString("dozing");
    s_wake_up = PyUnicode_InternFromString("wake_up");
    s_spill = PyUnicode_InternFromString("spill");
    s_pending = PyUnicode_InternFromString("pending");
    s_memory_events = PyUnicode_InternFromString("memory_events");
    s_encode_name = PyUnicode_InternFromString("encode_name");
    if (!s_max_step || !s_closing || !s_dozing || !s_wake_up || !s_spill || !s_pending ||
        !s_memory_events || !s_encode_name) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&hotpath_module);
    if (module == NULL) {
        return NULL;
    }
    if (PyModule_AddObjectRef(module, "FastLog", (PyObject *)&FastLogType) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
